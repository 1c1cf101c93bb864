//! `GET /jobs/{id}/events`: a run's progress as server-sent events, for the job page's script.
//!
//! The stream starts with the run's state and, for platform staff only, the rows processed
//! (the operator gets the state alone: how far a run has read, and when, is steered by the
//! module), sends them again whenever they change (the database is read every
//! [`POLL_EVERY`]), and ends with a `state` event as soon as the run leaves the state it had
//! when the stream opened (the page then reloads). A comment line every [`HEARTBEAT_EVERY`] of
//! silence notices a browser that went away; a stream ends after [`MAX_STREAM`] (the browser
//! reconnects by itself), and at most [`MAX_STREAMS`] are open in a process at once (beyond
//! that the request gets 503 and the page falls back to reloading itself, as it does without
//! JavaScript). Who may not see the run gets 404, as for its page.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use diesel::prelude::*;
use futures_util::StreamExt as _;
use serde::Serialize;

use super::handlers::load_visible;
use super::machine::RunState;
use super::model::Job;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::errors::AppError;
use crate::schema::jobs;
use crate::web::db;
use crate::workflow::Machine as _;

/// How often an open stream reads the run.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// Longest silence before a keep-alive comment.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// How long one stream lasts before the browser is asked to reconnect.
pub const MAX_STREAM: Duration = Duration::from_secs(300);
/// Most streams open at once in this process.
pub const MAX_STREAMS: usize = 256;
/// How long the browser waits before reconnecting, in milliseconds (the `retry` field).
const RETRY_MS: u64 = 2000;

static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_STREAMS`] places, given back when the stream is dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Self> {
        OPEN_STREAMS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What an event carries: the state, and for platform staff the rows read (how far a run has
/// read, and when, is steered by the module: the operator is sent the state alone, ABI v2,
/// guarantee 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The state code.
    pub state: String,
    /// Rows processed (platform staff only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_done: Option<i64>,
    /// Rows to process (platform staff only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_total: Option<i64>,
    /// Percent done, 0–100 (platform staff only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
}

impl Progress {
    fn new(state: String, rows_done: i64, rows_total: i64, staff: bool) -> Self {
        Self {
            state,
            rows_done: staff.then_some(rows_done),
            rows_total: staff.then_some(rows_total),
            percent: staff.then(|| super::model::percent(rows_done, rows_total)),
        }
    }

    fn of(j: &Job, staff: bool) -> Self {
        Self::new(j.state.to_string(), j.rows_done, j.rows_total, staff)
    }

    fn read(conn: &mut crate::db::DbConnection, id: i64, staff: bool) -> Result<Self, AppError> {
        let (state, rows_done, rows_total): (String, i64, i64) = jobs::table
            .find(id)
            .select((jobs::state, jobs::rows_done, jobs::rows_total))
            .first(conn)?;
        Ok(Self::new(state, rows_done, rows_total, staff))
    }

    fn event(&self, name: &str) -> Bytes {
        let data = serde_json::to_string(self).unwrap_or_default();
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    }
}

/// An open stream.
struct Watch {
    state: web::Data<AppState>,
    id: i64,
    staff: bool,
    opened_in: String,
    last: Progress,
    until: Instant,
    done: bool,
    _slot: Slot,
}

impl Watch {
    /// The next chunk after the first: waits until the run changes, a heartbeat is due or
    /// the stream's time is up (`None`: end the stream).
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let quiet_since = Instant::now();
        loop {
            if Instant::now() >= self.until {
                return None;
            }
            actix_web::rt::time::sleep(POLL_EVERY).await;
            let (id, staff) = (self.id, self.staff);
            let now = match db(&self.state, move |conn| Progress::read(conn, id, staff)).await {
                Ok(p) => p,
                Err(e) => {
                    if let AppError::Internal(e) = &e {
                        tracing::warn!(job = id, error = %e, "job event stream ended");
                    }
                    return None;
                }
            };
            let ended = RunState::parse(&now.state)
                .ok()
                .is_none_or(|s| s.is_final());
            if now.state != self.opened_in || ended {
                self.done = true;
                return Some(now.event("state"));
            }
            if now != self.last {
                self.last = now;
                return Some(self.last.event("progress"));
            }
            if quiet_since.elapsed() >= HEARTBEAT_EVERY {
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
        }
    }
}

/// `GET /jobs/{id}/events`.
pub async fn events(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let u = user.clone();
    let job = db(&state, move |conn| load_visible(conn, &u, id)).await?;
    let Some(slot) = Slot::take() else {
        return Err(AppError::http(
            StatusCode::SERVICE_UNAVAILABLE,
            "jobs.err.too_many_watchers",
        ));
    };
    let staff = super::sees_all(&user);
    let first = Progress::of(&job, staff);
    let ended = job.state.is_final();
    let mut opening = format!("retry: {RETRY_MS}\n\n").into_bytes();
    opening.extend_from_slice(&first.event(if ended { "state" } else { "progress" }));
    let watch = Watch {
        state,
        id,
        staff,
        opened_in: job.state.to_string(),
        last: first,
        until: Instant::now() + MAX_STREAM,
        done: ended,
        _slot: slot,
    };
    let rest = futures_util::stream::unfold(watch, |mut w| async move {
        w.next().await.map(|chunk| (chunk, w))
    });
    let body = futures_util::stream::once(async move { Bytes::from(opening) })
        .chain(rest)
        .map(Ok::<_, actix_web::Error>);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
