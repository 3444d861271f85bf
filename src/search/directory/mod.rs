//! An encrypted tantivy [`Directory`](tantivy::Directory): every index file (segments, meta.json,
//! .managed.json) is stored as AES-256-GCM sealed 16 KiB blocks, so the search index holds no
//! plaintext at rest. Plaintext lives only in memory, in a bounded cache of decrypted blocks and
//! of whole hot files (see `file.rs`).
//!
//! Format and keys (details in `format.rs`): each file has a 32-byte header (magic, version, block
//! size, random file id); its key is HKDF-SHA256 of the index key (which the caller derives from the
//! master key with label "inboxd/v1/index"), salted with the file id and bound to the file name.
//! Each block's nonce is its index; its associated data is the header, the index and a final-block
//! flag. A read therefore fails with an error, never wrong bytes, when a block is changed, moved,
//! dropped from the end, or the file is renamed, swapped or opened with another key.
//!
//! Not covered: replacing the whole index (or meta.json) with an older valid version of itself.
//! Detecting that rollback needs a commit counter kept outside the index, in the database.
//!
//! Deletion (GDPR purge): [`tantivy::Directory::delete`] removes the file from the file system
//! (open handles keep reading through their descriptor until dropped). Deleting documents in tantivy
//! only marks them in a `.del` bitset; their text stays in the segment files until a merge rewrites
//! the live documents into a new segment and tantivy's garbage collection
//! (`IndexWriter::garbage_collect_files`, also run after each commit and merge) deletes the old
//! files. [`scan_plaintext`] decrypts every file to prove a text is gone. The blocks of a deleted
//! file may survive on the disk itself (journal, SSD remapping) and remain decryptable with the
//! index key; only destroying that key erases them.
//!
//! Only meta.json writes in this process fire [`tantivy::Directory::watch`] callbacks: readers in
//! another process must reload themselves. Unix only (positioned reads, flock).

mod cache;
mod encrypted;
#[cfg(test)]
mod end_to_end_tests;
mod file;
mod format;
mod scan;
mod writer;

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use self::encrypted::EncryptedDirectory;
pub use self::scan::scan_plaintext;

/// Default bound of the decrypted-data cache (`[search] cache_mb`): 512 MiB. The hot files of an
/// index (fast-field columns, fieldnorms, postings and positions) take about 370 MB at 1,000,000
/// messages (`benches/search.rs`); with all of them cached whole, searches run at MmapDirectory
/// speed. Memory is only taken as files are read, so small indexes use little.
pub const DEFAULT_CACHE_BYTES: usize = 512 * 1024 * 1024;

/// Errors of the encrypted index directory. Inside tantivy they travel as [`io::Error`]s (see the
/// `From` impl) and missing files as tantivy's own `FileDoesNotExist` errors.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The index path is missing or not a directory.
    #[error("index directory {} is not a directory", path.display())]
    NotADirectory {
        /// The path given to `open`.
        path: PathBuf,
    },
    /// The file does not exist.
    #[error("index file {} does not exist", file.display())]
    FileNotFound {
        /// Name within the index directory.
        file: PathBuf,
    },
    /// tantivy asked for a path that is not a plain file name inside the directory.
    #[error("invalid index file name {}", file.display())]
    InvalidFileName {
        /// The rejected path.
        file: PathBuf,
    },
    /// A block did not authenticate: the file was tampered with, truncated, renamed or swapped, or
    /// the index key is wrong.
    #[error("index file {} block {block} failed authentication", file.display())]
    Authentication {
        /// Name within the index directory.
        file: PathBuf,
        /// Index of the block that failed.
        block: u64,
    },
    /// The file's header or length is not one this format produces.
    #[error("index file {} is malformed: {reason}", file.display())]
    Malformed {
        /// Name within the index directory.
        file: PathBuf,
        /// Which structural check failed.
        reason: &'static str,
    },
    /// A read beyond the end of the file's plaintext.
    #[error("read of bytes {}..{} past the end of index file {} ({len} bytes)", range.start, range.end, file.display())]
    OutOfBounds {
        /// Name within the index directory.
        file: PathBuf,
        /// The requested plaintext range.
        range: Range<usize>,
        /// Plaintext length of the file.
        len: u64,
    },
    /// An operating-system I/O error.
    #[error("i/o error on index file {}", file.display())]
    Io {
        /// Name within the index directory (or the directory itself).
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl DirectoryError {
    /// True when stored bytes failed a cryptographic or structural check: tampering, corruption or
    /// a wrong key. Retrying will not help; rebuild the index from the database.
    pub fn is_integrity_failure(&self) -> bool {
        matches!(self, Self::Authentication { .. } | Self::Malformed { .. })
    }

    /// True when the file (or directory) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::FileNotFound { .. } | Self::NotADirectory { .. } => true,
            Self::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }

    fn io(file: &Path, source: io::Error) -> DirectoryError {
        DirectoryError::Io {
            file: file.to_path_buf(),
            source,
        }
    }

    fn malformed(file: &Path, reason: &'static str) -> DirectoryError {
        tracing::warn!(file = %file.display(), reason, "malformed index file");
        DirectoryError::Malformed {
            file: file.to_path_buf(),
            reason,
        }
    }

    fn authentication(file: &Path, block: u64) -> DirectoryError {
        tracing::warn!(file = %file.display(), block, "index block failed authentication");
        DirectoryError::Authentication {
            file: file.to_path_buf(),
            block,
        }
    }
}

impl From<DirectoryError> for io::Error {
    /// Integrity failures become `InvalidData`, so tantivy reports them instead of reading garbage.
    fn from(error: DirectoryError) -> io::Error {
        let kind = match &error {
            DirectoryError::NotADirectory { .. } | DirectoryError::FileNotFound { .. } => {
                io::ErrorKind::NotFound
            }
            DirectoryError::InvalidFileName { .. } | DirectoryError::OutOfBounds { .. } => {
                io::ErrorKind::InvalidInput
            }
            DirectoryError::Authentication { .. } | DirectoryError::Malformed { .. } => {
                io::ErrorKind::InvalidData
            }
            DirectoryError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, error)
    }
}

/// Counters of the decrypted-block cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups (of a block or a whole file) served from the cache.
    pub hits: u64,
    /// Block lookups that had to decrypt.
    pub misses: u64,
    /// Plaintext bytes currently cached.
    pub used_bytes: usize,
    /// The configured bound.
    pub capacity_bytes: usize,
}
