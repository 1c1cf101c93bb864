//! `dataop bench sandbox`: example (a) in the sandbox with every limit on, against a plain
//! native Rust loop and an SQLite `GROUP BY` over the same columns, start latency from a cached
//! compiled module, the run on 2 instances against 1, and the cost of the platform's
//! differencing guard for the run's release against 100 earlier releases. Each figure is
//! printed on its own line beside its target and the baselines it was computed from
//! ([`print_figure`]), then all of them as one JSON object.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxBuildHasher;
use serde::Serialize;

use crate::aggregate::{Bounds, CellMembers, Partial, tally};
use crate::differencing;
use crate::manifest::{Limits, Manifest};
use crate::runtime::{RunOptions, Runtime};
use crate::source::{DatasetInput, MemColumn, MemTable, TableSource};

/// The WAT source of example (a), built into the binary so the benchmark needs no compiler.
pub const EXAMPLE_A_WAT: &str = include_str!("../guest/examples/a_visits_65plus.wat");
/// The manifest of example (a).
pub const EXAMPLE_A_MANIFEST: &str = include_str!("../guest/examples/a_visits_65plus.toml");

/// The targets for example (a) under ABI v2 with every limit on.
pub mod targets {
    /// Sandbox throughput over the native loop's, at least.
    pub const VS_NATIVE: f64 = 0.6;
    /// Sandbox throughput over SQLite `GROUP BY`'s, at least.
    pub const VS_SQLITE: f64 = 20.0;
    /// Median start of a job from a compiled module, in µs, below.
    pub const START_P50_US: f64 = 100.0;
    /// Throughput of 2 instances over 1, at least.
    pub const TWO_INSTANCES: f64 = 1.6;
}

/// What a figure must reach to meet its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At least this value.
    AtLeast(f64),
    /// Strictly below this value.
    Below(f64),
}

impl Target {
    /// Whether `value` meets the target.
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::Below(t) => value < t,
        }
    }
}

/// Prints one figure on its own line: `name: figure (target) verdict — baseline`, the figure
/// and the target in `unit` (`×` for ratios), the verdict `met` or `MISSED`, and the baselines
/// it was computed from in the same run. Returns whether the target was met.
pub fn print_figure(
    out: &mut dyn Write,
    name: &str,
    figure: f64,
    unit: &str,
    target: Target,
    baseline: &str,
) -> std::io::Result<bool> {
    let (sign, t) = match target {
        Target::AtLeast(t) => ("≥", t),
        Target::Below(t) => ("<", t),
    };
    let met = target.met(figure);
    let verdict = if met { "met" } else { "MISSED" };
    let figure = if figure >= 100.0 {
        format!("{figure:.0}")
    } else {
        format!("{figure:.2}")
    };
    writeln!(
        out,
        "{name}: {figure}{unit} (target {sign} {t}{unit}) {verdict} — {baseline}"
    )?;
    Ok(met)
}

/// The figures of one benchmark run (the last line of the output, as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct BenchFigures {
    /// Rows scanned.
    pub rows: u64,
    /// Single-instance sandbox throughput (whole run: instantiate, scan, aggregate, release).
    pub sandbox_rows_per_s: f64,
    /// The same aggregates computed by a plain native Rust loop.
    pub native_rows_per_s: f64,
    /// The same aggregates by a native loop with a hash map instead of a sort.
    pub native_hashmap_rows_per_s: f64,
    /// The same aggregates as an SQLite `GROUP BY` (data loaded beforehand, query only).
    pub sqlite_rows_per_s: f64,
    /// sandbox / native.
    pub ratio_vs_native: f64,
    /// sandbox / SQLite.
    pub ratio_vs_sqlite: f64,
    /// Start of a job from a cached compiled module, median, in µs.
    pub start_p50_us: f64,
    /// Start of a job from a cached compiled module, 99th percentile, in µs.
    pub start_p99_us: f64,
    /// Throughput of the run split over 2 instances.
    pub two_instances_rows_per_s: f64,
    /// 2 instances / 1.
    pub two_instances_speedup: f64,
    /// The single-instance run keeping the persons of its released cells, in ms.
    pub run_with_members_ms: f64,
    /// The differencing guard for its release against [`EARLIER_RELEASES`] earlier releases of
    /// refreshed data (every earlier cell in the size window), in ms.
    pub guard_ms: f64,
    /// The same against earlier releases that differ only in their largest keys (every merge
    /// runs to the end), in ms.
    pub guard_worst_ms: f64,
    /// Whether every figure met its target ([`targets`]).
    pub targets_met: bool,
}

/// Earlier releases the differencing guard's cost is measured against.
pub const EARLIER_RELEASES: usize = 100;
/// The target of the guard's cost, as a share of the run.
pub const GUARD_TARGET: f64 = 0.20;

fn col<'a>(t: &'a MemTable, name: &str) -> &'a MemColumn {
    let i = t
        .columns()
        .iter()
        .position(|c| c.name == name)
        .expect("demo column");
    t.column(i).expect("demo column")
}

/// Example (a) as a plain native loop: (count, distinct persons) per district of visits by
/// persons aged 65+, each person kept in their lowest district (as the host does), grouping
/// pairs with the host's primitive (partitioned by person, each partition sorted in cache)
/// without the sandbox.
pub fn native_example_a(t: &MemTable) -> Vec<(u64, u64)> {
    let (MemColumn::U64(person), MemColumn::I64(age), MemColumn::U32(district)) =
        (col(t, "person_id"), col(t, "age"), col(t, "district"))
    else {
        return Vec::new();
    };
    // Branch-free filtering in chunks, as the guest does.
    let mut pairs = Partial::new(0, crate::demo::DISTRICTS.len() as u64);
    let mut chunk = vec![(0u64, 0u32); 4096];
    for start in (0..person.len()).step_by(4096) {
        let end = (start + 4096).min(person.len());
        let mut k = 0;
        for i in start..end {
            chunk[k] = (person[i], district[i]);
            k += usize::from(age[i] >= 65);
        }
        for &(p, d) in &chunk[..k] {
            pairs.add(p, d, &[]);
        }
    }
    let bounds = Bounds {
        cells: crate::demo::DISTRICTS.len(),
        cells_per_person: 1,
        rows_per_cell: 1000,
        measures: Vec::new(),
        members: false,
    };
    let totals = tally(&bounds, &[pairs], 1);
    totals.count.into_iter().zip(totals.persons).collect()
}

/// The same as [`native_example_a`] with a hash map of (person, district) pairs instead of a
/// sort (the straightforward native program).
pub fn native_hashmap_example_a(t: &MemTable) -> Vec<(u64, u64)> {
    let (MemColumn::U64(person), MemColumn::I64(age), MemColumn::U32(district)) =
        (col(t, "person_id"), col(t, "age"), col(t, "district"))
    else {
        return Vec::new();
    };
    let mut pairs: HashMap<(u64, u32), u64, FxBuildHasher> = HashMap::with_hasher(FxBuildHasher);
    for i in 0..person.len() {
        if age[i] >= 65 {
            *pairs.entry((person[i], district[i])).or_insert(0) += 1;
        }
    }
    let mut v: Vec<((u64, u32), u64)> = pairs.into_iter().collect();
    v.sort_unstable_by_key(|e| e.0);
    let mut cells = vec![(0u64, 0u64); crate::demo::DISTRICTS.len()];
    let mut last = None;
    for ((p, d), n) in v {
        if last == Some(p) {
            continue;
        }
        last = Some(p);
        let c = &mut cells[d as usize];
        c.0 += n.min(1000);
        c.1 += 1;
    }
    cells
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Runs the benchmark on `rows` synthetic rows (each time the best of three runs after a
/// warm-up), printing progress lines and each figure beside its target to `out` and, last, one
/// JSON object with the figures.
pub fn bench_sandbox(rows: usize, out: &mut dyn Write) -> anyhow::Result<BenchFigures> {
    let t = Instant::now();
    let table = Arc::new(crate::demo::outpatients(
        rows,
        (rows as u64 / 10).max(1),
        42,
    ));
    writeln!(
        out,
        "generated {rows} rows in {:.2} s",
        t.elapsed().as_secs_f64()
    )?;
    let manifest = Manifest::from_toml(EXAMPLE_A_MANIFEST).map_err(anyhow::Error::msg)?;
    let cache = std::env::temp_dir().join("dataop-sandbox-bench-cache");
    let rt = Runtime::new(Limits::default(), Some((&cache, b"dataop bench")))?;
    let module = rt
        .load(EXAMPLE_A_WAT.as_bytes())
        .map_err(|o| anyhow::anyhow!("{o}"))?;
    let inputs = [DatasetInput {
        name: "outpatients".into(),
        source: table.clone(),
        allowed_columns: vec!["age".into(), "district".into()],
        grade: 1,
    }];
    let single = RunOptions {
        instances: 1,
        ..RunOptions::default()
    };
    // Warm-up, then the best of three.
    let warm = rt.run(&module, &manifest, &inputs, &single);
    anyhow::ensure!(
        warm.report.outcome.is_finished(),
        "sandbox run failed: {}",
        warm.report.outcome
    );
    let best = |f: &mut dyn FnMut() -> Duration| (0..3).map(|_| f()).min().unwrap_or_default();
    let sandbox = best(&mut || {
        let t = Instant::now();
        let r = rt.run(&module, &manifest, &inputs, &single);
        let d = t.elapsed();
        assert!(r.report.outcome.is_finished());
        d
    });
    let output = warm.output.expect("finished runs have output");
    let native_cells = native_example_a(&table);
    for (cell, (n, p)) in output.aggregates[0].cells.iter().zip(&native_cells) {
        if !cell.suppressed {
            anyhow::ensure!(
                cell.count == Some(*n as i64) && cell.persons == Some(*p as i64),
                "sandbox and native differ"
            );
        }
    }
    let native = best(&mut || {
        let t = Instant::now();
        std::hint::black_box(native_example_a(std::hint::black_box(&table)));
        t.elapsed()
    });
    anyhow::ensure!(
        native_hashmap_example_a(&table) == native_cells,
        "native variants differ"
    );
    let native_hash = best(&mut || {
        let t = Instant::now();
        std::hint::black_box(native_hashmap_example_a(std::hint::black_box(&table)));
        t.elapsed()
    });
    let sqlite = sqlite_example_a(&table, out)?;
    let mut starts = Vec::with_capacity(1000);
    for _ in 0..1000 {
        starts.push(
            rt.start_latency(&module, &manifest, &inputs)
                .map_err(|o| anyhow::anyhow!("{o}"))?,
        );
    }
    starts.sort();
    let two_opts = RunOptions {
        instances: 2,
        ..RunOptions::default()
    };
    let two = best(&mut || {
        let t = Instant::now();
        let r = rt.run(&module, &manifest, &inputs, &two_opts);
        let d = t.elapsed();
        assert!(r.report.outcome.is_finished());
        d
    });
    let g = guard_figures(&rt, &module, &manifest, &inputs)?;
    writeln!(
        out,
        "sandbox, 1 instance, keeping the persons of released cells: {:.1} ms ({} cells, {} persons: {:.1} MiB kept)",
        g.run.as_secs_f64() * 1e3,
        g.cells,
        g.persons,
        (g.persons * differencing::KEY_BYTES as u64) as f64 / 1_048_576.0
    )?;
    let rate = |d: Duration| rows as f64 / d.as_secs_f64().max(1e-9);
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let v2 = format!("v2 (1 instance) {}", ms(sandbox));
    let (p50, p99) = (percentile(&starts, 0.5), percentile(&starts, 0.99));
    let mut figures = BenchFigures {
        rows: rows as u64,
        sandbox_rows_per_s: rate(sandbox),
        native_rows_per_s: rate(native),
        native_hashmap_rows_per_s: rate(native_hash),
        sqlite_rows_per_s: rate(sqlite),
        ratio_vs_native: native.as_secs_f64() / sandbox.as_secs_f64(),
        ratio_vs_sqlite: sqlite.as_secs_f64() / sandbox.as_secs_f64(),
        start_p50_us: p50,
        start_p99_us: p99,
        two_instances_rows_per_s: rate(two),
        two_instances_speedup: sandbox.as_secs_f64() / two.as_secs_f64(),
        run_with_members_ms: g.run.as_secs_f64() * 1e3,
        guard_ms: g.guard.as_secs_f64() * 1e3,
        guard_worst_ms: g.worst.as_secs_f64() * 1e3,
        targets_met: false,
    };
    let met = [
        print_figure(
            out,
            "v2 vs native loop",
            figures.ratio_vs_native,
            "×",
            Target::AtLeast(targets::VS_NATIVE),
            &format!(
                "{v2}, native loop {} (with a hash map: {})",
                ms(native),
                ms(native_hash)
            ),
        )?,
        print_figure(
            out,
            "v2 vs SQLite GROUP BY",
            figures.ratio_vs_sqlite,
            "×",
            Target::AtLeast(targets::VS_SQLITE),
            &format!("{v2}, SQLite {}", ms(sqlite)),
        )?,
        print_figure(
            out,
            "start p50",
            p50,
            " µs",
            Target::Below(targets::START_P50_US),
            &format!("p99 {p99:.0} µs over 1000 starts from a compiled module"),
        )?,
        print_figure(
            out,
            "2 instances vs 1",
            figures.two_instances_speedup,
            "×",
            Target::AtLeast(targets::TWO_INSTANCES),
            &format!("2 instances {}, {v2}", ms(two)),
        )?,
        print_figure(
            out,
            "differencing guard vs the run",
            g.guard.as_secs_f64() / g.run.as_secs_f64() * 100.0,
            " %",
            Target::Below(GUARD_TARGET * 100.0),
            &format!(
                "the guard {} for the release against {EARLIER_RELEASES} earlier releases of refreshed data, the run keeping its cells' persons {}; worst case (earlier cells differ only in their largest persons) {}",
                ms(g.guard),
                ms(g.run),
                ms(g.worst)
            ),
        )?,
    ];
    figures.targets_met = met.iter().all(|&m| m);
    let writer_ns = writer_ns_per_row(&table, rows.min(1_000_000))?;
    writeln!(
        out,
        "columnar VersionWriter: {writer_ns:.0} ns/row (10 columns, incl. fsync)"
    )?;
    writeln!(out, "{}", serde_json::to_string(&figures)?)?;
    Ok(figures)
}

/// The differencing guard's figures.
#[derive(Debug, Clone, Copy)]
struct GuardFigures {
    /// The single-instance run keeping the persons of its released cells.
    run: Duration,
    /// Its released cells.
    cells: usize,
    /// Their persons, all cells together.
    persons: u64,
    /// The guard against earlier releases of refreshed data.
    guard: Duration,
    /// The guard in the worst case.
    worst: Duration,
}

/// The single-instance run of example (a) keeping the persons of its released cells, and the
/// differencing guard for its release against [`EARLIER_RELEASES`] earlier releases, refreshed
/// and worst case (best of three each).
fn guard_figures(
    rt: &Runtime,
    module: &crate::runtime::JobModule,
    manifest: &Manifest,
    inputs: &[DatasetInput],
) -> anyhow::Result<GuardFigures> {
    let opts = RunOptions {
        instances: 1,
        members: true,
        ..RunOptions::default()
    };
    let mut run = Duration::MAX;
    let mut kept = None;
    for _ in 0..3 {
        let t = Instant::now();
        let r = rt.run(module, manifest, inputs, &opts);
        run = run.min(t.elapsed());
        anyhow::ensure!(r.report.outcome.is_finished(), "{}", r.report.outcome);
        kept = Some((r.members, r.output));
    }
    let (members, output) = kept.expect("three runs");
    let cells = members.into_iter().next().unwrap_or_default();
    let k = output.map_or(10, |o| o.aggregates[0].k);
    let mut times = Vec::new();
    for how in [Earlier::Refreshed, Earlier::Worst] {
        let earlier = earlier_releases(&cells, k, how);
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(guard(&cells, k, &earlier));
                t.elapsed()
            })
            .min()
            .unwrap_or_default();
        times.push(best);
    }
    Ok(GuardFigures {
        run,
        cells: cells.len(),
        persons: cells.iter().map(|(_, keys)| keys.len() as u64).sum(),
        guard: times[0],
        worst: times[1],
    })
}

/// How the earlier releases of the guard's benchmark differ from the new one.
#[derive(Debug, Clone, Copy)]
enum Earlier {
    /// Release r replaces k + r random persons of each cell by others (a refreshed version of
    /// the data): every earlier cell has its new cell's size, so its summary is read, and most
    /// are ruled out by their sketches; the others are merged until k differences.
    Refreshed,
    /// Release r replaces the k largest persons of each cell by others just above them (their
    /// sketches agree): every pair is merged to the end of the lists.
    Worst,
}

/// A cell as the platform keeps it: its size, digest, sketch and encoded persons.
#[derive(Debug)]
struct Stored {
    persons: u64,
    digest: String,
    sketch: Vec<u8>,
    members: Vec<u8>,
}

impl Stored {
    /// What the platform writes when a run finishes.
    fn of(keys: &[u64]) -> Self {
        let members = differencing::encode(keys);
        Stored {
            persons: keys.len() as u64,
            digest: differencing::digest(&members),
            sketch: differencing::sketch(keys),
            members,
        }
    }

    fn cell(&self, k: u64) -> differencing::Cell<'_> {
        differencing::Cell {
            k,
            summary: differencing::Summary {
                persons: self.persons,
                digest: &self.digest,
                sketch: &self.sketch,
            },
            members: &self.members,
        }
    }
}

/// [`EARLIER_RELEASES`] earlier releases of `cells`, sorted by size (the platform's index).
fn earlier_releases(cells: &CellMembers, k: u64, how: Earlier) -> Vec<Stored> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut kept = Vec::with_capacity(EARLIER_RELEASES * cells.len());
    for r in 0..EARLIER_RELEASES {
        for (_, keys) in cells {
            let mut keys = keys.clone();
            let n = keys.len();
            let swap = match how {
                Earlier::Refreshed => (k as usize + r).min(n),
                Earlier::Worst => (k as usize).min(n),
            };
            for i in 0..swap {
                let at = match how {
                    Earlier::Refreshed => (next() % n as u64) as usize,
                    Earlier::Worst => n - 1 - i,
                };
                keys[at] = match how {
                    Earlier::Refreshed => next(),
                    Earlier::Worst => keys[at].wrapping_add(r as u64 + 1),
                };
            }
            keys.sort_unstable();
            keys.dedup();
            kept.push(Stored::of(&keys));
        }
    }
    kept.sort_by_key(|c| c.persons);
    kept
}

/// The guard's work for the release of `cells` (threshold `k`), as the platform does it: keep
/// each cell (encode, digest, sketch), compare the cells with each other, then each with the
/// earlier cells in its size window. The number of collisions found.
fn guard(cells: &CellMembers, k: u64, earlier: &[Stored]) -> usize {
    let kept: Vec<Stored> = cells.iter().map(|(_, keys)| Stored::of(keys)).collect();
    let new: Vec<differencing::Cell<'_>> = kept.iter().map(|c| c.cell(k)).collect();
    let mut found = differencing::candidate_pairs(&new)
        .into_iter()
        .filter(|&(i, j)| differencing::collision(&new[i], &new[j], k).is_some())
        .count();
    for cell in &new {
        let window = differencing::size_window(cell.summary.persons, k);
        let from = earlier.partition_point(|c| c.persons < *window.start());
        for old in earlier[from..]
            .iter()
            .take_while(|c| c.persons <= *window.end())
        {
            found += usize::from(differencing::collision(cell, &old.cell(k), k).is_some());
        }
    }
    found
}

/// Loads person, district and age into an in-memory SQLite table and times the query of
/// example (a) (loading is not timed).
fn sqlite_example_a(t: &MemTable, out: &mut dyn Write) -> anyhow::Result<Duration> {
    let (MemColumn::U64(person), MemColumn::I64(age), MemColumn::U32(district)) =
        (col(t, "person_id"), col(t, "age"), col(t, "district"))
    else {
        anyhow::bail!("demo columns missing");
    };
    let started = Instant::now();
    let mut db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; CREATE TABLE visits (person INTEGER NOT NULL, district INTEGER NOT NULL, age INTEGER NOT NULL);")?;
    let tx = db.transaction()?;
    {
        let mut ins = tx.prepare("INSERT INTO visits VALUES (?1, ?2, ?3)")?;
        for i in 0..person.len() {
            ins.execute((person[i] as i64, district[i], age[i]))?;
        }
    }
    tx.commit()?;
    writeln!(
        out,
        "loaded SQLite in {:.1} s (not timed)",
        started.elapsed().as_secs_f64()
    )?;
    let sql = "SELECT district, COUNT(*), COUNT(DISTINCT person) FROM visits WHERE age >= 65 GROUP BY district";
    let t = Instant::now();
    let mut stmt = db.prepare(sql)?;
    let rows: Vec<(i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let d = t.elapsed();
    std::hint::black_box(rows);
    Ok(d)
}

/// Writes the first `rows` rows of the demo table as a columnar version in a temporary
/// directory and returns the cost per row in nanoseconds.
fn writer_ns_per_row(t: &MemTable, rows: usize) -> anyhow::Result<f64> {
    use crate::columnar::{Cell, VersionWriter};
    let dir = std::env::temp_dir().join(format!("dataop-bench-writer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let mut w = VersionWriter::create(&dir, crate::demo::outpatient_columns())?;
    let mut cells = Vec::with_capacity(10);
    for i in 0..rows {
        cells.clear();
        for c in 0..10 {
            cells.push(match t.column(c) {
                Some(MemColumn::U64(v)) => Cell::Pseudonym(v[i]),
                Some(MemColumn::U32(v)) => Cell::Category(v[i]),
                Some(MemColumn::I32(v)) => Cell::Date(v[i]),
                Some(MemColumn::I64(v)) if c >= 8 => Cell::Decimal(v[i]),
                Some(MemColumn::I64(v)) => Cell::Int(v[i]),
                _ => Cell::Null,
            });
        }
        w.push_row(&cells)?;
    }
    w.finish()?;
    let ns = started.elapsed().as_secs_f64() * 1e9 / rows.max(1) as f64;
    std::fs::remove_dir_all(&dir)?;
    Ok(ns)
}
