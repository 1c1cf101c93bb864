//! The commands of the outbox: every change of a message's state, each committed with
//! [`workflow::commit`] (compare-and-set on the state, and the attempt count, it was read in)
//! in one [`db::write_transaction`]; and the claim a delivery worker takes on a due message.
//!
//! A delivery outcome ([`record_outcome`]) has no audit entry: the row itself keeps the
//! attempts, the last error and the time it was sent, and the outbox pages show them. An
//! administrator's [`retry`] is audited.

use actix_web::http::StatusCode;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::machine::{MailAction, MailState};
use crate::auth::CurrentUser;
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::schema::mail_outbox;
use crate::workflow::{self, Entry, Move};

/// The wait after the n-th failed attempt (1 min, 5 min, 30 min, 2 h).
pub const BACKOFF_SECS: [i64; 4] = [60, 5 * 60, 30 * 60, 2 * 3600];

/// How long a claimed message is reserved for the worker sending it.
pub const LEASE_SECS: i64 = 10 * 60;

/// Longest error text kept on a row.
const MAX_ERROR_CHARS: usize = 1000;

/// The wait before the next attempt after `attempts` failed ones.
pub fn backoff(attempts: i32) -> chrono::Duration {
    let i = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
    chrono::Duration::seconds(BACKOFF_SECS[i.min(BACKOFF_SECS.len() - 1)])
}

/// Claims pending message `id`, read with `attempts` attempts made, for one delivery attempt:
/// one conditional `UPDATE` that counts the attempt and moves `next_attempt_at` a lease
/// ([`LEASE_SECS`]) ahead, so of two workers that saw the same due row exactly one gets it,
/// and a worker that dies while sending leaves a row that is due again once the lease is
/// over. Whether this worker got it. (No state changes: the row stays `pending`.)
pub fn claim(
    conn: &mut DbConnection,
    id: i64,
    attempts: i32,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        mail_outbox::table
            .filter(mail_outbox::id.eq(id))
            .filter(mail_outbox::state.eq(MailState::Pending.as_str()))
            .filter(mail_outbox::attempts.eq(attempts))
            .filter(mail_outbox::next_attempt_at.le(now)),
    )
    .set((
        mail_outbox::attempts.eq(attempts + 1),
        mail_outbox::next_attempt_at.eq(now + chrono::Duration::seconds(LEASE_SECS)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Records the outcome of the delivery attempt number `attempts` of message `id` (claimed
/// with [`claim`]): `Ok(path)` delivered (`path` the `.eml` file written, if any), `Err`
/// the error; a failure leaves it pending with the next attempt backed off until the last
/// attempt makes it failed. The new state, or `None` when the claim was no longer this
/// worker's (a stale worker's outcome changes nothing).
pub fn record_outcome(
    conn: &mut DbConnection,
    id: i64,
    attempts: i32,
    outcome: Result<Option<String>, String>,
    now: NaiveDateTime,
) -> Result<Option<MailState>, AppError> {
    let action = match outcome {
        Ok(_) => MailAction::Delivered,
        Err(_) => MailAction::AttemptFailed { attempts },
    };
    let mv = Move {
        from: MailState::Pending,
        action,
        audit: None,
    };
    let moved = db::write_transaction(conn, |conn| {
        workflow::commit(conn, mv, |conn, from, to| {
            let mine = mail_outbox::table
                .filter(mail_outbox::id.eq(id))
                .filter(mail_outbox::state.eq(from))
                .filter(mail_outbox::attempts.eq(attempts));
            match &outcome {
                Ok(path) => diesel::update(mine)
                    .set((
                        mail_outbox::state.eq(to),
                        mail_outbox::sent_at.eq(Some(now)),
                        mail_outbox::eml_path.eq(path),
                        mail_outbox::last_error.eq(""),
                    ))
                    .execute(conn),
                Err(error) => {
                    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
                    tracing::warn!(id, attempts, %error, "mail delivery failed");
                    diesel::update(mine)
                        .set((
                            mail_outbox::state.eq(to),
                            mail_outbox::next_attempt_at.eq(now + backoff(attempts)),
                            mail_outbox::last_error.eq(error),
                        ))
                        .execute(conn)
                }
            }
        })
    });
    match moved {
        Ok(to) => Ok(Some(to)),
        Err(AppError::Http { status, .. }) if status == StatusCode::CONFLICT => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts failed message `id` back in the queue, due at `now` (an administrator; audited
/// `mail.retry`).
pub fn retry(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    db::write_transaction(conn, |conn| {
        let (from, to_addr, attempts): (String, String, i32) = mail_outbox::table
            .find(id)
            .select((
                mail_outbox::state,
                mail_outbox::to_addr,
                mail_outbox::attempts,
            ))
            .first(conn)
            .optional()?
            .ok_or_else(AppError::not_found)?;
        let from = MailState::try_from(from).map_err(|e| AppError::Internal(e.into()))?;
        let actor = user.actor();
        let mv = Move {
            from,
            action: MailAction::Retry,
            audit: Some(Entry {
                actor: &actor,
                action: "mail.retry".to_owned(),
                object_type: "mail",
                object_id: id.to_string(),
                details: serde_json::json!({
                    "to": to_addr, "attempts": attempts, "from": from.as_str()
                }),
            }),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                mail_outbox::table
                    .find(id)
                    .filter(mail_outbox::state.eq(from)),
            )
            .set((
                mail_outbox::state.eq(to),
                mail_outbox::next_attempt_at.eq(now),
            ))
            .execute(conn)
        })?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    use diesel::sqlite::SqliteConnection;

    use super::*;

    fn outbox() -> DbConnection {
        let mut conn = DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        crate::db::migrate(&mut conn).unwrap();
        let notice = crate::mail::Notice {
            template: "accounts.mail.org_verified",
            args: &[("org", "某公司".into()), ("code", "X".into())],
            object_type: "organisation",
            object_id: "1".into(),
        };
        crate::mail::to_addr(&mut conn, "a@example.com", &notice).unwrap();
        conn
    }

    #[test]
    fn a_due_message_is_claimed_once() {
        let mut conn = outbox();
        let now = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(1);
        let (id, attempts): (i64, i32) = mail_outbox::table
            .select((mail_outbox::id, mail_outbox::attempts))
            .first(&mut conn)
            .unwrap();
        // Two servers that both saw the row: only the first claim wins.
        assert!(claim(&mut conn, id, attempts, now).unwrap());
        assert!(!claim(&mut conn, id, attempts, now).unwrap());
        let (attempts, next): (i32, NaiveDateTime) = mail_outbox::table
            .select((mail_outbox::attempts, mail_outbox::next_attempt_at))
            .first(&mut conn)
            .unwrap();
        assert_eq!(attempts, 1);
        assert_eq!(next, now + chrono::Duration::seconds(LEASE_SECS), "leased");
        // Its outcome is recorded once; a stale worker's record changes nothing.
        assert_eq!(
            record_outcome(&mut conn, id, 1, Ok(None), now).unwrap(),
            Some(MailState::Sent)
        );
        assert_eq!(
            record_outcome(&mut conn, id, 1, Err("late".into()), now).unwrap(),
            None
        );
        let (state, error): (String, String) = mail_outbox::table
            .select((mail_outbox::state, mail_outbox::last_error))
            .first(&mut conn)
            .unwrap();
        assert_eq!((state.as_str(), error.as_str()), ("sent", ""));
    }

    #[test]
    fn a_stored_unknown_state_is_an_error_when_the_row_is_loaded() {
        let mut conn = outbox();
        let row = |conn: &mut DbConnection| {
            mail_outbox::table
                .select(super::super::handlers::OutboxRow::as_select())
                .first(conn)
        };
        assert_eq!(row(&mut conn).unwrap().state, MailState::Pending);
        conn.batch_execute("UPDATE mail_outbox SET state = 'sending'")
            .unwrap();
        let got = row(&mut conn);
        assert!(got.is_err(), "read as {got:?}");
        assert!(format!("{:?}", got.unwrap_err()).contains("sending"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), chrono::Duration::minutes(1));
        assert_eq!(backoff(2), chrono::Duration::minutes(5));
        assert_eq!(backoff(3), chrono::Duration::minutes(30));
        assert_eq!(backoff(4), chrono::Duration::hours(2));
        assert_eq!(backoff(40), chrono::Duration::hours(2));
    }
}
