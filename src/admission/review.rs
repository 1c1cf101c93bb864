//! Review (审核申请): the regulator's queues and application list, return for supplement,
//! expert assignment and opinions, approval (which starts the public notice) and rejection
//! with reasons; the expert's assignments.

use actix_web::{HttpResponse, web};
use askama::Template;
use diesel::prelude::*;

use super::applications::{AppLine, DeadlineView, app_lines, deadline_view, visible};
use super::forms::{self, Pairs};
use super::machine::{
    ApplicationAction, ApplicationState, AssignmentAction, AssignmentState, Recommendation,
};
use super::model;
use super::{conflict, notice, require_regulator, transition};
use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::calendar::Calendar;
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::mail;
use crate::schema::{applications, expert_assignments, users};
use crate::supervision::audit;
use crate::web::{Page, db, redirect_with_flash, render};

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
        let mut sections = super::queues(conn, &cal, today)?;
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
            .filter(|a| a.state() != ApplicationState::Draft)
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

/// Runs a regulator's decision on application `id` in one transaction, or re-shows the
/// application page with `error` when the form is refused.
async fn decide<F>(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    id: i64,
    pairs: Pairs,
    flash: &'static str,
    f: F,
) -> Result<HttpResponse, AppError>
where
    F: FnOnce(
            &mut DbConnection,
            &CurrentUser,
            &model::Application,
            &Pairs,
        ) -> Result<Result<(), &'static str>, AppError>
        + Send
        + 'static,
{
    page.check_csrf(&pairs.get("csrf"))?;
    let u = user.clone();
    let outcome = db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            let (app, viewer) = visible(conn, &u, id)?;
            if viewer != super::applications::Viewer::Regulator {
                return Err(AppError::not_found());
            }
            f(conn, &u, &app, &pairs)
        })
    })
    .await?;
    match outcome {
        Ok(()) => Ok(redirect_with_flash(
            &format!("/applications/{id}"),
            "ok",
            flash,
        )),
        Err(key) => Err(AppError::invalid(key)),
    }
}

fn call_args(
    conn: &mut DbConnection,
    app: &model::Application,
) -> Result<Vec<(&'static str, String)>, AppError> {
    let call = model::find_call(conn, app.call_id)?.ok_or_else(AppError::not_found)?;
    Ok(vec![
        ("id", app.id.to_string()),
        ("org", app.org_name.clone()),
        ("call_zh", call.title_zh),
        ("call_en", call.title_en),
    ])
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
    let pairs = Pairs(form.into_inner());
    decide(
        page,
        user,
        state,
        path.into_inner(),
        pairs,
        "admission.flash_returned",
        |conn, u, app, p| {
            app.state()
                .apply(ApplicationAction::Return)
                .map_err(conflict)?;
            let missing = match forms::reasons(&p.get("missing"), "admission.err_missing_required")
            {
                Ok(m) => m,
                Err(k) => return Ok(Err(k)),
            };
            transition(conn, &u.actor(), app, ApplicationAction::Return, &missing)?;
            let mut args = call_args(conn, app)?;
            args.push(("missing", missing));
            mail::to_org(
                conn,
                app.org_id,
                &notice("admission.mail.returned", &args, app.id),
            )?;
            Ok(Ok(()))
        },
    )
    .await
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
    let pairs = Pairs(form.into_inner());
    let today = state.clock.today();
    let days = state.config.expert_days;
    decide(page, user, state, path.into_inner(), pairs, "admission.flash_assigned", move |conn, u, app, p| {
        app.state().apply(ApplicationAction::AssignExpert).map_err(conflict)?;
        let Ok(expert_id) = p.get("expert").trim().parse::<i64>() else {
            return Ok(Err("admission.err_expert"));
        };
        let expert: Option<String> = users::table
            .filter(users::id.eq(expert_id))
            .filter(users::role.eq(Role::Expert.as_str()))
            .filter(users::status.eq("active"))
            .select(users::display_name)
            .first(conn)
            .optional()?;
        let Some(expert_name) = expert else {
            return Ok(Err("admission.err_expert"));
        };
        let already = model::assignments_of(conn, app.id)?
            .iter()
            .any(|(a, _)| a.expert_user_id == expert_id);
        if already {
            return Err(AppError::conflict("admission.err_expert_assigned"));
        }
        let due = Calendar::load(conn)?.add_working_days(today, days);
        let aid: i64 = diesel::insert_into(expert_assignments::table)
            .values((
                expert_assignments::application_id.eq(app.id),
                expert_assignments::expert_user_id.eq(expert_id),
                expert_assignments::state.eq(AssignmentState::Assigned.as_str()),
                expert_assignments::assigned_by.eq(u.id),
                expert_assignments::assigned_at.eq(crate::db::now()),
                expert_assignments::due_on.eq(due),
            ))
            .returning(expert_assignments::id)
            .get_result(conn)?;
        transition(conn, &u.actor(), app, ApplicationAction::AssignExpert, &expert_name)?;
        audit::record(
            conn,
            &u.actor(),
            "assignment.create",
            "assignment",
            &aid.to_string(),
            serde_json::json!({ "application_id": app.id, "expert_user_id": expert_id, "due_on": due.to_string() }),
        )?;
        let mut args = call_args(conn, app)?;
        args.push(("due", due.to_string()));
        mail::to_user(conn, expert_id, &notice("admission.mail.expert_assigned", &args, app.id))?;
        Ok(Ok(()))
    })
    .await
}

/// `POST /applications/{id}/approve`: approves; the public notice runs `notice_days` working
/// days.
pub async fn approve(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let pairs = Pairs(form.into_inner());
    let today = state.clock.today();
    let days = state.config.notice_days;
    decide(
        page,
        user,
        state,
        path.into_inner(),
        pairs,
        "admission.flash_approved",
        move |conn, u, app, p| {
            let note = p.get("note");
            if note.chars().count() > forms::MAX_LONG {
                return Ok(Err("admission.err_text_long"));
            }
            transition(
                conn,
                &u.actor(),
                app,
                ApplicationAction::Approve,
                note.trim(),
            )?;
            let ends = Calendar::load(conn)?.add_working_days(today, days);
            diesel::update(applications::table.find(app.id))
                .set((
                    applications::decided_at.eq(crate::db::now()),
                    applications::notice_ends_on.eq(ends),
                    applications::decision_reasons.eq(note.trim()),
                ))
                .execute(conn)?;
            let mut args = call_args(conn, app)?;
            args.push(("ends", ends.to_string()));
            mail::to_org(
                conn,
                app.org_id,
                &notice("admission.mail.approved", &args, app.id),
            )?;
            Ok(Ok(()))
        },
    )
    .await
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
    let pairs = Pairs(form.into_inner());
    decide(
        page,
        user,
        state,
        path.into_inner(),
        pairs,
        "admission.flash_rejected",
        |conn, u, app, p| {
            app.state()
                .apply(ApplicationAction::Reject)
                .map_err(conflict)?;
            let reasons = match forms::reasons(&p.get("reasons"), "admission.err_reasons_required")
            {
                Ok(r) => r,
                Err(k) => return Ok(Err(k)),
            };
            transition(conn, &u.actor(), app, ApplicationAction::Reject, &reasons)?;
            diesel::update(applications::table.find(app.id))
                .set((
                    applications::decided_at.eq(crate::db::now()),
                    applications::decision_reasons.eq(&reasons),
                ))
                .execute(conn)?;
            let mut args = call_args(conn, app)?;
            args.push(("reasons", reasons));
            mail::to_org(
                conn,
                app.org_id,
                &notice("admission.mail.rejected", &args, app.id),
            )?;
            Ok(Ok(()))
        },
    )
    .await
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
    let u = user.clone();
    let outcome = db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            let (app, viewer) = visible(conn, &u, id)?;
            let super::applications::Viewer::Expert(aid) = viewer else {
                return Err(AppError::not_found());
            };
            let (asg, _) = model::assignments_of(conn, id)?
                .into_iter()
                .find(|(a, _)| a.id == aid)
                .ok_or_else(AppError::not_found)?;
            let from = AssignmentState::parse(&asg.state).unwrap_or(AssignmentState::Filed);
            let to = from.apply(AssignmentAction::File).map_err(conflict)?;
            if !app.state().awaits_review() {
                return Err(AppError::conflict("admission.err_app_not_in_review"));
            }
            let Some(rec) = Recommendation::parse(&pairs.get("recommendation")) else {
                return Ok(Err("admission.err_recommendation"));
            };
            let text = match forms::reasons(&pairs.get("opinion"), "admission.err_opinion_required") {
                Ok(t) => t,
                Err(k) => return Ok(Err(k)),
            };
            diesel::update(
                expert_assignments::table
                    .find(aid)
                    .filter(expert_assignments::state.eq(from.as_str())),
            )
            .set((
                expert_assignments::state.eq(to.as_str()),
                expert_assignments::recommendation.eq(rec.as_str()),
                expert_assignments::opinion.eq(&text),
                expert_assignments::filed_at.eq(crate::db::now()),
            ))
            .execute(conn)?;
            audit::record(
                conn,
                &u.actor(),
                "assignment.file_opinion",
                "assignment",
                &aid.to_string(),
                serde_json::json!({ "application_id": id, "recommendation": rec.as_str(), "from": from.as_str(), "to": to.as_str() }),
            )?;
            Ok(Ok(()))
        })
    })
    .await?;
    match outcome {
        Ok(()) => Ok(redirect_with_flash(
            &format!("/applications/{id}"),
            "ok",
            "admission.flash_opinion",
        )),
        Err(key) => Err(AppError::invalid(key)),
    }
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
    pub state_code: String,
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
            state: AssignmentState::parse(&a.state)
                .map_or_else(|| a.state.clone(), |s| page.t(s.label_key()).to_owned()),
            state_code: a.state.clone(),
            due: deadline_view(&page, cal.deadline(today, a.due_on)),
        })
        .collect();
    render(&AssignmentsPage { page, items })
}
