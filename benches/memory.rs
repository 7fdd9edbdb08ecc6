//! Memory search latency beside numpy: top-5 cosine over 1k / 10k / 100k random unit vectors
//! of 384 dimensions (the all-MiniLM-L6-v2 size), p50 and p99 per query, our in-memory scan
//! (`home::memory::index`) against numpy's brute force (`M @ q` + `argpartition`) on the same
//! matrix and queries; plus the latency of embedding one query sentence with the real model.
//!
//! The peer runs with `$LA_TEST_PYTHON` (the venv `make test-deps` makes). Both sides run one
//! thread (`OMP_NUM_THREADS=1` etc. for numpy's BLAS). Without `--bench` (i.e. under
//! `cargo test --all-targets`) it is a smoke run at 1k vectors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use local_assistant::home::memory::embed::{normalize, Embedder, DIMS};
use local_assistant::home::memory::index::Index;

const K: usize = 5;

const PEER: &str = r#"
import sys, time, numpy as np
path, n, d, nq, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
a = np.fromfile(path, dtype='<f4')
m = a[:n*d].reshape(n, d); qs = a[n*d:].reshape(nq, d)
times = []; tops = []
for q in qs:
    t = time.perf_counter()
    s = m @ q
    idx = np.argpartition(-s, k)[:k] if n > k else np.arange(n)
    idx = idx[np.argsort(-s[idx])]
    times.append(time.perf_counter() - t)
    tops.append(int(idx[0]))
times.sort()
print(times[len(times)//2] * 1e3, times[min(len(times)-1, int(len(times)*0.99))] * 1e3)
print(' '.join(map(str, tops)))
"#;

/// xorshift64*: deterministic vectors without a dependency.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn unit(&mut self, d: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..d).map(|_| self.next_f32()).collect();
        normalize(&mut v);
        v
    }
}

fn percentiles(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    let p = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)];
    (p(0.5), p(0.99))
}

fn peer(file: &Path, n: usize, nq: usize) -> Result<((f64, f64), Vec<usize>), String> {
    let python = std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| ".venv-test/bin/python".into());
    let out = Command::new(&python)
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .arg("-c")
        .arg(PEER)
        .arg(file)
        .args([n, DIMS, nq, K].map(|x| x.to_string()))
        .output()
        .map_err(|e| format!("{python}: {e} (run `make test-deps`)"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("numpy peer failed")
            .to_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let nums: Vec<f64> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let tops = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match nums.as_slice() {
        [p50, p99] => Ok(((*p50, *p99), tops)),
        _ => Err(format!("unexpected peer output {text:?}")),
    }
}

fn row(n: usize, nq: usize, dir: &Path) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    let mut ix = Index::new(DIMS);
    let file = dir.join(format!("m{n}.f32"));
    let mut bytes = Vec::with_capacity((n + nq) * DIMS * 4);
    for i in 0..n {
        let v = rng.unit(DIMS);
        bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        ix.upsert(i as i64, None, &v);
    }
    let queries: Vec<Vec<f32>> = (0..nq).map(|_| rng.unit(DIMS)).collect();
    for q in &queries {
        bytes.extend(q.iter().flat_map(|x| x.to_le_bytes()));
    }
    if let Err(e) = std::fs::File::create(&file).and_then(|mut f| f.write_all(&bytes)) {
        println!("| {n} | cannot write {}: {e} | | | | |", file.display());
        return;
    }
    drop(bytes);
    let mut times = Vec::with_capacity(nq);
    let mut tops = Vec::with_capacity(nq);
    for q in &queries {
        let t = Instant::now();
        let hits = ix.search(q, K, None);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        tops.push(hits.first().map_or(usize::MAX, |h| h.id as usize));
    }
    let (o50, o99) = percentiles(times);
    match peer(&file, n, nq) {
        Ok(((p50, p99), ptops)) => {
            let agree = tops.iter().zip(&ptops).filter(|(a, b)| a == b).count();
            println!(
                "| {n} | {o50:.3} | {o99:.3} | {p50:.3} | {p99:.3} | {:.2}× | {agree}/{nq} |",
                o50 / p50
            );
        }
        Err(e) => println!("| {n} | {o50:.3} | {o99:.3} | {e} | | | |"),
    }
    let _ = std::fs::remove_file(&file);
}

fn embed_latency(full: bool) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/models/all-minilm-l6-v2");
    let e = match Embedder::load(&dir, 256, 1) {
        Ok(e) => e,
        Err(e) => {
            println!("\nembedding: {e} (run `make models`)");
            return;
        }
    };
    let sentence = "where did I put the spare key for the back door?";
    let n = if full { 50 } else { 3 };
    let _ = e.embed(sentence);
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        if let Err(err) = e.embed(sentence) {
            println!("\nembedding failed: {err}");
            return;
        }
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let (p50, p99) = percentiles(t);
    println!(
        "\nembed one query ({} tokens, 1 thread): p50 {p50:.2} ms, p99 {p99:.2} ms",
        e.token_ids(sentence).len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --all-targets`) is a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("no temp dir");
        return;
    };
    println!("\nmemory search: top-{K} cosine, {DIMS} dims, ms per query (lower is better)\n");
    println!("| memories | ours p50 | ours p99 | numpy p50 | numpy p99 | ours / numpy (p50) | same top-1 |");
    println!("|--:|--:|--:|--:|--:|--:|--:|");
    let sizes: &[usize] = if full {
        &[1_000, 10_000, 100_000]
    } else {
        &[1_000]
    };
    for &n in sizes {
        row(n, if full { 200 } else { 20 }, dir.path());
    }
    embed_latency(full);
}
