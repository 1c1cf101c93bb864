//! Agreement request handlers, one file per page group: `list`, `drafts`, `actions`, `show`,
//! `verify`. This file holds what they share.
//!
//! Public: the verification page. Operators (users of the operator organisation): their
//! agreements, signing, the termination request, rectification answers, the disposal
//! confirmation. Regulators: the queues and list, drafting, sealing, amendments and the exit
//! decisions. Anyone else asking for an agreement gets 404.

mod actions;
mod drafts;
mod list;
mod show;
mod verify;

pub use actions::*;
pub use drafts::*;
pub use list::*;
pub use show::*;
pub use verify::*;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use diesel::prelude::*;
use serde::Deserialize;

use super::forms::{DraftForm, Problem};
use super::machine::{AgreementState, RectificationState, RequestAction, RequestState};
use super::model::{self, Agreement, AgreementDataset, AgreementRow};
use super::ops::{self, RectDecision};
use super::queues;
use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::calendar::{Calendar, Deadline};
use crate::errors::AppError;
use crate::input::DateSpan;
use crate::schema::{agreement_signatures, agreements, audit_log};
use crate::supervision::audit::Entry;
use crate::web::{Page, db, redirect, redirect_with_flash, render, render_status};

/// Agreements listed per page.
const LIST_LIMIT: i64 = 500;
/// Longest canonical text the verification form accepts, in bytes.
const MAX_CANONICAL: usize = 128 * 1024;

fn is_regulator(user: &CurrentUser) -> bool {
    user.has_role(&[Role::Regulator])
}

/// Whether `user` may see agreement `a` (its operator's members, regulators, platform admins).
fn may_view(user: &CurrentUser, a: &Agreement) -> bool {
    user.has_role(&[Role::Regulator, Role::PlatformAdmin]) || user.org_id == a.operator_org_id
}

fn badge(state: AgreementState) -> &'static str {
    match state {
        AgreementState::InForce => "ok",
        AgreementState::Ended(_) | AgreementState::Superseded => "disabled",
        _ => "pending",
    }
}

/// One agreement as a list row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Id.
    pub id: i64,
    /// Number.
    pub number: String,
    /// Operator.
    pub operator: String,
    /// State label key.
    pub state_key: String,
    /// Badge class suffix.
    pub badge: &'static str,
    /// Term, as text.
    pub term: String,
}

fn row(a: &Agreement) -> Row {
    let st = a.state;
    Row {
        id: a.id,
        number: a.number.clone(),
        operator: a.operator_name.clone(),
        state_key: st.label_key(),
        badge: badge(st),
        term: match (a.starts_on, a.ends_on) {
            (Some(s), Some(e)) => format!("{s} – {e}"),
            _ => String::new(),
        },
    }
}
