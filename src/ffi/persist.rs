//! Saving and loading users and channels.
use super::support::{self, call, str_arg};
use super::{PresenceEngine, PresenceResult};
use std::os::raw::c_char;

/// Writes users and channels to the file at `path` (a UTF-8 path) atomically: a crash
/// mid-save leaves the previous file intact. The temporary file beside it gets an
/// unpredictable name and is created exclusively, never through a symlink. `path` must
/// name a regular file or nothing: a folder, device, FIFO or symlink there answers IO and
/// is left alone. The engine is locked only while the records are gathered (no copy of
/// their data); the file is written after the lock is released.
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
/// loaded user starts offline (a user still inside the offline grace gets the
/// `user.presence.changed` its expiry would emit). Allowed only while the engine has no
/// connections. Only a regular file is read, without blocking on a FIFO, of at most the
/// config's `max_snapshot_bytes` (default 1 GiB); it is parsed as it is read, in memory
/// proportional to it, before the engine is locked. On error the engine is unchanged.
///
/// `engine` and `path` are required; `path` is borrowed for the call. Errors: NULL, UTF8,
/// IO (unreadable, or not a regular file), LIMIT (larger than `max_snapshot_bytes`), JSON
/// (not a snapshot, or a value in it breaks a rule), STATE (connections open). Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_load(engine: *mut PresenceEngine, path: *const c_char) -> PresenceResult {
    call("presence_load", || {
        let e = unsafe { support::engine(engine) }?;
        let path = unsafe { str_arg(path, "path") }?;
        e.load(path)
    })
}
