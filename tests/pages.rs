//! What pages show, as a reader sees it: times in the one configured time zone, the audit
//! page (translated actions, rendered details, filters, CSV export for inspections) and the
//! agreement history rendered the same way.

use diesel::prelude::*;

mod common;

use common::{DEMO_PASSWORD, TestApp};

/// The demo accounts, a small demo dataset and `alpha`'s sealed agreement, in `zone`.
fn world(zone: chrono_tz::Tz) -> TestApp {
    let app = TestApp::builder()
        .demo()
        .config(move |c| c.time_zone = zone)
        .start();
    dataop::catalog::demo::seed_rows(app.state(), "provider", 200).expect("demo data");
    dataop::agreements::demo::seed(app.state()).expect("demo agreement");
    app
}

/// The sealed agreement: (id, number, hash, sealed at (UTC)).
fn sealed(app: &TestApp) -> (i64, String, String, chrono::NaiveDateTime) {
    use dataop::schema::{agreement_signatures, agreements};
    let mut conn = app.conn();
    agreements::table
        .inner_join(agreement_signatures::table)
        .filter(agreement_signatures::sealed_at.is_not_null())
        .select((
            agreements::id,
            agreements::number,
            agreement_signatures::canonical_sha256.assume_not_null(),
            agreement_signatures::sealed_at.assume_not_null(),
        ))
        .first(&mut *conn)
        .expect("a sealed agreement")
}

fn english(app: &TestApp, c: &reqwest::blocking::Client) {
    assert_eq!(app.get(c, "/lang/en?next=/").status().as_u16(), 303);
}

#[test]
fn pages_show_times_in_the_configured_zone_and_name_it() {
    for (zone, name) in [
        (chrono_tz::Asia::Shanghai, "Asia/Shanghai"),
        (chrono_tz::America::New_York, "America/New_York"),
    ] {
        let app = world(zone);
        let (id, number, hash, at) = sealed(&app);
        let local = at
            .and_utc()
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M")
            .to_string();
        let utc = at.format("%Y-%m-%d %H:%M").to_string();
        assert_ne!(local, utc, "the zones differ from UTC");
        let alpha = app.logged_in("alpha", DEMO_PASSWORD);
        let (status, html) = app.get_text(&alpha, &format!("/agreements/{id}"));
        assert_eq!(status, 200);
        assert!(html.contains(&local), "sealed time in {name}: {local}");
        assert!(!html.contains(&utc), "no UTC time on the page");
        assert!(!html.contains(" UTC<"), "no time labelled UTC");
        assert!(html.contains(name), "the zone is named on the page");
        let (_, verify) = app.get_text(
            &app.client(),
            &format!("/agreements/verify?number={number}&hash={hash}"),
        );
        assert!(verify.contains("notice-ok") || verify.contains("valid"));
        assert!(
            verify.contains(&local),
            "the verification page uses the same zone: {local}"
        );
        let reg = app.logged_in("regulator", DEMO_PASSWORD);
        let (_, audit) = app.get_text(&reg, "/supervision/audit?object_type=agreement");
        assert!(audit.contains(&local), "the audit page too");
    }
}

/// A dataset version's preview shows when it was uploaded as the other pages show times: in
/// the configured zone, which the footer names, never labelled UTC.
#[test]
fn the_version_preview_shows_its_time_in_the_configured_zone() {
    use dataop::schema::dataset_versions as v;
    let zone = chrono_tz::America::New_York;
    let app = world(zone);
    let (dataset, version, at): (i64, i64, chrono::NaiveDateTime) = v::table
        .select((v::dataset_id, v::id, v::created_at))
        .first(&mut *app.conn())
        .unwrap();
    let local = dataop::web::fmt_datetime(zone, at);
    let provider = app.logged_in("provider", DEMO_PASSWORD);
    let (status, html) = app.get_text(
        &provider,
        &format!("/provider/datasets/{dataset}/versions/{version}"),
    );
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("<dd>{local}</dd>")),
        "{local}: {html}"
    );
    assert!(!html.contains(" UTC<"), "no time labelled UTC");
    assert!(
        html.contains("America/New_York"),
        "the zone is named on the page"
    );
}

#[test]
fn the_audit_page_names_actions_renders_details_filters_and_exports() {
    let app = world(chrono_tz::Asia::Shanghai);
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let token = app.csrf(&alpha, "/account");
    app.post_form(&alpha, "/logout", &[("csrf", &token)]);
    let reg = app.logged_in("regulator", DEMO_PASSWORD);

    let (status, html) = app.get_text(&reg, "/supervision/audit");
    assert_eq!(status, 200);
    assert!(
        html.contains("title=\"user.login\">登录<"),
        "translated action"
    );
    assert!(html.contains("协议盖章"));
    assert!(!html.contains("{&quot;"), "no raw JSON");
    assert!(
        html.contains("<dl class=\"details\">"),
        "details as label: value"
    );
    assert!(
        html.contains("<dt>申请</dt><dd><a href=\"/applications/"),
        "ids linked to their pages"
    );
    assert!(
        html.contains("href=\"/supervision/audit/verify\""),
        "chain verification"
    );
    assert!(
        html.contains("href=\"/supervision/audit.csv?"),
        "CSV export"
    );

    // Filters: organisation, action, object, bounded page size.
    let alpha_org: i64 = {
        use dataop::schema::users;
        let mut conn = app.conn();
        users::table
            .filter(users::username.eq("alpha"))
            .select(users::org_id)
            .first(&mut *conn)
            .unwrap()
    };
    let (_, html) = app.get_text(&reg, &format!("/supervision/audit?org={alpha_org}"));
    assert!(html.contains("title=\"user.logout\""));
    assert!(
        !html.contains("title=\"agreement.seal\""),
        "the regulator's entries are not the operator's"
    );
    let (_, html) = app.get_text(&reg, "/supervision/audit?action=agreement.seal");
    assert_eq!(html.matches("audit-row").count(), 1);
    let (_, html) = app.get_text(&reg, "/supervision/audit?per_page=20");
    assert_eq!(html.matches("audit-row").count(), 20);
    let (_, html) = app.get_text(&reg, "/supervision/audit?per_page=100000");
    assert!(html.matches("audit-row").count() <= 50, "page size bounded");
    let (status, _) = app.get_text(&reg, "/supervision/audit?org=x");
    assert_eq!(status, 400);

    // The export: the filtered rows, a BOM, headers in the reader's language.
    let r = app.get(&reg, &format!("/supervision/audit.csv?org={alpha_org}"));
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = r.bytes().unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "UTF-8 byte order mark");
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "序号");
    assert_eq!(&header[5], "操作");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert!(
        rows.iter()
            .any(|r| &r[5] == "退出登录" && &r[6] == "user.logout")
    );
    assert!(
        rows.iter().all(|r| &r[3] == "阿尔法健康科技有限公司"),
        "only alpha's"
    );
    english(&app, &reg);
    let text = app
        .get(&reg, "/supervision/audit.csv?action=user.")
        .text()
        .unwrap();
    assert!(
        text.trim_start_matches('\u{feff}')
            .starts_with("No.,Time,Actor,Organisation,"),
        "{text}"
    );
    let (_, html) = app.get_text(&reg, "/supervision/audit");
    assert!(html.contains(">Agreement sealed<"));
    // Not for operators.
    assert_eq!(
        app.get(&alpha, "/supervision/audit.csv").status().as_u16(),
        303,
        "logged out: to the login page"
    );
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    assert_eq!(
        app.get(&alpha, "/supervision/audit.csv").status().as_u16(),
        403
    );
}

#[test]
fn agreement_history_is_rendered_like_the_audit_details() {
    let app = world(chrono_tz::Asia::Shanghai);
    let (id, ..) = sealed(&app);
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (_, html) = app.get_text(&reg, &format!("/agreements/{id}"));
    let history = &html[html.find("<h2>历史记录</h2>").expect("history section")..];
    assert!(!history.contains("{&quot;"), "no raw JSON in the history");
    assert!(history.contains("<dl class=\"details\">"));
    assert!(history.contains("<dt>申请</dt><dd><a href=\"/applications/"));
}

#[test]
fn a_refused_action_form_shows_the_detail_page_again_with_what_was_typed() {
    let app = world(chrono_tz::Asia::Shanghai);
    let (id, ..) = sealed(&app);
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let page = format!("/agreements/{id}");
    let action = format!("/admin/agreements/{id}/rectifications");
    let text = "请于期限内补全数据访问日志 <审计>";
    let r = app.post_form_from(&reg, &page, &action, &[("note", text), ("days", "ten")]);
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().unwrap();
    assert!(
        html.contains("<h2>历史记录</h2>"),
        "the agreement page, not a bare error page"
    );
    let form = &html[html
        .find(&format!("action=\"{action}\""))
        .expect("the form")..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(
        form.contains("class=\"field-error\""),
        "the error beside the form: {form}"
    );
    assert!(
        form.contains("工作日"),
        "the reason, in the page language: {form}"
    );
    assert!(
        form.contains("请于期限内补全数据访问日志 &#60;审计&#62;"),
        "what was typed, escaped: {form}"
    );
    assert!(form.contains("value=\"ten\""), "{form}");
    // Other forms on the page stay empty, and a refusal that is not the reader's (403) stays
    // a plain error page.
    let other = format!("action=\"/admin/agreements/{id}/terminate\"");
    let rest = &html[html.find(&other).unwrap()..];
    assert!(!rest[..rest.find("</form>").unwrap()].contains("field-error"));
    let r = app.post_form(
        &reg,
        &action,
        &[("note", text), ("days", "10"), ("csrf", "x")],
    );
    assert_eq!(r.status().as_u16(), 403);
    assert!(!r.text().unwrap().contains("请于期限内"));
    // The operator's termination request, refused as empty, likewise.
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let action = format!("/agreements/{id}/termination-request");
    let r = app.post_form_from(&alpha, &page, &action, &[("note", "  ")]);
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().unwrap();
    let form = &html[html
        .find(&format!("action=\"{action}\""))
        .expect("the form")..];
    assert!(form[..form.find("</form>").unwrap()].contains("field-error"));
}
