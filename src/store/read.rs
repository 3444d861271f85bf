//! Reading conversations back: every sealed value is opened with its conversation's key and its own
//! associated data, so a tampered or swapped ciphertext fails loudly instead of returning wrong data.
use std::path::Path;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use uuid::Uuid;

use super::StoreError;
use super::entities::{attachment, conversation, delivery_event, message, message_blob};
use super::threads::{conversation_key, message_key_aad, subject_aad};
use crate::crypto::{DataKey, MasterKey, open_blob, read_blob};
use crate::ingest::prepare::{
    StoredAttachment, StoredBody, StoredHeaders, attachment_aad, message_aad,
};

/// A decrypted conversation.
#[derive(Debug, Serialize)]
pub struct ConversationView {
    pub id: Uuid,
    pub mailbox_id: Uuid,
    pub state: String,
    pub subject: Option<String>,
    pub messages: Vec<MessageView>,
}

/// A decrypted message.
#[derive(Debug, Serialize)]
pub struct MessageView {
    pub id: Uuid,
    pub direction: String,
    pub status: String,
    pub problem: Option<String>,
    pub headers: StoredHeaders,
    pub body: StoredBody,
    pub attachments: Vec<AttachmentView>,
    pub raw_size: i64,
    pub is_automatic: bool,
    pub is_auto_reply: bool,
    pub is_bounce: bool,
    /// Delivery events of this message (replies: queued, sent, deferred, delivered, bounced, failed).
    pub events: Vec<EventView>,
}

/// A decrypted delivery event.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub event: String,
    pub status: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub recipient: String,
    pub diagnostic: Option<String>,
    pub reporting_mta: Option<String>,
    pub queue_id: Option<String>,
}

/// Decrypted attachment metadata.
#[derive(Debug, Serialize)]
pub struct AttachmentView {
    pub id: Uuid,
    pub part_index: i32,
    pub size: i64,
    pub meta: StoredAttachment,
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::Corrupt {
        what: what.to_string(),
        message: err.to_string(),
    })
}

/// Unwraps a message's content key from its conversation key.
pub fn message_key(
    conversation_key: &DataKey,
    row: &message::Model,
) -> Result<DataKey, StoreError> {
    Ok(conversation_key.unwrap_data_key(
        &row.content_key_wrapped,
        &message_key_aad(&row.id, &row.conversation_id),
    )?)
}

/// Unwraps the content key of a message row, loading its conversation key.
pub async fn content_key(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    row: &message::Model,
) -> Result<DataKey, StoreError> {
    let key = conversation_key(db, master, row.conversation_id).await?;
    message_key(&key, row)
}

/// Ids of a mailbox's conversations, most recent activity first.
pub async fn conversation_ids(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(conversation::Entity::find()
        .filter(conversation::Column::MailboxId.eq(mailbox_id))
        .order_by_desc(conversation::Column::LastActivityAt)
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.id)
        .collect())
}

/// Reads and decrypts one conversation with all its messages.
pub async fn conversation(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    id: Uuid,
) -> Result<ConversationView, StoreError> {
    let row = conversation::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("conversation {id}")))?;
    let key = conversation_key(db, master, id).await?;
    let subject = row
        .subject_sealed
        .as_ref()
        .map(|sealed| key.open(sealed, &subject_aad(&id)))
        .transpose()?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let rows = message::Entity::find()
        .filter(message::Column::ConversationId.eq(id))
        .order_by_asc(message::Column::ReceivedAt)
        .order_by_asc(message::Column::Id)
        .all(db)
        .await?;
    let mut messages = Vec::with_capacity(rows.len());
    for message_row in rows {
        messages.push(message_view(db, &key, message_row).await?);
    }
    Ok(ConversationView {
        id,
        mailbox_id: row.mailbox_id,
        state: row.state,
        subject,
        messages,
    })
}

async fn message_view(
    db: &impl ConnectionTrait,
    conversation_key: &DataKey,
    row: message::Model,
) -> Result<MessageView, StoreError> {
    let key = message_key(conversation_key, &row)?;
    let open =
        |sealed: &Option<Vec<u8>>, field: &'static str| -> Result<Option<Vec<u8>>, StoreError> {
            sealed
                .as_ref()
                .map(|bytes| key.open(bytes, &message_aad(field, &row.id)))
                .transpose()
                .map_err(StoreError::from)
        };
    let headers: StoredHeaders = match open(&row.header_sealed, "message.header")? {
        Some(bytes) => json(&bytes, "message headers")?,
        None => {
            return Err(StoreError::NotFound(format!(
                "headers of message {}",
                row.id
            )));
        }
    };
    let body: StoredBody = match open(&row.body_sealed, "message.body")? {
        Some(bytes) => json(&bytes, "message body")?,
        None => StoredBody {
            text: String::new(),
            html: None,
        },
    };
    let problem = open(&row.problem_sealed, "message.problem")?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let mut attachments = Vec::new();
    for item in attachment::Entity::find()
        .filter(attachment::Column::MessageId.eq(row.id))
        .order_by_asc(attachment::Column::PartIndex)
        .all(db)
        .await?
    {
        let meta = key.open(&item.meta_sealed, &attachment_aad(&item.id, &row.id))?;
        attachments.push(AttachmentView {
            id: item.id,
            part_index: item.part_index,
            size: item.size,
            meta: json(&meta, "attachment metadata")?,
        });
    }
    let mut events = Vec::new();
    for item in delivery_event::Entity::find()
        .filter(delivery_event::Column::MessageId.eq(row.id))
        .order_by_asc(delivery_event::Column::OccurredAt)
        .order_by_asc(delivery_event::Column::Id)
        .all(db)
        .await?
    {
        let detail = key.open(
            &item.detail_sealed,
            &crate::delivery::bounces::event_aad(&item.id, &row.id),
        )?;
        let detail: crate::delivery::bounces::EventDetail = json(&detail, "event detail")?;
        events.push(EventView {
            event: item.event,
            status: item.status_code,
            occurred_at: item.occurred_at,
            recipient: detail.recipient,
            diagnostic: detail.diagnostic,
            reporting_mta: detail.reporting_mta,
            queue_id: detail.queue_id,
        });
    }
    Ok(MessageView {
        id: row.id,
        direction: row.direction,
        status: row.status,
        problem,
        headers,
        body,
        attachments,
        raw_size: row.raw_size,
        is_automatic: row.is_automatic,
        is_auto_reply: row.is_auto_reply,
        is_bounce: row.is_bounce,
        events,
    })
}

/// Decrypts a message's raw bytes: from its blob file, or from `message_blobs` for a small message.
pub async fn raw_message(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    blob_dir: &Path,
    message_id: Uuid,
) -> Result<Vec<u8>, StoreError> {
    let row = message::Entity::find_by_id(message_id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("message {message_id}")))?;
    let conversation_key = conversation_key(db, master, row.conversation_id).await?;
    let key = message_key(&conversation_key, &row)?;
    let aad = message_aad("message.raw", &row.id);
    let blob_error = |err: tokio::task::JoinError| StoreError::Corrupt {
        what: "blob read".to_string(),
        message: err.to_string(),
    };
    let Some(relative) = row.blob_path.clone() else {
        let sealed = message_blob::Entity::find_by_id(message_id)
            .one(db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("raw of message {message_id}")))?
            .sealed;
        let bytes = tokio::task::spawn_blocking(move || open_blob(&sealed, &key, &aad))
            .await
            .map_err(blob_error)??;
        return Ok(bytes);
    };
    if relative.contains("..") || relative.starts_with('/') {
        return Err(StoreError::Corrupt {
            what: "messages.blob_path".to_string(),
            message: "path leaves the blob directory".to_string(),
        });
    }
    let path = blob_dir.join(relative);
    let bytes = tokio::task::spawn_blocking(move || read_blob(&path, &key, &aad))
        .await
        .map_err(blob_error)??;
    Ok(bytes)
}
