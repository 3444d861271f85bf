//! Key types: the master key, the per-record data keys it wraps, subkeys derived from it (HKDF, RFC
//! 5869) and the keyed lookup hasher (HMAC-SHA256, RFC 2104).
//!
//! Key bytes are zeroized on drop and never printed. Moving a key value copies its bytes on the
//! stack, which zeroizing cannot reach; keep long-lived keys behind an `Arc` or `Box` so they stay
//! in one place.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::envelope;
use super::{Aad, CryptoError, KEY_ID_LEN, KeyId, LookupHash, Result};

/// Length of every key in this module (AES-256, HMAC-SHA256 subkeys).
pub(super) const KEY_LEN: usize = 32;

/// HKDF info labels. DO NOT CHANGE: changing one makes existing ciphertexts, hashes and check
/// values unreadable.
const LABEL_KEY_ID: &str = "inboxd/v1/key-id"; // DO NOT CHANGE
const LABEL_WRAP: &str = "inboxd/v1/wrap-data-key"; // DO NOT CHANGE
const LABEL_SECRETS: &str = "inboxd/v1/secrets"; // DO NOT CHANGE
const LABEL_LOOKUP: &str = "inboxd/v1/lookup-hmac"; // DO NOT CHANGE
const LABEL_CHECK: &str = "inboxd/v1/key-check"; // DO NOT CHANGE
/// The message MACed for the key check value. DO NOT CHANGE.
const CHECK_MESSAGE: &[u8] = b"inboxd master key check value v1"; // DO NOT CHANGE

type HmacSha256 = Hmac<Sha256>;

/// HKDF-SHA256 (RFC 5869) with an empty salt: the input is already a uniformly random key.
fn hkdf_expand(key: &[u8; KEY_LEN], info: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::new(None, key)
        .expand(info, out)
        .expect("hkdf-sha256 output of at most 32 bytes is always valid");
}

/// The public fingerprint of a key.
pub(super) fn key_id_of(key: &[u8; KEY_LEN]) -> KeyId {
    let mut id = [0u8; KEY_ID_LEN];
    hkdf_expand(key, LABEL_KEY_ID.as_bytes(), &mut id);
    KeyId::from_bytes(id)
}

/// 32 bytes from the operating system's CSPRNG.
pub(super) fn random_key_bytes() -> Zeroizing<[u8; KEY_LEN]> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(bytes.as_mut());
    bytes
}

/// The 32-byte root key from the key file. Every other key is wrapped by it or derived from it.
///
/// Has no `Clone`; share it with `Arc`. `Debug` shows only its [`KeyId`].
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl MasterKey {
    /// A new random master key from the OS CSPRNG.
    pub fn generate() -> Self {
        Self::from_bytes(*random_key_bytes())
    }

    /// Uses the given bytes as the master key. The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let id = key_id_of(&bytes);
        Self { bytes, id }
    }

    /// The key's public fingerprint, safe to log.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// The key bytes, for tests that compare against a written key file.
    #[cfg(test)]
    pub(super) fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Derives an independent 32-byte subkey for one purpose (HKDF-SHA256, info = `purpose`). Use
    /// versioned labels such as `"inboxd/v1/index"`; the same label always gives the same key.
    pub fn derive_subkey(&self, purpose: &str) -> SubKey {
        let mut subkey = SubKey([0u8; KEY_LEN]);
        hkdf_expand(&self.bytes, purpose.as_bytes(), &mut subkey.0);
        subkey
    }

    /// A value to store in the database when it is created and check at every start, so the daemon
    /// refuses to run with the wrong key instead of writing data nobody can read later. It is an
    /// HMAC of a fixed message under a derived subkey (64 hex characters) and reveals nothing about
    /// the key.
    pub fn check_value(&self) -> String {
        hex::encode(self.check_mac().finalize().into_bytes())
    }

    /// Compares `stored` (from [`MasterKey::check_value`]) with this key's value in constant time.
    pub fn verify_check_value(&self, stored: &str) -> Result<()> {
        let mut expected = [0u8; 32];
        hex::decode_to_slice(stored, &mut expected)
            .map_err(|_| CryptoError::MalformedCheckValue)?;
        self.check_mac()
            .verify_slice(&expected)
            .map_err(|_| CryptoError::WrongKey)
    }

    fn check_mac(&self) -> HmacSha256 {
        let subkey = self.derive_subkey(LABEL_CHECK);
        let mut mac =
            HmacSha256::new_from_slice(subkey.as_bytes()).expect("hmac accepts any key length");
        mac.update(CHECK_MESSAGE);
        mac
    }

    /// The keyed hasher for equality lookups (Message-ID, address, content hash) without storing
    /// plaintext.
    pub fn lookup_hasher(&self) -> KeyedHasher {
        KeyedHasher::new(self.derive_subkey(LABEL_LOOKUP))
    }

    /// Encrypts a data key for storage next to the data it protects; `aad` names the owning record.
    pub fn wrap_data_key(&self, data_key: &DataKey, aad: &Aad) -> Vec<u8> {
        let wrap_key = self.derive_subkey(LABEL_WRAP);
        envelope::seal(wrap_key.as_bytes(), self.id, data_key.as_bytes(), aad)
    }

    /// Decrypts a data key wrapped by [`MasterKey::wrap_data_key`] with the same `aad`. A different
    /// master key gives [`CryptoError::WrongKey`]; damage or another record's `aad` gives
    /// [`CryptoError::Decrypt`].
    pub fn unwrap_data_key(&self, wrapped: &[u8], aad: &Aad) -> Result<DataKey> {
        let wrap_key = self.derive_subkey(LABEL_WRAP);
        let plaintext = Zeroizing::new(self.open_with(&wrap_key, wrapped, aad)?);
        let bytes: [u8; KEY_LEN] =
            plaintext
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::Decrypt {
                    domain: aad.domain(),
                    reason: "wrapped data key has the wrong length",
                })?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Encrypts a credential kept in the database (e.g. a mailbox password) under the
    /// `"inboxd/v1/secrets"` subkey; `aad` names the owning record and field.
    pub fn seal_secret(&self, plaintext: &[u8], aad: &Aad) -> Vec<u8> {
        let secrets_key = self.derive_subkey(LABEL_SECRETS);
        envelope::seal(secrets_key.as_bytes(), self.id, plaintext, aad)
    }

    /// Decrypts a value sealed by [`MasterKey::seal_secret`] with the same `aad`. The result is
    /// zeroized on drop.
    pub fn open_secret(&self, ciphertext: &[u8], aad: &Aad) -> Result<Zeroizing<Vec<u8>>> {
        let secrets_key = self.derive_subkey(LABEL_SECRETS);
        self.open_with(&secrets_key, ciphertext, aad)
            .map(Zeroizing::new)
    }

    /// Opens an envelope sealed under one of this key's subkeys. A foreign key id means the whole
    /// master key is wrong, which is what the operator needs to hear.
    fn open_with(&self, subkey: &SubKey, ciphertext: &[u8], aad: &Aad) -> Result<Vec<u8>> {
        envelope::open(subkey.as_bytes(), self.id, ciphertext, aad).map_err(|error| match error {
            CryptoError::KeyIdMismatch { .. } => CryptoError::WrongKey,
            other => other,
        })
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for MasterKey {
    /// Shows the fingerprint only, never key bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(key_id={})", self.id)
    }
}

/// A 32-byte AES-256-GCM key for sealing record data. Stored only wrapped, by the [`MasterKey`] or
/// by another data key (key hierarchy: master key → conversation key → message content key). Has no
/// `Debug`, `Display` or `Clone`.
pub struct DataKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl DataKey {
    /// A new random data key from the OS CSPRNG.
    pub fn generate() -> Self {
        Self::from_bytes(*random_key_bytes())
    }

    pub(super) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let id = key_id_of(&bytes);
        Self { bytes, id }
    }

    /// Rebuilds a data key from the 32 bytes [`DataKey::as_bytes`] gave, e.g. after opening a key
    /// sealed under another data key. Prefer [`DataKey::unwrap_data_key`], which also zeroizes the
    /// intermediate plaintext.
    pub fn from_bytes_vec(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyLength {
                length: bytes.len(),
            })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key bytes, for sealing this key under another key. Never store or log them unsealed.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Seals another data key under this one; the same envelope as
    /// `self.seal(key.as_bytes(), aad)`.
    pub fn wrap_data_key(&self, key: &DataKey, aad: &Aad) -> Vec<u8> {
        self.seal(key.as_bytes(), aad)
    }

    /// Opens a data key sealed by [`DataKey::wrap_data_key`] (or `seal(key.as_bytes())`) with the
    /// same `aad`; the intermediate plaintext is zeroized.
    pub fn unwrap_data_key(&self, wrapped: &[u8], aad: &Aad) -> Result<DataKey> {
        let plaintext = Zeroizing::new(self.open(wrapped, aad)?);
        Self::from_bytes_vec(&plaintext)
    }

    /// The key's public fingerprint, recorded in every ciphertext it seals.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Encrypts `plaintext` bound to `aad`, with a fresh random nonce. Layout: `version(1) |
    /// key_id(8) | nonce(12) | ciphertext | tag(16)`.
    pub fn seal(&self, plaintext: &[u8], aad: &Aad) -> Vec<u8> {
        envelope::seal(&self.bytes, self.id, plaintext, aad)
    }

    /// Decrypts a value sealed by [`DataKey::seal`] with the same `aad`. Any change to the bytes,
    /// truncation, a different key or a different `aad` gives an error, never wrong data.
    pub fn open(&self, ciphertext: &[u8], aad: &Aad) -> Result<Vec<u8>> {
        envelope::open(&self.bytes, self.id, ciphertext, aad)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// A 32-byte key derived from the master key for one purpose. Zeroized on drop; has no `Debug`.
pub struct SubKey([u8; KEY_LEN]);

impl SubKey {
    /// The key bytes, to key a MAC or cipher. Do not store or log them.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for SubKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// BLAKE3 key-derivation context of the content-hash key. DO NOT CHANGE: stored content hashes and
/// tombstones depend on it.
const CONTENT_HASH_CONTEXT: &str = "inboxd 2026-11-28 content hash of a raw message, v2";

/// Prefix of content hashes made by [`KeyedHasher::content_hash`]; hashes without it are the older
/// HMAC-SHA256 ones ([`KeyedHasher::legacy_content_hash`]).
pub const CONTENT_HASH_PREFIX: &str = "b3:";

/// HMAC-SHA256 under a subkey, for equality lookups without plaintext: the same value in the same
/// domain always hashes the same, and nobody without the master key can test a guess. Whole raw
/// messages (megabytes each) are hashed with keyed BLAKE3 instead ([`KeyedHasher::content_hash`]).
pub struct KeyedHasher {
    key: SubKey,
    /// Key of [`KeyedHasher::content_hash`], derived from `key`.
    content_key: SubKey,
}

impl KeyedHasher {
    /// A hasher keyed with `key` (normally from [`MasterKey::lookup_hasher`]).
    pub fn new(key: SubKey) -> Self {
        let content_key = SubKey(blake3::derive_key(CONTENT_HASH_CONTEXT, key.as_bytes()));
        Self { key, content_key }
    }

    /// The keyed hash that identifies a raw message within a mailbox (duplicates, tombstones): keyed
    /// BLAKE3, `b3:` and 64 hex characters. Over whole messages with their attachments it costs a
    /// fraction of HMAC-SHA256, which was the largest single item of ingest's CPU profile (issue #3).
    pub fn content_hash(&self, raw: &[u8]) -> String {
        let hash = blake3::keyed_hash(self.content_key.as_bytes(), raw);
        format!("{CONTENT_HASH_PREFIX}{}", hash.to_hex())
    }

    /// The content hash as stores written before `b3:` hashes hold it (HMAC-SHA256 in the `content`
    /// domain, 64 hex characters): computed as well while such a store may still hold one, so that a
    /// message stored or erased under the old hash is still recognised.
    pub fn legacy_content_hash(&self, raw: &[u8]) -> String {
        self.hash("content", raw).to_hex()
    }

    /// Hashes `value` in `domain` (e.g. `"message-id"`, `"address"`, `"content"`), so equal values
    /// in different domains do not match. Normalize the value (case, whitespace) before calling.
    pub fn hash(&self, domain: &str, value: &[u8]) -> LookupHash {
        let mut mac =
            HmacSha256::new_from_slice(self.key.as_bytes()).expect("hmac accepts any key length");
        // Length-prefix the domain so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(domain.len() as u64).to_be_bytes());
        mac.update(domain.as_bytes());
        mac.update(value);
        LookupHash::from_bytes(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad() -> Aad {
        Aad::new("mailbox.data_key").with_u64(42)
    }

    #[test]
    fn key_id_is_stable_and_distinct() {
        let bytes = [7u8; KEY_LEN];
        let first = MasterKey::from_bytes(bytes).key_id();
        assert_eq!(first, MasterKey::from_bytes(bytes).key_id());
        assert_eq!(first, DataKey::from_bytes(bytes).key_id());
        assert_ne!(first, MasterKey::from_bytes([8u8; KEY_LEN]).key_id());
        assert_ne!(first.as_bytes().as_slice(), &bytes[..KEY_ID_LEN]);
        assert_ne!(
            MasterKey::generate().key_id(),
            MasterKey::generate().key_id()
        );
    }

    #[test]
    fn debug_does_not_show_key_bytes() {
        let key = MasterKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.key_id().to_string()));
        assert!(!shown.contains("abab"));
        assert!(!shown.contains("171"));
    }

    #[test]
    fn subkeys_depend_on_purpose_and_key() {
        let key = MasterKey::from_bytes([1; KEY_LEN]);
        let index = key.derive_subkey("inboxd/v1/index");
        assert_eq!(
            index.as_bytes(),
            key.derive_subkey("inboxd/v1/index").as_bytes()
        );
        assert_ne!(
            index.as_bytes(),
            key.derive_subkey("inboxd/v1/other").as_bytes()
        );
        let other_master = MasterKey::from_bytes([2; KEY_LEN]);
        assert_ne!(
            index.as_bytes(),
            other_master.derive_subkey("inboxd/v1/index").as_bytes()
        );
        assert_ne!(index.as_bytes(), &[1; KEY_LEN]);
    }

    #[test]
    fn check_value_accepts_right_key_and_refuses_wrong_key() {
        let key = MasterKey::generate();
        let stored = key.check_value();
        assert_eq!(stored.len(), 64);
        assert_eq!(stored, key.check_value());
        assert!(!stored.contains(&hex::encode(key.expose_bytes())));
        key.verify_check_value(&stored).expect("same key verifies");
        let wrong = MasterKey::generate().verify_check_value(&stored);
        assert!(matches!(wrong, Err(CryptoError::WrongKey)), "{wrong:?}");
        let mut altered = stored.clone().into_bytes();
        altered[0] = if altered[0] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).expect("hex is ascii");
        assert!(matches!(
            key.verify_check_value(&altered),
            Err(CryptoError::WrongKey)
        ));
        for malformed in ["", "zz", &stored[..62], &format!("{stored}00")] {
            let result = key.verify_check_value(malformed);
            assert!(
                matches!(result, Err(CryptoError::MalformedCheckValue)),
                "{malformed}: {result:?}"
            );
        }
    }

    #[test]
    fn lookup_hashes_depend_on_domain_key_and_value() {
        let key = MasterKey::generate();
        let hasher = key.lookup_hasher();
        let id = hasher.hash("message-id", b"<a@b>");
        assert_eq!(id, key.lookup_hasher().hash("message-id", b"<a@b>"));
        assert_ne!(id, hasher.hash("address", b"<a@b>"));
        assert_ne!(id, hasher.hash("message-id", b"<a@c>"));
        assert_ne!(
            id,
            MasterKey::generate()
                .lookup_hasher()
                .hash("message-id", b"<a@b>")
        );
        // Domain/value boundary is unambiguous.
        assert_ne!(hasher.hash("ab", b"c"), hasher.hash("a", b"bc"));
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(id.to_hex(), hex::encode(id.as_bytes()));
    }

    #[test]
    fn content_hashes_are_keyed_blake3_and_differ_from_the_legacy_ones() {
        let key = MasterKey::from_bytes([7; KEY_LEN]);
        let hasher = key.lookup_hasher();
        let raw = b"Message-ID: <a@b>\r\nSubject: hi\r\n\r\nbody\r\n";
        let hash = hasher.content_hash(raw);
        let hex_part = hash.strip_prefix(CONTENT_HASH_PREFIX).expect("b3: prefix");
        assert_eq!(hex_part.len(), 64);
        assert!(hex_part.bytes().all(|b| b.is_ascii_hexdigit()));
        // Stable for the same key and bytes; different for other bytes or another master key.
        assert_eq!(hash, key.lookup_hasher().content_hash(raw));
        assert_ne!(
            hash,
            hasher.content_hash(b"Message-ID: <a@b>\r\n\r\nbody\r\n")
        );
        assert_ne!(
            hash,
            MasterKey::from_bytes([8; KEY_LEN])
                .lookup_hasher()
                .content_hash(raw)
        );
        // Keyed BLAKE3 under a key derived from the lookup key, not the lookup key itself.
        let lookup = key.derive_subkey(LABEL_LOOKUP);
        let unkeyed = blake3::keyed_hash(lookup.as_bytes(), raw)
            .to_hex()
            .to_string();
        assert_ne!(hex_part, unkeyed);
        let derived = blake3::derive_key(CONTENT_HASH_CONTEXT, lookup.as_bytes());
        assert_eq!(
            hex_part,
            blake3::keyed_hash(&derived, raw).to_hex().as_str()
        );
        // The legacy hash is the HMAC-SHA256 `content` lookup hash, as stored before.
        let legacy = hasher.legacy_content_hash(raw);
        assert_eq!(legacy, hasher.hash("content", raw).to_hex());
        assert!(!legacy.starts_with(CONTENT_HASH_PREFIX));
        assert_ne!(legacy, hex_part);
    }

    #[test]
    fn wrap_round_trip_and_wrong_master_key() {
        let master = MasterKey::generate();
        let data_key = DataKey::generate();
        let wrapped = master.wrap_data_key(&data_key, &aad());
        assert!(!wrapped.windows(KEY_LEN).any(|w| w == data_key.as_bytes()));
        let unwrapped = master.unwrap_data_key(&wrapped, &aad()).expect("unwraps");
        assert_eq!(unwrapped.as_bytes(), data_key.as_bytes());
        assert_eq!(unwrapped.key_id(), data_key.key_id());

        let wrong = MasterKey::generate().unwrap_data_key(&wrapped, &aad());
        assert!(
            matches!(wrong, Err(CryptoError::WrongKey)),
            "{:?}",
            wrong.err()
        );
        let swapped = master.unwrap_data_key(&wrapped, &Aad::new("mailbox.data_key").with_u64(43));
        assert!(
            matches!(swapped, Err(CryptoError::Decrypt { .. })),
            "{:?}",
            swapped.err()
        );
        // A wrapped key is not a sealed secret: the subkeys differ.
        assert!(master.open_secret(&wrapped, &aad()).is_err());
    }

    #[test]
    fn secret_round_trip_and_failures() {
        let master = MasterKey::generate();
        let aad = Aad::new("mailbox.password").with_u64(1);
        let sealed = master.seal_secret(b"hunter2", &aad);
        assert_eq!(
            master.open_secret(&sealed, &aad).expect("opens").as_slice(),
            b"hunter2"
        );
        assert_ne!(
            sealed,
            master.seal_secret(b"hunter2", &aad),
            "nonce must be fresh"
        );
        let empty = master.seal_secret(b"", &aad);
        assert!(master.open_secret(&empty, &aad).expect("opens").is_empty());
        let wrong = MasterKey::generate().open_secret(&sealed, &aad);
        assert!(matches!(wrong, Err(CryptoError::WrongKey)));
        let other_row = master.open_secret(&sealed, &Aad::new("mailbox.password").with_u64(2));
        assert!(matches!(other_row, Err(CryptoError::Decrypt { .. })));
        // A data key with the master's bytes (same key id) must not open secrets: they use a
        // derived subkey.
        let same_bytes = DataKey::from_bytes(*master.expose_bytes());
        assert!(same_bytes.open(&sealed, &aad).is_err());
    }

    /// Known answers computed independently with Python `cryptography` (HKDF-SHA256, HMAC, AESGCM)
    /// from the documented derivations and layout; they pin the on-disk format.
    #[test]
    fn formats_match_independent_implementation() {
        let master = MasterKey::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(master.key_id().to_string(), "0b10484e3e8485b0");
        assert_eq!(
            master.check_value(),
            "bb9df3e51b4e81825e6c7e27b09eb85e8e35af9e47f7827d838300677d286c95"
        );
        let lookup = master.lookup_hasher().hash("message-id", b"<a@b>");
        assert_eq!(
            lookup.to_hex(),
            "aaaa5cb82f4e5f27c995f5dd2aceb16eded7af0838ade1d1afae5a9c64335234"
        );

        let secret = hex::decode(concat!(
            "010b10484e3e8485b06465666768696a6b6c6d6e6f2768b74e6904ae6a1e9b55",
            "23bb09724b22167b4363f3d0"
        ))
        .expect("hex");
        let aad = Aad::new("mailbox.password").with_u64(1);
        assert_eq!(
            master.open_secret(&secret, &aad).expect("opens").as_slice(),
            b"hunter2"
        );

        let envelope = hex::decode(concat!(
            "014de572a43491b9796465666768696a6b6c6d6e6f3346d0b4e301ad4bc964ec",
            "3c7db3644e59cf89e6ace75c825e44f7f4"
        ))
        .expect("hex");
        let data_key = DataKey::from_bytes([0x42; KEY_LEN]);
        let aad = Aad::new("message.body").with_u64(42);
        assert_eq!(
            data_key.open(&envelope, &aad).expect("opens"),
            b"hello, world"
        );
    }

    #[test]
    fn data_key_wraps_data_key() {
        let conversation = DataKey::generate();
        let content = DataKey::generate();
        let aad = Aad::new("message.key").with_uuid_bytes(&[1; 16]);
        let wrapped = conversation.wrap_data_key(&content, &aad);
        let unwrapped = conversation
            .unwrap_data_key(&wrapped, &aad)
            .expect("unwraps");
        assert_eq!(unwrapped.as_bytes(), content.as_bytes());
        // The manual form (seal the bytes, rebuild from the opened vector) is the same envelope.
        let manual = conversation.seal(content.as_bytes(), &aad);
        let opened = conversation.open(&manual, &aad).expect("opens");
        let rebuilt = DataKey::from_bytes_vec(&opened).expect("32 bytes");
        assert_eq!(rebuilt.key_id(), content.key_id());
        assert!(conversation.unwrap_data_key(&manual, &aad).is_ok());
        let other_row = Aad::new("message.key").with_uuid_bytes(&[2; 16]);
        assert!(conversation.unwrap_data_key(&wrapped, &other_row).is_err());
        let not_a_key = conversation.seal(b"short", &aad);
        let result = conversation.unwrap_data_key(&not_a_key, &aad);
        assert!(matches!(
            result,
            Err(CryptoError::InvalidKeyLength { length: 5 })
        ));
        assert!(DataKey::from_bytes_vec(&[0; 33]).is_err());
    }

    #[test]
    fn data_key_round_trip_and_wrong_key() {
        let key = DataKey::generate();
        let aad = Aad::new("message.body").with_uuid_bytes(&[9; 16]);
        for length in [0usize, 1, 15, 16, 17, 1000, 100_000] {
            let plaintext: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
            let sealed = key.seal(&plaintext, &aad);
            assert_eq!(sealed.len(), plaintext.len() + envelope::OVERHEAD);
            assert_eq!(key.open(&sealed, &aad).expect("opens"), plaintext);
        }
        let sealed = key.seal(b"body", &aad);
        let other = DataKey::generate();
        match other.open(&sealed, &aad) {
            Err(CryptoError::KeyIdMismatch {
                sealed_with,
                opened_with,
                ..
            }) => {
                assert_eq!(sealed_with, key.key_id());
                assert_eq!(opened_with, other.key_id());
            }
            other => panic!("expected key id mismatch, got {other:?}"),
        }
    }
}
