//! The ciphertext decoders: sealed database values (`version|key_id|nonce|ct+tag`), wrapped data keys,
//! sealed secrets and the streaming blob file format.
//! Oracles: arbitrary bytes never open; a valid ciphertext with any byte changed or cut never opens; an
//! untouched one opens to exactly its plaintext.
#![no_main]

use std::sync::LazyLock;

use inboxd::crypto::{Aad, BlobWriter, DataKey, MasterKey, read_blob};
use libfuzzer_sys::fuzz_target;

static MASTER: LazyLock<MasterKey> = LazyLock::new(|| MasterKey::from_bytes([3; 32]));
// Keys that never seal anything here: libFuzzer learns the bytes the target compares (its own valid
// ciphertexts under MASTER and KEY included), so only keys it never sees used can be asked to refuse
// everything.
static NEVER_MASTER: LazyLock<MasterKey> = LazyLock::new(|| MasterKey::from_bytes([4; 32]));
static NEVER_KEY: LazyLock<DataKey> =
    LazyLock::new(|| DataKey::from_bytes_vec(&[6; 32]).expect("32-byte key"));
static KEY: LazyLock<DataKey> =
    LazyLock::new(|| DataKey::from_bytes_vec(&[5; 32]).expect("32-byte key"));
static DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("temporary directory"));

// The input: `[mode][split][rest]`; `rest[..split]` is the plaintext, `rest[split..]` the edits
// (pairs of position, xor value; a zero xor value means "truncate here").
fuzz_target!(|data: &[u8]| {
    let aad = Aad::new("fuzz.value").with_bytes(b"row-1");
    // Arbitrary bytes are not a ciphertext under these keys.
    assert!(NEVER_KEY.open(data, &aad).is_err());
    assert!(NEVER_MASTER.open_secret(data, &aad).is_err());
    assert!(NEVER_MASTER.unwrap_data_key(data, &aad).is_err());

    let [mode, split, rest @ ..] = data else {
        return;
    };
    let split = usize::from(*split).min(rest.len());
    let (plaintext, edits) = rest.split_at(split);
    let mut sealed = match mode % 3 {
        0 => KEY.seal(plaintext, &aad),
        1 => MASTER.seal_secret(plaintext, &aad),
        _ => return blob(plaintext, edits),
    };
    let original = sealed.clone();
    apply(&mut sealed, edits);
    let opened = match mode % 3 {
        0 => KEY.open(&sealed, &aad).ok(),
        _ => MASTER.open_secret(&sealed, &aad).ok().map(|z| z.to_vec()),
    };
    if sealed == original {
        assert_eq!(opened.as_deref(), Some(plaintext), "an untouched value opens");
        assert!(KEY.open(&sealed, &Aad::new("fuzz.value").with_bytes(b"row-2")).is_err());
    } else {
        assert!(opened.is_none(), "a changed ciphertext must not open");
    }
});

fn apply(bytes: &mut Vec<u8>, edits: &[u8]) {
    for pair in edits.chunks_exact(2) {
        if bytes.is_empty() {
            return;
        }
        let position = usize::from(pair[0]) * bytes.len() / 256;
        if pair[1] == 0 {
            bytes.truncate(position);
        } else {
            bytes[position] ^= pair[1];
        }
    }
}

fn blob(plaintext: &[u8], edits: &[u8]) {
    let aad = Aad::new("fuzz.blob").with_bytes(b"message-1");
    let path = DIR.path().join("value.blob");
    let mut writer = BlobWriter::create(DIR.path(), &path, &KEY, &aad).expect("create blob");
    writer.write_all(plaintext).expect("write blob");
    writer.finish_unsynced().expect("finish blob");
    let mut sealed = std::fs::read(&path).expect("read blob");
    let original = sealed.clone();
    apply(&mut sealed, edits);
    std::fs::write(&path, &sealed).expect("rewrite blob");
    let opened = read_blob(&path, &KEY, &aad).ok();
    if sealed == original {
        assert_eq!(opened.as_deref(), Some(plaintext), "an untouched blob opens");
    } else {
        assert!(opened.is_none(), "a changed blob must not open");
    }
    std::fs::remove_file(&path).expect("remove blob");
}
