//! Saving and loading users and channels.
use super::support::{self, call, str_arg};
use super::{PresenceEngine, PresenceResult};
use std::os::raw::c_char;

/// Writes users and channels to the file at `path` (a UTF-8 path) atomically: a crash
/// mid-save leaves the previous file intact.
///
/// `engine` and `path` are required; `path` is borrowed for the call. Errors: NULL, UTF8,
/// IO. Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_save(engine: *mut PresenceEngine, path: *const c_char) -> PresenceResult {
    call("presence_save", || {
        let e = unsafe { support::engine(engine) }?;
        let path = unsafe { str_arg(path, "path") }?;
        e.save(path)
    })
}

/// Replaces every user and channel with those saved at `path` (a UTF-8 path); every
/// loaded user starts offline. Allowed only while the engine has no connections. On error
/// the engine is unchanged.
///
/// `engine` and `path` are required; `path` is borrowed for the call. Errors: NULL, UTF8,
/// IO (unreadable file), JSON (not a snapshot), STATE (connections open). Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_load(engine: *mut PresenceEngine, path: *const c_char) -> PresenceResult {
    call("presence_load", || {
        let e = unsafe { support::engine(engine) }?;
        let path = unsafe { str_arg(path, "path") }?;
        e.load(path)
    })
}
