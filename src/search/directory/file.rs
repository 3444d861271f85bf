//! Reading encrypted index files: random-access handles for tantivy and whole-file decryption.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::{fmt, io};

use tantivy::HasLen;
use tantivy::directory::{FileHandle, OwnedBytes};

use super::DirectoryError;
use super::cache::{BlockCache, BlockKey};
use super::format::{
    BLOCK_SIZE, FileCipher, HEADER_LEN, Header, Layout, SEALED_BLOCK_LEN, TAG_LEN, block_offset,
};

/// Reads of at most this many bytes put their decrypted blocks into the cache. Larger reads
/// (merges, whole-file loads) would only flush the cache; the hot large ranges (fast-field
/// columns, fieldnorms, long posting lists) are served by whole-file entries instead.
pub(super) const CACHE_ADMIT_MAX_READ: usize = 1024 * 1024;

/// An open encrypted file. It keeps its descriptor, so a searcher keeps working after tantivy's
/// garbage collection deletes the file following a merge.
///
/// Hot files are served like an mmap: once this handle has decrypted as many bytes as the file
/// holds (block misses and large uncached reads add up), the next read decrypts the whole file
/// into one cache entry, and every later read is a zero-copy slice of it. tantivy reads the
/// fast-field columns and fieldnorms of a segment whole on every query, and the posting lists of
/// common terms again for every query using them; those files reach the threshold within a few
/// queries. Waiting for the threshold (rather than loading on first touch) bounds the cost at
/// twice the decryption a block-only cache would do, even when an evicted file comes back; files
/// read once (merges, term dictionaries, which tantivy keeps in memory itself) never load whole.
pub(super) struct EncryptedFileHandle {
    file: File,
    name: PathBuf,
    cipher: FileCipher,
    file_id: u128,
    layout: Layout,
    cache: Arc<BlockCache>,
    /// Plaintext bytes this handle decrypted for reads since it last loaded the whole file.
    decrypted_bytes: AtomicU64,
}

impl EncryptedFileHandle {
    /// Opens `file` (named `name` in the index directory) and authenticates its final block, so a
    /// truncated file, a file renamed from another name or a wrong key fail here rather than
    /// mid-query.
    pub(super) fn open(
        file: File,
        name: &Path,
        index_key: &[u8; 32],
        cache: Arc<BlockCache>,
    ) -> Result<EncryptedFileHandle, DirectoryError> {
        let file_len = file
            .metadata()
            .map_err(|source| DirectoryError::io(name, source))?
            .len();
        let header = read_header(&file, name, file_len)?;
        let layout = Layout::from_file_len(file_len)
            .map_err(|reason| DirectoryError::malformed(name, reason))?;
        let handle = EncryptedFileHandle {
            cipher: FileCipher::new(index_key, header, name.as_os_str().as_encoded_bytes()),
            file_id: header.file_id(),
            file,
            name: name.to_path_buf(),
            layout,
            cache,
            decrypted_bytes: AtomicU64::new(0),
        };
        // Always decrypt (never take from the cache): the header is in every block's associated
        // data, so this also authenticates the file id under this name and key before any cached
        // block is served under that id.
        let last = layout.block_count - 1;
        let last_block = handle.decrypt_run(last..last + 1)?;
        handle
            .cache
            .insert(BlockKey::block(handle.file_id, last), last_block);
        Ok(handle)
    }

    /// Plaintext bytes `range`, decrypting only the blocks it touches that are not cached.
    pub(super) fn read_range(&self, range: Range<usize>) -> Result<OwnedBytes, DirectoryError> {
        if range.start > range.end || range.end as u64 > self.layout.plaintext_len {
            return Err(DirectoryError::OutOfBounds {
                file: self.name.clone(),
                range,
                len: self.layout.plaintext_len,
            });
        }
        if range.is_empty() {
            return Ok(OwnedBytes::empty());
        }
        if let Some(whole) = self.whole_file()? {
            return Ok(whole.slice(range));
        }
        let admit = range.len() <= CACHE_ADMIT_MAX_READ;
        let first = (range.start / BLOCK_SIZE) as u64;
        let last = ((range.end - 1) / BLOCK_SIZE) as u64;
        let mut blocks: Vec<Option<OwnedBytes>> = (first..=last)
            .map(|index| self.cache.get(BlockKey::block(self.file_id, index)))
            .collect();
        let first_miss = blocks.iter().position(Option::is_none);
        let last_miss = blocks.iter().rposition(Option::is_none);
        if let (Some(first_miss), Some(last_miss)) = (first_miss, last_miss) {
            let run_start = first + first_miss as u64;
            let run = self.decrypt_run(run_start..first + last_miss as u64 + 1)?;
            self.decrypted_bytes
                .fetch_add(run.len() as u64, Ordering::Relaxed);
            if first_miss == 0 && last_miss == blocks.len() - 1 {
                // Nothing was cached: the run is exactly the blocks of the range.
                if admit {
                    self.admit_run(run_start, &run);
                }
                let base = first as usize * BLOCK_SIZE;
                return Ok(run.slice(range.start - base..range.end - base));
            }
            for (position, slot) in blocks.iter_mut().enumerate() {
                if slot.is_none() {
                    let within = (position - first_miss) * BLOCK_SIZE;
                    let index = first + position as u64;
                    let len = self.layout.block_plaintext_len(index);
                    let block = run.slice(within..within + len);
                    if admit {
                        let copy = OwnedBytes::new(block.as_slice().to_vec());
                        self.cache
                            .insert(BlockKey::block(self.file_id, index), copy);
                    }
                    *slot = Some(block);
                }
            }
        }
        Ok(assemble(&range, first, &blocks))
    }

    /// The whole plaintext of the file if it is cached, or decrypted now when this handle has
    /// already decrypted as many bytes as the file holds (see the type's documentation); `None`
    /// when reads should go block by block.
    fn whole_file(&self) -> Result<Option<OwnedBytes>, DirectoryError> {
        let len = self.layout.plaintext_len;
        if !self.cache.admits_whole_file(len as usize) {
            return Ok(None);
        }
        if self.decrypted_bytes.load(Ordering::Relaxed) < len {
            // Not loaded by this handle yet (another handle of the same file may have).
            return Ok(self.cache.get(BlockKey::whole(self.file_id)));
        }
        if let Some(whole) = self.cache.get(BlockKey::whole(self.file_id)) {
            return Ok(Some(whole));
        }
        let whole = self.decrypt_run(0..self.layout.block_count)?;
        self.decrypted_bytes.store(0, Ordering::Relaxed);
        self.cache.insert_whole_file(self.file_id, whole.clone());
        Ok(Some(whole))
    }

    /// Puts the freshly decrypted blocks of a run into the cache, copied per block when the run
    /// has several, so the cache's byte count matches the memory it keeps alive.
    fn admit_run(&self, run_start: u64, run: &OwnedBytes) {
        let run_blocks = run.len().div_ceil(BLOCK_SIZE);
        if run_blocks == 1 {
            self.cache
                .insert(BlockKey::block(self.file_id, run_start), run.clone());
            return;
        }
        for offset in 0..run_blocks {
            let start = offset * BLOCK_SIZE;
            let end = (start + BLOCK_SIZE).min(run.len());
            let block = OwnedBytes::new(run.as_slice()[start..end].to_vec());
            self.cache.insert(
                BlockKey::block(self.file_id, run_start + offset as u64),
                block,
            );
        }
    }

    /// Reads sealed blocks `indexes` with one positioned read and decrypts them into one
    /// contiguous plaintext buffer.
    fn decrypt_run(&self, indexes: Range<u64>) -> Result<OwnedBytes, DirectoryError> {
        let last = indexes.end - 1;
        let sealed_len = (last - indexes.start) as usize * SEALED_BLOCK_LEN
            + self.layout.block_plaintext_len(last)
            + TAG_LEN;
        let mut buffer = vec![0u8; sealed_len];
        read_exact_at(
            &self.file,
            &self.name,
            &mut buffer,
            block_offset(indexes.start),
        )?;
        let mut plain_end = 0;
        for (position, index) in indexes.enumerate() {
            let sealed_start = position * SEALED_BLOCK_LEN;
            let sealed_end = (sealed_start + SEALED_BLOCK_LEN).min(buffer.len());
            let is_final = index + 1 == self.layout.block_count;
            let sealed = &mut buffer[sealed_start..sealed_end];
            let plain_len = self
                .cipher
                .open(index, is_final, sealed)
                .map_err(|()| DirectoryError::authentication(&self.name, index))?;
            buffer.copy_within(sealed_start..sealed_start + plain_len, plain_end);
            plain_end += plain_len;
        }
        buffer.truncate(plain_end);
        Ok(OwnedBytes::new(buffer))
    }
}

/// Copies the overlap of `range` with each block into one buffer.
fn assemble(range: &Range<usize>, first: u64, blocks: &[Option<OwnedBytes>]) -> OwnedBytes {
    if let [Some(block)] = blocks {
        let base = first as usize * BLOCK_SIZE;
        return block.slice(range.start - base..range.end - base);
    }
    let mut out = Vec::with_capacity(range.len());
    for (position, block) in blocks.iter().enumerate() {
        let block = block
            .as_ref()
            .expect("every block was filled from cache or decryption");
        let base = (first as usize + position) * BLOCK_SIZE;
        let start = range.start.max(base) - base;
        let end = range.end.min(base + block.len()) - base;
        out.extend_from_slice(&block.as_slice()[start..end]);
    }
    OwnedBytes::new(out)
}

impl FileHandle for EncryptedFileHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.read_range(range).map_err(io::Error::from)
    }
}

impl HasLen for EncryptedFileHandle {
    fn len(&self) -> usize {
        self.layout.plaintext_len as usize
    }
}

impl fmt::Debug for EncryptedFileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedFileHandle")
            .field("name", &self.name)
            .field("len", &self.layout.plaintext_len)
            .finish_non_exhaustive()
    }
}

/// How to treat the end of a file when decrypting it whole.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Completeness {
    /// A published file: it must end with an authenticated final block.
    Complete,
    /// A temporary file left by an interrupted write: decrypt the blocks that authenticate and
    /// stop at the first that does not.
    Partial,
}

/// Decrypts a whole file block by block, handing each block's plaintext to `visit`. `key_name` is
/// the name the file was sealed under (the final name, also for a temporary file).
pub(super) fn decrypt_whole_file(
    file: &File,
    name: &Path,
    key_name: &[u8],
    index_key: &[u8; 32],
    completeness: Completeness,
    mut visit: impl FnMut(&[u8]),
) -> Result<(), DirectoryError> {
    let file_len = file
        .metadata()
        .map_err(|source| DirectoryError::io(name, source))?
        .len();
    let header = read_header(file, name, file_len)?;
    let cipher = FileCipher::new(index_key, header, key_name);
    if completeness == Completeness::Complete {
        // Validates the length up front; the loop below then reads exactly the expected blocks.
        Layout::from_file_len(file_len)
            .map_err(|reason| DirectoryError::malformed(name, reason))?;
    }
    let mut buffer = vec![0u8; SEALED_BLOCK_LEN];
    let mut offset = HEADER_LEN as u64;
    let mut index = 0u64;
    while file_len - offset >= TAG_LEN as u64 {
        let chunk_len = (file_len - offset).min(SEALED_BLOCK_LEN as u64) as usize;
        let is_last = offset + chunk_len as u64 == file_len;
        let sealed = &mut buffer[..chunk_len];
        read_exact_at(file, name, sealed, offset)?;
        let opened = match completeness {
            Completeness::Complete => cipher
                .open(index, is_last, sealed)
                .map(|len| (len, is_last)),
            Completeness::Partial => open_either_flag(&cipher, index, sealed),
        };
        let Ok((plain_len, was_final)) = opened else {
            if completeness == Completeness::Partial {
                return Ok(());
            }
            return Err(DirectoryError::authentication(name, index));
        };
        visit(&sealed[..plain_len]);
        if was_final {
            return Ok(());
        }
        offset += chunk_len as u64;
        index += 1;
    }
    match completeness {
        Completeness::Complete => Err(DirectoryError::malformed(name, "file has no final block")),
        Completeness::Partial => Ok(()),
    }
}

/// Opens a block of a partial file, whose final flag is unknown. Opening works on a copy because a
/// failed attempt leaves the buffer unspecified.
fn open_either_flag(
    cipher: &FileCipher,
    index: u64,
    sealed: &mut [u8],
) -> Result<(usize, bool), ()> {
    for is_final in [false, true] {
        let mut attempt = sealed.to_vec();
        if let Ok(len) = cipher.open(index, is_final, &mut attempt) {
            sealed[..len].copy_from_slice(&attempt[..len]);
            return Ok((len, is_final));
        }
    }
    Err(())
}

fn read_header(file: &File, name: &Path, file_len: u64) -> Result<Header, DirectoryError> {
    if file_len < HEADER_LEN as u64 {
        return Err(DirectoryError::malformed(
            name,
            "file shorter than its header",
        ));
    }
    let mut raw = [0u8; HEADER_LEN];
    read_exact_at(file, name, &mut raw, 0)?;
    Header::parse(&raw).map_err(|reason| DirectoryError::malformed(name, reason))
}

/// Positioned read; a short file (changed on disk after open) is reported as malformed.
fn read_exact_at(
    file: &File,
    name: &Path,
    buffer: &mut [u8],
    offset: u64,
) -> Result<(), DirectoryError> {
    file.read_exact_at(buffer, offset).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            DirectoryError::malformed(name, "file shorter than its layout")
        } else {
            DirectoryError::io(name, source)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::Path;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tantivy::Directory;
    use tantivy::directory::TerminatingWrite;
    use tantivy::directory::error::OpenReadError;

    use super::super::{DEFAULT_CACHE_BYTES, EncryptedDirectory};
    use super::*;

    const KEY: [u8; 32] = [9u8; 32];

    fn content(len: usize, seed: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        StdRng::seed_from_u64(seed).fill(&mut bytes[..]);
        bytes
    }

    fn write(directory: &EncryptedDirectory, name: &str, bytes: &[u8]) {
        let mut writer = directory.open_write(Path::new(name)).expect("open_write");
        writer.write_all(bytes).expect("write");
        writer.terminate().expect("terminate");
    }

    fn sealed_len(len: usize) -> u64 {
        let blocks = len.div_ceil(BLOCK_SIZE).max(1);
        (HEADER_LEN + len + blocks * TAG_LEN) as u64
    }

    /// Asserts that `result` is tantivy's I/O error carrying InvalidData, and returns its message.
    fn integrity_error<T>(result: Result<T, OpenReadError>, context: &str) -> String {
        match result {
            Err(OpenReadError::IoError { io_error, .. }) => {
                assert_eq!(
                    io_error.kind(),
                    io::ErrorKind::InvalidData,
                    "{context}: {io_error}"
                );
                io_error.to_string()
            }
            Err(other) => panic!("{context}: expected an integrity error, got {other:?}"),
            Ok(_) => panic!("{context}: expected an integrity error, got success"),
        }
    }

    #[test]
    fn files_round_trip_at_block_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory =
            EncryptedDirectory::open(dir.path(), KEY, DEFAULT_CACHE_BYTES).expect("open");
        for len in [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 1_000_000] {
            let name = format!("f{len}.idx");
            let bytes = content(len, len as u64);
            write(&directory, &name, &bytes);
            let slice = directory.open_read(Path::new(&name)).expect("open_read");
            assert_eq!(slice.len(), len);
            assert_eq!(
                slice.read_bytes().expect("read").as_slice(),
                &bytes[..],
                "len {len}"
            );
            let whole = directory
                .atomic_read(Path::new(&name))
                .expect("atomic_read");
            assert_eq!(whole, bytes, "len {len}");
            let on_disk = fs::metadata(dir.path().join(&name))
                .expect("metadata")
                .len();
            assert_eq!(on_disk, sealed_len(len), "len {len}");
        }
    }

    #[test]
    fn every_range_of_small_files_reads_the_plaintext() {
        let dir = tempfile::tempdir().expect("tempdir");
        for cache_bytes in [0, 2 * BLOCK_SIZE, DEFAULT_CACHE_BYTES] {
            let directory = EncryptedDirectory::open(dir.path(), KEY, cache_bytes).expect("open");
            for len in [0usize, 1, 2, 37, 300] {
                let name = format!("s{len}-{cache_bytes}.idx");
                let bytes = content(len, 1000 + len as u64);
                write(&directory, &name, &bytes);
                let handle = directory.get_file_handle(Path::new(&name)).expect("handle");
                for start in 0..=len {
                    for end in start..=len {
                        let read = handle.read_bytes(start..end).expect("read");
                        assert_eq!(
                            read.as_slice(),
                            &bytes[start..end],
                            "{start}..{end} of {len}"
                        );
                    }
                }
                assert!(handle.read_bytes(len..len + 1).is_err());
            }
        }
    }

    #[test]
    fn ranges_around_block_boundaries_and_random_ranges_read_the_plaintext() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = 2 * BLOCK_SIZE + 37;
        let mut offsets = vec![0, 1, len - 1, len];
        for boundary in [BLOCK_SIZE, 2 * BLOCK_SIZE] {
            offsets.extend(boundary - 2..=boundary + 2);
        }
        let big_len = CACHE_ADMIT_MAX_READ + 3 * BLOCK_SIZE + 123;
        let mut rng = StdRng::seed_from_u64(42);
        for cache_bytes in [0, 2 * BLOCK_SIZE, DEFAULT_CACHE_BYTES] {
            let directory = EncryptedDirectory::open(dir.path(), KEY, cache_bytes).expect("open");
            let (name, big_name) = (format!("m{cache_bytes}.idx"), format!("b{cache_bytes}.idx"));
            let bytes = content(len, 7);
            write(&directory, &name, &bytes);
            let handle = directory.get_file_handle(Path::new(&name)).expect("handle");
            for &start in &offsets {
                for &end in offsets.iter().filter(|&&end| end >= start) {
                    let read = handle.read_bytes(start..end).expect("read");
                    assert_eq!(read.as_slice(), &bytes[start..end], "{start}..{end}");
                }
            }
            let big = content(big_len, 8);
            write(&directory, &big_name, &big);
            let handle = directory
                .get_file_handle(Path::new(&big_name))
                .expect("handle");
            for round in 0..300 {
                // Mostly small reads (cached path), some over the cache admission limit.
                let max_len = if round % 30 == 0 {
                    big_len
                } else {
                    3 * BLOCK_SIZE
                };
                let start = rng.gen_range(0..big_len);
                let end = (start + rng.gen_range(0..=max_len)).min(big_len);
                let read = handle.read_bytes(start..end).expect("read");
                assert_eq!(read.as_slice(), &big[start..end], "{start}..{end}");
            }
        }
    }

    #[test]
    fn hot_files_are_served_whole_as_zero_copy_slices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = CACHE_ADMIT_MAX_READ + 3 * BLOCK_SIZE + 7;
        let directory = EncryptedDirectory::open(dir.path(), KEY, 8 * len).expect("open");
        let bytes = content(len, 11);
        write(&directory, "hot.fast", &bytes);
        let handle = directory
            .get_file_handle(Path::new("hot.fast"))
            .expect("handle");
        // Whole-file reads too large for the block cache, until the handle has decrypted as
        // much as the file holds (the final block was decrypted and cached at open).
        for _ in 0..2 {
            assert_eq!(
                handle.read_bytes(0..len).expect("read").as_slice(),
                &bytes[..]
            );
            assert_eq!(
                directory.cache_stats().used_bytes,
                7,
                "only the final block"
            );
        }
        let first = handle.read_bytes(100..200).expect("read");
        assert_eq!(
            directory.cache_stats().used_bytes,
            len,
            "the whole file replaced its blocks"
        );
        let second = handle.read_bytes(150..len).expect("read");
        assert_eq!(first.as_slice(), &bytes[100..200]);
        assert_eq!(second.as_slice(), &bytes[150..]);
        assert_eq!(
            second.as_slice().as_ptr() as usize - first.as_slice().as_ptr() as usize,
            50,
            "both reads are slices of one cached buffer"
        );
        // Another handle of the same file uses the cached plaintext too.
        let other = directory
            .get_file_handle(Path::new("hot.fast"))
            .expect("handle");
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let start = rng.gen_range(0..=len);
            let end = rng.gen_range(start..=len);
            assert_eq!(
                other.read_bytes(start..end).expect("read").as_slice(),
                &bytes[start..end]
            );
        }
        directory.delete(Path::new("hot.fast")).expect("delete");
        assert_eq!(
            directory.cache_stats().used_bytes,
            0,
            "deleting drops the plaintext"
        );
    }

    #[test]
    fn a_tampered_block_fails_the_whole_file_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = CACHE_ADMIT_MAX_READ + 20 * BLOCK_SIZE;
        let directory = EncryptedDirectory::open(dir.path(), KEY, 8 * len).expect("open");
        write(&directory, "t.idx", &content(len, 12));
        let path = dir.path().join("t.idx");
        let mut raw = fs::read(&path).expect("read raw");
        let tampered_block = len / BLOCK_SIZE - 2;
        raw[HEADER_LEN + tampered_block * SEALED_BLOCK_LEN + 9] ^= 1;
        fs::write(&path, &raw).expect("write raw");
        let handle = directory
            .get_file_handle(Path::new("t.idx"))
            .expect("handle");
        // Large reads (not cached) of the intact start add up to the file's length...
        let intact = 0..CACHE_ADMIT_MAX_READ + BLOCK_SIZE;
        for _ in 0..2 {
            assert!(handle.read_bytes(intact.clone()).is_ok());
        }
        // ...so the next read loads the whole file, which must authenticate every block.
        let error = handle.read_bytes(0..10).expect_err("tampered file");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error
                .to_string()
                .contains(&format!("block {tampered_block} failed authentication")),
            "{error}"
        );
    }

    #[test]
    fn truncation_is_detected_at_and_between_block_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory =
            EncryptedDirectory::open(dir.path(), KEY, DEFAULT_CACHE_BYTES).expect("open");
        let len = 3 * BLOCK_SIZE + 100;
        let full = sealed_len(len);
        let sealed = SEALED_BLOCK_LEN as u64;
        let header = HEADER_LEN as u64;
        let cuts = [
            full - 1,
            full - 100,
            header + 3 * sealed,
            header + 2 * sealed,
            header + sealed + 5,
            header + sealed,
            header + TAG_LEN as u64,
            header,
            header - 1,
            0,
        ];
        for cut in cuts {
            let name = format!("t{cut}.idx");
            write(&directory, &name, &content(len, cut));
            let file = OpenOptions::new()
                .write(true)
                .open(dir.path().join(&name))
                .expect("open");
            file.set_len(cut).expect("truncate");
            let context = format!("cut at {cut}");
            let message = integrity_error(directory.get_file_handle(Path::new(&name)), &context);
            assert!(message.contains(&name), "{message}");
            integrity_error(directory.atomic_read(Path::new(&name)), &context);
        }
        // A cut at a block boundary leaves a valid length: only the final flag catches it.
        let boundary_cut = format!("t{}.idx", header + 2 * sealed);
        let message = integrity_error(
            directory.get_file_handle(Path::new(&boundary_cut)),
            "boundary",
        );
        assert!(
            message.contains("block 1 failed authentication"),
            "{message}"
        );
    }

    #[test]
    fn truncation_under_an_open_handle_is_an_error_not_wrong_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = EncryptedDirectory::open(dir.path(), KEY, 0).expect("open");
        write(&directory, "h.idx", &content(3 * BLOCK_SIZE, 1));
        let handle = directory
            .get_file_handle(Path::new("h.idx"))
            .expect("handle");
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("h.idx"))
            .expect("open");
        file.set_len((HEADER_LEN + SEALED_BLOCK_LEN + 10) as u64)
            .expect("truncate");
        let error = handle
            .read_bytes(0..3 * BLOCK_SIZE)
            .expect_err("read must fail");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_flipped_byte_in_any_region_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory = EncryptedDirectory::open(dir.path(), KEY, 0).expect("open");
        let len = 2 * BLOCK_SIZE + 100;
        let sealed = SEALED_BLOCK_LEN;
        let regions = [
            ("magic", 0),
            ("version", 9),
            ("block size", 13),
            ("file id", 20),
            ("block 0 ciphertext", HEADER_LEN),
            ("block 0 tag", HEADER_LEN + BLOCK_SIZE + 5),
            ("block 1 ciphertext", HEADER_LEN + sealed + 7),
            ("block 1 tag", HEADER_LEN + sealed + BLOCK_SIZE),
            ("final block ciphertext", HEADER_LEN + 2 * sealed + 3),
            ("final block tag", HEADER_LEN + 2 * sealed + 100 + 15),
        ];
        for (region, position) in regions {
            let name = format!("x{position}.idx");
            write(&directory, &name, &content(len, 5));
            let path = dir.path().join(&name);
            let mut raw = fs::read(&path).expect("read raw");
            raw[position] ^= 0x20;
            fs::write(&path, &raw).expect("write raw");
            let whole_read = directory
                .get_file_handle(Path::new(&name))
                .and_then(|handle| {
                    handle
                        .read_bytes(0..len)
                        .map_err(|e| OpenReadError::wrap_io_error(e, path.clone()))
                });
            integrity_error(whole_read, region);
            integrity_error(directory.atomic_read(Path::new(&name)), region);
        }
        // A flip in a middle block fails only the reads that touch that block.
        let handle = directory
            .get_file_handle(Path::new(&format!("x{}.idx", HEADER_LEN + sealed + 7)))
            .expect("open");
        assert!(handle.read_bytes(0..BLOCK_SIZE).is_ok());
        let error = handle
            .read_bytes(BLOCK_SIZE..BLOCK_SIZE + 1)
            .expect_err("tampered block");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains("block 1 failed authentication"),
            "{error}"
        );
    }

    #[test]
    fn swapped_or_renamed_files_and_a_wrong_key_are_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let directory =
            EncryptedDirectory::open(dir.path(), KEY, DEFAULT_CACHE_BYTES).expect("open");
        write(&directory, "a.idx", &content(100, 1));
        write(&directory, "b.idx", &content(100, 2));
        write(&directory, "c.idx", &content(100, 3));
        assert!(directory.get_file_handle(Path::new("a.idx")).is_ok());
        fs::copy(dir.path().join("b.idx"), dir.path().join("a.idx")).expect("swap");
        integrity_error(directory.get_file_handle(Path::new("a.idx")), "swapped");
        fs::rename(dir.path().join("b.idx"), dir.path().join("d.idx")).expect("rename");
        integrity_error(directory.atomic_read(Path::new("d.idx")), "renamed");

        let other_key =
            EncryptedDirectory::open(dir.path(), [10u8; 32], DEFAULT_CACHE_BYTES).expect("open");
        assert!(directory.get_file_handle(Path::new("c.idx")).is_ok());
        integrity_error(other_key.get_file_handle(Path::new("c.idx")), "wrong key");
        integrity_error(other_key.atomic_read(Path::new("c.idx")), "wrong key");
    }
}
