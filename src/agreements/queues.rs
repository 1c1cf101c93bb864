//! The regulator's agreement queues (for the desk) and the expiry run of the scheduler.
//!
//! Deadlines the regulations leave open are product choices, in working days from the event:
//! sealing [`SEAL_WORKING_DAYS`] after the operator signs, deciding a termination request
//! [`REQUEST_WORKING_DAYS`] after it is filed, filing the disposal confirmation
//! [`DISPOSAL_WORKING_DAYS`] after the end. Expiring agreements are due on the last day of
//! their term; rectification orders on their own deadline.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::machine::{AgreementState, EndReason, RUNNING, RectificationState, RequestState};
use super::model::{self, Agreement, AgreementRow, EXPIRY_WARNING_DAYS};
use super::ops;
use crate::calendar::{Calendar, Deadline};
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::schema::{agreement_exits, agreements, rectifications, termination_requests};
use crate::supervision::audit::{self, Actor};
use crate::supervision::desk::{QueueItem, QueueSection};

/// Working days the regulator has to seal a signed agreement.
pub const SEAL_WORKING_DAYS: u32 = 10;
/// Working days the regulator has to decide a termination request.
pub const REQUEST_WORKING_DAYS: u32 = 10;
/// Working days the operator has to file its disposal confirmation after the end.
pub const DISPOSAL_WORKING_DAYS: u32 = 10;
/// Most items one queue lists.
const QUEUE_LIMIT: i64 = 500;
/// Most agreements one scheduler run handles (the rest follow on the next tick).
const TICK_LIMIT: i64 = 500;

fn day_of(t: NaiveDateTime) -> NaiveDate {
    (t + Duration::hours(8)).date()
}

fn item(a: &Agreement, state_key: &'static str, deadline: Option<Deadline>) -> QueueItem {
    QueueItem {
        label: format!("{} · {}", a.number, a.operator_name),
        href: format!("/agreements/{}", a.id),
        state_key,
        deadline,
    }
}

fn in_states(conn: &mut DbConnection, states: &[&str]) -> QueryResult<Vec<Agreement>> {
    let rows = agreements::table
        .filter(agreements::state.eq_any(states))
        .order(agreements::id)
        .limit(QUEUE_LIMIT)
        .select(AgreementRow::as_select())
        .load(conn)?;
    model::complete(conn, rows)
}

/// Pairs each item with its agreement (items whose agreement is missing are dropped).
fn with_agreements<T>(
    conn: &mut DbConnection,
    items: Vec<T>,
    agreement_of: impl Fn(&T) -> i64,
) -> QueryResult<Vec<(T, Agreement)>> {
    let ids: Vec<i64> = items.iter().map(&agreement_of).collect();
    let list = model::load_ids(conn, &ids)?;
    Ok(items
        .into_iter()
        .filter_map(|i| {
            let id = agreement_of(&i);
            list.iter().find(|a| a.id == id).cloned().map(|a| (i, a))
        })
        .collect())
}

/// The agreement queues on `today` (a [`crate::supervision::desk::QueueSource`]).
pub fn sections(
    conn: &mut DbConnection,
    cal: &Calendar,
    today: NaiveDate,
) -> QueryResult<Vec<QueueSection>> {
    let to_seal = in_states(conn, &[AgreementState::AwaitingSeal.as_str()])?
        .into_iter()
        .map(|a| {
            let due = a
                .operator_signed_at
                .map(|t| cal.add_working_days(day_of(t), SEAL_WORKING_DAYS))
                .map(|d| cal.deadline(today, d));
            item(&a, "agreements.state.awaiting_seal", due)
        })
        .collect();

    let rects: Vec<model::Rectification> = rectifications::table
        .filter(rectifications::state.eq_any([
            RectificationState::Ordered.as_str(),
            RectificationState::Answered.as_str(),
        ]))
        .limit(QUEUE_LIMIT)
        .select(model::Rectification::as_select())
        .load(conn)?;
    let rects = with_agreements(conn, rects, |r| r.agreement_id)?;
    let rect_items = rects
        .into_iter()
        .filter(|(_, a)| a.state.is_running())
        .map(|(r, a)| {
            let answered = r.state == RectificationState::Answered;
            let key = if answered {
                "agreements.rect_state.answered"
            } else {
                "agreements.rect_state.ordered"
            };
            item(&a, key, Some(cal.deadline(today, r.due_on)))
        })
        .collect();

    let horizon = today + Duration::days(EXPIRY_WARNING_DAYS);
    let expiring = in_states(conn, &RUNNING)?
        .into_iter()
        .filter(|a| a.ends_on.is_some_and(|e| e <= horizon))
        .map(|a| {
            let due = a.ends_on.map(|e| cal.deadline(today, e));
            item(&a, "agreements.state.in_force", due)
        })
        .collect();

    let reqs: Vec<model::TerminationRequest> = termination_requests::table
        .filter(termination_requests::state.eq(RequestState::Pending.as_str()))
        .limit(QUEUE_LIMIT)
        .select(model::TerminationRequest::as_select())
        .load(conn)?;
    let reqs = with_agreements(conn, reqs, |r| r.agreement_id)?;
    let req_items = reqs
        .into_iter()
        .filter(|(_, a)| a.state.is_running())
        .map(|(r, a)| {
            let due = cal.add_working_days(day_of(r.requested_at), REQUEST_WORKING_DAYS);
            item(
                &a,
                "agreements.req_state.pending",
                Some(cal.deadline(today, due)),
            )
        })
        .collect();

    let outstanding: Vec<i64> = agreement_exits::table
        .filter(agreement_exits::disposal_filed_at.is_null())
        .order(agreement_exits::agreement_id)
        .limit(QUEUE_LIMIT)
        .select(agreement_exits::agreement_id)
        .load(conn)?;
    let disposal = model::load_ids(conn, &outstanding)?
        .into_iter()
        .map(|a| {
            let due = a
                .ended_at
                .map(|t| cal.add_working_days(day_of(t), DISPOSAL_WORKING_DAYS))
                .map(|d| cal.deadline(today, d));
            item(&a, "agreements.disposal_outstanding", due)
        })
        .collect();

    Ok(vec![
        QueueSection {
            title_key: "agreements.queue.to_seal",
            items: to_seal,
        },
        QueueSection {
            title_key: "agreements.queue.rectifications",
            items: rect_items,
        },
        QueueSection {
            title_key: "agreements.queue.expiring",
            items: expiring,
        },
        QueueSection {
            title_key: "agreements.queue.requests",
            items: req_items,
        },
        QueueSection {
            title_key: "agreements.queue.disposal",
            items: disposal,
        },
    ])
}

/// Warns about and ends agreements at the end of their term (exit route (a)). One agreement
/// failing does not hold up the others; the first failure is returned (and logged by the
/// scheduler) and retried on the next tick.
pub fn expire(conn: &mut DbConnection, now: NaiveDateTime, today: NaiveDate) -> anyhow::Result<()> {
    let now = ops::stamp(now);
    let rows = agreements::table
        .filter(super::machine::state_running())
        .filter(agreements::ends_on.le(today + Duration::days(EXPIRY_WARNING_DAYS)))
        .filter(
            agreements::expiry_warned_at
                .is_null()
                .or(agreements::ends_on.lt(today)),
        )
        .order(agreements::id)
        .limit(TICK_LIMIT)
        .select(AgreementRow::as_select())
        .load(conn)?;
    let running = model::complete(conn, rows)?;
    let mut first_error = None;
    for a in running {
        let Some(ends_on) = a.ends_on else { continue };
        let done = db::write_transaction(conn, |conn| {
            if ends_on < today {
                ops::end(conn, &Actor::system(), &a, EndReason::Expired, "", now)
            } else if a.expiry_warned_at.is_none() {
                diesel::update(agreements::table.find(a.id))
                    .set(agreements::expiry_warned_at.eq(now))
                    .execute(conn)?;
                audit::record(
                    conn,
                    &Actor::system(),
                    "agreement.expiry_warning",
                    "agreement",
                    &a.id.to_string(),
                    serde_json::json!({ "ends_on": ends_on }),
                )?;
                let notice = crate::mail::Notice {
                    template: "agreements.mail.expiry_warning",
                    args: &[
                        ("number", a.number.clone()),
                        ("ends_on", ends_on.to_string()),
                    ],
                    object_type: "agreement",
                    object_id: a.id.to_string(),
                };
                crate::mail::to_org(conn, a.operator_org_id, &notice)?;
                crate::mail::to_org(conn, a.regulator_org_id, &notice)?;
                Ok(())
            } else {
                Ok::<_, AppError>(())
            }
        });
        if let Err(e) = done {
            first_error.get_or_insert_with(|| anyhow::anyhow!("agreement {}: {e}", a.id));
        }
    }
    first_error.map_or(Ok(()), Err)
}
