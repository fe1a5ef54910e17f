//! Database access for both backends through one code path.
//!
//! `DbConn` is an enum over the two diesel connections; `on_conn!` runs the same
//! diesel DSL against whichever one it holds (the pattern vaultwarden uses), so
//! each query is written once. Diesel is blocking: `Db::run` executes closures on
//! tokio's blocking pool, bounded by a semaphore the size of the connection pool,
//! never on the actix workers.

pub mod schema;
pub mod ticket_numbers;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tokio::sync::Semaphore;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

pub enum DbConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$c` bound to the concrete diesel connection.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// Runs `f` in one write transaction on whichever backend `conn` holds.
/// SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so two writers
/// never deadlock upgrading a read lock; PostgreSQL uses a plain `BEGIN`.
/// Rolled back if `f` fails.
pub fn transaction<T, E>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DbError>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        DbConn::Postgres(c) => AnsiTransactionManager::begin_transaction(c),
    }
    .map_err(DbError::from)?;
    match f(conn) {
        Ok(v) => {
            on_conn!(conn, |c| AnsiTransactionManager::commit_transaction(c))
                .map_err(DbError::from)?;
            Ok(v)
        }
        Err(e) => {
            if let Err(rb) = on_conn!(conn, |c| AnsiTransactionManager::rollback_transaction(c)) {
                tracing::error!(error = %rb, "rollback failed");
            }
            Err(e)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("could not connect to the database: {0}")]
    Connect(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database task failed: {0}")]
    Task(String),
}

impl DbError {
    /// The storage cannot take requests right now (unreachable, disk full,
    /// read-only, I/O error): worth retrying later, unlike a bad query or
    /// corrupt data. Callers answer 503 with `Retry-After`, devices get a
    /// retryable close.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error as E};
        match self {
            DbError::Pool(_) | DbError::Connect(_) | DbError::Task(_) => true,
            DbError::Migration(_) | DbError::Corrupt(_) => false,
            DbError::Query(E::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            DbError::Query(E::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                let m = info.message().to_lowercase();
                [
                    "disk is full",
                    "readonly",
                    "read-only",
                    "disk i/o error",
                    "unable to open",
                    "database is locked",
                    "connection",
                    "terminating",
                    "shutting down",
                    "starting up",
                ]
                .iter()
                .any(|needle| m.contains(needle))
            }
            DbError::Query(E::BrokenTransactionManager) => true,
            DbError::Query(_) => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the data lives: `postgres://…` / `postgresql://…`, or else a SQLite file
/// path (an optional `sqlite://` prefix is stripped).
#[derive(Clone, Debug)]
pub struct DbTarget {
    pub backend: Backend,
    pub url: String,
}

impl DbTarget {
    pub fn parse(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self {
                backend: Backend::Postgres,
                url: url.to_string(),
            }
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            Self {
                backend: Backend::Sqlite,
                url: path.to_string(),
            }
        }
    }

    /// The URL with any password hidden, for logs.
    pub fn display(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite file {}", self.url),
            Backend::Postgres => match (self.url.find("://"), self.url.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let creds = &self.url[s + 3..at];
                    let user = creds.split(':').next().unwrap_or("");
                    format!("{}{user}:***{}", &self.url[..s + 3], &self.url[at..])
                }
                _ => self.url.clone(),
            },
        }
    }

    /// Refuses a SQLite file that exists but cannot be written, before SQLite
    /// opens it (it would fail later without naming the file, and leave a
    /// read-only `-shm` file behind that blocks the next start).
    fn check_writable(&self) -> Result<(), DbError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        for file in [self.url.clone(), format!("{}-wal", self.url)] {
            let file = std::path::Path::new(&file);
            if !file.exists() {
                continue;
            }
            if let Err(e) = std::fs::OpenOptions::new().append(true).open(file) {
                return Err(DbError::Connect(format!(
                    "the database file {} is not writable ({e}); check its permissions, \
                     attributes (chattr) and whether the filesystem is mounted read-only",
                    file.display()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn establish(&self) -> Result<DbConn, DbError> {
        match self.backend {
            Backend::Sqlite => {
                let mut c = SqliteConnection::establish(&self.url)
                    .map_err(|e| DbError::Connect(e.to_string()))?;
                // WAL lets loads read while the committer writes. synchronous=FULL
                // fsyncs the WAL on every commit: an acknowledged change survives
                // power loss, not just a process crash. Group commit (see
                // storage::committer) amortises that fsync over many messages.
                c.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .map_err(|e| DbError::Connect(e.to_string()))?;
                Ok(DbConn::Sqlite(c))
            }
            Backend::Postgres => PgConnection::establish(&with_connect_timeout(&self.url))
                .map(DbConn::Postgres)
                .map_err(|e| DbError::Connect(e.to_string())),
        }
    }
}

/// libpq waits for an unreachable host as long as TCP does; a database that is
/// down must be reported within seconds (health checks, devices retrying).
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&connect_timeout=3")
    } else {
        format!("{url}?connect_timeout=3")
    }
}

struct Manager(DbTarget);

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = DbError;

    fn connect(&self) -> Result<DbConn, DbError> {
        self.0.establish()
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), DbError> {
        on_conn!(conn, |c| c.batch_execute("SELECT 1").map_err(DbError::from))
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        false
    }
}

#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    permits: Arc<Semaphore>,
    pub target: Arc<DbTarget>,
}

impl Db {
    /// Connects, creates the SQLite file if needed, and runs pending migrations.
    pub fn open(url: &str, pool_size: u32) -> Result<Self, DbError> {
        let target = DbTarget::parse(url);
        if target.backend == Backend::Sqlite {
            if let Some(dir) = std::path::Path::new(&target.url).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DbError::Connect(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
        }
        target.check_writable()?;
        // Fail fast with the real reason (r2d2 would only report a timeout).
        let mut first = target.establish()?;
        run_migrations(&mut first)?;
        drop(first);
        let pool = Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            // A commit or request waits this long for a connection before it
            // fails with a retryable error (an outage must not stall silently).
            .connection_timeout(Duration::from_secs(3))
            .build(Manager(target.clone()))
            .map_err(|e| DbError::Connect(e.to_string()))?;
        Ok(Self {
            pool,
            permits: Arc::new(Semaphore::new(pool_size as usize)),
            target: Arc::new(target),
        })
    }

    pub fn backend(&self) -> Backend {
        self.target.backend
    }

    /// Runs blocking diesel code off the async workers.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, DbError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| DbError::Task(e.to_string()))?;
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// A health probe: `SELECT 1` on a pooled connection, answering within
    /// `within` whatever the pool or database is doing.
    pub async fn ping_within(&self, within: Duration) -> Result<(), DbError> {
        let pool = self.pool.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get_timeout(within)?;
            ping(&mut conn)
        });
        match tokio::time::timeout(within, probe).await {
            Ok(r) => r.map_err(|e| DbError::Task(e.to_string()))?,
            Err(_) => Err(DbError::Connect(format!(
                "no answer within {} ms",
                within.as_millis()
            ))),
        }
    }

    /// Same as `run`, for code that is already on a blocking thread (CLI commands).
    pub fn run_blocking<T>(
        &self,
        f: impl FnOnce(&mut DbConn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }
}

fn run_migrations(conn: &mut DbConn) -> Result<(), DbError> {
    let result = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConn::Postgres(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
    };
    match result {
        Ok(0) => Ok(()),
        Ok(n) => {
            tracing::info!(applied = n, "database migrations applied");
            Ok(())
        }
        Err(e) => Err(DbError::Migration(e.to_string())),
    }
}

/// Cheap round trip used by `/health`.
pub fn ping(conn: &mut DbConn) -> Result<(), DbError> {
    on_conn!(conn, |c| c.batch_execute("SELECT 1").map_err(DbError::from))
}

/// Now as the RFC 3339 text (UTC, milliseconds) history records carry.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_backend_from_url_and_hides_passwords() {
        assert_eq!(
            DbTarget::parse("postgres://u:p@h/db").backend,
            Backend::Postgres
        );
        assert_eq!(
            DbTarget::parse("postgresql://h/db").backend,
            Backend::Postgres
        );
        let t = DbTarget::parse("sqlite://data/x.db");
        assert_eq!((t.backend, t.url.as_str()), (Backend::Sqlite, "data/x.db"));
        assert_eq!(DbTarget::parse("./fieldsync.db").backend, Backend::Sqlite);
        let shown = DbTarget::parse("postgres://me:secret@db:5432/app").display();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("me:***@db:5432/app"), "{shown}");
    }
}

/// A LIKE pattern matching `text` anywhere, with `%`, `_` and `\` taken
/// literally: use it with `.like(p).escape('\\')` (SQLite has no default
/// escape character, PostgreSQL's is the backslash; naming it suits both).
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

diesel::define_sql_function! {
    /// SQL `lower()`: case-insensitive search on both backends (PostgreSQL's
    /// LIKE is case-sensitive, SQLite's is not for ASCII only).
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}
