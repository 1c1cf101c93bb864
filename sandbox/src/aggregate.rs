//! Host-side aggregation: partial accumulators per instance, exact merge, per-person bounds,
//! k-thresholds, optional differential-privacy noise, and the released output (JSON and CSV).
//!
//! Contributions are grouped by person without a global sort: each one goes, as it arrives,
//! to one of [`PARTS`] partitions chosen by the top bits of a bijective mix of its pseudonym,
//! so every person lies in exactly one partition. After the scan each partition (all instances
//! together) is small enough to be sorted in the core's cache, and partitions are independent:
//! they are tallied in parallel and their per-cell totals (exact integers) are summed.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::RngCore;
use serde::Serialize;

use crate::manifest::PlanAggregate;
use crate::noise::discrete_laplace;

/// Bits of the mixed person key that choose a partition.
const PART_BITS: u32 = 8;
/// Number of partitions of a [`Partial`].
const PARTS: usize = 1 << PART_BITS;
/// Raw contributions are buffered and compacted (sorted and summed per pair) when an instance
/// holds this many, so memory stays bounded by the number of distinct pairs.
const COMPACT_AT: usize = 1 << 22;

/// The key contributions are grouped by: a bijection of the pseudonym (so it identifies the
/// person exactly) whose top bits are uniform even when pseudonyms are not.
#[inline]
fn person_key(person: u64) -> u64 {
    (person ^ (person >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The running totals of one (person, cell) pair.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: u64,
    cell: u32,
    count: u64,
}

/// Sorted (person, cell) totals with `m` sums per entry.
#[derive(Debug, Clone, Default)]
struct Run {
    entries: Vec<Entry>,
    sums: Vec<i128>,
}

impl Run {
    /// Bytes of the run's buffers (their capacity).
    fn bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>() + self.sums.capacity() * size_of::<i128>()
    }

    /// Entries of `m` measures that `bytes` hold.
    fn entry_bytes(m: usize) -> usize {
        size_of::<Entry>() + m * size_of::<i128>()
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.sums.clear();
    }

    /// Adds one contribution (already in (key, cell) order) with its measures.
    #[inline]
    fn push(
        &mut self,
        m: usize,
        (key, cell, count): (u64, u32, u64),
        measures: impl Iterator<Item = i128>,
    ) {
        match self.entries.last_mut() {
            Some(e) if e.key == key && e.cell == cell => {
                e.count += count;
                let base = self.sums.len() - m;
                for (s, v) in self.sums[base..].iter_mut().zip(measures) {
                    *s += v;
                }
            }
            _ => {
                self.entries.push(Entry { key, cell, count });
                self.sums.extend(measures);
            }
        }
    }

    /// `self` and `other` merged (pairs present in both summed) into `out`.
    fn merge_into(&self, other: &Run, m: usize, out: &mut Run) {
        out.clear();
        let (a, b) = (&self.entries, &other.entries);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let take_a =
                j >= b.len() || (i < a.len() && (a[i].key, a[i].cell) <= (b[j].key, b[j].cell));
            let (e, sums) = if take_a {
                i += 1;
                (a[i - 1], &self.sums[(i - 1) * m..i * m])
            } else {
                j += 1;
                (b[j - 1], &other.sums[(j - 1) * m..j * m])
            };
            out.push(m, (e.key, e.cell, e.count), sums.iter().copied());
        }
    }
}

/// A raw contribution as kept in a partition's blocks, waiting to be sorted.
trait Raw: Copy + Default + Send + Sync + 'static {
    /// Empty blocks of this kind kept for reuse.
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
    /// The person's key below the partition bits, most significant first (radix digits).
    fn radix(&self) -> u64;
    /// The order within a partition: by person, then cell.
    fn order(&self) -> u128;
    /// (person within the partition, cell, index of the measures).
    fn fields(&self) -> (u64, u32, u32);
    /// The same contribution with its measures at `idx`.
    fn with_idx(self, idx: u32) -> Self;
}

/// A contribution with its measures: the person's key, the cell, where its measures are.
#[derive(Debug, Clone, Copy, Default)]
struct Rec {
    key: u64,
    cell: u32,
    idx: u32,
}

/// Empty blocks of [`Rec`]s kept for reuse (at most [`POOL_BLOCKS`]).
static WIDE_POOL: Mutex<Vec<Vec<Rec>>> = Mutex::new(Vec::new());
/// Empty blocks of [`Packed`] contributions kept for reuse (at most [`POOL_BLOCKS`]).
static PACKED_POOL: Mutex<Vec<Vec<Packed>>> = Mutex::new(Vec::new());

impl Raw for Rec {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>> {
        &WIDE_POOL
    }

    #[inline]
    fn radix(&self) -> u64 {
        self.key << PART_BITS
    }

    #[inline]
    fn order(&self) -> u128 {
        (u128::from(self.key) << 32) | u128::from(self.cell)
    }

    #[inline]
    fn fields(&self) -> (u64, u32, u32) {
        (self.key, self.cell, self.idx)
    }

    #[inline]
    fn with_idx(self, idx: u32) -> Self {
        Rec { idx, ..self }
    }
}

/// A contribution without measures to a cell below 2^[`PART_BITS`], in one word: the person's
/// key without its partition bits, then the cell (half the memory traffic of a [`Rec`]).
#[derive(Debug, Clone, Copy, Default)]
struct Packed(u64);

impl Raw for Packed {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>> {
        &PACKED_POOL
    }

    #[inline]
    fn radix(&self) -> u64 {
        self.0
    }

    #[inline]
    fn order(&self) -> u128 {
        u128::from(self.0)
    }

    #[inline]
    fn fields(&self) -> (u64, u32, u32) {
        (self.0 >> PART_BITS, (self.0 & (PARTS as u64 - 1)) as u32, 0)
    }

    #[inline]
    fn with_idx(self, _: u32) -> Self {
        self
    }
}

/// Bytes per block of raw contributions.
const BLOCK_BYTES: usize = 32 << 10;
/// Blocks of each kind kept for reuse after a run (64 MiB): a run's buffers are then neither
/// allocated nor faulted in (zeroed by the kernel) again, which would cost as much as sorting
/// them.
const POOL_BLOCKS: usize = (64 << 20) / BLOCK_BYTES;

/// Contributions per block.
const fn block_len<T>() -> usize {
    BLOCK_BYTES / size_of::<T>()
}

/// An empty block.
fn take_block<T: Raw>() -> Vec<T> {
    let pooled = T::pool().lock().map_or(None, |mut p| p.pop());
    pooled.unwrap_or_else(|| Vec::with_capacity(block_len::<T>()))
}

/// Returns blocks to the pool (as many as it has room for).
fn give_blocks<T: Raw>(blocks: impl Iterator<Item = Vec<T>>) {
    if let Ok(mut pool) = T::pool().lock() {
        for mut b in blocks {
            if pool.len() >= POOL_BLOCKS {
                break;
            }
            b.clear();
            pool.push(b);
        }
    }
}

/// One partition of a [`Partial`]: raw contributions in blocks (the block being filled kept
/// inline, so that adding touches one line per partition).
#[derive(Debug, Clone, Default)]
struct Part<T> {
    current: Vec<T>,
    full: Vec<Vec<T>>,
}

impl<T: Raw> Part<T> {
    fn raw(&self) -> usize {
        self.current.len() + self.full.len() * block_len::<T>()
    }

    fn recs(&self) -> impl Iterator<Item = &T> {
        self.full.iter().flatten().chain(&self.current)
    }

    #[inline]
    fn push(&mut self, r: T) {
        if self.current.len() == self.current.capacity() {
            let full = std::mem::replace(&mut self.current, take_block());
            if full.capacity() > 0 {
                self.full.push(full);
            }
        }
        self.current.push(r);
        prefetch_ahead(&self.current);
    }

    fn release(&mut self) {
        let current = std::mem::take(&mut self.current);
        give_blocks(
            self.full
                .drain(..)
                .chain([current])
                .filter(|b| b.capacity() == block_len::<T>()),
        );
    }
}

/// Contributions received by one instance for one aggregate, kept per (person, cell) so that
/// partials merge exactly and per-person bounds apply independently of the split.
#[derive(Debug)]
pub(crate) struct Partial {
    measures: usize,
    /// Whether contributions are [`Packed`] (no measures, few cells) rather than [`Rec`]s.
    packs: bool,
    /// The partitions (empty until the first contribution), of the kind `packs` says.
    wide: Vec<Part<Rec>>,
    packed: Vec<Part<Packed>>,
    /// The totals of earlier compactions, per partition.
    runs: Vec<Run>,
    /// Raw contributions buffered (all partitions).
    raw: usize,
    /// Their measures, `measures` per contribution, indexed by `Rec::idx`.
    raw_measures: Vec<i64>,
    /// Bytes held by `runs` (their capacity), as of the last compaction.
    runs_bytes: usize,
}

impl Drop for Partial {
    fn drop(&mut self) {
        self.wide.iter_mut().for_each(Part::release);
        self.packed.iter_mut().for_each(Part::release);
    }
}

impl Partial {
    /// An empty partial for an aggregate with `measures` measures and `cells` cells.
    pub(crate) fn new(measures: usize, cells: u64) -> Self {
        Partial {
            measures,
            packs: measures == 0 && cells <= PARTS as u64,
            wide: Vec::new(),
            packed: Vec::new(),
            runs: Vec::new(),
            raw: 0,
            raw_measures: Vec::new(),
            runs_bytes: 0,
        }
    }

    /// An upper bound of the bytes this partial holds, in constant time: every partition holds
    /// full blocks of raw contributions and at most one partly filled block, so the blocks'
    /// capacity is at most the raw contributions plus one block per partition; then the raw
    /// measures and the compacted totals.
    pub(crate) fn bytes(&self) -> u64 {
        let raw = if self.raw == 0 {
            0
        } else if self.packs {
            (self.raw + PARTS * block_len::<Packed>()) * size_of::<Packed>()
        } else {
            (self.raw + PARTS * block_len::<Rec>()) * size_of::<Rec>()
        };
        let parts = self.wide.capacity() * size_of::<Part<Rec>>()
            + self.packed.capacity() * size_of::<Part<Packed>>()
            + self.runs.capacity() * size_of::<Run>();
        (raw + parts + self.raw_measures.capacity() * size_of::<i64>() + self.runs_bytes) as u64
    }

    /// Adds one contribution whose measures are already clamped.
    #[inline]
    pub(crate) fn add(&mut self, person: u64, cell: u32, measures: &[i64]) {
        if self.runs.is_empty() {
            if self.packs {
                self.packed = vec![Part::default(); PARTS];
            } else {
                self.wide = vec![Part::default(); PARTS];
            }
            self.runs = vec![Run::default(); PARTS];
        }
        let key = person_key(person);
        let p = (key >> (64 - PART_BITS)) as usize;
        if self.packs {
            self.packed[p].push(Packed((key << PART_BITS) | u64::from(cell)));
        } else {
            self.wide[p].push(Rec {
                key,
                cell,
                idx: self.raw as u32,
            });
            self.raw_measures
                .extend_from_slice(&measures[..self.measures]);
        }
        self.raw += 1;
        if self.raw >= COMPACT_AT {
            self.compact();
        }
    }

    /// Sorts the buffered contributions of every partition, sums them per pair and merges them
    /// into the partition's totals.
    fn compact(&mut self) {
        let m = self.measures;
        let mut scratch = Scratch::default();
        let mut merged = Run::default();
        self.runs_bytes = 0;
        for (p, run) in self.runs.iter_mut().enumerate() {
            let raw = if self.packs {
                scratch.sort_raw(&[(&self.packed[p], &[][..])], m);
                self.packed[p].release();
                !scratch.run.entries.is_empty()
            } else {
                scratch.sort_raw(&[(&self.wide[p], &self.raw_measures[..])], m);
                self.wide[p].release();
                !scratch.run.entries.is_empty()
            };
            if raw {
                run.merge_into(&scratch.run, m, &mut merged);
                std::mem::swap(run, &mut merged);
            }
            self.runs_bytes += run.bytes();
        }
        self.raw = 0;
        self.raw_measures.clear();
    }
}

/// Asks for the cache line after the end of `block` ahead of the partition's next writes
/// (contributions go to [`PARTS`] places at once, too many for the hardware to predict).
#[inline]
fn prefetch_ahead<T>(block: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of x86_64; a prefetch never faults and has no effect beyond the
        // cache, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(
                block
                    .as_ptr()
                    .wrapping_add(block.len())
                    .cast::<i8>()
                    .wrapping_add(64),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = block;
}

/// Sorts a few contributions by (person, cell) (insertion sort: the groups hold one or two
/// persons, mostly in one cell, so they are nearly sorted).
#[inline]
fn sort_group<T: Raw>(g: &mut [T]) {
    for i in 1..g.len() {
        let r = g[i];
        let kr = r.order();
        let mut j = i;
        while j > 0 && g[j - 1].order() > kr {
            g[j] = g[j - 1];
            j -= 1;
        }
        g[j] = r;
    }
}

/// Per-thread buffers for sorting one partition, reused from partition to partition.
#[derive(Default)]
struct Scratch {
    wide: Vec<Rec>,
    packed: Vec<Packed>,
    measures: Vec<i64>,
    starts: Vec<usize>,
    pos: Vec<usize>,
    pairs: Vec<Entry>,
    run: Run,
    merged: Run,
}

/// The sorting buffer of a kind of contribution.
trait ScratchOf: Raw {
    fn buffer(s: &mut Scratch) -> &mut Vec<Self>;
}

impl ScratchOf for Rec {
    fn buffer(s: &mut Scratch) -> &mut Vec<Self> {
        &mut s.wide
    }
}

impl ScratchOf for Packed {
    fn buffer(s: &mut Scratch) -> &mut Vec<Self> {
        &mut s.packed
    }
}

impl Scratch {
    /// Sorts the raw contributions of the given partitions (one per instance, each with its
    /// instance's measures) by (person, cell) and sums them per pair into `self.run`: one
    /// counting-sort pass on the next bits of the key into groups of a person or two, then
    /// tiny sorts, all within the cache.
    fn sort_raw<T: ScratchOf>(&mut self, sources: &[(&Part<T>, &[i64])], m: usize) {
        self.run.clear();
        let n: usize = sources.iter().map(|(p, _)| p.raw()).sum();
        if n == 0 {
            return;
        }
        let bits = (n / 2).max(1).ilog2().min(12);
        let shift = 64 - bits;
        let digit = |r: &T| {
            if bits == 0 {
                0
            } else {
                (r.radix() >> shift) as usize
            }
        };
        let groups = 1usize << bits;
        self.starts.clear();
        self.starts.resize(groups + 1, 0);
        for (part, _) in sources {
            for r in part.recs() {
                self.starts[digit(r) + 1] += 1;
            }
        }
        for g in 0..groups {
            self.starts[g + 1] += self.starts[g];
        }
        self.pos.clear();
        self.pos.extend_from_slice(&self.starts[..groups]);
        let mut recs = std::mem::take(T::buffer(self));
        if recs.len() < n {
            recs.resize(n, T::default());
        }
        if self.measures.len() < n * m {
            self.measures.resize(n * m, 0);
        }
        for (part, measures) in sources {
            for r in part.recs() {
                let g = digit(r);
                let p = self.pos[g];
                self.pos[g] = p + 1;
                if m == 0 {
                    recs[p] = *r;
                } else {
                    let src = r.fields().2 as usize * m;
                    self.measures[p * m..(p + 1) * m].copy_from_slice(&measures[src..src + m]);
                    recs[p] = r.with_idx(p as u32);
                }
            }
        }
        for g in 0..groups {
            let group = &mut recs[self.starts[g]..self.starts[g + 1]];
            if group.len() <= 64 {
                sort_group(group);
            } else {
                group.sort_unstable_by_key(T::order);
            }
        }
        if m == 0 {
            self.count_pairs(&recs[..n]);
        } else {
            for r in &recs[..n] {
                let (key, cell, idx) = r.fields();
                let src = idx as usize * m;
                self.run.push(
                    m,
                    (key, cell, 1),
                    self.measures[src..src + m].iter().map(|&v| i128::from(v)),
                );
            }
        }
        *T::buffer(self) = recs;
    }

    /// Counts the contributions of each pair of sorted `recs` (not empty) into `self.run`,
    /// without a branch per contribution: every one is written at the end of the output, which
    /// advances when its pair differs from the previous one.
    fn count_pairs<T: Raw>(&mut self, recs: &[T]) {
        if self.pairs.len() < recs.len() {
            self.pairs.resize(recs.len(), Entry::default());
        }
        let out = &mut self.pairs[..recs.len()];
        let mut j = 0;
        let mut prev = recs[0].order();
        let mut count = 0;
        for r in recs {
            let order = r.order();
            let new = order != prev;
            prev = order;
            j += usize::from(new);
            count = if new { 1 } else { count + 1 };
            let (key, cell, _) = r.fields();
            out[j] = Entry { key, cell, count };
        }
        self.run.entries.extend_from_slice(&out[..=j]);
    }

    /// The totals of partition `p` of every partial: the raw contributions sorted, then merged
    /// with the totals of earlier compactions. Left in `self.run`.
    fn partition(&mut self, partials: &[Partial], p: usize, m: usize) {
        let partials: Vec<&Partial> = partials.iter().filter(|x| !x.runs.is_empty()).collect();
        // Every partial of an aggregate keeps the same kind of contributions.
        if partials.first().is_some_and(|x| x.packs) {
            let sources: Vec<_> = partials.iter().map(|x| (&x.packed[p], &[][..])).collect();
            self.sort_raw(&sources, m);
        } else {
            let sources: Vec<_> = partials
                .iter()
                .map(|x| (&x.wide[p], x.raw_measures.as_slice()))
                .collect();
            self.sort_raw(&sources, m);
        }
        for x in partials {
            if !x.runs[p].entries.is_empty() {
                self.run.merge_into(&x.runs[p], m, &mut self.merged);
                std::mem::swap(&mut self.run, &mut self.merged);
            }
        }
    }
}

/// The per-person bounds of an aggregate and its measures' bounds.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    /// Cells of the aggregate.
    pub cells: usize,
    /// Cells kept per person (the lowest).
    pub cells_per_person: usize,
    /// Contributions counted per person and cell.
    pub rows_per_cell: u64,
    /// `[min, max]` of each measure, fixed point.
    pub measures: Vec<(i64, i64)>,
    /// Keep each cell's persons (for the differencing guard).
    pub members: bool,
}

impl Bounds {
    /// The bounds of a planned aggregate; `members`: keep each cell's persons.
    pub(crate) fn of(agg: &PlanAggregate, members: bool) -> Self {
        Bounds {
            cells: agg.cells as usize,
            cells_per_person: agg.max_cells_per_person as usize,
            rows_per_cell: u64::from(agg.max_rows_per_person_cell),
            measures: agg.measures.iter().map(|x| (x.lo, x.hi)).collect(),
            members,
        }
    }
}

/// The exact per-cell totals of an aggregate after per-person bounds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Totals {
    /// Contributions per cell (each person's clamped to the row bound).
    pub count: Vec<u64>,
    /// Distinct persons per cell.
    pub persons: Vec<u64>,
    /// Sum of each measure per cell (`cells × measures`, row-major).
    pub sums: Vec<i128>,
    /// Sum of the absolute values of the persons' sums, per cell and measure.
    pub abs: Vec<i128>,
    /// The largest absolute value of one person's sum, per cell and measure (dominance).
    pub top: Vec<i128>,
    /// The persons of each cell (their partition keys), when [`Bounds::members`] is set.
    pub members: Vec<Vec<u64>>,
    /// Contributions dropped by the cell bound.
    pub dropped: u64,
    /// Contributions beyond the row bound.
    pub clamped: u64,
}

impl Totals {
    fn new(b: &Bounds) -> Self {
        Totals {
            count: vec![0; b.cells],
            persons: vec![0; b.cells],
            sums: vec![0; b.cells * b.measures.len()],
            abs: vec![0; b.cells * b.measures.len()],
            top: vec![0; b.cells * b.measures.len()],
            members: if b.members {
                vec![Vec::new(); b.cells]
            } else {
                Vec::new()
            },
            dropped: 0,
            clamped: 0,
        }
    }

    /// Bytes of the totals of `b` before any member is listed.
    fn bytes(b: &Bounds) -> usize {
        let per_cell = 2 * size_of::<u64>()
            + 3 * b.measures.len() * size_of::<i128>()
            + if b.members { size_of::<Vec<u64>>() } else { 0 };
        size_of::<Totals>() + b.cells * per_cell
    }

    fn add(&mut self, other: &Totals) {
        let add = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.count, &other.count);
        add(&mut self.persons, &other.persons);
        for (x, y) in self.sums.iter_mut().zip(&other.sums) {
            *x += y;
        }
        for (x, y) in self.abs.iter_mut().zip(&other.abs) {
            *x += y;
        }
        for (x, y) in self.top.iter_mut().zip(&other.top) {
            *x = (*x).max(*y);
        }
        for (x, y) in self.members.iter_mut().zip(&other.members) {
            x.extend_from_slice(y);
        }
        self.dropped += other.dropped;
        self.clamped += other.clamped;
    }

    /// Applies the per-person bounds to a sorted run and adds it.
    fn tally_run(&mut self, run: &Run, b: &Bounds) {
        let m = b.measures.len();
        let mut person = None;
        let mut cells = 0usize;
        for (i, e) in run.entries.iter().enumerate() {
            if person != Some(e.key) {
                person = Some(e.key);
                cells = 0;
            }
            cells += 1;
            if cells > b.cells_per_person {
                self.dropped += e.count;
                continue;
            }
            let kept = e.count.min(b.rows_per_cell);
            self.clamped += e.count - kept;
            let cell = e.cell as usize;
            self.count[cell] += kept;
            self.persons[cell] += 1;
            if b.members {
                self.members[cell].push(e.key);
            }
            for (k, &(lo, hi)) in b.measures.iter().enumerate() {
                let s = run.sums[i * m + k];
                let kept = i128::from(kept);
                let s = s.clamp(i128::from(lo) * kept, i128::from(hi) * kept);
                self.sums[cell * m + k] += s;
                self.abs[cell * m + k] += s.abs();
                self.top[cell * m + k] = self.top[cell * m + k].max(s.abs());
            }
        }
    }
}

/// Tallies the partitions of every partial not yet taken from `next` by another thread.
fn tally_parts(b: &Bounds, partials: &[Partial], next: &AtomicUsize) -> Totals {
    let mut totals = Totals::new(b);
    let mut scratch = Scratch::default();
    loop {
        let p = next.fetch_add(1, Ordering::Relaxed);
        if p >= PARTS {
            return totals;
        }
        scratch.partition(partials, p, b.measures.len());
        totals.tally_run(&scratch.run, b);
    }
}

/// An upper bound of the bytes [`tally`] allocates for `partials` on `threads` threads: each
/// thread's totals and sorting buffers (sized by the largest partition, as each thread sorts
/// one partition at a time), and the member lists (one key per (person, cell) pair at most,
/// twice over for the growth of the lists and their merge across threads).
pub(crate) fn tally_bytes(b: &Bounds, partials: &[Partial], threads: usize) -> u64 {
    let threads = threads.clamp(1, PARTS);
    let m = b.measures.len();
    let held = |x: &Partial, p: usize| {
        let raw = if x.packs {
            x.packed.get(p).map_or(0, Part::raw)
        } else {
            x.wide.get(p).map_or(0, Part::raw)
        };
        (raw, x.runs.get(p).map_or(0, |r| r.entries.len()))
    };
    let (mut largest, mut pairs) = (0usize, 0usize);
    for p in 0..PARTS {
        let (raw, runs) = partials
            .iter()
            .map(|x| held(x, p))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        largest = largest.max(raw + runs);
        pairs += raw + runs;
    }
    // Per record: its raw form and measures, a counted pair, and the sorted and merged runs.
    let per_record =
        size_of::<Rec>() + m * size_of::<i64>() + size_of::<Entry>() + 2 * Run::entry_bytes(m);
    let members = if b.members {
        2 * pairs * size_of::<u64>()
    } else {
        0
    };
    (threads * (Totals::bytes(b) + largest * per_record) + members) as u64
}

/// Merges the partials of every instance exactly and applies the per-person bounds, on
/// `threads` threads (each takes partitions until none is left; the totals are exact integers,
/// so the result does not depend on `threads` or on how the rows were split).
pub(crate) fn tally(b: &Bounds, partials: &[Partial], threads: usize) -> Totals {
    let next = AtomicUsize::new(0);
    if threads <= 1 || partials.iter().all(|p| p.runs.is_empty()) {
        return tally_parts(b, partials, &next);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads.min(PARTS))
            .map(|_| s.spawn(|| tally_parts(b, partials, &next)))
            .collect();
        // The calling thread works too.
        let mut totals = tally_parts(b, partials, &next);
        for h in handles {
            totals.add(&h.join().expect("tally threads do not panic"));
        }
        totals
    })
}

/// One released (or suppressed) cell of an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellOutput {
    /// The labels of the cell's key, one per dimension.
    pub key: Vec<String>,
    /// True when the cell had fewer than k distinct persons (noisy under epsilon): its values
    /// are withheld.
    pub suppressed: bool,
    /// True when one person made up more than the platform's share of a measure's total in the
    /// cell (without noise): the sums and means are withheld, the counts released.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dominated: bool,
    /// Number of contributions (after per-person bounds, noised under epsilon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Number of distinct persons (noised under epsilon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persons: Option<i64>,
    /// Sum of each measure, as a decimal string.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sums: Vec<String>,
    /// Mean of each measure (sum / count), as a decimal string.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub means: Vec<String>,
}

/// The released table of one aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateOutput {
    /// Name of the aggregate.
    pub name: String,
    /// Names of the dimensions.
    pub dimensions: Vec<String>,
    /// Names of the measures.
    pub measures: Vec<String>,
    /// The threshold applied.
    pub k: u64,
    /// The epsilon spent on this aggregate, if noise was added.
    pub epsilon: Option<f64>,
    /// Every cell of the domain, in key order (suppressed cells included and marked).
    pub cells: Vec<CellOutput>,
}

impl AggregateOutput {
    /// Bytes the table holds on the heap (its cells and their strings).
    pub(crate) fn bytes(&self) -> u64 {
        let strings = |v: &[String]| size_of_val(v) + v.iter().map(String::capacity).sum::<usize>();
        let cells: usize = self
            .cells
            .iter()
            .map(|c| {
                size_of::<CellOutput>() + strings(&c.key) + strings(&c.sums) + strings(&c.means)
            })
            .sum();
        (cells + strings(&self.dimensions) + strings(&self.measures)) as u64
    }
}

/// Per-aggregate figures for the run report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateStats {
    /// Name of the aggregate.
    pub name: String,
    /// Contributions received.
    pub contributions: u64,
    /// Contributions dropped because the person had already reached `max_cells_per_person`.
    pub dropped_by_cell_bound: u64,
    /// Contributions beyond `max_rows_per_person_cell` (their count and sums were clamped).
    pub clamped_by_row_bound: u64,
    /// Cells released.
    pub cells_released: u64,
    /// Cells suppressed (fewer than k distinct persons).
    pub cells_suppressed: u64,
    /// Released cells whose sums and means were withheld by the dominance rule.
    pub cells_dominated: u64,
    /// Epsilon spent (0 without noise).
    pub epsilon_spent: f64,
}

/// Formats `v / 10^scale` exactly.
pub(crate) fn fixed(v: i128, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let p = 10i128.pow(scale);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let p = p as u128;
    format!("{sign}{}.{:0width$}", a / p, a % p, width = scale as usize)
}

/// `sum / count` rounded half away from zero to `scale + 2` digits, as a decimal string.
fn mean(sum: i128, count: i64, scale: u32) -> String {
    if count <= 0 {
        return "0".into();
    }
    let num = sum * 100;
    let c = i128::from(count);
    let q = num / c;
    let r = num % c;
    let q = if r.abs() * 2 >= c {
        q + num.signum()
    } else {
        q
    };
    fixed(q, scale + 2)
}

/// The persons of the cells an aggregate released without noise: `(cell, sorted partition
/// keys)` (a bijection of the pseudonyms), kept platform-side for the differencing guard.
pub type CellMembers = Vec<(u32, Vec<u64>)>;

/// Applies thresholds, dominance and noise to the exact totals of an aggregate ([`tally`]).
///
/// Without epsilon a cell is released when it has at least k distinct persons, and its sums
/// and means are withheld when one person's share of a measure's total (absolute values)
/// exceeds `dominance`. With epsilon every value gets exact discrete Laplace noise and the
/// threshold is applied to the *noisy* distinct count, so which cells are released is itself
/// covered by epsilon (post-processing over the closed, declared domain).
pub(crate) fn finalize(
    agg: &PlanAggregate,
    totals: Totals,
    dominance: f64,
    rng: &mut dyn RngCore,
) -> (AggregateOutput, AggregateStats, CellMembers) {
    let m = agg.measures.len();
    let cells = agg.cells as usize;
    let Totals {
        count,
        persons,
        sums,
        abs,
        top,
        mut members,
        dropped,
        clamped,
        ..
    } = totals;
    let mut out_cells = Vec::with_capacity(cells);
    let (mut released, mut suppressed, mut dominated) = (0u64, 0u64, 0u64);
    let mut kept_members = Vec::new();
    let clip = |v: i128| i64::try_from(v.max(0)).unwrap_or(i64::MAX);
    for cell in 0..cells {
        let key = cell_key(agg, cell);
        let mut n = i128::from(count[cell]);
        let mut p = i128::from(persons[cell]);
        let mut s: Vec<i128> = sums[cell * m..(cell + 1) * m].to_vec();
        if let Some(noise) = &agg.noise {
            p += discrete_laplace(rng, &noise.persons);
            n += discrete_laplace(rng, &noise.count);
            for (v, scale) in s.iter_mut().zip(&noise.sums) {
                *v += discrete_laplace(rng, scale);
            }
        }
        if p < i128::from(agg.k) {
            suppressed += 1;
            out_cells.push(CellOutput {
                key,
                suppressed: true,
                dominated: false,
                count: None,
                persons: None,
                sums: vec![],
                means: vec![],
            });
            continue;
        }
        released += 1;
        if let Some(cell_members) = members.get_mut(cell) {
            let mut v = std::mem::take(cell_members);
            v.sort_unstable();
            kept_members.push((cell as u32, v));
        }
        // Dominance: the largest person against the share of the cell's total.
        let share = |t: i128, x: i128| (x as f64) > dominance * (t as f64);
        let is_dominated =
            agg.noise.is_none() && (0..m).any(|k| share(abs[cell * m + k], top[cell * m + k]));
        dominated += u64::from(is_dominated);
        let n = clip(n);
        let (sums_out, means_out) = if is_dominated {
            (vec![], vec![])
        } else {
            (
                s.iter()
                    .zip(&agg.measures)
                    .map(|(v, x)| fixed(*v, x.scale))
                    .collect(),
                s.iter()
                    .zip(&agg.measures)
                    .map(|(v, x)| mean(*v, n, x.scale))
                    .collect(),
            )
        };
        out_cells.push(CellOutput {
            key,
            suppressed: false,
            dominated: is_dominated,
            count: Some(n),
            persons: Some(clip(p)),
            sums: sums_out,
            means: means_out,
        });
    }
    let epsilon = agg.noise.as_ref().map(|n| n.epsilon);
    let stats = AggregateStats {
        name: agg.name.clone(),
        contributions: count.iter().sum::<u64>() + dropped + clamped,
        dropped_by_cell_bound: dropped,
        clamped_by_row_bound: clamped,
        cells_released: released,
        cells_suppressed: suppressed,
        cells_dominated: dominated,
        epsilon_spent: epsilon.unwrap_or(0.0),
    };
    let output = AggregateOutput {
        name: agg.name.clone(),
        dimensions: agg.dims.iter().map(|d| d.name.clone()).collect(),
        measures: agg.measures.iter().map(|x| x.name.clone()).collect(),
        k: agg.k,
        epsilon,
        cells: out_cells,
    };
    (output, stats, kept_members)
}

/// The labels of cell number `cell` (mixed radix, first dimension most significant).
fn cell_key(agg: &PlanAggregate, mut cell: usize) -> Vec<String> {
    let mut key = vec![String::new(); agg.dims.len()];
    for (i, d) in agg.dims.iter().enumerate().rev() {
        let n = d.labels.len();
        key[i] = d.labels[cell % n].clone();
        cell /= n;
    }
    key
}

/// The released output of a run: one table per aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    /// Name of the job.
    pub job: String,
    /// ABI version.
    pub abi: u32,
    /// The tables.
    pub aggregates: Vec<AggregateOutput>,
}

impl Output {
    /// The output as pretty JSON (deterministic: same input, same bytes, without noise).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("output serializes")
    }

    /// The table of aggregate `i` as CSV: one column per dimension, then `suppressed`, `count`,
    /// `persons`, `sum_<measure>` and `mean_<measure>`; suppressed cells have empty values.
    pub fn to_csv(&self, i: usize) -> Option<String> {
        let a = self.aggregates.get(i)?;
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let mut header: Vec<String> = a.dimensions.clone();
        header.extend(["suppressed", "dominated", "count", "persons"].map(String::from));
        header.extend(a.measures.iter().map(|m| format!("sum_{m}")));
        header.extend(a.measures.iter().map(|m| format!("mean_{m}")));
        w.write_record(&header).ok()?;
        for c in &a.cells {
            let mut row = c.key.clone();
            row.push(c.suppressed.to_string());
            row.push(c.dominated.to_string());
            let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
            row.push(opt(c.count));
            row.push(opt(c.persons));
            if c.suppressed || c.dominated {
                row.extend(std::iter::repeat_n(String::new(), 2 * a.measures.len()));
            } else {
                row.extend(c.sums.iter().cloned());
                row.extend(c.means.iter().cloned());
            }
            w.write_record(&row).ok()?;
        }
        String::from_utf8(w.into_inner().ok()?).ok()
    }

    /// All tables as CSV, each preceded by a `# aggregate <name>` line.
    pub fn to_csv_all(&self) -> String {
        let mut s = String::new();
        for (i, a) in self.aggregates.iter().enumerate() {
            let _ = writeln!(s, "# aggregate {}", a.name);
            s.push_str(&self.to_csv(i).unwrap_or_default());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_formatting() {
        assert_eq!(fixed(12345, 2), "123.45");
        assert_eq!(fixed(-5, 2), "-0.05");
        assert_eq!(fixed(7, 0), "7");
        assert_eq!(mean(1000, 3, 2), "3.3333");
        assert_eq!(mean(-1000, 3, 0), "-333.33");
        assert_eq!(mean(2, 3, 0), "0.67");
    }

    /// A straightforward reference: a BTreeMap of (person, cell) totals, then the bounds; and
    /// the number of (person, cell) pairs.
    fn reference(b: &Bounds, contributions: &[(u64, u32, i64)]) -> (Totals, usize) {
        use std::collections::BTreeMap;
        let mut pairs: BTreeMap<(u64, u32), (u64, i128)> = BTreeMap::new();
        for &(p, c, v) in contributions {
            let e = pairs.entry((p, c)).or_default();
            e.0 += 1;
            e.1 += i128::from(v);
        }
        let mut t = Totals::new(b);
        let n_pairs = pairs.len();
        let mut last = None;
        let mut cells = 0;
        for ((p, c), (n, s)) in pairs {
            if last != Some(p) {
                last = Some(p);
                cells = 0;
            }
            cells += 1;
            if cells > b.cells_per_person {
                t.dropped += n;
                continue;
            }
            let kept = n.min(b.rows_per_cell);
            t.clamped += n - kept;
            t.count[c as usize] += kept;
            t.persons[c as usize] += 1;
            if let Some(&(lo, hi)) = b.measures.first() {
                let k = i128::from(kept);
                let s = s.clamp(i128::from(lo) * k, i128::from(hi) * k);
                t.sums[c as usize] += s;
                t.abs[c as usize] += s.abs();
                t.top[c as usize] = t.top[c as usize].max(s.abs());
            }
        }
        (t, n_pairs)
    }

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Partials merge exactly: however the contributions are split over instances, compacted
    /// or not, and however many threads tally them, the totals are those of the reference.
    #[test]
    fn tally_is_exact_and_split_invariant() {
        // With a measure (wide contributions), and without (packed into one word).
        for measures in [vec![(0, 600)], vec![]] {
            tally_case(Bounds {
                cells: 7,
                cells_per_person: 2,
                rows_per_cell: 3,
                measures,
                members: false,
            });
        }
    }

    fn tally_case(b: Bounds) {
        let m = b.measures.len();
        let mut x = 12345u64;
        for persons in [37u64, 20_000] {
            let contributions: Vec<(u64, u32, i64)> = (0..60_000)
                .map(|_| {
                    let r = xorshift(&mut x);
                    // Small ids (all in one partition) and pseudonym-like ones.
                    let p = if persons < 100 {
                        r % persons
                    } else {
                        (r % persons).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    };
                    (p, (r >> 40) as u32 % 7, ((r >> 20) % 1000).min(600) as i64)
                })
                .collect();
            let (expected, pairs) = reference(&b, &contributions);
            let mut all = Partial::new(m, 7);
            let mut split = [Partial::new(m, 7), Partial::new(m, 7), Partial::new(m, 7)];
            for (i, &(p, c, v)) in contributions.iter().enumerate() {
                all.add(p, c, &[v][..m]);
                split[i % 3].add(p, c, &[v][..m]);
                if i == 25_000 {
                    split[1].compact();
                }
            }
            assert_eq!(tally(&b, std::slice::from_ref(&all), 1), expected);
            for threads in [1, 2, 5] {
                assert_eq!(tally(&b, &split, threads), expected);
            }
            let before = all.bytes();
            all.compact();
            let runs: usize = all.runs.iter().map(|r| r.entries.len()).sum();
            assert_eq!(runs, pairs);
            // Compaction frees the raw blocks; the bound covers the runs' capacity.
            let held: usize = all.runs.iter().map(Run::bytes).sum();
            assert!(all.bytes() >= held as u64 && all.bytes() < before);
            assert!(tally_bytes(&b, std::slice::from_ref(&all), 2) > 0);
            assert_eq!(tally(&b, &[all], 2), expected);
        }
    }
}
