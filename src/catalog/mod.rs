//! The data catalog: datasets, their schema columns and versions, CSV ingest, the public
//! catalog and `/api/v1/datasets`.
//!
//! * [`model`]: vocabularies (category, open type, ...) and the catalog tables' queries.
//! * [`forms`]: the provider's forms and their validation.
//! * [`ingest`]: streaming CSV validation and pseudonymization into a columnar version.
//! * [`ops`]: the commands: upload → draft version (move into place, record, audit),
//!   publish, discard, and the reconciliation at start; [`machine`]: the version's workflow; [`summary`]: the
//!   value summaries of the preview ([`handlers::versions`]).
//! * [`handlers`]: the HTTP handlers (the catalog, the provider's datasets and uploads;
//!   [`handlers::versions`] the version preview, publish and discard); [`demo`]: the demo
//!   dataset.
//!
//! No route returns data rows: pages and the API show metadata, schema and version facts only.
//!
//! Files, named as in every domain: `machine.rs` the state machines, `model.rs` the rows and
//! the domain's public queries, `ops.rs` the commands (every state change, each one
//! transaction), `forms.rs` the forms and their validation, `handlers/` the HTTP handlers (one
//! file per page group: parse, call one command or query, render).

pub mod demo;
pub mod forms;
pub mod handlers;
pub mod ingest;
pub mod machine;
pub mod model;
pub mod ops;
pub mod summary;

use actix_web::web;

/// Mounts the catalog routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    cfg.route("/catalog", web::get().to(h::catalog_list))
        .route("/catalog/{id}", web::get().to(h::catalog_show))
        .route("/api/v1/datasets", web::get().to(h::api_list))
        .route("/api/v1/datasets/{id}", web::get().to(h::api_show))
        .route("/provider", web::get().to(h::provider_home))
        .route("/provider/datasets", web::get().to(h::my_datasets))
        .route("/provider/datasets", web::post().to(h::create_dataset))
        .route("/provider/datasets/new", web::get().to(h::new_dataset))
        .route("/provider/datasets/{id}", web::get().to(h::manage))
        .route(
            "/provider/datasets/{id}/edit",
            web::get().to(h::edit_dataset),
        )
        .route(
            "/provider/datasets/{id}/edit",
            web::post().to(h::update_dataset),
        )
        .route(
            "/provider/datasets/{id}/columns",
            web::post().to(h::add_column),
        )
        .route(
            "/provider/datasets/{id}/columns/{cid}/edit",
            web::get().to(h::edit_column),
        )
        .route(
            "/provider/datasets/{id}/columns/{cid}/edit",
            web::post().to(h::update_column),
        )
        .route(
            "/provider/datasets/{id}/columns/{cid}/delete",
            web::post().to(h::delete_column),
        )
        .service(crate::detail::action(
            "/provider/datasets/{id}/versions",
            h::upload_version,
            h::manage,
        ))
        .route(
            "/provider/datasets/{id}/versions/{vid}",
            web::get().to(h::versions::preview),
        )
        .service(crate::detail::action(
            "/provider/datasets/{id}/versions/{vid}/publish",
            h::versions::publish,
            h::versions::preview,
        ))
        .service(crate::detail::action(
            "/provider/datasets/{id}/versions/{vid}/discard",
            h::versions::discard,
            h::versions::preview,
        ));
}
