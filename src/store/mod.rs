//! The store: the database (sea-orm on SQLite or PostgreSQL) plus encrypted blob files.
//!
//! The database is the truth; the search index is derived from it. Queries are plain async functions in
//! the sibling modules that take `&impl ConnectionTrait`, so they work inside or outside a transaction.
pub mod audit;
pub mod conversations;
pub mod entities;
pub mod folders;
pub mod mailboxes;
pub mod messages;
pub mod notes;
pub mod oauth;
pub mod read;
pub mod settings;
pub mod threads;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteAutoVacuum, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {message}")]
    Connect { url: String, message: String },
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("database schema is newer than this binary (unknown migrations: {0}); upgrade inboxd")]
    SchemaTooNew(String),
    #[error("blob file {path}: {message}")]
    Blob { path: PathBuf, message: String },
    #[error("encryption: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("corrupt row {what}: {message}")]
    Corrupt { what: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
}

impl StoreError {
    /// Whether retrying later may succeed (connection lost, database locked or busy, disk full).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Db(err) => {
                let text = err.to_string().to_ascii_lowercase();
                matches!(err, DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
                    || text.contains("locked")
                    || text.contains("busy")
                    || text.contains("full")
                    || text.contains("connection")
                    || text.contains("i/o")
            }
            StoreError::Blob { .. } => true,
            _ => false,
        }
    }
}

/// The open store: a connection pool and the blob directory.
#[derive(Clone)]
pub struct Store {
    /// The connection pool, shared by every task.
    pub db: DatabaseConnection,
    blob_dir: PathBuf,
    /// Hands SQLite's one writer lock over in arrival order between this process's large write
    /// transactions (see [`Store::write_turn`]).
    write_gate: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Masks the password in a database URL for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Connects to the database (creating an SQLite file if missing) without migrating.
    pub async fn connect(url: &str, blob_dir: &Path) -> Result<Store, StoreError> {
        let mut options = ConnectOptions::new(url.to_string());
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30));
        if url.starts_with("sqlite:") {
            // One writer at a time; WAL lets readers go on. secure_delete overwrites freed pages so that
            // purged ciphertext and keys do not linger; incremental auto-vacuum lets purge give pages back.
            options.max_connections(4).map_sqlx_sqlite_opts(|opts| {
                opts.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .auto_vacuum(SqliteAutoVacuum::Incremental)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30))
                    .pragma("secure_delete", "ON")
                    // Ingest batches rewrite the same index pages (random keyed hashes) in every
                    // transaction: checkpointing the WAL every 64 MiB instead of SQLite's default
                    // 4 MiB copies each such page once per checkpoint rather than once per batch,
                    // and takes the copying out of most commits (issue #3's stage timings).
                    .pragma("wal_autocheckpoint", "16384")
                    // A 16 MiB page cache (default 2 MiB) holds an ingest batch's dirty pages:
                    // without it SQLite spilled them to the WAL mid-transaction and read them back
                    // (160,000 preads and 410,000 pwrites for 10,000 messages; 49,000 and 256,000
                    // with a 32 MiB cache).
                    .pragma("cache_size", "-16384")
            });
        } else {
            // A server that is down (restarting) fails a pass within seconds, with the reason logged and
            // retried by the mailbox's backoff, instead of hanging on the pool silently.
            options
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10));
        }
        let db = Database::connect(options)
            .await
            .map_err(|err| StoreError::Connect {
                url: redact_url(url),
                message: err.to_string(),
            })?;
        // A cheap round trip so that an unreachable server is reported here, by name.
        db.execute_unprepared("SELECT 1")
            .await
            .map_err(|err| StoreError::Connect {
                url: redact_url(url),
                message: err.to_string(),
            })?;
        Ok(Store {
            db,
            blob_dir: blob_dir.to_path_buf(),
            write_gate: std::sync::Arc::default(),
        })
    }

    /// Applies pending migrations; refuses a schema with migrations this binary does not know.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|migration| migration.name().to_string())
            .collect();
        // Read the table directly: sea-orm's own check fails with a generic error on unknown rows.
        let backend = self.backend();
        let applied = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations",
            ))
            .await
            .unwrap_or_default(); // no table yet: a fresh database
        let unknown: Vec<String> = applied
            .iter()
            .filter_map(|row| row.try_get::<String>("", "version").ok())
            .filter(|name| !known.contains(name))
            .collect();
        if !unknown.is_empty() {
            return Err(StoreError::SchemaTooNew(unknown.join(", ")));
        }
        let pending = Migrator::get_pending_migrations(&self.db).await?.len();
        Migrator::up(&self.db, None).await?;
        Ok(pending)
    }

    /// Which backend this is.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Waits for this process's turn at SQLite's writer lock; hold the guard from `begin_write` to the
    /// commit of a large write transaction (an ingest batch, a purge batch). SQLite itself makes a
    /// waiting writer poll with growing sleeps (up to 100 ms), so two busy writers hand the lock over
    /// late and one can starve the other; this FIFO queue hands it over at once and in turn. PostgreSQL
    /// has row locks and needs no turn: `None`.
    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.backend() == DbBackend::Sqlite {
            Some(self.write_gate.lock().await)
        } else {
            None
        }
    }

    /// Directory of the encrypted blob files.
    pub fn blob_dir(&self) -> &Path {
        &self.blob_dir
    }

    /// Absolute path of a blob from its stored relative path.
    pub fn blob_path(&self, relative: &str) -> Result<PathBuf, StoreError> {
        // Stored paths are ours (`ab/uuid.blob`), but never let a corrupt row escape the directory.
        if relative.contains("..") || relative.starts_with('/') {
            return Err(StoreError::Corrupt {
                what: "messages.blob_path".to_string(),
                message: "path leaves the blob directory".to_string(),
            });
        }
        Ok(self.blob_dir.join(relative))
    }

    /// Closes the pool, after a WAL checkpoint on SQLite so the main file holds everything.
    pub async fn close(self) -> Result<(), StoreError> {
        if self.backend() == DbBackend::Sqlite {
            self.db
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        self.db.close().await?;
        Ok(())
    }
}

/// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that reads first
/// and writes later fails at once with "database is locked" when another connection wrote in between
/// (WAL cannot upgrade a stale read snapshot), whereas IMMEDIATE waits for the writer lock under the busy
/// timeout. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Relative blob path for a message: two-level fan-out keeps directories small.
pub fn blob_relative_path(id: &uuid::Uuid) -> String {
    let simple = id.simple().to_string();
    format!("{}/{}.blob", &simple[simple.len() - 2..], simple)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_masked() {
        assert_eq!(
            redact_url("postgres://user:pw@127.0.0.1:5432/db"),
            "postgres://…@127.0.0.1:5432/db"
        );
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }

    #[test]
    fn blob_paths_fan_out() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            blob_relative_path(&id),
            "00/00000000000000000000000000000000.blob"
        );
    }
}
