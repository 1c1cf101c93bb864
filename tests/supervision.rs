//! The audit log: every account change is recorded, the chain verifies, tampering is detected.

mod common;

use common::{DEMO_PASSWORD, TestApp};

#[test]
fn audit_chain_verifies_and_detects_an_edited_entry() {
    let app = TestApp::builder().demo().start();
    let c = app.client();
    app.login(&c, "alpha", "wrong-password");
    let c = app.logged_in("alpha", DEMO_PASSWORD);
    let token = app.csrf(&c, "/account");
    app.post_form(&c, "/logout", &[("csrf", &token)]);

    let out = app.cli(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("chain intact"), "{stdout}");

    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (status, html) = app.get_text(&reg, "/supervision/audit?actor=alpha");
    assert_eq!(status, 200);
    for action in ["user.login_failed", "user.login", "user.logout"] {
        assert!(
            html.contains(&format!("title=\"{action}\"")),
            "{action} audited"
        );
    }
    let (_, html) = app.get_text(&reg, "/supervision/audit/verify");
    assert!(html.contains("notice-ok"));

    app.tamper_with_audit_log("UPDATE audit_log SET details = '{\"reason\":\"edited\"}' WHERE action = 'user.login_failed'");
    let edited_id: i64 = {
        use dataop::schema::audit_log;
        use diesel::prelude::*;
        let mut conn = app.conn();
        audit_log::table
            .filter(audit_log::action.eq("user.login_failed"))
            .select(audit_log::id)
            .first(&mut *conn)
            .unwrap()
    };
    let out = app.cli(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "verify must fail after tampering");
    assert!(
        stdout.contains(&format!("BROKEN at entry {edited_id} ")),
        "{stdout}"
    );
    let (_, html) = app.get_text(&reg, "/supervision/audit/verify");
    assert!(html.contains(&format!("#{edited_id}")));
}

#[test]
fn a_deleted_entry_breaks_the_link_of_the_next() {
    let app = TestApp::builder().demo().start();
    app.logged_in("beta", DEMO_PASSWORD);
    app.tamper_with_audit_log("DELETE FROM audit_log WHERE id = 3");
    let out = app.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("BROKEN at entry 4 "), "{stdout}");
}

#[test]
fn audit_page_filters_by_object_and_time_and_pages() {
    let app = TestApp::builder()
        .demo()
        .config(|c| {
            c.login_max_failures_account = 1000;
            c.login_max_failures_address = 1000;
        })
        .start();
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (_, html) = app.get_text(&reg, "/supervision/audit?object_type=organisation");
    assert!(html.contains("title=\"organisation.create\""));
    assert!(!html.contains("title=\"user.create\""));
    let (_, html) = app.get_text(&reg, "/supervision/audit?to=2000-01-01");
    assert!(!html.contains("audit-row"), "nothing before 2000");
    let today = app.state().clock.today().to_string();
    let (_, html) = app.get_text(&reg, &format!("/supervision/audit?from={today}&to={today}"));
    assert!(html.contains("audit-row"));
    let (status, _) = app.get_text(&reg, "/supervision/audit?from=yesterday");
    assert_eq!(status, 400, "a bad date is a 400, not a 500");
    for _ in 0..55 {
        app.login(&app.client(), "nobody", "wrong-password-x");
    }
    let (_, html) = app.get_text(&reg, "/supervision/audit?action=user.login_failed");
    assert_eq!(html.matches("audit-row").count(), 50);
    assert!(html.contains("page=2"));
    let (_, html) = app.get_text(&reg, "/supervision/audit?action=user.login_failed&page=2");
    assert_eq!(html.matches("audit-row").count(), 5);
}
