//! Encrypted blob files for raw messages, written and read in 64 KiB chunks so a message of tens of
//! MB is never held twice in memory.
//!
//! Format (STREAM construction, Hoang et al. 2015, as used by age and Tink):
//!
//! ```text
//! header: magic "IBXB" (4) | version (1) | key_id (8) | salt (16) | nonce_prefix (7)
//! chunks: AES-256-GCM(plaintext chunk) | tag (16), every chunk but the last holding exactly 64 KiB
//! nonce of chunk i: nonce_prefix (7) | i as u32 big-endian (4) | last flag (1)
//! last flag: 0x01 on the last chunk, 0x00 on every other
//! associated data of every chunk: caller's Aad | header
//! ```
//!
//! The chunk key is HKDF-SHA256(data key, salt, "inboxd/v1/blob"), so each file has its own key and
//! nonces can never repeat across files however many blobs share a data key (a random 56-bit prefix
//! alone would collide after about 2^28 files). The counter detects reordered or dropped chunks,
//! the last flag detects truncation at a chunk boundary, and the header in the associated data
//! detects a spliced header. A file is written under a temporary name and renamed into place only
//! after it is complete and fsynced.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keys::KEY_LEN;
use super::{Aad, CryptoError, DataKey, KEY_ID_LEN, KeyId, Result};

pub(super) const MAGIC: &[u8; 4] = b"IBXB"; // DO NOT CHANGE
pub(super) const VERSION: u8 = 1; // DO NOT CHANGE
const SALT_LEN: usize = 16; // DO NOT CHANGE
const NONCE_PREFIX_LEN: usize = 7; // DO NOT CHANGE
pub(super) const HEADER_LEN: usize = 4 + 1 + KEY_ID_LEN + SALT_LEN + NONCE_PREFIX_LEN; // DO NOT CHANGE
/// Plaintext bytes per chunk; every chunk but the last is exactly this long. DO NOT CHANGE.
pub(super) const CHUNK_LEN: usize = 64 * 1024; // DO NOT CHANGE
pub(super) const TAG_LEN: usize = 16; // DO NOT CHANGE
pub(super) const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// HKDF info for the per-file chunk key. DO NOT CHANGE.
const LABEL_BLOB: &[u8] = b"inboxd/v1/blob"; // DO NOT CHANGE
const LAST_CHUNK: u8 = 1; // DO NOT CHANGE
const NOT_LAST_CHUNK: u8 = 0; // DO NOT CHANGE

/// Sizes of a finished blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Bytes given to [`BlobWriter::write_all`].
    pub plaintext_len: u64,
    /// Bytes of the file on disk.
    pub ciphertext_len: u64,
}

/// What a blob's chunks share: the per-file cipher, the nonce prefix and the associated data.
pub(super) struct ChunkCipher {
    pub(super) cipher: Aes256Gcm,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    pub(super) associated_data: Vec<u8>,
}

impl ChunkCipher {
    pub(super) fn new(key: &DataKey, header: &[u8; HEADER_LEN], aad: &Aad) -> Self {
        let salt = &header[HEADER_LEN - NONCE_PREFIX_LEN - SALT_LEN..HEADER_LEN - NONCE_PREFIX_LEN];
        let mut file_key = Zeroizing::new([0u8; KEY_LEN]);
        Hkdf::<Sha256>::new(Some(salt), key.as_bytes())
            .expand(LABEL_BLOB, file_key.as_mut())
            .expect("hkdf-sha256 output of 32 bytes is always valid");
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&header[HEADER_LEN - NONCE_PREFIX_LEN..]);
        let mut associated_data = Vec::with_capacity(aad.as_bytes().len() + HEADER_LEN);
        associated_data.extend_from_slice(aad.as_bytes());
        associated_data.extend_from_slice(header);
        let cipher = Aes256Gcm::new((&*file_key).into());
        Self {
            cipher,
            nonce_prefix,
            associated_data,
        }
    }

    pub(super) fn nonce(&self, counter: u32, last: bool) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = if last { LAST_CHUNK } else { NOT_LAST_CHUNK };
        nonce
    }
}

fn new_header(key_id: KeyId) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(MAGIC);
    header[4] = VERSION;
    header[5..5 + KEY_ID_LEN].copy_from_slice(key_id.as_bytes());
    OsRng.fill_bytes(&mut header[5 + KEY_ID_LEN..]);
    header
}

/// Writes one encrypted blob file. Create it with [`BlobWriter::create`], feed it with
/// [`BlobWriter::write_all`], and commit it with [`BlobWriter::finish`]; dropping it unfinished
/// deletes the temporary file. Synchronous: run it in `spawn_blocking`.
pub struct BlobWriter {
    /// Open until `finish`.
    file: Option<File>,
    /// Set until the file is renamed into place; `Drop` deletes whatever it names.
    temp_path: Option<PathBuf>,
    final_path: PathBuf,
    chunk_cipher: ChunkCipher,
    /// Plaintext of the current chunk (sealed in place, then the tag is appended), zeroized on
    /// drop.
    buffer: Zeroizing<Vec<u8>>,
    counter: u32,
    plaintext_len: u64,
    ciphertext_len: u64,
    /// Set after a failed write, so a damaged file is never committed.
    failed: bool,
}

impl BlobWriter {
    /// Starts a blob that [`BlobWriter::finish`] will rename to `final_path`. The temporary file
    /// (mode 0600) is created in `dir`, which must be on the same file system as `final_path`.
    /// A missing directory of `final_path` (e.g. a fan-out subdirectory) is created, mode 0700.
    pub fn create(dir: &Path, final_path: &Path, key: &DataKey, aad: &Aad) -> Result<Self> {
        Self::create_with_header(dir, final_path, key, aad, new_header(key.key_id()))
    }

    /// [`BlobWriter::create`] with a given header, so tests can pin the salt and nonce prefix.
    fn create_with_header(
        dir: &Path,
        final_path: &Path,
        key: &DataKey,
        aad: &Aad,
        header: [u8; HEADER_LEN],
    ) -> Result<Self> {
        let final_dir = parent_dir(final_path);
        if !final_dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(final_dir)
                .map_err(|e| CryptoError::io(final_dir, e))?;
            // Make the new directory's own entry durable before anything is renamed into it.
            sync_parent_dir(final_dir)?;
        }
        let temp_path = dir.join(format!(
            ".ibxb-{}.tmp",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp_path)
            .map_err(|e| CryptoError::io(&temp_path, e))?;
        let mut writer = Self {
            file: None,
            temp_path: Some(temp_path.clone()),
            final_path: final_path.to_path_buf(),
            chunk_cipher: ChunkCipher::new(key, &header, aad),
            buffer: Zeroizing::new(Vec::with_capacity(SEALED_CHUNK_LEN)),
            counter: 0,
            plaintext_len: 0,
            ciphertext_len: HEADER_LEN as u64,
            failed: false,
        };
        // From here on `writer` owns the temp file and removes it if anything fails.
        file.write_all(&header)
            .map_err(|e| CryptoError::io(&temp_path, e))?;
        writer.file = Some(file);
        Ok(writer)
    }

    /// Encrypts and writes `data`; full chunks go to disk as soon as more data follows them.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        if self.failed {
            return Err(self.poisoned());
        }
        while !data.is_empty() {
            if self.buffer.len() == CHUNK_LEN {
                // More data follows, so this chunk is not the last one.
                self.seal_and_write_chunk(false)?;
            }
            let take = (CHUNK_LEN - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.plaintext_len += take as u64;
        }
        Ok(())
    }

    /// Seals the last chunk, fsyncs the file, renames it to the final path and fsyncs the
    /// directory, so the blob exists completely or not at all after a crash. An existing file at
    /// the final path is replaced.
    pub fn finish(self) -> Result<BlobInfo> {
        self.finish_with(true)
    }

    /// Like [`finish`](Self::finish) but without fsync: for callers that write many blobs and then
    /// make them durable at once (one `syncfs` per batch) before anything refers to them.
    pub fn finish_unsynced(self) -> Result<BlobInfo> {
        self.finish_with(false)
    }

    fn finish_with(mut self, durable: bool) -> Result<BlobInfo> {
        if self.failed {
            return Err(self.poisoned());
        }
        self.seal_and_write_chunk(true)?;
        let temp_path = self
            .temp_path
            .clone()
            .expect("temp path is set until finish");
        let file = self.file.take().expect("file is open until finish");
        if durable {
            file.sync_all()
                .map_err(|e| CryptoError::io(&temp_path, e))?;
        }
        drop(file);
        fs::rename(&temp_path, &self.final_path)
            .map_err(|e| CryptoError::io(&self.final_path, e))?;
        self.temp_path = None;
        if durable {
            sync_parent_dir(&self.final_path)?;
        }
        Ok(BlobInfo {
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
        })
    }

    fn seal_and_write_chunk(&mut self, last: bool) -> Result<()> {
        let counter = self.counter;
        if !last {
            // The last chunk may use u32::MAX; a non-last chunk there would leave no counter for
            // the last one.
            self.counter = self
                .counter
                .checked_add(1)
                .ok_or(CryptoError::BlobTooLarge)?;
        }
        let nonce = self.chunk_cipher.nonce(counter, last);
        let tag = self
            .chunk_cipher
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &self.chunk_cipher.associated_data,
                &mut self.buffer,
            )
            .expect("aes-gcm seals a 64 KiB chunk");
        self.buffer.extend_from_slice(&tag);
        let file = self.file.as_mut().expect("file is open until finish");
        if let Err(error) = file.write_all(&self.buffer) {
            self.failed = true;
            let temp_path = self.temp_path.clone().unwrap_or_default();
            return Err(CryptoError::io(temp_path, error));
        }
        self.ciphertext_len += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    fn poisoned(&self) -> CryptoError {
        let source = io::Error::other("an earlier write to this blob failed");
        CryptoError::io(self.temp_path.clone().unwrap_or_default(), source)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(temp_path) = self.temp_path.take() {
            // Best effort: an unfinished blob must not stay behind; a leftover `.ibxb-*.tmp` is
            // only ciphertext.
            let _ = fs::remove_file(temp_path);
        }
    }
}

/// Seals `plaintext` into the blob format in memory (header and chunks exactly as
/// [`BlobWriter`] writes them to a file), for small messages kept in the database.
/// [`super::open_blob`] reverses it.
pub fn seal_blob(plaintext: &[u8], key: &DataKey, aad: &Aad) -> Vec<u8> {
    seal_blob_with_header(plaintext, key, aad, new_header(key.key_id()))
}

fn seal_blob_with_header(
    plaintext: &[u8],
    key: &DataKey,
    aad: &Aad,
    header: [u8; HEADER_LEN],
) -> Vec<u8> {
    let chunk_cipher = ChunkCipher::new(key, &header, aad);
    let chunks = plaintext.len().div_ceil(CHUNK_LEN).max(1);
    let mut sealed = Vec::with_capacity(HEADER_LEN + plaintext.len() + chunks * TAG_LEN);
    sealed.extend_from_slice(&header);
    for index in 0..chunks {
        let start = index * CHUNK_LEN;
        let end = (start + CHUNK_LEN).min(plaintext.len());
        let last = index + 1 == chunks;
        // Chunk counters are u32 like the file writer's; a message needs 2^32 chunks of 64 KiB
        // (256 TiB) to overflow, far past any size cap.
        let counter = u32::try_from(index).unwrap_or(u32::MAX);
        let nonce = chunk_cipher.nonce(counter, last);
        let offset = sealed.len();
        sealed.extend_from_slice(&plaintext[start..end]);
        let tag = chunk_cipher
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &chunk_cipher.associated_data,
                &mut sealed[offset..],
            )
            .expect("aes-gcm seals a 64 KiB chunk");
        sealed.extend_from_slice(&tag);
    }
    sealed
}

/// The directory holding `path`; `.` for a bare file name.
pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory holding `path`, making a rename or new directory entry durable (POSIX
/// rename(2) is atomic but only durable once the directory is synced).
pub(super) fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CryptoError::io(dir, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::read_blob;
    use super::*;

    pub(crate) fn aad() -> Aad {
        Aad::new("message.raw").with_uuid_bytes(&[5; 16])
    }

    pub(crate) fn pattern(length: usize) -> Vec<u8> {
        (0..length)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
            .collect()
    }

    /// Writes `plaintext` in pieces of `piece` bytes and returns the path and info.
    pub(crate) fn write_blob(
        dir: &Path,
        name: &str,
        key: &DataKey,
        plaintext: &[u8],
        piece: usize,
    ) -> (PathBuf, BlobInfo) {
        let path = dir.join(name);
        let mut writer = BlobWriter::create(dir, &path, key, &aad()).expect("create");
        for part in plaintext.chunks(piece.max(1)) {
            writer.write_all(part).expect("write");
        }
        (path, writer.finish().expect("finish"))
    }

    fn expected_file_len(plaintext_len: usize) -> u64 {
        let chunks = plaintext_len.div_ceil(CHUNK_LEN).max(1);
        (HEADER_LEN + plaintext_len + chunks * TAG_LEN) as u64
    }

    #[test]
    fn round_trips_at_chunk_edges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let lengths = [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            2 * CHUNK_LEN,
            5_000_000,
        ];
        for (index, length) in lengths.into_iter().enumerate() {
            let plaintext = pattern(length);
            for piece in [7_919, CHUNK_LEN, 1 << 20] {
                let (path, info) = write_blob(
                    dir.path(),
                    &format!("b{index}-{piece}"),
                    &key,
                    &plaintext,
                    piece,
                );
                assert_eq!(info.plaintext_len, length as u64);
                assert_eq!(
                    info.ciphertext_len,
                    expected_file_len(length),
                    "length {length}"
                );
                assert_eq!(
                    fs::metadata(&path).expect("exists").len(),
                    info.ciphertext_len
                );
                let read = read_blob(&path, &key, &aad()).expect("reads");
                assert!(
                    read == plaintext,
                    "length {length} piece {piece}: round trip differs"
                );
            }
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("lists")
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn file_holds_no_plaintext() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let plaintext = b"Subject: quarterly numbers\r\n\r\nconfidential ".repeat(4000);
        let (path, _) = write_blob(dir.path(), "b", &key, &plaintext, 1000);
        let raw = fs::read(&path).expect("reads");
        assert!(!raw.windows(12).any(|w| w == b"confidential"));
        assert_eq!(&raw[..4], MAGIC);
    }

    /// Known answer computed independently with Python `cryptography` (HKDF, AESGCM) from the
    /// documented format: data key 0x42 x 32, salt 00..0f, nonce prefix c8..ce, the Aad of `aad()`
    /// and `pattern(2 * 64 KiB + 5)`.
    #[test]
    fn format_matches_independent_implementation() {
        use sha2::Digest;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::from_bytes([0x42; KEY_LEN]);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[5..13].copy_from_slice(key.key_id().as_bytes());
        header[13..29].copy_from_slice(&std::array::from_fn::<u8, 16, _>(|i| i as u8));
        header[29..].copy_from_slice(&std::array::from_fn::<u8, 7, _>(|i| 200 + i as u8));
        let path = dir.path().join("kat");
        let mut writer = BlobWriter::create_with_header(dir.path(), &path, &key, &aad(), header)
            .expect("create");
        writer
            .write_all(&pattern(2 * CHUNK_LEN + 5))
            .expect("write");
        let info = writer.finish().expect("finish");
        assert_eq!(info.ciphertext_len, 131_161);
        let digest = sha2::Sha256::digest(fs::read(&path).expect("reads"));
        assert_eq!(
            hex::encode(digest),
            "6efa2a245d3ea09e5128172b8560c72ba6fe478c99765ddc8f4e962ed0938e44"
        );
    }

    /// The in-memory form is byte for byte the file form: the same known answer as above, and
    /// every chunk edge round-trips through `open_blob` and through a file reader.
    #[test]
    fn in_memory_blob_is_the_file_format() {
        use sha2::Digest;
        let key = DataKey::from_bytes([0x42; KEY_LEN]);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[5..13].copy_from_slice(key.key_id().as_bytes());
        header[13..29].copy_from_slice(&std::array::from_fn::<u8, 16, _>(|i| i as u8));
        header[29..].copy_from_slice(&std::array::from_fn::<u8, 7, _>(|i| 200 + i as u8));
        let sealed = seal_blob_with_header(&pattern(2 * CHUNK_LEN + 5), &key, &aad(), header);
        assert_eq!(sealed.len(), 131_161);
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&sealed)),
            "6efa2a245d3ea09e5128172b8560c72ba6fe478c99765ddc8f4e962ed0938e44"
        );
        let canary = b"Subject: quarterly numbers\r\n\r\nconfidential ".repeat(100);
        let sealed = seal_blob(&canary, &key, &aad());
        assert!(!sealed.windows(12).any(|w| w == b"confidential"));

        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        for length in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN] {
            let plaintext = pattern(length);
            let sealed = seal_blob(&plaintext, &key, &aad());
            assert_eq!(sealed.len() as u64, expected_file_len(length));
            let opened = super::super::open_blob(&sealed, &key, &aad()).expect("opens");
            assert!(opened == plaintext, "length {length}: round trip differs");
            let path = dir.path().join(format!("b{length}"));
            fs::write(&path, &sealed).expect("writes");
            assert!(read_blob(&path, &key, &aad()).expect("reads") == plaintext);
        }
    }

    /// A blob kept in the database gets the same protection as a file: a changed byte, a cut at a
    /// chunk boundary, appended bytes, another message's AAD and a wrong key are all refused.
    #[test]
    fn in_memory_blob_refuses_tampering() {
        use super::super::open_blob;
        let key = DataKey::generate();
        let plaintext = pattern(2 * CHUNK_LEN + 100);
        let sealed = seal_blob(&plaintext, &key, &aad());
        for position in [0, 4, HEADER_LEN, HEADER_LEN + CHUNK_LEN, sealed.len() - 1] {
            let mut changed = sealed.clone();
            changed[position] ^= 0x01;
            assert!(
                open_blob(&changed, &key, &aad()).is_err(),
                "byte {position}"
            );
        }
        let at_boundary = HEADER_LEN + 2 * SEALED_CHUNK_LEN;
        assert!(open_blob(&sealed[..at_boundary], &key, &aad()).is_err());
        assert!(open_blob(&sealed[..sealed.len() - 1], &key, &aad()).is_err());
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open_blob(&longer, &key, &aad()).is_err());
        let other = Aad::new("message.raw").with_uuid_bytes(&[6; 16]);
        assert!(open_blob(&sealed, &key, &other).is_err());
        assert!(matches!(
            open_blob(&sealed, &DataKey::generate(), &aad()),
            Err(CryptoError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn creates_missing_fan_out_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let final_path = dir.path().join("3f").join("message.blob");
        let mut writer = BlobWriter::create(dir.path(), &final_path, &key, &aad()).expect("create");
        writer.write_all(b"raw message").expect("write");
        writer.finish().expect("finish");
        assert_eq!(
            read_blob(&final_path, &key, &aad()).expect("reads"),
            b"raw message"
        );
        let mode = fs::metadata(dir.path().join("3f"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn dropping_an_unfinished_writer_removes_its_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let final_path = dir.path().join("never");
        let mut writer = BlobWriter::create(dir.path(), &final_path, &key, &aad()).expect("create");
        writer.write_all(&pattern(CHUNK_LEN * 2)).expect("write");
        assert_eq!(
            fs::read_dir(dir.path()).expect("lists").count(),
            1,
            "temp file exists while writing"
        );
        drop(writer);
        assert_eq!(fs::read_dir(dir.path()).expect("lists").count(), 0);
        assert!(!final_path.exists());
    }

    #[test]
    fn temp_file_is_private_and_missing_dir_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let writer =
            BlobWriter::create(dir.path(), &dir.path().join("x"), &key, &aad()).expect("create");
        let temp = writer.temp_path.clone().expect("temp path");
        assert_eq!(
            fs::metadata(&temp).expect("exists").permissions().mode() & 0o777,
            0o600
        );
        drop(writer);
        let absent = dir.path().join("absent");
        let result = BlobWriter::create(&absent, &dir.path().join("x"), &key, &aad());
        assert!(result.err().expect("no temp dir").is_not_found());
    }
}
