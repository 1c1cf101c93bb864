//! Supervision: the hash-chained audit log and the regulator's audit pages.

pub mod audit;
pub mod desk;
pub mod pages;

use actix_web::web;

/// Mounts the supervision routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/supervision/audit", web::get().to(pages::audit_log))
        .route(
            "/supervision/audit/verify",
            web::get().to(pages::audit_verify),
        );
}
