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
    Migrate,
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
        action: MailboxAction,
    },
    /// Re-wrap every data key under a new master key (content is not rewritten; safe to re-run).
    RotateKey {
        /// File holding the new key (32 raw bytes or 64 hex characters, mode 0600).
        #[arg(long)]
        new_key_file: PathBuf,
    },
    /// List conversations (newest activity first).
    Conversations {
        /// Only this mailbox.
        #[arg(long)]
        mailbox: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
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
    Reindex,
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
    },
}

/// `inboxd mailbox ...`
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
    /// Connect an IMAP mailbox (stored in the database, password sealed under the master key).
    AddImap {
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: Option<u16>,
        /// `implicit` or `starttls`.
        #[arg(long, default_value = "implicit")]
        tls: String,
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
    },
    /// Connect a local Maildir.
    AddMaildir { name: String, path: PathBuf },
    /// Disconnect an admin-added mailbox. Refuses while it has stored messages unless
    /// `--delete-messages` is given.
    Remove {
        name: String,
        #[arg(long)]
        delete_messages: bool,
    },
}
