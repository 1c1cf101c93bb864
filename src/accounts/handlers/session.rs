//! Login, logout and API tokens.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::accounts::machine::{OrgStatus, UserStatus};
use crate::accounts::model;
use crate::auth::{self, CurrentUser, SESSION_COOKIE, password};
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::schema::{sessions, users};
use crate::supervision::audit::{self, Actor};
use crate::web::{
    Page, is_local_path, redirect, redirect_with_flash, render, render_status, site_cookie,
};

/// What a credential check found.
enum LoginOutcome {
    /// Logged in: the signed token and its expiry.
    Ok(String, chrono::NaiveDateTime),
    /// Wrong name or password.
    BadCredentials,
    /// The user or the organisation is disabled.
    Disabled,
}

/// Checks credentials and, if they are good, opens a session (`web`) or issues a token (`api`).
/// Every outcome is audited.
fn authenticate(
    conn: &mut DbConnection,
    state: &AppState,
    username: &str,
    pass: &str,
    kind: &str,
    addr: &str,
) -> Result<LoginOutcome, AppError> {
    let user = model::find_user_by_name(conn, username)?;
    let Some(user) = user else {
        password::verify(password::dummy_hash(), pass);
        db::write_transaction(conn, |conn| {
            audit::record(
                conn,
                &Actor::anonymous(username, addr),
                "user.login_failed",
                "user",
                "",
                serde_json::json!({ "reason": "unknown_user", "kind": kind }),
            )
        })?;
        return Ok(LoginOutcome::BadCredentials);
    };
    let actor = Actor {
        user_id: Some(user.id),
        name: user.username.clone(),
        org_id: Some(user.org_id),
        addr: addr.to_owned(),
    };
    if !password::verify(&user.password_hash, pass) {
        db::write_transaction(conn, |conn| {
            audit::record(
                conn,
                &actor,
                "user.login_failed",
                "user",
                &user.id.to_string(),
                serde_json::json!({ "reason": "bad_password", "kind": kind }),
            )
        })?;
        return Ok(LoginOutcome::BadCredentials);
    }
    let org = model::find_org(conn, user.org_id)?.ok_or_else(AppError::not_found)?;
    if user.status != UserStatus::Active || org.status == OrgStatus::Disabled {
        db::write_transaction(conn, |conn| {
            audit::record(
                conn,
                &actor,
                "user.login_refused",
                "user",
                &user.id.to_string(),
                serde_json::json!({ "reason": "disabled", "kind": kind }),
            )
        })?;
        return Ok(LoginOutcome::Disabled);
    }
    let ttl = if kind == "api" {
        chrono::TimeDelta::days(state.config.token_days)
    } else {
        chrono::TimeDelta::hours(state.config.session_hours)
    };
    db::write_transaction(conn, |conn| {
        let (row, token) = auth::create_session(conn, state, user.id, kind, addr, ttl)?;
        diesel::update(users::table.find(user.id))
            .set(users::last_login_at.eq(db::now()))
            .execute(conn)?;
        let (action, object_type) = if kind == "api" {
            ("token.issue", "token")
        } else {
            ("user.login", "session")
        };
        audit::record(
            conn,
            &actor,
            action,
            object_type,
            &row.id,
            serde_json::json!({ "expires_at": row.expires_at.to_string() }),
        )?;
        Ok(LoginOutcome::Ok(token, row.expires_at))
    })
}

/// What a login attempt came to.
enum Attempt {
    /// Refused by the failed-login throttle: seconds to wait.
    Throttled(u64),
    /// The credentials were checked.
    Checked(LoginOutcome),
}

/// Checks the failed-login throttle, then the credentials; a bad name or password counts as a
/// failure of the account and of the address, a success forgets the account's failures.
fn attempt(
    conn: &mut DbConnection,
    state: &AppState,
    username: &str,
    pass: &str,
    kind: &str,
    addr: &str,
) -> Result<Attempt, AppError> {
    let now = state.clock.now();
    if let Err(wait) = state.throttle.check(conn, username, addr, now)? {
        return Ok(Attempt::Throttled(wait));
    }
    let outcome = authenticate(conn, state, username, pass, kind, addr)?;
    match outcome {
        LoginOutcome::Ok(..) => state.throttle.clear_account(conn, username)?,
        LoginOutcome::BadCredentials => state.throttle.record_failure(conn, username, addr, now)?,
        LoginOutcome::Disabled => {}
    }
    Ok(Attempt::Checked(outcome))
}

#[derive(Template)]
#[template(path = "accounts/login.html")]
struct LoginPage {
    page: Page,
    username: String,
    next: String,
    error: Option<String>,
}
crate::impl_page!(LoginPage);

/// Query of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_form(
    page: Page,
    q: crate::input::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    if page.user.is_some() {
        return Ok(redirect("/"));
    }
    render(&LoginPage {
        page,
        username: String::new(),
        next: q
            .next
            .clone()
            .filter(|n| is_local_path(n))
            .unwrap_or_default(),
        error: None,
    })
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`.
pub async fn login(
    req: HttpRequest,
    page: Page,
    state: web::Data<AppState>,
    form: crate::input::FormAsTyped<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let (form, problem) = form.into_parts();
    page.check_csrf(&form.csrf)?;
    let addr = auth::source_addr(&req);
    let username = form.username.trim().to_owned();
    let next = if is_local_path(&form.next) {
        form.next.clone()
    } else {
        String::new()
    };
    let reshow = |page: Page, status: StatusCode, error: String| {
        render_status(
            status,
            &LoginPage {
                page,
                username: username.clone(),
                next: next.clone(),
                error: Some(error),
            },
        )
    };
    if let Some(p) = problem {
        let (status, _, msg) = p.error.message(page.lang);
        return reshow(page, status, msg);
    }
    if username.is_empty() || form.password.is_empty() {
        let msg = page.t("accounts.err_login_empty").to_owned();
        return reshow(page, StatusCode::UNPROCESSABLE_ENTITY, msg);
    }
    let attempt = {
        let (st, u, p, a) = (state.clone(), username.clone(), form.password, addr.clone());
        crate::web::db(&state, move |conn| attempt(conn, &st, &u, &p, "web", &a)).await?
    };
    let outcome = match attempt {
        Attempt::Throttled(wait) => {
            let msg = page.t_args(
                "accounts.err_throttled",
                &[("minutes", wait.div_ceil(60).to_string())],
            );
            return reshow(page, StatusCode::TOO_MANY_REQUESTS, msg);
        }
        Attempt::Checked(outcome) => outcome,
    };
    match outcome {
        LoginOutcome::Ok(token, _) => {
            let mut res = redirect(if next.is_empty() { "/" } else { &next });
            let mut cookie = site_cookie(&state, SESSION_COOKIE, token);
            cookie.set_max_age(CookieDuration::hours(state.config.session_hours));
            let _ = res.add_cookie(&cookie);
            Ok(res)
        }
        LoginOutcome::BadCredentials => {
            let msg = page.t("accounts.err_bad_credentials").to_owned();
            reshow(page, StatusCode::UNAUTHORIZED, msg)
        }
        LoginOutcome::Disabled => {
            let msg = page.t("accounts.err_disabled").to_owned();
            reshow(page, StatusCode::FORBIDDEN, msg)
        }
    }
}

/// A form that only carries the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm {
    /// The posted token.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /logout`: revokes the session and clears the cookie.
pub async fn logout(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let sid = user.session_id.clone();
    crate::web::db(&state, move |conn| {
        db::write_transaction(conn, |conn| {
            diesel::update(sessions::table.find(&sid))
                .set(sessions::revoked_at.eq(db::now()))
                .execute(conn)?;
            audit::record(
                conn,
                &user.actor(),
                "user.logout",
                "session",
                &sid,
                serde_json::json!({}),
            )?;
            Ok::<_, AppError>(())
        })
    })
    .await?;
    let mut res = redirect_with_flash("/", "ok", "accounts.flash_logged_out");
    let _ = res.add_removal_cookie(&site_cookie(&state, SESSION_COOKIE, String::new()));
    Ok(res)
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    username: String,
    password: String,
}

/// Answer of `POST /api/v1/tokens`.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    token: String,
    expires_at: String,
}

/// `POST /api/v1/tokens`: issues a bearer token for a name and password.
pub async fn api_issue_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let addr = auth::source_addr(&req);
    let username = body.username.trim().to_owned();
    let attempt = {
        let (st, u, a) = (state.clone(), username.clone(), addr.clone());
        crate::web::db(&state, move |conn| {
            attempt(conn, &st, &u, &body.password, "api", &a)
        })
        .await?
    };
    let outcome = match attempt {
        Attempt::Throttled(wait) => {
            return Err(
                AppError::http(StatusCode::TOO_MANY_REQUESTS, "accounts.err_throttled")
                    .arg("minutes", wait.div_ceil(60)),
            );
        }
        Attempt::Checked(outcome) => outcome,
    };
    match outcome {
        LoginOutcome::Ok(token, expires_at) => Ok(HttpResponse::Ok().json(TokenResponse {
            token,
            expires_at: expires_at
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })),
        LoginOutcome::BadCredentials => Err(AppError::http(
            StatusCode::UNAUTHORIZED,
            "accounts.err_bad_credentials",
        )),
        LoginOutcome::Disabled => Err(AppError::http(
            StatusCode::FORBIDDEN,
            "accounts.err_disabled",
        )),
    }
}

/// `GET /api/v1/me`: who the bearer (or session) is.
pub async fn api_me(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "organisation": { "id": user.org_id, "name": user.org_name, "kind": user.org_kind },
    }))
}

/// One API token as listed on the account page.
#[derive(Debug, Clone)]
pub struct TokenView {
    /// Token (session) id.
    pub id: String,
    /// Created.
    pub created_at: String,
    /// Expires.
    pub expires_at: String,
    /// Revoked when.
    pub revoked_at: Option<String>,
    /// Whether it is still usable.
    pub live: bool,
    /// Created from.
    pub source_addr: String,
}

#[derive(Template)]
#[template(path = "accounts/account.html")]
struct AccountPage {
    page: Page,
    org_status: String,
    tokens: Vec<TokenView>,
    /// `scheme://host` of this site as the request reached it, for the curl example.
    site: String,
}
crate::impl_page!(AccountPage);

impl AccountPage {
    fn org_status_key(&self) -> String {
        format!("accounts.org_status_{}", self.org_status)
    }
}

/// `scheme://host` of the site as `req` reached it (`Forwarded` / `X-Forwarded-*` from a proxy
/// in front, else the `Host` header); a host with characters no host name has is replaced by
/// the bound address.
fn site_of(req: &HttpRequest, state: &AppState) -> String {
    let info = req.connection_info();
    let host = info.host();
    let host = if !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        host
    } else {
        &state.config.bind
    };
    let scheme = if info.scheme() == "https" || state.config.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// `GET /account`: the user's profile and API tokens.
pub async fn account(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let (uid, org_id) = (user.id, user.org_id);
    let (org_status, rows) = crate::web::db(&state, move |conn| {
        let org_status: String = crate::schema::organisations::table
            .find(org_id)
            .select(crate::schema::organisations::status)
            .first(conn)?;
        let rows: Vec<auth::SessionRow> = sessions::table
            .filter(sessions::user_id.eq(uid))
            .filter(sessions::kind.eq("api"))
            .order(sessions::created_at.desc())
            .limit(100)
            .select(auth::SessionRow::as_select())
            .load(conn)?;
        Ok((org_status, rows))
    })
    .await?;
    let now = db::now();
    let tokens = rows
        .into_iter()
        .map(|r| TokenView {
            live: r.revoked_at.is_none() && r.expires_at > now,
            id: r.id,
            created_at: page.time_min(r.created_at),
            expires_at: page.time_min(r.expires_at),
            revoked_at: r.revoked_at.map(|t| page.time_min(t)),
            source_addr: r.source_addr,
        })
        .collect();
    render(&AccountPage {
        page,
        org_status,
        tokens,
        site: site_of(&req, &state),
    })
}

#[derive(Template)]
#[template(path = "accounts/token_created.html")]
struct TokenCreatedPage {
    page: Page,
    token: String,
    expires_at: String,
}
crate::impl_page!(TokenCreatedPage);

/// `POST /account/tokens`: issues an API token for the logged-in user and shows it once.
pub async fn create_token(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let addr = auth::source_addr(&req);
    let st = state.clone();
    let (token, expires_at) = crate::web::db(&state, move |conn| {
        db::write_transaction(conn, |conn| {
            let ttl = chrono::TimeDelta::days(st.config.token_days);
            let (row, token) = auth::create_session(conn, &st, user.id, "api", &addr, ttl)?;
            audit::record(
                conn,
                &user.actor(),
                "token.issue",
                "token",
                &row.id,
                serde_json::json!({ "expires_at": row.expires_at.to_string(), "via": "web" }),
            )?;
            Ok::<_, AppError>((token, row.expires_at))
        })
    })
    .await?;
    render(&TokenCreatedPage {
        expires_at: page.time_min(expires_at),
        page,
        token,
    })
}

/// `POST /account/tokens/{id}/revoke`: revokes one of the user's own API tokens.
pub async fn revoke_token(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    crate::web::db(&state, move |conn| {
        db::write_transaction(conn, |conn| {
            let n = diesel::update(
                sessions::table
                    .filter(sessions::id.eq(&id))
                    .filter(sessions::user_id.eq(user.id))
                    .filter(sessions::kind.eq("api"))
                    .filter(sessions::revoked_at.is_null()),
            )
            .set(sessions::revoked_at.eq(db::now()))
            .execute(conn)?;
            if n == 0 {
                return Err(AppError::not_found());
            }
            audit::record(
                conn,
                &user.actor(),
                "token.revoke",
                "token",
                &id,
                serde_json::json!({}),
            )?;
            Ok(())
        })
    })
    .await?;
    Ok(redirect_with_flash(
        "/account",
        "ok",
        "accounts.flash_token_revoked",
    ))
}

/// How long expired or revoked session records are kept (they show on the account page as
/// history; the audit log keeps the logins themselves for good).
const SESSION_RECORD_DAYS: i64 = 30;

/// Scheduled work: deletes session and token records that expired or were revoked more than
/// [`SESSION_RECORD_DAYS`] ago, so the table does not grow without bound. Sessions live in
/// real time (their JWTs carry real expiry times), so this uses the real time too, not the
/// platform [`crate::calendar::Clock`] that tests move.
pub fn purge_expired(state: &AppState) -> anyhow::Result<()> {
    let cutoff = db::now() - chrono::Duration::days(SESSION_RECORD_DAYS);
    let mut conn = state.pool.get()?;
    let n = diesel::delete(
        sessions::table.filter(
            sessions::expires_at
                .lt(cutoff)
                .or(sessions::revoked_at.lt(cutoff)),
        ),
    )
    .execute(&mut conn)?;
    if n > 0 {
        tracing::info!(records = n, "purged old session records");
    }
    Ok(())
}
