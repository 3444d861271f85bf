//! Sync of one IMAP mailbox: per folder, fetch every UID above the checkpoint in batches, pipelined with
//! preparing and committing; then wait for new mail with IDLE (RFC 2177) or poll.
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::commit::Ingestor;
use super::{IngestError, Origin, RawMessage, SyncReport};
use crate::config::{
    AfterFetch, ImapMailbox, IngestConfig, PasswordSource, Secret, TlsSetting, read_secret_file,
};
use crate::imap::{FetchedMessage, IdleOutcome, ImapClient, ImapSettings, TlsMode};
use crate::oauth::sasl::AuthMechanism;
use crate::store::folders::{self, Checkpoint};

/// IDLE is re-issued well before the 29 minutes after which servers may drop it (RFC 2177).
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);

/// UIDs per `UID FETCH RFC822.SIZE` request.
const SIZE_QUERY_CHUNK: usize = 2000;

/// Bytes of message data per batch: with two batches in flight (fetching and committing) and one copy
/// of each message, memory stays bounded whatever the mailbox holds.
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Groups (uid, size) into batches of at most `count` messages and about [`BATCH_BYTES`]; oversize
/// messages count only as their headers. A single message bigger than the budget gets its own batch.
pub fn plan_batches(sized: &[(u32, u64)], count: u32, max_message: u64) -> Vec<Vec<(u32, u64)>> {
    let count = usize::try_from(count).unwrap_or(200).max(1);
    let mut batches = Vec::new();
    let mut current: Vec<(u32, u64)> = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in sized {
        let weight = if size > max_message { 64 * 1024 } else { size };
        if !current.is_empty() && (current.len() >= count || bytes + weight > BATCH_BYTES) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push((uid, size));
        bytes += weight;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// One IMAP mailbox's sync engine.
pub struct ImapSync {
    pub name: String,
    pub mailbox_id: Uuid,
    pub account: ImapMailbox,
    pub ingest: IngestConfig,
    pub ingestor: Ingestor,
}

/// A fetched batch on its way from the fetcher to the committer.
struct Batch {
    messages: Vec<RawMessage>,
    uids: Vec<u32>,
    checkpoint: Checkpoint,
}

/// Builds the client settings, reading the password from its file or variable now so a rotated secret is
/// picked up at the next connection. For an OAuth account the password is empty: [`connect_account`]
/// puts the access token in.
pub fn client_settings(
    name: &str,
    account: &ImapMailbox,
    timeout: Duration,
) -> Result<ImapSettings, IngestError> {
    let key = format!("mailbox `{name}` password");
    let (password, auth) = match &account.password {
        PasswordSource::File(path) => (read_secret_file(&key, path)?, AuthMechanism::Password),
        PasswordSource::Env(variable) => (
            crate::config::read_secret_env(&key, variable)?,
            AuthMechanism::Password,
        ),
        PasswordSource::Stored(secret) => (secret.clone(), AuthMechanism::Password),
        PasswordSource::OAuth(oauth) => (Secret::new(String::new()), oauth.mechanism.into()),
    };
    Ok(ImapSettings {
        auth,
        host: account.host.clone(),
        port: account.port,
        tls: match (account.insecure, account.tls) {
            (true, _) => TlsMode::Plain,
            (false, TlsSetting::Implicit) => TlsMode::Implicit,
            (false, TlsSetting::StartTls) => TlsMode::StartTls,
        },
        username: account.username.clone(),
        password: password.expose().to_string(),
        ca_file: account.ca_file.clone(),
        insecure: account.insecure,
        timeout,
    })
}

/// What an OAuth account needs to get its access token.
pub struct OAuthContext<'a> {
    pub db: &'a sea_orm::DatabaseConnection,
    pub key: &'a crate::crypto::MasterKey,
    pub mailbox_id: Uuid,
}

/// Connects and logs in with the account's password, or with an OAuth2 access token: the cached one, or
/// a fresh one when it is about to expire; when the server refuses it (revoked or expired early), once
/// more with a newly refreshed token.
pub async fn connect_account(
    name: &str,
    account: &ImapMailbox,
    timeout: Duration,
    oauth_context: Option<&OAuthContext<'_>>,
) -> Result<ImapClient, IngestError> {
    let mut settings = client_settings(name, account, timeout)?;
    let PasswordSource::OAuth(oauth) = &account.password else {
        return Ok(ImapClient::connect(&settings).await?);
    };
    let Some(context) = oauth_context else {
        return Err(IngestError::Internal(
            "an oauth mailbox needs its stored tokens".to_string(),
        ));
    };
    let source = crate::oauth::TokenSource {
        db: context.db,
        key: context.key,
        mailbox_id: context.mailbox_id,
        mailbox: name,
        oauth,
    };
    let token = source.access_token(None).await?;
    settings.password = token.expose().to_string();
    match ImapClient::connect(&settings).await {
        Err(err) if err.is_auth() => {
            debug!(mailbox = %name, "access token refused; refreshing and retrying once");
            let fresh = source.access_token(Some(&token)).await?;
            settings.password = fresh.expose().to_string();
            Ok(ImapClient::connect(&settings).await?)
        }
        other => Ok(other?),
    }
}

impl ImapSync {
    /// Connects and logs in.
    pub async fn connect(&self) -> Result<ImapClient, IngestError> {
        let context = OAuthContext {
            db: &self.ingestor.store.db,
            key: self.ingestor.master(),
            mailbox_id: self.mailbox_id,
        };
        connect_account(
            &self.name,
            &self.account,
            self.ingest.network_timeout,
            Some(&context),
        )
        .await
    }

    /// One pass over every folder, then logout.
    pub async fn sync_once(&self, cancel: &CancellationToken) -> Result<SyncReport, IngestError> {
        let mut client = self.connect().await?;
        let report = self.sync_all(&mut client, cancel).await;
        client.logout().await;
        report
    }

    async fn sync_all(
        &self,
        client: &mut ImapClient,
        cancel: &CancellationToken,
    ) -> Result<SyncReport, IngestError> {
        let mut report = SyncReport {
            mailbox: self.name.clone(),
            ..SyncReport::default()
        };
        for folder in &self.account.folders {
            let folder_report = self.sync_folder(client, folder, cancel).await?;
            report.add(&folder_report);
        }
        Ok(report)
    }

    /// A connected session: sync, then wait for news, until cancelled or the connection fails.
    /// `failures` is reset to 0 after every successful pass, so backoff restarts from its base.
    pub async fn session(
        &self,
        cancel: &CancellationToken,
        failures: &mut u32,
    ) -> Result<(), IngestError> {
        let mut client = self.connect().await?;
        info!(mailbox = %self.name, "connected");
        loop {
            let report = self.sync_all(&mut client, cancel).await?;
            *failures = 0;
            crate::store::mailboxes::record_success(
                &self.ingestor.store.db,
                self.mailbox_id,
                i64::try_from(report.stored).unwrap_or(i64::MAX),
            )
            .await?;
            if report.fetched > 0 {
                info!(mailbox = %self.name, fetched = report.fetched, stored = report.stored,
                    duplicates = report.duplicates, flagged = report.flagged, "sync pass done");
            }
            if cancel.is_cancelled() {
                client.logout().await;
                return Ok(());
            }
            let can_idle =
                self.ingest.idle && client.supports_idle() && self.account.folders.len() == 1;
            if can_idle {
                match client.idle_wait(IDLE_RENEW, cancel).await? {
                    IdleOutcome::Cancelled => {
                        client.logout().await;
                        return Ok(());
                    }
                    IdleOutcome::NewData | IdleOutcome::Timeout => continue,
                }
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    client.logout().await;
                    return Ok(());
                }
                () = tokio::time::sleep(self.ingest.poll_interval) => {}
            }
        }
    }

    /// Fetches everything above the folder's checkpoint. A changed UIDVALIDITY restarts the folder from
    /// UID 1; messages already stored are recognised by their keyed content hash and not stored again.
    async fn sync_folder(
        &self,
        client: &mut ImapClient,
        folder: &str,
        cancel: &CancellationToken,
    ) -> Result<SyncReport, IngestError> {
        let status = client.select(folder).await?;
        let db = &self.ingestor.store.db;
        let stored = folders::get(db, self.mailbox_id, folder).await?;
        let start = match stored {
            Some(checkpoint) if checkpoint.uid_validity == status.uid_validity => {
                checkpoint.last_uid
            }
            Some(checkpoint) => {
                warn!(mailbox = %self.name, folder, old = checkpoint.uid_validity,
                    new = status.uid_validity, "uidvalidity changed; resyncing folder");
                0
            }
            None => 0,
        };
        let uids = client.uids_after(start).await?;
        if uids.is_empty() {
            if stored.is_none_or(|checkpoint| checkpoint.uid_validity != status.uid_validity) {
                let checkpoint = Checkpoint {
                    uid_validity: status.uid_validity,
                    last_uid: start,
                };
                folders::set(db, self.mailbox_id, folder, checkpoint).await?;
            }
            return Ok(SyncReport::default());
        }
        debug!(mailbox = %self.name, folder, count = uids.len(), "new messages");
        // One fetched batch waits while the previous one is prepared and the one before commits:
        // enough to keep the server streaming, and one batch less of raw mail in memory.
        let (batches_tx, batches_rx) = mpsc::channel::<Batch>(1);
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Vec<u32>>();
        let fetcher = self.fetch_all(
            client,
            folder,
            status.uid_validity,
            uids,
            batches_tx,
            done_rx,
            cancel,
        );
        let committer = self.commit_all(folder, batches_rx, done_tx);
        let (fetched, report) = tokio::join!(fetcher, committer);
        let report = report?;
        fetched?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_all(
        &self,
        client: &mut ImapClient,
        folder: &str,
        uid_validity: u32,
        uids: Vec<u32>,
        batches: mpsc::Sender<Batch>,
        mut committed: mpsc::UnboundedReceiver<Vec<u32>>,
        cancel: &CancellationToken,
    ) -> Result<(), IngestError> {
        let mut sized = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(SIZE_QUERY_CHUNK) {
            sized.extend(client.sizes(chunk).await?);
        }
        let mut sent = 0usize;
        for chunk in plan_batches(
            &sized,
            self.ingest.batch_size,
            self.ingest.max_message_bytes,
        ) {
            if cancel.is_cancelled() {
                break;
            }
            self.apply_after_fetch(client, &mut committed, false)
                .await?;
            let fetching = std::time::Instant::now();
            let messages = self
                .fetch_chunk(client, folder, uid_validity, &chunk)
                .await?;
            let fetch_ms = fetching.elapsed().as_millis();
            let last_uid = chunk.iter().map(|(uid, _)| *uid).max().unwrap_or(0);
            let batch = Batch {
                messages,
                uids: chunk.iter().map(|(uid, _)| *uid).collect(),
                checkpoint: Checkpoint {
                    uid_validity,
                    last_uid,
                },
            };
            let handing = std::time::Instant::now();
            if batches.send(batch).await.is_err() {
                break; // the committer failed; its error is reported by the caller
            }
            // Stage timings (debug): a long hand-over wait means the fetcher waits for prepare.
            debug!(
                messages = chunk.len(),
                fetch_ms,
                handover_wait_ms = handing.elapsed().as_millis(),
                "batch fetched"
            );
            sent += 1;
        }
        drop(batches);
        if self.account.after_fetch != AfterFetch::Leave && sent > 0 {
            self.apply_after_fetch(client, &mut committed, true).await?;
        }
        Ok(())
    }

    /// Marks or moves server copies once their batch is committed (never before: a crash in between
    /// must leave the message where the next sync finds it).
    async fn apply_after_fetch(
        &self,
        client: &mut ImapClient,
        committed: &mut mpsc::UnboundedReceiver<Vec<u32>>,
        wait_for_all: bool,
    ) -> Result<(), IngestError> {
        if self.account.after_fetch == AfterFetch::Leave {
            return Ok(());
        }
        loop {
            let uids = if wait_for_all {
                match committed.recv().await {
                    Some(uids) => uids,
                    None => return Ok(()),
                }
            } else {
                match committed.try_recv() {
                    Ok(uids) => uids,
                    Err(_) => return Ok(()),
                }
            };
            match &self.account.after_fetch {
                AfterFetch::Leave => {}
                AfterFetch::MarkSeen => client.mark_seen(&uids).await?,
                AfterFetch::MoveTo(target) => client.move_to(&uids, target).await?,
            }
        }
    }

    async fn fetch_chunk(
        &self,
        client: &mut ImapClient,
        folder: &str,
        uid_validity: u32,
        sizes: &[(u32, u64)],
    ) -> Result<Vec<RawMessage>, IngestError> {
        let limit = self.ingest.max_message_bytes;
        let oversize: Vec<(u32, u64)> = sizes
            .iter()
            .copied()
            .filter(|(_, size)| *size > limit)
            .collect();
        let normal: Vec<u32> = sizes
            .iter()
            .filter(|(_, size)| *size <= limit)
            .map(|(uid, _)| *uid)
            .collect();
        let origin = |uid: u32| Origin::Imap {
            folder: folder.to_string(),
            uid_validity,
            uid,
        };
        let mut messages: Vec<RawMessage> = Vec::with_capacity(sizes.len());
        if !normal.is_empty() {
            for FetchedMessage { uid, raw } in client.fetch_batch(&normal).await? {
                messages.push(RawMessage {
                    origin: origin(uid),
                    raw,
                    oversize_of: None,
                });
            }
        }
        if !oversize.is_empty() {
            let uids: Vec<u32> = oversize.iter().map(|(uid, _)| *uid).collect();
            for FetchedMessage { uid, raw } in client.fetch_headers(&uids).await? {
                let size = oversize
                    .iter()
                    .find(|(candidate, _)| *candidate == uid)
                    .map_or(0, |(_, size)| *size);
                warn!(mailbox = %self.name, uid, size, limit, "message over the size cap; storing headers only");
                messages.push(RawMessage {
                    origin: origin(uid),
                    raw,
                    oversize_of: Some(size),
                });
            }
        }
        messages.sort_by_key(|message| match message.origin {
            Origin::Imap { uid, .. } => uid,
            _ => 0,
        });
        Ok(messages)
    }

    /// Prepares batch N+1 (parse, seal, blob files; on blocking threads) while batch N commits, so the
    /// CPU work and the database writer overlap.
    async fn commit_all(
        &self,
        folder: &str,
        mut batches: mpsc::Receiver<Batch>,
        committed: mpsc::UnboundedSender<Vec<u32>>,
    ) -> Result<SyncReport, IngestError> {
        let (prepared_tx, mut prepared_rx) = mpsc::channel(1);
        // Every batch that was fetched is committed, even during shutdown: the fetcher stops sending
        // new ones when cancelled, and what is in flight is finished rather than thrown away.
        let preparer = async move {
            let mut idle = std::time::Instant::now();
            while let Some(batch) = batches.recv().await {
                let fetch_wait_ms = idle.elapsed().as_millis();
                let preparing = std::time::Instant::now();
                let prepared = self.ingestor.prepare_batch(batch.messages).await?;
                let prepare_ms = preparing.elapsed().as_millis();
                let handing = std::time::Instant::now();
                if prepared_tx
                    .send((prepared, batch.uids, batch.checkpoint))
                    .await
                    .is_err()
                {
                    break; // the committer failed; its error is reported
                }
                // Stage timings (debug): waits for the fetcher before, for the committer after.
                debug!(
                    fetch_wait_ms,
                    prepare_ms,
                    commit_wait_ms = handing.elapsed().as_millis(),
                    "batch prepared"
                );
                idle = std::time::Instant::now();
            }
            Ok::<(), IngestError>(())
        };
        let committer = async {
            let mut report = SyncReport::default();
            let mut idle = std::time::Instant::now();
            while let Some((prepared, uids, checkpoint)) = prepared_rx.recv().await {
                let prepare_wait_ms = idle.elapsed().as_millis();
                let committing = std::time::Instant::now();
                let batch_report = self
                    .ingestor
                    .commit_batch(self.mailbox_id, prepared, Some((folder, checkpoint)))
                    .await?;
                // Stage timings (debug): commit_ms includes handing the documents to the indexer.
                debug!(
                    prepare_wait_ms,
                    commit_ms = committing.elapsed().as_millis(),
                    "batch through"
                );
                idle = std::time::Instant::now();
                report.add(&batch_report);
                let _ = committed.send(uids);
            }
            Ok::<SyncReport, IngestError>(report)
        };
        let (prepared, report) = tokio::join!(preparer, committer);
        let report = report?;
        prepared?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::plan_batches;

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let small: Vec<(u32, u64)> = (1..=10).map(|uid| (uid, 1000)).collect();
        let batches = plan_batches(&small, 4, 1 << 30);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );

        let big: Vec<(u32, u64)> = (1..=5).map(|uid| (uid, 20 * 1024 * 1024)).collect();
        let batches = plan_batches(&big, 100, 1 << 30);
        assert_eq!(batches.len(), 5, "20 MB messages go one per 32 MB batch");

        let oversize: Vec<(u32, u64)> = (1..=10).map(|uid| (uid, 100 * 1024 * 1024)).collect();
        let batches = plan_batches(&oversize, 100, 50 * 1024 * 1024);
        assert_eq!(
            batches.len(),
            1,
            "oversize messages weigh only their headers"
        );
        let all: Vec<u32> = plan_batches(&small, 3, 1 << 30)
            .concat()
            .iter()
            .map(|(uid, _)| *uid)
            .collect();
        assert_eq!(
            all,
            (1..=10).collect::<Vec<_>>(),
            "order kept, nothing lost"
        );
    }
}
