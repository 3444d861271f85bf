//! Mailbox rows: the ones from the config file (origin `config`) and the ones an admin added (origin
//! `admin`, their settings, passwords and OAuth client secret sealed under the master key).
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use super::entities::mailbox;
use crate::clock;
use crate::config::{
    AfterFetch, ImapMailbox, MailboxConfig, MailboxSource, OAuthConfig, OAuthProvider, Outgoing,
    PasswordSource, SaslMechanism, Secret, SmtpConfig, TlsSetting,
};
use crate::crypto::{Aad, MasterKey};

/// Where a mailbox was defined.
pub const ORIGIN_CONFIG: &str = "config";
/// Added by an admin through the CLI or API.
pub const ORIGIN_ADMIN: &str = "admin";

/// Settings of an admin-added mailbox, sealed as JSON under the master key.
#[derive(Serialize, Deserialize)]
struct StoredSettings {
    kind: String,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<String>,
    insecure: bool,
    folders: Vec<String>,
    after_fetch: String,
    move_to: Option<String>,
    path: Option<String>,
    /// Reply settings (absent in rows written before replies could be configured here).
    #[serde(default)]
    outgoing: Option<StoredOutgoing>,
    /// OAuth2 sign-in of the IMAP side (and of the SMTP side when `outgoing.oauth`); the IMAP password
    /// is then absent. Absent in rows written before admin mailboxes could use OAuth.
    #[serde(default)]
    oauth: Option<StoredOAuth>,
}

/// The OAuth settings of an admin mailbox as resolved when they were saved (preset endpoints filled in),
/// sealed with its other settings: the client secret is never stored in the clear.
#[derive(Serialize, Deserialize)]
struct StoredOAuth {
    /// `google`, `microsoft` or `generic`.
    provider: String,
    tenant: Option<String>,
    authorization_url: String,
    token_url: String,
    scopes: Vec<String>,
    authorize_params: Vec<(String, String)>,
    client_id: String,
    client_secret: Option<String>,
    /// `xoauth2` or `oauthbearer`.
    mechanism: String,
    redirect_port: u16,
}

/// The sending side of an admin mailbox, sealed with its other settings.
#[derive(Serialize, Deserialize)]
struct StoredOutgoing {
    address: String,
    display_name: Option<String>,
    host: String,
    port: u16,
    tls: String,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<String>,
    insecure: bool,
    verp: bool,
    /// Signs in with the mailbox's OAuth token instead of `password`.
    #[serde(default)]
    oauth: bool,
}

fn tls_name(tls: TlsSetting) -> String {
    match tls {
        TlsSetting::Implicit => "implicit",
        TlsSetting::StartTls => "starttls",
    }
    .to_string()
}

fn tls_from(name: &str) -> TlsSetting {
    if name == "starttls" {
        TlsSetting::StartTls
    } else {
        TlsSetting::Implicit
    }
}

fn outgoing_to_stored(outgoing: &Outgoing) -> StoredOutgoing {
    let smtp = &outgoing.smtp;
    StoredOutgoing {
        address: outgoing.address.clone(),
        display_name: outgoing.display_name.clone(),
        host: smtp.host.clone(),
        port: smtp.port,
        tls: tls_name(smtp.tls),
        username: smtp.username.clone(),
        password: match &smtp.password {
            Some(PasswordSource::Stored(secret)) => Some(secret.expose().to_string()),
            _ => None,
        },
        ca_file: smtp.ca_file.as_ref().map(|p| p.display().to_string()),
        insecure: smtp.insecure,
        verp: smtp.verp,
        oauth: matches!(smtp.password, Some(PasswordSource::OAuth(_))),
    }
}

fn outgoing_from_stored(stored: StoredOutgoing, oauth: Option<&OAuthConfig>) -> Outgoing {
    let password = match (stored.oauth, oauth) {
        (true, Some(oauth)) => Some(PasswordSource::OAuth(Box::new(oauth.clone()))),
        _ => stored
            .password
            .map(|secret| PasswordSource::Stored(Secret::new(secret))),
    };
    Outgoing {
        address: stored.address,
        display_name: stored.display_name,
        smtp: SmtpConfig {
            host: stored.host,
            port: stored.port,
            tls: tls_from(&stored.tls),
            username: stored.username,
            password,
            ca_file: stored.ca_file.map(Into::into),
            insecure: stored.insecure,
            verp: stored.verp,
        },
    }
}

/// Every mailbox the daemon runs: the config file's first, then the admin-added ones (with their
/// sealed settings opened). A stored mailbox whose settings cannot be opened is skipped with a warning.
pub async fn all_configs(
    db: &impl ConnectionTrait,
    key: &MasterKey,
    from_config: &[MailboxConfig],
) -> Result<Vec<MailboxConfig>, StoreError> {
    let mut all = from_config.to_vec();
    for row in list(db).await? {
        if row.origin != ORIGIN_ADMIN || all.iter().any(|m| m.name == row.name) {
            continue;
        }
        match admin_config(key, &row) {
            Ok(config) => all.push(config),
            Err(err) => {
                tracing::warn!(mailbox = %row.name, error = %err, "cannot read stored mailbox")
            }
        }
    }
    Ok(all)
}

fn oauth_to_stored(oauth: &OAuthConfig) -> StoredOAuth {
    StoredOAuth {
        provider: oauth.provider.name().to_string(),
        tenant: match &oauth.provider {
            OAuthProvider::Microsoft { tenant } => Some(tenant.clone()),
            _ => None,
        },
        authorization_url: oauth.authorization_url.clone(),
        token_url: oauth.token_url.clone(),
        scopes: oauth.scopes.clone(),
        authorize_params: oauth.authorize_params.clone(),
        client_id: oauth.client_id.clone(),
        // Admin mailboxes only ever get their secret through the API or the CLI (sealed here).
        client_secret: match &oauth.client_secret {
            Some(PasswordSource::Stored(secret)) => Some(secret.expose().to_string()),
            _ => None,
        },
        mechanism: match oauth.mechanism {
            SaslMechanism::XOAuth2 => "xoauth2",
            SaslMechanism::OAuthBearer => "oauthbearer",
        }
        .to_string(),
        redirect_port: oauth.redirect_port,
    }
}

fn oauth_from_stored(stored: StoredOAuth) -> Result<OAuthConfig, String> {
    let provider = match (stored.provider.as_str(), stored.tenant) {
        ("google", _) => OAuthProvider::Google,
        ("microsoft", tenant) => OAuthProvider::Microsoft {
            tenant: tenant.unwrap_or_else(|| "common".to_string()),
        },
        ("generic", _) => OAuthProvider::Generic,
        (other, _) => return Err(format!("unknown oauth provider `{other}`")),
    };
    let mechanism = match stored.mechanism.as_str() {
        "oauthbearer" => SaslMechanism::OAuthBearer,
        "xoauth2" => SaslMechanism::XOAuth2,
        other => return Err(format!("unknown oauth mechanism `{other}`")),
    };
    Ok(OAuthConfig {
        provider,
        authorization_url: stored.authorization_url,
        token_url: stored.token_url,
        scopes: stored.scopes,
        authorize_params: stored.authorize_params,
        client_id: stored.client_id,
        client_secret: stored
            .client_secret
            .map(|secret| PasswordSource::Stored(Secret::new(secret))),
        mechanism,
        redirect_port: stored.redirect_port,
    })
}

fn settings_aad(name: &str) -> Aad {
    Aad::new("mailbox.settings").with_str(name)
}

fn kind_of(config: &MailboxConfig) -> &'static str {
    match config.source {
        MailboxSource::Imap(_) => "imap",
        MailboxSource::Maildir { .. } => "maildir",
    }
}

/// Finds a mailbox row by name.
pub async fn by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<mailbox::Model>, StoreError> {
    Ok(mailbox::Entity::find()
        .filter(mailbox::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// A mailbox row as the CLI and the API show it (status, counts; never settings or secrets).
pub fn status_json(row: &mailbox::Model) -> serde_json::Value {
    serde_json::json!({
        "name": row.name, "kind": row.kind, "origin": row.origin, "enabled": row.enabled,
        "status": row.status, "last_sync_at": row.last_sync_at, "last_error": row.last_error,
        "last_error_at": row.last_error_at, "messages_stored": row.messages_stored,
        "retention_days": row.retention_days, "legal_hold": row.legal_hold,
    })
}

/// Every mailbox row, by name.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<mailbox::Model>, StoreError> {
    Ok(mailbox::Entity::find()
        .order_by_asc(mailbox::Column::Name)
        .all(db)
        .await?)
}

/// Creates or updates the row of a config-file mailbox and returns its id.
pub async fn upsert_from_config(
    db: &impl ConnectionTrait,
    config: &MailboxConfig,
) -> Result<Uuid, StoreError> {
    let now = clock::now();
    let retention = config
        .retention_days
        .map(|days| i32::try_from(days).unwrap_or(i32::MAX));
    if let Some(row) = by_name(db, &config.name).await? {
        let id = row.id;
        let mut active: mailbox::ActiveModel = row.into();
        active.kind = Set(kind_of(config).to_string());
        active.origin = Set(ORIGIN_CONFIG.to_string());
        active.enabled = Set(config.enabled);
        // The file's `retention_days`, when given, wins; without it the admin's setting stands.
        if retention.is_some() {
            active.retention_days = Set(retention);
        }
        active.updated_at = Set(now);
        active.update(db).await?;
        return Ok(id);
    }
    insert_new(db, config, ORIGIN_CONFIG, None, retention, now).await
}

/// Adds (or replaces) an admin mailbox; its settings, including the password, are sealed.
pub async fn save_admin(
    db: &impl ConnectionTrait,
    key: &MasterKey,
    config: &MailboxConfig,
    password: Option<&Secret>,
) -> Result<Uuid, StoreError> {
    let sealed = seal_settings(key, config, password)?;
    let now = clock::now();
    let retention = config
        .retention_days
        .map(|days| i32::try_from(days).unwrap_or(i32::MAX));
    if let Some(row) = by_name(db, &config.name).await? {
        let id = row.id;
        let mut active: mailbox::ActiveModel = row.into();
        active.kind = Set(kind_of(config).to_string());
        active.origin = Set(ORIGIN_ADMIN.to_string());
        active.settings_sealed = Set(Some(sealed));
        active.enabled = Set(config.enabled);
        active.retention_days = Set(retention);
        active.updated_at = Set(now);
        active.update(db).await?;
        return Ok(id);
    }
    insert_new(db, config, ORIGIN_ADMIN, Some(sealed), retention, now).await
}

/// The settings of an admin mailbox (IMAP `password` included) as JSON sealed under `key`.
fn seal_settings(
    key: &MasterKey,
    config: &MailboxConfig,
    password: Option<&Secret>,
) -> Result<Vec<u8>, StoreError> {
    let stored = to_stored(config, password);
    let json = zeroize::Zeroizing::new(serde_json::to_vec(&stored).map_err(|err| {
        StoreError::Corrupt {
            what: "mailbox settings".to_string(),
            message: err.to_string(),
        }
    })?);
    Ok(key.seal_secret(&json, &settings_aad(&config.name)))
}

async fn insert_new(
    db: &impl ConnectionTrait,
    config: &MailboxConfig,
    origin: &str,
    settings_sealed: Option<Vec<u8>>,
    retention: Option<i32>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    mailbox::ActiveModel {
        id: Set(id),
        name: Set(config.name.clone()),
        kind: Set(kind_of(config).to_string()),
        origin: Set(origin.to_string()),
        settings_sealed: Set(settings_sealed),
        enabled: Set(config.enabled),
        retention_days: Set(retention),
        legal_hold: Set(false),
        legal_hold_reason_sealed: Set(None),
        status: Set("idle".to_string()),
        last_sync_at: Set(None),
        last_error: Set(None),
        last_error_at: Set(None),
        messages_stored: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(id)
}

fn to_stored(config: &MailboxConfig, password: Option<&Secret>) -> StoredSettings {
    let mut stored = StoredSettings {
        kind: kind_of(config).to_string(),
        host: None,
        port: None,
        tls: None,
        username: None,
        password: password.map(|secret| secret.expose().to_string()),
        ca_file: None,
        insecure: false,
        folders: Vec::new(),
        after_fetch: "leave".to_string(),
        move_to: None,
        path: None,
        outgoing: config.outgoing.as_ref().map(outgoing_to_stored),
        oauth: config.oauth().map(oauth_to_stored),
    };
    match &config.source {
        MailboxSource::Imap(imap) => {
            stored.host = Some(imap.host.clone());
            stored.port = Some(imap.port);
            stored.tls = Some(
                match imap.tls {
                    TlsSetting::Implicit => "implicit",
                    TlsSetting::StartTls => "starttls",
                }
                .to_string(),
            );
            stored.username = Some(imap.username.clone());
            stored.ca_file = imap.ca_file.as_ref().map(|p| p.display().to_string());
            stored.insecure = imap.insecure;
            stored.folders = imap.folders.clone();
            match &imap.after_fetch {
                AfterFetch::Leave => {}
                AfterFetch::MarkSeen => stored.after_fetch = "mark_seen".to_string(),
                AfterFetch::MoveTo(folder) => {
                    stored.after_fetch = "move".to_string();
                    stored.move_to = Some(folder.clone());
                }
            }
        }
        MailboxSource::Maildir { path } => stored.path = Some(path.display().to_string()),
    }
    stored
}

/// Decrypts the settings of an admin mailbox row into a [`MailboxConfig`].
pub fn admin_config(key: &MasterKey, row: &mailbox::Model) -> Result<MailboxConfig, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        what: format!("mailbox {} settings", row.name),
        message,
    };
    let sealed = row
        .settings_sealed
        .as_ref()
        .ok_or_else(|| corrupt("no settings stored".to_string()))?;
    let json = key.open_secret(sealed, &settings_aad(&row.name))?;
    let stored: StoredSettings =
        serde_json::from_slice(&json).map_err(|err| corrupt(err.to_string()))?;
    let oauth = stored
        .oauth
        .map(oauth_from_stored)
        .transpose()
        .map_err(corrupt)?;
    let source = match stored.kind.as_str() {
        "maildir" => MailboxSource::Maildir {
            path: stored.path.unwrap_or_default().into(),
        },
        _ => MailboxSource::Imap(ImapMailbox {
            host: stored.host.unwrap_or_default(),
            port: stored.port.unwrap_or(993),
            tls: if stored.tls.as_deref() == Some("starttls") {
                TlsSetting::StartTls
            } else {
                TlsSetting::Implicit
            },
            username: stored.username.unwrap_or_default(),
            password: match &oauth {
                Some(oauth) => PasswordSource::OAuth(Box::new(oauth.clone())),
                None => PasswordSource::Stored(Secret::new(stored.password.unwrap_or_default())),
            },
            ca_file: stored.ca_file.map(Into::into),
            insecure: stored.insecure,
            folders: stored.folders,
            after_fetch: match (stored.after_fetch.as_str(), stored.move_to) {
                ("mark_seen", _) => AfterFetch::MarkSeen,
                ("move", Some(folder)) => AfterFetch::MoveTo(folder),
                _ => AfterFetch::Leave,
            },
        }),
    };
    Ok(MailboxConfig {
        name: row.name.clone(),
        source,
        retention_days: row.retention_days.and_then(|days| u32::try_from(days).ok()),
        enabled: row.enabled,
        outgoing: stored
            .outgoing
            .map(|outgoing| outgoing_from_stored(outgoing, oauth.as_ref())),
    })
}

/// Removes an admin mailbox and, through cascading keys, everything stored from it.
pub async fn remove(db: &impl ConnectionTrait, name: &str) -> Result<bool, StoreError> {
    let result = mailbox::Entity::delete_many()
        .filter(mailbox::Column::Name.eq(name))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Records a finished sync pass. The count is added in SQL (`messages_stored = messages_stored + n`):
/// two passes over one mailbox (the supervisor's and one asked for through the API) may finish together.
pub async fn record_success(
    db: &impl ConnectionTrait,
    id: Uuid,
    stored_now: i64,
) -> Result<(), StoreError> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    mailbox::Entity::update_many()
        .col_expr(mailbox::Column::Status, Expr::value("ok"))
        .col_expr(mailbox::Column::LastSyncAt, Expr::value(Some(clock::now())))
        .col_expr(
            mailbox::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            mailbox::Column::MessagesStored,
            Expr::col(mailbox::Column::MessagesStored).add(stored_now),
        )
        .filter(mailbox::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Records a failure for the status view. The message must not contain secrets or mail content.
pub async fn record_error(
    db: &impl ConnectionTrait,
    id: Uuid,
    status: &str,
    message: &str,
) -> Result<(), StoreError> {
    if let Some(row) = mailbox::Entity::find_by_id(id).one(db).await? {
        crate::metrics::record_sync_error(&row.name);
        let mut active: mailbox::ActiveModel = row.into();
        active.status = Set(status.to_string());
        active.last_error = Set(Some(message.to_string()));
        active.last_error_at = Set(Some(clock::now()));
        active.update(db).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OAuthConfig, OAuthProvider, SaslMechanism};

    fn row(name: &str, sealed: Vec<u8>) -> mailbox::Model {
        let now = clock::now();
        mailbox::Model {
            id: Uuid::now_v7(),
            name: name.to_string(),
            kind: "imap".to_string(),
            origin: ORIGIN_ADMIN.to_string(),
            settings_sealed: Some(sealed),
            enabled: true,
            retention_days: None,
            legal_hold: false,
            legal_hold_reason_sealed: None,
            status: "idle".to_string(),
            last_sync_at: None,
            last_error: None,
            last_error_at: None,
            messages_stored: 0,
            created_at: now,
            updated_at: now,
        }
    }

    fn oauth_mailbox(secret: &str) -> MailboxConfig {
        let oauth = OAuthConfig {
            provider: OAuthProvider::Microsoft {
                tenant: "contoso.onmicrosoft.com".to_string(),
            },
            authorization_url: "https://login.example/authorize".to_string(),
            token_url: "https://login.example/token".to_string(),
            scopes: vec!["offline_access".to_string()],
            authorize_params: vec![("prompt".to_string(), "consent".to_string())],
            client_id: "client".to_string(),
            client_secret: Some(PasswordSource::Stored(Secret::new(secret.to_string()))),
            mechanism: SaslMechanism::OAuthBearer,
            redirect_port: 8765,
        };
        MailboxConfig {
            name: "m365".to_string(),
            source: MailboxSource::Imap(ImapMailbox {
                host: "outlook.office365.com".to_string(),
                port: 993,
                tls: TlsSetting::Implicit,
                username: "support@contoso.com".to_string(),
                password: PasswordSource::OAuth(Box::new(oauth.clone())),
                ca_file: None,
                insecure: false,
                folders: vec!["INBOX".to_string()],
                after_fetch: AfterFetch::Leave,
            }),
            retention_days: None,
            enabled: true,
            outgoing: Some(Outgoing {
                address: "support@contoso.com".to_string(),
                display_name: None,
                smtp: SmtpConfig {
                    host: "smtp.office365.com".to_string(),
                    port: 587,
                    tls: TlsSetting::StartTls,
                    username: Some("support@contoso.com".to_string()),
                    password: Some(PasswordSource::OAuth(Box::new(oauth))),
                    ca_file: None,
                    insecure: false,
                    verp: true,
                },
            }),
        }
    }

    #[test]
    fn oauth_settings_round_trip_sealed_and_open_only_under_their_key() {
        let key = MasterKey::generate();
        let secret = "client-secret-canary-7f3a";
        let config = oauth_mailbox(secret);
        let sealed = seal_settings(&key, &config, None).expect("seal");
        assert!(
            !sealed
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "client secret stored in the clear"
        );
        let opened = admin_config(&key, &row("m365", sealed.clone())).expect("open");
        assert_eq!(opened, config);
        assert!(admin_config(&MasterKey::generate(), &row("m365", sealed.clone())).is_err());
        // Bound to the mailbox's name: settings copied to another row do not open.
        assert!(admin_config(&key, &row("other", sealed)).is_err());
    }

    #[test]
    fn password_mailboxes_written_before_oauth_still_open() {
        let key = MasterKey::generate();
        let mut config = oauth_mailbox("x");
        let MailboxSource::Imap(imap) = &mut config.source else {
            unreachable!("built as imap");
        };
        imap.password = PasswordSource::Stored(Secret::new("pw".to_string()));
        config.outgoing = None;
        let mut json: serde_json::Value =
            serde_json::to_value(to_stored(&config, Some(&Secret::new("pw".to_string()))))
                .expect("json");
        // What rows written before admin mailboxes could use OAuth hold: no `oauth` key at all.
        json.as_object_mut().expect("object").remove("oauth");
        let sealed = key.seal_secret(json.to_string().as_bytes(), &settings_aad(&config.name));
        let opened = admin_config(&key, &row("m365", sealed)).expect("open");
        assert_eq!(opened, config);
        assert!(opened.oauth().is_none());
    }
}
