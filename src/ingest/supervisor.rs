//! Runs one task per connected mailbox and keeps the set in line with the config file and the admin
//! mailboxes in the database: adding, changing or removing one takes effect without a restart.
//! Mailboxes are independent: one that fails backs off on its own and never delays the others.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::commit::Ingestor;
use super::imap_sync::ImapSync;
use super::maildir::MaildirSync;
use crate::config::{IngestConfig, MailboxConfig, MailboxSource};
use crate::store::mailboxes::{self, ORIGIN_ADMIN};

/// How often the database is checked for admin mailbox changes.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// Shared view of the configured mailboxes; replaced on reload (SIGHUP).
#[derive(Clone)]
pub struct MailboxSet {
    /// Mailboxes from the config file, replaced as a whole on reload.
    pub from_config: Arc<RwLock<Vec<MailboxConfig>>>,
    /// Ingest tuning, replaced on reload.
    pub ingest: Arc<RwLock<IngestConfig>>,
    /// Notified after a reload so the supervisor reconciles at once.
    pub changed: Arc<Notify>,
}

/// Capped exponential backoff with jitter: between half and all of `base * 2^failures`.
pub fn backoff_delay(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1);
    let exponential = base.saturating_mul(2u32.saturating_pow(failures.min(20)));
    let capped = exponential.min(max);
    let millis = u64::try_from(capped.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis))
}

struct Running {
    config: MailboxConfig,
    cancel: CancellationToken,
}

/// The ingest supervisor task.
pub struct Supervisor {
    pub ingestor: Ingestor,
    pub mailboxes: MailboxSet,
    pub tracker: TaskTracker,
    /// Beaten on every turn of the reconcile loop; read by the daemon's main loop.
    pub heartbeat: crate::service::Heartbeat,
}

impl Supervisor {
    /// Reconciles until cancelled; each mailbox task gets a child of `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut running: HashMap<String, Running> = HashMap::new();
        loop {
            self.heartbeat.beat();
            match self.desired().await {
                Ok(desired) => self.reconcile(&mut running, desired, &cancel).await,
                Err(err) => warn!(error = %err, "cannot read mailboxes; keeping the running set"),
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.mailboxes.changed.notified() => {}
                () = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
        }
        info!(mailboxes = running.len(), "ingest supervisor stopping");
    }

    async fn desired(&self) -> Result<Vec<MailboxConfig>, crate::store::StoreError> {
        let mut desired: Vec<MailboxConfig> = self.mailboxes.from_config.read().await.clone();
        for row in mailboxes::list(&self.ingestor.store.db).await? {
            if row.origin != ORIGIN_ADMIN || desired.iter().any(|m| m.name == row.name) {
                continue;
            }
            match mailboxes::admin_config(self.ingestor.master(), &row) {
                Ok(config) => desired.push(config),
                Err(err) => warn!(mailbox = %row.name, error = %err, "cannot read stored mailbox"),
            }
        }
        desired.retain(|mailbox| mailbox.enabled);
        Ok(desired)
    }

    async fn reconcile(
        &self,
        running: &mut HashMap<String, Running>,
        desired: Vec<MailboxConfig>,
        cancel: &CancellationToken,
    ) {
        running.retain(|name, task| {
            let keep = desired.iter().any(|mailbox| mailbox == &task.config);
            if !keep {
                info!(mailbox = %name, "mailbox removed or changed; stopping its task");
                task.cancel.cancel();
            }
            keep
        });
        for mailbox in desired {
            if running.contains_key(&mailbox.name) {
                continue;
            }
            let child = cancel.child_token();
            match self.start(&mailbox, child.clone()).await {
                Ok(()) => {
                    running.insert(
                        mailbox.name.clone(),
                        Running {
                            config: mailbox,
                            cancel: child,
                        },
                    );
                }
                Err(err) => warn!(mailbox = %mailbox.name, error = %err, "cannot start mailbox"),
            }
        }
    }

    async fn start(
        &self,
        mailbox: &MailboxConfig,
        cancel: CancellationToken,
    ) -> Result<(), crate::store::StoreError> {
        let db = &self.ingestor.store.db;
        let mailbox_id = match mailboxes::by_name(db, &mailbox.name).await? {
            Some(row) if row.origin == ORIGIN_ADMIN => row.id,
            _ => mailboxes::upsert_from_config(db, mailbox).await?,
        };
        let ingest = self.mailboxes.ingest.read().await.clone();
        info!(mailbox = %mailbox.name, "starting mailbox");
        match &mailbox.source {
            MailboxSource::Maildir { path } => {
                let sync = MaildirSync {
                    name: mailbox.name.clone(),
                    mailbox_id,
                    path: path.clone(),
                    ingest: ingest.clone(),
                    ingestor: self.ingestor.clone(),
                };
                self.tracker
                    .spawn(sync.run(cancel, ingest.poll_interval.min(Duration::from_secs(10))));
            }
            MailboxSource::Imap(account) => {
                let sync = ImapSync {
                    name: mailbox.name.clone(),
                    mailbox_id,
                    account: account.clone(),
                    ingest,
                    ingestor: self.ingestor.clone(),
                };
                self.tracker.spawn(run_imap(sync, cancel));
            }
        }
        Ok(())
    }
}

/// Keeps one IMAP mailbox connected, backing off after failures.
async fn run_imap(sync: ImapSync, cancel: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let result = sync.session(&cancel, &mut failures).await;
        if cancel.is_cancelled() {
            return;
        }
        let err = match result {
            Ok(()) => return,
            Err(err) => err,
        };
        failures = failures.saturating_add(1);
        let delay = backoff_delay(failures, sync.ingest.max_backoff);
        warn!(mailbox = %sync.name, error = %err.report(), retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "mailbox sync failed");
        if let Err(store_err) = mailboxes::record_error(
            &sync.ingestor.store.db,
            sync.mailbox_id,
            err.status(),
            &err.report(),
        )
        .await
        {
            warn!(mailbox = %sync.name, error = %store_err, "cannot record mailbox error");
        }
        if err.needs_reauthorization() {
            // Retrying cannot help and would only hammer the provider: wait for an admin's
            // `mailbox authorize`, which marks the stored grant authorized again.
            if !wait_for_reauthorization(&sync, &cancel).await {
                return;
            }
            info!(mailbox = %sync.name, "mailbox re-authorized; reconnecting");
            failures = 0;
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// How often a mailbox waiting for re-authorization looks at its stored grant (a database read only).
const REAUTHORIZATION_CHECK: Duration = Duration::from_secs(2);

/// Waits until the mailbox's OAuth grant is usable again; false when cancelled first.
async fn wait_for_reauthorization(sync: &ImapSync, cancel: &CancellationToken) -> bool {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(REAUTHORIZATION_CHECK) => {}
        }
        match crate::store::oauth::get(&sync.ingestor.store.db, sync.mailbox_id).await {
            Ok(Some(row)) if row.state == crate::store::oauth::STATE_AUTHORIZED => return true,
            Ok(_) => {}
            Err(err) => warn!(mailbox = %sync.name, error = %err, "cannot read the oauth grant"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let max = Duration::from_secs(300);
        for failures in 0..30 {
            let delay = backoff_delay(failures, max);
            let full = Duration::from_secs(1)
                .saturating_mul(2u32.saturating_pow(failures.min(20)))
                .min(max);
            assert!(delay <= full, "{failures}: {delay:?} > {full:?}");
            assert!(
                delay >= full / 2,
                "{failures}: {delay:?} < half of {full:?}"
            );
        }
        let samples: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff_delay(8, max)).collect();
        assert!(samples.len() > 1, "jitter must vary the delay");
    }
}
