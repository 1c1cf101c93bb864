//! Authentication: sessions, API tokens, CSRF and the `CurrentUser` extractor.
//!
//! A browser session and an API token are both a JWT (HS256, signed with the data dir's
//! secret) naming a row of the `sessions` table (`kind` = `web` or `api`). Every request checks
//! that row, so logout, token revocation and disabling a user or organisation take effect at
//! once. Browsers carry the JWT in the `dataop_session` cookie (HttpOnly, SameSite=Strict,
//! Secure when configured); programs send `Authorization: Bearer <jwt>` to `/api/...`.
//!
//! CSRF: every page gets a token `HMAC(secret, "csrf|" + seed + "|" + session id)` where the
//! seed is a random value in the `dataop_csrf` cookie; every state-changing form posts it back
//! in a `csrf` field and the handler calls [`crate::web::Page::check_csrf`].

pub mod password;
pub mod throttle;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use futures_util::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::AppState;
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::schema::{organisations, sessions, users};
use crate::supervision::audit::Actor;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dataop_session";
/// Name of the CSRF seed cookie.
pub const CSRF_COOKIE: &str = "dataop_csrf";

/// What a user may do; one per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Platform operator staff: manages accounts and the platform.
    PlatformAdmin,
    /// The public-data authority: reviews, supervises, reads the audit log.
    Regulator,
    /// A data provider (e.g. the health commission): manages its catalog entries and data.
    Provider,
    /// A member of the expert committee.
    Expert,
    /// A user of a registered enterprise (applicant / authorized operator).
    Enterprise,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 5] = [
        Role::PlatformAdmin,
        Role::Regulator,
        Role::Provider,
        Role::Expert,
        Role::Enterprise,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Regulator => "regulator",
            Role::Provider => "provider",
            Role::Expert => "expert",
            Role::Enterprise => "enterprise",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The message key of the role's name.
    pub fn label_key(self) -> String {
        format!("accounts.role_{}", self.as_str())
    }
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// User id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Name shown on pages.
    pub display_name: String,
    /// The user's role.
    pub role: Role,
    /// The user's organisation.
    pub org_id: i64,
    /// The organisation's name.
    pub org_name: String,
    /// The organisation's kind (`regulator`, `provider`, `platform`, `enterprise`, `expert_panel`).
    pub org_kind: String,
    /// The server-side session (or API token) id.
    pub session_id: String,
    /// Whether the request was authenticated by an API bearer token.
    pub via_token: bool,
    /// The request's source address.
    pub addr: String,
}

impl CurrentUser {
    /// Whether the user has one of `roles`.
    pub fn has_role(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role)
    }

    /// `Err(403)` unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AppError> {
        if self.has_role(roles) {
            Ok(())
        } else {
            Err(AppError::forbidden())
        }
    }

    /// The audit actor for changes made by this user.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.id),
            name: self.username.clone(),
            org_id: Some(self.org_id),
            addr: self.addr.clone(),
        }
    }
}

/// The claims of a session or API-token JWT.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: i64,
    /// Session id (row of `sessions`).
    pub sid: String,
    /// `web` or `api`.
    pub kind: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// Signs the claims with the session key.
pub fn sign(state: &AppState, claims: &Claims) -> Result<String, AppError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&state.secrets.session_key),
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("signing a token: {e}")))
}

fn decode(state: &AppState, token: &str) -> Option<Claims> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(&state.secrets.session_key),
        &validation,
    )
    .ok()
    .map(|d| d.claims)
}

/// The source address of a request (the TCP peer; forwarded headers are not trusted).
pub fn source_addr(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A row of `sessions`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    /// Random id (UUID v4).
    pub id: String,
    /// Owner.
    pub user_id: i64,
    /// `web` or `api`.
    pub kind: String,
    /// Free label (for tokens).
    pub label: String,
    /// Where it was created from.
    pub source_addr: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Expiry time.
    pub expires_at: NaiveDateTime,
    /// Revocation time, if revoked.
    pub revoked_at: Option<NaiveDateTime>,
}

/// Creates a session (`kind` `web`) or an API token (`api`) for `user_id`, valid for `ttl`;
/// returns the row and the signed JWT. Call it inside the transaction that audits the login.
pub fn create_session(
    conn: &mut DbConnection,
    state: &AppState,
    user_id: i64,
    kind: &str,
    addr: &str,
    ttl: chrono::TimeDelta,
) -> Result<(SessionRow, String), AppError> {
    let now = crate::db::now();
    let row = SessionRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id,
        kind: kind.to_owned(),
        label: String::new(),
        source_addr: addr.to_owned(),
        created_at: now,
        expires_at: now + ttl,
        revoked_at: None,
    };
    diesel::insert_into(sessions::table)
        .values(&row)
        .execute(conn)?;
    let token = sign(
        state,
        &Claims {
            sub: user_id,
            sid: row.id.clone(),
            kind: kind.to_owned(),
            iat: now.and_utc().timestamp(),
            exp: row.expires_at.and_utc().timestamp(),
        },
    )?;
    Ok((row, token))
}

/// Revokes every live session and token of the given users.
pub fn revoke_all_for_users(conn: &mut DbConnection, user_ids: &[i64]) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq_any(user_ids))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(crate::db::now()))
    .execute(conn)
}

#[derive(Clone)]
struct Resolved(Option<CurrentUser>);

/// The bearer token of a request to `/api/...` (the scheme in any case, RFC 7235), or the
/// session cookie.
fn presented_token(req: &HttpRequest) -> Option<(String, &'static str)> {
    if req.path().starts_with("/api/")
        && let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION)
        && let Ok(h) = h.to_str()
        && let Some((scheme, t)) = h.trim_start().split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some((t.trim().to_owned(), "api"));
    }
    req.cookie(SESSION_COOKIE)
        .map(|c| (c.value().to_owned(), "web"))
}

/// The logged-in user of the request, if any (cached for the request).
pub async fn resolve(req: &HttpRequest) -> Result<Option<CurrentUser>, AppError> {
    if let Some(r) = req.extensions().get::<Resolved>() {
        return Ok(r.0.clone());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("application state missing")))?
        .clone();
    let user = match presented_token(req) {
        None => None,
        Some((token, kind)) => match decode(&state, &token) {
            Some(claims) if claims.kind == kind => {
                let addr = source_addr(req);
                crate::web::db(&state, move |conn| load_user(conn, &claims, addr)).await?
            }
            _ => None,
        },
    };
    req.extensions_mut().insert(Resolved(user.clone()));
    Ok(user)
}

fn load_user(
    conn: &mut DbConnection,
    claims: &Claims,
    addr: String,
) -> Result<Option<CurrentUser>, AppError> {
    let now = crate::db::now();
    let row = sessions::table
        .inner_join(users::table.inner_join(organisations::table))
        .filter(sessions::id.eq(&claims.sid))
        .filter(sessions::user_id.eq(claims.sub))
        .filter(sessions::kind.eq(&claims.kind))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(users::status.eq("active"))
        .filter(organisations::status.ne("disabled"))
        .select((
            users::id,
            users::username,
            users::display_name,
            users::role,
            organisations::id,
            organisations::name,
            organisations::kind,
        ))
        .first::<(i64, String, String, String, i64, String, String)>(conn)
        .optional()?;
    Ok(row.and_then(
        |(id, username, display_name, role, org_id, org_name, org_kind)| {
            Some(CurrentUser {
                id,
                username,
                display_name,
                role: Role::parse(&role)?,
                org_id,
                org_name,
                org_kind,
                session_id: claims.sid.clone(),
                via_token: claims.kind == "api",
                addr,
            })
        },
    ))
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { resolve(&req).await?.ok_or_else(AppError::unauthorized) })
    }
}

/// The logged-in user if there is one (never fails for anonymous requests).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequest for MaybeUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { resolve(&req).await.map(MaybeUser) })
    }
}

/// The CSRF token for a seed and a session id.
pub fn csrf_token(state: &AppState, seed: &str, session_id: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&state.secrets.session_key)
        .expect("HMAC accepts any key length");
    mac.update(b"csrf|");
    mac.update(seed.as_bytes());
    mac.update(b"|");
    mac.update(session_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time string comparison.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
