//! One pass over mailboxes (`inboxd sync --once`, offline or through the daemon's API) and the
//! connection test of `inboxd mailbox test`.
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::SyncReport;
use super::commit::Ingestor;
use super::imap_sync::{ImapSync, OAuthContext, connect_account};
use super::maildir::MaildirSync;
use crate::config::{IngestConfig, MailboxConfig, MailboxSource};
use crate::store::StoreError;
use crate::store::mailboxes::{self, ORIGIN_ADMIN};

/// Syncs each mailbox once, in order, recording success or the error on its row. A failing mailbox
/// gives a report with `error` set; only store failures abort.
pub async fn sync_mailboxes(
    ingestor: &Ingestor,
    targets: &[MailboxConfig],
    ingest: &IngestConfig,
    cancel: &CancellationToken,
) -> Result<Vec<SyncReport>, StoreError> {
    let mut reports = Vec::new();
    for mailbox in targets {
        let db = &ingestor.store.db;
        let mailbox_id = match mailboxes::by_name(db, &mailbox.name).await? {
            Some(row) if row.origin == ORIGIN_ADMIN => row.id,
            _ => mailboxes::upsert_from_config(db, mailbox).await?,
        };
        let result = match &mailbox.source {
            MailboxSource::Maildir { path } => {
                MaildirSync {
                    name: mailbox.name.clone(),
                    mailbox_id,
                    path: path.clone(),
                    ingest: ingest.clone(),
                    ingestor: ingestor.clone(),
                }
                .sync_once(cancel)
                .await
            }
            MailboxSource::Imap(account) => {
                ImapSync {
                    name: mailbox.name.clone(),
                    mailbox_id,
                    account: account.clone(),
                    ingest: ingest.clone(),
                    ingestor: ingestor.clone(),
                }
                .sync_once(cancel)
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
                mailboxes::record_error(db, mailbox_id, err.status(), &err.report()).await?;
                SyncReport {
                    mailbox: mailbox.name.clone(),
                    error: Some(err.report()),
                    ..SyncReport::default()
                }
            }
        };
        reports.push(report);
    }
    Ok(reports)
}

/// What a connection test found.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionTest {
    pub mailbox: String,
    pub ok: bool,
    /// One line per check (`imap login`, `folder INBOX: 12 messages`, `smtp`…).
    pub checks: Vec<CheckResult>,
}

/// One check of a connection test.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

fn result(check: &str, outcome: Result<String, String>) -> CheckResult {
    match outcome {
        Ok(detail) => CheckResult {
            check: check.to_string(),
            ok: true,
            detail,
        },
        Err(detail) => CheckResult {
            check: check.to_string(),
            ok: false,
            detail,
        },
    }
}

/// Connects to the mailbox's source (login, each folder) and its SMTP relay if it has one; stores nothing.
pub async fn test_connection(
    mailbox: &MailboxConfig,
    timeout: Duration,
    oauth_context: Option<&OAuthContext<'_>>,
) -> ConnectionTest {
    let mut checks = Vec::new();
    match &mailbox.source {
        MailboxSource::Maildir { path } => {
            let complete = ["cur", "new", "tmp"]
                .iter()
                .all(|sub| path.join(sub).is_dir());
            checks.push(result(
                "maildir",
                if complete {
                    Ok(format!("{} has cur/, new/ and tmp/", path.display()))
                } else {
                    Err(format!(
                        "{} is not a Maildir (needs cur/, new/ and tmp/); check the path",
                        path.display()
                    ))
                },
            ));
        }
        MailboxSource::Imap(account) => {
            let connected = connect_account(&mailbox.name, account, timeout, oauth_context)
                .await
                .map_err(|err| err.to_string());
            match connected {
                Ok(mut client) => {
                    checks.push(result(
                        "imap login",
                        Ok(format!("{}:{}", account.host, account.port)),
                    ));
                    for folder in &account.folders {
                        let outcome = client
                            .select(folder)
                            .await
                            .map(|status| format!("{} messages", status.exists))
                            .map_err(|err| format!("{err}; check the folder name"));
                        checks.push(result(&format!("folder {folder}"), outcome));
                    }
                    client.logout().await;
                }
                Err(err) => checks.push(result("imap login", Err(err))),
            }
        }
    }
    if let Some(outgoing) = &mailbox.outgoing {
        let settings = crate::delivery::sender::smtp_settings(&mailbox.name, outgoing, timeout);
        let settings = match (settings, oauth_context) {
            (Ok(settings), Some(context)) => {
                crate::delivery::sender::with_oauth_token(
                    &mailbox.name,
                    outgoing,
                    settings,
                    context,
                    None,
                )
                .await
            }
            (settings, _) => settings,
        };
        let outcome = match settings {
            Ok(settings) => crate::delivery::smtp::check(&settings)
                .await
                .map(|()| format!("{}:{}", outgoing.smtp.host, outgoing.smtp.port))
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        checks.push(result("smtp", outcome));
    }
    ConnectionTest {
        mailbox: mailbox.name.clone(),
        ok: checks.iter().all(|check| check.ok),
        checks,
    }
}
