//! Writing encrypted index files: block-by-block sealing into a temporary file that is published
//! under its final name only once complete.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;
use tantivy::directory::{AntiCallToken, TerminatingWrite};
use tracing::debug;

use super::DirectoryError;
use super::format::{BLOCK_SIZE, FileCipher, Header, TAG_LEN};

/// Suffix of temporary files; `.{name}.{16 hex digits}{TEMP_SUFFIX}`. // DO NOT CHANGE
pub(super) const TEMP_SUFFIX: &str = ".inboxd-tmp";

/// How a finished file takes its final name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Publish {
    /// tantivy's `open_write`: segment files are written once; the caller checked the name is free.
    New,
    /// `atomic_write` (meta.json, .managed.json): replace the previous version atomically, then
    /// fsync the directory so the rename itself is durable.
    Replace,
}

/// Seals plaintext into `BLOCK_SIZE` blocks as it arrives. The last block is sealed with the final
/// flag only by [`EncryptingWriter::finish`], so `flush` never seals a partial block (which would
/// leave a non-final short block in the middle of the file).
pub(super) struct EncryptingWriter {
    /// `None` once finished or failed.
    file: Option<File>,
    temp_path: PathBuf,
    final_path: PathBuf,
    name: PathBuf,
    cipher: FileCipher,
    /// Plaintext of the block not sealed yet; at most `BLOCK_SIZE` bytes.
    pending: Vec<u8>,
    next_block: u64,
    publish: Publish,
    /// Set once the temporary file has its final name; until then drop removes it.
    published: bool,
}

impl EncryptingWriter {
    /// Creates the temporary file for `name` in `root` and writes the header.
    pub(super) fn create(
        root: &Path,
        name: &OsStr,
        index_key: &[u8; 32],
        publish: Publish,
    ) -> Result<EncryptingWriter, DirectoryError> {
        let header = Header::generate();
        let temp_path = root.join(temp_name(name));
        let name_path = PathBuf::from(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|source| DirectoryError::io(&name_path, source))?;
        file.write_all(header.as_bytes())
            .map_err(|source| DirectoryError::io(&name_path, source))?;
        Ok(EncryptingWriter {
            file: Some(file),
            temp_path,
            final_path: root.join(name),
            cipher: FileCipher::new(index_key, header, name.as_encoded_bytes()),
            name: name_path,
            pending: Vec::with_capacity(BLOCK_SIZE + TAG_LEN),
            next_block: 0,
            publish,
            published: false,
        })
    }

    /// Seals the last block, makes the file durable and gives it its final name.
    pub(super) fn finish(&mut self) -> Result<(), DirectoryError> {
        self.seal_pending(true)?;
        let file = self.file.take().ok_or_else(|| self.closed_error())?;
        file.sync_all()
            .map_err(|source| DirectoryError::io(&self.name, source))?;
        drop(file);
        fs::rename(&self.temp_path, &self.final_path)
            .map_err(|source| DirectoryError::io(&self.name, source))?;
        self.published = true;
        if self.publish == Publish::Replace {
            let parent = self.final_path.parent().unwrap_or(Path::new("."));
            sync_directory(parent).map_err(|source| DirectoryError::io(&self.name, source))?;
        }
        Ok(())
    }

    fn seal_pending(&mut self, is_final: bool) -> Result<(), DirectoryError> {
        let Some(file) = self.file.as_mut() else {
            return Err(self.closed_error());
        };
        self.cipher
            .seal(self.next_block, is_final, &mut self.pending);
        let written = file.write_all(&self.pending);
        self.pending.clear();
        self.next_block += 1;
        if let Err(source) = written {
            // A half-written block cannot be resumed: refuse further writes.
            self.file = None;
            return Err(DirectoryError::io(&self.name, source));
        }
        Ok(())
    }

    fn closed_error(&self) -> DirectoryError {
        let source = io::Error::other("write after the file was finished or failed");
        DirectoryError::io(&self.name, source)
    }
}

impl Write for EncryptingWriter {
    fn write(&mut self, mut input: &[u8]) -> io::Result<usize> {
        if self.file.is_none() {
            return Err(self.closed_error().into());
        }
        let accepted = input.len();
        while !input.is_empty() {
            // Seal a full block only once more data arrives: the last block must carry the final
            // flag, which is known only at finish.
            if self.pending.len() == BLOCK_SIZE {
                self.seal_pending(false)?;
            }
            let take = (BLOCK_SIZE - self.pending.len()).min(input.len());
            let (head, rest) = input.split_at(take);
            self.pending.extend_from_slice(head);
            input = rest;
        }
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Sealed blocks are already written; the pending partial block must stay open.
        Ok(())
    }
}

impl TerminatingWrite for EncryptingWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.finish().map_err(io::Error::from)
    }
}

impl Drop for EncryptingWriter {
    fn drop(&mut self) {
        if !self.published {
            // Dropped without finishing (an aborted segment write): nothing was published.
            self.file = None;
            if let Err(error) = fs::remove_file(&self.temp_path) {
                debug!(file = %self.name.display(), error = %error, "removing unfinished index file failed");
            }
        }
    }
}

/// `.{name}.{16 random hex digits}.inboxd-tmp`: hidden, unique per write, and recoverable to the
/// final name (which the blocks are keyed with) by [`final_name_of_temp`].
fn temp_name(name: &OsStr) -> OsString {
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(
        ".{:016x}{TEMP_SUFFIX}",
        rand::rngs::OsRng.next_u64()
    ));
    temp
}

/// The final name a temporary file was being written under, or `None` for any other file.
pub(super) fn final_name_of_temp(temp: &OsStr) -> Option<&[u8]> {
    let bytes = temp.as_encoded_bytes();
    let inner = bytes
        .strip_prefix(b".")?
        .strip_suffix(TEMP_SUFFIX.as_bytes())?;
    let (name, random) = inner.split_at_checked(inner.len().checked_sub(17)?)?;
    let random = random.strip_prefix(b".")?;
    let is_hex = random.iter().all(u8::is_ascii_hexdigit);
    (is_hex && !name.is_empty()).then_some(name)
}

/// fsyncs a directory so renames and deletions in it survive a crash.
pub(super) fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_map_back_to_final_names() {
        for name in ["meta.json", ".managed.json", "0a1b.idx", "x.7.del"] {
            let temp = temp_name(OsStr::new(name));
            assert_eq!(final_name_of_temp(&temp), Some(name.as_bytes()));
        }
        for other in [
            "meta.json",
            ".tantivy-writer.lock",
            ".x.inboxd-tmp",
            ".a.zzzzzzzzzzzzzzzz.inboxd-tmp",
        ] {
            assert_eq!(final_name_of_temp(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn flush_does_not_seal_a_partial_block_and_drop_removes_the_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer =
            EncryptingWriter::create(dir.path(), OsStr::new("a.idx"), &[1u8; 32], Publish::New)
                .expect("create");
        writer.write_all(&[5u8; 100]).expect("write");
        writer.flush().expect("flush");
        assert_eq!(writer.next_block, 0);
        assert_eq!(writer.pending.len(), 100);
        let temp = writer.temp_path.clone();
        assert!(temp.exists());
        drop(writer);
        assert!(!temp.exists());
        assert!(!dir.path().join("a.idx").exists());
    }

    #[test]
    fn a_full_block_is_sealed_only_when_more_data_arrives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer =
            EncryptingWriter::create(dir.path(), OsStr::new("a.idx"), &[1u8; 32], Publish::New)
                .expect("create");
        writer.write_all(&vec![1u8; BLOCK_SIZE]).expect("write");
        assert_eq!(
            writer.next_block, 0,
            "a full block may still be the final one"
        );
        writer.write_all(&[2u8]).expect("write");
        assert_eq!(writer.next_block, 1);
        writer.finish().expect("finish");
        assert_eq!(writer.next_block, 2);
        assert!(dir.path().join("a.idx").exists());
        assert!(!writer.temp_path.exists());
        assert!(
            writer.write_all(&[3u8]).is_err(),
            "writing after finish must fail"
        );
    }
}
