//! Email over HTTP: a workflow step (the platform verifying an organisation) queues a
//! bilingual message that reaches a real SMTP server (the test support's, on a real socket), or
//! an `.eml` file without one; a server that is down never fails the step, the message is
//! retried with backoff and finally marked failed; an administrator retries it.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::smtp::SmtpServer;
use common::{DEMO_PASSWORD, TestApp};
use dataop::accounts::credit_code;
use dataop::schema::{audit_log, mail_outbox, organisations};
use diesel::prelude::*;
use mailparse::MailHeaderMap as _;

/// A free local port (nothing listens on it once this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A message decoded by the `mailparse` crate (a decoder independent of the platform's mail
/// builder): `(subject, to, body)`, the body being the content of its `text/plain` part.
fn decode(raw: &[u8]) -> (String, String, String) {
    let mail = mailparse::parse_mail(raw).expect("a well-formed message");
    let header = |name: &str| {
        mail.headers
            .get_first_value(name)
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    let mut parts = vec![&mail];
    let plain = loop {
        let part = parts.pop().expect("a text/plain part");
        if part.ctype.mimetype == "text/plain" {
            break part;
        }
        parts.extend(part.subparts.iter().rev());
    };
    (
        header("Subject"),
        header("To"),
        plain.get_body().expect("a decodable body"),
    )
}

const ORG_NAME: &str = "伽马数据科技有限公司";
const ORG_EMAIL: &str = "gamma@example.com";

/// Registers the enterprise `gamma` (pending verification); returns its id and credit code.
fn register_gamma(app: &TestApp) -> (i64, String) {
    let code = credit_code::complete("9133010812345678").unwrap();
    let c = app.client();
    let r = app.post_form_from(
        &c,
        "/register",
        "/register",
        &[
            ("name", ORG_NAME),
            ("credit_code", &code),
            ("legal_representative", "孙伽马"),
            ("contact_name", "孙伽马"),
            ("contact_phone", "0571-12345678"),
            ("address", "浙江省杭州市西湖区"),
            ("business_scope", "数据处理和存储支持服务"),
            ("email", ORG_EMAIL),
            ("username", "gamma"),
            ("display_name", "孙伽马"),
            ("password", "gamma-password-1"),
            ("password_confirm", "gamma-password-1"),
        ],
    );
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap());
    let id = organisations::table
        .filter(organisations::name.eq(ORG_NAME))
        .select(organisations::id)
        .first::<i64>(&mut app.conn())
        .unwrap();
    (id, code)
}

/// The platform admin verifies the organisation through the admin page.
fn verify(app: &TestApp, platform: &reqwest::blocking::Client, org_id: i64) {
    let r = app.post_form_from(
        platform,
        "/admin/orgs",
        &format!("/admin/orgs/{org_id}/verify"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap());
    let status: String = organisations::table
        .find(org_id)
        .select(organisations::status)
        .first(&mut app.conn())
        .unwrap();
    assert_eq!(
        status, "verified",
        "the step succeeds whatever the mail does"
    );
}

/// `(id, state, attempts, last_error, eml_path)` of every outbox message.
fn outbox(app: &TestApp) -> Vec<(i64, String, i32, String, Option<String>)> {
    mail_outbox::table
        .order(mail_outbox::id)
        .select((
            mail_outbox::id,
            mail_outbox::state,
            mail_outbox::attempts,
            mail_outbox::last_error,
            mail_outbox::eml_path,
        ))
        .load(&mut app.conn())
        .unwrap()
}

#[test]
fn verification_email_reaches_a_real_smtp_server() {
    let smtp = SmtpServer::start(0);
    let port = smtp.port();
    let app = TestApp::builder()
        .demo()
        .config(move |c| c.smtp_url = Some(format!("smtp://127.0.0.1:{port}")))
        .start();
    let (org_id, code) = register_gamma(&app);
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    verify(&app, &platform, org_id);

    // The mail worker sends it within about a second, without any scheduler tick.
    let got = smtp.wait_for(1);
    assert_eq!(
        got.len(),
        1,
        "one message (user and organisation share the address)"
    );
    assert_eq!(got[0].rcpt_to, [ORG_EMAIL], "the envelope's recipient");
    assert_eq!(
        got[0].mail_from, "noreply@localhost",
        "the envelope's sender"
    );
    let (subject, to, body) = decode(&got[0].data);
    assert_eq!(
        subject,
        "贵单位已通过核验 / Your organisation has been verified"
    );
    assert_eq!(to, ORG_EMAIL);
    assert!(body.contains(&format!("{ORG_NAME}：")), "{body}");
    assert!(body.contains(&code), "{body}");
    assert!(body.contains("Dear 伽马数据科技有限公司"), "{body}");
    let zh = body.find("平台运营主体已核验").unwrap();
    let en = body.find("the platform operator has verified").unwrap();
    assert!(zh < en, "Chinese first, then English");

    let deadline = Instant::now() + Duration::from_secs(10);
    while outbox(&app)[0].1 != "sent" {
        assert!(Instant::now() < deadline, "the row is marked sent");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = outbox(&app);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].2, rows[0].4.as_deref()), (1, None));

    let (status, html) = app.get_text(&platform, "/admin/outbox");
    assert_eq!(status, 200);
    assert!(html.contains(ORG_EMAIL), "{html}");
    assert!(html.contains("badge-mail-sent"), "{html}");
    assert!(html.contains("贵单位已通过核验"), "{html}");
}

#[test]
fn without_smtp_each_message_is_an_eml_file_listed_in_the_outbox() {
    let app = TestApp::builder().demo().start();
    assert_eq!(
        app.state().config.smtp_url,
        None,
        "the default is the file outbox"
    );
    let (org_id, _) = register_gamma(&app);
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    verify(&app, &platform, org_id);
    dataop::scheduler::tick(app.state());

    let rows = outbox(&app);
    assert_eq!(rows.len(), 1);
    let (id, state, attempts, _, path) = rows[0].clone();
    assert_eq!((state.as_str(), attempts), ("sent", 1));
    let path = PathBuf::from(path.expect("the file is recorded"));
    assert!(
        path.starts_with(app.data_dir.path().join("outbox")),
        "{path:?}"
    );
    let raw = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("Subject: =?utf-8?"),
        "an encoded UTF-8 subject: {text}"
    );
    assert!(text.contains(&format!("To: {ORG_EMAIL}")), "{text}");
    let (subject, to, body) = decode(&raw);
    assert_eq!(
        subject,
        "贵单位已通过核验 / Your organisation has been verified"
    );
    assert_eq!(to, ORG_EMAIL);
    assert!(
        body.contains("平台运营主体已核验贵单位的注册信息"),
        "{body}"
    );

    let (status, html) = app.get_text(&platform, "/admin/outbox?state=sent");
    assert_eq!(status, 200);
    assert!(html.contains(&format!("/admin/outbox/{id}")), "{html}");
    let (status, html) = app.get_text(&platform, &format!("/admin/outbox/{id}"));
    assert_eq!(status, 200);
    assert!(html.contains(&path.display().to_string()), "{html}");
    assert!(
        html.contains("平台运营主体已核验贵单位的注册信息"),
        "{html}"
    );
    assert!(
        !html.contains("/retry\""),
        "a sent message has no retry button"
    );

    // The text is shown as text, never as markup.
    dataop::mail::to_addr(
        &mut app.conn(),
        "x@example.com",
        &dataop::mail::Notice {
            template: "accounts.mail.org_verified",
            args: &[
                ("org", "<script>alert(1)</script>".into()),
                ("code", "-".into()),
            ],
            object_type: "organisation",
            object_id: org_id.to_string(),
        },
    )
    .unwrap();
    let newest: i64 = mail_outbox::table
        .select(diesel::dsl::max(mail_outbox::id))
        .first::<Option<i64>>(&mut app.conn())
        .unwrap()
        .unwrap();
    let (_, html) = app.get_text(&platform, &format!("/admin/outbox/{newest}"));
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");

    // The regulator reads the outbox too; an enterprise does not.
    let regulator = app.logged_in("regulator", DEMO_PASSWORD);
    assert_eq!(app.get_text(&regulator, "/admin/outbox").0, 200);
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    assert_eq!(app.get_text(&alpha, "/admin/outbox").0, 403);
    assert_eq!(app.get_text(&alpha, &format!("/admin/outbox/{id}")).0, 403);
    assert_eq!(
        app.get(&app.client(), "/admin/outbox").status().as_u16(),
        303,
        "anonymous visitors are sent to the login page"
    );
}

#[test]
fn a_server_that_is_down_never_fails_the_step_and_the_message_is_retried_then_failed() {
    let port = free_port();
    let app = TestApp::builder()
        .demo()
        .config(move |c| c.smtp_url = Some(format!("smtp://127.0.0.1:{port}")))
        .start();
    let (org_id, _) = register_gamma(&app);
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    verify(&app, &platform, org_id);

    dataop::scheduler::tick(app.state());
    let (id, state, attempts, error, _) = outbox(&app)[0].clone();
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(!error.is_empty(), "the error is kept");

    dataop::scheduler::tick(app.state());
    assert_eq!(outbox(&app)[0].2, 1, "not retried before the backoff");

    // 1 minute, 5 minutes, 30 minutes, 2 hours.
    for (wait_secs, attempts) in [(61, 2), (5 * 60 + 1, 3), (30 * 60 + 1, 4)] {
        app.state()
            .clock
            .advance(chrono::Duration::seconds(wait_secs));
        dataop::scheduler::tick(app.state());
        let row = outbox(&app)[0].clone();
        assert_eq!((row.1.as_str(), row.2), ("pending", attempts));
    }
    app.state().clock.advance(chrono::Duration::minutes(59));
    dataop::scheduler::tick(app.state());
    assert_eq!(outbox(&app)[0].2, 4, "the fourth wait is two hours");
    app.state().clock.advance(chrono::Duration::minutes(62));
    dataop::scheduler::tick(app.state());
    let (_, state, attempts, error, _) = outbox(&app)[0].clone();
    assert_eq!((state.as_str(), attempts), ("failed", 5));

    app.state().clock.advance(chrono::Duration::days(1));
    dataop::scheduler::tick(app.state());
    assert_eq!(outbox(&app)[0].2, 5, "a failed message is left alone");

    let (status, html) = app.get_text(&platform, "/admin/outbox?state=failed");
    assert_eq!(status, 200);
    assert!(html.contains("badge-mail-failed"), "{html}");
    let shown_error = error.chars().take(20).collect::<String>();
    assert!(html.contains(&shown_error), "the error is visible: {html}");

    // The server comes up; an administrator retries the message.
    let smtp = SmtpServer::start(port);
    let page = format!("/admin/outbox/{id}");
    let (_, html) = app.get_text(&platform, &page);
    assert!(
        html.contains(&format!("/admin/outbox/{id}/retry")),
        "{html}"
    );
    let r = app.post_form(&platform, &format!("{page}/retry"), &[("csrf", "forged")]);
    assert_eq!(r.status().as_u16(), 403, "the CSRF token is checked");
    let r = app.post_form_from(&platform, &page, &format!("{page}/retry"), &[]);
    assert_eq!(r.status().as_u16(), 303);
    let r = app.post_form_from(&platform, &page, &format!("{page}/retry"), &[]);
    assert_eq!(
        r.status().as_u16(),
        409,
        "a waiting message is not retried twice"
    );
    let audited: i64 = audit_log::table
        .filter(audit_log::action.eq("mail.retry"))
        .filter(audit_log::object_id.eq(id.to_string()))
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(audited, 1);

    dataop::scheduler::tick(app.state());
    let got = smtp.wait_for(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, [ORG_EMAIL]);
    let (_, state, attempts, error, _) = outbox(&app)[0].clone();
    assert_eq!((state.as_str(), attempts, error.as_str()), ("sent", 6, ""));
    let r = app.post_form_from(&platform, &page, &format!("{page}/retry"), &[]);
    assert_eq!(r.status().as_u16(), 409, "a sent message is not retried");
}

#[test]
fn the_outbox_is_paged_and_filtered_by_state() {
    let app = TestApp::builder().demo().start();
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    for i in 0..55 {
        dataop::mail::to_addr(
            &mut app.conn(),
            &format!("person{i:02}@example.com"),
            &dataop::mail::Notice {
                template: "accounts.mail.org_verified",
                args: &[("org", format!("单位{i}")), ("code", "-".into())],
                object_type: "organisation",
                object_id: i.to_string(),
            },
        )
        .unwrap();
    }
    let (status, html) = app.get_text(&platform, "/admin/outbox");
    assert_eq!(status, 200);
    assert_eq!(html.matches("class=\"outbox-row\"").count(), 50);
    assert!(html.contains("person54@example.com"), "newest first");
    assert!(!html.contains("person04@example.com"));
    assert!(html.contains("page=2\">"), "a link to the next page");
    let (_, html) = app.get_text(&platform, "/admin/outbox?page=2");
    assert_eq!(html.matches("class=\"outbox-row\"").count(), 5);
    assert!(html.contains("person00@example.com"));

    dataop::scheduler::tick(app.state());
    let (_, html) = app.get_text(&platform, "/admin/outbox?state=sent");
    assert_eq!(html.matches("badge-mail-sent").count(), 50);
    let (_, html) = app.get_text(&platform, "/admin/outbox?state=failed");
    assert!(html.contains("没有符合条件的邮件"), "{html}");
}
