//! Crash harness: the real `inboxd serve` is killed with SIGKILL at random points (seeded; the seed is
//! printed, `INBOXD_CRASH_SEED=N` replays a run) 50+ times in a row, restarted each time, while it
//! ingests new mail over IMAP, commits the search index, purges expired conversations and sends replies
//! through the lab's Postfix. Then one clean run, and the checks: no message lost, none duplicated, no
//! reply sent twice (counted where Postfix delivered them: alice's Maildir in the lab Dovecot), the index
//! agrees with the store, every conversation decrypts.
mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::sha;
use inboxd::store::Store;
use inboxd::store::entities::{conversation, message, outbox};
use rand::{Rng, SeedableRng};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

const ROUNDS: usize = 52;

async fn store(data: &Path) -> Store {
    Store::connect(
        &format!("sqlite://{}", data.join("inboxd.db").display()),
        &data.join("blobs"),
    )
    .await
    .expect("connect")
}

fn serve(config: &Path) -> Child {
    common::serve_logged(config)
}

fn log_tail(config: &Path) -> String {
    common::daemon_log_tail(config, 30)
}

/// Conversations by subject, read through the CLI (offline: the daemon is stopped).
fn conversations(config: &Path) -> Vec<(String, String)> {
    let listed = common::cli_json(config, &["conversations", "--json", "--limit", "100000"]);
    listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|row| {
            Some((
                row["id"].as_str()?.to_owned(),
                row["subject"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Makes the conversations whose subject starts with "old " 90 days old, so the purge takes them.
async fn age_old(data: &Path, listed: &[(String, String)]) {
    let ids: Vec<uuid::Uuid> = listed
        .iter()
        .filter(|(_, subject)| subject.starts_with("old "))
        .filter_map(|(id, _)| id.parse().ok())
        .collect();
    if ids.is_empty() {
        return;
    }
    let store = store(data).await;
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::LastActivityAt,
            Expr::value(inboxd::clock::now() - chrono::Duration::days(90)),
        )
        .filter(conversation::Column::Id.is_in(ids))
        .exec(&store.db)
        .await
        .expect("age");
    store.close().await.expect("close");
}

/// Files in a Maildir (new and cur) whose content holds `token`.
fn delivered(maildir: &Path, tokens: &[String]) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = tokens.iter().map(|t| (t.clone(), 0)).collect();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(maildir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(raw) = std::fs::read(entry.path()) else {
                continue;
            };
            let text = String::from_utf8_lossy(&raw);
            for (token, count) in counts.iter_mut() {
                if text.contains(token.as_str()) {
                    *count += 1;
                }
            }
        }
    }
    counts
}

/// Outbox states of a reply the relay accepted (`delivered` once its success DSN came back).
fn accepted(state: &str) -> bool {
    state == "sent" || state == "delivered"
}

#[tokio::test]
async fn sigkill_at_random_points_loses_duplicates_and_resends_nothing() {
    let Some(lab) = common::lab() else { return };
    let seed: u64 = std::env::var("INBOXD_CRASH_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    eprintln!("crash harness seed {seed} (replay: INBOXD_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let folder = common::unique("t-");
    let mut client = lab.client("bob").await;
    client.create_folder(&folder).await.expect("folder");
    client.logout().await;
    // Bob's INBOX is watched too: the relay's DSNs to the VERP sender land there and settle sends
    // that a kill interrupted.
    let table = lab
        .mailbox_toml(dir.path(), "crash", "bob", &folder)
        .replace(
            &format!("folders = [\"{folder}\"]"),
            &format!("folders = [\"{folder}\", \"INBOX\"]"),
        );
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[ingest]\npoll_interval_secs = 1\nbatch_size = 4\n[retention]\npurge_interval_secs = 3600\nbatch_size = 2\n[outbox]\nretry_base_secs = 1\ninterrupted_grace_secs = 4\n{table}address = \"bob@{}\"\ndisplay_name = \"Crash Support\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {}\ninsecure = true\n",
            data.display(),
            lab.domain,
            lab.smtp_port
        ),
    )
    .expect("config");
    let alice_maildir = lab.infra_root.join("mail/alice/Maildir");
    let tag = common::unique("crash");
    common::cli_ok(&config, &["sync", "--once"]);
    common::cli_ok(&config, &["retention", "set", "crash", "--days", "30"]);

    let mut keep: Vec<Vec<u8>> = Vec::new();
    let mut old = 0usize;
    let mut tokens: Vec<String> = Vec::new();
    let mut replied: HashSet<String> = HashSet::new();
    let mut kills = 0;
    for round in 0..ROUNDS {
        // New mail for the ingest (two kept, one that will expire).
        let mut client = lab.client("bob").await;
        for (kind, n) in [("keep", 2 * round), ("keep", 2 * round + 1), ("old", round)] {
            let raw = common::message(
                &format!("{tag}-{kind}-{n}@crash"),
                &format!("{kind} {n}"),
                &format!("customer{n}@example.org"),
                &format!("{kind}word {n} {}", "filler text ".repeat(200)),
            );
            client.append(&folder, &raw).await.expect("append");
            if kind == "keep" {
                keep.push(raw);
            } else {
                old += 1;
            }
        }
        client.logout().await;
        // Offline: expire what arrived as "old", queue a reply in one kept conversation.
        let listed = conversations(&config);
        age_old(&data, &listed).await;
        if let Some((id, _)) = listed
            .iter()
            .find(|(id, subject)| subject.starts_with("keep ") && !replied.contains(id))
        {
            let token = format!("{tag}reply{round}x");
            let body = dir.path().join("reply.txt");
            std::fs::write(&body, format!("Answer {token}\n")).expect("body");
            common::cli_ok(
                &config,
                &[
                    "reply",
                    id,
                    "--body-file",
                    body.to_str().expect("utf8"),
                    "--to",
                    &lab.user("alice"),
                    "--json",
                ],
            );
            replied.insert(id.clone());
            tokens.push(token);
        }
        // Run, and kill at a random point: during start-up purge, ingest, index commit or sending.
        let mut daemon = serve(&config);
        let delay = rng.gen_range(20..1500);
        std::thread::sleep(Duration::from_millis(delay));
        if daemon.try_wait().expect("wait").is_none() {
            common::signal(&daemon, "KILL");
            kills += 1;
        } else {
            panic!(
                "the daemon exited by itself in round {round}:\n{}",
                log_tail(&config)
            );
        }
        let _ = daemon.wait();
    }
    // Whatever "old" arrived last expires too (ingested first: the last killed daemon may not have fetched
    // it yet); then one clean run finishes every job.
    common::cli_ok(&config, &["sync", "--once"]);
    let listed = conversations(&config);
    age_old(&data, &listed).await;
    let mut daemon = serve(&config);
    let expected_inbound: HashSet<String> = keep.iter().map(|raw| sha(raw)).collect();
    let settled = common::wait_until(Duration::from_secs(90), || async {
        let store = store(&data).await;
        let open = outbox::Entity::find()
            .filter(outbox::Column::State.is_in(["queued", "sending", "retry", "unknown"]))
            .all(&store.db)
            .await
            .map_or(usize::MAX, |rows| rows.len());
        let stored = message::Entity::find()
            .filter(message::Column::Direction.eq("inbound"))
            .all(&store.db)
            .await
            .map_or(0, |rows| rows.len());
        let _ = store.db.close().await;
        open == 0 && stored >= keep.len()
    })
    .await;
    // Let the sender's DSNs and the last index commit land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    common::signal(&daemon, "TERM");
    let status = common::wait_exit(&mut daemon, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean stop:\n{}",
        log_tail(&config)
    );
    assert!(settled, "every job finished:\n{}", log_tail(&config));

    // The store: every kept message exactly once, no expired one, everything decrypts.
    let store = store(&data).await;
    let key = inboxd::crypto::load_key_file(&data.join("master.key"))
        .expect("key")
        .key;
    let mut inbound: HashMap<String, usize> = HashMap::new();
    let mut outbound = 0usize;
    let all_conversations = conversation::Entity::find()
        .all(&store.db)
        .await
        .expect("conversations");
    for row in &all_conversations {
        let view = inboxd::store::read::conversation(&store.db, &key, row.id)
            .await
            .expect("every conversation decrypts");
        for message in view.messages {
            if message.direction == "outbound" {
                outbound += 1;
                continue;
            }
            let raw =
                inboxd::store::read::raw_message(&store.db, &key, store.blob_dir(), message.id)
                    .await
                    .expect("every raw message decrypts");
            *inbound.entry(sha(&raw)).or_insert(0) += 1;
        }
    }
    let lost = expected_inbound
        .iter()
        .filter(|d| !inbound.contains_key(*d))
        .count();
    // Only this test's messages count: bob's INBOX also holds DSNs and other tests' mail.
    let duplicated: usize = expected_inbound
        .iter()
        .filter_map(|d| inbound.get(d))
        .map(|n| n - 1)
        .sum();
    let decrypted = all_conversations.len();
    let subjects = conversations(&config);
    let old_left = subjects
        .iter()
        .filter(|(_, subject)| subject.starts_with("old "))
        .count();
    let stored_ids: HashSet<uuid::Uuid> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .into_tuple::<uuid::Uuid>()
        .all(&store.db)
        .await
        .expect("ids")
        .into_iter()
        .collect();
    let states: Vec<String> = outbox::Entity::find()
        .all(&store.db)
        .await
        .expect("outbox")
        .into_iter()
        .map(|row| row.state)
        .collect();
    store.close().await.expect("close");
    let (index, _) =
        inboxd::search::indexer::open_index(&data.join("index"), &key, 64 << 20).expect("index");
    let indexed = index.indexed_message_ids().expect("indexed ids");
    drop(index);

    // Replies: each delivered at most once (Postfix -> Dovecot LMTP -> alice's Maildir).
    let deliveries = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts = delivered(&alice_maildir, &tokens);
            let sent = states.iter().filter(|s| accepted(s)).count();
            if counts.values().filter(|n| **n >= 1).count() >= sent || Instant::now() > deadline {
                break counts;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let sent_twice = deliveries.values().filter(|n| **n > 1).count();
    let delivered_once = deliveries.values().filter(|n| **n == 1).count();
    let mut state_counts: HashMap<&str, usize> = HashMap::new();
    for state in &states {
        *state_counts.entry(state.as_str()).or_insert(0) += 1;
    }
    eprintln!(
        "crash harness (seed {seed}): {kills} SIGKILLs in {ROUNDS} rounds, {:.0} s; inbound checked {} (+{old} expired), lost {lost}, duplicated {duplicated}, expired left {old_left}; replies {} queued, outbox states {state_counts:?}, delivered once {delivered_once}, sent twice {sent_twice}; outbound stored {outbound}; index {} docs for {} messages; {decrypted} conversations decrypted",
        started.elapsed().as_secs_f64(),
        expected_inbound.len(),
        tokens.len(),
        indexed.len(),
        stored_ids.len(),
    );
    // Where the kills landed, as the restarted daemons found it.
    let log = std::fs::read_to_string(config.with_file_name("daemon.log")).unwrap_or_default();
    eprintln!(
        "crash harness log: {} starts reached 'running', {} found sends interrupted mid-send, {} swept blobs of interrupted batches, {} purge runs removed conversations",
        log.matches("inboxd running").count(),
        log.matches("interrupted mid-send").count(),
        log.matches("removed blob files of interrupted batches")
            .count(),
        log.matches("purged expired conversations").count(),
    );
    assert!(kills >= 50, "50+ kills in a row");
    assert_eq!(lost, 0, "no message lost");
    assert_eq!(duplicated, 0, "no message duplicated");
    assert_eq!(old_left, 0, "every expired conversation was purged");
    assert_eq!(sent_twice, 0, "no reply sent twice: {deliveries:?}");
    assert_eq!(outbound, tokens.len(), "every reply stored once");
    assert_eq!(indexed, stored_ids, "the index agrees with the store");
    assert_eq!(
        states.iter().filter(|s| accepted(s)).count(),
        delivered_once,
        "every reply marked sent was delivered, once: {deliveries:?} {state_counts:?}"
    );
}
