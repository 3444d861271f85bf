//! `store_flags`: facts about the store itself, one row per name. The first one,
//! `legacy_content_hashes`, is written here when the store already holds messages or content
//! tombstones: those were hashed with HMAC-SHA256 (plain hex), before content hashes became keyed
//! BLAKE3 (`b3:` prefix). While the flag is set, ingest computes both hashes of each message and
//! looks both up, so that a message stored or erased under the old hash is still recognised (no
//! duplicate after a UIDVALIDITY change, no erased message brought back). A new store never has it.
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
                    .table(Alias::new("store_flags"))
                    .col(string("name").primary_key())
                    .col(string("value"))
                    .to_owned(),
            )
            .await?;
        // Same SQL on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO store_flags (name, value) \
                 SELECT 'legacy_content_hashes', '1' \
                 WHERE EXISTS (SELECT 1 FROM messages) \
                    OR EXISTS (SELECT 1 FROM tombstones WHERE source_key LIKE 'content:%')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("store_flags")).to_owned())
            .await
    }
}
