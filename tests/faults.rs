//! Faults found by killing and starving the server: each test runs `dataop serve` as a child
//! process on the test server's data dir and database (the in-process test server stays up
//! beside it, as a `dataop worker` would), does something to it, and checks what a user or the
//! next process finds.
//!
//! * A server killed in the middle of an upload leaves its scratch files; the next process to
//!   start removes them, but never those of a process still running on the same data dir.
//! * A full disk (a tmpfs in a namespace of the server's own, see [`Starved`]) answers 507 with
//!   a message, keeps reads working, shows in `/healthz`, and clears up without a restart (a
//!   read-only database, which needs PostgreSQL, is `tests/read_only_database.rs`).

use std::io::{Read as _, Write as _};
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
            .form(&[
                ("username", user),
                ("password", DEMO_PASSWORD),
                ("csrf", &csrf),
            ])
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
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    // A file of an upload the test server (alive on the same data dir) is receiving.
    let live_file = live_dirs
        .first()
        .map(|d| d.join("upload-of-a-live-process.csv"));
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
    assert_eq!(
        r.status().as_u16(),
        200,
        "the restarted server serves the dataset"
    );
    drop(second);
    drop(app);
}

/// A `dataop serve` whose data dir, SQLite database included, is on a small tmpfs that the
/// test fills and empties: the process runs in a user, mount and PID namespace of its own
/// (`unshare --user --map-root-user --mount --pid --fork --kill-child`), where it may mount a
/// tmpfs without any privilege, so this works the same as root (CI) and as a normal user.
///
/// Why a tmpfs in a namespace: it is a real full disk (writes fail with `ENOSPC`, and SQLite
/// reports `SQLITE_FULL`, as on a full partition), root gets no reserved blocks on it, it
/// needs no loop device and no `mount` rights on the host, and it vanishes with the process.
/// A file-size limit (`RLIMIT_FSIZE`) gives `EFBIG` and a signal instead, and `/dev/full`
/// only fails the files linked to it. When user namespaces are unavailable the test fails,
/// saying so; it never passes without having filled the disk.
struct Starved {
    child: Child,
    commands: std::process::ChildStdin,
    answers: std::io::BufReader<std::process::ChildStdout>,
    log: PathBuf,
    base: String,
}

/// Size of the tmpfs: room for the data dir and more than [`dataop::scratch::RESERVE_BYTES`].
const TMPFS_SIZE: &str = "96m";

const STARVED_SCRIPT: &str = r#"
set -e
mount -t tmpfs -o size="$SIZE" dataop-faults "$MNT"
mkdir "$MNT/data"
cp -a "$SRC/." "$MNT/data/"
rm -rf "$MNT/data/tmp" "$MNT/data/dataop.db-wal" "$MNT/data/dataop.db-shm"
"$BIN" serve --bind 127.0.0.1:0 --data-dir "$MNT/data" --config "$CONFIG" >"$LOG" 2>&1 &
echo started
while read -r cmd; do
  case "$cmd" in
    fill) dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null || true; echo filled ;;
    free) rm -f "$MNT/filler"; echo freed ;;
  esac
done
"#;

impl Starved {
    /// Starts the server on a copy of the (SQLite) data dir `src`.
    fn start(src: &Path, dir: &Path) -> Starved {
        use std::io::BufRead as _;
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let config = dir.join("starved.toml");
        std::fs::write(&config, "job_workers = 0\n").unwrap();
        let log = dir.join("starved.log");
        let mut child = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "sh",
                "-c",
                STARVED_SCRIPT,
            ])
            .env("SIZE", TMPFS_SIZE)
            .env("MNT", &mnt)
            .env("SRC", src)
            .env("BIN", env!("CARGO_BIN_EXE_dataop"))
            .env("CONFIG", &config)
            .env("LOG", &log)
            .env("DATAOP_LOG", "warn")
            .env_remove("DATAOP_CONFIG")
            .env_remove("DATAOP_DATA_DIR")
            .env_remove("DATAOP_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "this test needs unshare(1) (util-linux) to run the server in a namespace with \
                 its data dir on a tmpfs",
            );
        let commands = child.stdin.take().unwrap();
        let mut answers = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        if line.trim() != "started" {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!(
                "could not start the server on a tmpfs in a user namespace (are unprivileged \
                 user namespaces enabled? kernel.unprivileged_userns_clone, \
                 user.max_user_namespaces): {err}"
            );
        }
        let mut s = Starved {
            child,
            commands,
            answers,
            log,
            base: String::new(),
        };
        s.base = wait_for("the server to listen", Duration::from_secs(60), || {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("the namespace exited ({status}):\n{}", s.output());
            }
            let out = s.output();
            let at = out.find("listening on http://")? + "listening on ".len();
            let url = out[at..].split_whitespace().next()?;
            Some(url.trim_end_matches('/').to_owned())
        });
        s
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn command(&mut self, cmd: &str, answer: &str) {
        use std::io::BufRead as _;
        writeln!(self.commands, "{cmd}").unwrap();
        self.commands.flush().unwrap();
        let mut line = String::new();
        self.answers.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), answer, "{cmd}");
    }

    /// Fills the tmpfs to the last byte.
    fn fill(&mut self) {
        self.command("fill", "filled");
    }

    /// Frees the space again.
    fn free(&mut self) {
        self.command("free", "freed");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with a cookie jar, no redirects, and `Accept-Language: lang`.
fn browser(lang: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT_LANGUAGE,
        reqwest::header::HeaderValue::from_str(lang).unwrap(),
    );
    Client::builder()
        .cookie_store(true)
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in through the form at `base`: the status and the page.
fn login(client: &Client, base: &str, user: &str) -> (u16, String) {
    let html = client
        .get(format!("{base}/login"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let csrf = csrf_from(&html).expect("login form");
    let r = client
        .post(format!("{base}/login"))
        .form(&[
            ("username", user),
            ("password", DEMO_PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// `POST /api/v1/tokens` at `base`: the status and the JSON answer.
fn token(base: &str, user: &str, lang: &str) -> (u16, serde_json::Value) {
    let r = Client::new()
        .post(format!("{base}/api/v1/tokens"))
        .header(reqwest::header::ACCEPT_LANGUAGE, lang)
        .json(&serde_json::json!({ "username": user, "password": DEMO_PASSWORD }))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or_default())
}

/// Uploads a small new version of `dataset` at `base`: the status and the page.
fn upload_version(client: &Client, base: &str, dataset: i64) -> (u16, String) {
    let page = format!("{base}/provider/datasets/{dataset}");
    let html = client.get(&page).send().unwrap().text().unwrap();
    let csrf = csrf_from(&html).expect("upload form");
    let mut csv = Vec::new();
    dataop::demo::outpatients::write_csv(&mut csv, 7, 20).unwrap();
    let form = reqwest::blocking::multipart::Form::new()
        .text("csrf", csrf)
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(csv)
                .file_name("v.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let r = client
        .post(format!("{page}/versions"))
        .multipart(form)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn get(client: &Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// On a full disk, logins, tokens and uploads answer 507 with a message in the reader's
/// language (pages and the API's JSON), pages that only read still work, `/healthz` says the
/// disk is full, and once space is free again everything works without a restart.
#[test]
fn a_full_disk_answers_507_keeps_reads_and_recovers_once_space_is_free() {
    let app = TestApp::builder()
        .demo()
        .config(|c| c.database_url = format!("sqlite://{}/dataop.db", c.data_dir.display()))
        .start();
    let id = dataset(&app);
    app.exec_sql("PRAGMA wal_checkpoint(TRUNCATE)");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Starved::start(app.data_dir.path(), dir.path());
    let base = server.base.clone();

    let provider = browser("zh-CN");
    assert_eq!(login(&provider, &base, "provider").0, 303);
    assert_eq!(token(&base, "alpha", "zh-CN").0, 200);
    assert_eq!(
        get(&Client::new(), &server.url("/healthz")),
        (200, "ok".into())
    );

    server.fill();
    let (status, health) = get(&Client::new(), &server.url("/healthz"));
    assert_eq!(status, 507, "{health}");
    assert!(health.contains("full"), "{health}");

    let (status, page) = login(&browser("zh-CN"), &base, "alpha");
    assert_eq!(status, 507, "{page}");
    assert!(page.contains("服务器存储空间已满"), "{page}");
    let (status, page) = login(&browser("en"), &base, "alpha");
    assert_eq!(status, 507, "{page}");
    assert!(page.contains("storage is full, so what you sent"), "{page}");
    let (status, answer) = token(&base, "alpha", "en");
    assert_eq!(status, 507, "{answer}");
    assert_eq!(answer["error"]["code"], "common.error_storage_full");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("storage is full")
    );
    let (status, page) = upload_version(&provider, &base, id);
    assert_eq!(status, 507, "{page}");
    assert!(page.contains("服务器存储空间已满"), "{page}");

    let (status, _) = get(&provider, &server.url(&format!("/provider/datasets/{id}")));
    assert_eq!(status, 200, "a page that only reads still works");
    assert_eq!(get(&Client::new(), &server.url("/catalog")).0, 200);
    assert_eq!(get(&Client::new(), &server.url("/api/v1/datasets")).0, 200);

    server.free();
    assert_eq!(
        get(&Client::new(), &server.url("/healthz")),
        (200, "ok".into())
    );
    assert_eq!(login(&browser("zh-CN"), &base, "alpha").0, 303);
    assert_eq!(token(&base, "alpha", "en").0, 200);
    let (status, page) = upload_version(&provider, &base, id);
    assert_eq!(status, 303, "{page}");
    drop(server);
    drop(app);
}
