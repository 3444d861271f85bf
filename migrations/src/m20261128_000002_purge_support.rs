//! What the purge path needs:
//! - an index on `outbox.message_id`: deleting a message cascades to its outbox rows, which without it is a
//!   full scan of the outbox per deleted message;
//! - `tombstones`: keyed hashes of the source identities (Maildir file name, content hash) of purged and
//!   erased messages, so that mail still present at its source (a Maildir, an IMAP folder re-synced after a
//!   UIDVALIDITY change) is not ingested again. Hashes only: nothing readable, nothing decryptable.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In one transaction with its record on every backend (SQLite too): a process killed halfway
    /// through leaves the schema as it was, never half-created.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_message_id")
                    .table(Alias::new("outbox"))
                    .col(Alias::new("message_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("tombstones"))
                    .col(uuid("mailbox_id"))
                    .col(string("source_key"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("mailbox_id"))
                            .col(Alias::new("source_key")),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tombstones_mailbox_id")
                            .from(Alias::new("tombstones"), Alias::new("mailbox_id"))
                            .to(Alias::new("mailboxes"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("tombstones")).to_owned())
            .await?;
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
