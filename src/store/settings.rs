//! Facts about the installation kept in `instance_settings`, chiefly the master key's check value.
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};

use super::StoreError;
use super::entities::instance_setting;
use crate::clock;
use crate::crypto::MasterKey;

/// Key of the master key check value.
pub const KEY_CHECK: &str = "master_key_check";

/// Reads one setting.
pub async fn get(db: &impl ConnectionTrait, key: &str) -> Result<Option<String>, StoreError> {
    Ok(instance_setting::Entity::find_by_id(key.to_string())
        .one(db)
        .await?
        .map(|row| row.value))
}

/// Writes one setting (insert or replace).
pub async fn set(db: &impl ConnectionTrait, key: &str, value: &str) -> Result<(), StoreError> {
    let row = instance_setting::ActiveModel {
        key: Set(key.to_string()),
        value: Set(value.to_string()),
        updated_at: Set(clock::now()),
    };
    instance_setting::Entity::insert(row)
        .on_conflict(
            OnConflict::column(instance_setting::Column::Key)
                .update_columns([
                    instance_setting::Column::Value,
                    instance_setting::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Outcome of checking the master key against the database.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// First start: the check value was recorded.
    Recorded,
    /// The key matches what wrote this database.
    Matches,
}

/// Records the key's check value on first start, and refuses a different key afterwards, before anything
/// is written that could never be read.
pub async fn check_master_key(
    db: &impl ConnectionTrait,
    key: &MasterKey,
) -> Result<KeyCheck, StoreError> {
    match get(db, KEY_CHECK).await? {
        None => {
            set(db, KEY_CHECK, &key.check_value()).await?;
            Ok(KeyCheck::Recorded)
        }
        Some(stored) => {
            key.verify_check_value(&stored)?;
            Ok(KeyCheck::Matches)
        }
    }
}
