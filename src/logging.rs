//! `tracing` setup: human-readable lines on stderr (no colours unless a terminal), or JSON, one event a
//! line, which journald keeps well. sqlx and sea-orm are held at `warn` so SQL text (and any value it
//! carries) never reaches the log. The level can be changed at run time (SIGHUP reload).
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;

/// Directives always prepended to the user's level.
const QUIET_DEPENDENCIES: &str =
    "sqlx=warn,sea_orm=warn,sea_orm_migration=warn,rustls=warn,async_imap=warn,tantivy=warn";

static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter(level: &str) -> Result<EnvFilter, String> {
    // async_imap logs protocol lines (LOGIN with the password) at trace: never let a level raise it.
    EnvFilter::try_new(format!(
        "{QUIET_DEPENDENCIES},{level},async_imap=warn,imap_proto=warn"
    ))
    .map_err(|err| err.to_string())
}

/// Installs the global subscriber. `level` uses `EnvFilter` syntax, e.g. `info,inboxd::ingest=debug`;
/// `RUST_LOG`, when set, wins.
pub fn init(format: LogFormat, level: &str) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let env_filter = filter(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter_layer, handle) = reload::Layer::new(env_filter);
    let output: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter_layer)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = RELOAD.set(handle);
    }
}

/// Changes the log level of the running process (config reload).
pub fn set_level(level: &str) -> Result<(), String> {
    let Some(handle) = RELOAD.get() else {
        return Ok(());
    };
    let new = filter(level)?;
    handle.reload(new).map_err(|err| err.to_string())
}
