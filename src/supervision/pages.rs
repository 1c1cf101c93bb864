//! The regulator's audit log pages: filter by actor, action, object and time range; paged.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use diesel::prelude::*;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::schema::audit_log;
use crate::supervision::audit::{self, Entry};
use crate::web::{Page, render};

/// Entries per page.
pub const PAGE_SIZE: i64 = 50;

/// Who may read the audit log.
pub const READERS: &[Role] = &[Role::Regulator, Role::PlatformAdmin];

/// The filters of the audit page (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Exact user name of the actor.
    pub actor: String,
    /// Action prefix, e.g. `user.` or `dataset.create`.
    pub action: String,
    /// Object type, e.g. `user`.
    pub object_type: String,
    /// Object id.
    pub object_id: String,
    /// First day (YYYY-MM-DD, UTC), inclusive.
    pub from: String,
    /// Last day (YYYY-MM-DD, UTC), inclusive.
    pub to: String,
    /// Page number, from 1.
    pub page: Option<i64>,
}

type DbBackend = <DbConnection as diesel::Connection>::Backend;

fn parse_day(s: &str) -> Result<Option<NaiveDate>, AppError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| AppError::bad_request("supervision.err_date").arg("value", s))
}

fn query(conn: &mut DbConnection, f: &AuditFilter) -> Result<Vec<Entry>, AppError> {
    let mut q = audit_log::table.into_boxed::<DbBackend>();
    if !f.actor.trim().is_empty() {
        q = q.filter(audit_log::actor_name.eq(f.actor.trim().to_lowercase()));
    }
    if !f.action.trim().is_empty() {
        let prefix = f
            .action
            .trim()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q = q.filter(audit_log::action.like(format!("{prefix}%")).escape('\\'));
    }
    if !f.object_type.trim().is_empty() {
        q = q.filter(audit_log::object_type.eq(f.object_type.trim().to_owned()));
    }
    if !f.object_id.trim().is_empty() {
        q = q.filter(audit_log::object_id.eq(f.object_id.trim().to_owned()));
    }
    if let Some(d) = parse_day(&f.from)? {
        q = q.filter(audit_log::at.ge(NaiveDateTime::new(d, NaiveTime::MIN)));
    }
    if let Some(d) = parse_day(&f.to)? {
        let next = d
            .succ_opt()
            .ok_or_else(|| AppError::bad_request("supervision.err_date").arg("value", &f.to))?;
        q = q.filter(audit_log::at.lt(NaiveDateTime::new(next, NaiveTime::MIN)));
    }
    let page = f.page.unwrap_or(1).clamp(1, 1_000_000);
    Ok(q.order(audit_log::id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
        .select(Entry::as_select())
        .load(conn)?)
}

#[derive(Template)]
#[template(path = "supervision/audit.html")]
struct AuditPage {
    page: Page,
    filter: AuditFilter,
    entries: Vec<Entry>,
    page_no: i64,
    has_next: bool,
}
crate::impl_page!(AuditPage);

impl AuditPage {
    fn page_link(&self, page_no: i64) -> String {
        let f = &self.filter;
        let enc = crate::web::url_encode;
        format!(
            "/supervision/audit?actor={}&action={}&object_type={}&object_id={}&from={}&to={}&page={page_no}",
            enc(&f.actor),
            enc(&f.action),
            enc(&f.object_type),
            enc(&f.object_id),
            enc(&f.from),
            enc(&f.to)
        )
    }
}

/// `GET /supervision/audit`.
pub async fn audit_log(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    filter: web::Query<AuditFilter>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    let filter = filter.into_inner();
    let f = filter.clone();
    let mut entries = crate::web::db(&state, move |conn| query(conn, &f)).await?;
    let has_next = entries.len() as i64 > PAGE_SIZE;
    entries.truncate(PAGE_SIZE as usize);
    render(&AuditPage {
        page,
        page_no: filter.page.unwrap_or(1).max(1),
        filter,
        entries,
        has_next,
    })
}

#[derive(Template)]
#[template(path = "supervision/verify.html")]
struct VerifyPage {
    page: Page,
    count: u64,
    broken: Option<audit::Broken>,
}
crate::impl_page!(VerifyPage);

/// `GET /supervision/audit/verify`: checks the whole chain and shows the result.
pub async fn audit_verify(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    let result = crate::web::db(&state, |conn| Ok(audit::verify(conn)?)).await?;
    let (count, broken) = match result {
        Ok(n) => (n, None),
        Err(b) => (0, Some(b)),
    };
    render(&VerifyPage {
        page,
        count,
        broken,
    })
}
