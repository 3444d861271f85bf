//! Every real message in the fixtures (MIME torture cases, charsets, bounces, threads) goes through the
//! whole pure pipeline — parse, thread keys, delivery-report recognition, `inspect` rendering, and
//! ingest preparation (hashing, sealing, blob file) — without a panic, in bounded time, and the sealed
//! blob decrypts back to the exact input.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inboxd::crypto::MasterKey;
use inboxd::ingest::prepare;
use inboxd::ingest::{Origin, RawMessage};
use inboxd::parse;

fn messages(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("fixtures").flatten() {
        let path = entry.path();
        if path.is_dir() {
            messages(&path, out);
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let data = name.ends_with(".json") || name.ends_with(".md") || name.starts_with("COPYING");
        if !data {
            out.push(path);
        }
    }
}

#[test]
fn every_fixture_message_goes_through_the_pipeline() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    messages(&root, &mut files);
    assert!(
        files.len() > 600,
        "the fixtures hold the whole corpus ({} files)",
        files.len()
    );
    let master = MasterKey::generate();
    let hasher = master.lookup_hasher();
    let blobs = tempfile::tempdir().expect("tempdir");
    let (mut unparsed, mut reports, mut slowest) = (0, 0, Duration::ZERO);
    for file in &files {
        let raw = std::fs::read(file).expect("read fixture");
        let started = Instant::now();
        let parsed = parse::parse_message(&raw);
        let _ = parse::thread_keys(&parsed);
        let _ = parse::render_text(&parsed);
        let _ = parse::inspect_json(&parsed);
        if parse::dsn::delivery_report(&raw).is_some() {
            reports += 1;
        }
        if parsed.unparsed.is_some() {
            unparsed += 1;
        }
        let prepared = prepare::prepare(
            RawMessage {
                origin: Origin::Outbound,
                raw: raw.clone(),
                oversize_of: None,
            },
            &hasher,
            blobs.path(),
            inboxd::clock::now(),
            true,
        )
        .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        assert!(
            prepared.legacy_content_hash.is_some(),
            "asked for: the legacy hash is computed"
        );
        let back = prepared.open_raw(blobs.path()).expect("blob decrypts");
        assert_eq!(back, raw, "{}", file.display());
        slowest = slowest.max(started.elapsed());
    }
    eprintln!(
        "{} messages: {unparsed} unparsed (stored raw and flagged), {reports} delivery reports, slowest {slowest:?}",
        files.len()
    );
    assert!(
        slowest < Duration::from_secs(10),
        "no message takes unbounded time"
    );
}

#[test]
fn the_report_prefilter_lets_every_labelled_report_through() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    let mut missed = Vec::new();
    let mut checked = 0;
    for (labels, folder) in [
        ("bounces-sisimai.json", "sisimai"),
        ("bounces-flanker.json", "flanker"),
    ] {
        let path = root.join(labels);
        let text = std::fs::read(&path).expect("labels");
        let value: serde_json::Value = serde_json::from_slice(&text).expect("labels");
        for (file, _label) in value["messages"].as_object().expect("messages") {
            let raw = std::fs::read(root.join(folder).join(file)).expect("fixture");
            let parsed = parse::parse_message(&raw);
            let is_report = parse::dsn::delivery_report(&raw).is_some();
            checked += 1;
            if is_report && !prepare::may_be_report(&parsed) {
                missed.push(file.clone());
            }
        }
    }
    assert!(checked > 150, "labels found ({checked})");
    assert!(
        missed.is_empty(),
        "the prefilter hides these reports: {missed:?}"
    );
}
