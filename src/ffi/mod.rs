//! The C ABI of SPEC section 8. `include/presence.h` is generated from this file by
//! cbindgen (`PRESENCE_BLESS=1 cargo test --test header` rewrites it; plain
//! `cargo test --test header` fails with a diff when it is stale), so the doc comments
//! here are the header's documentation: they say who owns what, what may be NULL and
//! which threads may call.
//!
//! Every function runs its body behind `support::call`: a panic becomes
//! `PRESENCE_ERR_PANIC`, every failure leaves a message for `presence_last_error`, and
//! out-parameters are written only on success (all pointer arguments are checked before
//! anything changes, so a NULL out-parameter never leaves a half-done operation behind).
#![allow(clippy::missing_safety_doc)] // the contract of each function is in its doc comment

mod support;

use crate::engine::{Engine, ListenerFilter, ListenerId};
use crate::event::{ConnectionId, Delivery, Event};
use crate::user::View;
use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use support::{call, into_c_string, non_null, null, opt_str_arg, str_arg, FfiResult};

/// The version of this C ABI. It changes only when a pinned name, signature or layout
/// changes incompatibly; compare it with `presence_abi_version()` at startup to detect a
/// header/library mismatch.
pub const PRESENCE_ABI_VERSION: u32 = 1;

/// The outcome of a call. Every function returning it writes its out-parameters only on
/// `PRESENCE_OK`; on any other value `presence_last_error()` holds a message on the
/// calling thread naming the function, the argument and what was wrong.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceResult {
    /// Success.
    PRESENCE_OK = 0,
    /// A required pointer argument was NULL.
    PRESENCE_ERR_NULL = 1,
    /// A string argument was not UTF-8.
    PRESENCE_ERR_UTF8 = 2,
    /// A JSON argument did not parse, or had the wrong shape (the message is serde's).
    PRESENCE_ERR_JSON = 3,
    /// A value broke a documented rule (an id too long, an unknown query operator, ...).
    PRESENCE_ERR_INVALID = 4,
    /// Unknown user, channel, connection or listener.
    PRESENCE_ERR_NOT_FOUND = 5,
    /// A configured limit would be exceeded.
    PRESENCE_ERR_LIMIT = 6,
    /// Not allowed in the engine's current state (time moving backwards, load with
    /// connections open, set_time without a manual clock).
    PRESENCE_ERR_STATE = 7,
    /// A file operation failed.
    PRESENCE_ERR_IO = 8,
    /// An internal bug, caught at the boundary; the engine stays usable.
    PRESENCE_ERR_PANIC = 9,
}

/// A `PresenceResult` as the C caller passed it: any integer, so that a value outside the
/// enumeration is answered instead of being undefined behaviour on the Rust side. The
/// header names it `PresenceResult` (cbindgen.toml renames it and leaves out its typedef);
/// both are 32-bit integers in the C ABI.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceResultArg(pub u32);

/// An engine. Opaque: created by `presence_engine_new`, owned by the caller until it
/// passes it to `presence_engine_free`. Thread-safe: any number of threads may call any
/// function on one engine at the same time.
pub struct PresenceEngine {
    engine: Engine,
}

/// A connection id: engine-assigned, never 0, never reused within an engine's life. As a
/// viewer, 0 means the host itself (own view of every user).
pub type PresenceConnectionId = u64;

/// A listener id for `presence_remove_listener`; never 0 (0 is never a valid id).
pub type PresenceListenerId = u64;

/// One event handed to a callback. The struct and every string it points at are owned by
/// the engine and valid only during the callback: copy what you need to keep.
#[repr(C)]
pub struct PresenceEvent {
    /// The event type: "user.presence.changed", "user.updated", "user.watching.start",
    /// "user.watching.stop", "member.added", "member.removed" or "connection.closed".
    pub r#type: *const c_char,
    /// The engine-wide sequence number, strictly increasing in the order of the changes.
    pub seq: u64,
    /// The recipient connection for delivery listeners; 0 for host listeners.
    pub connection_id: PresenceConnectionId,
    /// The id of the user the event is about, or NULL.
    pub user_id: *const c_char,
    /// The channel (`type:id`) the event is about, or NULL for events about no channel.
    pub cid: *const c_char,
    /// That user's `online` flag as the recipient sees it (the own view for host
    /// listeners, so an invisible user with connections is online there).
    pub online: bool,
    /// The whole event as a JSON object (with `connection_id` for delivery listeners).
    pub json: *const c_char,
}

/// A callback. `user_data` is the pointer given at registration, passed back untouched;
/// `event` is valid only during the call. Callbacks run on the thread that caused the
/// events (immediate dispatch; when two threads race, whichever dispatches first delivers
/// the events of both, in order) or that calls `presence_pump` (manual dispatch), never
/// while the engine holds its lock, never concurrently with another callback of the same
/// engine, in `seq` order. A callback may call any function of the engine except
/// `presence_engine_free` on it; events it causes are delivered after the current one.
/// While it runs, a call on another thread that emits events waits for the dispatch to
/// finish, so a callback must not block waiting for another thread that calls into the
/// same engine (for example on a host mutex that thread holds): that would deadlock.
/// It must not longjmp out of the callback, and must not let a C++ exception escape it
/// (wrap its body in try/catch): an exception reaching the engine aborts the process.
pub type PresenceEventCallback =
    Option<unsafe extern "C-unwind" fn(user_data: *mut c_void, event: *const PresenceEvent)>;

/// The engine behind a handle, or `PRESENCE_ERR_NULL` naming the `engine` argument.
///
/// # Safety
/// `p` is NULL or a live handle from `presence_engine_new` that outlives `'a`.
unsafe fn engine<'a>(p: *mut PresenceEngine) -> Result<&'a Engine, crate::Error> {
    let p = non_null(p, "engine")?;
    // SAFETY: a live handle by the caller's contract; `Engine` is used through `&` only.
    Ok(unsafe { &(*p).engine })
}

/// Writes a result string into a required `char **` out-parameter already checked for NULL.
///
/// # Safety
/// `out` is a valid, writable pointer.
unsafe fn write_string(out: *mut *mut c_char, s: String) -> FfiResult {
    let raw = into_c_string(s)?;
    // SAFETY: checked non-NULL and writable by the caller's contract.
    unsafe { out.write(raw) };
    Ok(())
}

// ----- versions and errors -----

/// Answers `PRESENCE_ABI_VERSION` as compiled into the library. Any thread; never fails.
#[no_mangle]
pub extern "C" fn presence_abi_version() -> u32 {
    PRESENCE_ABI_VERSION
}

/// The library version ("0.1.0"), a static NUL-terminated string owned by the library:
/// never free it. Any thread; never fails, never NULL.
#[no_mangle]
pub extern "C" fn presence_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// The name of a result code ("PRESENCE_ERR_JSON"), a static string owned by the library:
/// never free it. A value outside the enumeration answers "PRESENCE_UNKNOWN". Any thread;
/// never fails, never NULL.
#[no_mangle]
pub extern "C" fn presence_result_name(result: PresenceResultArg) -> *const c_char {
    let name = match result.0 {
        0 => c"PRESENCE_OK",
        1 => c"PRESENCE_ERR_NULL",
        2 => c"PRESENCE_ERR_UTF8",
        3 => c"PRESENCE_ERR_JSON",
        4 => c"PRESENCE_ERR_INVALID",
        5 => c"PRESENCE_ERR_NOT_FOUND",
        6 => c"PRESENCE_ERR_LIMIT",
        7 => c"PRESENCE_ERR_STATE",
        8 => c"PRESENCE_ERR_IO",
        9 => c"PRESENCE_ERR_PANIC",
        _ => c"PRESENCE_UNKNOWN",
    };
    name.as_ptr()
}

/// The message of the last failing call on the calling thread ("presence_connect:
/// user_json is NULL"), or "" if no call has failed on this thread yet. Successful calls
/// do not clear it. The string is owned by the library (never free it) and stays valid
/// until the next failing call on the same thread or the thread's exit; copy it to keep
/// it. Thread-local: each thread sees its own failures only. Never NULL.
#[no_mangle]
pub extern "C" fn presence_last_error() -> *const c_char {
    catch_unwind(support::last_error_ptr).unwrap_or(c"".as_ptr())
}

/// Releases a string returned through a `char **out_json` parameter. NULL is accepted and
/// ignored. Freeing any other pointer, or the same one twice, is undefined behaviour.
/// Any thread (not necessarily the one that received the string).
#[no_mangle]
pub unsafe extern "C" fn presence_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `s` came from `CString::into_raw` in this library, by contract.
        drop(unsafe { CString::from_raw(s) });
    }));
}

// ----- engine lifetime -----

/// Creates an engine from config JSON (NULL: every default). Unknown keys are rejected.
///
/// `config_json` may be NULL; it is borrowed for the call only. `out` is required and
/// receives the new engine on success; the caller owns it and releases it with
/// `presence_engine_free`. Errors: NULL (`out`), UTF8, JSON (a typo in a key, a wrong
/// type), INVALID (a zero limit, a negative start time). Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_engine_new(
    config_json: *const c_char,
    out: *mut *mut PresenceEngine,
) -> PresenceResult {
    call("presence_engine_new", || {
        let out = non_null(out, "out")?;
        let config = unsafe { opt_str_arg(config_json, "config_json") }?;
        let engine = Engine::from_json(config)?;
        let handle = Box::into_raw(Box::new(PresenceEngine { engine }));
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Destroys an engine and every listener registered on it (their `user_data` is not
/// touched: it stays the caller's to release). NULL is accepted and ignored. No other
/// thread may be using the engine, and it must not be called from one of the engine's own
/// callbacks; the handle is invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn presence_engine_free(engine: *mut PresenceEngine) {
    if engine.is_null() {
        return;
    }
    let _ = call("presence_engine_free", || {
        // SAFETY: a live handle from `presence_engine_new`, by contract not used elsewhere.
        drop(unsafe { Box::from_raw(engine) });
        Ok(())
    });
}

// ----- users and connections -----

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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { str_arg(user_id, "user_id") }?;
        let out = non_null(out_json, "out_json")?;
        let user = e.get_user_json(ConnectionId(viewer), id)?;
        unsafe { write_string(out, user) }
    })
}

// ----- channels -----

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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
        let cid = unsafe { str_arg(cid, "cid") }?;
        if out_state_json.is_null() {
            e.watch_channel(ConnectionId(conn), cid, presence)
        } else {
            let state = e.watch_channel_state_json(ConnectionId(conn), cid, presence)?;
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
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { str_arg(user_id, "user_id") }?;
        e.unsubscribe_user(ConnectionId(conn), id)
    })
}

// ----- queries -----

/// Queries users with Stream filter syntax (`{"filter_conditions": {...}, "sort": [...],
/// "offset": 0, "limit": 30, "presence": false}`), in `viewer`'s view (0: the host). With
/// `"presence": true` the viewer connection is subscribed to every user returned.
///
/// `engine`, `query_json` and `out_json` are required; `query_json` is borrowed for the
/// call. On success `*out_json` is `{"users": [...]}`, a new string owned by the caller
/// (release it with `presence_string_free`). Errors: NULL, UTF8, JSON, INVALID (an unknown
/// operator, a wrong type, limit over `query_limit_max`, presence with viewer 0),
/// NOT_FOUND (unknown viewer), LIMIT (`max_subscriptions_per_connection`). Any thread,
/// including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_query_users(
    engine: *mut PresenceEngine,
    viewer: PresenceConnectionId,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> PresenceResult {
    call("presence_query_users", || {
        let e = unsafe { self::engine(engine) }?;
        let query = unsafe { str_arg(query_json, "query_json") }?;
        let out = non_null(out_json, "out_json")?;
        let result = e.query_users_json(ConnectionId(viewer), query)?;
        unsafe { write_string(out, result) }
    })
}

/// Queries channels with Stream filter syntax (also `"watch": false`); with `"watch"` or
/// `"presence"` the viewer connection watches every channel returned (with presence).
///
/// `engine`, `query_json` and `out_json` are required; `query_json` is borrowed for the
/// call. On success `*out_json` is `{"channels": [{"channel", "members", "watcher_count",
/// "watchers"}, ...]}`, a new string owned by the caller (release it with
/// `presence_string_free`). Errors: NULL, UTF8, JSON, INVALID (as for users; watch or
/// presence with viewer 0), NOT_FOUND (unknown viewer), LIMIT. Any thread, including from
/// a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_query_channels(
    engine: *mut PresenceEngine,
    viewer: PresenceConnectionId,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> PresenceResult {
    call("presence_query_channels", || {
        let e = unsafe { self::engine(engine) }?;
        let query = unsafe { str_arg(query_json, "query_json") }?;
        let out = non_null(out_json, "out_json")?;
        let result = e.query_channels_json(ConnectionId(viewer), query)?;
        unsafe { write_string(out, result) }
    })
}

// ----- events -----

/// A C callback and its `user_data`, moved into the engine's listener list. The engine
/// may call it from any thread that calls into it: making `user_data` safe for that is
/// the host's part of the contract, documented on `presence_add_listener`.
#[derive(Clone, Copy)]
struct CCallback {
    function: unsafe extern "C-unwind" fn(user_data: *mut c_void, event: *const PresenceEvent),
    user_data: *mut c_void,
}

// SAFETY: the engine never dereferences `user_data`; it only hands it back to `function`,
// and the host promises (see presence_add_listener) that this is fine from any thread.
unsafe impl Send for CCallback {}
unsafe impl Sync for CCallback {}

/// The strings a `PresenceEvent` points at, owned for the duration of one callback.
struct EventStrings {
    event_type: CString,
    user_id: Option<CString>,
    cid: Option<CString>,
    json: CString,
}

impl CCallback {
    /// Builds the event strings (behind a panic boundary of its own: a failure there skips
    /// this callback rather than unwinding through the engine's dispatch loop), then calls
    /// the C function with pointers that live until it returns.
    fn invoke(
        &self,
        seq: u64,
        connection_id: PresenceConnectionId,
        online: bool,
        strings: impl FnOnce() -> EventStrings,
    ) {
        let strings = match catch_unwind(AssertUnwindSafe(strings)) {
            Ok(s) => s,
            Err(payload) => {
                eprintln!(
                    "presence: event {seq} not handed to a C callback: internal error: {}",
                    support::panic_message(payload.as_ref())
                );
                return;
            }
        };
        let opt_ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let event = PresenceEvent {
            r#type: strings.event_type.as_ptr(),
            seq,
            connection_id,
            user_id: opt_ptr(&strings.user_id),
            cid: opt_ptr(&strings.cid),
            online,
            json: strings.json.as_ptr(),
        };
        // SAFETY: the host registered `function` for exactly this call shape; `event` and
        // its strings outlive the call.
        unsafe { (self.function)(self.user_data, &event) };
    }
}

/// The strings of an event rendered as `json`.
fn event_strings(event: &Event, json: String) -> EventStrings {
    EventStrings {
        event_type: CString::new(event.type_name()).expect("event types hold no NUL"),
        user_id: CString::new(event.user_id()).ok(),
        cid: event.channel().and_then(|c| CString::new(&*c.cid).ok()),
        json: CString::new(json).expect("serde_json escapes NUL"),
    }
}

/// Registers a host listener: `cb` is called once per event matching the filters, with
/// `connection_id` 0, the own view of users (an invisible user is shown with `invisible`
/// true), and `online` telling whether the user holds live connections.
///
/// `event_type` may be NULL (every type) or a type such as "user.presence.changed";
/// `user_id` may be NULL (any user) or a user id; both are copied. `cb` is required.
/// `user_data` may be anything, NULL included: it is passed back untouched, never
/// dereferenced or freed by the engine; it must stay valid until the listener is removed
/// or the engine freed, and be safe to use from every thread that calls into the engine
/// (callbacks run on the calling or pumping thread). `out` is required and receives the
/// listener id. Errors: NULL, UTF8. Any thread, including from a callback (the new
/// listener sees events dispatched after it is added).
#[no_mangle]
pub unsafe extern "C" fn presence_add_listener(
    engine: *mut PresenceEngine,
    event_type: *const c_char,
    user_id: *const c_char,
    cb: PresenceEventCallback,
    user_data: *mut c_void,
    out: *mut PresenceListenerId,
) -> PresenceResult {
    call("presence_add_listener", || {
        let e = unsafe { self::engine(engine) }?;
        let event_type = unsafe { opt_str_arg(event_type, "event_type") }?;
        let user_id = unsafe { opt_str_arg(user_id, "user_id") }?;
        let function = cb.ok_or_else(|| null("cb"))?;
        let out = non_null(out, "out")?;
        let filter =
            ListenerFilter { event_type: event_type.map(str::to_owned), user_id: user_id.map(str::to_owned) };
        let callback = CCallback { function, user_data };
        let id = e.add_listener(filter, move |event: &Event| {
            let online = event.user().online(View::Own);
            callback.invoke(event.seq, 0, online, || event_strings(event, event.to_json(View::Own, None)));
        });
        unsafe { out.write(id.0) };
        Ok(())
    })
}

/// Registers a delivery listener: `cb` is called once per (event, recipient connection),
/// with `connection_id` the recipient, the user in the view that recipient is entitled to,
/// and `online` as that recipient sees it. Deliveries reach delivery listeners whether or
/// not the connection also has a queue.
///
/// `cb` is required; `user_data` as for `presence_add_listener`; `out` is required and
/// receives the listener id. Errors: NULL. Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_add_delivery_listener(
    engine: *mut PresenceEngine,
    cb: PresenceEventCallback,
    user_data: *mut c_void,
    out: *mut PresenceListenerId,
) -> PresenceResult {
    call("presence_add_delivery_listener", || {
        let e = unsafe { self::engine(engine) }?;
        let function = cb.ok_or_else(|| null("cb"))?;
        let out = non_null(out, "out")?;
        let callback = CCallback { function, user_data };
        let id = e.add_delivery_listener(move |d: &Delivery| {
            callback.invoke(d.event.seq, d.connection.0, d.online(), || event_strings(&d.event, d.to_json()));
        });
        unsafe { out.write(id.0) };
        Ok(())
    })
}

/// Removes a listener. Once this returns its callback is never called again, even for an
/// event being dispatched right now (if another thread is inside the callback, this waits
/// for that call to return); a callback may remove itself. The listener's `user_data` is
/// the caller's to release afterwards.
///
/// Errors: NULL (`engine`), NOT_FOUND (an unknown or already removed id, or 0). Any
/// thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_remove_listener(
    engine: *mut PresenceEngine,
    id: PresenceListenerId,
) -> PresenceResult {
    call("presence_remove_listener", || {
        let e = unsafe { self::engine(engine) }?;
        e.remove_listener(ListenerId(id))
    })
}

/// Drains up to `max` events from connection `conn`'s queue, oldest first, as a JSON
/// array of delivered events (each with `connection_id`); "[]" when there are none.
///
/// `engine` and `out_json_array` are required. On success `*out_json_array` is a new
/// string owned by the caller (release it with `presence_string_free`). Errors: NULL,
/// NOT_FOUND (unknown or closed connection; 0, the host, has no queue). Any thread,
/// including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_poll_events(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
    max: u32,
    out_json_array: *mut *mut c_char,
) -> PresenceResult {
    call("presence_poll_events", || {
        let e = unsafe { self::engine(engine) }?;
        let out = non_null(out_json_array, "out_json_array")?;
        let events = e.poll_events(ConnectionId(conn), max as usize)?;
        let array = serde_json::to_string(&events).expect("deliveries always serialize");
        unsafe { write_string(out, array) }
    })
}

/// Runs, on the calling thread, the callbacks of every event waiting for dispatch (with
/// `"dispatch": "manual"`, the game-loop model; with immediate dispatch there is normally
/// nothing waiting). Called from inside a callback it runs nothing (the outer dispatch
/// delivers).
///
/// `engine` is required; `out_delivered` may be NULL, otherwise it receives the number
/// of callbacks that ran. Errors: NULL (`engine`). Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_pump(
    engine: *mut PresenceEngine,
    out_delivered: *mut u32,
) -> PresenceResult {
    call("presence_pump", || {
        let e = unsafe { self::engine(engine) }?;
        let delivered = e.pump();
        if !out_delivered.is_null() {
            unsafe { out_delivered.write(delivered) };
        }
        Ok(())
    })
}

// ----- time and persistence -----

/// Applies everything due at the engine's current time: heartbeat timeouts, offline-grace
/// expiry and `last_active` refresh. Errors: NULL (`engine`). Any thread, including from
/// a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_tick(engine: *mut PresenceEngine) -> PresenceResult {
    call("presence_tick", || {
        let e = unsafe { self::engine(engine) }?;
        e.tick();
        Ok(())
    })
}

/// Moves a manual clock (`"clock": "manual"`) to `unix_ms`, in Unix milliseconds; apply
/// what became due with `presence_tick`. Errors: NULL (`engine`), STATE (a system clock,
/// or time moving backwards). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_set_time(engine: *mut PresenceEngine, unix_ms: i64) -> PresenceResult {
    call("presence_set_time", || {
        let e = unsafe { self::engine(engine) }?;
        e.set_time(unix_ms)
    })
}

/// Writes users and channels to the file at `path` (a UTF-8 path) atomically: a crash
/// mid-save leaves the previous file intact.
///
/// `engine` and `path` are required; `path` is borrowed for the call. Errors: NULL, UTF8,
/// IO. Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_save(engine: *mut PresenceEngine, path: *const c_char) -> PresenceResult {
    call("presence_save", || {
        let e = unsafe { self::engine(engine) }?;
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
        let e = unsafe { self::engine(engine) }?;
        let path = unsafe { str_arg(path, "path") }?;
        e.load(path)
    })
}

#[cfg(test)]
mod tests;
