//! Legal hold and retention settings. A conversation on hold, or any conversation of a mailbox on hold, is
//! never purged or erased until the hold is lifted. Hold reasons are sealed (a conversation's under its
//! data key, a mailbox's under the master key): they may name people or cases.
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use crate::clock;
use crate::crypto::{Aad, MasterKey};
use crate::store::entities::{conversation, mailbox};
use crate::store::threads::{conversation_key, hold_reason_aad};
use crate::store::{Store, StoreError, begin_write, mailboxes};

/// What a hold applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum HoldTarget {
    Conversation(Uuid),
    Mailbox(String),
}

impl std::fmt::Display for HoldTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldTarget::Conversation(id) => write!(f, "conversation {id}"),
            HoldTarget::Mailbox(name) => write!(f, "mailbox {name}"),
        }
    }
}

/// One active hold, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Hold {
    pub target: HoldTarget,
    pub reason: Option<String>,
}

fn mailbox_hold_aad(mailbox_id: &Uuid) -> Aad {
    Aad::new("mailbox.hold_reason").with_bytes(mailbox_id.as_bytes())
}

/// Places (`Some(reason)`) or lifts (`None`) a hold. Errors with `NotFound` for an unknown target.
pub async fn set_hold(
    store: &Store,
    master: &MasterKey,
    target: &HoldTarget,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let transaction = begin_write(&store.db).await?;
    match target {
        HoldTarget::Conversation(id) => {
            let row = conversation::Entity::find_by_id(*id)
                .one(&transaction)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("conversation {id}")))?;
            let sealed = match reason {
                Some(text) => {
                    let key = conversation_key(&transaction, master, *id).await?;
                    Some(key.seal(text.as_bytes(), &hold_reason_aad(id)))
                }
                None => None,
            };
            let mut active: conversation::ActiveModel = row.into();
            active.legal_hold = Set(reason.is_some());
            active.legal_hold_reason_sealed = Set(sealed);
            active.updated_at = Set(clock::now());
            active.update(&transaction).await?;
        }
        HoldTarget::Mailbox(name) => {
            let row = mailboxes::by_name(&transaction, name)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
            let sealed =
                reason.map(|text| master.seal_secret(text.as_bytes(), &mailbox_hold_aad(&row.id)));
            let mut active: mailbox::ActiveModel = row.into();
            active.legal_hold = Set(reason.is_some());
            active.legal_hold_reason_sealed = Set(sealed);
            active.updated_at = Set(clock::now());
            active.update(&transaction).await?;
        }
    }
    transaction.commit().await?;
    Ok(())
}

/// Every active hold with its reason.
pub async fn list_holds(store: &Store, master: &MasterKey) -> Result<Vec<Hold>, StoreError> {
    let mut holds = Vec::new();
    for row in mailbox::Entity::find()
        .filter(mailbox::Column::LegalHold.eq(true))
        .all(&store.db)
        .await?
    {
        let reason = match &row.legal_hold_reason_sealed {
            Some(sealed) => Some(
                String::from_utf8_lossy(&master.open_secret(sealed, &mailbox_hold_aad(&row.id))?)
                    .into_owned(),
            ),
            None => None,
        };
        holds.push(Hold {
            target: HoldTarget::Mailbox(row.name),
            reason,
        });
    }
    for row in conversation::Entity::find()
        .filter(conversation::Column::LegalHold.eq(true))
        .all(&store.db)
        .await?
    {
        let reason = match &row.legal_hold_reason_sealed {
            Some(sealed) => {
                let key = conversation_key(&store.db, master, row.id).await?;
                Some(
                    String::from_utf8_lossy(&key.open(sealed, &hold_reason_aad(&row.id))?)
                        .into_owned(),
                )
            }
            None => None,
        };
        holds.push(Hold {
            target: HoldTarget::Conversation(row.id),
            reason,
        });
    }
    Ok(holds)
}

/// Whether the config file sets this mailbox's `retention_days` (then the file wins and the CLI/API
/// must not change it).
pub fn retention_from_file(from_config: &[crate::config::MailboxConfig], name: &str) -> bool {
    from_config
        .iter()
        .any(|mailbox| mailbox.name == name && mailbox.retention_days.is_some())
}

/// Sets a mailbox's retention window (`None` keeps mail forever). Shortening it takes effect at the next
/// purge run. Returns the previous value.
pub async fn set_retention(
    store: &Store,
    name: &str,
    days: Option<u32>,
) -> Result<Option<i32>, StoreError> {
    let transaction = begin_write(&store.db).await?;
    let row = mailboxes::by_name(&transaction, name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
    let previous = row.retention_days;
    let mut active: mailbox::ActiveModel = row.into();
    active.retention_days = Set(days.map(|days| i32::try_from(days).unwrap_or(i32::MAX)));
    active.updated_at = Set(clock::now());
    active.update(&transaction).await?;
    transaction.commit().await?;
    Ok(previous)
}

/// Re-seals the hold reasons of mailboxes under a new master key (key rotation). Reasons already under
/// the new key are left as they are, so an interrupted rotation can be run again. Returns how many were
/// re-sealed.
pub async fn reseal_mailbox_reasons(
    db: &impl sea_orm::ConnectionTrait,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, StoreError> {
    let mut resealed = 0;
    for row in mailbox::Entity::find()
        .filter(mailbox::Column::LegalHoldReasonSealed.is_not_null())
        .all(db)
        .await?
    {
        let Some(sealed) = row.legal_hold_reason_sealed.clone() else {
            continue;
        };
        let aad = mailbox_hold_aad(&row.id);
        let Ok(reason) = old.open_secret(&sealed, &aad) else {
            new.open_secret(&sealed, &aad)?;
            continue;
        };
        let mut active: mailbox::ActiveModel = row.into();
        active.legal_hold_reason_sealed = Set(Some(new.seal_secret(&reason, &aad)));
        active.update(db).await?;
        resealed += 1;
    }
    Ok(resealed)
}
