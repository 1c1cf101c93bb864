//! The wasmtime runtime: one shared engine, module validation and caching, the `dataop` host
//! functions (ABI v1, see `ABI.md`), resource limits, parallel runs and typed outcomes.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::{
    Caller, Config, Engine, ExternType, InstancePre, Linker, Memory, Module, OptLevel,
    ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline, ValType,
};

use crate::aggregate::{AggregateStats, Bounds, Output, Partial, finalize, tally};
use crate::columnar::NULL_PSEUDONYM;
use crate::manifest::{Limits, Manifest, Plan, PlanError, plan};
use crate::source::DatasetInput;

/// The functions a module may import, all from the `dataop` namespace, with their parameter
/// counts (every parameter is `i32`; `log` returns nothing, the others return `i32`).
pub const IMPORTS: &[(&str, usize, bool)] = &[
    ("dataset", 2, true),
    ("column", 3, true),
    ("column_kind", 1, true),
    ("aggregate", 2, true),
    ("next_batch", 2, true),
    ("read", 3, true),
    ("emit", 6, true),
    ("log", 2, false),
];

/// The namespace of every import.
pub const NAMESPACE: &str = "dataop";

/// The entry point every module exports: `() -> i32`, 0 meaning success.
pub const MAIN_EXPORT: &str = "dataop_main";

/// Interval of the epoch ticker that enforces deadlines and cancellation.
const TICK: Duration = Duration::from_millis(2);

/// Error codes of guest violations (the run stops with [`Outcome::GuestViolation`]).
pub mod codes {
    /// A pointer/length pair outside the guest's memory.
    pub const BAD_POINTER: u32 = 1;
    /// A dataset, column or aggregate not declared in the manifest.
    pub const UNDECLARED: u32 = 2;
    /// A column that can never be read (identifier, privacy unit, text).
    pub const FORBIDDEN: u32 = 3;
    /// A group key outside the declared domain of its dimension.
    pub const KEY_OUTSIDE_DOMAIN: u32 = 4;
    /// A contribution for a row outside the current batch.
    pub const ROW_OUTSIDE_BATCH: u32 = 5;
    /// A handle that was never returned by the host.
    pub const BAD_HANDLE: u32 = 6;
    /// Another bad argument (negative count, buffer too small, name not UTF-8, …).
    pub const BAD_ARGUMENT: u32 = 7;
}

/// How a run ended. Every way has a reason a person can read ([`Outcome::describe`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The job ran to completion; the output is released.
    Finished,
    /// The module or manifest was refused before anything ran.
    Refused {
        /// Why.
        reason: String,
    },
    /// The wall-clock deadline passed.
    OutOfTime,
    /// The guest asked for more memory or table space than allowed.
    OutOfMemory,
    /// An aggregate has more cells, or more (person, cell) pairs, than allowed.
    TooManyGroups {
        /// Which limit.
        reason: String,
    },
    /// The guest emitted more contributions than allowed.
    TooManyContributions,
    /// The guest logged more bytes than allowed.
    LogLimit,
    /// The run was cancelled.
    Cancelled,
    /// The guest broke an ABI rule.
    GuestViolation {
        /// The error code (see [`codes`]).
        code: u32,
        /// What it did.
        reason: String,
    },
    /// The guest trapped or its main function returned non-zero.
    GuestTrap {
        /// The trap message.
        message: String,
    },
    /// Something failed on the host side (I/O, …).
    HostError {
        /// What failed.
        message: String,
    },
}

impl Outcome {
    /// Whether the run finished and its output is released.
    pub fn is_finished(&self) -> bool {
        matches!(self, Outcome::Finished)
    }

    /// A one-line human-readable description.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Finished => "finished".into(),
            Outcome::Refused { reason } => format!("refused: {reason}"),
            Outcome::OutOfTime => "out of time: the deadline passed".into(),
            Outcome::OutOfMemory => {
                "out of memory: the job asked for more memory than allowed".into()
            }
            Outcome::TooManyGroups { reason } => format!("too many groups: {reason}"),
            Outcome::TooManyContributions => {
                "too many contributions: the job emitted more than allowed".into()
            }
            Outcome::LogLimit => "log limit: the job logged more bytes than allowed".into(),
            Outcome::Cancelled => "cancelled".into(),
            Outcome::GuestViolation { code, reason } => {
                format!("ABI violation (code {code}): {reason}")
            }
            Outcome::GuestTrap { message } => format!("guest trap: {message}"),
            Outcome::HostError { message } => format!("host error: {message}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Why a host function stopped the guest (carried through wasmtime as the trap's error).
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("deadline passed")]
    OutOfTime,
    #[error("cancelled")]
    Cancelled,
    #[error("aborted because another instance failed")]
    Aborted,
    #[error("memory limit")]
    OutOfMemory,
    #[error("too many groups: {0}")]
    TooManyGroups(String),
    #[error("too many contributions")]
    TooManyContributions,
    #[error("log limit")]
    LogLimit,
    #[error("violation {0}: {1}")]
    Violation(u32, String),
    #[error("host error: {0}")]
    Host(String),
}

fn violation(code: u32, msg: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(Stop::Violation(code, msg.into()))
}

/// A token that cancels the runs it is handed to.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every run holding this token (they stop within a few milliseconds).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Number of instances the rows are split across (default: one per core).
    pub instances: usize,
    /// Cancels the run.
    pub cancel: CancelToken,
    /// A seed for the noise generator, for tests only (None: seeded from the OS, as required
    /// for a real release).
    pub noise_seed: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            instances: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cancel: CancelToken::new(),
            noise_seed: None,
        }
    }
}

/// The report of a run, for the operator and the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// How the run ended.
    pub outcome: Outcome,
    /// Name of the job.
    pub job: String,
    /// sha256 of the module.
    pub module_sha256: String,
    /// Instances the rows were split across.
    pub instances: usize,
    /// Wall-clock time of the run, in milliseconds.
    pub elapsed_ms: f64,
    /// Rows handed to the guest, all datasets and instances together.
    pub rows_read: u64,
    /// Contributions emitted.
    pub contributions: u64,
    /// Contributions of rows without a privacy unit (ignored).
    pub contributions_without_person: u64,
    /// Largest linear memory of one instance, in bytes.
    pub memory_peak_bytes: u64,
    /// Bytes the guest logged.
    pub log_bytes: u64,
    /// Cells released, all aggregates together.
    pub cells_released: u64,
    /// Cells suppressed, all aggregates together.
    pub cells_suppressed: u64,
    /// Epsilon spent, all aggregates together.
    pub epsilon_spent: f64,
    /// Figures per aggregate.
    pub aggregates: Vec<AggregateStats>,
}

impl RunReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }
}

/// The result of a run: the released output (only when finished), the report, and the guest's
/// log (for the platform operator only: a log can carry raw values, it is never released).
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The released tables (None unless the outcome is [`Outcome::Finished`]).
    pub output: Option<Output>,
    /// The report.
    pub report: RunReport,
    /// The guest's log.
    pub log: String,
}

/// A validated, compiled module ready to instantiate.
pub struct JobModule {
    sha256: String,
    size: usize,
    imports: Vec<String>,
    exports: Vec<String>,
    pre: InstancePre<HostState>,
}

impl fmt::Debug for JobModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobModule")
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl JobModule {
    /// sha256 of the module bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Size of the module in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The imports, as `namespace::name`.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The exports, by name.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }
}

/// The memory and table limiter of one instance.
struct Limiter {
    max_memory: usize,
    max_table: usize,
    peak: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Err(wasmtime::Error::new(Stop::OutOfMemory));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table {
            self.hit = true;
            return Err(wasmtime::Error::new(Stop::OutOfMemory));
        }
        Ok(true)
    }
}

/// State shared by the instances of one run.
struct Shared {
    cancel: CancelToken,
    abort: AtomicBool,
    deadline: Instant,
    contributions: AtomicU64,
    log_bytes: AtomicU64,
    limits: Limits,
    /// Per dataset, the first row not yet handed to an instance: instances take their batches
    /// from here, so a core that gets less time takes fewer rows and no instance waits for a
    /// slow one at the end.
    cursors: Vec<AtomicU64>,
}

/// The current batch of one dataset in one instance.
#[derive(Default)]
struct Batch {
    start: u64,
    rows: usize,
    persons: Vec<u64>,
}

/// The per-instance state the host functions work on.
pub struct HostState {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    memory: Option<Memory>,
    limiter: Limiter,
    batches: Vec<Batch>,
    partials: Vec<Partial>,
    contributions: Vec<u64>,
    without_person: u64,
    rows_read: u64,
    log: Vec<u8>,
    measures: Vec<i64>,
}

/// The runtime: one engine shared by all jobs, an on-disk cache of compiled modules, and the
/// platform limits.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    engine_tag: String,
    limits: Limits,
    modules: Mutex<HashMap<String, Arc<JobModule>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::SeqCst);
    }
}

/// Reads `len` bytes at `ptr` of guest memory, or a violation.
fn guest_slice(data: &[u8], ptr: i32, len: usize) -> wasmtime::Result<&[u8]> {
    let start = ptr as u32 as usize;
    start
        .checked_add(len)
        .filter(|&end| end <= data.len())
        .map(|end| &data[start..end])
        .ok_or_else(|| {
            violation(
                codes::BAD_POINTER,
                format!("{len} bytes at {start} are outside the guest memory"),
            )
        })
}

fn guest_slice_mut(data: &mut [u8], ptr: i32, len: usize) -> wasmtime::Result<&mut [u8]> {
    let start = ptr as u32 as usize;
    match start.checked_add(len) {
        Some(end) if end <= data.len() => Ok(&mut data[start..end]),
        _ => Err(violation(
            codes::BAD_POINTER,
            format!("{len} bytes at {start} are outside the guest memory"),
        )),
    }
}

fn guest_str(data: &[u8], ptr: i32, len: i32) -> wasmtime::Result<String> {
    if !(0..=4096).contains(&len) {
        return Err(violation(
            codes::BAD_ARGUMENT,
            format!("name length {len} is not in 0..=4096"),
        ));
    }
    let bytes = guest_slice(data, ptr, len as usize)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| violation(codes::BAD_ARGUMENT, "a name is not UTF-8"))
}

fn memory_of(caller: &Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| violation(codes::BAD_ARGUMENT, "the module has no memory"))
}

fn dataset_index(state: &HostState, ds: i32) -> wasmtime::Result<usize> {
    usize::try_from(ds)
        .ok()
        .filter(|&d| d < state.plan.datasets.len())
        .ok_or_else(|| violation(codes::BAD_HANDLE, format!("{ds} is not a dataset handle")))
}

fn column_handle(state: &HostState, col: i32) -> wasmtime::Result<(usize, usize)> {
    let (ds, idx) = ((col >> 16) as usize, (col & 0xffff) as usize);
    if col >= 0 && ds < state.plan.datasets.len() && idx < state.plan.datasets[ds].columns.len() {
        Ok((ds, idx))
    } else {
        Err(violation(
            codes::BAD_HANDLE,
            format!("{col} is not a column handle"),
        ))
    }
}

fn define_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        NAMESPACE,
        "dataset",
        |caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let mem = memory_of(&caller)?;
            let name = guest_str(mem.data(&caller), ptr, len)?;
            caller
                .data()
                .plan
                .datasets
                .iter()
                .position(|d| d.name == name)
                .map(|i| i as i32)
                .ok_or_else(|| {
                    violation(
                        codes::UNDECLARED,
                        format!("dataset `{name}` is not declared in the manifest"),
                    )
                })
        },
    )?;
    linker.func_wrap(
        NAMESPACE,
        "column",
        |caller: Caller<'_, HostState>, ds: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let mem = memory_of(&caller)?;
            let name = guest_str(mem.data(&caller), ptr, len)?;
            let state = caller.data();
            let d = dataset_index(state, ds)?;
            let dataset = &state.plan.datasets[d];
            if let Some(i) = dataset.columns.iter().position(|c| c.name == name) {
                return Ok(((d << 16) | i) as i32);
            }
            let spec = dataset
                .input
                .source
                .columns()
                .iter()
                .find(|c| c.name == name);
            Err(match spec.map(|s| s.role) {
                Some(crate::columnar::ColumnRole::Identifier) => violation(
                    codes::FORBIDDEN,
                    format!(
                        "column `{name}` of `{}` is an identifier column: it can never be read",
                        dataset.name
                    ),
                ),
                Some(crate::columnar::ColumnRole::PrivacyUnit) => violation(
                    codes::FORBIDDEN,
                    format!(
                        "column `{name}` of `{}` is the privacy unit: it is never handed to a job",
                        dataset.name
                    ),
                ),
                Some(_) => violation(
                    codes::UNDECLARED,
                    format!(
                        "column `{name}` of `{}` is not declared in the manifest",
                        dataset.name
                    ),
                ),
                None => violation(
                    codes::UNDECLARED,
                    format!("dataset `{}` has no column `{name}`", dataset.name),
                ),
            })
        },
    )?;
    linker.func_wrap(
        NAMESPACE,
        "column_kind",
        |caller: Caller<'_, HostState>, col: i32| -> wasmtime::Result<i32> {
            let state = caller.data();
            let (d, i) = column_handle(state, col)?;
            Ok(state.plan.datasets[d].columns[i].kind)
        },
    )?;
    linker.func_wrap(
        NAMESPACE,
        "aggregate",
        |caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let mem = memory_of(&caller)?;
            let name = guest_str(mem.data(&caller), ptr, len)?;
            caller
                .data()
                .plan
                .aggregates
                .iter()
                .position(|a| a.name == name)
                .map(|i| i as i32)
                .ok_or_else(|| {
                    violation(
                        codes::UNDECLARED,
                        format!("aggregate `{name}` is not declared in the manifest"),
                    )
                })
        },
    )?;
    linker.func_wrap(
        NAMESPACE,
        "next_batch",
        |mut caller: Caller<'_, HostState>, ds: i32, max_rows: i32| -> wasmtime::Result<i32> {
            let state = caller.data_mut();
            let d = dataset_index(state, ds)?;
            if max_rows < 1 {
                return Err(violation(
                    codes::BAD_ARGUMENT,
                    format!("next_batch: max_rows {max_rows} is below 1"),
                ));
            }
            let shared = &state.shared;
            if shared.cancel.is_cancelled() {
                return Err(wasmtime::Error::new(Stop::Cancelled));
            }
            if shared.abort.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::new(Stop::Aborted));
            }
            if Instant::now() >= shared.deadline {
                return Err(wasmtime::Error::new(Stop::OutOfTime));
            }
            let dataset = &state.plan.datasets[d];
            let rows = dataset.input.source.rows();
            let want = (max_rows as u64).min(u64::from(shared.limits.max_batch_rows));
            let cursor = &shared.cursors[d];
            let start = if cursor.load(Ordering::Relaxed) >= rows {
                rows
            } else {
                cursor.fetch_add(want, Ordering::Relaxed).min(rows)
            };
            let n = want.min(rows - start) as usize;
            let batch = &mut state.batches[d];
            batch.start = start;
            batch.rows = n;
            if dataset
                .input
                .source
                .pseudonyms(dataset.privacy_unit)
                .is_none()
            {
                batch.persons.resize(n, 0);
                dataset
                    .input
                    .source
                    .read_pseudonyms(dataset.privacy_unit, start, &mut batch.persons)
                    .map_err(|e| {
                        wasmtime::Error::new(Stop::Host(format!("reading `{}`: {e}", dataset.name)))
                    })?;
            }
            state.rows_read += n as u64;
            Ok(n as i32)
        },
    )?;
    linker.func_wrap(
        NAMESPACE,
        "read",
        |mut caller: Caller<'_, HostState>,
         col: i32,
         dst: i32,
         cap: i32|
         -> wasmtime::Result<i32> {
            let mem = memory_of(&caller)?;
            let (data, state) = mem.data_and_store_mut(&mut caller);
            let (d, i) = column_handle(state, col)?;
            let dataset = &state.plan.datasets[d];
            let column = &dataset.columns[i];
            let batch = &state.batches[d];
            let need = batch.rows * column.storage.width();
            if (cap as u32 as usize) < need {
                return Err(violation(
                    codes::BAD_ARGUMENT,
                    format!(
                        "read of `{}`: a buffer of {cap} bytes cannot hold {need}",
                        column.name
                    ),
                ));
            }
            let out = guest_slice_mut(data, dst, need)?;
            dataset
                .input
                .source
                .read_raw(column.index, batch.start, batch.rows, out)
                .map_err(|e| {
                    wasmtime::Error::new(Stop::Host(format!("reading `{}`: {e}", column.name)))
                })?;
            Ok(batch.rows as i32)
        },
    )?;
    linker.func_wrap(
        NAMESPACE,
        "emit",
        |mut caller: Caller<'_, HostState>,
         agg: i32,
         ds: i32,
         n: i32,
         rows_ptr: i32,
         keys_ptr: i32,
         measures_ptr: i32|
         -> wasmtime::Result<i32> {
            let mem = memory_of(&caller)?;
            let (data, state) = mem.data_and_store_mut(&mut caller);
            emit(data, state, agg, ds, n, rows_ptr, keys_ptr, measures_ptr)
        },
    )?;
    linker.func_wrap(
        NAMESPACE,
        "log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let mem = memory_of(&caller)?;
            let (data, state) = mem.data_and_store_mut(&mut caller);
            if len < 0 {
                return Err(violation(codes::BAD_ARGUMENT, "log: negative length"));
            }
            let total = state
                .shared
                .log_bytes
                .fetch_add(len as u64, Ordering::Relaxed)
                + len as u64;
            if total > state.shared.limits.max_log_bytes {
                return Err(wasmtime::Error::new(Stop::LogLimit));
            }
            let bytes = guest_slice(data, ptr, len as usize)?;
            state.log.extend_from_slice(bytes);
            Ok(())
        },
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn emit(
    data: &[u8],
    state: &mut HostState,
    agg: i32,
    ds: i32,
    n: i32,
    rows_ptr: i32,
    keys_ptr: i32,
    measures_ptr: i32,
) -> wasmtime::Result<i32> {
    let plan = Arc::clone(&state.plan);
    let a = usize::try_from(agg)
        .ok()
        .filter(|&a| a < plan.aggregates.len())
        .ok_or_else(|| {
            violation(
                codes::BAD_HANDLE,
                format!("{agg} is not an aggregate handle"),
            )
        })?;
    let d = dataset_index(state, ds)?;
    if n < 0 {
        return Err(violation(
            codes::BAD_ARGUMENT,
            format!("emit: negative count {n}"),
        ));
    }
    let n = n as usize;
    let total = state
        .shared
        .contributions
        .fetch_add(n as u64, Ordering::Relaxed)
        + n as u64;
    if total > state.shared.limits.max_contributions {
        return Err(wasmtime::Error::new(Stop::TooManyContributions));
    }
    let aggregate = &plan.aggregates[a];
    let dims = aggregate.dims.len();
    let m = aggregate.measures.len();
    let rows = guest_slice(data, rows_ptr, n * 4)?;
    let keys = guest_slice(data, keys_ptr, n * dims * 4)?;
    let meas = guest_slice(data, measures_ptr, n * m * 8)?;
    let batch = &state.batches[d];
    // The batch's privacy units, in place when the source holds them in memory.
    let dataset = &plan.datasets[d];
    let persons = match dataset.input.source.pseudonyms(dataset.privacy_unit) {
        Some(_) if batch.rows == 0 => &[],
        Some(all) => usize::try_from(batch.start)
            .ok()
            .and_then(|s| all.get(s..)?.get(..batch.rows))
            .ok_or_else(|| {
                wasmtime::Error::new(Stop::Host(format!(
                    "the privacy unit of `{}` is shorter than the table",
                    dataset.name
                )))
            })?,
        None => &batch.persons[..batch.rows],
    };
    let partial = &mut state.partials[a];
    state.measures.resize(m, 0);
    for j in 0..n {
        let row = u32::from_le_bytes(rows[j * 4..j * 4 + 4].try_into().expect("4 bytes")) as usize;
        if row >= batch.rows {
            return Err(violation(
                codes::ROW_OUTSIDE_BATCH,
                format!(
                    "emit: row {row} is outside the current batch of {} rows of `{}`",
                    batch.rows, plan.datasets[d].name
                ),
            ));
        }
        let mut cell: u64 = 0;
        for (k, dim) in aggregate.dims.iter().enumerate() {
            let o = (j * dims + k) * 4;
            let key = u32::from_le_bytes(keys[o..o + 4].try_into().expect("4 bytes"));
            let size = dim.labels.len() as u64;
            if u64::from(key) >= size {
                return Err(violation(
                    codes::KEY_OUTSIDE_DOMAIN,
                    format!(
                        "emit: key {key} is outside the {size} values of dimension `{}` of `{}`",
                        dim.name, aggregate.name
                    ),
                ));
            }
            cell = cell * size + u64::from(key);
        }
        for (k, x) in aggregate.measures.iter().enumerate() {
            let o = (j * m + k) * 8;
            let v = i64::from_le_bytes(meas[o..o + 8].try_into().expect("8 bytes"));
            state.measures[k] = v.clamp(x.lo, x.hi);
        }
        let person = persons[row];
        if person == NULL_PSEUDONYM {
            state.without_person += 1;
            continue;
        }
        partial.add(person, cell as u32, &state.measures);
    }
    state.contributions[a] += n as u64;
    if partial.len() as u64 > state.shared.limits.max_person_cells {
        return Err(wasmtime::Error::new(Stop::TooManyGroups(format!(
            "aggregate `{}` holds more than {} (person, cell) pairs",
            aggregate.name, state.shared.limits.max_person_cells
        ))));
    }
    Ok(n as i32)
}

/// What `sandbox check` reports about a module and a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// sha256 of the module.
    pub sha256: String,
    /// Size of the module in bytes.
    pub size: usize,
    /// Imports as `namespace::name`.
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
    /// The manifest (datasets, columns, and the declared outputs: aggregates).
    pub manifest: Manifest,
}

/// What one instance returned.
struct InstanceEnd {
    stop: Option<Outcome>,
    aborted: bool,
    partials: Vec<Partial>,
    contributions: Vec<u64>,
    without_person: u64,
    rows_read: u64,
    memory_peak: usize,
    log: Vec<u8>,
}

impl Runtime {
    /// A runtime with the given limits, caching compiled modules in `cache_dir` (created if
    /// needed) when given. Starts the epoch ticker thread.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(1 << 20)
            .parallel_compilation(false);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut linker = Linker::new(&engine);
        define_imports(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        let engine_tag = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        if let Some(dir) = cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = Arc::clone(&ticker_stop);
            std::thread::Builder::new()
                .name("dataop-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })?;
        }
        Ok(Runtime {
            engine,
            linker,
            cache_dir: cache_dir.map(Path::to_path_buf),
            engine_tag,
            limits,
            modules: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// The platform limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates, hashes and compiles a module (binary or WAT text), or returns it from the
    /// in-memory or on-disk cache. Refuses (with [`Outcome::Refused`]) modules that are too big,
    /// malformed, import anything but the `dataop` functions, or lack the required exports.
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<JobModule>, Outcome> {
        let refuse = |reason: String| Outcome::Refused { reason };
        if wasm.len() > self.limits.max_module_bytes {
            return Err(refuse(format!(
                "the module has {} bytes, more than the limit of {}",
                wasm.len(),
                self.limits.max_module_bytes
            )));
        }
        let sha256 = hex::encode(Sha256::digest(wasm));
        if let Some(m) = self.modules.lock().expect("module cache").get(&sha256) {
            return Ok(Arc::clone(m));
        }
        let module = self
            .compile_cached(wasm, &sha256)
            .map_err(|e| refuse(format!("malformed module: {e}")))?;
        let mut imports = Vec::new();
        for imp in module.imports() {
            let full = format!("{}::{}", imp.module(), imp.name());
            if imp.module() != NAMESPACE {
                return Err(refuse(format!(
                    "import `{full}` is not allowed: a job may import only the `{NAMESPACE}` functions (no WASI, clock, randomness, files or network)"
                )));
            }
            let Some(&(_, params, returns)) = IMPORTS.iter().find(|(n, _, _)| *n == imp.name())
            else {
                return Err(refuse(format!(
                    "import `{full}` is not a function of the dataop ABI v1"
                )));
            };
            let ExternType::Func(ft) = imp.ty() else {
                return Err(refuse(format!("import `{full}` must be a function")));
            };
            let ok = ft.params().len() == params
                && ft.params().all(|p| matches!(p, ValType::I32))
                && ft.results().len() == usize::from(returns)
                && ft.results().all(|r| matches!(r, ValType::I32));
            if !ok {
                return Err(refuse(format!(
                    "import `{full}` has the wrong signature (see ABI.md)"
                )));
            }
            imports.push(full);
        }
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        match module.get_export("memory") {
            Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
            _ => {
                return Err(refuse(
                    "the module must export a 32-bit linear memory named `memory`".into(),
                ));
            }
        }
        match module.get_export(MAIN_EXPORT) {
            Some(ExternType::Func(f))
                if f.params().len() == 0
                    && f.results().len() == 1
                    && f.results().all(|r| matches!(r, ValType::I32)) => {}
            _ => {
                return Err(refuse(format!(
                    "the module must export a function `{MAIN_EXPORT}: () -> i32`"
                )));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| refuse(format!("cannot link the module: {e}")))?;
        let job = Arc::new(JobModule {
            sha256: sha256.clone(),
            size: wasm.len(),
            imports,
            exports,
            pre,
        });
        self.modules
            .lock()
            .expect("module cache")
            .insert(sha256, Arc::clone(&job));
        Ok(job)
    }

    fn compile_cached(&self, wasm: &[u8], sha256: &str) -> wasmtime::Result<Module> {
        let Some(dir) = &self.cache_dir else {
            return Module::new(&self.engine, wasm);
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.engine_tag));
        if path.exists() {
            // SAFETY: files in the cache directory are written only by `compile_cached` below,
            // from `Module::serialize` of this engine configuration (the name carries the
            // module's hash and the engine's compatibility hash); the directory belongs to the
            // platform, never to job authors.
            if let Ok(m) = unsafe { Module::deserialize_file(&self.engine, &path) } {
                return Ok(m);
            }
        }
        let module = Module::new(&self.engine, wasm)?;
        if let Ok(bytes) = module.serialize() {
            // A name of its own for each write, so that two threads of one process compiling
            // the same module never write into one file while the other renames it into place.
            static WRITES: AtomicU64 = AtomicU64::new(0);
            let tmp = dir.join(format!(
                ".{sha256}-{}.{}.{}.tmp",
                self.engine_tag,
                std::process::id(),
                WRITES.fetch_add(1, Ordering::Relaxed)
            ));
            if std::fs::write(&tmp, &bytes).is_ok() && std::fs::rename(&tmp, &path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(module)
    }

    /// Validates a module and a manifest and lists imports, exports and declared outputs.
    pub fn check(&self, wasm: &[u8], manifest_toml: &str) -> Result<CheckReport, Outcome> {
        let manifest =
            Manifest::from_toml(manifest_toml).map_err(|reason| Outcome::Refused { reason })?;
        let module = self.load(wasm)?;
        Ok(CheckReport {
            sha256: module.sha256.clone(),
            size: module.size,
            imports: module.imports.clone(),
            exports: module.exports.clone(),
            manifest,
        })
    }

    /// Runs `module` under `manifest` on `inputs`: binds the manifest to the inputs (refusing
    /// undeclared, disallowed or forbidden columns before anything runs), splits the rows over
    /// `opts.instances` instances, merges their contributions exactly, then applies per-person
    /// bounds, thresholds and noise. Never panics on any module or argument.
    pub fn run(
        &self,
        module: &JobModule,
        manifest: &Manifest,
        inputs: &[DatasetInput],
        opts: &RunOptions,
    ) -> RunResult {
        let started = Instant::now();
        let instances = opts.instances.clamp(1, 256);
        let mut report = RunReport {
            outcome: Outcome::Finished,
            job: manifest.name.clone(),
            module_sha256: module.sha256.clone(),
            instances,
            elapsed_ms: 0.0,
            rows_read: 0,
            contributions: 0,
            contributions_without_person: 0,
            memory_peak_bytes: 0,
            log_bytes: 0,
            cells_released: 0,
            cells_suppressed: 0,
            epsilon_spent: 0.0,
            aggregates: Vec::new(),
        };
        let finish =
            |mut report: RunReport, outcome: Outcome, output: Option<Output>, log: String| {
                report.outcome = outcome;
                report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                RunResult {
                    output,
                    report,
                    log,
                }
            };
        let plan = match plan(manifest, inputs, &self.limits) {
            Ok(p) => Arc::new(p),
            Err(PlanError::Refused(reason)) => {
                return finish(report, Outcome::Refused { reason }, None, String::new());
            }
            Err(PlanError::TooManyGroups(reason)) => {
                return finish(
                    report,
                    Outcome::TooManyGroups { reason },
                    None,
                    String::new(),
                );
            }
        };
        let shared = Arc::new(Shared {
            cancel: opts.cancel.clone(),
            abort: AtomicBool::new(false),
            deadline: started + self.limits.timeout,
            contributions: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            limits: self.limits.clone(),
            cursors: plan.datasets.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        let ends: Vec<InstanceEnd> = if instances == 1 {
            vec![self.run_instance(module, &plan, &shared)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..instances)
                    .map(|_| {
                        let (plan, shared) = (&plan, &shared);
                        s.spawn(move || self.run_instance(module, plan, shared))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| InstanceEnd {
                            stop: Some(Outcome::HostError {
                                message: "an instance thread panicked".into(),
                            }),
                            aborted: false,
                            partials: Vec::new(),
                            contributions: Vec::new(),
                            without_person: 0,
                            rows_read: 0,
                            memory_peak: 0,
                            log: Vec::new(),
                        })
                    })
                    .collect()
            })
        };
        let mut log = Vec::new();
        let mut failure = None;
        let mut cancelled = false;
        let mut partials: Vec<Vec<Partial>> = plan.aggregates.iter().map(|_| Vec::new()).collect();
        let mut contributions = vec![0u64; plan.aggregates.len()];
        for end in ends {
            report.rows_read += end.rows_read;
            report.contributions_without_person += end.without_person;
            report.memory_peak_bytes = report.memory_peak_bytes.max(end.memory_peak as u64);
            log.extend_from_slice(&end.log);
            match end.stop {
                Some(Outcome::Cancelled) => cancelled = true,
                Some(o) if failure.is_none() => failure = Some(o),
                _ => {}
            }
            if end.aborted || failure.is_some() || cancelled {
                continue;
            }
            for (i, p) in end.partials.into_iter().enumerate() {
                partials[i].push(p);
            }
            for (i, c) in end.contributions.iter().enumerate() {
                contributions[i] += c;
            }
        }
        report.contributions = shared.contributions.load(Ordering::Relaxed);
        report.log_bytes = log.len() as u64;
        let log = String::from_utf8_lossy(&log).into_owned();
        if let Some(f) = failure {
            return finish(report, f, None, log);
        }
        if cancelled {
            return finish(report, Outcome::Cancelled, None, log);
        }
        let mut rng = match opts.noise_seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        let mut tables = Vec::new();
        for ((agg, partials), n) in plan.aggregates.iter().zip(partials).zip(contributions) {
            // The instances' threads are done: their cores merge and tally the partitions.
            let totals = tally(&Bounds::of(agg), &partials, instances);
            drop(partials);
            let cap = self.limits.max_person_cells;
            if totals.pairs > cap {
                let reason = format!(
                    "aggregate `{}` holds more than {cap} (person, cell) pairs",
                    agg.name
                );
                return finish(report, Outcome::TooManyGroups { reason }, None, log);
            }
            let (table, stats) = finalize(agg, totals, n, &mut rng);
            report.cells_released += stats.cells_released;
            report.cells_suppressed += stats.cells_suppressed;
            report.epsilon_spent += stats.epsilon_spent;
            report.aggregates.push(stats);
            tables.push(table);
        }
        let output = Output {
            job: manifest.name.clone(),
            abi: crate::manifest::ABI_VERSION,
            aggregates: tables,
        };
        finish(report, Outcome::Finished, Some(output), log)
    }

    /// Instantiates the module and calls its entry point, returning when it has started (for
    /// the start-latency benchmark): the time from instantiation to the first guest instruction.
    pub fn start_latency(
        &self,
        module: &JobModule,
        manifest: &Manifest,
        inputs: &[DatasetInput],
    ) -> Result<Duration, Outcome> {
        let plan = match plan(manifest, inputs, &self.limits) {
            Ok(p) => Arc::new(p),
            Err(PlanError::Refused(reason)) => return Err(Outcome::Refused { reason }),
            Err(PlanError::TooManyGroups(reason)) => return Err(Outcome::TooManyGroups { reason }),
        };
        let shared = Arc::new(Shared {
            cancel: CancelToken::new(),
            abort: AtomicBool::new(false),
            deadline: Instant::now() + self.limits.timeout,
            contributions: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            limits: self.limits.clone(),
            // Every row already handed out: the guest returns at its first `next_batch`.
            cursors: plan
                .datasets
                .iter()
                .map(|d| AtomicU64::new(d.input.source.rows()))
                .collect(),
        });
        let t = Instant::now();
        let (mut store, main) = self.instantiate(module, &plan, &shared)?;
        // The guest's first instruction runs inside this call.
        let _ = main.call(&mut store, ());
        Ok(t.elapsed())
    }

    fn instantiate(
        &self,
        module: &JobModule,
        plan: &Arc<Plan>,
        shared: &Arc<Shared>,
    ) -> Result<(Store<HostState>, TypedFunc<(), i32>), Outcome> {
        let state = HostState {
            plan: Arc::clone(plan),
            shared: Arc::clone(shared),
            memory: None,
            limiter: Limiter {
                max_memory: self.limits.max_memory_bytes,
                max_table: self.limits.max_table_elements,
                peak: 0,
                hit: false,
            },
            batches: plan.datasets.iter().map(|_| Batch::default()).collect(),
            partials: plan
                .aggregates
                .iter()
                .map(|a| Partial::new(a.measures.len(), a.cells))
                .collect(),
            contributions: vec![0; plan.aggregates.len()],
            without_person: 0,
            rows_read: 0,
            log: Vec::new(),
            measures: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let shared = &ctx.data().shared;
            if shared.cancel.is_cancelled() {
                Err(wasmtime::Error::new(Stop::Cancelled))
            } else if shared.abort.load(Ordering::Relaxed) {
                Err(wasmtime::Error::new(Stop::Aborted))
            } else if Instant::now() >= shared.deadline {
                Err(wasmtime::Error::new(Stop::OutOfTime))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&e, &store))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| Outcome::Refused {
                reason: "the module exports no memory".into(),
            })?;
        store.data_mut().memory = Some(memory);
        let main = instance
            .get_typed_func::<(), i32>(&mut store, MAIN_EXPORT)
            .map_err(|e| Outcome::Refused {
                reason: format!("{MAIN_EXPORT}: {e}"),
            })?;
        Ok((store, main))
    }

    fn run_instance(
        &self,
        module: &JobModule,
        plan: &Arc<Plan>,
        shared: &Arc<Shared>,
    ) -> InstanceEnd {
        let mut end = InstanceEnd {
            stop: None,
            aborted: false,
            partials: Vec::new(),
            contributions: Vec::new(),
            without_person: 0,
            rows_read: 0,
            memory_peak: 0,
            log: Vec::new(),
        };
        let (mut store, main) = match self.instantiate(module, plan, shared) {
            Ok(x) => x,
            Err(o) => {
                shared.abort.store(true, Ordering::Relaxed);
                end.stop = Some(o);
                return end;
            }
        };
        let result = main.call(&mut store, ());
        let stop = match result {
            Ok(0) => None,
            Ok(code) => Some(Outcome::GuestTrap {
                message: format!("{MAIN_EXPORT} returned {code}"),
            }),
            Err(e) => {
                if matches!(e.downcast_ref::<Stop>(), Some(Stop::Aborted)) {
                    end.aborted = true;
                    None
                } else {
                    Some(classify(&e, &store))
                }
            }
        };
        let state = store.into_data();
        if stop.is_some() {
            shared.abort.store(true, Ordering::Relaxed);
        }
        end.stop = stop;
        end.partials = state.partials;
        end.contributions = state.contributions;
        end.without_person = state.without_person;
        end.rows_read = state.rows_read;
        end.memory_peak = state.limiter.peak;
        end.log = state.log;
        end
    }
}

/// Maps a wasmtime error to an outcome.
fn classify(e: &wasmtime::Error, store: &Store<HostState>) -> Outcome {
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return match stop {
            Stop::OutOfTime => Outcome::OutOfTime,
            Stop::Cancelled | Stop::Aborted => Outcome::Cancelled,
            Stop::OutOfMemory => Outcome::OutOfMemory,
            Stop::TooManyGroups(r) => Outcome::TooManyGroups { reason: r.clone() },
            Stop::TooManyContributions => Outcome::TooManyContributions,
            Stop::LogLimit => Outcome::LogLimit,
            Stop::Violation(code, r) => Outcome::GuestViolation {
                code: *code,
                reason: r.clone(),
            },
            Stop::Host(m) => Outcome::HostError { message: m.clone() },
        };
    }
    if store.data().limiter.hit {
        return Outcome::OutOfMemory;
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return Outcome::GuestTrap {
            message: trap.to_string(),
        };
    }
    Outcome::GuestTrap {
        message: e.to_string(),
    }
}
