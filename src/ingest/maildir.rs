//! A local Maildir as a mail source (read-only: files are never moved, renamed or deleted).
//!
//! A message's identity is the unique part of its file name (before `:2,` flags), which survives the
//! moves from `new/` to `cur/` and flag changes that mail clients make, hashed with the lookup key.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use super::commit::Ingestor;
use super::{IngestError, Origin, RawMessage, SyncReport};
use crate::config::IngestConfig;
use crate::store::messages;

/// How much of an oversize file is read to find its header block.
const HEADER_PROBE: u64 = 256 * 1024;

/// One Maildir mailbox.
pub struct MaildirSync {
    pub name: String,
    pub mailbox_id: Uuid,
    pub path: PathBuf,
    pub ingest: IngestConfig,
    pub ingestor: Ingestor,
}

struct Entry {
    path: PathBuf,
    key_hash: String,
    size: u64,
}

impl MaildirSync {
    /// Stores every file not stored yet.
    pub async fn sync_once(&self, cancel: &CancellationToken) -> Result<SyncReport, IngestError> {
        let known = messages::maildir_keys(&self.ingestor.store.db, self.mailbox_id).await?;
        let path = self.path.clone();
        let hasher = self.ingestor.clone();
        let mut entries = tokio::task::spawn_blocking(move || list(&path, &hasher))
            .await
            .map_err(|err| IngestError::Internal(err.to_string()))??;
        entries.retain(|entry| !known.contains(&entry.key_hash));
        let mut report = SyncReport {
            mailbox: self.name.clone(),
            ..SyncReport::default()
        };
        let batch_size = usize::try_from(self.ingest.batch_size)
            .unwrap_or(200)
            .max(1);
        let limit = self.ingest.max_message_bytes;
        let mut chunks = Vec::new();
        while !entries.is_empty() {
            let rest = entries.split_off(batch_size.min(entries.len()));
            chunks.push(std::mem::replace(&mut entries, rest));
        }
        // Read and prepare batch N+1 while batch N commits.
        let (prepared_tx, mut prepared_rx) = tokio::sync::mpsc::channel(1);
        let preparer = async move {
            for chunk in chunks {
                if cancel.is_cancelled() {
                    break;
                }
                let raws = tokio::task::spawn_blocking(move || read_all(chunk, limit))
                    .await
                    .map_err(|err| IngestError::Internal(err.to_string()))?;
                let prepared = self.ingestor.prepare_batch(raws).await?;
                if prepared_tx.send(prepared).await.is_err() {
                    break;
                }
            }
            Ok::<(), IngestError>(())
        };
        let committer = async {
            while let Some(prepared) = prepared_rx.recv().await {
                let batch = self
                    .ingestor
                    .commit_batch(self.mailbox_id, prepared, None)
                    .await?;
                report.add(&batch);
            }
            Ok::<(), IngestError>(())
        };
        let (prepared, committed) = tokio::join!(preparer, committer);
        committed?;
        prepared?;
        Ok(report)
    }

    /// Scans every poll interval until cancelled.
    pub async fn run(self, cancel: CancellationToken, interval: Duration) {
        loop {
            match self.sync_once(&cancel).await {
                Ok(report) => {
                    if report.fetched > 0 {
                        tracing::info!(mailbox = %self.name, stored = report.stored,
                            duplicates = report.duplicates, flagged = report.flagged, "maildir scanned");
                    }
                    let stored = i64::try_from(report.stored).unwrap_or(i64::MAX);
                    let db = &self.ingestor.store.db;
                    if let Err(err) =
                        crate::store::mailboxes::record_success(db, self.mailbox_id, stored).await
                    {
                        warn!(mailbox = %self.name, error = %err, "cannot record sync status");
                    }
                }
                Err(err) => {
                    warn!(mailbox = %self.name, error = %err.report(), "maildir scan failed");
                    let db = &self.ingestor.store.db;
                    let _ = crate::store::mailboxes::record_error(
                        db,
                        self.mailbox_id,
                        err.status(),
                        &err.report(),
                    )
                    .await;
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

fn list(root: &Path, ingestor: &Ingestor) -> Result<Vec<Entry>, IngestError> {
    let error = |message: String| IngestError::Maildir {
        path: root.display().to_string(),
        message,
    };
    if !root.join("cur").is_dir() && !root.join("new").is_dir() {
        return Err(error(
            "not a Maildir (no cur/ or new/ folder); check the mailbox path".to_string(),
        ));
    }
    let mut entries = Vec::new();
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        let Ok(reader) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in reader {
            let item = item.map_err(|err| error(format!("cannot list {sub}/: {err}")))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(metadata) = item.metadata() else {
                continue; // moved away between listing and stat: found again at the next scan
            };
            if !metadata.is_file() {
                continue;
            }
            let unique = name.split(':').next().unwrap_or(&name);
            let key_hash = ingestor
                .hasher()
                .hash("maildir", unique.as_bytes())
                .to_hex();
            entries.push(Entry {
                path: item.path(),
                key_hash,
                size: metadata.len(),
            });
        }
    }
    entries.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    entries.dedup_by(|a, b| a.key_hash == b.key_hash);
    Ok(entries)
}

fn read_all(entries: Vec<Entry>, limit: u64) -> Vec<RawMessage> {
    let mut raws = Vec::with_capacity(entries.len());
    for entry in entries {
        let origin = Origin::Maildir {
            key_hash: entry.key_hash,
        };
        if entry.size > limit {
            if let Ok(header) = read_header_block(&entry.path) {
                raws.push(RawMessage {
                    origin,
                    raw: header,
                    oversize_of: Some(entry.size),
                });
            }
            continue;
        }
        match std::fs::read(&entry.path) {
            Ok(raw) => raws.push(RawMessage {
                origin,
                raw,
                oversize_of: None,
            }),
            Err(err) => {
                warn!(path = %entry.path.display(), error = %err, "cannot read maildir file; will retry")
            }
        }
    }
    raws
}

fn read_header_block(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::new();
    std::fs::File::open(path)?
        .take(HEADER_PROBE)
        .read_to_end(&mut buffer)?;
    let end = find(&buffer, b"\r\n\r\n")
        .map(|at| at + 4)
        .or_else(|| find(&buffer, b"\n\n").map(|at| at + 2))
        .unwrap_or(buffer.len());
    buffer.truncate(end);
    Ok(buffer)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
