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
use crate::cli::{Command, KeyAction, MailboxAction, TokenAction};
use crate::config::{Config, ImapMailbox, MailboxConfig, MailboxSource, PasswordSource};
use crate::crypto::{self, MasterKey};
use crate::ingest::commit::{Ingestor, sweep_orphans};
use crate::search::indexer::{IndexHandle, open_index};
use crate::store::entities::{data_key, mailbox};
use crate::store::mailboxes::{self, ORIGIN_ADMIN};
use crate::store::threads::conversation_key_aad;
use crate::store::{Store, messages, settings};

/// Runs a non-daemon command.
pub async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    if crate::commands_api::uses_daemon(&command) {
        match crate::client::locate(&config).await {
            Ok(Some(client)) => {
                return crate::commands_api::through_daemon(&client, command).await;
            }
            Ok(None) if crate::commands_api::needs_daemon(&command) => {
                eprintln!(
                    "inboxd: this command needs the running daemon (it keeps the search index in step); start `inboxd serve`"
                );
                return Ok(ExitCode::from(crate::client::exit::UNAVAILABLE));
            }
            Ok(None) => {}
            Err(err) => return Ok(crate::commands_api::failure(&err)),
        }
    }
    match command {
        Command::Serve | Command::Inspect { .. } => unreachable!("dispatched by main"),
        Command::State { .. } | Command::Assign { .. } | Command::Note { .. } => {
            unreachable!("answered above: they need the daemon")
        }
        Command::Migrate { json } => {
            let opened = app::open(&config).await?;
            if json {
                crate::commands_output::json(&serde_json::json!({ "schema": "up to date" }));
            } else {
                println!("database is up to date");
            }
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
        Command::Mailbox { action } => mailbox_command(&config, *action).await,
        Command::Search {
            query,
            limit,
            offset,
            relevance,
            json,
        } => crate::commands_search::search(&config, &query, limit, offset, relevance, json).await,
        Command::Reindex { json } => crate::commands_search::reindex(&config, json).await,
        Command::Conversations {
            mailbox,
            state,
            assignee,
            limit,
            offset,
            json,
        } => {
            let filter = crate::commands_conversations::ListFilter {
                mailbox,
                state,
                assignee,
                limit,
                offset,
            };
            crate::commands_conversations::list(&config, filter, json).await
        }
        Command::Token { action } => token_command(&config, action).await,
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
        Command::Purge { dry_run, json } => {
            crate::commands_purge::purge(&config, dry_run, json).await
        }
        Command::Retention { action } => crate::commands_purge::retention(&config, action).await,
        Command::Hold { action } => crate::commands_purge::hold(&config, action).await,
        Command::Subject { action } => crate::commands_purge::subject(&config, action).await,
        Command::Audit { limit, json } => crate::commands_purge::audit(&config, limit, json).await,
        Command::RotateKey { new_key_file, json } => rotate_key(&config, &new_key_file, json).await,
        Command::Key {
            action: KeyAction::Generate { out, json },
        } => {
            crypto::create_key_file(&out)?;
            if json {
                crate::commands_output::json(
                    &serde_json::json!({ "key_file": out, "mode": "0600" }),
                );
            } else {
                println!("wrote a new master key to {} (mode 0600)", out.display());
            }
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
    Ok(mailboxes::all_configs(&store.db, master, &config.mailboxes).await?)
}

/// Bound of the decrypted index cache of `inboxd sync --once` (it runs no searches).
const SYNC_ONCE_INDEX_CACHE_BYTES: usize = 16 * 1024 * 1024;

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
        // This process serves no searches: the cache only helps tantivy's own reads during ingest
        // (delete lookups at commit, merges), so a small one keeps memory bounded whatever the
        // mailbox holds (issue #3).
        let (search_index, _) = open_index(
            &config.index_dir(),
            &opened.master,
            config.search.cache_bytes.min(SYNC_ONCE_INDEX_CACHE_BYTES),
        )?;
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
    let reports =
        crate::ingest::once::sync_mailboxes(&ingestor, &targets, &config.ingest, &cancel).await?;
    drop(ingestor);
    if let Some((handle, thread)) = indexer {
        if let Err(err) = handle.flush().await {
            warn!(error = %err, "index commit failed; the daemon indexes the missing messages at its next start");
        }
        drop(handle);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    let values: Vec<serde_json::Value> = reports
        .iter()
        .map(|report| serde_json::to_value(report).unwrap_or_default())
        .collect();
    crate::commands_output::sync_reports(&values, json);
    opened.store.close().await?;
    let failed = reports.iter().any(|report| report.error.is_some());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
    let body = crate::commands_api::mailbox_body(&action)?;
    let (store, master) = open_shared(config).await?;
    for mailbox in &config.mailboxes {
        mailboxes::upsert_from_config(&store.db, mailbox).await?;
    }
    let mut code = ExitCode::SUCCESS;
    match action {
        MailboxAction::List { json } | MailboxAction::Status { name: None, json } => {
            print_status(&store, None, json).await?
        }
        MailboxAction::Status {
            name: Some(name),
            json,
        } => print_status(&store, Some(&name), json).await?,
        MailboxAction::AddImap { name, json, .. }
        | MailboxAction::AddMaildir { name, json, .. } => {
            if !crate::config::is_valid_name(&name) {
                bail!("mailbox name `{name}`: use letters, digits, `-`, `_` or `.`");
            }
            refuse_config_name(&store, &name).await?;
            let body: crate::api::mailboxes::MailboxBody =
                serde_json::from_value(body.unwrap_or_default())?;
            let (settings, password) = crate::api::mailboxes::config_from(name.clone(), body, None)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            mailboxes::save_admin(&store.db, &master, &settings, password.as_ref()).await?;
            crate::store::audit::record(
                &store.db,
                "cli",
                "mailbox.add",
                Some(&name),
                serde_json::json!({ "replies": settings.outgoing.is_some() }),
            )
            .await?;
            if let Some(row) = mailboxes::by_name(&store.db, &name).await?
                && json
            {
                crate::commands_output::json(&mailboxes::status_json(&row));
            } else {
                println!("mailbox {name} saved; the daemon starts syncing it when it runs");
            }
        }
        MailboxAction::Remove {
            name,
            delete_messages,
            json,
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
            if stored == 0 {
                mailboxes::remove(&store.db, &name).await?;
                crate::store::audit::record(
                    &store.db,
                    "cli",
                    "mailbox.remove",
                    Some(&name),
                    serde_json::json!({ "messages_deleted": 0 }),
                )
                .await?;
            } else {
                // Deleting mail goes through the purge path (rows, blobs, index entries, data keys),
                // with the data directory to ourselves (a running daemon does it through its API).
                let (opened, handle, thread) =
                    crate::commands_purge::open_with_index(config).await?;
                let erased =
                    crate::purge::erase::remove_mailbox(&opened.store, Some(&handle), &name, "cli")
                        .await?;
                crate::commands_purge::close_with_index(opened, handle, thread).await?;
                tracing::info!(
                    conversations = erased.conversations,
                    messages = erased.messages,
                    "mailbox removed"
                );
            }
            if json {
                crate::commands_output::json(
                    &serde_json::json!({ "removed": name, "messages_deleted": stored }),
                );
            } else {
                println!("mailbox {name} removed");
            }
        }
        MailboxAction::Authorize {
            name,
            port,
            timeout_secs,
            json,
        } => {
            code = crate::commands_oauth::authorize_offline(
                &store,
                &master,
                config,
                &name,
                port,
                timeout_secs,
                json,
            )
            .await?;
        }
        MailboxAction::Test { name, json } => {
            let all = all_mailboxes(&store, &master, config).await?;
            let Some(mailbox) = all.into_iter().find(|m| m.name == name) else {
                bail!("no mailbox named `{name}`; see `inboxd mailbox list`");
            };
            let row = mailboxes::by_name(&store.db, &name).await?;
            let context = row.map(|row| crate::ingest::imap_sync::OAuthContext {
                db: &store.db,
                key: &master,
                mailbox_id: row.id,
            });
            let result = crate::ingest::once::test_connection(
                &mailbox,
                config.ingest.network_timeout,
                context.as_ref(),
            )
            .await;
            crate::commands_output::connection_test(&serde_json::to_value(&result)?, json);
            if !result.ok {
                code = ExitCode::from(1);
            }
        }
    }
    store.close().await?;
    Ok(code)
}

/// `inboxd token ...` without a daemon: straight on the database.
async fn token_command(config: &Config, action: TokenAction) -> anyhow::Result<ExitCode> {
    use crate::store::tokens;
    let (store, _master) = open_shared(config).await?;
    match action {
        TokenAction::Create {
            name,
            role,
            mailboxes: scope,
            json,
        } => {
            if !crate::config::is_valid_name(&name) || name == tokens::LOCAL_ADMIN {
                bail!(
                    "token name `{name}`: use letters, digits, `-`, `_` or `.` (not `local-admin`)"
                );
            }
            if role != tokens::ROLE_ADMIN && role != tokens::ROLE_AGENT {
                bail!("--role must be `admin` or `agent`, got `{role}`");
            }
            if role == tokens::ROLE_ADMIN && !scope.is_empty() {
                bail!("admin tokens see every mailbox: drop --mailbox or use --role agent");
            }
            for mailbox in &scope {
                if mailboxes::by_name(&store.db, mailbox).await?.is_none() {
                    bail!("--mailbox: no mailbox named `{mailbox}`; see `inboxd mailbox list`");
                }
            }
            if tokens::name_in_use(&store.db, &name).await? {
                bail!("a token named `{name}` exists; revoke it first or pick another name");
            }
            let scope = (!scope.is_empty()).then_some(scope);
            let (info, secret) = tokens::create(&store.db, &name, &role, scope).await?;
            crate::store::audit::record(
                &store.db,
                "cli",
                "token.create",
                Some(&name),
                serde_json::json!({ "id": info.id, "role": info.role }),
            )
            .await?;
            let mut value = serde_json::to_value(&info)?;
            value["secret"] = serde_json::json!(secret);
            crate::commands_output::token_created(&value, json);
        }
        TokenAction::List { json } => {
            let list: Vec<serde_json::Value> = tokens::list(&store.db)
                .await?
                .iter()
                .map(|info| serde_json::to_value(info).unwrap_or_default())
                .collect();
            crate::commands_output::tokens(&list, json);
        }
        TokenAction::Revoke { name_or_id, json } => {
            let revoked = tokens::revoke(&store.db, &name_or_id).await?;
            if revoked.is_empty() {
                eprintln!("inboxd: no active token with name or id `{name_or_id}`");
                store.close().await?;
                return Ok(ExitCode::from(crate::client::exit::NOT_FOUND));
            }
            for info in &revoked {
                crate::store::audit::record(
                    &store.db,
                    "cli",
                    "token.revoke",
                    Some(&info.name),
                    serde_json::json!({ "id": info.id }),
                )
                .await?;
            }
            if json {
                crate::commands_output::json(&serde_json::json!({ "revoked": revoked }));
            } else {
                println!("token {name_or_id} revoked");
            }
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
    let values: Vec<serde_json::Value> = rows.iter().map(mailboxes::status_json).collect();
    crate::commands_output::mailboxes(&values, json);
    Ok(())
}

/// Re-wraps every data key (and admin mailbox settings) under a new master key, in batches; rows already
/// under the new key are skipped, so an interrupted run is finished by running it again. The check value
/// switches to the new key last.
async fn rotate_key(config: &Config, new_key_file: &Path, json: bool) -> anyhow::Result<ExitCode> {
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
                if json {
                    crate::commands_output::json(
                        &serde_json::json!({ "already_complete": true, "key_file": new_key_file }),
                    );
                } else {
                    println!(
                        "rotation already complete; point key_file at {}",
                        new_key_file.display()
                    );
                }
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
    let holds = crate::purge::hold::reseal_mailbox_reasons(&store.db, &old_key, &new_key).await?;
    let oauth_grants = crate::store::oauth::reseal(&store.db, &old_key, &new_key).await?;
    settings::set(&store.db, settings::KEY_CHECK, &new_key.check_value()).await?;
    store.close().await?;
    if json {
        crate::commands_output::json(&serde_json::json!({
            "rewrapped_data_keys": rewrapped, "resealed_mailboxes": resealed,
            "resealed_hold_reasons": holds, "resealed_oauth_grants": oauth_grants,
            "key_id": new_id, "key_file": new_key_file,
        }));
    } else {
        println!(
            "re-wrapped {rewrapped} data keys, {resealed} mailbox settings, {holds} hold reasons and {oauth_grants} oauth grants under key {new_id}; now point key_file at {}",
            new_key_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
