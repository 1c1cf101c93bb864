//! Idempotent job submission through the real API (SQLite; PostgreSQL when
//! `DATAOP_TEST_POSTGRES_URL` is set): a retry with the same `Idempotency-Key` answers the run
//! the first attempt recorded, the same key on another submission is refused, concurrent
//! identical submissions record one run, `GET /api/v1/jobs` lists an organisation's runs and
//! nobody else's, and `dataop job submit` retries with its key when the answer is lost on the
//! way (a proxy on 127.0.0.1 that forwards the first request and drops its answer).
//!
//! The world: the demo accounts, a 300-row demo outpatient dataset, `alpha`'s sealed agreement
//! in force on it, and `alpha` trained by the platform admin. The job is example (a).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};

use chrono::Duration;
use diesel::prelude::*;
use reqwest::blocking::{Client, multipart};

mod common;

use common::{DEMO_PASSWORD, TestApp};

const WAT: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.wat");
const MANIFEST_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sandbox/guest/examples/a_visits_65plus.toml"
);
const WAT_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sandbox/guest/examples/a_visits_65plus.wat"
);
const MANIFEST: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.toml");

fn world() -> TestApp {
    let app = TestApp::builder().demo().start();
    dataop::catalog::demo::seed_rows(app.state(), "provider", 300).expect("demo data");
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
            ("trained_on", &(today - Duration::days(10)).to_string()),
            ("expires_on", &(today + Duration::days(365)).to_string()),
        ],
    );
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap_or_default());
    app
}

/// `POST /api/v1/jobs` with `key` as `Idempotency-Key`: status, `Idempotent-Replayed`, body.
fn submit(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    purpose: &str,
) -> (u16, bool, serde_json::Value) {
    let form = multipart::Form::new()
        .part(
            "module",
            multipart::Part::bytes(WAT.as_bytes().to_vec()).file_name("job.wat"),
        )
        .part(
            "manifest",
            multipart::Part::bytes(MANIFEST.as_bytes().to_vec()).file_name("job.toml"),
        )
        .text("purpose", purpose.to_owned());
    let mut req = Client::new()
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(token)
        .multipart(form);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let r = req.send().expect("submission");
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("Idempotent-Replayed")
        .is_some_and(|v| v == "true");
    (
        status,
        replayed,
        r.json().unwrap_or(serde_json::Value::Null),
    )
}

/// `GET path` with a bearer token: status and JSON.
fn api_get(app: &TestApp, token: &str, path: &str) -> (u16, serde_json::Value) {
    let r = Client::new()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .expect("GET");
    (r.status().as_u16(), r.json().unwrap_or_default())
}

/// The ids of the runs `GET /api/v1/jobs` lists for `token`, following every `next` link.
fn listed(app: &TestApp, token: &str, first: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        let (status, page) = api_get(app, token, &path);
        assert_eq!(status, 200, "{page}");
        ids.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|j| j["id"].as_i64().unwrap()),
        );
        next = page["next"].as_str().map(str::to_owned);
    }
    ids
}

fn job_count(app: &TestApp) -> i64 {
    use dataop::schema::jobs;
    jobs::table.count().get_result(&mut *app.conn()).unwrap()
}

/// A retry with the same key and the same submission answers the first run again (201,
/// marked replayed): one run exists, and the list shows it once.
#[test]
fn a_retry_with_the_same_key_answers_the_same_run() {
    let app = world();
    let tok = app.api_token("alpha");
    let (status, replayed, first) = submit(&app, &tok, Some("retry-key-1"), "各区老年门诊负担");
    assert_eq!(status, 201, "{first}");
    assert!(!replayed);
    let id = first["id"].as_i64().unwrap();
    let (status, replayed, again) = submit(&app, &tok, Some("retry-key-1"), "各区老年门诊负担");
    assert_eq!(status, 201, "{again}");
    assert!(replayed, "the answer says it repeats the first one");
    assert_eq!(again, first);
    assert_eq!(job_count(&app), 1);
    assert_eq!(listed(&app, &tok, "/api/v1/jobs"), vec![id]);
    let (_, status) = api_get(&app, &tok, &format!("/api/v1/jobs/{id}"));
    assert_eq!(status["id"], id);
}

/// The same key on a different submission is refused with a 422 naming the conflict, and
/// records nothing; a bad key is refused with a 400.
#[test]
fn the_same_key_on_another_submission_is_refused() {
    let app = world();
    let tok = app.api_token("alpha");
    let (status, _, first) = submit(&app, &tok, Some("reused-key"), "各区老年门诊负担");
    assert_eq!(status, 201, "{first}");
    let (status, replayed, other) = submit(&app, &tok, Some("reused-key"), "另一个目的");
    assert_eq!(status, 422, "{other}");
    assert!(!replayed);
    assert_eq!(other["error"]["code"], "common.error_idempotency_reused");
    let message = other["error"]["message"].as_str().unwrap();
    assert!(message.contains("Idempotency-Key"), "{message}");
    assert!(message.contains("不同的请求"), "{message}");
    assert_eq!(job_count(&app), 1);
    let (status, _, bad) = submit(&app, &tok, Some(&"k".repeat(256)), "各区老年门诊负担");
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "common.error_idempotency_key");
    assert_eq!(job_count(&app), 1);
}

/// Eight identical submissions with one key at once record one run: every answer names it.
#[test]
fn concurrent_identical_submissions_record_one_run() {
    let app = world();
    let tok = app.api_token("alpha");
    let barrier = Arc::new(Barrier::new(8));
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (app, tok, barrier) = (&app, &tok, barrier.clone());
                s.spawn(move || {
                    barrier.wait();
                    let (status, _, body) = submit(app, tok, Some("at-once"), "各区老年门诊负担");
                    (status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: Vec<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["id"].as_i64().unwrap()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(job_count(&app), 1);
    assert_eq!(listed(&app, &tok, "/api/v1/jobs"), vec![ids[0]]);
}

/// `GET /api/v1/jobs` lists the organisation's runs newest first, a page at a time, and never
/// another organisation's.
#[test]
fn the_job_list_is_paginated_newest_first_and_only_the_organisations() {
    let app = world();
    let tok = app.api_token("alpha");
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, _, body) = submit(&app, &tok, None, &format!("目的 {i}"));
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_i64().unwrap());
    }
    ids.reverse();
    let (status, page) = api_get(&app, &tok, "/api/v1/jobs?limit=2");
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["state"], "awaiting_approval");
    assert_eq!(page["items"][0]["name"], "visits_by_district_65plus");
    assert!(page["next"].as_str().unwrap().contains("before="));
    assert_eq!(listed(&app, &tok, "/api/v1/jobs?limit=2"), ids);
    let beta = app.api_token("beta");
    assert_eq!(listed(&app, &beta, "/api/v1/jobs"), Vec::<i64>::new());
    let (status, bad) = api_get(&app, &tok, "/api/v1/jobs?limit=100000");
    assert_eq!(status, 400, "{bad}");
    let (status, _) = api_get(&app, &tok, "/api/v1/jobs?before=abc");
    assert_eq!(status, 400);
}

/// A proxy to `upstream` on 127.0.0.1 that forwards the first connection's request, waits for
/// the server's answer and closes the connection without passing it on; later connections
/// pass through. Returns its address.
fn answer_losing_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let server = TcpStream::connect(&upstream).unwrap();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (server, client);
                if n == 0 {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                } else {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.flush();
                }
            });
        }
    });
    addr
}

/// `dataop job submit` whose first answer is lost after the server recorded the run retries
/// with the same key and prints that run: one run exists.
#[test]
fn the_cli_retries_a_lost_answer_with_its_key_and_submits_once() {
    let app = world();
    let tok = app.api_token("alpha");
    let proxy = answer_losing_proxy(app.base.trim_start_matches("http://").to_owned());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dataop"))
        .args(["job", "submit", WAT_PATH, MANIFEST_PATH])
        .args(["--purpose", "各区老年门诊负担"])
        .args(["--server", &format!("http://{proxy}")])
        .env("DATAOP_TOKEN", &tok)
        .env_remove("DATAOP_CONFIG")
        .output()
        .expect("run dataop job submit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON answer");
    let id = answer["id"].as_i64().unwrap();
    assert_eq!(job_count(&app), 1, "{stdout}\n{stderr}");
    assert_eq!(listed(&app, &tok, "/api/v1/jobs"), vec![id]);
}
