//! A server killed in the middle of an upload: `dataop serve` runs as a child process with the
//! fail point `catalog::version_in_place` set, which aborts the process right after the new
//! version's directory was renamed into `datasets/` and before the commit that completes its
//! row. The server restarted on the same data dir reconciles the files with the rows (and
//! removes a directory that no row names, as older releases could leave), and the next upload
//! succeeds.
//!
//! The test server (in-process) holds the database and the demo accounts and dataset; the
//! child processes share its data dir and database.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use reqwest::blocking::{Client, multipart};

mod common;

use common::{DEMO_PASSWORD, TestApp, csrf_from};

/// A `dataop serve` process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `dataop serve` on the app's data dir and database, with `FAILPOINTS` set to
    /// `failpoints` (unless empty), and waits until it listens.
    fn start(app: &TestApp, dir: &Path, name: &str, failpoints: &str) -> Server {
        let log = dir.join(format!("{name}.log"));
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, "job_workers = 0\n").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dataop"));
        cmd.arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(app.data_dir.path())
            .arg("--database-url")
            .arg(&app.database_url)
            .arg("--config")
            .arg(&config)
            .env("DATAOP_LOG", "warn")
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        if !failpoints.is_empty() {
            cmd.env("FAILPOINTS", failpoints);
        }
        let mut child = cmd.spawn().expect("start dataop serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("dataop is listening on ") {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "dataop serve did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser logged in as `user` on this server.
    fn logged_in(&self, user: &str) -> Client {
        let c = Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let login = c.get(self.url("/login")).send().unwrap().text().unwrap();
        let r = c
            .post(self.url("/login"))
            .form(&[
                ("username", user),
                ("password", DEMO_PASSWORD),
                ("csrf", &csrf_from(&login).unwrap()),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        c
    }

    /// Uploads `csv` to dataset `id` as `client`: the response, or the error of a connection
    /// the server dropped.
    fn upload(
        &self,
        client: &Client,
        id: i64,
        csv: Vec<u8>,
    ) -> reqwest::Result<reqwest::blocking::Response> {
        let page = client
            .get(self.url(&format!("/provider/datasets/{id}")))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let form = multipart::Form::new()
            .text("csrf", csrf_from(&page).unwrap())
            .part(
                "file",
                multipart::Part::bytes(csv)
                    .file_name("visits.csv")
                    .mime_str("text/csv")
                    .unwrap(),
            );
        client
            .post(self.url(&format!("/provider/datasets/{id}/versions")))
            .multipart(form)
            .send()
    }

    /// Waits for the process to end on its own; its exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the server did not die:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn demo_csv(rows: u64) -> Vec<u8> {
    let mut out = Vec::new();
    dataop::demo::outpatients::write_csv(&mut out, 11, rows).unwrap();
    out
}

/// (version number, state) of every row of the dataset's versions.
fn rows(app: &TestApp, dataset: i64) -> Vec<(i32, String)> {
    use dataop::schema::dataset_versions as v;
    v::table
        .filter(v::dataset_id.eq(dataset))
        .order(v::version_no.asc())
        .select((v::version_no, v::state))
        .load(&mut *app.conn())
        .unwrap()
}

/// The version directories of the dataset, by number.
fn dirs(app: &TestApp, dataset: i64) -> Vec<i32> {
    let mut out: Vec<i32> =
        std::fs::read_dir(app.data_dir.path().join(format!("datasets/{dataset}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
            .collect();
    out.sort();
    out
}

#[test]
fn a_server_killed_between_the_rename_and_the_commit_leaves_no_wedged_dataset() {
    let app = TestApp::builder().demo().start();
    dataop::catalog::demo::seed_rows(app.state(), "provider", 200).expect("demo data");
    let dataset: i64 = {
        use dataop::schema::datasets;
        datasets::table
            .select(datasets::id)
            .first(&mut *app.conn())
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();

    // The upload dies right after its directory went into place.
    let mut doomed = Server::start(
        &app,
        dir.path(),
        "doomed",
        "catalog::version_in_place=return",
    );
    let provider = doomed.logged_in("provider");
    let r = doomed.upload(&provider, dataset, demo_csv(50));
    assert!(r.is_err(), "the server answered instead of dying: {r:?}");
    let status = doomed.wait_exit();
    assert!(!status.success(), "{status}");
    assert_eq!(
        dirs(&app, dataset),
        vec![1, 2],
        "the directory went into place"
    );
    assert_eq!(
        rows(&app, dataset),
        vec![(1, "published".into()), (2, "incomplete".into())],
        "its row was never completed"
    );
    // A directory no row names, as a release that renamed before it committed left them.
    let stray = app.data_dir.path().join(format!("datasets/{dataset}/3"));
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("meta.json"), "{}").unwrap();

    // Restarted on the same data dir, the server puts the files and rows in agreement.
    let server = Server::start(&app, dir.path(), "restarted", "");
    assert_eq!(
        rows(&app, dataset),
        vec![(1, "published".into()), (2, "discarded".into())],
        "the incomplete version is abandoned"
    );
    assert_eq!(dirs(&app, dataset), vec![1], "no orphan directory remains");

    // The next upload succeeds, as the next version.
    let provider = server.logged_in("provider");
    let r = server.upload(&provider, dataset, demo_csv(50)).unwrap();
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap_or_default());
    assert_eq!(
        rows(&app, dataset),
        vec![
            (1, "published".into()),
            (2, "discarded".into()),
            (3, "draft".into()),
        ]
    );
    assert_eq!(dirs(&app, dataset), vec![1, 3]);
    let reader = dataop_sandbox::columnar::VersionReader::open(
        &app.data_dir.path().join(format!("datasets/{dataset}/3")),
    )
    .unwrap();
    assert_eq!(reader.rows(), 50);

    // The abandonment is audited, and the chain is intact.
    {
        use dataop::schema::audit_log;
        let n: i64 = audit_log::table
            .filter(audit_log::action.eq("dataset.version_abandon"))
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(n, 1);
    }
    let out = app.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
