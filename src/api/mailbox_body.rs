//! The body of `POST /v1/mailboxes` and `PUT /v1/mailboxes/{name}` (also what `inboxd mailbox add-imap`
//! and `add-maildir` build offline) and its checks: the same rules as a `[[mailbox]]` table of the
//! config file, except that secrets (passwords, the OAuth client secret) arrive in the body and are
//! stored sealed under the master key.
use std::path::PathBuf;

use serde::Deserialize;

use super::error::ApiError;
use crate::config::{
    AfterFetch, ImapMailbox, MailboxConfig, MailboxSource, OAuthConfig, OAuthFile, Outgoing,
    PasswordSource, PresetServer, Secret, SmtpConfig, TlsSetting, validate_oauth_settings,
};

/// Reply settings of a mailbox (`[mailbox.smtp]` in the config file).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpBody {
    /// Required unless `oauth` takes the provider's preset server.
    host: Option<String>,
    port: Option<u16>,
    /// `implicit` (default, port 465) or `starttls` (port 587).
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    verp: Option<bool>,
    /// Sign in with the mailbox's OAuth token (needs `oauth` on the mailbox).
    #[serde(default)]
    oauth: bool,
}

/// OAuth2 sign-in of an IMAP mailbox (`[mailbox.oauth]` in the config file).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthBody {
    /// `google`, `microsoft` or `generic`.
    provider: Option<String>,
    /// Microsoft only: `common` (default), `organizations`, a domain or a tenant id.
    tenant: Option<String>,
    client_id: Option<String>,
    /// Sealed under the master key. When changing: absent keeps the stored one, `""` removes it
    /// (public client).
    client_secret: Option<String>,
    /// `xoauth2` (default) or `oauthbearer`.
    mechanism: Option<String>,
    /// Loopback port of `mailbox authorize`'s redirect listener; 0 (default) picks a free one.
    redirect_port: Option<u16>,
    authorization_url: Option<String>,
    token_url: Option<String>,
    scopes: Option<Vec<String>>,
}

/// `POST /v1/mailboxes` and `PUT /v1/mailboxes/{name}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MailboxBody {
    /// Required when adding; must match the path when changing.
    pub(crate) name: Option<String>,
    /// `imap` or `maildir`.
    kind: String,
    /// Required unless `oauth` takes the provider's preset server.
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    /// Required for a new IMAP mailbox without `oauth`; when changing, absent keeps the stored one.
    password: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    folders: Option<Vec<String>>,
    /// `leave` (default) or `mark_seen`.
    after_fetch: Option<String>,
    path: Option<PathBuf>,
    enabled: Option<bool>,
    /// The mailbox's own address (From of replies); needed with `smtp`.
    address: Option<String>,
    display_name: Option<String>,
    smtp: Option<SmtpBody>,
    /// Sign in with OAuth2 instead of a password.
    oauth: Option<OAuthBody>,
}

fn tls(value: Option<&str>, key: &str) -> Result<TlsSetting, ApiError> {
    match value.unwrap_or("implicit") {
        "implicit" => Ok(TlsSetting::Implicit),
        "starttls" => Ok(TlsSetting::StartTls),
        other => Err(ApiError::invalid(format!(
            "`{key}` must be `implicit` or `starttls`, got `{other}`"
        ))),
    }
}

fn required(value: Option<String>, key: &str) -> Result<String, ApiError> {
    value
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| ApiError::invalid(format!("`{key}` is required")))
}

/// Host, port and TLS of a server: what the body gives, else the provider's preset when there is one
/// (only when the body names no host: a preset port never goes with another host).
fn server(
    host: Option<String>,
    port: Option<u16>,
    tls_given: Option<&str>,
    preset: Option<PresetServer>,
    prefix: &str,
    default_port: impl Fn(TlsSetting) -> u16,
) -> Result<(String, u16, TlsSetting), ApiError> {
    match (host.filter(|host| !host.trim().is_empty()), preset) {
        (Some(host), _) => {
            let tls = tls(tls_given, &format!("{prefix}tls"))?;
            Ok((host, port.unwrap_or_else(|| default_port(tls)), tls))
        }
        (None, Some(preset)) => {
            let tls = match tls_given {
                None => preset.tls,
                given => tls(given, &format!("{prefix}tls"))?,
            };
            Ok((preset.host.to_string(), port.unwrap_or(preset.port), tls))
        }
        (None, None) => Err(ApiError::invalid(format!(
            "`{prefix}host` is required (only the google and microsoft oauth presets know their servers)"
        ))),
    }
}

/// The OAuth settings of a body; `previous` supplies the client secret the body leaves out.
fn oauth_from(body: OAuthBody, previous: Option<&MailboxConfig>) -> Result<OAuthConfig, ApiError> {
    let file = OAuthFile {
        provider: body.provider,
        client_id: body.client_id,
        tenant: body.tenant,
        mechanism: body.mechanism,
        redirect_port: body.redirect_port,
        authorization_url: body.authorization_url,
        token_url: body.token_url,
        scopes: body.scopes,
        ..OAuthFile::default()
    };
    let mut oauth = validate_oauth_settings(&file, &|field| format!("`{field}`"))
        .map_err(|problems| ApiError::invalid(problems.join("; ")))?;
    oauth.client_secret = match body.client_secret {
        Some(secret) if secret.is_empty() => None,
        Some(secret) => Some(PasswordSource::Stored(Secret::new(secret))),
        None => previous
            .and_then(MailboxConfig::oauth)
            .and_then(|previous| previous.client_secret.clone())
            .filter(|secret| matches!(secret, PasswordSource::Stored(_))),
    };
    Ok(oauth)
}

/// Builds the mailbox config from a body; `previous` supplies secrets the body leaves out. Returns the
/// IMAP password separately (`None` for Maildir and OAuth mailboxes).
pub(crate) fn config_from(
    name: String,
    body: MailboxBody,
    previous: Option<&MailboxConfig>,
) -> Result<(MailboxConfig, Option<Secret>), ApiError> {
    let oauth = match body.oauth {
        Some(_) if body.kind == "maildir" => {
            return Err(ApiError::invalid(
                "`oauth`: a maildir mailbox has no server to sign in to",
            ));
        }
        Some(oauth) => Some(oauth_from(oauth, previous)?),
        None => None,
    };
    let mut imap_password = None;
    let source = match body.kind.as_str() {
        "maildir" => {
            let path = body
                .path
                .ok_or_else(|| ApiError::invalid("`path` is required for a maildir mailbox"))?;
            if !path.is_absolute() {
                return Err(ApiError::invalid(
                    "`path` must be absolute (it is read by the daemon)",
                ));
            }
            MailboxSource::Maildir { path }
        }
        "imap" => {
            let password = match (&oauth, body.password, previous.map(|p| &p.source)) {
                (Some(_), Some(_), _) => {
                    return Err(ApiError::invalid(
                        "`password`: a mailbox with `oauth` signs in with a token; remove the password",
                    ));
                }
                (Some(oauth), None, _) => PasswordSource::OAuth(Box::new(oauth.clone())),
                (None, Some(password), _) if !password.is_empty() => {
                    PasswordSource::Stored(Secret::new(password))
                }
                (
                    None,
                    _,
                    Some(MailboxSource::Imap(ImapMailbox {
                        password: PasswordSource::Stored(secret),
                        ..
                    })),
                ) => PasswordSource::Stored(secret.clone()),
                (None, _, _) => {
                    return Err(ApiError::invalid(
                        "`password` is required for an imap mailbox (or `oauth` to sign in with a token)",
                    ));
                }
            };
            if let PasswordSource::Stored(secret) = &password {
                imap_password = Some(secret.clone());
            }
            let after_fetch = match body.after_fetch.as_deref() {
                None | Some("leave") => AfterFetch::Leave,
                Some("mark_seen") => AfterFetch::MarkSeen,
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "`after_fetch` must be `leave` or `mark_seen`, got `{other}`"
                    )));
                }
            };
            let insecure = body.insecure;
            let (host, port, tls) = server(
                body.host,
                body.port,
                body.tls.as_deref(),
                oauth
                    .as_ref()
                    .and_then(|oauth| oauth.provider.imap_server()),
                "",
                |tls| {
                    if insecure || tls == TlsSetting::StartTls {
                        143
                    } else {
                        993
                    }
                },
            )?;
            MailboxSource::Imap(ImapMailbox {
                host,
                port,
                tls,
                username: required(body.username.clone(), "username")?,
                password,
                ca_file: body.ca_file,
                insecure,
                folders: body
                    .folders
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| vec!["INBOX".to_string()]),
                after_fetch,
            })
        }
        other => {
            return Err(ApiError::invalid(format!(
                "`kind` must be `imap` or `maildir`, got `{other}`"
            )));
        }
    };
    let outgoing = match body.smtp {
        None => None,
        Some(smtp) => Some(outgoing_from(
            smtp,
            (body.address, body.display_name),
            oauth.as_ref(),
            body.username.as_deref(),
            previous,
        )?),
    };
    let config = MailboxConfig {
        name,
        source,
        retention_days: previous.and_then(|p| p.retention_days),
        enabled: body.enabled.unwrap_or(true),
        outgoing,
    };
    Ok((config, imap_password))
}

/// The sending side; with `smtp.oauth` it signs in with the mailbox's token as its IMAP login.
fn outgoing_from(
    smtp: SmtpBody,
    (address, display_name): (Option<String>, Option<String>),
    oauth: Option<&OAuthConfig>,
    imap_username: Option<&str>,
    previous: Option<&MailboxConfig>,
) -> Result<Outgoing, ApiError> {
    let address = required(address, "address")?;
    if !address.contains('@') {
        return Err(ApiError::invalid(
            "`address` must be the mailbox's email address",
        ));
    }
    let smtp_oauth = match (smtp.oauth, oauth) {
        (false, _) => None,
        (true, None) => {
            return Err(ApiError::invalid(
                "`smtp.oauth` needs the mailbox's `oauth` settings",
            ));
        }
        (true, Some(_)) if smtp.password.is_some() => {
            return Err(ApiError::invalid(
                "`smtp.password`: `smtp.oauth` signs in with a token; remove the password",
            ));
        }
        (true, Some(oauth)) => Some(oauth),
    };
    let insecure = smtp.insecure;
    let (host, port, tls) = server(
        smtp.host,
        smtp.port,
        smtp.tls.as_deref(),
        smtp_oauth.and_then(|oauth| oauth.provider.smtp_server()),
        "smtp.",
        |tls| {
            if insecure {
                25
            } else if tls == TlsSetting::StartTls {
                587
            } else {
                465
            }
        },
    )?;
    // Only a stored password carries over: a previous OAuth sign-in does not survive `oauth: false`.
    let previous_password = previous
        .and_then(|p| p.outgoing.as_ref())
        .and_then(|o| o.smtp.password.clone())
        .filter(|password| matches!(password, PasswordSource::Stored(_)));
    let (username, password) = match smtp_oauth {
        // The token belongs to the IMAP account: its login is the SMTP user unless given.
        Some(oauth) => (
            smtp.username.or_else(|| imap_username.map(str::to_string)),
            Some(PasswordSource::OAuth(Box::new(oauth.clone()))),
        ),
        None => {
            let password = match smtp.password {
                Some(password) => Some(PasswordSource::Stored(Secret::new(password))),
                None if smtp.username.is_some() => previous_password,
                None => None,
            };
            (smtp.username, password)
        }
    };
    Ok(Outgoing {
        address,
        display_name,
        smtp: SmtpConfig {
            host,
            port,
            tls,
            username,
            password,
            ca_file: smtp.ca_file,
            insecure,
            verp: smtp.verp.unwrap_or(true),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> MailboxBody {
        serde_json::from_value(value).expect("body")
    }

    #[test]
    fn a_microsoft_preset_fills_both_servers_and_the_smtp_user() {
        let (config, password) = config_from(
            "m365".to_string(),
            body(serde_json::json!({
                "kind": "imap", "username": "support@contoso.com", "address": "support@contoso.com",
                "oauth": { "provider": "microsoft", "tenant": "contoso.onmicrosoft.com",
                           "client_id": "c", "client_secret": "s", "redirect_port": 8765 },
                "smtp": { "oauth": true },
            })),
            None,
        )
        .expect("valid");
        assert!(password.is_none(), "no IMAP password with oauth");
        let MailboxSource::Imap(imap) = &config.source else {
            panic!("imap expected");
        };
        assert_eq!(
            (imap.host.as_str(), imap.port, imap.tls),
            ("outlook.office365.com", 993, TlsSetting::Implicit)
        );
        let oauth = config.oauth().expect("oauth");
        assert_eq!(oauth.redirect_port, 8765);
        assert!(oauth.token_url.contains("contoso.onmicrosoft.com"));
        assert!(matches!(
            &oauth.client_secret,
            Some(PasswordSource::Stored(secret)) if secret.expose() == "s"
        ));
        let smtp = &config.outgoing.as_ref().expect("smtp").smtp;
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.tls),
            ("smtp.office365.com", 587, TlsSetting::StartTls)
        );
        assert_eq!(smtp.username.as_deref(), Some("support@contoso.com"));
        assert!(matches!(smtp.password, Some(PasswordSource::OAuth(_))));

        // Changing without `client_secret` keeps it; `""` removes it; `oauth` off needs a password.
        let keep = serde_json::json!({
            "kind": "imap", "username": "u",
            "oauth": { "provider": "microsoft", "client_id": "c" },
        });
        let (kept, _) = config_from("m365".into(), body(keep.clone()), Some(&config)).expect("ok");
        assert_eq!(
            kept.oauth().and_then(|o| o.client_secret.clone()),
            oauth.client_secret.clone()
        );
        let mut cleared = keep;
        cleared["oauth"]["client_secret"] = serde_json::json!("");
        let (cleared, _) = config_from("m365".into(), body(cleared), Some(&config)).expect("ok");
        assert!(cleared.oauth().expect("oauth").client_secret.is_none());
        let error = config_from(
            "m365".into(),
            body(serde_json::json!({ "kind": "imap", "host": "h", "username": "u" })),
            Some(&config),
        )
        .expect_err("a password is needed without oauth");
        assert!(
            error.to_string().contains("`password` is required"),
            "{error}"
        );
    }

    #[test]
    fn a_generic_provider_needs_its_servers_and_maildir_takes_no_oauth() {
        let error = |value: serde_json::Value| {
            config_from("g".into(), body(value), None)
                .expect_err("invalid")
                .to_string()
        };
        let message = error(serde_json::json!({
            "kind": "imap", "username": "u",
            "oauth": { "provider": "generic", "client_id": "c", "authorization_url": "https://a/x",
                       "token_url": "https://a/t", "scopes": ["mail"] },
        }));
        assert!(message.contains("`host` is required"), "{message}");
        let message = error(serde_json::json!({
            "kind": "imap", "host": "h", "username": "u",
            "oauth": { "provider": "generic", "client_id": "c", "token_url": "http://idp.example.com/t" },
        }));
        assert!(message.contains("`oauth.authorization_url`"), "{message}");
        assert!(message.contains("https://"), "{message}");
        let message = error(serde_json::json!({
            "kind": "maildir", "path": "/m", "oauth": { "provider": "google", "client_id": "c" },
        }));
        assert!(message.contains("maildir"), "{message}");
    }
}
