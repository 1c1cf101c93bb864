//! The outbox pages for the platform administrator and the regulator: every message with its
//! delivery state, one message's text, and a retry for a message that was given up.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Deserialize;

use super::machine::{MailAction, MailState};
use super::ops;
use crate::AppState;
use crate::accounts::handlers::session::CsrfForm;
use crate::auth::{CurrentUser, Role};
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::schema::mail_outbox;
use crate::web::{Page, redirect_with_flash, render};
use crate::workflow::Machine as _;

/// Messages per page.
pub const PAGE_SIZE: i64 = 50;

/// Who may read the outbox.
pub const READERS: &[Role] = &[Role::PlatformAdmin, Role::Regulator];

/// One outbox message as the pages show it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mail_outbox)]
pub struct OutboxRow {
    /// Id.
    pub id: i64,
    /// Recipient address.
    pub to_addr: String,
    /// Template (message-key prefix).
    pub template: String,
    /// Subject, both languages.
    pub subject: String,
    /// Text, both languages.
    pub body: String,
    /// Kind of object the message is about.
    pub object_type: String,
    /// Its id.
    pub object_id: String,
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: MailState,
    /// Delivery attempts made.
    pub attempts: i32,
    /// The last delivery error.
    pub last_error: String,
    /// When the next attempt is due (pending messages).
    pub next_attempt_at: NaiveDateTime,
    /// When it was queued.
    pub created_at: NaiveDateTime,
    /// When it was delivered.
    pub sent_at: Option<NaiveDateTime>,
    /// The `.eml` file it was written to (file outbox).
    pub eml_path: Option<String>,
}

impl OutboxRow {
    /// The message key of the state's name.
    pub fn state_key(&self) -> &'static str {
        self.state.label_key()
    }

    /// Whether the retry button applies.
    pub fn can_retry(&self) -> bool {
        self.state.decide(MailAction::Retry).is_ok()
    }
}

/// The outbox filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OutboxQuery {
    /// `pending`, `sent`, `failed` or empty for all.
    pub state: String,
    /// Page number, from 1.
    pub page: Option<i64>,
}

type DbBackend = <DbConnection as diesel::Connection>::Backend;

#[derive(Template)]
#[template(path = "mail/outbox.html")]
struct OutboxPage {
    page: Page,
    state_filter: String,
    rows: Vec<OutboxRow>,
    page_no: i64,
    has_next: bool,
}
crate::impl_page!(OutboxPage);

impl OutboxPage {
    fn page_link(&self, page_no: i64) -> String {
        format!(
            "/admin/outbox?state={}&page={page_no}",
            crate::web::url_encode(&self.state_filter)
        )
    }
}

/// `GET /admin/outbox`: every message, newest first, paged, optionally by state.
pub async fn outbox(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    q: crate::input::Query<OutboxQuery>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    let q = q.into_inner();
    let filter = MailState::parse(q.state.trim()).ok().map(MailState::as_str);
    let page_no = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let mut rows = crate::web::db(&state, move |conn| {
        let mut query = mail_outbox::table.into_boxed::<DbBackend>();
        if let Some(s) = filter {
            query = query.filter(mail_outbox::state.eq(s));
        }
        Ok(query
            .order(mail_outbox::id.desc())
            .offset((page_no - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
            .select(OutboxRow::as_select())
            .load(conn)?)
    })
    .await?;
    let has_next = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    render(&OutboxPage {
        page,
        state_filter: filter.unwrap_or("").to_owned(),
        rows,
        page_no,
        has_next,
    })
}

#[derive(Template)]
#[template(path = "mail/message.html")]
struct MessagePage {
    page: Page,
    m: OutboxRow,
}
crate::impl_page!(MessagePage);

/// `GET /admin/outbox/{id}`: one message as it was (or will be) sent.
pub async fn message(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    let id = path.into_inner();
    let m = crate::web::db(&state, move |conn| {
        Ok(mail_outbox::table
            .find(id)
            .select(OutboxRow::as_select())
            .first(conn)?)
    })
    .await?;
    render(&MessagePage { page, m })
}

/// `POST /admin/outbox/{id}/retry`: puts a failed message back in the queue (audited).
pub async fn retry(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    page.check_csrf(form.csrf())?;
    let id = path.into_inner();
    let now = crate::db::to_micros(state.clock.now());
    crate::web::db(&state, move |conn| ops::retry(conn, &user, id, now)).await?;
    Ok(redirect_with_flash(
        &format!("/admin/outbox/{id}"),
        "ok",
        "mail.flash_retry",
    ))
}
