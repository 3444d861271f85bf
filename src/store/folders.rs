//! Per-folder sync state: UIDVALIDITY and the highest UID stored (RFC 3501 section 2.3.1.1).
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::folder_state;
use crate::clock;

/// The checkpoint of one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uid_validity: u32,
    pub last_uid: u32,
}

/// Reads a folder's checkpoint, if it was ever synced.
pub async fn get(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    folder: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    let row = folder_state::Entity::find()
        .filter(folder_state::Column::MailboxId.eq(mailbox_id))
        .filter(folder_state::Column::Folder.eq(folder))
        .one(db)
        .await?;
    row.map(|row| {
        Ok(Checkpoint {
            uid_validity: to_u32(row.uid_validity, "folder_states.uid_validity")?,
            last_uid: to_u32(row.last_uid, "folder_states.last_uid")?,
        })
    })
    .transpose()
}

fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
        message: format!("{value} is not a 32-bit UID"),
    })
}

/// Sets a folder's checkpoint; call it in the same transaction as the messages it covers.
pub async fn set(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    folder: &str,
    checkpoint: Checkpoint,
) -> Result<(), StoreError> {
    let existing = folder_state::Entity::find()
        .filter(folder_state::Column::MailboxId.eq(mailbox_id))
        .filter(folder_state::Column::Folder.eq(folder))
        .one(db)
        .await?;
    match existing {
        Some(row) => {
            debug_assert!(
                row.uid_validity != i64::from(checkpoint.uid_validity)
                    || row.last_uid <= i64::from(checkpoint.last_uid),
                "a checkpoint never moves backwards within one UIDVALIDITY"
            );
            let mut active: folder_state::ActiveModel = row.into();
            active.uid_validity = Set(i64::from(checkpoint.uid_validity));
            active.last_uid = Set(i64::from(checkpoint.last_uid));
            active.updated_at = Set(clock::now());
            active.update(db).await?;
        }
        None => {
            folder_state::ActiveModel {
                mailbox_id: Set(mailbox_id),
                folder: Set(folder.to_string()),
                uid_validity: Set(i64::from(checkpoint.uid_validity)),
                last_uid: Set(i64::from(checkpoint.last_uid)),
                updated_at: Set(clock::now()),
                ..Default::default()
            }
            .insert(db)
            .await?;
        }
    }
    Ok(())
}
