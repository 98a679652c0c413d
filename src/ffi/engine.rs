//! Versions, result codes, the last error, strings, and the engine's lifetime.
use super::support::{self, call, non_null, opt_str_arg};
use crate::engine::Engine;
use crate::error::{with_error_kinds, ErrorKind};
use std::ffi::CString;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The version of this C ABI. Version 1 is the JSON event path; version 2 adds the typed
/// event path (`PresenceEventInfo` with `user_key`, batches, host queues, typed listeners
/// with `user_data` finalizers, `presence_connect_user`, `presence_get_user_presence`),
/// `presence_remove_listener_nowait` and `presence_cluster_status`.
/// Each version only adds to the one before, so a library answering 2 serves every
/// version-1 function unchanged. A host built against this header checks at startup that
/// `presence_abi_version() >= PRESENCE_ABI_VERSION` (an older library lacks functions).
pub const PRESENCE_ABI_VERSION: u32 = 2;

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

/// The result codes as the error list in `crate::error` defines them: the code of each
/// error kind and each code's name. The compiler checks `PresenceResult` against that
/// list both ways (a variant missing, extra or numbered differently does not build).
macro_rules! result_codes {
    ($($kind:ident = $code:literal, $name:ident, $description:literal;)*) => {
        /// The result code of an error kind.
        pub(crate) const fn code(kind: ErrorKind) -> PresenceResult {
            match kind {
                $(ErrorKind::$kind => PresenceResult::$name,)*
            }
        }

        /// The NUL-terminated name of result code number `n`; "PRESENCE_UNKNOWN" for a
        /// number outside the enumeration.
        fn result_name(n: u32) -> &'static str {
            match n {
                0 => "PRESENCE_OK\0",
                $($code => concat!(stringify!($name), "\0"),)*
                _ => "PRESENCE_UNKNOWN\0",
            }
        }

        const _: () = match PresenceResult::PRESENCE_OK {
            PresenceResult::PRESENCE_OK $(| PresenceResult::$name)* => (),
        };
        const _: () = {
            assert!(PresenceResult::PRESENCE_OK as u32 == 0);
            $(assert!(PresenceResult::$name as u32 == $code);)*
        };
    };
}
with_error_kinds!(result_codes);

/// An engine. Opaque: created by `presence_engine_new`, owned by the caller until it
/// passes it to `presence_engine_free`. Thread-safe: any number of threads may call any
/// function on one engine at the same time.
pub struct PresenceEngine {
    pub(super) engine: Engine,
}

/// A connection id: engine-assigned, never 0, never reused within an engine's life. As a
/// viewer, 0 means the host itself (own view of every user).
pub type PresenceConnectionId = u64;

/// A listener id for `presence_remove_listener`; never 0 (0 is never a valid id).
pub type PresenceListenerId = u64;

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
    result_name(result.0).as_ptr().cast()
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

/// Creates an engine from config JSON (NULL: every default). Unknown keys are rejected.
///
/// `config_json` may be NULL; it is borrowed for the call only. `out` is required and
/// receives the new engine on success; the caller owns it and releases it with
/// `presence_engine_free`. Errors: NULL (`out`), UTF8, JSON (a typo in a key, a wrong
/// type), INVALID (a zero limit, a `start_time_ms` outside 0 to 253402300799999, that is
/// 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z, the range of every time the
/// engine holds). `max_snapshot_bytes` (default 1073741824) bounds the file
/// `presence_load` reads. Any thread.
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
/// thread may be using the engine. Called from one of the engine's own callbacks it
/// refuses: the engine stays alive and usable, and `presence_last_error` on the calling
/// thread says why (free it after the callback returns). In cluster mode it stops the
/// cluster link thread, waiting for a callback running there to return. The handle is
/// invalid afterwards otherwise.
#[no_mangle]
pub unsafe extern "C" fn presence_engine_free(engine: *mut PresenceEngine) {
    if engine.is_null() {
        return;
    }
    let _ = call("presence_engine_free", || {
        // SAFETY: a live handle from `presence_engine_new`, by contract not used elsewhere.
        if unsafe { &*engine }.engine.dispatching_here() {
            return Err(crate::Error::state(
                "called from inside one of the engine's own callbacks; the engine stays alive",
            ));
        }
        // Typed listeners' finalizers may call into the engine: they run while it is whole.
        unsafe { &*engine }.engine.drop_listeners();
        drop(unsafe { Box::from_raw(engine) });
        Ok(())
    });
}
