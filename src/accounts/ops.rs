//! The commands of accounts that change state: verify or disable an organisation, disable or
//! re-enable a user. Each is one transaction: the move on the workflow kernel (compare-and-set
//! on the status read), its consequences (sessions and tokens revoked, the mail), the audit
//! entry.

use diesel::prelude::*;

use super::machine::{OrgAction, OrgStatus, UserAction, UserStatus};
use crate::auth::{self, CurrentUser};
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::mail;
use crate::schema::{organisations, users};
use crate::workflow::{self, Entry, Move};

/// Verifies or disables organisation `id`; disabling revokes every session and token of its
/// users, verifying mails its users and contact address. Nobody disables their own
/// organisation.
pub fn change_org(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    action: OrgAction,
) -> Result<(), AppError> {
    if id == user.org_id && action == OrgAction::Disable {
        return Err(AppError::conflict("accounts.err_disable_own_org"));
    }
    db::write_transaction(conn, |conn| {
        let (from, name, code): (String, String, Option<String>) = organisations::table
            .find(id)
            .select((
                organisations::status,
                organisations::name,
                organisations::credit_code,
            ))
            .first(conn)
            .optional()?
            .ok_or_else(AppError::not_found)?;
        let from = OrgStatus::try_from(from).map_err(|e| AppError::Internal(e.into()))?;
        let to = workflow::Machine::decide(from, action)?;
        let revoked = if to == OrgStatus::Disabled {
            let ids: Vec<i64> = users::table
                .filter(users::org_id.eq(id))
                .select(users::id)
                .load(conn)?;
            auth::revoke_all_for_users(conn, &ids)?
        } else {
            0
        };
        if to == OrgStatus::Verified {
            mail::to_org(
                conn,
                id,
                &mail::Notice {
                    template: "accounts.mail.org_verified",
                    args: &[("org", name), ("code", code.unwrap_or_default())],
                    object_type: "organisation",
                    object_id: id.to_string(),
                },
            )?;
        }
        let verb = match action {
            OrgAction::Verify => "organisation.verify",
            OrgAction::Disable => "organisation.disable",
        };
        let actor = user.actor();
        let mv = Move {
            from,
            action,
            audit: Some(Entry {
                actor: &actor,
                action: verb.to_owned(),
                object_type: "organisation",
                object_id: id.to_string(),
                details: serde_json::json!({
                    "from": from.as_str(), "to": to.as_str(), "sessions_revoked": revoked
                }),
            }),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                organisations::table
                    .find(id)
                    .filter(organisations::status.eq(from)),
            )
            .set(organisations::status.eq(to))
            .execute(conn)
        })?;
        Ok(())
    })
}

/// Disables (revoking the user's sessions and tokens) or re-enables user `id`. Nobody
/// disables themselves.
pub fn change_user(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    action: UserAction,
) -> Result<(), AppError> {
    if id == user.id {
        return Err(AppError::conflict("accounts.err_disable_self"));
    }
    db::write_transaction(conn, |conn| {
        let from: String = users::table
            .find(id)
            .select(users::status)
            .first(conn)
            .optional()?
            .ok_or_else(AppError::not_found)?;
        let from = UserStatus::try_from(from).map_err(|e| AppError::Internal(e.into()))?;
        let to = workflow::Machine::decide(from, action)?;
        let revoked = if to == UserStatus::Disabled {
            auth::revoke_all_for_users(conn, &[id])?
        } else {
            0
        };
        let verb = match action {
            UserAction::Enable => "user.enable",
            UserAction::Disable => "user.disable",
        };
        let actor = user.actor();
        let mv = Move {
            from,
            action,
            audit: Some(Entry {
                actor: &actor,
                action: verb.to_owned(),
                object_type: "user",
                object_id: id.to_string(),
                details: serde_json::json!({
                    "from": from.as_str(), "to": to.as_str(), "sessions_revoked": revoked
                }),
            }),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(users::table.find(id).filter(users::status.eq(from)))
                .set(users::status.eq(to))
                .execute(conn)
        })?;
        Ok(())
    })
}
