//! Committing prepared messages: rows for the message, its attachments and addresses, its conversation.
use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, Statement,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::{
    attachment, conversation, message, message_address, message_blob, tombstone,
};
use super::threads::{self, MAX_BIND_VALUES, message_key_aad};
use crate::clock;
use crate::crypto::MasterKey;
use crate::ingest::Origin;
use crate::ingest::prepare::{PreparedBlob, PreparedMessage};

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

/// Whether the mailbox already holds a message with one of these content hashes (the message's keyed
/// BLAKE3 hash, and in a store from before those its HMAC-SHA256 one), or held one that was purged or
/// erased (a tombstone): a message still at its source must not come back after its deletion.
pub async fn is_duplicate(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    content_hashes: &[&str],
) -> Result<bool, StoreError> {
    let count = message::Entity::find()
        .filter(message::Column::MailboxId.eq(mailbox_id))
        .filter(message::Column::ContentHash.is_in(content_hashes.iter().copied()))
        .count(db)
        .await?;
    if count > 0 {
        return Ok(true);
    }
    let buried = tombstone::Entity::find()
        .filter(tombstone::Column::MailboxId.eq(mailbox_id))
        .filter(
            tombstone::Column::SourceKey.is_in(
                content_hashes
                    .iter()
                    .map(|hash| format!("{TOMBSTONE_CONTENT}{hash}")),
            ),
        )
        .count(db)
        .await?;
    Ok(buried > 0)
}

/// Whether the store may hold content hashes of the older kind (HMAC-SHA256, no `b3:` prefix): set by
/// the migration that introduced keyed BLAKE3 content hashes when the store already had messages or
/// content tombstones. While it is, ingest computes and looks up both hashes of each message.
pub async fn holds_legacy_content_hashes(db: &impl ConnectionTrait) -> Result<bool, StoreError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT value FROM store_flags WHERE name = 'legacy_content_hashes'",
        ))
        .await?;
    Ok(row.is_some())
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
    if is_duplicate(
        db,
        mailbox_id,
        &prepared.content_hashes().collect::<Vec<_>>(),
    )
    .await?
    {
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
    let now = clock::now();
    message_row(mailbox_id, prepared, target.conversation_id, wrapped, now)
        .insert(db)
        .await?;
    if let Some(row) = inline_blob_row(prepared) {
        row.insert(db).await?;
    }
    for row in attachment_rows(prepared, now) {
        row.insert(db).await?;
    }
    message_address::Entity::insert_many(address_rows(prepared))
        .exec_without_returning(db)
        .await?;
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

/// Stores a batch of prepared messages, in order, inside the batch's transaction: the same outcomes
/// and rows as calling [`store`] for each, written with a few multi-row statements per batch instead
/// of about a dozen statements per message. Delivery reports take the per-message path (they look up
/// and record delivery events), after everything before them is written.
pub async fn store_batch(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    mailbox_id: Uuid,
    batch: &[PreparedMessage],
) -> Result<Vec<Stored>, StoreError> {
    let mut seen = stored_content_hashes(db, mailbox_id, batch).await?;
    let mut threads = threads::BatchThreads::load(db, master, mailbox_id, batch).await?;
    let mut rows = PendingRows::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for prepared in batch {
        // The content hash identifies a message within a mailbox (also across UIDVALIDITY changes).
        let mut known = false;
        for hash in prepared.content_hashes() {
            known |= !seen.insert(hash);
        }
        if known {
            outcomes.push(Stored::Duplicate);
            continue;
        }
        if prepared.report.is_some() {
            rows.flush(db, &mut threads).await?;
            outcomes.push(store(db, master, mailbox_id, prepared).await?);
            threads.reload(db, master).await?;
            continue;
        }
        let conversation_id = match threads.resolve_cached(master, prepared) {
            Some(id) => id,
            None => {
                rows.flush(db, &mut threads).await?;
                threads.resolve_in_database(db, master, prepared).await?
            }
        };
        let wrapped = threads.key(conversation_id)?.wrap_data_key(
            &prepared.content_key,
            &message_key_aad(&prepared.id, &conversation_id),
        );
        rows.add(mailbox_id, prepared, conversation_id, wrapped);
        outcomes.push(Stored::New { conversation_id });
    }
    rows.flush(db, &mut threads).await?;
    Ok(outcomes)
}

/// Content hashes of the batch that the mailbox already holds, or held before a purge or erasure
/// (tombstones).
async fn stored_content_hashes<'a>(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    batch: &'a [PreparedMessage],
) -> Result<HashSet<&'a str>, StoreError> {
    let mut wanted: Vec<&'a str> = batch.iter().flat_map(|m| m.content_hashes()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut stored = HashSet::new();
    for chunk in wanted.chunks(5_000) {
        let found: HashSet<String> = message::Entity::find()
            .select_only()
            .column(message::Column::ContentHash)
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(message::Column::ContentHash.is_in(chunk.iter().copied()))
            .into_tuple::<String>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        stored.extend(chunk.iter().copied().filter(|hash| found.contains(*hash)));
        let buried: HashSet<String> = tombstone::Entity::find()
            .select_only()
            .column(tombstone::Column::SourceKey)
            .filter(tombstone::Column::MailboxId.eq(mailbox_id))
            .filter(
                tombstone::Column::SourceKey.is_in(
                    chunk
                        .iter()
                        .map(|hash| format!("{TOMBSTONE_CONTENT}{hash}")),
                ),
            )
            .into_tuple::<String>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        stored.extend(
            chunk
                .iter()
                .copied()
                .filter(|hash| buried.contains(&format!("{TOMBSTONE_CONTENT}{hash}"))),
        );
    }
    Ok(stored)
}

/// Rows of a batch not written yet, and the conversations' new activity.
#[derive(Default)]
struct PendingRows {
    messages: Vec<message::ActiveModel>,
    /// Sealed raw bytes of the small messages, and their total size.
    blobs: Vec<message_blob::ActiveModel>,
    blob_bytes: usize,
    attachments: Vec<attachment::ActiveModel>,
    addresses: Vec<message_address::ActiveModel>,
    /// Per conversation: messages added, latest `received_at`.
    activity: BTreeMap<Uuid, (i32, DateTime<Utc>)>,
}

impl PendingRows {
    fn add(
        &mut self,
        mailbox_id: Uuid,
        prepared: &PreparedMessage,
        conversation_id: Uuid,
        wrapped: Vec<u8>,
    ) {
        let now = clock::now();
        self.messages.push(message_row(
            mailbox_id,
            prepared,
            conversation_id,
            wrapped,
            now,
        ));
        if let PreparedBlob::Inline(sealed) = &prepared.blob {
            self.blob_bytes += sealed.len();
        }
        self.blobs.extend(inline_blob_row(prepared));
        self.attachments.extend(attachment_rows(prepared, now));
        self.addresses.extend(address_rows(prepared));
        let entry = self
            .activity
            .entry(conversation_id)
            .or_insert((0, prepared.received_at));
        entry.0 += 1;
        entry.1 = Ord::max(entry.1, prepared.received_at);
    }

    /// Writes the conversations, keys and thread ids of `threads`, then the message rows, then the
    /// conversations' counters: afterwards the database holds what per-message [`store`] calls would
    /// have written.
    async fn flush(
        &mut self,
        db: &impl ConnectionTrait,
        threads: &mut threads::BatchThreads,
    ) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        threads.flush(db).await?;
        let threads_at = started.elapsed();
        // 21 columns per message row, 6 per attachment, 3 per address.
        for chunk in self.messages.chunks(MAX_BIND_VALUES / 21) {
            message::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(db)
                .await?;
        }
        // Statements binding about 4 MiB of sealed bytes each: a batch of small messages takes one or
        // two, and no single statement grows with the batch.
        let per_statement = (self.blobs.len() * BLOB_STATEMENT_BYTES)
            .div_ceil(self.blob_bytes.max(1))
            .clamp(1, MAX_BIND_VALUES / 2);
        let messages_at = started.elapsed();
        for chunk in self.blobs.chunks(per_statement) {
            message_blob::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(db)
                .await?;
        }
        let blobs_at = started.elapsed();
        for chunk in self.attachments.chunks(MAX_BIND_VALUES / 6) {
            attachment::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(db)
                .await?;
        }
        for chunk in self.addresses.chunks(MAX_BIND_VALUES / 3) {
            message_address::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(db)
                .await?;
        }
        let activity: Vec<_> = std::mem::take(&mut self.activity).into_iter().collect();
        let rows_at = started.elapsed();
        for chunk in activity.chunks(MAX_BIND_VALUES / 6) {
            record_activity(db, chunk).await?;
        }
        tracing::debug!(
            threads_ms = threads_at.as_millis(),
            messages_ms = (messages_at - threads_at).as_millis(),
            blobs_ms = (blobs_at - messages_at).as_millis(),
            attachments_addresses_ms = (rows_at - blobs_at).as_millis(),
            activity_ms = (started.elapsed() - rows_at).as_millis(),
            "rows flushed"
        );
        self.messages.clear();
        self.blobs.clear();
        self.blob_bytes = 0;
        self.attachments.clear();
        self.addresses.clear();
        Ok(())
    }
}

/// One statement for the counters of many conversations: `message_count` grows by the messages added,
/// `last_activity_at` moves forward (never back) to the latest of them, `updated_at` is now.
async fn record_activity(
    db: &impl ConnectionTrait,
    activity: &[(Uuid, (i32, DateTime<Utc>))],
) -> Result<(), StoreError> {
    if activity.is_empty() {
        return Ok(());
    }
    let id = || Expr::col(conversation::Column::Id);
    let mut count = CaseStatement::new();
    let mut last = CaseStatement::new();
    for (conversation_id, (added, latest)) in activity {
        count = count.case(
            id().eq(*conversation_id),
            Expr::col(conversation::Column::MessageCount).add(*added),
        );
        last = last.case(
            id().eq(*conversation_id)
                .and(Expr::col(conversation::Column::LastActivityAt).lt(*latest)),
            Expr::value(*latest),
        );
    }
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::MessageCount,
            count
                .finally(Expr::col(conversation::Column::MessageCount))
                .into(),
        )
        .col_expr(
            conversation::Column::LastActivityAt,
            last.finally(Expr::col(conversation::Column::LastActivityAt))
                .into(),
        )
        .col_expr(conversation::Column::UpdatedAt, Expr::value(clock::now()))
        .filter(conversation::Column::Id.is_in(activity.iter().map(|(id, _)| *id)))
        .exec(db)
        .await?;
    Ok(())
}

/// The `messages` row of a prepared message in its conversation.
fn message_row(
    mailbox_id: Uuid,
    prepared: &PreparedMessage,
    conversation_id: Uuid,
    content_key_wrapped: Vec<u8>,
    now: DateTime<Utc>,
) -> message::ActiveModel {
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
    message::ActiveModel {
        id: Set(prepared.id),
        conversation_id: Set(conversation_id),
        mailbox_id: Set(mailbox_id),
        direction: Set(direction.to_string()),
        folder: Set(folder),
        uid_validity: Set(uid_validity),
        uid: Set(uid),
        message_id_hash: Set(prepared.message_id_hash.clone()),
        content_hash: Set(prepared.content_hash.clone()),
        content_key_wrapped: Set(content_key_wrapped),
        header_sealed: Set(Some(prepared.header_sealed.clone())),
        body_sealed: Set(Some(prepared.body_sealed.clone())),
        problem_sealed: Set(prepared.problem_sealed.clone()),
        blob_path: Set(prepared.blob.file().cloned()),
        raw_size: Set(i64::try_from(prepared.raw_size).unwrap_or(i64::MAX)),
        status: Set(prepared.status.to_string()),
        is_automatic: Set(prepared.is_automatic),
        is_auto_reply: Set(prepared.is_auto_reply),
        is_bounce: Set(prepared.is_bounce),
        received_at: Set(prepared.received_at),
        created_at: Set(now),
    }
}

/// The `message_blobs` row of a message whose raw bytes were sealed in memory.
fn inline_blob_row(prepared: &PreparedMessage) -> Option<message_blob::ActiveModel> {
    match &prepared.blob {
        PreparedBlob::Inline(sealed) => Some(message_blob::ActiveModel {
            message_id: Set(prepared.id),
            sealed: Set(sealed.clone()),
        }),
        PreparedBlob::File(_) => None,
    }
}

/// Target size of one insert statement of inline blobs.
const BLOB_STATEMENT_BYTES: usize = 4 * 1024 * 1024;

fn attachment_rows(
    prepared: &PreparedMessage,
    now: DateTime<Utc>,
) -> impl Iterator<Item = attachment::ActiveModel> + '_ {
    prepared
        .attachments
        .iter()
        .map(move |item| attachment::ActiveModel {
            id: Set(item.id),
            message_id: Set(prepared.id),
            part_index: Set(item.part_index),
            size: Set(item.size),
            meta_sealed: Set(item.meta_sealed.clone()),
            created_at: Set(now),
        })
}

fn address_rows(
    prepared: &PreparedMessage,
) -> impl Iterator<Item = message_address::ActiveModel> + '_ {
    prepared
        .address_hashes
        .iter()
        .map(|(hash, role)| message_address::ActiveModel {
            message_id: Set(prepared.id),
            address_hash: Set(hash.clone()),
            role: Set((*role).to_string()),
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
