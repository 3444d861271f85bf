//! The outbox: a reply accepted from an agent is committed (message, outbox rows, `queued` events) before
//! anything is sent; the sender then works through due rows. One row per message and recipient, with a
//! state: `queued` → `sending` → `sent` | `retry` | `failed`, and later `delivered` | `bounced` from DSNs.
//! A row found in `sending` at start-up was interrupted mid-transaction: it is never sent again (at most
//! once per recipient) but set to `unknown`, which the relay's DSN later settles.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::bounces::{EventDetail, recipient_hash, record_event};
use super::compose::{ReplyDraft, compose};
use super::{DeliveryError, envelope_tag, event};
use crate::config::{MailboxConfig, Outgoing};
use crate::crypto::{Aad, MasterKey};
use crate::ingest::commit::Ingestor;
use crate::ingest::prepare::normalize_address;
use crate::ingest::{Origin, RawMessage};
use crate::store::entities::{conversation, mailbox, message, outbox};
use crate::store::messages::{self, Stored};
use crate::store::read;

/// Outbox states.
pub mod state {
    pub const QUEUED: &str = "queued";
    pub const SENDING: &str = "sending";
    pub const RETRY: &str = "retry";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    pub const UNKNOWN: &str = "unknown";
}

/// AAD of an outbox row's sealed recipient.
pub fn recipient_aad(row_id: &Uuid) -> Aad {
    Aad::new("outbox.recipient").with_bytes(row_id.as_bytes())
}

/// An agent's reply.
pub struct ReplyRequest {
    pub conversation_id: Uuid,
    pub body: String,
    /// Recipients; default: Reply-To or From of the latest message from someone else.
    pub to: Vec<String>,
    pub cc: Vec<String>,
}

/// A reply that is now in the outbox.
#[derive(Debug, serde::Serialize)]
pub struct Enqueued {
    pub message_id: Uuid,
    pub rfc_message_id: String,
    pub recipients: usize,
}

/// Finds the mailbox config of a conversation and its sending settings.
pub async fn outgoing_for(
    db: &impl ConnectionTrait,
    mailboxes: &[MailboxConfig],
    conversation_id: Uuid,
) -> Result<(conversation::Model, Outgoing), DeliveryError> {
    let conversation = conversation::Entity::find_by_id(conversation_id)
        .one(db)
        .await?
        .ok_or_else(|| DeliveryError::NotFound(format!("conversation {conversation_id}")))?;
    let row = mailbox::Entity::find_by_id(conversation.mailbox_id)
        .one(db)
        .await?
        .ok_or_else(|| DeliveryError::NotFound("mailbox of the conversation".to_string()))?;
    let outgoing = mailboxes
        .iter()
        .find(|config| config.name == row.name)
        .and_then(|config| config.outgoing.clone())
        .ok_or_else(|| DeliveryError::NoSmtp(row.name.clone()))?;
    Ok((conversation, outgoing))
}

/// Composes, stores (encrypted, in its conversation) and queues a reply, all in one transaction.
pub async fn enqueue_reply(
    ingestor: &Ingestor,
    mailboxes: &[MailboxConfig],
    request: ReplyRequest,
) -> Result<Enqueued, DeliveryError> {
    let db = &ingestor.store.db;
    let master = ingestor.master();
    let (conversation, outgoing) = outgoing_for(db, mailboxes, request.conversation_id).await?;
    let view = read::conversation(db, master, conversation.id).await?;
    let own = normalize_address(&outgoing.address);
    let parent = view
        .messages
        .iter()
        .rev()
        .find(|message| {
            !message.is_bounce
                && message.headers.from.iter().all(|address| {
                    address.email.as_deref().map(normalize_address) != Some(own.clone())
                })
        })
        .or_else(|| view.messages.last());
    let mut to = request.to.clone();
    if to.is_empty()
        && let Some(parent) = parent
    {
        let source = if parent.headers.reply_to.is_empty() {
            &parent.headers.from
        } else {
            &parent.headers.reply_to
        };
        to = source.iter().filter_map(|a| a.email.clone()).collect();
    }
    to.retain(|address| normalize_address(address) != own);
    if to.is_empty() {
        return Err(DeliveryError::Invalid(
            "no recipient: give one, the conversation has no sender to answer".to_string(),
        ));
    }
    let references: Vec<String> = parent
        .map(|p| {
            let mut chain = p.headers.references.clone();
            if chain.is_empty() {
                chain.extend(p.headers.in_reply_to.iter().cloned());
            }
            chain
        })
        .unwrap_or_default();
    let composed = compose(&ReplyDraft {
        from_address: &outgoing.address,
        from_name: outgoing.display_name.as_deref(),
        to: &to,
        cc: &request.cc,
        subject: view.subject.as_deref().unwrap_or(""),
        in_reply_to: parent.and_then(|p| p.headers.message_id.as_deref()),
        references: &references,
        body: &request.body,
        date: std::time::SystemTime::from(crate::clock::now()),
    })?;
    let mut prepared = ingestor
        .prepare_batch(vec![RawMessage {
            origin: Origin::Outbound,
            raw: composed.raw,
            oversize_of: None,
        }])
        .await?;
    let Some(mut reply) = prepared.pop() else {
        return Err(DeliveryError::Invalid(
            "the reply could not be prepared".to_string(),
        ));
    };
    reply.conversation = Some(conversation.id);
    let recipients: Vec<String> = to.iter().chain(request.cc.iter()).cloned().collect();
    let message_id = reply.id;
    let tag = envelope_tag(&message_id);
    // `prepare_batch` made the reply's blob file (if any) durable before returning it.
    let transaction = crate::store::begin_write(db).await?;
    match messages::store(&transaction, master, conversation.mailbox_id, &reply).await? {
        Stored::New { .. } => {}
        Stored::Duplicate => return Err(DeliveryError::Invalid("duplicate reply".to_string())),
    }
    let stored = message::Entity::find_by_id(message_id)
        .one(&transaction)
        .await?
        .ok_or_else(|| DeliveryError::NotFound("the stored reply".to_string()))?;
    let key = read::content_key(&transaction, master, &stored).await?;
    let now = crate::clock::now();
    for recipient in &recipients {
        let row_id = Uuid::now_v7();
        outbox::ActiveModel {
            id: Set(row_id),
            message_id: Set(message_id),
            recipient_hash: Set(recipient_hash(master, recipient)),
            recipient_sealed: Set(key.seal(recipient.as_bytes(), &recipient_aad(&row_id))),
            envelope_id: Set(tag.clone()),
            state: Set(state::QUEUED.to_string()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&transaction)
        .await?;
        let detail = EventDetail {
            recipient: recipient.clone(),
            diagnostic: None,
            reporting_mta: None,
            queue_id: None,
        };
        record_event(
            &transaction,
            master,
            &stored,
            event::QUEUED,
            None,
            &detail,
            now,
        )
        .await?;
    }
    transaction.commit().await?;
    Ok(Enqueued {
        message_id,
        rfc_message_id: composed.message_id,
        recipients: recipients.len(),
    })
}

/// Marks rows interrupted in `sending` as `unknown` (never resent: at most once per recipient).
///
/// A relay that accepted the message answers our NOTIFY=SUCCESS,FAILURE,DELAY request with a DSN,
/// which settles the row (`delivered`, `bounced`, or `sent` for a delay). A row still `unknown` after
/// `grace` was therefore never accepted, and the sender sends it again — but only to a relay known to
/// issue DSNs; otherwise it is failed with the reason, never sent twice.
pub async fn recover_interrupted(
    db: &impl ConnectionTrait,
    grace: std::time::Duration,
) -> Result<u64, DeliveryError> {
    let retry_at = crate::clock::now() + chrono::Duration::from_std(grace).unwrap_or_default();
    let result = outbox::Entity::update_many()
        .col_expr(outbox::Column::State, Expr::value(state::UNKNOWN))
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(retry_at))
        .col_expr(
            outbox::Column::LastError,
            Expr::value("interrupted while sending; waiting for the relay's DSN before deciding"),
        )
        .filter(outbox::Column::State.eq(state::SENDING))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Ids of messages with rows due for sending.
pub async fn due_messages(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, DeliveryError> {
    let rows: Vec<Uuid> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::MessageId)
        .filter(outbox::Column::State.is_in([state::QUEUED, state::RETRY, state::UNKNOWN]))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .order_by_asc(outbox::Column::NextAttemptAt)
        .limit(limit * 8)
        .into_tuple()
        .all(db)
        .await?;
    let mut ids = Vec::new();
    for id in rows {
        if !ids.contains(&id) {
            ids.push(id);
        }
        if ids.len() as u64 >= limit {
            break;
        }
    }
    Ok(ids)
}

/// The due rows of one message with their recipients decrypted.
pub async fn due_rows(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    message: &message::Model,
    now: DateTime<Utc>,
) -> Result<Vec<(outbox::Model, String)>, DeliveryError> {
    let key = read::content_key(db, master, message).await?;
    let rows = outbox::Entity::find()
        .filter(outbox::Column::MessageId.eq(message.id))
        .filter(outbox::Column::State.is_in([state::QUEUED, state::RETRY, state::UNKNOWN]))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let recipient = key.open(&row.recipient_sealed, &recipient_aad(&row.id))?;
        out.push((row, String::from_utf8_lossy(&recipient).into_owned()));
    }
    Ok(out)
}

/// Shared handle for waking the sender after a reply is queued.
pub type Wake = Arc<tokio::sync::Notify>;
