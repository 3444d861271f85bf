//! Entity for the `mailboxes` table (see `migrations/` for the schema and its privacy rules).
use sea_orm::entity::prelude::*;

/// One row of `mailboxes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mailboxes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    pub kind: String,
    pub origin: String,
    pub settings_sealed: Option<Vec<u8>>,
    pub enabled: bool,
    pub retention_days: Option<i32>,
    pub legal_hold: bool,
    pub legal_hold_reason_sealed: Option<Vec<u8>>,
    pub status: String,
    pub last_sync_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTimeUtc>,
    pub messages_stored: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
