//! [`EncryptedDirectory`]: the tantivy `Directory` implementation.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tantivy::Directory;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, INDEX_WRITER_LOCK, Lock, WatchCallback, WatchCallbackList,
    WatchHandle, WritePtr,
};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use super::cache::BlockCache;
use super::file::{Completeness, EncryptedFileHandle, decrypt_whole_file};
use super::format::{HEADER_LEN, Header};
use super::writer::{EncryptingWriter, Publish, final_name_of_temp, sync_directory};
use super::{CacheStats, DirectoryError};

/// tantivy's index metadata file; readers reload when it is rewritten.
const META_FILE_NAME: &str = "meta.json";

/// A tantivy [`Directory`] storing every file encrypted (see the module documentation). Cloning is
/// cheap and clones share the block cache and the watch callbacks.
#[derive(Clone)]
pub struct EncryptedDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    index_key: Zeroizing<[u8; 32]>,
    /// Shared with every open file handle, which may outlive the directory.
    cache: Arc<BlockCache>,
    /// tantivy's `IndexReader` subscribes here; `atomic_write` of meta.json broadcasts.
    watchers: WatchCallbackList,
}

impl EncryptedDirectory {
    /// Opens the index directory at `path` (which must exist), keyed by `index_key` (derived by the
    /// caller from the master key with HKDF label "inboxd/v1/index"), with a cache of at most
    /// `cache_bytes` of decrypted blocks ([`super::DEFAULT_CACHE_BYTES`] is a good default).
    pub fn open(
        path: &Path,
        index_key: [u8; 32],
        cache_bytes: usize,
    ) -> Result<EncryptedDirectory, DirectoryError> {
        let index_key = Zeroizing::new(index_key);
        let is_directory = fs::metadata(path)
            .map(|metadata| metadata.is_dir())
            .unwrap_or(false);
        if !is_directory {
            return Err(DirectoryError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        Ok(EncryptedDirectory {
            inner: Arc::new(Inner {
                root: path.to_path_buf(),
                index_key,
                cache: Arc::new(BlockCache::new(cache_bytes)),
                watchers: WatchCallbackList::default(),
            }),
        })
    }

    /// The directory this index lives in.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Block cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    fn open_file(&self, name: &OsStr) -> Result<File, DirectoryError> {
        let file = PathBuf::from(name);
        File::open(self.inner.root.join(name)).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                DirectoryError::FileNotFound { file }
            } else {
                DirectoryError::Io { file, source }
            }
        })
    }

    fn open_handle(&self, name: &OsStr) -> Result<EncryptedFileHandle, DirectoryError> {
        let file = self.open_file(name)?;
        let cache = self.inner.cache.clone();
        EncryptedFileHandle::open(file, Path::new(name), &self.inner.index_key, cache)
    }

    fn read_whole(&self, name: &OsStr) -> Result<Vec<u8>, DirectoryError> {
        let file = self.open_file(name)?;
        let mut plaintext = Vec::new();
        decrypt_whole_file(
            &file,
            Path::new(name),
            name.as_encoded_bytes(),
            &self.inner.index_key,
            Completeness::Complete,
            |block| plaintext.extend_from_slice(block),
        )?;
        Ok(plaintext)
    }

    fn write_replacing(&self, name: &OsStr, data: &[u8]) -> Result<(), DirectoryError> {
        let mut writer = EncryptingWriter::create(
            &self.inner.root,
            name,
            &self.inner.index_key,
            Publish::Replace,
        )?;
        writer
            .write_all(data)
            .map_err(|source| DirectoryError::Io {
                file: PathBuf::from(name),
                source,
            })?;
        writer.finish()
    }

    /// Removes temporary files of writes interrupted by a crash; they may hold (encrypted) text of
    /// documents deleted since. Called with the writer lock held, when no write should be in
    /// flight. (A merge thread of a writer dropped just before could still be writing: its merge
    /// then fails on the missing temporary file, which loses nothing since that writer is gone.)
    fn remove_stale_temp_files(&self) {
        let entries = match fs::read_dir(&self.inner.root) {
            Ok(entries) => entries,
            Err(error) => {
                warn!(error = %error, "listing index directory for stale temporary files failed");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if final_name_of_temp(&name).is_none() {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => debug!(file = ?name, "removed stale temporary index file"),
                Err(error) => {
                    warn!(file = ?name, error = %error, "removing stale temporary index file failed")
                }
            }
        }
    }
}

/// The single file name a tantivy path must consist of; anything else could escape the directory.
fn file_name(path: &Path) -> Result<&OsStr, DirectoryError> {
    let mut components = path.components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(name)), None) => Ok(name),
        _ => Err(DirectoryError::InvalidFileName {
            file: path.to_path_buf(),
        }),
    }
}

/// Maps an error to tantivy's read error, using its own "does not exist" variant for missing files.
fn open_read_error(error: DirectoryError, path: &Path) -> OpenReadError {
    if error.is_not_found() {
        OpenReadError::FileDoesNotExist(path.to_path_buf())
    } else {
        OpenReadError::wrap_io_error(io::Error::from(error), path.to_path_buf())
    }
}

/// The file id in a file's header, if it has a readable one.
fn read_file_id(path: &Path) -> Option<u128> {
    let mut raw = [0u8; HEADER_LEN];
    File::open(path).ok()?.read_exact(&mut raw).ok()?;
    Header::parse(&raw).ok().map(|header| header.file_id())
}

/// A held flock on a lock file; dropping it closes the descriptor, which releases the lock. A crash
/// releases it too, unlike tantivy's default create-a-file locks.
struct HeldLock {
    _file: File,
}

impl Directory for EncryptedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let name = file_name(path).map_err(|error| open_read_error(error, path))?;
        let handle = self
            .open_handle(name)
            .map_err(|error| open_read_error(error, path))?;
        Ok(Arc::new(handle))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let wrap = |error: io::Error| DeleteError::IoError {
            io_error: Arc::new(error),
            filepath: path.to_path_buf(),
        };
        let name = file_name(path).map_err(|error| wrap(error.into()))?;
        let full_path = self.inner.root.join(name);
        let file_id = read_file_id(&full_path);
        fs::remove_file(&full_path).map_err(|error| {
            if error.kind() == io::ErrorKind::NotFound {
                DeleteError::FileDoesNotExist(path.to_path_buf())
            } else {
                wrap(error)
            }
        })?;
        if let Some(file_id) = file_id {
            self.inner.cache.remove_file(file_id);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        let name = file_name(path).map_err(|error| open_read_error(error, path))?;
        self.inner
            .root
            .join(name)
            .try_exists()
            .map_err(|error| OpenReadError::wrap_io_error(error, path.to_path_buf()))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let wrap =
            |error: DirectoryError| OpenWriteError::wrap_io_error(error.into(), path.to_path_buf());
        let name = file_name(path).map_err(wrap)?;
        let exists = self
            .inner
            .root
            .join(name)
            .try_exists()
            .map_err(|error| OpenWriteError::wrap_io_error(error, path.to_path_buf()))?;
        if exists {
            return Err(OpenWriteError::FileAlreadyExists(path.to_path_buf()));
        }
        let writer =
            EncryptingWriter::create(&self.inner.root, name, &self.inner.index_key, Publish::New)
                .map_err(wrap)?;
        Ok(BufWriter::new(Box::new(writer)))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let name = file_name(path).map_err(|error| open_read_error(error, path))?;
        self.read_whole(name)
            .map_err(|error| open_read_error(error, path))
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let name = file_name(path)?;
        self.write_replacing(name, data)?;
        if name == META_FILE_NAME {
            // Readers with ReloadPolicy::OnCommitWithDelay reload from this callback; the callbacks
            // run on a thread of their own, so the writer does not wait for them.
            drop(self.inner.watchers.broadcast());
        }
        Ok(())
    }

    fn sync_directory(&self) -> io::Result<()> {
        sync_directory(&self.inner.root)
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        let name =
            file_name(&lock.filepath).map_err(|error| LockError::wrap_io_error(error.into()))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.inner.root.join(name))
            .map_err(LockError::wrap_io_error)?;
        if lock.is_blocking {
            file.lock().map_err(LockError::wrap_io_error)?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(LockError::LockBusy),
                Err(TryLockError::Error(error)) => return Err(LockError::wrap_io_error(error)),
            }
        }
        if lock.filepath == INDEX_WRITER_LOCK.filepath {
            self.remove_stale_temp_files();
        }
        Ok(DirectoryLock::from(Box::new(HeldLock { _file: file })))
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(self.inner.watchers.subscribe(watch_callback))
    }
}

impl fmt::Debug for EncryptedDirectory {
    /// Shows the path only: the key must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedDirectory")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use tantivy::directory::{META_LOCK, TerminatingWrite};

    use super::super::DEFAULT_CACHE_BYTES;
    use super::*;

    const KEY: [u8; 32] = [5u8; 32];

    fn open(dir: &Path) -> EncryptedDirectory {
        EncryptedDirectory::open(dir, KEY, DEFAULT_CACHE_BYTES).expect("open")
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn open_requires_an_existing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = EncryptedDirectory::open(&dir.path().join("missing"), KEY, 0);
        assert!(matches!(missing, Err(DirectoryError::NotADirectory { .. })));
        fs::write(dir.path().join("file"), b"x").expect("write");
        assert!(EncryptedDirectory::open(&dir.path().join("file"), KEY, 0).is_err());
        let debug = format!("{:?}", open(dir.path()));
        assert!(
            debug.contains("EncryptedDirectory") && !debug.contains("[5, 5"),
            "{debug}"
        );
    }

    #[test]
    fn atomic_write_replaces_meta_json_and_the_cache_follows_the_file_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        let meta = Path::new("meta.json");
        directory
            .atomic_write(meta, b"{\"version\": 1}")
            .expect("write v1");
        assert_eq!(
            directory.atomic_read(meta).expect("read v1"),
            b"{\"version\": 1}"
        );
        // Read through a handle so v1's block is cached under its file id.
        let v1 = directory.get_file_handle(meta).expect("handle v1");
        assert_eq!(
            v1.read_bytes(0..14).expect("read").as_slice(),
            b"{\"version\": 1}"
        );

        directory
            .atomic_write(meta, b"{\"version\": 2}")
            .expect("write v2");
        assert_eq!(
            directory.atomic_read(meta).expect("read v2"),
            b"{\"version\": 2}"
        );
        let v2 = directory.get_file_handle(meta).expect("handle v2");
        assert_eq!(
            v2.read_bytes(0..14).expect("read").as_slice(),
            b"{\"version\": 2}"
        );
        assert_eq!(
            v1.read_bytes(0..14).expect("read").as_slice(),
            b"{\"version\": 1}"
        );

        assert_eq!(
            names_in(dir.path()),
            ["meta.json"],
            "no temporary file left"
        );
        let raw = fs::read(dir.path().join("meta.json")).expect("raw");
        assert!(!raw.windows(7).any(|window| window == b"version"));
    }

    #[test]
    fn missing_files_map_to_tantivys_own_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        let missing = Path::new("missing.idx");
        assert!(matches!(
            directory.get_file_handle(missing),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
        assert!(matches!(
            directory.atomic_read(missing),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
        assert!(matches!(
            directory.delete(missing),
            Err(DeleteError::FileDoesNotExist(_))
        ));
        assert!(!directory.exists(missing).expect("exists"));
    }

    #[test]
    fn open_write_publishes_only_on_terminate_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        let path = Path::new("seg.idx");
        let mut writer = directory.open_write(path).expect("open_write");
        writer.write_all(b"segment bytes").expect("write");
        writer.flush().expect("flush");
        assert!(
            !directory.exists(path).expect("exists"),
            "unfinished file must not be visible"
        );
        writer.terminate().expect("terminate");
        assert!(directory.exists(path).expect("exists"));
        assert_eq!(directory.atomic_read(path).expect("read"), b"segment bytes");
        assert!(matches!(
            directory.open_write(path),
            Err(OpenWriteError::FileAlreadyExists(_))
        ));
    }

    #[test]
    fn open_handles_survive_deletion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        let path = Path::new("old.store");
        let mut writer = directory.open_write(path).expect("open_write");
        writer.write_all(&[7u8; 40_000]).expect("write");
        writer.terminate().expect("terminate");
        let handle = directory.get_file_handle(path).expect("handle");
        directory.delete(path).expect("delete");
        assert!(!directory.exists(path).expect("exists"));
        assert!(
            !dir.path().join("old.store").exists(),
            "delete removes the file physically"
        );
        assert_eq!(
            handle.read_bytes(20_000..40_000).expect("read").as_slice(),
            &[7u8; 20_000][..]
        );
        assert!(matches!(
            directory.delete(path),
            Err(DeleteError::FileDoesNotExist(_))
        ));
    }

    #[test]
    fn paths_outside_the_directory_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        for bad in ["../escape", "/etc/passwd", "a/b", ""] {
            let path = Path::new(bad);
            assert!(directory.get_file_handle(path).is_err(), "{bad}");
            assert!(directory.open_write(path).is_err(), "{bad}");
            assert!(directory.atomic_write(path, b"x").is_err(), "{bad}");
            assert!(directory.exists(path).is_err(), "{bad}");
        }
    }

    #[test]
    fn writing_meta_json_fires_watch_callbacks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        let (sender, receiver) = mpsc::channel();
        let sender = std::sync::Mutex::new(sender);
        let _handle = directory
            .watch(WatchCallback::new(move || {
                let _ = sender.lock().map(|sender| sender.send(()));
            }))
            .expect("watch");
        directory
            .atomic_write(Path::new(".managed.json"), b"[]")
            .expect("write managed");
        assert!(
            receiver.recv_timeout(Duration::from_millis(300)).is_err(),
            "only meta.json notifies"
        );
        directory
            .atomic_write(Path::new("meta.json"), b"{}")
            .expect("write meta");
        receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("callback fired");
    }

    #[test]
    fn writer_lock_is_exclusive_across_instances_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = open(dir.path());
        let second = open(dir.path());
        let held = first.acquire_lock(&INDEX_WRITER_LOCK).expect("first lock");
        assert!(matches!(
            first.acquire_lock(&INDEX_WRITER_LOCK),
            Err(LockError::LockBusy)
        ));
        assert!(matches!(
            second.acquire_lock(&INDEX_WRITER_LOCK),
            Err(LockError::LockBusy)
        ));
        drop(held);
        let _again = second
            .acquire_lock(&INDEX_WRITER_LOCK)
            .expect("lock after release");
    }

    #[test]
    fn blocking_lock_waits_for_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        let held = directory.acquire_lock(&META_LOCK).expect("lock");
        let (sender, receiver) = mpsc::channel();
        let contender = directory.clone();
        let waiter = thread::spawn(move || {
            let lock = contender.acquire_lock(&META_LOCK).map(|_| ());
            let _ = sender.send(lock.is_ok());
        });
        assert!(
            receiver.recv_timeout(Duration::from_millis(300)).is_err(),
            "must block while held"
        );
        drop(held);
        assert_eq!(receiver.recv_timeout(Duration::from_secs(10)), Ok(true));
        waiter.join().expect("waiter");
    }

    #[test]
    fn taking_the_writer_lock_removes_stale_temporary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = open(dir.path());
        directory
            .atomic_write(Path::new("meta.json"), b"{}")
            .expect("write meta");
        let stale = ".abc.idx.0123456789abcdef.inboxd-tmp";
        fs::write(dir.path().join(stale), b"left by a crash").expect("write stale");
        let _lock = directory.acquire_lock(&INDEX_WRITER_LOCK).expect("lock");
        assert_eq!(names_in(dir.path()), [".tantivy-writer.lock", "meta.json"]);
    }
}
