//! Conversation resolution: which conversation a new message joins (RFC 5322 Message-ID, In-Reply-To and
//! References, as in RFC 5256's REFERENCES threading), creating or merging conversations as needed.
//!
//! Every Message-ID a conversation owns or references is recorded (as a keyed hash) in `thread_ids`, so a
//! child that arrives before its parent still meets it: the parent finds its own id already mapped. When a
//! message links two conversations, they are merged. Mail without any parent id may join by normalised
//! subject, but only when the subject carried a reply marker, the sender already took part in the
//! conversation and the conversation was active within the window.
mod batch;

use std::collections::BTreeSet;

use chrono::Duration as ChronoDuration;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use super::StoreError;
use super::entities::{conversation, data_key, message, message_address, note, thread_id};
use crate::clock;
use crate::crypto::{Aad, DataKey, MasterKey};
use crate::ingest::prepare::PreparedMessage;

pub use batch::BatchThreads;
pub(crate) use batch::MAX_BIND_VALUES;

/// How long a conversation stays open to subject-only threading after its last activity.
pub const SUBJECT_WINDOW_DAYS: i64 = 30;

/// AAD of a conversation's wrapped data key.
pub fn conversation_key_aad(conversation_id: &Uuid) -> Aad {
    Aad::new("conversation.key").with_bytes(conversation_id.as_bytes())
}

/// AAD of a message content key wrapped under its conversation's key.
pub fn message_key_aad(message_id: &Uuid, conversation_id: &Uuid) -> Aad {
    Aad::new("message.key")
        .with_bytes(message_id.as_bytes())
        .with_bytes(conversation_id.as_bytes())
}

/// AAD of a conversation's sealed subject.
pub fn subject_aad(conversation_id: &Uuid) -> Aad {
    Aad::new("conversation.subject").with_bytes(conversation_id.as_bytes())
}

/// AAD of a conversation's sealed legal-hold reason.
pub fn hold_reason_aad(conversation_id: &Uuid) -> Aad {
    Aad::new("conversation.hold_reason").with_bytes(conversation_id.as_bytes())
}

/// AAD of an internal note, sealed under the conversation key.
pub fn note_aad(note_id: &Uuid, conversation_id: &Uuid) -> Aad {
    Aad::new("note.body")
        .with_bytes(note_id.as_bytes())
        .with_bytes(conversation_id.as_bytes())
}

/// The conversation a message goes into, with its unwrapped key.
pub struct Target {
    pub conversation_id: Uuid,
    pub key: DataKey,
}

/// Loads and unwraps a conversation's data key.
pub async fn conversation_key(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    conversation_id: Uuid,
) -> Result<DataKey, StoreError> {
    let row = data_key::Entity::find_by_id(conversation_id)
        .one(db)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("data key of conversation {conversation_id}"))
        })?;
    Ok(master.unwrap_data_key(&row.wrapped_key, &conversation_key_aad(&conversation_id))?)
}

/// Finds or creates the conversation for `message` and records its thread ids.
/// `forced` (a reply's conversation, or the conversation of the message a bounce is about) wins over
/// what the thread ids say; the ids are still recorded.
pub async fn resolve(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    mailbox_id: Uuid,
    message: &PreparedMessage,
    forced: Option<Uuid>,
) -> Result<Target, StoreError> {
    let mut id_hashes: Vec<String> = message.parent_hashes.clone();
    if let Some(own) = &message.message_id_hash {
        id_hashes.push(own.clone());
    }
    id_hashes.sort();
    id_hashes.dedup();
    let mut found: BTreeSet<Uuid> = BTreeSet::new();
    if !id_hashes.is_empty() {
        let rows = thread_id::Entity::find()
            .filter(thread_id::Column::MailboxId.eq(mailbox_id))
            .filter(thread_id::Column::IdHash.is_in(id_hashes.clone()))
            .all(db)
            .await?;
        found.extend(rows.into_iter().map(|row| row.conversation_id));
    }
    if found.is_empty()
        && message.parent_hashes.is_empty()
        && let Some(id) = by_subject(db, mailbox_id, message).await?
    {
        found.insert(id);
    }
    if let Some(forced) = forced.or(message.conversation) {
        found.clear();
        found.insert(forced);
    }
    let conversation_id = match found.len() {
        0 => create(db, master, mailbox_id, message).await?,
        1 => *found.first().expect("one element"),
        _ => merge_all(db, master, found.into_iter().collect()).await?,
    };
    if !id_hashes.is_empty() {
        // One statement for all ids; ids another conversation already owns keep their owner.
        thread_id::Entity::insert_many(id_hashes.into_iter().map(|hash| thread_id::ActiveModel {
            mailbox_id: Set(mailbox_id),
            id_hash: Set(hash),
            conversation_id: Set(conversation_id),
        }))
        .on_conflict(
            OnConflict::columns([thread_id::Column::MailboxId, thread_id::Column::IdHash])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    let key = conversation_key(db, master, conversation_id).await?;
    Ok(Target {
        conversation_id,
        key,
    })
}

async fn by_subject(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    message: &PreparedMessage,
) -> Result<Option<Uuid>, StoreError> {
    let (Some(subject_hash), true) = (&message.subject_hash, message.is_reply_subject) else {
        return Ok(None);
    };
    if message.sender_hashes.is_empty() {
        return Ok(None);
    }
    let since = message.received_at - ChronoDuration::days(SUBJECT_WINDOW_DAYS);
    let candidates = conversation::Entity::find()
        .filter(conversation::Column::MailboxId.eq(mailbox_id))
        .filter(conversation::Column::SubjectHash.eq(subject_hash.clone()))
        .filter(conversation::Column::LastActivityAt.gte(since))
        .order_by_desc(conversation::Column::LastActivityAt)
        .limit(20)
        .all(db)
        .await?;
    for candidate in candidates {
        let in_conversation = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::ConversationId.eq(candidate.id))
            .into_query();
        let shared = message_address::Entity::find()
            .filter(message_address::Column::MessageId.in_subquery(in_conversation))
            .filter(message_address::Column::AddressHash.is_in(message.sender_hashes.clone()))
            .one(db)
            .await?;
        if shared.is_some() {
            return Ok(Some(candidate.id));
        }
    }
    Ok(None)
}

/// The rows of a new conversation for `message`: the conversation (subject sealed under a fresh data
/// key) and that key wrapped under the master key; with the new id, and the key for sealing what follows.
pub(super) fn new_conversation(
    master: &MasterKey,
    mailbox_id: Uuid,
    message: &PreparedMessage,
) -> (
    Uuid,
    conversation::ActiveModel,
    data_key::ActiveModel,
    DataKey,
) {
    let id = Uuid::now_v7();
    let key = DataKey::generate();
    let now = clock::now();
    let subject_sealed = message
        .subject
        .as_ref()
        .map(|subject| key.seal(subject.as_bytes(), &subject_aad(&id)));
    let row = conversation::ActiveModel {
        id: Set(id),
        mailbox_id: Set(mailbox_id),
        state: Set("open".to_string()),
        assignee: Set(None),
        subject_sealed: Set(subject_sealed),
        subject_hash: Set(message.subject_hash.clone()),
        participants_hash: Set(message.participants_hash.clone()),
        legal_hold: Set(false),
        legal_hold_reason_sealed: Set(None),
        unmatched_bounce: Set(false),
        message_count: Set(0),
        first_activity_at: Set(message.received_at),
        last_activity_at: Set(message.received_at),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let wrapped = data_key::ActiveModel {
        conversation_id: Set(id),
        master_key_id: Set(master.key_id().to_string()),
        wrapped_key: Set(master.wrap_data_key(&key, &conversation_key_aad(&id))),
        created_at: Set(now),
        updated_at: Set(now),
    };
    (id, row, wrapped, key)
}

async fn create(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    mailbox_id: Uuid,
    message: &PreparedMessage,
) -> Result<Uuid, StoreError> {
    let (id, row, wrapped, _) = new_conversation(master, mailbox_id, message);
    row.insert(db).await?;
    wrapped.insert(db).await?;
    Ok(id)
}

/// Merges conversations into the oldest one and returns it.
async fn merge_all(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    ids: Vec<Uuid>,
) -> Result<Uuid, StoreError> {
    let mut rows = conversation::Entity::find()
        .filter(conversation::Column::Id.is_in(ids))
        .order_by_asc(conversation::Column::CreatedAt)
        .order_by_asc(conversation::Column::Id)
        .all(db)
        .await?;
    if rows.is_empty() {
        return Err(StoreError::NotFound("conversations to merge".to_string()));
    }
    let target_id = rows.remove(0).id;
    for source in rows {
        // Re-read the target each time: every merge changes its counters.
        let target = conversation::Entity::find_by_id(target_id)
            .one(db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("conversation {target_id}")))?;
        merge(db, master, &target, &source).await?;
    }
    Ok(target_id)
}

/// Moves everything of `source` into `target`: message keys are re-wrapped (content stays as it is),
/// notes re-sealed, thread ids re-pointed; then the source and its data key are deleted.
async fn merge(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    target: &conversation::Model,
    source: &conversation::Model,
) -> Result<(), StoreError> {
    let target_key = conversation_key(db, master, target.id).await?;
    let source_key = conversation_key(db, master, source.id).await?;
    let messages = message::Entity::find()
        .filter(message::Column::ConversationId.eq(source.id))
        .all(db)
        .await?;
    for row in messages {
        let content_key = source_key.unwrap_data_key(
            &row.content_key_wrapped,
            &message_key_aad(&row.id, &source.id),
        )?;
        let rewrapped =
            target_key.wrap_data_key(&content_key, &message_key_aad(&row.id, &target.id));
        let mut active: message::ActiveModel = row.into();
        active.conversation_id = Set(target.id);
        active.content_key_wrapped = Set(rewrapped);
        active.update(db).await?;
    }
    let notes = note::Entity::find()
        .filter(note::Column::ConversationId.eq(source.id))
        .all(db)
        .await?;
    for row in notes {
        let body = source_key.open(&row.body_sealed, &note_aad(&row.id, &source.id))?;
        let resealed = target_key.seal(&body, &note_aad(&row.id, &target.id));
        let mut active: note::ActiveModel = row.into();
        active.conversation_id = Set(target.id);
        active.body_sealed = Set(resealed);
        active.update(db).await?;
    }
    thread_id::Entity::update_many()
        .col_expr(thread_id::Column::ConversationId, Expr::value(target.id))
        .filter(thread_id::Column::ConversationId.eq(source.id))
        .exec(db)
        .await?;
    let mut active: conversation::ActiveModel = target.clone().into();
    active.message_count = Set(target.message_count + source.message_count);
    active.first_activity_at = Set(target.first_activity_at.min(source.first_activity_at));
    active.last_activity_at = Set(target.last_activity_at.max(source.last_activity_at));
    active.legal_hold = Set(target.legal_hold || source.legal_hold);
    active.updated_at = Set(clock::now());
    active.update(db).await?;
    data_key::Entity::delete_by_id(source.id).exec(db).await?;
    conversation::Entity::delete_by_id(source.id)
        .exec(db)
        .await?;
    Ok(())
}
