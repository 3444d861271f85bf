//! Entity for the `thread_ids` table (see `migrations/` for the schema and its privacy rules).
use sea_orm::entity::prelude::*;

/// One row of `thread_ids`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "thread_ids")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub mailbox_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    pub conversation_id: Uuid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
