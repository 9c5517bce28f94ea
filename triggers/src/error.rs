//! Errors of compiling scripts and of running hooks.

use std::fmt;

/// A script that does not compile, or a trigger reference that names nothing.
///
/// `ferrobase plan` prints these and exits 2; nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    /// The script's path as given to [`crate::Scripts::compile`], e.g. `triggers/posts.rhai`.
    pub file: String,
    /// 1-based line of the error, when the error has a place in the file.
    pub line: Option<usize>,
    /// 1-based column of the error, when the error has a place in the file.
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// What kind of failure stopped a hook; for logs and metrics, never for a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The file or the function is not in the compiled set (a stale reference).
    NotFound,
    /// A Rhai runtime error: a type mismatch, an unknown property, an arithmetic error…
    Runtime,
    /// A sandbox limit: operations, call depth, string, array or map size, variables.
    Limit,
    /// The wall-time budget of the call ran out.
    WallTime,
    /// A `ctx` call was refused (bad arguments, a host not on the allow-list) or the host failed.
    Host,
    /// A value could not cross between Rhai and JSON (a function pointer in a returned record,
    /// a non-finite float, a hook that returned something other than a map).
    Conversion,
    /// An `after_*` hook or a cron called `throw`: there is no write left to reject.
    Thrown,
}

/// A hook that did not complete. The server answers 500 `trigger_failed` for a before-hook
/// without any of these details, and logs them (file, function, line, message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("{file}#{function}{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Failed {
        file: String,
        function: String,
        /// The line where the error was raised. Rhai reports sandbox limits (operations,
        /// call depth, sizes, wall time) at the call boundary only, so those have none.
        line: Option<usize>,
        kind: FailureKind,
        message: String,
    },
}

impl RunError {
    /// The kind of the failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            RunError::Failed { kind, .. } => *kind,
        }
    }

    /// The message of the failure (for logs).
    pub fn message(&self) -> &str {
        match self {
            RunError::Failed { message, .. } => message,
        }
    }
}
