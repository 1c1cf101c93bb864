//! Idempotent requests: a client that sends an `Idempotency-Key` header with a POST and loses
//! the connection before it reads the answer sends the same request again with the same key,
//! and gets the first answer instead of a second piece of work.
//!
//! * A key is 1 to [`MAX_KEY_LEN`] visible ASCII characters (a random UUID is a good one),
//!   chosen by the client, and belongs to a scope the server chooses (an organisation:
//!   [`org_scope`]), so nobody else's key can collide with it or reveal it.
//! * The request's hash ([`request_hash`]) covers the operation and what the request means
//!   (its fields, not the bytes of its encoding): the same key on a different request is
//!   refused with a 422 naming the conflict.
//! * The first answer is recorded by [`record`] in the transaction that does the work, under
//!   a unique `(scope, key)`: of two concurrent requests with one key, the second's transaction
//!   fails on the constraint and is rolled back (PostgreSQL makes it wait for the first to
//!   commit), and it answers what the first recorded ([`prior`]).
//! * Only answers of work done are recorded: a refused request changed nothing and is checked
//!   again when it is retried.
//! * A key lives [`TTL`] (24 hours); after that it may be used again, and the scheduler deletes
//!   it ([`purge`]).
//!
//! Any handler that creates something on a POST uses it the same way: read the key
//! ([`Key::from_request`]), answer [`prior`] if there is one, else do the work and [`record`]
//! in one transaction, and on failure look at [`prior`] again.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::schema::idempotency_keys;

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// The header set on an answer that repeats a recorded one.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a key is kept.
pub const TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A client's key, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The request's key, if it sent one; 400 when it is not 1 to [`MAX_KEY_LEN`] visible
    /// ASCII characters.
    pub fn from_request(req: &HttpRequest) -> Result<Option<Key>, AppError> {
        let Some(value) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !bytes.iter().all(u8::is_ascii_graphic)
        {
            return Err(
                AppError::bad_request("common.error_idempotency_key").arg("max", MAX_KEY_LEN)
            );
        }
        Ok(Some(Key(String::from_utf8_lossy(bytes).into_owned())))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The scope of an organisation's keys.
pub fn org_scope(org_id: i64) -> String {
    format!("org:{org_id}")
}

/// The hash of a request: the operation (e.g. `POST /api/v1/jobs`) and each of its parts in a
/// fixed order (each prefixed by its length, so parts never run into each other).
pub fn request_hash(operation: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in std::iter::once(operation.as_bytes()).chain(parts.iter().copied()) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// A key with its request, as one request claims it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The scope ([`org_scope`]).
    pub scope: String,
    /// The key.
    pub key: Key,
    /// The request's [`request_hash`].
    pub request_hash: String,
}

/// An answer recorded under a key.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its HTTP status.
    pub status: u16,
    /// Its JSON body.
    pub body: serde_json::Value,
}

impl Recorded {
    /// The recorded answer again, marked [`REPLAYED_HEADER`].
    pub fn replay(&self) -> HttpResponse {
        HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK))
            .insert_header((REPLAYED_HEADER, "true"))
            .json(&self.body)
    }
}

/// What a key already holds.
#[derive(Debug, Clone)]
pub enum Prior {
    /// Nothing (or an expired key).
    None,
    /// The answer to the same request.
    Same(Recorded),
    /// The key was used for another request: 422.
    Different,
}

/// What the claimed key holds at `now`.
pub fn prior(conn: &mut DbConnection, claim: &Claim, now: NaiveDateTime) -> QueryResult<Prior> {
    let row: Option<(String, i32, String)> = idempotency_keys::table
        .filter(idempotency_keys::scope.eq(&claim.scope))
        .filter(idempotency_keys::key.eq(claim.key.as_str()))
        .filter(idempotency_keys::created_at.gt(now - TTL))
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::status,
            idempotency_keys::response,
        ))
        .first(conn)
        .optional()?;
    Ok(match row {
        None => Prior::None,
        Some((hash, _, _)) if hash != claim.request_hash => Prior::Different,
        Some((_, status, response)) => Prior::Same(Recorded {
            status: u16::try_from(status).unwrap_or(200),
            body: serde_json::from_str(&response).unwrap_or(serde_json::Value::Null),
        }),
    })
}

/// Records `answer` under the claimed key, in the caller's transaction (an expired row of the
/// same key is replaced). Fails with a unique violation when another request recorded the key
/// first: the caller's transaction must then be rolled back.
pub fn record(
    conn: &mut DbConnection,
    claim: &Claim,
    answer: &Recorded,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::scope.eq(&claim.scope))
            .filter(idempotency_keys::key.eq(claim.key.as_str()))
            .filter(idempotency_keys::created_at.le(now - TTL)),
    )
    .execute(conn)?;
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::scope.eq(&claim.scope),
            idempotency_keys::key.eq(claim.key.as_str()),
            idempotency_keys::request_hash.eq(&claim.request_hash),
            idempotency_keys::status.eq(i32::from(answer.status)),
            idempotency_keys::response.eq(answer.body.to_string()),
            idempotency_keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The answer to a request whose key was used for another request.
pub fn reused() -> AppError {
    AppError::invalid("common.error_idempotency_reused").arg("header", HEADER)
}

/// Scheduled: deletes expired keys.
pub fn purge(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    let before = state.clock.now() - TTL;
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.le(before)))
        .execute(&mut conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_never_run_into_each_other() {
        assert_ne!(
            request_hash("op", &[b"ab", b"c"]),
            request_hash("op", &[b"a", b"bc"])
        );
        assert_ne!(request_hash("op", &[b"a"]), request_hash("other", &[b"a"]));
        assert_eq!(request_hash("op", &[b"a"]), request_hash("op", &[b"a"]));
    }
}
