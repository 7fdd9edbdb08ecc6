//! Urgency as Taskwarrior computes it (`Task::urgency_c` in Taskwarrior 2.6), with its default
//! coefficients; lists are ordered by it.
//!
//! Pure arithmetic: no I/O, no clock (the caller passes `now`).

use jiff::Timestamp;

/// Taskwarrior's default urgency coefficients.
pub mod coefficient {
    /// `urgency.user.tag.next.coefficient`.
    pub const NEXT_TAG: f64 = 15.0;
    /// `urgency.due.coefficient`.
    pub const DUE: f64 = 12.0;
    /// `urgency.blocking.coefficient`.
    pub const BLOCKING: f64 = 8.0;
    /// `urgency.uda.priority.H.coefficient`.
    pub const PRIORITY_H: f64 = 6.0;
    /// `urgency.uda.priority.M.coefficient`.
    pub const PRIORITY_M: f64 = 3.9;
    /// `urgency.uda.priority.L.coefficient`.
    pub const PRIORITY_L: f64 = 1.8;
    /// `urgency.scheduled.coefficient`.
    pub const SCHEDULED: f64 = 5.0;
    /// `urgency.active.coefficient`.
    pub const ACTIVE: f64 = 4.0;
    /// `urgency.age.coefficient`.
    pub const AGE: f64 = 2.0;
    /// `urgency.annotations.coefficient`.
    pub const ANNOTATIONS: f64 = 1.0;
    /// `urgency.tags.coefficient`.
    pub const TAGS: f64 = 1.0;
    /// `urgency.project.coefficient`.
    pub const PROJECT: f64 = 1.0;
    /// `urgency.waiting.coefficient`.
    pub const WAITING: f64 = -3.0;
    /// `urgency.blocked.coefficient`.
    pub const BLOCKED: f64 = -5.0;
    /// `urgency.age.max` in days.
    pub const AGE_MAX_DAYS: i64 = 365;
}

/// What urgency depends on.
#[derive(Debug, Clone, Default)]
pub struct Factors<'a> {
    /// Tags (real ones, not virtual).
    pub tags: &'a [String],
    /// Has a project.
    pub has_project: bool,
    /// `H`, `M`, `L` or none.
    pub priority: Option<&'a str>,
    /// Due time.
    pub due: Option<Timestamp>,
    /// Scheduled time.
    pub scheduled: Option<Timestamp>,
    /// Entry time.
    pub entry: Option<Timestamp>,
    /// Started and not stopped.
    pub active: bool,
    /// Waiting (wait time in the future).
    pub waiting: bool,
    /// Depends on a pending task.
    pub blocked: bool,
    /// A pending task depends on it.
    pub blocking: bool,
    /// Number of annotations.
    pub annotations: usize,
}

/// 1.0 / 0.9 / 0.8 for three-or-more / two / one, as Taskwarrior scales tags and annotations.
fn count_factor(n: usize) -> f64 {
    match n {
        0 => 0.0,
        1 => 0.8,
        2 => 0.9,
        _ => 1.0,
    }
}

/// The due term: 0.2 more than two weeks ahead, rising linearly to 1.0 a week overdue.
pub fn due_factor(due: Timestamp, now: Timestamp) -> f64 {
    let days_overdue = (now.as_second() - due.as_second()) as f64 / 86_400.0;
    if days_overdue >= 7.0 {
        1.0
    } else if days_overdue >= -14.0 {
        ((days_overdue + 14.0) * 0.8 / 21.0) + 0.2
    } else {
        0.2
    }
}

/// The age term: whole days since entry over `urgency.age.max` (Taskwarrior truncates to days).
pub fn age_factor(entry: Option<Timestamp>, now: Timestamp) -> f64 {
    let Some(entry) = entry else {
        return 1.0;
    };
    let age_days = (now.as_second() - entry.as_second()) / 86_400;
    if age_days > coefficient::AGE_MAX_DAYS {
        1.0
    } else {
        age_days as f64 / coefficient::AGE_MAX_DAYS as f64
    }
}

/// Taskwarrior's urgency of a task at `now`.
pub fn urgency(f: &Factors<'_>, now: Timestamp) -> f64 {
    use coefficient as c;
    let mut u = 0.0;
    if f.has_project {
        u += c::PROJECT;
    }
    if f.active {
        u += c::ACTIVE;
    }
    if f.scheduled.is_some_and(|s| s < now) {
        u += c::SCHEDULED;
    }
    if f.waiting {
        u += c::WAITING;
    }
    if f.blocked {
        u += c::BLOCKED;
    }
    if f.blocking {
        u += c::BLOCKING;
    }
    u += c::ANNOTATIONS * count_factor(f.annotations);
    u += c::TAGS * count_factor(f.tags.len());
    if let Some(due) = f.due {
        u += c::DUE * due_factor(due, now);
    }
    u += c::AGE * age_factor(f.entry, now);
    if f.tags.iter().any(|t| t == "next") {
        u += c::NEXT_TAG;
    }
    u += match f.priority {
        Some("H") => c::PRIORITY_H,
        Some("M") => c::PRIORITY_M,
        Some("L") => c::PRIORITY_L,
        _ => 0.0,
    };
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn due_curve_matches_taskwarrior_at_its_breakpoints() {
        let now = ts("2026-03-01T12:00:00Z");
        let day = |d: i64| Timestamp::from_second(now.as_second() + d * 86_400).unwrap();
        for (due_in_days, want) in [
            (-30, 1.0),
            (-7, 1.0),
            (0, 0.2 + 14.0 * 0.8 / 21.0),
            (14, 0.2),
            (30, 0.2),
            (7, 0.2 + 7.0 * 0.8 / 21.0),
        ] {
            let got = due_factor(day(due_in_days), now);
            assert!(
                (got - want).abs() < 1e-9,
                "due in {due_in_days} days: {got} != {want}"
            );
        }
    }

    #[test]
    fn age_truncates_to_whole_days_and_caps_at_a_year() {
        let now = ts("2026-03-01T12:00:00Z");
        let ago = |secs: i64| Some(Timestamp::from_second(now.as_second() - secs).unwrap());
        assert_eq!(age_factor(ago(86_399), now), 0.0);
        assert!((age_factor(ago(10 * 86_400 + 5), now) - 10.0 / 365.0).abs() < 1e-12);
        assert_eq!(age_factor(ago(400 * 86_400), now), 1.0);
        assert_eq!(age_factor(None, now), 1.0);
    }

    #[test]
    fn coefficients_add_up_like_taskwarrior() {
        let now = ts("2026-03-01T12:00:00Z");
        let tags = vec!["next".to_owned(), "home".to_owned()];
        let f = Factors {
            tags: &tags,
            has_project: true,
            priority: Some("H"),
            entry: Some(now),
            active: true,
            annotations: 1,
            ..Factors::default()
        };
        // next 15 + project 1 + active 4 + annotations 0.8 + tags 0.9 + H 6.
        assert!((urgency(&f, now) - 27.7).abs() < 1e-9);
        let blocked = Factors {
            blocked: true,
            waiting: true,
            entry: Some(now),
            ..Factors::default()
        };
        assert!((urgency(&blocked, now) + 8.0).abs() < 1e-9);
    }
}
