//! The workflow actions: submit, sign, return, seal, amend, the termination request, schema acceptance, rectification orders, termination for a violation, the disposal confirmation.

use super::*;

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

pub(super) fn back(id: i64, key: &str) -> HttpResponse {
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
        crate::agreements::schemas::accept(conn, &user, id, dataset_id, now)
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
