//! Raw mail → the whole ingest preparation: parse, threading keys, keyed hashes, sealing, the encrypted
//! blob, the delivery-report parser for what looks like a report, and the inspect/render views.
//! Oracles: nothing panics, and the blob decrypts back to exactly the input bytes.
#![no_main]

use std::sync::LazyLock;

use inboxd::crypto::MasterKey;
use inboxd::ingest::prepare::prepare;
use inboxd::ingest::{Origin, RawMessage};
use inboxd::parse;
use libfuzzer_sys::fuzz_target;

static MASTER: LazyLock<MasterKey> = LazyLock::new(|| MasterKey::from_bytes([7; 32]));
static BLOBS: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("temporary blob directory"));

fuzz_target!(|data: &[u8]| {
    let parsed = parse::parse_message(data);
    let keys = parse::thread_keys(&parsed);
    assert!(!keys.parent_ids.iter().any(String::is_empty));
    let _ = parse::inspect_json(&parsed);
    let _ = parse::render_text(&parsed);
    for attachment in 0..parsed.attachments.len().min(4) {
        let _ = parse::extract_part(data, attachment);
    }
    let _ = parse::dsn::delivery_report(data);

    let message = RawMessage {
        origin: Origin::Maildir {
            key_hash: "fuzz".to_string(),
        },
        raw: data.to_vec(),
        oversize_of: None,
    };
    let hasher = MASTER.lookup_hasher();
    let prepared = prepare(message, &hasher, BLOBS.path(), chrono::Utc::now(), true)
        .expect("prepare never fails on content");
    assert_eq!(
        prepared.content_hash,
        hasher.content_hash(data),
        "the content hash is that of exactly the raw bytes"
    );
    let back = prepared
        .open_raw(BLOBS.path())
        .expect("the blob just sealed decrypts");
    assert_eq!(back, data, "the blob holds exactly the raw bytes");
    if let Some(relative) = prepared.blob.file() {
        std::fs::remove_file(BLOBS.path().join(relative)).expect("remove blob");
    }
});
