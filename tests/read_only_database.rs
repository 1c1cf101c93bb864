//! A database that accepts no writes: the server answers 503 with a message, keeps reads
//! working, shows it in `/healthz`, and recovers without a restart.
//!
//! SQLite has no such switch that is real: a read-only remount is refused while the server
//! holds its files open for writing, file permissions do not stop root, and `PRAGMA
//! query_only` is a setting of the connection, not of the database. So this needs PostgreSQL:
//! the target is built only with the `postgres-tests` feature
//! (`cargo test --features postgres-tests --test read_only_database`, run by `.ci/run`), and
//! the test fails, naming the variable, without `DATAOP_TEST_POSTGRES_URL`.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use reqwest::blocking::Client;

mod common;

use common::{DEMO_PASSWORD, TestApp};

/// The PostgreSQL URL the test servers are created from, and the name of `app`'s database;
/// fails the test, naming the variable, when the suite does not run on PostgreSQL.
fn postgres_database(app: &TestApp) -> (String, String) {
    let admin = std::env::var("DATAOP_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect(
            "a read-only database needs PostgreSQL: set DATAOP_TEST_POSTGRES_URL \
             (e.g. postgres://dataop:dataop@localhost/dataop; .ci/run does)",
        );
    let name = app
        .database_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    (admin, name)
}

/// Logs a new client in as `user` with `Accept-Language: lang`: the status and the page.
fn login(app: &TestApp, user: &str, lang: &str) -> (u16, String) {
    let client = app.client();
    let csrf = app.csrf(&client, "/login");
    let r = client
        .post(app.url("/login"))
        .header(reqwest::header::ACCEPT_LANGUAGE, lang)
        .form(&[
            ("username", user),
            ("password", DEMO_PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// `POST /api/v1/tokens` with `Accept-Language: lang`: the status and the JSON answer.
fn token(app: &TestApp, user: &str, lang: &str) -> (u16, serde_json::Value) {
    let r = Client::new()
        .post(app.url("/api/v1/tokens"))
        .header(reqwest::header::ACCEPT_LANGUAGE, lang)
        .json(&serde_json::json!({ "username": user, "password": DEMO_PASSWORD }))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or_default())
}

/// A PostgreSQL database that accepts no writes (`default_transaction_read_only = on`, what a
/// hot standby also gives, with the sessions of the time terminated, as a fail-over does):
/// logins and tokens answer 503 with a message in the reader's language, reads still work,
/// `/healthz` answers 503 with the reason; once writes are allowed again, they work without a
/// restart.
#[test]
fn a_read_only_database_answers_503_keeps_reads_and_recovers() {
    let app = TestApp::builder().demo().start();
    let (admin, name) = postgres_database(&app);
    dataop::catalog::demo::seed_rows(app.state(), "provider", 50).expect("demo data");
    let id: i64 = {
        use dataop::schema::datasets;
        datasets::table
            .select(datasets::id)
            .first(&mut *app.conn())
            .unwrap()
    };
    let provider = app.logged_in("provider", DEMO_PASSWORD);
    let anon = Client::new();
    assert_eq!(app.get_text(&anon, "/healthz"), (200, "ok".into()));

    let mut pg = diesel::pg::PgConnection::establish(&admin).unwrap();
    pg.batch_execute(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid();"
    ))
    .unwrap();

    let (status, health) = app.get_text(&anon, "/healthz");
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("cannot be written"), "{health}");
    assert!(health.contains("read-only transaction"), "{health}");
    let (status, page) = login(&app, "alpha", "zh-CN");
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("暂时无法写入"), "{page}");
    let (status, answer) = token(&app, "alpha", "en");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "common.error_read_only");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be written")
    );
    let (status, _) = app.get_text(&provider, &format!("/provider/datasets/{id}"));
    assert_eq!(status, 200, "a page that only reads still works");
    assert_eq!(app.get_text(&anon, "/catalog").0, 200);

    pg.batch_execute(&format!(
        "ALTER DATABASE {name} RESET default_transaction_read_only"
    ))
    .unwrap();
    let started = Instant::now();
    while app.get_text(&anon, "/healthz").0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for writes to work again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(login(&app, "alpha", "zh-CN").0, 303);
    assert_eq!(token(&app, "alpha", "en").0, 200);
}
