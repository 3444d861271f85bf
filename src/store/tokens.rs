//! API bearer tokens. Only the SHA-256 of a token is stored: a token is 256 random bits, so a plain hash
//! cannot be reversed or guessed, and a stolen database grants no access. Revocation sets `revoked_at`;
//! every request looks its token up again, so a revoked token is refused at once.
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::StoreError;
use super::entities::api_token;
use crate::clock;

/// Role that may do everything, including managing mailboxes and tokens.
pub const ROLE_ADMIN: &str = "admin";
/// Role that reads and answers conversations, optionally only of some mailboxes.
pub const ROLE_AGENT: &str = "agent";
/// Name of the admin token the daemon rotates at each start for the local CLI.
pub const LOCAL_ADMIN: &str = "local-admin";
/// Prefix of every token, so a leaked one is recognisable (secret scanners) and typos are caught early.
pub const TOKEN_PREFIX: &str = "inboxd_";

/// A token as listed (never the secret, never its hash).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    /// Mailbox names an agent token is limited to; `None` = every mailbox.
    pub mailboxes: Option<Vec<String>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A token that is valid now.
#[derive(Debug, Clone)]
pub struct ValidToken {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub mailboxes: Option<Vec<String>>,
}

/// The hash stored for a token secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

fn scope_of(row: &api_token::Model) -> Option<Vec<String>> {
    row.mailbox_scope
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or_default())
}

fn info(row: api_token::Model) -> TokenInfo {
    TokenInfo {
        mailboxes: scope_of(&row),
        id: row.id,
        name: row.name,
        role: row.role,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        revoked_at: row.revoked_at,
    }
}

/// Creates a token; returns it and its secret, which is shown once and never stored.
pub async fn create(
    db: &impl ConnectionTrait,
    name: &str,
    role: &str,
    mailboxes: Option<Vec<String>>,
) -> Result<(TokenInfo, String), StoreError> {
    let secret = new_secret();
    let now = clock::now();
    let scope = mailboxes
        .as_ref()
        .map(|names| serde_json::to_string(names).unwrap_or_else(|_| "[]".to_string()));
    let row = api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_string()),
        token_hash: Set(hash_secret(&secret)),
        role: Set(role.to_string()),
        mailbox_scope: Set(scope),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok((info(row), secret))
}

/// The valid (not revoked) token with this secret, if any.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    secret: &str,
) -> Result<Option<ValidToken>, StoreError> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let Some(row) = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(hash_secret(secret)))
        .filter(api_token::Column::RevokedAt.is_null())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(ValidToken {
        mailboxes: scope_of(&row),
        id: row.id,
        name: row.name,
        role: row.role,
    }))
}

/// Notes that a token was used (at most once a minute per token, to keep reads cheap).
pub async fn touch(db: &impl ConnectionTrait, id: Uuid) -> Result<(), StoreError> {
    let now = clock::now();
    let Some(row) = api_token::Entity::find_by_id(id).one(db).await? else {
        return Ok(());
    };
    if row
        .last_used_at
        .is_some_and(|at| now - at < chrono::Duration::seconds(60))
    {
        return Ok(());
    }
    let mut active: api_token::ActiveModel = row.into();
    active.last_used_at = Set(Some(now));
    active.update(db).await?;
    Ok(())
}

/// Every token, oldest first (revoked ones too, marked).
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<TokenInfo>, StoreError> {
    Ok(api_token::Entity::find()
        .order_by_asc(api_token::Column::CreatedAt)
        .order_by_asc(api_token::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(info)
        .collect())
}

/// Revokes the token with this id, or the active tokens with this name. Returns what was revoked.
pub async fn revoke(
    db: &impl ConnectionTrait,
    name_or_id: &str,
) -> Result<Vec<TokenInfo>, StoreError> {
    let query = match Uuid::parse_str(name_or_id) {
        Ok(id) => api_token::Entity::find().filter(api_token::Column::Id.eq(id)),
        Err(_) => api_token::Entity::find().filter(api_token::Column::Name.eq(name_or_id)),
    };
    let rows = query
        .filter(api_token::Column::RevokedAt.is_null())
        .all(db)
        .await?;
    let now = clock::now();
    let mut revoked = Vec::new();
    for row in rows {
        let mut active: api_token::ActiveModel = row.into();
        active.revoked_at = Set(Some(now));
        revoked.push(info(active.update(db).await?));
    }
    Ok(revoked)
}

/// Whether an active token has this name.
pub async fn name_in_use(db: &impl ConnectionTrait, name: &str) -> Result<bool, StoreError> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::Name.eq(name))
        .filter(api_token::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .is_some())
}

/// Replaces the daemon's local admin token: earlier ones are deleted (they were only ever in the
/// daemon's own file) and a new one is created. Returns the new secret.
pub async fn rotate_local_admin(db: &impl ConnectionTrait) -> Result<String, StoreError> {
    api_token::Entity::delete_many()
        .filter(api_token::Column::Name.eq(LOCAL_ADMIN))
        .exec(db)
        .await?;
    let (_, secret) = create(db, LOCAL_ADMIN, ROLE_ADMIN, None).await?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let first = new_secret();
        let second = new_secret();
        assert_ne!(first, second);
        assert!(first.starts_with(TOKEN_PREFIX));
        assert_eq!(first.len(), TOKEN_PREFIX.len() + 64);
        let hash = hash_secret(&first);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&first[TOKEN_PREFIX.len()..]));
    }
}
