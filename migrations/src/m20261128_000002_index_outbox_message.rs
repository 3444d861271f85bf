//! Indexes the purge path needs: deleting a message cascades to its outbox rows, which without an index
//! on `outbox.message_id` is a full scan of the outbox per deleted message.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_message_id")
                    .table(Alias::new("outbox"))
                    .col(Alias::new("message_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_outbox_message_id")
                    .table(Alias::new("outbox"))
                    .to_owned(),
            )
            .await
    }
}
