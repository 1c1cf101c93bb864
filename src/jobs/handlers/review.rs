//! The reviewer's queue and computation page: approve, reject, revoke.

use super::*;

#[derive(Template)]
#[template(path = "jobs/admin.html")]
pub(super) struct AdminPage {
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
    if !crate::jobs::sees_all(&user) {
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
        reviewer: crate::jobs::is_reviewer(&state, &user),
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
pub(super) struct ComputationPage {
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
    if !crate::jobs::sees_all(&user) {
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
        reviewer: crate::jobs::is_reviewer(&state, &user),
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
        crate::jobs::worker::announce_queued(&st, conn);
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
