//! The in-server scheduler: one background thread that periodically runs each domain's timed
//! work (notice periods ending, deadlines passing, agreements expiring, mail delivery, old
//! failed logins).
//!
//! Each domain exposes a function taking the [`AppState`]; [`tick`] calls them in order and
//! logs, but never propagates, a failure of one so the others still run. Tests call [`tick`]
//! directly after moving the [`crate::calendar::Clock`].

use std::time::Duration;

use crate::AppState;

/// One domain's timed work: its name (for logs) and the function doing it.
type Job = (&'static str, fn(&AppState) -> anyhow::Result<()>);

/// The timed work of every domain, run in this order on each tick.
const JOBS: &[Job] = &[
    (
        "sessions.purge",
        crate::accounts::handlers::session::purge_expired,
    ),
    ("login_failures.purge", crate::auth::throttle::purge),
    ("idempotency_keys.purge", crate::idempotency::purge),
    ("admission", crate::admission::tick),
    ("agreements", crate::agreements::tick),
    ("jobs", crate::jobs::tick),
    // Last, so mail queued by the work above goes out in the same tick.
    ("mail", crate::mail::delivery::scheduled),
];

/// Runs every domain's timed work once.
pub fn tick(state: &AppState) {
    for (name, job) in JOBS {
        if let Err(e) = job(state) {
            tracing::warn!(job = name, error = %e, "scheduled work failed; retried next tick");
        }
    }
}

/// Starts the scheduler thread, ticking every `every`.
pub fn spawn(
    state: actix_web::web::Data<AppState>,
    every: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("dataop-scheduler".into())
        .spawn(move || {
            loop {
                tick(&state);
                std::thread::sleep(every);
            }
        })
        .expect("spawn the scheduler thread")
}
