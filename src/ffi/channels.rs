//! Channels: membership and watching.
use super::support::{self, call, str_arg, write_string};
use super::{PresenceConnectionId, PresenceEngine, PresenceResult};
use crate::answer::Answer;
use crate::event::ConnectionId;
use std::os::raw::c_char;

/// Creates or merges a channel: `{"type": ..., "id": ..., "members": [user ids, ...],
/// "last_message_at": ..., custom fields}` (or `"cid"` instead of `type` and `id`).
/// Members named are added (unknown users are created with only their id).
///
/// `engine` and `channel_json` are required; `channel_json` is borrowed for the call.
/// Errors: NULL, UTF8, JSON, INVALID (a bad type or id, a managed field). Any thread,
/// including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_upsert_channel(
    engine: *mut PresenceEngine,
    channel_json: *const c_char,
) -> PresenceResult {
    call("presence_upsert_channel", || {
        let e = unsafe { support::engine(engine) }?;
        let json = unsafe { str_arg(channel_json, "channel_json") }?;
        e.upsert_channel_json(json)
    })
}

/// Adds members to a channel, creating unknown users. `user_ids_json` is a JSON array of
/// user ids (`["alice","bob"]`).
///
/// Every pointer is required and borrowed for the call. Errors: NULL, UTF8, JSON, INVALID
/// (a bad cid or user id), NOT_FOUND (unknown channel), LIMIT (a presence watcher's
/// `max_subscriptions_per_connection`). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_add_members(
    engine: *mut PresenceEngine,
    cid: *const c_char,
    user_ids_json: *const c_char,
) -> PresenceResult {
    call("presence_add_members", || {
        let e = unsafe { support::engine(engine) }?;
        let cid = unsafe { str_arg(cid, "cid") }?;
        let ids = unsafe { str_arg(user_ids_json, "user_ids_json") }?;
        e.add_members_json(cid, ids)
    })
}

/// Removes members from a channel (`user_ids_json`: a JSON array of user ids); presence
/// watchers of the channel stop receiving events about them unless subscribed otherwise.
///
/// Every pointer is required and borrowed for the call. Errors: NULL, UTF8, JSON, INVALID,
/// NOT_FOUND (unknown channel). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_remove_members(
    engine: *mut PresenceEngine,
    cid: *const c_char,
    user_ids_json: *const c_char,
) -> PresenceResult {
    call("presence_remove_members", || {
        let e = unsafe { support::engine(engine) }?;
        let cid = unsafe { str_arg(cid, "cid") }?;
        let ids = unsafe { str_arg(user_ids_json, "user_ids_json") }?;
        e.remove_members_json(cid, ids)
    })
}

/// Deletes a channel; its watchers stop watching it without events.
///
/// `engine` and `cid` are required; `cid` is borrowed for the call. Errors: NULL, UTF8,
/// INVALID (a malformed cid), NOT_FOUND (unknown channel). Any thread, including from a
/// callback.
#[no_mangle]
pub unsafe extern "C" fn presence_delete_channel(
    engine: *mut PresenceEngine,
    cid: *const c_char,
) -> PresenceResult {
    call("presence_delete_channel", || {
        let e = unsafe { support::engine(engine) }?;
        let cid = unsafe { str_arg(cid, "cid") }?;
        e.delete_channel(cid)
    })
}

/// Makes connection `conn` watch a channel; with `presence` it also receives presence
/// events about every current and future member while it watches. Watching again is
/// idempotent.
///
/// `engine` and `cid` are required (`cid` borrowed for the call). `out_state_json` may be
/// NULL; when it is not, it receives on success the channel state `{"channel", "members",
/// "watcher_count", "watchers"}` as a new string owned by the caller (release it with
/// `presence_string_free`). Errors: NULL, UTF8, INVALID (a bad cid), NOT_FOUND (unknown
/// channel or connection, or 0), LIMIT (`max_subscriptions_per_connection`). Any thread,
/// including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_watch_channel(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
    cid: *const c_char,
    presence: bool,
    out_state_json: *mut *mut c_char,
) -> PresenceResult {
    call("presence_watch_channel", || {
        let e = unsafe { support::engine(engine) }?;
        let cid = unsafe { str_arg(cid, "cid") }?;
        if out_state_json.is_null() {
            e.start_watching(ConnectionId(conn), cid, presence)
        } else {
            let state = e.watch_channel(ConnectionId(conn), cid, presence)?.to_json();
            unsafe { write_string(out_state_json, state) }
        }
    })
}

/// Stops connection `conn` watching a channel (a no-op when it was not watching), ending
/// the presence subscriptions that came from it.
///
/// `engine` and `cid` are required; `cid` is borrowed for the call. Errors: NULL, UTF8,
/// INVALID (a bad cid), NOT_FOUND (unknown channel or connection). Any thread, including
/// from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_stop_watching(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
    cid: *const c_char,
) -> PresenceResult {
    call("presence_stop_watching", || {
        let e = unsafe { support::engine(engine) }?;
        let cid = unsafe { str_arg(cid, "cid") }?;
        e.stop_watching(ConnectionId(conn), cid)
    })
}

/// Ends the presence subscription that `presence_query_users` with `"presence": true`
/// gave connection `conn` to one user (subscriptions through watched channels stay).
///
/// `engine` and `user_id` are required; `user_id` is borrowed for the call. Errors: NULL,
/// UTF8, NOT_FOUND (unknown connection or user). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_unsubscribe_user(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
    user_id: *const c_char,
) -> PresenceResult {
    call("presence_unsubscribe_user", || {
        let e = unsafe { support::engine(engine) }?;
        let id = unsafe { str_arg(user_id, "user_id") }?;
        e.unsubscribe_user(ConnectionId(conn), id)
    })
}
