//! `inboxd mailbox authorize NAME`: offline (this process listens for the redirect and stores the tokens)
//! or through the running daemon (it does the same and this command polls for the outcome).
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use hyper::Method;
use serde_json::json;

use crate::client::{ClientError, DaemonClient, encode};
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::store::{Store, mailboxes};

/// How often the CLI asks the daemon whether the sign-in finished.
const POLL_EVERY: Duration = Duration::from_millis(500);

fn print_url(url: &str, redirect_uri: &str, json: bool) {
    if json {
        crate::commands_output::json(
            &json!({ "state": "pending", "authorization_url": url, "redirect_uri": redirect_uri }),
        );
    } else {
        println!(
            "Open this address in a browser and sign in as the mailbox's account:\n{url}\nwaiting for the provider to redirect to {redirect_uri} ..."
        );
    }
}

fn print_done(name: &str, json: bool) {
    if json {
        crate::commands_output::json(&json!({ "mailbox": name, "state": "authorized" }));
    } else {
        println!("mailbox {name} authorized; its tokens are stored sealed under the master key");
    }
}

/// Runs the whole flow in this process (no daemon runs).
pub async fn authorize_offline(
    store: &Store,
    master: &MasterKey,
    config: &Config,
    name: &str,
    port: Option<u16>,
    timeout_secs: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let all = mailboxes::all_configs(&store.db, master, &config.mailboxes).await?;
    let Some(mailbox) = all.into_iter().find(|mailbox| mailbox.name == name) else {
        bail!("no mailbox named `{name}`; see `inboxd mailbox list`");
    };
    let Some(oauth) = mailbox.oauth().cloned() else {
        bail!(
            "mailbox `{name}` signs in with a password; add a [mailbox.oauth] table to authorize it"
        );
    };
    let mailbox_id = match mailboxes::by_name(&store.db, name).await? {
        Some(row) => row.id,
        None => mailboxes::upsert_from_config(&store.db, &mailbox).await?,
    };
    let (request, pending) = crate::oauth::authorize::start(name, &oauth, port).await?;
    print_url(&request.url, &request.redirect_uri, json);
    let tokens = pending.finish(Duration::from_secs(timeout_secs)).await?;
    crate::oauth::authorize::store(&store.db, master, mailbox_id, &tokens).await?;
    print_done(name, json);
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to run the flow, prints the URL, waits for the outcome.
pub async fn authorize_through_daemon(
    client: &DaemonClient,
    name: &str,
    port: Option<u16>,
    timeout_secs: u64,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let path = format!("/v1/mailboxes/{}/authorize", encode(name));
    let body = json!({ "port": port, "timeout_secs": timeout_secs });
    let started = client.call(Method::POST, &path, Some(&body)).await?;
    print_url(
        started["authorization_url"].as_str().unwrap_or_default(),
        started["redirect_uri"].as_str().unwrap_or_default(),
        json,
    );
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let state = client.call(Method::GET, &path, None).await?;
        match state["state"].as_str() {
            Some("pending") => continue,
            Some("authorized") => {
                print_done(name, json);
                return Ok(ExitCode::SUCCESS);
            }
            _ => {
                let error = state["error"]
                    .as_str()
                    .unwrap_or("the daemon lost track of it");
                eprintln!("inboxd: authorization of {name} failed: {error}");
                return Ok(ExitCode::from(1));
            }
        }
    }
}
