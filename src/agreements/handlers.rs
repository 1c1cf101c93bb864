//! Agreement request handlers: one per action.
//!
//! Public: the verification page. Operators (users of the operator organisation): their
//! agreements, signing, the termination request, rectification answers, the disposal
//! confirmation. Regulators: the queues and list, drafting, sealing, amendments and the exit
//! decisions. Anyone else asking for an agreement gets 404.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use diesel::prelude::*;
use serde::Deserialize;

use super::forms::{DraftForm, Problem};
use super::machine::{AgreementState, RectificationState, RequestAction, RequestState};
use super::model::{self, Agreement, AgreementDataset, AgreementRow};
use super::ops::{self, RectDecision};
use super::queues;
use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::calendar::{Calendar, Deadline};
use crate::errors::AppError;
use crate::input::DateSpan;
use crate::schema::{agreement_signatures, agreements, audit_log};
use crate::supervision::audit::Entry;
use crate::web::{Page, db, redirect, redirect_with_flash, render, render_status};

/// Agreements listed per page.
const LIST_LIMIT: i64 = 500;
/// Longest canonical text the verification form accepts, in bytes.
const MAX_CANONICAL: usize = 128 * 1024;

fn is_regulator(user: &CurrentUser) -> bool {
    user.has_role(&[Role::Regulator])
}

/// Whether `user` may see agreement `a` (its operator's members, regulators, platform admins).
fn may_view(user: &CurrentUser, a: &Agreement) -> bool {
    user.has_role(&[Role::Regulator, Role::PlatformAdmin]) || user.org_id == a.operator_org_id
}

fn badge(state: AgreementState) -> &'static str {
    match state {
        AgreementState::InForce => "ok",
        AgreementState::Ended(_) | AgreementState::Superseded => "disabled",
        _ => "pending",
    }
}

/// One agreement as a list row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Id.
    pub id: i64,
    /// Number.
    pub number: String,
    /// Operator.
    pub operator: String,
    /// State label key.
    pub state_key: String,
    /// Badge class suffix.
    pub badge: &'static str,
    /// Term, as text.
    pub term: String,
}

fn row(a: &Agreement) -> Row {
    let st = a.state;
    Row {
        id: a.id,
        number: a.number.clone(),
        operator: a.operator_name.clone(),
        state_key: st.label_key(),
        badge: badge(st),
        term: match (a.starts_on, a.ends_on) {
            (Some(s), Some(e)) => format!("{s} – {e}"),
            _ => String::new(),
        },
    }
}

#[derive(Template)]
#[template(path = "agreements/list.html")]
struct ListPage {
    page: Page,
    rows: Vec<Row>,
}
crate::impl_page!(ListPage);

/// `GET /agreements`: the operator's agreements.
pub async fn my_list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if is_regulator(&user) {
        return Ok(redirect("/admin/agreements"));
    }
    let org = user.org_id;
    let list = db(&state, move |conn| {
        let rows = agreements::table
            .filter(agreements::operator_org_id.eq(org))
            .filter(agreements::state.ne(AgreementState::Draft.as_str()))
            .order(agreements::id.desc())
            .limit(LIST_LIMIT)
            .select(AgreementRow::as_select())
            .load(conn)?;
        Ok(model::complete(conn, rows)?)
    })
    .await?;
    render(&ListPage {
        page,
        rows: list.iter().map(row).collect(),
    })
}

/// A queue item as shown.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// Label.
    pub label: String,
    /// Link.
    pub href: String,
    /// State label key.
    pub state_key: &'static str,
    /// Deadline.
    pub deadline: Option<Deadline>,
}

/// A queue as shown.
#[derive(Debug, Clone)]
pub struct QueueView {
    /// Title key.
    pub title_key: &'static str,
    /// Items, overdue first.
    pub items: Vec<QueueRow>,
}

#[derive(Template)]
#[template(path = "agreements/admin.html")]
struct AdminPage {
    page: Page,
    queues: Vec<QueueView>,
    to_draft: Vec<(i64, String)>,
    rows: Vec<Row>,
}
crate::impl_page!(AdminPage);

impl AdminPage {
    fn days_left(&self, d: &Deadline) -> String {
        if d.overdue {
            self.page.t_args(
                "agreements.overdue_days",
                &[("n", (-d.days_left).to_string())],
            )
        } else {
            self.page
                .t_args("agreements.days_left", &[("n", d.days_left.to_string())])
        }
    }
}

/// `GET /admin/agreements`: the regulator's queues, the applications to draft from, and every
/// agreement.
pub async fn admin_list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    let today = state.clock.today();
    let (sections, to_draft, list) = db(&state, move |conn| {
        let cal = Calendar::load(conn)?;
        let mut sections = queues::sections(conn, &cal, today)?;
        for s in &mut sections {
            s.items.sort_by(|a, b| match (&a.deadline, &b.deadline) {
                (Some(x), Some(y)) => Deadline::queue_order(x, y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        let to_draft = ops::admitted_without_agreement(conn)?;
        let rows = agreements::table
            .order(agreements::id.desc())
            .limit(LIST_LIMIT)
            .select(AgreementRow::as_select())
            .load(conn)?;
        let list = model::complete(conn, rows)?;
        Ok((sections, to_draft, list))
    })
    .await?;
    let queues = sections
        .into_iter()
        .map(|s| QueueView {
            title_key: s.title_key,
            items: s
                .items
                .into_iter()
                .map(|i| QueueRow {
                    label: i.label,
                    href: i.href,
                    state_key: i.state_key,
                    deadline: i.deadline,
                })
                .collect(),
        })
        .collect();
    render(&AdminPage {
        page,
        queues,
        to_draft,
        rows: list.iter().map(row).collect(),
    })
}

/// An approved dataset on the draft form.
#[derive(Debug, Clone)]
pub struct Approved {
    /// Dataset id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// The purpose stated in the application.
    pub purpose: String,
}

#[derive(Template)]
#[template(path = "agreements/form.html")]
struct FormPage {
    page: Page,
    action: String,
    heading: String,
    operator: String,
    approved: Vec<Approved>,
    form: DraftForm,
    error: Option<String>,
}
crate::impl_page!(FormPage);

impl FormPage {
    fn periods(&self) -> [&'static str; 3] {
        super::forms::RUN_PERIODS
    }
}

fn form_page(
    page: Page,
    action: String,
    heading: String,
    adm: &ops::Admitted,
    form: DraftForm,
    error: Option<String>,
) -> FormPage {
    FormPage {
        page,
        action,
        heading,
        operator: adm.org_name.clone(),
        approved: adm
            .datasets
            .iter()
            .map(|(id, title, purpose)| Approved {
                id: *id,
                title: title.clone(),
                purpose: purpose.clone(),
            })
            .collect(),
        form,
        error,
    }
}

fn problem_text(page: &Page, p: &Problem) -> String {
    page.t_args(p.key, &p.args)
}

/// `GET /admin/applications/{app}/agreement/new`: the draft form from an admitted application.
pub async fn draft_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    let app_id = path.into_inner();
    let adm = db(&state, move |conn| ops::admitted(conn, app_id)).await?;
    let approved: Vec<(i64, String)> = adm
        .datasets
        .iter()
        .map(|(id, _, p)| (*id, p.clone()))
        .collect();
    let form = DraftForm::from_application(&adm.scenario, &approved);
    let heading = page.t_args("agreements.draft_heading", &[("app", app_id.to_string())]);
    render(&form_page(
        page,
        format!("/admin/applications/{app_id}/agreement"),
        heading,
        &adm,
        form,
        None,
    ))
}

/// `POST /admin/applications/{app}/agreement`: creates the draft.
pub async fn create_draft(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    fields: crate::input::FormAsTyped<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    let (fields, input_problem) = fields.into_parts();
    let form = DraftForm::from_fields(fields);
    page.check_csrf(&form.csrf)?;
    let app_id = path.into_inner();
    let adm = db(&state, move |conn| ops::admitted(conn, app_id)).await?;
    let approved = adm.datasets.iter().map(|d| d.0).collect();
    let checked = match input_problem {
        Some(p) => Err((p.status(), p.message(page.lang))),
        None => form
            .validate(&approved)
            .map_err(|p| (StatusCode::UNPROCESSABLE_ENTITY, problem_text(&page, &p))),
    };
    match checked {
        Err((status, msg)) => {
            let heading = page.t_args("agreements.draft_heading", &[("app", app_id.to_string())]);
            render_status(
                status,
                &form_page(
                    page,
                    format!("/admin/applications/{app_id}/agreement"),
                    heading,
                    &adm,
                    form,
                    Some(msg),
                ),
            )
        }
        Ok(terms) => {
            let (now, year) = (
                state.clock.now(),
                chrono::Datelike::year(&state.clock.today()),
            );
            let id = db(&state, move |conn| {
                ops::create_draft(conn, &user, app_id, &terms, now, year)
            })
            .await?;
            Ok(redirect_with_flash(
                &format!("/agreements/{id}"),
                "ok",
                "agreements.flash.drafted",
            ))
        }
    }
}

/// `GET /admin/agreements/{id}/edit`: the draft form of a draft (409 once signed).
pub async fn edit_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    let id = path.into_inner();
    let (a, ds, adm) = db(&state, move |conn| {
        let a = model::find(conn, id)?.ok_or_else(AppError::not_found)?;
        crate::workflow::Machine::decide(a.state, super::machine::AgreementAction::Edit)?;
        let ds = model::datasets_of(conn, id)?;
        let adm = approved_of(conn, &a)?;
        Ok((a, ds, adm))
    })
    .await?;
    let heading = page.t_args("agreements.edit_heading", &[("number", a.number.clone())]);
    render(&form_page(
        page,
        format!("/admin/agreements/{id}"),
        heading,
        &adm,
        DraftForm::from_agreement(&a, &ds),
        None,
    ))
}

/// The approved datasets of an agreement's application (whatever the application's state
/// now: an amendment stays within what was approved).
fn approved_of(
    conn: &mut crate::db::DbConnection,
    a: &Agreement,
) -> Result<ops::Admitted, AppError> {
    use crate::schema::{application_datasets, datasets};
    let datasets = application_datasets::table
        .inner_join(datasets::table)
        .filter(application_datasets::application_id.eq(a.application_id))
        .order(datasets::id)
        .select((
            datasets::id,
            datasets::title_zh,
            application_datasets::purpose,
        ))
        .load(conn)?;
    Ok(ops::Admitted {
        id: a.application_id,
        org_id: a.operator_org_id,
        org_name: a.operator_name.clone(),
        scenario: a.scenario.clone(),
        datasets,
    })
}

/// `POST /admin/agreements/{id}`: saves a draft (409 once signed).
pub async fn update_draft(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    fields: crate::input::FormAsTyped<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    let (fields, input_problem) = fields.into_parts();
    let form = DraftForm::from_fields(fields);
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let (a, adm) = db(&state, move |conn| {
        let a = model::find(conn, id)?.ok_or_else(AppError::not_found)?;
        crate::workflow::Machine::decide(a.state, super::machine::AgreementAction::Edit)?;
        let adm = approved_of(conn, &a)?;
        Ok((a, adm))
    })
    .await?;
    let approved = adm.datasets.iter().map(|d| d.0).collect();
    let checked = match input_problem {
        Some(p) => Err((p.status(), p.message(page.lang))),
        None => form
            .validate(&approved)
            .map_err(|p| (StatusCode::UNPROCESSABLE_ENTITY, problem_text(&page, &p))),
    };
    match checked {
        Err((status, msg)) => {
            let heading = page.t_args("agreements.edit_heading", &[("number", a.number)]);
            render_status(
                status,
                &form_page(
                    page,
                    format!("/admin/agreements/{id}"),
                    heading,
                    &adm,
                    form,
                    Some(msg),
                ),
            )
        }
        Ok(terms) => {
            let now = state.clock.now();
            db(&state, move |conn| {
                ops::update_draft(conn, &user, id, &terms, now)
            })
            .await?;
            Ok(redirect_with_flash(
                &format!("/agreements/{id}"),
                "ok",
                "agreements.flash.saved",
            ))
        }
    }
}

/// A form carrying only the CSRF token and an optional note.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoteForm {
    csrf: String,
    note: String,
    decision: String,
    days: String,
    name: String,
}

fn back(id: i64, key: &str) -> HttpResponse {
    redirect_with_flash(&format!("/agreements/{id}"), "ok", key)
}

/// `POST /admin/agreements/{id}/submit`: sends the draft to the operator.
pub async fn submit(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let now = state.clock.now();
    db(&state, move |conn| ops::submit(conn, &user, id, now)).await?;
    Ok(back(id, "agreements.flash.submitted"))
}

/// `POST /agreements/{id}/sign`: the operator signs, typing its organisation's name.
pub async fn sign(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    user.require(&[Role::Enterprise])?;
    let id = path.into_inner();
    let now = state.clock.now();
    let name = form.into_inner().name;
    db(&state, move |conn| {
        ops::operator_sign(conn, &user, id, &name, now)
    })
    .await?;
    Ok(back(id, "agreements.flash.signed"))
}

/// `POST /agreements/{id}/return`: the operator returns the agreement asking for changes.
pub async fn operator_return(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    user.require(&[Role::Enterprise])?;
    let id = path.into_inner();
    let comments = crate::input::note(&form.note, "agreements.err.comments")?;
    let now = state.clock.now();
    db(&state, move |conn| {
        ops::operator_return(conn, &user, id, &comments, now)
    })
    .await?;
    Ok(redirect_with_flash(
        "/agreements",
        "ok",
        "agreements.flash.returned",
    ))
}

/// `POST /admin/agreements/{id}/seal`: the regulator seals.
pub async fn seal(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let (now, today, key) = (state.clock.now(), state.clock.today(), state.seal.clone());
    db(&state, move |conn| {
        ops::seal(conn, &user, id, now, today, &key)
    })
    .await?;
    Ok(back(id, "agreements.flash.sealed"))
}

/// `POST /admin/agreements/{id}/amend`: drafts a new version of an agreement in force.
pub async fn amend(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let now = state.clock.now();
    let new_id = db(&state, move |conn| ops::amend(conn, &user, id, now)).await?;
    Ok(redirect_with_flash(
        &format!("/admin/agreements/{new_id}/edit"),
        "ok",
        "agreements.flash.amendment",
    ))
}

/// `POST /agreements/{id}/termination-request`: the operator asks to end early.
pub async fn request_termination(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    user.require(&[Role::Enterprise])?;
    let id = path.into_inner();
    let reason = crate::input::note(&form.note, "agreements.err.reason")?;
    let now = state.clock.now();
    db(&state, move |conn| {
        ops::request_termination(conn, &user, id, &reason, now)
    })
    .await?;
    Ok(back(id, "agreements.flash.requested"))
}

/// `POST /agreements/{id}/schemas/{dataset}/accept`: the operator accepts the newest schema
/// version of one of the agreement's datasets.
pub async fn accept_schema(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let (id, dataset_id) = path.into_inner();
    let now = ops::stamp(state.clock.now());
    db(&state, move |conn| {
        super::schemas::accept(conn, &user, id, dataset_id, now)
    })
    .await?;
    Ok(back(id, "agreements.flash.schema_accepted"))
}

/// `POST /admin/agreements/{id}/termination-requests/{tid}/decide` (`decision` = `approve` or
/// `refuse`).
pub async fn decide_request(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    page.check_csrf(&form.csrf)?;
    let (id, tid) = path.into_inner();
    let action = match form.decision.as_str() {
        "approve" => RequestAction::Approve,
        "refuse" => RequestAction::Refuse,
        _ => return Err(AppError::invalid("agreements.err.decision")),
    };
    let note_text = ops::optional_note(&form.note);
    if action == RequestAction::Refuse && note_text.is_empty() {
        return Err(AppError::invalid("agreements.err.refusal_reason"));
    }
    let now = state.clock.now();
    db(&state, move |conn| {
        ops::decide_request(conn, &user, id, tid, action, &note_text, now)
    })
    .await?;
    Ok(back(id, "agreements.flash.decided"))
}

/// `POST /admin/agreements/{id}/rectifications`: orders rectification within `days` working
/// days.
pub async fn order_rectification(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let text = crate::input::note(&form.note, "agreements.err.order_text")?;
    let days: i32 = form.days.trim().parse().map_err(|_| {
        AppError::invalid("agreements.err.rect_days").arg("max", ops::MAX_RECTIFICATION_DAYS)
    })?;
    let (now, today) = (state.clock.now(), state.clock.today());
    db(&state, move |conn| {
        ops::order_rectification(conn, &user, id, &text, days, now, today)
    })
    .await?;
    Ok(back(id, "agreements.flash.ordered"))
}

/// `POST /agreements/{id}/rectifications/{rid}/answer`: the operator says what it changed.
pub async fn answer_rectification(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    user.require(&[Role::Enterprise])?;
    let (id, rid) = path.into_inner();
    let answer = crate::input::note(&form.note, "agreements.err.answer")?;
    let (now, today) = (state.clock.now(), state.clock.today());
    db(&state, move |conn| {
        ops::answer_rectification(conn, &user, id, rid, &answer, now, today)
    })
    .await?;
    Ok(back(id, "agreements.flash.answered"))
}

/// `POST /admin/agreements/{id}/rectifications/{rid}/decide` (`decision` = `accept`,
/// `reject` or `terminate` once overdue unanswered).
pub async fn decide_rectification(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    page.check_csrf(&form.csrf)?;
    let (id, rid) = path.into_inner();
    let decision = match form.decision.as_str() {
        "accept" => RectDecision::Accept,
        "reject" => RectDecision::Reject,
        "terminate" => RectDecision::TerminateUnanswered,
        _ => return Err(AppError::invalid("agreements.err.decision")),
    };
    let note_text = ops::optional_note(&form.note);
    let (now, today) = (state.clock.now(), state.clock.today());
    db(&state, move |conn| {
        ops::decide_rectification(conn, &user, id, rid, decision, &note_text, (now, today))
    })
    .await?;
    Ok(back(id, "agreements.flash.decided"))
}

/// `POST /admin/agreements/{id}/terminate`: immediate termination for a violation of law.
pub async fn terminate_for_violation(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<NoteForm>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    let basis = crate::input::note(&form.note, "agreements.err.legal_basis")?;
    let now = state.clock.now();
    db(&state, move |conn| {
        ops::terminate_for_violation(conn, &user, id, &basis, now)
    })
    .await?;
    Ok(back(id, "agreements.flash.terminated"))
}

/// The disposal confirmation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DisposalForm {
    csrf: String,
    what: String,
    on: String,
    by: String,
}

/// `POST /agreements/{id}/disposal`: the operator confirms what data it deleted, when, by whom.
pub async fn file_disposal(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<DisposalForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    user.require(&[Role::Enterprise])?;
    let id = path.into_inner();
    let what = crate::input::note(&form.what, "agreements.err.disposal_what")?;
    let by = crate::input::note(&form.by, "agreements.err.disposal_by")?;
    let on = NaiveDate::parse_from_str(form.on.trim(), "%Y-%m-%d")
        .map_err(|_| AppError::invalid("agreements.err.disposal_on"))?;
    let on = DateSpan::Past.refuse(page.lang, "agreements.disposal_on", on, state.clock.today())?;
    let now = state.clock.now();
    let d = ops::Disposal { what, on, by };
    db(&state, move |conn| {
        ops::file_disposal(conn, &user, id, &d, now)
    })
    .await?;
    Ok(back(id, "agreements.flash.disposal"))
}

/// A rectification order as shown.
#[derive(Debug, Clone)]
pub struct RectView {
    /// The row.
    pub r: model::Rectification,
    /// State label key.
    pub state_key: String,
    /// Whether the operator may still answer.
    pub open: bool,
    /// Whether it waits for the regulator's decision.
    pub answered: bool,
    /// Its deadline today.
    pub deadline: Deadline,
}

/// A termination request as shown.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// The row.
    pub r: model::TerminationRequest,
    /// State label key.
    pub state_key: String,
    /// Whether it waits for a decision.
    pub pending: bool,
}

/// One history entry.
#[derive(Debug, Clone)]
pub struct EventView {
    /// When (UTC).
    pub at: String,
    /// Who.
    pub actor: String,
    /// Label key of the action.
    pub action_key: String,
    /// Details, rendered as the audit page renders them.
    pub details: Vec<crate::supervision::details::Detail>,
}

#[derive(Template)]
#[template(path = "agreements/show.html")]
struct ShowPage {
    page: Page,
    a: Agreement,
    ds: Vec<AgreementDataset>,
    state_key: String,
    badge: &'static str,
    rects: Vec<RectView>,
    requests: Vec<RequestView>,
    history: Vec<EventView>,
    previous: Option<(i64, String)>,
    superseded_by: Option<(i64, String)>,
    schemas: Vec<super::schemas::Pending>,
    regulator: bool,
    operator: bool,
    today: String,
}
crate::impl_page!(ShowPage);

impl ShowPage {
    fn is(&self, code: &str) -> bool {
        self.a.state.as_str() == code
    }
    fn running(&self) -> bool {
        self.a.state.is_running()
    }
    fn ended(&self) -> bool {
        matches!(self.a.state, AgreementState::Ended(_))
    }
    fn pending_request(&self) -> bool {
        self.requests.iter().any(|r| r.pending)
    }
    fn schema_text(&self, p: &super::schemas::Pending) -> String {
        self.page.t_args(
            "agreements.schema_pending",
            &[
                ("dataset", p.title.clone()),
                ("accepted", p.accepted.to_string()),
                ("current", p.current.to_string()),
            ],
        )
    }
    fn trial_text(&self) -> String {
        if self.a.trial_months == 0 {
            self.page.t("agreements.no_trial").to_owned()
        } else {
            self.page.t_args(
                "agreements.trial_months",
                &[("n", self.a.trial_months.to_string())],
            )
        }
    }
    fn price(&self, v: &Option<String>) -> String {
        v.as_deref()
            .map(model::money)
            .unwrap_or_else(|| self.page.t("agreements.not_agreed").to_owned())
    }
    fn example_cost(&self) -> String {
        let job = self
            .a
            .price_per_job
            .as_deref()
            .map(model::dec)
            .unwrap_or_default();
        let rows = self
            .a
            .price_per_thousand_rows
            .as_deref()
            .map(model::dec)
            .unwrap_or_default();
        let mut sum = job + rows;
        sum.rescale(2);
        sum.to_string()
    }
    fn period_key(&self) -> String {
        format!("agreements.period.{}", self.a.run_period)
    }
    fn days_left(&self, d: &Deadline) -> String {
        if d.overdue {
            self.page.t_args(
                "agreements.overdue_days",
                &[("n", (-d.days_left).to_string())],
            )
        } else {
            self.page
                .t_args("agreements.days_left", &[("n", d.days_left.to_string())])
        }
    }
}

fn load_visible(
    conn: &mut crate::db::DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<Agreement, AppError> {
    let a = model::find(conn, id)?.ok_or_else(AppError::not_found)?;
    let hidden_draft = a.state == AgreementState::Draft && !is_regulator(user);
    if !may_view(user, &a) || hidden_draft {
        return Err(AppError::not_found());
    }
    Ok(a)
}

/// `GET /agreements/{id}`: the agreement, its exit steps, its history, and the actions the
/// user may take.
pub async fn show(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    let id = path.id;
    let today = state.clock.today();
    let u = user.clone();
    let (a, ds, rects, requests, history, (previous, superseded_by, schemas), cal) =
        db(&state, move |conn| {
            let a = load_visible(conn, &u, id)?;
            let ds = model::datasets_of(conn, id)?;
            let rects = model::rectifications_of(conn, id)?;
            let requests = model::requests_of(conn, id)?;
            let history: Vec<Entry> = audit_log::table
                .filter(audit_log::object_type.eq("agreement"))
                .filter(audit_log::object_id.eq(id.to_string()))
                .order(audit_log::id)
                .limit(1000)
                .select(Entry::as_select())
                .load(conn)?;
            let previous = match a.previous_id {
                Some(p) => agreements::table
                    .find(p)
                    .select((agreements::id, agreements::number))
                    .first(conn)
                    .optional()?,
                None => None,
            };
            let superseded_by = agreements::table
                .inner_join(agreement_signatures::table)
                .filter(agreements::previous_id.eq(id))
                .filter(agreement_signatures::sealed_at.is_not_null())
                .select((agreements::id, agreements::number))
                .first(conn)
                .optional()?;
            let cal = Calendar::load(conn)?;
            let schemas = if a.state.is_running() {
                super::schemas::pending(conn, &a)?
            } else {
                Vec::new()
            };
            Ok((
                a,
                ds,
                rects,
                requests,
                history,
                (previous, superseded_by, schemas),
                cal,
            ))
        })
        .await?;
    let st = a.state;
    let rects = rects
        .into_iter()
        .map(|r| {
            let rs = r.state;
            RectView {
                state_key: rs.label_key(),
                open: rs == RectificationState::Ordered,
                answered: rs == RectificationState::Answered,
                deadline: cal.deadline(today, r.due_on),
                r,
            }
        })
        .collect();
    let requests = requests
        .into_iter()
        .map(|r| {
            let rs = r.state;
            RequestView {
                state_key: rs.label_key(),
                pending: rs == RequestState::Pending,
                r,
            }
        })
        .collect();
    let history = history
        .into_iter()
        .map(|e| EventView {
            at: page.time(e.at),
            actor: e.actor_name,
            action_key: format!(
                "agreements.event.{}",
                e.action.trim_start_matches("agreement.")
            ),
            details: crate::supervision::details::render(page.lang, page.zone, &e.details),
        })
        .collect();
    render(&ShowPage {
        regulator: is_regulator(&user),
        operator: user.org_id == a.operator_org_id && user.has_role(&[Role::Enterprise]),
        page,
        state_key: st.label_key(),
        badge: badge(st),
        a,
        ds,
        rects,
        requests,
        history,
        previous,
        superseded_by,
        schemas,
        today: today.to_string(),
    })
}

#[derive(Template)]
#[template(path = "agreements/print.html")]
struct PrintPage {
    page: Page,
    a: Agreement,
    ds: Vec<AgreementDataset>,
    state_key: String,
    canonical: String,
    signature_b64: String,
}
crate::impl_page!(PrintPage);

impl PrintPage {
    fn price(&self, v: &Option<String>) -> String {
        v.as_deref()
            .map(model::money)
            .unwrap_or_else(|| self.page.t("agreements.not_agreed").to_owned())
    }
    fn period_key(&self) -> String {
        format!("agreements.period.{}", self.a.run_period)
    }
}

/// `GET /agreements/{id}/print`: the printable agreement with number, text, hash, signature
/// and the seal's public key.
pub async fn print(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    use base64::Engine as _;
    let id = path.into_inner();
    let (a, ds, canonical) = db(&state, move |conn| {
        let a = load_visible(conn, &user, id)?;
        let ds = model::datasets_of(conn, id)?;
        let canonical = model::canonical_of(conn, &a)?;
        Ok((a, ds, canonical))
    })
    .await?;
    let signature_b64 = a
        .signature
        .as_deref()
        .and_then(|s| hex::decode(s).ok())
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .unwrap_or_default();
    render(&PrintPage {
        page,
        state_key: a.state.label_key(),
        canonical: if a.sealed_at.is_some() {
            canonical
        } else {
            String::new()
        },
        a,
        ds,
        signature_b64,
    })
}

/// `GET /agreements/{id}/canonical`: the canonical text of a sealed agreement (what the seal
/// signed), for verification elsewhere.
pub async fn canonical(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let text = db(&state, move |conn| {
        let a = load_visible(conn, &user, id)?;
        if a.sealed_at.is_none() {
            return Err(AppError::conflict("agreements.refuse.not_sealed"));
        }
        Ok(model::canonical_of(conn, &a)?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(text))
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Valid or not.
    pub valid: bool,
    /// The sentence saying so, in the page language.
    pub message: String,
}

#[derive(Template)]
#[template(path = "agreements/verify.html")]
struct VerifyPage {
    page: Page,
    number: String,
    hash: String,
    verdict: Option<Verdict>,
    /// What the visitor left out (the number, the hash or the text), asked for.
    missing: Option<String>,
    public_key: String,
}
crate::impl_page!(VerifyPage);

/// What the visitor gives: the hash or the text.
enum Claim {
    Hash(String),
    Text(String),
}

fn verdict(
    page: &Page,
    conn: &mut crate::db::DbConnection,
    public_key: &str,
    number: &str,
    claim: &Claim,
) -> Result<Verdict, AppError> {
    let no = |key: &str| Verdict {
        valid: false,
        message: page.t(key).to_owned(),
    };
    let Some(a) = model::find_by_number(conn, number.trim())? else {
        return Ok(no("agreements.verify.unknown"));
    };
    let (Some(stored), Some(sig), Some(pk), Some(sealed_at)) = (
        &a.canonical_sha256,
        &a.signature,
        &a.public_key,
        a.sealed_at,
    ) else {
        return Ok(no("agreements.verify.not_sealed"));
    };
    let text = model::canonical_of(conn, &a)?;
    if model::sha256_hex(&text) != *stored || !super::seal::verify_hex(pk, text.as_bytes(), sig) {
        return Ok(no("agreements.verify.altered"));
    }
    if pk != public_key {
        return Ok(no("agreements.verify.other_key"));
    }
    let matches = match claim {
        Claim::Hash(h) => h.trim().eq_ignore_ascii_case(stored),
        Claim::Text(t) => model::sha256_hex(t.trim_end_matches(['\r', '\n'])) == *stored,
    };
    if !matches {
        return Ok(no(match claim {
            Claim::Hash(_) => "agreements.verify.hash_mismatch",
            Claim::Text(_) => "agreements.verify.text_mismatch",
        }));
    }
    let state_label = page.t(&a.state.label_key()).to_owned();
    Ok(Verdict {
        valid: true,
        message: page.t_args(
            "agreements.verify.valid",
            &[
                ("number", a.number.clone()),
                ("regulator", a.regulator_name.clone()),
                ("at", page.time_min(sealed_at)),
                ("operator", a.operator_name.clone()),
                ("state", state_label),
            ],
        ),
    })
}

/// Query of the verification page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VerifyQuery {
    number: String,
    hash: String,
}

/// `GET /agreements/verify?number=&hash=`: the public verification page.
pub async fn verify_form(
    page: Page,
    state: web::Data<AppState>,
    q: crate::input::Query<VerifyQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let public_key = state.seal.public_hex();
    let (number, hash) = (
        q.number.chars().take(64).collect::<String>(),
        q.hash.chars().take(128).collect::<String>(),
    );
    let missing = match (number.trim().is_empty(), hash.trim().is_empty()) {
        (true, true) => None,
        (true, false) => Some("agreements.verify.number_required"),
        (false, true) => Some("agreements.verify.hash_required"),
        (false, false) => None,
    };
    if let Some(key) = missing {
        let missing = Some(page.t(key).to_owned());
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &VerifyPage {
                page,
                number,
                hash,
                verdict: None,
                missing,
                public_key,
            },
        );
    }
    let verdict = if number.trim().is_empty() {
        None
    } else {
        let (p, pk, n, h) = (
            page.clone(),
            public_key.clone(),
            number.clone(),
            hash.clone(),
        );
        Some(
            db(&state, move |conn| {
                verdict(&p, conn, &pk, &n, &Claim::Hash(h))
            })
            .await?,
        )
    };
    render(&VerifyPage {
        page,
        number,
        hash,
        verdict,
        missing: None,
        public_key,
    })
}

/// The verification form with pasted canonical text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VerifyTextForm {
    csrf: String,
    number: String,
    text: String,
}

/// `POST /agreements/verify`: verifies a pasted canonical text against a number.
pub async fn verify_text(
    page: Page,
    state: web::Data<AppState>,
    form: crate::input::Form<VerifyTextForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let form = form.into_inner();
    if form.text.len() > MAX_CANONICAL {
        return Err(AppError::http(
            StatusCode::PAYLOAD_TOO_LARGE,
            "common.error_too_large",
        ));
    }
    let public_key = state.seal.public_hex();
    let number: String = form.number.chars().take(64).collect();
    let missing = if number.trim().is_empty() {
        Some("agreements.verify.number_required")
    } else if form.text.trim().is_empty() {
        Some("agreements.verify.text_required")
    } else {
        None
    };
    if let Some(key) = missing {
        let missing = Some(page.t(key).to_owned());
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &VerifyPage {
                page,
                number,
                hash: String::new(),
                verdict: None,
                missing,
                public_key,
            },
        );
    }
    let (p, pk, n, text) = (page.clone(), public_key.clone(), number.clone(), form.text);
    let verdict = db(&state, move |conn| {
        verdict(&p, conn, &pk, &n, &Claim::Text(text))
    })
    .await?;
    render(&VerifyPage {
        page,
        number,
        hash: String::new(),
        verdict: Some(verdict),
        missing: None,
        public_key,
    })
}
