//! What every page shares: the [`Page`] context (language, user, navigation, CSRF token, flash
//! message), rendering helpers, the blocking-DB helper [`db`], and the middleware that sets the
//! CSRF seed cookie, clears consumed flash messages and renders errors.
//!
//! A page template is a struct with a `page: Page` field and `crate::impl_page!(Struct)`;
//! templates then use `t("domain.key")`, `lang`, `user`, `csrf` directly:
//!
//! ```text
//! #[derive(askama::Template)]
//! #[template(path = "catalog/list.html")]
//! struct ListPage { page: Page, items: Vec<Item> }
//! crate::impl_page!(ListPage);
//! // handler: async fn list(page: Page, ...) -> Result<HttpResponse, AppError> {
//! //     render(&ListPage { page, items }) }
//! ```
//! Forms include `<input type="hidden" name="csrf" value="{{ csrf }}">` and the handler calls
//! `page.check_csrf(&form.csrf)?` before changing anything.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::future::LocalBoxFuture;
use rand::RngCore as _;

use crate::AppState;
use crate::auth::{self, CSRF_COOKIE, CurrentUser, Role};
use crate::db::DbConnection;
use crate::errors::{self, AppError};
use crate::i18n::{self, Lang};

/// Name of the language cookie.
pub const LANG_COOKIE: &str = "lang";
/// Name of the flash-message cookie.
pub const FLASH_COOKIE: &str = "dataop_flash";

/// Runs blocking database work on the blocking thread pool with a pooled connection.
pub async fn db<T, F>(state: &AppState, f: F) -> Result<T, AppError>
where
    F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    let pool = state.pool.clone();
    web::block(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await?
}

/// One entry of the navigation bar.
#[derive(Debug, Clone)]
pub struct NavItem {
    /// Link target.
    pub href: &'static str,
    /// Message key of the label.
    pub key: &'static str,
    /// Whether the current page is under this entry.
    pub active: bool,
}

/// A one-time message shown on the next page (after a redirect).
#[derive(Debug, Clone)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: String,
    /// Message key.
    pub key: String,
}

/// The context every page template receives.
#[derive(Debug, Clone)]
pub struct Page {
    /// The page language.
    pub lang: Lang,
    /// The logged-in user.
    pub user: Option<CurrentUser>,
    /// Navigation entries fitting the user's role.
    pub nav: Vec<NavItem>,
    /// The CSRF token to put in forms.
    pub csrf: String,
    /// A message carried over from the previous request.
    pub flash: Option<Flash>,
    /// The current path (for the language switch's return link).
    pub path: String,
    /// The configured time zone every time on the page is shown in.
    pub zone: chrono_tz::Tz,
    /// The action form just refused, shown again (see [`crate::detail`]).
    pub refused: Option<crate::detail::Refused>,
}

/// Makes a template struct with a `page: Page` field expose the page context (`t`, `lang`,
/// `user`, `csrf`, ...) to its template.
#[macro_export]
macro_rules! impl_page {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::web::Page;
            fn deref(&self) -> &$crate::web::Page {
                &self.page
            }
        }
    };
}

#[derive(Clone)]
struct CsrfSeed(String);

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The language of a request: `lang` cookie, else `Accept-Language`, else Chinese.
pub fn lang_of(req: &HttpRequest) -> Lang {
    req.cookie(LANG_COOKIE)
        .and_then(|c| Lang::from_code(c.value()))
        .or_else(|| {
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|h| h.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or_default()
}

fn csrf_seed(req: &HttpRequest) -> String {
    if let Some(s) = req.extensions().get::<CsrfSeed>() {
        return s.0.clone();
    }
    req.cookie(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

/// The navigation for a role (`None`: anonymous visitor).
pub fn nav_for(role: Option<Role>, path: &str) -> Vec<NavItem> {
    let mut items: Vec<(&'static str, &'static str)> = vec![
        ("/", "common.nav_home"),
        ("/catalog", "common.nav_catalog"),
        ("/calls", "admission.nav_calls"),
        ("/notices", "admission.nav_notices"),
    ];
    match role {
        None => {
            items.push(("/register", "common.nav_register"));
            items.push(("/agreements/verify", "agreements.nav_verify"));
        }
        Some(role) => {
            if role == Role::Provider {
                items.push(("/provider/datasets", "common.nav_my_datasets"));
            }
            match role {
                Role::Enterprise => {
                    items.push(("/applications", "admission.nav_my_applications"));
                    items.push(("/agreements", "agreements.nav_mine"));
                    items.push(("/jobs", "jobs.nav_mine"));
                }
                Role::Regulator => {
                    items.push(("/regulator/desk", "desk.nav"));
                    items.push(("/admission/calls", "admission.nav_manage_calls"));
                    items.push(("/admission/applications", "admission.nav_review"));
                    items.push(("/admin/agreements", "agreements.nav_admin"));
                    items.push(("/regulator/calendar", "calendar.nav"));
                }
                Role::Expert => items.push(("/expert/assignments", "admission.nav_assignments")),
                _ => {}
            }
            if matches!(role, Role::PlatformAdmin | Role::Regulator) {
                items.push(("/admin/jobs", "jobs.nav_admin"));
                items.push(("/admin/orgs", "common.nav_orgs"));
                items.push(("/admin/users", "common.nav_users"));
                items.push(("/supervision/audit", "common.nav_audit"));
                items.push(("/admin/outbox", "mail.nav_outbox"));
            }
            items.push(("/account", "common.nav_account"));
        }
    }
    items
        .into_iter()
        .map(|(href, key)| NavItem {
            href,
            key,
            active: if href == "/" {
                path == "/"
            } else {
                path == href || path.starts_with(&format!("{href}/"))
            },
        })
        .collect()
}

impl Page {
    /// Builds the context of a request (and remembers it for the error page).
    pub async fn build(req: &HttpRequest) -> Result<Page, AppError> {
        if let Some(p) = req.extensions().get::<Page>() {
            return Ok(p.clone());
        }
        let user = auth::resolve(req).await?;
        let state = app_state(req)?;
        let sid = user.as_ref().map(|u| u.session_id.as_str()).unwrap_or("");
        let csrf = auth::csrf_token(&state, &csrf_seed(req), sid);
        let flash = req.cookie(FLASH_COOKIE).and_then(|c| {
            let (kind, key) = c.value().split_once(':')?;
            (matches!(kind, "ok" | "error") && i18n::has_key(Lang::Zh, key)).then(|| Flash {
                kind: kind.to_owned(),
                key: key.to_owned(),
            })
        });
        let path = if req.path().len() > crate::listener::MAX_REQUEST_LINE {
            "/".to_owned()
        } else {
            req.path().to_owned()
        };
        let page = Page {
            lang: lang_of(req),
            nav: nav_for(user.as_ref().map(|u| u.role), &path),
            user,
            csrf,
            flash,
            path,
            zone: state.config.time_zone,
            refused: None,
        };
        req.extensions_mut().insert(page.clone());
        Ok(page)
    }

    /// The message for `key` in the page language.
    pub fn t<'a>(&self, key: &'a str) -> &'a str {
        i18n::t(self.lang, key)
    }

    /// The message for `key` with `{name}` arguments.
    pub fn t_args(&self, key: &str, args: &[(&str, String)]) -> String {
        i18n::t_args(self.lang, key, args)
    }

    /// The language the switch link offers.
    pub fn other_lang(&self) -> Lang {
        match self.lang {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// The link that switches to the other language and comes back here.
    pub fn lang_switch_href(&self) -> String {
        format!(
            "/lang/{}?next={}",
            self.other_lang().code(),
            url_encode(&self.path)
        )
    }

    /// `Err(403)` unless `token` is this page's CSRF token.
    pub fn check_csrf(&self, token: &str) -> Result<(), AppError> {
        if !self.csrf.is_empty() && auth::constant_time_eq(&self.csrf, token) {
            Ok(())
        } else {
            Err(AppError::http(StatusCode::FORBIDDEN, "common.error_csrf"))
        }
    }

    /// Whether the visitor is logged in with one of `roles`.
    pub fn has_role(&self, roles: &[Role]) -> bool {
        self.user.as_ref().is_some_and(|u| u.has_role(roles))
    }

    /// A stored (UTC) instant as the page shows it, in the configured zone:
    /// `2026-11-23 21:44:29`.
    pub fn time(&self, t: impl Instant) -> String {
        fmt_datetime(self.zone, t.instant())
    }

    /// A stored (UTC) instant to the minute, in the configured zone: `2026-11-23 21:44`.
    pub fn time_min(&self, t: impl Instant) -> String {
        crate::calendar::local(self.zone, t.instant())
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    /// The sentence naming the zone of the page's times (shown once, in the footer).
    pub fn zone_note(&self) -> String {
        let now = chrono::Utc::now().with_timezone(&self.zone);
        self.t_args(
            "common.footer_zone",
            &[
                ("zone", self.zone.name().to_owned()),
                ("offset", now.format("%:z").to_string()),
            ],
        )
    }

    /// Whether the visitor is a platform admin or regulator.
    pub fn is_admin(&self) -> bool {
        self.has_role(&[Role::PlatformAdmin, Role::Regulator])
    }
}

impl FromRequest for Page {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Page::build(&req).await })
    }
}

/// The application state of a request.
pub fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("application state missing")))
}

/// Renders a template as a 200 HTML response.
pub fn render(t: &impl Template) -> Result<HttpResponse, AppError> {
    render_status(StatusCode::OK, t)
}

/// Renders a template as an HTML response with `status` (e.g. 422 for a re-shown form).
pub fn render_status(status: StatusCode, t: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(t.render()?))
}

pub use crate::input::is_local_path;

/// A 303 redirect to `location`.
pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The UTF-8 byte order mark that CSV downloads start with, so that spreadsheet programs read
/// them as UTF-8 (pandas skips it).
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A stored (UTC) instant, or a reference to one (templates pass both).
pub trait Instant {
    /// The instant.
    fn instant(&self) -> chrono::NaiveDateTime;
}

impl Instant for chrono::NaiveDateTime {
    fn instant(&self) -> chrono::NaiveDateTime {
        *self
    }
}

impl<T: Instant + ?Sized> Instant for &T {
    fn instant(&self) -> chrono::NaiveDateTime {
        (**self).instant()
    }
}

/// A stored (UTC) timestamp as pages, mails and downloads show it, in `zone` (the configured
/// `time_zone`): `2026-11-23 21:44:29`.
pub fn fmt_datetime(zone: chrono_tz::Tz, t: chrono::NaiveDateTime) -> String {
    crate::calendar::local(zone, t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Whether a form value is longer than `max` characters (not bytes: Chinese text counts one
/// per character).
pub fn too_long(s: &str, max: usize) -> bool {
    s.chars().count() > max
}

/// Bytes of an oversize upload read and dropped so the client gets the 413 answer; past this
/// the connection is closed instead.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads and drops the rest of an oversize multipart upload (`read` bytes of it already
/// consumed), up to 64 MiB, so the client sees the 413 answer rather than a reset.
pub async fn drain_upload(
    payload: &mut actix_multipart::Multipart,
    mut field: actix_multipart::Field,
    mut read: u64,
) {
    use futures_util::TryStreamExt as _;
    while read < DRAIN_LIMIT {
        match field.try_next().await {
            Ok(Some(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
    drop(field);
    while read < DRAIN_LIMIT {
        match payload.try_next().await {
            Ok(Some(mut f)) => {
                while let Ok(Some(chunk)) = f.try_next().await {
                    read += chunk.len() as u64;
                    if read >= DRAIN_LIMIT {
                        break;
                    }
                }
            }
            _ => break,
        }
    }
}

/// A 303 redirect carrying a flash message (`kind` is `ok` or `error`, `key` a message key).
/// The cookie is HttpOnly and SameSite=Strict; [`page_middleware`] marks it `Secure` when the
/// site's cookies are (`secure_cookies`).
pub fn redirect_with_flash(location: &str, kind: &str, key: &str) -> HttpResponse {
    let mut res = redirect(location);
    let cookie = Cookie::build(FLASH_COOKIE, format!("{kind}:{key}"))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    let _ = res.add_cookie(&cookie);
    res
}

/// A cookie with the site's attributes (path `/`, HttpOnly, SameSite=Strict, Secure if set).
pub fn site_cookie(state: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.secure_cookies)
        .finish()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    status: u16,
    message: String,
}
crate::impl_page!(ErrorPage);

/// Sets the CSRF seed cookie, clears a consumed flash cookie, and renders errors as an HTML page
/// (or JSON under `/api`; a 401 on a page redirects to `/login`).
pub async fn page_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let had_flash = req.cookie(FLASH_COOKIE).is_some();
    let new_seed = if req.cookie(CSRF_COOKIE).is_none() {
        let seed = random_hex(16);
        req.extensions_mut().insert(CsrfSeed(seed.clone()));
        Some(seed)
    } else {
        None
    };
    let is_api = req.path() == "/api" || req.path().starts_with("/api/");
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let res = if uri_len > crate::listener::MAX_REQUEST_LINE {
        tracing::info!(
            "refused a request URI of {uri_len} bytes (limit {}): 414",
            crate::listener::MAX_REQUEST_LINE
        );
        req.error_response(AppError::http(
            StatusCode::URI_TOO_LONG,
            "common.error_uri_too_long",
        ))
    } else {
        next.call(req).await?.map_into_boxed_body()
    };
    let mut res = match res.response().error() {
        None => res,
        Some(err) => {
            let lang = lang_of(res.request());
            let (status, code, message) = match err.as_error::<AppError>() {
                Some(app) => app.message(lang),
                None => {
                    let status = res.status();
                    if status.is_server_error() {
                        tracing::error!("internal error: {err}");
                    }
                    let key = errors::key_for_status(status);
                    (status, key.to_owned(), i18n::t(lang, key).to_owned())
                }
            };
            let response = if is_api {
                HttpResponse::build(status).json(serde_json::json!({
                    "error": { "status": status.as_u16(), "code": code, "message": message }
                }))
            } else if status == StatusCode::UNAUTHORIZED {
                let path = res.request().path();
                let target = if is_local_path(path) { path } else { "/" };
                redirect(&format!("/login?next={}", url_encode(target)))
            } else {
                let req = res.request().clone();
                let page = match Page::build(&req).await {
                    Ok(p) => p,
                    Err(_) => Page {
                        lang,
                        user: None,
                        nav: nav_for(None, req.path()),
                        csrf: String::new(),
                        flash: None,
                        path: req.path().to_owned(),
                        zone: app_state(&req)
                            .map_or(crate::config::DEFAULT_TIME_ZONE, |s| s.config.time_zone),
                        refused: None,
                    },
                };
                let body = ErrorPage {
                    page,
                    status: status.as_u16(),
                    message,
                }
                .render()
                .unwrap_or_default();
                HttpResponse::build(status)
                    .content_type("text/html; charset=utf-8")
                    .body(body)
            };
            res.into_response(response)
        }
    };
    let state = res.request().app_data::<web::Data<AppState>>().cloned();
    let secure = state.as_ref().is_some_and(|s| s.config.secure_cookies);
    if let (Some(seed), Some(state)) = (new_seed, state) {
        let _ = res
            .response_mut()
            .add_cookie(&site_cookie(&state, CSRF_COOKIE, seed));
    }
    let flashes: Vec<Cookie<'static>> = res
        .response()
        .cookies()
        .filter(|c| c.name() == FLASH_COOKIE)
        .map(|c| c.into_owned())
        .collect();
    if secure && !flashes.is_empty() {
        res.response_mut().del_cookie(FLASH_COOKIE);
        for mut c in flashes {
            c.set_secure(true);
            let _ = res.response_mut().add_cookie(&c);
        }
    } else if had_flash && flashes.is_empty() && !res.status().is_redirection() {
        let removal = Cookie::build(FLASH_COOKIE, "")
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure)
            .finish();
        let _ = res.response_mut().add_removal_cookie(&removal);
    }
    Ok(res)
}

/// Percent-encodes a string for use in a query parameter.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    page: Page,
}
crate::impl_page!(HomePage);

/// `GET /`: the home page.
pub async fn home(page: Page) -> Result<HttpResponse, AppError> {
    render(&HomePage { page })
}

/// `GET /healthz`: `ok` (200) when the database accepts writes and the data dir's file system
/// has room; otherwise the reason, with 503 (the database cannot be written or reached) or
/// 507 (the data dir's file system is full).
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let probe = {
        let pool = state.pool.clone();
        web::block(move || -> Result<(), String> {
            let mut conn = pool
                .get()
                .map_err(|e| format!("the database cannot be reached: {e}"))?;
            crate::db::probe_write(&mut conn).map_err(|e| {
                if errors::Shortage::of_db(&e) == Some(errors::Shortage::ReadOnly) {
                    crate::db::note_read_only();
                }
                format!("the database cannot be written: {e}")
            })
        })
        .await
        .unwrap_or_else(|e| Err(format!("the check could not run: {e}")))
    };
    let free = crate::scratch::available_bytes(state.scratch.dir());
    let (status, body) = match (probe, free) {
        (Err(reason), _) => (StatusCode::SERVICE_UNAVAILABLE, reason),
        (Ok(()), Ok(free)) if free < crate::scratch::RESERVE_BYTES => (
            StatusCode::INSUFFICIENT_STORAGE,
            format!("the data dir's file system is full: {free} bytes free"),
        ),
        (Ok(()), Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the data dir cannot be read: {e}"),
        ),
        (Ok(()), Ok(_)) => (StatusCode::OK, "ok".to_owned()),
    };
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// Query of the language switch.
#[derive(Debug, serde::Deserialize)]
pub struct LangQuery {
    next: Option<String>,
}

/// `GET /lang/{code}?next=/path`: sets the language cookie and returns to `next`.
pub async fn set_lang(
    req: HttpRequest,
    code: web::Path<String>,
    q: crate::input::Query<LangQuery>,
) -> Result<HttpResponse, AppError> {
    let lang = Lang::from_code(&code).ok_or_else(AppError::not_found)?;
    let state = app_state(&req)?;
    let next = q
        .next
        .as_deref()
        .filter(|n| is_local_path(n))
        .unwrap_or("/");
    let mut res = redirect(next);
    let mut cookie = site_cookie(&state, LANG_COOKIE, lang.code().to_owned());
    cookie.set_max_age(actix_web::cookie::time::Duration::days(365));
    let _ = res.add_cookie(&cookie);
    Ok(res)
}

/// Fallback for unknown routes.
pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::not_found())
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
