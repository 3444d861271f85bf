//! The one deletion path. Retention expiry, data-subject erasure and mailbox removal all end here.
//!
//! Whole conversations: one transaction deletes the conversation rows, and with them (ON DELETE CASCADE)
//! their data keys, messages, attachments, address hashes, thread ids, delivery events, outbox rows and
//! notes. Destroying the data key is what makes it final: every message key is wrapped under it, so any
//! copy of a row or blob left elsewhere (a backup, a half-deleted file, a page PostgreSQL has not vacuumed
//! yet) can no longer be decrypted. Then the blob files go, then the index documents.
//!
//! Single messages (erasure of one person's mail from a shared conversation): the message rows go, and the
//! conversation is re-keyed — a fresh data key re-wraps the remaining messages' keys and re-seals the
//! subject, notes and hold reason — so the old key, which could open the erased rows, is destroyed too.
//!
//! Crash safety: each step is idempotent and the store is the truth. A crash after the commit leaves blob
//! files without rows (removed by the sweep at the next start) and index documents without rows (removed
//! by the index reconciliation at the next start); a crash before it changes nothing.
use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Condition, Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use crate::clock;
use crate::crypto::{DataKey, MasterKey};
use crate::search::indexer::{Deletion, IndexHandle};
use crate::store::entities::{conversation, data_key, message, note, tombstone};
use crate::store::messages::{MAILDIR_PREFIX, TOMBSTONE_CONTENT};
use crate::store::threads::{conversation_key, conversation_key_aad, message_key_aad, note_aad};
use crate::store::threads::{hold_reason_aad, subject_aad};
use crate::store::{Store, StoreError, begin_write};

/// Rows per SQL `IN (...)` list: well under every backend's parameter limit.
pub const CHUNK: usize = 500;

/// What an erasure removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub conversations: u64,
    pub messages: u64,
    /// Raw message bytes removed.
    pub bytes: u64,
}

impl std::ops::AddAssign for Erased {
    fn add_assign(&mut self, other: Erased) {
        self.conversations += other.conversations;
        self.messages += other.messages;
        self.bytes += other.bytes;
    }
}

/// A message as the erasure path needs it.
#[derive(Debug, Clone)]
struct Doomed {
    id: Uuid,
    conversation_id: Uuid,
    mailbox_id: Uuid,
    folder: Option<String>,
    content_hash: String,
    blob_path: Option<String>,
    raw_size: i64,
}

async fn messages_of_conversations(
    db: &impl ConnectionTrait,
    conversations: &[Uuid],
) -> Result<Vec<Doomed>, StoreError> {
    type Row = (
        Uuid,
        Uuid,
        Uuid,
        Option<String>,
        String,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::ConversationId)
        .column(message::Column::MailboxId)
        .column(message::Column::Folder)
        .column(message::Column::ContentHash)
        .column(message::Column::BlobPath)
        .column(message::Column::RawSize)
        .filter(message::Column::ConversationId.is_in(conversations.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, conversation_id, mailbox_id, folder, content_hash, blob_path, raw_size)| Doomed {
                id,
                conversation_id,
                mailbox_id,
                folder,
                content_hash,
                blob_path,
                raw_size,
            },
        )
        .collect())
}

/// Records the source identities of messages about to be deleted, so that a copy still at the source
/// (a Maildir file, an IMAP folder re-synced after a UIDVALIDITY change) is not ingested again.
async fn bury(db: &impl ConnectionTrait, doomed: &[&Doomed]) -> Result<(), StoreError> {
    let now = clock::now();
    let mut rows = Vec::with_capacity(doomed.len() * 2);
    for message in doomed {
        rows.push((
            message.mailbox_id,
            format!("{TOMBSTONE_CONTENT}{}", message.content_hash),
        ));
        if let Some(folder) = message
            .folder
            .as_ref()
            .filter(|f| f.starts_with(MAILDIR_PREFIX))
        {
            rows.push((message.mailbox_id, folder.clone()));
        }
    }
    rows.sort();
    rows.dedup();
    for chunk in rows.chunks(CHUNK / 2) {
        tombstone::Entity::insert_many(chunk.iter().map(|(mailbox_id, key)| {
            tombstone::ActiveModel {
                mailbox_id: Set(*mailbox_id),
                source_key: Set(key.clone()),
                created_at: Set(now),
            }
        }))
        .on_conflict(
            OnConflict::columns([tombstone::Column::MailboxId, tombstone::Column::SourceKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

/// The audit record a deletion writes in its own transaction, so that no deletion ever commits without
/// its record (and a run killed halfway has records for exactly what it did).
#[derive(Debug, Clone)]
pub struct AuditContext {
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The policy that applied (merged with the counts).
    pub policy: serde_json::Value,
}

impl AuditContext {
    async fn record(&self, db: &impl ConnectionTrait, erased: &Erased) -> Result<(), StoreError> {
        let mut details = self.policy.clone();
        if let serde_json::Value::Object(map) = &mut details {
            map.insert("conversations".to_string(), erased.conversations.into());
            map.insert("messages".to_string(), erased.messages.into());
            map.insert("bytes".to_string(), erased.bytes.into());
        }
        crate::store::audit::record(db, &self.actor, &self.action, Some(&self.target), details)
            .await
    }

    /// The record of a run that deleted nothing (`held_kept`: expired conversations kept by a hold).
    pub async fn record_empty(
        &self,
        db: &impl ConnectionTrait,
        held_kept: u64,
    ) -> Result<(), StoreError> {
        let mut context = self.clone();
        if let serde_json::Value::Object(map) = &mut context.policy {
            map.insert("held_kept".to_string(), held_kept.into());
        }
        context.record(db, &Erased::default()).await
    }
}

/// Blob files of committed deletions being unlinked on blocking threads while the caller goes on with
/// the next batch (unlinking is mostly waiting on the file system's journal). At most
/// [`Unlinks::IN_FLIGHT`] batches are pending; [`Unlinks::finish`] waits for all of them.
#[derive(Default)]
pub struct Unlinks {
    pending: std::collections::VecDeque<tokio::task::JoinHandle<Result<(), StoreError>>>,
}

impl Unlinks {
    const IN_FLIGHT: usize = 4;

    async fn push(&mut self, store: &Store, gone: &[Doomed]) -> Result<(), StoreError> {
        if self.pending.len() >= Self::IN_FLIGHT
            && let Some(oldest) = self.pending.pop_front()
        {
            join_unlink(oldest).await?;
        }
        self.pending.push_back(spawn_remove_blobs(store, gone)?);
        Ok(())
    }

    /// Waits until every blob file handed over is gone; the first failure is returned.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        let mut first = Ok(());
        while let Some(task) = self.pending.pop_front() {
            let result = join_unlink(task).await;
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// Deletes whole conversations, but only those still matching `still` inside the deleting transaction
/// (e.g. "not on legal hold and still expired": a hold placed, or a message arrived, since the caller
/// chose them keeps the conversation). The index documents are deleted; call [`IndexHandle::purge`]
/// after a run to merge their text physically out of the index files. Their blob files are handed to
/// `unlinks`: they are gone once the caller's [`Unlinks::finish`] returns.
pub async fn erase_conversations(
    store: &Store,
    index: Option<&IndexHandle>,
    ids: &[Uuid],
    still: Condition,
    audit: Option<&AuditContext>,
    unlinks: &mut Unlinks,
) -> Result<Erased, StoreError> {
    let mut total = Erased::default();
    for chunk in ids.chunks(CHUNK) {
        let started = std::time::Instant::now();
        let _ordered = match index {
            Some(index) => Some(index.ordered().await),
            None => None,
        };
        let ordered_at = started.elapsed();
        let candidates = messages_of_conversations(&store.db, chunk).await?;
        let selected_at = started.elapsed();
        let turn = store.write_turn().await;
        let turn_at = started.elapsed();
        let transaction = begin_write(&store.db).await?;
        let doomed: Vec<Uuid> = conversation::Entity::find()
            .select_only()
            .column(conversation::Column::Id)
            .filter(conversation::Column::Id.is_in(chunk.iter().copied()))
            .filter(still.clone())
            .into_tuple()
            .all(&transaction)
            .await?;
        if doomed.is_empty() {
            transaction.rollback().await?;
            drop(turn);
            continue;
        }
        let doomed_set: HashSet<Uuid> = doomed.iter().copied().collect();
        let gone: Vec<Doomed> = candidates
            .into_iter()
            .filter(|message| doomed_set.contains(&message.conversation_id))
            .collect();
        bury(&transaction, &gone.iter().collect::<Vec<_>>()).await?;
        // Keys first (crypto-shredding), then the rows; the cascade takes the rest.
        data_key::Entity::delete_many()
            .filter(data_key::Column::ConversationId.is_in(doomed.iter().copied()))
            .exec(&transaction)
            .await?;
        conversation::Entity::delete_many()
            .filter(conversation::Column::Id.is_in(doomed.iter().copied()))
            .exec(&transaction)
            .await?;
        let batch = Erased {
            conversations: doomed.len() as u64,
            messages: gone.len() as u64,
            bytes: gone
                .iter()
                .map(|message| u64::try_from(message.raw_size).unwrap_or(0))
                .sum(),
        };
        if let Some(audit) = audit {
            audit.record(&transaction, &batch).await?;
        }
        transaction.commit().await?;
        drop(turn);
        let committed_at = started.elapsed();
        total += batch;
        unlinks.push(store, &gone).await?;
        let unlinked_at = started.elapsed();
        if let Some(index) = index {
            index
                .delete(Deletion {
                    conversations: doomed,
                    messages: Vec::new(),
                })
                .await;
        }
        tracing::debug!(
            conversations = batch.conversations,
            ordered_ms = ordered_at.as_millis(),
            select_ms = (selected_at - ordered_at).as_millis(),
            turn_wait_ms = (turn_at - selected_at).as_millis(),
            transaction_ms = (committed_at - turn_at).as_millis(),
            unlink_wait_ms = (unlinked_at - committed_at).as_millis(),
            index_ms = (started.elapsed() - unlinked_at).as_millis(),
            "purge batch"
        );
    }
    Ok(total)
}

/// Deletes single messages. A conversation left without messages is deleted with its key; one that keeps
/// messages is re-keyed so the old key (which could open the erased rows) is destroyed. Messages whose
/// conversation does not match `still` (e.g. is on legal hold) are left alone.
pub async fn erase_messages(
    store: &Store,
    master: &MasterKey,
    index: Option<&IndexHandle>,
    ids: &[Uuid],
    still: Condition,
) -> Result<Erased, StoreError> {
    let mut by_conversation: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(Uuid, Uuid)> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .column(message::Column::ConversationId)
            .filter(message::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(&store.db)
            .await?;
        for (id, conversation_id) in rows {
            by_conversation.entry(conversation_id).or_default().push(id);
        }
    }
    let mut total = Erased::default();
    for (conversation_id, message_ids) in by_conversation {
        total += erase_in_conversation(store, master, index, conversation_id, &message_ids, &still)
            .await?;
    }
    Ok(total)
}

async fn erase_in_conversation(
    store: &Store,
    master: &MasterKey,
    index: Option<&IndexHandle>,
    conversation_id: Uuid,
    message_ids: &[Uuid],
    still: &Condition,
) -> Result<Erased, StoreError> {
    let _ordered = match index {
        Some(index) => Some(index.ordered().await),
        None => None,
    };
    let transaction = begin_write(&store.db).await?;
    let Some(row) = conversation::Entity::find_by_id(conversation_id)
        .filter(still.clone())
        .one(&transaction)
        .await?
    else {
        transaction.rollback().await?;
        return Ok(Erased::default());
    };
    let all = messages_of_conversations(&transaction, &[conversation_id]).await?;
    let wanted: HashSet<Uuid> = message_ids.iter().copied().collect();
    let (gone, kept): (Vec<Doomed>, Vec<Doomed>) = all
        .into_iter()
        .partition(|message| wanted.contains(&message.id));
    if gone.is_empty() {
        transaction.rollback().await?;
        return Ok(Erased::default());
    }
    bury(&transaction, &gone.iter().collect::<Vec<_>>()).await?;
    let erased_conversation = kept.is_empty();
    if erased_conversation {
        data_key::Entity::delete_by_id(conversation_id)
            .exec(&transaction)
            .await?;
        conversation::Entity::delete_by_id(conversation_id)
            .exec(&transaction)
            .await?;
    } else {
        message::Entity::delete_many()
            .filter(message::Column::Id.is_in(gone.iter().map(|message| message.id)))
            .exec(&transaction)
            .await?;
        rekey(&transaction, master, &row).await?;
        conversation::Entity::update_many()
            .col_expr(
                conversation::Column::MessageCount,
                Expr::value(i32::try_from(kept.len()).unwrap_or(i32::MAX)),
            )
            .col_expr(conversation::Column::UpdatedAt, Expr::value(clock::now()))
            .filter(conversation::Column::Id.eq(conversation_id))
            .exec(&transaction)
            .await?;
    }
    transaction.commit().await?;
    remove_blobs(store, &gone).await?;
    if let Some(index) = index {
        index
            .delete(if erased_conversation {
                Deletion {
                    conversations: vec![conversation_id],
                    messages: Vec::new(),
                }
            } else {
                Deletion {
                    conversations: Vec::new(),
                    messages: gone.iter().map(|message| message.id).collect(),
                }
            })
            .await;
    }
    Ok(Erased {
        conversations: u64::from(erased_conversation),
        messages: gone.len() as u64,
        bytes: gone
            .iter()
            .map(|message| u64::try_from(message.raw_size).unwrap_or(0))
            .sum(),
    })
}

/// Gives a conversation a fresh data key: re-wraps every remaining message key, re-seals the subject, the
/// hold reason and the notes, and replaces the wrapped key. Content itself is not rewritten (it is sealed
/// under the per-message keys, which do not change).
async fn rekey(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    row: &conversation::Model,
) -> Result<(), StoreError> {
    let id = row.id;
    let old = conversation_key(db, master, id).await?;
    let new = DataKey::generate();
    for message_row in message::Entity::find()
        .filter(message::Column::ConversationId.eq(id))
        .all(db)
        .await?
    {
        let aad = message_key_aad(&message_row.id, &id);
        let content_key = old.unwrap_data_key(&message_row.content_key_wrapped, &aad)?;
        let mut active: message::ActiveModel = message_row.into();
        active.content_key_wrapped = Set(new.wrap_data_key(&content_key, &aad));
        active.update(db).await?;
    }
    for note_row in note::Entity::find()
        .filter(note::Column::ConversationId.eq(id))
        .all(db)
        .await?
    {
        let aad = note_aad(&note_row.id, &id);
        let body = old.open(&note_row.body_sealed, &aad)?;
        let mut active: note::ActiveModel = note_row.into();
        active.body_sealed = Set(new.seal(&body, &aad));
        active.update(db).await?;
    }
    let mut active: conversation::ActiveModel = row.clone().into();
    if let Some(sealed) = &row.subject_sealed {
        let subject = old.open(sealed, &subject_aad(&id))?;
        active.subject_sealed = Set(Some(new.seal(&subject, &subject_aad(&id))));
    }
    if let Some(sealed) = &row.legal_hold_reason_sealed {
        let reason = old.open(sealed, &hold_reason_aad(&id))?;
        active.legal_hold_reason_sealed = Set(Some(new.seal(&reason, &hold_reason_aad(&id))));
    }
    active.update(db).await?;
    let now = clock::now();
    data_key::Entity::update_many()
        .col_expr(
            data_key::Column::WrappedKey,
            Expr::value(master.wrap_data_key(&new, &conversation_key_aad(&id))),
        )
        .col_expr(
            data_key::Column::MasterKeyId,
            Expr::value(master.key_id().to_string()),
        )
        .col_expr(data_key::Column::UpdatedAt, Expr::value(now))
        .filter(data_key::Column::ConversationId.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Unlinks the blob files of deleted messages, but only those whose row is really gone.
async fn remove_blobs(store: &Store, gone: &[Doomed]) -> Result<(), StoreError> {
    join_unlink(spawn_remove_blobs(store, gone)?).await
}

async fn join_unlink(
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    task.await.map_err(|err| StoreError::Corrupt {
        what: "blob removal task".to_string(),
        message: err.to_string(),
    })?
}

/// Starts unlinking the blob files of deleted messages on a blocking thread.
fn spawn_remove_blobs(
    store: &Store,
    gone: &[Doomed],
) -> Result<tokio::task::JoinHandle<Result<(), StoreError>>, StoreError> {
    let mut paths = Vec::new();
    for message in gone {
        if let Some(relative) = &message.blob_path {
            paths.push(store.blob_path(relative)?);
        }
    }
    Ok(tokio::task::spawn_blocking(move || {
        for path in paths {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(StoreError::Blob {
                        path,
                        message: err.to_string(),
                    });
                }
            }
        }
        Ok(())
    }))
}

/// Why a mailbox cannot be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("no mailbox named `{0}`")]
    NotFound(String),
    #[error(
        "mailbox `{0}` is on legal hold; lift the hold first (`inboxd hold release --mailbox {0}`)"
    )]
    Held(String),
    #[error(
        "mailbox `{name}` has {held} conversations on legal hold; lift those holds first (`inboxd hold list`)"
    )]
    HeldConversations { name: String, held: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Removes a mailbox and everything stored from it through the deletion path (rows, blobs, index
/// entries, data keys), then its row. Refused while the mailbox or any of its conversations is on hold.
pub async fn remove_mailbox(
    store: &Store,
    index: Option<&IndexHandle>,
    name: &str,
    actor: &str,
) -> Result<Erased, RemoveError> {
    use sea_orm::PaginatorTrait;
    let row = crate::store::mailboxes::by_name(&store.db, name)
        .await?
        .ok_or_else(|| RemoveError::NotFound(name.to_string()))?;
    if row.legal_hold {
        return Err(RemoveError::Held(name.to_string()));
    }
    let held = conversation::Entity::find()
        .filter(conversation::Column::MailboxId.eq(row.id))
        .filter(conversation::Column::LegalHold.eq(true))
        .count(&store.db)
        .await
        .map_err(StoreError::from)?;
    if held > 0 {
        return Err(RemoveError::HeldConversations {
            name: name.to_string(),
            held,
        });
    }
    let audit = AuditContext {
        actor: actor.to_string(),
        action: "mailbox.remove".to_string(),
        target: format!("mailbox:{name}"),
        policy: serde_json::json!({}),
    };
    let mut total = Erased::default();
    let mut unlinks = Unlinks::default();
    loop {
        let ids: Vec<Uuid> = conversation::Entity::find()
            .select_only()
            .column(conversation::Column::Id)
            .filter(conversation::Column::MailboxId.eq(row.id))
            .limit(CHUNK as u64)
            .into_tuple()
            .all(&store.db)
            .await
            .map_err(StoreError::from)?;
        if ids.is_empty() {
            break;
        }
        let still = Condition::all()
            .add(conversation::Column::MailboxId.eq(row.id))
            .add(conversation::Column::LegalHold.eq(false));
        let done =
            erase_conversations(store, index, &ids, still, Some(&audit), &mut unlinks).await?;
        if done.conversations == 0 {
            // Held meanwhile.
            unlinks.finish().await?;
            return Err(RemoveError::HeldConversations {
                name: name.to_string(),
                held: ids.len() as u64,
            });
        }
        total += done;
    }
    unlinks.finish().await?;
    crate::store::mailboxes::remove(&store.db, name).await?;
    if total.conversations == 0 {
        audit.record(&store.db, &total).await?;
    }
    super::retention::finish(store, index).await;
    Ok(total)
}
