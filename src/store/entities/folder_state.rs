//! Entity for the `folder_states` table (see `migrations/` for the schema and its privacy rules).
use sea_orm::entity::prelude::*;

/// One row of `folder_states`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "folder_states")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub mailbox_id: Uuid,
    pub folder: String,
    pub uid_validity: i64,
    pub last_uid: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
