//! What serde reads from the TOML file. Every field is documented in `config.example.toml`; the types here
//! only describe the shape. Meaning and cross-field rules are checked by `super::validate`.
use serde::Deserialize;
use std::path::PathBuf;

/// The config file as written by the admin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Directory for the database (SQLite default), blob files, the search index and the generated key.
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://...`; default `sqlite://<data_dir>/inboxd.db`.
    pub database: Option<String>,
    /// Path of the 256-bit master key; default `<data_dir>/master.key`.
    pub key_file: Option<PathBuf>,
    /// Name of the systemd credential holding the master key (read from `$CREDENTIALS_DIRECTORY`).
    pub key_credential: Option<String>,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub api: ApiFile,
    #[serde(default)]
    pub ingest: IngestFile,
    #[serde(default)]
    pub outbox: OutboxFile,
    #[serde(default)]
    pub retention: RetentionFile,
    #[serde(default)]
    pub search: SearchFile,
    #[serde(default, rename = "mailbox")]
    pub mailboxes: Vec<MailboxFile>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `text` or `json`.
    pub format: Option<String>,
    /// tracing filter directives, e.g. `info,inboxd::ingest=debug`.
    pub level: Option<String>,
}

/// `[api]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    /// Socket address the HTTP API listens on.
    pub listen: Option<String>,
}

/// `[ingest]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestFile {
    /// Messages fetched and committed per transaction.
    pub batch_size: Option<u32>,
    /// Seconds between polls of a folder when the server offers no IDLE.
    pub poll_interval_secs: Option<u64>,
    /// Largest message stored in full; bigger ones are stored as flagged header-only records.
    pub max_message_bytes: Option<u64>,
    /// Seconds a single network exchange may take before the connection is considered dead.
    pub network_timeout_secs: Option<u64>,
    /// Upper bound of the reconnect backoff, in seconds.
    pub max_backoff_secs: Option<u64>,
    /// Use IMAP IDLE when the server offers it.
    pub idle: Option<bool>,
}

/// `[outbox]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxFile {
    /// First retry delay after a temporary failure, in seconds; doubles per attempt (capped at 1 h).
    pub retry_base_secs: Option<u64>,
    /// Attempts before a recipient is given up (event `failed`).
    pub max_attempts: Option<u32>,
    /// Seconds to wait for the relay's DSN about a send a crash interrupted before deciding it never
    /// arrived and sending again (only to relays that issue DSNs).
    pub interrupted_grace_secs: Option<u64>,
}

/// `[retention]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Seconds between purge runs of the daemon (the first runs at start).
    pub purge_interval_secs: Option<u64>,
    /// Conversations deleted per write transaction.
    pub batch_size: Option<u32>,
}

/// `[search]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFile {
    /// Megabytes of decrypted index data kept in memory to make searches fast.
    pub cache_mb: Option<u64>,
}

/// One `[[mailbox]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxFile {
    pub name: Option<String>,
    /// `imap` or `maildir`.
    pub kind: Option<String>,
    // --- imap ---
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `implicit` (default) or `starttls`.
    pub tls: Option<String>,
    pub username: Option<String>,
    /// Rejected with a clear message: secrets never live in the config file.
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Plain-text IMAP, for loopback tests only.
    pub insecure: Option<bool>,
    pub folders: Option<Vec<String>>,
    /// `leave` (default), `mark_seen` or `move`.
    pub after_fetch: Option<String>,
    /// Folder to move fetched mail to when `after_fetch = "move"`.
    pub move_to: Option<String>,
    // --- maildir ---
    pub path: Option<PathBuf>,
    // --- both ---
    /// Days a conversation is kept after its last activity; absent = forever.
    pub retention_days: Option<u32>,
    pub enabled: Option<bool>,
    // --- outgoing (replies) ---
    /// The mailbox's own address: From of replies, and the domain of their Message-IDs.
    pub address: Option<String>,
    /// Display name used in From of replies.
    pub display_name: Option<String>,
    /// `[mailbox.smtp]`: how replies are sent.
    pub smtp: Option<SmtpFile>,
    /// `[mailbox.oauth]`: sign in with OAuth2 instead of a password.
    pub oauth: Option<super::oauth::OAuthFile>,
}

/// `[mailbox.smtp]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `implicit` (default, port 465) or `starttls` (port 587).
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Plain-text SMTP, for loopback tests only.
    pub insecure: Option<bool>,
    /// Envelope sender `local+tag@domain` so bounces name the message they belong to (default true).
    pub verp: Option<bool>,
    /// Authenticate with the mailbox's OAuth2 token (`[mailbox.oauth]`) instead of a password.
    pub oauth: Option<bool>,
}
