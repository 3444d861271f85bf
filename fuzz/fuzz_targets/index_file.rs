//! The encrypted index directory's file reader, as tantivy uses it (`open_read`, ranged reads).
//! Oracles: a file of arbitrary bytes never reads back as content; a file written through the directory
//! and then changed or cut on disk either fails to read or (untouched) reads back exactly; nothing panics.
#![no_main]

use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use inboxd::search::directory::EncryptedDirectory;
use libfuzzer_sys::fuzz_target;
use tantivy::{Directory, HasLen};
use tantivy::directory::TerminatingWrite;

static ROOT: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("temporary directory"));
static DIRECTORY: LazyLock<EncryptedDirectory> = LazyLock::new(|| {
    EncryptedDirectory::open(ROOT.path(), [9; 32], 1 << 20).expect("open encrypted directory")
});
static NEXT: AtomicU64 = AtomicU64::new(0);

fn read_all(name: &Path) -> Option<Vec<u8>> {
    let slice = DIRECTORY.open_read(name).ok()?;
    let whole = slice.read_bytes().ok()?.as_slice().to_vec();
    // Ranged reads must agree with the whole read, or fail.
    let len = slice.len();
    for (start, end) in [(0, len / 2), (len / 3, len), (len.saturating_sub(1), len)] {
        if let Ok(part) = slice.slice(start..end).read_bytes() {
            assert_eq!(part.as_slice(), &whole[start..end], "ranged read disagrees");
        }
    }
    Some(whole)
}

// The input: `[mode][split][rest]`. Mode 0: `rest` is written as a raw file. Otherwise `rest[..split*64]`
// is the content written through the directory and the remainder are edits of the file on disk
// (pairs of position, xor value; zero xor value = truncate).
fuzz_target!(|data: &[u8]| {
    let [mode, split, rest @ ..] = data else {
        return;
    };
    let name = format!("f{}.idx", NEXT.fetch_add(1, Ordering::Relaxed));
    let name = Path::new(&name);
    let on_disk = ROOT.path().join(name);
    if mode % 2 == 0 {
        std::fs::write(&on_disk, rest).expect("write raw file");
        assert!(
            read_all(name).is_none_or(|content| content.is_empty() && rest.is_empty()),
            "arbitrary bytes read back as content"
        );
    } else {
        let split = (usize::from(*split) * 64).min(rest.len());
        let (content, edits) = rest.split_at(split);
        let mut writer = DIRECTORY.open_write(name).expect("open_write");
        writer.write_all(content).expect("write");
        writer.flush().expect("flush");
        writer.terminate().expect("terminate");
        let mut sealed = std::fs::read(&on_disk).expect("read sealed file");
        let original = sealed.clone();
        for pair in edits.chunks_exact(2) {
            if sealed.is_empty() {
                break;
            }
            let position = usize::from(pair[0]) * sealed.len() / 256;
            if pair[1] == 0 {
                sealed.truncate(position);
            } else {
                sealed[position] ^= pair[1];
            }
        }
        std::fs::write(&on_disk, &sealed).expect("rewrite sealed file");
        let read = read_all(name);
        if sealed == original {
            assert_eq!(read.as_deref(), Some(content), "an untouched file reads back");
        } else {
            assert!(read.is_none(), "a changed file must not read back");
        }
    }
    let _ = DIRECTORY.delete(name);
    let _ = std::fs::remove_file(&on_disk);
});
