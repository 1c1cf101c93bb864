//! The whole path through the real HTTP routes, once per exit route: the regulator publishes a
//! call offering the demo dataset, an enterprise applies with an attachment, the application is
//! returned for supplement and resubmitted, an expert files an opinion, the regulator approves,
//! the public notice shows it, an objection (anti-abuse check answered) is dismissed with
//! reasons, the notice period ends and the scheduler admits, the regulator drafts the agreement,
//! the operator signs, the regulator seals, the public verification page says valid; then
//! (a) expiry, (b) early termination on request, (c) rectification ending in termination,
//! (d) termination for violation, each checked as a user sees it (the agreement page, the
//! verification page, the credit record, the operator's API token refused).
//!
//! Only the set-up that has no web form goes to the database directly (the dataset, which
//! ingestion creates, and looking up user ids); every step of the workflow is an HTTP request.
//! SQLite by default; PostgreSQL when `DATAOP_TEST_POSTGRES_URL` is set.

use chrono::{Duration, NaiveDate};
use dataop::catalog::model::{DatasetFields, insert_dataset};
use diesel::prelude::*;
use reqwest::blocking::{Client, Response, multipart};

mod common;

use common::{DEMO_PASSWORD, TestApp, csrf_from};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
const ALPHA_NAME: &str = "阿尔法健康科技有限公司";
const DATASET_ZH: &str = "门诊就诊记录（合成数据）";

/// An agreement in force for `alpha`, reached through every admission step over HTTP.
struct Journey {
    app: TestApp,
    reg: Client,
    alpha: Client,
    /// The application.
    application: i64,
    /// The dataset on offer.
    dataset: i64,
    /// The agreement.
    agreement: i64,
    /// The agreement's number, as shown on its page.
    number: String,
    /// The sealed hash, as shown on its page.
    hash: String,
}

/// `(org_id, user_id)` of `username`.
fn ids_of(app: &TestApp, username: &str) -> (i64, i64) {
    use dataop::schema::users;
    users::table
        .filter(users::username.eq(username))
        .select((users::org_id, users::id))
        .first(&mut *app.conn())
        .unwrap()
}

/// The demo dataset of the demo provider (conditionally open), as ingestion would create it.
fn demo_dataset(app: &TestApp) -> i64 {
    let (provider_org, provider_user) = ids_of(app, "provider");
    let fields = DatasetFields {
        title_zh: DATASET_ZH.into(),
        title_en: dataop::catalog::demo::DEMO_TITLE_EN.into(),
        description_zh: "合成的门诊就诊记录".into(),
        description_en: "Synthetic outpatient visits".into(),
        category: "medical_services".into(),
        grade: 3,
        open_type: "conditional".into(),
        sharing_type: "conditional".into(),
        update_frequency: "monthly".into(),
        source: "HIS".into(),
        contact: "office".into(),
    };
    insert_dataset(
        &mut app.conn(),
        provider_org,
        provider_user,
        &fields,
        dataop::db::to_micros(app.state().clock.now()),
    )
    .unwrap()
}

/// POSTs `fields` to `path` with the CSRF token of the page at `page`; returns the status and
/// the `Location` header or the body.
fn post(
    app: &TestApp,
    c: &Client,
    page: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    outcome(app.post_form_from(c, page, path, fields))
}

fn outcome(r: Response) -> (u16, String) {
    let s = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (s, loc.unwrap_or_else(|| r.text().unwrap()))
}

/// The number right after the first occurrence of `prefix` in `text`.
fn id_after(text: &str, prefix: &str) -> i64 {
    let i = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} not found in {text}"))
        + prefix.len();
    let digits: String = text[i..].chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no id after {prefix}"))
}

fn value_of(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = html.find(&pat).unwrap() + pat.len();
    html[i..i + html[i..].find('"').unwrap()].to_owned()
}

/// The answer to the notice page's anti-abuse question `a + b = ?`.
fn answer_of(html: &str) -> i64 {
    let end = html.find(" = ?").expect("the anti-abuse question");
    let words: Vec<&str> = html[..end].split_whitespace().rev().take(3).collect();
    words[0].parse::<i64>().unwrap() + words[2].parse::<i64>().unwrap()
}

fn app_state(app: &TestApp, id: i64) -> String {
    use dataop::schema::applications;
    applications::table
        .find(id)
        .select(applications::state)
        .first(&mut *app.conn())
        .unwrap()
}

fn agreement_state(app: &TestApp, id: i64) -> String {
    use dataop::schema::agreements;
    agreements::table
        .find(id)
        .select(agreements::state)
        .first(&mut *app.conn())
        .unwrap()
}

/// The application form as `alpha` submits or saves it (`op`).
fn fill(
    app: &TestApp,
    alpha: &Client,
    id: i64,
    dataset: i64,
    op: &str,
    basic: &str,
) -> (u16, String) {
    let ds = dataset.to_string();
    let purpose = format!("purpose_{dataset}");
    let page = format!("/applications/{id}");
    post(
        app,
        alpha,
        &page,
        &page,
        &[
            ("op", op),
            ("scenario", "科研"),
            ("dataset", ds.as_str()),
            (purpose.as_str(), "按区县统计门诊负担"),
            ("evidence_basic", basic),
            ("evidence_technical", "等保三级测评报告"),
            ("evidence_scenario", "面向卫生部门的统计分析"),
            ("evidence_domain", "遵守医疗数据管理规定"),
            ("declared", "on"),
        ],
    )
}

/// The fields of the agreement draft on `dataset`.
fn agreement_fields(dataset: i64) -> Vec<(String, String)> {
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
    v.push(("dataset".into(), dataset.to_string()));
    v.push((format!("epsilon_{dataset}"), "1.5".into()));
    v
}

/// Walks call → application → supplement → expert → approval → notice → objection dismissed
/// → admission → agreement → signature → seal → verification, asserting each step as a user
/// sees it.
fn journey() -> Journey {
    let app = TestApp::builder().demo().start();
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let expert = app.logged_in("expert", DEMO_PASSWORD);
    let anon = app.client();
    let dataset = demo_dataset(&app);
    let today = app.state().clock.today();

    // 1. The regulator drafts and publishes a call offering the dataset.
    let opens = today.to_string();
    let closes = (today + Duration::days(30)).to_string();
    let ds = dataset.to_string();
    let (s, loc) = post(
        &app,
        &reg,
        "/admission/calls/new",
        "/admission/calls",
        &[
            ("domain", "medical_services"),
            ("title_zh", "医疗健康数据授权运营通告"),
            ("title_en", "Medical data call"),
            ("body_zh", "正文"),
            ("body_en", "Text"),
            ("scenarios", "保险精算\n科研"),
            ("conditions", "等保三级"),
            ("opens_on", opens.as_str()),
            ("closes_on", closes.as_str()),
            ("dataset", ds.as_str()),
        ],
    );
    assert_eq!(s, 303, "{loc}");
    let call = id_after(&loc, "/admission/calls/");
    let manage = format!("/admission/calls/{call}");
    let (s, _) = post(&app, &reg, &manage, &format!("{manage}/publish"), &[]);
    assert_eq!(s, 303);
    let (s, html) = app.get_text(&anon, &format!("/calls/{call}"));
    assert_eq!(s, 200);
    assert!(html.contains("医疗健康数据授权运营通告") && html.contains(DATASET_ZH));
    assert!(
        app.get_text(&anon, "/calls")
            .1
            .contains("医疗健康数据授权运营通告")
    );

    // 2. alpha applies, with an attachment, and submits.
    let (_, html) = app.get_text(&alpha, &format!("/calls/{call}"));
    assert!(html.contains(&format!("action=\"/calls/{call}/apply\"")));
    let (s, loc) = post(
        &app,
        &alpha,
        &format!("/calls/{call}"),
        &format!("/calls/{call}/apply"),
        &[],
    );
    assert_eq!(s, 303, "{loc}");
    let application = id_after(&loc, "/applications/");
    let page = format!("/applications/{application}");
    let (_, html) = app.get_text(&alpha, &page);
    assert!(html.contains(ALPHA_NAME), "prefilled from the organisation");
    let form = multipart::Form::new()
        .text("csrf", app.csrf(&alpha, &page))
        .text("group", "technical")
        .part(
            "file",
            multipart::Part::bytes(PDF.to_vec())
                .file_name("等保测评报告.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let r = alpha
        .post(app.url(&format!("{page}/attachments")))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let (s, body) = fill(&app, &alpha, application, dataset, "submit", "依法设立");
    assert_eq!(s, 303, "{body}");
    let (_, html) = app.get_text(&alpha, &page);
    assert!(html.contains("已提交") && html.contains("等保测评报告.pdf"));
    let attachment = id_after(&html, &format!("{page}/attachments/"));
    let attachment_url = format!("{page}/attachments/{attachment}");

    // 3. The regulator returns it for supplement; alpha completes and resubmits.
    let (_, html) = app.get_text(&reg, &page);
    assert!(
        html.contains("等保测评报告.pdf"),
        "the reviewer sees the attachment"
    );
    let r = reg.get(app.url(&attachment_url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), PDF);
    let (s, _) = post(
        &app,
        &reg,
        &page,
        &format!("{page}/return"),
        &[("missing", "请补充信用报告")],
    );
    assert_eq!(s, 303);
    let (_, html) = app.get_text(&alpha, &page);
    assert!(html.contains("退回补正") && html.contains("请补充信用报告"));
    let (s, body) = fill(
        &app,
        &alpha,
        application,
        dataset,
        "submit",
        "依法设立；附信用报告",
    );
    assert_eq!(s, 303, "{body}");
    assert_eq!(app_state(&app, application), "submitted");

    // 4. An expert is assigned and files an opinion.
    let (_, expert_id) = ids_of(&app, "expert");
    let eid = expert_id.to_string();
    let (_, html) = app.get_text(&reg, &page);
    assert!(
        html.contains(&format!("<option value=\"{expert_id}\"")),
        "the expert is offered"
    );
    let (s, _) = post(
        &app,
        &reg,
        &page,
        &format!("{page}/assign"),
        &[("expert", eid.as_str())],
    );
    assert_eq!(s, 303);
    let (_, html) = app.get_text(&expert, "/expert/assignments");
    assert!(html.contains(&format!("{page}\"")), "{html}");
    let (_, html) = app.get_text(&expert, &page);
    assert!(
        html.contains("依法设立；附信用报告"),
        "the expert sees the resubmission"
    );
    assert_eq!(app.get(&expert, &attachment_url).status().as_u16(), 200);
    let (s, _) = post(
        &app,
        &expert,
        &page,
        &format!("{page}/opinion"),
        &[
            ("recommendation", "approve"),
            ("opinion", "安全措施充分，同意准入"),
        ],
    );
    assert_eq!(s, 303);
    assert_eq!(app_state(&app, application), "in_review");

    // 5. The regulator sees the opinion and an empty credit record, and approves.
    let (_, html) = app.get_text(&reg, &page);
    assert!(html.contains("安全措施充分，同意准入") && html.contains("已提交意见"));
    assert!(html.contains("信用档案无记录。"));
    let (s, _) = post(
        &app,
        &reg,
        &page,
        &format!("{page}/approve"),
        &[("note", "")],
    );
    assert_eq!(s, 303);
    let (_, html) = app.get_text(&alpha, &page);
    assert!(html.contains("公示中"));

    // 6. The public notice shows it; someone objects, answering the anti-abuse question.
    let (_, list) = app.get_text(&anon, "/notices");
    assert!(list.contains(ALPHA_NAME) && list.contains(DATASET_ZH));
    let notice = format!("/notices/{application}");
    let (s, html) = app.get_text(&anon, &notice);
    assert_eq!(s, 200);
    assert!(html.contains(ALPHA_NAME) && html.contains("科研"));
    let token = csrf_from(&html).unwrap();
    let check = value_of(&html, "check");
    let answer = answer_of(&html).to_string();
    let (s, body) = outcome(app.post_form(
        &anon,
        &format!("{notice}/objections"),
        &[
            ("csrf", token.as_str()),
            ("check", check.as_str()),
            ("answer", answer.as_str()),
            ("name", "张三"),
            ("contact", "zhang@example.cn"),
            ("grounds", "该企业曾发生数据泄露。"),
        ],
    ));
    assert_eq!(s, 303, "{body}");

    // 7. The regulator dismisses it with reasons, from the application page.
    let (_, desk) = app.get_text(&reg, "/admission");
    assert!(desk.contains("待处理异议") && desk.contains("张三"));
    let (_, html) = app.get_text(&reg, &page);
    assert!(html.contains("该企业曾发生数据泄露。"));
    let objection = id_after(&html, "action=\"/admission/objections/");
    let (s, _) = post(
        &app,
        &reg,
        &page,
        &format!("/admission/objections/{objection}/dismiss"),
        &[("reasons", "经核实，所述事件与该企业无关")],
    );
    assert_eq!(s, 303);
    let (_, html) = app.get_text(&alpha, &page);
    assert!(
        html.contains("经核实，所述事件与该企业无关"),
        "the applicant sees the decision"
    );
    assert_eq!(app_state(&app, application), "notice");

    // 8. The notice period ends: the scheduler admits.
    dataop::scheduler::tick(app.state());
    assert_eq!(
        app_state(&app, application),
        "notice",
        "not before the period ends"
    );
    app.state().clock.advance(Duration::days(10));
    dataop::scheduler::tick(app.state());
    assert_eq!(app_state(&app, application), "admitted");
    let (_, html) = app.get_text(&alpha, &page);
    assert!(html.contains("已准入"));
    let (_, html) = app.get_text(&anon, &notice);
    assert!(
        !html.contains("name=\"grounds\""),
        "no objections after the period"
    );

    // 9. The regulator drafts the agreement from the admitted application.
    let new = format!("/admin/applications/{application}/agreement/new");
    let (_, desk) = app.get_text(&reg, "/admin/agreements");
    assert!(
        desk.contains(&format!("href=\"{new}\"")),
        "waiting for a draft: {desk}"
    );
    let (s, form) = app.get_text(&reg, &new);
    assert_eq!(s, 200);
    assert!(form.contains(DATASET_ZH), "the approved dataset is offered");
    let mut f = agreement_fields(dataset);
    f.push(("csrf".into(), csrf_from(&form).unwrap()));
    let (s, loc) = outcome(
        reg.post(app.url(&format!("/admin/applications/{application}/agreement")))
            .form(&f)
            .send()
            .unwrap(),
    );
    assert_eq!(s, 303, "{loc}");
    let agreement = id_after(&loc, "/agreements/");
    let show = format!("/agreements/{agreement}");

    // 10. Sent to the operator, signed, sealed.
    let (s, _) = post(
        &app,
        &reg,
        &show,
        &format!("/admin/agreements/{agreement}/submit"),
        &[],
    );
    assert_eq!(s, 303);
    let (_, html) = app.get_text(&alpha, "/agreements");
    assert!(html.contains(&show), "alpha has it to sign: {html}");
    let (_, html) = app.get_text(&alpha, &show);
    assert!(html.contains(&format!("action=\"{show}/sign\"")) && html.contains("分析各区门诊负担"));
    let (s, _) = post(
        &app,
        &alpha,
        &show,
        &format!("{show}/sign"),
        &[("name", ALPHA_NAME)],
    );
    assert_eq!(s, 303);
    let (s, _) = post(
        &app,
        &reg,
        &show,
        &format!("/admin/agreements/{agreement}/seal"),
        &[],
    );
    assert_eq!(s, 303);
    let (_, html) = app.get_text(&alpha, &show);
    assert!(html.contains("履行中"), "{html}");
    assert!(html.contains(DATASET_ZH));
    let number = number_on(&html);
    let hash = hash_on(&html);
    let (s, print) = app.get_text(&alpha, &format!("{show}/print"));
    assert_eq!(s, 200);
    assert!(print.contains(&number) && print.contains(&hash));

    let j = Journey {
        app,
        reg,
        alpha,
        application,
        dataset,
        agreement,
        number,
        hash,
    };
    // 11. Anyone can verify it.
    let v = j.verify();
    assert!(v.contains("notice-ok verdict"), "{v}");
    assert!(v.contains("当前状态：履行中"));
    assert!(j.access(), "alpha may use the dataset");
    j
}

/// The agreement number in the `<h1>` of an agreement page.
fn number_on(html: &str) -> String {
    let i = html.find("DATAOP-").expect("an agreement number");
    html[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// The sealed SHA-256 on an agreement page.
fn hash_on(html: &str) -> String {
    let pat = "<dt>SHA-256</dt><dd class=\"mono\">";
    let i = html.find(pat).expect("the sealed hash") + pat.len();
    let hash: String = html[i..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(hash.len(), 64);
    hash
}

impl Journey {
    fn show(&self) -> String {
        format!("/agreements/{}", self.agreement)
    }

    fn admin(&self, action: &str) -> String {
        format!("/admin/agreements/{}/{action}", self.agreement)
    }

    /// alpha's view of the agreement page.
    fn alpha_page(&self) -> String {
        let (s, html) = self.app.get_text(&self.alpha, &self.show());
        assert_eq!(s, 200);
        html
    }

    /// The public verification page for the number and hash shown on the agreement page.
    fn verify(&self) -> String {
        let (s, v) = self.app.get_text(
            &self.app.client(),
            &format!(
                "/agreements/verify?number={}&hash={}",
                self.number, self.hash
            ),
        );
        assert_eq!(s, 200);
        v
    }

    /// An API token of alpha, through the API.
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

    /// Whether alpha may use the dataset today under an agreement in force.
    fn access(&self) -> bool {
        let (org, _) = ids_of(&self.app, "alpha");
        dataop::agreements::in_force_for(
            &mut self.app.conn(),
            org,
            self.dataset,
            self.app.state().clock.today(),
        )
        .unwrap()
        .is_some()
    }

    /// New browser sessions for the regulator and alpha (web sessions last hours, and the
    /// expiry test moves the clock by two years).
    fn log_in_again(&mut self) {
        self.reg = self.app.logged_in("regulator", DEMO_PASSWORD);
        self.alpha = self.app.logged_in("alpha", DEMO_PASSWORD);
    }

    /// The expiry warnings mailed about the agreement.
    fn expiry_warnings(&self) -> i64 {
        use dataop::schema::mail_outbox;
        mail_outbox::table
            .filter(mail_outbox::template.eq("agreements.mail.expiry_warning"))
            .filter(mail_outbox::object_id.eq(self.agreement.to_string()))
            .count()
            .get_result(&mut *self.app.conn())
            .unwrap()
    }

    /// The regulator's view of alpha's credit record (organisation page).
    fn credit_page(&self) -> String {
        let (org, _) = ids_of(&self.app, "alpha");
        let (s, html) = self
            .app
            .get_text(&self.reg, &format!("/admission/orgs/{org}"));
        assert_eq!(s, 200);
        html
    }

    /// What every exit has in common, as the parties see it: the state label on the page and
    /// on the verification page, the token refused, the dataset closed, the disposal
    /// confirmation outstanding and then filed.
    fn assert_ended(&self, label: &str, token: &str) {
        assert_eq!(
            self.api_status(token),
            401,
            "the operator's API token is refused"
        );
        assert!(!self.access(), "no access to the dataset");
        let html = self.alpha_page();
        assert!(
            html.contains(&format!("{label}</span>")),
            "the badge says {label}"
        );
        assert!(html.contains("尚未提交数据处置确认"));
        assert!(!html.contains(&format!("action=\"{}/termination-request\"", self.show())));
        let v = self.verify();
        assert!(v.contains("notice-ok verdict"), "the seal stays valid: {v}");
        assert!(v.contains(&format!("当前状态：{label}")), "{v}");
        let today = self.app.state().clock.today().to_string();
        let (s, body) = post(
            &self.app,
            &self.alpha,
            &self.show(),
            &format!("{}/disposal", self.show()),
            &[
                ("what", "全部衍生数据与缓存"),
                ("on", today.as_str()),
                ("by", "赵阿尔法"),
            ],
        );
        assert_eq!(s, 303, "{body}");
        let html = self.alpha_page();
        assert!(html.contains("全部衍生数据与缓存") && !html.contains("尚未提交数据处置确认"));
    }

    /// The credit record: none for routes (a) and (b), one with its labelled kind naming the
    /// agreement and the note for (c) and (d), shown on the organisation page and to reviewers of the application.
    fn assert_credit(&self, note: Option<(&str, &str)>) {
        let org_page = self.credit_page();
        let (_, review) = self
            .app
            .get_text(&self.reg, &format!("/applications/{}", self.application));
        match note {
            None => {
                assert!(org_page.contains("信用档案无记录。"), "{org_page}");
                assert!(review.contains("信用档案无记录。"));
            }
            Some((kind, note)) => {
                let entry = format!("{}: {note}", self.number);
                assert!(org_page.contains(&entry), "{org_page}");
                assert!(review.contains(&entry), "the reviewers see it");
                assert!(
                    org_page.contains(kind) && review.contains(kind),
                    "kind labelled"
                );
            }
        }
    }
}

#[test]
fn whole_path_then_expiry() {
    let mut j = journey();
    let today = j.app.state().clock.today();
    let ends_on: NaiveDate = today
        .checked_add_months(chrono::Months::new(24))
        .unwrap()
        .pred_opt()
        .unwrap();
    assert!(
        j.alpha_page().contains(&format!("{today} – {ends_on}")),
        "a 2-year term from the seal"
    );

    // 30 days before the end both parties are warned, once.
    j.app
        .state()
        .clock
        .advance(Duration::days((ends_on - today).num_days() - 29));
    dataop::scheduler::tick(j.app.state());
    dataop::scheduler::tick(j.app.state());
    assert_eq!(j.expiry_warnings(), 2, "both parties are warned, once");
    j.log_in_again();
    let (_, desk) = j.app.get_text(&j.reg, "/admin/agreements");
    assert!(desk.contains("即将到期协议（30 日内）") && desk.contains(&j.number));
    assert!(desk.contains(&ends_on.to_string()));

    // The last day of the term: still in force, the operator works with a fresh token.
    j.app.state().clock.advance(Duration::days(29));
    assert_eq!(j.app.state().clock.today(), ends_on);
    dataop::scheduler::tick(j.app.state());
    j.log_in_again();
    assert!(j.alpha_page().contains("履行中</span>"));
    let token = j.token();
    assert_eq!(j.api_status(&token), 200);
    assert!(j.access());

    // The day after, the scheduler ends it.
    j.app.state().clock.advance(Duration::days(1));
    dataop::scheduler::tick(j.app.state());
    j.log_in_again();
    assert_eq!(agreement_state(&j.app, j.agreement), "expired");
    j.assert_ended("期满终止", &token);
    j.assert_credit(None);
}

#[test]
fn whole_path_then_early_termination_on_request() {
    let j = journey();
    let app = &j.app;
    let token = j.token();
    let show = j.show();
    let html = j.alpha_page();
    assert!(html.contains(&format!("action=\"{show}/termination-request\"")));
    let (s, _) = post(
        app,
        &j.alpha,
        &show,
        &format!("{show}/termination-request"),
        &[("note", "业务调整，申请提前终止")],
    );
    assert_eq!(s, 303);
    assert_eq!(
        j.api_status(&token),
        200,
        "nothing ends before the decision"
    );
    let (_, html) = app.get_text(&j.reg, &show);
    assert!(html.contains("业务调整，申请提前终止"));
    let request = id_after(
        &html,
        &format!("action=\"{}", j.admin("termination-requests/")),
    );
    let (s, _) = post(
        app,
        &j.reg,
        &show,
        &j.admin(&format!("termination-requests/{request}/decide")),
        &[("decision", "approve"), ("note", "同意提前终止")],
    );
    assert_eq!(s, 303);
    assert_eq!(agreement_state(app, j.agreement), "terminated_on_request");
    assert!(j.alpha_page().contains("同意提前终止"));
    j.assert_ended("依申请提前终止", &token);
    j.assert_credit(None);
}

#[test]
fn whole_path_then_rectification_ending_in_termination() {
    let j = journey();
    let app = &j.app;
    let token = j.token();
    let show = j.show();
    let (s, _) = post(
        app,
        &j.reg,
        &show,
        &j.admin("rectifications"),
        &[("note", "补充访问日志留存"), ("days", "5")],
    );
    assert_eq!(s, 303);
    let html = j.alpha_page();
    assert!(html.contains("补充访问日志留存") && html.contains("剩余 5 个工作日"));
    let rect = id_after(&html, &format!("action=\"{show}/rectifications/"));
    let (s, _) = post(
        app,
        &j.alpha,
        &show,
        &format!("{show}/rectifications/{rect}/answer"),
        &[("note", "已补充日志留存 3 个月")],
    );
    assert_eq!(s, 303);
    assert_eq!(j.api_status(&token), 200, "still in force while answered");
    let (_, html) = app.get_text(&j.reg, &show);
    assert!(html.contains("已补充日志留存 3 个月"));
    let (s, _) = post(
        app,
        &j.reg,
        &show,
        &j.admin(&format!("rectifications/{rect}/decide")),
        &[
            ("decision", "reject"),
            ("note", "留存期限不足 6 个月，整改不到位"),
        ],
    );
    assert_eq!(s, 303);
    assert_eq!(agreement_state(app, j.agreement), "terminated_for_breach");
    assert!(j.alpha_page().contains("留存期限不足 6 个月，整改不到位"));
    j.assert_ended("因违约终止", &token);
    j.assert_credit(Some(("因违约终止", "留存期限不足 6 个月，整改不到位")));
}

#[test]
fn whole_path_then_termination_for_violation() {
    let j = journey();
    let app = &j.app;
    let token = j.token();
    let show = j.show();
    let basis = "《数据安全法》第四十五条：违规向境外提供数据";
    let (_, html) = app.get_text(&j.reg, &show);
    assert!(html.contains(&format!("action=\"{}\"", j.admin("terminate"))));
    let (s, _) = post(
        app,
        &j.reg,
        &show,
        &j.admin("terminate"),
        &[("note", basis)],
    );
    assert_eq!(s, 303);
    assert_eq!(
        agreement_state(app, j.agreement),
        "terminated_for_violation"
    );
    assert!(
        j.alpha_page().contains(basis),
        "the operator sees the legal basis"
    );
    j.assert_ended("因违法违规终止", &token);
    j.assert_credit(Some(("因违法违规终止", basis)));
}
