//! Supervision: the hash-chained audit log and the regulator's audit pages, the regulator's
//! desk (every work queue with its deadlines) and the working-day calendar.
//!
//! * [`audit`]: the log and its chain; [`details`]: an entry's details as a person reads them;
//!   [`desk`]: the queues' types and order.
//! * [`handlers`]: the audit pages and CSV, the desk, the calendar.
//!
//! Files, named as in every domain: `machine.rs` the state machines, `model.rs` the rows and
//! the domain's public queries, `ops.rs` the commands (every state change, each one
//! transaction), `forms.rs` the forms and their validation, `handlers/` the HTTP handlers (one
//! file per page group: parse, call one command or query, render).

pub mod audit;
pub mod desk;
pub mod details;
pub mod handlers;

use actix_web::web;

/// Mounts the supervision routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/supervision/audit",
        web::get().to(handlers::audit::audit_log),
    )
    .route(
        "/supervision/audit.csv",
        web::get().to(handlers::audit::audit_csv),
    )
    .route(
        "/supervision/audit/verify",
        web::get().to(handlers::audit::audit_verify),
    )
    .route("/regulator/desk", web::get().to(handlers::desk::desk))
    .route(
        "/regulator/calendar",
        web::get().to(handlers::calendar::calendar),
    )
    .route(
        "/regulator/calendar/days",
        web::post().to(handlers::calendar::add_day),
    )
    .route(
        "/regulator/calendar/range",
        web::post().to(handlers::calendar::add_range),
    )
    .route(
        "/regulator/calendar/days/{day}/delete",
        web::post().to(handlers::calendar::remove_day),
    );
}
