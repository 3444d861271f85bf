//! Ingest: pull mail from connected mailboxes (IMAP or a local Maildir) into the store, exactly once.
//!
//! Data flow per batch: fetch raw bytes → `prepare` (parse, hash, seal, write the encrypted blob; on
//! blocking threads) → `commit` (one database transaction holding the rows of every message of the batch
//! and the folder's new checkpoint). A crash before the commit leaves only orphan blob files, which
//! `commit::sweep_orphans` removes; a crash after it leaves nothing to redo. Either way nothing is lost
//! and nothing is stored twice.
pub mod commit;
pub mod imap_sync;
pub mod maildir;
pub mod once;
pub mod prepare;
pub mod supervisor;

use serde::Serialize;

use crate::crypto::CryptoError;
use crate::imap::ImapError;
use crate::store::StoreError;

/// Where a raw message came from; decides its exactly-once key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A server copy: unique per (folder, UIDVALIDITY, UID), RFC 3501 section 2.3.1.1.
    Imap {
        folder: String,
        uid_validity: u32,
        uid: u32,
    },
    /// A Maildir file, keyed by the keyed hash of its unique name (the part before `:2,`).
    Maildir { key_hash: String },
    /// A reply written by an agent.
    Outbound,
}

/// A fetched message before any processing.
pub struct RawMessage {
    pub origin: Origin,
    /// The raw RFC 5322 bytes (only the header block for oversize messages).
    pub raw: Vec<u8>,
    /// Set when the message exceeded `ingest.max_message_bytes`: its full size.
    pub oversize_of: Option<u64>,
}

/// An ingest failure.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("imap: {0}")]
    Imap(#[from] ImapError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("encryption: {0}")]
    Crypto(#[from] CryptoError),
    #[error("maildir {path}: {message}")]
    Maildir { path: String, message: String },
    #[error("secret: {0}")]
    Secret(#[from] crate::config::ConfigError),
    #[error("oauth: {0}")]
    OAuth(#[from] crate::oauth::OAuthError),
    #[error("shutting down")]
    Cancelled,
    #[error("internal: {0}")]
    Internal(String),
}

impl IngestError {
    /// Whether a retry with backoff may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Imap(err) => err.is_transient(),
            IngestError::Store(err) => err.is_transient(),
            IngestError::Maildir { .. } => true,
            IngestError::OAuth(err) => err.is_transient(),
            _ => false,
        }
    }

    /// Whether the disk under the data directory is full (ENOSPC on a blob or index file, or SQLite's
    /// SQLITE_FULL): nothing half-stored is kept and the next pass retries by itself.
    pub fn is_disk_full(&self) -> bool {
        let text = self.to_string();
        text.contains("os error 28") || text.contains("database or disk is full")
    }

    /// The error as recorded in the mailbox status and logged: a full disk says so, and what to do.
    pub fn report(&self) -> String {
        if self.is_disk_full() {
            format!(
                "disk full: no space left on the disk that holds the data directory ({self}); ingest is paused and retries by itself: free some space on that disk or move data_dir"
            )
        } else {
            self.to_string()
        }
    }

    /// Whether only an admin's `mailbox authorize` can make the mailbox work again.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self, IngestError::OAuth(err) if err.needs_reauthorization())
    }

    /// Short status word for the mailbox status view.
    pub fn status(&self) -> &'static str {
        if self.is_disk_full() {
            return "disk_full";
        }
        match self {
            IngestError::Imap(err) if err.is_auth() => "auth_failed",
            IngestError::Imap(err) if err.is_tls() => "tls_failed",
            IngestError::Imap(_) => "unreachable",
            IngestError::Store(_) => "store_failed",
            IngestError::Secret(_) => "config_error",
            IngestError::OAuth(err) if err.needs_reauthorization() => {
                crate::oauth::NEEDS_REAUTHORIZATION
            }
            IngestError::OAuth(err) if err.is_transient() => "unreachable",
            IngestError::OAuth(crate::oauth::OAuthError::Secret(_)) => "config_error",
            IngestError::OAuth(_) => "auth_failed",
            _ => "error",
        }
    }
}

/// Counts of one sync pass of one mailbox, printed by `inboxd sync --once`.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    pub mailbox: String,
    /// Messages downloaded from the source.
    pub fetched: u64,
    /// Messages newly stored.
    pub stored: u64,
    /// Messages already stored (recognised by their keyed content hash).
    pub duplicates: u64,
    /// Stored but flagged: unparsed or oversize.
    pub flagged: u64,
    /// The error that ended the pass, if any.
    pub error: Option<String>,
}

impl SyncReport {
    /// Adds the counts of another pass.
    pub fn add(&mut self, other: &SyncReport) {
        self.fetched += other.fetched;
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.flagged += other.flagged;
    }
}
