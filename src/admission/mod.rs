//! Admission (准入, DOMAIN.md "Admission and exit", steps 1–4): calls for applications,
//! applications with evidence and attachments, review with expert opinions, public notice with
//! objections, and the timed work that closes calls and admits applicants.
//!
//! The files, named as in every domain:
//! * [`machine`]: the states, actions and the one `decide` of each workflow (call,
//!   application, expert assignment, objection) on the workflow kernel.
//! * [`model`]: the rows (states read as typed enums) and the domain's public queries.
//! * [`ops`]: the commands, every state change, each one transaction committed with
//!   [`crate::workflow::commit`].
//! * [`forms`]: the forms as typed and their validation.
//! * [`handlers`]: the HTTP handlers, one file per page group ([`handlers::calls`],
//!   [`handlers::applications`], [`handlers::review`], [`handlers::notices`],
//!   [`handlers::attachments`]); they parse, call one command, render.
//! * [`demo`]: the demo world's call and application.
//! * [`tick`]: the scheduler's work; [`queues`]: the regulator's desk queues.
//!
//! An application whose `state` is `admitted` is the contract with the agreements: an
//! agreement may be drafted exactly for those.

pub mod demo;
pub mod forms;
pub mod handlers;
pub mod machine;
pub mod model;
pub mod ops;

use actix_web::web;
use chrono::NaiveDate;
use diesel::QueryResult;

use crate::AppState;
use crate::calendar::Calendar;
use crate::db::DbConnection;
use crate::supervision::desk::{QueueItem, QueueSection};
use handlers::{applications, attachments, calls, notices, review};
use machine::{ApplicationState, AssignmentState, ObjectionState};

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

/// The scheduler's admission work: closes published calls whose closing date has passed and
/// admits applications whose notice period has ended with no objection pending.
pub fn tick(state: &AppState) -> anyhow::Result<()> {
    let (now, today) = handlers::clock(state);
    let mut conn = state.pool.get()?;
    let mut failed = 0usize;
    for id in model::calls_due_to_close(&mut conn, today)? {
        if let Err(e) = ops::close_if_due(&mut conn, id, now, today) {
            tracing::warn!(call = id, error = %e, "closing a call failed; retried next tick");
            failed += 1;
        }
    }
    for app in model::applications_in(&mut conn, &[ApplicationState::Notice])? {
        if let Err(e) = ops::admit_if_due(&mut conn, app.id, now, today) {
            tracing::warn!(application = app.id, error = %e, "admitting failed; retried next tick");
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} admission item(s) failed");
    Ok(())
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
            state_key: a.state.label_key(),
            deadline: a.review_due_on.map(|d| cal.deadline(today, d)),
        })
        .collect();
    let mut opinion_items = Vec::new();
    for a in &to_check {
        for (asg, expert) in model::assignments_of(conn, a.id)? {
            if asg.state == AssignmentState::Assigned {
                opinion_items.push(QueueItem {
                    label: format!("{} · {expert}", app_label(a)),
                    href: format!("/applications/{}", a.id),
                    state_key: AssignmentState::Assigned.label_key(),
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
    for o in model::objections_in(conn, ObjectionState::Pending)? {
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
