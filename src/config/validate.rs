//! Turns a [`ConfigFile`] into a [`Config`], collecting every problem with its key name.
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{ConfigFile, MailboxFile};
use super::secrets::read_secret_env;
use super::{
    AfterFetch, Config, ConfigError, ImapMailbox, IngestConfig, KeySource, LogFormat,
    MailboxConfig, MailboxSource, OAuthConfig, OutboxConfig, Outgoing, PasswordSource,
    RetentionConfig, SearchConfig, SmtpConfig, TlsSetting,
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

fn validate_mailbox(
    file: MailboxFile,
    position: usize,
    problems: &mut Vec<String>,
) -> Option<MailboxConfig> {
    let Some(name) = file.name.clone().filter(|name| is_valid_name(name)) else {
        problems.push(format!(
            "key `mailbox[{position}].name`: expected a name of letters, digits, `-`, `_` or `.`"
        ));
        return None;
    };
    let key = |field: &str| format!("mailbox `{name}` key `{field}`");
    let oauth = match &file.oauth {
        Some(oauth_file) => Some(super::oauth::validate_oauth(oauth_file, &key, problems)?),
        None => None,
    };
    if oauth.is_some() && file.kind.as_deref() == Some("maildir") {
        problems.push(format!(
            "{}: a maildir mailbox has no server to sign in to",
            key("oauth")
        ));
        return None;
    }
    let source = match file.kind.as_deref() {
        Some("maildir") => match file.path.clone() {
            Some(path) => MailboxSource::Maildir { path },
            None => {
                problems.push(format!("{}: a maildir mailbox needs a path", key("path")));
                return None;
            }
        },
        Some("imap") => MailboxSource::Imap(validate_imap(&file, &name, oauth.as_ref(), problems)?),
        other => {
            problems.push(format!(
                "{}: expected `imap` or `maildir`, got `{}`",
                key("kind"),
                other.unwrap_or("nothing")
            ));
            return None;
        }
    };
    let outgoing = validate_outgoing(&file, &name, oauth.as_ref(), problems);
    Some(MailboxConfig {
        name,
        source,
        retention_days: file.retention_days,
        enabled: file.enabled.unwrap_or(true),
        outgoing,
    })
}

fn validate_outgoing(
    file: &MailboxFile,
    name: &str,
    oauth: Option<&OAuthConfig>,
    problems: &mut Vec<String>,
) -> Option<Outgoing> {
    let key = |field: &str| format!("mailbox `{name}` key `{field}`");
    let smtp = file.smtp.as_ref();
    let address = match (&file.address, smtp) {
        (None, None) => return None,
        (None, Some(_)) => {
            problems.push(format!(
                "{}: a mailbox that sends replies needs its own address",
                key("address")
            ));
            return None;
        }
        (Some(address), _) if !looks_like_address(address) => {
            problems.push(format!(
                "{}: expected an address like support@example.com, got `{address}`",
                key("address")
            ));
            return None;
        }
        (Some(_), None) => {
            problems.push(format!(
                "{}: add a [mailbox.smtp] table with at least `host` to send replies",
                key("smtp")
            ));
            return None;
        }
        (Some(address), Some(_)) => address.clone(),
    };
    let smtp = smtp?;
    let before = problems.len();
    let use_oauth = smtp.oauth.unwrap_or(false);
    let smtp_oauth = match (use_oauth, oauth) {
        (true, None) => {
            problems.push(format!(
                "{}: `oauth = true` needs a [mailbox.oauth] table",
                key("smtp.oauth")
            ));
            None
        }
        (true, Some(oauth)) => Some(oauth),
        (false, _) => None,
    };
    let preset = smtp_oauth.and_then(|oauth| oauth.provider.smtp_server());
    let host = smtp
        .host
        .clone()
        .or_else(|| preset.map(|server| server.host.to_string()))
        .unwrap_or_else(|| {
            problems.push(format!("{}: needs a host", key("smtp.host")));
            String::new()
        });
    let tls = match smtp.tls.as_deref() {
        None if smtp.host.is_none() && preset.is_some() => {
            preset.map_or(TlsSetting::Implicit, |server| server.tls)
        }
        None | Some("implicit") => TlsSetting::Implicit,
        Some("starttls") => TlsSetting::StartTls,
        Some(other) => {
            problems.push(format!(
                "{}: expected `implicit` or `starttls`, got `{other}`",
                key("smtp.tls")
            ));
            TlsSetting::Implicit
        }
    };
    let insecure = smtp.insecure.unwrap_or(false);
    let port = smtp.port.unwrap_or(match (tls, insecure, preset) {
        (_, false, Some(server)) if smtp.host.is_none() => server.port,
        (TlsSetting::Implicit, false, _) => 465,
        _ => 587,
    });
    if smtp.password.is_some() {
        problems.push(format!(
            "{}: inline passwords are not accepted; use `password_file` (mode 0600) or `password_env`",
            key("smtp.password")
        ));
    }
    let password = match (&smtp.password_file, &smtp.password_env, smtp_oauth) {
        (None, None, Some(oauth)) => Some(PasswordSource::OAuth(Box::new(oauth.clone()))),
        (_, _, Some(_)) => {
            problems.push(format!(
                "{}: `oauth = true` signs in with a token; remove the password",
                key("smtp.password_file")
            ));
            None
        }
        (Some(path), None, None) => Some(PasswordSource::File(path.clone())),
        (None, Some(variable), None) => Some(PasswordSource::Env(variable.clone())),
        (None, None, None) => None,
        (Some(_), Some(_), None) => {
            problems.push(format!(
                "{}: set only one of `password_file` or `password_env`",
                key("smtp.password_file")
            ));
            None
        }
    };
    // With OAuth the user defaults to the IMAP login (the account the token belongs to).
    let username = smtp
        .username
        .clone()
        .or_else(|| smtp_oauth.and(file.username.clone()));
    if password.is_some() != username.is_some() {
        problems.push(format!(
            "{}: `username` and a password go together",
            key("smtp.username")
        ));
    }
    if problems.len() != before {
        return None;
    }
    Some(Outgoing {
        address,
        display_name: file.display_name.clone(),
        smtp: SmtpConfig {
            host,
            port,
            tls,
            username,
            password,
            ca_file: smtp.ca_file.clone(),
            insecure,
            verp: smtp.verp.unwrap_or(true),
        },
    })
}

fn looks_like_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | ','))
}

fn validate_imap(
    file: &MailboxFile,
    name: &str,
    oauth: Option<&OAuthConfig>,
    problems: &mut Vec<String>,
) -> Option<ImapMailbox> {
    let key = |field: &str| format!("mailbox `{name}` key `{field}`");
    let before = problems.len();
    let preset = oauth
        .and_then(|oauth| oauth.provider.imap_server())
        .filter(|_| file.host.is_none());
    let host = file
        .host
        .clone()
        .or_else(|| preset.map(|server| server.host.to_string()))
        .unwrap_or_else(|| {
            problems.push(format!("{}: an imap mailbox needs a host", key("host")));
            String::new()
        });
    let username = file.username.clone().unwrap_or_else(|| {
        problems.push(format!(
            "{}: an imap mailbox needs a username",
            key("username")
        ));
        String::new()
    });
    let tls = match file.tls.as_deref() {
        None => preset.map_or(TlsSetting::Implicit, |server| server.tls),
        Some("implicit") => TlsSetting::Implicit,
        Some("starttls") => TlsSetting::StartTls,
        Some(other) => {
            problems.push(format!(
                "{}: expected `implicit` or `starttls`, got `{other}`",
                key("tls")
            ));
            TlsSetting::Implicit
        }
    };
    let insecure = file.insecure.unwrap_or(false);
    let port = file.port.unwrap_or(match (tls, insecure, preset) {
        (_, false, Some(server)) => server.port,
        (TlsSetting::Implicit, false, _) => 993,
        _ => 143,
    });
    if file.password.is_some() {
        problems.push(format!(
            "{}: inline passwords are not accepted; use `password_file` (mode 0600) or `password_env`",
            key("password")
        ));
    }
    let password = match (&file.password_file, &file.password_env, oauth) {
        (None, None, Some(oauth)) => PasswordSource::OAuth(Box::new(oauth.clone())),
        (_, _, Some(_)) => {
            problems.push(format!(
                "{}: a mailbox with [mailbox.oauth] signs in with a token; remove the password",
                key("password_file")
            ));
            PasswordSource::Env(String::new())
        }
        (Some(path), None, None) => PasswordSource::File(path.clone()),
        (None, Some(variable), None) => {
            if let Err(err) = read_secret_env(&key("password_env"), variable) {
                problems.push(err.to_string());
            }
            PasswordSource::Env(variable.clone())
        }
        _ => {
            problems.push(format!(
                "{}: set exactly one of `password_file` or `password_env`",
                key("password_file")
            ));
            PasswordSource::Env(String::new())
        }
    };
    let folders = file
        .folders
        .clone()
        .unwrap_or_else(|| vec!["INBOX".to_string()]);
    if folders.is_empty() || folders.iter().any(|folder| folder.trim().is_empty()) {
        problems.push(format!(
            "{}: expected a list of folder names",
            key("folders")
        ));
    }
    let after_fetch = match (file.after_fetch.as_deref(), &file.move_to) {
        (None | Some("leave"), None) => AfterFetch::Leave,
        (Some("mark_seen"), None) => AfterFetch::MarkSeen,
        (Some("move"), Some(folder)) => AfterFetch::MoveTo(folder.clone()),
        (Some("move"), None) => {
            problems.push(format!(
                "{}: `after_fetch = \"move\"` needs `move_to`",
                key("move_to")
            ));
            AfterFetch::Leave
        }
        (_, Some(_)) => {
            problems.push(format!(
                "{}: only used with `after_fetch = \"move\"`",
                key("move_to")
            ));
            AfterFetch::Leave
        }
        (Some(other), None) => {
            problems.push(format!(
                "{}: expected `leave`, `mark_seen` or `move`, got `{other}`",
                key("after_fetch")
            ));
            AfterFetch::Leave
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(ImapMailbox {
        host,
        port,
        tls,
        username,
        password,
        ca_file: file.ca_file.clone(),
        insecure,
        folders,
        after_fetch,
    })
}

/// Mailbox names appear in logs, metrics and CLI arguments: keep them simple.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
    fn inline_password_is_refused() {
        let message = invalid(
            "[[mailbox]]\nname = \"a\"\nkind = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n",
        );
        assert!(
            message.contains("inline passwords are not accepted"),
            "{message}"
        );
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
    fn imap_mailbox_defaults() {
        let config = Config::from_toml(
            "[[mailbox]]\nname = \"support\"\nkind = \"imap\"\nhost = \"imap.example.com\"\nusername = \"u\"\npassword_file = \"/run/pw\"\n",
            None,
        )
        .expect("valid");
        let super::MailboxSource::Imap(imap) = &config.mailboxes[0].source else {
            panic!("expected imap");
        };
        assert_eq!(imap.port, 993);
        assert_eq!(imap.tls, super::TlsSetting::Implicit);
        assert_eq!(imap.folders, vec!["INBOX".to_string()]);
        assert_eq!(imap.after_fetch, super::AfterFetch::Leave);
        assert!(!imap.insecure);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let message = invalid(
            "[[mailbox]]\nname = \"a\"\nkind = \"maildir\"\npath = \"/m\"\n[[mailbox]]\nname = \"a\"\nkind = \"maildir\"\npath = \"/n\"\n",
        );
        assert!(message.contains("used twice"), "{message}");
    }

    #[test]
    fn oauth_mailbox_takes_the_preset_servers_and_refuses_a_password() {
        let config = Config::from_toml(
            "[[mailbox]]\nname = \"gmail\"\nkind = \"imap\"\nusername = \"s@example.com\"\naddress = \"s@example.com\"\n[mailbox.oauth]\nprovider = \"microsoft\"\nclient_id = \"abc\"\n[mailbox.smtp]\noauth = true\n",
            None,
        )
        .expect("valid");
        let mailbox = &config.mailboxes[0];
        let super::MailboxSource::Imap(imap) = &mailbox.source else {
            panic!("expected imap");
        };
        assert_eq!(
            (imap.host.as_str(), imap.port),
            ("outlook.office365.com", 993)
        );
        assert!(matches!(imap.password, super::PasswordSource::OAuth(_)));
        let smtp = &mailbox.outgoing.as_ref().expect("smtp").smtp;
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.tls),
            ("smtp.office365.com", 587, super::TlsSetting::StartTls)
        );
        assert_eq!(smtp.username.as_deref(), Some("s@example.com"));
        assert!(mailbox.oauth().is_some());

        let message = invalid(
            "[[mailbox]]\nname = \"g\"\nkind = \"imap\"\nusername = \"u\"\npassword_file = \"/p\"\n[mailbox.oauth]\nprovider = \"google\"\nclient_id = \"c\"\n",
        );
        assert!(message.contains("remove the password"), "{message}");
        let message = invalid(
            "[[mailbox]]\nname = \"g\"\nkind = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_file = \"/p\"\naddress = \"a@b.c\"\n[mailbox.smtp]\nhost = \"h\"\noauth = true\n",
        );
        assert!(
            message.contains("needs a [mailbox.oauth] table"),
            "{message}"
        );
    }
}
