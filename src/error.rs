//! The error type of every fallible operation.
use std::fmt;

/// The category of an error. The numbering matches `PresenceResult` in the C ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorKind {
    /// A required pointer argument was NULL (C ABI only).
    Null = 1,
    /// A string argument was not UTF-8.
    Utf8 = 2,
    /// A JSON argument did not parse, or had the wrong shape.
    Json = 3,
    /// A value broke a documented rule.
    Invalid = 4,
    /// Unknown user, channel, connection or listener.
    NotFound = 5,
    /// A configured limit would be exceeded.
    Limit = 6,
    /// Not allowed in the engine's current state.
    State = 7,
    /// A file operation failed.
    Io = 8,
    /// An internal bug, caught at the boundary.
    Panic = 9,
}

/// An error: a category and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Invalid, message)
    }
    pub(crate) fn json(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Json, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }
    pub(crate) fn limit(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Limit, message)
    }
    pub(crate) fn state(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::State, message)
    }
    pub(crate) fn io(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Io, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;
