//! Reading the encrypted blob files written by [`super::BlobWriter`]; the format is described in
//! `blob.rs`.
//!
//! A file is read in sealed chunks of 64 KiB plus tag with one byte of look-ahead: a chunk followed
//! by more data must authenticate as a non-last chunk and anything at the end as the last one,
//! which is how truncation at a chunk boundary and appended data are caught.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};
use zeroize::Zeroizing;

use super::blob::{ChunkCipher, HEADER_LEN, MAGIC, SEALED_CHUNK_LEN, TAG_LEN, VERSION};
use super::{Aad, CryptoError, DataKey, KEY_ID_LEN, KeyId, Result};

const CHUNK_AUTHENTICATION_FAILED: &str =
    "a chunk failed authentication (tampered, reordered, truncated or another record's blob)";

/// Reads an encrypted blob chunk by chunk.
///
/// Each chunk is authenticated before it is returned, but truncation of the file is only detected
/// at its end: treat the data as valid only after [`BlobReader::next_chunk`] has returned
/// `Ok(None)` (or `read` returned 0).
pub struct BlobReader<R: Read = File> {
    file: R,
    /// Names the blob in errors: its file, or `(inline blob)` for one kept in the database.
    path: PathBuf,
    domain: &'static str,
    chunk_cipher: ChunkCipher,
    /// Room for one sealed chunk plus one byte of look-ahead, zeroized on drop as it holds
    /// plaintext.
    buffer: Zeroizing<Vec<u8>>,
    /// The look-ahead byte read past a full chunk, which starts the next chunk.
    carry: Option<u8>,
    counter: u32,
    finished: bool,
    failed: bool,
    /// Unread plaintext of the current chunk in `buffer`, for the `Read` impl.
    unread: std::ops::Range<usize>,
}

impl BlobReader<File> {
    /// Opens a blob file and checks its header: magic, version and that it was written with `key`.
    pub fn open(path: &Path, key: &DataKey, aad: &Aad) -> Result<Self> {
        let file = File::open(path).map_err(|e| CryptoError::io(path, e))?;
        Self::from_reader(file, path, key, aad)
    }
}

impl<R: Read> BlobReader<R> {
    /// Reads a blob from `file` (named `path` in errors) and checks its header like
    /// [`BlobReader::open`].
    pub fn from_reader(mut file: R, path: &Path, key: &DataKey, aad: &Aad) -> Result<Self> {
        let domain = aad.domain();
        let mut header = [0u8; HEADER_LEN];
        let filled = read_full(&mut file, &mut header).map_err(|e| CryptoError::io(path, e))?;
        if filled < HEADER_LEN {
            return Err(CryptoError::Decrypt {
                domain,
                reason: "the blob is shorter than its header",
            });
        }
        if &header[..4] != MAGIC {
            return Err(CryptoError::Decrypt {
                domain,
                reason: "not an inboxd blob file (bad magic)",
            });
        }
        if header[4] != VERSION {
            return Err(CryptoError::UnsupportedVersion {
                domain,
                version: header[4],
            });
        }
        let mut sealed_with = [0u8; KEY_ID_LEN];
        sealed_with.copy_from_slice(&header[5..5 + KEY_ID_LEN]);
        let sealed_with = KeyId::from_bytes(sealed_with);
        if sealed_with != key.key_id() {
            return Err(CryptoError::KeyIdMismatch {
                domain,
                sealed_with,
                opened_with: key.key_id(),
            });
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            domain,
            chunk_cipher: ChunkCipher::new(key, &header, aad),
            buffer: Zeroizing::new(vec![0u8; SEALED_CHUNK_LEN + 1]),
            carry: None,
            counter: 0,
            finished: false,
            failed: false,
            unread: 0..0,
        })
    }

    /// Decrypts the next chunk. Returns `Ok(None)` once the authenticated last chunk has been
    /// returned; the last chunk may be empty. After an error every further call fails too.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        if self.finished {
            return Ok(None);
        }
        if self.failed {
            return Err(self.corrupt("an earlier chunk failed"));
        }
        self.failed = true; // cleared below once the chunk authenticates
        let mut filled = 0;
        if let Some(byte) = self.carry.take() {
            self.buffer[0] = byte;
            filled = 1;
        }
        filled += read_full(&mut self.file, &mut self.buffer[filled..])
            .map_err(|e| CryptoError::io(&self.path, e))?;
        // A full chunk followed by at least one byte is not the last; anything shorter must be the
        // last.
        let last = filled <= SEALED_CHUNK_LEN;
        let sealed_len = if last { filled } else { SEALED_CHUNK_LEN };
        if !last {
            self.carry = Some(self.buffer[SEALED_CHUNK_LEN]);
        }
        let Some(plaintext_len) = sealed_len.checked_sub(TAG_LEN) else {
            return Err(self.corrupt("the blob is truncated"));
        };
        let nonce = self.chunk_cipher.nonce(self.counter, last);
        let tag = Tag::clone_from_slice(&self.buffer[plaintext_len..sealed_len]);
        let (ciphertext, _) = self.buffer.split_at_mut(plaintext_len);
        self.chunk_cipher
            .cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &self.chunk_cipher.associated_data,
                ciphertext,
                &tag,
            )
            .map_err(|_| self.corrupt(CHUNK_AUTHENTICATION_FAILED))?;
        if last {
            self.finished = true;
        } else {
            self.counter = self
                .counter
                .checked_add(1)
                .ok_or(self.corrupt("the blob has too many chunks"))?;
        }
        self.failed = false;
        Ok(Some(&self.buffer[..plaintext_len]))
    }

    fn corrupt(&self, reason: &'static str) -> CryptoError {
        CryptoError::Decrypt {
            domain: self.domain,
            reason,
        }
    }
}

impl<R: Read> Read for BlobReader<R> {
    /// Reads plaintext; returns 0 only after the last chunk authenticated. Crypto errors surface as
    /// `io::ErrorKind::InvalidData` wrapping the [`CryptoError`].
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.unread.is_empty() {
            let length = match self.next_chunk() {
                Ok(Some(chunk)) => chunk.len(),
                Ok(None) => return Ok(0),
                Err(CryptoError::Io { source, .. }) => return Err(source),
                Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
            };
            self.unread = 0..length;
        }
        let count = self.unread.len().min(out.len());
        out[..count].copy_from_slice(&self.buffer[self.unread.start..self.unread.start + count]);
        self.unread.start += count;
        Ok(count)
    }
}

/// Reads and decrypts a whole blob into memory.
pub fn read_blob(path: &Path, key: &DataKey, aad: &Aad) -> Result<Vec<u8>> {
    let reader = BlobReader::open(path, key, aad)?;
    let file_len = reader
        .file
        .metadata()
        .map_err(|e| CryptoError::io(path, e))?
        .len();
    read_whole(reader, file_len)
}

/// Decrypts a whole blob kept in memory (the sealed bytes [`super::seal_blob`] made), with the same
/// checks as a blob file.
pub fn open_blob(sealed: &[u8], key: &DataKey, aad: &Aad) -> Result<Vec<u8>> {
    let reader = BlobReader::from_reader(sealed, Path::new("(inline blob)"), key, aad)?;
    read_whole(reader, sealed.len() as u64)
}

/// Every chunk of `reader`, whose sealed form is `sealed_len` bytes long (to size the output once).
fn read_whole<R: Read>(mut reader: BlobReader<R>, sealed_len: u64) -> Result<Vec<u8>> {
    let body_len = sealed_len.saturating_sub(HEADER_LEN as u64);
    let chunks = body_len.div_ceil(SEALED_CHUNK_LEN as u64);
    let expected = body_len.saturating_sub(chunks * TAG_LEN as u64);
    let mut plaintext = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = reader.next_chunk()? {
        plaintext.extend_from_slice(chunk);
    }
    Ok(plaintext)
}

/// Reads until `buffer` is full or the input ends; returns the number of bytes read.
fn read_full(file: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::blob::CHUNK_LEN;
    use super::super::blob::tests::{aad, pattern, write_blob};
    use super::*;

    #[test]
    fn streaming_reader_yields_chunks_and_read_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let plaintext = pattern(3 * CHUNK_LEN + 100);
        let (path, _) = write_blob(dir.path(), "b", &key, &plaintext, 50_000);
        let mut reader = BlobReader::open(&path, &key, &aad()).expect("opens");
        let mut sizes = Vec::new();
        let mut joined = Vec::new();
        while let Some(chunk) = reader.next_chunk().expect("chunk") {
            sizes.push(chunk.len());
            joined.extend_from_slice(chunk);
        }
        assert_eq!(sizes, [CHUNK_LEN, CHUNK_LEN, CHUNK_LEN, 100]);
        assert!(joined == plaintext);
        assert!(reader.next_chunk().expect("stays finished").is_none());

        let mut via_read = Vec::new();
        let mut reader = BlobReader::open(&path, &key, &aad()).expect("opens");
        reader.read_to_end(&mut via_read).expect("read_to_end");
        assert!(via_read == plaintext);
    }

    #[test]
    fn wrong_key_and_swapped_blob_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let (path, _) = write_blob(dir.path(), "b", &key, &pattern(1000), 1000);
        let wrong = read_blob(&path, &DataKey::generate(), &aad());
        assert!(
            matches!(wrong, Err(CryptoError::KeyIdMismatch { .. })),
            "{:?}",
            wrong.err()
        );
        let other_message = Aad::new("message.raw").with_uuid_bytes(&[6; 16]);
        let swapped = read_blob(&path, &key, &other_message);
        assert!(
            matches!(
                swapped,
                Err(CryptoError::Decrypt {
                    domain: "message.raw",
                    ..
                })
            ),
            "{:?}",
            swapped.err()
        );
        let missing = read_blob(&dir.path().join("absent"), &key, &aad());
        assert!(missing.expect_err("missing").is_not_found());
    }

    #[test]
    fn every_flipped_byte_region_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let (path, _) = write_blob(dir.path(), "b", &key, &pattern(CHUNK_LEN + 500), CHUNK_LEN);
        let original = fs::read(&path).expect("reads");
        // Every header byte, then the start, middle and tag of both chunks, then the last byte.
        let mut positions: Vec<usize> = (0..HEADER_LEN).collect();
        let second = HEADER_LEN + SEALED_CHUNK_LEN;
        positions.extend([
            HEADER_LEN,
            HEADER_LEN + CHUNK_LEN / 2,
            second - 1,
            second,
            second + 250,
        ]);
        positions.extend([original.len() - TAG_LEN, original.len() - 1]);
        let tampered_path = dir.path().join("tampered");
        for position in positions {
            for bit in [0, 7] {
                let mut tampered = original.clone();
                tampered[position] ^= 1 << bit;
                fs::write(&tampered_path, &tampered).expect("write");
                let result = read_blob(&tampered_path, &key, &aad());
                assert!(
                    result.is_err(),
                    "flip at byte {position} bit {bit} went undetected"
                );
            }
        }
    }

    #[test]
    fn truncation_reorder_and_extension_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let (path, _) = write_blob(
            dir.path(),
            "b",
            &key,
            &pattern(3 * CHUNK_LEN + 10),
            CHUNK_LEN,
        );
        let original = fs::read(&path).expect("reads");
        let chunk_start = |i: usize| HEADER_LEN + i * SEALED_CHUNK_LEN;
        let mut cut_points = vec![
            0,
            4,
            HEADER_LEN - 1,
            HEADER_LEN,
            HEADER_LEN + 15,
            HEADER_LEN + 16,
        ];
        for boundary in 1..=3 {
            cut_points.extend([
                chunk_start(boundary) - 1,
                chunk_start(boundary),
                chunk_start(boundary) + 1,
            ]);
        }
        cut_points.push(original.len() - 1);
        let damaged = dir.path().join("damaged");
        for cut in cut_points {
            fs::write(&damaged, &original[..cut]).expect("write");
            assert!(
                read_blob(&damaged, &key, &aad()).is_err(),
                "truncation to {cut} bytes went undetected"
            );
        }

        let mut reordered = original[..HEADER_LEN].to_vec();
        reordered.extend_from_slice(&original[chunk_start(1)..chunk_start(2)]);
        reordered.extend_from_slice(&original[chunk_start(0)..chunk_start(1)]);
        reordered.extend_from_slice(&original[chunk_start(2)..]);
        fs::write(&damaged, &reordered).expect("write");
        assert!(
            read_blob(&damaged, &key, &aad()).is_err(),
            "reordered chunks went undetected"
        );

        let mut extended = original.clone();
        extended.extend_from_slice(&original[chunk_start(3)..]);
        fs::write(&damaged, &extended).expect("write");
        assert!(
            read_blob(&damaged, &key, &aad()).is_err(),
            "appended chunk went undetected"
        );

        // A header from another blob under the same key changes the chunk key and associated data.
        let (other, _) = write_blob(dir.path(), "other", &key, &pattern(10), 10);
        let mut spliced = fs::read(&other).expect("reads")[..HEADER_LEN].to_vec();
        spliced.extend_from_slice(&original[HEADER_LEN..]);
        fs::write(&damaged, &spliced).expect("write");
        assert!(
            read_blob(&damaged, &key, &aad()).is_err(),
            "spliced header went undetected"
        );
    }

    #[test]
    fn streaming_reader_reports_truncation_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate();
        let (path, _) = write_blob(
            dir.path(),
            "b",
            &key,
            &pattern(2 * CHUNK_LEN + 1),
            CHUNK_LEN,
        );
        let original = fs::read(&path).expect("reads");
        fs::write(&path, &original[..HEADER_LEN + 2 * SEALED_CHUNK_LEN]).expect("truncate");
        let mut reader = BlobReader::open(&path, &key, &aad()).expect("header is intact");
        assert_eq!(
            reader
                .next_chunk()
                .expect("first chunk is intact")
                .map(<[u8]>::len),
            Some(CHUNK_LEN)
        );
        assert!(
            reader.next_chunk().is_err(),
            "a non-last chunk presented as last must fail"
        );
        assert!(reader.next_chunk().is_err(), "the reader stays failed");
        let mut reader = BlobReader::open(&path, &key, &aad()).expect("header is intact");
        let error = reader
            .read_to_end(&mut Vec::new())
            .expect_err("read reports it");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
