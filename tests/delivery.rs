//! Replies and delivery events end to end, against the test Postfix and Dovecot: a reply is delivered
//! (`queued`, `sent`, then `delivered` from Postfix's success DSN); a reply to an unknown local user comes
//! back as a real Postfix bounce, is ingested and becomes a `bounced` event with 5.1.1 on the right
//! message without opening a conversation; an SMTP server that is down gives retries and then `failed`;
//! kill -9 while sending gives no duplicate.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn inboxd(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(common::binary());
    command.arg("--config").arg(config).args(args);
    command
}

fn kill(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    folder: String,
}

/// A support mailbox watching a fresh folder and INBOX (where DSNs to the VERP address land), sending
/// through the test Postfix.
async fn setup(lab: &common::Lab, smtp_port: u16, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = common::unique("t-");
    let mut client = lab.client("support").await;
    client.create_folder(&folder).await.expect("folder");
    client.logout().await;
    let table = lab
        .mailbox_toml(dir.path(), "support", "support", &folder)
        .replace(
            &format!("folders = [\"{folder}\"]"),
            &format!("folders = [\"{folder}\", \"INBOX\"]"),
        );
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ingest]\npoll_interval_secs = 1\n[outbox]\nretry_base_secs = 1\nmax_attempts = 3\ninterrupted_grace_secs = 15\n{table}address = \"support@{}\"\ndisplay_name = \"Support\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ninsecure = true\n{extra}",
            dir.path().join("data").display(),
            lab.domain
        ),
    )
    .expect("config");
    Setup {
        _dir: dir,
        config,
        folder,
    }
}

async fn customer_writes(
    lab: &common::Lab,
    folder: &str,
    from_user: &str,
    subject: &str,
) -> String {
    let id = format!("{}@example.org", common::unique("cust"));
    let raw = common::message(
        &id,
        subject,
        &lab.user(from_user),
        "Hello support, please help.",
    );
    let mut client = lab.client("support").await;
    client.append(folder, &raw).await.expect("append");
    client.logout().await;
    id
}

/// Waits until a conversation with `subject` exists and returns its id.
fn conversation_with(config: &Path, subject: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let output = inboxd(config, &["conversations", "--json", "--limit", "100000"])
            .output()
            .expect("cli");
        if !output.status.success() {
            std::thread::sleep(Duration::from_millis(300));
            continue; // the daemon may still be creating the database
        }
        let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        if let Some(found) = list.as_array().and_then(|items| {
            items
                .iter()
                .find(|item| item["subject"].as_str() == Some(subject))
        }) {
            return found["id"].as_str().map(str::to_string);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}

fn reply(config: &Path, conversation: &str, text: &str, to: Option<&str>) -> String {
    let body = config.with_file_name(format!("{}.txt", common::unique("body")));
    std::fs::write(&body, text).expect("body");
    let mut args = vec![
        "reply",
        conversation,
        "--body-file",
        body.to_str().expect("utf8"),
        "--json",
    ];
    if let Some(to) = to {
        args.extend(["--to", to]);
    }
    let value = common::cli_json(config, &args);
    value["message_id"]
        .as_str()
        .expect("message id")
        .to_string()
}

/// Events of one message of a conversation, as (event, status) pairs.
fn events(config: &Path, conversation: &str, message: &str) -> Vec<(String, Option<String>)> {
    let view = common::cli_json(config, &["show", conversation, "--json"]);
    view["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["id"].as_str() == Some(message))
        .flat_map(|m| m["events"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn wait_for_event(
    config: &Path,
    conversation: &str,
    message: &str,
    kind: &str,
    limit: Duration,
) -> Vec<(String, Option<String>)> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = events(config, conversation, message);
        if seen.iter().any(|(event, _)| event == kind) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test]
async fn replies_are_delivered_and_bounces_become_events() {
    let Some(lab) = common::lab() else { return };
    let setup = setup(&lab, lab.smtp_port, "").await;
    let mut daemon = inboxd(&setup.config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let subject = format!("printer {}", common::unique("p"));
    customer_writes(&lab, &setup.folder, "alice", &subject).await;
    let conversation =
        conversation_with(&setup.config, &subject, Duration::from_secs(30)).expect("ingested");

    // A reply to the customer (alice): queued, sent by Postfix, then its success DSN says delivered.
    let good = reply(&setup.config, &conversation, "We are on it.", None);
    let seen = wait_for_event(
        &setup.config,
        &conversation,
        &good,
        "delivered",
        Duration::from_secs(60),
    );
    let kinds: Vec<&str> = seen.iter().map(|(e, _)| e.as_str()).collect();
    assert!(kinds.starts_with(&["queued", "sent"]), "{kinds:?}");
    assert!(
        kinds.contains(&"delivered"),
        "success DSN recorded: {kinds:?}"
    );

    // A reply to a user that does not exist: Postfix accepts it, LMTP refuses, a real DSN comes back.
    let before = common::cli_json(
        &setup.config,
        &["conversations", "--json", "--limit", "100000"],
    );
    let bad = reply(
        &setup.config,
        &conversation,
        "Hello?",
        Some(&format!("nobody-{}@{}", common::unique("n"), lab.domain)),
    );
    let seen = wait_for_event(
        &setup.config,
        &conversation,
        &bad,
        "bounced",
        Duration::from_secs(60),
    );
    let bounced = seen
        .iter()
        .find(|(e, _)| e == "bounced")
        .unwrap_or_else(|| panic!("no bounce event: {seen:?}"));
    assert_eq!(bounced.1.as_deref(), Some("5.1.1"), "{seen:?}");
    let after = common::cli_json(
        &setup.config,
        &["conversations", "--json", "--limit", "100000"],
    );
    let ours = |list: &serde_json::Value| {
        list.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i["subject"].as_str().is_some_and(|s| s.contains(&subject)))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(
        ours(&before),
        ours(&after),
        "the bounce opened no conversation about this thread"
    );
    let view = common::cli_json(&setup.config, &["show", &conversation, "--json"]);
    let messages = view["messages"].as_array().expect("messages");
    assert!(
        messages.iter().any(|m| m["is_bounce"] == true),
        "the bounce is kept with its conversation"
    );
    assert!(
        messages.iter().any(|m| m["direction"] == "outbound"),
        "replies are in the conversation"
    );
    kill(&daemon, "TERM");
    let _ = daemon.wait();
}

#[tokio::test]
async fn an_smtp_server_that_is_down_gives_retries_then_failed() {
    let Some(lab) = common::lab() else { return };
    let setup = setup(&lab, 9, "").await; // nothing listens on 127.0.0.1:9
    let mut daemon = inboxd(&setup.config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let subject = format!("down {}", common::unique("d"));
    customer_writes(&lab, &setup.folder, "bob", &subject).await;
    let conversation =
        conversation_with(&setup.config, &subject, Duration::from_secs(30)).expect("ingested");
    let message = reply(&setup.config, &conversation, "Sorry for the wait.", None);
    let seen = wait_for_event(
        &setup.config,
        &conversation,
        &message,
        "failed",
        Duration::from_secs(30),
    );
    let kinds: Vec<&str> = seen.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        kinds,
        ["queued", "deferred", "deferred", "failed"],
        "max_attempts = 3"
    );
    kill(&daemon, "TERM");
    let _ = daemon.wait();
}

#[tokio::test]
async fn kill_9_while_sending_gives_no_duplicate() {
    let Some(lab) = common::lab() else { return };
    let setup = setup(&lab, lab.smtp_port, "").await;
    let subject = format!("burst {}", common::unique("b"));
    customer_writes(&lab, &setup.folder, "bob", &subject).await;
    let mut daemon = inboxd(&setup.config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let conversation =
        conversation_with(&setup.config, &subject, Duration::from_secs(30)).expect("ingested");
    kill(&daemon, "KILL");
    let _ = daemon.wait();
    let mut replies = Vec::new();
    for n in 0..12 {
        replies.push(reply(
            &setup.config,
            &conversation,
            &format!("update {n}"),
            None,
        ));
    }
    for delay in [60u64, 120, 250] {
        let mut daemon = inboxd(&setup.config, &["serve"])
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        std::thread::sleep(Duration::from_millis(delay));
        kill(&daemon, "KILL");
        let _ = daemon.wait();
    }
    daemon = inboxd(&setup.config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    // Every reply reaches its recipient exactly once: accepted by the relay (a `sent` event), or — when a
    // kill hit the SMTP transaction — settled by the relay's DSN or sent again after the grace period.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut reached = 0;
    while Instant::now() < deadline {
        reached = 0;
        for id in &replies {
            let seen = events(&setup.config, &conversation, id);
            let count = |kind: &str| seen.iter().filter(|(e, _)| e == kind).count();
            assert!(count("sent") <= 1, "reply {id} sent twice: {seen:?}");
            assert!(
                count("delivered") <= 1,
                "reply {id} delivered twice: {seen:?}"
            );
            assert_eq!(count("failed"), 0, "reply {id} given up: {seen:?}");
            if count("sent") == 1 || count("delivered") == 1 {
                reached += 1;
            }
        }
        if reached == replies.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "{reached} of {} replies reached bob exactly once after 4 kills",
        replies.len()
    );
    assert_eq!(reached, replies.len(), "no reply lost");
    kill(&daemon, "TERM");
    let _ = daemon.wait();
}
