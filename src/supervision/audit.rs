//! The hash-chained audit log.
//!
//! Each entry stores the hash of the previous entry (`prev_hash`, 64 zeros for the first) and
//! its own `hash` = SHA-256 over a canonical serialization: the JSON array
//! `[prev_hash, at, actor_user_id, actor_name, org_id, action, object_type, object_id,
//! source_addr, details]` with `at` formatted `%Y-%m-%dT%H:%M:%S%.6f`. Editing, inserting or
//! deleting an entry breaks the chain at that entry; [`verify`] finds the first break.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::DbConnection;
use crate::schema::audit_log;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who made a change.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user, if a user did it.
    pub user_id: Option<i64>,
    /// The user name (or `system`, or the name typed at a failed login).
    pub name: String,
    /// The user's organisation.
    pub org_id: Option<i64>,
    /// The source address of the request (`local` for the command line).
    pub addr: String,
}

impl Actor {
    /// The program itself (command line, demo seeding, scheduled work).
    pub fn system() -> Self {
        Actor {
            user_id: None,
            name: "system".into(),
            org_id: None,
            addr: "local".into(),
        }
    }

    /// An anonymous visitor (registration, failed login) from `addr`, named `name`.
    pub fn anonymous(name: &str, addr: &str) -> Self {
        Actor {
            user_id: None,
            name: name.chars().take(64).collect(),
            org_id: None,
            addr: addr.to_owned(),
        }
    }
}

/// A stored audit entry.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct Entry {
    /// Position in the chain.
    pub id: i64,
    /// When (UTC).
    pub at: NaiveDateTime,
    /// Acting user.
    pub actor_user_id: Option<i64>,
    /// Acting user's name.
    pub actor_name: String,
    /// Acting user's organisation.
    pub org_id: Option<i64>,
    /// What happened, e.g. `user.login`, `dataset.create`.
    pub action: String,
    /// Kind of object, e.g. `user`, `organisation`, `dataset`.
    pub object_type: String,
    /// The object's id.
    pub object_id: String,
    /// Source address.
    pub source_addr: String,
    /// JSON details.
    pub details: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewEntry<'a> {
    at: NaiveDateTime,
    actor_user_id: Option<i64>,
    actor_name: &'a str,
    org_id: Option<i64>,
    action: &'a str,
    object_type: &'a str,
    object_id: &'a str,
    source_addr: &'a str,
    details: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

/// The hash of an entry from its fields.
#[allow(clippy::too_many_arguments)]
pub fn compute_hash(
    prev_hash: &str,
    at: NaiveDateTime,
    actor_user_id: Option<i64>,
    actor_name: &str,
    org_id: Option<i64>,
    action: &str,
    object_type: &str,
    object_id: &str,
    source_addr: &str,
    details: &str,
) -> String {
    let canonical = serde_json::json!([
        prev_hash,
        at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        actor_user_id,
        actor_name,
        org_id,
        action,
        object_type,
        object_id,
        source_addr,
        details,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

fn entry_hash(e: &Entry) -> String {
    compute_hash(
        &e.prev_hash,
        e.at,
        e.actor_user_id,
        &e.actor_name,
        e.org_id,
        &e.action,
        &e.object_type,
        &e.object_id,
        &e.source_addr,
        &e.details,
    )
}

/// Appends an entry to the audit log; returns its id.
///
/// Call it with the connection of the transaction that makes the change, so the change and its
/// record commit together, and open that transaction with [`crate::db::write_transaction`]:
///
/// ```text
/// crate::db::write_transaction(conn, |conn| {
///     let id = insert_dataset(conn, &new)?;
///     audit::record(conn, &user.actor(), "dataset.create", "dataset", &id.to_string(),
///                   serde_json::json!({ "title": new.title_zh }))?;
///     Ok::<_, AppError>(id)
/// })
/// ```
///
/// `action` is `<object>.<verb>` in lower case (`user.login`, `dataset.version_upload`);
/// `details` holds whatever helps a reader, never a secret or a raw identifier.
pub fn record(
    conn: &mut DbConnection,
    actor: &Actor,
    action: &str,
    object_type: &str,
    object_id: &str,
    details: serde_json::Value,
) -> QueryResult<i64> {
    crate::db::lock(conn, crate::db::Lock::Audit)?;
    let prev_hash: String = audit_log::table
        .order(audit_log::id.desc())
        .select(audit_log::hash)
        .first(conn)
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let at = crate::db::now();
    let details = details.to_string();
    let hash = compute_hash(
        &prev_hash,
        at,
        actor.user_id,
        &actor.name,
        actor.org_id,
        action,
        object_type,
        object_id,
        &actor.addr,
        &details,
    );
    diesel::insert_into(audit_log::table)
        .values(NewEntry {
            at,
            actor_user_id: actor.user_id,
            actor_name: &actor.name,
            org_id: actor.org_id,
            action,
            object_type,
            object_id,
            source_addr: &actor.addr,
            details: &details,
            prev_hash: &prev_hash,
            hash: &hash,
        })
        .returning(audit_log::id)
        .get_result(conn)
}

/// Where the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first entry that does not verify.
    pub id: i64,
    /// Why: `hash` (its content was changed) or `link` (the entry before it was changed,
    /// removed or inserted).
    pub reason: &'static str,
}

/// Checks the whole chain in id order; `Ok(number of entries)` or the first broken entry.
pub fn verify(conn: &mut DbConnection) -> QueryResult<Result<u64, Broken>> {
    let mut prev = GENESIS.to_owned();
    let mut last_id = i64::MIN;
    let mut count = 0u64;
    loop {
        let batch: Vec<Entry> = audit_log::table
            .filter(audit_log::id.gt(last_id))
            .order(audit_log::id.asc())
            .limit(1000)
            .select(Entry::as_select())
            .load(conn)?;
        if batch.is_empty() {
            return Ok(Ok(count));
        }
        for e in batch {
            if e.prev_hash != prev {
                return Ok(Err(Broken {
                    id: e.id,
                    reason: "link",
                }));
            }
            if entry_hash(&e) != e.hash {
                return Ok(Err(Broken {
                    id: e.id,
                    reason: "hash",
                }));
            }
            prev = e.hash;
            last_id = e.id;
            count += 1;
        }
    }
}
