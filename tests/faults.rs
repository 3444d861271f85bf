//! Broken servers: the real `inboxd serve` syncs a private Dovecot through a private fault proxy
//! (scripts/testlab/tools/faultproxy.py) while the test delays, cuts mid-literal, stalls and resets
//! the connection, and kills and restarts Dovecot in the middle of a sync. After each fault the daemon
//! must reconnect (with backoff) and the store must hold exactly the server's messages: every one,
//! none twice, byte for byte. Dovecot and the proxy are this test's own (own ports, own INFRA_ROOT),
//! so restarting them disturbs no other test.
mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inboxd::imap::{ImapClient, ImapSettings, TlsMode};
use inboxd::store::Store;

fn lab_script(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/testlab")
        .join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A Dovecot of this test alone, started with the lab's own start script under a private INFRA_ROOT.
struct PrivateDovecot {
    root: tempfile::TempDir,
    imap_port: u16,
    imaps_port: u16,
    lmtp_port: u16,
}

impl PrivateDovecot {
    fn start() -> Option<PrivateDovecot> {
        let root = tempfile::Builder::new()
            .prefix("inboxd-faults-")
            .tempdir()
            .expect("tempdir");
        // The Dovecot session processes run as vmail and must reach the Maildirs below it.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let dovecot = PrivateDovecot {
            root,
            imap_port: free_port(),
            imaps_port: free_port(),
            lmtp_port: free_port(),
        };
        if !dovecot.script("dovecot/start.sh", &[]) {
            return common::missing("a private Dovecot (scripts/testlab/dovecot/start.sh)");
        }
        Some(dovecot)
    }

    fn script(&self, script: &str, args: &[&str]) -> bool {
        Command::new("bash")
            .arg(lab_script(script))
            .args(args)
            .env("INFRA_ROOT", self.root.path())
            .env("IMAP_PORT", self.imap_port.to_string())
            .env("IMAPS_PORT", self.imaps_port.to_string())
            .env("LMTP_PORT", self.lmtp_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn ca_file(&self) -> PathBuf {
        self.root.path().join("dovecot/tls/ca.pem")
    }

    fn settings(&self, port: u16) -> ImapSettings {
        ImapSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::Implicit,
            username: "support@inboxd.test".into(),
            password: "secret".into(),
            auth: inboxd::oauth::sasl::AuthMechanism::Password,
            ca_file: Some(self.ca_file()),
            insecure: false,
            timeout: Duration::from_secs(30),
        }
    }
}

impl Drop for PrivateDovecot {
    fn drop(&mut self) {
        self.script("dovecot/stop.sh", &[]);
    }
}

/// faultproxy.py in front of the private Dovecot's IMAPS port, steered over its control port.
struct Proxy {
    child: Child,
    port: u16,
    control: u16,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let port = free_port();
        let control = free_port();
        let child = Command::new("python3")
            .arg(lab_script("tools/faultproxy.py"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(format!("127.0.0.1:{upstream}"))
            .arg("--control")
            .arg(format!("127.0.0.1:{control}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start faultproxy.py (python3)");
        let proxy = Proxy {
            child,
            port,
            control,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", control)).is_err() {
            assert!(Instant::now() < deadline, "faultproxy did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn send(&self, command: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.control)).expect("proxy control");
        stream
            .write_all(format!("{command}\n").as_bytes())
            .expect("send");
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .expect("proxy answer");
        assert!(answer.starts_with("ok"), "{command}: {answer}");
        answer.trim().to_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use common::sha;

/// What the store holds, as raw-message digests with their counts (decrypting every message).
async fn stored_digests(data: &Path) -> HashMap<String, usize> {
    let url = format!("sqlite://{}", data.join("inboxd.db").display());
    let store = Store::connect(&url, &data.join("blobs"))
        .await
        .expect("store");
    let key = inboxd::crypto::load_key_file(&data.join("master.key"))
        .expect("key")
        .key;
    let digests = common::stored_digests(&store, &key).await;
    let _ = store.db.close().await;
    digests
}

/// Lost and duplicated messages of the store against the server's folder.
struct Tally {
    checked: usize,
    lost: usize,
    duplicated: usize,
    foreign: usize,
}

async fn compare(dovecot: &PrivateDovecot, folder: &str, data: &Path) -> Tally {
    let server = common::server_messages_with(&dovecot.settings(dovecot.imaps_port), folder).await;
    let wanted: HashSet<String> = server.iter().map(|raw| sha(raw)).collect();
    let stored = stored_digests(data).await;
    Tally {
        checked: wanted.len(),
        lost: wanted.iter().filter(|d| !stored.contains_key(*d)).count(),
        duplicated: stored.values().map(|n| n - 1).sum(),
        foreign: stored.keys().filter(|d| !wanted.contains(*d)).count(),
    }
}

/// ~200 KB messages: at the throttled bandwidth a phase's fetch lasts a second or two, so a fault
/// lands while literals are in flight.
fn phase_messages(tag: &str, phase: &str, count: usize) -> Vec<Vec<u8>> {
    let line = format!("{phase} {}\r\n", "z".repeat(70));
    (0..count)
        .map(|n| {
            let body: String = (0..2600).map(|i| format!("{i:05} {line}")).collect();
            common::message(
                &format!("{tag}-{phase}-{n}@faults"),
                &format!("{phase} {n}"),
                "customer@example.org",
                &body,
            )
        })
        .collect()
}

async fn count(data: &Path) -> usize {
    usize::try_from(common::count_messages(data).await).unwrap_or(0)
}

#[tokio::test]
async fn every_fault_is_survived_and_the_store_holds_exactly_the_servers_messages() {
    let Some(dovecot) = PrivateDovecot::start() else {
        return;
    };
    let proxy = Proxy::start(dovecot.imaps_port);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let folder = "INBOX";
    let tag = common::unique("f");
    let password = common::write_secret(dir.path(), "pw", "secret");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[ingest]\nbatch_size = 2\npoll_interval_secs = 1\nmax_backoff_secs = 2\nnetwork_timeout_secs = 3\n\
             [[mailbox]]\nname = \"faulty\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nusername = \"support@inboxd.test\"\npassword_file = \"{}\"\nca_file = \"{}\"\nfolders = [\"{folder}\"]\n",
            data.display(),
            proxy.port,
            password.display(),
            dovecot.ca_file().display()
        ),
    )
    .expect("config");
    let log_path = dir.path().join("inboxd.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start inboxd");

    let per_phase = 10;
    let mut expected = 0;
    let phases = [
        "delay",
        "cut-mid-literal",
        "stall",
        "reset",
        "dovecot-killed",
    ];
    for phase in phases {
        let started = Instant::now();
        let before = count(&data).await;
        // A throttled pipe, so the fetch of the phase's messages is in progress when the fault hits.
        proxy.send("pass");
        proxy.send("bandwidth 1500000");
        if phase == "delay" {
            proxy.send("latency 40");
        }
        let mut client = ImapClient::connect(&dovecot.settings(dovecot.imaps_port))
            .await
            .expect("connect to the private dovecot");
        for raw in phase_messages(&tag, phase, per_phase) {
            client.append(folder, &raw).await.expect("append");
        }
        client.logout().await;
        expected += per_phase;
        // Wait until the sync of this phase is under way (one batch stored, not all).
        let under_way = common::wait_until(Duration::from_secs(30), || async {
            count(&data).await > before
        })
        .await;
        assert!(under_way, "{phase}: the sync starts");
        let mid = count(&data).await;
        match phase {
            "delay" => {}
            "cut-mid-literal" => {
                proxy.send("cut_after 50000");
            }
            "stall" => {
                // Longer than network_timeout_secs: the daemon must notice the silence itself.
                proxy.send("blackhole");
                tokio::time::sleep(Duration::from_secs(6)).await;
                proxy.send("pass");
                proxy.send("bandwidth 1500000");
            }
            "reset" => {
                proxy.send("reset");
            }
            "dovecot-killed" => {
                // SIGKILL the session mid-response, stop the server, keep it down for a while (the
                // daemon meets refused connections and backs off), then start it again.
                assert!(
                    dovecot.script("dovecot/fault.sh", &["crash", "support"]),
                    "crash"
                );
                assert!(dovecot.script("dovecot/stop.sh", &[]), "stop dovecot");
                tokio::time::sleep(Duration::from_secs(3)).await;
                assert!(
                    dovecot.script("dovecot/start.sh", &[]),
                    "start dovecot again"
                );
            }
            _ => unreachable!("unknown phase"),
        }
        let all_in = common::wait_until(Duration::from_secs(90), || async {
            count(&data).await >= expected
        })
        .await;
        proxy.send("pass");
        // A moment more, so a duplicate written late would be seen.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let tally = compare(&dovecot, folder, &data).await;
        let line = format!(
            "{phase:>16}: fault at {} of {expected} stored; after {:.1} s: checked {}, lost {}, duplicated {}, not on server {}",
            mid,
            started.elapsed().as_secs_f64(),
            tally.checked,
            tally.lost,
            tally.duplicated,
            tally.foreign
        );
        eprintln!("{line}");
        assert!(all_in, "{phase}: every message arrives after the fault");
        assert_eq!(
            tally.checked, expected,
            "{phase}: the server holds them all"
        );
        assert_eq!(
            (tally.lost, tally.duplicated, tally.foreign),
            (0, 0, 0),
            "{phase}: exactly the server's messages"
        );
    }
    common::signal(&daemon, "TERM");
    let status = common::wait_exit(&mut daemon, Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "clean shutdown after the faults");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let failures = log.matches("mailbox sync failed").count();
    let retries: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("mailbox sync failed"))
        .filter_map(|line| line.split("retry_in_ms=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    eprintln!(
        "fault matrix: {} phases, {expected} messages checked, 0 lost, 0 duplicated; {failures} failed passes, retried after (ms) {retries:?}",
        phases.len(),
    );
    assert!(
        failures >= 3,
        "the cut, the reset and the dead server are each seen as a failed pass and retried: {log}"
    );
}
