//! Foreground compute: work somebody is waiting for this instant (recognising what a person
//! said, synthesising the answer they are about to hear). Background work (the LLM's cache
//! pre-warm) waits between its steps while any is under way, so that on a two-core device it
//! never takes a core from them. Whisper's threads in particular meet at spin barriers: one
//! thread kept off its core stalls them all.
//!
//! Mark foreground work with the guard of [`enter`]; background work polls [`busy`].

use std::sync::atomic::{AtomicUsize, Ordering};

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Foreground work under way until dropped.
#[derive(Debug)]
#[must_use = "the work counts as foreground only while the guard lives"]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Foreground work starts; it ends when the guard is dropped.
pub fn enter() -> Guard {
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    Guard(())
}

/// Whether any foreground work is under way.
pub fn busy() -> bool {
    ACTIVE.load(Ordering::SeqCst) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_while_any_guard_lives() {
        // Other tests in this process may hold guards: count relative to now.
        let base = ACTIVE.load(Ordering::SeqCst);
        let a = enter();
        let b = enter();
        assert!(busy());
        assert_eq!(ACTIVE.load(Ordering::SeqCst), base + 2);
        drop(a);
        assert!(busy());
        drop(b);
        assert_eq!(ACTIVE.load(Ordering::SeqCst), base);
    }
}
