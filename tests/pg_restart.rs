//! PostgreSQL restarted under the running daemon. The test owns its cluster: `initdb` of the installed
//! PostgreSQL into a temp dir, run as the `postgres` user on a free port (the machine's shared cluster is
//! never touched), stopped and started again by `pg_ctl` while mail keeps arriving. The daemon must
//! report the outage (/readyz answers 503, the log says why), retry, and resume without losing or
//! duplicating a message. The cluster is stopped and removed afterwards, whatever happens.
mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inboxd::store::Store;
use inboxd::store::entities::message;
use sea_orm::EntityTrait;

/// A PostgreSQL cluster of this test alone.
struct Cluster {
    root: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max();
        let Some(bin) = bin else {
            return common::missing("PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb)");
        };
        let root = tempfile::Builder::new()
            .prefix("inboxd-pg-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("free port");
        let cluster = Cluster { root, bin, port };
        let data = cluster.data();
        let initdb = cluster.as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf8"),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        if !initdb || !cluster.ctl(&["start"]) {
            return common::missing(
                "a private PostgreSQL cluster (initdb/pg_ctl as user postgres)",
            );
        }
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_postgres(&self, program: &str, args: &[&str]) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// `pg_ctl start|stop` on this cluster (waiting for the result).
    fn ctl(&self, action: &[&str]) -> bool {
        let data = self.data();
        let log = self.root.path().join("pg.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.root.path().display()
        );
        let mut args = vec![
            "-D",
            data.to_str().expect("utf8"),
            "-l",
            log.to_str().expect("utf8"),
            "-o",
            &options,
            "-w",
            "-t",
            "30",
        ];
        args.extend_from_slice(action);
        self.as_postgres("pg_ctl", &args)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.ctl(&["-m", "immediate", "stop"]);
    }
}

use common::sha;

fn drop_in(maildir: &Path, name: &str, raw: &[u8]) {
    let temporary = maildir.join("tmp").join(name);
    std::fs::write(&temporary, raw).expect("write");
    std::fs::rename(&temporary, maildir.join("new").join(name)).expect("deliver");
}

async fn stored(url: &str, blobs: &Path) -> Option<usize> {
    let store = Store::connect(url, blobs).await.ok()?;
    let count = message::Entity::find().all(&store.db).await.ok()?.len();
    let _ = store.db.close().await;
    Some(count)
}

async fn readyz(port: u16) -> Option<u16> {
    let address = format!("127.0.0.1:{port}").parse().ok()?;
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::spawn(async move {
            common::http::http(address, "GET", "/readyz", None, None, b"").await
        }),
    )
    .await
    .ok()?
    .ok()?;
    Some(answer.status)
}

#[tokio::test]
async fn a_postgres_restart_is_reported_retried_and_loses_nothing() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\ndatabase = \"{}\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n[ingest]\npoll_interval_secs = 1\nmax_backoff_secs = 2\nbatch_size = 3\n[[mailbox]]\nname = \"pg\"\nkind = \"maildir\"\npath = \"{}\"\n",
            data.display(),
            cluster.url(),
            maildir.display()
        ),
    )
    .expect("config");
    let log_path = dir.path().join("daemon.log");
    let mut daemon = common::inboxd(&config, &["serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("serve");
    let blobs = data.join("blobs");
    let tag = common::unique("pg");
    let mut all = Vec::new();
    let mut add = |n: usize| {
        let raw = common::message(
            &format!("{tag}-{n}@pg"),
            &format!("pg {n}"),
            "customer@example.org",
            &format!("message {n}"),
        );
        drop_in(&maildir, &format!("{n:04}.pg.host"), &raw);
        all.push(raw);
    };
    for n in 0..10 {
        add(n);
    }
    let url = cluster.url();
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            stored(&url, &blobs).await == Some(10)
        })
        .await,
        "the first messages are stored"
    );
    assert_eq!(readyz(api_port).await, Some(200), "ready before the outage");

    // The outage: the server stops; mail keeps arriving.
    let down_at = Instant::now();
    assert!(cluster.ctl(&["-m", "fast", "stop"]), "stop the cluster");
    for n in 10..30 {
        add(n);
    }
    let not_ready = common::wait_until(Duration::from_secs(20), || async {
        readyz(api_port).await == Some(503)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let alive_during = daemon.try_wait().expect("wait").is_none();
    assert!(cluster.ctl(&["start"]), "start the cluster again");
    let outage = down_at.elapsed();
    let up_at = Instant::now();
    let complete = common::wait_until(Duration::from_secs(60), || async {
        stored(&url, &blobs).await == Some(30)
    })
    .await;
    let resumed = up_at.elapsed();
    let ready_again = common::wait_until(Duration::from_secs(20), || async {
        readyz(api_port).await == Some(200)
    })
    .await;
    common::signal(&daemon, "TERM");
    let exit = common::wait_exit(&mut daemon, Duration::from_secs(20));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        not_ready,
        "/readyz answers 503 while the database is down:\n{log}"
    );
    assert!(
        alive_during,
        "the daemon stays up through the outage:\n{log}"
    );
    assert!(complete, "ingest resumes after the restart:\n{log}");
    assert!(ready_again, "/readyz is 200 again");
    assert!(exit.is_some_and(|s| s.success()), "clean stop:\n{log}");
    let reported = log
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .count();
    assert!(reported > 0, "the outage is in the log:\n{log}");

    let store = Store::connect(&url, &blobs).await.expect("store");
    let key = inboxd::crypto::load_key_file(&data.join("master.key"))
        .expect("key")
        .key;
    let digests = common::stored_digests(&store, &key).await;
    store.close().await.expect("close");
    let distinct: HashSet<String> = digests.keys().cloned().collect();
    let wanted: HashSet<String> = all.iter().map(|raw| sha(raw)).collect();
    let lost = wanted.difference(&distinct).count();
    let duplicated: usize = digests.values().map(|n| n - 1).sum();
    eprintln!(
        "postgres restart: down {:.1} s, ingest complete {:.1} s after it came back, {reported} warnings logged; checked {}, lost {lost}, duplicated {duplicated}",
        outage.as_secs_f64(),
        resumed.as_secs_f64(),
        wanted.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(distinct, wanted);
}
