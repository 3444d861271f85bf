//! `message_blobs`: the encrypted raw bytes of small messages, kept in the database instead of one blob
//! file each. Same sealed format as a blob file (`IBXB`, 64 KiB AES-256-GCM chunks under the message's
//! content key, AAD bound to the message id), so nothing readable is stored here either. A message has
//! either `messages.blob_path` (a file) or one row here; deleting the message deletes the row (cascade),
//! and SQLite's `secure_delete` zeroes the freed pages.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("message_blobs"))
                    .col(uuid("message_id").primary_key())
                    .col(blob("sealed"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_message_blobs_message_id")
                            .from(Alias::new("message_blobs"), Alias::new("message_id"))
                            .to(Alias::new("messages"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("message_blobs")).to_owned())
            .await
    }
}
