//! A full disk under the SQLite data directory: the real `inboxd serve` keeps its data on a small tmpfs
//! (mounted by the test, root only; unmounted by a guard whatever happens), mail keeps arriving until
//! the disk is full. The daemon must stop ingesting with a clear error that names the disk and the fix,
//! lose nothing, keep running (no crash loop), and resume by itself once space returns (the test
//! deletes the file that filled it). Then the store holds every message exactly once.
mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inboxd::store::Store;
use inboxd::store::entities::{mailbox, message};
use sea_orm::EntityTrait;

/// Unmounts the tmpfs when the test ends, passes or fails.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            return common::missing("a tmpfs mount (the test needs root: mount -t tmpfs)");
        }
        Some(Mount(path.to_path_buf()))
    }

    /// Bytes free on the mount.
    fn available(&self) -> u64 {
        let output = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .expect("df");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .expect("df answers a number")
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: a daemon still holding files must not keep the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

use common::sha;

async fn store(data: &Path) -> Option<Store> {
    Store::connect(
        &format!("sqlite://{}", data.join("inboxd.db").display()),
        &data.join("blobs"),
    )
    .await
    .ok()
}

async fn stored(data: &Path) -> usize {
    let Some(store) = store(data).await else {
        return 0;
    };
    let count = message::Entity::find()
        .all(&store.db)
        .await
        .map_or(0, |rows| rows.len());
    let _ = store.db.close().await;
    count
}

async fn mailbox_error(data: &Path) -> Option<(String, String)> {
    let store = store(data).await?;
    let row = mailbox::Entity::find().one(&store.db).await.ok().flatten();
    let _ = store.db.close().await;
    let row = row?;
    Some((row.status, row.last_error.unwrap_or_default()))
}

fn drop_in(maildir: &Path, name: &str, raw: &[u8]) {
    let temporary = maildir.join("tmp").join(name);
    std::fs::write(&temporary, raw).expect("write");
    std::fs::rename(&temporary, maildir.join("new").join(name)).expect("deliver");
}

#[tokio::test]
async fn a_full_disk_stops_ingest_with_a_clear_error_and_it_resumes_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // inboxd refuses to start with less than 64 MB free, so the disk fills up while it runs: a filler
    // file takes all but a few MB once it is up, and deleting it is how space returns.
    let Some(mount) = Mount::tmpfs(&data, "80m") else {
        return;
    };
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[ingest]\npoll_interval_secs = 1\nmax_backoff_secs = 2\nbatch_size = 5\n[[mailbox]]\nname = \"disk\"\nkind = \"maildir\"\npath = \"{}\"\n",
            data.display(),
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
    let tag = common::unique("disk");
    let mut all: Vec<Vec<u8>> = Vec::new();
    let mut add = |n: usize, filler: usize| {
        let raw = common::message(
            &format!("{tag}-{n}@disk"),
            &format!("disk {n}"),
            "customer@example.org",
            &format!("{n:06} {}", "noise ".repeat(filler)),
        );
        drop_in(&maildir, &format!("{n:04}.disk.host"), &raw);
        all.push(raw);
    };
    for n in 0..5 {
        add(n, 100);
    }
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            stored(&data).await == 5
        })
        .await,
        "the first messages are stored"
    );
    let filler = data.join("filler.bin");
    let keep_free = 3 * 1024 * 1024;
    let filler_size = mount.available().saturating_sub(keep_free);
    std::fs::write(
        &filler,
        vec![0u8; usize::try_from(filler_size).expect("size")],
    )
    .expect("fill the disk");
    eprintln!("disk: {} bytes left free", mount.available());
    // ~12 MB more than the disk can take now.
    for n in 5..65 {
        add(n, 35_000);
    }
    let started = Instant::now();
    let reported = common::wait_until(Duration::from_secs(60), || async {
        mailbox_error(&data)
            .await
            .is_some_and(|(status, error)| status != "ok" && !error.is_empty())
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(reported, "the daemon reports the full disk:\n{log}");
    let (status, error) = mailbox_error(&data).await.unwrap_or_default();
    let at_full = stored(&data).await;
    eprintln!(
        "disk full after {:.1} s with {at_full} of 65 stored: mailbox status {status:?}, error {error:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(at_full < 65, "the disk really filled up ({at_full} stored)");
    assert_eq!(status, "disk_full");
    assert!(
        error.contains("disk full")
            && error.contains(&data.display().to_string())
            && error.contains("free some space"),
        "the error names the full disk, its path and the fix: {error}"
    );
    // It stays up and retries (no crash loop), without storing anything half.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        daemon.try_wait().expect("wait").is_none(),
        "the daemon keeps running on a full disk:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    // Space returns: everything arrives, once.
    std::fs::remove_file(&filler).expect("free the space");
    let resumed_at = Instant::now();
    let complete = common::wait_until(Duration::from_secs(60), || async {
        stored(&data).await >= 65
    })
    .await;
    assert!(
        complete,
        "ingest resumes once space returns ({} stored):\n{}",
        stored(&data).await,
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let resumed = resumed_at.elapsed();
    let ok_again = common::wait_until(Duration::from_secs(20), || async {
        mailbox_error(&data)
            .await
            .is_some_and(|(status, _)| status == "ok")
    })
    .await;
    common::signal(&daemon, "TERM");
    let exit = common::wait_exit(&mut daemon, Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "clean stop");
    assert!(ok_again, "the mailbox status returns to ok");
    let store = store(&data).await.expect("store");
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
        "disk full: resumed {:.1} s after space returned; checked {}, lost {lost}, duplicated {duplicated}",
        resumed.as_secs_f64(),
        wanted.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(distinct, wanted);
}
