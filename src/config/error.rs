//! The configuration's error, and the [`Checker`] through which each section's checks build
//! it (a file of its own, so that the sections import it without importing their parent).

use std::path::{Path, PathBuf};

/// A configuration problem, phrased for the operator on one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: cannot read the file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config {path}: line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key that the server does not know.
    #[error("config {path}: unknown key `{key}`")]
    UnknownKey { path: PathBuf, key: String },
    /// A key with a value of the wrong type or a missing required key.
    #[error("config {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Builds the errors of the section checks for one file.
pub(crate) struct Checker<'a> {
    path: &'a Path,
}

impl<'a> Checker<'a> {
    pub(super) fn new(path: &'a Path) -> Self {
        Self { path }
    }

    pub(super) fn bad(&self, key: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    pub(super) fn at_least(&self, key: &str, value: usize, min: usize) -> Result<(), ConfigError> {
        if value < min {
            return Err(self.bad(key, &format!("must be at least {min}")));
        }
        Ok(())
    }
}
