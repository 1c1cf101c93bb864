//! Delivering the outbox: SMTP when configured, otherwise `.eml` files in the data dir.
//!
//! Every outbox row follows the state machine of [`super::machine`]: a `pending` row is
//! claimed by one worker ([`ops::claim`]), sent, and its outcome recorded
//! ([`ops::record_outcome`]): `sent`, or still `pending` with the next attempt pushed back by
//! [`ops::BACKOFF_SECS`], until the [`super::machine::MAX_ATTEMPTS`]-th failure makes it
//! `failed` with the last error; an administrator may put a `failed` row back to `pending`
//! ([`ops::retry`]).
//!
//! Claiming is one conditional `UPDATE` that also moves `next_attempt_at` a lease
//! ([`ops::LEASE_SECS`]) ahead: of two servers that see the same due row, exactly one updates
//! it, and a server that dies while sending leaves a row that becomes due again once the lease
//! is over. Within one process a mutex keeps the prompt worker ([`spawn_worker`]) and the
//! scheduler's [`deliver_due`] from overlapping, so a test that calls
//! [`crate::scheduler::tick`] sees every due message handled when it returns.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use anyhow::Context as _;
use diesel::prelude::*;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{SmtpTransport, Transport as _};

use super::machine::MailState;
use super::ops;
use crate::AppState;
use crate::schema::mail_outbox;

/// Most messages handled in one pass.
pub const BATCH: i64 = 50;

/// After this long a pass claims no further message (so a slow mail server cannot hold up the
/// scheduler for long); the rest waits for the next pass.
pub const PASS_BUDGET: Duration = Duration::from_secs(30);

/// How often the prompt worker looks for due messages.
pub const POLL: Duration = Duration::from_secs(1);

/// Longest wait for the mail server on one connection.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

static DELIVERING: Mutex<()> = Mutex::new(());

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

/// Sends every due message (at most [`BATCH`], for at most about [`PASS_BUDGET`]); returns how
/// many were attempted. Failures are recorded on the rows, never returned: only a database
/// error is.
pub fn deliver_due(state: &AppState) -> anyhow::Result<usize> {
    let _one_at_a_time = DELIVERING.lock().unwrap_or_else(|e| e.into_inner());
    let mut conn = state.pool.get()?;
    let now = state.clock.now();
    let due: Vec<Due> = mail_outbox::table
        .filter(mail_outbox::state.eq(MailState::Pending.as_str()))
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
        if !ops::claim(&mut conn, row.id, row.attempts, now)? {
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
        ops::record_outcome(&mut conn, row.id, attempts, outcome, state.clock.now())
            .map_err(|e| anyhow::anyhow!("recording the delivery of mail {}: {e}", row.id))?;
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
    use super::*;

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
