//! Computation jobs (issue 5): an authorized operator's WebAssembly module runs next to the data
//! in the sandbox, and only a reviewed, thresholded aggregate comes out, with its provenance.
//!
//! * **Training gate** ([`ops::record_training`]): the platform admin records staff training
//!   (人员培训); only members with current training may submit.
//! * **Submission** ([`submit`]): browser form and `POST /api/v1/jobs` (multipart: `module`,
//!   `manifest`, `purpose`, optional `dataset.<name>` = catalog dataset id). Every rule is
//!   checked at once and every failed one is named: training, manifest, module (the sandbox's
//!   validation), datasets bound, agreement in force, columns within the agreement, k not below
//!   the platform floor, epsilon within the remaining budget, the release policy of the
//!   datasets' grades ([`policy`]), runs within the agreement's period budget.
//! * **Approval, pinned by hash**: a computation is an operator's module (sha256) with its
//!   manifest (sha256) and dataset bindings. The reviewer (`job_reviewer`: the regulator, or the
//!   platform admin) approves or rejects it once; a run of an approved computation is queued at
//!   once; a different module hash is a new computation, and the UI names the approved hash it
//!   differs from ([`model::Computation::differs_from`]).
//! * **Queue and workers** ([`worker`]): runs wait in `jobs`; a worker claims one with
//!   `FOR UPDATE SKIP LOCKED` (PostgreSQL) or an atomic `UPDATE … WHERE state = 'queued'`
//!   (SQLite), holds a lease it renews while the sandbox runs, and a run whose lease expired is
//!   claimed again. The agreement is checked again at start and at release.
//! * **Output review and release** ([`ops::release`], [`output`]): the reviewer sees every cell
//!   (suppressed ones marked), releases or withholds with reasons; released files (CSV, JSON)
//!   carry their provenance and the platform's Ed25519 signature (the regulator's seal key)
//!   over the file's sha256. Releasing debits the privacy budget; each run records its metering.
//! * **Differencing guard** ([`differencing`]): without noise, an output is withheld at release
//!   when one of its cells is 1 to k − 1 persons from another of its cells or from a cell
//!   released earlier to the operator from the same dataset; platform staff see which.
//! * Every change is a transition of [`machine`], one transaction with its audit entry and
//!   emails.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod differencing;
pub mod events;
pub mod handlers;
pub mod machine;
pub mod model;
pub mod ops;
pub mod output;
pub mod policy;
pub mod refusal;
pub mod submit;
pub mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use actix_web::web;
use dataop_sandbox::{Limits, Runtime};

use crate::AppState;
use crate::auth::{CurrentUser, Role};

/// The process's sandbox runtime, created on first use with its compiled-module cache in
/// `<data_dir>/cache/modules`, under the platform's limits and release policy.
pub struct Sandbox {
    limits: Limits,
    runtime: OnceLock<Arc<Runtime>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sandbox")
    }
}

impl Sandbox {
    /// A sandbox whose runtime will run under `limits`.
    pub fn new(limits: Limits) -> Self {
        Sandbox {
            limits,
            runtime: OnceLock::new(),
        }
    }

    /// The limits and release policy runs are held to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The runtime (created on first call). Compiled modules are cached under the data dir,
    /// authenticated with a key derived from the data dir's session secret.
    pub fn runtime(
        &self,
        data_dir: &std::path::Path,
        secrets: &crate::secrets::Secrets,
    ) -> anyhow::Result<Arc<Runtime>> {
        if let Some(rt) = self.runtime.get() {
            return Ok(Arc::clone(rt));
        }
        let cache: PathBuf = data_dir.join("cache").join("modules");
        let key = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(b"dataop compiled module cache key\0");
            h.update(&secrets.session_key);
            h.finalize()
        };
        let rt = Arc::new(Runtime::new(self.limits.clone(), Some((&cache, &key[..])))?);
        Ok(Arc::clone(self.runtime.get_or_init(|| rt)))
    }
}

/// Wakes this process's idle workers when runs are queued, so they start at once instead of at
/// the workers' next look at the queue (every `job_poll_ms`): rung by
/// [`worker::announce_queued`] in this process and, on PostgreSQL, by the listener that hears
/// other processes announce theirs.
#[derive(Debug, Default)]
pub struct QueueBell {
    rung: Mutex<u64>,
    bell: Condvar,
}

impl QueueBell {
    /// Tells the idle workers that runs were queued.
    pub fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.bell.notify_all();
    }

    /// How many times it has rung (read before looking at the queue).
    pub fn rung(&self) -> u64 {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until it rings again after `seen` rings, or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .bell
            .wait_timeout_while(rung, timeout, |n| *n == seen)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// The role that reviews computations and outputs under the configuration.
pub fn reviewer_role(state: &AppState) -> Role {
    if state.config.job_reviewer == "platform" {
        Role::PlatformAdmin
    } else {
        Role::Regulator
    }
}

/// Whether `user` is a reviewer of computations and outputs.
pub fn is_reviewer(state: &AppState, user: &CurrentUser) -> bool {
    user.role == reviewer_role(state)
}

/// Whether `user` may watch every job (reviewer, regulator, platform admin).
pub fn sees_all(user: &CurrentUser) -> bool {
    matches!(user.role, Role::Regulator | Role::PlatformAdmin)
}

/// The scheduler's work: cancels or withholds the runs whose agreement has ended.
pub fn tick(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    ops::stop_ended_agreements(&mut conn, state.clock.now())?;
    Ok(())
}

/// Mounts the job routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    cfg.route("/jobs", web::get().to(h::list))
        .route("/jobs", web::post().to(h::submit_form))
        .route("/jobs/new", web::get().to(h::new_form))
        .route("/jobs/{id}", web::get().to(h::show))
        .route("/jobs/{id}/events", web::get().to(events::events))
        .service(crate::detail::action(
            "/jobs/{id}/cancel",
            h::cancel,
            h::show,
        ))
        .service(crate::detail::action(
            "/jobs/{id}/release",
            h::release,
            h::show,
        ))
        .service(crate::detail::action(
            "/jobs/{id}/withhold",
            h::withhold,
            h::show,
        ))
        .service(crate::detail::action(
            "/jobs/{id}/usage",
            h::file_usage,
            h::show,
        ))
        .route("/jobs/{id}/output.csv", web::get().to(h::download_csv))
        .route("/jobs/{id}/output.json", web::get().to(h::download_json))
        .route("/admin/jobs", web::get().to(h::admin_queue))
        .route("/admin/computations/{id}", web::get().to(h::computation))
        .service(crate::detail::action(
            "/admin/computations/{id}/approve",
            h::approve,
            h::computation,
        ))
        .service(crate::detail::action(
            "/admin/computations/{id}/reject",
            h::reject,
            h::computation,
        ))
        .service(crate::detail::action(
            "/admin/computations/{id}/revoke",
            h::revoke,
            h::computation,
        ))
        .route("/admin/trainings", web::get().to(h::trainings))
        .route("/admin/trainings", web::post().to(h::record_training))
        .route("/api/v1/jobs", web::post().to(h::api_submit))
        .route("/api/v1/jobs", web::get().to(h::api_list))
        .route("/api/v1/jobs/{id}", web::get().to(h::api_status))
        .route("/api/v1/jobs/{id}/output", web::get().to(h::download_json))
        .route(
            "/api/v1/jobs/{id}/output.csv",
            web::get().to(h::download_csv),
        );
}
