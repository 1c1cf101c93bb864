//! Accounts over HTTP: registration, login/logout, sessions, CSRF, API tokens, roles, throttling.

mod common;

use common::{DEMO_PASSWORD, TestApp};
use dataop::accounts::credit_code;

fn valid_code() -> String {
    credit_code::complete("9133010812345678").unwrap()
}

fn registration<'a>(code: &'a str, username: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", "伽马数据科技有限公司"),
        ("credit_code", code),
        ("legal_representative", "孙伽马"),
        ("contact_name", "孙伽马"),
        ("contact_phone", "0571-12345678"),
        ("address", "浙江省杭州市西湖区"),
        ("business_scope", "数据处理和存储支持服务"),
        ("email", "gamma@example.com"),
        ("username", username),
        ("display_name", "孙伽马"),
        ("password", "gamma-password-1"),
        ("password_confirm", "gamma-password-1"),
    ]
}

#[test]
fn registration_with_a_valid_code_creates_org_and_user() {
    let app = TestApp::start();
    let c = app.client();
    let code = valid_code();
    let r = app.post_form_from(&c, "/register", "/register", &registration(&code, "gamma"));
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap());
    assert_eq!(r.headers()["location"], "/login");
    let r = app.login(&c, "gamma", "gamma-password-1");
    assert_eq!(r.status().as_u16(), 303);
    let (_, html) = app.get_text(&c, "/account");
    assert!(html.contains("伽马数据科技有限公司"));
    assert!(
        html.contains("badge-pending"),
        "a new enterprise waits for verification"
    );

    let c2 = app.client();
    let r = app.post_form_from(
        &c2,
        "/register",
        "/register",
        &registration(&code, "gamma2"),
    );
    assert_eq!(
        r.status().as_u16(),
        422,
        "the same code cannot register twice"
    );
}

#[test]
fn registration_refuses_each_broken_credit_code_rule_and_keeps_typed_values() {
    let app = TestApp::start();
    let c = app.client();
    let good = valid_code();
    let mut bad_check = good.clone();
    let last = bad_check.pop().unwrap();
    bad_check.push(if last == '0' { '1' } else { '0' });
    let mut bad_org = good.clone();
    bad_org.replace_range(16..17, if &good[16..17] == "1" { "2" } else { "1" });
    let cases: Vec<(String, &str, &str)> = vec![
        ("91330108123".into(), "18", "has 11"),
        (format!("{}I", &good[..17]), "Character 18", "not allowed"),
        (format!("X{}", &good[1..]), "registration authority", "X"),
        (format!("94{}", &good[2..]), "organisation type", "4"),
        (
            format!("9199{}", &good[4..]),
            "administrative division",
            "990108",
        ),
        (bad_org, "organisation code", "GB 11714"),
        (bad_check, "check character", "should be"),
    ];
    for (code, must1, must2) in cases {
        let token = app.csrf(&c, "/register");
        let mut fields = registration(&code, "delta");
        fields.push(("csrf", &token));
        let r = c
            .post(app.url("/register"))
            .header("Accept-Language", "en")
            .form(&fields)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 422, "code {code} must be refused");
        let html = r.text().unwrap();
        assert!(
            html.contains("credit_code-error"),
            "{code}: error shown at the field"
        );
        assert!(
            html.contains(must1) && html.contains(must2),
            "{code}: message names the rule:\n{html}"
        );
        assert!(
            html.contains("伽马数据科技有限公司"),
            "typed values are kept"
        );
        assert!(
            !html.contains("gamma-password-1"),
            "passwords are not echoed"
        );
    }
}

#[test]
fn login_logout_and_session_revocation() {
    let app = TestApp::builder().demo().start();
    let c = app.client();
    let r = app.login(&c, "alpha", "wrong-password");
    assert_eq!(r.status().as_u16(), 401);
    let r = app.login(&c, "alpha", DEMO_PASSWORD);
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("dataop_session="))
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let jwt = cookie["dataop_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(app.get(&c, "/account").status().as_u16(), 200);

    let token = app.csrf(&c, "/account");
    let r = app.post_form(&c, "/logout", &[("csrf", &token)]);
    assert_eq!(r.status().as_u16(), 303);
    let r = app.get(&c, "/account");
    assert_eq!(r.status().as_u16(), 303, "logged out: redirected to login");
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );

    let thief = app.client();
    let r = thief
        .get(app.url("/account"))
        .header("Cookie", format!("dataop_session={jwt}"))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        303,
        "a replayed session cookie is refused after logout"
    );
}

#[test]
fn state_changing_forms_need_the_csrf_token() {
    let app = TestApp::builder().demo().start();
    let c = app.client();
    app.get(&c, "/login");
    let r = app.post_form(
        &c,
        "/login",
        &[("username", "alpha"), ("password", DEMO_PASSWORD)],
    );
    assert_eq!(r.status().as_u16(), 403, "login without token");
    let r = app.post_form(
        &c,
        "/login",
        &[
            ("username", "alpha"),
            ("password", DEMO_PASSWORD),
            ("csrf", "forged"),
        ],
    );
    assert_eq!(r.status().as_u16(), 403, "login with a forged token");
    let c = app.logged_in("alpha", DEMO_PASSWORD);
    let r = app.post_form(&c, "/logout", &[("csrf", "forged")]);
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        app.get(&c, "/account").status().as_u16(),
        200,
        "still logged in"
    );
}

#[test]
fn api_tokens_issue_list_revoke() {
    let app = TestApp::builder().demo().start();
    let api = reqwest::blocking::Client::new();
    let r = api
        .post(app.url("/api/v1/tokens"))
        .json(&serde_json::json!({"username": "beta", "password": "nope-nope-nope"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: serde_json::Value = r.json().unwrap();
    assert!(v["error"]["message"].is_string());

    let r = api
        .post(app.url("/api/v1/tokens"))
        .json(&serde_json::json!({"username": "beta", "password": DEMO_PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));

    let me = |t: &str| {
        api.get(app.url("/api/v1/me"))
            .bearer_auth(t)
            .send()
            .unwrap()
    };
    let r = me(&token);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["username"], "beta");
    assert_eq!(me("not-a-jwt").status().as_u16(), 401);

    let c = app.logged_in("beta", DEMO_PASSWORD);
    let (_, html) = app.get_text(&c, "/account");
    let claims_sid = html
        .split("/account/tokens/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("token listed with a revoke form")
        .to_owned();
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let other = app.post_form_from(
        &alpha,
        "/account",
        &format!("/account/tokens/{claims_sid}/revoke"),
        &[],
    );
    assert_eq!(
        other.status().as_u16(),
        404,
        "another user cannot revoke it"
    );
    assert_eq!(me(&token).status().as_u16(), 200);

    let r = app.post_form_from(
        &c,
        "/account",
        &format!("/account/tokens/{claims_sid}/revoke"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(me(&token).status().as_u16(), 401, "revoked token refused");
    let (_, html) = app.get_text(&c, "/account");
    assert!(html.contains("badge-revoked"));
}

#[test]
fn a_token_issued_in_the_ui_works_on_the_api() {
    let app = TestApp::builder().demo().start();
    let c = app.logged_in("alpha", DEMO_PASSWORD);
    let r = app.post_form(&c, "/account/tokens", &[("csrf", "forged")]);
    assert_eq!(r.status().as_u16(), 403);
    let r = app.post_form_from(&c, "/account", "/account/tokens", &[]);
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().unwrap();
    let start = html.find("readonly rows=\"4\">").unwrap() + "readonly rows=\"4\">".len();
    let token = &html[start..start + html[start..].find('<').unwrap()];
    let r = reqwest::blocking::Client::new()
        .get(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn enterprise_cannot_reach_admin_pages() {
    let app = TestApp::builder().demo().start();
    let c = app.logged_in("alpha", DEMO_PASSWORD);
    for path in ["/admin/orgs", "/admin/users", "/supervision/audit"] {
        assert_eq!(app.get(&c, path).status().as_u16(), 403, "{path}");
    }
    let r = app.post_form_from(&c, "/account", "/admin/users/1/disable", &[]);
    assert_eq!(r.status().as_u16(), 403);
    let anon = app.client();
    assert_eq!(
        app.get(&anon, "/admin/orgs").status().as_u16(),
        303,
        "anonymous: to the login"
    );
    let (_, html) = app.get_text(&c, "/");
    assert!(
        !html.contains("/admin/orgs"),
        "no admin entries in the enterprise nav"
    );
}

#[test]
fn disabling_a_user_or_org_revokes_sessions_and_tokens() {
    let app = TestApp::builder().demo().start();
    let beta = app.logged_in("beta", DEMO_PASSWORD);
    let api = reqwest::blocking::Client::new();
    let v: serde_json::Value = api
        .post(app.url("/api/v1/tokens"))
        .json(&serde_json::json!({"username": "beta", "password": DEMO_PASSWORD}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = v["token"].as_str().unwrap().to_owned();

    let admin = app.logged_in("platform", DEMO_PASSWORD);
    let (status, html) = app.get_text(&admin, "/admin/users");
    assert_eq!(status, 200);
    let beta_id = {
        let i = html.find(">beta<").expect("beta listed");
        let row_start = html[..i].rfind("<tr>").unwrap();
        let row = &html[row_start..];
        let s = row.split("/admin/users/").nth(1).unwrap();
        s.split('/').next().unwrap().to_owned()
    };
    let r = app.post_form_from(
        &admin,
        "/admin/users",
        &format!("/admin/users/{beta_id}/disable"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        app.get(&beta, "/account").status().as_u16(),
        303,
        "session revoked"
    );
    let r = api
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "token revoked");
    let r = app.login(&app.client(), "beta", DEMO_PASSWORD);
    assert_eq!(r.status().as_u16(), 403, "disabled user cannot log in");

    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let regulator = app.logged_in("regulator", DEMO_PASSWORD);
    let (_, html) = app.get_text(&regulator, "/admin/orgs");
    let i = html.find("阿尔法健康科技有限公司").unwrap();
    let s = html[i..].split("/admin/orgs/").nth(1).unwrap();
    let org_id = s.split('/').next().unwrap().to_owned();
    let r = app.post_form_from(
        &regulator,
        "/admin/orgs",
        &format!("/admin/orgs/{org_id}/disable"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        app.get(&alpha, "/account").status().as_u16(),
        303,
        "org disabled: session revoked"
    );
    let r = app.post_form_from(
        &regulator,
        "/admin/orgs",
        &format!("/admin/orgs/{org_id}/disable"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 409, "cannot disable twice");
}

#[test]
fn failed_logins_are_throttled_per_account() {
    let app = TestApp::builder().demo().start();
    let c = app.client();
    for _ in 0..5 {
        assert_eq!(
            app.login(&c, "alpha", "wrong-password").status().as_u16(),
            401
        );
    }
    let r = app.login(&c, "alpha", DEMO_PASSWORD);
    assert_eq!(
        r.status().as_u16(),
        429,
        "locked even with the right password"
    );
    assert_eq!(
        app.login(&c, "beta", DEMO_PASSWORD).status().as_u16(),
        303,
        "other accounts unaffected"
    );
}

#[test]
fn failed_logins_are_throttled_per_address() {
    let app = TestApp::builder()
        .demo()
        .config(|c| c.login_max_failures_address = 3)
        .start();
    let c = app.client();
    for name in ["nobody1", "nobody2", "nobody3"] {
        assert_eq!(
            app.login(&c, name, "x-wrong-password").status().as_u16(),
            401
        );
    }
    assert_eq!(app.login(&c, "alpha", DEMO_PASSWORD).status().as_u16(), 429);
}

#[test]
fn two_servers_on_one_database_share_the_failed_login_count() {
    let first = TestApp::builder().demo().start();
    let url = first.database_url.clone();
    let second = TestApp::builder()
        .config(move |c| c.database_url = url)
        .start();
    let (c1, c2) = (first.client(), second.client());
    for _ in 0..3 {
        assert_eq!(
            first
                .login(&c1, "alpha", "wrong-password")
                .status()
                .as_u16(),
            401
        );
    }
    for _ in 0..2 {
        assert_eq!(
            second
                .login(&c2, "alpha", "wrong-password")
                .status()
                .as_u16(),
            401
        );
    }
    let r = second.login(&c2, "alpha", DEMO_PASSWORD);
    assert_eq!(
        r.status().as_u16(),
        429,
        "five failures on two servers lock"
    );
    assert!(
        r.text()
            .unwrap()
            .contains("登录失败次数过多，请约 15 分钟后再试。")
    );
    assert_eq!(
        first.login(&c1, "alpha", DEMO_PASSWORD).status().as_u16(),
        429
    );
    let api = second
        .client()
        .post(second.url("/api/v1/tokens"))
        .json(&serde_json::json!({ "username": "alpha", "password": DEMO_PASSWORD }))
        .send()
        .unwrap();
    assert_eq!(
        api.status().as_u16(),
        429,
        "the API counts the same failures"
    );

    // After the window (900 s by default) the scheduler forgets the failures; alpha logs in.
    second.state().clock.advance(chrono::Duration::seconds(901));
    dataop::scheduler::tick(second.state());
    use diesel::prelude::*;
    let left: i64 = dataop::schema::login_failures::table
        .count()
        .get_result(&mut *second.conn())
        .unwrap();
    assert_eq!(left, 0, "old failures purged");
    assert_eq!(
        second.login(&c2, "alpha", DEMO_PASSWORD).status().as_u16(),
        303
    );
}

/// The `Set-Cookie` headers of a response, and the `name=value` pairs a browser would keep.
fn set_cookies(r: &reqwest::blocking::Response, jar: &mut Vec<String>) -> Vec<String> {
    let all: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    for c in &all {
        let pair = c.split(';').next().unwrap().to_owned();
        let name = pair.split('=').next().unwrap().to_owned();
        jar.retain(|p| !p.starts_with(&format!("{name}=")));
        jar.push(pair);
    }
    all
}

#[test]
fn flash_cookie_is_secure_when_the_session_cookie_is() {
    for secure in [false, true] {
        let app = TestApp::builder()
            .demo()
            .config(move |c| c.secure_cookies = secure)
            .start();
        // A browser over https would send Secure cookies back; this one keeps them by hand.
        let c = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut jar = Vec::new();
        let get = |jar: &mut Vec<String>, path: &str| {
            let r = c
                .get(app.url(path))
                .header("cookie", jar.join("; "))
                .send()
                .unwrap();
            let set = set_cookies(&r, jar);
            (r.text().unwrap(), set)
        };
        let post = |jar: &mut Vec<String>, path: &str, form: &[(&str, &str)]| {
            let r = c
                .post(app.url(path))
                .header("cookie", jar.join("; "))
                .form(form)
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 303, "{path}");
            set_cookies(&r, jar)
        };
        let token = common::csrf_from(&get(&mut jar, "/login").0).unwrap();
        let login = post(
            &mut jar,
            "/login",
            &[
                ("username", "alpha"),
                ("password", DEMO_PASSWORD),
                ("csrf", &token),
            ],
        );
        let session = login
            .iter()
            .find(|c| c.starts_with("dataop_session="))
            .unwrap();
        assert_eq!(session.contains("; Secure"), secure, "{session}");
        let token = common::csrf_from(&get(&mut jar, "/account").0).unwrap();
        let logout = post(&mut jar, "/logout", &[("csrf", &token)]);
        let flash = logout
            .iter()
            .find(|c| c.starts_with("dataop_flash="))
            .unwrap();
        assert_eq!(flash.contains("; Secure"), secure, "{flash}");
        assert!(
            flash.contains("HttpOnly") && flash.contains("SameSite=Strict"),
            "{flash}"
        );
        // The page showing the message clears the cookie with the same attributes.
        let (home, set) = get(&mut jar, "/");
        assert!(home.contains("您已安全退出。"));
        let cleared = set
            .iter()
            .find(|c| c.starts_with("dataop_flash=;"))
            .unwrap();
        assert_eq!(cleared.contains("; Secure"), secure, "{cleared}");
    }
}

#[test]
fn cli_user_create_bootstraps_an_admin() {
    let app = TestApp::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dataop"))
        .args(["user", "create", "--username", "root-admin", "--data-dir"])
        .arg(app.data_dir.path())
        .arg("--database-url")
        .arg(&app.database_url)
        .env("DATAOP_USER_PASSWORD", "root-admin-password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = app.logged_in("root-admin", "root-admin-password");
    assert_eq!(app.get(&c, "/admin/users").status().as_u16(), 200);
}

/// The number of session and token records of a user.
fn session_records(app: &TestApp, username: &str) -> i64 {
    use dataop::schema::{sessions, users};
    use diesel::prelude::*;
    let mut conn = app.conn();
    sessions::table
        .inner_join(users::table)
        .filter(users::username.eq(username))
        .count()
        .get_result(&mut conn)
        .unwrap()
}

/// Moves every session record of a user `days` into the past (sessions live in real time,
/// which a test cannot advance).
fn age_sessions(app: &TestApp, username: &str, days: i64) {
    use dataop::schema::{sessions, users};
    use diesel::prelude::*;
    let mut conn = app.conn();
    let ids: Vec<String> = sessions::table
        .inner_join(users::table)
        .filter(users::username.eq(username))
        .select(sessions::id)
        .load(&mut conn)
        .unwrap();
    for id in ids {
        let (created, expires): (chrono::NaiveDateTime, chrono::NaiveDateTime) = sessions::table
            .find(&id)
            .select((sessions::created_at, sessions::expires_at))
            .first(&mut conn)
            .unwrap();
        let back = chrono::Duration::days(days);
        diesel::update(sessions::table.find(&id))
            .set((
                sessions::created_at.eq(created - back),
                sessions::expires_at.eq(expires - back),
            ))
            .execute(&mut conn)
            .unwrap();
    }
}

#[test]
fn old_session_and_token_records_are_purged_by_the_scheduler() {
    let app = TestApp::builder().demo().start();
    let api = reqwest::blocking::Client::new();
    let r = api
        .post(app.url("/api/v1/tokens"))
        .json(&serde_json::json!({"username": "beta", "password": DEMO_PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    app.logged_in("beta", DEMO_PASSWORD);
    app.logged_in("alpha", DEMO_PASSWORD);
    assert_eq!(session_records(&app, "beta"), 2, "a login and a token");

    // Records are kept 30 days after expiry. 40 days on, the 8-hour browser session went 39
    // days ago; the 30-day token expired 10 days ago and is kept.
    age_sessions(&app, "beta", 40);
    dataop::scheduler::tick(app.state());
    assert_eq!(session_records(&app, "beta"), 1);

    // 61 days on, the token record is gone too; another user's live session is untouched.
    age_sessions(&app, "beta", 21);
    dataop::scheduler::tick(app.state());
    assert_eq!(session_records(&app, "beta"), 0);
    assert_eq!(session_records(&app, "alpha"), 1);
}
