//! Job workers as separate operating-system processes (`dataop worker`) sharing the test
//! server's PostgreSQL database and data dir: a run queued through the server wakes an idle
//! worker process at once (`NOTIFY`), several processes draining one queue never run the same
//! job, and a worker process killed in the middle of a run leaves a job that another process
//! takes over once the lease has expired.
//!
//! These are the deployments where workers run on other machines, so they need PostgreSQL: the
//! target is built only with the `postgres-tests` feature
//! (`cargo test --features postgres-tests --test jobs_processes`, run by `.ci/run`), and each
//! test fails, naming the variable, without `DATAOP_TEST_POSTGRES_URL`.
//!
//! The job is example (a) of the sandbox with a busy loop in front (`SPIN` iterations in each
//! instance), so a run lasts long enough to be caught and killed while it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;

mod common;

use common::{DEMO_PASSWORD, TestApp};

const WAT: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.wat");
const MANIFEST: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.toml");

/// The lease of the worker processes (the shortest the configuration allows).
const LEASE_SECS: u64 = 5;

/// Busy-loop iterations of the job that is killed: about 2.5 s on an idle 2-core machine in a
/// debug build (the module is compiled by wasmtime, so the build profile hardly matters).
const SPIN: u64 = 2_500_000_000;

/// Busy-loop iterations of the queued jobs: about 0.1 s each, so one process cannot drain the
/// queue before the other polls it.
const SPIN_QUEUED: u64 = 100_000_000;

/// Example (a) spinning `spin` iterations before it reads the data.
fn spinning_module(spin: u64) -> String {
    // ABI v2 functions run per row: example (a)'s key function counts to spin / 3,000 on each of
    // the world's 3,000 rows first, about `spin` steps per run.
    let key = "(local.get $district)))";
    assert!(WAT.contains(key), "example (a) changed");
    WAT.replace(
        key,
        &format!(
            "(local $spin i64)
    (block $spun
      (loop $spinning
        (br_if $spun (i64.ge_u (local.get $spin) (i64.const {})))
        (local.set $spin (i64.add (local.get $spin) (i64.const 1)))
        (br $spinning)))
    {key}",
            spin / 3000
        ),
    )
}

/// Fails the test, naming the variable, when no PostgreSQL server is configured.
fn require_postgres() {
    let set = std::env::var("DATAOP_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty());
    assert!(
        set,
        "worker processes on other machines share PostgreSQL: set DATAOP_TEST_POSTGRES_URL \
         (e.g. postgres://dataop:dataop@localhost/dataop; .ci/run does)"
    );
}

fn world() -> TestApp {
    let app = TestApp::builder().demo().start();
    dataop::catalog::demo::seed_rows(app.state(), "provider", 3000).expect("demo data");
    dataop::agreements::demo::seed(app.state()).expect("demo agreement");
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    let today = app.state().clock.today();
    let r = app.post_form_from(
        &platform,
        "/admin/trainings",
        "/admin/trainings",
        &[
            ("username", "alpha"),
            ("course", "数据安全培训 / Data security"),
            (
                "trained_on",
                &(today - chrono::Duration::days(10)).to_string(),
            ),
            (
                "expires_on",
                &(today + chrono::Duration::days(365)).to_string(),
            ),
        ],
    );
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap_or_default());
    app
}

/// Submits through the API; (job id, computation id).
fn submit(app: &TestApp, tok: &str, module: &str) -> (i64, i64) {
    let (status, v) = app.api_submit_job(tok, module, MANIFEST, "各区老年门诊负担分析");
    assert_eq!(status, 201, "{v}");
    (
        v["id"].as_i64().unwrap(),
        v["computation"].as_i64().unwrap(),
    )
}

fn approve(app: &TestApp, computation: i64) {
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let page = format!("/admin/computations/{computation}");
    let r = app.post_form_from(&reg, &page, &format!("{page}/approve"), &[("note", "")]);
    assert_eq!(r.status().as_u16(), 303);
}

/// (state, lease owner, attempts) of a run.
fn job_row(app: &TestApp, id: i64) -> (String, Option<String>, i32) {
    use dataop::schema::jobs;
    jobs::table
        .find(id)
        .select((jobs::state, jobs::lease_owner, jobs::attempts))
        .first(&mut *app.conn())
        .unwrap()
}

/// The `worker` of every audit entry `action` on a run, oldest first: job id → workers.
fn audited_workers(app: &TestApp, action: &str) -> BTreeMap<i64, Vec<String>> {
    use dataop::schema::audit_log;
    let rows: Vec<(String, String)> = audit_log::table
        .filter(audit_log::action.eq(action))
        .filter(audit_log::object_type.eq("job"))
        .order(audit_log::id.asc())
        .select((audit_log::object_id, audit_log::details))
        .load(&mut *app.conn())
        .unwrap();
    let mut by_job: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (id, details) in rows {
        let d: serde_json::Value = serde_json::from_str(&details).unwrap();
        by_job
            .entry(id.parse().unwrap())
            .or_default()
            .push(d["worker"].as_str().unwrap().to_owned());
    }
    by_job
}

/// A `dataop worker` process, killed when dropped (also when the test fails).
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// Starts `dataop worker --threads threads` on the app's database and data dir, with the
    /// short lease of `config`, writing its output to `<dir>/<name>.log`.
    fn start(app: &TestApp, dir: &Path, name: &str, threads: usize) -> Worker {
        Self::start_with(app, dir, name, threads, "")
    }

    /// [`Worker::start`] with more lines of configuration.
    fn start_with(app: &TestApp, dir: &Path, name: &str, threads: usize, more: &str) -> Worker {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, format!("job_lease_secs = {LEASE_SECS}\n{more}")).unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dataop"))
            .arg("worker")
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--data-dir")
            .arg(app.data_dir.path())
            .arg("--database-url")
            .arg(&app.database_url)
            .arg("--config")
            .arg(&config)
            .env("DATAOP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start dataop worker");
        Worker { child, log }
    }

    /// The prefix of this process's lease owner names (`worker-<pid>-<thread>`).
    fn owner_prefix(&self) -> String {
        format!("worker-{}-", self.child.id())
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the process reports that its workers are running.
    fn wait_ready(&mut self) {
        wait_for(
            "the worker process to start",
            Duration::from_secs(60),
            || {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("dataop worker exited ({status}):\n{}", self.output());
                }
                self.output().contains("dataop worker:").then_some(())
            },
        );
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 50 ms until it gives a value; panics after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_queued_through_the_server_wakes_a_worker_process_at_once() {
    require_postgres();
    let app = world();
    let tok = app.api_token("alpha");
    let (first, computation) = submit(&app, &tok, WAT);
    // A worker process that looks at the queue on its own only once a minute.
    let dir = tempfile::tempdir().unwrap();
    let mut w = Worker::start_with(&app, dir.path(), "w", 1, "job_poll_ms = 60000\n");
    w.wait_ready();
    // The approval queues the first run; a submission of the approved module the second, once
    // the worker is idle again. Each is announced, and run well before the minute is up.
    approve(&app, computation);
    wait_for("the approved run", Duration::from_secs(30), || {
        (job_row(&app, first).0 == "finished").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (second, _) = submit(&app, &tok, WAT);
    wait_for("the queued submission", Duration::from_secs(30), || {
        (job_row(&app, second).0 == "finished").then_some(())
    });
    for id in [first, second] {
        let owner = audited_workers(&app, "job.claim")[&id][0].clone();
        assert!(owner.starts_with(&w.owner_prefix()), "{owner}");
    }
}

#[test]
fn worker_processes_never_run_the_same_job() {
    require_postgres();
    const RUNS: usize = 30;
    let app = world();
    let tok = app.api_token("alpha");
    let module = spinning_module(SPIN_QUEUED);
    let submitted: Vec<(i64, i64)> = (0..RUNS).map(|_| submit(&app, &tok, &module)).collect();
    let computation = submitted[0].1;
    assert!(
        submitted.iter().all(|(_, c)| *c == computation),
        "one computation"
    );
    let ids: BTreeSet<i64> = submitted.iter().map(|(j, _)| *j).collect();

    // Both processes are up before the approval queues every run at once.
    let dir = tempfile::tempdir().unwrap();
    let mut workers = [
        Worker::start(&app, dir.path(), "w1", 2),
        Worker::start(&app, dir.path(), "w2", 2),
    ];
    for w in &mut workers {
        w.wait_ready();
    }
    approve(&app, computation);

    let logs = || workers.iter().map(Worker::output).collect::<Vec<_>>();
    wait_for("every run to finish", Duration::from_secs(120), || {
        let states: Vec<String> = ids.iter().map(|id| job_row(&app, *id).0).collect();
        assert!(
            !states.iter().any(|s| s == "failed"),
            "a run failed: {states:?}\n{:?}",
            logs()
        );
        states.iter().all(|s| s == "finished").then_some(())
    });

    // Every run was claimed once and finished by the worker that claimed it.
    for id in &ids {
        assert_eq!(job_row(&app, *id).2, 1, "run {id} claimed more than once");
    }
    let claims = audited_workers(&app, "job.claim");
    let finishes = audited_workers(&app, "job.finish");
    assert_eq!(claims.keys().copied().collect::<BTreeSet<_>>(), ids);
    for id in &ids {
        assert_eq!(claims[id].len(), 1, "run {id} claimed by {:?}", claims[id]);
        assert_eq!(finishes[id], claims[id], "run {id} finished by its claimer");
    }

    // Both processes did work.
    for w in &workers {
        let p = w.owner_prefix();
        let n = claims.values().filter(|c| c[0].starts_with(&p)).count();
        assert!(n > 0, "process {p} ran nothing: {claims:?}");
    }
    let total: usize = workers
        .iter()
        .map(|w| {
            let p = w.owner_prefix();
            claims.values().filter(|c| c[0].starts_with(&p)).count()
        })
        .sum();
    assert_eq!(total, RUNS);

    // The audit chain written by three processes is intact.
    let out = app.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_killed_worker_process_leaves_its_job_to_another() {
    require_postgres();
    let app = world();
    let tok = app.api_token("alpha");
    let (job, computation) = submit(&app, &tok, &spinning_module(SPIN));
    approve(&app, computation);
    assert_eq!(job_row(&app, job).0, "queued");

    let dir = tempfile::tempdir().unwrap();
    let mut first = Worker::start(&app, dir.path(), "first", 1);
    let first_owner = first.owner_prefix();
    wait_for(
        "the first process to run the job",
        Duration::from_secs(60),
        || {
            let (state, owner, _) = job_row(&app, job);
            (state == "running" && owner.is_some_and(|o| o.starts_with(&first_owner))).then_some(())
        },
    );
    first.kill();
    let (state, owner, attempts) = job_row(&app, job);
    assert_eq!(
        (state.as_str(), attempts),
        ("running", 1),
        "the job must still be running when its worker dies (make SPIN larger)"
    );
    assert!(owner.unwrap().starts_with(&first_owner));

    // Another process takes it over once the dead worker's lease has expired, and finishes it.
    let killed_at = Instant::now();
    let mut second = Worker::start(&app, dir.path(), "second", 1);
    second.wait_ready();
    let second_owner = second.owner_prefix();
    let taken_after = wait_for(
        "the second process to take the job over",
        Duration::from_secs(60),
        || {
            let (state, owner, _) = job_row(&app, job);
            (state == "running" && owner.is_some_and(|o| o.starts_with(&second_owner)))
                .then(|| killed_at.elapsed())
        },
    );
    assert!(
        taken_after >= Duration::from_secs(LEASE_SECS - 1),
        "taken over after {taken_after:?}, before the lease expired"
    );
    let state = wait_for("the job to end", Duration::from_secs(60), || {
        let (state, _, _) = job_row(&app, job);
        (state != "running").then_some(state)
    });
    assert_eq!(state, "finished", "{}", second.output());
    assert_eq!(job_row(&app, job).2, 2, "claimed twice");

    let claims = audited_workers(&app, "job.claim");
    assert_eq!(claims[&job].len(), 2, "{claims:?}");
    assert!(claims[&job][0].starts_with(&first_owner));
    assert!(claims[&job][1].starts_with(&second_owner));
    let finishes = audited_workers(&app, "job.finish");
    assert_eq!(finishes[&job].len(), 1);
    assert!(finishes[&job][0].starts_with(&second_owner));

    // The regulator's audit page shows both claims of the run, by the two processes.
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (_, audit) = app.get_text(
        &reg,
        &format!("/supervision/audit?object_type=job&object_id={job}"),
    );
    // Each entry names its action in words, with its code as the cell's title.
    assert_eq!(audit.matches("title=\"job.claim\"").count(), 2, "{audit}");
    assert!(audit.contains(&first_owner) && audit.contains(&second_owner));

    // The operator sees the finished run with its report.
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let (_, page) = app.get_text(&alpha, &format!("/jobs/{job}"));
    assert!(page.contains("run-report"), "run report shown");
}
