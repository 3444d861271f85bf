//! The first schema: everything the product knows about as of the foundation.
//!
//! Privacy rule for every table: no plaintext that came from a mail (subjects, addresses, names, bodies,
//! file names, Message-IDs) is stored. Such values are either sealed (`*_sealed` columns: AES-256-GCM
//! ciphertext, see `src/crypto`) or replaced by keyed hashes (`*_hash` columns: HMAC-SHA256 under a key
//! derived from the master key) where the code needs equality lookups.
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
        create_instance_settings(manager).await?;
        create_mailboxes(manager).await?;
        create_folder_states(manager).await?;
        create_conversations(manager).await?;
        create_data_keys(manager).await?;
        create_messages(manager).await?;
        create_thread_ids(manager).await?;
        create_attachments(manager).await?;
        create_message_addresses(manager).await?;
        create_delivery_events(manager).await?;
        create_outbox(manager).await?;
        create_notes(manager).await?;
        create_api_tokens(manager).await?;
        create_audit_log(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "audit_log",
            "api_tokens",
            "notes",
            "outbox",
            "delivery_events",
            "message_addresses",
            "attachments",
            "thread_ids",
            "messages",
            "data_keys",
            "conversations",
            "folder_states",
            "mailboxes",
            "instance_settings",
        ] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

fn fk(from_table: &str, from_col: &str, to_table: &str, to_col: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{from_col}"))
        .from(Alias::new(from_table), Alias::new(from_col))
        .to(Alias::new(to_table), Alias::new(to_col))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

async fn index(
    manager: &SchemaManager<'_>,
    table: &str,
    columns: &[&str],
    unique: bool,
) -> Result<(), DbErr> {
    let mut statement = Index::create();
    statement
        .name(format!("idx_{table}_{}", columns.join("_")))
        .table(Alias::new(table));
    for column in columns {
        statement.col(Alias::new(*column));
    }
    if unique {
        statement.unique();
    }
    manager.create_index(statement.to_owned()).await
}

/// Key/value facts about this installation, e.g. the master key's check value.
async fn create_instance_settings(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("instance_settings"))
                .col(string("key").primary_key())
                .col(text("value"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await
}

async fn create_mailboxes(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("mailboxes"))
                .col(pk_uuid("id"))
                .col(string_uniq("name"))
                .col(string("kind"))
                .col(string("origin"))
                .col(blob_null("settings_sealed"))
                .col(boolean("enabled").default(true))
                .col(integer_null("retention_days"))
                .col(boolean("legal_hold").default(false))
                .col(blob_null("legal_hold_reason_sealed"))
                .col(string("status").default("idle"))
                .col(timestamp_with_time_zone_null("last_sync_at"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone_null("last_error_at"))
                .col(big_integer("messages_stored").default(0))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await
}

async fn create_folder_states(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("folder_states"))
                .col(big_pk_auto("id"))
                .col(uuid("mailbox_id"))
                .col(string("folder"))
                .col(big_integer("uid_validity"))
                .col(big_integer("last_uid"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("folder_states", "mailbox_id", "mailboxes", "id"))
                .to_owned(),
        )
        .await?;
    index(manager, "folder_states", &["mailbox_id", "folder"], true).await
}

async fn create_conversations(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("conversations"))
                .col(pk_uuid("id"))
                .col(uuid("mailbox_id"))
                .col(string("state").default("open"))
                .col(string_null("assignee"))
                .col(blob_null("subject_sealed"))
                .col(string_null("subject_hash"))
                .col(string_null("participants_hash"))
                .col(boolean("legal_hold").default(false))
                .col(blob_null("legal_hold_reason_sealed"))
                .col(boolean("unmatched_bounce").default(false))
                .col(integer("message_count").default(0))
                .col(timestamp_with_time_zone("first_activity_at"))
                .col(timestamp_with_time_zone("last_activity_at"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("conversations", "mailbox_id", "mailboxes", "id"))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "conversations",
        &["mailbox_id", "last_activity_at"],
        false,
    )
    .await?;
    index(
        manager,
        "conversations",
        &["mailbox_id", "subject_hash"],
        false,
    )
    .await
}

/// One data key per conversation, wrapped under the master key. Deleting the row crypto-shreds the
/// conversation: every ciphertext of it, anywhere, becomes unreadable.
async fn create_data_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("data_keys"))
                .col(uuid("conversation_id").primary_key())
                .col(string("master_key_id"))
                .col(blob("wrapped_key"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk(
                    "data_keys",
                    "conversation_id",
                    "conversations",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
    index(manager, "data_keys", &["master_key_id"], false).await
}

async fn create_messages(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("messages"))
                .col(pk_uuid("id"))
                .col(uuid("conversation_id"))
                .col(uuid("mailbox_id"))
                .col(string("direction"))
                .col(string_null("folder"))
                .col(big_integer_null("uid_validity"))
                .col(big_integer_null("uid"))
                .col(string_null("message_id_hash"))
                .col(string("content_hash"))
                .col(blob("content_key_wrapped"))
                .col(blob_null("header_sealed"))
                .col(blob_null("body_sealed"))
                .col(blob_null("problem_sealed"))
                .col(string_null("blob_path"))
                .col(big_integer("raw_size"))
                .col(string("status"))
                .col(boolean("is_automatic").default(false))
                .col(boolean("is_auto_reply").default(false))
                .col(boolean("is_bounce").default(false))
                .col(timestamp_with_time_zone("received_at"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk(
                    "messages",
                    "conversation_id",
                    "conversations",
                    "id",
                ))
                .foreign_key(&mut fk("messages", "mailbox_id", "mailboxes", "id"))
                .to_owned(),
        )
        .await?;
    // Exactly-once per server copy (RFC 3501: a UID is unique within one UIDVALIDITY of a folder).
    index(
        manager,
        "messages",
        &["mailbox_id", "folder", "uid_validity", "uid"],
        true,
    )
    .await?;
    index(
        manager,
        "messages",
        &["mailbox_id", "message_id_hash"],
        false,
    )
    .await?;
    index(manager, "messages", &["mailbox_id", "content_hash"], false).await?;
    index(
        manager,
        "messages",
        &["conversation_id", "received_at"],
        false,
    )
    .await
}

/// Every Message-ID a conversation owns or references (keyed hashes), for threading by
/// Message-ID / In-Reply-To / References even when children arrive before their parents.
async fn create_thread_ids(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("thread_ids"))
                .col(uuid("mailbox_id"))
                .col(string("id_hash"))
                .col(uuid("conversation_id"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("mailbox_id"))
                        .col(Alias::new("id_hash")),
                )
                .foreign_key(&mut fk(
                    "thread_ids",
                    "conversation_id",
                    "conversations",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
    index(manager, "thread_ids", &["conversation_id"], false).await
}

async fn create_attachments(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("attachments"))
                .col(pk_uuid("id"))
                .col(uuid("message_id"))
                .col(integer("part_index"))
                .col(big_integer("size"))
                .col(blob("meta_sealed"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("attachments", "message_id", "messages", "id"))
                .to_owned(),
        )
        .await?;
    index(manager, "attachments", &["message_id"], false).await
}

/// Keyed hashes of every address a message involves, for data-subject export and erasure.
async fn create_message_addresses(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("message_addresses"))
                .col(uuid("message_id"))
                .col(string("address_hash"))
                .col(string("role"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("message_id"))
                        .col(Alias::new("address_hash"))
                        .col(Alias::new("role")),
                )
                .foreign_key(&mut fk("message_addresses", "message_id", "messages", "id"))
                .to_owned(),
        )
        .await?;
    index(manager, "message_addresses", &["address_hash"], false).await
}

async fn create_delivery_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("delivery_events"))
                .col(pk_uuid("id"))
                .col(uuid("message_id"))
                .col(string("recipient_hash"))
                .col(blob("detail_sealed"))
                .col(string("event"))
                .col(string_null("status_code"))
                .col(timestamp_with_time_zone("occurred_at"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("delivery_events", "message_id", "messages", "id"))
                .to_owned(),
        )
        .await?;
    index(manager, "delivery_events", &["message_id"], false).await
}

/// Replies waiting to be sent or retried, one row per message and recipient.
async fn create_outbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("outbox"))
                .col(pk_uuid("id"))
                .col(uuid("message_id"))
                .col(string("recipient_hash"))
                .col(blob("recipient_sealed"))
                .col(string("envelope_id"))
                .col(string("state"))
                .col(integer("attempts").default(0))
                .col(timestamp_with_time_zone("next_attempt_at"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("outbox", "message_id", "messages", "id"))
                .to_owned(),
        )
        .await?;
    index(manager, "outbox", &["state", "next_attempt_at"], false).await?;
    index(manager, "outbox", &["envelope_id"], false).await
}

/// Internal notes of agents on a conversation: sealed like mail, never sent.
async fn create_notes(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("notes"))
                .col(pk_uuid("id"))
                .col(uuid("conversation_id"))
                .col(string("author"))
                .col(blob("body_sealed"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("notes", "conversation_id", "conversations", "id"))
                .to_owned(),
        )
        .await?;
    index(manager, "notes", &["conversation_id"], false).await
}

/// API bearer tokens: only a hash of each token is stored.
async fn create_api_tokens(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("api_tokens"))
                .col(pk_uuid("id"))
                .col(string("name"))
                .col(string_uniq("token_hash"))
                .col(string("role"))
                .col(text_null("mailbox_scope"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("last_used_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .to_owned(),
        )
        .await
}

/// Who did what and when; never content or addresses.
async fn create_audit_log(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new("audit_log"))
                .col(big_pk_auto("id"))
                .col(timestamp_with_time_zone("at"))
                .col(string("actor"))
                .col(string("action"))
                .col(string_null("target"))
                .col(text("details"))
                .to_owned(),
        )
        .await?;
    index(manager, "audit_log", &["at"], false).await
}
