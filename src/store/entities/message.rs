//! Entity for the `messages` table (see `migrations/` for the schema and its privacy rules).
use sea_orm::entity::prelude::*;

/// One row of `messages`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub mailbox_id: Uuid,
    pub direction: String,
    pub folder: Option<String>,
    pub uid_validity: Option<i64>,
    pub uid: Option<i64>,
    pub message_id_hash: Option<String>,
    pub content_hash: String,
    pub content_key_wrapped: Vec<u8>,
    pub header_sealed: Option<Vec<u8>>,
    pub body_sealed: Option<Vec<u8>>,
    pub problem_sealed: Option<Vec<u8>>,
    pub blob_path: Option<String>,
    pub raw_size: i64,
    pub status: String,
    pub is_automatic: bool,
    pub is_auto_reply: bool,
    pub is_bounce: bool,
    pub received_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
