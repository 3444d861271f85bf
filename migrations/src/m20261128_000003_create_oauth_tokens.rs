//! `oauth_tokens`: the OAuth2 tokens of mailboxes that sign in with XOAUTH2/OAUTHBEARER. One row per
//! mailbox; the refresh and access tokens are sealed under the master key (AAD binds the mailbox id), so
//! nothing usable is stored in the clear. `generation` grows with each `mailbox authorize`, so a task
//! waiting for re-authorization can tell a new grant from the old one.
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
                    .table(Alias::new("oauth_tokens"))
                    .col(uuid("mailbox_id").primary_key())
                    .col(blob("refresh_token_sealed"))
                    .col(blob_null("access_token_sealed"))
                    .col(timestamp_with_time_zone_null("access_expires_at"))
                    .col(string("state"))
                    .col(big_integer("generation"))
                    .col(timestamp_with_time_zone_null("refreshed_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth_tokens_mailbox_id")
                            .from(Alias::new("oauth_tokens"), Alias::new("mailbox_id"))
                            .to(Alias::new("mailboxes"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("oauth_tokens")).to_owned())
            .await
    }
}
