//! The one error type of this crate: a located, human-readable schema problem.
//!
//! Errors are collected, not thrown one at a time, so `ferrobase plan` shows every
//! mistake in a project at once, each pointing at a file and line.

use std::fmt;

/// A problem in a schema definition. Every part that is known is filled in so the CLI
/// can print `collections/posts.toml:12: posts.title: max (3) must not be less than min (5)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// The file label (e.g. `collections/posts.toml`), when the definition came from a file.
    pub file: Option<String>,
    /// 1-based line in `file`.
    pub line: Option<usize>,
    pub collection: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl SchemaError {
    /// An error with only a message; callers fill in what they know.
    pub fn new(message: impl Into<String>) -> Self {
        SchemaError {
            file: None,
            line: None,
            collection: None,
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        match (&self.collection, &self.field) {
            (Some(c), Some(field)) => write!(f, "{c}.{field}: ")?,
            (Some(c), None) => write!(f, "{c}: ")?,
            (None, Some(field)) => write!(f, "{field}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SchemaError {}

/// All errors on one line each, for places that can carry only one message (serde).
pub(crate) fn join(errors: &[SchemaError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
