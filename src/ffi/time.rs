//! The engine's clock: applying what is due, moving a manual clock.
use super::support::{self, call};
use super::{PresenceEngine, PresenceResult};

/// Applies everything due at the engine's current time: heartbeat timeouts, offline-grace
/// expiry and `last_active` refresh. Errors: NULL (`engine`), STATE (a poisoned engine).
/// Any thread, including from
/// a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_tick(engine: *mut PresenceEngine) -> PresenceResult {
    call("presence_tick", || {
        let e = unsafe { support::engine(engine) }?;
        e.tick()
    })
}

/// Moves a manual clock (`"clock": "manual"`) to `unix_ms`, in Unix milliseconds; apply
/// what became due with `presence_tick`. Errors: NULL (`engine`), INVALID (`unix_ms`
/// outside 0 to 253402300799999, that is 1970-01-01T00:00:00.000Z to
/// 9999-12-31T23:59:59.999Z, the range of every time the engine holds), STATE (a system
/// clock, or time moving backwards). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_set_time(engine: *mut PresenceEngine, unix_ms: i64) -> PresenceResult {
    call("presence_set_time", || {
        let e = unsafe { support::engine(engine) }?;
        e.set_time(unix_ms)
    })
}
