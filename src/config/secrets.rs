//! Secrets (IMAP and SMTP passwords) come from a file or an environment variable, never inline.
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroize;

use super::ConfigError;

/// A secret string: never printed by `Debug`, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the one place that needs it (a LOGIN command).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Reads a secret file: refuses one readable by group or others, trims one trailing newline.
pub fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let error = |message: String| ConfigError::Secret {
        key: key.to_string(),
        message,
    };
    let metadata = std::fs::metadata(path)
        .map_err(|err| error(format!("cannot read {}: {err}", path.display())))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(error(format!(
            "{} is readable by group or others; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let mut text = std::fs::read_to_string(path)
        .map_err(|err| error(format!("cannot read {}: {err}", path.display())))?;
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    if text.is_empty() {
        return Err(error(format!("{} is empty", path.display())));
    }
    Ok(Secret(text))
}

/// Reads a secret from an environment variable.
pub fn read_secret_env(key: &str, variable: &str) -> Result<Secret, ConfigError> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(Secret(value)),
        _ => Err(ConfigError::Secret {
            key: key.to_string(),
            message: format!("environment variable {variable} is not set or empty"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn secret_file_is_trimmed_and_permissions_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(b"hunter2\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let secret = read_secret_file("mailbox.x.password_file", &path).expect("read");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(…)");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_secret_file("mailbox.x.password_file", &path).expect_err("too open");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn missing_env_is_named() {
        let err = read_secret_env(
            "mailbox.x.password_env",
            "INBOXD_TEST_SURELY_UNSET_VARIABLE",
        )
        .expect_err("unset");
        assert!(
            err.to_string()
                .contains("INBOXD_TEST_SURELY_UNSET_VARIABLE")
        );
    }
}
