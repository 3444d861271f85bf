//! Conversation lists with filters, and the agent-side changes: state and assignee.
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use super::StoreError;
use super::entities::conversation;
use super::threads::{conversation_key, subject_aad};
use crate::clock;
use crate::crypto::MasterKey;

/// The states a conversation can be in.
pub const STATES: [&str; 3] = ["open", "pending", "closed"];

/// Which conversations to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these mailboxes (`None` = all; an empty list matches nothing).
    pub mailbox_ids: Option<Vec<Uuid>>,
    pub state: Option<String>,
    /// Only conversations assigned to this name; `Some("")` = unassigned.
    pub assignee: Option<String>,
    pub limit: u64,
    pub offset: u64,
}

/// One line of a conversation list, subject decrypted.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: Uuid,
    pub mailbox_id: Uuid,
    pub state: String,
    pub assignee: Option<String>,
    pub subject: String,
    pub messages: i32,
    pub last_activity_at: chrono::DateTime<chrono::Utc>,
    pub unmatched_bounce: bool,
}

/// A page of conversations, newest activity first, with the total that match.
pub async fn list(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    filter: &Filter,
) -> Result<(u64, Vec<Summary>), StoreError> {
    let mut query = conversation::Entity::find();
    if let Some(ids) = &filter.mailbox_ids {
        query = query.filter(conversation::Column::MailboxId.is_in(ids.clone()));
    }
    if let Some(state) = &filter.state {
        query = query.filter(conversation::Column::State.eq(state.clone()));
    }
    match filter.assignee.as_deref() {
        Some("") => query = query.filter(conversation::Column::Assignee.is_null()),
        Some(name) => query = query.filter(conversation::Column::Assignee.eq(name)),
        None => {}
    }
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_desc(conversation::Column::LastActivityAt)
        .order_by_desc(conversation::Column::Id)
        .limit(filter.limit)
        .offset(filter.offset)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let subject = subject_of(db, master, &row).await?;
        out.push(Summary {
            id: row.id,
            mailbox_id: row.mailbox_id,
            state: row.state,
            assignee: row.assignee,
            subject,
            messages: row.message_count,
            last_activity_at: row.last_activity_at,
            unmatched_bounce: row.unmatched_bounce,
        });
    }
    Ok((total, out))
}

/// The decrypted subject of a conversation row ("" when it has none).
pub async fn subject_of(
    db: &impl ConnectionTrait,
    master: &MasterKey,
    row: &conversation::Model,
) -> Result<String, StoreError> {
    Ok(match &row.subject_sealed {
        Some(sealed) => {
            let key = conversation_key(db, master, row.id).await?;
            String::from_utf8_lossy(&key.open(sealed, &subject_aad(&row.id))?).into_owned()
        }
        None => String::new(),
    })
}

/// A conversation row by id.
pub async fn by_id(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<conversation::Model>, StoreError> {
    Ok(conversation::Entity::find_by_id(id).one(db).await?)
}

/// Sets the state (one of [`STATES`]); returns false when the conversation does not exist.
pub async fn set_state(
    db: &impl ConnectionTrait,
    id: Uuid,
    state: &str,
) -> Result<bool, StoreError> {
    debug_assert!(STATES.contains(&state));
    let Some(row) = by_id(db, id).await? else {
        return Ok(false);
    };
    let mut active: conversation::ActiveModel = row.into();
    active.state = Set(state.to_string());
    active.updated_at = Set(clock::now());
    active.update(db).await?;
    Ok(true)
}

/// Assigns the conversation to a name (`None` unassigns); returns false when it does not exist.
pub async fn set_assignee(
    db: &impl ConnectionTrait,
    id: Uuid,
    assignee: Option<&str>,
) -> Result<bool, StoreError> {
    let Some(row) = by_id(db, id).await? else {
        return Ok(false);
    };
    let mut active: conversation::ActiveModel = row.into();
    active.assignee = Set(assignee.map(str::to_string));
    active.updated_at = Set(clock::now());
    active.update(db).await?;
    Ok(true)
}
