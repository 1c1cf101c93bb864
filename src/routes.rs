//! The one route table. Each domain exposes `pub fn routes(cfg: &mut web::ServiceConfig)` and
//! is mounted here.

use actix_web::web;

/// Mounts every route of the application.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(crate::web::home))
        .route("/healthz", web::get().to(crate::web::healthz))
        .route("/lang/{code}", web::get().to(crate::web::set_lang))
        .route("/static/{path:.*}", web::get().to(crate::assets::serve));
    crate::accounts::routes(cfg);
    crate::supervision::routes(cfg);
    crate::catalog::routes(cfg);
    crate::mail::routes(cfg);
    crate::admission::routes(cfg);
    crate::agreements::routes(cfg);
    crate::jobs::routes(cfg);
    cfg.default_service(web::to(crate::web::not_found));
}
