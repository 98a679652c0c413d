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
/// what became due with `presence_tick`. Errors: NULL (`engine`), STATE (a system clock,
/// or time moving backwards). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_set_time(engine: *mut PresenceEngine, unix_ms: i64) -> PresenceResult {
    call("presence_set_time", || {
        let e = unsafe { support::engine(engine) }?;
        e.set_time(unix_ms)
    })
}
