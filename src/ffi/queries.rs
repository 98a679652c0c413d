//! Queries over users and channels.
use super::support::{self, call, non_null, str_arg, write_string};
use super::{PresenceConnectionId, PresenceEngine, PresenceResult};
use crate::answer::Answer;
use crate::event::ConnectionId;
use std::os::raw::c_char;

/// Queries users with Stream filter syntax (`{"filter_conditions": {...}, "sort": [...],
/// "offset": 0, "limit": 30, "presence": false}`), in `viewer`'s view (0: the host). With
/// `"presence": true` the viewer connection is subscribed to every user returned.
///
/// `engine`, `query_json` and `out_json` are required; `query_json` is borrowed for the
/// call. On success `*out_json` is `{"users": [...]}`, a new string owned by the caller
/// (release it with `presence_string_free`). Errors: NULL, UTF8, JSON, INVALID (an unknown
/// operator, a wrong type, presence with viewer 0), NOT_FOUND (unknown viewer), LIMIT
/// (limit over `query_limit_max`, a bound of `query_budget` passed before any user is
/// examined, `max_subscriptions_per_connection`). Any thread,
/// including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_query_users(
    engine: *mut PresenceEngine,
    viewer: PresenceConnectionId,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> PresenceResult {
    call("presence_query_users", || {
        let e = unsafe { support::engine(engine) }?;
        let query = unsafe { str_arg(query_json, "query_json") }?;
        let out = non_null(out_json, "out_json")?;
        let result = e.query_users(ConnectionId(viewer), query)?.to_json();
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
/// presence with viewer 0), NOT_FOUND (unknown viewer), LIMIT (as for users). Any thread, including from
/// a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_query_channels(
    engine: *mut PresenceEngine,
    viewer: PresenceConnectionId,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> PresenceResult {
    call("presence_query_channels", || {
        let e = unsafe { support::engine(engine) }?;
        let query = unsafe { str_arg(query_json, "query_json") }?;
        let out = non_null(out_json, "out_json")?;
        let result = e.query_channels(ConnectionId(viewer), query)?.to_json();
        unsafe { write_string(out, result) }
    })
}
