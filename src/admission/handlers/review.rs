//! Review (审核申请): the regulator's queues and application list, return for supplement,
//! expert assignment and opinions, approval (which starts the public notice) and rejection
//! with reasons; the expert's assignments.

use actix_web::{HttpResponse, web};
use askama::Template;

use super::applications::{AppLine, DeadlineView, app_lines, deadline_view};
use super::{clock, require_regulator};
use crate::AppState;
use crate::admission::forms::{self, Pairs};
use crate::admission::machine::{ApplicationState, Recommendation};
use crate::admission::{model, ops};
use crate::auth::{CurrentUser, Role};
use crate::calendar::Calendar;
use crate::errors::AppError;
use crate::web::{Page, db, redirect_with_flash, render};
use crate::workflow::Machine as _;

/// A queue item as the page shows it.
#[derive(Debug, Clone)]
pub struct QueueLine {
    /// Label.
    pub label: String,
    /// Link.
    pub href: String,
    /// State label.
    pub state: String,
    /// Deadline.
    pub due: Option<DeadlineView>,
}

#[derive(Template)]
#[template(path = "admission/desk.html")]
struct DeskPage {
    page: Page,
    queues: Vec<(String, Vec<QueueLine>)>,
    apps: Vec<AppLine>,
}
crate::impl_page!(DeskPage);

/// `GET /admission` and `GET /admission/applications`: the regulator's admission queues
/// (overdue first) and every submitted application.
pub async fn desk(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let today = state.clock.today();
    let p = page.clone();
    let (sections, apps) = db(&state, move |conn| {
        let cal = Calendar::load(conn)?;
        let mut sections = crate::admission::queues(conn, &cal, today)?;
        for s in &mut sections {
            s.items.sort_by(|a, b| match (&a.deadline, &b.deadline) {
                (Some(x), Some(y)) => crate::calendar::Deadline::queue_order(x, y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        let all: Vec<ApplicationState> = ApplicationState::ALL
            .iter()
            .copied()
            .filter(|s| *s != ApplicationState::Draft)
            .collect();
        let mut apps = model::applications_in(conn, &all)?;
        apps.reverse();
        Ok((sections, app_lines(conn, &p, &apps)?))
    })
    .await?;
    let queues = sections
        .into_iter()
        .map(|s| {
            let lines = s
                .items
                .into_iter()
                .map(|i| QueueLine {
                    label: i.label,
                    href: i.href,
                    state: page.t(i.state_key).to_owned(),
                    due: i.deadline.map(|d| deadline_view(&page, d)),
                })
                .collect();
            (page.t(s.title_key).to_owned(), lines)
        })
        .collect();
    render(&DeskPage { page, queues, apps })
}

/// `GET /admission/applications`: same as the desk.
pub async fn list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    desk(page, user, state).await
}

#[derive(Template)]
#[template(path = "admission/org.html")]
struct OrgPage {
    page: Page,
    org_name: String,
    credit_code: String,
    status: String,
    status_label: String,
    credit: Vec<model::CreditRecord>,
    apps: Vec<AppLine>,
}
crate::impl_page!(OrgPage);

/// `GET /admission/orgs/{id}`: an organisation's credit record and applications (regulator).
pub async fn org_record(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.into_inner();
    let p = page.clone();
    let (org, credit, apps) = db(&state, move |conn| {
        let org = crate::accounts::model::find_org(conn, id)?.ok_or_else(AppError::not_found)?;
        let credit = model::credit_records_of(conn, id)?;
        let apps: Vec<model::Application> = model::applications_of_org(conn, id)?
            .into_iter()
            .filter(|a| a.state != ApplicationState::Draft)
            .collect();
        Ok((org, credit, app_lines(conn, &p, &apps)?))
    })
    .await?;
    render(&OrgPage {
        org_name: org.name,
        credit_code: org.credit_code.unwrap_or_default(),
        status_label: page
            .t(&format!("accounts.org_status_{}", org.status))
            .to_owned(),
        status: org.status.to_string(),
        credit,
        apps,
        page,
    })
}

/// The redirect to application `id` with `flash` once a decision on it is made.
fn decided(id: i64, flash: &'static str) -> HttpResponse {
    redirect_with_flash(&format!("/applications/{id}"), "ok", flash)
}

/// Required reasons typed in field `name` of the decision form, or the 422 naming the problem.
fn reasons(pairs: &Pairs, name: &str, required_key: &'static str) -> Result<String, AppError> {
    forms::reasons(&pairs.get(name), required_key).map_err(AppError::invalid)
}

/// `POST /applications/{id}/return` (`missing`): returns the application for supplement with
/// the list of what is missing.
pub async fn return_app(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.into_inner();
    let pairs = Pairs(form.into_inner());
    page.check_csrf(&pairs.get("csrf"))?;
    let missing = reasons(&pairs, "missing", "admission.err_missing_required")?;
    let (now, _) = clock(&state);
    db(&state, move |conn| {
        ops::return_application(conn, &user, id, &missing, now)
    })
    .await?;
    Ok(decided(id, "admission.flash_returned"))
}

/// `POST /applications/{id}/assign` (`expert`): assigns an expert; the opinion is due in
/// `expert_days` working days.
pub async fn assign(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.into_inner();
    let pairs = Pairs(form.into_inner());
    page.check_csrf(&pairs.get("csrf"))?;
    let expert = pairs
        .get("expert")
        .trim()
        .parse::<i64>()
        .map_err(|_| AppError::invalid("admission.err_expert"))?;
    let (now, today) = clock(&state);
    let days = state.config.expert_days;
    db(&state, move |conn| {
        ops::assign_expert(conn, &user, id, expert, now, today, days)
    })
    .await?;
    Ok(decided(id, "admission.flash_assigned"))
}

/// `POST /applications/{id}/approve` (`note`, optional): approves; the public notice runs
/// `notice_days` working days.
pub async fn approve(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.into_inner();
    let pairs = Pairs(form.into_inner());
    page.check_csrf(&pairs.get("csrf"))?;
    let note = pairs.get("note");
    if note.chars().count() > forms::MAX_LONG {
        return Err(AppError::invalid("admission.err_text_long"));
    }
    let (now, today) = clock(&state);
    let days = state.config.notice_days;
    db(&state, move |conn| {
        ops::approve(conn, &user, id, note.trim(), now, today, days)
    })
    .await?;
    Ok(decided(id, "admission.flash_approved"))
}

/// `POST /applications/{id}/reject` (`reasons`, required): rejects with reasons the applicant
/// sees.
pub async fn reject(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let id = path.into_inner();
    let pairs = Pairs(form.into_inner());
    page.check_csrf(&pairs.get("csrf"))?;
    let reasons = reasons(&pairs, "reasons", "admission.err_reasons_required")?;
    let (now, _) = clock(&state);
    db(&state, move |conn| {
        ops::reject(conn, &user, id, &reasons, now)
    })
    .await?;
    Ok(decided(id, "admission.flash_rejected"))
}

/// `POST /applications/{id}/opinion` (`recommendation`, `opinion`): the assigned expert files
/// the opinion (once).
pub async fn opinion(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Expert])?;
    let id = path.into_inner();
    let pairs = Pairs(form.into_inner());
    page.check_csrf(&pairs.get("csrf"))?;
    let rec = Recommendation::parse(&pairs.get("recommendation"))
        .ok_or_else(|| AppError::invalid("admission.err_recommendation"))?;
    let text = reasons(&pairs, "opinion", "admission.err_opinion_required")?;
    let (now, _) = clock(&state);
    db(&state, move |conn| {
        ops::file_opinion(conn, &user, id, rec, &text, now)
    })
    .await?;
    Ok(decided(id, "admission.flash_opinion"))
}

/// An expert's assignment line.
#[derive(Debug, Clone)]
pub struct MyAssignment {
    /// The application.
    pub app_id: i64,
    /// The applicant.
    pub org: String,
    /// State label.
    pub state: String,
    /// State code.
    pub state_code: &'static str,
    /// Due date.
    pub due: DeadlineView,
}

#[derive(Template)]
#[template(path = "admission/assignments.html")]
struct AssignmentsPage {
    page: Page,
    items: Vec<MyAssignment>,
}
crate::impl_page!(AssignmentsPage);

/// `GET /expert/assignments`: the applications assigned to the expert.
pub async fn my_assignments(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Expert])?;
    let uid = user.id;
    let today = state.clock.today();
    let (rows, cal) = db(&state, move |conn| {
        let mut rows = Vec::new();
        for a in model::assignments_for_expert(conn, uid)? {
            let org = model::find_application(conn, a.application_id)?
                .map(|x| x.org_name)
                .unwrap_or_default();
            rows.push((a, org));
        }
        Ok((rows, Calendar::load(conn)?))
    })
    .await?;
    let items = rows
        .iter()
        .map(|(a, org)| MyAssignment {
            app_id: a.application_id,
            org: org.clone(),
            state: page.t(a.state.label_key()).to_owned(),
            state_code: a.state.as_str(),
            due: deadline_view(&page, cal.deadline(today, a.due_on)),
        })
        .collect();
    render(&AssignmentsPage { page, items })
}
