//! Supervision: the hash-chained audit log and the regulator's audit pages.

pub mod audit;

use actix_web::web;

/// Mounts the supervision routes.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
