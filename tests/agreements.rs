//! Agreements and exit through the real HTTP routes: drafting from an admitted application and
//! its refusals, exact prices, the operator's signature, the seal, the printable page, public
//! verification (and a tampered agreement failing it), amendments, and the four exit routes
//! with their consequences (API tokens revoked, dataset access ended, credit records, emails,
//! disposal confirmation), deadlines across a weekend and a holiday. SQLite by default;
//! PostgreSQL when `DATAOP_TEST_POSTGRES_URL` is set.
//!
//! The admitted application is inserted directly (the admission workflow is another branch);
//! everything after it goes through HTTP.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use dataop::catalog::model::{DatasetFields, insert_dataset};
use diesel::prelude::*;
use reqwest::blocking::Client;

mod common;

use common::{DEMO_PASSWORD, TestApp, csrf_from};

fn org_of(app: &TestApp, username: &str) -> (i64, i64) {
    use dataop::schema::users;
    let mut conn = app.conn();
    users::table
        .filter(users::username.eq(username))
        .select((users::org_id, users::id))
        .first(&mut *conn)
        .unwrap()
}

/// Creates a dataset of the demo provider; returns its id.
fn dataset(app: &TestApp, title: &str) -> i64 {
    let (provider_org, provider_user) = org_of(app, "provider");
    let fields = DatasetFields {
        title_zh: title.into(),
        title_en: title.into(),
        description_zh: "d".into(),
        description_en: "d".into(),
        category: "medical_services".into(),
        grade: 2,
        open_type: "conditional".into(),
        sharing_type: "conditional".into(),
        update_frequency: "monthly".into(),
        source: "HIS".into(),
        contact: "office".into(),
    };
    let mut conn = app.conn();
    insert_dataset(
        &mut conn,
        provider_org,
        provider_user,
        &fields,
        dataop::db::to_micros(app.state().clock.now()),
    )
    .unwrap()
}

/// Inserts a call and an application of `username`'s organisation in `state` with `datasets`
/// approved; returns the application id.
fn application(app: &TestApp, username: &str, state: &str, datasets: &[i64]) -> i64 {
    use dataop::schema::{application_datasets, applications, calls};
    let (org, user) = org_of(app, username);
    let (_, reg) = org_of(app, "regulator");
    let now = dataop::db::now();
    let today = app.state().clock.today();
    let mut conn = app.conn();
    let call: i64 = diesel::insert_into(calls::table)
        .values((
            calls::domain.eq("medical_health"),
            calls::title_zh.eq("通告"),
            calls::title_en.eq("Call"),
            calls::opens_on.eq(today - Duration::days(40)),
            calls::closes_on.eq(today - Duration::days(20)),
            calls::state.eq("closed"),
            calls::created_by.eq(reg),
            calls::created_at.eq(now),
            calls::updated_at.eq(now),
        ))
        .returning(calls::id)
        .get_result(&mut *conn)
        .unwrap();
    let id: i64 = diesel::insert_into(applications::table)
        .values((
            applications::call_id.eq(call),
            applications::org_id.eq(org),
            applications::created_by.eq(user),
            applications::state.eq(state),
            applications::scenario.eq("门诊分析"),
            applications::created_at.eq(now),
            applications::updated_at.eq(now),
        ))
        .returning(applications::id)
        .get_result(&mut *conn)
        .unwrap();
    for d in datasets {
        diesel::insert_into(application_datasets::table)
            .values((
                application_datasets::application_id.eq(id),
                application_datasets::dataset_id.eq(d),
                application_datasets::purpose.eq("分析"),
            ))
            .execute(&mut *conn)
            .unwrap();
    }
    id
}

/// The fields of a good draft covering `datasets`.
fn fields(datasets: &[i64]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("purpose", "分析各区门诊负担"),
        ("scenario", "门诊服务质量分析"),
        ("security_measures", "仅在沙箱内计算"),
        ("disposal", "终止后 10 个工作日内删除"),
        ("trial_months", "3"),
        ("price_per_job", "0.10"),
        ("price_per_thousand_rows", "0.20"),
        ("split_platform", "33.33"),
        ("split_provider", "33.33"),
        ("split_operator", "33.34"),
        ("run_budget", "100"),
        ("run_period", "month"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for d in datasets {
        v.push(("dataset".into(), d.to_string()));
        v.push((format!("epsilon_{d}"), "1.5".into()));
    }
    v
}

fn set(mut v: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    for (k, val) in &mut v {
        if k == key {
            *val = value.to_owned();
        }
    }
    v
}

fn post(app: &TestApp, c: &Client, page: &str, path: &str, f: &[(&str, &str)]) -> (u16, String) {
    let r = app.post_form_from(c, page, path, f);
    let s = r.status().as_u16();
    (s, r.text().unwrap())
}

/// Posts the draft form of application `app_id`; returns (status, body or location).
fn post_draft(app: &TestApp, reg: &Client, app_id: i64, f: Vec<(String, String)>) -> (u16, String) {
    let token = app.csrf(reg, &format!("/admin/applications/{app_id}/agreement/new"));
    let mut f = f;
    f.push(("csrf".into(), token));
    let r = reg
        .post(app.url(&format!("/admin/applications/{app_id}/agreement")))
        .form(&f)
        .send()
        .unwrap();
    let s = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (s, loc.unwrap_or_else(|| r.text().unwrap()))
}

fn id_from(location: &str) -> i64 {
    location.rsplit('/').next().unwrap().parse().unwrap()
}

fn state_of(app: &TestApp, id: i64) -> String {
    use dataop::schema::agreements;
    let mut conn = app.conn();
    agreements::table
        .find(id)
        .select(agreements::state)
        .first(&mut *conn)
        .unwrap()
}

fn count(app: &TestApp, sql_table: &str, filter: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.conn();
    diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM {sql_table} WHERE {filter}"
    ))
    .get_result::<N>(&mut *conn)
    .unwrap()
    .n
}

/// The recipients of the mails of `template` about agreement `id`, sorted.
fn recipients(app: &TestApp, template: &str, id: i64) -> Vec<String> {
    use dataop::schema::mail_outbox;
    let mut conn = app.conn();
    mail_outbox::table
        .filter(mail_outbox::template.eq(format!("agreements.mail.{template}")))
        .filter(mail_outbox::object_id.eq(id.to_string()))
        .order(mail_outbox::to_addr)
        .select(mail_outbox::to_addr)
        .load(&mut *conn)
        .unwrap()
}

const ALPHA_MAIL: &str = "alpha@demo.dataop.invalid";
const BOTH: [&str; 2] = [ALPHA_MAIL, "regulator@demo.dataop.invalid"];

struct World {
    app: TestApp,
    reg: Client,
    alpha: Client,
    ds: Vec<i64>,
}

fn world() -> World {
    let app = TestApp::builder().demo().start();
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let ds = vec![dataset(&app, "门诊记录"), dataset(&app, "住院记录")];
    World {
        app,
        reg,
        alpha,
        ds,
    }
}

impl World {
    /// Drafts, submits, signs and seals an agreement on the first dataset; returns its id.
    fn in_force(&self) -> i64 {
        let app_id = application(&self.app, "alpha", "admitted", &self.ds);
        let (s, loc) = post_draft(&self.app, &self.reg, app_id, fields(&self.ds[..1]));
        assert_eq!(s, 303, "{loc}");
        let id = id_from(&loc);
        self.submit_sign_seal(id);
        assert_eq!(state_of(&self.app, id), "in_force");
        id
    }

    fn submit_sign_seal(&self, id: i64) {
        let page = format!("/agreements/{id}");
        let (s, _) = post(
            &self.app,
            &self.reg,
            &page,
            &format!("/admin/agreements/{id}/submit"),
            &[],
        );
        assert_eq!(s, 303);
        let (s, _) = post(
            &self.app,
            &self.alpha,
            &page,
            &format!("/agreements/{id}/sign"),
            &[("name", "阿尔法健康科技有限公司")],
        );
        assert_eq!(s, 303);
        let (s, _) = post(
            &self.app,
            &self.reg,
            &page,
            &format!("/admin/agreements/{id}/seal"),
            &[],
        );
        assert_eq!(s, 303);
    }

    fn page(&self, c: &Client, path: &str) -> (u16, String) {
        self.app.get_text(c, path)
    }

    /// An API token of alpha.
    fn token(&self) -> String {
        self.app.api_token("alpha")
    }

    fn api_status(&self, token: &str) -> u16 {
        Client::new()
            .get(self.app.url("/api/v1/me"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    fn access(&self, dataset: i64) -> Option<dataop::agreements::AgreementRef> {
        let (org, _) = org_of(&self.app, "alpha");
        let mut conn = self.app.conn();
        dataop::agreements::in_force_for(&mut conn, org, dataset, self.app.state().clock.today())
            .unwrap()
    }

    /// The agreements in the desk's "disposal confirmations outstanding" queue.
    fn disposal_queue(&self) -> Vec<i64> {
        let mut conn = self.app.conn();
        let cal = dataop::calendar::Calendar::load(&mut conn).unwrap();
        let today = self.app.state().clock.today();
        let sections = dataop::reactions::desk_queues(&mut conn, &cal, today).unwrap();
        let section = sections
            .into_iter()
            .find(|s| s.title_key == "agreements.queue.disposal")
            .expect("the disposal queue is on the desk");
        section
            .items
            .iter()
            .map(|i| i.href.rsplit('/').next().unwrap().parse().unwrap())
            .collect()
    }

    fn credit_records(&self) -> i64 {
        let (org, _) = org_of(&self.app, "alpha");
        count(&self.app, "credit_records", &format!("org_id = {org}"))
    }

    fn file_disposal(&self, id: i64) {
        let today = self.app.state().clock.today().to_string();
        let (s, body) = post(
            &self.app,
            &self.alpha,
            &format!("/agreements/{id}"),
            &format!("/agreements/{id}/disposal"),
            &[
                ("what", "全部衍生数据与缓存"),
                ("on", &today),
                ("by", "赵阿尔法"),
            ],
        );
        assert_eq!(s, 303, "{body}");
        let (_, page) = self.page(&self.alpha, &format!("/agreements/{id}"));
        assert!(page.contains("全部衍生数据与缓存"));
        assert!(!page.contains("尚未提交数据处置确认"));
    }
}

#[test]
fn drafting_is_checked_and_prices_are_exact() {
    let w = world();
    let app = &w.app;
    let submitted = application(app, "alpha", "submitted", &w.ds);
    let (s, _) = app.get_text(
        &w.reg,
        &format!("/admin/applications/{submitted}/agreement/new"),
    );
    assert_eq!(s, 409, "only admitted applications");
    let (s, body) = post_draft(app, &w.reg, submitted, fields(&w.ds[..1]));
    assert_eq!(s, 409);
    assert!(body.contains("已准入"), "{body}");

    let only_first = application(app, "alpha", "admitted", &w.ds[..1]);
    let (s, body) = post_draft(app, &w.reg, only_first, fields(&w.ds));
    assert_eq!(s, 422);
    assert!(
        body.contains(&format!("数据集 {} 未在该申请中获批", w.ds[1])),
        "{body}"
    );
    assert!(
        body.contains("分析各区门诊负担"),
        "the form is re-shown as typed"
    );

    let (s, body) = post_draft(
        app,
        &w.reg,
        only_first,
        set(fields(&w.ds[..1]), "trial_months", "7"),
    );
    assert_eq!(s, 422);
    assert!(body.contains("试运行期 7 个月过长：最长 6 个月"), "{body}");

    let (s, body) = post_draft(
        app,
        &w.reg,
        only_first,
        set(fields(&w.ds[..1]), "split_operator", "33.33"),
    );
    assert_eq!(s, 422);
    assert!(body.contains("收益分配比例之和为 99.99"), "{body}");

    let (s, _) = post_draft(
        app,
        &w.reg,
        only_first,
        set(fields(&w.ds[..1]), "price_per_job", "0.105"),
    );
    assert_eq!(s, 422);
    assert_eq!(count(app, "agreements", "1 = 1"), 0, "nothing half-written");

    let (s, loc) = post_draft(app, &w.reg, only_first, fields(&w.ds[..1]));
    assert_eq!(s, 303);
    let id = id_from(&loc);
    let (_, page) = w.page(&w.reg, &format!("/agreements/{id}"));
    assert!(page.contains("DATAOP-"), "{page}");
    assert!(page.contains("<dd class=\"price-job\">0.10</dd>"));
    assert!(page.contains("<dd class=\"price-rows\">0.20</dd>"));
    assert!(page.contains("<dd class=\"example-cost\">0.30</dd>"));
    assert!(page.contains("33.34%"));
    let stored: (Option<String>, String) = {
        use dataop::schema::agreements;
        let mut conn = app.conn();
        agreements::table
            .find(id)
            .select((agreements::price_per_job, agreements::split_operator))
            .first(&mut *conn)
            .unwrap()
    };
    assert_eq!(stored, (Some("0.10".into()), "33.34".into()));

    // A draft is invisible to the operator; another enterprise never sees it.
    assert_eq!(w.page(&w.alpha, &format!("/agreements/{id}")).0, 404);
    let beta = app.logged_in("beta", DEMO_PASSWORD);
    assert_eq!(w.page(&beta, &format!("/agreements/{id}")).0, 404);
    // Only the regulator drafts.
    let (s, _) = app.get_text(
        &w.alpha,
        &format!("/admin/applications/{only_first}/agreement/new"),
    );
    assert_eq!(s, 403);
}

#[test]
fn sign_seal_print_verify_and_tamper() {
    let w = world();
    let app = &w.app;
    let app_id = application(app, "alpha", "admitted", &w.ds);
    let (_, loc) = post_draft(app, &w.reg, app_id, fields(&w.ds));
    let id = id_from(&loc);
    let page = format!("/agreements/{id}");

    // The operator cannot sign before the regulator sends it: 409, nothing changes.
    let (s, _) = post(
        app,
        &w.alpha,
        "/agreements",
        &format!("/agreements/{id}/sign"),
        &[("name", "阿尔法健康科技有限公司")],
    );
    assert_eq!(s, 404, "a draft is not shown to the operator");
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/seal"),
        &[],
    );
    assert_eq!(s, 409);
    assert_eq!(state_of(app, id), "draft");

    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/submit"),
        &[],
    );
    assert_eq!(s, 303);
    assert_eq!(recipients(app, "ready_to_sign", id), [ALPHA_MAIL]);
    // The operator may return it for changes; the regulator sends it again.
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/return"),
        &[("note", "请把试运行期改为 2 个月")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "draft");
    assert_eq!(
        recipients(app, "returned", id),
        ["regulator@demo.dataop.invalid"]
    );
    let (s, _) = post(
        app,
        &w.alpha,
        "/agreements",
        &format!("/agreements/{id}/return"),
        &[("note", "again")],
    );
    assert_eq!(s, 404, "back in draft, hidden from the operator");
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/submit"),
        &[],
    );
    assert_eq!(s, 303);
    let (s, body) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/sign"),
        &[("name", "阿尔法")],
    );
    assert_eq!(s, 422);
    assert!(body.contains("阿尔法健康科技有限公司"));
    let beta = app.logged_in("beta", DEMO_PASSWORD);
    assert_eq!(w.page(&beta, &page).0, 404);
    let (s, _) = post(
        app,
        &beta,
        "/",
        &format!("/agreements/{id}/sign"),
        &[("name", "贝塔医疗数据服务有限公司")],
    );
    assert_eq!(s, 404);
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/sign"),
        &[("name", "阿尔法健康科技有限公司")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "awaiting_seal");
    let (_, desk) = w.page(&w.reg, "/admin/agreements");
    assert!(desk.contains("待盖章协议"));
    assert!(desk.contains("剩余"), "the seal deadline is shown: {desk}");

    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/seal"),
        &[],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "in_force");
    assert_eq!(recipients(app, "sealed", id), BOTH);
    let ref_ = w.access(w.ds[0]).expect("access while in force");
    assert_eq!(ref_.epsilon, "1.5");
    let today = app.state().clock.today();
    assert_eq!(
        ref_.ends_on,
        today
            .checked_add_months(chrono::Months::new(24))
            .unwrap()
            .pred_opt()
            .unwrap()
    );

    // Printable page.
    let (s, print) = w.page(&w.alpha, &format!("/agreements/{id}/print"));
    assert_eq!(s, 200);
    let (number, hash, sig, pk): (String, String, String, String) = {
        use dataop::schema::{agreement_signatures, agreements};
        let mut conn = app.conn();
        agreements::table
            .inner_join(agreement_signatures::table)
            .filter(agreements::id.eq(id))
            .select((
                agreements::number,
                agreement_signatures::canonical_sha256.assume_not_null(),
                agreement_signatures::signature.assume_not_null(),
                agreement_signatures::public_key.assume_not_null(),
            ))
            .first(&mut *conn)
            .unwrap()
    };
    assert!(number.starts_with(&format!("DATAOP-{}-0001", today.year())));
    for needle in [&number, &hash, &sig, &pk] {
        assert!(print.contains(needle.as_str()), "print page lacks {needle}");
    }
    assert!(print.contains("agreements.css"));
    assert_eq!(pk, app.state().seal.public_hex());

    // Public verification, anonymous.
    let anon = app.client();
    let (_, v) = app.get_text(
        &anon,
        &format!("/agreements/verify?number={number}&hash={hash}"),
    );
    assert!(v.contains("notice-ok verdict"), "{v}");
    assert!(v.contains("已由市数据资源管理局（公共数据主管部门）于"));
    let (_, v) = app.get_text(
        &anon,
        &format!("/agreements/verify?number={number}&hash={}", "0".repeat(64)),
    );
    assert!(v.contains("notice-error verdict") && v.contains("哈希值与已盖章协议不符"));
    let (_, v) = app.get_text(&anon, "/agreements/verify?number=DATAOP-1999-0001&hash=00");
    assert!(v.contains("不存在该编号的协议"));
    let canonical = w.page(&w.alpha, &format!("/agreements/{id}/canonical")).1;
    let token = app.csrf(&anon, "/agreements/verify");
    let r = anon
        .post(app.url("/agreements/verify"))
        .form(&[
            ("csrf", token.as_str()),
            ("number", number.as_str()),
            ("text", canonical.as_str()),
        ])
        .send()
        .unwrap();
    assert!(r.text().unwrap().contains("notice-ok verdict"));

    // A signed agreement is never edited.
    let (s, _) = w.page(&w.reg, &format!("/admin/agreements/{id}/edit"));
    assert_eq!(s, 409);
    let mut f = fields(&w.ds);
    f.push(("csrf".into(), app.csrf(&w.reg, &page)));
    let r = w
        .reg
        .post(app.url(&format!("/admin/agreements/{id}")))
        .form(&f)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().unwrap().contains("不能修改"));

    // Tampering with the stored agreement breaks verification.
    app.exec_sql(&format!(
        "UPDATE agreements SET purpose = '任意用途' WHERE id = {id}"
    ));
    let (_, v) = app.get_text(
        &anon,
        &format!("/agreements/verify?number={number}&hash={hash}"),
    );
    assert!(v.contains("notice-error verdict"), "{v}");
    assert!(v.contains("盖章后已被篡改"));

    // The history lists every step with its actor.
    let (_, show) = w.page(&w.reg, &page);
    for step in ["起草", "送签", "运营主体签署", "盖章"] {
        assert!(show.contains(step), "history lacks {step}");
    }
    assert!(show.contains("<td>alpha</td>") && show.contains("<td>regulator</td>"));
}

#[test]
fn an_amendment_signed_by_both_supersedes() {
    let w = world();
    let app = &w.app;
    let old = w.in_force();
    let page = format!("/agreements/{old}");
    let r = app.post_form_from(
        &w.reg,
        &page,
        &format!("/admin/agreements/{old}/amend"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let new = id_from(loc.trim_end_matches("/edit"));
    // A second amendment while one is open is refused.
    let r = app.post_form_from(
        &w.reg,
        &page,
        &format!("/admin/agreements/{old}/amend"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 409);

    let (s, form) = w.page(&w.reg, &loc);
    assert_eq!(s, 200);
    assert!(
        form.contains("分析各区门诊负担"),
        "the amendment starts from the old terms"
    );
    let mut f = set(fields(&w.ds), "purpose", "扩大到住院数据");
    f.push(("csrf".into(), csrf_from(&form).unwrap()));
    let r = w
        .reg
        .post(app.url(&format!("/admin/agreements/{new}")))
        .form(&f)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        state_of(app, old),
        "in_force",
        "the old one runs until the new one is sealed"
    );
    w.submit_sign_seal(new);
    assert_eq!(state_of(app, old), "superseded");
    assert_eq!(state_of(app, new), "in_force");
    let (_, show) = w.page(&w.alpha, &format!("/agreements/{new}"));
    assert!(show.contains("-V2") && show.contains("扩大到住院数据"));
    assert_eq!(w.access(w.ds[1]).unwrap().id, new);
    let (_, old_page) = w.page(&w.alpha, &page);
    assert!(old_page.contains("已被以下版本取代"));
    // The superseded version cannot be amended or terminated.
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{old}/terminate"),
        &[("note", "x")],
    );
    assert_eq!(s, 409);
}

#[test]
fn expiry_warns_once_then_ends_and_revokes() {
    let w = world();
    let app = &w.app;
    let id = w.in_force();
    let token = w.token();
    assert_eq!(w.api_status(&token), 200);
    let today = app.state().clock.today();
    let ends_on = today
        .checked_add_months(chrono::Months::new(24))
        .unwrap()
        .pred_opt()
        .unwrap();

    dataop::scheduler::tick(app.state());
    assert!(
        recipients(app, "expiry_warning", id).is_empty(),
        "no warning two years ahead"
    );

    app.state()
        .clock
        .advance(Duration::days((ends_on - today).num_days() - 29));
    dataop::scheduler::tick(app.state());
    assert_eq!(recipients(app, "expiry_warning", id), BOTH);
    dataop::scheduler::tick(app.state());
    assert_eq!(recipients(app, "expiry_warning", id), BOTH, "warned once");
    assert_eq!(state_of(app, id), "in_force");
    let (_, desk) = w.page(&w.reg, "/admin/agreements");
    assert!(desk.contains("即将到期协议（30 日内）"));
    assert!(desk.contains(&ends_on.to_string()));

    // On the last day of the term the agreement still runs and a fresh token works; the
    // day after, expiry ends it and revokes that token.
    app.state().clock.advance(Duration::days(29));
    dataop::scheduler::tick(app.state());
    assert_eq!(state_of(app, id), "in_force");
    let token = w.token();
    assert_eq!(w.api_status(&token), 200);
    app.state().clock.advance(Duration::days(1));
    dataop::scheduler::tick(app.state());
    assert_eq!(state_of(app, id), "expired");
    assert_eq!(w.api_status(&token), 401);
    assert!(w.access(w.ds[0]).is_none());
    assert_eq!(w.credit_records(), 0, "expiry is no breach");
    assert_eq!(recipients(app, "terminated", id), BOTH);
    assert_eq!(w.disposal_queue(), [id]);
    w.file_disposal(id);
    assert!(w.disposal_queue().is_empty());
    let (s, _) = post(
        app,
        &w.alpha,
        &format!("/agreements/{id}"),
        &format!("/agreements/{id}/disposal"),
        &[("what", "x"), ("on", &today.to_string()), ("by", "y")],
    );
    assert_eq!(s, 409, "filed once");
}

#[test]
fn early_termination_on_request() {
    let w = world();
    let app = &w.app;
    let id = w.in_force();
    let token = w.token();
    let page = format!("/agreements/{id}");
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/termination-request"),
        &[("note", "")],
    );
    assert_eq!(s, 422, "a reason is required");
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/termination-request"),
        &[("note", "业务调整")],
    );
    assert_eq!(s, 303);
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/termination-request"),
        &[("note", "再次")],
    );
    assert_eq!(s, 409, "one pending request at a time");
    let (_, desk) = w.page(&w.reg, "/admin/agreements");
    assert!(desk.contains("提前终止申请"));
    let tid = count(app, "termination_requests", "1 = 1");
    let decide = format!("/admin/agreements/{id}/termination-requests/{tid}/decide");
    let (s, _) = post(app, &w.alpha, &page, &decide, &[("decision", "approve")]);
    assert_eq!(s, 403, "only the regulator decides");
    assert_eq!(w.api_status(&token), 200);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &decide,
        &[("decision", "approve"), ("note", "同意")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "terminated_on_request");
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &decide,
        &[("decision", "refuse"), ("note", "x")],
    );
    assert_eq!(s, 409, "decided once");
    assert_eq!(w.api_status(&token), 401);
    assert!(w.access(w.ds[0]).is_none());
    assert_eq!(w.credit_records(), 0);
    assert_eq!(recipients(app, "request_decided", id), [ALPHA_MAIL]);
    assert_eq!(recipients(app, "terminated", id), BOTH);
    w.file_disposal(id);
}

/// The `n`-th working day after `start`, skipping weekends and `holiday` (computed here, not
/// by the server's calendar).
fn nth_working_day(start: NaiveDate, n: u32, holiday: NaiveDate) -> NaiveDate {
    let mut d = start;
    let mut left = n;
    while left > 0 {
        d = d.succ_opt().unwrap();
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && d != holiday {
            left -= 1;
        }
    }
    d
}

#[test]
fn rectification_accepted_then_overdue_terminated_with_credit_record() {
    let w = world();
    let app = &w.app;
    let id = w.in_force();
    let token = w.token();
    let page = format!("/agreements/{id}");
    let today = app.state().clock.today();
    // A holiday on the first weekday after today.
    let mut holiday = today.succ_opt().unwrap();
    while matches!(holiday.weekday(), Weekday::Sat | Weekday::Sun) {
        holiday = holiday.succ_opt().unwrap();
    }
    app.exec_sql(&format!(
        "INSERT INTO calendar_days (day, kind, name_zh, name_en, created_at) VALUES ('{holiday}', 'holiday', '假日', 'Holiday', '2026-01-01 00:00:00')"
    ));
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/rectifications"),
        &[("note", "补充日志留存"), ("days", "61")],
    );
    assert_eq!(s, 422);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/rectifications"),
        &[("note", "补充日志留存"), ("days", "5")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "rectification");
    let due = nth_working_day(today, 5, holiday);
    assert!(
        (due - today).num_days() >= 8,
        "crosses a weekend and the holiday"
    );
    let (_, show) = w.page(&w.alpha, &page);
    assert!(
        show.contains(&due.to_string()),
        "deadline {due} shown: {show}"
    );
    assert!(show.contains("剩余 5 个工作日"));
    assert_eq!(recipients(app, "rectification_order", id), [ALPHA_MAIL]);
    assert!(
        w.access(w.ds[0]).is_some(),
        "the term runs during rectification"
    );
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/rectifications"),
        &[("note", "again"), ("days", "5")],
    );
    assert_eq!(s, 409, "one order at a time");

    let rid = count(app, "rectifications", "1 = 1");
    let decide = format!("/admin/agreements/{id}/rectifications/{rid}/decide");
    let (s, _) = post(app, &w.reg, &page, &decide, &[("decision", "accept")]);
    assert_eq!(s, 409, "nothing to accept before the answer");
    let (s, _) = post(app, &w.reg, &page, &decide, &[("decision", "terminate")]);
    assert_eq!(s, 409, "not overdue yet");
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/rectifications/{rid}/answer"),
        &[("note", "已补充日志留存 3 年")],
    );
    assert_eq!(s, 303);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &decide,
        &[("decision", "accept"), ("note", "通过")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "in_force");
    assert_eq!(
        w.credit_records(),
        0,
        "a complied order is no breach on record"
    );

    // A second order, left unanswered past its deadline.
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/rectifications"),
        &[("note", "整改访问控制"), ("days", "2")],
    );
    assert_eq!(s, 303);
    let rid2 = rid + 1;
    app.state().clock.advance(Duration::days(10));
    let (_, desk) = w.page(&w.reg, "/admin/agreements");
    assert!(
        desk.contains("整改到期") && desk.contains("已逾期"),
        "{desk}"
    );
    let (s, body) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/rectifications/{rid2}/answer"),
        &[("note", "迟到的答复")],
    );
    assert_eq!(s, 409);
    assert!(body.contains("整改期限已过"));
    assert_eq!(w.api_status(&token), 200);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/rectifications/{rid2}/decide"),
        &[("decision", "terminate")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "terminated_for_breach");
    assert_eq!(w.api_status(&token), 401);
    assert!(w.access(w.ds[0]).is_none());
    assert_eq!(w.credit_records(), 1);
    let kind: String = {
        use dataop::schema::credit_records;
        let mut conn = app.conn();
        credit_records::table
            .select(credit_records::kind)
            .first(&mut *conn)
            .unwrap()
    };
    assert_eq!(kind, "terminated_for_breach");
    w.file_disposal(id);
}

#[test]
fn rectification_answer_rejected_terminates() {
    let w = world();
    let app = &w.app;
    let id = w.in_force();
    let page = format!("/agreements/{id}");
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/rectifications"),
        &[("note", "整改"), ("days", "5")],
    );
    assert_eq!(s, 303);
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/rectifications/1/answer"),
        &[("note", "已整改")],
    );
    assert_eq!(s, 303);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/rectifications/1/decide"),
        &[("decision", "reject"), ("note", "整改不到位")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "terminated_for_breach");
    assert_eq!(w.credit_records(), 1);
}

#[test]
fn violation_terminates_at_once() {
    let w = world();
    let app = &w.app;
    let id = w.in_force();
    let token = w.token();
    let page = format!("/agreements/{id}");
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/agreements/{id}/termination-request"),
        &[("note", "业务调整")],
    );
    assert_eq!(s, 303);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/terminate"),
        &[("note", "")],
    );
    assert_eq!(s, 422, "the legal basis is required");
    assert_eq!(state_of(app, id), "in_force");
    let (s, _) = post(
        app,
        &w.alpha,
        &page,
        &format!("/admin/agreements/{id}/terminate"),
        &[("note", "x")],
    );
    assert_eq!(s, 403);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/terminate"),
        &[("note", "《数据安全法》第四十五条：违规向境外提供数据")],
    );
    assert_eq!(s, 303);
    assert_eq!(state_of(app, id), "terminated_for_violation");
    assert_eq!(
        count(app, "termination_requests", "state = 'closed'"),
        1,
        "the pending request is closed with the agreement"
    );
    assert_eq!(w.api_status(&token), 401);
    assert!(w.access(w.ds[0]).is_none());
    assert_eq!(w.credit_records(), 1);
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/terminate"),
        &[("note", "again")],
    );
    assert_eq!(s, 409, "already ended; nothing changes");
    assert_eq!(w.credit_records(), 1);
    let (_, show) = w.page(&w.alpha, &page);
    assert!(show.contains("因违法违规终止") && show.contains("第四十五条"));
    assert!(show.contains("尚未提交数据处置确认"));
    assert_eq!(recipients(app, "terminated", id), BOTH);
    assert_eq!(w.disposal_queue(), [id]);
    // Another enterprise can neither see nor act on it.
    let beta = app.logged_in("beta", DEMO_PASSWORD);
    let today = app.state().clock.today().to_string();
    for (path, fields) in [
        (
            format!("/agreements/{id}/disposal"),
            vec![("what", "x"), ("on", today.as_str()), ("by", "y")],
        ),
        (
            format!("/agreements/{id}/termination-request"),
            vec![("note", "x")],
        ),
        (
            format!("/agreements/{id}/rectifications/1/answer"),
            vec![("note", "x")],
        ),
    ] {
        let (s, _) = post(app, &beta, "/", &path, &fields);
        assert_eq!(s, 404, "{path}");
    }
    assert_eq!(
        app.get_text(&beta, &format!("/agreements/{id}/print")).0,
        404
    );
    assert_eq!(
        app.get_text(&beta, &format!("/agreements/{id}/canonical"))
            .0,
        404
    );
    assert_eq!(w.disposal_queue(), [id], "nothing changed");
    // The disposal happened: a day from 1900 to today, not year 1 or tomorrow.
    let tomorrow = (app.state().clock.today() + Duration::days(1)).to_string();
    for on in ["0001-01-01", tomorrow.as_str()] {
        let (s, body) = post(
            app,
            &w.alpha,
            &page,
            &format!("/agreements/{id}/disposal"),
            &[("what", "全部衍生数据"), ("on", on), ("by", "y")],
        );
        assert_eq!(s, 422, "{on}");
        assert!(
            body.contains(&format!(
                "删除日期：{on} 不是合理的日期，请填写 1900-01-01 至今天"
            )),
            "{on}: {body}"
        );
        assert!(body.contains(">全部衍生数据</textarea>"), "kept");
    }
    assert_eq!(w.disposal_queue(), [id], "nothing filed");
    w.file_disposal(id);
    assert!(w.disposal_queue().is_empty());
}

#[test]
fn demo_agreement_navigation_and_english() {
    let app = TestApp::builder().demo().start();
    let anon = app.client();
    let (_, home) = app.get_text(&anon, "/");
    assert!(home.contains("href=\"/agreements/verify\""));
    let (s, desk) = app.get_text(
        &app.logged_in("regulator", DEMO_PASSWORD),
        "/admin/agreements",
    );
    assert_eq!(s, 200, "the desk renders with no agreements");
    assert!(desk.contains("暂无"));

    let (provider_org, provider_user) = org_of(&app, "provider");
    let fields = DatasetFields {
        title_zh: "门诊就诊记录（合成数据）".into(),
        title_en: dataop::catalog::demo::DEMO_TITLE_EN.into(),
        description_zh: "d".into(),
        description_en: "d".into(),
        category: "medical_services".into(),
        grade: 3,
        open_type: "conditional".into(),
        sharing_type: "conditional".into(),
        update_frequency: "monthly".into(),
        source: "HIS".into(),
        contact: "office".into(),
    };
    let ds = insert_dataset(
        &mut app.conn(),
        provider_org,
        provider_user,
        &fields,
        dataop::db::to_micros(app.state().clock.now()),
    )
    .unwrap();
    dataop::agreements::demo::seed(app.state()).unwrap();
    dataop::agreements::demo::seed(app.state()).unwrap();
    assert_eq!(count(&app, "agreements", "1 = 1"), 1, "idempotent");
    let (org, _) = org_of(&app, "alpha");
    let today = app.state().clock.today();
    let r = dataop::agreements::in_force_for(&mut app.conn(), org, ds, today)
        .unwrap()
        .expect("alpha's demo agreement is in force");

    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let (_, home) = app.get_text(&alpha, "/");
    assert!(home.contains("href=\"/agreements\""));
    let (_, mine) = app.get_text(&alpha, "/agreements");
    assert!(mine.contains(&r.number) && mine.contains("履行中"));

    let hash: String = {
        use dataop::schema::agreement_signatures;
        agreement_signatures::table
            .find(r.id)
            .select(agreement_signatures::canonical_sha256.assume_not_null())
            .first(&mut *app.conn())
            .unwrap()
    };
    assert_eq!(app.get(&anon, "/lang/en?next=/").status().as_u16(), 303);
    let (_, v) = app.get_text(
        &anon,
        &format!("/agreements/verify?number={}&hash={hash}", r.number),
    );
    assert!(v.contains("Valid: agreement"), "{v}");
    assert!(v.contains("current status: In force"));
}

#[test]
fn tokens_survive_while_another_agreement_runs() {
    let w = world();
    let app = &w.app;
    let first = w.in_force();
    let second = w.in_force();
    let token = w.token();
    let terminate = |id: i64| {
        post(
            app,
            &w.reg,
            &format!("/agreements/{id}"),
            &format!("/admin/agreements/{id}/terminate"),
            &[("note", "违法")],
        )
        .0
    };
    assert_eq!(terminate(first), 303);
    assert_eq!(w.api_status(&token), 200, "the second agreement still runs");
    assert_eq!(w.access(w.ds[0]).map(|r| r.id), Some(second));
    assert_eq!(terminate(second), 303);
    assert_eq!(w.api_status(&token), 401);
    assert!(w.access(w.ds[0]).is_none());
}

/// Two commands on one agreement at once that exclude each other (the operator signs it and
/// returns it for changes, both allowed from `awaiting_operator`): exactly one is carried out,
/// the other is refused with 409 and leaves nothing behind. On PostgreSQL the test holds the
/// agreement's row lock until both requests have read the agreement and wait on the lock, so
/// they really interleave: before moves were a compare-and-set on the state read, both were
/// carried out (a draft again, with the operator's signature on file). On SQLite the writers
/// are serialized and the second reads the state the first left.
#[test]
fn two_concurrent_transitions_one_wins_the_other_changes_nothing() {
    use diesel::connection::SimpleConnection as _;
    let w = world();
    let app = &w.app;
    let app_id = application(app, "alpha", "admitted", &w.ds);
    let (s, loc) = post_draft(app, &w.reg, app_id, fields(&w.ds[..1]));
    assert_eq!(s, 303, "{loc}");
    let id = id_from(&loc);
    let page = format!("/agreements/{id}");
    let (s, _) = post(
        app,
        &w.reg,
        &page,
        &format!("/admin/agreements/{id}/submit"),
        &[],
    );
    assert_eq!(s, 303);
    let mut lock = app.conn();
    let postgres = lock.backend() == dataop::db::Backend::Postgres;
    if postgres {
        lock.batch_execute(&format!(
            "BEGIN; SELECT id FROM agreements WHERE id = {id} FOR UPDATE;"
        ))
        .unwrap();
    }
    let statuses = std::thread::scope(|s| {
        let sign = s.spawn(|| {
            post(
                app,
                &w.alpha,
                &page,
                &format!("/agreements/{id}/sign"),
                &[("name", "阿尔法健康科技有限公司")],
            )
            .0
        });
        let give_back = s.spawn(|| {
            post(
                app,
                &w.alpha,
                &page,
                &format!("/agreements/{id}/return"),
                &[("note", "请补充数据处置方式")],
            )
            .0
        });
        if postgres {
            let waiting = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'";
            let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while app.count_sql(waiting) < 2 {
                assert!(
                    std::time::Instant::now() < until,
                    "both requests read the agreement and wait for its row"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            lock.batch_execute("COMMIT").unwrap();
        }
        [sign.join().unwrap(), give_back.join().unwrap()]
    });
    // The loser is refused: 409, or 404 for a signature that comes after the return (a draft
    // is the regulator's again, and hidden from the operator).
    assert!(
        matches!(statuses, [303, 409] | [409 | 404, 303]),
        "one wins, one is refused: {statuses:?}"
    );
    let signatures = count(app, "agreement_signatures", &format!("agreement_id = {id}"));
    if statuses[0] == 303 {
        assert_eq!(state_of(app, id), "awaiting_seal");
        assert_eq!(signatures, 1);
    } else {
        assert_eq!(state_of(app, id), "draft");
        assert_eq!(signatures, 0, "the refused signature left no row");
    }
    assert_eq!(
        count(
            app,
            "audit_log",
            &format!(
                "object_type = 'agreement' AND object_id = '{id}' \
                 AND action IN ('agreement.operator_sign', 'agreement.operator_return')"
            )
        ),
        1,
        "the refused command wrote no audit entry"
    );
}
