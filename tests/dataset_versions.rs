//! Dataset versions through the real HTTP routes and workers (SQLite; PostgreSQL when
//! `DATAOP_TEST_POSTGRES_URL` is set): an upload is a draft with a preview that only its
//! provider's organisation and the platform staff see, jobs read only published versions, a
//! draft can be discarded, and a version with other columns opens a new schema version that an
//! agreement in force reads only once its operator accepts it.
//!
//! The world: the demo accounts, a 3,000-row demo outpatient dataset (version 1, published),
//! `alpha`'s sealed agreement in force on it, `alpha` trained, and example (a) approved.

use chrono::Duration;
use dataop::jobs::worker;
use diesel::prelude::*;
use reqwest::blocking::{Client, multipart};

mod common;

use common::{DEMO_PASSWORD, TestApp};

const WAT: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.wat");
const MANIFEST: &str = include_str!("../sandbox/guest/examples/a_visits_65plus.toml");

struct World {
    app: TestApp,
    dataset: i64,
    agreement: i64,
    provider: Client,
    token: String,
}

fn world() -> World {
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
    let (dataset, agreement) = {
        use dataop::schema::{agreements, datasets};
        let mut conn = app.conn();
        let d: i64 = datasets::table
            .select(datasets::id)
            .first(&mut *conn)
            .unwrap();
        let a: i64 = agreements::table
            .select(agreements::id)
            .first(&mut *conn)
            .unwrap();
        (d, a)
    };
    let provider = app.logged_in("provider", DEMO_PASSWORD);
    let token = app.api_token("alpha");
    let w = World {
        app,
        dataset,
        agreement,
        provider,
        token,
    };
    // Example (a) approved, and its first run read version 1.
    let (job, computation) = w.submit();
    let reg = w.app.logged_in("regulator", DEMO_PASSWORD);
    let page = format!("/admin/computations/{computation}");
    let r = w
        .app
        .post_form_from(&reg, &page, &format!("{page}/approve"), &[("note", "")]);
    assert_eq!(r.status().as_u16(), 303);
    w.run_all();
    assert_eq!(w.read_by(job), (1, 3000));
    w
}

/// The demo CSV with `rows` rows (another seed than the demo's), without the columns named in
/// `drop`.
fn csv(rows: u64, drop: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    dataop::demo::outpatients::write_csv(&mut out, 7, rows).unwrap();
    let text = String::from_utf8(out).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|i| !drop.contains(&header[*i]))
        .collect();
    let mut s = String::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(
            cells.len(),
            header.len(),
            "no quoted commas in the demo CSV"
        );
        s.push_str(&keep.iter().map(|i| cells[*i]).collect::<Vec<_>>().join(","));
        s.push('\n');
    }
    s.into_bytes()
}

/// A browser of `user` that reads the English pages.
fn english(app: &TestApp, user: &str) -> Client {
    let c = app.logged_in(user, DEMO_PASSWORD);
    assert_eq!(app.get(&c, "/lang/en?next=/").status().as_u16(), 303);
    c
}

impl World {
    fn submit(&self) -> (i64, i64) {
        let (status, v) =
            self.app
                .api_submit_job(&self.token, WAT, MANIFEST, "各区老年门诊负担分析");
        assert_eq!(status, 201, "{v}");
        (
            v["id"].as_i64().unwrap(),
            v["computation"].as_i64().unwrap(),
        )
    }

    fn run_all(&self) {
        let mut n = 0;
        while worker::run_once(self.app.state(), "test-worker").unwrap() {
            n += 1;
            assert!(n < 100);
        }
    }

    /// (version number, rows) of the one dataset version a finished run read.
    fn read_by(&self, job: i64) -> (i64, i64) {
        use dataop::schema::jobs;
        let (state, versions): (String, String) = jobs::table
            .find(job)
            .select((jobs::state, jobs::versions))
            .first(&mut *self.app.conn())
            .unwrap();
        assert_eq!(state, "finished", "run {job}");
        let v: serde_json::Value = serde_json::from_str(&versions).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        (
            v[0]["version_no"].as_i64().unwrap(),
            v[0]["rows"].as_i64().unwrap(),
        )
    }

    /// Uploads `body` as the provider; the preview page's path.
    fn upload(&self, body: Vec<u8>) -> String {
        let page = format!("/provider/datasets/{}", self.dataset);
        let csrf = self.app.csrf(&self.provider, &page);
        let form = multipart::Form::new().text("csrf", csrf).part(
            "file",
            multipart::Part::bytes(body)
                .file_name("visits.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
        let r = self
            .provider
            .post(self.app.url(&format!("{page}/versions")))
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap_or_default());
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(loc.starts_with(&format!("{page}/versions/")), "{loc}");
        loc
    }

    /// Publishes (or discards) the version whose preview is `preview`; the status.
    fn decide(&self, preview: &str, action: &str) -> u16 {
        self.app
            .post_form_from(&self.provider, preview, &format!("{preview}/{action}"), &[])
            .status()
            .as_u16()
    }

    fn version_state(&self, no: i32) -> String {
        use dataop::schema::dataset_versions as v;
        v::table
            .filter(v::dataset_id.eq(self.dataset))
            .filter(v::version_no.eq(no))
            .select(v::state)
            .first(&mut *self.app.conn())
            .unwrap()
    }

    fn outbox_has(&self, template: &str) -> bool {
        use dataop::schema::mail_outbox as m;
        m::table
            .filter(m::template.eq(template))
            .count()
            .get_result::<i64>(&mut *self.app.conn())
            .unwrap()
            > 0
    }
}

#[test]
fn an_upload_is_a_draft_until_its_provider_publishes_it() {
    let w = world();
    let app = &w.app;

    // A 5-row test upload is a draft: its preview shows the rows, the columns and their value
    // summaries, and no job reads it.
    let preview = w.upload(csv(5, &[]));
    assert_eq!(w.version_state(2), "draft");
    assert!(w.outbox_has("catalog.mail.version_uploaded"));
    let (s, html) = app.get_text(&w.provider, &preview);
    assert_eq!(s, 200);
    assert!(html.contains("class=\"preview-rows\">5<"), "rows shown");
    assert!(html.contains("<code>district</code>") && html.contains("<code>total_cost</code>"));
    assert!(html.contains("空值数"), "NULL counts");
    assert!(html.contains("字段与已发布的版本 v1"), "same schema as v1");
    assert!(html.contains("/publish") && html.contains("/discard"));
    let raw = String::from_utf8(csv(5, &[])).unwrap();
    let first_id = raw.lines().nth(1).unwrap().split(',').next().unwrap();
    assert!(!html.contains(first_id), "no raw value on the preview");
    let (_, en) = app.get_text(&english(app, "provider"), &preview);
    assert!(en.contains("Empty (NULL)") && en.contains("Publish this version"));
    let (job, _) = w.submit();
    w.run_all();
    assert_eq!(w.read_by(job), (1, 3000), "the draft is not read");

    // Only the provider's organisation and the platform staff see the preview.
    let platform = app.logged_in("platform", DEMO_PASSWORD);
    let (s, html) = app.get_text(&platform, &preview);
    assert_eq!(s, 200);
    assert!(!html.contains("/publish"), "platform staff do not publish");
    for user in ["alpha", "regulator"] {
        let c = app.logged_in(user, DEMO_PASSWORD);
        assert_eq!(app.get_text(&c, &preview).0, 403, "{user}");
    }
    // Nor do the public catalog and API list it.
    let api: serde_json::Value = Client::new()
        .get(app.url(&format!("/api/v1/datasets/{}", w.dataset)))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["versions"].as_array().unwrap().len(), 1, "{api}");

    // Discarded, it is never read and its files are gone.
    assert_eq!(w.decide(&preview, "discard"), 303);
    assert_eq!(w.version_state(2), "discarded");
    assert!(w.outbox_has("catalog.mail.version_discarded"));
    let dir = app
        .data_dir
        .path()
        .join(format!("datasets/{}/2", w.dataset));
    assert!(!dir.exists());
    assert_eq!(
        w.decide(&preview, "publish"),
        409,
        "a discarded draft stays so"
    );

    // Published, the next run reads it, and the job page names the version.
    let preview = w.upload(csv(400, &[]));
    assert_eq!(w.decide(&preview, "publish"), 303);
    assert_eq!(w.version_state(3), "published");
    assert!(w.outbox_has("catalog.mail.version_published"));
    assert_eq!(w.decide(&preview, "publish"), 409, "published once");
    let (job, _) = w.submit();
    w.run_all();
    assert_eq!(w.read_by(job), (3, 400));
    let (_, page) = app.get_text(&platform, &format!("/jobs/{job}"));
    let sources = &page[page.find("sources-table").expect("sources on the job page")..];
    let v3: i64 = preview.rsplit('/').next().unwrap().parse().unwrap();
    let link = format!("/provider/datasets/{}/versions/{v3}\">3</a>", w.dataset);
    assert!(
        sources.contains(&link),
        "version 3 named, linked to its preview"
    );

    // Every step is in the audit chain.
    let out = app.cli(&["audit", "verify"]);
    assert!(out.status.success());
}

#[test]
fn a_new_schema_version_waits_for_the_operator_to_accept_it() {
    let w = world();
    let app = &w.app;

    // The provider deletes a column and uploads data without it: the preview names the
    // removed column and says publishing opens a new schema version.
    let cid: i64 = {
        use dataop::schema::dataset_columns as c;
        c::table
            .filter(c::dataset_id.eq(w.dataset))
            .filter(c::name.eq("insured_cost"))
            .select(c::id)
            .first(&mut *app.conn())
            .unwrap()
    };
    let manage = format!("/provider/datasets/{}", w.dataset);
    let r = app.post_form_from(
        &w.provider,
        &manage,
        &format!("{manage}/columns/{cid}/delete"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 303);
    let preview = w.upload(csv(300, &["insured_cost"]));
    let (_, html) = app.get_text(&w.provider, &preview);
    assert!(html.contains("形成新的结构版本"), "{html}");
    assert!(html.contains("删除字段") && html.contains("<code>insured_cost</code>"));
    assert_eq!(w.decide(&preview, "publish"), 303);
    assert!(w.outbox_has("agreements.mail.schema_pending"));

    // The agreement in force keeps reading schema version 1 (version 1).
    let (job, _) = w.submit();
    w.run_all();
    assert_eq!(w.read_by(job), (1, 3000));

    // Its page shows the pending change: to the regulator without, to the operator with the
    // accept action.
    let page = format!("/agreements/{}", w.agreement);
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (_, html) = app.get_text(&reg, &page);
    assert!(html.contains("schema-pending") && html.contains("结构版本 2"));
    assert!(!html.contains("/schemas/"));
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let (_, html) = app.get_text(&english(app, "alpha"), &page);
    assert!(html.contains("schema version 2"), "{html}");
    let accept = format!("{page}/schemas/{}/accept", w.dataset);
    assert!(html.contains(&accept));

    // Another organisation cannot accept it; the operator does, once.
    let beta = app.logged_in("beta", DEMO_PASSWORD);
    assert_eq!(
        app.post_form_from(&beta, "/jobs", &accept, &[])
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        app.post_form_from(&alpha, &page, &accept, &[])
            .status()
            .as_u16(),
        303
    );
    assert!(w.outbox_has("agreements.mail.schema_accepted"));
    let (_, html) = app.get_text(&alpha, &page);
    assert!(!html.contains("schema-pending"));
    assert!(
        html.contains("确认新的结构版本"),
        "the history names the acceptance"
    );
    assert_eq!(
        app.post_form_from(&alpha, &page, &accept, &[])
            .status()
            .as_u16(),
        409
    );

    // From now on its jobs read the new schema's version.
    let (job, _) = w.submit();
    w.run_all();
    assert_eq!(w.read_by(job), (2, 300));
    let out = app.cli(&["audit", "verify"]);
    assert!(out.status.success());
}
