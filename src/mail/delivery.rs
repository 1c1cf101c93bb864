//! Delivering the outbox: SMTP when configured, otherwise `.eml` files in the data dir.
//!
//! Every outbox row follows one small state machine ([`MailState::apply`]): a `pending` row is
//! claimed by one worker, sent, and becomes `sent`; a failed attempt leaves it `pending` with
//! the next attempt pushed back by [`BACKOFF_SECS`], until the [`MAX_ATTEMPTS`]-th failure makes
//! it `failed` with the last error; an administrator may put a `failed` row back to `pending`.
//!
//! Claiming is one conditional `UPDATE` (`... WHERE id = ? AND state = 'pending' AND attempts
//! = ?`) that also moves `next_attempt_at` a lease ([`LEASE_SECS`]) ahead: of two servers that
//! see the same due row, exactly one updates it, and a server that dies while sending leaves a
//! row that becomes due again once the lease is over. Within one process a mutex keeps the
//! prompt worker ([`spawn_worker`]) and the scheduler's [`deliver_due`] from overlapping, so a
//! test that calls [`crate::scheduler::tick`] sees every due message handled when it returns.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use anyhow::Context as _;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{SmtpTransport, Transport as _};

use crate::AppState;
use crate::db::DbConnection;
use crate::schema::mail_outbox;

/// Attempts before a message is given up (`failed`).
pub const MAX_ATTEMPTS: i32 = 5;

/// The wait after the n-th failed attempt (1 min, 5 min, 30 min, 2 h).
pub const BACKOFF_SECS: [i64; 4] = [60, 5 * 60, 30 * 60, 2 * 3600];

/// How long a claimed message is reserved for the worker sending it.
pub const LEASE_SECS: i64 = 10 * 60;

/// Most messages handled in one pass.
pub const BATCH: i64 = 50;

/// After this long a pass claims no further message (so a slow mail server cannot hold up the
/// scheduler for long); the rest waits for the next pass.
pub const PASS_BUDGET: Duration = Duration::from_secs(30);

/// How often the prompt worker looks for due messages.
pub const POLL: Duration = Duration::from_secs(1);

/// Longest wait for the mail server on one connection.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest error text kept on a row.
const MAX_ERROR_CHARS: usize = 1000;

static DELIVERING: Mutex<()> = Mutex::new(());

/// The state of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    /// Waiting for a (further) delivery attempt.
    Pending,
    /// Delivered, or written to the file outbox.
    Sent,
    /// Given up after the last attempt.
    Failed,
}

/// What happens to an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailAction {
    /// The server accepted it (or the file was written).
    Delivered,
    /// An attempt failed; `attempts` is the number made so far, this one included.
    AttemptFailed {
        /// Attempts made, including the failed one.
        attempts: i32,
    },
    /// An administrator asks for one more attempt.
    Retry,
}

/// Why a transition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The message key explaining it.
    pub key: &'static str,
}

impl MailState {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Pending => super::state::PENDING,
            MailState::Sent => super::state::SENT,
            MailState::Failed => super::state::FAILED,
        }
    }

    /// Parses a stored code.
    pub fn parse(s: &str) -> Option<Self> {
        [MailState::Pending, MailState::Sent, MailState::Failed]
            .into_iter()
            .find(|m| m.as_str() == s)
    }

    /// The one transition function of the outbox.
    pub fn apply(self, action: MailAction) -> Result<MailState, Refusal> {
        match (self, action) {
            (MailState::Pending, MailAction::Delivered) => Ok(MailState::Sent),
            (MailState::Pending, MailAction::AttemptFailed { attempts }) => {
                Ok(if attempts >= MAX_ATTEMPTS {
                    MailState::Failed
                } else {
                    MailState::Pending
                })
            }
            (MailState::Failed, MailAction::Retry) => Ok(MailState::Pending),
            (MailState::Sent, _) => Err(Refusal {
                key: "mail.err_already_sent",
            }),
            (MailState::Pending, MailAction::Retry) => Err(Refusal {
                key: "mail.err_retry_pending",
            }),
            (MailState::Failed, _) => Err(Refusal {
                key: "mail.err_not_pending",
            }),
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones.
pub fn backoff(attempts: i32) -> chrono::Duration {
    let i = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
    chrono::Duration::seconds(BACKOFF_SECS[i.min(BACKOFF_SECS.len() - 1)])
}

/// Where messages go.
pub enum Outlet {
    /// An SMTP server.
    Smtp(Box<SmtpTransport>),
    /// `.eml` files in this directory.
    Files(PathBuf),
}

impl Outlet {
    /// The outlet the configuration names.
    pub fn from_config(config: &crate::Config) -> anyhow::Result<Self> {
        match &config.smtp_url {
            Some(url) => {
                let transport = SmtpTransport::from_url(url)
                    .map_err(|e| anyhow::anyhow!("the SMTP URL is not valid: {e}"))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Ok(Outlet::Smtp(Box::new(transport)))
            }
            None => Ok(Outlet::Files(outbox_dir(&config.data_dir))),
        }
    }

    /// Delivers one message; `Some(path)` when it was written to a file.
    fn deliver(&self, id: i64, message: &Message) -> Result<Option<String>, String> {
        match self {
            Outlet::Smtp(t) => t.send(message).map(|_| None).map_err(|e| e.to_string()),
            Outlet::Files(dir) => write_eml(dir, id, message)
                .map(|p| Some(p.display().to_string()))
                .map_err(|e| format!("{e:#}")),
        }
    }
}

/// The file outbox directory: `<data_dir>/outbox`.
pub fn outbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox")
}

fn write_eml(dir: &Path, id: i64, message: &Message) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{id:08}.eml"));
    let tmp = dir.join(format!(".{id:08}.eml.tmp"));
    std::fs::write(&tmp, message.formatted())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

/// A row to send.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mail_outbox)]
struct Due {
    id: i64,
    to_addr: String,
    subject: String,
    body: String,
    attempts: i32,
}

/// Builds the RFC 5322 message of an outbox row (UTF-8 subject and body, MIME-encoded).
pub fn build_message(
    from: &str,
    id: i64,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<Message, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("the sender address is not valid: {e}"))?;
    let to: Mailbox = to
        .parse()
        .map_err(|e| format!("the recipient address is not valid: {e}"))?;
    let domain = from.email.domain().to_owned();
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<outbox-{id}@{domain}>")))
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|e| e.to_string())
}

fn claim(conn: &mut DbConnection, row: &Due, now: NaiveDateTime) -> QueryResult<bool> {
    let n = diesel::update(
        mail_outbox::table
            .filter(mail_outbox::id.eq(row.id))
            .filter(mail_outbox::state.eq(super::state::PENDING))
            .filter(mail_outbox::attempts.eq(row.attempts))
            .filter(mail_outbox::next_attempt_at.le(now)),
    )
    .set((
        mail_outbox::attempts.eq(row.attempts + 1),
        mail_outbox::next_attempt_at.eq(now + chrono::Duration::seconds(LEASE_SECS)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

fn record(
    conn: &mut DbConnection,
    id: i64,
    attempts: i32,
    outcome: Result<Option<String>, String>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let mine = mail_outbox::table
        .filter(mail_outbox::id.eq(id))
        .filter(mail_outbox::state.eq(super::state::PENDING))
        .filter(mail_outbox::attempts.eq(attempts));
    match outcome {
        Ok(path) => {
            let to = MailState::Pending
                .apply(MailAction::Delivered)
                .unwrap_or(MailState::Sent);
            diesel::update(mine)
                .set((
                    mail_outbox::state.eq(to.as_str()),
                    mail_outbox::sent_at.eq(Some(now)),
                    mail_outbox::eml_path.eq(path),
                    mail_outbox::last_error.eq(""),
                ))
                .execute(conn)?;
        }
        Err(error) => {
            let to = MailState::Pending
                .apply(MailAction::AttemptFailed { attempts })
                .unwrap_or(MailState::Failed);
            let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
            tracing::warn!(id, attempts, %error, "mail delivery failed");
            diesel::update(mine)
                .set((
                    mail_outbox::state.eq(to.as_str()),
                    mail_outbox::next_attempt_at.eq(now + backoff(attempts)),
                    mail_outbox::last_error.eq(error),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Sends every due message (at most [`BATCH`], for at most about [`PASS_BUDGET`]); returns how
/// many were attempted. Failures are recorded on the rows, never returned: only a database
/// error is.
pub fn deliver_due(state: &AppState) -> anyhow::Result<usize> {
    let _one_at_a_time = DELIVERING.lock().unwrap_or_else(|e| e.into_inner());
    let mut conn = state.pool.get()?;
    let now = state.clock.now();
    let due: Vec<Due> = mail_outbox::table
        .filter(mail_outbox::state.eq(super::state::PENDING))
        .filter(mail_outbox::next_attempt_at.le(now))
        .order((mail_outbox::next_attempt_at, mail_outbox::id))
        .limit(BATCH)
        .select(Due::as_select())
        .load(&mut conn)?;
    if due.is_empty() {
        return Ok(0);
    }
    let outlet = Outlet::from_config(&state.config);
    let started = std::time::Instant::now();
    let mut attempted = 0;
    for row in due {
        if started.elapsed() > PASS_BUDGET {
            break;
        }
        if !claim(&mut conn, &row, now)? {
            continue;
        }
        attempted += 1;
        let attempts = row.attempts + 1;
        let outcome = match &outlet {
            Ok(outlet) => build_message(
                &state.config.mail_from,
                row.id,
                &row.to_addr,
                &row.subject,
                &row.body,
            )
            .and_then(|m| outlet.deliver(row.id, &m)),
            Err(e) => Err(format!("{e:#}")),
        };
        record(&mut conn, row.id, attempts, outcome, state.clock.now())?;
    }
    Ok(attempted)
}

/// The scheduler job: [`deliver_due`].
pub fn scheduled(state: &AppState) -> anyhow::Result<()> {
    deliver_due(state).map(|_| ())
}

/// Starts the thread that delivers messages within about a second of their step. It holds
/// only a weak reference, and ends when the application state is dropped.
pub fn spawn_worker(state: Weak<AppState>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dataop-mail".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL);
                let Some(state) = state.upgrade() else {
                    return;
                };
                if let Err(e) = deliver_due(&state) {
                    tracing::warn!(error = %e, "mail delivery pass failed; retried shortly");
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use diesel::Connection as _;
    use diesel::sqlite::SqliteConnection;

    use super::*;

    #[test]
    fn a_due_message_is_claimed_once() {
        let mut conn = DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        crate::db::migrate(&mut conn).unwrap();
        let notice = crate::mail::Notice {
            template: "accounts.mail.org_verified",
            args: &[("org", "某公司".into()), ("code", "X".into())],
            object_type: "organisation",
            object_id: "1".into(),
        };
        crate::mail::to_addr(&mut conn, "a@example.com", &notice).unwrap();
        let now = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(1);
        let due: Vec<Due> = mail_outbox::table
            .select(Due::as_select())
            .load(&mut conn)
            .unwrap();
        assert_eq!(due.len(), 1);
        // Two servers that both saw the row: only the first claim wins.
        assert!(claim(&mut conn, &due[0], now).unwrap());
        assert!(!claim(&mut conn, &due[0], now).unwrap());
        let (attempts, next): (i32, NaiveDateTime) = mail_outbox::table
            .select((mail_outbox::attempts, mail_outbox::next_attempt_at))
            .first(&mut conn)
            .unwrap();
        assert_eq!(attempts, 1);
        assert_eq!(next, now + chrono::Duration::seconds(LEASE_SECS), "leased");
        // Its outcome is recorded once; a stale worker's record changes nothing.
        record(&mut conn, due[0].id, 1, Ok(None), now).unwrap();
        record(&mut conn, due[0].id, 1, Err("late".into()), now).unwrap();
        let (state, error): (String, String) = mail_outbox::table
            .select((mail_outbox::state, mail_outbox::last_error))
            .first(&mut conn)
            .unwrap();
        assert_eq!((state.as_str(), error.as_str()), ("sent", ""));
    }

    #[test]
    fn delivered_pending_becomes_sent() {
        assert_eq!(
            MailState::Pending.apply(MailAction::Delivered),
            Ok(MailState::Sent)
        );
    }

    #[test]
    fn failures_stay_pending_until_the_last_attempt() {
        for attempts in 1..MAX_ATTEMPTS {
            assert_eq!(
                MailState::Pending.apply(MailAction::AttemptFailed { attempts }),
                Ok(MailState::Pending)
            );
        }
        assert_eq!(
            MailState::Pending.apply(MailAction::AttemptFailed {
                attempts: MAX_ATTEMPTS
            }),
            Ok(MailState::Failed)
        );
    }

    #[test]
    fn only_failed_messages_are_retried() {
        assert_eq!(
            MailState::Failed.apply(MailAction::Retry),
            Ok(MailState::Pending)
        );
        assert_eq!(
            MailState::Pending.apply(MailAction::Retry),
            Err(Refusal {
                key: "mail.err_retry_pending"
            })
        );
        assert_eq!(
            MailState::Sent.apply(MailAction::Retry),
            Err(Refusal {
                key: "mail.err_already_sent"
            })
        );
    }

    #[test]
    fn sent_and_failed_take_no_delivery_outcome() {
        for action in [
            MailAction::Delivered,
            MailAction::AttemptFailed { attempts: 1 },
        ] {
            assert!(MailState::Sent.apply(action).is_err());
            assert_eq!(
                MailState::Failed.apply(action),
                Err(Refusal {
                    key: "mail.err_not_pending"
                })
            );
        }
    }

    #[test]
    fn states_round_trip() {
        for s in [MailState::Pending, MailState::Sent, MailState::Failed] {
            assert_eq!(MailState::parse(s.as_str()), Some(s));
        }
        assert_eq!(MailState::parse("sending"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), chrono::Duration::minutes(1));
        assert_eq!(backoff(2), chrono::Duration::minutes(5));
        assert_eq!(backoff(3), chrono::Duration::minutes(30));
        assert_eq!(backoff(4), chrono::Duration::hours(2));
        assert_eq!(backoff(40), chrono::Duration::hours(2));
    }

    #[test]
    fn messages_encode_chinese_subjects_and_bodies() {
        let m = build_message(
            "dataop <noreply@localhost>",
            7,
            "alpha@example.com",
            "您的单位已通过核验 / Your organisation is verified",
            "您好，阿尔法。\n",
        )
        .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Subject: =?utf-8?"), "{raw}");
        assert!(raw.contains("To: alpha@example.com"), "{raw}");
        assert!(raw.contains("Message-ID: <outbox-7@localhost>"), "{raw}");
        assert!(!raw.contains("您好"), "the body is transfer-encoded: {raw}");
        assert!(
            build_message("dataop <noreply@localhost>", 1, "not an address", "s", "b").is_err()
        );
    }
}
