//! Drafting and editing an agreement (regulator).

use super::*;

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
pub(super) struct FormPage {
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
        crate::agreements::forms::RUN_PERIODS
    }
}

pub(super) fn form_page(
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

pub(super) fn problem_text(page: &Page, p: &Problem) -> String {
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
        crate::workflow::Machine::decide(
            a.state,
            crate::agreements::machine::AgreementAction::Edit,
        )?;
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
pub(super) fn approved_of(
    conn: &mut crate::db::DbConnection,
    a: &Agreement,
) -> Result<ops::Admitted, AppError> {
    let datasets = crate::admission::model::for_agreement(conn, a.application_id)?
        .map(|app| app.datasets)
        .unwrap_or_default();
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
        crate::workflow::Machine::decide(
            a.state,
            crate::agreements::machine::AgreementAction::Edit,
        )?;
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
