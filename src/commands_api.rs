//! CLI commands through the running daemon's API (the daemon is the only writer while it runs). Each
//! command maps to one or a few requests; the answers are printed by `commands_output`.
//!
//! Adding a command: a `Command` variant in `cli.rs`, an arm in [`through_daemon`] that calls the
//! endpoint, and the offline arm in `commands.rs` (or a refusal when it needs the daemon).
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;
use serde_json::{Value, json};

use crate::cli::{Command, MailboxAction, OAuthArgs, SmtpArgs, TokenAction};
use crate::client::{ClientError, DaemonClient, encode};
use crate::commands_output as output;
use crate::config::{read_secret_env, read_secret_file};

/// Whether a command reads or changes live data, so it goes through the daemon when one runs.
pub fn uses_daemon(command: &Command) -> bool {
    matches!(
        command,
        Command::Sync { once: true, .. }
            | Command::Mailbox { .. }
            | Command::Token { .. }
            | Command::Search { .. }
            | Command::Conversations { .. }
            | Command::Show { .. }
            | Command::Reply { .. }
            | Command::State { .. }
            | Command::Assign { .. }
            | Command::Note { .. }
            | Command::Purge { .. }
            | Command::Retention { .. }
            | Command::Hold { .. }
            | Command::Subject { .. }
            | Command::Audit { .. }
    )
}

/// Commands that only exist through the daemon.
pub fn needs_daemon(command: &Command) -> bool {
    matches!(
        command,
        Command::State { .. } | Command::Assign { .. } | Command::Note { .. }
    )
}

/// Prints an API failure and turns it into the command's exit code.
pub fn failure(err: &ClientError) -> ExitCode {
    eprintln!("inboxd: {err}");
    ExitCode::from(err.exit_code())
}

/// Runs a command against the daemon. Input problems found before any request (unreadable files)
/// are errors; API refusals are printed with their exit code.
pub async fn through_daemon(client: &DaemonClient, command: Command) -> anyhow::Result<ExitCode> {
    let result = dispatch(client, command).await?;
    Ok(match result {
        Ok(code) => code,
        Err(err) => failure(&err),
    })
}

type Outcome = Result<ExitCode, ClientError>;

async fn dispatch(client: &DaemonClient, command: Command) -> anyhow::Result<Outcome> {
    Ok(match command {
        Command::Sync { mailbox, json, .. } => sync(client, mailbox, json).await,
        Command::Mailbox { action } => return mailbox(client, *action).await,
        Command::Token { action } => token(client, action).await,
        command @ (Command::Purge { .. }
        | Command::Retention { .. }
        | Command::Hold { .. }
        | Command::Subject { .. }
        | Command::Audit { .. }) => crate::commands_purge::through_daemon(client, command).await,
        Command::Search {
            query,
            limit,
            offset,
            relevance,
            json,
        } => {
            let path = format!(
                "/v1/search?q={}&limit={limit}&offset={offset}&order={}",
                encode(&query),
                if relevance { "relevance" } else { "newest" }
            );
            match client.call(Method::GET, &path, None).await {
                Ok(value) => {
                    output::search(&value, json);
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) if err.code() == Some("invalid_query") => {
                    eprintln!("inboxd: {err}");
                    Ok(ExitCode::from(crate::client::exit::INVALID))
                }
                Err(err) => Err(err),
            }
        }
        Command::Conversations {
            mailbox,
            state,
            assignee,
            limit,
            offset,
            json,
        } => conversations(client, mailbox, state, assignee, limit, offset, json).await,
        Command::Show { conversation, json } => client
            .call(
                Method::GET,
                &format!("/v1/conversations/{conversation}"),
                None,
            )
            .await
            .map(|value| {
                output::conversation(&value, json);
                ExitCode::SUCCESS
            }),
        Command::Reply {
            conversation,
            body_file,
            to,
            cc,
            json,
        } => {
            let body = read_body(&body_file)?;
            client
                .call(
                    Method::POST,
                    &format!("/v1/conversations/{conversation}/replies"),
                    Some(&json!({ "body": body, "to": to, "cc": cc })),
                )
                .await
                .map(|value| {
                    if json {
                        output::json(&value);
                    } else {
                        println!(
                            "reply {} queued for {} recipient(s); the daemon sends it",
                            value["message_id"].as_str().unwrap_or("-"),
                            value["recipients"]
                        );
                    }
                    ExitCode::SUCCESS
                })
        }
        Command::State {
            conversation,
            state,
            json,
        } => client
            .call(
                Method::PUT,
                &format!("/v1/conversations/{conversation}/state"),
                Some(&json!({ "state": state })),
            )
            .await
            .map(|value| {
                done(
                    &value,
                    json,
                    &format!("conversation {conversation} is {state}"),
                )
            }),
        Command::Assign {
            conversation,
            assignee,
            json,
            ..
        } => client
            .call(
                Method::PUT,
                &format!("/v1/conversations/{conversation}/assignee"),
                Some(&json!({ "assignee": assignee })),
            )
            .await
            .map(|value| {
                let text = match &assignee {
                    Some(name) => format!("conversation {conversation} assigned to {name}"),
                    None => format!("conversation {conversation} unassigned"),
                };
                done(&value, json, &text)
            }),
        Command::Note {
            conversation,
            body_file,
            json,
        } => {
            let body = read_body(&body_file)?;
            client
                .call(
                    Method::POST,
                    &format!("/v1/conversations/{conversation}/notes"),
                    Some(&json!({ "body": body })),
                )
                .await
                .map(|value| done(&value, json, &format!("note added to {conversation}")))
        }
        other => anyhow::bail!("`{other:?}` does not go through the daemon"),
    })
}

/// Prints the answer (`--json`) or a one-line confirmation.
fn done(value: &Value, json: bool, text: &str) -> ExitCode {
    if json {
        output::json(value);
    } else {
        println!("{text}");
    }
    ExitCode::SUCCESS
}

/// Reads a reply body from a file, or standard input for `-`; refuses an empty one.
pub fn read_body(body_file: &Path) -> anyhow::Result<String> {
    let body = if body_file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(body_file)
            .with_context(|| format!("cannot read {}", body_file.display()))?
    };
    if body.trim().is_empty() {
        anyhow::bail!("the reply is empty");
    }
    Ok(body)
}

async fn sync(client: &DaemonClient, mailbox: Option<String>, json: bool) -> Outcome {
    let value = client
        .call(
            Method::POST,
            "/v1/sync",
            Some(&json!({ "mailbox": mailbox })),
        )
        .await?;
    let reports = value["reports"].as_array().cloned().unwrap_or_default();
    output::sync_reports(&reports, json);
    let failed = reports.iter().any(|report| report["error"].is_string());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Most conversations one request asks for; longer lists are fetched page by page.
const PAGE: usize = 500;

async fn conversations(
    client: &DaemonClient,
    mailbox: Option<String>,
    state: Option<String>,
    assignee: Option<String>,
    limit: usize,
    offset: usize,
    json: bool,
) -> Outcome {
    let mut filters = String::new();
    for (key, value) in [
        ("mailbox", &mailbox),
        ("state", &state),
        ("assignee", &assignee),
    ] {
        if let Some(value) = value {
            filters.push_str(&format!("&{key}={}", encode(value)));
        }
    }
    let mut items = Vec::new();
    let mut next = offset;
    while items.len() < limit {
        let want = (limit - items.len()).min(PAGE);
        let value = client
            .call(
                Method::GET,
                &format!("/v1/conversations?limit={want}&offset={next}{filters}"),
                None,
            )
            .await?;
        let page = value["conversations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let got = page.len();
        items.extend(page);
        next += got;
        if got < want {
            break;
        }
    }
    output::conversations(&items, json);
    Ok(ExitCode::SUCCESS)
}

async fn token(client: &DaemonClient, action: TokenAction) -> Outcome {
    match action {
        TokenAction::Create {
            name,
            role,
            mailboxes,
            json,
        } => {
            let scope = (!mailboxes.is_empty()).then_some(mailboxes);
            let value = client
                .call(
                    Method::POST,
                    "/v1/tokens",
                    Some(&json!({ "name": name, "role": role, "mailboxes": scope })),
                )
                .await?;
            output::token_created(&value, json);
        }
        TokenAction::List { json } => {
            let value = client.call(Method::GET, "/v1/tokens", None).await?;
            output::tokens(value["tokens"].as_array().map_or(&[], Vec::as_slice), json);
        }
        TokenAction::Revoke { name_or_id, json } => {
            let value = client
                .call(
                    Method::DELETE,
                    &format!("/v1/tokens/{}", encode(&name_or_id)),
                    None,
                )
                .await?;
            if json {
                output::json(&value);
            } else {
                println!("token {name_or_id} revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON body of `POST /v1/mailboxes` for `mailbox add-imap|add-maildir` (passwords read here).
pub fn mailbox_body(action: &MailboxAction) -> anyhow::Result<Option<Value>> {
    Ok(Some(match action {
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
            oauth,
            smtp,
            ..
        } => {
            let key = format!("mailbox `{name}` password");
            let password = match (password_file, password_env, &oauth.oauth_provider) {
                (Some(path), _, _) => Some(read_secret_file(&key, path)?),
                (None, Some(variable), _) => Some(read_secret_env(&key, variable)?),
                (None, None, Some(_)) => None,
                (None, None, None) => anyhow::bail!(
                    "give --password-file or --password-env (or --oauth-provider to sign in with OAuth2)"
                ),
            };
            let mut body = json!({
                "name": name, "kind": "imap", "host": host, "port": port, "tls": tls,
                "username": username, "password": password.as_ref().map(|secret| secret.expose()),
                "ca_file": ca_file, "folders": folders, "insecure": insecure,
            });
            add_oauth(&mut body, name, oauth)?;
            add_smtp(&mut body, name, smtp)?;
            body
        }
        MailboxAction::AddMaildir {
            name, path, smtp, ..
        } => {
            let absolute = std::path::absolute(path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            let mut body = json!({ "name": name, "kind": "maildir", "path": absolute });
            add_smtp(&mut body, name, smtp)?;
            body
        }
        _ => return Ok(None),
    }))
}

fn add_oauth(body: &mut Value, name: &str, oauth: &OAuthArgs) -> anyhow::Result<()> {
    let Some(provider) = &oauth.oauth_provider else {
        return Ok(());
    };
    let secret = match &oauth.oauth_client_secret_file {
        Some(path) => Some(read_secret_file(
            &format!("mailbox `{name}` oauth client secret"),
            path,
        )?),
        None => None,
    };
    body["oauth"] = json!({
        "provider": provider, "client_id": oauth.oauth_client_id, "tenant": oauth.oauth_tenant,
        "client_secret": secret.as_ref().map(|secret| secret.expose()),
        "mechanism": oauth.oauth_mechanism, "redirect_port": oauth.oauth_redirect_port,
        "authorization_url": oauth.oauth_authorization_url, "token_url": oauth.oauth_token_url,
        "scopes": (!oauth.oauth_scopes.is_empty()).then_some(&oauth.oauth_scopes),
    });
    Ok(())
}

fn add_smtp(body: &mut Value, name: &str, smtp: &SmtpArgs) -> anyhow::Result<()> {
    if smtp.smtp_host.is_none() && !smtp.smtp_oauth {
        if smtp.address.is_some() {
            anyhow::bail!(
                "--address needs --smtp-host (the relay replies are sent through) or --smtp-oauth"
            );
        }
        return Ok(());
    }
    let host = &smtp.smtp_host;
    let password = match &smtp.smtp_password_file {
        Some(path) => Some(read_secret_file(
            &format!("mailbox `{name}` smtp password"),
            path,
        )?),
        None => None,
    };
    body["address"] = json!(smtp.address);
    body["display_name"] = json!(smtp.display_name);
    body["smtp"] = json!({
        "host": host, "port": smtp.smtp_port, "tls": smtp.smtp_tls, "username": smtp.smtp_username,
        "password": password.as_ref().map(|secret| secret.expose()), "ca_file": smtp.smtp_ca_file,
        "insecure": smtp.smtp_insecure, "oauth": smtp.smtp_oauth,
    });
    Ok(())
}

async fn mailbox(client: &DaemonClient, action: MailboxAction) -> anyhow::Result<Outcome> {
    let body = mailbox_body(&action)?;
    Ok(mailbox_call(client, action, body).await)
}

async fn mailbox_call(
    client: &DaemonClient,
    action: MailboxAction,
    body: Option<Value>,
) -> Outcome {
    match action {
        MailboxAction::List { json } | MailboxAction::Status { name: None, json } => {
            let value = client.call(Method::GET, "/v1/mailboxes", None).await?;
            output::mailboxes(
                value["mailboxes"].as_array().map_or(&[], Vec::as_slice),
                json,
            );
        }
        MailboxAction::Status {
            name: Some(name),
            json,
        } => {
            let value = client
                .call(
                    Method::GET,
                    &format!("/v1/mailboxes/{}", encode(&name)),
                    None,
                )
                .await?;
            output::mailboxes(&[value], json);
        }
        MailboxAction::AddImap { name, json, .. }
        | MailboxAction::AddMaildir { name, json, .. } => {
            let value = client
                .call(Method::POST, "/v1/mailboxes", body.as_ref())
                .await?;
            if json {
                output::json(&value);
            } else {
                println!("mailbox {name} saved; the daemon starts syncing it within seconds");
            }
        }
        MailboxAction::Remove {
            name,
            delete_messages,
            json,
        } => {
            let value = client
                .call(
                    Method::DELETE,
                    &format!(
                        "/v1/mailboxes/{}?delete_messages={delete_messages}",
                        encode(&name)
                    ),
                    None,
                )
                .await?;
            if json {
                output::json(&value);
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
            return crate::commands_oauth::authorize_through_daemon(
                client,
                &name,
                port,
                timeout_secs,
                json,
            )
            .await;
        }
        MailboxAction::Test { name, json } => {
            let value = client
                .call(
                    Method::POST,
                    &format!("/v1/mailboxes/{}/test", encode(&name)),
                    None,
                )
                .await?;
            output::connection_test(&value, json);
            if value["ok"] != true {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
