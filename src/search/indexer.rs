//! The one index writer and the glue between the store and the index. Ingest sends documents after each
//! committed batch; a dedicated thread owns the `IndexWriter` and commits after N documents or T seconds.
//! The store is the truth: at start every stored message the index lacks is indexed again, and a missing
//! or unreadable index is rebuilt from the store.
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::mpsc;
use tracing::{info, warn};
use uuid::Uuid;

use super::directory::EncryptedDirectory;
use super::{SearchDoc, SearchError, SearchIndex};
use crate::crypto::MasterKey;
use crate::store::entities::{conversation, mailbox, message};
use crate::store::read::{self, MessageView};
use crate::store::{Store, StoreError};

/// Commit after this many documents…
const COMMIT_DOCS: usize = 20_000;
/// …or this long after the first uncommitted one once no more work is waiting (a message arriving
/// alone is searchable within about a second)…
const COMMIT_AFTER: Duration = Duration::from_secs(1);
/// …or, while work keeps arriving (a bulk import), this long after the first uncommitted one. Each
/// commit makes a segment, and segments are merged again and again as they add up: committing every
/// second during an import of 50,000 messages made merging cost as much as indexing (issue #5). Larger
/// first segments mean fewer segments to merge and fewer merge levels later.
const BULK_COMMIT_AFTER: Duration = Duration::from_secs(10);
/// Memory of the index writer.
const WRITER_HEAP: usize = 64 * 1024 * 1024;
/// Operations queued for the writer thread. An ingest batch is one operation carrying up to a few
/// hundred documents with their plaintext bodies (megabytes); when tantivy falls behind a bulk
/// import, a deep queue only holds more of them in memory. A short one makes ingest wait for the
/// writer instead (bounded memory, issue #3).
const QUEUE_OPS: usize = 4;

/// An operation for the writer thread.
pub enum IndexOp {
    /// Add (or replace) documents.
    Add(Vec<SearchDoc>),
    /// Remove documents (effective at the next commit; their text stays in the segment files until a
    /// `Purge` merges it away).
    Delete(Deletion),
    /// Commit now and answer.
    Flush(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Delete, commit, and merge away every deleted document so its text is physically gone.
    Purge(Deletion, tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// Documents to remove: every message of some conversations, and some single messages.
#[derive(Debug, Default, Clone)]
pub struct Deletion {
    pub conversations: Vec<Uuid>,
    pub messages: Vec<Uuid>,
}

impl Deletion {
    fn apply(&self, writer: &mut super::IndexWriterHandle) -> usize {
        for id in &self.conversations {
            if let Err(err) = writer.delete_conversation(*id) {
                warn!(error = %err, "cannot delete a conversation from the index");
            }
        }
        for id in &self.messages {
            if let Err(err) = writer.delete_message(*id) {
                warn!(error = %err, "cannot delete a message from the index");
            }
        }
        self.conversations.len() + self.messages.len()
    }
}

/// Handle to the index: searching, and sending work to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct IndexHandle {
    /// The index, for searches.
    pub index: SearchIndex,
    /// Sends work to the writer thread; closed when every handle is dropped, which ends the thread.
    tx: mpsc::Sender<IndexOp>,
    /// Orders "read from the store, then send to the writer" sequences against deletions: a catch-up
    /// that read a conversation must send its documents before a purge of that conversation sends its
    /// deletion, or the deleted documents would come back.
    order: Arc<tokio::sync::Mutex<()>>,
}

/// Derives the index key from the master key.
pub fn index_key(master: &MasterKey) -> [u8; 32] {
    *master.derive_subkey("inboxd/v1/index").as_bytes()
}

/// Opens (or creates) the encrypted index; an unreadable one is moved aside and recreated empty.
pub fn open_index(
    dir: &Path,
    master: &MasterKey,
    cache_bytes: usize,
) -> Result<(SearchIndex, bool), SearchError> {
    std::fs::create_dir_all(dir).map_err(|err| SearchError::Index(err.to_string()))?;
    let open = || -> Result<SearchIndex, SearchError> {
        let directory = EncryptedDirectory::open(dir, index_key(master), cache_bytes)
            .map_err(|err| SearchError::Index(err.to_string()))?;
        SearchIndex::open_or_create(Box::new(directory))
    };
    match open() {
        Ok(index) => Ok((index, false)),
        Err(err) => {
            warn!(error = %err, "search index unreadable; rebuilding it from the store");
            std::fs::remove_dir_all(dir).map_err(|err| SearchError::Index(err.to_string()))?;
            std::fs::create_dir_all(dir).map_err(|err| SearchError::Index(err.to_string()))?;
            Ok((open()?, true))
        }
    }
}

/// Opens the index for reading only (the CLI's `search`, beside a running daemon): `None` when there is
/// none yet. Never creates, repairs or deletes anything — rebuilding is the daemon's and `reindex`'s job,
/// and a reader doing it would race them.
pub fn open_index_readonly(
    dir: &Path,
    master: &MasterKey,
    cache_bytes: usize,
) -> Result<Option<SearchIndex>, SearchError> {
    if !dir.join("meta.json").exists() {
        return Ok(None);
    }
    let directory = EncryptedDirectory::open(dir, index_key(master), cache_bytes)
        .map_err(|err| SearchError::Index(err.to_string()))?;
    SearchIndex::open_or_create(Box::new(directory)).map(Some)
}

impl IndexHandle {
    /// Starts the writer thread.
    pub fn start(
        index: SearchIndex,
    ) -> Result<(IndexHandle, std::thread::JoinHandle<()>), SearchError> {
        let mut writer = index.writer(WRITER_HEAP)?;
        let (tx, mut rx) = mpsc::channel::<IndexOp>(QUEUE_OPS);
        let thread = std::thread::Builder::new()
            .name("index-writer".to_string())
            .spawn(move || {
                let mut pending = 0usize;
                let mut since: Option<Instant> = None;
                loop {
                    let wait = since.map_or(Duration::from_secs(3600), |at| {
                        COMMIT_AFTER.saturating_sub(at.elapsed())
                    });
                    let op = if wait.is_zero() {
                        // A commit is due unless more work is already waiting: take it without
                        // waiting (see BULK_COMMIT_AFTER).
                        rx.try_recv().ok()
                    } else {
                        match recv_timeout(&mut rx, wait) {
                            Received::Op(op) => Some(op),
                            Received::Timeout => None,
                            Received::Closed => break,
                        }
                    };
                    match op {
                        Some(IndexOp::Add(docs)) => {
                            for doc in &docs {
                                if let Err(err) = writer.add(doc) {
                                    warn!(error = %err, "cannot index a message");
                                }
                            }
                            pending += docs.len();
                            since.get_or_insert_with(Instant::now);
                        }
                        Some(IndexOp::Delete(deletion)) => {
                            pending += deletion.apply(&mut writer);
                            since.get_or_insert_with(Instant::now);
                        }
                        Some(IndexOp::Flush(reply)) => {
                            let result = writer.commit().map(|_| ()).map_err(|e| e.to_string());
                            pending = 0;
                            since = None;
                            let _ = reply.send(result);
                            continue;
                        }
                        Some(IndexOp::Purge(deletion, reply)) => {
                            deletion.apply(&mut writer);
                            let result = writer
                                .commit()
                                .and_then(|_| writer.purge_physically())
                                .map_err(|e| e.to_string());
                            pending = 0;
                            since = None;
                            let _ = reply.send(result);
                            continue;
                        }
                        None => {}
                    }
                    let waited = since.map_or(Duration::ZERO, |at| at.elapsed());
                    let due = if rx.is_empty() {
                        waited >= COMMIT_AFTER
                    } else {
                        waited >= BULK_COMMIT_AFTER
                    };
                    if pending >= COMMIT_DOCS || (pending > 0 && due) {
                        if let Err(err) = writer.commit() {
                            warn!(error = %err, "index commit failed; the documents are indexed again at the next start");
                        }
                        pending = 0;
                        since = None;
                    }
                }
                if let Err(err) = writer.close() {
                    warn!(error = %err, "closing the index writer failed");
                }
            })
            .map_err(|err| SearchError::Index(err.to_string()))?;
        Ok((
            IndexHandle {
                index,
                tx,
                order: Arc::new(tokio::sync::Mutex::new(())),
            },
            thread,
        ))
    }

    /// Held while reading something from the store and sending it to the writer, or while deleting it
    /// from the store and sending the deletion, so the writer sees the two in the store's order.
    pub async fn ordered(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.order.lock().await
    }

    /// Sends documents to be indexed (waits when the writer is behind: bounded memory).
    pub async fn add(&self, docs: Vec<SearchDoc>) {
        if !docs.is_empty() && self.tx.send(IndexOp::Add(docs)).await.is_err() {
            warn!("index writer stopped; documents are indexed again at the next start");
        }
    }

    /// Removes documents (committed with the next batch; physically gone after [`IndexHandle::purge`]).
    pub async fn delete(&self, deletion: Deletion) {
        if self.tx.send(IndexOp::Delete(deletion)).await.is_err() {
            warn!("index writer stopped; stale documents are removed at the next start");
        }
    }

    /// Commits what was sent so far.
    pub async fn flush(&self) -> Result<(), SearchError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(IndexOp::Flush(reply))
            .await
            .map_err(|_| SearchError::Index("index writer stopped".to_string()))?;
        answer
            .await
            .map_err(|_| SearchError::Index("index writer stopped".to_string()))?
            .map_err(SearchError::Index)
    }

    /// Deletes documents, commits, and merges the text of every deleted document physically out of
    /// the index files.
    pub async fn purge(&self, deletion: Deletion) -> Result<(), SearchError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(IndexOp::Purge(deletion, reply))
            .await
            .map_err(|_| SearchError::Index("index writer stopped".to_string()))?;
        answer
            .await
            .map_err(|_| SearchError::Index("index writer stopped".to_string()))?
            .map_err(SearchError::Index)
    }
}

enum Received {
    Op(IndexOp),
    Timeout,
    Closed,
}

fn recv_timeout(rx: &mut mpsc::Receiver<IndexOp>, wait: Duration) -> Received {
    let deadline = Instant::now() + wait;
    loop {
        match rx.try_recv() {
            Ok(op) => return Received::Op(op),
            Err(mpsc::error::TryRecvError::Disconnected) => return Received::Closed,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if Instant::now() >= deadline {
            return Received::Timeout;
        }
        std::thread::sleep(Duration::from_millis(5).min(wait));
    }
}

/// The delivery status a message is searchable by: the latest of bounced / delivered / failed / sent.
fn delivery_status(view: &MessageView) -> Option<String> {
    view.events
        .iter()
        .rev()
        .map(|event| event.event.as_str())
        .find(|kind| {
            matches!(
                *kind,
                "bounced" | "delivered" | "failed" | "sent" | "delayed" | "deferred"
            )
        })
        .map(str::to_string)
}

/// A search document for a stored message, from its decrypted view.
pub fn doc_from_view(
    view: &MessageView,
    conversation_id: Uuid,
    mailbox: &str,
    state: &str,
    folder: Option<String>,
    attachment_text: String,
) -> SearchDoc {
    let people = |list: &[crate::parse::Address]| {
        list.iter()
            .map(|address| (address.name.clone(), address.email.clone()))
            .collect()
    };
    let date = view
        .headers
        .date
        .as_deref()
        .and_then(|date| chrono::DateTime::parse_from_rfc3339(date).ok())
        .map(|date| date.with_timezone(&chrono::Utc))
        .unwrap_or_else(crate::clock::now);
    SearchDoc {
        message_id: view.id,
        conversation_id,
        mailbox: mailbox.to_string(),
        folder,
        subject: view.headers.subject.clone().unwrap_or_default(),
        body: view.body.text.clone(),
        from: people(&view.headers.from),
        to: people(&view.headers.to),
        cc: people(&view.headers.cc),
        attachment_names: view
            .attachments
            .iter()
            .filter_map(|attachment| attachment.meta.filename.clone())
            .collect(),
        attachment_text,
        date,
        has_attachment: view.attachments.iter().any(|a| !a.meta.inline),
        state: state.to_string(),
        delivery_status: delivery_status(view),
    }
}

/// Text of text-like attachments (bounded), extracted from the raw message.
pub fn attachment_text(raw: &[u8], view: &MessageView) -> String {
    let mut text = String::new();
    for attachment in &view.attachments {
        let kind = attachment.meta.content_type.to_ascii_lowercase();
        let textual = kind.starts_with("text/") || kind.contains("json") || kind.contains("xml");
        if !textual || attachment.size > 1024 * 1024 {
            continue;
        }
        let index = usize::try_from(attachment.part_index).unwrap_or(usize::MAX);
        if let Some(bytes) = crate::parse::extract_part(raw, index) {
            text.push_str(&String::from_utf8_lossy(&bytes));
            text.push('\n');
        }
    }
    text
}

/// Documents for every message of one conversation, read back from the store.
pub async fn docs_for_conversation(
    store: &Store,
    master: &MasterKey,
    conversation_id: Uuid,
) -> Result<Vec<SearchDoc>, StoreError> {
    let Some(row) = conversation::Entity::find_by_id(conversation_id)
        .one(&store.db)
        .await?
    else {
        return Ok(Vec::new());
    };
    let mailbox_name = mailbox::Entity::find_by_id(row.mailbox_id)
        .one(&store.db)
        .await?
        .map(|m| m.name)
        .unwrap_or_default();
    let view = read::conversation(&store.db, master, conversation_id).await?;
    let folders: std::collections::HashMap<Uuid, Option<String>> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::Folder)
        .filter(message::Column::ConversationId.eq(conversation_id))
        .into_tuple::<(Uuid, Option<String>)>()
        .all(&store.db)
        .await?
        .into_iter()
        .collect();
    let mut docs = Vec::with_capacity(view.messages.len());
    for message_view in &view.messages {
        let text = if message_view.attachments.is_empty() {
            String::new()
        } else {
            match read::raw_message(&store.db, master, store.blob_dir(), message_view.id).await {
                Ok(raw) => attachment_text(&raw, message_view),
                Err(_) => String::new(),
            }
        };
        let folder = folders
            .get(&message_view.id)
            .cloned()
            .flatten()
            .filter(|folder| !folder.starts_with("maildir:"));
        docs.push(doc_from_view(
            message_view,
            conversation_id,
            &mailbox_name,
            &row.state,
            folder,
            text,
        ));
    }
    Ok(docs)
}

/// Indexes every stored message the index lacks (after a crash, or into a new index). Returns how many
/// messages were sent to the writer; `progress` is called with (done, total).
pub async fn catch_up(
    store: &Store,
    master: &Arc<MasterKey>,
    handle: &IndexHandle,
    cancel: Option<&tokio_util::sync::CancellationToken>,
    mut progress: impl FnMut(usize, usize),
) -> Result<usize, StoreError> {
    let indexed = handle.index.indexed_message_ids().unwrap_or_default();
    let rows: Vec<(Uuid, Uuid)> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::ConversationId)
        .into_tuple()
        .all(&store.db)
        .await?;
    let mut conversations: Vec<Uuid> = rows
        .iter()
        .filter(|(id, _)| !indexed.contains(id))
        .map(|(_, conversation)| *conversation)
        .collect();
    conversations.sort();
    conversations.dedup();
    let missing = rows.iter().filter(|(id, _)| !indexed.contains(id)).count();
    if missing == 0 {
        return Ok(0);
    }
    info!(
        messages = missing,
        conversations = conversations.len(),
        "indexing messages the index lacks"
    );
    let total = conversations.len();
    for (done, conversation_id) in conversations.into_iter().enumerate() {
        if cancel.is_some_and(tokio_util::sync::CancellationToken::is_cancelled) {
            break;
        }
        // A conversation purged or merged meanwhile has nothing left to index.
        let guard = handle.ordered().await;
        let docs = match docs_for_conversation(store, master, conversation_id).await {
            Ok(docs) => docs,
            Err(StoreError::NotFound(_)) => continue,
            Err(err) => return Err(err),
        };
        handle.add(docs).await;
        drop(guard);
        progress(done + 1, total);
    }
    Ok(missing)
}

/// Indexes the conversations of replies stored since `since` by other processes (`inboxd reply`): the
/// daemon indexes what it ingests itself as it commits, so only these need looking for, and the periodic
/// pass stays cheap however large the store grows.
pub async fn index_replies_since(
    store: &Store,
    master: &MasterKey,
    handle: &IndexHandle,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<usize, StoreError> {
    let mut conversations: Vec<Uuid> = message::Entity::find()
        .select_only()
        .column(message::Column::ConversationId)
        .filter(message::Column::Direction.eq(crate::store::messages::OUTBOUND))
        .filter(message::Column::CreatedAt.gte(since))
        .into_tuple()
        .all(&store.db)
        .await?;
    conversations.sort();
    conversations.dedup();
    for conversation_id in &conversations {
        let _guard = handle.ordered().await;
        let docs = match docs_for_conversation(store, master, *conversation_id).await {
            Ok(docs) => docs,
            Err(StoreError::NotFound(_)) => continue,
            Err(err) => return Err(err),
        };
        handle.add(docs).await;
    }
    Ok(conversations.len())
}

/// Whether the database holds any message (used to decide whether an empty index needs a rebuild).
pub async fn store_has_messages(db: &impl ConnectionTrait) -> Result<bool, StoreError> {
    Ok(message::Entity::find()
        .limit(1)
        .all(db)
        .await?
        .into_iter()
        .next()
        .is_some())
}
