//! Committing prepared messages: rows for the message, its attachments and addresses, its conversation.
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::{attachment, conversation, message, message_address, tombstone};
use super::threads::{self, message_key_aad};
use crate::clock;
use crate::crypto::MasterKey;
use crate::ingest::Origin;
use crate::ingest::prepare::PreparedMessage;

/// Direction of a message: fetched from a mailbox.
pub const INBOUND: &str = "inbound";
/// Written by an agent and sent by inboxd.
pub const OUTBOUND: &str = "outbound";

/// What happened to one prepared message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored in this conversation.
    New { conversation_id: Uuid },
    /// The same message (same keyed content hash) is already stored in this mailbox.
    Duplicate,
}

/// Whether the mailbox already holds a message with this content hash, or held one that was purged or
/// erased (a tombstone): a message still at its source must not come back after its deletion.
pub async fn is_duplicate(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    content_hash: &str,
) -> Result<bool, StoreError> {
    let count = message::Entity::find()
        .filter(message::Column::MailboxId.eq(mailbox_id))
        .filter(message::Column::ContentHash.eq(content_hash))
        .count(db)
        .await?;
    if count > 0 {
        return Ok(true);
    }
    let buried = tombstone::Entity::find()
        .filter(tombstone::Column::MailboxId.eq(mailbox_id))
        .filter(tombstone::Column::SourceKey.eq(format!("{TOMBSTONE_CONTENT}{content_hash}")))
        .count(db)
        .await?;
    Ok(buried > 0)
}

/// Tombstone key prefix of a content hash.
pub const TOMBSTONE_CONTENT: &str = "content:";
/// Prefix of a Maildir file identity, in `messages.folder` and in tombstones.
pub const MAILDIR_PREFIX: &str = "maildir:";

/// Stores one prepared message: call inside the batch's transaction.
pub async fn store(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    mailbox_id: Uuid,
    prepared: &PreparedMessage,
) -> Result<Stored, StoreError> {
    if is_duplicate(db, mailbox_id, &prepared.content_hash).await? {
        return Ok(Stored::Duplicate);
    }
    // A delivery report about one of our messages joins that message's conversation and becomes
    // delivery events; it never opens a conversation of its own.
    let original = match &prepared.report {
        Some(report) if prepared.origin != Origin::Outbound => {
            crate::delivery::bounces::find_original(db, master, mailbox_id, prepared, report)
                .await?
        }
        _ => None,
    };
    let target = threads::resolve(
        db,
        master,
        mailbox_id,
        prepared,
        original.as_ref().map(|row| row.conversation_id),
    )
    .await?;
    let wrapped = target.key.wrap_data_key(
        &prepared.content_key,
        &message_key_aad(&prepared.id, &target.conversation_id),
    );
    let (folder, uid_validity, uid) = match &prepared.origin {
        Origin::Imap {
            folder,
            uid_validity,
            uid,
        } => (
            Some(folder.clone()),
            Some(i64::from(*uid_validity)),
            Some(i64::from(*uid)),
        ),
        Origin::Maildir { key_hash } => (Some(format!("maildir:{key_hash}")), Some(0), Some(0)),
        Origin::Outbound => (None, None, None),
    };
    let direction = match prepared.origin {
        Origin::Outbound => OUTBOUND,
        _ => INBOUND,
    };
    let now = clock::now();
    message::ActiveModel {
        id: Set(prepared.id),
        conversation_id: Set(target.conversation_id),
        mailbox_id: Set(mailbox_id),
        direction: Set(direction.to_string()),
        folder: Set(folder),
        uid_validity: Set(uid_validity),
        uid: Set(uid),
        message_id_hash: Set(prepared.message_id_hash.clone()),
        content_hash: Set(prepared.content_hash.clone()),
        content_key_wrapped: Set(wrapped),
        header_sealed: Set(Some(prepared.header_sealed.clone())),
        body_sealed: Set(Some(prepared.body_sealed.clone())),
        problem_sealed: Set(prepared.problem_sealed.clone()),
        blob_path: Set(Some(prepared.blob_relative.clone())),
        raw_size: Set(i64::try_from(prepared.raw_size).unwrap_or(i64::MAX)),
        status: Set(prepared.status.to_string()),
        is_automatic: Set(prepared.is_automatic),
        is_auto_reply: Set(prepared.is_auto_reply),
        is_bounce: Set(prepared.is_bounce),
        received_at: Set(prepared.received_at),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    for item in &prepared.attachments {
        attachment::ActiveModel {
            id: Set(item.id),
            message_id: Set(prepared.id),
            part_index: Set(item.part_index),
            size: Set(item.size),
            meta_sealed: Set(item.meta_sealed.clone()),
            created_at: Set(now),
        }
        .insert(db)
        .await?;
    }
    if !prepared.address_hashes.is_empty() {
        message_address::Entity::insert_many(prepared.address_hashes.iter().map(|(hash, role)| {
            message_address::ActiveModel {
                message_id: Set(prepared.id),
                address_hash: Set(hash.clone()),
                role: Set((*role).to_string()),
            }
        }))
        .exec(db)
        .await?;
    }
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::MessageCount,
            Expr::col(conversation::Column::MessageCount).add(1),
        )
        .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
        .filter(conversation::Column::Id.eq(target.conversation_id))
        .exec(db)
        .await?;
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::LastActivityAt,
            Expr::value(prepared.received_at),
        )
        .filter(conversation::Column::Id.eq(target.conversation_id))
        .filter(conversation::Column::LastActivityAt.lt(prepared.received_at))
        .exec(db)
        .await?;
    match (&prepared.report, &original) {
        (Some(report), Some(original)) => {
            crate::delivery::bounces::record_report(
                db,
                master,
                original,
                report,
                prepared.received_at,
            )
            .await?;
        }
        (Some(report), None) if report.is_bounce => {
            conversation::Entity::update_many()
                .col_expr(conversation::Column::UnmatchedBounce, Expr::value(true))
                .filter(conversation::Column::Id.eq(target.conversation_id))
                .filter(conversation::Column::MessageCount.eq(1))
                .exec(db)
                .await?;
        }
        _ => {}
    }
    Ok(Stored::New {
        conversation_id: target.conversation_id,
    })
}

/// Keyed hashes of the maildir files of a mailbox that are already stored.
pub async fn maildir_keys(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let folders: Vec<Option<String>> = message::Entity::find()
        .select_only()
        .column(message::Column::Folder)
        .filter(message::Column::MailboxId.eq(mailbox_id))
        .filter(message::Column::Folder.starts_with(MAILDIR_PREFIX))
        .into_tuple()
        .all(db)
        .await?;
    let buried: Vec<String> = tombstone::Entity::find()
        .select_only()
        .column(tombstone::Column::SourceKey)
        .filter(tombstone::Column::MailboxId.eq(mailbox_id))
        .filter(tombstone::Column::SourceKey.starts_with(MAILDIR_PREFIX))
        .into_tuple()
        .all(db)
        .await?;
    Ok(folders
        .into_iter()
        .flatten()
        .chain(buried)
        .filter_map(|folder| folder.strip_prefix(MAILDIR_PREFIX).map(str::to_string))
        .collect())
}

/// Number of messages stored for a mailbox.
pub async fn count_for_mailbox(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
) -> Result<u64, StoreError> {
    Ok(message::Entity::find()
        .filter(message::Column::MailboxId.eq(mailbox_id))
        .count(db)
        .await?)
}
