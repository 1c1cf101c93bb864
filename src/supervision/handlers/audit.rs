//! The regulator's audit log pages: filter by actor, organisation, action, object and date
//! range (days of the configured time zone); paged with a bounded page size; the filtered rows
//! as CSV for inspections.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _};
use chrono_tz::Tz;
use diesel::prelude::*;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::i18n::Lang;
use crate::schema::audit_log;
use crate::supervision::audit::{self, Entry};
use crate::supervision::details::{self, Detail};
use crate::web::{Page, render};

/// Entries per page unless the reader chooses another size.
pub const PAGE_SIZE: i64 = 50;
/// The page sizes a reader may choose.
pub const PAGE_SIZES: [i64; 4] = [20, 50, 100, 200];
/// Most rows one CSV export holds (the newest first; narrow the filter for older ones).
pub const EXPORT_LIMIT: i64 = 100_000;
/// Organisations offered in the filter.
const ORG_LIMIT: i64 = 1000;

/// Who may read the audit log.
pub const READERS: &[Role] = &[Role::Regulator, Role::PlatformAdmin];

/// The filters of the audit page (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Exact user name of the actor.
    pub actor: String,
    /// The actor's organisation (id).
    pub org: String,
    /// Action prefix, e.g. `user.` or `dataset.create`.
    pub action: String,
    /// Object type, e.g. `user`.
    pub object_type: String,
    /// Object id.
    pub object_id: String,
    /// First day (YYYY-MM-DD, in the configured time zone), inclusive.
    pub from: String,
    /// Last day (YYYY-MM-DD, in the configured time zone), inclusive.
    pub to: String,
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Entries per page (one of [`PAGE_SIZES`]).
    pub per_page: Option<i64>,
}

impl AuditFilter {
    fn per_page(&self) -> i64 {
        self.per_page
            .filter(|n| PAGE_SIZES.contains(n))
            .unwrap_or(PAGE_SIZE)
    }

    /// The query string of these filters (without the page number).
    fn query_string(&self) -> String {
        let enc = crate::web::url_encode;
        format!(
            "actor={}&org={}&action={}&object_type={}&object_id={}&from={}&to={}&per_page={}",
            enc(&self.actor),
            enc(&self.org),
            enc(&self.action),
            enc(&self.object_type),
            enc(&self.object_id),
            enc(&self.from),
            enc(&self.to),
            self.per_page()
        )
    }
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

/// The UTC instant at which day `d` of `zone` begins.
fn day_start(zone: Tz, d: NaiveDate) -> NaiveDateTime {
    let local = NaiveDateTime::new(d, NaiveTime::MIN);
    zone.from_local_datetime(&local)
        .earliest()
        .map_or(local, |t| t.naive_utc())
}

fn query(
    conn: &mut DbConnection,
    f: &AuditFilter,
    zone: Tz,
    before_id: Option<i64>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Entry>, AppError> {
    let mut q = audit_log::table.into_boxed::<DbBackend>();
    if !f.actor.trim().is_empty() {
        q = q.filter(audit_log::actor_name.eq(f.actor.trim().to_lowercase()));
    }
    if !f.org.trim().is_empty() {
        let org: i64 = f
            .org
            .trim()
            .parse()
            .map_err(|_| AppError::bad_request("supervision.err_org"))?;
        q = q.filter(audit_log::org_id.eq(org));
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
        q = q.filter(audit_log::at.ge(day_start(zone, d)));
    }
    if let Some(d) = parse_day(&f.to)? {
        let next = d
            .succ_opt()
            .ok_or_else(|| AppError::bad_request("supervision.err_date").arg("value", &f.to))?;
        q = q.filter(audit_log::at.lt(day_start(zone, next)));
    }
    if let Some(id) = before_id {
        q = q.filter(audit_log::id.lt(id));
    }
    Ok(q.order(audit_log::id.desc())
        .offset(offset)
        .limit(limit)
        .select(Entry::as_select())
        .load(conn)?)
}

/// One audit entry as a reader sees it.
#[derive(Debug, Clone)]
pub struct EntryView {
    /// Position in the chain.
    pub id: i64,
    /// When, in the configured zone.
    pub at: String,
    /// Who.
    pub actor: String,
    /// The actor's organisation (empty when none).
    pub org: String,
    /// Source address.
    pub source: String,
    /// The action's name.
    pub action: String,
    /// The action's code.
    pub action_code: String,
    /// The object's type, named.
    pub object: String,
    /// The object's id.
    pub object_id: String,
    /// The object's page, if it has one.
    pub object_href: Option<String>,
    /// The details, rendered.
    pub details: Vec<Detail>,
    /// The entry's hash.
    pub hash: String,
}

fn view(e: Entry, lang: Lang, zone: Tz, orgs: &HashMap<i64, String>) -> EntryView {
    EntryView {
        id: e.id,
        at: crate::web::fmt_datetime(zone, e.at),
        org: e
            .org_id
            .and_then(|o| orgs.get(&o).cloned())
            .unwrap_or_default(),
        actor: e.actor_name,
        source: e.source_addr,
        action: details::action_name(lang, &e.action),
        object: details::object_name(lang, &e.object_type),
        object_href: details::object_href(&e.object_type, &e.object_id),
        object_id: e.object_id,
        details: details::render(lang, zone, &e.details),
        action_code: e.action,
        hash: e.hash,
    }
}

#[derive(Template)]
#[template(path = "supervision/audit.html")]
struct AuditPage {
    page: Page,
    filter: AuditFilter,
    entries: Vec<EntryView>,
    orgs: Vec<(i64, String)>,
    actions: Vec<(String, String)>,
    page_no: i64,
    has_next: bool,
}
crate::impl_page!(AuditPage);

impl AuditPage {
    fn page_link(&self, page_no: i64) -> String {
        format!(
            "/supervision/audit?{}&page={page_no}",
            self.filter.query_string()
        )
    }
    fn csv_link(&self) -> String {
        format!("/supervision/audit.csv?{}", self.filter.query_string())
    }
    fn sizes(&self) -> [i64; 4] {
        PAGE_SIZES
    }
    fn org_selected(&self, id: &i64) -> bool {
        self.filter.org.trim() == id.to_string()
    }
}

/// `GET /supervision/audit`.
pub async fn audit_log(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    filter: crate::input::Query<AuditFilter>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    let filter = filter.into_inner();
    let f = filter.clone();
    let zone = page.zone;
    let per_page = filter.per_page();
    let page_no = filter.page.unwrap_or(1).clamp(1, 1_000_000);
    let (mut entries, orgs) = crate::web::db(&state, move |conn| {
        let entries = query(conn, &f, zone, None, (page_no - 1) * per_page, per_page + 1)?;
        let orgs = crate::accounts::model::org_names(conn, ORG_LIMIT)?;
        Ok((entries, orgs))
    })
    .await?;
    let has_next = entries.len() as i64 > per_page;
    entries.truncate(per_page as usize);
    let names: HashMap<i64, String> = orgs.iter().cloned().collect();
    let entries = entries
        .into_iter()
        .map(|e| view(e, page.lang, zone, &names))
        .collect();
    render(&AuditPage {
        actions: details::known_actions(page.lang),
        page,
        page_no,
        filter,
        entries,
        orgs,
        has_next,
    })
}

/// `GET /supervision/audit.csv`: the filtered entries (newest first, at most
/// [`EXPORT_LIMIT`]) as CSV with a UTF-8 byte order mark and headers in the page language, so
/// spreadsheet programs open it as it is.
pub async fn audit_csv(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    filter: crate::input::Query<AuditFilter>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    let f = filter.into_inner();
    let (lang, zone) = (page.lang, page.zone);
    let body = crate::web::db(&state, move |conn| {
        let names: HashMap<i64, String> = crate::accounts::model::org_names(conn, i64::MAX)?
            .into_iter()
            .collect();
        let mut w = csv::Writer::from_writer(crate::web::UTF8_BOM.to_vec());
        let header: Vec<&str> = [
            "supervision.csv_id",
            "supervision.time",
            "supervision.actor",
            "supervision.organisation",
            "supervision.source",
            "supervision.action",
            "supervision.action_code",
            "supervision.object_type",
            "supervision.object_id",
            "supervision.details",
            "supervision.hash",
        ]
        .iter()
        .map(|k| crate::i18n::t(lang, k))
        .collect();
        w.write_record(&header).map_err(anyhow::Error::from)?;
        let mut before = None;
        let mut written = 0;
        while written < EXPORT_LIMIT {
            let batch = query(conn, &f, zone, before, 0, 1000.min(EXPORT_LIMIT - written))?;
            let Some(last) = batch.last() else { break };
            before = Some(last.id);
            written += batch.len() as i64;
            for e in batch {
                let line = details::one_line(lang, zone, &e.details);
                let v = view(e, lang, zone, &names);
                w.write_record([
                    v.id.to_string(),
                    v.at,
                    v.actor,
                    v.org,
                    v.source,
                    v.action,
                    v.action_code,
                    v.object,
                    v.object_id,
                    line,
                    v.hash,
                ])
                .map_err(anyhow::Error::from)?;
            }
        }
        Ok(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"dataop-audit.csv\"",
        ))
        .body(body))
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
