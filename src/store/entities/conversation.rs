//! Entity for the `conversations` table (see `migrations/` for the schema and its privacy rules).
use sea_orm::entity::prelude::*;

/// One row of `conversations`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub mailbox_id: Uuid,
    pub state: String,
    pub assignee: Option<String>,
    pub subject_sealed: Option<Vec<u8>>,
    pub subject_hash: Option<String>,
    pub participants_hash: Option<String>,
    pub legal_hold: bool,
    pub legal_hold_reason_sealed: Option<Vec<u8>>,
    pub unmatched_bounce: bool,
    pub message_count: i32,
    pub first_activity_at: DateTimeUtc,
    pub last_activity_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
