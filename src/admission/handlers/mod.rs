//! The HTTP handlers of admission, one file per page group. Each parses its input, calls one
//! command of [`super::ops`] (or reads through [`super::model`]) and renders.

pub mod applications;
pub mod attachments;
pub mod calls;
pub mod notices;
pub mod review;

use chrono::{NaiveDate, NaiveDateTime};

use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::errors::AppError;

/// The regulator's staff decide; this is their role.
pub fn require_regulator(user: &CurrentUser) -> Result<(), AppError> {
    user.require(&[Role::Regulator])
}

/// The platform clock's instant (as stored) and date, for a command.
pub fn clock(state: &AppState) -> (NaiveDateTime, NaiveDate) {
    let now = state.clock.now();
    (crate::db::to_micros(now), state.clock.local(now).date())
}
