//! `dataop bench jobs`: the time from the submission of an already-approved module to
//! downloadable output for example job (a) on the demo dataset, and jobs per second completed
//! by two workers for 500 queued runs, on SQLite and (when a PostgreSQL URL is given)
//! PostgreSQL. The reviewer's release is done by the program at once, so the figure is the
//! platform's. Each figure is a p50 over 50 runs printed beside its target: end to end
//! (< 150 ms), and the platform's own time per run, everything but the sandbox run (< 2 ms on
//! SQLite, < 12 ms on PostgreSQL). Beside the platform's time it prints its floor, measured in
//! the same run: the four audited steps of a run's path reduced to one row update and its audit
//! entry each, the least the audit trail costs on that backend.

use std::io::Write;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;

use super::{demo, ops, worker};
use crate::auth::Role;
use crate::schema::jobs;
use crate::{AppState, Config};

/// Runs timed for the latency figure.
pub const LATENCY_RUNS: usize = 50;
/// Runs queued for the throughput figure.
pub const QUEUED_RUNS: usize = 500;
/// Target of the end-to-end p50, milliseconds.
pub const E2E_TARGET_MS: f64 = 150.0;

/// Target of the p50 of the platform's own time per run (everything but the sandbox run),
/// milliseconds, on `backend` (`sqlite` or `postgres`).
pub fn platform_target_ms(backend: &str) -> f64 {
    if backend == "postgres" { 12.0 } else { 2.0 }
}

/// `met` or `MISSED`: whether `ms` is under `target_ms`.
fn verdict(ms: f64, target_ms: f64) -> &'static str {
    if ms < target_ms { "met" } else { "MISSED" }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// A scratch data dir removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The figures of one backend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobFigures {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Rows of the dataset.
    pub rows: u64,
    /// End-to-end p50, milliseconds.
    pub e2e_p50_ms: f64,
    /// Sandbox run p50, milliseconds.
    pub sandbox_p50_ms: f64,
    /// Submission (checks and records) p50, milliseconds.
    pub submit_p50_ms: f64,
    /// Claim, start, sandbox run and finish p50, milliseconds.
    pub run_p50_ms: f64,
    /// Release (checks, signed files, debit) p50, milliseconds.
    pub release_p50_ms: f64,
    /// p50 of the platform's own time per run (its end-to-end time less its sandbox run),
    /// milliseconds.
    pub platform_p50_ms: f64,
    /// The target of `platform_p50_ms`, milliseconds.
    pub platform_target_ms: f64,
    /// p50 of the least a job's path can cost the platform, milliseconds: its four audited
    /// steps (submission, claim, finish, release) each reduced to one row update and its audit
    /// entry in a transaction of its own.
    pub floor_p50_ms: f64,
    /// Jobs per second with two workers.
    pub jobs_per_s: f64,
}

fn one_backend(
    backend: &'static str,
    database_url: Option<String>,
    rows: u64,
    out: &mut dyn Write,
) -> anyhow::Result<JobFigures> {
    let dir = Scratch(std::env::temp_dir().join(format!(
        "dataop-bench-jobs-{}",
        uuid::Uuid::new_v4().simple()
    )));
    let mut config = Config::for_data_dir(&dir.0, database_url)?;
    config.job_workers = 0;
    let state = actix_web::web::Data::new(AppState::open(config)?);
    crate::demo::seed_accounts(&state)?;
    crate::catalog::demo::seed_rows(&state, "provider", rows)?;
    crate::agreements::demo::seed(&state)?;
    demo::seed(&state)?;
    crate::agreements::demo::set_run_budgets(&state, 1_000_000)?;
    let mut conn = state.pool.get()?;
    let alpha = demo::user(&mut conn, "alpha")?;
    let reviewer = demo::user(
        &mut conn,
        if super::reviewer_role(&state) == Role::PlatformAdmin {
            "platform"
        } else {
            "regulator"
        },
    )?;
    drop(conn);
    let mut e2e = Vec::with_capacity(LATENCY_RUNS);
    let mut sandbox = Vec::with_capacity(LATENCY_RUNS);
    let mut platform = Vec::with_capacity(LATENCY_RUNS);
    let mut phases: [Vec<Duration>; 3] = Default::default();
    for _ in 0..LATENCY_RUNS {
        let t0 = Instant::now();
        let mut conn = state.pool.get()?;
        let s = demo::submit_demo(&state, &mut conn, &alpha, demo::EXAMPLE_MODULE, "bench")?;
        drop(conn);
        anyhow::ensure!(s.queued, "the bench module is not approved");
        let t1 = Instant::now();
        phases[0].push(t1 - t0);
        worker::run_once(&state, "bench")?;
        let t2 = Instant::now();
        phases[1].push(t2 - t1);
        let mut conn = state.pool.get()?;
        ops::release(
            &mut conn,
            &reviewer,
            s.job_id,
            &state.seal,
            state.clock.today(),
            state.clock.now(),
            state.clock.zone(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let released = super::model::release(&mut conn, s.job_id)?;
        anyhow::ensure!(released.is_some(), "job {} was not released", s.job_id);
        phases[2].push(t2.elapsed());
        let total = t0.elapsed();
        e2e.push(total);
        let report: Option<String> = jobs::table
            .find(s.job_id)
            .select(jobs::report)
            .first(&mut conn)?;
        let ms = report
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .and_then(|v| v["elapsed_ms"].as_f64())
            .unwrap_or(0.0);
        let run = Duration::from_secs_f64(ms / 1000.0);
        sandbox.push(run);
        platform.push(total.saturating_sub(run));
    }
    let floor = audited_step_floor(&state, LATENCY_RUNS)? * AUDITED_STEPS;
    e2e.sort();
    sandbox.sort();
    platform.sort();
    let [submit_p50, run_p50, release_p50] = phases.map(|mut v| {
        v.sort();
        percentile(&v, 0.5).as_secs_f64() * 1e3
    });
    writeln!(
        out,
        "{backend}: phases p50: submit {submit_p50:.1} ms, claim+run+finish {run_p50:.1} ms, release {release_p50:.1} ms"
    )?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50_ms, sb50_ms, platform_ms, floor_ms) = (
        ms(percentile(&e2e, 0.5)),
        ms(percentile(&sandbox, 0.5)),
        ms(percentile(&platform, 0.5)),
        ms(floor),
    );
    let platform_target = platform_target_ms(backend);
    writeln!(
        out,
        "{backend}: submission to downloadable output, p50 {p50_ms:.1} ms (target < {E2E_TARGET_MS} ms: {})",
        verdict(p50_ms, E2E_TARGET_MS)
    )?;
    writeln!(
        out,
        "{backend}: platform's own time per run (all but the sandbox run), p50 {platform_ms:.2} ms (target < {platform_target} ms: {}); sandbox run p50 {sb50_ms:.2} ms",
        verdict(platform_ms, platform_target)
    )?;
    writeln!(
        out,
        "{backend}: floor of the platform's own time, {AUDITED_STEPS} audited steps of one update each: {floor_ms:.2} ms"
    )?;
    for _ in 0..QUEUED_RUNS {
        let mut conn = state.pool.get()?;
        demo::submit_demo(&state, &mut conn, &alpha, demo::EXAMPLE_MODULE, "bench")?;
    }
    let t0 = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let hs: Vec<_> = ["bench-1", "bench-2"]
            .into_iter()
            .map(|w| {
                let state = &state;
                s.spawn(move || {
                    let mut n = 0;
                    while worker::run_once(state, w).unwrap_or(false) {
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let elapsed = t0.elapsed();
    let rate = done as f64 / elapsed.as_secs_f64();
    writeln!(
        out,
        "{backend}: {done} queued runs completed by 2 workers in {:.1} s: {rate:.1} jobs/s",
        elapsed.as_secs_f64()
    )?;
    Ok(JobFigures {
        backend,
        rows,
        e2e_p50_ms: p50_ms,
        sandbox_p50_ms: sb50_ms,
        submit_p50_ms: submit_p50,
        run_p50_ms: run_p50,
        release_p50_ms: release_p50,
        platform_p50_ms: platform_ms,
        platform_target_ms: platform_target,
        floor_p50_ms: floor_ms,
        jobs_per_s: rate,
    })
}

/// The audited steps of a run's path from submission to release: the submission, the claim
/// (with the start checks), the finish and the release, each its own transaction because each
/// is taken by another party (operator, worker, worker, reviewer).
const AUDITED_STEPS: u32 = 4;

/// p50 of one audited step reduced to its least: a transaction that updates one job row and
/// appends its audit entry, nothing else.
fn audited_step_floor(state: &AppState, runs: usize) -> anyhow::Result<Duration> {
    let mut conn = state.pool.get()?;
    let id: i64 = jobs::table
        .select(jobs::id)
        .order(jobs::id.desc())
        .first(&mut conn)?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        crate::db::write_transaction(&mut conn, |conn| {
            diesel::update(jobs::table.find(id))
                .set(jobs::rows_done.eq(i as i64))
                .execute(conn)?;
            crate::supervision::audit::record(
                conn,
                &crate::supervision::audit::Actor::system(),
                "job.bench_floor",
                "job",
                &id.to_string(),
                serde_json::json!({ "worker": "bench", "from": "queued" }),
            )?;
            Ok::<_, diesel::result::Error>(())
        })?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

/// Runs the benchmark on SQLite and, with `postgres_admin_url` (a role with CREATEDB), on a
/// fresh PostgreSQL database dropped afterwards. The last line is JSON.
pub fn run(rows: u64, postgres_admin_url: Option<&str>, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut figures = vec![one_backend("sqlite", None, rows, out)?];
    if let Some(admin) = postgres_admin_url {
        let name = format!("dataop_bench_{}", uuid::Uuid::new_v4().simple());
        let mut c = diesel::pg::PgConnection::establish(admin)?;
        c.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let base = admin.split('?').next().unwrap_or(admin);
        let url = match base.rfind('/') {
            Some(i) if i > base.find("://").map_or(0, |p| p + 2) => {
                format!("{}/{name}", &base[..i])
            }
            _ => format!("{base}/{name}"),
        };
        let result = one_backend("postgres", Some(url), rows, out);
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        figures.push(result?);
    }
    writeln!(out, "{}", serde_json::to_string(&figures)?)?;
    Ok(())
}
