//! Job request handlers, one file per page group: `list` (the runs and budgets), `submission`
//! (the form and the API), `api` (the run list and status of the API), `show` (the run page and
//! the signed downloads), `actions` (cancel, release, withhold, usage report), `review` (the
//! reviewer's queue and computations), `trainings`. This file holds what they share.
//!
//! Operators (enterprise members) submit, watch, cancel, download and report usage of their
//! organisation's runs; anyone else asking for one of them gets 404. The reviewer (see
//! [`super::reviewer_role`]) approves computations and releases or withholds outputs; the
//! regulator and the platform admin see every run. The platform admin records training.

mod actions;
mod api;
mod list;
mod review;
mod show;
mod submission;
mod trainings;

pub use actions::*;
pub use api::*;
pub use list::*;
pub use review::*;
pub use show::*;
pub use submission::*;
pub use trainings::*;

use actix_multipart::Multipart;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use futures_util::TryStreamExt as _;
use serde::Deserialize;

use super::machine::{ComputationState, RunState};
use super::model::{self, Computation, Job, MAX_MANIFEST_BYTES, MAX_MODULE_BYTES};
use super::ops::{self, ReleaseResult};
use super::output::{self, Chart, Table};
use super::submit::{self, Problem, Submission};
use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::errors::AppError;
use crate::i18n::Lang;
use crate::idempotency;
use crate::input::{self, DateSpan};
use crate::web::{Page, db, lang_of, redirect_with_flash, render, render_status};
use dataop_sandbox::runtime::operator_kind;

/// Runs listed per page.
const LIST_LIMIT: i64 = 200;
/// Longest purpose field accepted in a multipart form, in bytes.
const MAX_PURPOSE_BYTES: usize = 16 * 1024;
/// Most `dataset.<name>` fields in one submission.
const MAX_BINDINGS: usize = 32;

/// Whether `user` may see run `j`.
fn may_view(user: &CurrentUser, j: &Job) -> bool {
    super::sees_all(user) || user.org_id == j.org_id
}

fn require_reviewer(state: &AppState, user: &CurrentUser) -> Result<(), AppError> {
    if super::is_reviewer(state, user) {
        Ok(())
    } else {
        Err(AppError::forbidden())
    }
}

pub(super) fn load_visible(
    conn: &mut crate::db::DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<Job, AppError> {
    let j = ops::load_job(conn, id)?;
    if may_view(user, &j) {
        Ok(j)
    } else {
        Err(AppError::not_found())
    }
}

/// A run as a list row.
#[derive(Debug, Clone)]
pub struct RowView {
    /// Id.
    pub id: i64,
    /// Job name.
    pub name: String,
    /// Operator.
    pub org_name: String,
    /// State.
    pub state: RunState,
    /// Rows processed, percent (for the operator, from the state alone:
    /// [`Job::operator_percent`]; `None` while it runs).
    pub percent: Option<i64>,
    /// Submitted at.
    pub created_at: String,
    /// Module hash (first 12 characters).
    pub short_hash: String,
}

fn row_view(page: &Page, r: model::JobRow, staff: bool) -> RowView {
    RowView {
        id: r.job.id,
        percent: if staff {
            Some(r.job.percent())
        } else {
            r.job.operator_percent()
        },
        state: r.job.state,
        created_at: page.time(r.job.created_at),
        short_hash: r.module_sha256.chars().take(12).collect(),
        name: r.name,
        org_name: r.org_name,
    }
}

/// A form with a CSRF token and an optional note.
#[derive(Debug, Deserialize)]
pub struct NoteForm {
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) note: String,
}
