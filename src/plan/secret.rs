//! Secret references (`*_env`, `*_file`) and a value type that never prints itself.

use std::fmt;
use std::path::PathBuf;

/// Where a secret comes from. Only the reference is ever shown, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(v) => write!(f, "environment variable `{v}`"),
            SecretRef::File(p) => write!(f, "file `{}`", p.display()),
        }
    }
}

impl SecretRef {
    /// Reads the secret now.
    ///
    /// # Errors
    /// The variable is unset or empty, or the file cannot be read; the message names the
    /// reference, never a value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => Err(format!("environment variable `{var}` is empty")),
                Err(_) => Err(format!("environment variable `{var}` is not set")),
            },
            SecretRef::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))?;
                let first = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('\r')
                    .to_string();
                if first.is_empty() {
                    Err(format!("secret file `{}` is empty", path.display()))
                } else {
                    Ok(Secret(first))
                }
            }
        }
    }
}

/// A secret value: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for handing to a child process's environment or stdin only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        let missing = SecretRef::Env("TRANSHUMANCE_TEST_SURELY_UNSET".into())
            .resolve()
            .unwrap_err();
        assert!(missing.contains("is not set"));
    }
}
