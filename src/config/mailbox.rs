//! `[[mailbox]]` tables: the IMAP or Maildir source, the reply (SMTP) side and `[mailbox.oauth]`, each
//! problem reported with the mailbox's name and the key.
use super::file::MailboxFile;
use super::secrets::read_secret_env;
use super::{
    AfterFetch, ImapMailbox, MailboxConfig, MailboxSource, OAuthConfig, Outgoing, PasswordSource,
    SmtpConfig, TlsSetting,
};

pub(super) fn validate_mailbox(
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
