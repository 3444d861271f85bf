//! The audit log: who did what, when. Never content, never addresses: targets are ids and names of
//! mailboxes or tokens, details are counts and settings.
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, QuerySelect, Set};
use serde::Serialize;

use super::StoreError;
use super::entities::audit_entry;

/// One audit record as shown by the CLI and the API.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: serde_json::Value,
}

/// Appends a record. `actor` is e.g. `daemon`, `cli`, `token:<name>`; `details` a JSON object of counts
/// and settings (no content, no addresses).
pub async fn record(
    db: &impl ConnectionTrait,
    actor: &str,
    action: &str,
    target: Option<&str>,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    audit_entry::Entity::insert(audit_entry::ActiveModel {
        at: Set(crate::clock::now()),
        actor: Set(actor.to_string()),
        action: Set(action.to_string()),
        target: Set(target.map(str::to_string)),
        details: Set(details.to_string()),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

/// The newest records first, paged.
pub async fn list(
    db: &impl ConnectionTrait,
    limit: u64,
    offset: u64,
) -> Result<Vec<AuditRecord>, StoreError> {
    let rows = audit_entry::Entity::find()
        .order_by_desc(audit_entry::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| AuditRecord {
            id: row.id,
            at: row.at,
            actor: row.actor,
            action: row.action,
            target: row.target,
            details: serde_json::from_str(&row.details).unwrap_or(serde_json::Value::Null),
        })
        .collect())
}
