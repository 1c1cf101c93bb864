//! The wasmtime runtime: one shared engine, module validation (purity) and authenticated
//! caching, the host-generated driver, resource limits, parallel runs and typed outcomes
//! (ABI v2, see `ABI.md`).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rustc_hash::FxHashMap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Engine, Extern, ExternType, Instance, Memory, Module, OptLevel, ResourceLimiter, Store,
    Trap, TypedFunc, UpdateDeadline, ValType,
};

use crate::aggregate::{
    AggregateStats, Bounds, CellMembers, Output, Partial, finalize, tally, tally_bytes,
};
use crate::budget::{Held, HostBudget};
use crate::cache::CompileCache;
use crate::columnar::NULL_PSEUDONYM;
use crate::driver::{self, Driver, Feeds, OUT_OF_DOMAIN};
use crate::manifest::{Limits, Manifest, Plan, PlanError, Stage, Wasm, plan};
use crate::source::DatasetInput;

/// Interval of the epoch ticker that enforces deadlines and cancellation.
const TICK: Duration = Duration::from_millis(2);

/// How a run ended. Every way has a reason a person can read ([`Outcome::describe`]); the
/// reasons may carry what the guest chose (trap messages name its functions), so they are for
/// platform staff: an operator is shown [`Outcome::kind`] and a fixed message for it.
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
    /// The module asked for more memory or table space than allowed.
    OutOfMemory,
    /// An aggregate has more cells than allowed, or the run's host buffers outgrow their budget.
    TooManyGroups {
        /// Which limit.
        reason: String,
    },
    /// More rows were kept than the platform allows per run.
    TooManyContributions,
    /// The run was cancelled.
    Cancelled,
    /// A guest function trapped.
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

    /// The kind of outcome, as serialized (`finished`, `refused`, `out_of_time`, …): the only
    /// part of an outcome an operator sees.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Finished => "finished",
            Outcome::Refused { .. } => "refused",
            Outcome::OutOfTime => "out_of_time",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::TooManyGroups { .. } => "too_many_groups",
            Outcome::TooManyContributions => "too_many_contributions",
            Outcome::Cancelled => "cancelled",
            Outcome::GuestTrap { .. } => "guest_trap",
            Outcome::HostError { .. } => "host_error",
        }
    }

    /// The kind an operator is shown ([`operator_kind`]).
    pub fn operator_kind(&self) -> &'static str {
        operator_kind(self.kind())
    }

    /// A one-line description with the details (for platform staff).
    pub fn describe(&self) -> String {
        match self {
            Outcome::Finished => "finished".into(),
            Outcome::Refused { reason } => format!("refused: {reason}"),
            Outcome::OutOfTime => "out of time: the deadline passed".into(),
            Outcome::OutOfMemory => {
                "out of memory: the module asked for more memory than allowed".into()
            }
            Outcome::TooManyGroups { reason } => format!("too many groups: {reason}"),
            Outcome::TooManyContributions => {
                "too many contributions: more rows were kept than allowed".into()
            }
            Outcome::Cancelled => "cancelled".into(),
            Outcome::GuestTrap { message } => format!("guest trap: {message}"),
            Outcome::HostError { message } => format!("host error: {message}"),
        }
    }
}

/// The outcome kind an operator is shown for the kind `kind` ([`Outcome::kind`]): `finished`,
/// `refused` (decided before any row is read), `cancelled` (by the host) and `host_error` as
/// they are; every kind a module can bring about depending on the rows it reads
/// (`out_of_time`, `out_of_memory`, `too_many_groups`, `too_many_contributions`,
/// `guest_trap`) is `stopped`, so that the outcome tells the operator one bit: whether the run
/// finished (ABI v2, guarantee 8).
pub fn operator_kind(kind: &str) -> &'static str {
    match kind {
        "finished" => "finished",
        "refused" => "refused",
        "cancelled" => "cancelled",
        "host_error" => "host_error",
        _ => "stopped",
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Why the host stopped the guest (carried through wasmtime as the trap's error).
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
    /// Keep the persons of every released cell without noise ([`RunResult::members`]), for the
    /// platform's differencing guard.
    pub members: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            instances: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cancel: CancelToken::new(),
            noise_seed: None,
            members: false,
        }
    }
}

/// The report of a run, for platform staff and the audit log. Its exact figures depend on
/// what the guest chose; an operator gets [`RunReport::for_operator`] instead.
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
    /// Rows read, all datasets and instances together (a failed run counts the instances
    /// that finished their share).
    pub rows_read: u64,
    /// Rows of the datasets the manifest declares: what the operator is shown as rows read,
    /// whatever the run did.
    pub dataset_rows: u64,
    /// Contributions (kept rows and kept persons).
    pub contributions: u64,
    /// Contributions of rows without a privacy unit (ignored).
    pub contributions_without_person: u64,
    /// Kept rows dropped because a key was outside its dimension's domain.
    pub contributions_out_of_domain: u64,
    /// Largest memory of one instance (linear memories and tables), in bytes.
    pub memory_peak_bytes: u64,
    /// The most the run's host buffers held at once (charged to `Limits::max_host_bytes`),
    /// in bytes.
    pub host_bytes_peak: u64,
    /// Cells released, all aggregates together.
    pub cells_released: u64,
    /// Cells suppressed, all aggregates together.
    pub cells_suppressed: u64,
    /// Epsilon spent, all aggregates together.
    pub epsilon_spent: f64,
    /// Figures per aggregate.
    pub aggregates: Vec<AggregateStats>,
}

/// What an operator is shown of a run: the outcome's kind and coarse figures that the guest
/// cannot steer beyond the released table itself (ABI v2, guarantee 8).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorReport {
    /// The outcome's kind as an operator is shown it ([`Outcome::operator_kind`]).
    pub outcome: &'static str,
    /// Rows read: the datasets' sizes ([`RunReport::dataset_rows`]), whatever the guest did.
    pub rows_read: u64,
    /// Cells released (as the released table shows).
    pub cells_released: u64,
    /// Cells suppressed (as the released table shows).
    pub cells_suppressed: u64,
    /// Elapsed time rounded up to whole seconds.
    pub elapsed_s: u64,
}

impl RunReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The coarse view an operator may see.
    pub fn for_operator(&self) -> OperatorReport {
        let finished = self.outcome.is_finished();
        OperatorReport {
            outcome: self.outcome.operator_kind(),
            rows_read: self.dataset_rows,
            cells_released: if finished { self.cells_released } else { 0 },
            cells_suppressed: if finished { self.cells_suppressed } else { 0 },
            elapsed_s: (self.elapsed_ms / 1000.0).ceil().max(1.0) as u64,
        }
    }
}

/// The result of a run: the released output (only when finished), the report (platform
/// staff), and, when asked for, the persons of each released cell (platform only).
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The released tables (None unless the outcome is [`Outcome::Finished`]).
    pub output: Option<Output>,
    /// The report.
    pub report: RunReport,
    /// Per aggregate, the persons of each cell released without noise (when
    /// [`RunOptions::members`] is set).
    pub members: Vec<CellMembers>,
}

/// A validated, compiled guest module ready to instantiate.
pub struct JobModule {
    sha256: String,
    size: usize,
    exports: Vec<(String, Vec<ValType>, Vec<ValType>)>,
    module: Module,
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

    /// The exported functions, by name.
    pub fn exports(&self) -> Vec<String> {
        self.exports.iter().map(|e| e.0.clone()).collect()
    }

    fn export(&self, name: &str) -> Option<&(String, Vec<ValType>, Vec<ValType>)> {
        self.exports.iter().find(|e| e.0 == name)
    }
}

/// The memory and table limiter of one instance: every memory and table of the store
/// (the guest's and the driver's) counts against one budget.
struct Limiter {
    max_bytes: usize,
    used: usize,
    peak: usize,
    hit: bool,
}

/// Bytes a table element is charged.
const TABLE_ELEMENT_BYTES: usize = 16;

impl Limiter {
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = (self.used + desired).saturating_sub(current);
        if total > self.max_bytes {
            self.hit = true;
            return Err(wasmtime::Error::new(Stop::OutOfMemory));
        }
        self.used = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn memories(&self) -> usize {
        2
    }

    fn tables(&self) -> usize {
        2
    }

    fn instances(&self) -> usize {
        2
    }
}

/// State shared by the instances of one run.
struct Shared {
    cancel: CancelToken,
    abort: AtomicBool,
    deadline: Instant,
    contributions: AtomicU64,
    limits: Limits,
    /// Per dataset, the first row not yet handed to an instance.
    cursors: Vec<AtomicU64>,
    /// The run's host-buffer budget.
    budget: Arc<HostBudget>,
}

impl Shared {
    fn check(&self) -> Result<(), Outcome> {
        if self.cancel.is_cancelled() || self.abort.load(Ordering::Relaxed) {
            Err(Outcome::Cancelled)
        } else if Instant::now() >= self.deadline {
            Err(Outcome::OutOfTime)
        } else {
            Ok(())
        }
    }

    fn count(&self, n: usize) -> Result<(), Outcome> {
        let total = self.contributions.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limits.max_contributions {
            Err(Outcome::TooManyContributions)
        } else {
            Ok(())
        }
    }
}

/// The store state of one instance.
struct StoreState {
    shared: Arc<Shared>,
    limiter: Limiter,
}

/// The guest and its driver instantiated in one store.
struct Pair {
    store: Store<StoreState>,
    memory: Memory,
    loops: Vec<TypedFunc<i32, i32>>,
}

/// One person-stage input's totals: per person, the count of kept rows and each measure's sum.
#[derive(Default)]
struct PersonTotals {
    index: FxHashMap<u64, u32>,
    values: Vec<i128>,
}

impl PersonTotals {
    /// Bytes of the index (a hash table: its buckets, an eighth more than its capacity, of a
    /// key, a value and a control byte each) and of the totals.
    fn bytes(&self) -> u64 {
        let buckets = self.index.capacity() + self.index.capacity() / 7;
        (buckets * (size_of::<(u64, u32)>() + 1) + self.values.capacity() * size_of::<i128>())
            as u64
    }

    fn add(&mut self, stride: usize, person: u64, measures: &[i64]) {
        let next = self.index.len() as u32;
        let i = *self.index.entry(person).or_insert(next) as usize;
        if i == self.values.len() / stride {
            self.values.resize(self.values.len() + stride, 0);
        }
        let v = &mut self.values[i * stride..(i + 1) * stride];
        v[0] += 1;
        for (s, &m) in v[1..].iter_mut().zip(measures) {
            *s += i128::from(m);
        }
    }

    fn merge(&mut self, stride: usize, other: PersonTotals) {
        for (person, i) in other.index {
            let i = i as usize;
            let next = self.index.len() as u32;
            let j = *self.index.entry(person).or_insert(next) as usize;
            if j == self.values.len() / stride {
                self.values.resize(self.values.len() + stride, 0);
            }
            for k in 0..stride {
                self.values[j * stride + k] += other.values[i * stride + k];
            }
        }
    }
}

/// What one instance's scan returned.
struct Scan {
    partials: Vec<Partial>,
    persons: Vec<PersonTotals>,
    /// The bytes of `partials`, charged to the run's budget.
    partials_held: Held,
    /// The bytes of `persons`, charged to the run's budget.
    persons_held: Held,
    rows_read: u64,
    without_person: u64,
    out_of_domain: u64,
    memory_peak: usize,
}

/// The runtime: one engine shared by all jobs, an authenticated on-disk cache of compiled
/// modules, and the platform limits.
pub struct Runtime {
    engine: Engine,
    cache: Option<CompileCache>,
    limits: Limits,
    modules: Mutex<HashMap<String, Arc<JobModule>>>,
    drivers: Mutex<HashMap<String, Module>>,
    ticker_stop: Arc<AtomicBool>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::SeqCst);
    }
}

/// What `sandbox check` reports about a module and a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// sha256 of the module.
    pub sha256: String,
    /// Size of the module in bytes.
    pub size: usize,
    /// Exported function names.
    pub exports: Vec<String>,
    /// The manifest (datasets, columns, and the declared outputs: aggregates).
    pub manifest: Manifest,
}

fn val(w: Wasm) -> ValType {
    match w {
        Wasm::I32 => ValType::I32,
        Wasm::I64 => ValType::I64,
    }
}

fn same(a: &[ValType], b: &[ValType]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| ValType::eq(x, y))
}

fn wat_types(t: &[ValType]) -> String {
    let names: Vec<String> = t.iter().map(|v| v.to_string()).collect();
    format!("({})", names.join(" "))
}

impl Runtime {
    /// A runtime with the given limits. With `cache`, compiled modules are kept in that
    /// directory (created if needed), each file authenticated with an HMAC under `key` (a
    /// secret of the data dir): a file that does not carry a valid tag for this module and this
    /// engine is ignored and the module compiled again. Starts the epoch ticker thread.
    pub fn new(limits: Limits, cache: Option<(&Path, &[u8])>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .cranelift_nan_canonicalization(true)
            .max_wasm_stack(1 << 20)
            .parallel_compilation(false)
            .wasm_shared_everything_threads(false)
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .wasm_gc(false)
            .wasm_stack_switching(false)
            .wasm_relaxed_simd(false)
            .wasm_custom_page_sizes(false)
            .wasm_wide_arithmetic(false);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cache = match cache {
            Some((dir, key)) => Some(CompileCache::open(dir, key, &engine)?),
            None => None,
        };
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
            cache,
            limits,
            modules: Mutex::new(HashMap::new()),
            drivers: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// The platform limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates, hashes and compiles a module (binary or WAT text), or returns it from the
    /// in-memory or on-disk cache. Refuses (with [`Outcome::Refused`]) modules that are too big,
    /// malformed, import anything, or are not pure (see [`crate::purity`]).
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
        let binary =
            wat::parse_bytes(wasm).map_err(|e| refuse(format!("malformed module: {e}")))?;
        if binary.len() > self.limits.max_module_bytes {
            return Err(refuse(format!(
                "the module has {} bytes, more than the limit of {}",
                binary.len(),
                self.limits.max_module_bytes
            )));
        }
        crate::purity::check(&binary, &self.limits).map_err(refuse)?;
        let module = match &self.cache {
            Some(cache) => cache.compile(&self.engine, &binary, &sha256),
            None => Module::new(&self.engine, &binary),
        }
        .map_err(|e| refuse(format!("malformed module: {e}")))?;
        let exports = module
            .exports()
            .filter_map(|e| match e.ty() {
                ExternType::Func(f) => Some((
                    e.name().to_string(),
                    f.params().collect(),
                    f.results().collect(),
                )),
                _ => None,
            })
            .collect();
        let job = Arc::new(JobModule {
            sha256: sha256.clone(),
            size: wasm.len(),
            exports,
            module,
        });
        self.modules
            .lock()
            .expect("module cache")
            .insert(sha256, Arc::clone(&job));
        Ok(job)
    }

    /// Validates a module and a manifest together ([`Runtime::load`], [`Manifest::from_toml`],
    /// [`Runtime::check_exports`]).
    pub fn check(&self, wasm: &[u8], manifest_toml: &str) -> Result<CheckReport, Outcome> {
        let manifest =
            Manifest::from_toml(manifest_toml).map_err(|reason| Outcome::Refused { reason })?;
        let module = self.load(wasm)?;
        self.check_exports(&module, &manifest)?;
        Ok(CheckReport {
            sha256: module.sha256.clone(),
            size: module.size,
            exports: module.exports(),
            manifest,
        })
    }

    /// Checks that `module` exports every function `manifest` needs with the right number of
    /// parameters and result type (the parameter types follow the columns' types, which only
    /// the data knows: they are checked when the run binds the manifest to its datasets).
    pub fn check_exports(&self, module: &JobModule, manifest: &Manifest) -> Result<(), Outcome> {
        let columns = |d: &str| {
            manifest
                .datasets
                .iter()
                .find(|x| x.name == d)
                .map_or(0, |x| x.columns.len())
        };
        let person_params: usize = manifest.person.iter().map(|p| 1 + p.measures.len()).sum();
        let mut needed: Vec<(String, usize, ValType)> = Vec::new();
        for a in &manifest.aggregates {
            let n = a.dataset.as_deref().map_or(person_params, columns);
            for d in &a.dimensions {
                needed.push((format!("{}.{}", a.name, d.name), n, ValType::I32));
            }
            for m in &a.measures {
                needed.push((format!("{}.{}", a.name, m.name), n, ValType::I64));
            }
            needed.push((format!("{}.keep", a.name), n, ValType::I32));
        }
        for p in &manifest.person {
            let n = columns(&p.dataset);
            for m in &p.measures {
                needed.push((format!("person.{}.{}", p.dataset, m.name), n, ValType::I64));
            }
            needed.push((format!("person.{}.keep", p.dataset), n, ValType::I32));
        }
        for (name, n, result) in needed {
            match module.export(&name) {
                None if name.ends_with(".keep") => {}
                None => {
                    return Err(Outcome::Refused {
                        reason: format!("the module does not export the function `{name}`"),
                    });
                }
                Some((_, params, results)) => {
                    if params.len() != n || !same(results, std::slice::from_ref(&result)) {
                        return Err(Outcome::Refused {
                            reason: format!(
                                "export `{name}` must take {n} parameters (the declared columns, in order) and return {result}"
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The driver of `plan` for `module`: every function it calls checked against the plan's
    /// types, its module compiled once per text.
    fn bind(
        &self,
        module: &JobModule,
        plan: &Plan,
    ) -> Result<(Driver, Vec<Feeds>, Module), Outcome> {
        let loops = driver::loops(plan, &|n| module.export(n).is_some());
        let mut feeds = Vec::new();
        let mut list = Vec::new();
        for (feed, l) in loops {
            let params: Vec<ValType> = l.params.iter().map(|w| val(*w)).collect();
            let calls = l
                .keep
                .iter()
                .chain(l.keys.iter().map(|k| &k.0))
                .map(|n| (n, ValType::I32))
                .chain(l.measures.iter().map(|n| (n, ValType::I64)));
            for (name, result) in calls {
                let ok = module.export(name).is_some_and(|(_, p, r)| {
                    same(p, &params) && same(r, std::slice::from_ref(&result))
                });
                if !ok {
                    return Err(Outcome::Refused {
                        reason: format!(
                            "the module must export `{name}` with the type {} -> {result}",
                            wat_types(&params)
                        ),
                    });
                }
            }
            feeds.push(feed);
            list.push(l);
        }
        let driver = driver::driver(list, self.limits.batch_rows as usize);
        let key = hex::encode(Sha256::digest(driver.wat.as_bytes()));
        let cached = self
            .drivers
            .lock()
            .expect("driver cache")
            .get(&key)
            .cloned();
        let compiled = match cached {
            Some(m) => m,
            None => {
                let m = Module::new(&self.engine, &driver.wat).map_err(|e| Outcome::HostError {
                    message: format!("the driver does not compile: {e}"),
                })?;
                self.drivers
                    .lock()
                    .expect("driver cache")
                    .insert(key, m.clone());
                m
            }
        };
        Ok((driver, feeds, compiled))
    }

    fn instantiate(
        &self,
        module: &JobModule,
        driver: &Driver,
        compiled: &Module,
        shared: &Arc<Shared>,
    ) -> Result<Pair, Outcome> {
        let mut store = Store::new(
            &self.engine,
            StoreState {
                shared: Arc::clone(shared),
                limiter: Limiter {
                    max_bytes: self.limits.max_memory_bytes,
                    used: 0,
                    peak: 0,
                    hit: false,
                },
            },
        );
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
        let guest =
            Instance::new(&mut store, &module.module, &[]).map_err(|e| classify(&e, &store))?;
        let mut imports: Vec<Extern> = Vec::new();
        for l in &driver.loops {
            let names = l
                .keep
                .iter()
                .chain(l.keys.iter().map(|k| &k.0))
                .chain(l.measures.iter());
            for name in names {
                let f = guest
                    .get_func(&mut store, name)
                    .ok_or_else(|| Outcome::HostError {
                        message: format!("export `{name}` vanished"),
                    })?;
                imports.push(f.into());
            }
        }
        let host =
            Instance::new(&mut store, compiled, &imports).map_err(|e| classify(&e, &store))?;
        let memory = host
            .get_memory(&mut store, "memory")
            .ok_or_else(|| Outcome::HostError {
                message: "the driver has no memory".into(),
            })?;
        let loops = driver
            .loops
            .iter()
            .map(|l| host.get_typed_func::<i32, i32>(&mut store, &l.export))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Outcome::HostError {
                message: format!("driver: {e}"),
            })?;
        Ok(Pair {
            store,
            memory,
            loops,
        })
    }

    /// Runs `module` under `manifest` on `inputs`: binds the manifest to the inputs (refusing
    /// undeclared, disallowed or forbidden columns and what the release policy forbids before
    /// anything runs), splits the rows over `opts.instances` instances, merges their
    /// contributions exactly, runs the per-person stage, then applies per-person bounds,
    /// thresholds, dominance and noise. Never panics on any module or argument.
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
            dataset_rows: inputs
                .iter()
                .filter(|i| manifest.datasets.iter().any(|d| d.name == i.name))
                .map(|i| i.source.rows())
                .sum(),
            contributions: 0,
            contributions_without_person: 0,
            contributions_out_of_domain: 0,
            memory_peak_bytes: 0,
            host_bytes_peak: 0,
            cells_released: 0,
            cells_suppressed: 0,
            epsilon_spent: 0.0,
            aggregates: Vec::new(),
        };
        let budget = HostBudget::new(self.limits.max_host_bytes);
        let result = self.run_inner(
            module,
            manifest,
            inputs,
            opts,
            instances,
            &mut report,
            started,
            &budget,
        );
        report.host_bytes_peak = budget.peak();
        let (output, members, outcome) = match result {
            Ok((output, members)) => (Some(output), members, Outcome::Finished),
            Err(o) => (None, Vec::new(), o),
        };
        report.outcome = outcome;
        report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        RunResult {
            output,
            report,
            members,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_inner(
        &self,
        module: &JobModule,
        manifest: &Manifest,
        inputs: &[DatasetInput],
        opts: &RunOptions,
        instances: usize,
        report: &mut RunReport,
        started: Instant,
        budget: &Arc<HostBudget>,
    ) -> Result<(Output, Vec<CellMembers>), Outcome> {
        let plan = plan(manifest, inputs, &self.limits).map_err(|e| match e {
            PlanError::Refused(reason) => Outcome::Refused { reason },
            PlanError::TooManyGroups(reason) => Outcome::TooManyGroups { reason },
        })?;
        let (driver, feeds, compiled) = self.bind(module, &plan)?;
        let shared = Arc::new(Shared {
            cancel: opts.cancel.clone(),
            abort: AtomicBool::new(false),
            deadline: started + self.limits.timeout,
            contributions: AtomicU64::new(0),
            limits: self.limits.clone(),
            cursors: plan.datasets.iter().map(|_| AtomicU64::new(0)).collect(),
            budget: Arc::clone(budget),
        });
        let scan_one = || -> Result<Scan, Outcome> {
            let mut pair = self.instantiate(module, &driver, &compiled, &shared)?;
            let scan = scan(&mut pair, &plan, &driver, &feeds, &shared);
            if scan.is_err() {
                shared.abort.store(true, Ordering::Relaxed);
            }
            scan.map(|mut s| {
                s.memory_peak = pair.store.data().limiter.peak;
                s
            })
        };
        let scans: Vec<Result<Scan, Outcome>> = if instances == 1 {
            vec![scan_one()]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..instances).map(|_| s.spawn(scan_one)).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Outcome::HostError {
                                message: "an instance thread panicked".into(),
                            })
                        })
                    })
                    .collect()
            })
        };
        let mut partials: Vec<Vec<Partial>> = plan.aggregates.iter().map(|_| Vec::new()).collect();
        let mut persons: Vec<PersonTotals> = plan
            .person
            .iter()
            .map(|_| PersonTotals::default())
            .collect();
        // The instances' charges stay until their buffers are charged per aggregate below; the
        // merged per-person totals are charged after each instance's are merged in, and nothing
        // more is merged once the budget is exceeded.
        let mut scan_holds = Vec::new();
        let mut persons_held = budget.hold("per-person totals", 0)?;
        let mut failure: Option<Outcome> = None;
        for s in scans {
            match s {
                Err(o) => {
                    // A cancellation caused by another instance's failure is not the cause.
                    if failure.is_none() || failure == Some(Outcome::Cancelled) {
                        failure = Some(o);
                    }
                }
                Ok(_) if failure.is_some() => {}
                Ok(s) => {
                    report.rows_read += s.rows_read;
                    report.contributions_without_person += s.without_person;
                    report.contributions_out_of_domain += s.out_of_domain;
                    report.memory_peak_bytes = report.memory_peak_bytes.max(s.memory_peak as u64);
                    for (i, p) in s.partials.into_iter().enumerate() {
                        partials[i].push(p);
                    }
                    for (i, p) in s.persons.into_iter().enumerate() {
                        persons[i].merge(1 + plan.person[i].measures.len(), p);
                    }
                    scan_holds.push((s.partials_held, s.persons_held));
                    let merged = persons.iter().map(PersonTotals::bytes).sum();
                    if let Err(o) = persons_held.set(merged) {
                        failure = Some(o);
                    }
                }
            }
        }
        if opts.cancel.is_cancelled() {
            return Err(Outcome::Cancelled);
        }
        if let Some(f) = failure {
            return Err(f);
        }
        drop(scan_holds);
        let mut partials_held = partials
            .iter()
            .map(|p| budget.hold("contributions", p.iter().map(Partial::bytes).sum()))
            .collect::<Result<Vec<Held>, Outcome>>()?;
        if plan.aggregates.iter().any(|a| a.stage == Stage::Persons) {
            let mut pair = self.instantiate(module, &driver, &compiled, &shared)?;
            let stage = person_stage(&mut pair, &plan, &driver, &feeds, &shared, &persons)?;
            report.contributions_out_of_domain += stage.out_of_domain;
            for (i, p) in stage.partials.into_iter().enumerate() {
                partials_held[i].add(p.bytes())?;
                partials[i].push(p);
            }
        }
        drop(persons);
        drop(persons_held);
        report.contributions = shared.contributions.load(Ordering::Relaxed);
        let mut rng = match opts.noise_seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        let mut tables = Vec::new();
        let mut members = Vec::new();
        let mut output_held = budget.hold("released tables", 0)?;
        for ((agg, partials), held) in plan.aggregates.iter().zip(partials).zip(partials_held) {
            shared.check()?;
            let keep_members = opts.members && agg.noise.is_none();
            let bounds = Bounds::of(agg, keep_members);
            let tally_held = budget.hold("tallies", tally_bytes(&bounds, &partials, instances))?;
            let totals = tally(&bounds, &partials, instances);
            drop(partials);
            drop(held);
            let (table, stats, cells) =
                finalize(agg, totals, self.limits.dominance_share, &mut rng);
            drop(tally_held);
            let listed: usize = cells.iter().map(|(_, m)| m.len()).sum();
            output_held.add(table.bytes() + (listed * size_of::<u64>()) as u64)?;
            report.cells_released += stats.cells_released;
            report.cells_suppressed += stats.cells_suppressed;
            report.epsilon_spent += stats.epsilon_spent;
            report.aggregates.push(stats);
            tables.push(table);
            members.push(cells);
        }
        let output = Output {
            job: manifest.name.clone(),
            abi: crate::manifest::ABI_VERSION,
            aggregates: tables,
        };
        Ok((output, members))
    }

    /// Instantiates the module and its driver and makes the first call into wasm, for the
    /// start-latency benchmark: the time from instantiation to the first guest instruction.
    pub fn start_latency(
        &self,
        module: &JobModule,
        manifest: &Manifest,
        inputs: &[DatasetInput],
    ) -> Result<Duration, Outcome> {
        let plan = plan(manifest, inputs, &self.limits).map_err(|e| match e {
            PlanError::Refused(reason) => Outcome::Refused { reason },
            PlanError::TooManyGroups(reason) => Outcome::TooManyGroups { reason },
        })?;
        let (driver, _, compiled) = self.bind(module, &plan)?;
        let shared = Arc::new(Shared {
            cancel: CancelToken::new(),
            abort: AtomicBool::new(false),
            deadline: Instant::now() + self.limits.timeout,
            contributions: AtomicU64::new(0),
            limits: self.limits.clone(),
            cursors: Vec::new(),
            budget: HostBudget::new(self.limits.max_host_bytes),
        });
        let t = Instant::now();
        let mut pair = self.instantiate(module, &driver, &compiled, &shared)?;
        if let Some(f) = pair.loops.first() {
            let _ = f.call(&mut pair.store, 0);
        }
        Ok(t.elapsed())
    }
}

/// The kept rows of one driver call: their numbers (`u32`), cells (`u32`) and measures (`i64`,
/// row-major), little-endian, in the driver's memory.
type Kept<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Calls loop `li` of the driver over the `n` rows placed in its memory; the kept rows'
/// numbers, cells and measures.
fn call_loop<'a>(
    pair: &'a mut Pair,
    driver: &Driver,
    li: usize,
    n: usize,
) -> Result<Kept<'a>, Outcome> {
    let kept = pair.loops[li]
        .call(&mut pair.store, n as i32)
        .map_err(|e| classify(&e, &pair.store))?;
    let kept = usize::try_from(kept).unwrap_or(0).min(n);
    let m = driver.loops[li].measures.len();
    let data = pair.memory.data(&pair.store);
    Ok((
        &data[driver.out_rows..driver.out_rows + 4 * kept],
        &data[driver.out_cells..driver.out_cells + 4 * kept],
        &data[driver.out_measures..driver.out_measures + 8 * kept * m],
    ))
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

fn i64_at(b: &[u8], i: usize) -> i64 {
    i64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// One instance's share of the row stage: batches taken from the shared cursors until every
/// dataset is read, each batch's columns written into the driver's memory once and every loop
/// over that dataset called on it.
fn scan(
    pair: &mut Pair,
    plan: &Plan,
    driver: &Driver,
    feeds: &[Feeds],
    shared: &Shared,
) -> Result<Scan, Outcome> {
    let mut out = Scan {
        partials: plan
            .aggregates
            .iter()
            .map(|a| Partial::new(a.measures.len(), a.cells))
            .collect(),
        persons: plan
            .person
            .iter()
            .map(|_| PersonTotals::default())
            .collect(),
        partials_held: shared.budget.hold("contributions", 0)?,
        persons_held: shared.budget.hold("per-person totals", 0)?,
        rows_read: 0,
        without_person: 0,
        out_of_domain: 0,
        memory_peak: 0,
    };
    let mut persons_buf: Vec<u64> = Vec::new();
    let mut measures: Vec<i64> = Vec::new();
    let b = driver.rows as u64;
    for (d, dataset) in plan.datasets.iter().enumerate() {
        let on_d: Vec<usize> = feeds
            .iter()
            .enumerate()
            .filter(|(_, f)| match f {
                Feeds::Aggregate(a) => plan.aggregates[*a].stage == Stage::Rows(d),
                Feeds::Person(p) => plan.person[*p].dataset == d,
            })
            .map(|(i, _)| i)
            .collect();
        let Some(&first) = on_d.first() else {
            continue;
        };
        let source = &dataset.input.source;
        let rows = source.rows();
        loop {
            shared.check()?;
            let cursor = &shared.cursors[d];
            let start = if cursor.load(Ordering::Relaxed) >= rows {
                rows
            } else {
                cursor.fetch_add(b, Ordering::Relaxed).min(rows)
            };
            let n = b.min(rows - start) as usize;
            if n == 0 {
                break;
            }
            let data = pair.memory.data_mut(&mut pair.store);
            for (c, &off) in dataset.columns.iter().zip(&driver.columns[first]) {
                let w = c.wasm.width();
                source
                    .read_raw(c.index, start, n, &mut data[off..off + n * w])
                    .map_err(|e| Outcome::HostError {
                        message: format!("reading `{}`: {e}", dataset.name),
                    })?;
            }
            let persons: &[u64] = match source.pseudonyms(dataset.privacy_unit) {
                Some(all) => usize::try_from(start)
                    .ok()
                    .and_then(|s| all.get(s..)?.get(..n))
                    .ok_or_else(|| Outcome::HostError {
                        message: format!(
                            "the privacy unit of `{}` is shorter than the table",
                            dataset.name
                        ),
                    })?,
                None => {
                    persons_buf.resize(n, 0);
                    source
                        .read_pseudonyms(dataset.privacy_unit, start, &mut persons_buf)
                        .map_err(|e| Outcome::HostError {
                            message: format!("reading `{}`: {e}", dataset.name),
                        })?;
                    &persons_buf
                }
            };
            out.rows_read += n as u64;
            for &li in &on_d {
                let (rws, cells, meas) = call_loop(pair, driver, li, n)?;
                let kept = rws.len() / 4;
                shared.count(kept)?;
                match feeds[li] {
                    Feeds::Aggregate(a) => {
                        let agg = &plan.aggregates[a];
                        let m = agg.measures.len();
                        measures.resize(m, 0);
                        let partial = &mut out.partials[a];
                        for j in 0..kept {
                            let cell = u32_at(cells, j);
                            if cell == OUT_OF_DOMAIN {
                                out.out_of_domain += 1;
                                continue;
                            }
                            let person = persons[u32_at(rws, j) as usize];
                            if person == NULL_PSEUDONYM {
                                out.without_person += 1;
                                continue;
                            }
                            for (k, x) in agg.measures.iter().enumerate() {
                                measures[k] = i64_at(meas, j * m + k).clamp(x.lo, x.hi);
                            }
                            partial.add(person, cell, &measures);
                        }
                    }
                    Feeds::Person(p) => {
                        let input = &plan.person[p];
                        let m = input.measures.len();
                        measures.resize(m, 0);
                        let totals = &mut out.persons[p];
                        for j in 0..kept {
                            let person = persons[u32_at(rws, j) as usize];
                            if person == NULL_PSEUDONYM {
                                out.without_person += 1;
                                continue;
                            }
                            for (k, x) in input.measures.iter().enumerate() {
                                measures[k] = i64_at(meas, j * m + k).clamp(x.lo, x.hi);
                            }
                            totals.add(1 + m, person, &measures);
                        }
                    }
                }
            }
            out.partials_held
                .set(out.partials.iter().map(Partial::bytes).sum())?;
            out.persons_held
                .set(out.persons.iter().map(PersonTotals::bytes).sum())?;
        }
    }
    Ok(out)
}

/// What the per-person stage returned.
struct PersonStage {
    partials: Vec<Partial>,
    out_of_domain: u64,
}

/// The per-person stage: each person's bounded totals (per input: rows kept, then each
/// measure's sum) are handed, a batch of persons at a time, to the per-person aggregates'
/// loops; each kept person makes one contribution.
fn person_stage(
    pair: &mut Pair,
    plan: &Plan,
    driver: &Driver,
    feeds: &[Feeds],
    shared: &Shared,
    totals: &[PersonTotals],
) -> Result<PersonStage, Outcome> {
    let mut out = PersonStage {
        partials: plan
            .aggregates
            .iter()
            .map(|a| Partial::new(a.measures.len(), a.cells))
            .collect(),
        out_of_domain: 0,
    };
    let listed: usize = totals.iter().map(|t| t.index.len()).sum();
    let mut held = shared.budget.hold(
        "per-person contributions",
        (listed * size_of::<u64>()) as u64,
    )?;
    let mut everyone: Vec<u64> = Vec::with_capacity(listed);
    everyone.extend(totals.iter().flat_map(|t| t.index.keys().copied()));
    everyone.sort_unstable();
    everyone.dedup();
    let loops: Vec<(usize, usize)> = feeds
        .iter()
        .enumerate()
        .filter_map(|(li, f)| match f {
            Feeds::Aggregate(a) if plan.aggregates[*a].stage == Stage::Persons => Some((li, *a)),
            _ => None,
        })
        .collect();
    let Some(&(first, _)) = loops.first() else {
        return Ok(out);
    };
    let offsets = driver.columns[first].clone();
    let mut measures: Vec<i64> = Vec::new();
    for batch in everyone.chunks(driver.rows) {
        shared.check()?;
        let data = pair.memory.data_mut(&mut pair.store);
        let mut param = 0;
        for (input, t) in plan.person.iter().zip(totals) {
            let stride = 1 + input.measures.len();
            let c = i128::from(input.max_rows);
            for k in 0..stride {
                let off = offsets[param + k];
                for (r, person) in batch.iter().enumerate() {
                    let v = match t.index.get(person) {
                        None => 0,
                        Some(&i) => {
                            let raw = t.values[i as usize * stride + k];
                            if k == 0 {
                                raw.min(c)
                            } else {
                                let x = &input.measures[k - 1];
                                raw.clamp(i128::from(x.lo) * c, i128::from(x.hi) * c)
                            }
                        }
                    };
                    let v = i64::try_from(v).expect("bounded by max_rows × 10^12");
                    data[off + r * 8..off + r * 8 + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            param += stride;
        }
        for &(li, a) in &loops {
            let (rws, cells, meas) = call_loop(pair, driver, li, batch.len())?;
            let kept = rws.len() / 4;
            shared.count(kept)?;
            let agg = &plan.aggregates[a];
            let m = agg.measures.len();
            measures.resize(m, 0);
            for j in 0..kept {
                let cell = u32_at(cells, j);
                if cell == OUT_OF_DOMAIN {
                    out.out_of_domain += 1;
                    continue;
                }
                for (k, x) in agg.measures.iter().enumerate() {
                    measures[k] = i64_at(meas, j * m + k).clamp(x.lo, x.hi);
                }
                out.partials[a].add(batch[u32_at(rws, j) as usize], cell, &measures);
            }
        }
        let bytes = out.partials.iter().map(Partial::bytes).sum::<u64>();
        held.set((listed * size_of::<u64>()) as u64 + bytes)?;
    }
    Ok(out)
}

/// Maps a wasmtime error to an outcome.
fn classify(e: &wasmtime::Error, store: &Store<StoreState>) -> Outcome {
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return match stop {
            Stop::OutOfTime => Outcome::OutOfTime,
            Stop::Cancelled | Stop::Aborted => Outcome::Cancelled,
            Stop::OutOfMemory => Outcome::OutOfMemory,
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
