//! What the engine benchmarks read from the environment (included by path).

/// `BENCH_REPS` (default 3 for a `--bench` run, 1 for a smoke run), at least 1.
pub fn reps(full: bool) -> usize {
    std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 3usize } else { 1 })
        .max(1)
}

/// `BENCH_THREADS`, e.g. `1,2` (the default for a `--bench` run; a smoke run uses `1`).
pub fn threads(full: bool) -> Vec<usize> {
    std::env::var("BENCH_THREADS")
        .unwrap_or_else(|_| if full { "1,2" } else { "1" }.into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}
