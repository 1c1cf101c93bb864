//! What people send, through the real HTTP routes: redirect targets, text that is not UTF-8 or
//! holds NUL, values out of range, fields over their limit, a very long URL, the bearer scheme,
//! and the pages that answered them badly (verification without a hash, the account page's
//! curl example, the regulator's training records, the run-budget refusal in Chinese).
//! SQLite by default; PostgreSQL when `DATAOP_TEST_POSTGRES_URL` is set (where NUL used to be
//! a 500).

use std::io::{Read as _, Write as _};

use chrono::Duration;
use dataop::catalog::model::{self as catalog, DatasetFields};
use dataop::schema::{organisations, users};
use diesel::prelude::*;
use reqwest::blocking::{Client, Response, multipart};

mod common;

use common::{DEMO_PASSWORD, TestApp};

const URLENCODED: &str = "application/x-www-form-urlencoded";

/// POSTs a raw urlencoded `body` (bytes as given, so they may be anything) to `path`.
fn post_raw(app: &TestApp, c: &Client, path: &str, body: Vec<u8>) -> Response {
    c.post(app.url(path))
        .header("Content-Type", URLENCODED)
        .body(body)
        .send()
        .expect("POST")
}

/// `name=value&…` with each value percent-encoded as a browser would.
fn encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", dataop::web::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn location(r: &Response) -> String {
    String::from_utf8(r.headers()["location"].as_bytes().to_vec()).unwrap()
}

#[test]
fn redirect_targets_are_plain_paths_on_this_site() {
    let app = TestApp::builder().demo().start();
    let c = app.client();
    for next in [
        "/%09/evil.example/",
        "/%0A/evil.example/",
        "//evil.example/",
        "/%5Cevil.example/",
        "/%252F/evil.example/",
        "https://evil.example/",
        "/a%20b",
    ] {
        let r = app.get(&c, &format!("/lang/en?next={next}"));
        assert_eq!(r.status().as_u16(), 303, "{next}");
        assert_eq!(location(&r), "/", "the language switch refuses {next}");
        let (_, html) = app.get_text(&c, &format!("/login?next={next}"));
        assert!(
            !html.contains("evil.example"),
            "the login form drops {next}"
        );
    }
    let r = app.get(&c, "/lang/zh?next=/catalog?q=%E9%97%A8%E8%AF%8A");
    assert_eq!(location(&r), "/catalog?q=门诊", "a plain path still works");

    // The login form's own field is checked by the same rule.
    let csrf = app.csrf(&c, "/login");
    let body =
        format!("username=alpha&password={DEMO_PASSWORD}&csrf={csrf}&next=/%09/evil.example/");
    let r = post_raw(&app, &c, "/login", body.into_bytes());
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r), "/");
    let c = app.client();
    let csrf = app.csrf(&c, "/login");
    let body = format!("username=alpha&password={DEMO_PASSWORD}&csrf={csrf}&next=/jobs");
    let r = post_raw(&app, &c, "/login", body.into_bytes());
    assert_eq!(location(&r), "/jobs");
}

/// The registration form, as typed, with `name` replaced by raw (already encoded) bytes.
fn registration_with_name(csrf: &str, name: &[u8]) -> Vec<u8> {
    let code = dataop::accounts::credit_code::complete("9133010812345678").unwrap();
    let mut body = b"name=".to_vec();
    body.extend_from_slice(name);
    body.extend_from_slice(b"&");
    body.extend_from_slice(
        encode(&[
            ("credit_code", code.as_str()),
            ("legal_representative", "孙伽马"),
            ("contact_name", "孙伽马"),
            ("contact_phone", "0571-12345678"),
            ("address", "浙江省杭州市西湖区"),
            ("business_scope", "数据处理和存储支持服务"),
            ("email", "gamma@example.com"),
            ("username", "gamma"),
            ("display_name", "孙伽马"),
            ("password", "gamma-password-1"),
            ("password_confirm", "gamma-password-1"),
            ("csrf", csrf),
        ])
        .as_bytes(),
    );
    body
}

fn org_count(app: &TestApp) -> i64 {
    organisations::table
        .count()
        .get_result(&mut app.conn())
        .unwrap()
}

#[test]
fn text_that_is_not_utf8_or_holds_nul_is_refused_naming_the_field() {
    let app = TestApp::builder().demo().start();
    let before = org_count(&app);
    for (raw, want) in [
        (&b"%E4%BC%BD%FF%FE"[..], "UTF-8"),
        (&b"%E4%BC%BD%00%E9%A9%AC"[..], "U+0000"),
    ] {
        let c = app.client();
        let csrf = app.csrf(&c, "/register");
        let r = c
            .post(app.url("/register"))
            .header("Content-Type", URLENCODED)
            .header("Accept-Language", "en")
            .body(registration_with_name(&csrf, raw))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let html = r.text().unwrap();
        assert!(html.contains("“name”") && html.contains(want), "{html}");
        assert!(
            html.contains("浙江省杭州市西湖区") && html.contains("gamma@example.com"),
            "the form is shown again with what was typed"
        );
    }
    assert_eq!(org_count(&app), before, "nothing was stored");

    // A form that is not shown again (creating an API token) is refused whole, naming the field.
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    let csrf = app.csrf(&platform, "/account");
    let body = format!("csrf={csrf}&note=a%00b");
    let r = post_raw(&app, &platform, "/account/tokens", body.into_bytes());
    assert_eq!(r.status().as_u16(), 422, "any form field is checked");

    // The text fields of a multipart form: the purpose of a job submission.
    let tok = app.api_token("alpha");
    let form = multipart::Form::new()
        .part(
            "module",
            multipart::Part::bytes(b"(module)".to_vec()).file_name("a.wat"),
        )
        .text("manifest", "abi = 1")
        .part("purpose", multipart::Part::bytes(b"ok\0no".to_vec()));
    let r = app
        .client()
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&tok)
        .header("Accept-Language", "en")
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: serde_json::Value = r.json().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("“purpose”") && message.contains("U+0000"),
        "{body}"
    );

    // A query parameter too (the catalog search).
    let (status, _) = app.get_text(&app.client(), "/catalog?q=a%00b");
    assert_eq!(status, 422);
}

/// The routes that read their query or form without the input checks before: a NUL or bytes
/// that are not UTF-8 answer 422 naming the field (on PostgreSQL, a NUL in the audit filter
/// reached the database and answered 500).
#[test]
fn filters_queries_and_small_forms_are_checked_like_every_form() {
    let app = TestApp::builder().demo().start();
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    for path in [
        "/supervision/audit?actor=a%00b",
        "/supervision/audit.csv?actor=a%00b",
    ] {
        let (status, html) = app.get_text(&reg, path);
        assert_eq!(status, 422, "{path}");
        assert!(
            html.contains("字段“actor”含有控制字符（U+0000）"),
            "{path}: {html}"
        );
    }
    let (status, html) = app.get_text(&reg, "/admin/outbox?state=%FF");
    assert_eq!(status, 422);
    assert!(html.contains("字段“state”不是有效的 UTF-8 文本"), "{html}");
    let csrf = app.csrf(&reg, "/admin/outbox");
    let r = post_raw(
        &app,
        &reg,
        "/admin/outbox/1/retry",
        format!("csrf={csrf}&note=a%00b").into_bytes(),
    );
    assert_eq!(r.status().as_u16(), 422, "the retry form");

    let r = app
        .client()
        .get(app.url("/api/v1/jobs?before=1%00"))
        .bearer_auth(app.api_token("alpha"))
        .header("Accept-Language", "en")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: serde_json::Value = r.json().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("“before”"), "{body}");

    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let csrf = app.csrf(&alpha, "/account");
    let r = post_raw(
        &app,
        &alpha,
        "/agreements/1/schemas/1/accept",
        format!("csrf={csrf}&note=%FF").into_bytes(),
    );
    assert_eq!(r.status().as_u16(), 422, "accepting a schema");

    dataop::catalog::demo::seed_rows(app.state(), "provider", 20).expect("demo data");
    let (dataset, version): (i64, i64) = {
        use dataop::schema::dataset_versions as v;
        v::table
            .select((v::dataset_id, v::id))
            .first(&mut *app.conn())
            .unwrap()
    };
    let provider = app.logged_in("provider", DEMO_PASSWORD);
    let preview = format!("/provider/datasets/{dataset}/versions/{version}");
    let csrf = app.csrf(&provider, &preview);
    for action in ["publish", "discard"] {
        let r = post_raw(
            &app,
            &provider,
            &format!("{preview}/{action}"),
            format!("csrf={csrf}&x=a%00b").into_bytes(),
        );
        assert_eq!(r.status().as_u16(), 422, "{action}");
        let html = r.text().unwrap();
        assert!(html.contains("字段“x”含有控制字符"), "{action}: {html}");
        assert!(html.contains("preview-rows"), "the preview again: {html}");
    }
}

fn dataset(app: &TestApp) -> i64 {
    let (org, uid): (i64, i64) = users::table
        .filter(users::username.eq("provider"))
        .select((users::org_id, users::id))
        .first(&mut app.conn())
        .unwrap();
    catalog::insert_dataset(
        &mut app.conn(),
        org,
        uid,
        &DatasetFields {
            title_zh: "门诊".into(),
            title_en: "Visits".into(),
            category: "medical_services".into(),
            grade: 2,
            open_type: "conditional".into(),
            sharing_type: "conditional".into(),
            update_frequency: "monthly".into(),
            ..DatasetFields::default()
        },
        dataop::db::to_micros(app.state().clock.now()),
    )
    .unwrap()
}

fn call_fields<'a>(dataset: &'a str, opens: &'a str, closes: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("domain", "medical_services"),
        ("title_zh", "医疗健康数据授权运营通告"),
        ("title_en", "Medical data call"),
        ("body_zh", "正文"),
        ("body_en", "Text"),
        ("scenarios", "保险精算"),
        ("conditions", "等保三级"),
        ("opens_on", opens),
        ("closes_on", closes),
        ("dataset", dataset),
    ]
}

#[test]
fn dates_phone_numbers_and_form_sizes_are_checked_with_named_limits() {
    let app = TestApp::builder().demo().start();
    let id = dataset(&app).to_string();
    let today = app.state().clock.today();
    let (t, in_ten_years) = (
        today.to_string(),
        (today + Duration::days(3650)).to_string(),
    );
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let en = |r: reqwest::blocking::RequestBuilder| r.header("Accept-Language", "en");
    let post_call = |fields: &[(&str, &str)]| {
        let csrf = app.csrf(&reg, "/admission/calls/new");
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend_from_slice(fields);
        en(reg.post(app.url("/admission/calls")))
            .form(&f)
            .send()
            .unwrap()
    };
    let r = post_call(&call_fields(&id, &t, "9999-12-31"));
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().unwrap();
    assert!(
        html.contains("Closes on: 9999-12-31 is out of range") && html.contains("ten years"),
        "{html}"
    );
    assert!(
        html.contains("医疗健康数据授权运营通告"),
        "the form keeps what was typed"
    );
    let r = post_call(&call_fields(&id, &t, &in_ten_years));
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap());

    // A text over the form's size: the field and the limit are named, the form shown again.
    let huge = "长".repeat(400_000);
    let mut f = call_fields(&id, &t, &t);
    f.retain(|(k, _)| *k != "conditions");
    f.push(("conditions", &huge));
    let r = post_call(&f);
    assert_eq!(r.status().as_u16(), 413);
    let html = r.text().unwrap();
    assert!(
        html.contains("“conditions”") && html.contains("1 MiB"),
        "{}",
        &html[..2000.min(html.len())]
    );
    assert!(
        html.contains("医疗健康数据授权运营通告"),
        "the form keeps what was typed"
    );

    // A training expiring in 9999, or given in the future, is refused.
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    let train = |on: &str, until: &str| {
        let csrf = app.csrf(&platform, "/admin/trainings");
        en(platform.post(app.url("/admin/trainings")))
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", "alpha"),
                ("course", "Data security"),
                ("trained_on", on),
                ("expires_on", until),
            ])
            .send()
            .unwrap()
    };
    let r = train(&t, "9999-12-31");
    assert_eq!(r.status().as_u16(), 422);
    assert!(
        r.text()
            .unwrap()
            .contains("Valid until: 9999-12-31 is out of range")
    );
    let r = train(&(today + Duration::days(3)).to_string(), &in_ten_years);
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().unwrap().contains("is not a plausible date"));
    assert_eq!(train(&t, &in_ten_years).status().as_u16(), 303);

    // A phone number must read as one.
    let c = app.client();
    let csrf = app.csrf(&c, "/register");
    let mut body = registration_with_name(&csrf, "伽马科技有限公司".as_bytes());
    body = String::from_utf8(body)
        .unwrap()
        .replace("contact_phone=0571-12345678", "contact_phone=call%20me")
        .into_bytes();
    let r = en(c.post(app.url("/register")))
        .header("Content-Type", URLENCODED)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().unwrap().contains("Enter a valid phone number"));
}

#[test]
fn a_purpose_over_its_limit_is_named_and_the_form_keeps_what_was_typed() {
    let app = TestApp::builder().demo().start();
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let csrf = app.csrf(&alpha, "/jobs/new");
    let purpose = format!("各区老年门诊负担{}", "x".repeat(17 * 1024));
    let form = multipart::Form::new()
        .text("csrf", csrf)
        .part(
            "module",
            multipart::Part::bytes(b"(module)".to_vec()).file_name("a.wat"),
        )
        .text("manifest", "abi = 1\nname = \"kept-manifest\"\n")
        .text("purpose", purpose);
    let r = alpha
        .post(app.url("/jobs"))
        .header("Accept-Language", "en")
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let html = r.text().unwrap();
    assert!(
        html.contains("The field “purpose” is longer than its limit of 16 KiB"),
        "{html}"
    );
    assert!(html.contains("kept-manifest") && html.contains("各区老年门诊负担"));
}

#[test]
fn a_very_long_url_gets_a_short_readable_answer() {
    let app = TestApp::start();
    for len in [20_000, 70_000, 200_000] {
        // A new connection, as a browser opening a link would use.
        let mut s = std::net::TcpStream::connect(app.base.trim_start_matches("http://")).unwrap();
        let path = "a".repeat(len);
        write!(s, "GET /{path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 414"), "{len}: {answer}");
        assert!(
            answer.contains("The address is too long") && answer.contains("网址过长"),
            "{len}: {answer}"
        );
        assert!(!answer.contains("aaaa"), "the URL is not echoed");
    }
    // A later request on a kept-alive connection: the same 414, as a page.
    let c = app.client();
    assert_eq!(app.get(&c, "/").status().as_u16(), 200);
    let (status, html) = app.get_text(&c, &format!("/{}", "b".repeat(30_000)));
    assert_eq!(status, 414);
    assert!(html.contains("网址过长"), "{html}");
    assert!(!html.contains("bbbb"));
    // Nothing else changed: the server still serves.
    assert_eq!(
        app.get_text(&app.client(), "/healthz"),
        (200, "ok".to_owned())
    );
}

#[test]
fn the_bearer_scheme_is_read_in_any_case() {
    let app = TestApp::builder().demo().start();
    let tok = app.api_token("alpha");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = Client::new()
            .get(app.url("/api/v1/me"))
            .header("Authorization", format!("{scheme} {tok}"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{scheme}");
    }
}

#[test]
fn verification_asks_for_what_is_missing() {
    let app = TestApp::start();
    let c = app.client();
    let get = |q: &str| {
        let r = c
            .get(app.url(&format!("/agreements/verify?{q}")))
            .header("Accept-Language", "en")
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, html) = get("number=DATAOP-2026-0001&hash=");
    assert_eq!(status, 422);
    assert!(html.contains("Enter the SHA-256 hash"), "{html}");
    assert!(!html.contains("Not valid"));
    let (status, html) = get("number=&hash=abc");
    assert_eq!(status, 422);
    assert!(html.contains("Enter the agreement number"));
    let (status, html) = get("");
    assert_eq!(status, 200, "an empty form asks nothing yet");
    assert!(!html.contains("notice-error"));
    let csrf = app.csrf(&c, "/agreements/verify");
    let r = c
        .post(app.url("/agreements/verify"))
        .header("Accept-Language", "en")
        .form(&[
            ("csrf", csrf.as_str()),
            ("number", "DATAOP-2026-0001"),
            ("text", ""),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().unwrap().contains("Paste the canonical text"));
}

#[test]
fn the_account_page_shows_an_absolute_curl_example() {
    let app = TestApp::builder().demo().start();
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let (_, html) = app.get_text(&alpha, "/account");
    assert!(
        html.contains(&format!("{}/api/v1/tokens</pre>", app.base)),
        "{html}"
    );
}

#[test]
fn the_regulator_sees_training_records_and_only_the_platform_records_them() {
    let app = TestApp::builder().demo().start();
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    let today = app.state().clock.today();
    let csrf = app.csrf(&platform, "/admin/trainings");
    let r = app.post_form(
        &platform,
        "/admin/trainings",
        &[
            ("csrf", &csrf),
            ("username", "alpha"),
            ("course", "数据安全培训"),
            ("trained_on", &today.to_string()),
            ("expires_on", &(today + Duration::days(365)).to_string()),
        ],
    );
    assert_eq!(r.status().as_u16(), 303);

    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (_, menu) = app.get_text(&reg, "/admin/jobs");
    assert!(
        menu.contains("href=\"/admin/trainings\""),
        "the menu links to them"
    );
    let (status, html) = app.get_text(&reg, "/admin/trainings");
    assert_eq!(status, 200, "and the link opens them");
    assert!(html.contains("数据安全培训"));
    assert!(
        !html.contains("action=\"/admin/trainings\""),
        "no form to record one"
    );
    let csrf = app.csrf(&reg, "/account");
    let r = app.post_form(
        &reg,
        "/admin/trainings",
        &[
            ("csrf", &csrf),
            ("username", "beta"),
            ("course", "x"),
            ("trained_on", &today.to_string()),
            ("expires_on", &today.to_string()),
        ],
    );
    assert_eq!(
        r.status().as_u16(),
        403,
        "the regulator does not record trainings"
    );
    let (_, html) = app.get_text(&platform, "/admin/trainings");
    assert!(
        html.contains("action=\"/admin/trainings\""),
        "the platform admin does"
    );
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    assert_eq!(app.get(&alpha, "/admin/trainings").status().as_u16(), 403);
}

#[test]
fn the_run_budget_refusal_names_its_period_in_the_page_language() {
    let app = TestApp::builder().demo().start();
    dataop::catalog::demo::seed_rows(app.state(), "provider", 300).expect("demo data");
    dataop::agreements::demo::seed(app.state()).expect("demo agreement");
    app.exec_sql("UPDATE agreements SET run_budget = 0, run_period = 'month'");
    let tok = app.api_token("alpha");
    let wat = include_str!("../sandbox/guest/examples/a_visits_65plus.wat");
    let manifest = include_str!("../sandbox/guest/examples/a_visits_65plus.toml");
    let message = |lang: &str| {
        let form = multipart::Form::new()
            .part(
                "module",
                multipart::Part::bytes(wat.as_bytes().to_vec()).file_name("a.wat"),
            )
            .text("manifest", manifest)
            .text("purpose", "各区老年门诊负担");
        let body: serde_json::Value = Client::new()
            .post(app.url("/api/v1/jobs"))
            .bearer_auth(&tok)
            .header("Accept-Language", lang)
            .multipart(form)
            .send()
            .unwrap()
            .json()
            .unwrap();
        body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["rule"] == "run_budget")
            .map(|p| p["message"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("a run-budget refusal: {body}"))
    };
    let zh = message("zh");
    assert!(zh.contains("每月 0 次") && !zh.contains("month"), "{zh}");
    let en = message("en");
    assert!(en.contains("0 runs per month"), "{en}");
}
