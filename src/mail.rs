//! Email notifications: the outbox.
//!
//! A workflow step calls one of [`to_user`], [`to_org`], [`to_role`] or [`to_addr`] inside its
//! own transaction. That renders the message (both languages in one mail: Chinese first, then
//! English) from the message catalogs and writes it to `mail_outbox`; delivery happens later,
//! outside the transaction, so a mail server that is down never blocks or rolls back the step.
//!
//! A template is a message-key prefix `T`: the catalogs hold `T.subject` and `T.body`, with
//! `{name}` placeholders filled from the notice's arguments.
//!
//! [`delivery`] sends the queue (SMTP when `smtp_url` is configured, else `.eml` files under
//! `<data_dir>/outbox/`) with retries; [`pages`] is the administrators' outbox.

pub mod delivery;
pub mod pages;

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
    cfg.route("/admin/outbox", web::get().to(pages::outbox))
        .route("/admin/outbox/{id}", web::get().to(pages::message))
        .route("/admin/outbox/{id}/retry", web::post().to(pages::retry));
}

/// The state of an outbox row.
pub mod state {
    /// Waiting for (another) delivery attempt.
    pub const PENDING: &str = "pending";
    /// Delivered (or written to the file outbox).
    pub const SENT: &str = "sent";
    /// Given up after the last retry.
    pub const FAILED: &str = "failed";
}

#[derive(Insertable)]
#[diesel(table_name = mail_outbox)]
struct NewMail<'a> {
    to_addr: &'a str,
    to_user_id: Option<i64>,
    lang: &'a str,
    template: &'a str,
    subject: String,
    body: String,
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
    let members: Vec<(i64, String)> = users::table
        .filter(users::org_id.eq(org_id))
        .filter(users::status.eq("active"))
        .select((users::id, users::email))
        .order(users::id)
        .load(conn)?;
    for (id, addr) in &members {
        queue(conn, addr, Some(*id), notice)?;
    }
    let org_addr: Option<String> = organisations::table
        .filter(organisations::id.eq(org_id))
        .select(organisations::email)
        .first(conn)
        .optional()?;
    if let Some(addr) = org_addr
        && !members.iter().any(|(_, a)| a.eq_ignore_ascii_case(&addr))
    {
        queue(conn, &addr, None, notice)?;
    }
    Ok(())
}

/// Queues the notice for every active user with the role (e.g. all regulator staff).
pub fn to_role(conn: &mut DbConnection, role: Role, notice: &Notice<'_>) -> QueryResult<()> {
    let members: Vec<(i64, String)> = users::table
        .filter(users::role.eq(role.as_str()))
        .filter(users::status.eq("active"))
        .select((users::id, users::email))
        .order(users::id)
        .load(conn)?;
    for (id, addr) in &members {
        queue(conn, addr, Some(*id), notice)?;
    }
    Ok(())
}

fn queue(
    conn: &mut DbConnection,
    addr: &str,
    user_id: Option<i64>,
    notice: &Notice<'_>,
) -> QueryResult<()> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Ok(());
    }
    let (subject, body) = render(notice);
    let now = chrono::Utc::now().naive_utc();
    diesel::insert_into(mail_outbox::table)
        .values(NewMail {
            to_addr: addr,
            to_user_id: user_id,
            lang: "zh+en",
            template: notice.template,
            subject,
            body,
            object_type: notice.object_type,
            object_id: &notice.object_id,
            state: state::PENDING,
            attempts: 0,
            last_error: "",
            next_attempt_at: now,
            created_at: now,
        })
        .execute(conn)?;
    Ok(())
}
