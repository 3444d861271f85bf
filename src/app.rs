//! Wiring: open the data directory, key and store; run the daemon's tasks under one shutdown token.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sea_orm::ConnectionTrait;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, KeySource};
use crate::crypto::{self, MasterKey};
use crate::delivery::sender::Sender;
use crate::ingest::commit::{Ingestor, sweep_orphans};
use crate::ingest::supervisor::{MailboxSet, Supervisor};
use crate::lock::DataDirLock;
use crate::search::indexer::{IndexHandle, catch_up, index_replies_since, open_index};
use crate::service::{Heartbeat, Notifier, watchdog_task};
use crate::store::settings::{self, KeyCheck};
use crate::store::{Store, redact_url};

/// How long shutdown may take before the remaining tasks are abandoned (their transactions roll back).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// Everything a command needs once the data directory is open.
pub struct Opened {
    pub store: Store,
    pub master: Arc<MasterKey>,
    /// Held until the process ends.
    pub lock: DataDirLock,
}

/// Makes sure the data directory exists and is writable, naming the key to fix if not.
pub fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "config key `data_dir`: cannot create {}; choose a writable directory",
            data_dir.display()
        )
    })?;
    let probe = data_dir.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "config key `data_dir`: {} is not writable by this user; fix its permissions or choose another directory",
            data_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Loads the master key from its file or systemd credential, creating it on the embedded default.
pub fn load_master_key(source: &KeySource) -> anyhow::Result<MasterKey> {
    match source {
        KeySource::File {
            path,
            create_if_missing,
        } => {
            if *create_if_missing && !path.exists() {
                match crypto::create_key_file(path) {
                    Ok(_) => {
                        info!(path = %path.display(), "created a new master key; back it up: without it nothing stored can be read")
                    }
                    // Another inboxd process created it a moment ago: use that one.
                    Err(_) if path.exists() => {}
                    Err(err) => return Err(err.into()),
                }
            }
            let loaded = crypto::load_key_file(path)?;
            for warning in &loaded.warnings {
                warn!(path = %path.display(), "{warning}");
            }
            Ok(loaded.key)
        }
        KeySource::Credential { name } => {
            let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                bail!(
                    "config key `key_credential`: $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={name}:/path/to/key, or use key_file"
                );
            };
            Ok(crypto::load_from_credentials(Path::new(&dir), name)?.key)
        }
    }
}

/// Opens the data directory (locked), the master key and the migrated store, and checks that the key is
/// the one this database was written with.
pub async fn open(config: &Config) -> anyhow::Result<Opened> {
    prepare_data_dir(&config.data_dir)?;
    crate::service::check_free_space(&config.data_dir, crate::service::MIN_FREE_BYTES)?;
    // A command probing the lock holds it for milliseconds; a second daemon holds it for good.
    let lock = DataDirLock::acquire_within(&config.data_dir, std::time::Duration::from_secs(3))?;
    let master = load_master_key(&config.key)?;
    std::fs::create_dir_all(config.blob_dir())
        .with_context(|| format!("cannot create {}", config.blob_dir().display()))?;
    let store = Store::connect(&config.database_url, &config.blob_dir())
        .await
        .with_context(|| {
            format!(
                "config key `database`: cannot reach {}; check the URL and that the server is running",
                redact_url(&config.database_url)
            )
        })?;
    let applied = store.migrate().await?;
    if applied > 0 {
        info!(applied, "database migrations applied");
    }
    match settings::check_master_key(&store.db, &master).await {
        Ok(KeyCheck::Recorded) => {
            info!(key_id = %master.key_id(), "master key registered with this database")
        }
        Ok(KeyCheck::Matches) => {}
        Err(err) => bail!(
            "the master key does not match this database ({err}); start with the key this data was written with"
        ),
    }
    Ok(Opened {
        store,
        master: Arc::new(master),
        lock,
    })
}

/// The daemon: ingest supervisor (and, as they land, index, outbox, retention and API tasks) until
/// `shutdown` is cancelled; then stop in dependency order within [`SHUTDOWN_DEADLINE`].
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    reload: Option<Arc<Notify>>,
) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    notifier.status("opening the data directory");
    let opened = open(&config).await?;
    // What a killed daemon published is stale from the moment this one holds the lock.
    crate::api::clear_published(&config.data_dir);
    let swept = sweep_orphans(&opened.store).await?;
    if swept > 0 {
        info!(files = swept, "removed blob files of interrupted batches");
    }
    let tracker = TaskTracker::new();
    let mailboxes = MailboxSet {
        from_config: Arc::new(RwLock::new(config.mailboxes.clone())),
        ingest: Arc::new(RwLock::new(config.ingest.clone())),
        changed: Arc::new(Notify::new()),
    };
    notifier.status("opening the search index");
    let (index, rebuilt) = open_index(
        &config.index_dir(),
        &opened.master,
        config.search.cache_bytes,
    )?;
    if rebuilt {
        warn!("the search index was unreadable and is rebuilt from the store in the background");
    }
    let (index_handle, index_thread) = IndexHandle::start(index)?;
    let ingestor = Ingestor::new(opened.store.clone(), Arc::clone(&opened.master))
        .with_index(index_handle.clone());
    // The API syncs and replies through the same ingestor: its per-mailbox commit lock is shared.
    let api_ingestor = ingestor.clone();
    let catch_up_cancel = shutdown.child_token();
    tracker.spawn(keep_index_complete(
        opened.store.clone(),
        Arc::clone(&opened.master),
        index_handle.clone(),
        catch_up_cancel.clone(),
    ));
    let purge_cancel = shutdown.child_token();
    tracker.spawn(crate::purge::retention::schedule(
        opened.store.clone(),
        Arc::clone(&opened.master),
        index_handle.clone(),
        config.retention.purge_interval,
        config.retention.batch_size,
        purge_cancel.clone(),
    ));
    let ingest_cancel = shutdown.child_token();
    let supervisor_beat = Heartbeat::default();
    let supervisor = Supervisor {
        ingestor,
        mailboxes: mailboxes.clone(),
        tracker: tracker.clone(),
        heartbeat: supervisor_beat.clone(),
    };
    tracker.spawn(supervisor.run(ingest_cancel.clone()));
    let outbox_wake = Arc::new(Notify::new());
    let sender = Sender {
        ingestor: Ingestor::new(opened.store.clone(), Arc::clone(&opened.master)),
        mailboxes: mailboxes.clone(),
        policy: config.outbox.clone(),
        wake: Arc::clone(&outbox_wake),
        timeout: config.ingest.network_timeout,
    };
    let outbox_cancel = shutdown.child_token();
    tracker.spawn(sender.run(outbox_cancel.clone()));
    let api_cancel = shutdown.child_token();
    let api_state = crate::api::ApiState::new(crate::api::Shared {
        store: opened.store.clone(),
        master: Arc::clone(&opened.master),
        ingestor: api_ingestor,
        index: index_handle.clone(),
        mailboxes: mailboxes.clone(),
        outbox_wake,
        sync_running: tokio::sync::Mutex::new(()),
        authorizations: std::sync::Mutex::new(std::collections::HashMap::new()),
        cancel: api_cancel.clone(),
    });
    let api_task = start_api(&config, &opened.store, api_state, api_cancel.clone()).await;
    if let Some(reload) = reload {
        tracker.spawn(reload_on_signal(
            config.clone(),
            mailboxes,
            reload,
            shutdown.clone(),
        ));
    }
    let main_beat = Heartbeat::default();
    let watchdog_cancel = shutdown.child_token();
    let probe = opened.store.clone();
    tracker.spawn(watchdog_task(
        notifier.clone(),
        main_beat.clone(),
        watchdog_cancel.clone(),
        move || {
            let probe = probe.clone();
            async move { probe.db.execute_unprepared("SELECT 1").await.is_ok() }
        },
    ));
    info!(
        data_dir = %config.data_dir.display(),
        mailboxes = config.mailboxes.len(),
        "inboxd running"
    );
    notifier.ready(&format!(
        "running; {} mailboxes configured",
        config.mailboxes.len()
    ));
    main_loop(&shutdown, &supervisor_beat, &main_beat).await;
    notifier.stopping();
    info!("shutting down: stopping the api");
    api_cancel.cancel();
    if let Some(task) = api_task
        && tokio::time::timeout(API_STOP_DEADLINE, task).await.is_err()
    {
        warn!("api requests did not finish in time; they are abandoned");
    }
    info!("shutting down: stopping mailbox tasks and the outbox");
    ingest_cancel.cancel();
    outbox_cancel.cancel();
    purge_cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        warn!("tasks did not stop in time; their uncommitted batches roll back");
    }
    catch_up_cancel.cancel();
    info!("flushing the search index");
    if let Err(err) = index_handle.flush().await {
        warn!(error = %err, "final index commit failed; missing documents are indexed at the next start");
    }
    drop(index_handle);
    let _ = tokio::task::spawn_blocking(move || index_thread.join()).await;
    info!("closing the store");
    opened.store.close().await?;
    drop(opened.lock);
    info!("stopped");
    Ok(())
}

/// How long in-flight API requests may take to finish at shutdown.
const API_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Publishes the local admin credential and starts the API. A failure (address in use, unwritable data
/// dir) is logged and the daemon runs on without its API: ingest and sending do not depend on it.
async fn start_api(
    config: &Config,
    store: &Store,
    state: crate::api::ApiState,
    cancel: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.api_listen.ip().is_loopback() {
        warn!(listen = %config.api_listen, "the api speaks plain HTTP on a non-loopback address; tokens cross the network in clear unless a TLS reverse proxy is in front");
    }
    let started = async {
        crate::api::publish_local_admin(store, &config.data_dir).await?;
        crate::api::bind(config.api_listen, &config.data_dir).await
    };
    match started.await {
        Ok(listener) => Some(tokio::spawn(crate::api::serve(
            listener,
            state,
            cancel,
            config.data_dir.clone(),
        ))),
        Err(err) => {
            let reason = format!("{err:#}");
            tracing::error!(error = %reason, "api not started; the CLI works on the database directly");
            crate::api::publish_unavailable(&config.data_dir, &reason);
            None
        }
    }
}

/// Indexes what the store has and the index lacks once at start (after a crash, or into a rebuilt
/// index), then every [`CATCH_UP_EVERY`] the replies other processes stored (queued from the CLI).
async fn keep_index_complete(
    store: Store,
    master: Arc<MasterKey>,
    index: IndexHandle,
    cancel: CancellationToken,
) {
    let mut caught_up = false;
    let mut since = crate::clock::now();
    loop {
        if caught_up {
            // Replies queued from the CLI; a small overlap so none is missed between two passes.
            let next = crate::clock::now();
            let overlap = chrono::Duration::seconds(5);
            match index_replies_since(&store, &master, &index, since - overlap).await {
                Ok(_) => since = next,
                Err(err) => warn!(error = %err, "indexing new replies failed; retrying later"),
            }
        } else {
            since = crate::clock::now();
            match crate::purge::remove_stale_documents(&store, &index).await {
                Ok(0) => {}
                Ok(count) => info!(
                    documents = count,
                    "removed index entries of messages no longer stored"
                ),
                Err(err) => warn!(error = %err, "checking the index for removed messages failed"),
            }
            match catch_up(&store, &master, &index, Some(&cancel), |_, _| {}).await {
                Ok(count) => {
                    caught_up = !cancel.is_cancelled();
                    if count > 0 {
                        info!(
                            messages = count,
                            "indexed messages missing from the search index"
                        );
                    }
                }
                Err(err) => warn!(error = %err, "index catch-up failed; retrying later"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(CATCH_UP_EVERY) => {}
        }
    }
}

/// How often the index is checked against the store.
const CATCH_UP_EVERY: Duration = Duration::from_secs(30);

/// The daemon's main loop: beats while the ingest supervisor is alive (it reconciles every few seconds),
/// so the watchdog stops being pinged if the supervisor wedges.
async fn main_loop(shutdown: &CancellationToken, supervisor: &Heartbeat, main: &Heartbeat) {
    main.beat();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if supervisor.age() < SUPERVISOR_STALL {
            main.beat();
        }
    }
}

/// A supervisor that has not turned for this long is considered wedged.
const SUPERVISOR_STALL: Duration = Duration::from_secs(30);

/// Re-reads the config file when notified (SIGHUP): mailboxes and ingest settings change in place; the
/// supervisor restarts only the mailboxes whose settings changed.
async fn reload_on_signal(
    config: Config,
    mailboxes: MailboxSet,
    reload: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = reload.notified() => {}
        }
        let Some(path) = &config.path else {
            warn!("reload requested but the daemon runs without a config file");
            continue;
        };
        match Config::load(path) {
            Ok(fresh) => {
                *mailboxes.from_config.write().await = fresh.mailboxes.clone();
                *mailboxes.ingest.write().await = fresh.ingest.clone();
                if let Err(err) = crate::logging::set_level(&fresh.log_level) {
                    warn!(error = %err, "log level not changed");
                }
                mailboxes.changed.notify_one();
                info!(path = %path.display(), mailboxes = fresh.mailboxes.len(), "configuration reloaded");
            }
            Err(err) => warn!(error = %err, "configuration not reloaded; keeping the running one"),
        }
    }
}
