//! Agreements (签订协议) and exit (结束退出): DOMAIN.md "Admission and exit" steps 5 and 6 and
//! "Agreements".
//!
//! * The regulator drafts an agreement from an application whose state is `admitted` (approved,
//!   notice period over with no objection pending or upheld), choosing a subset of the approved
//!   datasets, and sends it to the operator, who signs by typing its organisation's name (or
//!   returns it with comments, back to draft). The
//!   regulator then seals it with the Ed25519 authorization seal ([`seal`]): the platform signs
//!   the agreement's canonical text ([`model`] documents it) and stores its SHA-256, the
//!   signature and the public key. Anyone can verify a number and hash (or the text) on the
//!   public page `/agreements/verify`.
//! * The term is 2 years from sealing (the sealing date in Beijing is the first day). The
//!   optional trial period (at most 6 months) is the first part of the term, not an extension.
//!   An amendment keeps the term of the version it amends.
//! * A signed agreement is never edited: changes are an amendment (a new version, numbered
//!   `<number>-V<n>`) that both sign again; sealing it supersedes the previous version.
//! * Exit, four routes ([`ops::end`]): (a) expiry by the scheduler ([`tick`], which also warns
//!   both parties 30 days before, once); (b) the operator's request, decided by the regulator;
//!   (c) a rectification order with a deadline in working days, answered by the operator and
//!   accepted or rejected, or terminated once overdue unanswered; (d) immediate termination for
//!   a violation of law. Routes (c) and (d) write a credit record when the agreement is
//!   terminated (an order that is complied with is not a breach on record).
//! * The workflows are the state machines of [`machine`]; every change is audited in its
//!   transaction, and the audit entries of an agreement are its history.

pub mod demo;
pub mod forms;
pub mod handlers;
pub mod machine;
pub mod model;
pub mod ops;
pub mod queues;
pub mod schemas;
pub mod seal;

use actix_web::web;
use chrono::NaiveDate;
use diesel::prelude::*;

use crate::AppState;
use crate::db::DbConnection;
use crate::detail;
use crate::schema::{agreement_datasets, agreements};

/// A running agreement that covers a dataset for an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementRef {
    /// The agreement id.
    pub id: i64,
    /// Its number.
    pub number: String,
    /// The last day of its term.
    pub ends_on: NaiveDate,
    /// The privacy budget (epsilon) for the dataset, canonical decimal.
    pub epsilon: String,
    /// Runs allowed per period.
    pub run_budget: i32,
    /// The period (`day`, `week`, `month`).
    pub run_period: String,
}

/// The agreement under which `org_id` may use `dataset_id` on `today`: one whose term runs
/// (in force or under a rectification order) and covers the day. `None` after any exit.
pub fn in_force_for(
    conn: &mut DbConnection,
    org_id: i64,
    dataset_id: i64,
    today: NaiveDate,
) -> QueryResult<Option<AgreementRef>> {
    let row: Option<(i64, String, Option<NaiveDate>, String, i32, String)> = agreements::table
        .inner_join(agreement_datasets::table)
        .filter(agreements::operator_org_id.eq(org_id))
        .filter(agreement_datasets::dataset_id.eq(dataset_id))
        .filter(machine::state_running())
        .filter(agreements::starts_on.le(today))
        .filter(agreements::ends_on.ge(today))
        .order(agreements::id.desc())
        .select((
            agreements::id,
            agreements::number,
            agreements::ends_on,
            agreement_datasets::epsilon,
            agreements::run_budget,
            agreements::run_period,
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.and_then(|(id, number, ends_on, epsilon, run_budget, run_period)| {
            Some(AgreementRef {
                id,
                number,
                ends_on: ends_on?,
                epsilon,
                run_budget,
                run_period,
            })
        }),
    )
}

/// A running agreement (in force or under a rectification order) as other domains list it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Running {
    /// The agreement id.
    pub id: i64,
    /// The operator's organisation.
    pub operator_org_id: i64,
    /// The operator's name, as drafted.
    pub operator_name: String,
    /// Its number.
    pub number: String,
    /// Runs allowed per period.
    pub run_budget: i32,
    /// The period (`day`, `week`, `month`).
    pub run_period: String,
}

/// The running agreements of `org_id` (of every operator with `None`), oldest first, at most
/// [`MAX_LISTED`].
pub fn running(conn: &mut DbConnection, org_id: Option<i64>) -> QueryResult<Vec<Running>> {
    let mut q = agreements::table
        .filter(machine::state_running())
        .select(RUNNING_COLUMNS)
        .order(agreements::id.asc())
        .limit(MAX_LISTED)
        .into_boxed();
    if let Some(org) = org_id {
        q = q.filter(agreements::operator_org_id.eq(org));
    }
    q.load(conn)
}

/// The datasets of the running agreements of `org_id` (of every operator with `None`), each
/// with its agreement, oldest agreement first, at most [`MAX_LISTED`].
pub fn running_datasets(
    conn: &mut DbConnection,
    org_id: Option<i64>,
) -> QueryResult<Vec<(Running, model::AgreementDataset)>> {
    let mut q = agreements::table
        .inner_join(agreement_datasets::table)
        .filter(machine::state_running())
        .select((RUNNING_COLUMNS, model::AgreementDataset::as_select()))
        .order((agreements::id.asc(), agreement_datasets::dataset_id.asc()))
        .limit(MAX_LISTED)
        .into_boxed();
    if let Some(org) = org_id {
        q = q.filter(agreements::operator_org_id.eq(org));
    }
    q.load(conn)
}

/// The most agreements (or agreement datasets) a list of [`running`] or [`running_datasets`]
/// holds.
pub const MAX_LISTED: i64 = 1000;

const RUNNING_COLUMNS: (
    agreements::id,
    agreements::operator_org_id,
    agreements::operator_name,
    agreements::number,
    agreements::run_budget,
    agreements::run_period,
) = (
    agreements::id,
    agreements::operator_org_id,
    agreements::operator_name,
    agreements::number,
    agreements::run_budget,
    agreements::run_period,
);

/// The datasets (id, title as the agreement names it) of `org_id`'s agreements in force on
/// `today`.
pub fn datasets_in_force(
    conn: &mut DbConnection,
    org_id: i64,
    today: NaiveDate,
) -> QueryResult<Vec<(i64, String)>> {
    agreements::table
        .inner_join(agreement_datasets::table)
        .filter(agreements::operator_org_id.eq(org_id))
        .filter(machine::state_running())
        .filter(agreements::starts_on.le(today))
        .filter(agreements::ends_on.ge(today))
        .select((
            agreement_datasets::dataset_id,
            agreement_datasets::dataset_title,
        ))
        .distinct()
        .load(conn)
}

/// Those of agreements `ids` that no longer run (ended or superseded).
pub fn not_running(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<i64>> {
    agreements::table
        .filter(agreements::id.eq_any(ids))
        .filter(agreements::state.ne_all(machine::RUNNING))
        .select(agreements::id)
        .load(conn)
}

/// The metering prices of agreement `id`: per run and per thousand rows read (canonical
/// decimals, `None` when the agreement sets none).
pub fn prices(conn: &mut DbConnection, id: i64) -> QueryResult<(Option<String>, Option<String>)> {
    agreements::table
        .find(id)
        .select((
            agreements::price_per_job,
            agreements::price_per_thousand_rows,
        ))
        .first(conn)
}

/// The scheduler's work: warns both parties 30 days before the end of a term (once, recorded
/// in `expiry_warned_at`) and ends agreements whose term is over (exit route (a)).
pub fn tick(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    queues::expire(&mut conn, state.clock.now(), state.clock.today())
}

/// Mounts the agreement routes (the public verification page before `/agreements/{id}`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    cfg.route("/agreements/verify", web::get().to(h::verify_form))
        .route("/agreements/verify", web::post().to(h::verify_text))
        .route("/agreements", web::get().to(h::my_list))
        .route("/agreements/{id}", web::get().to(h::show))
        .route("/agreements/{id}/print", web::get().to(h::print))
        .route("/agreements/{id}/canonical", web::get().to(h::canonical))
        .service(detail::action("/agreements/{id}/sign", h::sign, h::show))
        .service(detail::action(
            "/agreements/{id}/return",
            h::operator_return,
            h::show,
        ))
        .service(detail::action(
            "/agreements/{id}/termination-request",
            h::request_termination,
            h::show,
        ))
        .service(detail::action(
            "/agreements/{id}/rectifications/{rid}/answer",
            h::answer_rectification,
            h::show,
        ))
        .service(detail::action(
            "/agreements/{id}/disposal",
            h::file_disposal,
            h::show,
        ))
        .service(detail::action(
            "/agreements/{id}/schemas/{dataset}/accept",
            h::accept_schema,
            h::show,
        ))
        .route("/admin/agreements", web::get().to(h::admin_list))
        .route(
            "/admin/applications/{app}/agreement/new",
            web::get().to(h::draft_form),
        )
        .route(
            "/admin/applications/{app}/agreement",
            web::post().to(h::create_draft),
        )
        .route("/admin/agreements/{id}/edit", web::get().to(h::edit_form))
        .route("/admin/agreements/{id}", web::post().to(h::update_draft))
        .service(detail::action(
            "/admin/agreements/{id}/submit",
            h::submit,
            h::show,
        ))
        .service(detail::action(
            "/admin/agreements/{id}/seal",
            h::seal,
            h::show,
        ))
        .service(detail::action(
            "/admin/agreements/{id}/amend",
            h::amend,
            h::show,
        ))
        .service(detail::action(
            "/admin/agreements/{id}/rectifications",
            h::order_rectification,
            h::show,
        ))
        .service(detail::action(
            "/admin/agreements/{id}/rectifications/{rid}/decide",
            h::decide_rectification,
            h::show,
        ))
        .service(detail::action(
            "/admin/agreements/{id}/termination-requests/{tid}/decide",
            h::decide_request,
            h::show,
        ))
        .service(detail::action(
            "/admin/agreements/{id}/terminate",
            h::terminate_for_violation,
            h::show,
        ));
}
