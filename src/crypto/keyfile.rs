//! Loading and creating the master key file, and reading it from systemd credentials
//! (`LoadCredential=`, exposed under `$CREDENTIALS_DIRECTORY`, see systemd.exec(5)).
//!
//! A key file holds either exactly 32 raw bytes or 64 hex characters with an optional trailing
//! newline. Error messages name the path and the fix but never include any byte of the file.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::blob::{parent_dir, sync_parent_dir};
use super::keys::{KEY_LEN, random_key_bytes};
use super::{CryptoError, MasterKey, Result};

/// Anything longer is certainly not a key file; refuse before reading it into memory.
const MAX_KEY_FILE_LEN: u64 = 4096;
const HEX_LEN: usize = KEY_LEN * 2;
const NOT_HEX: &str = "has 64 characters but they are not all hexadecimal; expected 32 raw bytes or 64 hex characters";
const REFUSE_OVERWRITE: &str =
    "already exists; refusing to overwrite a key (move it away first if you mean to replace it)";

/// A master key read from a file, with warnings the caller should log (e.g. loose permissions).
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub key: MasterKey,
    /// Problems that do not prevent use, as lowercase messages naming the path and the fix; no key
    /// material.
    pub warnings: Vec<String>,
}

/// Reads a master key file: exactly 32 raw bytes, or 64 hex characters (trailing newline or
/// whitespace trimmed). Adds a warning when the file's mode gives group or others any access.
pub fn load_key_file(path: &Path) -> Result<LoadedKey> {
    let key_file_error = |reason: String| CryptoError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(CryptoError::KeyFileMissing {
                path: path.to_path_buf(),
            });
        }
        Err(error) => {
            return Err(key_file_error(format!(
                "cannot be read ({error}); check its owner and permissions"
            )));
        }
    };
    if !metadata.is_file() {
        return Err(key_file_error(
            "is not a regular file; point key_file at the key file itself".into(),
        ));
    }
    if metadata.len() > MAX_KEY_FILE_LEN {
        return Err(key_file_error(wrong_length_reason(metadata.len())));
    }
    let contents = Zeroizing::new(fs::read(path).map_err(|e| {
        key_file_error(format!(
            "cannot be read ({e}); check its owner and permissions"
        ))
    })?);
    let bytes = parse_key(&contents).map_err(key_file_error)?;

    let mut warnings = Vec::new();
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        warnings.push(format!(
            "key file {} is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(LoadedKey {
        key: MasterKey::from_bytes(*bytes),
        warnings,
    })
}

fn wrong_length_reason(length: u64) -> String {
    format!("is {length} bytes; expected 32 raw bytes or 64 hex characters")
}

/// Decodes a key file's contents. Errors never quote the contents (a hex decoder's message would
/// name the offending character, which is part of the key).
fn parse_key(contents: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if contents.len() == KEY_LEN {
        key.copy_from_slice(contents);
        return Ok(key);
    }
    let trimmed = contents.trim_ascii_end();
    if trimmed.len() != HEX_LEN {
        return Err(wrong_length_reason(contents.len() as u64));
    }
    hex::decode_to_slice(trimmed, key.as_mut()).map_err(|_| NOT_HEX.to_string())?;
    Ok(key)
}

/// Creates a new key file holding a random key as 64 hex characters and a newline, mode 0600, and
/// returns the key. Missing parent directories are created with mode 0700. The file is written
/// under a temporary name, fsynced and then hard-linked into place, which fails rather than replace
/// an existing file, so it is never seen half-written and an existing key is never overwritten.
pub fn create_key_file(path: &Path) -> Result<MasterKey> {
    let already_exists = || CryptoError::KeyFile {
        path: path.to_path_buf(),
        reason: REFUSE_OVERWRITE.into(),
    };
    if fs::symlink_metadata(path).is_ok() {
        return Err(already_exists());
    }
    let file_name = path.file_name().ok_or_else(|| CryptoError::KeyFile {
        path: path.to_path_buf(),
        reason: "has no file name; give the path of the file to create".into(),
    })?;
    let parent = parent_dir(path);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| CryptoError::io(parent, e))?;

    let key = random_key_bytes();
    let mut text = Zeroizing::new([0u8; HEX_LEN + 1]);
    hex::encode_to_slice(key.as_ref(), &mut text[..HEX_LEN])
        .expect("64 hex characters for 32 bytes");
    text[HEX_LEN] = b'\n';

    let temp_name = format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        hex::encode(rand::random::<[u8; 8]>())
    );
    let temp_path = parent.join(temp_name);
    let result = write_synced(&temp_path, text.as_ref()).and_then(|()| {
        match fs::hard_link(&temp_path, path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(already_exists()),
            Err(error) => Err(CryptoError::io(path, error)),
        }
    });
    // The temporary name is removed whether or not the link succeeded.
    let _ = fs::remove_file(&temp_path);
    result?;
    sync_parent_dir(path)?;
    Ok(MasterKey::from_bytes(*key))
}

/// Writes `contents` to a new file with mode 0600 (set explicitly, whatever the umask) and fsyncs
/// it.
fn write_synced(path: &Path, contents: &[u8]) -> Result<()> {
    let io_error = |e| CryptoError::io(path, e);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

/// Loads the key from a systemd credential: `dir` is `$CREDENTIALS_DIRECTORY`, `name` the
/// credential name given to `LoadCredential=` or `LoadCredentialEncrypted=`.
pub fn load_from_credentials(dir: &Path, name: &str) -> Result<LoadedKey> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(CryptoError::KeyFile {
            path: dir.to_path_buf(),
            reason: format!(
                "cannot hold credential {name:?}: a credential name is a single file name"
            ),
        });
    }
    load_key_file(&dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_with_mode(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).expect("write test key");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod test key");
    }

    #[test]
    fn loads_raw_and_hex_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw: [u8; 32] = std::array::from_fn(|i| i as u8 * 7 + 1);
        let expected = MasterKey::from_bytes(raw).key_id();
        let hex_text = hex::encode(raw);
        let cases: [(&str, Vec<u8>); 5] = [
            ("raw", raw.to_vec()),
            ("hex", hex_text.clone().into_bytes()),
            ("hex-newline", format!("{hex_text}\n").into_bytes()),
            ("hex-crlf", format!("{hex_text}\r\n").into_bytes()),
            (
                "hex-upper",
                format!("{}\n", hex_text.to_uppercase()).into_bytes(),
            ),
        ];
        for (name, contents) in cases {
            let path = dir.path().join(name);
            write_with_mode(&path, &contents, 0o600);
            let loaded = load_key_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(loaded.key.key_id(), expected, "{name}");
            assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        }
    }

    #[test]
    fn raw_key_ending_in_newline_byte_is_kept_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut raw = [0x41u8; 32];
        raw[31] = b'\n';
        let path = dir.path().join("raw");
        write_with_mode(&path, &raw, 0o600);
        assert_eq!(
            load_key_file(&path).expect("loads").key.key_id(),
            MasterKey::from_bytes(raw).key_id()
        );
    }

    #[test]
    fn wrong_length_and_bad_hex_are_refused_without_quoting_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("short");
        write_with_mode(&path, b"0123456789abcdefq", 0o600);
        let message = load_key_file(&path)
            .expect_err("17 bytes is refused")
            .to_string();
        let expected = format!(
            "key file {} is 17 bytes; expected 32 raw bytes or 64 hex characters",
            path.display()
        );
        assert_eq!(message, expected);

        let bad_hex = format!("{}zz\n", "ab".repeat(31));
        write_with_mode(&path, bad_hex.as_bytes(), 0o600);
        let message = load_key_file(&path)
            .expect_err("non-hex is refused")
            .to_string();
        assert!(message.contains("not all hexadecimal"), "{message}");
        assert!(
            !message.contains("zz") && !message.contains("'z'"),
            "{message}"
        );

        write_with_mode(&path, &[0u8; 5000], 0o600);
        assert!(
            load_key_file(&path)
                .expect_err("huge")
                .to_string()
                .contains("is 5000 bytes")
        );
        assert!(matches!(
            load_key_file(dir.path()),
            Err(CryptoError::KeyFile { .. })
        ));
    }

    #[test]
    fn missing_file_names_path_and_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent");
        let error = load_key_file(&path).expect_err("missing");
        assert!(error.is_not_found());
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("create it or point key_file at the right file"),
            "{message}"
        );
    }

    #[test]
    fn loose_permissions_give_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        for (mode, warns) in [
            (0o600, false),
            (0o400, false),
            (0o640, true),
            (0o604, true),
            (0o620, true),
        ] {
            write_with_mode(&path, &[1u8; 32], mode);
            let loaded = load_key_file(&path).expect("loads");
            assert_eq!(
                !loaded.warnings.is_empty(),
                warns,
                "mode {mode:o}: {:?}",
                loaded.warnings
            );
            if warns {
                assert!(
                    loaded.warnings[0].contains(&format!("{mode:04o}")),
                    "{:?}",
                    loaded.warnings
                );
                assert!(
                    loaded.warnings[0].contains("chmod 600"),
                    "{:?}",
                    loaded.warnings
                );
            }
        }
    }

    #[test]
    fn create_writes_hex_with_mode_0600_and_refuses_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/deeper/master.key");
        let created = create_key_file(&path).expect("creates");
        let metadata = fs::metadata(&path).expect("exists");
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        let parent_mode = fs::metadata(path.parent().expect("parent"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(parent_mode & 0o777, 0o700);
        let contents = fs::read_to_string(&path).expect("reads");
        assert_eq!(contents.len(), 65);
        assert!(contents.ends_with('\n'));
        assert_eq!(contents.trim_end(), hex::encode(created.expose_bytes()));

        let loaded = load_key_file(&path).expect("loads");
        assert_eq!(loaded.key.key_id(), created.key_id());
        assert!(loaded.warnings.is_empty());

        let refused = create_key_file(&path).expect_err("refuses overwrite");
        assert!(refused.to_string().contains("already exists"), "{refused}");
        assert_eq!(
            fs::read_to_string(&path).expect("reads"),
            contents,
            "existing key untouched"
        );
        let leftovers = fs::read_dir(path.parent().expect("parent"))
            .expect("lists")
            .count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn credentials_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_with_mode(&dir.path().join("master-key"), &[9u8; 32], 0o400);
        let loaded = load_from_credentials(dir.path(), "master-key").expect("loads");
        assert_eq!(
            loaded.key.key_id(),
            MasterKey::from_bytes([9u8; 32]).key_id()
        );
        assert!(
            load_from_credentials(dir.path(), "absent")
                .expect_err("missing")
                .is_not_found()
        );
        for bad in ["", "..", "a/b"] {
            assert!(
                matches!(
                    load_from_credentials(dir.path(), bad),
                    Err(CryptoError::KeyFile { .. })
                ),
                "{bad}"
            );
        }
    }
}
