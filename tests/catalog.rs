//! Catalog and ingest through the real HTTP routes: datasets, columns, CSV upload (good, bad
//! rows, oversize), pseudonymization of stored versions, public filters and paging, the JSON
//! API, and authorization. SQLite by default; PostgreSQL (a fresh database per test) when
//! `DATAOP_TEST_POSTGRES_URL` is set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dataop::AppState;
use dataop::accounts::model::{NewOrganisation, NewUser, OrgKind};
use dataop::auth::Role;
use dataop::catalog::model::{self, DatasetFields};
use diesel::prelude::*;
use reqwest::StatusCode;
use reqwest::blocking::{Client, multipart};
use sha2::{Digest, Sha256};

mod common;

use common::TestApp;

/// The shared harness plus the catalog's helpers.
struct App {
    t: TestApp,
}

fn spawn(upload_limit: Option<u64>) -> App {
    let mut builder = TestApp::builder();
    if let Some(limit) = upload_limit {
        builder = builder.config(move |c| c.upload_limit_bytes = limit);
    }
    App { t: builder.start() }
}

impl App {
    fn url(&self, path: &str) -> String {
        self.t.url(path)
    }

    fn state(&self) -> &AppState {
        self.t.state()
    }

    fn data_dir(&self) -> &Path {
        self.t.data_dir.path()
    }

    /// Creates an organisation of `kind` with one user; returns (org id, user id).
    fn user(&self, org: &str, kind: OrgKind, username: &str, role: Role) -> (i64, i64) {
        let mut conn = self.state().pool.get().unwrap();
        let org_id =
            NewOrganisation::simple(org, kind, dataop::db::to_micros(self.state().clock.now()))
                .insert(&mut conn)
                .unwrap();
        let uid = NewUser::new(
            org_id,
            username,
            username,
            "unused".into(),
            role,
            dataop::db::to_micros(self.state().clock.now()),
        )
        .insert(&mut conn)
        .unwrap();
        (org_id, uid)
    }

    /// A browser logged in as `user_id` (session created directly, as a login would).
    fn browser(&self, user_id: i64) -> Client {
        let mut conn = self.state().pool.get().unwrap();
        let (_, token) = dataop::auth::create_session(
            &mut conn,
            self.state(),
            user_id,
            "web",
            "127.0.0.1",
            chrono::TimeDelta::hours(1),
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

    fn csrf(&self, client: &Client, path: &str) -> String {
        let body = client.get(self.url(path)).send().unwrap().text().unwrap();
        let start = body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        body[start..start + 64].to_owned()
    }

    fn versions_dir(&self) -> PathBuf {
        self.data_dir().join("datasets")
    }
}

fn create_dataset(app: &App, client: &Client, title: &str) -> i64 {
    let csrf = app.csrf(client, "/provider/datasets/new");
    let res = client
        .post(app.url("/provider/datasets"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("title_zh", title),
            ("title_en", title),
            ("description_zh", "门诊"),
            ("description_en", "visits"),
            ("category", "medical_services"),
            ("grade", "3"),
            ("open_type", "conditional"),
            ("sharing_type", "conditional"),
            ("update_frequency", "monthly"),
            ("source", "HIS"),
            ("contact", "office"),
        ])
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    loc.trim_start_matches("/provider/datasets/")
        .parse()
        .unwrap()
}

fn add_column(
    app: &App,
    client: &Client,
    id: i64,
    fields: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let csrf = app.csrf(client, &format!("/provider/datasets/{id}"));
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    client
        .post(app.url(&format!("/provider/datasets/{id}/columns")))
        .form(&form)
        .send()
        .unwrap()
}

fn define_schema(app: &App, client: &Client, id: i64) {
    let columns: [&[(&str, &str)]; 6] = [
        &[
            ("name", "person_id"),
            ("col_type", "text"),
            ("role", "privacy_unit"),
            ("max_length", "18"),
        ],
        &[
            ("name", "patient_name"),
            ("col_type", "text"),
            ("role", "identifier"),
        ],
        &[
            ("name", "sex"),
            ("col_type", "category"),
            ("role", "quasi_identifier"),
            ("codes", "M|男|Male\nF|女|Female"),
        ],
        &[
            ("name", "age"),
            ("col_type", "integer"),
            ("role", "quasi_identifier"),
        ],
        &[
            ("name", "visit_date"),
            ("col_type", "date"),
            ("role", "plain"),
        ],
        &[
            ("name", "total_cost"),
            ("col_type", "decimal"),
            ("scale", "2"),
            ("role", "sensitive"),
            ("nullable", "on"),
        ],
    ];
    for c in columns {
        let res = add_column(app, client, id, c);
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "{}",
            res.text().unwrap()
        );
    }
}

fn upload(app: &App, client: &Client, id: i64, csv: Vec<u8>) -> reqwest::blocking::Response {
    let csrf = app.csrf(client, &format!("/provider/datasets/{id}"));
    let form = multipart::Form::new().text("csrf", csrf).part(
        "file",
        multipart::Part::bytes(csv)
            .file_name("visits.csv")
            .mime_str("text/csv")
            .unwrap(),
    );
    client
        .post(app.url(&format!("/provider/datasets/{id}/versions")))
        .multipart(form)
        .send()
        .unwrap()
}

/// Publishes the draft version whose preview an upload's response redirects to.
fn publish(app: &App, client: &Client, uploaded: &reqwest::blocking::Response) {
    let preview = uploaded.headers()["location"].to_str().unwrap().to_owned();
    let csrf = app.csrf(client, &preview);
    let res = client
        .post(app.url(&format!("{preview}/publish")))
        .form(&[("csrf", csrf)])
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

const HEADER: &str = "person_id,patient_name,sex,age,visit_date,total_cost\n";
const IDS: [&str; 3] = [
    "11010519491231002X",
    "330102198001011234",
    "330106200512120027",
];
const NAMES: [&str; 3] = ["张伟强", "李秀英", "王小明"];

fn good_csv(rows: usize) -> Vec<u8> {
    let mut s = String::from(HEADER);
    for i in 0..rows {
        s.push_str(&format!(
            "{},{},{},{},2025-03-{:02},{}\n",
            IDS[i % 3],
            NAMES[i % 3],
            if i % 2 == 0 { "M" } else { "F" },
            20 + i % 50,
            1 + i % 28,
            if i % 7 == 0 {
                String::new()
            } else {
                format!("{}.{:02}", 100 + i, i % 100)
            }
        ));
    }
    s.into_bytes()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn good_upload_becomes_a_pseudonymized_version() {
    let app = spawn(None);
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    define_schema(&app, &client, id);

    let csv = good_csv(500);
    let sha = hex::encode(Sha256::digest(&csv));
    let res = upload(&app, &client, id, csv.clone());
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    publish(&app, &client, &res);
    let page = client
        .get(app.url(&format!("/provider/datasets/{id}")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("v1"));
    assert!(page.contains("<td>500</td>"));
    assert!(page.contains(&sha));

    // A second upload is version 2 (listed once published).
    let res = upload(&app, &client, id, good_csv(10));
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    publish(&app, &client, &res);
    let api: serde_json::Value = client
        .get(app.url(&format!("/api/v1/datasets/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["versions"][0]["version_no"], 2);
    assert_eq!(api["versions"][1]["rows"], 500);
    assert_eq!(api["versions"][1]["sha256"], sha.as_str());
    assert_eq!(api["columns"].as_array().unwrap().len(), 6);

    // The stored files hold no raw identifier; the pseudonyms are the keyed HMACs.
    let dir = app.versions_dir().join(id.to_string()).join("1");
    let files = files_under(&app.versions_dir());
    assert!(files.len() >= 7, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for raw in IDS.iter().chain(NAMES.iter()) {
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
                "{raw} found in {}",
                f.display()
            );
        }
    }
    let reader = dataop_sandbox::columnar::VersionReader::open(&dir).unwrap();
    assert_eq!(reader.rows(), 500);
    let mut ps = [0u64; 1];
    reader.read_u64(0, 0, &mut ps).unwrap();
    assert_eq!(
        ps[0],
        dataop_sandbox::columnar::pseudonym(&app.state().secrets.pseudonym_key, IDS[0])
    );
    // Nothing left in the process's scratch directory.
    assert!(files_under(app.state().scratch.dir()).is_empty());
}

#[test]
fn file_with_bad_rows_is_refused_whole() {
    let app = spawn(None);
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    define_schema(&app, &client, id);

    let mut csv = good_csv(50);
    csv.extend_from_slice(b"330102198001011234,Bad,X,abc,2025-02-30,1.234\n");
    csv.extend_from_slice(b",NoId,M,30,2025-01-01,1\n");
    let res = upload(&app, &client, id, csv);
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().unwrap();
    // Line 52 (header is line 1): sex, age, date, cost; line 53: the missing person id.
    for needle in [
        "<td>52</td>",
        "<td>53</td>",
        "<code>sex</code>",
        "<code>age</code>",
        "<code>visit_date</code>",
        "<code>total_cost</code>",
        "<code>person_id</code>",
    ] {
        assert!(body.contains(needle), "{needle} missing");
    }
    // The identifying value is never echoed back.
    assert!(!body.contains("330102198001011234"));
    let api: serde_json::Value = client
        .get(app.url(&format!("/api/v1/datasets/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(api["versions"].as_array().unwrap().is_empty());
    assert!(files_under(&app.versions_dir()).is_empty());
    assert!(files_under(app.state().scratch.dir()).is_empty());

    // A wrong header is refused too.
    let res = upload(&app, &client, id, b"a,b\n1,2\n".to_vec());
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[test]
fn oversize_upload_is_refused() {
    let app = spawn(Some(2048));
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    define_schema(&app, &client, id);
    let res = upload(&app, &client, id, good_csv(200));
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.text().unwrap().contains("2.0 KiB"));
    assert!(files_under(&app.versions_dir()).is_empty());
    assert!(files_under(app.state().scratch.dir()).is_empty());
    // A small file still goes through.
    assert_eq!(
        upload(&app, &client, id, good_csv(5)).status(),
        StatusCode::SEE_OTHER
    );
}

#[test]
fn column_form_errors_are_shown_with_what_was_typed() {
    let app = spawn(None);
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    let res = add_column(
        &app,
        &client,
        id,
        &[
            ("name", "bad name"),
            ("col_type", "text"),
            ("role", "plain"),
        ],
    );
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().unwrap().contains("value=\"bad name\""));
    let res = add_column(
        &app,
        &client,
        id,
        &[
            ("name", "pid"),
            ("col_type", "text"),
            ("role", "identifier"),
            ("nullable", "on"),
        ],
    );
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Uploading before any column is declared is a clear 4xx.
    let res = upload(&app, &client, id, good_csv(3));
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

fn seed_datasets(app: &App) -> (i64, i64) {
    let (org_a, ua) = app.user("卫健委", OrgKind::Provider, "prov_a", Role::Provider);
    let (org_b, ub) = app.user("医保局", OrgKind::Provider, "prov_b", Role::Provider);
    let mut conn = app.state().pool.get().unwrap();
    for i in 0..25 {
        let (org, user) = if i < 15 { (org_a, ua) } else { (org_b, ub) };
        let fields = DatasetFields {
            title_zh: format!("数据集{i}"),
            title_en: if i == 7 {
                "Vaccination 100% records".into()
            } else {
                format!("Dataset {i}")
            },
            category: if i % 3 == 0 {
                "public_health"
            } else {
                "medical_services"
            }
            .into(),
            grade: 2,
            open_type: if i % 5 == 0 {
                "unconditional"
            } else {
                "conditional"
            }
            .into(),
            sharing_type: "conditional".into(),
            update_frequency: "monthly".into(),
            ..DatasetFields::default()
        };
        model::insert_dataset(
            &mut conn,
            org,
            user,
            &fields,
            dataop::db::to_micros(app.state().clock.now()),
        )
        .unwrap();
    }
    (org_a, org_b)
}

#[test]
fn catalog_filters_paging_and_api() {
    let app = spawn(None);
    let (org_a, org_b) = seed_datasets(&app);
    let client = Client::new();
    let page = client.get(app.url("/catalog")).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().unwrap();
    assert!(body.contains("Dataset") || body.contains("数据集0"));
    assert_eq!(body.matches("class=\"dataset-item\"").count(), 20);
    let body = client
        .get(app.url("/catalog?page=2"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body.matches("class=\"dataset-item\"").count(), 5);
    let body = client
        .get(app.url(&format!("/catalog?category=public_health&provider={org_b}")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    // i in 15..25 with i % 3 == 0: 15, 18, 21, 24.
    assert_eq!(body.matches("class=\"dataset-item\"").count(), 4);
    // Garbage filters on the page are ignored, not an error.
    assert_eq!(
        client
            .get(app.url("/catalog?category=zzz&page=x"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let api: serde_json::Value = client
        .get(app.url("/api/v1/datasets?per_page=10&page=3"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["total"], 25);
    assert_eq!(api["items"].as_array().unwrap().len(), 5);
    let api: serde_json::Value = client
        .get(app.url(&format!(
            "/api/v1/datasets?open_type=unconditional&provider={org_a}"
        )))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["total"], 3); // 0, 5, 10
    assert_eq!(api["items"][0]["provider"]["id"], org_a);
    let api: serde_json::Value = client
        .get(app.url("/api/v1/datasets?q=100%25"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["total"], 1);
    assert_eq!(api["items"][0]["title_en"], "Vaccination 100% records");
    let api: serde_json::Value = client
        .get(app.url("/api/v1/datasets?q=VACCINATION"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["total"], 1);
    let res = client
        .get(app.url("/api/v1/datasets?category=zzz"))
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let err: serde_json::Value = res.json().unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("category")
    );
    let id = api["items"][0]["id"].as_i64().unwrap();
    let one: serde_json::Value = client
        .get(app.url(&format!("/api/v1/datasets/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(one["id"], id);
    assert_eq!(
        client
            .get(app.url("/api/v1/datasets/999999"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client
            .get(app.url(&format!("/catalog/{id}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[test]
fn providers_and_enterprises_are_kept_out_of_others_datasets() {
    let app = spawn(None);
    let (_, ua) = app.user("卫健委", OrgKind::Provider, "prov_a", Role::Provider);
    let (_, ub) = app.user("医保局", OrgKind::Provider, "prov_b", Role::Provider);
    let (_, ue) = app.user("Alpha Ltd", OrgKind::Enterprise, "alpha", Role::Enterprise);
    let a = app.browser(ua);
    let id = create_dataset(&app, &a, "A 的数据");
    define_schema(&app, &a, id);

    let b = app.browser(ub);
    assert_eq!(
        b.get(app.url(&format!("/provider/datasets/{id}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.get(app.url(&format!("/provider/datasets/{id}/edit")))
            .send()
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let csrf = app.csrf(&b, "/provider/datasets/new");
    let res = b
        .post(app.url(&format!("/provider/datasets/{id}/edit")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("title_zh", "x"),
            ("title_en", "x"),
        ])
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let form = multipart::Form::new().text("csrf", csrf.clone()).part(
        "file",
        multipart::Part::bytes(good_csv(3)).file_name("x.csv"),
    );
    let res = b
        .post(app.url(&format!("/provider/datasets/{id}/versions")))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(files_under(&app.versions_dir()).is_empty());

    let e = app.browser(ue);
    for path in [
        "/provider/datasets",
        "/provider/datasets/new",
        &format!("/provider/datasets/{id}"),
    ] {
        assert_eq!(
            e.get(app.url(path)).send().unwrap().status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // Anonymous visitors are sent to the login page.
    let anon = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = anon.get(app.url("/provider/datasets")).send().unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // A form without the CSRF token changes nothing.
    let res = a
        .post(app.url(&format!("/provider/datasets/{id}/edit")))
        .form(&[("title_zh", "x"), ("title_en", "x")])
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The audit log holds the provider's changes.
    let mut conn = app.state().pool.get().unwrap();
    use dataop::schema::audit_log;
    let actions: Vec<String> = audit_log::table
        .select(audit_log::action)
        .load(&mut conn)
        .unwrap();
    assert!(actions.iter().any(|a| a == "dataset.create"));
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "dataset.column_add")
            .count(),
        6
    );
}

#[test]
fn demo_world_has_the_outpatient_dataset_ingested_once() {
    let app = TestApp::builder().demo_data().start();
    let client = app.client();
    let list: serde_json::Value = client
        .get(app.url("/api/v1/datasets?category=medical_services"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["title_en"] == dataop::catalog::demo::DEMO_TITLE_EN)
        .unwrap_or_else(|| panic!("the demo dataset is not listed: {list}"))
        .clone();
    let id = item["id"].as_i64().unwrap();
    let one: serde_json::Value = client
        .get(app.url(&format!("/api/v1/datasets/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(one["columns"].as_array().unwrap().len(), 10);
    assert_eq!(one["versions"].as_array().unwrap().len(), 1);
    assert_eq!(one["versions"][0]["rows"], dataop::catalog::demo::DEMO_ROWS);
    // Seeding again changes nothing.
    dataop::demo::seed(app.state()).unwrap();
    let again: serde_json::Value = client
        .get(app.url(&format!("/api/v1/datasets/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(again["versions"].as_array().unwrap().len(), 1);
    // The public page shows the schema.
    let page = client
        .get(app.url(&format!("/catalog/{id}")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("<code>person_id</code>"));
}

#[test]
fn cells_out_of_their_column_bounds_or_holding_nul_are_refused_naming_line_and_column() {
    let app = spawn(None);
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    let columns: [&[(&str, &str)]; 3] = [
        &[
            ("name", "person_id"),
            ("col_type", "text"),
            ("role", "privacy_unit"),
        ],
        &[
            ("name", "age"),
            ("col_type", "integer"),
            ("role", "quasi_identifier"),
            ("min_value", "0"),
            ("max_value", "150"),
        ],
        &[
            ("name", "note"),
            ("col_type", "text"),
            ("role", "plain"),
            ("nullable", "on"),
        ],
    ];
    for c in columns {
        let res = add_column(&app, &client, id, c);
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "{}",
            res.text().unwrap()
        );
    }
    // The bounds are kept and shown in the column's form.
    let html = client
        .get(app.url(&format!("/provider/datasets/{id}")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(html.contains("min_value"), "the form offers bounds");
    let res = add_column(
        &app,
        &client,
        id,
        &[
            ("name", "weight"),
            ("col_type", "integer"),
            ("role", "plain"),
            ("min_value", "10"),
            ("max_value", "1"),
        ],
    );
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "bounds in order"
    );

    let mut csv = b"person_id,age,note\n".to_vec();
    csv.extend_from_slice(b"330102198001011234,30,ok\n");
    csv.extend_from_slice(b"330106200512120027,-5,ok\n");
    csv.extend_from_slice(b"11010519491231002X,40,a\0b\n");
    csv.extend_from_slice(b"11010519491231002X,151,\n");
    csv.extend_from_slice(b"11010519491231002\0,150,\n");
    let res = upload(&app, &client, id, csv);
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().unwrap();
    for needle in [
        "<td>3</td>",
        "<td>4</td>",
        "<td>5</td>",
        "<td>6</td>",
        "<code>age</code>",
        "<code>note</code>",
        "<code>person_id</code>",
        "超出该列允许的范围 0 至 150",
        "含有控制字符",
    ] {
        assert!(body.contains(needle), "{needle} missing");
    }
    assert!(!body.contains('\0'), "the NUL is not echoed");
    assert!(files_under(&app.versions_dir()).is_empty());
    // Within the bounds and without NUL, the same rows pass.
    let ok = b"person_id,age,note\n330102198001011234,0,ok\n330106200512120027,150,\n".to_vec();
    assert_eq!(
        upload(&app, &client, id, ok).status(),
        StatusCode::SEE_OTHER
    );
}

/// A refused publish or discard shows the version's preview again with the reason, not a
/// bare error page.
#[test]
fn a_refused_publish_or_discard_shows_the_preview_again() {
    let app = spawn(None);
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    define_schema(&app, &client, id);
    let decide = |preview: &str, action: &str| {
        let csrf = app.csrf(&client, preview);
        client
            .post(app.url(&format!("{preview}/{action}")))
            .form(&[("csrf", csrf)])
            .send()
            .unwrap()
    };
    let uploaded = upload(&app, &client, id, good_csv(5));
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let published = uploaded.headers()["location"].to_str().unwrap().to_owned();
    publish(&app, &client, &uploaded);
    let uploaded = upload(&app, &client, id, good_csv(4));
    let discarded = uploaded.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        decide(&discarded, "discard").status(),
        StatusCode::SEE_OTHER
    );
    for (preview, action, rows, reason) in [
        (&published, "publish", 5, "该版本已发布。"),
        (&published, "discard", 5, "该版本已发布。"),
        (&discarded, "publish", 4, "该版本已弃用。"),
    ] {
        let res = decide(preview, action);
        assert_eq!(res.status(), StatusCode::CONFLICT, "{action} {preview}");
        let html = res.text().unwrap();
        assert!(html.contains(reason), "{action} {preview}: {html}");
        assert!(
            html.contains(&format!("class=\"preview-rows\">{rows}<")),
            "the preview: {html}"
        );
    }
}

/// A cell whose bytes are not UTF-8 refuses the whole file, naming its line and column.
/// The upload's CSRF field is read as text like every other field: a token that is not
/// UTF-8 is refused naming the field (422), never read with replacement characters.
#[test]
fn an_upload_whose_csrf_token_is_not_utf8_is_refused_naming_the_field() {
    let app = spawn(None);
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    define_schema(&app, &client, id);
    let mut token = app
        .csrf(&client, &format!("/provider/datasets/{id}"))
        .into_bytes();
    token.push(0xff);
    let form = multipart::Form::new()
        .part("csrf", multipart::Part::bytes(token))
        .part(
            "file",
            multipart::Part::bytes(good_csv(3)).file_name("visits.csv"),
        );
    let res = client
        .post(app.url(&format!("/provider/datasets/{id}/versions")))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().unwrap().contains("csrf"), "the field is named");
    assert!(files_under(&app.versions_dir()).is_empty(), "nothing kept");
}

#[test]
fn a_cell_that_is_not_utf8_is_refused_naming_its_line() {
    let app = spawn(None);
    let (_, uid) = app.user("卫健委", OrgKind::Provider, "prov", Role::Provider);
    let client = app.browser(uid);
    let id = create_dataset(&app, &client, "门诊就诊");
    define_schema(&app, &client, id);
    let mut csv = HEADER.as_bytes().to_vec();
    csv.extend_from_slice("330102198001011234,李秀英,F,45,2025-03-01,12.50\n".as_bytes());
    csv.extend_from_slice(b"330106200512120027,\xe7\x8e\x8b\xff,M,30,2025-03-02,8.00\n");
    csv.extend_from_slice("11010519491231002X,张伟强,M,61,2025-03-03,\n".as_bytes());
    let res = upload(&app, &client, id, csv);
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().unwrap();
    let rows: Vec<&str> = body
        .split("<tr class=\"row-error\">")
        .skip(1)
        .map(|r| &r[..r.find("</tr>").unwrap()])
        .collect();
    assert_eq!(
        rows,
        ["<td>3</td><td><code>patient_name</code></td><td>不是 UTF-8 文本</td><td></td>"],
        "the one bad line, named"
    );
    assert!(files_under(&app.versions_dir()).is_empty(), "nothing kept");
}
