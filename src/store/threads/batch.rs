//! Conversation resolution for a whole ingest batch inside its transaction: the same outcome as calling
//! [`super::resolve`] message by message, with a few statements per batch instead of three to five per
//! message.
//!
//! The thread ids of every message of the batch are read in one query and the data keys of their
//! conversations in another; new conversations, data keys and thread ids are kept as pending rows and
//! written by [`BatchThreads::flush`] in multi-row statements. While the cache covers a message (its ids
//! are all known, at most one conversation owns them), no statement runs. The rare cases that need more
//! than the cache — the subject fallback, which reads messages and addresses, and merges, which rewrite
//! stored rows — are resolved by [`BatchThreads::resolve_in_database`] after the caller has flushed every
//! pending row, so the database answers exactly as it would have message by message.
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{by_subject, conversation_key, conversation_key_aad, merge_all};
use crate::crypto::{DataKey, MasterKey};
use crate::ingest::prepare::PreparedMessage;
use crate::store::StoreError;
use crate::store::entities::{conversation, data_key, thread_id};

/// Bound values per statement, below SQLite's (32,766) and PostgreSQL's (65,535) limits.
pub(crate) const MAX_BIND_VALUES: usize = 30_000;

/// Values bound per `thread_ids` key lookup.
const LOOKUP_CHUNK: usize = 5_000;

/// Cached thread ids and conversation keys of one batch, plus the rows it has yet to write.
pub struct BatchThreads {
    mailbox_id: Uuid,
    /// Every id hash of the batch's messages (own Message-ID and parents), sorted and deduplicated.
    batch_hashes: Vec<String>,
    /// Owner conversation of each id hash of the batch known to the store or pending; a hash of the
    /// batch that is absent here is owned by no conversation.
    owners: HashMap<String, Uuid>,
    /// Unwrapped data keys of the conversations met so far.
    keys: HashMap<Uuid, DataKey>,
    new_conversations: Vec<conversation::ActiveModel>,
    new_keys: Vec<data_key::ActiveModel>,
    new_ids: Vec<thread_id::ActiveModel>,
}

/// The id hashes a message is threaded by: its own Message-ID and its parents', sorted, deduplicated.
fn id_hashes(message: &PreparedMessage) -> Vec<String> {
    let mut hashes: Vec<String> = message.parent_hashes.clone();
    if let Some(own) = &message.message_id_hash {
        hashes.push(own.clone());
    }
    hashes.sort();
    hashes.dedup();
    hashes
}

/// Whether [`super::resolve`] would try the subject fallback for a message no thread id places.
fn may_join_by_subject(message: &PreparedMessage) -> bool {
    message.parent_hashes.is_empty()
        && message.subject_hash.is_some()
        && message.is_reply_subject
        && !message.sender_hashes.is_empty()
}

impl BatchThreads {
    /// Reads the owners of every thread id of `batch` and the keys of their conversations.
    pub async fn load(
        db: &impl ConnectionTrait,
        master: &MasterKey,
        mailbox_id: Uuid,
        batch: &[PreparedMessage],
    ) -> Result<BatchThreads, StoreError> {
        let mut batch_hashes: Vec<String> = batch.iter().flat_map(id_hashes).collect();
        batch_hashes.sort();
        batch_hashes.dedup();
        let mut threads = BatchThreads {
            mailbox_id,
            batch_hashes,
            owners: HashMap::new(),
            keys: HashMap::new(),
            new_conversations: Vec::new(),
            new_keys: Vec::new(),
            new_ids: Vec::new(),
        };
        threads.reload(db, master).await?;
        Ok(threads)
    }

    /// Re-reads owners and keys from the store, after something other than this cache changed thread
    /// ids or conversations (a delivery report stored by [`crate::store::messages::store`]). Only call
    /// with nothing pending.
    pub async fn reload(
        &mut self,
        db: &impl ConnectionTrait,
        master: &MasterKey,
    ) -> Result<(), StoreError> {
        debug_assert!(self.is_flushed(), "reload would forget pending rows");
        self.owners.clear();
        self.keys.clear();
        for chunk in self.batch_hashes.chunks(LOOKUP_CHUNK) {
            let rows = thread_id::Entity::find()
                .filter(thread_id::Column::MailboxId.eq(self.mailbox_id))
                .filter(thread_id::Column::IdHash.is_in(chunk.iter().cloned()))
                .all(db)
                .await?;
            self.owners.extend(
                rows.into_iter()
                    .map(|row| (row.id_hash, row.conversation_id)),
            );
        }
        let mut conversations: Vec<Uuid> = self.owners.values().copied().collect();
        conversations.sort();
        conversations.dedup();
        for chunk in conversations.chunks(LOOKUP_CHUNK) {
            let rows = data_key::Entity::find()
                .filter(data_key::Column::ConversationId.is_in(chunk.iter().copied()))
                .all(db)
                .await?;
            for row in rows {
                let key = master.unwrap_data_key(
                    &row.wrapped_key,
                    &conversation_key_aad(&row.conversation_id),
                )?;
                self.keys.insert(row.conversation_id, key);
            }
        }
        Ok(())
    }

    /// The conversation of `message` when the cache alone decides it (creating one as a pending row
    /// when no thread id places it); `None` when the database must be asked: call
    /// [`BatchThreads::resolve_in_database`] after flushing every pending row.
    pub fn resolve_cached(
        &mut self,
        master: &MasterKey,
        message: &PreparedMessage,
    ) -> Option<Uuid> {
        let hashes = id_hashes(message);
        let conversation_id = match message.conversation {
            Some(forced) if self.keys.contains_key(&forced) => forced,
            Some(_) => return None,
            None => {
                let found: BTreeSet<Uuid> = hashes
                    .iter()
                    .filter_map(|hash| self.owners.get(hash).copied())
                    .collect();
                match (found.len(), found.first()) {
                    (0, _) if may_join_by_subject(message) => return None,
                    (0, _) => self.create_pending(master, message),
                    (1, Some(id)) => *id,
                    _ => return None,
                }
            }
        };
        // Owners' keys are loaded with their thread ids; a missing one is looked up (and its absence
        // reported) by the database path.
        if !self.keys.contains_key(&conversation_id) {
            return None;
        }
        self.record_ids(hashes, conversation_id);
        Some(conversation_id)
    }

    /// Resolves what [`BatchThreads::resolve_cached`] could not: the subject fallback, a merge of the
    /// conversations a message links, or a forced conversation whose key is not cached yet. The caller
    /// must have flushed every pending row of the batch first.
    pub async fn resolve_in_database(
        &mut self,
        db: &impl ConnectionTrait,
        master: &MasterKey,
        message: &PreparedMessage,
    ) -> Result<Uuid, StoreError> {
        debug_assert!(
            self.is_flushed(),
            "the database must see every earlier message"
        );
        let hashes = id_hashes(message);
        let mut found: BTreeSet<Uuid> = hashes
            .iter()
            .filter_map(|hash| self.owners.get(hash).copied())
            .collect();
        if let Some(forced) = message.conversation {
            found.clear();
            found.insert(forced);
        } else if found.is_empty()
            && message.parent_hashes.is_empty()
            && let Some(id) = by_subject(db, self.mailbox_id, message).await?
        {
            found.insert(id);
        }
        let conversation_id = match (found.len(), found.first()) {
            (0, _) => self.create_pending(master, message),
            (1, Some(id)) => *id,
            _ => {
                let merged: Vec<Uuid> = found.into_iter().collect();
                let target = merge_all(db, master, merged.clone()).await?;
                for owner in self.owners.values_mut() {
                    if merged.contains(owner) {
                        *owner = target;
                    }
                }
                self.keys
                    .retain(|id, _| *id == target || !merged.contains(id));
                target
            }
        };
        if let Entry::Vacant(slot) = self.keys.entry(conversation_id) {
            slot.insert(conversation_key(db, master, conversation_id).await?);
        }
        self.record_ids(hashes, conversation_id);
        Ok(conversation_id)
    }

    /// The data key of a conversation this batch resolved a message into.
    pub fn key(&self, conversation_id: Uuid) -> Result<&DataKey, StoreError> {
        self.keys.get(&conversation_id).ok_or_else(|| {
            StoreError::NotFound(format!("data key of conversation {conversation_id}"))
        })
    }

    /// Writes the pending conversations, data keys and thread ids (in that order, for the foreign keys).
    pub async fn flush(&mut self, db: &impl ConnectionTrait) -> Result<(), StoreError> {
        // 15 columns per conversation row, 5 per data key, 3 per thread id.
        for chunk in self.new_conversations.chunks(MAX_BIND_VALUES / 15) {
            conversation::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(db)
                .await?;
        }
        for chunk in self.new_keys.chunks(MAX_BIND_VALUES / 5) {
            data_key::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(db)
                .await?;
        }
        for chunk in self.new_ids.chunks(MAX_BIND_VALUES / 3) {
            // Ids another conversation already owns keep their owner, as in `resolve`.
            thread_id::Entity::insert_many(chunk.iter().cloned())
                .on_conflict(
                    OnConflict::columns([thread_id::Column::MailboxId, thread_id::Column::IdHash])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
        self.new_conversations.clear();
        self.new_keys.clear();
        self.new_ids.clear();
        Ok(())
    }

    fn is_flushed(&self) -> bool {
        self.new_conversations.is_empty() && self.new_keys.is_empty() && self.new_ids.is_empty()
    }

    /// Records the ids of a message for its conversation; ids already owned keep their owner.
    fn record_ids(&mut self, hashes: Vec<String>, conversation_id: Uuid) {
        for hash in hashes {
            if self.owners.contains_key(&hash) {
                continue;
            }
            self.owners.insert(hash.clone(), conversation_id);
            self.new_ids.push(thread_id::ActiveModel {
                mailbox_id: Set(self.mailbox_id),
                id_hash: Set(hash),
                conversation_id: Set(conversation_id),
            });
        }
    }

    /// A new conversation for `message`, as [`super::create`] makes it, written at the next flush.
    fn create_pending(&mut self, master: &MasterKey, message: &PreparedMessage) -> Uuid {
        let (id, row, wrapped, key) = super::new_conversation(master, self.mailbox_id, message);
        self.new_conversations.push(row);
        self.new_keys.push(wrapped);
        self.keys.insert(id, key);
        id
    }
}
