//! Search end to end with the real binary: mail is searchable within seconds of being stored, the index
//! on disk holds no readable text (while the decrypted index does: positive control), bad queries get a
//! clear error, and a lost index is rebuilt from the store (by the daemon, or by `inboxd reindex`).
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CANARY: &str = "Vk9canaryIdx42";

fn inboxd(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(common::binary());
    command.arg("--config").arg(config).args(args);
    command
}

fn search(config: &Path, query: &str) -> Option<serde_json::Value> {
    let output = inboxd(config, &["search", "--json", query])
        .output()
        .expect("search");
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).expect("json"))
}

fn total(config: &Path, query: &str) -> u64 {
    search(config, query)
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0)
}

fn wait_total(config: &Path, query: &str, want: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if total(config, query) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn stop(mut daemon: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
}

fn setup(dir: &Path) -> std::path::PathBuf {
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let attachment = base64_text(&format!("invoice notes {CANARY}attach\n"));
    let with_attachment = format!(
        "Message-ID: <att@x>\r\nFrom: Jörg Müller <joerg@example.org>\r\nTo: support@example.com\r\nSubject: Invoices for March\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the {CANARY} invoices attached.\r\n--b\r\nContent-Type: text/plain; name=\"march-{CANARY}.txt\"\r\nContent-Disposition: attachment; filename=\"march-{CANARY}.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--b--\r\n"
    );
    std::fs::write(maildir.join("new/1.a.host"), with_attachment).expect("write");
    std::fs::write(
        maildir.join("new/2.b.host"),
        common::message(
            "b@x",
            "Password reset",
            "alice@example.net",
            "I cannot log in since Tuesday.",
        ),
    )
    .expect("write");
    let config = dir.join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ingest]\npoll_interval_secs = 1\n[[mailbox]]\nname = \"help\"\nkind = \"maildir\"\npath = \"{}\"\n",
            dir.join("data").display(),
            maildir.display()
        ),
    )
    .expect("config");
    config
}

fn base64_text(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn raw_index_contains(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                return true;
            }
        }
    }
    false
}

#[test]
fn mail_is_searchable_within_seconds_and_the_index_is_unreadable_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let daemon = inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let started = Instant::now();
    assert!(
        wait_total(&config, CANARY, 1, Duration::from_secs(30)),
        "the canary is searchable"
    );
    eprintln!("searchable {:?} after start", started.elapsed());
    // Fields, folding, stemming, prefix, attachments.
    for (query, want) in [
        ("from:muller", 1),
        ("from:joerg@example.org", 1),
        ("invoice", 1),
        ("invoi*", 1),
        ("has:attachment", 1),
        (&format!("filename:march-{CANARY}.txt") as &str, 1),
        (&format!("{CANARY}attach") as &str, 1),
        ("password OR invoice", 2),
        ("password -invoice", 1),
        ("\"cannot log in\"", 1),
        ("is:open", 2),
        ("is:closed", 0),
        ("mailbox:help after:2020-01-01", 2),
    ] {
        assert_eq!(total(&config, query), want, "query {query}");
    }
    // A query that cannot be parsed is an error naming the column, never an empty result.
    let output = inboxd(&config, &["search", "from:(alice"])
        .output()
        .expect("search");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("column"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stop(daemon);
    let index = dir.path().join("data/index");
    assert!(
        !raw_index_contains(&index, CANARY.as_bytes()),
        "plaintext in the index files"
    );
    assert!(
        !raw_index_contains(&index, b"Password reset"),
        "stored subject in the clear"
    );
    let key = inboxd::crypto::load_key_file(&dir.path().join("data/master.key"))
        .expect("key")
        .key;
    let index_key = inboxd::search::indexer::index_key(&key);
    assert!(
        inboxd::search::directory::scan_plaintext(&index, &index_key, b"Password reset")
            .expect("scan"),
        "positive control: the decrypted index does hold the stored subject"
    );
}

#[test]
fn a_lost_index_is_rebuilt_from_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let daemon = inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    assert!(wait_total(
        &config,
        "invoice OR password",
        2,
        Duration::from_secs(30)
    ));
    stop(daemon);
    let index = dir.path().join("data/index");
    // Offline rebuild.
    std::fs::remove_dir_all(&index).expect("remove index");
    let output = inboxd(&config, &["reindex"]).output().expect("reindex");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("indexed 2 messages"));
    assert_eq!(total(&config, "invoice OR password"), 2);
    // The daemon notices a corrupt index, rebuilds it in the background and answers again.
    for entry in std::fs::read_dir(&index).expect("index").flatten() {
        if entry.file_name().to_string_lossy().contains("meta") {
            std::fs::write(entry.path(), b"garbage").expect("corrupt");
        }
    }
    let daemon = inboxd(&config, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    assert!(
        wait_total(&config, "invoice OR password", 2, Duration::from_secs(90)),
        "rebuilt"
    );
    stop(daemon);
}
