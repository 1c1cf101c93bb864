//! The differencing guard (issue 13; `sandbox/ABI.md` §6, guarantee 7) through the job API and
//! the pages, against a real database (SQLite; PostgreSQL when `DATAOP_TEST_POSTGRES_URL` is
//! set): two honestly approvable jobs whose age filters differ by one person, the first
//! released and the second withheld, with the reviewer seeing which cells collided before and
//! after and the operator seeing only that the guard withheld it; a job whose cells are k
//! persons from the released ones is released; two aggregates of one job one person apart are
//! withheld.
//!
//! The world: the demo accounts, the 3,000-row demo outpatient dataset, `alpha`'s agreement in
//! force on it, `alpha` trained. The filters are chosen from the generated rows themselves
//! (the generator is deterministic): the age bound that leaves out exactly one person of those
//! with a visit at 65 or over, and the one that leaves out at least k.

use std::collections::BTreeMap;

use dataop::demo::outpatients::Generator;

mod common;

use common::{DEMO_PASSWORD, TestApp};

/// The threshold of every aggregate here (the platform floor).
const K: usize = 10;

fn world() -> TestApp {
    let app = TestApp::builder().demo().start();
    dataop::catalog::demo::seed_rows(app.state(), "provider", 3000).expect("demo data");
    dataop::agreements::demo::seed(app.state()).expect("demo agreement");
    app.train("alpha");
    app
}

/// The persons with a visit at 65 or over whose every such visit is at `bound` or over (a
/// filter `65 <= age < bound` leaves them out), by district.
fn left_out(bound: u32) -> BTreeMap<usize, usize> {
    let mut youngest: BTreeMap<[u8; 18], (usize, u32)> = BTreeMap::new();
    for v in Generator::new(dataop::catalog::demo::DEMO_SEED, 3000) {
        if v.age >= 65 {
            let e = youngest
                .entry(v.person.id_number)
                .or_insert((v.person.district, v.age));
            e.1 = e.1.min(v.age);
        }
    }
    let mut out = BTreeMap::new();
    for (district, age) in youngest.values() {
        if *age >= bound {
            *out.entry(*district).or_default() += 1;
        }
    }
    out
}

/// The highest bound that leaves out exactly `n` persons, or (none does) the highest that
/// leaves out more.
fn bound_leaving_out(n: usize) -> u32 {
    (66..=111)
        .rev()
        .find(|b| left_out(*b).values().sum::<usize>() >= n)
        .expect("a bound")
}

/// One row function: keeps visits at 65 or over, and under `bound` when given.
fn keep(export: &str, bound: Option<u32>) -> String {
    let adult = "(i64.ge_s (local.get $age) (i64.const 65))";
    let test = match bound {
        Some(b) => format!("(i32.and {adult} (i64.lt_s (local.get $age) (i64.const {b})))"),
        None => adult.to_owned(),
    };
    format!(
        "  (func (export \"{export}.keep\") (param $age i64) (param $district i32) (result i32)\n    {test})\n"
    )
}

/// An aggregate of the job: `name`, by district or one cell for everyone, with an age bound.
struct Agg {
    name: &'static str,
    by_district: bool,
    bound: Option<u32>,
}

/// The module (WAT, ABI v2: pure row functions) and manifest of a job of `aggregates`.
fn job(name: &str, aggregates: &[Agg]) -> (String, String) {
    let mut wat = String::from("(module\n");
    let mut manifest = format!(
        "abi = 2\nname = \"{name}\"\n\n[[datasets]]\nname = \"outpatients\"\ncolumns = [\"age\", \"district\"]\n"
    );
    for a in aggregates {
        wat.push_str(&keep(a.name, a.bound));
        manifest.push_str(&format!(
            "\n[[aggregates]]\nname = \"{}\"\ndataset = \"outpatients\"\nk = {K}\nmax_cells_per_person = 1\nmax_rows_per_person_cell = 1000\n",
            a.name
        ));
        if a.by_district {
            wat.push_str(&format!(
                "  (func (export \"{}.district\") (param $age i64) (param $district i32) (result i32)\n    (local.get $district))\n",
                a.name
            ));
            manifest.push_str("dimensions = [{ name = \"district\", column = \"district\" }]\n");
        }
    }
    wat.push(')');
    (wat, manifest)
}

/// Submits, approves and runs a job as `alpha`; its id once finished.
fn finished_job(app: &TestApp, tok: &str, name: &str, aggregates: &[Agg]) -> i64 {
    let (wat, manifest) = job(name, aggregates);
    let (status, body) = app.api_submit_job(tok, &wat, &manifest, "各区老年门诊人数");
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    app.approve_computation(body["computation"].as_i64().unwrap());
    assert_eq!(app.run_queued_jobs(), 1);
    assert_eq!(app.job_state(id), "finished");
    id
}

fn api_status(app: &TestApp, tok: &str, job: i64) -> serde_json::Value {
    app.client()
        .get(app.url(&format!("/api/v1/jobs/{job}")))
        .bearer_auth(tok)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The rows of the guard's table on a page (empty when there is none).
fn findings(html: &str) -> Vec<String> {
    html.split("<tr class=\"finding\">")
        .skip(1)
        .map(|r| r[..r.find("</tr>").unwrap()].to_owned())
        .collect()
}

#[test]
fn a_release_one_person_from_an_earlier_one_is_withheld_and_k_apart_is_released() {
    let one = bound_leaving_out(1);
    let out = left_out(one);
    assert_eq!(
        out.values().sum::<usize>(),
        1,
        "a bound leaves out one person"
    );
    let (&district, _) = out.iter().next().unwrap();
    let code = dataop::demo::outpatients::DISTRICTS[district].code;
    let many = bound_leaving_out(K);
    assert!(left_out(many).values().sum::<usize>() >= K);

    let app = world();
    let tok = app.api_token("alpha");
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);

    // 1. Visits at 65 or over, by district and in total: released.
    let aggregates = |bound| {
        [
            Agg {
                name: "by_district",
                by_district: true,
                bound,
            },
            Agg {
                name: "total",
                by_district: false,
                bound,
            },
        ]
    };
    let first = finished_job(&app, &tok, "elderly", &aggregates(None));
    let (_, page) = app.get_text(&reg, &format!("/jobs/{first}"));
    assert!(page.contains("guard-clear"), "nothing collides yet");
    assert_eq!(app.release_job(first), 303);
    assert_eq!(app.job_state(first), "released");

    // 2. The same under an age bound that leaves out one person: an honest-looking filter whose
    // release would reveal that person's district (and age) by difference.
    let second = finished_job(&app, &tok, "elderly_below", &aggregates(Some(one)));
    // The reviewer sees why before releasing: the district's cell and the total, one person
    // from those of the first job.
    let (_, page) = app.get_text(&reg, &format!("/jobs/{second}"));
    let rows = findings(&page);
    assert_eq!(rows.len(), 2, "{page}");
    for row in &rows {
        assert!(row.contains(&format!("/jobs/{first}\"")), "{row}");
        assert!(row.contains("<td>1</td><td>10</td>"), "{row}");
    }
    assert!(
        rows[0].contains(&format!("by_district: {code}")),
        "{}",
        rows[0]
    );
    assert!(rows[1].contains("<td>total</td>"), "{}", rows[1]);
    assert!(page.contains(dataop::i18n::t(
        dataop::i18n::Lang::Zh,
        "jobs.guard_will_withhold"
    )));
    // The operator sees nothing of it while the output waits.
    let (_, mine) = app.get_text(&alpha, &format!("/jobs/{second}"));
    assert!(
        !mine.contains("id=\"differencing\"") && !mine.contains("class=\"finding\""),
        "{mine}"
    );

    // The release is refused by withholding the output, in the release's transaction.
    let r = app.post_form_from(
        &reg,
        &format!("/jobs/{second}"),
        &format!("/jobs/{second}/release"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(app.job_state(second), "withheld");
    let (_, page) = app.get_text(&reg, &format!("/jobs/{second}"));
    assert_eq!(findings(&page), rows, "the reviewer still sees why");
    assert!(page.contains(dataop::i18n::t(
        dataop::i18n::Lang::Zh,
        "jobs.guard_withheld"
    )));

    // The operator learns only that the guard withheld it: no cell, no count, no other job.
    let (_, mine) = app.get_text(&alpha, &format!("/jobs/{second}"));
    let why = dataop::i18n::t(dataop::i18n::Lang::Zh, "jobs.why.differencing");
    assert!(mine.contains(why), "{mine}");
    assert!(!mine.contains("id=\"differencing\"") && !mine.contains("class=\"finding\""));
    assert!(!mine.contains(&format!("/jobs/{first}\"")));
    assert_eq!(
        app.get(&alpha, &format!("/jobs/{second}/output.csv"))
            .status()
            .as_u16(),
        404
    );
    let status = api_status(&app, &tok, second);
    assert_eq!(status["state"], "withheld");
    assert_eq!(status["reason"], "jobs.why.differencing");
    assert_eq!(status["output"], serde_json::Value::Null);
    let text = status.to_string();
    assert!(
        !text.contains("by_district") && !text.contains(code) && !text.contains("difference"),
        "{text}"
    );
    // Only the released cells of the released output are kept: none of the withheld one.
    let kept_of = |job: i64| -> usize {
        use dataop::schema::released_cells;
        use diesel::prelude::*;
        let mut conn = app.conn();
        let n: i64 = released_cells::table
            .filter(released_cells::job_id.eq(job))
            .count()
            .get_result(&mut *conn)
            .unwrap();
        n as usize
    };
    let released_cells = {
        use dataop::schema::jobs;
        use diesel::prelude::*;
        let mut conn = app.conn();
        let output: Option<String> = jobs::table
            .find(first)
            .select(jobs::output)
            .first(&mut *conn)
            .unwrap();
        output.unwrap().matches("\"suppressed\": false").count()
    };
    assert_eq!(kept_of(first), released_cells, "one per released cell");
    assert_eq!(kept_of(second), 0);

    // 3. A total that leaves out at least k persons is released: k apart reveals no one.
    let third = finished_job(
        &app,
        &tok,
        "elderly_younger",
        &[Agg {
            name: "total",
            by_district: false,
            bound: Some(many),
        }],
    );
    let (_, page) = app.get_text(&reg, &format!("/jobs/{third}"));
    assert!(page.contains("guard-clear"), "{page}");
    assert_eq!(app.release_job(third), 303);
    assert_eq!(app.job_state(third), "released");

    // 4. Running the first job again on the same data releases the same cells: allowed.
    let (wat, manifest) = job("elderly", &aggregates(None));
    let (status, body) = app.api_submit_job(&tok, &wat, &manifest, "再次运行");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "queued", "approved already");
    let again = body["id"].as_i64().unwrap();
    assert_eq!(app.run_queued_jobs(), 1);
    assert_eq!(app.release_job(again), 303);
    assert_eq!(app.job_state(again), "released");
    // Its cells were released already: the first job's stand for them.
    assert_eq!(kept_of(again), 0);
    assert_eq!(kept_of(first), released_cells);
}

#[test]
fn two_aggregates_of_one_release_one_person_apart_are_withheld() {
    let one = bound_leaving_out(1);
    let app = world();
    let tok = app.api_token("alpha");
    let job = finished_job(
        &app,
        &tok,
        "elderly_twice",
        &[
            Agg {
                name: "total",
                by_district: false,
                bound: None,
            },
            Agg {
                name: "all_but_one",
                by_district: false,
                bound: Some(one),
            },
        ],
    );
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (_, page) = app.get_text(&reg, &format!("/jobs/{job}"));
    let rows = findings(&page);
    assert_eq!(rows.len(), 1, "{page}");
    let this = dataop::i18n::t(dataop::i18n::Lang::Zh, "jobs.guard_same");
    assert!(
        rows[0].contains("<td>total</td>")
            && rows[0].contains(&format!("{this} · all_but_one"))
            && rows[0].contains("<td>1</td><td>10</td>"),
        "{}",
        rows[0]
    );
    assert_eq!(app.release_job(job), 303);
    assert_eq!(app.job_state(job), "withheld");
    {
        use dataop::schema::{released_cell_datasets, released_cells};
        use diesel::prelude::*;
        let mut conn = app.conn();
        let cells: i64 = released_cells::table
            .count()
            .get_result(&mut *conn)
            .unwrap();
        let links: i64 = released_cell_datasets::table
            .count()
            .get_result(&mut *conn)
            .unwrap();
        assert_eq!(
            (cells, links),
            (0, 0),
            "the withheld output's persons are not kept"
        );
    }
    let alpha = app.logged_in("alpha", DEMO_PASSWORD);
    let (_, mine) = app.get_text(&alpha, &format!("/jobs/{job}"));
    assert!(mine.contains(dataop::i18n::t(
        dataop::i18n::Lang::Zh,
        "jobs.why.differencing"
    )));
    assert!(!mine.contains("all_but_one") && !mine.contains("id=\"differencing\""));
}

/// Two outputs one person apart released at the same moment: the check holds inside each
/// release's transaction, so one is released and the other withheld, whichever comes first.
#[test]
fn two_releases_racing_do_not_both_pass() {
    let one = bound_leaving_out(1);
    let app = world();
    let tok = app.api_token("alpha");
    let total = |name, bound| {
        [Agg {
            name,
            by_district: false,
            bound,
        }]
    };
    let a = finished_job(&app, &tok, "elderly", &total("total", None));
    let b = finished_job(&app, &tok, "elderly_below", &total("total", Some(one)));
    let reviewers: Vec<_> = [a, b]
        .iter()
        .map(|job| {
            let reg = app.logged_in("regulator", DEMO_PASSWORD);
            let csrf = app.csrf(&reg, &format!("/jobs/{job}"));
            (reg, csrf, *job)
        })
        .collect();
    let start = std::sync::Barrier::new(2);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = reviewers
            .iter()
            .map(|(reg, csrf, job)| {
                let start = &start;
                let app = &app;
                s.spawn(move || {
                    start.wait();
                    app.post_form(reg, &format!("/jobs/{job}/release"), &[("csrf", csrf)])
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, [303, 303]);
    let mut states = [app.job_state(a), app.job_state(b)];
    states.sort();
    assert_eq!(states, ["released", "withheld"]);
}
