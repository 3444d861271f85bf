//! Configuration: `file` holds what serde reads, `validate` turns it into the [`Config`] the code uses and
//! reports every bad key by name, `secrets` reads passwords from files or the environment.
mod file;
mod mailbox;
mod oauth;
mod secrets;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::ConfigFile;
pub use mailbox::is_valid_name;
pub use oauth::{
    OAuthConfig, OAuthFile, OAuthProvider, PresetServer, SaslMechanism, endpoint_is_safe,
    validate_oauth_settings,
};
pub use secrets::{Secret, read_secret_env, read_secret_file};

/// A configuration problem, always naming the file, the key and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: {}", problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("secret for {key}: {message}")]
    Secret { key: String, message: String },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A key file; `create_if_missing` only on the embedded default path.
    File {
        path: PathBuf,
        create_if_missing: bool,
    },
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential { name: String },
}

/// What to do with the server copy after a message is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFetch {
    Leave,
    MarkSeen,
    MoveTo(String),
}

/// IMAP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSetting {
    Implicit,
    StartTls,
}

/// Where an IMAP password comes from. Resolved at connect time so that a rotated file is picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
    /// Stored sealed in the database (mailboxes added through the CLI/API).
    Stored(Secret),
    /// No password: an OAuth2 access token (SASL XOAUTH2/OAUTHBEARER), from the mailbox's sealed refresh
    /// token and these settings.
    OAuth(Box<OAuthConfig>),
}

/// An IMAP account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapMailbox {
    pub host: String,
    pub port: u16,
    pub tls: TlsSetting,
    pub username: String,
    pub password: PasswordSource,
    pub ca_file: Option<PathBuf>,
    /// Plain text IMAP; only for loopback tests.
    pub insecure: bool,
    pub folders: Vec<String>,
    pub after_fetch: AfterFetch,
}

/// Kind-specific settings of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxSource {
    Imap(ImapMailbox),
    Maildir { path: PathBuf },
}

/// How replies of a mailbox are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsSetting,
    pub username: Option<String>,
    pub password: Option<PasswordSource>,
    pub ca_file: Option<PathBuf>,
    /// Plain-text SMTP; only for loopback tests.
    pub insecure: bool,
    /// Use a VERP-style envelope sender (`local+tag@domain`).
    pub verp: bool,
}

/// The sending side of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The mailbox's address (From of replies).
    pub address: String,
    pub display_name: Option<String>,
    pub smtp: SmtpConfig,
}

/// A connected mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxConfig {
    pub name: String,
    pub source: MailboxSource,
    pub retention_days: Option<u32>,
    pub enabled: bool,
    /// Reply settings; `None` when the mailbox only receives.
    pub outgoing: Option<Outgoing>,
}

impl MailboxConfig {
    /// The OAuth2 settings when the mailbox (its IMAP or its SMTP side) signs in with OAuth.
    pub fn oauth(&self) -> Option<&OAuthConfig> {
        let imap = match &self.source {
            MailboxSource::Imap(ImapMailbox {
                password: PasswordSource::OAuth(oauth),
                ..
            }) => Some(oauth.as_ref()),
            _ => None,
        };
        let smtp = match self
            .outgoing
            .as_ref()
            .and_then(|out| out.smtp.password.as_ref())
        {
            Some(PasswordSource::OAuth(oauth)) => Some(oauth.as_ref()),
            _ => None,
        };
        imap.or(smtp)
    }
}

/// Ingest tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    pub batch_size: u32,
    pub poll_interval: Duration,
    pub max_message_bytes: u64,
    pub network_timeout: Duration,
    pub max_backoff: Duration,
    pub idle: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_size: 200,
            poll_interval: Duration::from_secs(60),
            max_message_bytes: 64 * 1024 * 1024,
            network_timeout: Duration::from_secs(60),
            max_backoff: Duration::from_secs(300),
            idle: true,
        }
    }
}

/// Outbox retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    pub retry_base: Duration,
    pub max_attempts: u32,
    pub interrupted_grace: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            retry_base: Duration::from_secs(60),
            max_attempts: 8,
            interrupted_grace: Duration::from_secs(900),
        }
    }
}

/// The purge schedule (retention windows themselves are per mailbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    pub purge_interval: Duration,
    pub batch_size: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            purge_interval: Duration::from_secs(3600),
            batch_size: 500,
        }
    }
}

/// Search index settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchConfig {
    /// Bound of the search index's cache of decrypted data, in bytes.
    pub cache_bytes: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            cache_bytes: crate::search::directory::DEFAULT_CACHE_BYTES,
        }
    }
}

/// The validated configuration the daemon runs with.
#[derive(Clone)]
pub struct Config {
    /// The file it came from, if any (for reloads and messages).
    pub path: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub key: KeySource,
    pub log_format: LogFormat,
    pub log_level: String,
    pub api_listen: SocketAddr,
    pub ingest: IngestConfig,
    pub outbox: OutboxConfig,
    pub retention: RetentionConfig,
    pub search: SearchConfig,
    pub mailboxes: Vec<MailboxConfig>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The database URL may carry a password: show only its scheme.
        let scheme = self.database_url.split("://").next().unwrap_or("?");
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("data_dir", &self.data_dir)
            .field("database", &format_args!("{scheme}://…"))
            .field("key", &self.key)
            .field("mailboxes", &self.mailboxes.len())
            .finish()
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, Some(path))
    }

    /// Parses and validates TOML text; `path` is used for messages and to resolve relative paths.
    pub fn from_toml(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let shown = path.map_or_else(|| PathBuf::from("<inline>"), Path::to_path_buf);
        let file: ConfigFile = toml::from_str(text).map_err(|err| ConfigError::Syntax {
            path: shown.clone(),
            message: err.to_string().trim_end().replace('\n', " "),
        })?;
        validate::validate(file, path)
    }

    /// The embedded default: everything under `./data`, SQLite, a generated key, no mailboxes.
    pub fn embedded_default() -> Config {
        validate::validate(ConfigFile::default(), None).expect("the built-in defaults are valid")
    }

    /// Directory of encrypted blob files.
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    /// Directory of the encrypted search index.
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    /// Whether the database is the embedded SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}
