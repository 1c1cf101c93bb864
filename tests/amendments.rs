//! What a sealed amendment does to the operator's computations (SQLite; PostgreSQL when
//! `DATAOP_TEST_POSTGRES_URL` is set): one that keeps a dataset keeps the approvals and the
//! waiting and queued runs that use it; one that removes it withdraws their approvals and
//! cancels their runs with the reason "agreement amended", and tells the operator by mail.
//!
//! The world: the demo accounts, a 3,000-row demo outpatient dataset, `alpha`'s sealed
//! agreement in force on it, a second dataset approved in `alpha`'s application, and `alpha`
//! trained. The job is example (a) of the sandbox.

use chrono::Duration;
use dataop::jobs::worker;
use diesel::prelude::*;
use reqwest::blocking::Client;

mod common;

use common::{DEMO_PASSWORD, TestApp, csrf_from};

const WAT: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.wat");
const MANIFEST: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.toml");

struct World {
    app: TestApp,
    reg: Client,
    alpha: Client,
    token: String,
    outpatients: i64,
    other: i64,
}

fn world() -> World {
    use dataop::schema::{agreements, application_datasets, datasets};
    let app = TestApp::builder().demo().start();
    dataop::catalog::demo::seed_rows(app.state(), "provider", 3000).expect("demo data");
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
    assert_eq!(r.status().as_u16(), 303);
    let (outpatients, other) = {
        let mut conn = app.conn();
        let (outpatients, org, user): (i64, i64, i64) = datasets::table
            .select((
                datasets::id,
                datasets::provider_org_id,
                datasets::created_by,
            ))
            .first(&mut *conn)
            .unwrap();
        let other = dataop::catalog::model::insert_dataset(
            &mut conn,
            org,
            user,
            &dataop::catalog::model::DatasetFields {
                title_zh: "住院病案首页（合成数据）".into(),
                title_en: "Inpatient records (synthetic)".into(),
                category: "medical_services".into(),
                grade: 3,
                open_type: "conditional".into(),
                sharing_type: "conditional".into(),
                update_frequency: "monthly".into(),
                ..Default::default()
            },
            dataop::db::to_micros(app.state().clock.now()),
        )
        .unwrap();
        let application: i64 = agreements::table
            .select(agreements::application_id)
            .first(&mut *conn)
            .unwrap();
        diesel::insert_into(application_datasets::table)
            .values((
                application_datasets::application_id.eq(application),
                application_datasets::dataset_id.eq(other),
                application_datasets::purpose.eq("住院负担 / Inpatient load"),
            ))
            .execute(&mut *conn)
            .unwrap();
        (outpatients, other)
    };
    World {
        reg: app.logged_in("regulator", DEMO_PASSWORD),
        alpha: app.logged_in("alpha", DEMO_PASSWORD),
        token: app.api_token("alpha"),
        app,
        outpatients,
        other,
    }
}

impl World {
    fn in_force(&self) -> i64 {
        use dataop::schema::agreements;
        agreements::table
            .filter(agreements::state.eq("in_force"))
            .select(agreements::id)
            .first(&mut *self.app.conn())
            .unwrap()
    }

    fn post(&self, c: &Client, page: &str, path: &str, fields: &[(&str, &str)]) -> u16 {
        self.app
            .post_form_from(c, page, path, fields)
            .status()
            .as_u16()
    }

    /// Amends the agreement in force to cover `datasets`, and has it signed and sealed; the
    /// amendment's id.
    fn amend(&self, datasets: &[i64]) -> i64 {
        let old = self.in_force();
        let page = format!("/agreements/{old}");
        let r = self.app.post_form_from(
            &self.reg,
            &page,
            &format!("/admin/agreements/{old}/amend"),
            &[],
        );
        assert_eq!(r.status().as_u16(), 303);
        let edit = r.headers()["location"].to_str().unwrap().to_owned();
        let new: i64 = edit
            .trim_end_matches("/edit")
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (_, form) = self.app.get_text(&self.reg, &edit);
        let mut f: Vec<(String, String)> = [
            ("purpose", "分析门诊与住院负担"),
            ("scenario", "门诊服务质量分析"),
            ("security_measures", "仅在沙箱内计算"),
            ("disposal", "终止后 10 个工作日内删除"),
            ("trial_months", "3"),
            ("price_per_job", "0.50"),
            ("price_per_thousand_rows", "0.20"),
            ("split_platform", "20"),
            ("split_provider", "30"),
            ("split_operator", "50"),
            ("run_budget", "200"),
            ("run_period", "month"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        for d in datasets {
            f.push(("dataset".into(), d.to_string()));
            f.push((format!("epsilon_{d}"), "1".into()));
        }
        f.push(("csrf".into(), csrf_from(&form).unwrap()));
        let r = self
            .reg
            .post(self.app.url(&format!("/admin/agreements/{new}")))
            .form(&f)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap_or_default());
        let page = format!("/agreements/{new}");
        let submit = format!("/admin/agreements/{new}/submit");
        assert_eq!(self.post(&self.reg, &page, &submit, &[]), 303);
        let sign = format!("/agreements/{new}/sign");
        let name = [("name", "阿尔法健康科技有限公司")];
        assert_eq!(self.post(&self.alpha, &page, &sign, &name), 303);
        let seal = format!("/admin/agreements/{new}/seal");
        assert_eq!(self.post(&self.reg, &page, &seal, &[]), 303);
        assert_eq!(self.in_force(), new);
        new
    }

    /// Submits `module`; (job, computation).
    fn submit(&self, module: &str) -> (i64, i64) {
        use reqwest::blocking::multipart::{Form, Part};
        let form = Form::new()
            .part(
                "module",
                Part::bytes(module.as_bytes().to_vec()).file_name("job.wat"),
            )
            .part(
                "manifest",
                Part::bytes(MANIFEST.as_bytes().to_vec()).file_name("job.toml"),
            )
            .text("purpose", "各区老年门诊负担分析")
            .text("dataset.outpatients", self.outpatients.to_string());
        let r = Client::new()
            .post(self.app.url("/api/v1/jobs"))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(status, 201, "{v}");
        (
            v["id"].as_i64().unwrap(),
            v["computation"].as_i64().unwrap(),
        )
    }

    fn approve(&self, computation: i64) {
        let page = format!("/admin/computations/{computation}");
        let approve = format!("{page}/approve");
        assert_eq!(self.post(&self.reg, &page, &approve, &[("note", "")]), 303);
    }

    /// (state, reason) of a run.
    fn run(&self, id: i64) -> (String, String) {
        use dataop::schema::jobs;
        jobs::table
            .find(id)
            .select((jobs::state, jobs::reason))
            .first(&mut *self.app.conn())
            .unwrap()
    }

    /// (state, agreement) of a computation.
    fn computation(&self, id: i64) -> (String, i64) {
        use dataop::schema::computations as c;
        c::table
            .find(id)
            .select((c::state, c::agreement_id))
            .first(&mut *self.app.conn())
            .unwrap()
    }

    fn run_all(&self) {
        let mut n = 0;
        while worker::run_once(self.app.state(), "test-worker").unwrap() {
            n += 1;
            assert!(n < 100);
        }
    }
}

#[test]
fn an_amendment_keeps_the_work_on_kept_datasets_and_stops_it_on_removed_ones() {
    let w = world();
    let app = &w.app;
    // An approved computation with a queued run, and a revised module waiting for approval.
    let (queued, approved) = w.submit(WAT);
    w.approve(approved);
    let revised = WAT.replacen("(module", "(module ;; revised\n", 1);
    assert_ne!(revised, WAT);
    let (waiting, pending) = w.submit(&revised);
    assert_eq!(w.run(queued).0, "queued");
    assert_eq!(w.run(waiting).0, "awaiting_approval");

    // An amendment that keeps the outpatient dataset (and adds another) keeps both.
    let v2 = w.amend(&[w.outpatients, w.other]);
    assert_eq!(w.computation(approved), ("approved".into(), v2));
    assert_eq!(w.computation(pending), ("pending".into(), v2));
    // The scheduler's sweep and the worker find nothing to stop: the run runs.
    dataop::scheduler::tick(app.state());
    assert_eq!(w.run(queued).0, "queued");
    assert_eq!(w.run(waiting).0, "awaiting_approval");
    w.run_all();
    assert_eq!(w.run(queued).0, "finished");
    // The same module runs again without a new approval.
    let (again, same) = w.submit(WAT);
    assert_eq!(same, approved);
    assert_eq!(w.run(again).0, "queued");

    // An amendment that removes it cancels the runs and withdraws the approvals using it.
    let before: i64 = {
        use dataop::schema::mail_outbox as m;
        m::table
            .filter(m::template.eq("jobs.mail.amended"))
            .count()
            .get_result(&mut *app.conn())
            .unwrap()
    };
    assert_eq!(before, 0, "the first amendment stopped nothing");
    let v3 = w.amend(&[w.other]);
    assert_ne!(v3, v2);
    for job in [again, waiting] {
        assert_eq!(
            w.run(job),
            ("cancelled".into(), "jobs.why.agreement_amended".into()),
            "run {job}"
        );
    }
    assert_eq!(
        w.run(queued).0,
        "withheld",
        "its finished output is withheld"
    );
    assert_eq!(w.computation(approved).0, "revoked");
    assert_eq!(w.computation(pending).0, "rejected");
    let (_, page) = app.get_text(&w.alpha, &format!("/jobs/{again}"));
    assert!(page.contains("协议变更已移除其所用的数据集"), "{page}");
    assert!(!page.contains("协议已终止"));
    let en = app.logged_in("alpha", DEMO_PASSWORD);
    assert_eq!(app.get(&en, "/lang/en?next=/").status().as_u16(), 303);
    let (_, page) = app.get_text(&en, &format!("/jobs/{again}"));
    assert!(page.contains("An amendment of the agreement removed a dataset it uses."));

    // The operator is told by mail.
    let body: String = {
        use dataop::schema::mail_outbox as m;
        m::table
            .filter(m::template.eq("jobs.mail.amended"))
            .select(m::body)
            .first(&mut *app.conn())
            .unwrap()
    };
    assert!(body.contains("visits_by_district_65plus"), "{body}");
    assert!(body.contains("协议变更已移除其所用的数据集"));
    let out = app.cli(&["audit", "verify"]);
    assert!(out.status.success());
}
