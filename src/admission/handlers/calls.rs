//! Calls for applications (发布通告): the regulator drafts, edits, publishes, closes or
//! withdraws a call; the public reads published calls.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use diesel::prelude::*;

use super::{clock, require_regulator};
use crate::AppState;
use crate::accounts::machine::OrgStatus;
use crate::accounts::model::find_org;
use crate::admission::forms::{CallForm, Pairs};
use crate::admission::machine::{CallAction, CallState};
use crate::admission::model::{self, Call, CallFields};
use crate::admission::ops::{self, OfferProblem, offerable};
use crate::auth::{CurrentUser, MaybeUser, Role};
use crate::catalog::handlers::Choice;
use crate::catalog::model::{Category, Dataset, OpenType};
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::input::DateSpan;
use crate::schema::datasets;
use crate::web::{Page, db, redirect_with_flash, render, render_status};
use crate::workflow::Machine as _;

/// A dataset as a call shows it.
#[derive(Debug, Clone)]
pub struct DatasetLine {
    /// Id.
    pub id: i64,
    /// Title in the page language.
    pub title: String,
    /// Open type code.
    pub open_code: String,
    /// Open type label.
    pub open_label: String,
    /// Whether a call may offer it (unconditionally or conditionally open).
    pub offerable: bool,
}

/// A dataset line in the page language.
pub fn dataset_line(page: &Page, d: &Dataset) -> DatasetLine {
    DatasetLine {
        id: d.id,
        title: d.title(page.lang).to_owned(),
        open_code: d.open_type.clone(),
        open_label: OpenType::parse(&d.open_type)
            .map_or_else(|| d.open_type.clone(), |o| page.t(o.label_key()).to_owned()),
        offerable: offerable(d),
    }
}

/// A call as its pages show it.
#[derive(Debug, Clone)]
pub struct CallView {
    /// Id.
    pub id: i64,
    /// Title in the page language.
    pub title: String,
    /// Title in the other language.
    pub other_title: String,
    /// Text in the page language.
    pub body: String,
    /// Domain label.
    pub domain: String,
    /// Scenarios.
    pub scenarios: Vec<String>,
    /// Conditions.
    pub conditions: String,
    /// Opening date.
    pub opens_on: String,
    /// Closing date.
    pub closes_on: String,
    /// State code.
    pub state: String,
    /// State label.
    pub state_label: String,
    /// Whether it takes applications today.
    pub open_now: bool,
    /// What the public sees about taking applications (open, not yet open, closed).
    pub window_label: String,
    /// The datasets on offer.
    pub datasets: Vec<DatasetLine>,
}

/// The view of a call.
pub fn call_view(page: &Page, c: &Call, ds: &[Dataset], today: NaiveDate) -> CallView {
    let other = match page.lang {
        crate::i18n::Lang::Zh => &c.title_en,
        crate::i18n::Lang::En => &c.title_zh,
    };
    let window = if c.is_open(today) {
        "admission.window_open"
    } else if c.state == CallState::Published && today < c.opens_on {
        "admission.window_not_yet"
    } else {
        "admission.window_closed"
    };
    CallView {
        id: c.id,
        title: c.title(page.lang).to_owned(),
        other_title: other.clone(),
        body: c.body(page.lang).to_owned(),
        domain: Category::parse(&c.domain)
            .map_or_else(|| c.domain.clone(), |d| page.t(d.label_key()).to_owned()),
        scenarios: c.scenario_list(),
        conditions: c.conditions.clone(),
        opens_on: c.opens_on.to_string(),
        closes_on: c.closes_on.to_string(),
        state: c.state.as_str().to_owned(),
        state_label: page.t(c.state.label_key()).to_owned(),
        open_now: c.is_open(today),
        window_label: page.t(window).to_owned(),
        datasets: ds.iter().map(|d| dataset_line(page, d)).collect(),
    }
}

#[derive(Template)]
#[template(path = "admission/calls.html")]
struct CallsPage {
    page: Page,
    manage: bool,
    calls: Vec<CallView>,
}
crate::impl_page!(CallsPage);

async fn calls_page(
    page: Page,
    state: web::Data<AppState>,
    manage: bool,
) -> Result<HttpResponse, AppError> {
    let today = state.clock.today();
    let rows = db(&state, move |conn| {
        let calls = model::list_calls(conn, !manage)?;
        let mut out = Vec::new();
        for c in calls {
            let ds = model::call_datasets_of(conn, c.id)?;
            out.push((c, ds));
        }
        Ok(out)
    })
    .await?;
    let calls = rows
        .iter()
        .map(|(c, ds)| call_view(&page, c, ds, today))
        .collect();
    render(&CallsPage {
        page,
        manage,
        calls,
    })
}

/// `GET /calls`: the published calls.
pub async fn public_list(page: Page, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    calls_page(page, state, false).await
}

/// `GET /admission/calls`: every call, for the regulator.
pub async fn manage_list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    calls_page(page, state, true).await
}

#[derive(Template)]
#[template(path = "admission/call.html")]
struct CallPage {
    page: Page,
    call: CallView,
    manage: bool,
    /// Why the visitor cannot apply (message), when it is an enterprise that cannot.
    cannot_apply: Option<String>,
    /// Whether the apply button is shown.
    can_apply: bool,
    /// The visitor's organisation's application to this call, if any.
    own_application: Option<i64>,
    /// Applications to this call (regulator): id, organisation, state label, state code.
    applications: Vec<(i64, String, String, String)>,
}
crate::impl_page!(CallPage);

/// `GET /calls/{id}`: a published call; an enterprise sees whether it may apply.
pub async fn public_show(
    page: Page,
    user: MaybeUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    let id = path.id;
    let today = state.clock.today();
    let enterprise = user.0.filter(|u| u.role == Role::Enterprise);
    let org = enterprise.as_ref().map(|u| u.org_id);
    let (c, ds, org_status, own) = db(&state, move |conn| {
        let c = model::find_call(conn, id)?
            .filter(Call::is_public)
            .ok_or_else(AppError::not_found)?;
        let ds = model::call_datasets_of(conn, id)?;
        let (status, own) = match org {
            Some(org) => (
                find_org(conn, org)?.map(|o| o.status),
                model::application_to_call(conn, id, org)?,
            ),
            None => (None, None),
        };
        Ok((c, ds, status, own))
    })
    .await?;
    let call = call_view(&page, &c, &ds, today);
    let cannot_apply = match (&enterprise, own) {
        (Some(_), None) if org_status != Some(OrgStatus::Verified) => {
            Some(page.t("admission.err_org_not_verified").to_owned())
        }
        (Some(_), None) if !call.open_now => Some(page.t("admission.err_call_not_open").to_owned()),
        _ => None,
    };
    let can_apply = enterprise.is_some() && own.is_none() && cannot_apply.is_none();
    render(&CallPage {
        page,
        call,
        manage: false,
        cannot_apply,
        can_apply,
        own_application: own,
        applications: Vec::new(),
    })
}

/// `GET /admission/calls/{id}`: a call with its actions and applications, for the regulator.
pub async fn manage_show(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.id;
    let today = state.clock.today();
    let (c, ds, apps) = db(&state, move |conn| {
        let c = model::find_call(conn, id)?.ok_or_else(AppError::not_found)?;
        let ds = model::call_datasets_of(conn, id)?;
        let apps = model::submitted_to_call(conn, id)?;
        Ok((c, ds, apps))
    })
    .await?;
    let applications = apps
        .into_iter()
        .map(|a| {
            let label = page.t(a.state.label_key()).to_owned();
            (a.id, a.org_name, label, a.state.as_str().to_owned())
        })
        .collect();
    render(&CallPage {
        call: call_view(&page, &c, &ds, today),
        manage: true,
        cannot_apply: None,
        can_apply: false,
        own_application: None,
        applications,
        page,
    })
}

#[derive(Template)]
#[template(path = "admission/call_form.html")]
struct CallFormPage {
    page: Page,
    action: String,
    editing: bool,
    form: CallForm,
    error: Option<String>,
    domains: Vec<Choice>,
    datasets: Vec<DatasetLine>,
}
crate::impl_page!(CallFormPage);

fn all_datasets(conn: &mut DbConnection) -> QueryResult<Vec<Dataset>> {
    datasets::table
        .order(datasets::id)
        .limit(1000)
        .select(Dataset::as_select())
        .load(conn)
}

async fn form_page(
    state: &AppState,
    page: Page,
    action: String,
    form: CallForm,
    error: Option<String>,
) -> Result<CallFormPage, AppError> {
    let ds = db(state, |conn| Ok(all_datasets(conn)?)).await?;
    let domains = Category::ALL
        .iter()
        .map(|c| Choice {
            value: c.as_str().to_owned(),
            label: page.t(c.label_key()).to_owned(),
            selected: c.as_str() == form.domain,
        })
        .collect();
    Ok(CallFormPage {
        editing: action.ends_with("/edit"),
        action,
        form,
        error,
        domains,
        datasets: ds.iter().map(|d| dataset_line(&page, d)).collect(),
        page,
    })
}

/// `GET /admission/calls/new`: the empty call form.
pub async fn new_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let today = state.clock.today();
    let form = CallForm {
        domain: Category::MedicalServices.as_str().into(),
        opens_on: today.to_string(),
        closes_on: (today + chrono::Duration::days(30)).to_string(),
        ..CallForm::default()
    };
    render(&form_page(&state, page, "/admission/calls".into(), form, None).await?)
}

/// The form's fields and dataset ids, or the message to show: the form's own rules and its
/// dates (within [`DateSpan::Planned`] of `today`).
fn parse(page: &Page, form: &CallForm, today: NaiveDate) -> Result<(CallFields, Vec<i64>), String> {
    let (fields, ids) = form.validate().map_err(|key| page.t(key).to_owned())?;
    for (label, d) in [
        ("admission.field_opens_on", fields.opens_on),
        ("admission.field_closes_on", fields.closes_on),
    ] {
        DateSpan::Planned.check(page.lang, label, d, today)?;
    }
    Ok((fields, ids))
}

/// The message of a refused offer.
fn offer_message(page: &Page, problem: &OfferProblem) -> String {
    match problem {
        OfferProblem::Unknown => page.t("admission.err_datasets").to_owned(),
        OfferProblem::NotOpen(d) => page.t_args(
            "admission.err_dataset_not_open",
            &[("title", d.title(page.lang).to_owned())],
        ),
    }
}

/// `POST /admission/calls`: creates a draft call.
pub async fn create(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: crate::input::FormAsTyped<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let (pairs, problem) = form.into_parts();
    let pairs = Pairs(pairs);
    page.check_csrf(&pairs.get("csrf"))?;
    let form = CallForm::from_pairs(&pairs);
    if let Some(problem) = problem {
        let msg = problem.message(page.lang);
        return render_status(
            problem.status(),
            &form_page(&state, page, "/admission/calls".into(), form, Some(msg)).await?,
        );
    }
    let (now, today) = clock(&state);
    let parsed = parse(&page, &form, today).and_then(|(fields, ids)| {
        if fields.closes_on < today {
            Err(page.t("admission.err_closes_past").to_owned())
        } else {
            Ok((fields, ids))
        }
    });
    let outcome = match parsed {
        Ok((fields, ids)) => db(&state, move |conn| {
            ops::create_call(conn, &user, &fields, &ids, now)
        })
        .await?
        .map_err(|p| offer_message(&page, &p)),
        Err(msg) => Err(msg),
    };
    match outcome {
        Ok(id) => Ok(redirect_with_flash(
            &format!("/admission/calls/{id}"),
            "ok",
            "admission.flash_call_saved",
        )),
        Err(msg) => render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(&state, page, "/admission/calls".into(), form, Some(msg)).await?,
        ),
    }
}

/// `GET /admission/calls/{id}/edit`: the form of a draft call.
pub async fn edit_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.into_inner();
    let (c, ids) = db(&state, move |conn| {
        let c = model::find_call(conn, id)?.ok_or_else(AppError::not_found)?;
        let ids: Vec<i64> = model::call_datasets_of(conn, id)?
            .iter()
            .map(|d| d.id)
            .collect();
        Ok((c, ids))
    })
    .await?;
    c.state.decide(CallAction::Edit)?;
    let form = CallForm::from_call(&c, &ids);
    render(
        &form_page(
            &state,
            page,
            format!("/admission/calls/{id}/edit"),
            form,
            None,
        )
        .await?,
    )
}

/// `POST /admission/calls/{id}/edit`: saves a draft call.
pub async fn update(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::FormAsTyped<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.into_inner();
    let (pairs, problem) = form.into_parts();
    let pairs = Pairs(pairs);
    page.check_csrf(&pairs.get("csrf"))?;
    let form = CallForm::from_pairs(&pairs);
    if let Some(problem) = problem {
        let msg = problem.message(page.lang);
        let action = format!("/admission/calls/{id}/edit");
        return render_status(
            problem.status(),
            &form_page(&state, page, action, form, Some(msg)).await?,
        );
    }
    let (now, today) = clock(&state);
    let outcome = match parse(&page, &form, today) {
        Ok((fields, ids)) => db(&state, move |conn| {
            ops::update_call(conn, &user, id, &fields, &ids, now)
        })
        .await?
        .map_err(|p| offer_message(&page, &p)),
        Err(msg) => Err(msg),
    };
    match outcome {
        Ok(()) => Ok(redirect_with_flash(
            &format!("/admission/calls/{id}"),
            "ok",
            "admission.flash_call_saved",
        )),
        Err(msg) => render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(
                &state,
                page,
                format!("/admission/calls/{id}/edit"),
                form,
                Some(msg),
            )
            .await?,
        ),
    }
}

/// `POST /admission/calls/{id}/{publish|close|withdraw}`.
pub async fn transition(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let (id, segment) = path.into_inner();
    let action = CallAction::from_segment(&segment).ok_or_else(AppError::not_found)?;
    page.check_csrf(&Pairs(form.into_inner()).get("csrf"))?;
    let (now, today) = clock(&state);
    db(&state, move |conn| {
        ops::change_call(conn, &user, id, action, now, today)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/admission/calls/{id}"),
        "ok",
        "admission.flash_call_state",
    ))
}
