//! Host-side aggregation: partial accumulators per instance, exact merge, per-person bounds,
//! k-thresholds, optional differential-privacy noise, and the released output (JSON and CSV).

use std::fmt::Write as _;

use rand::{Rng, RngCore};
use serde::Serialize;

use crate::manifest::PlanAggregate;

/// The running totals of one (person, cell) pair.
#[derive(Debug, Clone, Copy)]
struct Entry {
    person: u64,
    cell: u32,
    count: u64,
}

/// One raw contribution waiting to be compacted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rec {
    person: u64,
    cell: u32,
    idx: u32,
}

impl Rec {
    /// A contribution of `person` to `cell`.
    pub(crate) fn new(person: u64, cell: u32) -> Self {
        Rec {
            person,
            cell,
            idx: 0,
        }
    }

    /// The pair (person, cell).
    pub(crate) fn key(&self) -> (u64, u32) {
        (self.person, self.cell)
    }
}

/// An empty vector with room for `n` elements, backed by transparent huge pages when large.
///
/// The radix scatter writes to a thousand places at once and would otherwise miss the TLB on
/// most writes, and 4 KiB page faults dominate the cost of fresh buffers. Only the touched part
/// of the reservation becomes resident.
pub(crate) fn big_vec<T>(n: usize) -> Vec<T> {
    let v = Vec::with_capacity(n);
    advise_huge_pages(&v);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &Vec<T>) {
    // madvise(2) from the C library the standard library already links.
    unsafe extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    const MADV_HUGEPAGE: i32 = 14;
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * size_of::<T>();
    if bytes < 4 * HUGE {
        return;
    }
    let begin = v.as_ptr() as usize;
    let start = begin.next_multiple_of(HUGE);
    let end = (begin + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: the range lies inside the allocation `v` owns; MADV_HUGEPAGE only changes how
        // the kernel backs those pages, never their contents or validity. Failure is harmless.
        unsafe {
            madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &Vec<T>) {}

/// Distributes `src` into `dst` by the digit `(person >> shift) & (2^bits - 1)` (stable
/// counting sort); returns the start of every bucket in `dst` (2^bits + 1 offsets).
fn scatter(src: &[Rec], dst: &mut [Rec], shift: u32, bits: u32, starts: &mut Vec<usize>) {
    let mask = (1u64 << bits) - 1;
    let buckets = 1usize << bits;
    starts.clear();
    starts.resize(buckets + 1, 0);
    for r in src {
        starts[((r.person >> shift) & mask) as usize + 1] += 1;
    }
    for b in 0..buckets {
        starts[b + 1] += starts[b];
    }
    let mut pos = starts[..buckets].to_vec();
    for r in src {
        let b = ((r.person >> shift) & mask) as usize;
        dst[pos[b]] = *r;
        pos[b] += 1;
    }
}

/// Sorts contributions by (person, cell): two most-significant-digit radix passes on the high
/// bits of the (uniformly distributed) pseudonym, the second one per bucket while it is in
/// cache, then tiny sorts of the remaining groups.
pub(crate) fn sort_recs(v: &mut [Rec]) {
    let n = v.len();
    if n < 4096 {
        v.sort_unstable_by_key(Rec::key);
        return;
    }
    let bits1 = (n / 2048).ilog2().clamp(1, 11);
    let mut out = big_vec(n);
    out.resize(n, Rec::default());
    let mut starts = Vec::new();
    scatter(v, &mut out, 64 - bits1, bits1, &mut starts);
    let mut sub = Vec::new();
    for b in 0..(1usize << bits1) {
        let (s, e) = (starts[b], starts[b + 1]);
        let (src, dst) = (&out[s..e], &mut v[s..e]);
        if src.len() < 64 {
            dst.copy_from_slice(src);
            dst.sort_unstable_by_key(Rec::key);
            continue;
        }
        let bits2 = (src.len() / 4).ilog2().clamp(1, 12);
        scatter(src, dst, 64 - bits1 - bits2, bits2, &mut sub);
        for g in 0..(1usize << bits2) {
            dst[sub[g]..sub[g + 1]].sort_unstable_by_key(Rec::key);
        }
    }
}

/// Raw contributions are buffered and compacted (sorted and summed per pair) when the buffer
/// holds this many, so memory stays bounded by the number of distinct pairs.
const COMPACT_AT: usize = 1 << 22;

/// Contributions received by one instance for one aggregate, kept per (person, cell) so that
/// partials merge exactly and per-person bounds apply independently of the split.
#[derive(Debug, Clone)]
pub(crate) struct Partial {
    measures: usize,
    buf: Vec<Rec>,
    buf_measures: Vec<i64>,
    /// Compacted totals, sorted by (person, cell), one entry per pair.
    entries: Vec<Entry>,
    sums: Vec<i128>,
}

impl Partial {
    /// An empty partial for an aggregate with `measures` measures.
    pub(crate) fn new(measures: usize) -> Self {
        Partial {
            measures,
            buf: Vec::new(),
            buf_measures: Vec::new(),
            entries: Vec::new(),
            sums: Vec::new(),
        }
    }

    /// Number of compacted (person, cell) pairs held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds one contribution whose measures are already clamped.
    #[inline]
    pub(crate) fn add(&mut self, person: u64, cell: u32, measures: &[i64]) {
        if self.buf.capacity() == 0 {
            // Reserved once: the buffer never grows by copying (pages are touched on use).
            self.buf = big_vec(COMPACT_AT);
            self.buf_measures = big_vec(COMPACT_AT * self.measures);
        }
        let idx = self.buf.len() as u32;
        self.buf.push(Rec { person, cell, idx });
        if self.measures > 0 {
            self.buf_measures
                .extend_from_slice(&measures[..self.measures]);
        }
        if self.buf.len() >= COMPACT_AT {
            self.compact();
        }
    }

    /// Sorts the buffered contributions, sums them per pair and merges them into the totals.
    pub(crate) fn compact(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let m = self.measures;
        let mut buf = std::mem::take(&mut self.buf);
        sort_recs(&mut buf);
        let mut entries: Vec<Entry> = big_vec(buf.len());
        let mut sums: Vec<i128> = big_vec(buf.len() * m);
        for r in &buf {
            match entries.last_mut() {
                Some(e) if e.person == r.person && e.cell == r.cell => e.count += 1,
                _ => {
                    entries.push(Entry {
                        person: r.person,
                        cell: r.cell,
                        count: 1,
                    });
                    sums.extend(std::iter::repeat_n(0, m));
                }
            }
            if m > 0 {
                let base = sums.len() - m;
                let src = r.idx as usize * m;
                for k in 0..m {
                    sums[base + k] += i128::from(self.buf_measures[src + k]);
                }
            }
        }
        buf.clear();
        self.buf = buf;
        self.buf_measures.clear();
        entries.shrink_to_fit();
        sums.shrink_to_fit();
        self.merge_sorted(entries, sums);
    }

    fn merge_sorted(&mut self, entries: Vec<Entry>, sums: Vec<i128>) {
        if self.entries.is_empty() {
            self.entries = entries;
            self.sums = sums;
            return;
        }
        let m = self.measures;
        let (a, sa) = (
            std::mem::take(&mut self.entries),
            std::mem::take(&mut self.sums),
        );
        let mut out = big_vec(a.len() + entries.len());
        let mut out_sums = big_vec(sa.len() + sums.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < entries.len() {
            let take_a = j >= entries.len()
                || (i < a.len()
                    && (a[i].person, a[i].cell) <= (entries[j].person, entries[j].cell));
            let take_b = i >= a.len()
                || (j < entries.len()
                    && (entries[j].person, entries[j].cell) <= (a[i].person, a[i].cell));
            let mut e = Entry {
                person: 0,
                cell: 0,
                count: 0,
            };
            let base = out_sums.len();
            out_sums.extend(std::iter::repeat_n(0i128, m));
            if take_a {
                e = a[i];
                for k in 0..m {
                    out_sums[base + k] += sa[i * m + k];
                }
                i += 1;
            }
            if take_b {
                let b = entries[j];
                if take_a {
                    e.count += b.count;
                } else {
                    e = b;
                }
                for k in 0..m {
                    out_sums[base + k] += sums[j * m + k];
                }
                j += 1;
            }
            out.push(e);
        }
        self.entries = out;
        self.sums = out_sums;
    }

    /// Adds the totals of `other` into `self` (exact, order-independent).
    pub(crate) fn merge(&mut self, mut other: Partial) {
        self.compact();
        other.compact();
        self.merge_sorted(other.entries, other.sums);
    }
}

/// One released (or suppressed) cell of an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellOutput {
    /// The labels of the cell's key, one per dimension.
    pub key: Vec<String>,
    /// True when the cell had fewer than k distinct persons: its values are withheld.
    pub suppressed: bool,
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

/// Draws from the discrete Laplace distribution with P(x) ∝ exp(-|x| / scale), as the
/// difference of two geometric variables (`scale` > 0).
pub fn discrete_laplace(rng: &mut dyn RngCore, scale: f64) -> i64 {
    let q = (-1.0 / scale).exp();
    let geometric = |rng: &mut dyn RngCore| -> i64 {
        // Number of failures before the first success, success probability 1 - q.
        let u: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]
        let g = (u.ln() / q.ln()).floor();
        if g.is_finite() { g.min(1e15) as i64 } else { 0 }
    };
    geometric(rng) - geometric(rng)
}

/// Applies per-person bounds, thresholds and noise to the merged partial of an aggregate.
pub(crate) fn finalize(
    agg: &PlanAggregate,
    mut partial: Partial,
    contributions: u64,
    rng: &mut dyn RngCore,
) -> (AggregateOutput, AggregateStats) {
    let m = partial.measures;
    let cells = agg.cells as usize;
    let l = agg.max_cells_per_person as usize;
    let c = u64::from(agg.max_rows_per_person_cell);
    let mut count = vec![0u64; cells];
    let mut persons = vec![0u64; cells];
    let mut sums = vec![0i128; cells * m];
    partial.compact();
    let mut dropped = 0u64;
    let mut clamped = 0u64;
    let mut run_person = None;
    let mut run_len = 0usize;
    for (i, &e) in partial.entries.iter().enumerate() {
        if run_person != Some(e.person) {
            run_person = Some(e.person);
            run_len = 0;
        }
        run_len += 1;
        if run_len > l {
            dropped += e.count;
            continue;
        }
        let kept = e.count.min(c);
        clamped += e.count - kept;
        let cell = e.cell as usize;
        count[cell] += kept;
        persons[cell] += 1;
        for (k, meas) in agg.measures.iter().enumerate() {
            let s = partial.sums[i * m + k];
            let lo = i128::from(meas.lo) * i128::from(kept);
            let hi = i128::from(meas.hi) * i128::from(kept);
            sums[cell * m + k] += s.clamp(lo, hi);
        }
    }
    let noise = agg.epsilon.map(|eps| {
        // The budget is split equally between the count, the distinct persons and each sum.
        let share = eps / (2 + m) as f64;
        let lf = l as f64;
        let cf = c as f64;
        let count_scale = lf * cf / share;
        let persons_scale = lf / share;
        let sum_scales: Vec<f64> = agg
            .measures
            .iter()
            .map(|x| lf * cf * (x.lo.unsigned_abs().max(x.hi.unsigned_abs()).max(1)) as f64 / share)
            .collect();
        (count_scale, persons_scale, sum_scales)
    });
    let mut out_cells = Vec::with_capacity(cells);
    let (mut released, mut suppressed) = (0u64, 0u64);
    for cell in 0..cells {
        let key = cell_key(agg, cell);
        if persons[cell] < agg.k {
            suppressed += 1;
            out_cells.push(CellOutput {
                key,
                suppressed: true,
                count: None,
                persons: None,
                sums: vec![],
                means: vec![],
            });
            continue;
        }
        released += 1;
        let mut n = count[cell] as i64;
        let mut p = persons[cell] as i64;
        let mut s: Vec<i128> = sums[cell * m..(cell + 1) * m].to_vec();
        if let Some((cs, ps, ss)) = &noise {
            n = (n + discrete_laplace(rng, *cs)).max(0);
            p = (p + discrete_laplace(rng, *ps)).max(0);
            for (v, scale) in s.iter_mut().zip(ss) {
                *v += i128::from(discrete_laplace(rng, *scale));
            }
        }
        out_cells.push(CellOutput {
            key,
            suppressed: false,
            count: Some(n),
            persons: Some(p),
            sums: s
                .iter()
                .zip(&agg.measures)
                .map(|(v, x)| fixed(*v, x.scale))
                .collect(),
            means: s
                .iter()
                .zip(&agg.measures)
                .map(|(v, x)| mean(*v, n, x.scale))
                .collect(),
        });
    }
    let stats = AggregateStats {
        name: agg.name.clone(),
        contributions,
        dropped_by_cell_bound: dropped,
        clamped_by_row_bound: clamped,
        cells_released: released,
        cells_suppressed: suppressed,
        epsilon_spent: agg.epsilon.unwrap_or(0.0),
    };
    let output = AggregateOutput {
        name: agg.name.clone(),
        dimensions: agg.dims.iter().map(|d| d.name.clone()).collect(),
        measures: agg.measures.iter().map(|x| x.name.clone()).collect(),
        k: agg.k,
        epsilon: agg.epsilon,
        cells: out_cells,
    };
    (output, stats)
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
        header.extend(["suppressed", "count", "persons"].map(String::from));
        header.extend(a.measures.iter().map(|m| format!("sum_{m}")));
        header.extend(a.measures.iter().map(|m| format!("mean_{m}")));
        w.write_record(&header).ok()?;
        for c in &a.cells {
            let mut row = c.key.clone();
            row.push(c.suppressed.to_string());
            let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
            row.push(opt(c.count));
            row.push(opt(c.persons));
            if c.suppressed {
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

    #[test]
    fn merge_is_exact() {
        let mut a = Partial::new(1);
        let mut b = Partial::new(1);
        let mut all = Partial::new(1);
        for i in 0..1000u64 {
            let (p, c, v) = (i % 37, (i % 5) as u32, (i * 7919 % 1000) as i64);
            if i % 2 == 0 {
                a.add(p, c, &[v])
            } else {
                b.add(p, c, &[v])
            }
            all.add(p, c, &[v]);
        }
        a.merge(b);
        all.compact();
        let norm = |p: &Partial| {
            let mut v: Vec<_> = p
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.person, e.cell, e.count, p.sums[i]))
                .collect();
            v.sort();
            v
        };
        assert_eq!(norm(&a), norm(&all));
    }

    #[test]
    fn radix_sort_orders_by_person_then_cell() {
        let mut x = 12345u64;
        let mut v: Vec<Rec> = (0..50_000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                Rec {
                    person: (x % 20_000).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    cell: (x % 7) as u32,
                    idx: i,
                }
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_by_key(Rec::key);
        sort_recs(&mut v);
        assert_eq!(
            v.iter().map(Rec::key).collect::<Vec<_>>(),
            expected.iter().map(Rec::key).collect::<Vec<_>>()
        );
    }

    /// The noise has mean 0 and the variance of the discrete Laplace distribution
    /// (2q / (1 - q)^2 with q = exp(-1/scale)), and its histogram fits the law (chi-square).
    #[test]
    fn discrete_laplace_distribution() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let scale = 3.0;
        let n = 200_000;
        let xs: Vec<i64> = (0..n).map(|_| discrete_laplace(&mut rng, scale)).collect();
        let q: f64 = (-1.0f64 / scale).exp();
        let var = 2.0 * q / (1.0 - q).powi(2);
        let mean = xs.iter().sum::<i64>() as f64 / n as f64;
        let emp_var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 5.0 * (var / n as f64).sqrt(), "mean {mean}");
        assert!(
            (emp_var / var - 1.0).abs() < 0.03,
            "variance {emp_var} vs {var}"
        );
        // Chi-square over the bins -10..=10 plus two tails.
        let p = |x: i64| (1.0 - q) / (1.0 + q) * q.powi(x.abs() as i32);
        let mut chi = 0.0;
        for x in -10..=10 {
            let obs = xs.iter().filter(|&&v| v == x).count() as f64;
            let exp = p(x) * n as f64;
            chi += (obs - exp).powi(2) / exp;
        }
        let tail: f64 = 1.0 - (-10..=10).map(p).sum::<f64>();
        let obs_tail = xs.iter().filter(|&&v| v.abs() > 10).count() as f64;
        chi += (obs_tail - tail * n as f64).powi(2) / (tail * n as f64);
        // 21 degrees of freedom: the 99.9% quantile is about 46.8.
        assert!(chi < 46.8, "chi-square {chi}");
    }
}
