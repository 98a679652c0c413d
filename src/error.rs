//! The error type of every fallible operation.
use std::fmt;

/// The one list of error kinds. Each entry gives the kind, its number (shared with the C
/// ABI's `PresenceResult`, where 0 is success), the name of that result code and what the
/// kind means. `ErrorKind` and its `ALL`, `code`, `name` and `description` come from here;
/// the C ABI maps its result codes through it (the compiler rejects a code missing on
/// either side) and a test checks the bindings' enumerations against it.
///
/// Pass a macro name to receive the list as `Kind = number, RESULT_NAME, "description";`
/// entries.
macro_rules! with_error_kinds {
    ($then:ident) => {
        $then! {
            Null = 1, PRESENCE_ERR_NULL, "A required pointer argument was NULL.";
            Utf8 = 2, PRESENCE_ERR_UTF8, "A string argument was not UTF-8.";
            Json = 3, PRESENCE_ERR_JSON, "A JSON argument did not parse, or had the wrong shape.";
            Invalid = 4, PRESENCE_ERR_INVALID, "A value broke a documented rule.";
            NotFound = 5, PRESENCE_ERR_NOT_FOUND, "Unknown user, channel, connection or listener.";
            Limit = 6, PRESENCE_ERR_LIMIT, "A configured limit would be exceeded.";
            State = 7, PRESENCE_ERR_STATE, "Not allowed in the engine's current state.";
            Io = 8, PRESENCE_ERR_IO, "A file operation failed.";
            Panic = 9, PRESENCE_ERR_PANIC, "An internal bug, caught at the boundary.";
        }
    };
}
pub(crate) use with_error_kinds;

/// Defines `ErrorKind` from the list in [`with_error_kinds`].
macro_rules! define_error_kind {
    ($($kind:ident = $code:literal, $name:ident, $description:literal;)*) => {
        /// The category of an error. The numbering matches `PresenceResult` in the C ABI.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum ErrorKind {
            $(#[doc = $description] $kind = $code,)*
        }

        impl ErrorKind {
            /// Every kind, in numeric order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)*];

            /// The number of the kind's C result code (never 0, which is success).
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// The name of the kind's C result code, such as `PRESENCE_ERR_JSON`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => stringify!($name),)*
                }
            }

            /// What the kind means, one sentence.
            pub const fn description(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => $description,)*
                }
            }

            /// The kind with C result code `code`; `None` for 0 (success) and unknown codes.
            pub const fn from_code(code: u32) -> Option<ErrorKind> {
                match code {
                    $($code => Some(ErrorKind::$kind),)*
                    _ => None,
                }
            }
        }
    };
}
with_error_kinds!(define_error_kind);

/// An error: a category and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The longest error message kept, in bytes. A longer one (built from hostile input that
/// no quoting caught) is cut at a character boundary and says how long it was, so an error
/// never holds more than about this much memory whatever the input.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The most bytes of an input value an error message quotes (see [`quote`]).
pub const MAX_QUOTE_BYTES: usize = 200;

/// `s` quoted for an error message: its first [`MAX_QUOTE_BYTES`] bytes (cut at a
/// character boundary) in Rust string syntax, then, when cut, `... (N bytes)`.
/// Cost: O(min(len, MAX_QUOTE_BYTES)).
pub fn quote(s: &str) -> String {
    if s.len() <= MAX_QUOTE_BYTES {
        return format!("{s:?}");
    }
    format!("{:?}... ({} bytes)", &s[..floor_char_boundary(s, MAX_QUOTE_BYTES)], s.len())
}

/// The largest character boundary of `s` at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut cut = at.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Cuts a message longer than [`MAX_MESSAGE_BYTES`], saying how long it was.
pub(crate) fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let len = message.len();
        message.truncate(floor_char_boundary(&message, MAX_MESSAGE_BYTES - 64));
        message.push_str(&format!("... (message cut, {len} bytes in all)"));
    }
    message
}

impl Error {
    /// An error of `kind` with `message` (by convention naming the operation and the value
    /// at fault, as the engine's own errors do), kept up to [`MAX_MESSAGE_BYTES`].
    /// Cold: the paths that fail are laid out away from those that succeed.
    #[cold]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: bounded(message.into()) }
    }
    /// The category: what a C host sees as the `PresenceResult`.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// What was wrong, such as `unknown connection 42`: what a C host reads from
    /// `presence_last_error()`.
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

/// The message of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
