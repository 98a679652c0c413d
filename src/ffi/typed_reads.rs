//! ABI version 2, the typed entry points a game loop calls each frame: connecting by user
//! id alone, and reading a user's presence into a struct, both without JSON.
use super::support::{self, call, non_null, str_arg};
use super::{PresenceConnectionId, PresenceEngine, PresenceResult};
use crate::event::ConnectionId;
use crate::user::View;
use std::os::raw::c_char;
use std::ptr;

// ----- connecting without JSON -----

/// Opens a connection for user `user_id`, creating the user with only its id if unknown
/// (an existing user keeps its status, invisibility and custom fields): as
/// `presence_connect` with `{"id": user_id}`, without JSON. Cost:
/// O(len of the id + subscribers of the user).
///
/// `user_id` is required, borrowed for the call; `out` is required and receives the new
/// connection id. Errors: NULL, UTF8, INVALID (an id that is empty, longer than 255 bytes,
/// or holds whitespace or control characters), LIMIT (max_connections_per_user). Any
/// thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_connect_user(
    engine: *mut PresenceEngine,
    user_id: *const c_char,
    out: *mut PresenceConnectionId,
) -> PresenceResult {
    call("presence_connect_user", || {
        let e = unsafe { support::engine(engine) }?;
        let user_id = unsafe { str_arg(user_id, "user_id") }?;
        let out = non_null(out, "out")?;
        let id = e.connect_user(user_id)?;
        unsafe { out.write(id.0) };
        Ok(())
    })
}

// ----- reading a user without JSON -----

/// A user's presence as one viewer sees it: what a game loop reads each frame for the
/// players it shows, without JSON. Filled by `presence_get_user_presence`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PresenceUserPresence {
    /// The `online` flag in the viewer's view (an invisible user is offline to others,
    /// online to the host and to their own connections while connected).
    pub online: bool,
    /// Whether the user is invisible, in own views only; always false in public views.
    pub invisible: bool,
    /// Whether the user has a status (possibly ""); `status_len` is its length.
    pub has_status: bool,
    /// The status's length in bytes (0 without one), whatever the buffer could hold.
    pub status_len: u32,
    /// The user's last activity in Unix milliseconds; INT64_MIN when never active.
    pub last_active_ms: i64,
}

/// Reads user `user_id` as `viewer` sees it (0: the host, own view), without JSON: the
/// typed counterpart of `presence_get_user` for what a game loop reads every frame. Cost:
/// O(1) under the engine's lock, plus copying the status.
///
/// `user_id` and `out` are required. `status` may be NULL (with any `status_capacity`);
/// otherwise it receives the status (or "" without one), NUL-terminated and cut to at most
/// `status_capacity - 1` bytes at a character boundary (statuses are at most 1024 bytes,
/// so 1025 always suffices; `out->status_len` tells the full length). Both are written
/// only on success. Errors: NULL, UTF8, NOT_FOUND (unknown user, or unknown viewer
/// connection). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_get_user_presence(
    engine: *mut PresenceEngine,
    viewer: PresenceConnectionId,
    user_id: *const c_char,
    out: *mut PresenceUserPresence,
    status: *mut c_char,
    status_capacity: u32,
) -> PresenceResult {
    call("presence_get_user_presence", || {
        let e = unsafe { support::engine(engine) }?;
        let user_id = unsafe { str_arg(user_id, "user_id") }?;
        let out = non_null(out, "out")?;
        let viewed = e.get_user(ConnectionId(viewer), user_id)?;
        let user = &viewed.user;
        let text = user.status.as_deref().unwrap_or("");
        if !status.is_null() && status_capacity > 0 {
            let mut fits = text.len().min(status_capacity as usize - 1);
            while !text.is_char_boundary(fits) {
                fits -= 1;
            }
            // SAFETY: the caller provides `status_capacity` writable bytes at `status`.
            unsafe {
                ptr::copy_nonoverlapping(text.as_ptr(), status.cast::<u8>(), fits);
                status.add(fits).write(0);
            }
        }
        let presence = PresenceUserPresence {
            online: user.online(viewed.view),
            invisible: viewed.view == View::Own && user.invisible,
            has_status: user.status.is_some(),
            status_len: text.len() as u32,
            last_active_ms: user.last_active.unwrap_or(i64::MIN),
        };
        unsafe { out.write(presence) };
        Ok(())
    })
}
