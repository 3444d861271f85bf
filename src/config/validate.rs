//! Turns a [`ConfigFile`] into a [`Config`], collecting every problem with its key name.
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::ConfigFile;
use super::mailbox::validate_mailbox;
use super::{
    Config, ConfigError, IngestConfig, KeySource, LogFormat, OutboxConfig, RetentionConfig,
    SearchConfig,
};

/// Default API address: loopback only.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8025";

pub(super) fn validate(file: ConfigFile, path: Option<&Path>) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let data_dir = file.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
    let database_url = match file.database {
        Some(url) => {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                problems.push(format!(
                    "key `database`: expected a `sqlite://PATH` or `postgres://...` URL, got `{}`",
                    url.split("://").next().unwrap_or_default()
                ));
            }
            url
        }
        None => format!("sqlite://{}", data_dir.join("inboxd.db").display()),
    };
    let key = match (file.key_file, file.key_credential) {
        (Some(_), Some(_)) => {
            problems.push("keys `key_file` and `key_credential`: set only one of them".to_string());
            KeySource::Credential {
                name: String::new(),
            }
        }
        (Some(path), None) => KeySource::File {
            path,
            create_if_missing: false,
        },
        (None, Some(name)) => KeySource::Credential { name },
        (None, None) => KeySource::File {
            path: data_dir.join("master.key"),
            create_if_missing: true,
        },
    };
    let log_format = match file.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(format!(
                "key `log.format`: expected `text` or `json`, got `{other}`"
            ));
            LogFormat::Text
        }
    };
    let log_level = file.log.level.unwrap_or_else(|| "info".to_string());
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        problems.push(format!(
            "key `log.level`: invalid filter `{log_level}`: {err}"
        ));
    }
    let listen_text = file
        .api
        .listen
        .unwrap_or_else(|| DEFAULT_API_LISTEN.to_string());
    let api_listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!(
            "key `api.listen`: expected an address like `127.0.0.1:8025`, got `{listen_text}`"
        ));
        SocketAddr::from(([127, 0, 0, 1], 8025))
    });
    let ingest = validate_ingest(&file.ingest, &mut problems);
    let outbox = OutboxConfig {
        retry_base: Duration::from_secs(file.outbox.retry_base_secs.unwrap_or(60).max(1)),
        max_attempts: file.outbox.max_attempts.unwrap_or(8).max(1),
        interrupted_grace: Duration::from_secs(file.outbox.interrupted_grace_secs.unwrap_or(900)),
    };
    let retention = RetentionConfig {
        purge_interval: Duration::from_secs(
            file.retention.purge_interval_secs.unwrap_or(3600).max(1),
        ),
        batch_size: usize::try_from(file.retention.batch_size.unwrap_or(500).clamp(1, 10_000))
            .unwrap_or(500),
    };
    let search = validate_search(&file.search, &mut problems);

    let mut names = HashSet::new();
    let mut mailboxes = Vec::new();
    for (position, mailbox) in file.mailboxes.into_iter().enumerate() {
        if let Some(config) = validate_mailbox(mailbox, position, &mut problems) {
            if !names.insert(config.name.clone()) {
                problems.push(format!(
                    "key `mailbox[{position}].name`: `{}` is used twice; names must be unique",
                    config.name
                ));
            }
            mailboxes.push(config);
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.map_or_else(|| PathBuf::from("<inline>"), Path::to_path_buf),
            problems,
        });
    }
    Ok(Config {
        path: path.map(Path::to_path_buf),
        data_dir,
        database_url,
        key,
        log_format,
        log_level,
        api_listen,
        ingest,
        outbox,
        retention,
        search,
        mailboxes,
    })
}

/// Largest accepted `search.cache_mb`: 1 TiB, far above any sensible value, so the byte count
/// cannot overflow.
const MAX_SEARCH_CACHE_MB: u64 = 1024 * 1024;

fn validate_search(file: &super::file::SearchFile, problems: &mut Vec<String>) -> SearchConfig {
    let defaults = SearchConfig::default();
    match file.cache_mb {
        None => defaults,
        Some(megabytes) if megabytes > MAX_SEARCH_CACHE_MB => {
            problems.push(format!(
                "key `search.cache_mb`: {megabytes} is more than {MAX_SEARCH_CACHE_MB}; give the size in megabytes"
            ));
            defaults
        }
        Some(megabytes) => SearchConfig {
            cache_bytes: usize::try_from(megabytes * 1024 * 1024).unwrap_or(usize::MAX),
        },
    }
}

fn validate_ingest(file: &super::file::IngestFile, problems: &mut Vec<String>) -> IngestConfig {
    let defaults = IngestConfig::default();
    let mut positive = |key: &str, value: Option<u64>, default: u64| match value {
        Some(0) => {
            problems.push(format!("key `ingest.{key}`: must be greater than 0"));
            default
        }
        Some(value) => value,
        None => default,
    };
    let batch_size = positive(
        "batch_size",
        file.batch_size.map(u64::from),
        u64::from(defaults.batch_size),
    );
    IngestConfig {
        batch_size: u32::try_from(batch_size).unwrap_or(defaults.batch_size),
        poll_interval: Duration::from_secs(positive(
            "poll_interval_secs",
            file.poll_interval_secs,
            defaults.poll_interval.as_secs(),
        )),
        max_message_bytes: positive(
            "max_message_bytes",
            file.max_message_bytes,
            defaults.max_message_bytes,
        ),
        network_timeout: Duration::from_secs(positive(
            "network_timeout_secs",
            file.network_timeout_secs,
            defaults.network_timeout.as_secs(),
        )),
        max_backoff: Duration::from_secs(positive(
            "max_backoff_secs",
            file.max_backoff_secs,
            defaults.max_backoff.as_secs(),
        )),
        idle: file.idle.unwrap_or(defaults.idle),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn invalid(text: &str) -> String {
        match Config::from_toml(text, None) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn defaults_are_embedded_sqlite_on_loopback() {
        let config = Config::from_toml("", None).expect("empty config is valid");
        assert_eq!(config.database_url, "sqlite://./data/inboxd.db");
        assert!(config.api_listen.ip().is_loopback());
        assert!(config.is_sqlite());
        assert!(matches!(
            config.key,
            super::KeySource::File {
                create_if_missing: true,
                ..
            }
        ));
    }

    #[test]
    fn search_cache_size_is_read_in_megabytes_and_bounded() {
        let default = Config::from_toml("", None).expect("empty config is valid");
        assert_eq!(
            default.search.cache_bytes,
            crate::search::directory::DEFAULT_CACHE_BYTES
        );
        let config = Config::from_toml("[search]\ncache_mb = 64\n", None).expect("valid");
        assert_eq!(config.search.cache_bytes, 64 * 1024 * 1024);
        let message = invalid("[search]\ncache_mb = 99999999\n");
        assert!(message.contains("search.cache_mb"), "{message}");
    }

    #[test]
    fn unknown_key_is_named() {
        let message = invalid("data_dri = \"/x\"\n");
        assert!(message.contains("data_dri"), "{message}");
        assert!(message.contains("<inline>"), "{message}");
    }

    #[test]
    fn wrong_type_is_named() {
        let message = invalid("[ingest]\nbatch_size = \"many\"\n");
        assert!(message.contains("batch_size"), "{message}");
    }

    #[test]
    fn every_problem_is_reported() {
        let message = invalid(
            "database = \"mysql://x\"\n[log]\nformat = \"xml\"\n[[mailbox]]\nname = \"a\"\nkind = \"pop3\"\n",
        );
        assert!(message.contains("`database`"), "{message}");
        assert!(message.contains("`log.format`"), "{message}");
        assert!(message.contains("`kind`"), "{message}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let message = invalid(
            "[[mailbox]]\nname = \"a\"\nkind = \"maildir\"\npath = \"/m\"\n[[mailbox]]\nname = \"a\"\nkind = \"maildir\"\npath = \"/n\"\n",
        );
        assert!(message.contains("used twice"), "{message}");
    }
}
