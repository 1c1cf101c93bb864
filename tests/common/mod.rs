//! Test harness: starts the real server in-process on `127.0.0.1:0` with a temporary data dir.
//!
//! SQLite by default; when `DATAOP_TEST_POSTGRES_URL` is set (a URL of a database the role may
//! connect to, e.g. `postgres://dataop:dataop@localhost/postgres`, with CREATEDB rights) every
//! `TestApp` creates a fresh uniquely named database and drops it afterwards.
//!
//! ```ignore
//! let app = TestApp::builder().demo().start();
//! let client = app.client();
//! assert_eq!(app.login(&client, "alpha", "dataop-demo").status(), 303);
//! ```
#![allow(dead_code)]

pub mod smtp;

use std::process::Output;
use std::sync::mpsc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::web::Data;
use dataop::db::DbConnection;
use dataop::{AppState, Config};
use diesel::Connection as _;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use reqwest::blocking::{Client, Response};

/// The demo password.
pub const DEMO_PASSWORD: &str = "dataop-demo";

/// A change applied to the configuration before the server starts.
type ConfigTweak = Box<dyn FnOnce(&mut Config)>;

/// Builds a [`TestApp`].
#[derive(Default)]
pub struct TestAppBuilder {
    demo: bool,
    demo_data: bool,
    tweaks: Vec<ConfigTweak>,
}

impl TestAppBuilder {
    /// Seeds the demo organisations and users (not the demo dataset) before serving.
    pub fn demo(mut self) -> Self {
        self.demo = true;
        self
    }

    /// Seeds the whole demo world, including the demo dataset (slow in debug builds).
    pub fn demo_data(mut self) -> Self {
        self.demo_data = true;
        self
    }

    /// Changes the configuration before the server starts.
    pub fn config(mut self, f: impl FnOnce(&mut Config) + 'static) -> Self {
        self.tweaks.push(Box::new(f));
        self
    }

    /// Starts the server.
    pub fn start(self) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let pg = std::env::var("DATAOP_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(|admin| {
                let name = format!("dataop_t_{}", uuid::Uuid::new_v4().simple());
                let mut conn =
                    PgConnection::establish(&admin).expect("connect to DATAOP_TEST_POSTGRES_URL");
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create test database");
                let base = admin.split('?').next().unwrap_or(&admin);
                let url = match base.rfind('/') {
                    Some(i) if i > base.find("://").map_or(0, |p| p + 2) => {
                        format!("{}/{name}", &base[..i])
                    }
                    _ => format!("{base}/{name}"),
                };
                (admin, name, url)
            });
        let mut config = Config::for_data_dir(data_dir.path(), pg.as_ref().map(|p| p.2.clone()))
            .expect("config");
        config.bind = "127.0.0.1:0".into();
        for t in self.tweaks {
            t(&mut config);
        }
        let database_url = config.database_url.clone();
        let state = Data::new(AppState::open(config).expect("open state"));
        if self.demo_data {
            dataop::demo::seed(&state).expect("demo seed");
        } else if self.demo {
            dataop::demo::seed_accounts(&state).expect("demo accounts");
        }
        let (tx, rx) = mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let (server, addr) = dataop::start(st, 2).expect("start server");
                tx.send((server.handle(), addr)).expect("send handle");
                server.await
            })
        });
        let (handle, addr) = rx.recv().expect("server started");
        TestApp {
            base: format!("http://{addr}"),
            state: Some(state),
            data_dir,
            database_url,
            handle,
            thread: Some(thread),
            pg: pg.map(|(admin, name, _)| (admin, name)),
            audit_tampered: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A running server.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    state: Option<Data<AppState>>,
    /// The temporary data dir.
    pub data_dir: tempfile::TempDir,
    /// The database URL the server uses.
    pub database_url: String,
    handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    pg: Option<(String, String)>,
    audit_tampered: std::sync::atomic::AtomicBool,
}

impl TestApp {
    /// A builder.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// A server without demo data.
    pub fn start() -> TestApp {
        Self::builder().start()
    }

    /// The application state (pool, config, secrets).
    pub fn state(&self) -> &AppState {
        self.state.as_ref().expect("state")
    }

    /// The shared application state, as the server holds it.
    pub fn data(&self) -> Data<AppState> {
        self.state.clone().expect("state")
    }

    /// A database connection.
    pub fn conn(&self) -> dataop::db::PooledConn {
        self.state().pool.get().expect("db connection")
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A new browser: cookie jar, no automatic redirects.
    pub fn client(&self) -> Client {
        Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// An API token of `user` (demo password) from `POST /api/v1/tokens`, which must succeed.
    pub fn api_token(&self, user: &str) -> String {
        let r = Client::new()
            .post(self.url("/api/v1/tokens"))
            .json(&serde_json::json!({ "username": user, "password": DEMO_PASSWORD }))
            .send()
            .expect("token request");
        assert_eq!(r.status().as_u16(), 200);
        r.json::<serde_json::Value>().expect("token JSON")["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Submits a job through `POST /api/v1/jobs` with bearer `token` (the module as `job.wat`,
    /// the manifest as `job.toml`); the status and the JSON body.
    pub fn api_submit_job(
        &self,
        token: &str,
        module: &str,
        manifest: &str,
        purpose: &str,
    ) -> (u16, serde_json::Value) {
        use reqwest::blocking::multipart::{Form, Part};
        let form = Form::new()
            .part(
                "module",
                Part::bytes(module.as_bytes().to_vec()).file_name("job.wat"),
            )
            .part(
                "manifest",
                Part::bytes(manifest.as_bytes().to_vec()).file_name("job.toml"),
            )
            .text("purpose", purpose.to_owned());
        let r = Client::new()
            .post(self.url("/api/v1/jobs"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .expect("job submission");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    /// `GET path`.
    pub fn get(&self, client: &Client, path: &str) -> Response {
        client.get(self.url(path)).send().expect("GET")
    }

    /// `GET path`, returning status and body text.
    pub fn get_text(&self, client: &Client, path: &str) -> (u16, String) {
        let r = self.get(client, path);
        let s = r.status().as_u16();
        (s, r.text().expect("body"))
    }

    /// The CSRF token in the form of the page at `path`.
    pub fn csrf(&self, client: &Client, path: &str) -> String {
        let (_, html) = self.get_text(client, path);
        csrf_from(&html).unwrap_or_else(|| panic!("no csrf token on {path}"))
    }

    /// `POST path` with form fields as given (no CSRF added).
    pub fn post_form(&self, client: &Client, path: &str, fields: &[(&str, &str)]) -> Response {
        client
            .post(self.url(path))
            .form(fields)
            .send()
            .expect("POST")
    }

    /// `POST path` with form fields plus the CSRF token taken from the page at `form_page`.
    pub fn post_form_from(
        &self,
        client: &Client,
        form_page: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let token = self.csrf(client, form_page);
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &token));
        self.post_form(client, path, &all)
    }

    /// Logs `client` in through the login form; returns the response to the POST
    /// (303 on success).
    pub fn login(&self, client: &Client, user: &str, pass: &str) -> Response {
        self.post_form_from(
            client,
            "/login",
            "/login",
            &[("username", user), ("password", pass)],
        )
    }

    /// A new client logged in as `user`; panics if the login fails.
    pub fn logged_in(&self, user: &str, pass: &str) -> Client {
        let c = self.client();
        let r = self.login(&c, user, pass);
        assert_eq!(
            r.status().as_u16(),
            303,
            "login of {user} failed: {}",
            r.text().unwrap_or_default()
        );
        c
    }

    /// Runs the `dataop` binary with `args` followed by this app's `--data-dir` and
    /// `--database-url`.
    pub fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_dataop"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--database-url")
            .arg(&self.database_url)
            .env_remove("DATAOP_CONFIG")
            .output()
            .expect("run dataop")
    }

    /// Runs raw SQL that breaks the audit chain on purpose (a tamper test): the chain is then
    /// not checked when the app stops.
    pub fn tamper_with_audit_log(&self, sql: &str) {
        self.audit_tampered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.exec_sql(sql);
    }

    /// The number a query answers as its column `n` (a `BIGINT`) on the app's database.
    pub fn count_sql(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.conn();
        let c: &mut DbConnection = &mut conn;
        diesel::RunQueryDsl::get_result::<N>(diesel::sql_query(sql), c)
            .expect("count")
            .n
    }

    /// Runs raw SQL on the app's database.
    pub fn exec_sql(&self, sql: &str) {
        let mut conn = self.conn();
        let c: &mut DbConnection = &mut conn;
        c.batch_execute(sql).expect("sql");
    }

    /// Records a current training of `username` through the platform admin's form, as job
    /// submission requires.
    pub fn train(&self, username: &str) {
        let platform = self.logged_in("platform", DEMO_PASSWORD);
        let today = self.state().clock.today();
        let r = self.post_form_from(
            &platform,
            "/admin/trainings",
            "/admin/trainings",
            &[
                ("username", username),
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
    }

    /// The regulator (the default reviewer) approves a computation through its page.
    pub fn approve_computation(&self, computation: i64) {
        let reg = self.logged_in("regulator", DEMO_PASSWORD);
        let page = format!("/admin/computations/{computation}");
        let r = self.post_form_from(&reg, &page, &format!("{page}/approve"), &[("note", "")]);
        assert_eq!(r.status().as_u16(), 303);
    }

    /// The regulator asks to release a run's output through its page; the status.
    pub fn release_job(&self, job: i64) -> u16 {
        let reg = self.logged_in("regulator", DEMO_PASSWORD);
        let page = format!("/jobs/{job}");
        self.post_form_from(&reg, &page, &format!("{page}/release"), &[])
            .status()
            .as_u16()
    }

    /// Runs queued jobs on this thread until none is left; how many ran.
    pub fn run_queued_jobs(&self) -> usize {
        let mut n = 0;
        while dataop::jobs::worker::run_once(self.state(), "test-worker").expect("worker") {
            n += 1;
            assert!(n < 100, "the queue does not empty");
        }
        n
    }

    /// The stored state of a run.
    pub fn job_state(&self, job: i64) -> String {
        use dataop::schema::jobs;
        use diesel::prelude::*;
        let mut conn = self.conn();
        jobs::table
            .find(job)
            .select(jobs::state)
            .first(&mut *conn)
            .expect("job")
    }
}

impl Drop for TestApp {
    /// Stops the server, then checks that the audit chain the test left verifies (every state
    /// change it made was appended to the chain, none edited), and drops a PostgreSQL database.
    fn drop(&mut self) {
        actix_web::rt::System::new().block_on(self.handle.stop(true));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !std::thread::panicking()
            && !self
                .audit_tampered
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            let verified =
                dataop::supervision::audit::verify(&mut self.conn()).expect("read audit");
            if let Err(broken) = verified {
                panic!(
                    "the audit chain is broken at entry {} ({})",
                    broken.id, broken.reason
                );
            }
        }
        self.state.take();
        if let Some((admin, name)) = self.pg.take()
            && let Ok(mut conn) = PgConnection::establish(&admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The value of the first `name="csrf"` hidden field in `html`.
pub fn csrf_from(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let rest = &html[i..];
    Some(rest[..rest.find('"')?].to_owned())
}
