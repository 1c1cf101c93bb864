//! Actions on a run: cancel, release, withhold, the usage report.

use super::*;

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
    let reviewer = crate::jobs::is_reviewer(&state, &user);
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
