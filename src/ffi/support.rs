//! The machinery behind every exported function: the panic boundary, the thread-local
//! last-error message, checked conversions of C arguments and the engine handle. Nothing
//! here is exported; cbindgen sees only the plain signatures of the area files.
use super::engine::code;
use super::{PresenceEngine, PresenceResult};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind};
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What an exported function's body answers: `Ok(())` or an error whose kind becomes the
/// `PresenceResult` and whose message (prefixed with the function name) becomes the
/// thread's last error.
pub(crate) type FfiResult = Result<(), Error>;

thread_local! {
    /// The message of the last failing call on this thread; `None` until one fails.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Stores `"{function}: {message}"` as this thread's last error, cut to
/// [`crate::error::MAX_MESSAGE_BYTES`] like every error message. Interior NULs (which a C
/// string cannot hold) are shown as `\0`. Never panics.
pub(crate) fn set_last_error(function: &str, message: &str) {
    let text = crate::error::bounded(format!("{function}: {message}")).replace('\0', "\\0");
    let text = CString::new(text).unwrap_or_default();
    // `try_with` fails only while the thread is being torn down; the message is lost then.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some(text);
        }
    });
}

/// This thread's last error, or "" when no call has failed on it. The pointer stays valid
/// until the next failing call on this thread (or the thread's exit).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow() {
            Ok(slot) => slot.as_ref().map(|s| s.as_ptr()),
            Err(_) => None,
        })
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

/// The text of a panic payload.
pub(crate) use crate::error::panic_message;

/// Runs the body of exported function `function` behind the panic boundary, turning its
/// outcome into a `PresenceResult` and recording the message of any failure.
pub(crate) fn call(function: &'static str, body: impl FnOnce() -> FfiResult) -> PresenceResult {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => PresenceResult::PRESENCE_OK,
        Ok(Err(e)) => {
            set_last_error(function, e.message());
            code(e.kind())
        }
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            // Dropping a payload can itself panic (a payload with a panicking Drop); keep that
            // from crossing the boundary too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(function, &format!("internal error (panic caught at the C boundary): {message}"));
            PresenceResult::PRESENCE_ERR_PANIC
        }
    }
}

/// The body of a `*_free` export: releases a value the library boxed for the caller,
/// behind the panic boundary of `function` (a panicking destructor is recorded, never
/// unwound into C). NULL is accepted and ignored.
///
/// # Safety
/// `p` is NULL or came from `Box::into_raw` for this `T`, and nothing uses it afterwards.
pub(crate) unsafe fn free_box<T>(function: &'static str, p: *mut T) {
    if p.is_null() {
        return;
    }
    let _ = call(function, || {
        // SAFETY: a live box by the caller's contract, not used elsewhere.
        drop(unsafe { Box::from_raw(p) });
        Ok(())
    });
}

/// `PRESENCE_ERR_NULL` naming the argument.
pub(crate) fn null(arg: &str) -> Error {
    Error::new(ErrorKind::Null, format!("{arg} is NULL"))
}

/// A required pointer argument, checked for NULL.
pub(crate) fn non_null<T>(p: *mut T, arg: &str) -> Result<*mut T, Error> {
    if p.is_null() {
        Err(null(arg))
    } else {
        Ok(p)
    }
}

/// A required C string argument, borrowed for the call: NULL and non-UTF-8 are errors.
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string that outlives the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, arg: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(arg));
    }
    if let Some(short) = unsafe { short_ascii(p) } {
        return Ok(short);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map_err(|e| {
        Error::new(
            ErrorKind::Utf8,
            format!("{arg} is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()),
        )
    })
}

/// Bytes a string argument is scanned for in one pass before the general path.
const SHORT: usize = 32;

/// The string at `p` if it is ASCII and shorter than [`SHORT`] bytes (ids and statuses
/// usually are), found in one pass instead of measuring the length and then checking
/// UTF-8. `None`: use the general path.
///
/// # Safety
/// `p` is non-NULL and points at a NUL-terminated string that outlives the call.
#[inline]
unsafe fn short_ascii<'a>(p: *const c_char) -> Option<&'a str> {
    let bytes = p.cast::<u8>();
    let mut len = 0;
    while len < SHORT {
        // SAFETY: every byte before the NUL is readable, and the scan stops at the NUL.
        let b = unsafe { *bytes.add(len) };
        if b == 0 {
            // SAFETY: `len` readable ASCII bytes, which are UTF-8.
            return Some(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(bytes, len)) });
        }
        if !b.is_ascii() {
            return None;
        }
        len += 1;
    }
    None
}

/// An optional C string argument: NULL is `None`, non-UTF-8 is an error.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, arg: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, arg) }.map(Some)
    }
}

/// A heap C string for the caller, released with `presence_string_free`.
pub(crate) fn into_c_string(s: String) -> Result<*mut c_char, Error> {
    CString::new(s).map(CString::into_raw).map_err(|e| {
        Error::new(
            ErrorKind::Panic,
            format!("internal error: a result string holds a NUL byte at offset {}", e.nul_position()),
        )
    })
}

/// The engine behind a handle, or `PRESENCE_ERR_NULL` naming the `engine` argument.
///
/// # Safety
/// `p` is NULL or a live handle from `presence_engine_new` that outlives `'a`.
pub(crate) unsafe fn engine<'a>(p: *mut PresenceEngine) -> Result<&'a Engine, crate::Error> {
    let p = non_null(p, "engine")?;
    // SAFETY: a live handle by the caller's contract; `Engine` is used through `&` only.
    Ok(unsafe { &(*p).engine })
}

/// Writes a result string into a required `char **` out-parameter already checked for NULL.
///
/// # Safety
/// `out` is a valid, writable pointer.
pub(crate) unsafe fn write_string(out: *mut *mut c_char, s: String) -> FfiResult {
    let raw = into_c_string(s)?;
    // SAFETY: checked non-NULL and writable by the caller's contract.
    unsafe { out.write(raw) };
    Ok(())
}
