//! Database migrations for inboxd, applied in order at the start of `inboxd serve` and by `inboxd migrate`.
//!
//! Each migration is one file named `mYYYYMMDD_NNNNNN_verb_noun.rs`. A migration that has landed on `main`
//! is never edited: later changes get a new file.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_schema;
mod m20261128_000002_purge_support;
mod m20261128_000003_create_oauth_tokens;
mod m20261128_000004_create_message_blobs;
mod m20261128_000005_create_store_flags;

/// Runs every migration of the product in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_schema::Migration),
            Box::new(m20261128_000002_purge_support::Migration),
            Box::new(m20261128_000003_create_oauth_tokens::Migration),
            Box::new(m20261128_000004_create_message_blobs::Migration),
            Box::new(m20261128_000005_create_store_flags::Migration),
        ]
    }
}
