//! A counting global allocator: live heap bytes and live allocations, counted only while
//! a measurement window is open (outside one it costs a relaxed load and a branch).
//!
//! The counts are of bytes *requested* (`Layout::size`); the system allocator's own
//! per-block overhead (8–16 bytes on glibc) comes on top and is reported separately as
//! an allocation count.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && ON.load(Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as i64, Relaxed);
            LIVE_BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && ON.load(Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as i64, Relaxed);
            LIVE_BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if ON.load(Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as i64, Relaxed);
            LIVE_BLOCKS.fetch_sub(1, Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && ON.load(Relaxed) {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        }
        p
    }
}

/// The change in live heap between `start` and `stop`: everything allocated minus
/// everything freed in between (whenever the freed blocks were allocated), which is
/// exactly the growth of the live heap. One window at a time; single-threaded use.
pub struct Window {
    bytes: i64,
    blocks: i64,
}

impl Window {
    pub fn start() -> Window {
        let w = Window { bytes: LIVE_BYTES.load(Relaxed), blocks: LIVE_BLOCKS.load(Relaxed) };
        ON.store(true, Relaxed);
        w
    }

    /// Closes the window, answering (bytes, blocks) of live-heap growth.
    pub fn stop(self) -> (i64, i64) {
        ON.store(false, Relaxed);
        (LIVE_BYTES.load(Relaxed) - self.bytes, LIVE_BLOCKS.load(Relaxed) - self.blocks)
    }
}
