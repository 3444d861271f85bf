//! The CLI commands other than `serve`.
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::app;
use crate::cli::{Command, KeyAction, MailboxAction};
use crate::config::{
    AfterFetch, Config, ImapMailbox, MailboxConfig, MailboxSource, PasswordSource, TlsSetting,
    read_secret_file,
};
use crate::crypto::{self, MasterKey};
use crate::ingest::SyncReport;
use crate::ingest::commit::{Ingestor, sweep_orphans};
use crate::ingest::imap_sync::ImapSync;
use crate::ingest::maildir::MaildirSync;
use crate::search::indexer::{IndexHandle, open_index};
use crate::store::entities::{data_key, mailbox};
use crate::store::mailboxes::{self, ORIGIN_ADMIN};
use crate::store::threads::conversation_key_aad;
use crate::store::{Store, messages, settings};

/// Runs a non-daemon command.
pub async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve | Command::Inspect { .. } => unreachable!("dispatched by main"),
        Command::Migrate => {
            let opened = app::open(&config).await?;
            println!("database is up to date");
            opened.store.close().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            once,
            mailbox,
            json,
            no_index,
        } => {
            if !once {
                bail!(
                    "`inboxd sync` needs --once (the daemon, `inboxd serve`, syncs continuously)"
                );
            }
            sync_once(&config, mailbox.as_deref(), json, !no_index).await
        }
        Command::Mailbox { action } => mailbox_command(&config, action).await,
        Command::Search {
            query,
            limit,
            offset,
            relevance,
            json,
        } => crate::commands_search::search(&config, &query, limit, offset, relevance, json).await,
        Command::Reindex => crate::commands_search::reindex(&config).await,
        Command::Conversations {
            mailbox,
            limit,
            json,
        } => crate::commands_conversations::list(&config, mailbox.as_deref(), limit, json).await,
        Command::Show { conversation, json } => {
            crate::commands_conversations::show(&config, conversation, json).await
        }
        Command::Reply {
            conversation,
            body_file,
            to,
            cc,
            json,
        } => {
            crate::commands_conversations::reply(&config, conversation, &body_file, to, cc, json)
                .await
        }
        Command::RotateKey { new_key_file } => rotate_key(&config, &new_key_file).await,
        Command::Key {
            action: KeyAction::Generate { out },
        } => {
            crypto::create_key_file(&out)?;
            println!("wrote a new master key to {} (mode 0600)", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `inboxd inspect FILE [--json]`: exit 0 whatever the message looks like, 2 if the file is unreadable.
pub fn inspect(file: &Path, json: bool) -> ExitCode {
    let raw = match std::fs::read(file) {
        Ok(raw) => raw,
        Err(err) => {
            eprintln!("inboxd: cannot read {}: {err}", file.display());
            return ExitCode::from(2);
        }
    };
    let parsed = crate::parse::parse_message(&raw);
    let report = crate::parse::dsn::delivery_report(&raw);
    if json {
        let mut value = crate::parse::inspect_json(&parsed);
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "delivery_report".to_string(),
                serde_json::to_value(&report).unwrap_or(serde_json::Value::Null),
            );
        }
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("inboxd: cannot render json: {err}"),
        }
    } else {
        print!("{}", crate::parse::render_text(&parsed));
        if let Some(report) = report {
            print!("{}", render_delivery_report(&report));
        }
    }
    ExitCode::SUCCESS
}

fn render_delivery_report(report: &crate::parse::dsn::DeliveryReport) -> String {
    use std::fmt::Write;
    let mut out = String::from("\nDelivery report\n");
    let value = serde_json::to_value(report).unwrap_or_default();
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_string()
    };
    let _ = writeln!(out, "  kind:                {}", field("kind"));
    let _ = writeln!(out, "  is bounce:           {}", report.is_bounce);
    let _ = writeln!(out, "  reporting MTA:       {}", field("reporting_mta"));
    let _ = writeln!(out, "  envelope id:         {}", field("envelope_id"));
    let _ = writeln!(
        out,
        "  original Message-ID: {}",
        field("original_message_id")
    );
    for recipient in value
        .get("recipients")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let get = |name: &str| {
            recipient
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_string()
        };
        let _ = writeln!(
            out,
            "  recipient {}: action {}, status {}, diagnostic {}",
            get("recipient"),
            get("action"),
            get("status"),
            get("diagnostic")
        );
    }
    out
}

/// Every mailbox the daemon would run: config file first, then admin-added ones.
async fn all_mailboxes(
    store: &Store,
    master: &MasterKey,
    config: &Config,
) -> anyhow::Result<Vec<MailboxConfig>> {
    let mut all = config.mailboxes.clone();
    for row in mailboxes::list(&store.db).await? {
        if row.origin == ORIGIN_ADMIN && !all.iter().any(|m| m.name == row.name) {
            all.push(mailboxes::admin_config(master, &row)?);
        }
    }
    Ok(all)
}

async fn sync_once(
    config: &Config,
    only: Option<&str>,
    json: bool,
    index: bool,
) -> anyhow::Result<ExitCode> {
    let opened = app::open(config).await?;
    sweep_orphans(&opened.store).await?;
    let mut ingestor = Ingestor::new(opened.store.clone(), opened.master.clone());
    // Committed batches are indexed as the daemon indexes them; what the index misses (or all of it,
    // with --no-index) is indexed by the daemon's catch-up at its next start.
    let indexer = if index {
        let (search_index, _) = open_index(&config.index_dir(), &opened.master)?;
        let (handle, thread) = IndexHandle::start(search_index)?;
        ingestor = ingestor.with_index(handle.clone());
        Some((handle, thread))
    } else {
        None
    };
    let mut targets = all_mailboxes(&opened.store, &opened.master, config).await?;
    targets.retain(|m| m.enabled && only.is_none_or(|name| m.name == name));
    if let (Some(name), true) = (only, targets.is_empty()) {
        bail!("no enabled mailbox named `{name}`; see `inboxd mailbox list`");
    }
    let cancel = CancellationToken::new();
    let mut reports = Vec::new();
    for mailbox in targets {
        let db = &opened.store.db;
        let mailbox_id = match mailboxes::by_name(db, &mailbox.name).await? {
            Some(row) if row.origin == ORIGIN_ADMIN => row.id,
            _ => mailboxes::upsert_from_config(db, &mailbox).await?,
        };
        let result = match &mailbox.source {
            MailboxSource::Maildir { path } => {
                MaildirSync {
                    name: mailbox.name.clone(),
                    mailbox_id,
                    path: path.clone(),
                    ingest: config.ingest.clone(),
                    ingestor: ingestor.clone(),
                }
                .sync_once(&cancel)
                .await
            }
            MailboxSource::Imap(account) => {
                ImapSync {
                    name: mailbox.name.clone(),
                    mailbox_id,
                    account: account.clone(),
                    ingest: config.ingest.clone(),
                    ingestor: ingestor.clone(),
                }
                .sync_once(&cancel)
                .await
            }
        };
        let report = match result {
            Ok(mut report) => {
                report.mailbox = mailbox.name.clone();
                let stored = i64::try_from(report.stored).unwrap_or(i64::MAX);
                mailboxes::record_success(db, mailbox_id, stored).await?;
                report
            }
            Err(err) => {
                mailboxes::record_error(db, mailbox_id, err.status(), &err.to_string()).await?;
                SyncReport {
                    mailbox: mailbox.name.clone(),
                    error: Some(err.to_string()),
                    ..SyncReport::default()
                }
            }
        };
        reports.push(report);
    }
    drop(ingestor);
    if let Some((handle, thread)) = indexer {
        if let Err(err) = handle.flush().await {
            warn!(error = %err, "index commit failed; the daemon indexes the missing messages at its next start");
        }
        drop(handle);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    print_reports(&reports, json)?;
    opened.store.close().await?;
    let failed = reports.iter().any(|report| report.error.is_some());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_reports(reports: &[SyncReport], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(reports)?);
        return Ok(());
    }
    println!(
        "{:<20} {:>8} {:>8} {:>10} {:>8}  error",
        "mailbox", "fetched", "stored", "duplicates", "flagged"
    );
    for report in reports {
        println!(
            "{:<20} {:>8} {:>8} {:>10} {:>8}  {}",
            report.mailbox,
            report.fetched,
            report.stored,
            report.duplicates,
            report.flagged,
            report.error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// Opens the store without taking the data directory lock, for commands that may run beside the daemon.
pub(crate) async fn open_shared(config: &Config) -> anyhow::Result<(Store, MasterKey)> {
    app::prepare_data_dir(&config.data_dir)?;
    let master = app::load_master_key(&config.key)?;
    let store = Store::connect(&config.database_url, &config.blob_dir())
        .await
        .context("config key `database`")?;
    // Only one process migrates: the daemon when it runs (it holds the lock), else this command.
    match crate::lock::DataDirLock::acquire(&config.data_dir) {
        Ok(lock) => {
            store.migrate().await?;
            drop(lock);
        }
        Err(crate::lock::LockError::Busy { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    settings::check_master_key(&store.db, &master)
        .await
        .context("the master key does not match this database")?;
    Ok((store, master))
}

async fn mailbox_command(config: &Config, action: MailboxAction) -> anyhow::Result<ExitCode> {
    let (store, master) = open_shared(config).await?;
    for mailbox in &config.mailboxes {
        mailboxes::upsert_from_config(&store.db, mailbox).await?;
    }
    match action {
        MailboxAction::List { json } | MailboxAction::Status { name: None, json } => {
            print_status(&store, None, json).await?
        }
        MailboxAction::Status {
            name: Some(name),
            json,
        } => print_status(&store, Some(&name), json).await?,
        MailboxAction::AddImap {
            name,
            host,
            port,
            tls,
            username,
            password_file,
            password_env,
            ca_file,
            folders,
            insecure,
        } => {
            if !crate::config::is_valid_name(&name) {
                bail!("mailbox name `{name}`: use letters, digits, `-`, `_` or `.`");
            }
            let key = format!("mailbox `{name}` password");
            let password = match (password_file, password_env) {
                (Some(path), _) => read_secret_file(&key, &path)?,
                (None, Some(variable)) => crate::config::read_secret_env(&key, &variable)?,
                (None, None) => bail!("give --password-file or --password-env"),
            };
            let tls = match tls.as_str() {
                "implicit" => TlsSetting::Implicit,
                "starttls" => TlsSetting::StartTls,
                other => bail!("--tls: expected `implicit` or `starttls`, got `{other}`"),
            };
            let config = MailboxConfig {
                name: name.clone(),
                source: MailboxSource::Imap(ImapMailbox {
                    host,
                    port: port.unwrap_or(if insecure || tls == TlsSetting::StartTls {
                        143
                    } else {
                        993
                    }),
                    tls,
                    username,
                    password: PasswordSource::Stored(password.clone()),
                    ca_file,
                    insecure,
                    folders: if folders.is_empty() {
                        vec!["INBOX".to_string()]
                    } else {
                        folders
                    },
                    after_fetch: AfterFetch::Leave,
                }),
                retention_days: None,
                enabled: true,
                outgoing: None,
            };
            refuse_config_name(&store, &name).await?;
            mailboxes::save_admin(&store.db, &master, &config, Some(&password)).await?;
            println!("mailbox {name} saved; a running daemon starts syncing it within seconds");
        }
        MailboxAction::AddMaildir { name, path } => {
            if !crate::config::is_valid_name(&name) {
                bail!("mailbox name `{name}`: use letters, digits, `-`, `_` or `.`");
            }
            refuse_config_name(&store, &name).await?;
            let config = MailboxConfig {
                name: name.clone(),
                source: MailboxSource::Maildir { path },
                retention_days: None,
                enabled: true,
                outgoing: None,
            };
            mailboxes::save_admin(&store.db, &master, &config, None).await?;
            println!("mailbox {name} saved; a running daemon starts syncing it within seconds");
        }
        MailboxAction::Remove {
            name,
            delete_messages,
        } => {
            let Some(row) = mailboxes::by_name(&store.db, &name).await? else {
                bail!("no mailbox named `{name}`");
            };
            if row.origin != ORIGIN_ADMIN {
                bail!("mailbox `{name}` comes from the config file; remove it there and reload");
            }
            let stored = messages::count_for_mailbox(&store.db, row.id).await?;
            if stored > 0 && !delete_messages {
                bail!(
                    "mailbox `{name}` has {stored} stored messages; add --delete-messages to remove them too"
                );
            }
            mailboxes::remove(&store.db, &name).await?;
            println!("mailbox {name} removed");
        }
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

async fn refuse_config_name(store: &Store, name: &str) -> anyhow::Result<()> {
    if let Some(row) = mailboxes::by_name(&store.db, name).await?
        && row.origin != ORIGIN_ADMIN
    {
        bail!("mailbox `{name}` is defined in the config file; pick another name");
    }
    Ok(())
}

async fn print_status(store: &Store, only: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut rows = mailboxes::list(&store.db).await?;
    if let Some(name) = only {
        rows.retain(|row| row.name == name);
        if rows.is_empty() {
            bail!("no mailbox named `{name}`");
        }
    }
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                serde_json::json!({
                    "name": row.name, "kind": row.kind, "origin": row.origin, "enabled": row.enabled,
                    "status": row.status, "last_sync_at": row.last_sync_at, "last_error": row.last_error,
                    "last_error_at": row.last_error_at, "messages_stored": row.messages_stored,
                    "retention_days": row.retention_days,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<7} {:<12} {:>8}  {:<25} last error",
        "mailbox", "kind", "origin", "status", "stored", "last sync"
    );
    for row in rows {
        println!(
            "{:<20} {:<8} {:<7} {:<12} {:>8}  {:<25} {}",
            row.name,
            row.kind,
            row.origin,
            row.status,
            row.messages_stored,
            row.last_sync_at
                .map_or_else(|| "never".to_string(), |at| at.to_rfc3339()),
            row.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// Re-wraps every data key (and admin mailbox settings) under a new master key, in batches; rows already
/// under the new key are skipped, so an interrupted run is finished by running it again. The check value
/// switches to the new key last.
async fn rotate_key(config: &Config, new_key_file: &Path) -> anyhow::Result<ExitCode> {
    let new_key = crypto::load_key_file(new_key_file)?.key;
    let old_key = app::load_master_key(&config.key)?;
    app::prepare_data_dir(&config.data_dir)?;
    let _lock = crate::lock::DataDirLock::acquire(&config.data_dir)?;
    let store = Store::connect(&config.database_url, &config.blob_dir()).await?;
    store.migrate().await?;
    let stored_check = settings::get(&store.db, settings::KEY_CHECK).await?;
    if let Some(check) = &stored_check
        && old_key.verify_check_value(check).is_err()
    {
        {
            if new_key.verify_check_value(check).is_ok() {
                println!(
                    "rotation already complete; point key_file at {}",
                    new_key_file.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            bail!("the configured master key does not match this database; cannot rotate");
        }
    }
    let new_id = new_key.key_id().to_string();
    let mut rewrapped = 0u64;
    loop {
        let batch = data_key::Entity::find()
            .filter(data_key::Column::MasterKeyId.ne(new_id.clone()))
            .paginate(&store.db, 500)
            .fetch_page(0)
            .await?;
        if batch.is_empty() {
            break;
        }
        let transaction = crate::store::begin_write(&store.db).await?;
        for row in batch {
            let aad = conversation_key_aad(&row.conversation_id);
            let key = old_key.unwrap_data_key(&row.wrapped_key, &aad)?;
            let mut active: data_key::ActiveModel = row.into();
            active.wrapped_key = Set(new_key.wrap_data_key(&key, &aad));
            active.master_key_id = Set(new_id.clone());
            active.updated_at = Set(crate::clock::now());
            active.update(&transaction).await?;
            rewrapped += 1;
        }
        transaction.commit().await?;
    }
    let mut resealed = 0;
    for row in mailbox::Entity::find()
        .filter(mailbox::Column::Origin.eq(ORIGIN_ADMIN))
        .all(&store.db)
        .await?
    {
        let Ok(settings) = mailboxes::admin_config(&old_key, &row) else {
            mailboxes::admin_config(&new_key, &row)
                .with_context(|| format!("mailbox {} settings open under neither key", row.name))?;
            continue;
        };
        let password = match &settings.source {
            MailboxSource::Imap(ImapMailbox {
                password: PasswordSource::Stored(secret),
                ..
            }) => Some(secret.clone()),
            _ => None,
        };
        mailboxes::save_admin(&store.db, &new_key, &settings, password.as_ref()).await?;
        resealed += 1;
    }
    settings::set(&store.db, settings::KEY_CHECK, &new_key.check_value()).await?;
    store.close().await?;
    println!(
        "re-wrapped {rewrapped} data keys and {resealed} mailbox settings under key {new_id}; now point key_file at {}",
        new_key_file.display()
    );
    Ok(ExitCode::SUCCESS)
}
