//! Command-line interface (clap). `main.rs` dispatches; the work lives in `app` and `commands`.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// inboxd: a shared-inbox daemon that keeps every conversation encrypted at rest.
#[derive(Debug, Parser)]
#[command(name = "inboxd", version, about)]
pub struct Cli {
    /// Config file (TOML). Without one, the embedded default is used: ./data, SQLite, a generated key.
    #[arg(long, short = 'c', global = true, env = "INBOXD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: `text` or `json` (overrides `log.format`).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info,inboxd::ingest=debug` (overrides `log.level`).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM or SIGINT (SIGHUP reloads the config file).
    Serve,
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long)]
        json: bool,
    },
    /// Pull every connected mailbox once and exit (the daemon must not be running).
    Sync {
        /// Required: one pass, then exit.
        #[arg(long)]
        once: bool,
        /// Only this mailbox.
        #[arg(long)]
        mailbox: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Leave the search index alone (a faster bulk import): the daemon indexes every stored
        /// message the index lacks when it next starts.
        #[arg(long)]
        no_index: bool,
    },
    /// Show what inboxd understands of one raw message (no daemon, no database needed).
    Inspect {
        /// The message file (RFC 5322).
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Manage connected mailboxes.
    Mailbox {
        #[command(subcommand)]
        action: Box<MailboxAction>,
    },
    /// Re-wrap every data key under a new master key (content is not rewritten; safe to re-run).
    RotateKey {
        /// File holding the new key (32 raw bytes or 64 hex characters, mode 0600).
        #[arg(long)]
        new_key_file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List conversations (newest activity first).
    Conversations {
        /// Only this mailbox.
        #[arg(long)]
        mailbox: Option<String>,
        /// Only this state: `open`, `pending` or `closed`.
        #[arg(long)]
        state: Option<String>,
        /// Only conversations assigned to this name (`none`: unassigned ones).
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one conversation, decrypted: messages, attachments and delivery events.
    Show {
        conversation: uuid::Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Reply to a conversation: the reply is stored and queued; the daemon sends it.
    Reply {
        conversation: uuid::Uuid,
        /// File holding the reply text (UTF-8); `-` reads standard input.
        #[arg(long)]
        body_file: PathBuf,
        /// Recipients (repeatable); default: the sender of the latest message.
        #[arg(long)]
        to: Vec<String>,
        #[arg(long)]
        cc: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Set a conversation's state (through the running daemon, which keeps the index in step).
    State {
        conversation: uuid::Uuid,
        /// `open`, `pending` or `closed`.
        state: String,
        #[arg(long)]
        json: bool,
    },
    /// Assign a conversation to someone, or unassign it with `--none` (through the running daemon).
    Assign {
        conversation: uuid::Uuid,
        #[arg(required_unless_present = "none")]
        assignee: Option<String>,
        #[arg(long, conflicts_with = "assignee")]
        none: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add an internal note to a conversation: encrypted, never sent (through the running daemon).
    Note {
        conversation: uuid::Uuid,
        /// File holding the note (UTF-8); `-` reads standard input.
        #[arg(long)]
        body_file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Search conversations with the Gmail-like query language (see README).
    Search {
        /// The query, e.g. `from:alice "order 123" -is:closed`.
        query: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Order by relevance instead of newest first.
        #[arg(long)]
        relevance: bool,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the search index from the store (the daemon must be stopped).
    Reindex {
        #[arg(long)]
        json: bool,
    },
    /// Delete every conversation past its mailbox's retention window (the daemon also does this on its
    /// schedule). Conversations on legal hold are kept.
    Purge {
        /// List what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Per-mailbox retention windows.
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Legal hold: held conversations (or whole mailboxes) are never purged or erased.
    Hold {
        #[command(subcommand)]
        action: HoldAction,
    },
    /// Data-subject requests: export or erase everything that involves one email address.
    Subject {
        #[command(subcommand)]
        action: SubjectAction,
    },
    /// The audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// Manage API tokens (admin or agent, optionally limited to some mailboxes).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Master key utilities.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

/// `inboxd key ...`
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Write a new random 256-bit key (mode 0600); refuses to overwrite.
    Generate {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// `inboxd token ...`
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token; its secret is printed once and never again.
    Create {
        name: String,
        /// `admin` (everything) or `agent` (conversations, search, replies).
        #[arg(long)]
        role: String,
        /// Limit an agent token to this mailbox (repeatable); default: every mailbox.
        #[arg(long = "mailbox")]
        mailboxes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name or id; it is refused from the next request on.
    Revoke {
        name_or_id: String,
        #[arg(long)]
        json: bool,
    },
}

/// Reply settings shared by `mailbox add-imap` and `add-maildir` (`[mailbox.smtp]` in the config file).
#[derive(Debug, Clone, clap::Args)]
pub struct SmtpArgs {
    /// The mailbox's own address (From of replies); needed with --smtp-host.
    #[arg(long)]
    pub address: Option<String>,
    #[arg(long)]
    pub display_name: Option<String>,
    /// SMTP relay for replies; without it the mailbox only receives.
    #[arg(long)]
    pub smtp_host: Option<String>,
    #[arg(long)]
    pub smtp_port: Option<u16>,
    /// `implicit` (default, port 465) or `starttls` (port 587); with --smtp-oauth and no --smtp-host,
    /// the provider's.
    #[arg(long)]
    pub smtp_tls: Option<String>,
    #[arg(long)]
    pub smtp_username: Option<String>,
    /// Read the SMTP password from this file (mode 0600).
    #[arg(long)]
    pub smtp_password_file: Option<PathBuf>,
    #[arg(long)]
    pub smtp_ca_file: Option<PathBuf>,
    /// Plain-text SMTP, for loopback tests only.
    #[arg(long)]
    pub smtp_insecure: bool,
    /// Send with the mailbox's OAuth token (needs --oauth-provider); without --smtp-host the
    /// provider's submission server.
    #[arg(long)]
    pub smtp_oauth: bool,
}

/// OAuth2 sign-in of `mailbox add-imap` (`[mailbox.oauth]` in the config file); then run
/// `inboxd mailbox authorize NAME`.
#[derive(Debug, Clone, clap::Args)]
pub struct OAuthArgs {
    /// Sign in with OAuth2 instead of a password: `google`, `microsoft` or `generic`.
    #[arg(long, conflicts_with_all = ["password_file", "password_env"])]
    pub oauth_provider: Option<String>,
    /// The application (client) id of the app registered at the provider.
    #[arg(long, requires = "oauth_provider")]
    pub oauth_client_id: Option<String>,
    /// Read the client secret from this file (mode 0600); stored sealed under the master key.
    /// Public clients have none.
    #[arg(long, requires = "oauth_provider")]
    pub oauth_client_secret_file: Option<PathBuf>,
    /// Microsoft only: `common` (default), `organizations`, a domain or a tenant id.
    #[arg(long, requires = "oauth_provider")]
    pub oauth_tenant: Option<String>,
    /// `xoauth2` (default) or `oauthbearer`.
    #[arg(long, requires = "oauth_provider")]
    pub oauth_mechanism: Option<String>,
    /// Loopback port of `mailbox authorize`'s redirect listener; 0 (default) picks a free one.
    #[arg(long, requires = "oauth_provider")]
    pub oauth_redirect_port: Option<u16>,
    /// Authorization endpoint (generic: required; presets: override).
    #[arg(long, requires = "oauth_provider")]
    pub oauth_authorization_url: Option<String>,
    /// Token endpoint (generic: required; presets: override).
    #[arg(long, requires = "oauth_provider")]
    pub oauth_token_url: Option<String>,
    /// Scope to ask for (repeatable; generic: required; presets: override).
    #[arg(long = "oauth-scope", requires = "oauth_provider")]
    pub oauth_scopes: Vec<String>,
}

/// `inboxd mailbox ...`
// Parsed once per process (and boxed in `Command`): the size of `AddImap` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum MailboxAction {
    /// List mailboxes with their status.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Status of one mailbox (or all): last sync, last error, counts.
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Connect an IMAP mailbox (stored in the database, password or OAuth client secret sealed under
    /// the master key).
    AddImap {
        name: String,
        /// The IMAP server; with --oauth-provider google or microsoft, default the provider's.
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        /// `implicit` (default) or `starttls`; with an OAuth preset and no --host, the provider's.
        #[arg(long)]
        tls: Option<String>,
        #[arg(long)]
        username: String,
        /// Read the password from this file (mode 0600).
        #[arg(long, conflicts_with = "password_env")]
        password_file: Option<PathBuf>,
        /// Read the password from this environment variable.
        #[arg(long)]
        password_env: Option<String>,
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Folders to watch (repeatable); default INBOX.
        #[arg(long = "folder")]
        folders: Vec<String>,
        /// Plain-text IMAP, for loopback tests only.
        #[arg(long)]
        insecure: bool,
        #[command(flatten)]
        oauth: OAuthArgs,
        #[command(flatten)]
        smtp: SmtpArgs,
        #[arg(long)]
        json: bool,
    },
    /// Connect a local Maildir.
    AddMaildir {
        name: String,
        path: PathBuf,
        #[command(flatten)]
        smtp: SmtpArgs,
        #[arg(long)]
        json: bool,
    },
    /// Disconnect an admin-added mailbox. Refuses while it has stored messages unless
    /// `--delete-messages` is given.
    Remove {
        name: String,
        #[arg(long)]
        delete_messages: bool,
        #[arg(long)]
        json: bool,
    },
    /// Sign a mailbox with `[mailbox.oauth]` in to its provider: prints the URL to open, waits for the
    /// provider's redirect on 127.0.0.1, stores the tokens sealed. Works with the daemon running or not.
    Authorize {
        name: String,
        /// Loopback port of the redirect listener (default: the mailbox's `oauth.redirect_port`; 0 picks
        /// a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Seconds to wait for the sign-in to finish.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        #[arg(long)]
        json: bool,
    },
    /// Test a mailbox's connection (IMAP login and folders, or the Maildir; SMTP if set). Stores nothing.
    Test {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// `inboxd retention ...`
#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Set a mailbox's retention window; takes effect at the next purge run.
    Set {
        mailbox: String,
        /// Keep conversations this many days after their last activity.
        #[arg(long, conflicts_with = "forever", required_unless_present = "forever")]
        days: Option<u32>,
        /// Keep conversations forever (no retention window).
        #[arg(long)]
        forever: bool,
    },
    /// Show every mailbox's retention window and hold.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `inboxd hold ...`
#[derive(Debug, Subcommand)]
pub enum HoldAction {
    /// Put a conversation or a whole mailbox on legal hold.
    Set {
        #[arg(long, conflicts_with = "mailbox", required_unless_present = "mailbox")]
        conversation: Option<uuid::Uuid>,
        #[arg(long)]
        mailbox: Option<String>,
        /// Why (stored sealed; shown to admins).
        #[arg(long)]
        reason: String,
    },
    /// Lift a hold.
    Release {
        #[arg(long, conflicts_with = "mailbox", required_unless_present = "mailbox")]
        conversation: Option<uuid::Uuid>,
        #[arg(long)]
        mailbox: Option<String>,
    },
    /// List active holds.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `inboxd subject ...`
#[derive(Debug, Subcommand)]
pub enum SubjectAction {
    /// Write everything that involves ADDRESS (as .eml, attachments and a JSON manifest) to a tar file.
    Export {
        address: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Erase every message that involves ADDRESS (conversations on legal hold are reported and kept).
    Erase {
        address: String,
        #[arg(long)]
        json: bool,
    },
}
