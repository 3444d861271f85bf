//! Batch processing shared by every source: prepare on blocking threads, then commit in one transaction.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use tracing::{debug, warn};
use uuid::Uuid;

use super::prepare::{self, PreparedMessage, STATUS_PARSED};
use super::{IngestError, RawMessage, SyncReport};
use crate::clock;
use crate::crypto::{KeyedHasher, MasterKey};
use crate::search::indexer::IndexHandle;
use crate::store::entities::message;
use crate::store::folders::{self, Checkpoint};
use crate::store::messages::{self, Stored};
use crate::store::{Store, StoreError};

/// Turns raw messages into stored ones. Cheap to clone; shared by every mailbox task.
#[derive(Clone)]
pub struct Ingestor {
    /// The store every batch is committed to.
    pub store: Store,
    master: Arc<MasterKey>,
    hasher: Arc<KeyedHasher>,
    /// Where committed messages are sent for indexing (none in offline tools without an index).
    index: Option<IndexHandle>,
    /// One lock per mailbox, held from the start of a batch's transaction to its commit: two passes over
    /// one mailbox in this process (the supervisor's and one asked for through the API) must not both
    /// see a message as new (under PostgreSQL's READ COMMITTED both would insert it). Shared by clones.
    commit_locks:
        Arc<std::sync::Mutex<std::collections::HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>>,
    /// Whether the store may hold legacy content hashes (read once, at the first batch).
    legacy_hashes: Arc<tokio::sync::OnceCell<bool>>,
}

impl Ingestor {
    /// An ingestor writing to `store` under `master`.
    pub fn new(store: Store, master: Arc<MasterKey>) -> Ingestor {
        let hasher = Arc::new(master.lookup_hasher());
        Ingestor {
            store,
            master,
            hasher,
            index: None,
            commit_locks: Arc::default(),
            legacy_hashes: Arc::default(),
        }
    }

    fn commit_lock(&self, mailbox_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .commit_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(mailbox_id).or_default())
    }

    /// Sends every committed message to this index.
    pub fn with_index(mut self, index: IndexHandle) -> Ingestor {
        self.index = Some(index);
        self
    }

    /// The index handle, if any.
    pub fn index(&self) -> Option<&IndexHandle> {
        self.index.as_ref()
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The keyed hasher for lookups.
    pub fn hasher(&self) -> &KeyedHasher {
        &self.hasher
    }

    /// Makes every blob file written so far durable (one `syncfs`).
    pub async fn make_durable(&self) -> Result<(), StoreError> {
        make_durable(self.store.blob_dir()).await
    }

    /// Parses and seals a batch on blocking threads, two halves in parallel (parse and AES scale with
    /// cores; the database writer does not, so it stays on one task). The blob files of the returned
    /// messages are written and durable (one `syncfs`), ready to be referred to by a commit.
    pub async fn prepare_batch(
        &self,
        batch: Vec<RawMessage>,
    ) -> Result<Vec<PreparedMessage>, IngestError> {
        let received_at = clock::now();
        let legacy_hashes = *self
            .legacy_hashes
            .get_or_try_init(|| messages::holds_legacy_content_hashes(&self.store.db))
            .await?;
        let mut halves = Vec::new();
        let mut batch = batch;
        // Halves of equal bytes, not equal counts: one message with a 2 MB attachment costs as much as
        // dozens of plain ones, and the batch is done only when its slower half is.
        let total: usize = batch.iter().map(|message| message.raw.len()).sum();
        let mut bytes = 0;
        let middle = batch
            .iter()
            .position(|message| {
                bytes += message.raw.len();
                bytes * 2 >= total
            })
            .map_or(0, |index| index + 1)
            .min(batch.len().saturating_sub(1));
        let second = batch.split_off(middle);
        for half in [batch, second] {
            if half.is_empty() {
                continue;
            }
            let hasher = Arc::clone(&self.hasher);
            let blob_dir = self.store.blob_dir().to_path_buf();
            halves.push(tokio::task::spawn_blocking(move || {
                let mut prepared = Vec::with_capacity(half.len());
                for raw in half {
                    match prepare::prepare(raw, &hasher, &blob_dir, received_at, legacy_hashes) {
                        Ok(message) => prepared.push(message),
                        Err(err) => {
                            remove_blobs(&blob_dir, prepared.iter().filter_map(|m| m.blob.file()));
                            return Err(err);
                        }
                    }
                }
                Ok(prepared)
            }));
        }
        let mut all = Vec::new();
        let mut failure = None;
        for half in halves {
            match half.await {
                Ok(Ok(prepared)) => all.extend(prepared),
                Ok(Err(err)) => failure = Some(err),
                Err(join) => failure = Some(IngestError::Internal(join.to_string())),
            }
        }
        if let Some(err) = failure {
            self.discard(&all);
            return Err(err);
        }
        // The blob files are made durable here, not at commit: in a pipelined sync this batch is
        // prepared while the one before it commits, so the flush no longer holds up the single
        // database writer (issue #3's stage timings: ~16 ms of its ~83 ms per 200-message batch).
        if all.iter().any(|message| message.blob.file().is_some())
            && let Err(err) = make_durable(self.store.blob_dir()).await
        {
            self.discard(&all);
            return Err(err.into());
        }
        Ok(all)
    }

    /// Commits a prepared batch and, in the same transaction, the folder checkpoint that covers it.
    pub async fn commit_batch(
        &self,
        mailbox_id: Uuid,
        prepared: Vec<PreparedMessage>,
        checkpoint: Option<(&str, Checkpoint)>,
    ) -> Result<SyncReport, IngestError> {
        let lock = self.commit_lock(mailbox_id);
        let guard = lock.lock().await;
        let outcome = self.try_commit(mailbox_id, &prepared, checkpoint).await;
        drop(guard);
        match outcome {
            Ok((report, duplicates, stored)) => {
                crate::metrics::record_ingest(report.stored, report.duplicates);
                let blob_dir = self.store.blob_dir();
                remove_blobs(blob_dir, duplicates.iter());
                self.index_committed(mailbox_id, prepared, stored).await;
                Ok(report)
            }
            Err(err) => {
                self.discard(&prepared);
                Err(err.into())
            }
        }
    }

    async fn try_commit(
        &self,
        mailbox_id: Uuid,
        prepared: &[PreparedMessage],
        checkpoint: Option<(&str, Checkpoint)>,
    ) -> Result<(SyncReport, Vec<String>, Vec<(Uuid, Uuid)>), StoreError> {
        // The blob files are durable already (`prepare_batch`): the rows may refer to them.
        let waited = std::time::Instant::now();
        let _turn = self.store.write_turn().await;
        let turn_wait = waited.elapsed();
        let transaction = crate::store::begin_write(&self.store.db).await?;
        let mut report = SyncReport::default();
        let mut duplicates = Vec::new();
        let mut stored = Vec::new();
        let storing = std::time::Instant::now();
        let outcomes =
            messages::store_batch(&transaction, &self.master, mailbox_id, prepared).await?;
        let store_ms = storing.elapsed().as_millis();
        for (message, outcome) in prepared.iter().zip(outcomes) {
            report.fetched += 1;
            match outcome {
                Stored::New { conversation_id } => {
                    stored.push((message.id, conversation_id));
                    report.stored += 1;
                    if message.status != STATUS_PARSED {
                        report.flagged += 1;
                    }
                }
                Stored::Duplicate => {
                    report.duplicates += 1;
                    duplicates.extend(message.blob.file().cloned());
                }
            }
        }
        if let Some((folder, checkpoint)) = checkpoint {
            folders::set(&transaction, mailbox_id, folder, checkpoint).await?;
        }
        let committing = std::time::Instant::now();
        transaction.commit().await?;
        debug!(
            store_ms,
            commit_ms = committing.elapsed().as_millis(),
            stored = report.stored,
            duplicates = report.duplicates,
            turn_wait_ms = turn_wait.as_millis(),
            transaction_ms = (waited.elapsed() - turn_wait).as_millis(),
            "batch committed"
        );
        Ok((report, duplicates, stored))
    }

    /// Hands the committed messages' documents to the index writer. Whatever does not make it (a crash
    /// before the index commit) is indexed again at the next start from the store.
    async fn index_committed(
        &self,
        mailbox_id: Uuid,
        prepared: Vec<PreparedMessage>,
        stored: Vec<(Uuid, Uuid)>,
    ) {
        let Some(index) = &self.index else { return };
        if stored.is_empty() {
            return;
        }
        let name = crate::store::entities::mailbox::Entity::find_by_id(mailbox_id)
            .one(&self.store.db)
            .await
            .ok()
            .flatten()
            .map(|row| row.name)
            .unwrap_or_default();
        let conversations: std::collections::HashMap<Uuid, Uuid> = stored.into_iter().collect();
        let docs: Vec<_> = prepared
            .into_iter()
            .filter_map(|message| {
                let conversation_id = *conversations.get(&message.id)?;
                let mut doc = message.search?;
                doc.conversation_id = conversation_id;
                doc.mailbox = name.clone();
                Some(doc)
            })
            .collect();
        let handing = std::time::Instant::now();
        index.add(docs).await;
        debug!(
            index_wait_ms = handing.elapsed().as_millis(),
            "documents handed to the indexer"
        );
    }

    fn discard(&self, prepared: &[PreparedMessage]) {
        remove_blobs(
            self.store.blob_dir(),
            prepared.iter().filter_map(|message| message.blob.file()),
        );
    }
}

/// Flushes every blob file written so far to disk with one `syncfs(2)` (contents and directory entries
/// alike), instead of two fsyncs per file: the rows that refer to them are committed only afterwards.
async fn make_durable(blob_dir: &Path) -> Result<(), StoreError> {
    let dir = blob_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let handle = std::fs::File::open(&dir)?;
        nix::unistd::syncfs(&handle).map_err(std::io::Error::from)
    })
    .await
    .map_err(|err| StoreError::Blob {
        path: blob_dir.to_path_buf(),
        message: err.to_string(),
    })?
    .map_err(|err| StoreError::Blob {
        path: blob_dir.to_path_buf(),
        message: format!("cannot flush blob files to disk: {err}"),
    })
}

fn remove_blobs<'a>(blob_dir: &Path, relative: impl Iterator<Item = &'a String>) {
    for path in relative {
        let full = blob_dir.join(path);
        if let Err(err) = std::fs::remove_file(&full)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %full.display(), error = %err, "cannot remove unused blob file");
        }
    }
}

/// Removes blob files no message row refers to: leftovers of a batch that was interrupted before its
/// commit. Only call while no batch is in flight (at startup, under the data directory lock).
pub async fn sweep_orphans(store: &Store) -> Result<usize, IngestError> {
    let referenced: HashSet<String> = message::Entity::find()
        .select_only()
        .column(message::Column::BlobPath)
        .filter(message::Column::BlobPath.is_not_null())
        .into_tuple::<Option<String>>()
        .all(&store.db)
        .await
        .map_err(StoreError::from)?
        .into_iter()
        .flatten()
        .collect();
    let blob_dir = store.blob_dir().to_path_buf();
    let removed = tokio::task::spawn_blocking(move || sweep_dir(&blob_dir, &referenced))
        .await
        .map_err(|err| IngestError::Internal(err.to_string()))?;
    Ok(removed)
}

fn sweep_dir(blob_dir: &Path, referenced: &HashSet<String>) -> usize {
    let mut removed = 0;
    let Ok(fanout) = std::fs::read_dir(blob_dir) else {
        return 0;
    };
    for bucket in fanout.flatten() {
        if bucket.file_type().is_ok_and(|kind| kind.is_file()) {
            // A temp file of a blob writer that never finished (crash before its rename).
            if std::fs::remove_file(bucket.path()).is_ok() {
                removed += 1;
            }
            continue;
        }
        let Ok(files) = std::fs::read_dir(bucket.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path: PathBuf = file.path();
            let relative = format!(
                "{}/{}",
                bucket.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            if !referenced.contains(&relative) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}
