//! The engine's shared strings: user ids, statuses and cids, kept with a NUL after their
//! bytes so that the C interface lends them to hosts as they are, without a copy per event.
use serde::{Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::os::raw::c_char;
use std::sync::Arc;

/// An immutable string shared by reference count, like `Arc<str>`: cloning it is one
/// reference-count increment. It derefs to its `str` and compares, orders and hashes as
/// that `str` (so a `HashSet<SharedStr>` is searched with a `&str`).
///
/// Its allocation also holds a NUL after the bytes, which the C interface relies on to
/// hand out the engine's own copy of an id or a status as a C string.
#[derive(Clone)]
pub struct SharedStr(
    /// The string followed by one NUL byte.
    Arc<str>,
);

impl SharedStr {
    /// A shared copy of `s`. Cost: one allocation of `s.len() + 1` bytes (plus the
    /// reference counts); a second, temporary one for strings of 256 bytes or more.
    pub fn new(s: &str) -> SharedStr {
        // Ids, cids and most statuses are short: joined to their NUL on the stack, then
        // copied into the shared allocation. (Writing into a fresh `Arc` instead takes an
        // atomic compare-and-swap to prove it unshared, on every status change.)
        const STACK: usize = 256;
        if s.len() < STACK {
            let mut joined = [std::mem::MaybeUninit::<u8>::uninit(); STACK];
            // SAFETY: the first `s.len() + 1` bytes are written (`s` is shorter than the
            // array) before they are read, and `s` followed by a NUL is valid UTF-8.
            unsafe {
                let at = joined.as_mut_ptr().cast::<u8>();
                std::ptr::copy_nonoverlapping(s.as_ptr(), at, s.len());
                at.add(s.len()).write(0);
                let bytes = std::slice::from_raw_parts(at, s.len() + 1);
                SharedStr(Arc::from(std::str::from_utf8_unchecked(bytes)))
            }
        } else {
            let mut joined = String::with_capacity(s.len() + 1);
            joined.push_str(s);
            joined.push('\0');
            SharedStr(Arc::from(joined))
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: the last byte is the NUL, so the rest ends on a character boundary (a
        // checked slice would read that byte, often a cache line the caller never needs).
        unsafe { self.0.get_unchecked(..self.0.len() - 1) }
    }

    /// The bytes followed by a NUL, valid as long as this string or a clone of it lives.
    /// A NUL inside the string (statuses may hold one) ends the C string early; the
    /// length is `len()`.
    pub(crate) fn as_c_ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> SharedStr {
        SharedStr::new(s)
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> SharedStr {
        SharedStr::new(&s)
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> SharedStr {
        SharedStr::new(s)
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &SharedStr) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &SharedStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &SharedStr) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SharedStr;
    use std::collections::HashSet;
    use std::ffi::CStr;

    #[test]
    fn reads_as_its_str_and_lends_a_c_string() {
        for s in ["", "u1", "ünïcödé", &"x".repeat(255), &"x".repeat(256), &"x".repeat(300), "a\0b"] {
            let shared = SharedStr::new(s);
            assert_eq!(&*shared, s);
            assert_eq!(shared.len(), s.len());
            assert_eq!(format!("{shared}|{shared:?}"), format!("{s}|{s:?}"));
            // SAFETY: the pointer is to the string's bytes and a NUL, alive with `shared`.
            let c = unsafe { CStr::from_ptr(shared.as_c_ptr()) };
            // A NUL inside (a status may hold one) ends the C string there.
            assert_eq!(c.to_bytes(), s.as_bytes().split(|&b| b == 0).next().unwrap());
        }
    }

    #[test]
    fn compares_and_hashes_as_its_str() {
        let set: HashSet<SharedStr> = ["a", "b"].into_iter().map(SharedStr::from).collect();
        assert!(set.contains("a") && !set.contains("c"));
        let (a, b) = (SharedStr::new("a"), SharedStr::new("a"));
        assert!(a == b && a == a.clone() && a == "a" && a != SharedStr::new("b"));
        assert!(SharedStr::new("a") < SharedStr::new("b"));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"a\"");
    }
}
