//! Admission (准入, DOMAIN.md "Admission and exit", steps 1–4): calls for applications,
//! applications with evidence and attachments, review with expert opinions, public notice with
//! objections, and the timed work that closes calls and admits applicants.
//!
//! * [`machine`]: the call, application, assignment and objection state machines.
//! * [`model`]: rows and queries; [`forms`]: the forms and their validation.
//! * [`calls`], [`applications`], [`review`], [`notices`], [`attachments`]: one handler per
//!   action.
//! * [`tick`]: the scheduler's work; [`queues`]: the regulator's desk queues.
//!
//! An application whose `state` is `admitted` is the contract with the agreements: an
//! agreement may be drafted exactly for those.

pub mod applications;
pub mod attachments;
pub mod calls;
pub mod demo;
pub mod forms;
pub mod machine;
pub mod model;
pub mod notices;
pub mod review;

use actix_web::web;
use chrono::NaiveDate;
use diesel::prelude::*;

use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::calendar::Calendar;
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::mail::{self, Notice};
use crate::schema::{applications as app_t, calls as call_t};
use crate::supervision::audit::{self, Actor};
use crate::supervision::desk::{QueueItem, QueueSection};
use machine::{ApplicationAction, ApplicationState, CallAction, CallState, ObjectionState};

/// Mounts the admission routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/calls", web::get().to(calls::public_list))
        .route("/calls/{id}", web::get().to(calls::public_show))
        .service(crate::detail::action(
            "/calls/{id}/apply",
            applications::start,
            calls::public_show,
        ))
        .route("/notices", web::get().to(notices::list))
        .route("/notices/{id}", web::get().to(notices::show))
        .route("/notices/{id}/objections", web::post().to(notices::object))
        .route("/admission", web::get().to(review::desk))
        .route("/admission/calls", web::get().to(calls::manage_list))
        .route("/admission/calls", web::post().to(calls::create))
        .route("/admission/calls/new", web::get().to(calls::new_form))
        .route("/admission/calls/{id}", web::get().to(calls::manage_show))
        .route(
            "/admission/calls/{id}/edit",
            web::get().to(calls::edit_form),
        )
        .route("/admission/calls/{id}/edit", web::post().to(calls::update))
        .service(crate::detail::action(
            "/admission/calls/{id}/{action}",
            calls::transition,
            calls::manage_show,
        ))
        .route("/admission/applications", web::get().to(review::list))
        .route("/admission/orgs/{id}", web::get().to(review::org_record))
        .service(crate::detail::action(
            "/admission/objections/{id}/{action}",
            notices::decide,
            notices::objection_page,
        ))
        .route("/applications", web::get().to(applications::mine))
        .route("/applications/{id}", web::get().to(applications::show))
        .route("/applications/{id}", web::post().to(applications::save))
        .service(crate::detail::action(
            "/applications/{id}/attachments",
            attachments::upload,
            applications::show,
        ))
        .route(
            "/applications/{id}/attachments/{aid}",
            web::get().to(attachments::download),
        )
        .service(crate::detail::action(
            "/applications/{id}/attachments/{aid}/delete",
            attachments::delete,
            applications::show,
        ))
        .service(crate::detail::action(
            "/applications/{id}/return",
            review::return_app,
            applications::show,
        ))
        .service(crate::detail::action(
            "/applications/{id}/assign",
            review::assign,
            applications::show,
        ))
        .service(crate::detail::action(
            "/applications/{id}/approve",
            review::approve,
            applications::show,
        ))
        .service(crate::detail::action(
            "/applications/{id}/reject",
            review::reject,
            applications::show,
        ))
        .service(crate::detail::action(
            "/applications/{id}/opinion",
            review::opinion,
            applications::show,
        ))
        .route("/expert/assignments", web::get().to(review::my_assignments));
}

/// The regulator's staff decide; this is their role.
pub fn require_regulator(user: &CurrentUser) -> Result<(), AppError> {
    user.require(&[Role::Regulator])
}

/// A refused transition as the HTTP 409 the user sees.
pub fn conflict(r: machine::Refusal) -> AppError {
    AppError::conflict(r.0)
}

/// Applies `action` to the application and stores the new state, its history entry and the
/// audit record (all in the caller's transaction); returns the new state.
pub fn transition(
    conn: &mut DbConnection,
    actor: &Actor,
    app: &model::Application,
    action: ApplicationAction,
    message: &str,
) -> Result<ApplicationState, AppError> {
    let from = app.state();
    let to = from.apply(action).map_err(conflict)?;
    let now = crate::db::now();
    let changed = diesel::update(
        app_t::table
            .find(app.id)
            .filter(app_t::state.eq(from.as_str())),
    )
    .set((app_t::state.eq(to.as_str()), app_t::updated_at.eq(now)))
    .execute(conn)?;
    if changed != 1 {
        return Err(AppError::conflict("admission.err_app_changed"));
    }
    let verb = action_code(action);
    model::record_event(conn, app.id, actor, verb, (from, to), message)?;
    audit::record(
        conn,
        actor,
        &format!("application.{verb}"),
        "application",
        &app.id.to_string(),
        serde_json::json!({ "from": from.as_str(), "to": to.as_str() }),
    )?;
    Ok(to)
}

/// The code of an application action in history and audit entries.
pub fn action_code(action: ApplicationAction) -> &'static str {
    match action {
        ApplicationAction::Save => "save",
        ApplicationAction::Submit => "submit",
        ApplicationAction::Return => "return",
        ApplicationAction::AssignExpert => "assign_expert",
        ApplicationAction::Approve => "approve",
        ApplicationAction::Reject => "reject",
        ApplicationAction::UpholdObjection => "uphold_objection",
        ApplicationAction::Admit => "admit",
    }
}

/// A mail about an application.
pub fn notice<'a>(template: &'a str, args: &'a [(&'a str, String)], app_id: i64) -> Notice<'a> {
    Notice {
        template,
        args,
        object_type: "application",
        object_id: app_id.to_string(),
    }
}

/// Queues a notice for the regulator's staff: every active regulator user and each regulator
/// organisation's mailbox.
pub fn to_regulators(conn: &mut DbConnection, n: &Notice<'_>) -> QueryResult<()> {
    use crate::schema::organisations;
    let orgs: Vec<i64> = organisations::table
        .filter(organisations::kind.eq(crate::accounts::model::OrgKind::Regulator.as_str()))
        .filter(organisations::status.ne("disabled"))
        .select(organisations::id)
        .load(conn)?;
    for org in orgs {
        mail::to_org(conn, org, n)?;
    }
    Ok(())
}

/// Admits the application if its notice period ended before `today` with no objection
/// pending (an upheld objection has already sent it back to review). Returns whether it did.
pub fn admit_if_due(
    conn: &mut DbConnection,
    today: NaiveDate,
    app: &model::Application,
) -> Result<bool, AppError> {
    if app.state() != ApplicationState::Notice || app.notice_ends_on.is_none_or(|d| today <= d) {
        return Ok(false);
    }
    let pending = model::objections_of(conn, app.id)?
        .iter()
        .any(|o| o.state == ObjectionState::Pending.as_str());
    if pending {
        return Ok(false);
    }
    transition(conn, &Actor::system(), app, ApplicationAction::Admit, "")?;
    diesel::update(app_t::table.find(app.id))
        .set(app_t::admitted_at.eq(crate::db::now()))
        .execute(conn)?;
    let args = [("id", app.id.to_string()), ("org", app.org_name.clone())];
    mail::to_org(
        conn,
        app.org_id,
        &notice("admission.mail.admitted", &args, app.id),
    )?;
    Ok(true)
}

/// The scheduler's admission work: closes published calls whose closing date has passed and
/// admits applications whose notice period has ended with no objection pending.
pub fn tick(state: &AppState) -> anyhow::Result<()> {
    let today = state.clock.today();
    let mut conn = state.pool.get()?;
    let due: Vec<i64> = call_t::table
        .filter(call_t::state.eq(CallState::Published.as_str()))
        .filter(call_t::closes_on.lt(today))
        .select(call_t::id)
        .load(&mut conn)?;
    let mut failed = 0usize;
    for id in due {
        if let Err(e) =
            crate::db::write_transaction(&mut conn, |conn| calls::close_by_date(conn, id, today))
        {
            tracing::warn!(call = id, error = %e, "closing a call failed; retried next tick");
            failed += 1;
        }
    }
    let running = model::applications_in(&mut conn, &[ApplicationState::Notice])?;
    for app in running {
        let result = crate::db::write_transaction(&mut conn, |conn| {
            // Re-read inside the transaction: a regulator may have acted meanwhile.
            match model::find_application(conn, app.id)? {
                Some(a) => admit_if_due(conn, today, &a).map(|_| ()),
                None => Ok(()),
            }
        });
        if let Err(e) = result {
            tracing::warn!(application = app.id, error = %e, "admitting failed; retried next tick");
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} admission item(s) failed");
    Ok(())
}

/// The call action a route segment names.
pub fn call_action(segment: &str) -> Option<CallAction> {
    match segment {
        "publish" => Some(CallAction::Publish),
        "close" => Some(CallAction::Close),
        "withdraw" => Some(CallAction::Withdraw),
        _ => None,
    }
}

/// A label for an application in queues and mails: `#id · organisation`.
pub fn app_label(app: &model::Application) -> String {
    format!("#{} · {}", app.id, app.org_name)
}

/// The admission queues of the regulator's desk (a [`crate::supervision::desk::QueueSource`]).
pub fn queues(
    conn: &mut DbConnection,
    cal: &Calendar,
    today: NaiveDate,
) -> QueryResult<Vec<QueueSection>> {
    let to_check = model::applications_in(
        conn,
        &[ApplicationState::Submitted, ApplicationState::InReview],
    )?;
    let check_items = to_check
        .iter()
        .map(|a| QueueItem {
            label: app_label(a),
            href: format!("/applications/{}", a.id),
            state_key: a.state().label_key(),
            deadline: a.review_due_on.map(|d| cal.deadline(today, d)),
        })
        .collect();
    let mut opinion_items = Vec::new();
    for a in &to_check {
        for (asg, expert) in model::assignments_of(conn, a.id)? {
            if asg.state == machine::AssignmentState::Assigned.as_str() {
                opinion_items.push(QueueItem {
                    label: format!("{} · {expert}", app_label(a)),
                    href: format!("/applications/{}", a.id),
                    state_key: machine::AssignmentState::Assigned.label_key(),
                    deadline: Some(cal.deadline(today, asg.due_on)),
                });
            }
        }
    }
    let notice_items = model::applications_in(conn, &[ApplicationState::Notice])?
        .iter()
        .map(|a| QueueItem {
            label: app_label(a),
            href: format!("/applications/{}", a.id),
            state_key: ApplicationState::Notice.label_key(),
            deadline: a.notice_ends_on.map(|d| cal.deadline(today, d)),
        })
        .collect();
    let mut objection_items = Vec::new();
    for o in model::objections_in(conn, ObjectionState::Pending.as_str())? {
        let label = match model::find_application(conn, o.application_id)? {
            Some(a) => format!("{} · {}", app_label(&a), o.name),
            None => o.name.clone(),
        };
        objection_items.push(QueueItem {
            label,
            href: format!("/applications/{}#objections", o.application_id),
            state_key: ObjectionState::Pending.label_key(),
            deadline: Some(cal.deadline(today, o.due_on)),
        });
    }
    Ok(vec![
        QueueSection {
            title_key: "admission.queue_to_check",
            items: check_items,
        },
        QueueSection {
            title_key: "admission.queue_opinions_due",
            items: opinion_items,
        },
        QueueSection {
            title_key: "admission.queue_notices",
            items: notice_items,
        },
        QueueSection {
            title_key: "admission.queue_objections",
            items: objection_items,
        },
    ])
}
