//! Supervision: the hash-chained audit log and the regulator's audit pages, the regulator's
//! desk (every work queue with its deadlines) and the working-day calendar.

pub mod audit;
pub mod calendar_pages;
pub mod desk;
pub mod desk_page;
pub mod details;
pub mod pages;

use actix_web::web;

/// Mounts the supervision routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/supervision/audit", web::get().to(pages::audit_log))
        .route("/supervision/audit.csv", web::get().to(pages::audit_csv))
        .route(
            "/supervision/audit/verify",
            web::get().to(pages::audit_verify),
        )
        .route("/regulator/desk", web::get().to(desk_page::desk))
        .route(
            "/regulator/calendar",
            web::get().to(calendar_pages::calendar),
        )
        .route(
            "/regulator/calendar/days",
            web::post().to(calendar_pages::add_day),
        )
        .route(
            "/regulator/calendar/range",
            web::post().to(calendar_pages::add_range),
        )
        .route(
            "/regulator/calendar/days/{day}/delete",
            web::post().to(calendar_pages::remove_day),
        );
}
