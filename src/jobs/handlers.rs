//! Job request handlers: one per action.
//!
//! Operators (enterprise members) submit, watch, cancel, download and report usage of their
//! organisation's runs; anyone else asking for one of them gets 404. The reviewer (see
//! [`super::reviewer_role`]) approves computations and releases or withholds outputs; the
//! regulator and the platform admin see every run. The platform admin records training.

use actix_multipart::Multipart;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use futures_util::TryStreamExt as _;
use serde::Deserialize;

use super::machine::{ComputationState, RunState};
use super::model::{self, Computation, Job, MAX_MANIFEST_BYTES, MAX_MODULE_BYTES};
use super::ops::{self, ReleaseResult};
use super::output::{self, Chart, Table};
use super::submit::{self, Problem, Submission};
use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::errors::AppError;
use crate::i18n::Lang;
use crate::idempotency;
use crate::input::{self, DateSpan};
use crate::web::{Page, db, lang_of, redirect_with_flash, render, render_status};
use dataop_sandbox::runtime::operator_kind;

/// Runs listed per page.
const LIST_LIMIT: i64 = 200;
/// Longest purpose field accepted in a multipart form, in bytes.
const MAX_PURPOSE_BYTES: usize = 16 * 1024;
/// Most `dataset.<name>` fields in one submission.
const MAX_BINDINGS: usize = 32;

/// Whether `user` may see run `j`.
fn may_view(user: &CurrentUser, j: &Job) -> bool {
    super::sees_all(user) || user.org_id == j.org_id
}

fn require_reviewer(state: &AppState, user: &CurrentUser) -> Result<(), AppError> {
    if super::is_reviewer(state, user) {
        Ok(())
    } else {
        Err(AppError::forbidden())
    }
}

pub(super) fn load_visible(
    conn: &mut crate::db::DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<Job, AppError> {
    let j = ops::load_job(conn, id)?;
    if may_view(user, &j) {
        Ok(j)
    } else {
        Err(AppError::not_found())
    }
}

/// A run as a list row.
#[derive(Debug, Clone)]
pub struct RowView {
    /// Id.
    pub id: i64,
    /// Job name.
    pub name: String,
    /// Operator.
    pub org_name: String,
    /// State.
    pub state: RunState,
    /// Rows processed, percent (for the operator, from the state alone:
    /// [`Job::operator_percent`]; `None` while it runs).
    pub percent: Option<i64>,
    /// Submitted at.
    pub created_at: String,
    /// Module hash (first 12 characters).
    pub short_hash: String,
}

fn row_view(page: &Page, r: model::JobRow, staff: bool) -> RowView {
    RowView {
        id: r.job.id,
        percent: if staff {
            Some(r.job.percent())
        } else {
            r.job.operator_percent()
        },
        state: r.job.state,
        created_at: page.time(r.job.created_at),
        short_hash: r.module_sha256.chars().take(12).collect(),
        name: r.name,
        org_name: r.org_name,
    }
}

/// A privacy budget line.
#[derive(Debug, Clone)]
pub struct BudgetView {
    /// The operator.
    pub operator: String,
    /// Agreement number.
    pub agreement: String,
    /// Dataset title in the page language.
    pub dataset: String,
    /// Budget.
    pub budget: String,
    /// Spent.
    pub spent: String,
    /// Remaining.
    pub remaining: String,
}

#[derive(Template)]
#[template(path = "jobs/list.html")]
struct ListPage {
    page: Page,
    rows: Vec<RowView>,
    budgets: Vec<BudgetView>,
    run_budgets: Vec<ops::RunBudgetLine>,
    outstanding: Vec<i64>,
    operator: bool,
}
crate::impl_page!(ListPage);

impl ListPage {
    fn period_key(&self, b: &ops::RunBudgetLine) -> String {
        format!("agreements.period.{}", b.period)
    }
}

/// `GET /jobs`: an operator's runs, budgets and outstanding usage reports; every run for the
/// regulator and the platform admin.
pub async fn list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let operator = !super::sees_all(&user);
    if operator && user.role != Role::Enterprise {
        return Err(AppError::forbidden());
    }
    let org = user.org_id;
    let now = state.clock.now();
    let (rows, budgets, run_budgets, outstanding) = db(&state, move |conn| {
        let rows = model::job_rows(conn, operator.then_some(org), None, LIST_LIMIT)?;
        let budgets = ops::budgets(conn, operator.then_some(org))?;
        let run_budgets = ops::run_budgets(conn, operator.then_some(org), now)?;
        let outstanding = model::outstanding_usage(conn, operator.then_some(org))?;
        Ok((rows, budgets, run_budgets, outstanding))
    })
    .await?;
    render(&ListPage {
        budgets: budget_views(budgets, page.lang),
        rows: rows
            .into_iter()
            .map(|r| row_view(&page, r, !operator))
            .collect(),
        page,
        run_budgets,
        outstanding,
        operator,
    })
}

fn budget_views(rows: Vec<ops::BudgetLine>, lang: Lang) -> Vec<BudgetView> {
    rows.into_iter()
        .map(|b| BudgetView {
            dataset: crate::i18n::pick(lang, &b.dataset, &b.dataset_en).to_owned(),
            operator: b.operator,
            agreement: b.agreement,
            budget: b.budget.normalize().to_string(),
            spent: b.spent.normalize().to_string(),
            remaining: (b.budget - b.spent).normalize().to_string(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "jobs/new.html")]
struct NewPage {
    page: Page,
    trained: bool,
    datasets: Vec<(i64, String)>,
    problems: Vec<String>,
    manifest: String,
    purpose: String,
}
crate::impl_page!(NewPage);

async fn new_page(
    state: &web::Data<AppState>,
    page: Page,
    user: &CurrentUser,
    sub: &Submission,
    problems: Vec<String>,
) -> Result<NewPage, AppError> {
    let (uid, org) = (user.id, user.org_id);
    let today = state.clock.today();
    let (trained, datasets) = db(state, move |conn| {
        Ok((
            model::trained(conn, uid, today)?,
            crate::agreements::datasets_in_force(conn, org, today)?,
        ))
    })
    .await?;
    Ok(NewPage {
        page,
        trained,
        datasets,
        problems,
        manifest: sub.manifest.clone(),
        purpose: sub.purpose.clone(),
    })
}

/// `GET /jobs/new`: the submission form (operators).
pub async fn new_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    let p = new_page(&state, page, &user, &Submission::default(), Vec::new()).await?;
    render(&p)
}

fn bad_form(_: actix_multipart::MultipartError) -> AppError {
    AppError::bad_request("jobs.err.form")
}

async fn read_field(
    field: &mut actix_multipart::Field,
    limit: usize,
    too_large: &'static str,
) -> Result<Vec<u8>, AppError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.try_next().await.map_err(bad_form)? {
        if buf.len() + chunk.len() > limit {
            return Err(AppError::http(StatusCode::PAYLOAD_TOO_LARGE, too_large).arg("max", limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Reads a submission (multipart: `module`, `manifest`, `purpose`, `dataset.<name>`, and
/// `csrf` from browsers): the submission as typed, the CSRF token read, if any, and the first
/// problem of its text fields (one over its limit, or text that is not allowed), which the
/// caller answers without acting on the submission.
async fn read_submission(
    mut payload: Multipart,
) -> Result<(Submission, String, Option<AppError>), AppError> {
    let mut sub = Submission::default();
    let mut csrf = String::new();
    let mut problem = None;
    while let Some(mut field) = payload.try_next().await.map_err(bad_form)? {
        let name = field.name().unwrap_or("").to_owned();
        let (value, p) = match name.as_str() {
            "module" => {
                sub.module =
                    read_field(&mut field, MAX_MODULE_BYTES, "jobs.err.module_large").await?;
                continue;
            }
            "csrf" => input::multipart_text_as_typed(&mut field, &name, 256).await?,
            "manifest" => {
                input::multipart_text_as_typed(&mut field, &name, MAX_MANIFEST_BYTES).await?
            }
            "purpose" => {
                input::multipart_text_as_typed(&mut field, &name, MAX_PURPOSE_BYTES).await?
            }
            n if n.starts_with("dataset.") && sub.bindings.len() < MAX_BINDINGS => {
                input::multipart_text_as_typed(&mut field, &name, 64).await?
            }
            _ => return Err(AppError::bad_request("jobs.err.form")),
        };
        if problem.is_none() {
            problem = p;
        }
        match name.as_str() {
            "csrf" => csrf = value,
            "manifest" => sub.manifest = value,
            "purpose" => sub.purpose = value,
            n => {
                let v = value.trim();
                if !v.is_empty() {
                    sub.bindings
                        .insert(n["dataset.".len()..].to_owned(), v.to_owned());
                }
            }
        }
    }
    Ok((sub, csrf, problem))
}

/// Checks and records a submission (with the answer under `claim`'s idempotency key, in the
/// same transaction); the failed rules on refusal.
async fn do_submit(
    state: &web::Data<AppState>,
    user: &CurrentUser,
    sub: Submission,
    claim: Option<idempotency::Claim>,
) -> Result<Result<ops::Submitted, Vec<Problem>>, AppError> {
    user.require(&[Role::Enterprise])?;
    let st = state.clone();
    let u = user.clone();
    let reviewer = super::reviewer_role(state);
    db(state, move |conn| {
        let rt = st.sandbox.runtime(&st.config.data_dir, &st.secrets)?;
        let loaded = submit::load(&rt, sub);
        let cx = ops::SubmitContext {
            limits: rt.limits(),
            data_dir: &st.config.data_dir,
            scratch: &st.scratch,
            reviewer,
        };
        let now = crate::db::to_micros(st.clock.now());
        let submitted = crate::db::write_transaction(conn, |conn| {
            let submitted = match ops::submit(conn, &u, &loaded, &cx, st.clock.today(), now)? {
                Ok(s) => s,
                Err(problems) => return Ok(Err(problems)),
            };
            if let Some(claim) = &claim {
                let answer = idempotency::Recorded {
                    status: StatusCode::CREATED.as_u16(),
                    body: submitted_json(&submitted),
                };
                idempotency::record(conn, claim, &answer, now)?;
            }
            Ok::<_, AppError>(Ok(submitted))
        })?;
        let submitted = match submitted {
            Ok(s) => s,
            Err(problems) => return Ok(Err(problems)),
        };
        if submitted.queued {
            super::worker::announce_queued(&st, conn);
        }
        Ok(Ok(submitted))
    })
    .await
}

/// `POST /jobs` (multipart): submits from the browser; the form is shown again with every
/// failed rule on refusal.
pub async fn submit_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    let (sub, csrf, problem) = read_submission(payload).await?;
    page.check_csrf(&csrf)?;
    let keep = Submission {
        module: Vec::new(),
        ..sub.clone()
    };
    if let Some(e) = problem {
        let (status, _, msg) = e.message(page.lang);
        let p = new_page(&state, page, &user, &keep, vec![msg]).await?;
        return render_status(status, &p);
    }
    match do_submit(&state, &user, sub, None).await? {
        Ok(s) => Ok(redirect_with_flash(
            &format!("/jobs/{}", s.job_id),
            "ok",
            if s.queued {
                "jobs.flash.queued"
            } else {
                "jobs.flash.awaiting"
            },
        )),
        Err(problems) => {
            let lang = page.lang;
            let msgs = problems.iter().map(|p| p.message(lang)).collect();
            let p = new_page(&state, page, &user, &keep, msgs).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
    }
}

/// The API's answer to a recorded submission.
fn submitted_json(s: &ops::Submitted) -> serde_json::Value {
    serde_json::json!({
        "id": s.job_id,
        "computation": s.computation_id,
        "state": if s.queued { "queued" } else { "awaiting_approval" },
        "url": format!("/jobs/{}", s.job_id),
    })
}

/// The idempotency hash of a submission: what it asks for, not how it was encoded.
fn submission_hash(sub: &Submission) -> String {
    let bindings = serde_json::to_string(&sub.bindings).unwrap_or_default();
    idempotency::request_hash(
        "POST /api/v1/jobs",
        &[
            &sub.module,
            sub.manifest.as_bytes(),
            sub.purpose.as_bytes(),
            bindings.as_bytes(),
        ],
    )
}

/// The answer already recorded under `claim`, if any (422 when the key was used for another
/// request).
async fn recorded_answer(
    state: &web::Data<AppState>,
    claim: &Option<idempotency::Claim>,
) -> Result<Option<HttpResponse>, AppError> {
    let Some(claim) = claim.clone() else {
        return Ok(None);
    };
    let now = state.clock.now();
    match db(state, move |conn| {
        Ok(idempotency::prior(conn, &claim, now)?)
    })
    .await?
    {
        idempotency::Prior::None => Ok(None),
        idempotency::Prior::Same(answer) => Ok(Some(answer.replay())),
        idempotency::Prior::Different => Err(idempotency::reused()),
    }
}

/// `POST /api/v1/jobs` (multipart, bearer token): 201 with the run, or 422 naming every
/// failed rule.
///
/// With an `Idempotency-Key` header (see [`crate::idempotency`]), the run and the answer are
/// recorded together under the key, within the caller's organisation: the same key with the
/// same submission answers the recorded 201 again (header `Idempotent-Replayed: true`, the
/// same run), even when both requests arrive at once; with another submission it answers
/// 422. A refusal is not recorded.
pub async fn api_submit(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    if !user.via_token {
        return Err(AppError::unauthorized());
    }
    user.require(&[Role::Enterprise])?;
    let key = idempotency::Key::from_request(&req)?;
    let (sub, _, problem) = read_submission(payload).await?;
    if let Some(e) = problem {
        return Err(e);
    }
    let claim = key.map(|key| idempotency::Claim {
        scope: idempotency::org_scope(user.org_id),
        key,
        request_hash: submission_hash(&sub),
    });
    if let Some(answer) = recorded_answer(&state, &claim).await? {
        return Ok(answer);
    }
    let lang = lang_of(&req);
    let submitted = match do_submit(&state, &user, sub, claim.clone()).await {
        Ok(s) => s,
        // A request with the same key committed first: this one was rolled back.
        Err(e) => return recorded_answer(&state, &claim).await?.ok_or(e),
    };
    match submitted {
        Ok(s) => Ok(HttpResponse::Created().json(submitted_json(&s))),
        Err(problems) => {
            let list: Vec<_> = problems
                .iter()
                .map(|p| serde_json::json!({ "rule": p.rule, "message": p.message(lang) }))
                .collect();
            Ok(HttpResponse::UnprocessableEntity().json(serde_json::json!({
                "error": {
                    "status": 422,
                    "code": "jobs.err.refused",
                    "message": problems.first().map(|p| p.message(lang)).unwrap_or_default(),
                },
                "problems": list,
            })))
        }
    }
}

/// Runs listed per page of `GET /api/v1/jobs` by default, and at most.
const API_PAGE: i64 = 50;
const API_MAX_PAGE: i64 = 200;

/// Query of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize)]
pub struct ApiListQuery {
    /// Only runs with a smaller id (the `next` link of the previous page).
    #[serde(default)]
    before: String,
    /// Runs per page (1 to 200, default 50).
    #[serde(default)]
    limit: String,
}

/// `GET /api/v1/jobs?before=ID&limit=N` (bearer token): the runs of the caller's organisation,
/// newest first, a page at a time; `next` links to the following page (`null` on the last).
pub async fn api_list(
    user: CurrentUser,
    state: web::Data<AppState>,
    query: crate::input::Query<ApiListQuery>,
) -> Result<HttpResponse, AppError> {
    let bad = |field: &str| AppError::bad_request("jobs.err.api_query").arg("field", field);
    let before = match query.before.as_str() {
        "" => None,
        b => Some(
            b.parse::<i64>()
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| bad("before"))?,
        ),
    };
    let limit = match query.limit.as_str() {
        "" => API_PAGE,
        l => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=API_MAX_PAGE).contains(l))
            .ok_or_else(|| bad("limit"))?,
    };
    let org = user.org_id;
    let rows = db(&state, move |conn| {
        Ok(model::org_job_page(conn, org, before, limit + 1)?)
    })
    .await?;
    let more = rows.len() as i64 > limit;
    let items: Vec<_> = rows
        .iter()
        .take(limit as usize)
        .map(|r| {
            serde_json::json!({
                "id": r.job.id,
                "computation": r.job.computation_id,
                "name": r.name,
                "state": r.job.state,
                "final": r.job.state.is_final(),
                "created_at": r.job.created_at.and_utc().to_rfc3339(),
                "url": format!("/api/v1/jobs/{}", r.job.id),
            })
        })
        .collect();
    let next = more
        .then(|| items.last().and_then(|j| j["id"].as_i64()))
        .flatten()
        .map(|id| format!("/api/v1/jobs?before={id}&limit={limit}"));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next })))
}

/// `GET /api/v1/jobs/{id}`: the run's state, progress, reason and report.
pub async fn api_status(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let u = user.clone();
    let j = db(&state, move |conn| load_visible(conn, &u, id)).await?;
    let staff = super::sees_all(&user);
    let report: serde_json::Value = j
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .map(|r| {
            if staff {
                r
            } else {
                operator_report(&r, j.rows_total)
            }
        })
        .unwrap_or(serde_json::Value::Null);
    let reason = match sandbox_failure(&j) {
        Some(kind) if !staff => ops::outcome_both(operator_kind(kind), ""),
        _ => j.reason.clone(),
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": j.id,
        "state": j.state,
        "final": j.state.is_final(),
        // How far a run has read is steered by the module: platform staff only (ABI v2, 8).
        "rows_done": staff.then_some(j.rows_done),
        "rows_total": j.rows_total,
        "reason": reason,
        "report": report,
        "output": (j.state == RunState::Released).then(|| format!("/api/v1/jobs/{id}/output")),
    })))
}

/// What an operator may see of a stored run report (`RunReport::for_operator`): the
/// outcome's kind as an operator is shown it, the rows of the datasets (`rows_total`, pinned
/// at the start) as rows read, and coarse figures; never the exact figures or messages the
/// guest can steer.
fn operator_report(report: &serde_json::Value, rows_total: i64) -> serde_json::Value {
    let finished = report["outcome"]["kind"] == "finished";
    let cells = |k: &str| {
        if finished {
            report[k].as_u64().unwrap_or(0)
        } else {
            0
        }
    };
    serde_json::json!({
        "outcome": operator_kind(report["outcome"]["kind"].as_str().unwrap_or("")),
        "rows_read": rows_total,
        "cells_released": cells("cells_released"),
        "cells_suppressed": cells("cells_suppressed"),
        "elapsed_s": (report["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0).ceil().max(1.0) as u64,
    })
}

/// The sandbox outcome kind of a run that the sandbox ended without finishing, if so (its
/// stored reason then holds the sandbox's details, for platform staff only).
fn sandbox_failure(job: &Job) -> Option<&str> {
    (!job.reason.starts_with("jobs.why.") && job.outcome != "finished" && !job.reason.is_empty())
        .then_some(job.outcome.as_str())
        .filter(|k| ops::outcome_key(k).is_some())
}

/// The figures of a run report a person reads first.
#[derive(Debug, Clone, Default)]
pub struct ReportSummary {
    /// How the run ended, in the page language.
    pub outcome: String,
    /// Wall-clock time: milliseconds for platform staff, whole seconds (rounded up) for the
    /// operator.
    pub elapsed: String,
    /// Instances the rows were split across.
    pub instances: String,
    /// Largest linear memory of one instance, MiB.
    pub memory_mib: String,
    /// Rows handed to the job.
    pub rows_read: String,
    /// Contributions emitted.
    pub contributions: String,
    /// Cells released.
    pub cells_released: String,
    /// Cells suppressed.
    pub cells_suppressed: String,
    /// Epsilon spent; `None` when no noise was added.
    pub epsilon_spent: Option<String>,
}

fn summary(report: &serde_json::Value, rows_total: i64, lang: Lang, staff: bool) -> ReportSummary {
    if !staff {
        let r = operator_report(report, rows_total);
        let kind = r["outcome"].as_str().unwrap_or("").to_owned();
        return ReportSummary {
            outcome: ops::outcome_key(&kind)
                .map(|k| crate::i18n::t(lang, k).to_owned())
                .unwrap_or(kind),
            elapsed: format!("≤ {} s", r["elapsed_s"]),
            rows_read: r["rows_read"].to_string(),
            cells_released: r["cells_released"].to_string(),
            cells_suppressed: r["cells_suppressed"].to_string(),
            epsilon_spent: report["epsilon_spent"]
                .as_f64()
                .filter(|e| *e > 0.0)
                .map(|e| e.to_string()),
            ..ReportSummary::default()
        };
    }
    let f = |k: &str| match &report[k] {
        serde_json::Value::Null => String::new(),
        v => v.to_string(),
    };
    let kind = report["outcome"]["kind"].as_str().unwrap_or("").to_owned();
    ReportSummary {
        outcome: ops::outcome_key(&kind)
            .map(|k| crate::i18n::t(lang, k).to_owned())
            .unwrap_or(kind),
        elapsed: report["elapsed_ms"]
            .as_f64()
            .map(|v| format!("{v:.1} ms"))
            .unwrap_or_default(),
        instances: f("instances"),
        memory_mib: report["memory_peak_bytes"]
            .as_f64()
            .map(|v| format!("{:.1}", v / 1_048_576.0))
            .unwrap_or_default(),
        rows_read: f("rows_read"),
        contributions: f("contributions"),
        cells_released: f("cells_released"),
        cells_suppressed: f("cells_suppressed"),
        epsilon_spent: report["epsilon_spent"]
            .as_f64()
            .filter(|e| *e > 0.0)
            .map(|_| f("epsilon_spent")),
    }
}

/// Why a run failed, was cancelled or withheld, as shown on the job page.
#[derive(Debug, Clone)]
pub struct ReasonView {
    /// In the page language.
    pub text: String,
    /// The sandbox's or the host's own words, when `text` translates them (else empty).
    pub detail: String,
}

/// The reason of a run in `lang`: the platform's reasons are message keys, an outcome of a
/// known kind (the sandbox's, or a host error while preparing the run) is translated with its
/// technical text kept as detail, and the reviewer's words are shown as written.
/// The details of a sandbox outcome, and which of the kinds a module can bring about it is,
/// are shown to platform staff (`staff`) only: they may carry what the guest chose.
fn reason_view(job: &Job, lang: Lang, staff: bool) -> Option<ReasonView> {
    if job.reason.is_empty() {
        return None;
    }
    let kind = sandbox_failure(job).map(|k| if staff { k } else { operator_kind(k) });
    Some(match kind.and_then(ops::outcome_key) {
        Some(key) => ReasonView {
            text: crate::i18n::t(lang, key).to_owned(),
            detail: if staff {
                job.reason.clone()
            } else {
                String::new()
            },
        },
        None => ReasonView {
            text: job.reason_text(lang),
            detail: String::new(),
        },
    })
}

/// A dataset version a run read, as shown on the job page.
#[derive(Debug, Clone)]
pub struct SourceView {
    /// The catalog dataset.
    pub dataset_id: i64,
    /// Its catalog title in the page language.
    pub title: String,
    /// The providing organisation.
    pub provider: String,
    /// The manifest's name of the dataset.
    pub binding: String,
    /// The version row.
    pub version_id: i64,
    /// The version number.
    pub version_no: i32,
    /// Its rows.
    pub rows: i64,
    /// The date the data was obtained (the version's upload).
    pub obtained_on: NaiveDate,
}

fn sources(
    conn: &mut crate::db::DbConnection,
    versions: Vec<model::VersionUsed>,
    lang: Lang,
) -> Result<Vec<SourceView>, AppError> {
    let ids: Vec<i64> = versions.iter().map(|v| v.dataset_id).collect();
    let labels = model::dataset_labels(conn, &ids)?;
    Ok(versions
        .into_iter()
        .map(|v| {
            let label = labels.get(&v.dataset_id).cloned().unwrap_or_default();
            SourceView {
                dataset_id: v.dataset_id,
                title: label.title(lang).to_owned(),
                provider: label.provider,
                binding: v.name,
                version_id: v.version_id,
                version_no: v.version_no,
                rows: v.rows,
                obtained_on: v.obtained_at.date(),
            }
        })
        .collect())
}

/// A computation's binding of a manifest dataset to a catalog dataset, as the reviewer sees it.
#[derive(Debug, Clone)]
pub struct BindingView {
    /// The manifest's name of the dataset.
    pub binding: String,
    /// The catalog dataset.
    pub dataset_id: i64,
    /// Its catalog title in the page language.
    pub title: String,
    /// The providing organisation.
    pub provider: String,
}

fn bound_datasets(
    conn: &mut crate::db::DbConnection,
    c: &Computation,
    lang: Lang,
) -> Result<Vec<BindingView>, AppError> {
    let map = c.binding_map();
    let ids: Vec<i64> = map.values().copied().collect();
    let labels = model::dataset_labels(conn, &ids)?;
    Ok(map
        .into_iter()
        .map(|(binding, dataset_id)| {
            let label = labels.get(&dataset_id).cloned().unwrap_or_default();
            BindingView {
                binding,
                dataset_id,
                title: label.title(lang).to_owned(),
                provider: label.provider,
            }
        })
        .collect())
}

/// A run's metering of one dataset version, as the reviewer sees it on the job page.
#[derive(Debug, Clone)]
pub struct MeterView {
    /// The catalog dataset.
    pub dataset_id: i64,
    /// Its catalog title in the page language (empty when the version is not among the run's
    /// sources).
    pub title: String,
    /// The version number, when known.
    pub version_no: Option<i32>,
    /// Rows read of it.
    pub rows_read: i64,
    /// The agreement's price per job at the time.
    pub price_per_job: Option<String>,
    /// The agreement's price per 1,000 rows at the time.
    pub price_per_thousand_rows: Option<String>,
}

/// The metering rows labelled with the sources they read.
fn meter_views(meters: Vec<model::MeterRow>, sources: &[SourceView]) -> Vec<MeterView> {
    meters
        .into_iter()
        .map(
            |(dataset_id, version_id, rows_read, price_per_job, price_per_thousand_rows)| {
                let source = sources.iter().find(|s| s.version_id == version_id);
                MeterView {
                    dataset_id,
                    title: source.map(|s| s.title.clone()).unwrap_or_default(),
                    version_no: source.map(|s| s.version_no),
                    rows_read,
                    price_per_job,
                    price_per_thousand_rows,
                }
            },
        )
        .collect()
}

/// The signed files of a release, as shown on the job page.
#[derive(Debug, Clone)]
pub struct ReleaseView {
    /// sha256 of the CSV file.
    pub csv_sha256: String,
    /// Signature of it.
    pub csv_signature: String,
    /// sha256 of the JSON file.
    pub json_sha256: String,
    /// Signature of it.
    pub json_signature: String,
    /// The public key.
    pub public_key: String,
    /// Released at.
    pub released_at: String,
}

/// A pair of cells the differencing guard found, as platform staff see it.
#[derive(Debug, Clone)]
pub struct FindingView {
    /// The aggregate and key labels of the run's cell.
    pub cell: String,
    /// The run that released the other cell (`None`: this release).
    pub other_job: Option<i64>,
    /// The aggregate and key labels of the other cell.
    pub other_cell: String,
    /// Persons in exactly one of the two.
    pub difference: i64,
    /// The threshold they were compared with.
    pub k: i64,
}

/// What the differencing guard says of a run, for platform staff only.
#[derive(Debug, Clone)]
pub struct GuardView {
    /// The output waits for review and was checked now (else: the pairs that withheld it).
    pub live: bool,
    /// The pairs found.
    pub findings: Vec<FindingView>,
}

fn guard_view(job: &Job, findings: Vec<super::differencing::Finding>, live: bool) -> GuardView {
    let cell = |aggregate: &str, labels: Vec<String>| {
        if labels.is_empty() {
            aggregate.to_owned()
        } else {
            format!("{aggregate}: {}", labels.join(" · "))
        }
    };
    GuardView {
        live,
        findings: findings
            .into_iter()
            .map(|f| FindingView {
                cell: cell(&f.aggregate, f.labels()),
                other_cell: cell(&f.other_aggregate, f.other_labels()),
                other_job: (f.other_job_id != job.id).then_some(f.other_job_id),
                difference: f.difference,
                k: f.k,
            })
            .collect(),
    }
}

/// The differencing guard's view of run `j` for platform staff: checked now while its output
/// waits for review, or the pairs that withheld it.
fn guard_of(conn: &mut crate::db::DbConnection, j: &Job) -> Result<Option<GuardView>, AppError> {
    Ok(match j.state {
        RunState::Finished => Some(guard_view(
            j,
            super::differencing::check(conn, j)?.findings,
            true,
        )),
        RunState::Withheld => {
            let found = super::differencing::findings_of(conn, j.id)?;
            (!found.is_empty()).then(|| guard_view(j, found, false))
        }
        _ => None,
    })
}

#[derive(Template)]
#[template(path = "jobs/show.html")]
struct ShowPage {
    page: Page,
    job: Job,
    computation: Computation,
    state_: RunState,
    refresh: bool,
    operator: bool,
    reviewer: bool,
    platform_admin: bool,
    staff: bool,
    show_output: bool,
    tables: Vec<Table>,
    charts: Vec<Chart>,
    report: String,
    summary: Option<ReportSummary>,
    release: Option<ReleaseView>,
    usage: Option<(String, String)>,
    meters: Vec<MeterView>,
    sources: Vec<SourceView>,
    reason: Option<ReasonView>,
    guard: Option<GuardView>,
}
crate::impl_page!(ShowPage);

/// `GET /jobs/{id}`: state, progress (refreshing itself while it waits or runs), report,
/// output for review or as released, downloads, usage report.
pub async fn show(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    let id = path.id;
    let u = user.clone();
    let lang = page.lang;
    let staff = super::sees_all(&user);
    let (job, computation, release, usage, meters, sources, guard) = db(&state, move |conn| {
        let j = load_visible(conn, &u, id)?;
        let c = ops::load_computation(conn, j.computation_id)?;
        let r = model::release(conn, id)?;
        let usage = model::usage_of(conn, id)?;
        let meters = model::meters_of(conn, id)?;
        let sources = sources(conn, j.versions_used(), lang)?;
        let guard = if staff { guard_of(conn, &j)? } else { None };
        Ok((j, c, r, usage, meters, sources, guard))
    })
    .await?;
    let st = job.state;
    let reviewer = super::is_reviewer(&state, &user);
    let operator = user.org_id == job.org_id;
    let show_output = st == RunState::Released
        || (super::sees_all(&user) && matches!(st, RunState::Finished | RunState::Withheld));
    let mut tables = if show_output {
        output::tables(job.output.as_deref().unwrap_or(""))
    } else {
        Vec::new()
    };
    if !tables.is_empty() {
        let c = computation.clone();
        tables = db(&state, move |conn| {
            output::label_keys(conn, &c, &mut tables, lang)?;
            Ok(tables)
        })
        .await?;
    }
    let charts: Vec<Chart> = if st == RunState::Released {
        tables.iter().map(output::chart).collect()
    } else {
        Vec::new()
    };
    let parsed = job
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok());
    let report = parsed
        .as_ref()
        .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
        .unwrap_or_default();
    let summary = parsed
        .as_ref()
        .map(|r| summary(r, job.rows_total, lang, staff));
    let report = if staff { report } else { String::new() };
    render(&ShowPage {
        refresh: matches!(
            st,
            RunState::AwaitingApproval | RunState::Queued | RunState::Running
        ),
        state_: st,
        reason: reason_view(&job, lang, staff),
        staff,
        computation,
        operator,
        reviewer,
        platform_admin: user.role == Role::PlatformAdmin,
        show_output,
        tables,
        charts,
        report,
        summary,
        release: release.map(|r| ReleaseView {
            csv_sha256: r.csv_sha256,
            csv_signature: r.csv_signature,
            json_sha256: r.json_sha256,
            json_signature: r.json_signature,
            public_key: r.public_key,
            released_at: page.time(r.released_at),
        }),
        usage: usage.map(|(b, t)| (b, page.time(t))),
        page,
        meters: meter_views(meters, &sources),
        sources,
        guard,
        job,
    })
}

/// A form with a CSRF token and an optional note.
#[derive(Debug, Deserialize)]
pub struct NoteForm {
    csrf: String,
    #[serde(default)]
    note: String,
}

/// `POST /jobs/{id}/cancel`: the operator or the reviewer cancels a run.
pub async fn cancel(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let reviewer = super::is_reviewer(&state, &user);
    let now = state.clock.now();
    db(&state, move |conn| {
        let j = load_visible(conn, &user, id)?;
        if j.org_id != user.org_id && !reviewer {
            return Err(AppError::forbidden());
        }
        ops::cancel(conn, &user, id, now)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/jobs/{id}"),
        "ok",
        "jobs.flash.cancelled",
    ))
}

/// `POST /jobs/{id}/release`: the reviewer releases a finished run's output.
pub async fn release(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    require_reviewer(&state, &user)?;
    let id = path.into_inner();
    let st = state.clone();
    let result = db(&state, move |conn| {
        ops::release(
            conn,
            &user,
            id,
            &st.seal,
            st.clock.today(),
            st.clock.now(),
            st.clock.zone(),
        )
    })
    .await?;
    let (kind, key) = match result {
        ReleaseResult::Released => ("ok", "jobs.flash.released"),
        ReleaseResult::AgreementEnded => ("error", "jobs.flash.withheld_agreement"),
        ReleaseResult::BudgetExhausted => ("error", "jobs.flash.withheld_budget"),
        ReleaseResult::Differencing => ("error", "jobs.flash.withheld_differencing"),
    };
    Ok(redirect_with_flash(&format!("/jobs/{id}"), kind, key))
}

/// `POST /jobs/{id}/withhold`: the reviewer withholds a finished run's output, with reasons.
pub async fn withhold(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    require_reviewer(&state, &user)?;
    let id = path.into_inner();
    let now = state.clock.now();
    let note = form.into_inner().note;
    db(&state, move |conn| {
        ops::withhold(conn, &user, id, &note, now)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/jobs/{id}"),
        "ok",
        "jobs.flash.withheld",
    ))
}

/// `POST /jobs/{id}/usage`: the operator reports how a released output was used.
pub async fn file_usage(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let now = state.clock.now();
    let note = form.into_inner().note;
    db(&state, move |conn| {
        ops::file_usage(conn, &user, id, &note, now)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/jobs/{id}"),
        "ok",
        "jobs.flash.usage_filed",
    ))
}

async fn released_file(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: i64,
) -> Result<model::Release, AppError> {
    db(&state, move |conn| {
        let j = load_visible(conn, &user, id)?;
        if j.state != RunState::Released {
            return Err(AppError::not_found());
        }
        model::release(conn, id)?.ok_or_else(AppError::not_found)
    })
    .await
}

fn signed(
    body: String,
    sha: String,
    sig: String,
    key: String,
    content_type: &str,
    name: String,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .insert_header(("X-Dataop-Sha256", sha))
        .insert_header(("X-Dataop-Signature", sig))
        .insert_header(("X-Dataop-Public-Key", key))
        .body(body)
}

/// `GET /jobs/{id}/output.csv` (and under `/api/v1`): the released CSV with its provenance.
pub async fn download_csv(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let r = released_file(user, state, id).await?;
    Ok(signed(
        r.csv_body,
        r.csv_sha256,
        r.csv_signature,
        r.public_key,
        "text/csv; charset=utf-8",
        format!("dataop-job-{id}.csv"),
    ))
}

/// `GET /jobs/{id}/output.json` (and `/api/v1/jobs/{id}/output`): the released JSON.
pub async fn download_json(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let r = released_file(user, state, id).await?;
    Ok(signed(
        r.json_body,
        r.json_sha256,
        r.json_signature,
        r.public_key,
        "application/json",
        format!("dataop-job-{id}.json"),
    ))
}

#[derive(Template)]
#[template(path = "jobs/admin.html")]
struct AdminPage {
    page: Page,
    pending: Vec<(Computation, String)>,
    rows: Vec<RowView>,
    outstanding: Vec<i64>,
    reviewer: bool,
}
crate::impl_page!(AdminPage);

/// `GET /admin/jobs`: computations to approve, outputs to review, usage reports outstanding.
pub async fn admin_queue(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if !super::sees_all(&user) {
        return Err(AppError::forbidden());
    }
    let (pending, to_review, outstanding) = db(&state, |conn| {
        Ok((
            model::pending_computations(conn)?,
            model::job_rows(conn, None, Some(&["finished"]), LIST_LIMIT)?,
            model::outstanding_usage(conn, None)?,
        ))
    })
    .await?;
    render(&AdminPage {
        rows: to_review
            .into_iter()
            .map(|r| row_view(&page, r, true))
            .collect(),
        page,
        pending,
        outstanding,
        reviewer: super::is_reviewer(&state, &user),
    })
}

/// One declared output of a manifest, for the review page.
#[derive(Debug, Clone)]
pub struct OutputDecl {
    /// Aggregate name.
    pub name: String,
    /// Dimensions.
    pub dimensions: String,
    /// Measures with bounds.
    pub measures: String,
    /// k (or the floor).
    pub k: String,
    /// Epsilon, or empty.
    pub epsilon: String,
    /// Per-person bounds.
    pub bounds: String,
}

#[derive(Template)]
#[template(path = "jobs/computation.html")]
struct ComputationPage {
    page: Page,
    c: Computation,
    cstate: ComputationState,
    org_name: String,
    size: i64,
    imports: Vec<String>,
    exports: Vec<String>,
    outputs: Vec<OutputDecl>,
    history: Vec<Computation>,
    record: model::OperatorRecord,
    bindings: Vec<BindingView>,
    reviewer: bool,
    regulator: bool,
}
crate::impl_page!(ComputationPage);

/// `GET /admin/computations/{id}`: what the reviewer decides on.
pub async fn computation(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    if !super::sees_all(&user) {
        return Err(AppError::not_found());
    }
    let id = path.id;
    let lang = page.lang;
    let (c, org_name, info, history, record, bindings) = db(&state, move |conn| {
        use diesel::prelude::*;
        let c = ops::load_computation(conn, id)?;
        let org_name: String = crate::schema::organisations::table
            .find(c.org_id)
            .select(crate::schema::organisations::name)
            .first(conn)?;
        let info = model::module_info(conn, &c.module_sha256)?;
        let history = model::computations_of(conn, c.org_id)?
            .into_iter()
            .filter(|h| h.id != id)
            .collect::<Vec<_>>();
        let record = model::operator_record(conn, c.org_id)?;
        let bindings = bound_datasets(conn, &c, lang)?;
        Ok((c, org_name, info, history, record, bindings))
    })
    .await?;
    let (size, imports, exports) = info.unwrap_or_default();
    let outputs = dataop_sandbox::Manifest::from_toml(&c.manifest)
        .map(|m| {
            m.aggregates
                .iter()
                .map(|a| OutputDecl {
                    name: a.name.clone(),
                    dimensions: a
                        .dimensions
                        .iter()
                        .map(|d| d.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                    measures: a
                        .measures
                        .iter()
                        .map(|x| format!("{} [{}, {}]", x.name, x.min, x.max))
                        .collect::<Vec<_>>()
                        .join(", "),
                    k: a.k.unwrap_or(10).to_string(),
                    epsilon: a.epsilon.map(|e| e.to_string()).unwrap_or_default(),
                    bounds: format!(
                        "{} / {}",
                        a.max_cells_per_person, a.max_rows_per_person_cell
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    render(&ComputationPage {
        page,
        cstate: c.state,
        org_name,
        size,
        imports,
        exports,
        outputs,
        history,
        record,
        bindings,
        reviewer: super::is_reviewer(&state, &user),
        regulator: user.role == Role::Regulator,
        c,
    })
}

/// `POST /admin/computations/{id}/approve`.
pub async fn approve(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    require_reviewer(&state, &user)?;
    let id = path.into_inner();
    let now = state.clock.now();
    let st = state.clone();
    db(&state, move |conn| {
        ops::decide_computation(conn, &user, id, None, now)?;
        super::worker::announce_queued(&st, conn);
        Ok(())
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/admin/computations/{id}"),
        "ok",
        "jobs.flash.approved",
    ))
}

/// `POST /admin/computations/{id}/reject` (reasons required).
pub async fn reject(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    require_reviewer(&state, &user)?;
    let id = path.into_inner();
    let now = state.clock.now();
    let note = form.into_inner().note;
    db(&state, move |conn| {
        ops::decide_computation(conn, &user, id, Some(&note), now)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/admin/computations/{id}"),
        "ok",
        "jobs.flash.rejected",
    ))
}

/// `POST /admin/computations/{id}/revoke` (reasons required): withdraws an approval.
pub async fn revoke(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    require_reviewer(&state, &user)?;
    let id = path.into_inner();
    let now = state.clock.now();
    let note = form.into_inner().note;
    db(&state, move |conn| {
        ops::revoke_computation(conn, &user, id, &note, now)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/admin/computations/{id}"),
        "ok",
        "jobs.flash.revoked",
    ))
}

#[derive(Template)]
#[template(path = "jobs/trainings.html")]
struct TrainingsPage {
    page: Page,
    rows: Vec<model::TrainingRow>,
    today: NaiveDate,
    error: Option<String>,
    form: TrainingForm,
    /// Whether the visitor records trainings (the platform admin) or only sees them.
    can_record: bool,
}
crate::impl_page!(TrainingsPage);

/// The training form.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TrainingForm {
    #[serde(default)]
    csrf: String,
    /// Login name of the trained user.
    #[serde(default)]
    pub username: String,
    /// The course.
    #[serde(default)]
    pub course: String,
    /// Trained on (YYYY-MM-DD).
    #[serde(default)]
    pub trained_on: String,
    /// Valid until (YYYY-MM-DD).
    #[serde(default)]
    pub expires_on: String,
}

async fn trainings_page(
    state: &web::Data<AppState>,
    page: Page,
    error: Option<String>,
    form: TrainingForm,
) -> Result<TrainingsPage, AppError> {
    let rows = db(state, |conn| Ok(model::training_rows(conn)?)).await?;
    Ok(TrainingsPage {
        can_record: page.has_role(&[Role::PlatformAdmin]),
        page,
        rows,
        today: state.clock.today(),
        error,
        form,
    })
}

/// `GET /admin/trainings`: training records. The platform admin records them; the regulator,
/// who supervises staff training before operating (Hangzhou plan, point 5), sees them.
pub async fn trainings(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::PlatformAdmin, Role::Regulator])?;
    let p = trainings_page(&state, page, None, TrainingForm::default()).await?;
    render(&p)
}

/// `POST /admin/trainings`: records a training.
pub async fn record_training(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: crate::input::FormAsTyped<TrainingForm>,
) -> Result<HttpResponse, AppError> {
    let (f, problem) = form.into_parts();
    page.check_csrf(&f.csrf)?;
    user.require(&[Role::PlatformAdmin])?;
    let parse = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
    let lang: Lang = page.lang;
    let today = state.clock.today();
    if let Some(problem) = problem {
        let p = trainings_page(&state, page, Some(problem.message(lang)), f).await?;
        return render_status(problem.status(), &p);
    }
    let dates = match (parse(&f.trained_on), parse(&f.expires_on)) {
        (Some(on), Some(until)) => DateSpan::Past
            .check(lang, "jobs.trained_on", on, today)
            .and_then(|on| {
                DateSpan::Planned
                    .check(lang, "jobs.expires_on", until, today)
                    .map(|until| (on, until))
            }),
        _ => Err(crate::i18n::t(lang, "jobs.err.training_dates").to_owned()),
    };
    let (on, until) = match dates {
        Ok(d) => d,
        Err(msg) => {
            let p = trainings_page(&state, page, Some(msg), f).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &p);
        }
    };
    let now = state.clock.now();
    let f2 = f.clone();
    let result = db(&state, move |conn| {
        ops::record_training(conn, &user, &f2.username, &f2.course, on, until, now)
    })
    .await;
    match result {
        Ok(_) => Ok(redirect_with_flash(
            "/admin/trainings",
            "ok",
            "jobs.flash.training_recorded",
        )),
        Err(e @ AppError::Http { .. }) if e.message(lang).0 == StatusCode::UNPROCESSABLE_ENTITY => {
            let msg = e.message(lang).2;
            let p = trainings_page(&state, page, Some(msg), f).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
        Err(e) => Err(e),
    }
}
