//! On-disk format of one encrypted index file.
//!
//! ```text
//! header (32 bytes):  magic "INBXIDX\0" | version u32 BE | block size u32 BE | file id (16 random bytes)
//! blocks:             block 0 | block 1 | ... | block n-1
//! block i:            AES-256-GCM(file key, nonce = 0u32 || i as u64 BE,
//!                                 aad = header || i as u64 BE || final flag u8)(plaintext_i) || tag (16)
//! ```
//!
//! Every block but the last holds exactly `BLOCK_SIZE` plaintext bytes; the last holds 0..=BLOCK_SIZE
//! bytes (0 only for an empty file) and is sealed with the final flag set, so a file cut at a block
//! boundary fails authentication of its new last block. The plaintext length follows from the file
//! length, and the final flag proves it.
//!
//! The file key is `HKDF-SHA256(ikm = index key, salt = file id, info = FILE_KEY_LABEL || file name)`
//! (RFC 5869). A fresh random file id per written file makes every key seal exactly one write-once
//! file, which is what lets the nonce be the block index (NIST SP 800-38D §8.2.1 only asks that a
//! nonce never repeats under one key). Binding the file name into the key makes a file renamed or
//! swapped into another name fail authentication.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Magic bytes at the start of every encrypted index file. // DO NOT CHANGE
pub(super) const MAGIC: [u8; 8] = *b"INBXIDX\0";
/// Format version written in the header. // DO NOT CHANGE
pub(super) const FORMAT_VERSION: u32 = 1;
/// Plaintext bytes per sealed block: 16 KiB measured best (see notes/encrypted-index.md). // DO NOT CHANGE
pub(super) const BLOCK_SIZE: usize = 16 * 1024;
/// HKDF info label for per-file keys; the file name is appended. // DO NOT CHANGE
pub(super) const FILE_KEY_LABEL: &[u8] = b"inboxd/v1/index-file";
/// Length of the random per-file id. // DO NOT CHANGE
pub(super) const FILE_ID_LEN: usize = 16;
/// Length of the file header. // DO NOT CHANGE
pub(super) const HEADER_LEN: usize = 32;
/// Length of the AES-GCM tag after every block. // DO NOT CHANGE
pub(super) const TAG_LEN: usize = 16;
/// Bytes one full block occupies on disk.
pub(super) const SEALED_BLOCK_LEN: usize = BLOCK_SIZE + TAG_LEN;

/// Why a file's structure (not its authentication) is unacceptable.
pub(super) type MalformedReason = &'static str;

/// The parsed, not yet authenticated, header of an encrypted index file.
#[derive(Clone, Copy)]
pub(super) struct Header {
    bytes: [u8; HEADER_LEN],
}

impl Header {
    /// A header with a fresh random file id, for a file about to be written.
    pub(super) fn generate() -> Header {
        let mut file_id = [0u8; FILE_ID_LEN];
        rand::rngs::OsRng.fill_bytes(&mut file_id);
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..8].copy_from_slice(&MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        bytes[12..16].copy_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
        bytes[16..].copy_from_slice(&file_id);
        Header { bytes }
    }

    /// Parses a header read from disk. Authentication happens with the first block opened, since
    /// the header is part of every block's associated data.
    pub(super) fn parse(raw: &[u8]) -> Result<Header, MalformedReason> {
        let bytes: [u8; HEADER_LEN] = raw
            .get(..HEADER_LEN)
            .and_then(|head| head.try_into().ok())
            .ok_or("file shorter than its header")?;
        if bytes[..8] != MAGIC {
            return Err("bad magic");
        }
        let version = u32::from_be_bytes(bytes[8..12].try_into().expect("4-byte slice"));
        if version != FORMAT_VERSION {
            return Err("unsupported format version");
        }
        let block_size = u32::from_be_bytes(bytes[12..16].try_into().expect("4-byte slice"));
        if block_size as usize != BLOCK_SIZE {
            return Err("unsupported block size");
        }
        Ok(Header { bytes })
    }

    /// The raw header bytes, as written at the start of the file.
    pub(super) fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    /// The random per-file id; it keys the block cache, since names are reused (meta.json).
    pub(super) fn file_id(&self) -> u128 {
        let id: [u8; FILE_ID_LEN] = self.bytes[16..].try_into().expect("16-byte slice");
        u128::from_be_bytes(id)
    }
}

/// Block geometry of a complete file, derived from its length on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    /// Plaintext length of the whole file.
    pub(super) plaintext_len: u64,
    /// Number of sealed blocks, at least 1 (an empty file has one empty final block).
    pub(super) block_count: u64,
}

impl Layout {
    /// Computes the layout of a file of `file_len` bytes on disk, rejecting lengths the writer never
    /// produces. A truncation that happens to produce a valid length is caught by the final flag.
    pub(super) fn from_file_len(file_len: u64) -> Result<Layout, MalformedReason> {
        let body = file_len
            .checked_sub(HEADER_LEN as u64)
            .ok_or("file shorter than its header")?;
        if body < TAG_LEN as u64 {
            return Err("file has no final block");
        }
        let sealed = SEALED_BLOCK_LEN as u64;
        let block_count = body.div_ceil(sealed);
        let last_sealed = body - (block_count - 1) * sealed;
        let last_plain = last_sealed
            .checked_sub(TAG_LEN as u64)
            .ok_or("final block shorter than its tag")?;
        if block_count > 1 && last_plain == 0 {
            return Err("empty final block after full blocks");
        }
        Ok(Layout {
            plaintext_len: (block_count - 1) * BLOCK_SIZE as u64 + last_plain,
            block_count,
        })
    }

    /// Plaintext length of block `index` (which must be `< block_count`).
    pub(super) fn block_plaintext_len(&self, index: u64) -> usize {
        debug_assert!(index < self.block_count);
        if index + 1 == self.block_count {
            (self.plaintext_len - index * BLOCK_SIZE as u64) as usize
        } else {
            BLOCK_SIZE
        }
    }
}

/// Offset on disk of sealed block `index`.
pub(super) fn block_offset(index: u64) -> u64 {
    HEADER_LEN as u64 + index * SEALED_BLOCK_LEN as u64
}

/// The AEAD state for one file: its derived key and its header (part of every block's AAD).
pub(super) struct FileCipher {
    cipher: Aes256Gcm,
    header: Header,
}

impl FileCipher {
    /// Derives the key of the file named `name` (its bare file name) with the given header.
    pub(super) fn new(index_key: &[u8; 32], header: Header, name: &[u8]) -> FileCipher {
        let hkdf = Hkdf::<Sha256>::new(Some(&header.bytes[16..]), index_key);
        let mut info = Vec::with_capacity(FILE_KEY_LABEL.len() + name.len());
        info.extend_from_slice(FILE_KEY_LABEL);
        info.extend_from_slice(name);
        let mut file_key = Zeroizing::new([0u8; 32]);
        hkdf.expand(&info, file_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(file_key.as_ref()));
        FileCipher { cipher, header }
    }

    /// Encrypts `block` in place and appends its tag.
    pub(super) fn seal(&self, index: u64, is_final: bool, block: &mut Vec<u8>) {
        debug_assert!(block.len() <= BLOCK_SIZE);
        let aad = self.associated_data(index, is_final);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(index), &aad, block)
            .expect("a block of at most 16 KiB is within the AES-GCM length limit");
        block.extend_from_slice(&tag);
    }

    /// Authenticates and decrypts `sealed` (ciphertext followed by its tag) in place, returning the
    /// plaintext length. Fails on any change to the block, its position, its final flag, the
    /// header, the file name or the key.
    pub(super) fn open(&self, index: u64, is_final: bool, sealed: &mut [u8]) -> Result<usize, ()> {
        let plain_len = sealed.len().checked_sub(TAG_LEN).ok_or(())?;
        let (ciphertext, tag) = sealed.split_at_mut(plain_len);
        let aad = self.associated_data(index, is_final);
        self.cipher
            .decrypt_in_place_detached(&nonce(index), &aad, ciphertext, Tag::from_slice(tag))
            .map_err(|_| ())?;
        Ok(plain_len)
    }

    fn associated_data(&self, index: u64, is_final: bool) -> [u8; HEADER_LEN + 9] {
        let mut aad = [0u8; HEADER_LEN + 9];
        aad[..HEADER_LEN].copy_from_slice(&self.header.bytes);
        aad[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_be_bytes());
        aad[HEADER_LEN + 8] = u8::from(is_final);
        aad
    }
}

/// The 96-bit nonce of block `index`: four zero bytes then the index, big-endian.
fn nonce(index: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::clone_from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];

    #[test]
    fn header_round_trips_and_ids_are_random() {
        let first = Header::generate();
        let parsed = Header::parse(first.as_bytes()).expect("own header parses");
        assert_eq!(parsed.as_bytes(), first.as_bytes());
        assert_ne!(Header::generate().file_id(), first.file_id());
    }

    #[test]
    fn header_rejects_bad_magic_version_and_block_size() {
        let good = *Header::generate().as_bytes();
        for (position, expected) in [
            (0, "bad magic"),
            (11, "unsupported format version"),
            (14, "unsupported block size"),
        ] {
            let mut bad = good;
            bad[position] ^= 1;
            assert_eq!(Header::parse(&bad).err(), Some(expected));
        }
        assert!(Header::parse(&good[..HEADER_LEN - 1]).is_err());
    }

    #[test]
    fn layout_matches_what_the_writer_produces() {
        let cases = [
            (0u64, 1u64),
            (1, 1),
            (BLOCK_SIZE as u64 - 1, 1),
            (BLOCK_SIZE as u64, 1),
            (BLOCK_SIZE as u64 + 1, 2),
            (3 * BLOCK_SIZE as u64, 3),
        ];
        for (plain, blocks) in cases {
            let file_len = HEADER_LEN as u64 + plain + blocks * TAG_LEN as u64;
            let layout = Layout::from_file_len(file_len).expect("writer length is valid");
            assert_eq!(
                layout,
                Layout {
                    plaintext_len: plain,
                    block_count: blocks
                }
            );
        }
    }

    #[test]
    fn layout_rejects_impossible_lengths() {
        assert!(Layout::from_file_len(0).is_err());
        assert!(Layout::from_file_len(HEADER_LEN as u64 + TAG_LEN as u64 - 1).is_err());
        let empty_after_full = HEADER_LEN as u64 + SEALED_BLOCK_LEN as u64 + TAG_LEN as u64;
        assert!(Layout::from_file_len(empty_after_full).is_err());
    }

    #[test]
    fn sealed_block_opens_only_in_its_context() {
        let header = Header::generate();
        let cipher = FileCipher::new(&KEY, header, b"a.idx");
        let mut block = b"hello index".to_vec();
        cipher.seal(3, false, &mut block);
        assert!(!block.windows(5).any(|w| w == b"hello"));
        let sealed = block.clone();

        let mut copy = sealed.clone();
        let len = cipher.open(3, false, &mut copy).expect("own block opens");
        assert_eq!(&copy[..len], b"hello index");

        let contexts: [(&[u8], u64, bool, [u8; 32]); 4] = [
            (b"a.idx", 4, false, KEY),
            (b"a.idx", 3, true, KEY),
            (b"b.idx", 3, false, KEY),
            (b"a.idx", 3, false, [8u8; 32]),
        ];
        for (name, index, is_final, key) in contexts {
            let other = FileCipher::new(&key, header, name);
            let mut copy = sealed.clone();
            assert!(other.open(index, is_final, &mut copy).is_err());
        }
        let other_header = FileCipher::new(&KEY, Header::generate(), b"a.idx");
        let mut copy = sealed.clone();
        assert!(other_header.open(3, false, &mut copy).is_err());
    }
}
