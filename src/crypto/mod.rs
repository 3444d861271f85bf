//! Encryption at rest: key handling, sealed values and encrypted blob files.
//!
//! Everything inboxd writes that could identify a person or reveal mail content goes through this
//! module:
//! - small values (subjects, bodies, headers) are sealed with a [`DataKey`] into a versioned
//!   envelope (`version | key_id | nonce | ciphertext+tag`, AES-256-GCM, NIST SP 800-38D);
//! - data keys are wrapped by the [`MasterKey`], and database-stored credentials are sealed by a
//!   subkey of it;
//! - raw messages go to blob files written in chunks with the STREAM construction (Hoang,
//!   Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//!   Misuse-Resistance", 2015), as age and Tink do;
//! - equality lookups (Message-ID, address, content hash) use keyed HMAC-SHA256 ([`KeyedHasher`])
//!   so that no plaintext is needed in an index column.
//!
//! Every ciphertext is bound to its owner through an [`Aad`], so swapping ciphertexts between rows
//! or fields fails to decrypt instead of returning someone else's data. Key material is zeroized on
//! drop and has no `Debug` that shows bytes; only [`KeyId`] fingerprints may appear in logs.
//!
//! All functions are synchronous; run sealing of large values and blob I/O in `spawn_blocking`.

mod blob;
mod blob_reader;
mod envelope;
mod keyfile;
mod keys;

use std::fmt;
use std::path::PathBuf;

pub use blob::{BlobInfo, BlobWriter, seal_blob};
pub use blob_reader::{BlobReader, open_blob, read_blob};
pub use keyfile::{LoadedKey, create_key_file, load_from_credentials, load_key_file};
pub use keys::{CONTENT_HASH_PREFIX, DataKey, KeyedHasher, MasterKey, SubKey};

/// Result type of this module.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;

/// Errors of the crypto module. Messages are lowercase and say what to fix; none contains key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The master key is not the one the data (or the database's check value) was created with.
    #[error(
        "wrong master key: it is not the key this data was sealed with; point key_file at the original key file"
    )]
    WrongKey,
    /// A ciphertext names a different data key than the one used to open it.
    #[error(
        "ciphertext was sealed with key {sealed_with}, not {opened_with} ({domain}); look up the right data key"
    )]
    KeyIdMismatch {
        /// The [`Aad`] domain of the value being opened.
        domain: &'static str,
        /// The key id recorded in the ciphertext.
        sealed_with: KeyId,
        /// The key id of the key that was supplied.
        opened_with: KeyId,
    },
    /// Authentication failed or the layout is broken: the data is corrupt, truncated, tampered
    /// with, or was moved from another row or field (different associated data).
    #[error(
        "cannot decrypt {domain}: {reason}; the stored data is corrupt, truncated or belongs to another record"
    )]
    Decrypt {
        /// The [`Aad`] domain of the value being opened.
        domain: &'static str,
        /// What was wrong, without any data.
        reason: &'static str,
    },
    /// The ciphertext was written by a format version this build does not know.
    #[error(
        "{domain} uses format version {version}, which this build does not support; upgrade inboxd"
    )]
    UnsupportedVersion {
        /// The [`Aad`] domain of the value being opened.
        domain: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// Bytes offered as a data key are not 32 bytes long.
    #[error("a data key must be 32 bytes, got {length}; the stored wrapped key is corrupt")]
    InvalidKeyLength {
        /// The length that was given.
        length: usize,
    },
    /// The stored key check value is not 64 hex characters.
    #[error(
        "stored key check value is malformed (expected 64 hex characters); the database row was altered"
    )]
    MalformedCheckValue,
    /// The key file does not exist.
    #[error("key file {} does not exist; create it or point key_file at the right file", path.display())]
    KeyFileMissing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The key file exists but cannot be used.
    #[error("key file {} {reason}", path.display())]
    KeyFile {
        /// The key file's path.
        path: PathBuf,
        /// What is wrong and how to fix it (never contains key bytes).
        reason: String,
    },
    /// A blob would need more chunks than the format can count (2^32 chunks of 64 KiB, 256 TiB).
    #[error("blob is too large for the blob format (more than 2^32 chunks)")]
    BlobTooLarge,
    /// A file system operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl CryptoError {
    /// True when the supplied key is the wrong one (as opposed to the data being damaged).
    pub fn is_wrong_key(&self) -> bool {
        matches!(self, Self::WrongKey | Self::KeyIdMismatch { .. })
    }

    /// True when the stored data is damaged, tampered with, or belongs to another record.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Self::Decrypt { .. } | Self::MalformedCheckValue | Self::InvalidKeyLength { .. }
        )
    }

    /// True when a key file or blob file does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::KeyFileMissing { .. } => true,
            Self::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Length of a [`KeyId`] in bytes. DO NOT CHANGE: it is part of every stored ciphertext.
pub const KEY_ID_LEN: usize = 8;

/// Public 8-byte fingerprint of a key, derived with HKDF so it reveals nothing about the key. Safe
/// to log and to store; displayed as 16 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Wraps raw fingerprint bytes (e.g. read back from a ciphertext header).
    pub fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The fingerprint bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Keyed hash of a value for equality lookups (HMAC-SHA256, 32 bytes). Equal inputs under the same
/// key and domain give equal hashes; without the key, it reveals nothing about the value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct LookupHash([u8; 32]);

impl LookupHash {
    /// Wraps hash bytes read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The hash bytes, e.g. for a BLOB column.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 lowercase hex characters, e.g. for a TEXT column.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Field type tags in the [`Aad`] encoding, so that e.g. `with_u64(n)` never equals
/// `with_bytes(&n.to_be_bytes())`. DO NOT CHANGE: the encoding is authenticated into every stored
/// ciphertext.
const AAD_TAG_DOMAIN: u8 = 0; // DO NOT CHANGE
const AAD_TAG_BYTES: u8 = 1; // DO NOT CHANGE
const AAD_TAG_STR: u8 = 2; // DO NOT CHANGE
const AAD_TAG_U64: u8 = 3; // DO NOT CHANGE
const AAD_TAG_UUID: u8 = 4; // DO NOT CHANGE

/// Associated data binding a ciphertext to its owner (table/field domain plus row identifiers), so
/// a ciphertext copied into another row or field fails to open.
///
/// Encoding: each field is `tag(1) | length(u32 BE) | bytes`, starting with the domain. Every field
/// carries its type and length, so two different field lists never encode to the same bytes.
///
/// ```ignore
/// let aad = Aad::new("message.body").with_uuid_bytes(message_id.as_bytes());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Aad {
    domain: &'static str,
    encoded: Vec<u8>,
}

impl Aad {
    /// Starts associated data for a domain such as `"message.body"` or `"mailbox.password"`.
    pub fn new(domain: &'static str) -> Self {
        let aad = Self {
            domain,
            encoded: Vec::with_capacity(64),
        };
        aad.push(AAD_TAG_DOMAIN, domain.as_bytes())
    }

    /// Appends a byte string.
    pub fn with_bytes(self, bytes: &[u8]) -> Self {
        self.push(AAD_TAG_BYTES, bytes)
    }

    /// Appends a UTF-8 string.
    pub fn with_str(self, value: &str) -> Self {
        self.push(AAD_TAG_STR, value.as_bytes())
    }

    /// Appends an integer (e.g. a row id or IMAP UID).
    pub fn with_u64(self, value: u64) -> Self {
        self.push(AAD_TAG_U64, &value.to_be_bytes())
    }

    /// Appends a UUID's 16 bytes (`Uuid::as_bytes()`).
    pub fn with_uuid_bytes(self, uuid: &[u8; 16]) -> Self {
        self.push(AAD_TAG_UUID, uuid)
    }

    /// The domain this associated data was started with; named in decryption errors.
    pub fn domain(&self) -> &'static str {
        self.domain
    }

    /// The encoded bytes that are authenticated.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    fn push(mut self, tag: u8, bytes: &[u8]) -> Self {
        // Associated data is built from identifiers, never from anything near 4 GiB.
        let length = u32::try_from(bytes.len()).expect("aad field shorter than 4 GiB");
        self.encoded.push(tag);
        self.encoded.extend_from_slice(&length.to_be_bytes());
        self.encoded.extend_from_slice(bytes);
        self
    }
}

impl fmt::Debug for Aad {
    /// Shows the domain only: row identifiers are not secret, but callers may put other values in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aad")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_fields_are_unambiguous() {
        let pairs = [
            (
                Aad::new("a").with_bytes(b"bc"),
                Aad::new("a").with_bytes(b"b").with_bytes(b"c"),
            ),
            (
                Aad::new("ab").with_bytes(b"c"),
                Aad::new("a").with_bytes(b"bc"),
            ),
            (
                Aad::new("a").with_u64(7),
                Aad::new("a").with_bytes(&7u64.to_be_bytes()),
            ),
            (Aad::new("a").with_str("x"), Aad::new("a").with_bytes(b"x")),
            (
                Aad::new("a").with_uuid_bytes(&[1; 16]),
                Aad::new("a").with_bytes(&[1; 16]),
            ),
            (Aad::new("a"), Aad::new("a").with_bytes(b"")),
        ];
        for (left, right) in pairs {
            assert_ne!(left.as_bytes(), right.as_bytes(), "{left:?} vs {right:?}");
        }
        assert_eq!(
            Aad::new("m").with_u64(3).as_bytes(),
            Aad::new("m").with_u64(3).as_bytes()
        );
    }

    #[test]
    fn aad_debug_hides_fields() {
        let aad = Aad::new("message.subject").with_str("alice@example.org");
        let shown = format!("{aad:?}");
        assert!(shown.contains("message.subject"));
        assert!(!shown.contains("alice"));
    }

    #[test]
    fn key_id_displays_as_hex() {
        let id = KeyId::from_bytes([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff]);
        assert_eq!(id.to_string(), "deadbeef000102ff");
        assert_eq!(format!("{id:?}"), "KeyId(deadbeef000102ff)");
    }

    #[test]
    fn error_predicates() {
        let missing = CryptoError::io("/x", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(missing.is_not_found());
        assert!(!missing.is_corrupt());
        assert!(CryptoError::WrongKey.is_wrong_key());
        assert!(
            CryptoError::Decrypt {
                domain: "d",
                reason: "r"
            }
            .is_corrupt()
        );
        assert!(
            !CryptoError::Decrypt {
                domain: "d",
                reason: "r"
            }
            .is_wrong_key()
        );
    }
}
