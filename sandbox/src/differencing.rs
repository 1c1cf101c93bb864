//! The comparisons of the platform's differencing guard (`ABI.md` §6, guarantee 7).
//!
//! Without noise, two released cells whose person sets differ by 1 to k − 1 persons let the
//! difference of their counts or sums reveal those persons. A run gives the persons of each
//! cell it released without noise ([`crate::RunOptions::members`]); the platform keeps them in
//! the form [`encode`] writes and compares a new release's cells with each other and with the
//! cells released earlier, with the functions here:
//!
//! * [`collision`]: one pair. Cells whose sizes differ by k or more cannot collide (the size
//!   window), equal digests mean equal sets (no difference), and otherwise the two sorted lists
//!   are merged, stopping at the k-th difference.
//! * [`candidate_pairs`]: the pairs of one release that need [`collision`], without comparing
//!   every cell with every other: two cells fewer than K persons apart (K the largest k) share
//!   a person among the K smallest keys of each, so only cells sharing such a key are paired.
//!
//! None of this knows the database: the platform selects the earlier cells within the size
//! window ([`size_window`]) and calls [`collision`] on each.

use std::ops::RangeInclusive;

use sha2::{Digest, Sha256};

/// Bytes per person in an encoded member set.
pub const KEY_BYTES: usize = 8;

/// The persons of one cell as the platform keeps them: the sorted, distinct person keys
/// ([`crate::aggregate::CellMembers`]), 8 bytes each, little-endian, ascending.
pub fn encode(keys: &[u64]) -> Vec<u8> {
    debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
    let mut out = Vec::with_capacity(keys.len() * KEY_BYTES);
    for k in keys {
        out.extend_from_slice(&k.to_le_bytes());
    }
    out
}

/// The sha256 (hex) of an encoded member set: two cells with the same digest have the same
/// persons.
pub fn digest(encoded: &[u8]) -> String {
    hex::encode(Sha256::digest(encoded))
}

/// The number of persons of an encoded set.
pub fn persons(encoded: &[u8]) -> u64 {
    (encoded.len() / KEY_BYTES) as u64
}

/// The sizes a cell of `persons` persons can be fewer than `k` persons apart from: cells
/// outside it differ by at least k persons whatever their members.
pub fn size_window(persons: u64, k: u64) -> RangeInclusive<u64> {
    let w = k.saturating_sub(1);
    persons.saturating_sub(w)..=persons.saturating_add(w)
}

#[inline]
fn key(encoded: &[u8], i: usize) -> u64 {
    let b: [u8; KEY_BYTES] = encoded[i * KEY_BYTES..(i + 1) * KEY_BYTES]
        .try_into()
        .expect("8 bytes");
    u64::from_le_bytes(b)
}

/// The number of persons in exactly one of two encoded sets (their symmetric difference),
/// counted up to `limit`: the merge of the two sorted lists stops as soon as `limit`
/// differences are found (any larger difference is returned as `limit`).
pub fn difference(a: &[u8], b: &[u8], limit: u64) -> u64 {
    let (na, nb) = (a.len() / KEY_BYTES, b.len() / KEY_BYTES);
    if (na.abs_diff(nb) as u64) >= limit {
        return limit;
    }
    let (mut i, mut j, mut d) = (0usize, 0usize, 0u64);
    while i < na && j < nb {
        let (x, y) = (key(a, i), key(b, j));
        if x == y {
            i += 1;
            j += 1;
            continue;
        }
        d += 1;
        if d >= limit {
            return limit;
        }
        if x < y {
            i += 1;
        } else {
            j += 1;
        }
    }
    (d + (na - i) as u64 + (nb - j) as u64).min(limit)
}

/// A released cell as the guard compares it.
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    /// The threshold of the cell's aggregate.
    pub k: u64,
    /// [`digest`] of `members`.
    pub digest: &'a str,
    /// The encoded persons ([`encode`]).
    pub members: &'a [u8],
}

impl Cell<'_> {
    /// The number of persons.
    pub fn persons(&self) -> u64 {
        persons(self.members)
    }
}

/// The number of persons by which `a` and `b` differ, when it is 1 to `k` − 1 (a release of
/// both would reveal those persons); `None` otherwise.
pub fn collision(a: &Cell<'_>, b: &Cell<'_>, k: u64) -> Option<u64> {
    if !size_window(a.persons(), k).contains(&b.persons()) || a.digest == b.digest {
        return None;
    }
    let d = difference(a.members, b.members, k);
    (1..k).contains(&d).then_some(d)
}

/// The pairs `(i, j)`, `i < j`, of `cells` (one release) that may be fewer than their larger
/// k apart: those sharing a person among the K smallest keys of each, K the largest k of
/// `cells`. Every pair that [`collision`] would find is among them: if A and B differ by
/// d < K persons they share one (each has at least its k persons, so |A| + |B| ≥ K > d), and
/// below their smallest common person x, A holds only persons not in B and B only persons not
/// in A, at most d together, so x is among the d + 1 ≤ K smallest of each.
pub fn candidate_pairs(cells: &[Cell<'_>]) -> Vec<(usize, usize)> {
    let prefix = cells.iter().map(|c| c.k).max().unwrap_or(0) as usize;
    let mut keys: Vec<(u64, usize)> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        let n = (c.members.len() / KEY_BYTES).min(prefix);
        keys.extend((0..n).map(|p| (key(c.members, p), i)));
    }
    keys.sort_unstable();
    let mut pairs = Vec::new();
    for group in keys.chunk_by(|x, y| x.0 == y.0) {
        for (a, x) in group.iter().enumerate() {
            pairs.extend(group[a + 1..].iter().map(|y| (x.1, y.1)));
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell<'a>(k: u64, members: &'a [u8], digest: &'a str) -> Cell<'a> {
        Cell { k, digest, members }
    }

    /// The symmetric difference by sets, for reference.
    fn reference(a: &[u64], b: &[u64]) -> u64 {
        use std::collections::BTreeSet;
        let (a, b): (BTreeSet<_>, BTreeSet<_>) = (a.iter().collect(), b.iter().collect());
        a.symmetric_difference(&b).count() as u64
    }

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn random_set(x: &mut u64, n: usize, range: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).map(|_| xorshift(x) % range).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn difference_is_the_symmetric_difference_up_to_the_limit() {
        let mut x = 7u64;
        for _ in 0..500 {
            let a = random_set(&mut x, 40, 60);
            let b = random_set(&mut x, 40, 60);
            let d = reference(&a, &b);
            let (ea, eb) = (encode(&a), encode(&b));
            assert_eq!(difference(&ea, &eb, u64::MAX), d);
            for limit in [1, 5, 10, 30] {
                assert_eq!(difference(&ea, &eb, limit), d.min(limit));
            }
        }
        assert_eq!(difference(&encode(&[]), &encode(&[1, 2, 3]), 10), 3);
    }

    #[test]
    fn collisions_are_one_to_k_minus_one_persons_apart() {
        let base: Vec<u64> = (0..100).map(|i| i * 3).collect();
        let less = |n: usize| base[n..].to_vec();
        let e = encode(&base);
        let d = digest(&e);
        let a = cell(10, &e, &d);
        for (removed, want) in [
            (0, None),
            (1, Some(1)),
            (9, Some(9)),
            (10, None),
            (50, None),
        ] {
            let s = encode(&less(removed));
            let sd = digest(&s);
            assert_eq!(collision(&a, &cell(10, &s, &sd), 10), want, "{removed}");
        }
        // Same size, one person swapped: two apart.
        let mut swapped = base.clone();
        swapped[40] = 1;
        swapped.sort_unstable();
        let s = encode(&swapped);
        let sd = digest(&s);
        assert_eq!(collision(&a, &cell(10, &s, &sd), 10), Some(2));
        assert_eq!(size_window(5, 10), 0..=14);
    }

    /// The prefix filter finds every colliding pair that comparing all pairs finds (released
    /// cells hold at least their k persons; the sets here hold at least 15, the largest k).
    #[test]
    fn candidate_pairs_hold_every_collision() {
        let mut x = 99u64;
        let ks = [10u64, 10, 12, 15];
        let (mut found, mut candidates_total) = (0, 0);
        for round in 0..40 {
            let mut sets: Vec<Vec<u64>> = Vec::new();
            while sets.len() < 12 {
                let s = if !sets.is_empty() && xorshift(&mut x) % 2 == 0 {
                    // Near an earlier set: a few persons removed and a few added.
                    let mut s = sets[(xorshift(&mut x) % sets.len() as u64) as usize].clone();
                    for _ in 0..xorshift(&mut x) % 8 {
                        let at = (xorshift(&mut x) % s.len() as u64) as usize;
                        s.remove(at);
                    }
                    let added = (xorshift(&mut x) % 5) as usize;
                    s.extend(random_set(&mut x, added, 4000));
                    s.sort_unstable();
                    s.dedup();
                    s
                } else {
                    let n = 25 + (xorshift(&mut x) % 30) as usize;
                    random_set(&mut x, n, 4000)
                };
                if s.len() >= 15 {
                    sets.push(s);
                }
            }
            let encoded: Vec<Vec<u8>> = sets.iter().map(|s| encode(s)).collect();
            let digests: Vec<String> = encoded.iter().map(|e| digest(e)).collect();
            let cells: Vec<Cell<'_>> = (0..sets.len())
                .map(|i| cell(ks[i % ks.len()], &encoded[i], &digests[i]))
                .collect();
            let candidates = candidate_pairs(&cells);
            candidates_total += candidates.len();
            for i in 0..cells.len() {
                for j in i + 1..cells.len() {
                    let k = cells[i].k.max(cells[j].k);
                    let d = reference(&sets[i], &sets[j]);
                    let want = (1..k).contains(&d).then_some(d);
                    assert_eq!(collision(&cells[i], &cells[j], k), want, "round {round}");
                    if want.is_some() {
                        found += 1;
                        assert!(candidates.contains(&(i, j)), "round {round}: {i} {j}");
                    }
                }
            }
        }
        // Collisions were there to find, and most pairs were never compared.
        assert!(found > 0);
        assert!(candidates_total < 40 * 66 / 2, "{candidates_total}");
    }
}
