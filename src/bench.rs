//! `dataop bench ...`: measurements printed for people, not timed tests.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::catalog::ingest::{self, PseudonymKey};
use crate::demo::outpatients;

/// The figures of one ingest benchmark run.
#[derive(Debug, Clone)]
pub struct IngestFigures {
    /// Data rows in the file.
    pub rows: u64,
    /// Size of the CSV file in bytes.
    pub bytes: u64,
    /// Time of the full ingest (parse, validate, pseudonymize, write columnar).
    pub ingest: Duration,
    /// Time of the baseline: read and split the same file with the `csv` crate.
    pub baseline: Duration,
    /// Peak resident set size of the process (VmHWM), in bytes, if known.
    pub peak_rss: Option<u64>,
    /// CPU time (user + system, all threads) of the ingest and of the baseline, if known: on a
    /// shared machine it shows the work done when the wall-clock times are disturbed.
    pub cpu: Option<(Duration, Duration)>,
}

impl IngestFigures {
    /// Full-ingest rows per second.
    pub fn ingest_rate(&self) -> f64 {
        self.rows as f64 / self.ingest.as_secs_f64()
    }

    /// Baseline rows per second.
    pub fn baseline_rate(&self) -> f64 {
        self.rows as f64 / self.baseline.as_secs_f64()
    }
}

impl std::fmt::Display for IngestFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        writeln!(f, "rows:               {}", self.rows)?;
        writeln!(f, "file size:          {:.1} MiB", mib(self.bytes))?;
        writeln!(
            f,
            "baseline (csv read): {:>10.0} rows/s  ({:.3} s)",
            self.baseline_rate(),
            self.baseline.as_secs_f64()
        )?;
        writeln!(
            f,
            "full ingest:         {:>10.0} rows/s  ({:.3} s)   target >= 500000",
            self.ingest_rate(),
            self.ingest.as_secs_f64()
        )?;
        writeln!(
            f,
            "ratio to baseline:   {:>10.3}                 target >= 0.4",
            self.ingest_rate() / self.baseline_rate()
        )?;
        if let Some((ingest, baseline)) = self.cpu {
            writeln!(
                f,
                "cpu time:            ingest {:.3} s, baseline {:.3} s (ratio {:.3})",
                ingest.as_secs_f64(),
                baseline.as_secs_f64(),
                baseline.as_secs_f64() / ingest.as_secs_f64()
            )?;
        }
        match self.peak_rss {
            Some(b) => write!(
                f,
                "peak RSS:            {:>10.1} MiB             target < 200",
                mib(b)
            ),
            None => write!(f, "peak RSS:            unknown (no /proc/self/status)"),
        }
    }
}

/// The process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time used so far by the whole process (user + system, every thread, joined ones
/// included), from `/proc/self/stat`, whose clock ticks are 1/100 s on Linux.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Removes a directory tree when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates `rows` demo visits to a CSV file in a scratch directory under `tmp` and measures
/// the baseline read and the full ingest of it. Everything written is removed afterwards.
pub fn ingest(rows: u64, tmp: &Path) -> anyhow::Result<IngestFigures> {
    anyhow::ensure!(rows > 0, "--rows must be at least 1");
    let scratch = Scratch(tmp.join(format!("dataop-bench-{}", uuid::Uuid::new_v4().simple())));
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    let csv_path = scratch.0.join("outpatients.csv");
    {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&csv_path)?);
        outpatients::write_csv(&mut out, 20261123, rows)?;
        out.flush()?;
    }
    let bytes = std::fs::metadata(&csv_path)?.len();

    // The baseline also warms the page cache for the ingest that follows.
    let cpu_start = process_cpu();
    let start = Instant::now();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(File::open(&csv_path)?);
    let mut record = csv::ByteRecord::new();
    let mut fields = 0usize;
    let mut read_rows = 0u64;
    while reader.read_byte_record(&mut record)? {
        fields += record.len();
        read_rows += 1;
    }
    std::hint::black_box(fields);
    let baseline = start.elapsed();
    let cpu_baseline = process_cpu();
    anyhow::ensure!(
        read_rows == rows,
        "baseline read {read_rows} rows, expected {rows}"
    );

    let key = PseudonymKey::new(&rand::random::<[u8; 32]>());
    let schema = outpatients::schema();
    let start = Instant::now();
    let done = ingest::ingest(
        File::open(&csv_path)?,
        &schema,
        &key,
        u64::MAX,
        &scratch.0.join("work"),
    )
    .map_err(|e| anyhow::anyhow!("ingest failed: {e}"))?;
    let ingest = start.elapsed();
    let cpu_ingest = process_cpu();
    anyhow::ensure!(
        done.rows == rows,
        "ingest wrote {} rows, expected {rows}",
        done.rows
    );
    drop(done);
    Ok(IngestFigures {
        rows,
        bytes,
        ingest,
        baseline,
        peak_rss: peak_rss(),
        cpu: cpu_start
            .zip(cpu_baseline)
            .zip(cpu_ingest)
            .map(|((a, b), c)| (c.saturating_sub(b), b.saturating_sub(a))),
    })
}
