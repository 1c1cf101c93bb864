//! Email notifications: the outbox.
//!
//! A workflow step calls one of [`to_user`], [`to_org`], [`to_orgs_with_role`] or [`to_addr`] inside its
//! own transaction. That renders the message (both languages in one mail: Chinese first, then
//! English) from the message catalogs and writes it to `mail_outbox`; delivery happens later,
//! outside the transaction, so a mail server that is down never blocks or rolls back the step.
//!
//! A template is a message-key prefix `T`: the catalogs hold `T.subject` and `T.body`, with
//! `{name}` placeholders filled from the notice's arguments.
//!
//! The files, named as in every domain:
//! * [`machine`]: a message's states (`pending`, `sent`, `failed`), actions and `decide` on
//!   the workflow kernel.
//! * [`ops`]: the commands, every state change of a message (a delivery's outcome, an
//!   administrator's retry), and the delivery worker's claim.
//! * [`delivery`]: sending the queue (SMTP when `smtp_url` is configured, else `.eml` files
//!   under `<data_dir>/outbox/`) with retries, by the prompt worker and the scheduler.
//! * [`handlers`]: the administrators' outbox pages (the rows they read are declared there).
//! * This file: queueing a notice, the one thing other domains call.

pub mod delivery;
pub mod handlers;
pub mod machine;
pub mod ops;

use actix_web::web;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::auth::Role;
use crate::db::DbConnection;
use crate::i18n::{Lang, t_args};
use crate::schema::{mail_outbox, organisations, users};

/// A message to send: which template, its arguments, and the object it is about.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// The message-key prefix (`admission.mail.received`): `.subject` and `.body` are rendered.
    pub template: &'a str,
    /// Values for the `{name}` placeholders.
    pub args: &'a [(&'a str, String)],
    /// The kind of object the message is about (`application`, `agreement`, ...).
    pub object_type: &'a str,
    /// Its id.
    pub object_id: String,
}

/// Mounts the outbox pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/outbox", web::get().to(handlers::outbox))
        .route("/admin/outbox/{id}", web::get().to(handlers::message))
        .route("/admin/outbox/{id}/retry", web::post().to(handlers::retry));
}

#[derive(Insertable)]
#[diesel(table_name = mail_outbox)]
struct NewMail<'a> {
    to_addr: &'a str,
    to_user_id: Option<i64>,
    lang: &'a str,
    template: &'a str,
    subject: &'a str,
    body: &'a str,
    object_type: &'a str,
    object_id: &'a str,
    state: &'a str,
    attempts: i32,
    last_error: &'a str,
    next_attempt_at: NaiveDateTime,
    created_at: NaiveDateTime,
}

/// The subject and body of a notice, both languages.
pub fn render(notice: &Notice<'_>) -> (String, String) {
    let part =
        |lang: Lang, part: &str| t_args(lang, &format!("{}.{part}", notice.template), notice.args);
    let subject = format!(
        "{} / {}",
        part(Lang::Zh, "subject"),
        part(Lang::En, "subject")
    );
    let body = format!(
        "{}\n\n----------------------------------------\n\n{}\n",
        part(Lang::Zh, "body").trim_end(),
        part(Lang::En, "body").trim_end()
    );
    (subject, body)
}

/// Queues the notice for one address (an objector's contact, an organisation's mailbox).
/// Nothing is queued for an empty address.
pub fn to_addr(conn: &mut DbConnection, addr: &str, notice: &Notice<'_>) -> QueryResult<()> {
    queue(conn, addr, None, notice)
}

/// Queues the notice for one user (nothing if the user has no email or is disabled).
pub fn to_user(conn: &mut DbConnection, user_id: i64, notice: &Notice<'_>) -> QueryResult<()> {
    let email: Option<String> = users::table
        .filter(users::id.eq(user_id))
        .filter(users::status.eq("active"))
        .select(users::email)
        .first(conn)
        .optional()?;
    match email {
        Some(addr) => queue(conn, &addr, Some(user_id), notice),
        None => Ok(()),
    }
}

/// Queues the notice for every active user of an organisation and, when it is not one of
/// theirs, the organisation's own contact address.
pub fn to_org(conn: &mut DbConnection, org_id: i64, notice: &Notice<'_>) -> QueryResult<()> {
    let rows = members_and_mailboxes()
        .filter(organisations::id.eq(org_id))
        .order((organisations::id, users::id))
        .load(conn)?;
    queue_all(conn, &recipients(rows), notice)
}

/// Queues the notice, as [`to_org`] does, for every organisation that has an active user with
/// the role (e.g. the regulator's staff and mailbox).
pub fn to_orgs_with_role(
    conn: &mut DbConnection,
    role: Role,
    notice: &Notice<'_>,
) -> QueryResult<()> {
    let holders = diesel::alias!(users as role_holders);
    let with_role = holders
        .filter(holders.field(users::role).eq(role.as_str()))
        .filter(holders.field(users::status).eq("active"))
        .select(holders.field(users::org_id));
    let rows = members_and_mailboxes()
        .filter(organisations::id.eq_any(with_role))
        .order((organisations::id, users::id))
        .load(conn)?;
    queue_all(conn, &recipients(rows), notice)
}

/// One row per active member of an organisation (one row with no member when it has none):
/// the organisation's id and mailbox, the member's id and address.
type MemberRow = (i64, String, Option<i64>, Option<String>);

#[diesel::dsl::auto_type]
fn members_and_mailboxes() -> _ {
    let active_member: diesel::dsl::And<
        diesel::dsl::Eq<users::org_id, organisations::id>,
        diesel::dsl::Eq<users::status, &'static str>,
    > = users::org_id
        .eq(organisations::id)
        .and(users::status.eq("active"));
    organisations::table
        .left_join(users::table.on(active_member))
        .select((
            organisations::id,
            organisations::email,
            users::id.nullable(),
            users::email.nullable(),
        ))
}

/// The addresses of the rows (in order: each organisation's members, then its mailbox when no
/// member uses the same address), with the user each belongs to.
fn recipients(rows: Vec<MemberRow>) -> Vec<(String, Option<i64>)> {
    let mut out = Vec::new();
    for org in rows.chunk_by(|a, b| a.0 == b.0) {
        let mailbox = &org[0].1;
        let members: Vec<(String, Option<i64>)> = org
            .iter()
            .filter_map(|(_, _, id, addr)| Some((addr.clone()?, *id)))
            .collect();
        let shared = members
            .iter()
            .any(|(a, _)| a.trim().eq_ignore_ascii_case(mailbox.trim()));
        out.extend(members);
        if !shared {
            out.push((mailbox.clone(), None));
        }
    }
    out
}

fn queue(
    conn: &mut DbConnection,
    addr: &str,
    user_id: Option<i64>,
    notice: &Notice<'_>,
) -> QueryResult<()> {
    queue_all(conn, &[(addr.to_owned(), user_id)], notice)
}

/// Renders the notice once and queues it for every non-empty address.
///
/// (One insert per address: the derived multi-backend connection has no batch insert.)
fn queue_all(
    conn: &mut DbConnection,
    to: &[(String, Option<i64>)],
    notice: &Notice<'_>,
) -> QueryResult<()> {
    let (subject, body) = render(notice);
    let now = chrono::Utc::now().naive_utc();
    for (addr, user_id) in to {
        let addr = addr.trim();
        if addr.is_empty() {
            continue;
        }
        diesel::insert_into(mail_outbox::table)
            .values(NewMail {
                to_addr: addr,
                to_user_id: *user_id,
                lang: "zh+en",
                template: notice.template,
                subject: &subject,
                body: &body,
                object_type: notice.object_type,
                object_id: &notice.object_id,
                state: machine::MailState::Pending.as_str(),
                attempts: 0,
                last_error: "",
                next_attempt_at: now,
                created_at: now,
            })
            .execute(conn)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(org: i64, mailbox: &str, member: Option<(i64, &str)>) -> MemberRow {
        (
            org,
            mailbox.to_owned(),
            member.map(|m| m.0),
            member.map(|m| m.1.to_owned()),
        )
    }

    #[test]
    fn each_organisation_gets_its_members_then_its_mailbox_unless_a_member_uses_it() {
        let rows = vec![
            row(1, "office@a.cn", Some((10, "li@a.cn"))),
            row(1, "office@a.cn", Some((11, "wang@a.cn"))),
            row(2, "Desk@B.cn", Some((20, "desk@b.cn"))),
            row(3, "only@c.cn", None),
        ];
        let got = recipients(rows);
        let want: Vec<(String, Option<i64>)> = vec![
            ("li@a.cn".into(), Some(10)),
            ("wang@a.cn".into(), Some(11)),
            ("office@a.cn".into(), None),
            ("desk@b.cn".into(), Some(20)),
            ("only@c.cn".into(), None),
        ];
        assert_eq!(got, want);
        assert!(recipients(Vec::new()).is_empty());
    }
}
