//! The search index: every stored embedding as one row of a contiguous `n × dims` matrix of
//! unit vectors, scanned in full for each query (cosine = dot product).
//!
//! Why a scan and not sqlite-vec: a household keeps hundreds to a few thousand facts, where a
//! brute-force pass over contiguous `f32`s is exact, needs no native extension to build or
//! cross-compile, and is fast (the dot product runs on eight independent accumulators, which
//! the compiler turns into SIMD; `benches/memory.rs` measures it at 1k/10k/100k). sqlite-vec
//! 0.1.9 is a brute-force scan too (no ANN index), so it would add a C extension for the same
//! algorithm behind SQL.
//!
//! Invariants: rows and ids are parallel; an id appears once; removal swaps the last row into
//! the hole (order is not meaningful).

use std::collections::HashMap;

/// One result of a search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The fact's id.
    pub id: i64,
    /// Cosine similarity to the query, -1 to 1.
    pub score: f32,
}

/// The in-memory matrix of embeddings.
#[derive(Debug, Clone)]
pub struct Index {
    dims: usize,
    data: Vec<f32>,
    ids: Vec<i64>,
    contacts: Vec<Option<i64>>,
    pos: HashMap<i64, usize>,
}

impl Index {
    /// An empty index of `dims`-dimensional vectors.
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            data: Vec::new(),
            ids: Vec::new(),
            contacts: Vec::new(),
            pos: HashMap::new(),
        }
    }

    /// Dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Insert or replace the vector of `id`. A vector of the wrong length is refused.
    pub fn upsert(&mut self, id: i64, contact: Option<i64>, v: &[f32]) -> bool {
        if v.len() != self.dims {
            return false;
        }
        match self.pos.get(&id) {
            Some(&i) => {
                self.data[i * self.dims..(i + 1) * self.dims].copy_from_slice(v);
                self.contacts[i] = contact;
            }
            None => {
                self.pos.insert(id, self.ids.len());
                self.ids.push(id);
                self.contacts.push(contact);
                self.data.extend_from_slice(v);
            }
        }
        true
    }

    /// The contact of indexed `id` (`None`: not indexed; `Some(None)`: no contact).
    pub fn contact_of(&self, id: i64) -> Option<Option<i64>> {
        self.pos.get(&id).map(|&i| self.contacts[i])
    }

    /// Remove `id`; whether it was there.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(i) = self.pos.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if i != last {
            let moved = self.ids[last];
            self.ids.swap(i, last);
            self.contacts.swap(i, last);
            let (head, tail) = self.data.split_at_mut(last * self.dims);
            head[i * self.dims..(i + 1) * self.dims].copy_from_slice(&tail[..self.dims]);
            self.pos.insert(moved, i);
        }
        self.ids.pop();
        self.contacts.pop();
        self.data.truncate(last * self.dims);
        true
    }

    /// The `k` best matches of the unit vector `q` (best first), optionally only facts of
    /// `contact`.
    pub fn search(&self, q: &[f32], k: usize, contact: Option<i64>) -> Vec<Scored> {
        if q.len() != self.dims || k == 0 {
            return Vec::new();
        }
        let mut top: Vec<Scored> = Vec::with_capacity(k + 1);
        let mut floor = f32::NEG_INFINITY;
        for (i, row) in self.data.chunks_exact(self.dims).enumerate() {
            if contact.is_some() && self.contacts[i] != contact {
                continue;
            }
            let score = dot(row, q);
            if top.len() == k && score <= floor {
                continue;
            }
            let at = top.partition_point(|s| s.score >= score);
            top.insert(
                at,
                Scored {
                    id: self.ids[i],
                    score,
                },
            );
            if top.len() > k {
                top.pop();
            }
            if top.len() == k {
                floor = top[k - 1].score;
            }
        }
        top
    }
}

/// Dot product on eight independent lanes (auto-vectorised).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((a, x), y) in acc.iter_mut().zip(x).zip(y) {
            *a += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(dims: usize, hot: usize) -> Vec<f32> {
        let mut v = vec![0.0; dims];
        v[hot] = 1.0;
        v
    }

    #[test]
    fn search_ranks_filters_and_follows_removals() {
        let mut ix = Index::new(10);
        for i in 0..10 {
            let mut v = unit(10, i);
            v[0] += 0.1 * i as f32;
            crate::home::memory::embed::normalize(&mut v);
            assert!(ix.upsert(i as i64 + 100, Some(i as i64 % 2), &v));
        }
        assert!(!ix.upsert(1, None, &[1.0]), "wrong length refused");
        let hits = ix.search(&unit(10, 3), 3, None);
        assert_eq!(hits[0].id, 103);
        assert!(hits[0].score > hits[1].score && hits[1].score >= hits[2].score);
        let odd = ix.search(&unit(10, 3), 10, Some(0));
        assert_eq!(odd.len(), 5);
        assert!(odd.iter().all(|s| (s.id - 100) % 2 == 0));
        assert!(ix.remove(103));
        assert!(!ix.remove(103));
        assert_eq!(ix.len(), 9);
        assert_ne!(ix.search(&unit(10, 3), 1, None)[0].id, 103);
        // The row moved into the hole still answers for its id.
        assert_eq!(ix.search(&unit(10, 9), 1, None)[0].id, 109);
        ix.upsert(109, None, &unit(10, 5));
        assert_eq!(ix.search(&unit(10, 5), 1, None)[0].id, 109);
        assert_eq!(ix.len(), 9);
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..383).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..383).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
    }
}
