//! Database access: one connection type over SQLite and PostgreSQL, an r2d2 pool and migrations.
//!
//! * The backend is chosen by the URL scheme: `postgres://` / `postgresql://` is PostgreSQL,
//!   `sqlite://<path>` (or a bare path) is SQLite. The default is `sqlite://<data_dir>/dataop.db`.
//! * Every SQLite connection gets `journal_mode=WAL`, `foreign_keys=ON`, `busy_timeout` and
//!   `synchronous=NORMAL` from [`SqlitePragmas`] when the pool hands it out.
//! * Migrations live in `migrations/sqlite` and `migrations/postgres`, one directory per domain
//!   (`<date>-<seq>_<domain>`), mirrored for both backends, embedded at compile time and applied
//!   by [`connect`].
//! * Ids are `BIGINT` everywhere: `INTEGER PRIMARY KEY` on SQLite (an alias of the 64-bit rowid)
//!   and `BIGSERIAL PRIMARY KEY` on PostgreSQL; in `schema.rs` they are `BigInt` / `i64`.
//!   Timestamps are `TIMESTAMP` (UTC, `chrono::NaiveDateTime`, truncated to microseconds with
//!   [`now`]); decimals are `TEXT` holding the canonical `rust_decimal` string.
//! * Writes that read before they write (the audit chain does) go through
//!   [`write_transaction`], which serializes SQLite writers in this process so a deferred
//!   transaction never fails to upgrade its lock.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, CustomizeConnection, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Migrations for SQLite.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// Migrations for PostgreSQL.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend; all queries in the application are written against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// An SQLite connection (bundled libsqlite3).
    Sqlite(SqliteConnection),
    /// A PostgreSQL connection.
    Pg(PgConnection),
}

/// Which database engine a URL designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file database.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme.
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

impl DbConnection {
    /// The engine behind this connection.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Pg(_) => Backend::Postgres,
        }
    }
}

/// The file path of an SQLite URL (`sqlite://path`, `sqlite:path` or a bare path).
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// An r2d2 manager that opens the backend named by the URL scheme.
///
/// (The derived `MultiConnection::establish` tries each backend in turn, and SQLite accepts any
/// string as a file name, so the pool must not rely on it.)
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
    backend: Backend,
}

impl Manager {
    /// A manager for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            backend: Backend::of_url(url),
        }
    }

    /// Opens one connection outside any pool (used by the command-line tools).
    pub fn open(&self) -> ConnectionResult<DbConnection> {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(sqlite_path(&self.url))?;
                conn.batch_execute(SQLITE_PRAGMAS)
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                Ok(DbConnection::Sqlite(conn))
            }
            Backend::Postgres => PgConnection::establish(&self.url).map(DbConnection::Pg),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        self.open().map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// A PostgreSQL session opened while the database was read-only (a standby, or
    /// `default_transaction_read_only = on`) stays read-only after the database accepts
    /// writes again; for ten minutes after a write was refused as read-only, such sessions are
    /// dropped when they come back to the pool, so that new ones see the database as it is
    /// now and writes work again without a restart.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        let DbConnection::Pg(c) = conn else {
            return false;
        };
        let since = chrono::Utc::now().timestamp() - READ_ONLY_SEEN.load(Ordering::Relaxed);
        if since > READ_ONLY_WATCH_SECS {
            return false;
        }
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
            "current_setting('transaction_read_only')",
        ))
        .get_result::<String>(c)
        .map_or(true, |v| v == "on")
    }
}

/// When (Unix seconds) a write was last refused because the database is read-only.
static READ_ONLY_SEEN: AtomicI64 = AtomicI64::new(i64::MIN / 2);
/// How long after such a refusal pooled PostgreSQL sessions are checked on their return.
const READ_ONLY_WATCH_SECS: i64 = 600;

/// Notes that the database refused a write as read-only (see [`Manager::has_broken`]).
pub fn note_read_only() {
    READ_ONLY_SEEN.store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
}

/// Whether the database accepts writes now: a statement that writes nothing but needs write
/// access (an `UPDATE` of no row of the migrations table) in a write transaction.
pub fn probe_write(conn: &mut DbConnection) -> QueryResult<()> {
    write_transaction(conn, |c| {
        diesel::sql_query("UPDATE __diesel_schema_migrations SET version = version WHERE 1 = 0")
            .execute(c)
            .map(|_| ())
    })
}

const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; \
     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

/// Sets the SQLite pragmas on every connection the pool hands out.
#[derive(Debug)]
pub struct SqlitePragmas;

impl CustomizeConnection<DbConnection, r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            c.batch_execute(SQLITE_PRAGMAS)
                .map_err(r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// The connection pool.
pub type DbPool = Pool<Manager>;
/// A connection borrowed from the pool.
pub type PooledConn = PooledConnection<Manager>;

/// Opens the pool for `url`, creating the SQLite file's directory, and applies pending migrations.
pub fn connect(url: &str) -> anyhow::Result<DbPool> {
    let manager = Manager::new(url);
    if manager.backend == Backend::Sqlite
        && let Some(parent) = std::path::Path::new(sqlite_path(url)).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let pool = Pool::builder()
        .max_size(8)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(30))
        .connection_customizer(Box::new(SqlitePragmas))
        .build(manager)
        .context("opening the database")?;
    let mut conn = pool.get().context("connecting to the database")?;
    migrate(&mut conn)?;
    Ok(pool)
}

/// Applies the pending migrations of the connection's backend.
pub fn migrate(conn: &mut DbConnection) -> anyhow::Result<()> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConnection::Pg(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
    }
    .map_err(|e| anyhow::anyhow!("applying migrations: {e}"))?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(())
}

static SQLITE_WRITER: Mutex<()> = Mutex::new(());

thread_local! {
    static IN_WRITE: Cell<bool> = const { Cell::new(false) };
}

struct ResetInWrite;

impl Drop for ResetInWrite {
    fn drop(&mut self) {
        IN_WRITE.set(false);
    }
}

/// What a lock taken with [`lock`] serializes, until the transaction that took it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// The audit log's hash chain.
    Audit,
    /// The numbering of agreements.
    AgreementNumbers,
    /// The numbering of one dataset's versions.
    DatasetVersions(i64),
    /// The differencing checks and releases of one operator's runs.
    Releases(i64),
    /// The submissions of one operator's runs (run budget, remaining epsilon).
    Submissions(i64),
}

impl Lock {
    /// The advisory lock's key: a namespace in the high bits, the id in the low ones.
    fn key(self) -> i64 {
        match self {
            Lock::Audit => 7_340_032,
            Lock::AgreementNumbers => 4_242_001,
            Lock::DatasetVersions(id) => 0x0CA7_0000_0000_0000 ^ id,
            Lock::Releases(id) => 0x0D1F_0000_0000_0000 ^ id,
            Lock::Submissions(id) => 0x5B17_0000_0000_0000 ^ id,
        }
    }
}

/// Takes `lock` until the current transaction ends (call it inside [`write_transaction`]): on
/// PostgreSQL a transaction-scoped advisory lock, so the rules a command reads are not changed
/// by another server or worker before it commits; SQLite writers are serialized already by
/// [`write_transaction`].
pub fn lock(conn: &mut DbConnection, lock: Lock) -> diesel::QueryResult<()> {
    if conn.backend() == Backend::Postgres {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({})", lock.key())).execute(conn)?;
    }
    Ok(())
}

/// Runs `f` in a transaction meant for writing.
///
/// On SQLite the transactions of this process are serialized (the lock is re-entrant per
/// thread, so nesting is allowed and becomes a savepoint) and each begins with `BEGIN
/// IMMEDIATE`, which takes the database's write lock at once (waiting up to `busy_timeout`
/// while another process writes), so a transaction that read first never fails to upgrade its
/// lock because another process (a `dataop worker`, a command) wrote meanwhile. On PostgreSQL
/// it is a plain transaction. Use it for every transaction that calls
/// [`crate::supervision::audit::record`].
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    if conn.backend() == Backend::Sqlite && !IN_WRITE.get() {
        let _guard = SQLITE_WRITER.lock().unwrap_or_else(|e| e.into_inner());
        IN_WRITE.set(true);
        let _reset = ResetInWrite;
        immediate_transaction(conn, f)
    } else {
        conn.transaction(f)
    }
}

/// `f` in an SQLite `BEGIN IMMEDIATE` transaction, committed when it succeeds and rolled back
/// when it fails (as [`Connection::transaction`] does).
fn immediate_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <DbConnection as Connection>::TransactionManager;
    let DbConnection::Sqlite(inner) = conn else {
        return conn.transaction(f);
    };
    AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => match Manager::commit_transaction(conn) {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = Manager::rollback_transaction(conn);
                Err(e.into())
            }
        },
        Err(user_error) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(user_error),
            Err(rollback_error) => Err(rollback_error.into()),
        },
    }
}

/// The current real UTC time truncated to microseconds (what both backends store exactly).
///
/// Real time is for what lives in real time: sessions and API tokens (their JWTs carry real
/// expiry times), login throttling and the audit log's stamps. Everything else (every workflow,
/// every record's own stamps) takes its time from the platform [`crate::calendar::Clock`] (the
/// same instant in production; tests and demos move it).
pub fn now() -> chrono::NaiveDateTime {
    to_micros(chrono::Utc::now().naive_utc())
}

/// A time truncated to microseconds, so it reads back from either backend unchanged.
pub fn to_micros(t: chrono::NaiveDateTime) -> chrono::NaiveDateTime {
    chrono::DurationRound::duration_trunc(t, chrono::TimeDelta::microseconds(1)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another process's write between this transaction's read and its write (a second
    /// connection, outside this process's writer lock) must not make the transaction fail: it
    /// holds the write lock from its start, so the other writer waits.
    #[test]
    fn a_write_transaction_is_not_broken_by_another_process_writing() {
        let dir = std::env::temp_dir().join(format!(
            "dataop-db-immediate-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let manager = Manager::new(&url);
        let mut conn = manager.open().unwrap();
        conn.batch_execute("CREATE TABLE t (n INTEGER NOT NULL)")
            .unwrap();
        let other = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let manager = &manager;
            let other = s.spawn(move || {
                let mut c = manager.open().unwrap();
                rx.recv().unwrap();
                c.batch_execute("INSERT INTO t (n) VALUES (2)")
            });
            let mine = write_transaction(&mut conn, |c| {
                let n: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "(SELECT COUNT(*) FROM t)",
                ))
                .get_result(c)?;
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(200));
                diesel::sql_query(format!("INSERT INTO t (n) VALUES ({})", n + 1)).execute(c)
            });
            assert_eq!(mine, Ok(1));
            other.join().unwrap()
        });
        assert!(other.is_ok(), "{other:?}");
        let n: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT COUNT(*) FROM t)",
        ))
        .get_result(&mut conn)
        .unwrap();
        assert_eq!(n, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn backend_by_scheme() {
        assert_eq!(Backend::of_url("postgres://x/y"), Backend::Postgres);
        assert_eq!(Backend::of_url("postgresql://x/y"), Backend::Postgres);
        assert_eq!(Backend::of_url("sqlite://data/a.db"), Backend::Sqlite);
        assert_eq!(sqlite_path("sqlite://data/a.db"), "data/a.db");
        assert_eq!(sqlite_path("sqlite:///abs/a.db"), "/abs/a.db");
    }
}
