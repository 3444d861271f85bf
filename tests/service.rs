//! inboxd as a systemd service: the real binary with the sd_notify protocol (READY, WATCHDOG, STOPPING),
//! SIGTERM in the middle of a large sync, SIGHUP reloads, startup checks, and the unit's hardening score.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example_table() -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/maildir");
    format!(
        "[[mailbox]]\nname = \"example\"\nkind = \"maildir\"\npath = \"{}\"\n",
        example.display()
    )
}

fn receive_until(
    socket: &UnixDatagram,
    wanted: &str,
    limit: Duration,
    seen: &mut Vec<String>,
) -> bool {
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(size) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..size]).into_owned();
            let hit = text.contains(wanted);
            seen.push(text);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn notify_socket_gets_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n{}",
            dir.path().join("data").display(),
            example_table()
        ),
    )
    .expect("config");
    let mut daemon = common::inboxd(&config, &["serve"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut seen = Vec::new();
    assert!(
        receive_until(&socket, "READY=1", Duration::from_secs(30), &mut seen),
        "READY=1: {seen:?}"
    );
    let ready = seen
        .iter()
        .find(|text| text.contains("READY=1"))
        .expect("ready");
    assert!(ready.contains("STATUS="), "{ready}");
    // Pings at half of WATCHDOG_USEC: at least two within 3.5 s, with no gap over the timeout.
    let mut pings = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(3500);
    let mut buffer = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(size) = socket.recv(&mut buffer)
            && String::from_utf8_lossy(&buffer[..size]).contains("WATCHDOG=1")
        {
            pings.push(Instant::now());
        }
    }
    assert!(pings.len() >= 2, "watchdog pings: {}", pings.len());
    assert!(
        pings
            .windows(2)
            .all(|pair| pair[1] - pair[0] < Duration::from_secs(2))
    );
    common::signal(&daemon, "TERM");
    let mut seen = Vec::new();
    assert!(
        receive_until(&socket, "STOPPING=1", Duration::from_secs(10), &mut seen),
        "{seen:?}"
    );
    let status = common::wait_exit(&mut daemon, Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_mid_sync_exits_in_time_and_loses_nothing() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let filler: String = (0..300)
        .map(|n| format!("line {n} of the customer's long explanation\r\n"))
        .collect();
    let folder = common::unique("t-");
    let prefix = common::unique("term");
    let mut client = lab.client("support").await;
    client.create_folder(&folder).await.expect("folder");
    let total = 400u64;
    for n in 0..total {
        let raw = common::message(
            &format!("{prefix}-{n}@x"),
            &format!("case {n}"),
            "c@example.org",
            &filler,
        );
        client.append(&folder, &raw).await.expect("append");
    }
    client.logout().await;
    let data = dir.path().join("data");
    let config = dir.path().join("inboxd.toml");
    let table = lab.mailbox_toml(dir.path(), "support", "support", &folder);
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ingest]\nbatch_size = 10\n{table}",
            data.display()
        ),
    )
    .expect("config");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            common::count_messages(&data).await >= 10
        })
        .await
    );
    let at_signal = common::count_messages(&data).await;
    let started = Instant::now();
    common::signal(&daemon, "TERM");
    let status = common::wait_exit(&mut daemon, Duration::from_secs(30))
        .expect("exits within TimeoutStopSec=30s");
    eprintln!(
        "exit after {:?} with {at_signal} of {total} stored at SIGTERM",
        started.elapsed()
    );
    assert!(status.success(), "{status:?}");
    let after = common::count_messages(&data).await;
    assert!(after <= total);
    let output = common::inboxd(&config, &["sync", "--once", "--json"])
        .output()
        .expect("sync");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        common::count_messages(&data).await,
        total,
        "nothing lost, nothing twice"
    );
}

#[tokio::test]
async fn sighup_reloads_mailboxes_from_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("inboxd.toml");
    let base = format!(
        "data_dir = \"{}\"\n[ingest]\npoll_interval_secs = 1\n",
        data.display()
    );
    std::fs::write(&config, &base).expect("config");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            data.join("inboxd.db").exists()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(common::count_messages(&data).await, 0);
    std::fs::write(&config, format!("{base}{}", example_table())).expect("config");
    common::signal(&daemon, "HUP");
    assert!(
        common::wait_until(Duration::from_secs(20), || async {
            common::count_messages(&data).await >= 10
        })
        .await,
        "the mailbox added to the config starts syncing after SIGHUP"
    );
    // A broken config on reload is refused and the daemon keeps running.
    std::fs::write(&config, "data_dir = 5\n").expect("config");
    common::signal(&daemon, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.try_wait().expect("wait").is_none(), "still running");
    common::signal(&daemon, "TERM");
    assert!(
        common::wait_exit(&mut daemon, Duration::from_secs(10))
            .expect("exits")
            .success()
    );
}

#[test]
fn an_open_key_file_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("master.key");
    inboxd::crypto::create_key_file(&key).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().join("data").display(),
            key.display()
        ),
    )
    .expect("config");
    let output = common::inboxd(&config, &["migrate"])
        .output()
        .expect("migrate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("WARN") && log.contains("chmod 600"), "{log}");
}

#[test]
fn unit_file_is_hardened() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/inboxd.service");
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=15"])
        .arg(&unit)
        .output();
    let Ok(output) = output else {
        common::missing::<()>("systemd-analyze");
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let score = text
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|word| word.parse::<f32>().ok())
        })
        .expect("an exposure score");
    eprintln!("exposure score {score}");
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{text}");
    assert!(
        output.status.success(),
        "systemd-analyze --threshold=15 refused the unit"
    );
}
