//! The one error type of request handlers.
//!
//! An [`AppError`] carries an HTTP status and a message-catalog key (with `{name}` arguments),
//! so the message is shown in the reader's language. [`crate::web::page_middleware`] renders
//! it: a JSON body `{"error": {"status", "code", "message"}}` under `/api`, otherwise an HTML
//! page in the site layout (a 401 on a page redirects to the login form instead). Internal
//! errors are logged and answered with a 500 that reveals nothing.
//!
//! A write that fails for want of a resource, not because of a bug, says so ([`Shortage`]):
//! a full disk (the data dir's file system, or the database's) answers 507 Insufficient
//! Storage, and a database or file system that cannot be written (a read-only mount, a
//! PostgreSQL standby or `default_transaction_read_only`) answers 503 Service Unavailable.
//! Both are logged as warnings and clear up by themselves once the cause is gone.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::i18n::{self, Lang};

/// An error answered to a client.
#[derive(Debug)]
pub enum AppError {
    /// A client error (4xx) described by a message key.
    Http {
        /// The HTTP status.
        status: StatusCode,
        /// The message-catalog key, e.g. `accounts.err_bad_credentials`.
        key: String,
        /// Values for `{name}` placeholders in the message.
        args: Vec<(&'static str, String)>,
    },
    /// A real internal failure; logged, never shown.
    Internal(anyhow::Error),
}

impl AppError {
    /// A client error with `status` and message `key`.
    pub fn http(status: StatusCode, key: impl Into<String>) -> Self {
        Self::Http {
            status,
            key: key.into(),
            args: Vec::new(),
        }
    }

    /// 400 with message `key`.
    pub fn bad_request(key: impl Into<String>) -> Self {
        Self::http(StatusCode::BAD_REQUEST, key)
    }

    /// 401: the request needs a logged-in user.
    pub fn unauthorized() -> Self {
        Self::http(StatusCode::UNAUTHORIZED, "common.error_unauthorized")
    }

    /// 403: the user may not do this.
    pub fn forbidden() -> Self {
        Self::http(StatusCode::FORBIDDEN, "common.error_forbidden")
    }

    /// 404: no such page or object (also used when the user may not know it exists).
    pub fn not_found() -> Self {
        Self::http(StatusCode::NOT_FOUND, "common.error_not_found")
    }

    /// 409 with message `key`.
    pub fn conflict(key: impl Into<String>) -> Self {
        Self::http(StatusCode::CONFLICT, key)
    }

    /// 422 with message `key`.
    pub fn invalid(key: impl Into<String>) -> Self {
        Self::http(StatusCode::UNPROCESSABLE_ENTITY, key)
    }

    /// Adds a `{name}` argument to the message.
    pub fn arg(mut self, name: &'static str, value: impl ToString) -> Self {
        if let Self::Http { args, .. } = &mut self {
            args.push((name, value.to_string()));
        }
        self
    }

    /// The status and the message in `lang`.
    pub fn message(&self, lang: Lang) -> (StatusCode, String, String) {
        match self {
            Self::Http { status, key, args } => {
                (*status, key.clone(), i18n::t_args(lang, key, args))
            }
            Self::Internal(e) => match Shortage::of_any(e) {
                Some(s) => s.error(&format_args!("{e:#}")).message(lang),
                None => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "common.error_internal".into(),
                    i18n::t(lang, "common.error_internal").to_owned(),
                ),
            },
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { status, key, .. } => write!(f, "{status}: {key}"),
            Self::Internal(e) => write!(f, "internal error: {e:#}"),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Http { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(e) = self {
            tracing::error!("internal error: {e:#}");
        }
        let (status, _, message) = self.message(Lang::default());
        HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(message)
    }
}

/// A resource the server lacks to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    /// No space left on the data dir's or the database's storage: 507.
    StorageFull,
    /// The database (or the data dir) accepts no writes: 503.
    ReadOnly,
}

impl Shortage {
    /// Which shortage made an I/O operation fail, if one did.
    pub fn of_io(e: &std::io::Error) -> Option<Self> {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
                Some(Self::StorageFull)
            }
            ErrorKind::ReadOnlyFilesystem => Some(Self::ReadOnly),
            _ => None,
        }
    }

    /// Which shortage made a database statement fail, if one did: SQLite's `SQLITE_FULL` and
    /// `SQLITE_READONLY` (reported by their messages), PostgreSQL's disk-full errors and
    /// read-only transactions (SQLSTATE 25006).
    pub fn of_db(e: &diesel::result::Error) -> Option<Self> {
        use diesel::result::{DatabaseErrorKind, Error};
        let Error::DatabaseError(kind, info) = e else {
            return None;
        };
        let message = info.message();
        if matches!(kind, DatabaseErrorKind::ReadOnlyTransaction)
            || message.contains("attempt to write a readonly database")
        {
            Some(Self::ReadOnly)
        } else if message.contains("database or disk is full")
            || message.contains("No space left on device")
        {
            Some(Self::StorageFull)
        } else {
            None
        }
    }

    /// Which shortage is behind an error or any of its causes, if one is.
    pub fn of_any(e: &anyhow::Error) -> Option<Self> {
        e.chain().find_map(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(Self::of_io)
                .or_else(|| {
                    cause
                        .downcast_ref::<diesel::result::Error>()
                        .and_then(Self::of_db)
                })
        })
    }

    /// The answer to a request that met the shortage (logged as a warning with its cause).
    pub fn error(self, cause: &dyn std::fmt::Display) -> AppError {
        tracing::warn!(shortage = ?self, "a write failed: {cause}");
        if self == Self::ReadOnly {
            crate::db::note_read_only();
        }
        match self {
            Self::StorageFull => AppError::http(
                StatusCode::INSUFFICIENT_STORAGE,
                "common.error_storage_full",
            ),
            Self::ReadOnly => {
                AppError::http(StatusCode::SERVICE_UNAVAILABLE, "common.error_read_only")
            }
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        match Shortage::of_any(&e) {
            Some(s) => s.error(&format_args!("{e:#}")),
            None => Self::Internal(e),
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::not_found(),
            other => match Shortage::of_db(&other) {
                Some(s) => s.error(&other),
                None => Self::Internal(other.into()),
            },
        }
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::Internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        Self::Internal(anyhow::anyhow!("template rendering failed: {e}"))
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        match Shortage::of_io(&e) {
            Some(s) => s.error(&e),
            None => Self::Internal(e.into()),
        }
    }
}

/// The message key used for errors raised by actix itself (bad form data, unknown route, ...).
pub fn key_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "common.error_bad_request",
        401 => "common.error_unauthorized",
        403 => "common.error_forbidden",
        404 => "common.error_not_found",
        405 => "common.error_method",
        413 => "common.error_too_large",
        429 => "common.error_too_many",
        503 => "common.error_read_only",
        507 => "common.error_storage_full",
        s if s >= 500 => "common.error_internal",
        _ => "common.error_bad_request",
    }
}
