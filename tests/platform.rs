//! Platform basics: health check, static files, errors, language selection.

mod common;

use common::TestApp;

#[test]
fn healthz_answers_ok() {
    let app = TestApp::start();
    let c = app.client();
    assert_eq!(app.get_text(&c, "/healthz"), (200, "ok".to_owned()));
}

#[test]
fn home_page_defaults_to_chinese_and_serves_local_css() {
    let app = TestApp::start();
    let c = app.client();
    let (status, html) = app.get_text(&c, "/");
    assert_eq!(status, 200);
    assert!(html.contains("lang=\"zh-CN\""));
    assert!(html.contains("公共数据授权运营平台"));
    assert!(html.contains("/static/css/app.css"));
    let (status, css) = app.get_text(&c, "/static/css/app.css");
    assert_eq!(status, 200);
    assert!(css.contains("--navy"));
    // The icon is local too (browsers otherwise ask for a missing /favicon.ico).
    assert!(html.contains("<link rel=\"icon\" href=\"/static/img/favicon.svg\""));
    let icon = app.get(&c, "/static/img/favicon.svg");
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
}

#[test]
fn static_assets_are_embedded_revalidated_and_confined() {
    let app = TestApp::start();
    let c = app.client();
    let first = c.get(app.url("/static/css/app.css")).send().unwrap();
    assert_eq!(first.status(), 200);
    assert!(
        first.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = c
        .get(app.url("/static/css/app.css"))
        .header("If-None-Match", etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    for path in [
        "/static/css/missing.css",
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/",
    ] {
        let (status, _) = app.get_text(&c, path);
        assert_eq!(status, 404, "{path}");
    }
}

#[test]
fn accept_language_and_switch_cookie_choose_the_language() {
    let app = TestApp::start();
    let c = app.client();
    let html = c
        .get(app.url("/"))
        .header("Accept-Language", "en-GB,en;q=0.9,zh;q=0.5")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        html.contains("lang=\"en\""),
        "Accept-Language picks English"
    );
    assert!(html.contains("Public Data Authorized Operation Platform"));

    let r = app.get(&c, "/lang/en?next=/catalog");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/catalog");
    let (_, html) = app.get_text(&c, "/");
    assert!(html.contains("lang=\"en\""), "the cookie picks English");

    app.get(&c, "/lang/zh?next=//evil.example");
    let html = c
        .get(app.url("/"))
        .header("Accept-Language", "en")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        html.contains("lang=\"zh-CN\""),
        "the cookie wins over Accept-Language"
    );
}

#[test]
fn unknown_pages_are_404_html_and_json_under_api() {
    let app = TestApp::start();
    let c = app.client();
    let (status, html) = app.get_text(&c, "/no/such/page");
    assert_eq!(status, 404);
    assert!(html.contains("<html"), "HTML error page");
    let r = app.get(&c, "/api/v1/no-such-thing");
    assert_eq!(r.status().as_u16(), 404);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"]["status"], 404);
    assert!(v["error"]["message"].as_str().unwrap().len() > 3);
}

#[test]
fn malformed_input_is_a_4xx_never_a_500() {
    let app = TestApp::start();
    let c = app.client();
    let r = c
        .post(app.url("/api/v1/tokens"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"]["status"], 400);
    let r = c
        .post(app.url("/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(vec![b'%', 0xff, 0xfe])
        .send()
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(r.text().unwrap().contains("<html"));
    let r = app.get(&c, "/supervision/audit?from=2026-13-45");
    assert_eq!(r.status().as_u16(), 303, "anonymous: login first");
}

#[test]
fn secure_cookies_when_configured() {
    let app = TestApp::builder()
        .demo()
        .config(|c| c.secure_cookies = true)
        .start();
    let c = app.client();
    let r = app.get(&c, "/login");
    let csrf_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("dataop_csrf="))
        .expect("csrf seed cookie");
    assert!(csrf_cookie.contains("Secure") && csrf_cookie.contains("HttpOnly"));
}
