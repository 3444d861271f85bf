//! Audit helper: decrypt every file of an index directory and look for a byte string, to prove
//! that text of purged documents is physically gone after a merge and garbage collection.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use super::DirectoryError;
use super::file::{Completeness, decrypt_whole_file};
use super::format::MAGIC;
use super::writer::final_name_of_temp;

/// Returns whether `needle` occurs in the plaintext of any file in the index directory at `path`.
///
/// Encrypted files are decrypted with `index_key` and searched across block boundaries; temporary
/// files of interrupted writes are decrypted as far as they authenticate; any other file (lock
/// files, strays) is searched as raw bytes. A file that fails authentication is an error, since
/// its plaintext cannot be checked. Reads the whole index: meant for tests and audits, not queries.
pub fn scan_plaintext(
    path: &Path,
    index_key: &[u8; 32],
    needle: &[u8],
) -> Result<bool, DirectoryError> {
    let entries = fs::read_dir(path).map_err(|source| DirectoryError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| DirectoryError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let file_type = entry.file_type().map_err(|source| DirectoryError::Io {
            file: entry.path(),
            source,
        })?;
        if !file_type.is_file() {
            continue;
        }
        let name = entry.file_name();
        if scan_file(&entry.path(), Path::new(&name), index_key, needle)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn scan_file(
    full_path: &Path,
    name: &Path,
    index_key: &[u8; 32],
    needle: &[u8],
) -> Result<bool, DirectoryError> {
    let io_error = |source| DirectoryError::Io {
        file: name.to_path_buf(),
        source,
    };
    let mut file = File::open(full_path).map_err(io_error)?;
    let mut magic = [0u8; MAGIC.len()];
    let is_encrypted = match file.read_exact(&mut magic) {
        Ok(()) => magic == MAGIC,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(error) => return Err(io_error(error)),
    };
    let mut finder = StreamFinder::new(needle);
    if !is_encrypted {
        let raw = fs::read(full_path).map_err(io_error)?;
        finder.feed(&raw);
        return Ok(finder.found);
    }
    let (key_name, completeness) = match final_name_of_temp(name.as_os_str()) {
        Some(final_name) => (final_name, Completeness::Partial),
        None => (name.as_os_str().as_encoded_bytes(), Completeness::Complete),
    };
    decrypt_whole_file(&file, name, key_name, index_key, completeness, |block| {
        finder.feed(block)
    })?;
    Ok(finder.found)
}

/// Substring search over a stream of chunks, keeping the last `needle.len() - 1` bytes so matches
/// spanning two blocks are found.
struct StreamFinder<'a> {
    needle: &'a [u8],
    window: Vec<u8>,
    found: bool,
}

impl<'a> StreamFinder<'a> {
    fn new(needle: &'a [u8]) -> StreamFinder<'a> {
        StreamFinder {
            needle,
            window: Vec::new(),
            found: needle.is_empty(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.found {
            return;
        }
        self.window.extend_from_slice(chunk);
        if self
            .window
            .windows(self.needle.len())
            .any(|candidate| candidate == self.needle)
        {
            self.found = true;
            return;
        }
        let keep = (self.needle.len() - 1).min(self.window.len());
        self.window.drain(..self.window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tantivy::Directory;
    use tantivy::directory::TerminatingWrite;

    use super::super::EncryptedDirectory;
    use super::super::format::BLOCK_SIZE;
    use super::*;

    const KEY: [u8; 32] = [3u8; 32];

    #[test]
    fn stream_finder_matches_across_chunks() {
        let mut finder = StreamFinder::new(b"needle");
        for chunk in [&b"xxnee"[..], b"d", b"lexx"] {
            finder.feed(chunk);
        }
        assert!(finder.found);
        let mut finder = StreamFinder::new(b"needle");
        for chunk in [&b"xxnee"[..], b"x", b"dlexx"] {
            finder.feed(chunk);
        }
        assert!(!finder.found);
    }

    #[test]
    fn finds_text_across_a_block_boundary_and_only_in_plaintext() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = EncryptedDirectory::open(dir.path(), KEY, 0).expect("open");
        let mut content = vec![b'.'; BLOCK_SIZE - 3];
        content.extend_from_slice(b"CANARY-42");
        content.extend_from_slice(&[b'.'; 100]);
        let mut writer = directory
            .open_write(Path::new("a.store"))
            .expect("open_write");
        writer.write_all(&content).expect("write");
        writer.terminate().expect("terminate");

        assert!(scan_plaintext(dir.path(), &KEY, b"CANARY-42").expect("scan"));
        assert!(!scan_plaintext(dir.path(), &KEY, b"CANARY-43").expect("scan"));
        let raw = fs::read(dir.path().join("a.store")).expect("read raw");
        assert!(!raw.windows(9).any(|window| window == b"CANARY-42"));
        assert!(
            scan_plaintext(dir.path(), &[4u8; 32], b"CANARY-42").is_err(),
            "wrong key is an error"
        );
    }

    #[test]
    fn searches_raw_files_and_partial_temporary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("stray.txt"), b"plain SECRET here").expect("write stray");
        assert!(scan_plaintext(dir.path(), &KEY, b"SECRET").expect("scan"));
        fs::remove_file(dir.path().join("stray.txt")).expect("remove");

        let directory = EncryptedDirectory::open(dir.path(), KEY, 0).expect("open");
        let mut writer = directory
            .open_write(Path::new("b.idx"))
            .expect("open_write");
        let mut content = vec![b'-'; 2 * BLOCK_SIZE];
        content[BLOCK_SIZE + 10..BLOCK_SIZE + 16].copy_from_slice(b"HIDDEN");
        content.extend_from_slice(b"tail not yet sealed");
        writer.write_all(&content).expect("write");
        writer.flush().expect("flush");
        // Two full blocks are sealed on disk in the temporary file; the tail is not.
        assert!(scan_plaintext(dir.path(), &KEY, b"HIDDEN").expect("scan"));
        assert!(!scan_plaintext(dir.path(), &KEY, b"not yet sealed").expect("scan"));
        drop(writer);
        assert!(!scan_plaintext(dir.path(), &KEY, b"HIDDEN").expect("scan"));
    }
}
