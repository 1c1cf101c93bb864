//! The comparisons of the platform's differencing guard (`ABI.md` §6, guarantee 7).
//!
//! Without noise, two released cells whose person sets differ by 1 to k − 1 persons let the
//! difference of their counts or sums reveal those persons. A run gives the persons of each
//! cell it released without noise ([`crate::RunOptions::members`]); the platform keeps them in
//! the form [`encode`] writes, with a [`Summary`] (size, [`digest`], [`sketch`]), and compares a
//! new release's cells with each other and with the cells released earlier:
//!
//! * [`may_collide`]: what the summaries decide without the persons. Cells whose sizes differ by
//!   k or more cannot collide (the size window), nor can cells whose sketches (persons counted
//!   in 64 ranges of keys) differ by k or more in total; equal digests mean equal sets.
//! * [`collision`]: one pair: the summaries, then the two sorted lists merged, a block of
//!   agreeing keys at a time, stopping at the k-th difference.
//! * [`candidate_pairs`]: the pairs of one release that need [`collision`], without comparing
//!   every cell with every other: two cells fewer than K persons apart (K the largest k) share
//!   a person among the K smallest keys of each, so only cells sharing such a key are paired.
//!
//! None of this knows the database: the platform selects the earlier cells within the size
//! window ([`size_window`]), reads the persons only of those [`may_collide`] leaves open, and
//! calls [`collision`] on them.

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

/// Ranges of keys a [`sketch`] counts the persons of (by the keys' top bits: the keys are a
/// mix of the pseudonyms, uniform).
pub const SKETCH_BUCKETS: usize = 64;

/// The persons of a set counted in each of [`SKETCH_BUCKETS`] ranges of keys, 4 bytes each,
/// little-endian: two sets differ by at least the sum of the differences of their counts.
pub fn sketch(keys: &[u64]) -> Vec<u8> {
    let mut counts = [0u32; SKETCH_BUCKETS];
    for k in keys {
        let b = (k >> (64 - SKETCH_BUCKETS.ilog2())) as usize;
        counts[b] = counts[b].saturating_add(1);
    }
    counts.iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// A lower bound of the difference of two sets, from their sketches ([`sketch`]).
pub fn sketch_distance(a: &[u8], b: &[u8]) -> u64 {
    let count = |s: &[u8], i: usize| {
        s.get(i * 4..i * 4 + 4)
            .map_or(0, |c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
    };
    (0..SKETCH_BUCKETS)
        .map(|i| u64::from(count(a, i).abs_diff(count(b, i))))
        .sum()
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

/// Keys compared at once by [`difference`] where the two lists are aligned.
const BLOCK: usize = 32;

/// The number of persons in exactly one of two encoded sets (their symmetric difference),
/// counted up to `limit`: the merge of the two sorted lists stops as soon as `limit`
/// differences are found (any larger difference is returned as `limit`). Where the lists agree
/// it advances a block of keys at a time (one comparison of their bytes), so sets that differ
/// in a few persons cost little more than reading them.
pub fn difference(a: &[u8], b: &[u8], limit: u64) -> u64 {
    let (na, nb) = (a.len() / KEY_BYTES, b.len() / KEY_BYTES);
    if (na.abs_diff(nb) as u64) >= limit {
        return limit;
    }
    let (mut i, mut j, mut d) = (0usize, 0usize, 0u64);
    while i < na && j < nb {
        let m = BLOCK.min(na - i).min(nb - j);
        if a[i * KEY_BYTES..(i + m) * KEY_BYTES] == b[j * KEY_BYTES..(j + m) * KEY_BYTES] {
            i += m;
            j += m;
            continue;
        }
        // A difference within the block: merge key by key for as many steps.
        for _ in 0..m {
            let (x, y) = (key(a, i), key(b, j));
            if x == y {
                i += 1;
                j += 1;
            } else {
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
            if i == na || j == nb {
                break;
            }
        }
    }
    (d + (na - i) as u64 + (nb - j) as u64).min(limit)
}

/// What the platform reads of a kept cell before its persons.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    /// The number of persons.
    pub persons: u64,
    /// [`digest`] of the encoded persons.
    pub digest: &'a str,
    /// [`sketch`] of the persons.
    pub sketch: &'a [u8],
}

/// Whether two cells may be 1 to k − 1 persons apart as far as their summaries tell: false
/// when their sizes or their sketches differ by k or more, or they are the same set. Only when
/// true must their persons be read and merged ([`collision`]).
pub fn may_collide(a: &Summary<'_>, b: &Summary<'_>, k: u64) -> bool {
    size_window(a.persons, k).contains(&b.persons)
        && a.digest != b.digest
        && sketch_distance(a.sketch, b.sketch) < k
}

/// A released cell as the guard compares it.
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    /// The threshold of the cell's aggregate.
    pub k: u64,
    /// Its size, digest and sketch.
    pub summary: Summary<'a>,
    /// The encoded persons ([`encode`]).
    pub members: &'a [u8],
}

/// The number of persons by which `a` and `b` differ, when it is 1 to `k` − 1 (a release of
/// both would reveal those persons); `None` otherwise.
pub fn collision(a: &Cell<'_>, b: &Cell<'_>, k: u64) -> Option<u64> {
    if !may_collide(&a.summary, &b.summary, k) {
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

    /// An encoded set with its digest and sketch.
    fn kept(keys: &[u64]) -> (Vec<u8>, String, Vec<u8>) {
        let e = encode(keys);
        let d = digest(&e);
        (e, d, sketch(keys))
    }

    fn cell(k: u64, (members, digest, sketch): &(Vec<u8>, String, Vec<u8>)) -> Cell<'_> {
        Cell {
            k,
            summary: Summary {
                persons: (members.len() / KEY_BYTES) as u64,
                digest,
                sketch,
            },
            members,
        }
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
        // Long sets a few persons apart (the block-wise path), differences anywhere.
        for round in 0..200 {
            let a = random_set(&mut x, 2000, 1 << 40);
            let mut b = a.clone();
            for _ in 0..round % 12 {
                if xorshift(&mut x).is_multiple_of(2) {
                    let at = (xorshift(&mut x) % b.len() as u64) as usize;
                    b.remove(at);
                } else {
                    b.push(xorshift(&mut x) % (1 << 40));
                }
            }
            b.sort_unstable();
            b.dedup();
            let d = reference(&a, &b);
            let (ea, eb) = (encode(&a), encode(&b));
            assert_eq!(difference(&ea, &eb, u64::MAX), d, "round {round}");
            assert_eq!(difference(&eb, &ea, 5), d.min(5), "round {round}");
        }
    }

    #[test]
    fn collisions_are_one_to_k_minus_one_persons_apart() {
        let base: Vec<u64> = (0..100).map(|i| (i * 3) << 50).collect();
        let a = kept(&base);
        for (removed, want) in [
            (0, None),
            (1, Some(1)),
            (9, Some(9)),
            (10, None),
            (50, None),
        ] {
            let b = kept(&base[removed..]);
            assert_eq!(
                collision(&cell(10, &a), &cell(10, &b), 10),
                want,
                "{removed}"
            );
        }
        // Same size, one person swapped: two apart.
        let mut swapped = base.clone();
        swapped[40] = 1;
        swapped.sort_unstable();
        let b = kept(&swapped);
        assert_eq!(collision(&cell(10, &a), &cell(10, &b), 10), Some(2));
        assert_eq!(size_window(5, 10), 0..=14);
    }

    /// A sketch's distance never exceeds the difference, and rules out sets k apart.
    #[test]
    fn sketch_distance_is_a_lower_bound() {
        let mut x = 3u64;
        for round in 0..300 {
            let a = random_set(&mut x, 200, u64::MAX);
            let mut b = a.clone();
            for _ in 0..round % 30 {
                let at = (xorshift(&mut x) % b.len() as u64) as usize;
                b[at] = xorshift(&mut x);
            }
            b.sort_unstable();
            b.dedup();
            let d = reference(&a, &b);
            let s = sketch_distance(&sketch(&a), &sketch(&b));
            assert!(s <= d, "round {round}: {s} > {d}");
            assert_eq!(s % 2, d % 2, "counts differ in pairs or by the sizes");
        }
        // Two unrelated sets of one size: ruled out without their persons.
        let (a, b) = (
            random_set(&mut x, 200, u64::MAX),
            random_set(&mut x, 200, u64::MAX),
        );
        assert!(sketch_distance(&sketch(&a), &sketch(&b)) >= 10);
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
                let s = if !sets.is_empty() && xorshift(&mut x).is_multiple_of(2) {
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
            let stored: Vec<_> = sets.iter().map(|s| kept(s)).collect();
            let cells: Vec<Cell<'_>> = (0..sets.len())
                .map(|i| cell(ks[i % ks.len()], &stored[i]))
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
