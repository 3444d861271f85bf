//! Incoming delivery reports become delivery events on the message they are about. A report is matched,
//! in order, by its ENVID (RFC 3461 `Original-Envelope-Id`, which inboxd sets to the message's tag), by
//! the VERP tag of the address it was delivered to, and by the Message-ID of the returned original.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{event, find_tag};
use crate::crypto::{Aad, MasterKey};
use crate::ingest::prepare::{PreparedMessage, normalize_address};
use crate::parse::dsn::{Action, DeliveryReport};
use crate::store::StoreError;
use crate::store::entities::{delivery_event, message, outbox};
use crate::store::read::content_key;

/// What an event says beyond its kind and status code; sealed under the message's content key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventDetail {
    pub recipient: String,
    pub diagnostic: Option<String>,
    pub reporting_mta: Option<String>,
    pub queue_id: Option<String>,
}

/// AAD of an event's sealed detail.
pub fn event_aad(event_id: &Uuid, message_id: &Uuid) -> Aad {
    Aad::new("delivery_event.detail")
        .with_bytes(event_id.as_bytes())
        .with_bytes(message_id.as_bytes())
}

/// Keyed hash of a recipient address.
pub fn recipient_hash(master: &MasterKey, address: &str) -> String {
    master
        .lookup_hasher()
        .hash("address", normalize_address(address).as_bytes())
        .to_hex()
}

/// Finds the message a report is about, within the mailbox.
pub async fn find_original(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    mailbox_id: Uuid,
    prepared: &PreparedMessage,
    report: &DeliveryReport,
) -> Result<Option<message::Model>, StoreError> {
    let mut tags: Vec<String> = Vec::new();
    if let Some(envid) = &report.envelope_id {
        tags.push(envid.trim().to_ascii_lowercase());
    }
    let hints = report
        .original_envelope_from
        .iter()
        .chain(prepared.envelope_hints.iter());
    tags.extend(hints.filter_map(|hint| find_tag(hint)));
    for tag in tags {
        let row = outbox::Entity::find()
            .filter(outbox::Column::EnvelopeId.eq(tag))
            .one(db)
            .await?;
        if let Some(row) = row
            && let Some(original) = message::Entity::find_by_id(row.message_id).one(db).await?
            && original.mailbox_id == mailbox_id
        {
            return Ok(Some(original));
        }
    }
    let Some(quoted) = &report.original_message_id else {
        return Ok(None);
    };
    // The quoted Message-ID, hashed the way ingest hashes ids (without the angle brackets).
    let bare = quoted.trim().trim_start_matches('<').trim_end_matches('>');
    let hash = master
        .lookup_hasher()
        .hash("message-id", bare.as_bytes())
        .to_hex();
    find_by_message_id_hash(db, mailbox_id, &hash).await
}

/// Finds an original by the keyed hash of its Message-ID (the caller hashes `report.original_message_id`).
pub async fn find_by_message_id_hash(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    hash: &str,
) -> Result<Option<message::Model>, StoreError> {
    Ok(message::Entity::find()
        .filter(message::Column::MailboxId.eq(mailbox_id))
        .filter(message::Column::MessageIdHash.eq(hash))
        .filter(message::Column::IsBounce.eq(false))
        .one(db)
        .await?)
}

fn event_of(action: Action) -> &'static str {
    match action {
        Action::Failed => event::BOUNCED,
        Action::Delayed => event::DELAYED,
        Action::Delivered | Action::Relayed | Action::Expanded => event::DELIVERED,
        Action::Unknown => event::BOUNCED,
    }
}

/// Records one event on a message.
#[allow(clippy::too_many_arguments)]
pub async fn record_event(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    message: &message::Model,
    kind: &str,
    status: Option<&str>,
    detail: &EventDetail,
    occurred_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = content_key(db, master, message).await?;
    let id = Uuid::now_v7();
    let json = serde_json::to_vec(detail).map_err(|err| StoreError::Corrupt {
        what: "event detail".to_string(),
        message: err.to_string(),
    })?;
    delivery_event::ActiveModel {
        id: Set(id),
        message_id: Set(message.id),
        recipient_hash: Set(recipient_hash(master, &detail.recipient)),
        detail_sealed: Set(key.seal(&json, &event_aad(&id, &message.id))),
        event: Set(kind.to_string()),
        status_code: Set(status.map(str::to_string)),
        occurred_at: Set(occurred_at),
        created_at: Set(crate::clock::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Turns a matched report into events (one per recipient) and settles the recipients' outbox rows.
pub async fn record_report(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    original: &message::Model,
    report: &DeliveryReport,
    received_at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut recorded = 0;
    for recipient in &report.recipients {
        let Some(address) = recipient.recipient.clone() else {
            continue;
        };
        let kind = event_of(recipient.action);
        let detail = EventDetail {
            recipient: address.clone(),
            diagnostic: recipient.diagnostic.clone(),
            reporting_mta: report
                .reporting_mta
                .clone()
                .or(recipient.remote_mta.clone()),
            queue_id: None,
        };
        record_event(
            db,
            master,
            original,
            kind,
            recipient.status.as_deref(),
            &detail,
            received_at,
        )
        .await?;
        let state = match kind {
            event::BOUNCED => Some("bounced"),
            event::DELIVERED => Some("delivered"),
            // A delay notice proves the relay accepted it: an interrupted send needs no resend.
            event::DELAYED => Some("sent"),
            _ => None,
        };
        if let Some(state) = state {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::State, Expr::value(state))
                .col_expr(outbox::Column::UpdatedAt, Expr::value(crate::clock::now()))
                .filter(outbox::Column::MessageId.eq(original.id))
                .filter(outbox::Column::RecipientHash.eq(recipient_hash(master, &address)))
                .exec(db)
                .await?;
        }
        recorded += 1;
    }
    Ok(recorded)
}
