//! Faults found by killing and starving the server: each test runs `dataop serve` as a child
//! process on the test server's data dir and database (the in-process test server stays up
//! beside it, as a `dataop worker` would), does something to it, and checks what a user or the
//! next process finds.
//!
//! * A server killed in the middle of an upload leaves its scratch files; the next process to
//!   start removes them, but never those of a process still running on the same data dir.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use reqwest::blocking::Client;
use reqwest::cookie::{CookieStore as _, Jar};

mod common;

use common::{DEMO_PASSWORD, TestApp, csrf_from};

/// Waits up to `limit` for `f` to give a value.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `dataop serve` process on the app's data dir and database, killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
    base: String,
}

impl Server {
    /// Starts `dataop serve` (no job workers) with `more` configuration lines, and waits until
    /// it listens.
    fn start(app: &TestApp, dir: &Path, name: &str, more: &str) -> Server {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, format!("job_workers = 0\n{more}")).unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dataop"))
            .arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
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
            .expect("start dataop serve");
        let mut server = Server {
            child,
            log,
            base: String::new(),
        };
        server.base = wait_for("the server to listen", Duration::from_secs(60), || {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("dataop serve exited ({status}):\n{}", server.output());
            }
            let out = server.output();
            let at = out.find("listening on http://")? + "listening on ".len();
            let url = out[at..].split_whitespace().next()?;
            Some(url.trim_end_matches('/').to_owned())
        });
        server
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client logged in as `user`, and its cookie jar.
    fn logged_in(&self, user: &str) -> (Client, Arc<Jar>) {
        let jar = Arc::new(Jar::default());
        let client = Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let csrf = self.csrf(&client, "/login");
        let r = client
            .post(self.url("/login"))
            .form(&[("username", user), ("password", DEMO_PASSWORD), ("csrf", &csrf)])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "login of {user}");
        (client, jar)
    }

    fn csrf(&self, client: &Client, path: &str) -> String {
        let html = client.get(self.url(path)).send().unwrap().text().unwrap();
        csrf_from(&html).unwrap_or_else(|| panic!("no csrf token on {path}"))
    }

    /// Kills the process (SIGKILL) and waits for it.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn named(files: &[PathBuf], prefix: &str) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .cloned()
        .collect()
}

/// The demo dataset of `provider`, with a first version of 50 rows.
fn dataset(app: &TestApp) -> i64 {
    use dataop::schema::datasets;
    dataop::catalog::demo::seed_rows(app.state(), "provider", 50).expect("demo data");
    datasets::table
        .select(datasets::id)
        .first(&mut *app.conn())
        .unwrap()
}

/// Bytes of CSV sent before the server is killed: more than the 1 MiB the upload handler
/// gathers before it writes, so the file on disk holds some of it.
const SENT_BYTES: usize = 3 << 20;

/// Starts an upload of a new version on `server` that never finishes: the request declares
/// 64 MiB and sends [`SENT_BYTES`]; the connection stays open until it is dropped.
fn start_endless_upload(server: &Server, dataset: i64) -> TcpStream {
    let (client, jar) = server.logged_in("provider");
    let page = format!("/provider/datasets/{dataset}");
    let csrf = server.csrf(&client, &page);
    let cookies = jar
        .cookies(&server.url("/").parse().unwrap())
        .expect("session cookies");
    let boundary = "dataopkilledupload";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"v.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n\
         person_id,patient_name,sex,age,visit_date,total_cost\n"
    );
    let addr = server.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {page}/versions HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n{head}",
        cookies.to_str().unwrap(),
        64 << 20
    )
    .unwrap();
    let row = b"330102198001011234,\xe6\x9d\x8e\xe7\xa7\x80\xe8\x8b\xb1,F,45,2026-01-02,12.50\n";
    let mut sent = 0;
    while sent < SENT_BYTES {
        s.write_all(row).unwrap();
        sent += row.len();
    }
    s.flush().unwrap();
    s
}

/// A server killed while it receives an upload leaves the partial file in `<data_dir>/tmp/`;
/// the next server to start on the data dir removes it (and the dead process's whole scratch
/// directory), while the files of the test server, alive on the same data dir, stay.
#[test]
fn a_server_killed_mid_upload_leaves_nothing_in_tmp_after_a_restart() {
    let app = TestApp::builder().demo().start();
    let id = dataset(&app);
    let tmp = app.data_dir.path().join("tmp");
    let live_dirs: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    // A file of an upload the test server (alive on the same data dir) is receiving.
    let live_file = live_dirs.first().map(|d| d.join("upload-of-a-live-process.csv"));
    if let Some(f) = &live_file {
        std::fs::write(f, b"person_id\n").unwrap();
    }

    let logs = tempfile::tempdir().unwrap();
    let server = Server::start(&app, logs.path(), "first", "");
    let _upload = start_endless_upload(&server, id);
    let partial = wait_for(
        "the partial upload on disk",
        Duration::from_secs(30),
        || {
            named(&files_under(&tmp), "upload-")
                .into_iter()
                .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= 1 << 20))
        },
    );
    server.kill();
    assert!(
        partial.exists(),
        "the killed server left {}",
        partial.display()
    );

    let second = Server::start(&app, logs.path(), "second", "");
    let left = files_under(&tmp);
    assert!(
        !left.contains(&partial),
        "the partial upload of the killed server is still there: {left:?}"
    );
    assert!(
        named(&left, "ingest-").is_empty(),
        "no ingest is left: {left:?}"
    );
    assert_eq!(
        live_dirs.len(),
        1,
        "the test server has one scratch directory: {live_dirs:?}"
    );
    assert_eq!(
        named(&left, "upload-"),
        vec![live_file.unwrap()],
        "only the live process's file is left: {left:?}"
    );
    let (client, _) = second.logged_in("provider");
    let r = client
        .get(second.url(&format!("/provider/datasets/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the restarted server serves the dataset");
    drop(second);
    drop(app);
}
