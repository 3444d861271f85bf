//! `tracing` setup: human-readable lines on stderr (no colours unless a terminal), or JSON, one event a
//! line, which journald keeps well. sqlx and sea-orm are held at `warn` so SQL text (and any value it
//! carries) never reaches the log.
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Directives always appended after the user's level.
const QUIET_DEPENDENCIES: &str =
    "sqlx=warn,sea_orm=warn,sea_orm_migration=warn,rustls=warn,async_imap=warn,tantivy=warn";

/// Installs the global subscriber. `level` uses `EnvFilter` syntax, e.g. `info,inboxd::ingest=debug`;
/// `RUST_LOG`, when set, wins.
pub fn init(format: LogFormat, level: &str) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let filter = EnvFilter::try_new(format!("{QUIET_DEPENDENCIES},{directives}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("{QUIET_DEPENDENCIES},info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
