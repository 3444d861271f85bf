//! The sealed-value layout used for database fields, wrapped keys and secrets:
//!
//! ```text
//! version (1) | key_id (8) | nonce (12) | ciphertext (n) | tag (16)
//! ```
//!
//! AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce per seal from the OS CSPRNG; the
//! nonce-collision bound allows 2^32 seals per key (SP 800-38D §8.3). The GCM associated data is
//! `version | key_id | caller's Aad`, so the header is authenticated too and a ciphertext only
//! opens for the record it was sealed for.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rand::RngCore;
use rand::rngs::OsRng;

use super::keys::KEY_LEN;
use super::{Aad, CryptoError, KEY_ID_LEN, KeyId, Result};

/// Format version of the envelope. DO NOT CHANGE: bump to a new value for a new layout and keep
/// opening old ones.
pub(super) const VERSION: u8 = 1; // DO NOT CHANGE
const VERSION_LEN: usize = 1; // DO NOT CHANGE
const NONCE_LEN: usize = 12; // DO NOT CHANGE
const TAG_LEN: usize = 16; // DO NOT CHANGE
/// Bytes before the ciphertext: version, key id, nonce.
const HEADER_LEN: usize = VERSION_LEN + KEY_ID_LEN + NONCE_LEN; // DO NOT CHANGE
/// Bytes a sealed value adds to its plaintext.
pub(super) const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// GCM associated data: the authenticated header fields followed by the caller's encoded [`Aad`].
fn gcm_associated_data(key_id: KeyId, aad: &Aad) -> Vec<u8> {
    let mut associated = Vec::with_capacity(VERSION_LEN + KEY_ID_LEN + aad.as_bytes().len());
    associated.push(VERSION);
    associated.extend_from_slice(key_id.as_bytes());
    associated.extend_from_slice(aad.as_bytes());
    associated
}

/// Seals `plaintext` under `key` (whose fingerprint is `key_id`), encrypting in place in the output
/// buffer so the plaintext is copied once.
pub(super) fn seal(key: &[u8; KEY_LEN], key_id: KeyId, plaintext: &[u8], aad: &Aad) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);

    let mut sealed = Vec::with_capacity(plaintext.len() + OVERHEAD);
    sealed.push(VERSION);
    sealed.extend_from_slice(key_id.as_bytes());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);

    let cipher = Aes256Gcm::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &gcm_associated_data(key_id, aad),
            &mut sealed[HEADER_LEN..],
        )
        // GCM's only failure is a plaintext over 64 GiB (SP 800-38D §5.2.1.1); callers seal single
        // values.
        .expect("aes-gcm seals any value under 64 GiB");
    sealed.extend_from_slice(&tag);
    debug_assert_eq!(sealed.len(), plaintext.len() + OVERHEAD);
    sealed
}

/// Opens a value sealed by [`seal`]. The version and key id are checked before decrypting, so a
/// wrong key is reported as such; the tag is verified before any plaintext is produced.
pub(super) fn open(
    key: &[u8; KEY_LEN],
    key_id: KeyId,
    sealed: &[u8],
    aad: &Aad,
) -> Result<Vec<u8>> {
    let domain = aad.domain();
    let corrupt = |reason| CryptoError::Decrypt { domain, reason };

    let version = *sealed.first().ok_or(corrupt("the ciphertext is empty"))?;
    if version != VERSION {
        return Err(CryptoError::UnsupportedVersion { domain, version });
    }
    if sealed.len() < OVERHEAD {
        return Err(corrupt("the ciphertext is shorter than its header and tag"));
    }
    let sealed_with: [u8; KEY_ID_LEN] = sealed
        .get(VERSION_LEN..VERSION_LEN + KEY_ID_LEN)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(corrupt("the ciphertext is shorter than its header"))?;
    let sealed_with = KeyId::from_bytes(sealed_with);
    if sealed_with != key_id {
        return Err(CryptoError::KeyIdMismatch {
            domain,
            sealed_with,
            opened_with: key_id,
        });
    }
    let nonce = sealed
        .get(VERSION_LEN + KEY_ID_LEN..HEADER_LEN)
        .ok_or(corrupt("truncated nonce"))?;
    let tag_start = sealed.len() - TAG_LEN;
    let ciphertext = sealed
        .get(HEADER_LEN..tag_start)
        .ok_or(corrupt("truncated ciphertext"))?;
    let tag = sealed.get(tag_start..).ok_or(corrupt("truncated tag"))?;

    let mut plaintext = ciphertext.to_vec();
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            &gcm_associated_data(key_id, aad),
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| corrupt("authentication failed"))?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_LEN] = [3; KEY_LEN];

    fn key_id() -> KeyId {
        super::super::keys::key_id_of(&KEY)
    }

    fn aad() -> Aad {
        Aad::new("message.subject").with_u64(17)
    }

    #[test]
    fn layout_is_version_key_id_nonce_ciphertext_tag() {
        let sealed = seal(&KEY, key_id(), b"hello", &aad());
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(sealed[0], VERSION);
        assert_eq!(&sealed[1..9], key_id().as_bytes());
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        let again = seal(&KEY, key_id(), b"hello", &aad());
        assert_ne!(sealed[9..21], again[9..21], "nonces must differ");
        assert_ne!(sealed[21..], again[21..]);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let plaintext = b"a message body that spans more than one block";
        let sealed = seal(&KEY, key_id(), plaintext, &aad());
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut tampered = sealed.clone();
                tampered[byte] ^= 1 << bit;
                let result = open(&KEY, key_id(), &tampered, &aad());
                let expected = match byte {
                    0 => matches!(
                        result,
                        Err(CryptoError::UnsupportedVersion { version, .. }) if version == tampered[0]
                    ),
                    1..=8 => matches!(result, Err(CryptoError::KeyIdMismatch { .. })),
                    _ => matches!(
                        result,
                        Err(CryptoError::Decrypt {
                            reason: "authentication failed",
                            ..
                        })
                    ),
                };
                assert!(expected, "byte {byte} bit {bit}: {result:?}");
            }
        }
        assert_eq!(
            open(&KEY, key_id(), &sealed, &aad()).expect("untouched opens"),
            plaintext
        );
    }

    #[test]
    fn every_truncation_and_extension_is_detected() {
        for plaintext_len in [0usize, 1, 16, 40] {
            let plaintext = vec![0x5a; plaintext_len];
            let sealed = seal(&KEY, key_id(), &plaintext, &aad());
            for length in 0..sealed.len() {
                let result = open(&KEY, key_id(), &sealed[..length], &aad());
                assert!(
                    matches!(result, Err(CryptoError::Decrypt { .. })),
                    "len {length}: {result:?}"
                );
            }
            let mut extended = sealed.clone();
            extended.push(0);
            assert!(open(&KEY, key_id(), &extended, &aad()).is_err());
            assert_eq!(
                open(&KEY, key_id(), &sealed, &aad()).expect("opens"),
                plaintext
            );
        }
    }

    #[test]
    fn wrong_aad_or_key_fails() {
        let sealed = seal(&KEY, key_id(), b"subject", &aad());
        let other_row = Aad::new("message.subject").with_u64(18);
        let other_field = Aad::new("message.body").with_u64(17);
        for wrong in [other_row, other_field] {
            let result = open(&KEY, key_id(), &sealed, &wrong);
            assert!(
                matches!(result, Err(CryptoError::Decrypt { .. })),
                "{result:?}"
            );
        }
        // Same key id claimed but different key bytes: authentication must still fail.
        let result = open(&[4; KEY_LEN], key_id(), &sealed, &aad());
        assert!(
            matches!(result, Err(CryptoError::Decrypt { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn errors_name_the_domain_and_no_data() {
        let sealed = seal(&KEY, key_id(), b"secret words", &aad());
        let error =
            open(&KEY, key_id(), &sealed, &Aad::new("message.subject")).expect_err("wrong aad");
        let text = error.to_string();
        assert!(text.contains("message.subject"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
