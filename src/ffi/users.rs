//! Users and their connections.
use super::support::{self, call, non_null, opt_str_arg, str_arg, write_string};
use super::{PresenceConnectionId, PresenceEngine, PresenceResult};
use crate::answer::Answer;
use crate::event::ConnectionId;
use std::os::raw::c_char;

/// Upserts the user described by `user_json` (`{"id": ..., "status": ..., "invisible":
/// ..., custom fields}`, merged at the top level) and opens a connection for them. The
/// user's first connection makes a visible user online (`user.presence.changed`).
///
/// `engine`, `user_json` and `out` are required; `user_json` is borrowed for the call.
/// `out` receives the new connection id (never 0). Errors: NULL, UTF8, JSON, INVALID (a
/// bad id, a managed field such as `online`, a status over 1024 bytes), LIMIT
/// (`max_connections_per_user`). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_connect(
    engine: *mut PresenceEngine,
    user_json: *const c_char,
    out: *mut PresenceConnectionId,
) -> PresenceResult {
    call("presence_connect", || {
        let e = unsafe { support::engine(engine) }?;
        let json = unsafe { str_arg(user_json, "user_json") }?;
        let out = non_null(out, "out")?;
        let id = e.connect_json(json)?;
        unsafe { out.write(id.0) };
        Ok(())
    })
}

/// Closes a connection (reason `disconnect`): it stops watching its channels, its
/// subscriptions and queue are dropped, and the user's last connection closing makes them
/// offline. Errors: NULL (`engine`), NOT_FOUND (unknown or already closed `conn`, or 0).
/// Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_disconnect(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
) -> PresenceResult {
    call("presence_disconnect", || {
        let e = unsafe { support::engine(engine) }?;
        e.disconnect(ConnectionId(conn))
    })
}

/// Records a sign of life for a connection (used when `connection_timeout_ms` > 0).
/// Errors: NULL (`engine`), NOT_FOUND (unknown `conn`). Any thread, including from a
/// callback.
#[no_mangle]
pub unsafe extern "C" fn presence_heartbeat(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
) -> PresenceResult {
    call("presence_heartbeat", || {
        let e = unsafe { support::engine(engine) }?;
        e.heartbeat(ConnectionId(conn))
    })
}

/// Creates or merges a user without connecting it (fields present are set, absent ones
/// kept, `null` removes a custom field or clears the status).
///
/// `engine` and `user_json` are required; `user_json` is borrowed for the call. Errors:
/// NULL, UTF8, JSON, INVALID (a bad id, a managed field, a status over 1024 bytes, more
/// than 5 KiB of custom JSON). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_upsert_user(
    engine: *mut PresenceEngine,
    user_json: *const c_char,
) -> PresenceResult {
    call("presence_upsert_user", || {
        let e = unsafe { support::engine(engine) }?;
        let json = unsafe { str_arg(user_json, "user_json") }?;
        e.upsert_user_json(json)
    })
}

/// Sets or clears a user's sticky invisible flag. While invisible the user is offline in
/// every public view, event, query and watcher list.
///
/// `engine` and `user_id` are required; `user_id` is borrowed for the call. Errors: NULL,
/// UTF8, NOT_FOUND (unknown user). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_set_invisible(
    engine: *mut PresenceEngine,
    user_id: *const c_char,
    invisible: bool,
) -> PresenceResult {
    call("presence_set_invisible", || {
        let e = unsafe { support::engine(engine) }?;
        let id = unsafe { str_arg(user_id, "user_id") }?;
        e.set_invisible(id, invisible)
    })
}

/// Sets a user's custom status text, or clears it when `status` is NULL. A change emits
/// `user.presence.changed`.
///
/// `engine` and `user_id` are required; `status` may be NULL; both are borrowed for the
/// call. Errors: NULL, UTF8, INVALID (a status over 1024 bytes), NOT_FOUND (unknown
/// user). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_set_status(
    engine: *mut PresenceEngine,
    user_id: *const c_char,
    status: *const c_char,
) -> PresenceResult {
    call("presence_set_status", || {
        let e = unsafe { support::engine(engine) }?;
        let id = unsafe { str_arg(user_id, "user_id") }?;
        let status = unsafe { opt_str_arg(status, "status") }?;
        e.set_status(id, status)
    })
}

/// A user as JSON, in the view `viewer` is entitled to: 0 (the host) and the user's own
/// connections get the own view (with `invisible`), every other connection the public one.
///
/// `engine`, `user_id` and `out_json` are required; `user_id` is borrowed for the call.
/// On success `*out_json` is a new string owned by the caller (release it with
/// `presence_string_free`). Errors: NULL, UTF8, NOT_FOUND (unknown user or viewer). Any
/// thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_get_user(
    engine: *mut PresenceEngine,
    viewer: PresenceConnectionId,
    user_id: *const c_char,
    out_json: *mut *mut c_char,
) -> PresenceResult {
    call("presence_get_user", || {
        let e = unsafe { support::engine(engine) }?;
        let id = unsafe { str_arg(user_id, "user_id") }?;
        let out = non_null(out_json, "out_json")?;
        let user = e.get_user(ConnectionId(viewer), id)?.to_json();
        unsafe { write_string(out, user) }
    })
}
