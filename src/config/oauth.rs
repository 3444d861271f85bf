//! `[mailbox.oauth]`: OAuth2 sign-in (SASL XOAUTH2 / OAUTHBEARER, RFC 7628) instead of a password, with
//! presets for Google and Microsoft 365 and a generic provider whose endpoints are all configured.
use serde::Deserialize;
use std::path::PathBuf;

use super::{PasswordSource, TlsSetting};

/// Which provider a mailbox signs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthProvider {
    Google,
    /// Microsoft identity platform v2; `tenant` is `common`, `organizations`, a domain or a tenant id.
    Microsoft {
        tenant: String,
    },
    Generic,
}

/// The SASL mechanism used with the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// Google's and Microsoft's `XOAUTH2`.
    XOAuth2,
    /// `OAUTHBEARER` (RFC 7628).
    OAuthBearer,
}

/// OAuth2 settings of one mailbox, shared by its IMAP and SMTP sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    pub provider: OAuthProvider,
    /// Where the admin's browser signs in (authorization-code flow with PKCE).
    pub authorization_url: String,
    /// Where codes and refresh tokens are exchanged for access tokens.
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Extra query parameters of the authorization request (Google: `access_type=offline`…).
    pub authorize_params: Vec<(String, String)>,
    pub client_id: String,
    /// `None` for public clients (no secret).
    pub client_secret: Option<PasswordSource>,
    pub mechanism: SaslMechanism,
    /// Loopback port of `mailbox authorize`'s redirect listener; 0 picks a free one.
    pub redirect_port: u16,
}

/// An IMAP or SMTP server a preset knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetServer {
    pub host: &'static str,
    pub port: u16,
    pub tls: TlsSetting,
}

impl OAuthProvider {
    /// The provider's IMAP server, for presets.
    pub fn imap_server(&self) -> Option<PresetServer> {
        match self {
            OAuthProvider::Google => Some(PresetServer {
                host: "imap.gmail.com",
                port: 993,
                tls: TlsSetting::Implicit,
            }),
            OAuthProvider::Microsoft { .. } => Some(PresetServer {
                host: "outlook.office365.com",
                port: 993,
                tls: TlsSetting::Implicit,
            }),
            OAuthProvider::Generic => None,
        }
    }

    /// The provider's SMTP submission server, for presets.
    pub fn smtp_server(&self) -> Option<PresetServer> {
        match self {
            OAuthProvider::Google => Some(PresetServer {
                host: "smtp.gmail.com",
                port: 465,
                tls: TlsSetting::Implicit,
            }),
            OAuthProvider::Microsoft { .. } => Some(PresetServer {
                host: "smtp.office365.com",
                port: 587,
                tls: TlsSetting::StartTls,
            }),
            OAuthProvider::Generic => None,
        }
    }

    /// Short name for messages and status views.
    pub fn name(&self) -> &'static str {
        match self {
            OAuthProvider::Google => "google",
            OAuthProvider::Microsoft { .. } => "microsoft",
            OAuthProvider::Generic => "generic",
        }
    }
}

/// `[mailbox.oauth]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthFile {
    /// `google`, `microsoft` or `generic`.
    pub provider: Option<String>,
    pub client_id: Option<String>,
    /// Rejected with a clear message: secrets never live in the config file.
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    /// Microsoft only: `common` (default), `organizations`, a domain or a tenant id.
    pub tenant: Option<String>,
    /// `xoauth2` (default) or `oauthbearer`.
    pub mechanism: Option<String>,
    /// Loopback port of `inboxd mailbox authorize`'s redirect listener; 0 (default) picks a free one.
    pub redirect_port: Option<u16>,
    /// Override (generic: required) the authorization endpoint.
    pub authorization_url: Option<String>,
    /// Override (generic: required) the token endpoint.
    pub token_url: Option<String>,
    /// Override (generic: required) the scopes asked for.
    pub scopes: Option<Vec<String>>,
}

/// Validates OAuth settings an admin gives through the API or the CLI by the rules of `[mailbox.oauth]`;
/// `key` names a field for messages. `file` carries no secret: the caller adds the client secret, which
/// it keeps sealed.
pub fn validate_oauth_settings(
    file: &OAuthFile,
    key: &dyn Fn(&str) -> String,
) -> Result<OAuthConfig, Vec<String>> {
    let mut problems = Vec::new();
    validate_oauth(file, key, &mut problems).ok_or(problems)
}

/// Validates `[mailbox.oauth]`; `key` names a field for messages.
pub(super) fn validate_oauth(
    file: &OAuthFile,
    key: &dyn Fn(&str) -> String,
    problems: &mut Vec<String>,
) -> Option<OAuthConfig> {
    let before = problems.len();
    let provider = match file.provider.as_deref() {
        Some("google") => OAuthProvider::Google,
        Some("microsoft") => OAuthProvider::Microsoft {
            tenant: file.tenant.clone().unwrap_or_else(|| "common".to_string()),
        },
        Some("generic") => OAuthProvider::Generic,
        other => {
            problems.push(format!(
                "{}: expected `google`, `microsoft` or `generic`, got `{}`",
                key("oauth.provider"),
                other.unwrap_or("nothing")
            ));
            return None;
        }
    };
    if file.tenant.is_some() && !matches!(provider, OAuthProvider::Microsoft { .. }) {
        problems.push(format!(
            "{}: only used with `provider = \"microsoft\"`",
            key("oauth.tenant")
        ));
    }
    if let OAuthProvider::Microsoft { tenant } = &provider
        && (tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
    {
        problems.push(format!(
            "{}: expected `common`, `organizations`, a domain or a tenant id",
            key("oauth.tenant")
        ));
    }
    let (default_authorize, default_token, default_scopes, authorize_params) =
        preset_endpoints(&provider);
    let mut endpoint = |field: &str, given: &Option<String>, default: Option<String>| match given
        .clone()
        .or(default)
    {
        Some(url) if endpoint_is_safe(&url) => url,
        Some(url) => {
            problems.push(format!(
                    "{}: expected an https:// URL (http:// only to 127.0.0.1, ::1 or localhost), got `{url}`",
                    key(field)
                ));
            String::new()
        }
        None => {
            problems.push(format!(
                "{}: a generic provider needs its {field}",
                key(&format!("oauth.{field}"))
            ));
            String::new()
        }
    };
    let authorization_url = endpoint(
        "authorization_url",
        &file.authorization_url,
        default_authorize,
    );
    let token_url = endpoint("token_url", &file.token_url, default_token);
    let scopes = match file.scopes.clone().or(default_scopes) {
        Some(scopes) if !scopes.is_empty() && scopes.iter().all(|s| is_scope(s)) => scopes,
        Some(_) => {
            problems.push(format!(
                "{}: expected a list of scope names without spaces",
                key("oauth.scopes")
            ));
            Vec::new()
        }
        None => {
            problems.push(format!(
                "{}: a generic provider needs its scopes",
                key("oauth.scopes")
            ));
            Vec::new()
        }
    };
    let client_id = match file.client_id.clone() {
        Some(id) if !id.trim().is_empty() && !id.contains(char::is_whitespace) => id,
        _ => {
            problems.push(format!(
                "{}: the application (client) id from the provider's app registration",
                key("oauth.client_id")
            ));
            String::new()
        }
    };
    if file.client_secret.is_some() {
        problems.push(format!(
            "{}: inline secrets are not accepted; use `client_secret_file` (mode 0600) or `client_secret_env`",
            key("oauth.client_secret")
        ));
    }
    let client_secret = match (&file.client_secret_file, &file.client_secret_env) {
        (Some(path), None) => Some(PasswordSource::File(path.clone())),
        (None, Some(variable)) => Some(PasswordSource::Env(variable.clone())),
        (None, None) => None,
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{}: set only one of `client_secret_file` or `client_secret_env`",
                key("oauth.client_secret_file")
            ));
            None
        }
    };
    let mechanism = match file.mechanism.as_deref() {
        None | Some("xoauth2") => SaslMechanism::XOAuth2,
        Some("oauthbearer") => SaslMechanism::OAuthBearer,
        Some(other) => {
            problems.push(format!(
                "{}: expected `xoauth2` or `oauthbearer`, got `{other}`",
                key("oauth.mechanism")
            ));
            SaslMechanism::XOAuth2
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(OAuthConfig {
        provider,
        authorization_url,
        token_url,
        scopes,
        authorize_params,
        client_id,
        client_secret,
        mechanism,
        redirect_port: file.redirect_port.unwrap_or(0),
    })
}

type Endpoints = (
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Vec<(String, String)>,
);

/// Authorization URL, token URL, scopes and extra authorization parameters of a preset.
fn preset_endpoints(provider: &OAuthProvider) -> Endpoints {
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    match provider {
        // Google returns a refresh token only with access_type=offline, and again only after consent.
        OAuthProvider::Google => (
            Some("https://accounts.google.com/o/oauth2/v2/auth".to_string()),
            Some("https://oauth2.googleapis.com/token".to_string()),
            Some(owned(&["https://mail.google.com/"])),
            vec![
                ("access_type".to_string(), "offline".to_string()),
                ("prompt".to_string(), "consent".to_string()),
            ],
        ),
        // offline_access is what makes Microsoft issue a refresh token.
        OAuthProvider::Microsoft { tenant } => (
            Some(format!(
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
            )),
            Some(format!(
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
            )),
            Some(owned(&[
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access",
            ])),
            Vec::new(),
        ),
        OAuthProvider::Generic => (None, None, None, Vec::new()),
    }
}

/// Tokens travel in these requests: TLS everywhere except to this very machine (tests, local proxies).
pub fn endpoint_is_safe(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("https://") {
        return !rest.is_empty() && !rest.starts_with('/');
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    matches!(host, "127.0.0.1" | "::1" | "localhost")
}

/// RFC 6749 §3.3: scope tokens are printable ASCII without space, quote or backslash.
fn is_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(file: &OAuthFile) -> Result<OAuthConfig, Vec<String>> {
        let mut problems = Vec::new();
        let key = |field: &str| format!("mailbox `m` key `{field}`");
        validate_oauth(file, &key, &mut problems).ok_or(problems)
    }

    #[test]
    fn google_preset_fills_endpoints_scopes_and_offline_access() {
        let config = run(&OAuthFile {
            provider: Some("google".into()),
            client_id: Some("id.apps.googleusercontent.com".into()),
            client_secret_file: Some("/run/secret".into()),
            ..OAuthFile::default()
        })
        .expect("valid");
        assert_eq!(config.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(config.scopes, vec!["https://mail.google.com/".to_string()]);
        assert!(
            config
                .authorize_params
                .contains(&("access_type".into(), "offline".into()))
        );
        assert_eq!(config.mechanism, SaslMechanism::XOAuth2);
        assert_eq!(
            config.provider.imap_server().map(|s| s.host),
            Some("imap.gmail.com")
        );
    }

    #[test]
    fn microsoft_tenant_lands_in_the_endpoints() {
        let config = run(&OAuthFile {
            provider: Some("microsoft".into()),
            tenant: Some("contoso.onmicrosoft.com".into()),
            client_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..OAuthFile::default()
        })
        .expect("valid");
        assert_eq!(
            config.authorization_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert!(config.scopes.contains(&"offline_access".to_string()));
        let smtp = config.provider.smtp_server().expect("preset");
        assert_eq!(
            (smtp.host, smtp.port, smtp.tls),
            ("smtp.office365.com", 587, TlsSetting::StartTls)
        );
        assert!(config.client_secret.is_none());
    }

    #[test]
    fn generic_needs_every_endpoint_and_plain_http_only_to_loopback() {
        let problems = run(&OAuthFile {
            provider: Some("generic".into()),
            client_id: Some("c".into()),
            client_secret: Some("inline".into()),
            token_url: Some("http://idp.example.com/token".into()),
            ..OAuthFile::default()
        })
        .expect_err("invalid");
        let text = problems.join("\n");
        assert!(text.contains("oauth.authorization_url"), "{text}");
        assert!(text.contains("https://"), "{text}");
        assert!(text.contains("oauth.scopes"), "{text}");
        assert!(text.contains("inline secrets"), "{text}");
        assert!(endpoint_is_safe("http://127.0.0.1:8080/token"));
        assert!(endpoint_is_safe("http://[::1]:8080/token"));
        assert!(!endpoint_is_safe("http://127.0.0.1.example.com/token"));
        assert!(!endpoint_is_safe("ftp://x/y"));
    }
}
