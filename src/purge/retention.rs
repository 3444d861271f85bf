//! Retention: which conversations have expired, and the purge run that removes them.
//!
//! A conversation expires when its mailbox has a retention window, neither it nor its mailbox is on legal
//! hold, and its last activity is older than the window. The run works in bounded batches (one short
//! write transaction each, then a pause) so that ingest and search go on while it runs; each batch
//! re-checks the conditions inside its transaction. It is idempotent: killed at any point and run again,
//! it finishes the job. At the end the index merges the deleted documents' text out of its files and
//! SQLite gives the freed (already zeroed, `secure_delete`) pages back.
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use tracing::{info, warn};
use uuid::Uuid;

use super::erase::{AuditContext, Erased, Unlinks, erase_conversations};
use crate::crypto::MasterKey;
use crate::search::indexer::{Deletion, IndexHandle};
use crate::store::entities::{conversation, mailbox};
use crate::store::threads::{conversation_key, subject_aad};
use crate::store::{Store, StoreError};

/// How a purge run behaves.
#[derive(Debug, Clone)]
pub struct PurgeOptions {
    /// List what would go; change nothing.
    pub dry_run: bool,
    /// Conversations per write transaction.
    pub batch_size: usize,
    /// Pause between batches, so other writers get the database.
    pub pause: Duration,
    /// Who runs it, for the audit log (`daemon`, `cli`, `token:<name>`).
    pub actor: String,
}

impl Default for PurgeOptions {
    fn default() -> Self {
        PurgeOptions {
            dry_run: false,
            batch_size: 500,
            pause: Duration::from_millis(20),
            actor: "daemon".to_string(),
        }
    }
}

/// A conversation a dry run would purge.
#[derive(Debug, Clone, Serialize)]
pub struct Expired {
    pub id: Uuid,
    pub mailbox: String,
    pub subject: Option<String>,
    pub messages: i32,
    pub last_activity_at: DateTime<Utc>,
}

/// What a run did (or, dry, would do) for one mailbox.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxPurge {
    pub mailbox: String,
    pub retention_days: i32,
    pub cutoff: DateTime<Utc>,
    #[serde(flatten)]
    pub erased: Erased,
    /// Expired conversations kept because they are on legal hold.
    pub held: u64,
    /// Dry runs: the conversations that would go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<Expired>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub mailboxes: Vec<MailboxPurge>,
    /// Mailboxes skipped entirely because the whole mailbox is on legal hold.
    pub held_mailboxes: Vec<String>,
}

impl PurgeReport {
    /// Totals over every mailbox.
    pub fn total(&self) -> Erased {
        let mut total = Erased::default();
        for mailbox in &self.mailboxes {
            total += mailbox.erased;
        }
        total
    }
}

/// The condition under which a conversation of `mailbox_id` may be purged at `cutoff`. Checked again
/// inside every deleting transaction.
fn expired_condition(mailbox_id: Uuid, cutoff: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(conversation::Column::MailboxId.eq(mailbox_id))
        .add(conversation::Column::LegalHold.eq(false))
        .add(conversation::Column::LastActivityAt.lt(cutoff))
}

/// Runs the retention policy of every mailbox once. `index` is the daemon's index handle (or one opened
/// by the offline CLI); without one, the index is reconciled at the next start.
pub async fn run(
    store: &Store,
    master: &MasterKey,
    index: Option<&IndexHandle>,
    options: &PurgeOptions,
) -> Result<PurgeReport, StoreError> {
    let started_at = crate::clock::now();
    let mut report = PurgeReport {
        dry_run: options.dry_run,
        started_at,
        mailboxes: Vec::new(),
        held_mailboxes: Vec::new(),
    };
    let rows = mailbox::Entity::find()
        .filter(mailbox::Column::RetentionDays.is_not_null())
        .order_by_asc(mailbox::Column::Name)
        .all(&store.db)
        .await?;
    for row in rows {
        let Some(days) = row.retention_days else {
            continue;
        };
        if row.legal_hold {
            report.held_mailboxes.push(row.name.clone());
            continue;
        }
        let cutoff = started_at - chrono::Duration::days(i64::from(days.max(0)));
        let outcome = if options.dry_run {
            dry_run_mailbox(store, master, &row, days, cutoff).await?
        } else {
            purge_mailbox(store, index, &row, days, cutoff, options).await?
        };
        report.mailboxes.push(outcome);
    }
    if !options.dry_run {
        let total = report.total();
        if total.messages > 0 || total.conversations > 0 {
            finish(store, index).await;
        }
    }
    Ok(report)
}

async fn held_expired(
    db: &impl ConnectionTrait,
    mailbox_id: Uuid,
    cutoff: DateTime<Utc>,
) -> Result<u64, StoreError> {
    use sea_orm::PaginatorTrait;
    Ok(conversation::Entity::find()
        .filter(conversation::Column::MailboxId.eq(mailbox_id))
        .filter(conversation::Column::LegalHold.eq(true))
        .filter(conversation::Column::LastActivityAt.lt(cutoff))
        .count(db)
        .await?)
}

async fn dry_run_mailbox(
    store: &Store,
    master: &MasterKey,
    row: &mailbox::Model,
    days: i32,
    cutoff: DateTime<Utc>,
) -> Result<MailboxPurge, StoreError> {
    let rows = conversation::Entity::find()
        .filter(expired_condition(row.id, cutoff))
        .order_by_asc(conversation::Column::LastActivityAt)
        .all(&store.db)
        .await?;
    let mut expired = Vec::with_capacity(rows.len());
    let mut erased = Erased::default();
    for conversation_row in rows {
        let subject = match &conversation_row.subject_sealed {
            Some(sealed) => {
                let key = conversation_key(&store.db, master, conversation_row.id).await?;
                Some(
                    String::from_utf8_lossy(&key.open(sealed, &subject_aad(&conversation_row.id))?)
                        .into_owned(),
                )
            }
            None => None,
        };
        erased.conversations += 1;
        erased.messages += u64::try_from(conversation_row.message_count).unwrap_or(0);
        expired.push(Expired {
            id: conversation_row.id,
            mailbox: row.name.clone(),
            subject,
            messages: conversation_row.message_count,
            last_activity_at: conversation_row.last_activity_at,
        });
    }
    Ok(MailboxPurge {
        mailbox: row.name.clone(),
        retention_days: days,
        cutoff,
        erased,
        held: held_expired(&store.db, row.id, cutoff).await?,
        expired,
    })
}

async fn purge_mailbox(
    store: &Store,
    index: Option<&IndexHandle>,
    row: &mailbox::Model,
    days: i32,
    cutoff: DateTime<Utc>,
    options: &PurgeOptions,
) -> Result<MailboxPurge, StoreError> {
    let batch = u64::try_from(options.batch_size.max(1)).unwrap_or(500);
    let mut erased = Erased::default();
    // Ids already tried this run: a conversation that stays (a hold placed meanwhile, new activity) is
    // not selected again, so the loop always ends.
    let mut skipped: Vec<Uuid> = Vec::new();
    let audit = AuditContext {
        actor: options.actor.clone(),
        action: "retention.purge".to_string(),
        target: format!("mailbox:{}", row.name),
        policy: serde_json::json!({ "retention_days": days, "cutoff": cutoff }),
    };
    let mut unlinks = Unlinks::default();
    loop {
        let mut query = conversation::Entity::find()
            .select_only()
            .column(conversation::Column::Id)
            .filter(expired_condition(row.id, cutoff))
            // Oldest first, in the order of the (mailbox_id, last_activity_at) index, so that the
            // query stops after one batch of rows instead of sorting every expired conversation
            // again for each batch.
            .order_by_asc(conversation::Column::LastActivityAt)
            .limit(batch);
        if !skipped.is_empty() {
            query = query.filter(conversation::Column::Id.is_not_in(skipped.iter().copied()));
        }
        let selecting = std::time::Instant::now();
        let ids: Vec<Uuid> = query.into_tuple().all(&store.db).await?;
        tracing::debug!(
            select_ms = selecting.elapsed().as_millis(),
            "purge batch chosen"
        );
        if ids.is_empty() {
            break;
        }
        let done = erase_conversations(
            store,
            index,
            &ids,
            expired_condition(row.id, cutoff),
            Some(&audit),
            &mut unlinks,
        )
        .await;
        let done = match done {
            Ok(done) => done,
            Err(err) => {
                // Whatever was committed is unlinked before the error is reported.
                let _ = unlinks.finish().await;
                return Err(err);
            }
        };
        if done.conversations < ids.len() as u64 {
            // Some changed under us; find which and leave them for the next run.
            let left: Vec<Uuid> = conversation::Entity::find()
                .select_only()
                .column(conversation::Column::Id)
                .filter(conversation::Column::Id.is_in(ids.iter().copied()))
                .into_tuple()
                .all(&store.db)
                .await?;
            skipped.extend(left);
        }
        erased += done;
        if !options.pause.is_zero() {
            tokio::time::sleep(options.pause).await;
        }
    }
    unlinks.finish().await?;
    let held = held_expired(&store.db, row.id, cutoff).await?;
    if erased.conversations == 0 && options.actor != "daemon" {
        // A run someone asked for is on record even when it found nothing.
        audit.record_empty(&store.db, held).await?;
    }
    if erased.conversations > 0 {
        info!(
            mailbox = %row.name,
            conversations = erased.conversations,
            messages = erased.messages,
            bytes = erased.bytes,
            retention_days = days,
            "purged expired conversations"
        );
    }
    Ok(MailboxPurge {
        mailbox: row.name.clone(),
        retention_days: days,
        cutoff,
        erased,
        held,
        expired: Vec::new(),
    })
}

/// After deleting: merge deleted documents out of the index files, and on SQLite checkpoint the WAL and
/// return free pages, so neither keeps old ciphertext or keys around. Failures are logged: the next run
/// (or start) does it again.
pub async fn finish(store: &Store, index: Option<&IndexHandle>) {
    let started = std::time::Instant::now();
    if let Some(index) = index {
        if let Err(err) = index.purge(Deletion::default()).await {
            warn!(error = %err, "merging deleted documents out of the index failed; retried at the next purge");
        }
        let merged = started.elapsed();
        // Belt and braces: whatever the index still holds of messages the store no longer has (a
        // document queued by ingest just before its conversation expired) goes too.
        if let Err(err) = super::remove_stale_documents(store, index).await {
            warn!(error = %err, "checking the index for removed messages failed");
        }
        tracing::debug!(
            merge_ms = merged.as_millis(),
            stale_ms = (started.elapsed() - merged).as_millis(),
            "index cleaned after purge"
        );
    }
    let compacting = std::time::Instant::now();
    if let Err(err) = compact(store).await {
        warn!(error = %err, "database compaction after purge failed; retried at the next purge");
    }
    tracing::debug!(
        compact_ms = compacting.elapsed().as_millis(),
        "database compacted after purge"
    );
}

/// SQLite: checkpoint the WAL into the main file and truncate it, then hand free pages back
/// (`incremental_vacuum`). Freed pages were already zeroed by `secure_delete`. PostgreSQL: nothing to do —
/// the data keys are gone, so what VACUUM has not reclaimed yet cannot be decrypted.
pub async fn compact(store: &Store) -> Result<(), StoreError> {
    if store.backend() == DbBackend::Sqlite {
        store
            .db
            .execute_unprepared("PRAGMA incremental_vacuum")
            .await?;
        store
            .db
            .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
            .await?;
    }
    Ok(())
}

/// The daemon's purge schedule: a run at start (finishing whatever an interrupted run left), then every
/// `interval`.
pub async fn schedule(
    store: Store,
    master: std::sync::Arc<MasterKey>,
    index: IndexHandle,
    interval: Duration,
    batch_size: usize,
    cancel: tokio_util::sync::CancellationToken,
) {
    let options = PurgeOptions {
        batch_size,
        ..PurgeOptions::default()
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            result = run(&store, &master, Some(&index), &options) => match result {
                Ok(report) => {
                    let total = report.total();
                    crate::metrics::record_purge(total.conversations, total.messages);
                }
                Err(err) => warn!(error = %err, "purge run failed; retrying at the next interval"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
