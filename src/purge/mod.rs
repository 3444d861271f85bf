//! Purge: how stored mail leaves inboxd, completely. Retention expiry ([`retention`]), data-subject
//! erasure ([`subject`]) and legal hold ([`hold`]) all delete through [`erase`]: rows, blob files, index
//! documents (merged physically out of the index files) and the data keys (crypto-shredding).
pub mod erase;
pub mod hold;
pub mod retention;
pub mod subject;

use std::collections::HashSet;

use sea_orm::{EntityTrait, QuerySelect};
use uuid::Uuid;

use crate::search::indexer::{Deletion, IndexHandle};
use crate::store::entities::message;
use crate::store::{Store, StoreError};

/// Removes index documents whose message is no longer in the store (a purge or erasure interrupted
/// between its commit and the index update), and merges their text out of the index files. Returns how
/// many were removed.
pub async fn remove_stale_documents(
    store: &Store,
    index: &IndexHandle,
) -> Result<usize, StoreError> {
    let indexed = index.index.indexed_message_ids().unwrap_or_default();
    if indexed.is_empty() {
        return Ok(0);
    }
    let stored: HashSet<Uuid> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .into_tuple::<Uuid>()
        .all(&store.db)
        .await?
        .into_iter()
        .collect();
    let stale: Vec<Uuid> = indexed.difference(&stored).copied().collect();
    if stale.is_empty() {
        return Ok(0);
    }
    let count = stale.len();
    index
        .purge(Deletion {
            conversations: Vec::new(),
            messages: stale,
        })
        .await
        .map_err(|err| StoreError::Corrupt {
            what: "search index".to_string(),
            message: err.to_string(),
        })?;
    Ok(count)
}
