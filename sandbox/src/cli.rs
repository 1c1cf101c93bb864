//! The developer commands behind `dataop sandbox check`, `dataop sandbox run` and
//! `dataop bench sandbox`. The server's `main.rs` only dispatches to these functions; each
//! returns the process exit status (0 on success, 1 when the module, the manifest or the run
//! failed, with the reason printed).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::columnar::VersionReader;
use crate::manifest::{Limits, Manifest};
use crate::runtime::{RunOptions, Runtime};
use crate::source::{DatasetInput, MemTable, TableSource};

/// The pseudonymization key used for CSV trial data (synthetic data only: real data is
/// pseudonymized by the server at ingest with the platform key).
pub const TRIAL_PSEUDONYM_KEY: &[u8] = b"dataop-sandbox-trial-data";

/// `dataop sandbox check MODULE MANIFEST`: validates the module and the manifest and prints
/// (as JSON) the module's hash, imports, exports and declared outputs.
pub fn check_command(module: &Path, manifest: &Path, out: &mut dyn Write) -> anyhow::Result<i32> {
    let wasm = std::fs::read(module)?;
    let toml = std::fs::read_to_string(manifest)?;
    let rt = Runtime::new(Limits::default(), None)?;
    match rt.check(&wasm, &toml) {
        Ok(report) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            Ok(0)
        }
        Err(outcome) => {
            writeln!(out, "{outcome}")?;
            Ok(1)
        }
    }
}

/// Opens trial data: a columnar version directory, or a CSV file with the columns of the demo
/// outpatient schema (header row naming them).
pub fn open_data(path: &Path) -> anyhow::Result<Arc<dyn TableSource>> {
    if path.is_dir() {
        Ok(Arc::new(VersionReader::open(path)?))
    } else {
        let file = std::fs::File::open(path)?;
        let table = MemTable::from_csv(
            std::io::BufReader::new(file),
            crate::demo::outpatient_columns(),
            TRIAL_PSEUDONYM_KEY,
        )?;
        Ok(Arc::new(table))
    }
}

/// `dataop sandbox run MODULE MANIFEST --data [NAME=]CSV_OR_VERSION_DIR ...`: runs the job on
/// trial data (a path without a name goes to the manifest's datasets in order; every column the
/// manifest declares is allowed) and prints the released output as JSON, the report, and the
/// guest log. Exit status 1 with the reason when the run does not finish.
pub fn run_command(
    module: &Path,
    manifest: &Path,
    data: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let wasm = std::fs::read(module)?;
    let manifest = match Manifest::from_toml(&std::fs::read_to_string(manifest)?) {
        Ok(m) => m,
        Err(reason) => {
            writeln!(out, "refused: {reason}")?;
            return Ok(1);
        }
    };
    let mut inputs = Vec::new();
    for (i, spec) in data.iter().enumerate() {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) if !Path::new(spec).exists() => (n.to_string(), p),
            _ => match manifest.datasets.get(i) {
                Some(d) => (d.name.clone(), spec.as_str()),
                None => anyhow::bail!("more --data than datasets in the manifest"),
            },
        };
        let allowed = manifest
            .datasets
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.columns.clone())
            .unwrap_or_default();
        inputs.push(DatasetInput {
            name,
            source: open_data(Path::new(path))?,
            allowed_columns: allowed,
            grade: 1,
        });
    }
    let rt = Runtime::new(Limits::default(), None)?;
    let module = match rt.load(&wasm) {
        Ok(m) => m,
        Err(outcome) => {
            writeln!(out, "{outcome}")?;
            return Ok(1);
        }
    };
    let result = rt.run(&module, &manifest, &inputs, &RunOptions::default());
    if let Some(output) = &result.output {
        writeln!(out, "{}", output.to_json())?;
    }
    writeln!(out, "{}", result.report.to_json())?;
    if result.report.outcome.is_finished() {
        Ok(0)
    } else {
        writeln!(out, "{}", result.report.outcome)?;
        Ok(1)
    }
}

/// `dataop bench sandbox [--rows N]` (default 10,000,000 rows).
pub fn bench_command(rows: Option<usize>, out: &mut dyn Write) -> anyhow::Result<i32> {
    crate::bench::bench_sandbox(rows.unwrap_or(10_000_000), out)?;
    Ok(0)
}
