//! Mail designed to hurt: each case is generated here (nothing big is committed), put in a Maildir in
//! front of one ordinary message, and ingested by the real `inboxd` binary (`sync --once`). Every case
//! must be stored (flagged where it cannot be parsed), byte for byte, within a bounded time and peak
//! memory, and the ordinary message after it must be stored and found by search: no case blocks the
//! mailbox. The same cases also go through the real Dovecot (IMAP APPEND, then the daemon's IMAP sync).
//!
//! Figures: run with `cargo nextest run --test hostile_mail --no-capture`; each case prints one row
//! (wall time and peak resident memory of the `inboxd` process, read from /proc/PID/status VmHWM).
mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use inboxd::store::Store;
use inboxd::store::entities::{conversation, message};
use sea_orm::EntityTrait;

/// Wall time one case may take (debug build, 2 shared cores; the 50 MB case is the slowest).
const TIME_LIMIT: Duration = Duration::from_secs(150);
/// Peak resident memory the `inboxd` process may reach on any one case.
const MEMORY_LIMIT_KB: u64 = 1536 * 1024;

struct Case {
    name: &'static str,
    /// The messages of the case, in Maildir order (most cases have one).
    messages: Vec<Vec<u8>>,
    /// `ingest.max_message_bytes` for the run, when not the default.
    limit: Option<u64>,
    /// Status every message of the case must be stored with.
    status: &'static str,
    /// Words the stored problem text must contain (the flag an agent sees), if any.
    problem: Option<&'static str>,
}

impl Case {
    fn new(name: &'static str, messages: Vec<Vec<u8>>) -> Case {
        Case {
            name,
            messages,
            limit: None,
            status: "parsed",
            problem: None,
        }
    }

    fn flagged(mut self, status: &'static str, problem: &'static str) -> Case {
        self.status = status;
        self.problem = Some(problem);
        self
    }
}

fn head(id: &str, subject: &str, extra: &str) -> String {
    format!(
        "Message-ID: <{id}>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0100\r\nFrom: Mallory <mallory@example.org>\r\nTo: Support <support@inboxd.test>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n{extra}"
    )
}

/// Deterministic filler bytes that do not compress (xorshift), so no layer can shortcut them.
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Base64 in 76-character lines (RFC 2045 section 6.8).
fn base64_lines(data: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

fn big_attachment(tag: &str) -> Case {
    let payload = noise(50 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15);
    let mut raw = head(
        &format!("{tag}-big@hostile"),
        "a 50 MB attachment",
        "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
    );
    raw.push_str("--b1\r\nContent-Type: text/plain\r\n\r\nsee the attached file\r\n--b1\r\n");
    raw.push_str("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    raw.push_str(&base64_lines(&payload));
    raw.push_str("--b1--\r\n");
    Case::new("50 MB attachment", vec![raw.into_bytes()])
}

fn many_parts(tag: &str) -> Case {
    let mut raw = head(
        &format!("{tag}-parts@hostile"),
        "ten thousand parts",
        "Content-Type: multipart/mixed; boundary=\"p\"\r\n\r\n",
    );
    for n in 0..10_000 {
        if n % 2 == 0 {
            let _ = write!(raw, "--p\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n");
        } else {
            let _ = write!(
                raw,
                "--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f{n}.bin\"\r\n\r\nfile {n}\r\n"
            );
        }
    }
    raw.push_str("--p--\r\n");
    Case::new("10,000 MIME parts", vec![raw.into_bytes()])
}

fn deep_multipart(tag: &str) -> Case {
    let mut raw = head(
        &format!("{tag}-deep@hostile"),
        "one hundred levels of multipart",
        "Content-Type: multipart/mixed; boundary=\"d0\"\r\n\r\n",
    );
    for level in 1..100 {
        let _ = write!(
            raw,
            "--d{}\r\nContent-Type: multipart/mixed; boundary=\"d{level}\"\r\n\r\n",
            level - 1
        );
    }
    raw.push_str("--d99\r\nContent-Type: text/plain\r\n\r\nthe bottom\r\n");
    for level in (0..100).rev() {
        let _ = write!(raw, "--d{level}--\r\n");
    }
    Case::new("100-level multipart nesting", vec![raw.into_bytes()])
}

fn deep_rfc822(tag: &str) -> Case {
    // message/rfc822 inside message/rfc822, 100 deep: each level is a full message.
    let mut inner = format!(
        "Message-ID: <{tag}-inner@hostile>\r\nFrom: x@example.org\r\nSubject: level 100\r\nContent-Type: text/plain\r\n\r\nthe bottom\r\n"
    );
    for level in (1..100).rev() {
        inner = format!(
            "Message-ID: <{tag}-l{level}@hostile>\r\nFrom: x@example.org\r\nSubject: level {level}\r\nContent-Type: message/rfc822\r\n\r\n{inner}"
        );
    }
    let raw = format!(
        "{}{inner}",
        head(
            &format!("{tag}-nested@hostile"),
            "one hundred nested messages",
            "Content-Type: message/rfc822\r\n\r\n"
        )
    );
    Case::new("100 nested message/rfc822", vec![raw.into_bytes()])
}

fn huge_header(tag: &str) -> Case {
    // A 1 MB Subject folded into lines, and a 1 MB unfolded header line.
    let mut subject = String::with_capacity(1 << 20);
    while subject.len() < 1 << 20 {
        subject.push_str("word ");
        if subject.len() % 70 < 5 {
            subject.push_str("\r\n ");
        }
    }
    let junk = "j".repeat(1 << 20);
    let raw = format!(
        "{}X-Junk: {junk}\r\nContent-Type: text/plain\r\n\r\nbody after a 1 MB header\r\n",
        head(&format!("{tag}-header@hostile"), &subject, "")
    );
    Case::new("1 MB header", vec![raw.into_bytes()])
}

fn nul_bytes(tag: &str) -> Case {
    let mut raw = format!(
        "Message-ID: <{tag}-nul@hostile>\r\nFrom: Nul\0Name <nul@example.org>\r\nTo: support@inboxd.test\r\nSubject: with\0nul\0bytes\r\nX-\0Weird: \0\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(b"body\0with\0nul\0bytes\r\n");
    raw.extend(std::iter::repeat_n(0u8, 64 * 1024));
    raw.extend_from_slice(b"\r\nend\r\n");
    Case::new("NUL bytes", vec![raw])
}

fn invalid_utf8(tag: &str) -> Case {
    let mut raw = Vec::new();
    raw.extend_from_slice(format!("Message-ID: <{tag}-utf8\u{0}@hostile>\r\n").as_bytes());
    raw.extend_from_slice(b"From: \xff\xfe\xc3\x28 <bad\xc3\x28@example.org>\r\n");
    raw.extend_from_slice(b"To: \xe2\x82 <support@inboxd.test>\r\n");
    raw.extend_from_slice(b"Subject: \xf0\x28\x8c\xbc invalid \xc0\xaf everywhere\r\n");
    raw.extend_from_slice(b"X-\xff\xff: \xed\xa0\x80\r\n");
    raw.extend_from_slice(
        b"Content-Type: multipart/mixed; boundary=\"\xff\"\r\n\r\n--\xff\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xc3\x28 body \xa0\xa1 \xf8\xa1\xa1\xa1\xa1\r\n",
    );
    raw.extend_from_slice(b"--\xff\r\nContent-Type: application/octet-stream; name=\"\xfe\xff.bin\"\r\nContent-Disposition: attachment; filename=\"\xfe\xff.bin\"\r\n\r\n\xff\xff\xff\r\n--\xff--\r\n");
    Case::new("invalid UTF-8 everywhere", vec![raw]).flagged("parsed", "boundary")
}

fn wrong_charsets(tag: &str) -> Case {
    let mut raw = head(
        &format!("{tag}-charset@hostile"),
        "=?koi8-r?B?!!!not-base64!!!?= =?x-unknown?Q?caf=E9?= =?utf-16?B?2D3d?=",
        "Content-Type: multipart/alternative; boundary=\"c\"\r\n\r\n",
    )
    .into_bytes();
    raw.extend_from_slice(
        b"--c\r\nContent-Type: text/plain; charset=utf-16\r\n\r\nodd length latin1 caf\xe9\r\n",
    );
    raw.extend_from_slice(
        b"--c\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nunknown caf\xe9\r\n",
    );
    raw.extend_from_slice(b"--c\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>caf=E9 =ZZ =\r\n");
    raw.extend_from_slice(b"--c\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B\xff\xff\x1b(B\r\n--c--\r\n");
    Case::new("wrong charsets", vec![raw]).flagged("parsed", "charset")
}

fn base64_bomb(tag: &str) -> Case {
    // 40 MB of base64 on one single line that decodes to 30 MB of one repeated byte, declared as text.
    let line = "QUFB".repeat(10 * 1024 * 1024);
    let raw = format!(
        "{}{line}\r\n",
        head(
            &format!("{tag}-bomb@hostile"),
            "a zip-bomb-like base64 body",
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
    );
    Case::new("zip-bomb-like base64 body", vec![raw.into_bytes()])
}

fn many_references(tag: &str) -> Case {
    let references: String = (0..10_000)
        .map(|n| format!(" <{tag}-ref{n}@hostile>\r\n"))
        .collect();
    let raw = format!(
        "{}References:{references}In-Reply-To: <{tag}-ref9999@hostile>\r\nContent-Type: text/plain\r\n\r\nten thousand references\r\n",
        head(&format!("{tag}-refs@hostile"), "Re: a long thread", "")
    );
    Case::new("References with 10,000 ids", vec![raw.into_bytes()])
}

fn shared_message_id(tag: &str) -> Case {
    let id = format!("{tag}-shared@hostile");
    let first = common::message(&id, "first of two", "one@example.org", "first body");
    let second = common::message(&id, "second of two", "two@example.org", "second body");
    Case::new("one Message-ID, two messages", vec![first, second])
}

fn cases(tag: &str) -> Vec<Case> {
    let big = big_attachment(tag);
    // With the default 64 MiB cap the ~72 MB message is kept as a flagged header-only record (the
    // server copy stays); with a larger cap it is stored in full.
    let capped = Case::new("50 MB attachment, default cap", big.messages.clone())
        .flagged("oversize", "max_message_bytes");
    let mut full = big;
    full.name = "50 MB attachment, 128 MiB cap";
    full.limit = Some(128 * 1024 * 1024);
    vec![
        capped,
        full,
        many_parts(tag),
        deep_multipart(tag),
        deep_rfc822(tag),
        huge_header(tag),
        nul_bytes(tag),
        invalid_utf8(tag),
        wrong_charsets(tag),
        base64_bomb(tag),
        many_references(tag),
        shared_message_id(tag),
    ]
}

/// The ordinary message that follows every case; `word` is unique to it so search can find it.
fn ordinary(tag: &str, word: &str) -> Vec<u8> {
    common::message(
        &format!("{tag}-{word}@ordinary"),
        "an ordinary question",
        "customer@example.org",
        &format!("please help with {word}"),
    )
}

use common::sha;

/// Runs `inboxd` to completion and returns its output, wall time and peak resident memory (VmHWM of
/// the process, polled until it exits; VmHWM only grows, so the last reading is its peak).
fn run_measured(
    config: &Path,
    args: &[&str],
    limit: Duration,
) -> (std::process::Output, Duration, u64) {
    let started = Instant::now();
    let mut child = common::inboxd(config, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start inboxd");
    let status_path = format!("/proc/{}/status", child.id());
    // Drain the pipes on threads so a chatty child never blocks on them.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buffer).ok();
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buffer).ok();
        buffer
    });
    let mut peak_kb = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kb) = text
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("inboxd {args:?} did not finish within {limit:?}: a case blocks the mailbox");
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    let elapsed = started.elapsed();
    let output = std::process::Output {
        status,
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    };
    (output, elapsed, peak_kb)
}

/// What the store holds: sha256 of every raw message -> (status, problem), after checking that every
/// conversation decrypts and every raw message round-trips.
async fn stored_contents(data: &Path) -> (HashMap<String, (String, Option<String>)>, usize) {
    let url = format!("sqlite://{}", data.join("inboxd.db").display());
    let store = Store::connect(&url, &data.join("blobs"))
        .await
        .expect("store");
    let key = inboxd::crypto::load_key_file(&data.join("master.key"))
        .expect("key")
        .key;
    let conversations = conversation::Entity::find()
        .all(&store.db)
        .await
        .expect("conversations");
    let mut contents = HashMap::new();
    for row in &conversations {
        let view = inboxd::store::read::conversation(&store.db, &key, row.id)
            .await
            .expect("every conversation decrypts");
        for message in view.messages {
            let raw =
                inboxd::store::read::raw_message(&store.db, &key, store.blob_dir(), message.id)
                    .await
                    .expect("every raw message decrypts");
            contents.insert(sha(&raw), (message.status, message.problem));
        }
    }
    let rows = message::Entity::find().all(&store.db).await.expect("rows");
    assert_eq!(rows.len(), contents.len(), "every row is in a conversation");
    let _ = store.db.close().await;
    (contents, conversations.len())
}

fn maildir_with(root: &Path, messages: &[Vec<u8>]) -> std::path::PathBuf {
    let maildir = root.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    for (n, raw) in messages.iter().enumerate() {
        std::fs::write(maildir.join(format!("new/{n:03}.hostile.host")), raw).expect("write");
    }
    maildir
}

#[tokio::test]
async fn hostile_mail_is_stored_in_bounded_time_and_memory_and_blocks_nothing() {
    let tag = common::unique("h");
    let mut table = String::from(
        "\n| case | raw size | stored | status | time | peak RSS |\n|---|---:|---:|---|---:|---:|\n",
    );
    for (n, case) in cases(&tag).into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let word = format!("ordinaryword{n}x");
        let mut messages = case.messages.clone();
        messages.push(ordinary(&tag, &word));
        let maildir = maildir_with(dir.path(), &messages);
        let data = dir.path().join("data");
        let config = dir.path().join("inboxd.toml");
        let ingest = case
            .limit
            .map(|limit| format!("[ingest]\nmax_message_bytes = {limit}\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n{ingest}[[mailbox]]\nname = \"hostile\"\nkind = \"maildir\"\npath = \"{}\"\n",
                data.display(),
                maildir.display()
            ),
        )
        .expect("config");
        let (output, elapsed, peak_kb) =
            run_measured(&config, &["sync", "--once", "--json"], TIME_LIMIT);
        assert!(
            output.status.success(),
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("sync report json");
        let expected = messages.len() as u64;
        assert_eq!(
            report[0]["stored"].as_u64(),
            Some(expected),
            "{}: {report}",
            case.name
        );
        let (contents, conversations) = stored_contents(&data).await;
        let mut statuses = Vec::new();
        for raw in &case.messages {
            // An oversize record keeps the headers only: its stored bytes are a prefix of the mail.
            let (status, problem) = contents
                .get(&sha(raw))
                .or_else(|| {
                    (case.status == "oversize")
                        .then(|| contents.values().find(|(status, _)| status == "oversize"))
                        .flatten()
                })
                .unwrap_or_else(|| panic!("{}: a message of the case is missing", case.name));
            assert_eq!(status, case.status, "{}: {problem:?}", case.name);
            if let Some(words) = case.problem {
                assert!(
                    problem.as_deref().is_some_and(|text| text.contains(words)),
                    "{}: flagged with {words:?}, got {problem:?}",
                    case.name
                );
            }
            statuses.push(match problem {
                Some(problem) => {
                    let short: String = problem.chars().take(70).collect();
                    format!("{status}: {short}")
                }
                None => status.clone(),
            });
        }
        if case.status != "oversize" {
            let wanted: HashSet<String> = messages.iter().map(|raw| sha(raw)).collect();
            let have: HashSet<String> = contents.keys().cloned().collect();
            assert_eq!(
                have, wanted,
                "{}: the store holds exactly the messages, byte for byte",
                case.name
            );
        }
        assert!(
            contents.contains_key(&sha(messages.last().expect("ordinary"))),
            "{}: the ordinary message after it is stored",
            case.name
        );
        if case.messages.len() == 2 {
            // Same Message-ID, different content: both kept (deduplication is by content), threaded
            // together as copies of one mail (a list copy and a direct copy look like this).
            assert_eq!(
                conversations, 2,
                "{}: the pair shares one conversation",
                case.name
            );
        }
        // The ordinary message after the case is searchable: the index was not blocked either.
        let found = common::cli_json(&config, &["search", "--json", &word]);
        let hits = found["hits"].as_array().map_or(0, Vec::len);
        assert_eq!(
            hits, 1,
            "{}: the next message is searchable: {found}",
            case.name
        );
        let raw_size: usize = case.messages.iter().map(Vec::len).sum();
        let _ = writeln!(
            table,
            "| {} | {:.1} MB | {}/{} in {} conv. | {} | {:.2} s | {} MB |",
            case.name,
            raw_size as f64 / 1e6,
            contents.len(),
            expected,
            conversations,
            statuses.join("; "),
            elapsed.as_secs_f64(),
            peak_kb / 1024
        );
        eprintln!(
            "hostile case {:?}: {:.2} s, peak {} MB",
            case.name,
            elapsed.as_secs_f64(),
            peak_kb / 1024
        );
        assert!(
            peak_kb < MEMORY_LIMIT_KB,
            "{}: peak memory {peak_kb} kB over {MEMORY_LIMIT_KB} kB",
            case.name
        );
    }
    eprintln!("{table}");
}

/// The same cases through the real Dovecot: APPENDed to one folder (ordinary mail between them), then
/// one IMAP sync by the real binary. Everything Dovecot accepted is stored exactly once, in full.
#[tokio::test]
async fn hostile_mail_through_imap_is_stored_and_blocks_nothing() {
    let Some(lab) = common::lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = common::unique("hi");
    let folder = common::unique("t-");
    let mut client = lab.client("support").await;
    client.create_folder(&folder).await.expect("folder");
    let mut appended: Vec<Vec<u8>> = Vec::new();
    let mut refused = Vec::new();
    for (n, case) in cases(&tag).into_iter().skip(1).enumerate() {
        for raw in case
            .messages
            .iter()
            .chain([&ordinary(&tag, &format!("imapword{n}x"))])
        {
            match client.append(&folder, raw).await {
                Ok(()) => appended.push(raw.clone()),
                // Dovecot may refuse a message outright (e.g. NUL bytes in a literal); that is the
                // server's decision, not a loss in inboxd: the case is still covered through Maildir.
                Err(err) => {
                    refused.push(format!("{}: {err}", case.name));
                    client = lab.client("support").await;
                }
            }
        }
    }
    client.logout().await;
    let table = lab.mailbox_toml(dir.path(), "support", "support", &folder);
    let data = dir.path().join("data");
    let config = dir.path().join("inboxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ingest]\nmax_message_bytes = {}\n{table}",
            data.display(),
            128 * 1024 * 1024
        ),
    )
    .expect("config");
    let (output, elapsed, peak_kb) =
        run_measured(&config, &["sync", "--once", "--json"], TIME_LIMIT);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        report[0]["stored"].as_u64(),
        Some(appended.len() as u64),
        "{report}"
    );
    let (contents, _) = stored_contents(&data).await;
    let have: HashSet<String> = contents.keys().cloned().collect();
    // Dovecot rewrites some bytes when it saves (NUL becomes 0x80): compare with what it serves.
    let on_server = common::server_messages(&lab, "support", &folder).await;
    assert_eq!(on_server.len(), appended.len());
    let wanted: HashSet<String> = on_server.iter().map(|raw| sha(raw)).collect();
    assert_eq!(have, wanted, "exactly the server's messages, byte for byte");
    eprintln!(
        "hostile mail over IMAP: {} messages ({} refused by Dovecot: {refused:?}) in {:.2} s, peak {} MB",
        appended.len(),
        refused.len(),
        elapsed.as_secs_f64(),
        peak_kb / 1024
    );
    assert!(peak_kb < MEMORY_LIMIT_KB, "peak memory {peak_kb} kB");
    let again = common::cli_json(&config, &["sync", "--once", "--json"]);
    assert_eq!(again[0]["stored"], 0, "nothing twice: {again}");
}
