//! The C heap (glibc's malloc, which Rust, ONNX Runtime, whisper.cpp and espeak-ng all use).
//!
//! glibc gives every thread that allocates an arena of its own, up to eight per core, and
//! keeps what is freed in each for reuse. This process has dozens of threads (the async
//! runtime, each engine's workers, the model's compute pools); the buffers of one spoken answer
//! (Piper's intermediate tensors, the model's attention scores) would stay resident in
//! whichever arenas they were freed to. [`limit_arenas`] caps the arenas at two per core, and
//! [`release`] hands free memory back to the system after work that used a lot of it.

/// Cap malloc's arenas at two per core; call before threads start (later arenas obey it).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let arenas = libc::c_int::try_from(cores.saturating_mul(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a malloc parameter; any value is accepted or refused
        // with 0, which changes nothing.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Return the heap's free memory to the system (after each LLM generation and each voice turn).
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
