//! Admission through the real HTTP routes: calls (draft, publish, close, not-open datasets
//! refused), applications (draft saved and resumed, incomplete submission, closing date,
//! attachments checked by content and access control), review (return for supplement, expert
//! opinion, rejection with reasons), public notice with objections (anti-abuse check, dismiss,
//! uphold), the scheduler admitting after the notice period, working-day deadlines across a
//! weekend and a holiday, mails in the outbox, and 409 with nothing changed for every illegal
//! transition. SQLite by default; PostgreSQL when `DATAOP_TEST_POSTGRES_URL` is set.

use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use dataop::accounts::model::NewUser;
use dataop::auth::Role;
use dataop::catalog::model::{self, DatasetFields};
use dataop::schema::{applications, audit_log, calls, mail_outbox, organisations, users};
use diesel::prelude::*;
use reqwest::blocking::{Client, Response, multipart};

mod common;

use common::TestApp;

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";

struct App {
    t: TestApp,
}

fn spawn() -> App {
    with_expert_mail(TestApp::builder().demo().start())
}

fn spawn_with(f: impl FnOnce(&mut dataop::Config) + 'static) -> App {
    with_expert_mail(TestApp::builder().demo().config(f).start())
}

/// The demo expert gets a personal address (mails about assignments go to the expert).
fn with_expert_mail(t: TestApp) -> App {
    t.exec_sql("UPDATE users SET email = 'chen.expert@example.cn' WHERE username = 'expert'");
    App { t }
}

impl App {
    fn user_id(&self, username: &str) -> i64 {
        users::table
            .filter(users::username.eq(username))
            .select(users::id)
            .first(&mut self.t.conn())
            .unwrap()
    }

    fn org_of(&self, username: &str) -> i64 {
        users::table
            .filter(users::username.eq(username))
            .select(users::org_id)
            .first(&mut self.t.conn())
            .unwrap()
    }

    /// A browser logged in as `username` (session created directly, as a login would).
    fn browser(&self, username: &str) -> Client {
        let uid = self.user_id(username);
        let mut conn = self.t.conn();
        let (_, token) = dataop::auth::create_session(
            &mut conn,
            self.t.state(),
            uid,
            "web",
            "127.0.0.1",
            chrono::TimeDelta::hours(2),
        )
        .unwrap();
        let jar = reqwest::cookie::Jar::default();
        jar.add_cookie_str(
            &format!("dataop_session={token}; Path=/"),
            &self.t.base.parse().unwrap(),
        );
        Client::builder()
            .cookie_provider(Arc::new(jar))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn get(&self, c: &Client, path: &str) -> (u16, String) {
        self.t.get_text(c, path)
    }

    /// POSTs a form with the CSRF token of the page at `from`.
    fn post_from(&self, c: &Client, from: &str, path: &str, fields: &[(&str, &str)]) -> Response {
        self.t.post_form_from(c, from, path, fields)
    }

    /// POSTs a form with the CSRF token of the home page (logged-in users).
    fn post(&self, c: &Client, path: &str, fields: &[(&str, &str)]) -> Response {
        self.post_from(c, "/account", path, fields)
    }

    fn dataset(&self, title: &str, open_type: &str) -> i64 {
        let provider_org = self.org_of("provider");
        let uid = self.user_id("provider");
        let mut conn = self.t.conn();
        model::insert_dataset(
            &mut conn,
            provider_org,
            uid,
            &DatasetFields {
                title_zh: title.into(),
                title_en: title.into(),
                category: "medical_services".into(),
                grade: 2,
                open_type: open_type.into(),
                sharing_type: "conditional".into(),
                update_frequency: "monthly".into(),
                ..DatasetFields::default()
            },
            dataop::db::to_micros(self.t.state().clock.now()),
        )
        .unwrap()
    }

    fn today(&self) -> NaiveDate {
        self.t.state().clock.today()
    }

    fn app_state(&self, id: i64) -> String {
        applications::table
            .find(id)
            .select(applications::state)
            .first(&mut self.t.conn())
            .unwrap()
    }

    fn call_state(&self, id: i64) -> String {
        calls::table
            .find(id)
            .select(calls::state)
            .first(&mut self.t.conn())
            .unwrap()
    }

    fn audit_count(&self) -> i64 {
        audit_log::table
            .count()
            .get_result(&mut self.t.conn())
            .unwrap()
    }

    fn mails(&self, template: &str) -> Vec<(String, String)> {
        mail_outbox::table
            .filter(mail_outbox::template.eq(template))
            .select((mail_outbox::to_addr, mail_outbox::body))
            .load(&mut self.t.conn())
            .unwrap()
    }

    /// Creates a call as `reg`; returns the response.
    fn create_call(
        &self,
        reg: &Client,
        datasets: &[i64],
        opens: NaiveDate,
        closes: NaiveDate,
    ) -> Response {
        let ids: Vec<String> = datasets.iter().map(i64::to_string).collect();
        let opens = opens.to_string();
        let closes = closes.to_string();
        let mut fields = vec![
            ("domain", "medical_services"),
            ("title_zh", "医疗健康数据授权运营通告"),
            ("title_en", "Medical data call"),
            ("body_zh", "正文"),
            ("body_en", "Text"),
            ("scenarios", "保险精算\n科研"),
            ("conditions", "等保三级"),
            ("opens_on", opens.as_str()),
            ("closes_on", closes.as_str()),
        ];
        for id in &ids {
            fields.push(("dataset", id.as_str()));
        }
        self.post_from(reg, "/admission/calls/new", "/admission/calls", &fields)
    }

    /// A published call offering `datasets`, open from today for `days` days.
    fn published_call(&self, reg: &Client, datasets: &[i64], days: i64) -> i64 {
        let today = self.today();
        let res = self.create_call(reg, datasets, today, today + Duration::days(days));
        assert_eq!(res.status(), 303, "{}", res.text().unwrap());
        let id = id_from(&res, "/admission/calls/");
        let res = self.post(reg, &format!("/admission/calls/{id}/publish"), &[]);
        assert_eq!(res.status(), 303);
        id
    }

    /// Starts the application of `ent` to `call`; returns its id.
    fn start(&self, ent: &Client, call: i64) -> i64 {
        let res = self.post(ent, &format!("/calls/{call}/apply"), &[]);
        assert_eq!(res.status(), 303, "{}", res.text().unwrap());
        id_from(&res, "/applications/")
    }

    fn fill(&self, ent: &Client, app: i64, dataset: i64, op: &str) -> Response {
        let ds = dataset.to_string();
        let purpose = format!("purpose_{dataset}");
        self.post(
            ent,
            &format!("/applications/{app}"),
            &[
                ("op", op),
                ("scenario", "科研"),
                ("dataset", ds.as_str()),
                (purpose.as_str(), "按区县统计门诊负担"),
                ("evidence_basic", "依法设立，信用良好"),
                ("evidence_technical", "等保三级测评报告"),
                ("evidence_scenario", "面向卫生部门的统计分析"),
                ("evidence_domain", "遵守医疗数据管理规定"),
                ("declared", "on"),
            ],
        )
    }

    /// A submitted application of `who` to a fresh call; returns (call, application, dataset).
    fn submitted(&self, reg: &Client, ent: &Client) -> (i64, i64, i64) {
        let ds = self.dataset("门诊记录", "conditional");
        let call = self.published_call(reg, &[ds], 30);
        let app = self.start(ent, call);
        let res = self.fill(ent, app, ds, "submit");
        assert_eq!(res.status(), 303, "{}", res.text().unwrap());
        assert_eq!(self.app_state(app), "submitted");
        (call, app, ds)
    }

    fn upload(&self, ent: &Client, app: i64, name: &str, bytes: &[u8]) -> Response {
        let csrf = self.t.csrf(ent, &format!("/applications/{app}"));
        let form = multipart::Form::new()
            .text("csrf", csrf)
            .text("group", "technical")
            .part(
                "file",
                multipart::Part::bytes(bytes.to_vec())
                    .file_name(name.to_owned())
                    .mime_str("application/pdf")
                    .unwrap(),
            );
        ent.post(self.t.url(&format!("/applications/{app}/attachments")))
            .multipart(form)
            .send()
            .unwrap()
    }

    /// Approves `app` as `reg` (from submitted or in review).
    fn approve(&self, reg: &Client, app: i64) {
        let res = self.post(
            reg,
            &format!("/applications/{app}/approve"),
            &[("note", "")],
        );
        assert_eq!(res.status(), 303, "{}", res.text().unwrap());
        assert_eq!(self.app_state(app), "notice");
    }

    /// Files an objection to `app` from an anonymous browser answering the check right.
    fn object(&self, app: i64, contact: &str) -> Response {
        let c = self.t.client();
        let (status, html) = self.get(&c, &format!("/notices/{app}"));
        assert_eq!(status, 200);
        let token = common::csrf_from(&html).unwrap();
        let check = value_of(&html, "check");
        let answer = answer_of(&html).to_string();
        self.t.post_form(
            &c,
            &format!("/notices/{app}/objections"),
            &[
                ("csrf", token.as_str()),
                ("check", check.as_str()),
                ("answer", answer.as_str()),
                ("name", "张三"),
                ("contact", contact),
                ("grounds", "该企业曾发生数据泄露。"),
            ],
        )
    }

    fn pending_objection(&self, app: i64) -> i64 {
        use dataop::schema::objections;
        objections::table
            .filter(objections::application_id.eq(app))
            .filter(objections::state.eq("pending"))
            .select(objections::id)
            .first(&mut self.t.conn())
            .unwrap()
    }
}

fn id_from(res: &Response, prefix: &str) -> i64 {
    let loc = res.headers()["location"].to_str().unwrap();
    loc.trim_start_matches(prefix)
        .split(['/', '#', '?'])
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no id in {loc}"))
}

fn value_of(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = html.find(&pat).unwrap() + pat.len();
    html[i..i + html[i..].find('"').unwrap()].to_owned()
}

fn answer_of(html: &str) -> i64 {
    let end = html.find(" = ?").unwrap();
    let words: Vec<&str> = html[..end].split_whitespace().rev().take(3).collect();
    words[0].parse::<i64>().unwrap() + words[2].parse::<i64>().unwrap()
}

#[test]
fn calls_are_drafted_published_and_refuse_not_open_datasets() {
    let app = spawn();
    let reg = app.browser("regulator");
    let open = app.dataset("门诊就诊", "conditional");
    let closed = app.dataset("精神卫生档案", "not_open");
    let today = app.today();

    let res = app.create_call(&reg, &[open, closed], today, today + Duration::days(10));
    assert_eq!(res.status(), 422);
    let html = res.text().unwrap();
    assert!(
        html.contains("精神卫生档案"),
        "the refused dataset is named"
    );
    assert!(html.contains("不予开放"), "the form says why");
    assert!(
        html.contains("医疗健康数据授权运营通告"),
        "what was typed is kept"
    );
    let n: i64 = calls::table.count().get_result(&mut app.t.conn()).unwrap();
    assert_eq!(n, 0);

    let res = app.create_call(&reg, &[open], today, today + Duration::days(10));
    assert_eq!(res.status(), 303);
    let id = id_from(&res, "/admission/calls/");
    assert_eq!(app.call_state(id), "draft");
    let anon = app.t.client();
    assert_eq!(
        app.get(&anon, &format!("/calls/{id}")).0,
        404,
        "drafts are not public"
    );
    assert!(!app.get(&anon, "/calls").1.contains("Medical data call"));

    // A draft can be edited; the form comes back filled in.
    let edit = format!("/admission/calls/{id}/edit");
    let (status, html) = app.get(&reg, &edit);
    assert_eq!(status, 200);
    assert!(html.contains("医疗健康数据授权运营通告") && html.contains("保险精算"));
    let open_s = open.to_string();
    let opens = today.to_string();
    let closes = (today + Duration::days(10)).to_string();
    let res = app.post(
        &reg,
        &edit,
        &[
            ("domain", "medical_services"),
            ("title_zh", "医疗健康数据授权运营通告（修订）"),
            ("title_en", "Medical data call (revised)"),
            ("scenarios", "科研"),
            ("opens_on", opens.as_str()),
            ("closes_on", closes.as_str()),
            ("dataset", open_s.as_str()),
        ],
    );
    assert_eq!(res.status(), 303);
    let res = app.post(&reg, &format!("/admission/calls/{id}/publish"), &[]);
    assert_eq!(res.status(), 303);
    assert_eq!(app.call_state(id), "published");
    assert!(
        app.get(&anon, &format!("/calls/{id}"))
            .1
            .contains("（修订）")
    );
    let (status, html) = app.get(&anon, &format!("/calls/{id}"));
    assert_eq!(status, 200);
    assert!(html.contains("医疗健康数据授权运营通告") && html.contains("门诊就诊"));
    assert!(
        app.get(&anon, "/calls")
            .1
            .contains("医疗健康数据授权运营通告")
    );
    assert!(
        app.get(&anon, "/").1.contains("href=\"/calls\""),
        "linked from the nav"
    );

    // Publishing again, or editing a published call, is a state conflict.
    let before = app.audit_count();
    assert_eq!(
        app.post(&reg, &format!("/admission/calls/{id}/publish"), &[])
            .status(),
        409
    );
    assert_eq!(app.get(&reg, &format!("/admission/calls/{id}/edit")).0, 409);
    assert_eq!(app.audit_count(), before);

    // A closed call takes no applications.
    assert_eq!(
        app.post(&reg, &format!("/admission/calls/{id}/close"), &[])
            .status(),
        303
    );
    assert_eq!(app.call_state(id), "closed");
    let alpha = app.browser("alpha");
    assert!(
        app.get(&alpha, &format!("/calls/{id}"))
            .1
            .contains("不受理申请")
    );
    assert_eq!(
        app.post(&alpha, &format!("/calls/{id}/apply"), &[])
            .status(),
        409
    );
    let n: i64 = applications::table
        .count()
        .get_result(&mut app.t.conn())
        .unwrap();
    assert_eq!(n, 0);
    let res = app.post(&reg, &format!("/admission/calls/{id}/withdraw"), &[]);
    assert_eq!(res.status(), 409);
    assert!(res.text().unwrap().contains("已关闭或已撤回"));
    assert_eq!(app.call_state(id), "closed");

    // Enterprises may not manage calls.
    assert_eq!(app.get(&alpha, "/admission/calls/new").0, 403);
}

#[test]
fn a_call_past_its_closing_date_is_closed_by_the_scheduler_and_refuses_submission() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let ds = app.dataset("门诊", "unconditional");
    let call = app.published_call(&reg, &[ds], 2);
    let id = app.start(&alpha, call);
    assert_eq!(app.fill(&alpha, id, ds, "save").status(), 303);
    app.t.state().clock.advance(Duration::days(3));
    let before = app.audit_count();
    let res = app.fill(&alpha, id, ds, "submit");
    assert_eq!(res.status(), 409);
    assert!(res.text().unwrap().contains("截止日期已过"));
    assert_eq!(app.app_state(id), "draft");
    assert_eq!(app.audit_count(), before, "nothing changed");
    dataop::scheduler::tick(app.t.state());
    assert_eq!(app.call_state(call), "closed");
}

#[test]
fn an_unverified_enterprise_is_told_why_it_cannot_apply() {
    let app = spawn();
    let reg = app.browser("regulator");
    let ds = app.dataset("门诊", "conditional");
    let call = app.published_call(&reg, &[ds], 10);
    let org = app.org_of("beta");
    diesel::update(organisations::table.find(org))
        .set(organisations::status.eq("pending"))
        .execute(&mut app.t.conn())
        .unwrap();
    let beta = app.browser("beta");
    let html = app.get(&beta, &format!("/calls/{call}")).1;
    assert!(html.contains("尚未通过平台核验"));
    assert!(!html.contains(&format!("action=\"/calls/{call}/apply\"")));
    let res = app.post(&beta, &format!("/calls/{call}/apply"), &[]);
    assert_eq!(res.status(), 403);
    let n: i64 = applications::table
        .count()
        .get_result(&mut app.t.conn())
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn drafts_attachments_submission_and_access_control() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let beta = app.browser("beta");
    let ds = app.dataset("门诊", "conditional");
    let call = app.published_call(&reg, &[ds], 30);
    let id = app.start(&alpha, call);
    assert_eq!(
        app.start(&alpha, call),
        id,
        "applying again resumes the same application"
    );

    // Prefilled from the organisation; a partial draft is saved and resumed.
    let html = app.get(&alpha, &format!("/applications/{id}")).1;
    assert!(html.contains("阿尔法健康科技有限公司") && html.contains("91330106700000"));
    let ds_s = ds.to_string();
    let purpose = format!("purpose_{ds}");
    let res = app.post(
        &alpha,
        &format!("/applications/{id}"),
        &[
            ("op", "save"),
            ("scenario", "科研"),
            ("dataset", ds_s.as_str()),
            (purpose.as_str(), "统计门诊负担"),
            ("evidence_basic", "营业执照与信用报告"),
        ],
    );
    assert_eq!(res.status(), 303);
    let html = app.get(&alpha, &format!("/applications/{id}")).1;
    assert!(html.contains("统计门诊负担") && html.contains("营业执照与信用报告"));

    // Submitting the incomplete draft is refused with the list of what is missing.
    let res = app.post(
        &alpha,
        &format!("/applications/{id}"),
        &[
            ("op", "submit"),
            ("scenario", "科研"),
            ("dataset", ds_s.as_str()),
            (purpose.as_str(), "统计门诊负担"),
            ("evidence_basic", "营业执照与信用报告"),
        ],
    );
    assert_eq!(res.status(), 422);
    let html = res.text().unwrap();
    for missing in [
        "技术安全要求证明材料",
        "领域特定安全要求证明材料",
        "承诺声明",
    ] {
        assert!(html.contains(missing), "{missing} listed");
    }
    assert!(!html.contains("<li>应用场景</li>"), "the scenario is given");
    assert_eq!(app.app_state(id), "draft");

    // Attachments: the type comes from the content.
    let res = app.upload(&alpha, id, "report.pdf", b"this is only text, not a pdf");
    assert_eq!(res.status(), 422);
    assert!(res.text().unwrap().contains("按内容检查"));
    let res = app.upload(&alpha, id, "等保测评.pdf", PDF);
    assert_eq!(res.status(), 303);
    let att: i64 = dataop::schema::application_attachments::table
        .select(dataop::schema::application_attachments::id)
        .first(&mut app.t.conn())
        .unwrap();
    let stored: String = dataop::schema::application_attachments::table
        .select(dataop::schema::application_attachments::storage_path)
        .first(&mut app.t.conn())
        .unwrap();
    assert!(app.t.data_dir.path().join(&stored).is_file());
    let url = format!("/applications/{id}/attachments/{att}");
    let res = alpha.get(app.t.url(&url)).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    assert_eq!(res.bytes().unwrap().as_ref(), PDF);

    // Oversize files are refused.
    let mut big = PDF.to_vec();
    big.resize(10 * 1024 * 1024 + 1, b' ');
    let res = app.upload(&alpha, id, "big.pdf", &big);
    assert_eq!(res.status(), 413);
    let n: i64 = dataop::schema::application_attachments::table
        .count()
        .get_result(&mut app.t.conn())
        .unwrap();
    assert_eq!(n, 1);

    // Another enterprise sees nothing of it, and the regulator does not see drafts.
    assert_eq!(app.get(&beta, &format!("/applications/{id}")).0, 404);
    assert_eq!(app.get(&beta, &url).0, 404);
    assert!(
        !app.get(&beta, "/applications")
            .1
            .contains(&format!("/applications/{id}\""))
    );
    assert_eq!(app.get(&reg, &format!("/applications/{id}")).0, 404);
    let res = app.upload(&beta, id, "x.pdf", PDF);
    assert_eq!(res.status(), 404);

    // Complete and submit: the applicant and the regulators are told.
    let res = app.fill(&alpha, id, ds, "submit");
    assert_eq!(res.status(), 303, "{}", res.text().unwrap());
    assert_eq!(app.app_state(id), "submitted");
    let mails = app.mails("admission.mail.received");
    assert!(
        mails
            .iter()
            .any(|(to, _)| to == "alpha@demo.dataop.invalid")
    );
    assert!(
        mails
            .iter()
            .any(|(to, _)| to == "regulator@demo.dataop.invalid")
    );
    assert!(mails[0].1.contains(&format!("#{id}")));

    // Reviewers: the regulator yes; an expert only once assigned.
    assert_eq!(app.get(&reg, &url).0, 200);
    let expert = app.browser("expert");
    let other_org = app.org_of("expert");
    let mut conn = app.t.conn();
    NewUser::new(
        other_org,
        "expert2",
        "另一位专家",
        "unused".into(),
        Role::Expert,
        dataop::db::to_micros(app.t.state().clock.now()),
    )
    .insert(&mut conn)
    .unwrap();
    drop(conn);
    let expert2 = app.browser("expert2");
    assert_eq!(app.get(&expert, &url).0, 404);
    assert_eq!(app.get(&expert, &format!("/applications/{id}")).0, 404);
    let eid = app.user_id("expert").to_string();
    let res = app.post(
        &reg,
        &format!("/applications/{id}/assign"),
        &[("expert", eid.as_str())],
    );
    assert_eq!(res.status(), 303);
    assert_eq!(app.get(&expert, &url).0, 200);
    assert_eq!(app.get(&expert2, &url).0, 404);
    assert_eq!(app.get(&expert2, &format!("/applications/{id}")).0, 404);
    // The applicant can no longer change it.
    assert_eq!(app.upload(&alpha, id, "late.pdf", PDF).status(), 409);
    assert_eq!(app.fill(&alpha, id, ds, "save").status(), 409);
}

#[test]
fn review_return_opinion_rejection_and_messages() {
    let app = spawn();
    let reg = app.browser("regulator");
    let beta = app.browser("beta");
    let (_, id, ds) = app.submitted(&reg, &beta);

    // Return for supplement with the list of what is missing; resubmission.
    let res = app.post(
        &reg,
        &format!("/applications/{id}/return"),
        &[("missing", "")],
    );
    assert_eq!(res.status(), 422, "a return must say what is missing");
    assert_eq!(app.app_state(id), "submitted");
    let res = app.post(
        &reg,
        &format!("/applications/{id}/return"),
        &[("missing", "请补充等保测评报告原件")],
    );
    assert_eq!(res.status(), 303);
    assert_eq!(app.app_state(id), "returned");
    let html = app.get(&beta, &format!("/applications/{id}")).1;
    assert!(html.contains("请补充等保测评报告原件") && html.contains("退回补正"));
    assert!(
        app.mails("admission.mail.returned")[0]
            .1
            .contains("请补充等保测评报告原件")
    );
    assert_eq!(app.fill(&beta, id, ds, "submit").status(), 303);
    assert_eq!(app.app_state(id), "submitted");

    // An expert's opinion, filed once.
    let eid = app.user_id("expert").to_string();
    assert_eq!(
        app.post(
            &reg,
            &format!("/applications/{id}/assign"),
            &[("expert", eid.as_str())]
        )
        .status(),
        303
    );
    assert_eq!(app.app_state(id), "in_review");
    assert_eq!(
        app.mails("admission.mail.expert_assigned")[0].0,
        "chen.expert@example.cn"
    );
    let expert = app.browser("expert");
    assert!(
        app.get(&expert, "/expert/assignments")
            .1
            .contains(&format!("/applications/{id}"))
    );
    let res = app.post(
        &expert,
        &format!("/applications/{id}/opinion"),
        &[("recommendation", "reject"), ("opinion", "安全措施不足")],
    );
    assert_eq!(res.status(), 303);
    let before = app.audit_count();
    let res = app.post(
        &expert,
        &format!("/applications/{id}/opinion"),
        &[("recommendation", "approve"), ("opinion", "改主意")],
    );
    assert_eq!(res.status(), 409);
    assert_eq!(app.audit_count(), before);
    let org = app.org_of("beta");
    app.t.exec_sql(&format!(
        "INSERT INTO credit_records (org_id, kind, summary, created_at) \
         VALUES ({org}, 'rectification', '逾期未整改数据安全问题', CURRENT_TIMESTAMP)"
    ));
    let html = app.get(&reg, &format!("/applications/{id}")).1;
    assert!(html.contains("安全措施不足") && html.contains("不同意"));
    assert!(
        html.contains("逾期未整改数据安全问题"),
        "the regulator sees the credit record"
    );
    assert!(
        !app.get(&beta, &format!("/applications/{id}"))
            .1
            .contains("逾期未整改数据安全问题"),
        "the applicant page does not show the review material"
    );
    let orgs = app.get(&reg, "/admin/orgs").1;
    assert!(orgs.contains(&format!("href=\"/admission/orgs/{org}\">1</a>")));
    assert!(
        app.get(&reg, &format!("/admission/orgs/{org}"))
            .1
            .contains("逾期未整改数据安全问题")
    );

    // A rejection needs reasons, which the applicant sees.
    let res = app.post(
        &reg,
        &format!("/applications/{id}/reject"),
        &[("reasons", " ")],
    );
    assert_eq!(res.status(), 422);
    assert!(res.text().unwrap().contains("必须说明理由"));
    assert_eq!(app.app_state(id), "in_review");
    let res = app.post(
        &reg,
        &format!("/applications/{id}/reject"),
        &[("reasons", "技术安全措施不满足等保三级要求")],
    );
    assert_eq!(res.status(), 303);
    assert_eq!(app.app_state(id), "rejected");
    let html = app.get(&beta, &format!("/applications/{id}")).1;
    assert!(html.contains("技术安全措施不满足等保三级要求"));
    assert!(html.contains("不予准入"));
    // The history shows every transition with who.
    for step in ["提交", "退回补正", "指派专家"] {
        assert!(html.contains(step), "history has {step}");
    }
    assert!(html.contains("regulator") && html.contains("beta"));
    assert!(
        app.mails("admission.mail.rejected")[0]
            .1
            .contains("技术安全措施不满足等保三级要求")
    );

    // Rejected is final.
    let before = app.audit_count();
    assert_eq!(
        app.post(&reg, &format!("/applications/{id}/approve"), &[])
            .status(),
        409
    );
    assert_eq!(app.fill(&beta, id, ds, "submit").status(), 409);
    assert_eq!(app.app_state(id), "rejected");
    assert_eq!(app.audit_count(), before);
}

#[test]
fn notice_objections_and_admission() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let (_, id, _) = app.submitted(&reg, &alpha);
    app.upload(&alpha, id, "x.pdf", PDF);
    app.approve(&reg, id);
    assert!(
        app.mails("admission.mail.approved")[0]
            .0
            .starts_with("alpha@")
    );

    // The public notice shows the organisation, code, call, datasets and scenario.
    let anon = app.t.client();
    let list = app.get(&anon, "/notices").1;
    assert!(list.contains("阿尔法健康科技有限公司") && list.contains("门诊记录"));
    let (status, html) = app.get(&anon, &format!("/notices/{id}"));
    assert_eq!(status, 200);
    assert!(html.contains("91330106700000") && html.contains("科研"));
    assert!(
        !html.contains("/attachments/"),
        "no attachments on the notice"
    );

    // The anti-abuse check: a wrong answer is refused, nothing is filed.
    let token = common::csrf_from(&html).unwrap();
    let check = value_of(&html, "check");
    let wrong = (answer_of(&html) + 1).to_string();
    let res = app.t.post_form(
        &anon,
        &format!("/notices/{id}/objections"),
        &[
            ("csrf", token.as_str()),
            ("check", check.as_str()),
            ("answer", wrong.as_str()),
            ("name", "张三"),
            ("contact", "z@example.cn"),
            ("grounds", "理由"),
        ],
    );
    assert_eq!(res.status(), 422);
    assert!(res.text().unwrap().contains("校验答案错误"));
    let n: i64 = dataop::schema::objections::table
        .count()
        .get_result(&mut app.t.conn())
        .unwrap();
    assert_eq!(n, 0);

    // An objection; the regulators are emailed; it is upheld: back to review.
    assert_eq!(app.object(id, "z@example.cn").status(), 303);
    assert!(
        app.mails("admission.mail.objection_filed")[0]
            .0
            .starts_with("regulator@")
    );
    let oid = app.pending_objection(id);
    let desk = app.get(&reg, "/admission").1;
    assert!(desk.contains("待处理异议") && desk.contains("张三"));
    let res = app.post(
        &reg,
        &format!("/admission/objections/{oid}/uphold"),
        &[("reasons", "")],
    );
    assert_eq!(res.status(), 422);
    let res = app.post(
        &reg,
        &format!("/admission/objections/{oid}/uphold"),
        &[("reasons", "需核实数据泄露事件")],
    );
    assert_eq!(res.status(), 303);
    assert_eq!(app.app_state(id), "in_review");
    let decided = app.mails("admission.mail.objection_decided");
    assert!(decided.iter().any(|(to, _)| to == "z@example.cn"));
    assert!(
        decided
            .iter()
            .any(|(to, b)| to.starts_with("alpha@") && b.contains("需核实数据泄露事件"))
    );
    assert!(
        app.get(&alpha, &format!("/applications/{id}"))
            .1
            .contains("需核实数据泄露事件")
    );
    let before = app.audit_count();
    assert_eq!(
        app.post(
            &reg,
            &format!("/admission/objections/{oid}/dismiss"),
            &[("reasons", "x")]
        )
        .status(),
        409,
        "a decided objection stays decided"
    );
    assert_eq!(app.audit_count(), before);

    // Approved again; another objection, dismissed with reasons.
    app.approve(&reg, id);
    assert_eq!(app.object(id, "13800000000").status(), 303);
    let oid = app.pending_objection(id);
    let res = app.post(
        &reg,
        &format!("/admission/objections/{oid}/dismiss"),
        &[("reasons", "经核实，所述事件与该企业无关")],
    );
    assert_eq!(res.status(), 303);
    assert_eq!(app.app_state(id), "notice");

    // The notice period ends: the scheduler admits.
    dataop::scheduler::tick(app.t.state());
    assert_eq!(app.app_state(id), "notice", "not before the period ends");
    app.t.state().clock.advance(Duration::days(10));
    // Objections are no longer taken after the period.
    assert!(
        !app.get(&anon, &format!("/notices/{id}"))
            .1
            .contains("name=\"grounds\"")
    );
    dataop::scheduler::tick(app.t.state());
    assert_eq!(app.app_state(id), "admitted");
    assert!(
        app.mails("admission.mail.admitted")[0]
            .0
            .starts_with("alpha@")
    );
    assert!(
        app.get(&anon, "/notices")
            .1
            .contains("阿尔法健康科技有限公司")
    );
    let before = app.audit_count();
    for action in ["return", "assign", "approve"] {
        let res = app.post(
            &reg,
            &format!("/applications/{id}/{action}"),
            &[("missing", "x"), ("expert", "1"), ("note", "")],
        );
        assert_eq!(res.status(), 409, "{action} on an admitted application");
    }
    assert_eq!(app.upload(&alpha, id, "late.pdf", PDF).status(), 409);
    assert_eq!(
        app.post(
            &reg,
            &format!("/applications/{id}/reject"),
            &[("reasons", "x")]
        )
        .status(),
        409
    );
    assert_eq!(app.app_state(id), "admitted");
    assert_eq!(app.audit_count(), before);
}

/// An objector's contact is an email address or a phone number.
#[test]
fn an_objection_contact_is_an_email_or_a_phone_number() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let (_, id, _) = app.submitted(&reg, &alpha);
    app.approve(&reg, id);
    for contact in ["call me", "z@example", "12345"] {
        let res = app.object(id, contact);
        assert_eq!(res.status(), 422, "{contact}");
        let html = res.text().unwrap();
        assert!(
            html.contains("联系方式须为电子邮箱或电话号码。"),
            "{contact}: {html}"
        );
        assert!(html.contains("该企业曾发生数据泄露。"), "the grounds kept");
    }
    assert_eq!(app.object(id, "0571-88886666").status(), 303);
    assert_eq!(app.object(id, "z@example.cn").status(), 303);
}

#[test]
fn objections_are_rate_limited_per_address() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let (_, id, _) = app.submitted(&reg, &alpha);
    app.approve(&reg, id);
    for _ in 0..5 {
        assert_eq!(app.object(id, "a@example.cn").status(), 303);
    }
    assert_eq!(app.object(id, "a@example.cn").status(), 429);
    let n: i64 = dataop::schema::objections::table
        .count()
        .get_result(&mut app.t.conn())
        .unwrap();
    assert_eq!(n, 5);
    // Too long grounds are refused.
    let c = app.t.client();
    let html = app.get(&c, &format!("/notices/{id}")).1;
    let token = common::csrf_from(&html).unwrap();
    let check = value_of(&html, "check");
    let answer = answer_of(&html).to_string();
    let grounds = "长".repeat(5001);
    let res = app.t.post_form(
        &c,
        &format!("/notices/{id}/objections"),
        &[
            ("csrf", token.as_str()),
            ("check", check.as_str()),
            ("answer", answer.as_str()),
            ("name", "王五"),
            ("contact", "x"),
            ("grounds", grounds.as_str()),
        ],
    );
    assert_eq!(res.status(), 422);
}

#[test]
fn handling_the_last_objection_after_the_period_admits_at_once() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let (_, id, _) = app.submitted(&reg, &alpha);
    app.approve(&reg, id);
    assert_eq!(app.object(id, "li@example.cn").status(), 303);
    let oid = app.pending_objection(id);
    app.t.state().clock.advance(Duration::days(10));
    dataop::scheduler::tick(app.t.state());
    assert_eq!(
        app.app_state(id),
        "notice",
        "a pending objection holds the admission"
    );
    let desk = app.get(&reg, "/admission").1;
    assert!(
        desk.contains("overdue") || desk.contains("已逾期"),
        "the objection is overdue"
    );
    let res = app.post(
        &reg,
        &format!("/admission/objections/{oid}/dismiss"),
        &[("reasons", "理由不成立")],
    );
    assert_eq!(res.status(), 303);
    assert_eq!(app.app_state(id), "admitted");
}

/// A refused attachment upload shows the application page again, the evidence group chosen
/// kept and the reason beside the upload form.
#[test]
fn a_refused_upload_shows_the_application_again_with_its_group() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let ds = app.dataset("门诊记录", "conditional");
    let call = app.published_call(&reg, &[ds], 30);
    let id = app.start(&alpha, call);
    let res = app.upload(&alpha, id, "report.pdf", b"only text");
    assert_eq!(res.status(), 422);
    let html = res.text().unwrap();
    let act = format!("/applications/{id}/attachments");
    let form = &html[html
        .find(&format!("<form method=\"post\" action=\"{act}\""))
        .expect("the application page with its upload form")..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(
        form.contains("<p class=\"field-error\">只接受 PDF、PNG 或 JPEG 文件"),
        "the reason beside the form: {form}"
    );
    assert!(
        form.contains("<option value=\"technical\" selected>"),
        "the group kept: {form}"
    );

    // A group that is not UTF-8 is refused naming the field (it was read lossily before).
    let csrf = app.t.csrf(&alpha, &format!("/applications/{id}"));
    let form = multipart::Form::new()
        .text("csrf", csrf)
        .part("group", multipart::Part::bytes(b"technical\xff".to_vec()))
        .part(
            "file",
            multipart::Part::bytes(PDF.to_vec())
                .file_name("a.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let res = alpha.post(app.t.url(&act)).multipart(form).send().unwrap();
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .unwrap()
            .contains("字段“group”不是有效的 UTF-8 文本")
    );
}

/// A refused decision on an objection shows the application page again, with the reasons as
/// typed and the refusal beside the form; a decided objection answers 409 on that page.
#[test]
fn a_refused_objection_decision_shows_the_application_again() {
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let (_, id, _) = app.submitted(&reg, &alpha);
    app.approve(&reg, id);
    assert_eq!(app.object(id, "li@example.cn").status(), 303);
    let oid = app.pending_objection(id);
    let act = format!("/admission/objections/{oid}/uphold");
    let too_long = "理".repeat(20_001);
    let res = app.post(&reg, &act, &[("reasons", too_long.as_str())]);
    assert_eq!(res.status(), 422);
    let html = res.text().unwrap();
    let form = &html[html
        .find(&format!("<form method=\"post\" action=\"{act}\""))
        .expect("the application page with the objection's forms")..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(
        form.contains("<p class=\"field-error\">文字超过允许的长度。</p>"),
        "{form}"
    );
    assert!(form.contains(&format!(">{too_long}</textarea>")), "kept");
    let res = app.post(&reg, &act, &[("reasons", "")]);
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .unwrap()
            .contains("<p class=\"field-error\">必须说明理由。</p>")
    );
    assert_eq!(app.app_state(id), "notice", "nothing decided");

    let dismiss = format!("/admission/objections/{oid}/dismiss");
    assert_eq!(
        app.post(&reg, &dismiss, &[("reasons", "理由不成立")])
            .status(),
        303
    );
    let res = app.post(&reg, &dismiss, &[("reasons", "再次驳回")]);
    assert_eq!(res.status(), 409);
    let html = res.text().unwrap();
    assert!(html.contains("该异议已经处理。"), "the reason");
    assert!(
        html.contains(&format!(" #{id} · ")) && html.contains("id=\"objections\""),
        "on the application page"
    );
}

/// The first Friday on or after `d`.
fn next_friday(d: NaiveDate) -> NaiveDate {
    let mut d = d;
    while d.weekday() != Weekday::Fri {
        d = d.succ_opt().unwrap();
    }
    d
}

#[test]
fn deadlines_count_working_days_across_a_weekend_and_a_holiday() {
    let app = spawn_with(|c| {
        c.review_days = 2;
        c.expert_days = 3;
    });
    let today = app.today();
    let friday = next_friday(today);
    app.t
        .state()
        .clock
        .advance(Duration::days((friday - today).num_days()));
    assert_eq!(app.today(), friday);
    let monday = friday + Duration::days(3);
    app.t.exec_sql(&format!(
        "INSERT INTO calendar_days (day, kind, name_zh, name_en, created_at) \
         VALUES ('{monday}', 'holiday', '测试假日', 'Test holiday', CURRENT_TIMESTAMP)"
    ));
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let (_, id, _) = app.submitted(&reg, &alpha);
    // Friday + 2 working days: Saturday, Sunday and the Monday holiday are skipped.
    let due = friday + Duration::days(5);
    let stored: Option<NaiveDate> = applications::table
        .find(id)
        .select(applications::review_due_on)
        .first(&mut app.t.conn())
        .unwrap();
    assert_eq!(stored, Some(due));
    let html = app.get(&reg, &format!("/applications/{id}")).1;
    assert!(html.contains(&due.to_string()));
    assert!(html.contains("剩余 2 个工作日"));
    let eid = app.user_id("expert").to_string();
    app.post(
        &reg,
        &format!("/applications/{id}/assign"),
        &[("expert", eid.as_str())],
    );
    let expert_due = friday + Duration::days(6);
    assert!(
        app.get(&reg, "/admission")
            .1
            .contains(&expert_due.to_string())
    );
    assert!(
        app.mails("admission.mail.expert_assigned")[0]
            .1
            .contains(&expert_due.to_string())
    );
    // A week later the review is overdue, and the desk says so.
    app.t.state().clock.advance(Duration::days(7));
    let desk = app.get(&reg, "/admission").1;
    assert!(desk.contains("due overdue") && desk.contains("已逾期"));
}

#[test]
fn demo_world_has_a_call_and_betas_application_waiting() {
    let app = spawn();
    let ds = app.dataset("门诊就诊记录（合成数据）", "conditional");
    diesel::update(dataop::schema::datasets::table.find(ds))
        .set(dataop::schema::datasets::title_en.eq(dataop::catalog::demo::DEMO_TITLE_EN))
        .execute(&mut app.t.conn())
        .unwrap();
    dataop::admission::demo::seed(app.t.state()).unwrap();
    dataop::admission::demo::seed(app.t.state()).unwrap();
    let n: i64 = calls::table.count().get_result(&mut app.t.conn()).unwrap();
    assert_eq!(n, 1, "seeding twice keeps one call");
    let states: Vec<String> = applications::table
        .select(applications::state)
        .load(&mut app.t.conn())
        .unwrap();
    assert_eq!(states, ["submitted"]);
    let reg = app.browser("regulator");
    let desk = app.get(&reg, "/admission").1;
    assert!(desk.contains("贝塔医疗数据服务有限公司"));
    assert!(
        app.get(&app.t.client(), "/calls")
            .1
            .contains("医疗健康公共数据授权运营申请通告")
    );
    let beta = app.browser("beta");
    assert!(app.get(&beta, "/applications").1.contains("已提交"));
}

/// Two regulators decide one application at the same moment, one approving and one
/// rejecting: one wins, the other is refused (409) and changes nothing: no state, audit
/// entry, history entry or mail of its own. On PostgreSQL the race is forced: a row lock on
/// the application holds both requests after they read it, at their compare-and-set.
#[test]
fn two_concurrent_transitions_one_wins_the_other_changes_nothing() {
    use diesel::connection::SimpleConnection as _;
    let app = spawn();
    let reg = app.browser("regulator");
    let alpha = app.browser("alpha");
    let (_, id, _) = app.submitted(&reg, &alpha);
    let mut lock = app.t.conn();
    let postgres = lock.backend() == dataop::db::Backend::Postgres;
    if postgres {
        lock.batch_execute(&format!(
            "BEGIN; SELECT id FROM applications WHERE id = {id} FOR UPDATE;"
        ))
        .unwrap();
    }
    let statuses = std::thread::scope(|s| {
        let approve = s.spawn(|| {
            app.post(
                &reg,
                &format!("/applications/{id}/approve"),
                &[("note", "材料齐全")],
            )
            .status()
            .as_u16()
        });
        let reject = s.spawn(|| {
            app.post(
                &reg,
                &format!("/applications/{id}/reject"),
                &[("reasons", "安全措施不足")],
            )
            .status()
            .as_u16()
        });
        if postgres {
            let waiting = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'";
            let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while app.t.count_sql(waiting) < 2 {
                assert!(
                    std::time::Instant::now() < until,
                    "both requests read the application and wait for its row"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            lock.batch_execute("COMMIT").unwrap();
        }
        [approve.join().unwrap(), reject.join().unwrap()]
    });
    assert!(
        matches!(statuses, [303, 409] | [409, 303]),
        "one wins, one is refused: {statuses:?}"
    );
    let (won, lost) = if statuses[0] == 303 {
        assert_eq!(app.app_state(id), "notice");
        ("approve", "reject")
    } else {
        assert_eq!(app.app_state(id), "rejected");
        ("reject", "approve")
    };
    let count = |sql: String| app.t.count_sql(&sql);
    for (verb, n) in [(won, 1), (lost, 0)] {
        assert_eq!(
            count(format!(
                "SELECT COUNT(*) AS n FROM audit_log WHERE object_type = 'application' \
                 AND object_id = '{id}' AND action = 'application.{verb}'"
            )),
            n,
            "audit entries of {verb}"
        );
        assert_eq!(
            count(format!(
                "SELECT COUNT(*) AS n FROM application_events \
                 WHERE application_id = {id} AND action = '{verb}'"
            )),
            n,
            "history entries of {verb}"
        );
    }
    let (won_mail, lost_mail) = if won == "approve" {
        ("approved", "rejected")
    } else {
        ("rejected", "approved")
    };
    assert!(!app.mails(&format!("admission.mail.{won_mail}")).is_empty());
    assert!(
        app.mails(&format!("admission.mail.{lost_mail}")).is_empty(),
        "the refused command queued no mail"
    );
    let reasons: String = applications::table
        .find(id)
        .select(applications::decision_reasons)
        .first(&mut app.t.conn())
        .unwrap();
    let want = if won == "approve" {
        "材料齐全"
    } else {
        "安全措施不足"
    };
    assert_eq!(reasons, want, "the refused command wrote nothing");
}
