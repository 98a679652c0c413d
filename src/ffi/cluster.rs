//! Cluster mode: the state of the link to the shared store.
use super::support::{self, call, non_null, write_string};
use super::{PresenceEngine, PresenceResult};
use std::os::raw::c_char;

/// Writes the engine's cluster state as JSON to `*out_json`:
/// `{"mode":"cluster"|"single","node_id":..,"link":"up"|"down"|"fenced","nodes_alive":n,
/// "pending_writes":n,"last_error":..}`; an engine without a `cluster` config answers
/// `{"mode":"single"}`. `link` is `down` until the first contact with the store.
///
/// `engine` and `out_json` are required; the string belongs to the caller (release it
/// with `presence_string_free`). Errors: NULL. Any thread, also from callbacks.
#[no_mangle]
pub unsafe extern "C" fn presence_cluster_status(
    engine: *mut PresenceEngine,
    out_json: *mut *mut c_char,
) -> PresenceResult {
    call("presence_cluster_status", || {
        let e = unsafe { support::engine(engine) }?;
        let out = non_null(out_json, "out_json")?;
        unsafe { write_string(out, e.cluster_status().to_string()) }
    })
}
