//! Internal notes of agents on a conversation: sealed with the conversation's data key like its mail,
//! bound to their row and conversation, and never sent anywhere.
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde::Serialize;
use uuid::Uuid;

use super::StoreError;
use super::entities::note;
use super::threads::{conversation_key, note_aad};
use crate::clock;
use crate::crypto::MasterKey;

/// A decrypted note.
#[derive(Debug, Clone, Serialize)]
pub struct NoteView {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// Name of the token that wrote it.
    pub author: String,
    pub body: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Seals and stores a note.
pub async fn add(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    conversation_id: Uuid,
    author: &str,
    body: &str,
) -> Result<NoteView, StoreError> {
    let key = conversation_key(db, master, conversation_id).await?;
    let id = Uuid::now_v7();
    let now = clock::now();
    note::ActiveModel {
        id: Set(id),
        conversation_id: Set(conversation_id),
        author: Set(author.to_string()),
        body_sealed: Set(key.seal(body.as_bytes(), &note_aad(&id, &conversation_id))),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(NoteView {
        id,
        conversation_id,
        author: author.to_string(),
        body: body.to_string(),
        created_at: now,
    })
}

/// The notes of a conversation, oldest first, decrypted.
pub async fn list(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    conversation_id: Uuid,
) -> Result<Vec<NoteView>, StoreError> {
    let rows = note::Entity::find()
        .filter(note::Column::ConversationId.eq(conversation_id))
        .order_by_asc(note::Column::CreatedAt)
        .order_by_asc(note::Column::Id)
        .all(db)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let key = conversation_key(db, master, conversation_id).await?;
    let mut notes = Vec::with_capacity(rows.len());
    for row in rows {
        let body = key.open(&row.body_sealed, &note_aad(&row.id, &conversation_id))?;
        notes.push(NoteView {
            id: row.id,
            conversation_id,
            author: row.author,
            body: String::from_utf8_lossy(&body).into_owned(),
            created_at: row.created_at,
        });
    }
    Ok(notes)
}
