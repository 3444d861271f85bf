//! OAuth2 tokens of mailboxes, sealed under the master key. Every change is one single-row statement, so
//! a rotated refresh token and the access token issued with it land together or not at all.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::{mailbox, oauth_token};
use crate::clock;
use crate::config::Secret;
use crate::crypto::{Aad, MasterKey};

/// The tokens are usable.
pub const STATE_AUTHORIZED: &str = "authorized";
/// The provider refused the refresh token; only `mailbox authorize` helps.
pub const STATE_NEEDS_REAUTHORIZATION: &str = "needs_reauthorization";

fn refresh_aad(mailbox_id: &Uuid) -> Aad {
    Aad::new("oauth.refresh_token").with_str(&mailbox_id.to_string())
}

fn access_aad(mailbox_id: &Uuid) -> Aad {
    Aad::new("oauth.access_token").with_str(&mailbox_id.to_string())
}

/// An access token with its expiry.
pub struct AccessToken {
    pub token: Secret,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The token row of a mailbox, if it was ever authorized.
pub async fn get(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
) -> Result<Option<oauth_token::Model>, StoreError> {
    Ok(oauth_token::Entity::find_by_id(mailbox_id).one(db).await?)
}

/// Opens the sealed refresh token of a row.
pub fn open_refresh(key: &MasterKey, row: &oauth_token::Model) -> Result<Secret, StoreError> {
    let plain = key.open_secret(&row.refresh_token_sealed, &refresh_aad(&row.mailbox_id))?;
    secret_from(&plain, "refresh token")
}

/// Opens the cached access token of a row, if there is one.
pub fn open_access(
    key: &MasterKey,
    row: &oauth_token::Model,
) -> Result<Option<AccessToken>, StoreError> {
    let Some(sealed) = &row.access_token_sealed else {
        return Ok(None);
    };
    let plain = key.open_secret(sealed, &access_aad(&row.mailbox_id))?;
    Ok(Some(AccessToken {
        token: secret_from(&plain, "access token")?,
        expires_at: row.access_expires_at,
    }))
}

fn secret_from(plain: &[u8], what: &str) -> Result<Secret, StoreError> {
    String::from_utf8(plain.to_vec())
        .map(Secret::new)
        .map_err(|_| StoreError::Corrupt {
            what: format!("oauth {what}"),
            message: "not UTF-8".to_string(),
        })
}

/// Stores the tokens of a new authorization (replacing any earlier ones), bumps the generation and
/// clears a `needs_reauthorization` status of the mailbox.
pub async fn save_authorization(
    db: &sea_orm::DatabaseConnection,
    key: &MasterKey,
    mailbox_id: Uuid,
    refresh_token: &Secret,
    access: Option<&AccessToken>,
) -> Result<i64, StoreError> {
    let now = clock::now();
    let refresh_sealed =
        key.seal_secret(refresh_token.expose().as_bytes(), &refresh_aad(&mailbox_id));
    let access_sealed = access
        .map(|access| key.seal_secret(access.token.expose().as_bytes(), &access_aad(&mailbox_id)));
    let expires_at = access.and_then(|access| access.expires_at);
    let transaction = super::begin_write(db).await?;
    let generation = match get(&transaction, mailbox_id).await? {
        Some(row) => {
            let generation = row.generation + 1;
            let mut active: oauth_token::ActiveModel = row.into();
            active.refresh_token_sealed = Set(refresh_sealed);
            active.access_token_sealed = Set(access_sealed);
            active.access_expires_at = Set(expires_at);
            active.state = Set(STATE_AUTHORIZED.to_string());
            active.generation = Set(generation);
            active.refreshed_at = Set(Some(now));
            active.updated_at = Set(now);
            active.update(&transaction).await?;
            generation
        }
        None => {
            oauth_token::ActiveModel {
                mailbox_id: Set(mailbox_id),
                refresh_token_sealed: Set(refresh_sealed),
                access_token_sealed: Set(access_sealed),
                access_expires_at: Set(expires_at),
                state: Set(STATE_AUTHORIZED.to_string()),
                generation: Set(1),
                refreshed_at: Set(Some(now)),
                updated_at: Set(now),
            }
            .insert(&transaction)
            .await?;
            1
        }
    };
    mailbox::Entity::update_many()
        .col_expr(mailbox::Column::Status, Expr::value("idle"))
        .col_expr(
            mailbox::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(mailbox::Column::Id.eq(mailbox_id))
        .filter(mailbox::Column::Status.eq(STATE_NEEDS_REAUTHORIZATION))
        .exec(&transaction)
        .await?;
    transaction.commit().await?;
    Ok(generation)
}

/// Stores the result of a refresh in one statement: the new access token and, when the provider rotated
/// it, the new refresh token. Only applies while the row is still at `generation`, so a refresh racing
/// with a new authorization never overwrites the newer grant. Returns whether the row was updated.
pub async fn save_refreshed(
    db: &impl ConnectionTrait,
    key: &MasterKey,
    mailbox_id: Uuid,
    generation: i64,
    rotated_refresh_token: Option<&Secret>,
    access: &AccessToken,
) -> Result<bool, StoreError> {
    let now = clock::now();
    let mut update = oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::AccessTokenSealed,
            Expr::value(Some(key.seal_secret(
                access.token.expose().as_bytes(),
                &access_aad(&mailbox_id),
            ))),
        )
        .col_expr(
            oauth_token::Column::AccessExpiresAt,
            Expr::value(access.expires_at),
        )
        .col_expr(oauth_token::Column::RefreshedAt, Expr::value(Some(now)))
        .col_expr(oauth_token::Column::UpdatedAt, Expr::value(now));
    if let Some(refresh_token) = rotated_refresh_token {
        update = update.col_expr(
            oauth_token::Column::RefreshTokenSealed,
            Expr::value(
                key.seal_secret(refresh_token.expose().as_bytes(), &refresh_aad(&mailbox_id)),
            ),
        );
    }
    let result = update
        .filter(oauth_token::Column::MailboxId.eq(mailbox_id))
        .filter(oauth_token::Column::Generation.eq(generation))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Marks the grant of `generation` as refused by the provider; drops the cached access token.
pub async fn mark_needs_reauthorization(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    generation: i64,
) -> Result<(), StoreError> {
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::State,
            Expr::value(STATE_NEEDS_REAUTHORIZATION),
        )
        .col_expr(
            oauth_token::Column::AccessTokenSealed,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .col_expr(oauth_token::Column::UpdatedAt, Expr::value(clock::now()))
        .filter(oauth_token::Column::MailboxId.eq(mailbox_id))
        .filter(oauth_token::Column::Generation.eq(generation))
        .exec(db)
        .await?;
    Ok(())
}

/// Re-seals every token under a new master key (key rotation). Rows already under the new key are left
/// as they are, so an interrupted rotation can be run again. Returns how many rows were re-sealed.
pub async fn reseal(
    db: &impl ConnectionTrait,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, StoreError> {
    let mut resealed = 0;
    for row in oauth_token::Entity::find().all(db).await? {
        let id = row.mailbox_id;
        let Ok(refresh) = old.open_secret(&row.refresh_token_sealed, &refresh_aad(&id)) else {
            new.open_secret(&row.refresh_token_sealed, &refresh_aad(&id))?;
            continue;
        };
        // A cached access token that does not open is only a cache: drop it.
        let access = row
            .access_token_sealed
            .as_ref()
            .and_then(|sealed| old.open_secret(sealed, &access_aad(&id)).ok())
            .map(|plain| new.seal_secret(&plain, &access_aad(&id)));
        let mut active: oauth_token::ActiveModel = row.into();
        active.refresh_token_sealed = Set(new.seal_secret(&refresh, &refresh_aad(&id)));
        active.access_token_sealed = Set(access);
        active.update(db).await?;
        resealed += 1;
    }
    Ok(resealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_mailbox_and_kind() {
        let key = MasterKey::generate();
        let mailbox = Uuid::now_v7();
        let other = Uuid::now_v7();
        let sealed = key.seal_secret(b"rt-secret", &refresh_aad(&mailbox));
        assert!(!sealed.windows(9).any(|window| window == b"rt-secret"));
        assert_eq!(
            key.open_secret(&sealed, &refresh_aad(&mailbox))
                .expect("opens")
                .as_slice(),
            b"rt-secret"
        );
        assert!(key.open_secret(&sealed, &refresh_aad(&other)).is_err());
        assert!(key.open_secret(&sealed, &access_aad(&mailbox)).is_err());
    }
}
