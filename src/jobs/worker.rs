//! Workers: claim a run from the queue, run it in the sandbox next to the data, record the
//! result.
//!
//! * **Claim.** One transaction selects the oldest run that is `queued`, or `running` with an
//!   expired lease (its worker died), with `FOR UPDATE SKIP LOCKED` on PostgreSQL, and moves it
//!   to `running` with an `UPDATE … WHERE state = <the state read>` that also requires the
//!   lease to be expired, so two workers (threads, processes or machines) never both win; on
//!   SQLite the database's single writer makes the conditional update atomic.
//! * **Start.** In the claim's transaction, the agreement is checked again (ended: the run is
//!   cancelled, never started), and the privacy budget (exhausted: the run fails); the newest
//!   published version of each bound dataset, of the schema version its agreement accepted
//!   ([`crate::agreements::schemas`]), is pinned in the run.
//! * Every write goes through [`db::write_transaction`], which serializes this process's
//!   SQLite writers (a deferred transaction that read before another writer committed could
//!   not upgrade its lock).
//! * **Run.** The sandbox runs on the worker's thread; beside it, every quarter second, a lease
//!   keeper thread writes the progress and renews the lease with an update that requires the
//!   run to be still `running` under its lease. When that fails (cancelled, or taken over) the
//!   sandbox is cancelled and the result discarded.
//! * **Finish.** In one transaction, only if the lease is still held: the outcome, report,
//!   output (withheld until review), guest log and metering are stored, the differencing guard
//!   keeps the persons of the cells released without noise ([`super::differencing::keep`]),
//!   and the operator and the reviewer are told.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use super::machine::{ComputationState, RunAction, RunState};
use super::model::{self, Job, VersionUsed};
use super::ops;
use crate::AppState;
use crate::db::{self, Backend, DbConnection};
use crate::errors::AppError;
use crate::mail::{self, Notice};
use crate::schema::{job_meters, jobs};
use crate::supervision::audit::{self, Actor};
use crate::workflow::Machine as _;
use dataop_sandbox::columnar::{ColumnSpec, VersionReader};
use dataop_sandbox::{CancelToken, DatasetInput, Manifest, RunOptions, Runtime, TableSource};

/// Claims after which a run whose workers keep dying is failed instead of run again.
pub const MAX_ATTEMPTS: i32 = 3;

/// How often a running job's progress is written and its lease renewed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    state: String,
}

const PICK_SQLITE: &str = "SELECT id, state FROM jobs WHERE state = 'queued' \
     OR (state = 'running' AND lease_expires_at < ?) ORDER BY id LIMIT 1";
const PICK_PG: &str = "SELECT id, state FROM jobs WHERE state = 'queued' \
     OR (state = 'running' AND lease_expires_at < $1) ORDER BY id LIMIT 1 \
     FOR UPDATE SKIP LOCKED";

/// Claims the oldest claimable run for `owner` with a lease until `now + lease`; its id.
pub fn claim(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease: chrono::Duration,
) -> Result<Option<i64>, AppError> {
    db::write_transaction(conn, |conn| claim_in(conn, owner, now, lease))
}

/// [`claim`] inside the caller's transaction.
fn claim_in(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease: chrono::Duration,
) -> Result<Option<i64>, AppError> {
    let sql = match conn.backend() {
        Backend::Sqlite => PICK_SQLITE,
        Backend::Postgres => PICK_PG,
    };
    let picked: Option<Candidate> = diesel::sql_query(sql)
        .bind::<Timestamp, _>(now)
        .get_result(conn)
        .optional()?;
    let Some(c) = picked else {
        return Ok(None);
    };
    RunState::parse(&c.state)
        .map_err(anyhow::Error::from)?
        .decide(RunAction::Claim)?;
    let n = diesel::update(
        jobs::table
            .filter(jobs::id.eq(c.id))
            .filter(jobs::state.eq(&c.state))
            .filter(
                jobs::lease_expires_at
                    .is_null()
                    .or(jobs::lease_expires_at.lt(now)),
            ),
    )
    .set((
        jobs::state.eq(RunState::Running.as_str()),
        jobs::lease_owner.eq(owner),
        jobs::lease_expires_at.eq(now + lease),
        jobs::attempts.eq(jobs::attempts + 1),
        jobs::started_at.eq(diesel::dsl::case_when(
            jobs::started_at.is_null(),
            Some(now).into_sql::<Nullable<Timestamp>>(),
        )
        .otherwise(jobs::started_at)),
    ))
    .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    audit::record(
        conn,
        &Actor::system(),
        "job.claim",
        "job",
        &c.id.to_string(),
        serde_json::json!({ "worker": owner, "from": c.state }),
    )?;
    Ok(Some(c.id))
}

/// A table source that counts the rows read of one column (for the progress bar).
struct Counted {
    inner: VersionReader,
    column: Option<usize>,
    read: Arc<AtomicU64>,
}

impl TableSource for Counted {
    fn columns(&self) -> &[ColumnSpec] {
        self.inner.columns()
    }

    fn rows(&self) -> u64 {
        self.inner.rows()
    }

    fn read_raw(&self, col: usize, start: u64, n: usize, dst: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_raw(col, start, n, dst)?;
        if Some(col) == self.column {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_pseudonyms(&self, col: usize, start: u64, out: &mut [u64]) -> std::io::Result<()> {
        self.inner.read_pseudonyms(col, start, out)
    }
}

/// The result of checking a claimed run before it starts.
enum Start {
    /// Run it on these versions.
    Go(Vec<VersionUsed>, Box<super::model::Computation>),
    /// It was stopped (the state says how).
    Stopped,
}

/// Stops a run before the sandbox ran it: `reason` is a message key of the platform's, or,
/// with the outcome kind `outcome` (else empty), the host's own words.
fn fail(
    conn: &mut DbConnection,
    j: &Job,
    action: RunAction,
    reason: &str,
    outcome: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    db::write_transaction(conn, |conn| {
        let j = ops::load_job(conn, j.id)?;
        ops::move_job(conn, &j, action, now)?;
        diesel::update(jobs::table.find(j.id))
            .set((jobs::reason.eq(reason), jobs::outcome.eq(outcome)))
            .execute(conn)?;
        audit::record(
            conn,
            &Actor::system(),
            "job.stop",
            "job",
            &j.id.to_string(),
            serde_json::json!({ "reason": reason }),
        )?;
        mail::to_org(
            conn,
            j.org_id,
            &Notice {
                template: "jobs.mail.failed",
                args: &[
                    ("id", j.id.to_string()),
                    (
                        "reason",
                        if outcome.is_empty() {
                            ops::reason_both(reason)
                        } else {
                            ops::outcome_both(outcome, reason)
                        },
                    ),
                ],
                object_type: "job",
                object_id: j.id.to_string(),
            },
        )?;
        Ok(())
    })
}

/// Checks a just-claimed run before it starts (inside the claim's transaction): stops it when
/// its workers died too often, its agreement ended, its budget is spent, a dataset has no
/// published version (of the schema its agreement accepted) or the release policy of the
/// datasets' grades now forbids it; otherwise pins the newest such version of each bound
/// dataset.
fn start(state: &AppState, conn: &mut DbConnection, id: i64) -> Result<Start, AppError> {
    let now = state.clock.now();
    let j = ops::load_job(conn, id)?;
    if j.attempts > MAX_ATTEMPTS {
        fail(conn, &j, RunAction::Fail, ops::TOO_MANY_ATTEMPTS, "", now)?;
        return Ok(Start::Stopped);
    }
    let c = ops::load_computation(conn, j.computation_id)?;
    if c.state != ComputationState::Approved {
        fail(conn, &j, RunAction::Cancel, ops::REVOKED, "", now)?;
        return Ok(Start::Stopped);
    }
    let Some(a) = ops::agreement_still_covers(conn, &c, state.clock.today())? else {
        fail(
            conn,
            &j,
            RunAction::AgreementEnded,
            ops::AGREEMENT_ENDED,
            "",
            now,
        )?;
        return Ok(Start::Stopped);
    };
    if !ops::budget_fits(conn, &c, &a)? {
        fail(conn, &j, RunAction::Fail, ops::BUDGET_EXHAUSTED, "", now)?;
        return Ok(Start::Stopped);
    }
    let mut used = Vec::new();
    for (name, dataset_id) in c.binding_map() {
        let schema_no = crate::agreements::schemas::accepted(conn, a.id, dataset_id)?;
        let v = crate::catalog::model::published_of_schema(conn, dataset_id, schema_no)?.map(|v| {
            (
                v.id,
                v.version_no,
                v.row_count,
                v.created_at,
                v.storage_path,
            )
        });
        let grade =
            crate::catalog::model::find_dataset(conn, dataset_id)?.map_or(4, |(d, _)| d.grade);
        let Some((version_id, version_no, rows, obtained_at, storage_path)) = v else {
            fail(conn, &j, RunAction::Fail, ops::NO_DATA, "", now)?;
            return Ok(Start::Stopped);
        };
        used.push(VersionUsed {
            name,
            dataset_id,
            version_id,
            version_no,
            rows,
            obtained_at,
            storage_path,
            grade,
        });
    }
    if let Some(reason) =
        super::policy::refusal_at_start(state.sandbox.limits(), &c.manifest, &used)
    {
        fail(conn, &j, RunAction::Fail, &reason, "", now)?;
        return Ok(Start::Stopped);
    }
    let total: i64 = used.iter().map(|v| v.rows).sum();
    let versions = serde_json::to_string(&used).map_err(anyhow::Error::from)?;
    diesel::update(jobs::table.find(id))
        .set((
            jobs::versions.eq(&versions),
            jobs::rows_total.eq(total),
            jobs::rows_done.eq(0),
        ))
        .execute(conn)?;
    Ok(Start::Go(used, Box::new(c)))
}

/// What a run needs: the runtime, the module bytes, the manifest and the bound datasets.
type Prepared = (Arc<Runtime>, Vec<u8>, Manifest, Vec<DatasetInput>);

fn prepare(
    state: &AppState,
    c: &super::model::Computation,
    used: &[VersionUsed],
    read: &Arc<AtomicU64>,
) -> anyhow::Result<Prepared> {
    let rt = state
        .sandbox
        .runtime(&state.config.data_dir, &state.secrets)?;
    let wasm = std::fs::read(model::module_path(&state.config.data_dir, &c.module_sha256))?;
    let manifest = Manifest::from_toml(&c.manifest).map_err(|e| anyhow::anyhow!(e))?;
    let mut inputs = Vec::new();
    for v in used {
        let reader = VersionReader::open(&state.config.data_dir.join(&v.storage_path))?;
        let first = manifest
            .datasets
            .iter()
            .find(|d| d.name == v.name)
            .and_then(|d| d.columns.first())
            .and_then(|col| reader.column_index(col));
        let allowed = reader
            .meta()
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect();
        inputs.push(DatasetInput {
            grade: u8::try_from(v.grade).unwrap_or(4),
            name: v.name.clone(),
            source: Arc::new(Counted {
                inner: reader,
                column: first,
                read: Arc::clone(read),
            }),
            allowed_columns: allowed,
        });
    }
    Ok((rt, wasm, manifest, inputs))
}

/// Runs one claimable run, if there is one, as worker `owner`; whether there was one.
pub fn run_once(state: &AppState, owner: &str) -> anyhow::Result<bool> {
    let mut conn = state.pool.get()?;
    let lease = chrono::Duration::seconds(state.config.job_lease_secs as i64);
    // The claim and the checks before the start commit together: one transaction per run
    // fewer, and a run never shows as started without its pinned versions.
    let claimed = db::write_transaction(&mut conn, |conn| {
        let Some(id) = claim_in(conn, owner, state.clock.now(), lease)? else {
            return Ok(None);
        };
        start(state, conn, id).map(|s| Some((id, s)))
    })
    .map_err(to_anyhow)?;
    let Some((id, start)) = claimed else {
        return Ok(false);
    };
    let (used, c) = match start {
        Start::Go(used, c) => (used, c),
        Start::Stopped => return Ok(true),
    };
    let read = Arc::new(AtomicU64::new(0));
    let (rt, wasm, manifest, inputs) = match prepare(state, &c, &used, &read) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(job = id, error = %e, "job could not be prepared");
            let j = ops::load_job(&mut conn, id).map_err(to_anyhow)?;
            fail(
                &mut conn,
                &j,
                RunAction::Fail,
                &format!("host error: {e}"),
                "host_error",
                state.clock.now(),
            )
            .map_err(to_anyhow)?;
            return Ok(true);
        }
    };
    let cancel = CancelToken::new();
    // The persons of the cells released without noise, for the differencing guard.
    let opts = RunOptions {
        cancel: cancel.clone(),
        members: true,
        ..RunOptions::default()
    };
    // The sandbox runs on this thread, so a short run waits for no thread to be scheduled; the
    // lease keeper runs beside it and is told to stop when the run returns (it is not waited
    // for: the finish requires the lease anyway).
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let keeper = LeaseKeeper {
        pool: state.pool.clone(),
        clock: state.clock.clone(),
        id,
        owner: owner.to_owned(),
        lease,
        read: Arc::clone(&read),
        cancel: cancel.clone(),
    };
    std::thread::Builder::new()
        .name(format!("lease-{id}"))
        .spawn(move || keeper.keep(&stopped))?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match rt.load(&wasm) {
        Ok(module) => Ok(rt.run(&module, &manifest, &inputs, &opts)),
        Err(outcome) => Err(outcome),
    }));
    drop(stop);
    let result = result.map_err(|_| anyhow::anyhow!("the sandbox run panicked"))?;
    finish(state, &mut conn, id, owner, &c, &used, result).map_err(to_anyhow)?;
    Ok(true)
}

/// Writes a running job's progress and renews its lease every [`PROGRESS_EVERY`] until told to
/// stop; cancels the run when the update finds it no longer `running` under this lease.
struct LeaseKeeper {
    pool: db::DbPool,
    clock: crate::calendar::Clock,
    id: i64,
    owner: String,
    lease: chrono::Duration,
    read: Arc<AtomicU64>,
    cancel: CancelToken,
}

impl LeaseKeeper {
    fn keep(self, stopped: &std::sync::mpsc::Receiver<()>) {
        // A connection of its own, taken at the first renewal: most runs end before it.
        let mut conn = None;
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(PROGRESS_EVERY)
        {
            if conn.is_none() {
                conn = self.pool.get_timeout(PROGRESS_EVERY).ok();
            }
            let Some(conn) = conn.as_mut() else {
                continue;
            };
            let now = self.clock.now();
            let done = self.read.load(Ordering::Relaxed) as i64;
            let kept = db::write_transaction(conn, |conn| {
                diesel::update(
                    jobs::table
                        .filter(jobs::id.eq(self.id))
                        .filter(jobs::state.eq(RunState::Running.as_str()))
                        .filter(jobs::lease_owner.eq(&self.owner)),
                )
                .set((
                    jobs::rows_done.eq(done),
                    jobs::lease_expires_at.eq(now + self.lease),
                ))
                .execute(conn)
            });
            if matches!(kept, Ok(0)) {
                self.cancel.cancel();
            }
        }
    }
}

fn to_anyhow(e: AppError) -> anyhow::Error {
    match e {
        AppError::Internal(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

fn finish(
    state: &AppState,
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    c: &super::model::Computation,
    used: &[VersionUsed],
    result: Result<dataop_sandbox::RunResult, dataop_sandbox::runtime::Outcome>,
) -> Result<(), AppError> {
    let now = state.clock.now();
    db::write_transaction(conn, |conn| {
        let j = ops::load_job(conn, id)?;
        if j.state != RunState::Running || j.lease_owner.as_deref() != Some(owner) {
            return Ok(());
        }
        let (outcome, report, output) = match &result {
            Ok(r) => (
                r.report.outcome.clone(),
                Some(r.report.to_json()),
                r.output.as_ref().map(|o| o.to_json()),
            ),
            Err(o) => (o.clone(), None, None),
        };
        let kind = outcome.kind().to_owned();
        let finished = outcome.is_finished() && output.is_some();
        let action = if finished {
            RunAction::Finish
        } else {
            RunAction::Fail
        };
        ops::move_job(conn, &j, action, now)?;
        if let (true, Ok(r)) = (finished, &result) {
            super::differencing::keep(conn, &j, c, r)?;
        }
        let rows_read = result.as_ref().map_or(0, |r| r.report.rows_read as i64);
        diesel::update(jobs::table.find(id))
            .set((
                jobs::outcome.eq(&kind),
                jobs::reason.eq(if finished {
                    String::new()
                } else {
                    outcome.describe()
                }),
                jobs::report.eq(&report),
                jobs::output.eq(&output),
                jobs::guest_log.eq(None::<String>),
                jobs::rows_done.eq(if finished { j.rows_total } else { j.rows_done }),
            ))
            .execute(conn)?;
        let (price_job, price_rows) = crate::agreements::prices(conn, c.agreement_id)?;
        for v in used {
            diesel::insert_into(job_meters::table)
                .values((
                    job_meters::job_id.eq(id),
                    job_meters::agreement_id.eq(c.agreement_id),
                    job_meters::dataset_id.eq(v.dataset_id),
                    job_meters::version_id.eq(v.version_id),
                    job_meters::rows_read.eq(if finished { v.rows } else { 0 }),
                    job_meters::price_per_job.eq(&price_job),
                    job_meters::price_per_thousand_rows.eq(&price_rows),
                    job_meters::recorded_at.eq(now),
                ))
                .execute(conn)?;
        }
        audit::record(
            conn,
            &Actor::system(),
            if finished { "job.finish" } else { "job.fail" },
            "job",
            &id.to_string(),
            serde_json::json!({
                "worker": owner, "outcome": kind, "rows_read": rows_read,
                "module_sha256": c.module_sha256,
            }),
        )?;
        let args = [
            ("id", id.to_string()),
            ("name", c.name.clone()),
            // The outcome's kind as an operator is shown it: its details, and which of the
            // kinds a module can bring about it is, may carry what the guest chose.
            (
                "reason",
                ops::outcome_both(dataop_sandbox::runtime::operator_kind(&kind), ""),
            ),
        ];
        let notice = Notice {
            template: if finished {
                "jobs.mail.finished"
            } else {
                "jobs.mail.failed"
            },
            args: &args,
            object_type: "job",
            object_id: id.to_string(),
        };
        mail::to_org(conn, j.org_id, &notice)?;
        if finished {
            mail::to_orgs_with_role(
                conn,
                super::reviewer_role(state),
                &Notice {
                    template: "jobs.mail.output_review",
                    ..notice
                },
            )?;
        }
        Ok(())
    })
}

/// The PostgreSQL channel on which a process announces that it queued runs.
pub const QUEUE_CHANNEL: &str = "dataop_jobs_queued";

/// How often the listener of a PostgreSQL process checks its connection for announcements
/// (a local read, no query).
const LISTEN_EVERY: Duration = Duration::from_millis(5);

/// Tells the workers that runs were queued (call it once they are committed): this process's
/// idle workers at once ([`super::QueueBell`]), and on PostgreSQL every other process's too
/// (`NOTIFY`; SQLite's worker processes share a machine and find the runs at their next
/// look). A failed announcement is logged, not returned: the runs are queued either way and
/// will be found.
pub fn announce_queued(state: &AppState, conn: &mut DbConnection) {
    state.queue_bell.ring();
    if conn.backend() == Backend::Postgres
        && let Err(e) = diesel::sql_query(format!("NOTIFY {QUEUE_CHANNEL}")).execute(conn)
    {
        tracing::warn!(error = %e, "queued runs not announced to other processes");
    }
}

/// On PostgreSQL, a thread that listens for [`announce_queued`] and rings this process's bell,
/// reconnecting after a second when its connection fails.
fn spawn_listener(state: actix_web::web::Data<AppState>) {
    if Backend::of_url(&state.config.database_url) != Backend::Postgres {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("dataop-queue-listener".into())
        .spawn(move || {
            loop {
                if let Err(e) = listen(&state) {
                    tracing::warn!(error = %e, "job queue listener lost its connection");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "job queue listener not started; workers poll only");
    }
}

fn listen(state: &AppState) -> anyhow::Result<()> {
    use diesel::connection::SimpleConnection as _;
    let mut conn = diesel::pg::PgConnection::establish(&state.config.database_url)?;
    conn.batch_execute(&format!("LISTEN {QUEUE_CHANNEL}"))?;
    loop {
        let mut heard = false;
        for notification in conn.notifications_iter() {
            notification?;
            heard = true;
        }
        if heard {
            state.queue_bell.ring();
        }
        std::thread::sleep(LISTEN_EVERY);
    }
}

/// Starts `n` worker threads that run queued jobs until the process ends. An idle worker looks
/// at the queue again when a run is queued in this process ([`super::QueueBell`]) or, on
/// PostgreSQL, announced by another ([`announce_queued`]), or else after `job_poll_ms`.
/// `prefix` names them in leases and the audit log.
pub fn spawn_pool(
    state: actix_web::web::Data<AppState>,
    n: usize,
    prefix: &str,
) -> Vec<std::thread::JoinHandle<()>> {
    if n > 0 {
        spawn_listener(state.clone());
    }
    (0..n)
        .filter_map(|i| {
            let state = state.clone();
            let owner = format!("{prefix}-{}-{i}", std::process::id());
            std::thread::Builder::new()
                .name(format!("dataop-worker-{i}"))
                .spawn(move || {
                    let idle = Duration::from_millis(state.config.job_poll_ms);
                    loop {
                        let rung = state.queue_bell.rung();
                        match run_once(&state, &owner) {
                            Ok(true) => {}
                            Ok(false) => state.queue_bell.wait(rung, idle),
                            Err(e) => {
                                tracing::warn!(worker = owner, error = %e, "job worker error");
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                    }
                })
                .ok()
        })
        .collect()
}
