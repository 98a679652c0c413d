//! ABI version 2, the typed event path: events as `PresenceEventInfo` structs with
//! borrowed strings, drained into a reusable batch or handed to typed listeners, with JSON
//! rendered only when asked (once per event and view, shared by every recipient). The
//! other typed entry points (connect by id, read a user's presence) are in `typed_reads`.
use super::support::{self, call, non_null, null, opt_str_arg};
use super::{PresenceConnectionId, PresenceEngine, PresenceListenerId, PresenceResult};
use crate::engine::ListenerFilter;
use crate::error::{Error, ErrorKind};
use crate::event::{CloseReason, ConnectionId, Delivery, Event, EventKind};
use crate::user::View;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `PresenceEventInfo.kind` of a "user.presence.changed" event.
pub const PRESENCE_EVENT_USER_PRESENCE_CHANGED: u32 = 1;
/// `PresenceEventInfo.kind` of a "user.updated" event.
pub const PRESENCE_EVENT_USER_UPDATED: u32 = 2;
/// `PresenceEventInfo.kind` of a "user.watching.start" event.
pub const PRESENCE_EVENT_USER_WATCHING_START: u32 = 3;
/// `PresenceEventInfo.kind` of a "user.watching.stop" event.
pub const PRESENCE_EVENT_USER_WATCHING_STOP: u32 = 4;
/// `PresenceEventInfo.kind` of a "member.added" event.
pub const PRESENCE_EVENT_MEMBER_ADDED: u32 = 5;
/// `PresenceEventInfo.kind` of a "member.removed" event.
pub const PRESENCE_EVENT_MEMBER_REMOVED: u32 = 6;
/// `PresenceEventInfo.kind` of a "connection.closed" event.
pub const PRESENCE_EVENT_CONNECTION_CLOSED: u32 = 7;
/// `PresenceEventInfo.kind` of an "engine.overflow" event (host listeners only).
pub const PRESENCE_EVENT_ENGINE_OVERFLOW: u32 = 8;
/// `PresenceEventInfo.kind` of a "cluster.status" event (host listeners only).
pub const PRESENCE_EVENT_CLUSTER_STATUS: u32 = 9;

/// `PresenceEventInfo.close_reason`: the host called `presence_disconnect`.
pub const PRESENCE_CLOSE_DISCONNECT: u32 = 1;
/// `PresenceEventInfo.close_reason`: no heartbeat within `connection_timeout_ms`.
pub const PRESENCE_CLOSE_TIMEOUT: u32 = 2;
/// `PresenceEventInfo.close_reason`: the connection's event queue overflowed.
pub const PRESENCE_CLOSE_SLOW_CONSUMER: u32 = 3;
/// `PresenceEventInfo.close_reason`: cluster mode, the node holding it was lost.
pub const PRESENCE_CLOSE_NODE_LOST: u32 = 4;

/// One event as one recipient sees it, without JSON. Filled by the engine; read-only for
/// the host.
///
/// Lifetime: in a batch, the struct and its strings stay valid until the batch is refilled
/// (`presence_poll_batch`) or freed; in a typed callback, during the callback only. Copy
/// what you need to keep. Strings are NUL-terminated UTF-8 owned by the engine (never free
/// them). Fields that do not apply to the event are NULL, -1, 0 or INT64_MIN as each says.
/// Fields may be added at the end in later versions; these keep their order.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PresenceEventInfo {
    /// The event type, a `PRESENCE_EVENT_*` constant.
    pub kind: u32,
    /// The engine-wide sequence number, strictly increasing in the order of the changes.
    pub seq: u64,
    /// The recipient connection (batches and typed delivery listeners); 0 for host listeners.
    pub connection_id: PresenceConnectionId,
    /// The id of the user the event is about (the member for member events, the owner of
    /// the closed connection for "connection.closed").
    pub user_id: *const c_char,
    /// The channel (`type:id`) for watching and member events; NULL otherwise.
    pub cid: *const c_char,
    /// That user's `online` flag as the recipient sees it (the own view for host listeners
    /// and the user's own connections: online while connected, even when invisible).
    pub online: bool,
    /// Whether that user is invisible, in own views only; always false in public views.
    pub invisible: bool,
    /// That user's status text, or NULL when none is set.
    pub status: *const c_char,
    /// That user's last activity in Unix milliseconds; INT64_MIN when never active.
    pub last_active_ms: i64,
    /// The channel's number of distinct visible watchers after the change, for
    /// "user.watching.start" and "user.watching.stop"; -1 for other events.
    pub watcher_count: i64,
    /// A `PRESENCE_CLOSE_*` constant for "connection.closed"; 0 for other events.
    pub close_reason: u32,
    /// When the event happened, in Unix milliseconds.
    pub created_at_ms: i64,
    /// The connection that ended, for "connection.closed"; 0 for other events.
    pub closed_connection_id: PresenceConnectionId,
    /// The event type's name ("user.presence.changed", ...), a static string.
    pub type_name: *const c_char,
    /// For "engine.overflow": how many host deliveries were discarded; 0 for other events.
    pub dropped: u64,
    /// The length of `user_id` in bytes, without the NUL; 0 when it is NULL. (The lengths
    /// spare hosts a scan of each string: views, hashing, comparing.)
    pub user_id_len: u32,
    /// The length of `cid` in bytes, without the NUL; 0 when it is NULL.
    pub cid_len: u32,
    /// The length of `status` in bytes, without the NUL; 0 when it is NULL.
    pub status_len: u32,
}

/// Bytes of NUL-terminated copies of the strings an info points at: the user id, the
/// channel and the status.
pub(super) fn strings_len(event: &Event) -> usize {
    event.user().map_or(0, |u| u.id.len() + 1 + u.status.as_ref().map_or(0, |s| s.len() + 1))
        + event.channel().map_or(0, |c| c.cid.len() + 1)
}

/// Room for NUL-terminated copies of strings, handing out pointers that stay valid as
/// long as the room does (it never moves or grows). Pushing past its end panics: callers
/// size it with `strings_len`.
pub(super) struct Strings<'a> {
    room: &'a mut [MaybeUninit<u8>],
    used: usize,
}

impl<'a> Strings<'a> {
    pub(super) fn new(room: &'a mut [MaybeUninit<u8>]) -> Self {
        Strings { room, used: 0 }
    }

    pub(super) fn push(&mut self, s: &str) -> *const c_char {
        let end = self.used + s.len();
        assert!(end < self.room.len(), "string room was sized for every string");
        let at = self.room[self.used..=end].as_mut_ptr().cast::<u8>();
        // SAFETY: `at` has room for the bytes and the NUL (checked above); the source is
        // another allocation.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), at, s.len());
            at.add(s.len()).write(0);
        }
        self.used = end + 1;
        at.cast()
    }
}

/// Stack room for the strings of one event: user ids are at most 255 bytes, cids 129 and
/// statuses 1024, so every validated event fits.
const STACK_ROOM: usize = 1536;

/// Runs `f` with room for `len` bytes of strings: on the stack when they fit (always, for
/// validated input), so describing an event for a callback allocates nothing.
pub(super) fn with_room<R>(len: usize, f: impl FnOnce(Strings) -> R) -> R {
    if len <= STACK_ROOM {
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK_ROOM];
        f(Strings::new(&mut stack))
    } else {
        let mut heap = Vec::<u8>::with_capacity(len);
        f(Strings::new(&mut heap.spare_capacity_mut()[..len]))
    }
}

/// The info of `event` for `recipient` (0: the host) in `view`, its strings copied into
/// `strings` (which must have room for `strings_len(event)` more bytes).
fn describe(
    event: &Event,
    recipient: PresenceConnectionId,
    view: View,
    strings: &mut Strings,
) -> PresenceEventInfo {
    let user = event.user();
    let (watcher_count, close_reason, closed_connection_id, dropped) = match &event.kind {
        EventKind::WatchingStart { watcher_count, .. } | EventKind::WatchingStop { watcher_count, .. } => {
            (i64::from(*watcher_count), 0, 0, 0)
        }
        EventKind::ConnectionClosed { connection, reason, .. } => (-1, *reason as u32, connection.0, 0),
        EventKind::EngineOverflow { dropped } => (-1, 0, 0, *dropped),
        EventKind::PresenceChanged { .. }
        | EventKind::UserUpdated { .. }
        | EventKind::MemberAdded { .. }
        | EventKind::MemberRemoved { .. }
        | EventKind::ClusterStatus { .. } => (-1, 0, 0, 0),
    };
    PresenceEventInfo {
        kind: event.kind.type_number(),
        seq: event.seq,
        connection_id: recipient,
        // Events about no user (engine.overflow, cluster.status): NULL in C.
        user_id: user.map_or(ptr::null(), |u| strings.push(&u.id)),
        cid: event.channel().map_or(ptr::null(), |c| strings.push(&c.cid)),
        online: user.is_some_and(|u| u.online(view)),
        invisible: view == View::Own && user.is_some_and(|u| u.invisible),
        status: user.and_then(|u| u.status.as_deref()).map_or(ptr::null(), |s| strings.push(s)),
        last_active_ms: user.and_then(|u| u.last_active).unwrap_or(i64::MIN),
        watcher_count,
        close_reason,
        created_at_ms: event.created_at,
        closed_connection_id,
        type_name: event.kind.type_name_nul().as_ptr().cast(),
        dropped,
        user_id_len: user.map_or(0, |u| u.id.len() as u32),
        cid_len: event.channel().map_or(0, |c| c.cid.len() as u32),
        status_len: user.and_then(|u| u.status.as_deref()).map_or(0, |s| s.len() as u32),
    }
}

// ----- batches -----

/// A reusable batch of drained events. Opaque: created by `presence_batch_new`, owned by
/// the caller until `presence_batch_free`. Not tied to an engine (one batch may drain
/// several engines' connections, and may outlive them). One thread at a time: a batch
/// must not be used by two threads concurrently.
pub struct PresenceEventBatch {
    deliveries: Vec<Delivery>,
    infos: Vec<PresenceEventInfo>,
    /// Room for the infos' strings: its spare capacity (the length stays 0).
    strings: Vec<u8>,
    /// Per position: that event's JSON with a NUL once asked for, empty before. Kept
    /// across refills so their room is reused.
    json: Vec<Vec<u8>>,
    /// Filled from a host queue: the events are host views, rendered without
    /// `connection_id` (their `connection` is 0).
    host: bool,
}

/// A batch handle checked for NULL.
fn batch<'a>(b: *mut PresenceEventBatch) -> Result<&'a mut PresenceEventBatch, Error> {
    // SAFETY: a live batch by the caller's contract, used by one thread at a time.
    non_null(b, "batch").map(|b| unsafe { &mut *b })
}

impl PresenceEventBatch {
    fn clear(&mut self) {
        self.host = false;
        self.deliveries.clear();
        self.infos.clear();
        for text in &mut self.json {
            text.clear();
        }
    }

    /// Describes every delivery it holds. Allocates only when it holds more, or longer
    /// strings, than ever before.
    fn describe_all(&mut self) {
        let room = self.deliveries.iter().map(|d| strings_len(&d.event)).sum();
        // The strings live in the vector's spare capacity (its length stays 0).
        self.strings.reserve(room);
        self.infos.reserve(self.deliveries.len());
        let mut strings = Strings::new(self.strings.spare_capacity_mut());
        for d in &self.deliveries {
            self.infos.push(describe(&d.event, d.connection.0, d.view, &mut strings));
        }
        if self.json.len() < self.deliveries.len() {
            self.json.resize_with(self.deliveries.len(), Vec::new);
        }
    }
}

/// Creates an empty batch (it allocates as it first fills). `out` is required and
/// receives the batch; the caller owns it and releases it with `presence_batch_free`.
/// Errors: NULL. Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_batch_new(out: *mut *mut PresenceEventBatch) -> PresenceResult {
    call("presence_batch_new", || {
        let out = non_null(out, "out")?;
        let b = PresenceEventBatch {
            deliveries: Vec::new(),
            infos: Vec::new(),
            strings: Vec::new(),
            json: Vec::new(),
            host: false,
        };
        unsafe { out.write(Box::into_raw(Box::new(b))) };
        Ok(())
    })
}

/// Releases a batch and everything it holds; every pointer it handed out becomes invalid.
/// NULL is accepted and ignored. Any thread, but not while another uses the batch.
#[no_mangle]
pub unsafe extern "C" fn presence_batch_free(batch: *mut PresenceEventBatch) {
    if batch.is_null() {
        return;
    }
    let _ = call("presence_batch_free", || {
        // SAFETY: a live batch from `presence_batch_new`, by contract not used elsewhere.
        drop(unsafe { Box::from_raw(batch) });
        Ok(())
    });
}

/// Clears `batch` (invalidating every pointer it handed out), then moves up to `max`
/// queued events of connection `conn` into it, oldest first, in `seq` order. Reusing one
/// batch allocates nothing once it has held as many events (with strings as long) as the
/// new ones; no JSON is rendered. Cost: O(events moved), one short hold of the engine's lock.
///
/// `engine` and `batch` are required. Errors: NULL, NOT_FOUND (unknown or closed
/// connection; 0, the host, has no queue); on error the batch is left empty. Any thread,
/// including from a callback; the batch by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn presence_poll_batch(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
    max: u32,
    batch: *mut PresenceEventBatch,
) -> PresenceResult {
    call("presence_poll_batch", || {
        let e = unsafe { support::engine(engine) }?;
        let b = self::batch(batch)?;
        b.clear();
        e.poll_events_into(ConnectionId(conn), max as usize, &mut b.deliveries)?;
        b.describe_all();
        Ok(())
    })
}

/// The number of events in `batch` (0 for NULL). Any thread using the batch; never fails.
#[no_mangle]
pub unsafe extern "C" fn presence_batch_len(batch: *const PresenceEventBatch) -> u32 {
    // SAFETY: NULL or a live batch by the caller's contract.
    unsafe { batch.as_ref() }.map_or(0, |b| b.infos.len() as u32)
}

/// Event `index` of `batch` (0 is the oldest), or NULL past the end or for a NULL batch.
/// The struct and its strings are owned by the batch and stay valid until it is refilled
/// or freed. Any thread using the batch; never fails.
#[no_mangle]
pub unsafe extern "C" fn presence_batch_event(
    batch: *const PresenceEventBatch,
    index: u32,
) -> *const PresenceEventInfo {
    // SAFETY: NULL or a live batch by the caller's contract.
    unsafe { batch.as_ref() }.and_then(|b| b.infos.get(index as usize)).map_or(ptr::null(), |i| i as *const _)
}

/// The events of `batch` as one array of `presence_batch_len` structs (index 0 is the
/// oldest), or NULL when the batch is empty or NULL: the same structs
/// `presence_batch_event` answers one at a time, for hosts that walk the batch without a
/// call per event. Valid until the batch is refilled or freed. Any thread using the
/// batch; never fails.
#[no_mangle]
pub unsafe extern "C" fn presence_batch_events(batch: *const PresenceEventBatch) -> *const PresenceEventInfo {
    // SAFETY: NULL or a live batch by the caller's contract.
    match unsafe { batch.as_ref() } {
        Some(b) if !b.infos.is_empty() => b.infos.as_ptr(),
        _ => ptr::null(),
    }
}

/// Event `index` of `batch` as JSON, exactly as `presence_poll_events` renders a queued
/// event (with `connection_id`), or for a batch filled by `presence_host_queue_poll` as a
/// host listener receives it (without). Rendered on the first request and kept: the string is
/// owned by the batch (never free it) and stays valid until the batch is refilled or
/// freed. Each event's JSON in each view is rendered once and shared by every recipient.
/// Cost: O(size of the event) on the first request for an index, O(1) after.
///
/// `batch` and `out_json` are required. Errors: NULL, INVALID (`index` past the end).
/// Any thread using the batch.
#[no_mangle]
pub unsafe extern "C" fn presence_batch_event_json(
    batch: *mut PresenceEventBatch,
    index: u32,
    out_json: *mut *const c_char,
) -> PresenceResult {
    call("presence_batch_event_json", || {
        let b = self::batch(batch)?;
        let out = non_null(out_json, "out_json")?;
        let Some(d) = b.deliveries.get(index as usize) else {
            return Err(Error::invalid(format!(
                "index {index} is past the end (the batch holds {})",
                b.deliveries.len()
            )));
        };
        let text = &mut b.json[index as usize];
        if text.is_empty() {
            if b.host {
                d.event.rendered(d.view).write(None, text);
            } else {
                d.write_json(text);
            }
            text.push(0);
        }
        unsafe { out.write(text.as_ptr().cast()) };
        Ok(())
    })
}

// ----- host queues -----

/// A host queue: the events a host listener with the same filters would receive, kept in
/// order until the host drains them into a batch, so a host that handles many events per
/// frame crosses into its own code once per batch instead of once per event. Opaque:
/// created by `presence_host_queue_new`, owned by the caller until
/// `presence_host_queue_free`; it does not keep the engine alive.
pub struct PresenceHostQueue {
    events: crossbeam_channel::Receiver<Arc<Event>>,
}

/// Creates a host queue: from now on every event matching the filters (as for
/// `presence_add_typed_listener`: own views, `connection_id` 0) is queued for it as
/// dispatch reaches it (with `"dispatch":"manual"`, inside `presence_pump`), in `seq`
/// order, until `presence_host_queue_poll` moves them into a batch. Nothing is rendered.
/// The queue holds at most `pending_dispatch_capacity` undrained events: one more cuts it
/// off (see `presence_host_queue_poll`), so nothing is dropped silently.
///
/// `event_type` and `user_id` may be NULL (no filter) and are copied; `engine` and `out`
/// are required; `*out` is owned by the caller (`presence_host_queue_free`). Cost:
/// O(log listeners); then one queue push per matching event. Errors: NULL, UTF8, INVALID
/// (a filter that could never match). Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_host_queue_new(
    engine: *mut PresenceEngine,
    event_type: *const c_char,
    user_id: *const c_char,
    out: *mut *mut PresenceHostQueue,
) -> PresenceResult {
    call("presence_host_queue_new", || {
        let e = unsafe { support::engine(engine) }?;
        let filter = unsafe { filter_arg(event_type, user_id) }?;
        let out = non_null(out, "out")?;
        let events = e.events(filter)?;
        unsafe { out.write(Box::into_raw(Box::new(PresenceHostQueue { events }))) };
        Ok(())
    })
}

/// Clears `batch` (invalidating every pointer it handed out), then moves up to `max` of
/// the queue's events into it, oldest first, in `seq` order, as host views
/// (`connection_id` 0; `presence_batch_event_json` renders them as host listeners receive
/// them). Reusing one batch allocates nothing in steady state, as with
/// `presence_poll_batch`. Cost: O(events moved); it never takes the engine's lock.
///
/// `queue` and `batch` are required. Errors: NULL; STATE once the queue is empty and was
/// cut off, because it held `pending_dispatch_capacity` undrained events when another
/// arrived or because its engine was freed (every event it got before was handed out
/// first; free it and create another). On error the batch is left empty. One thread at a
/// time per queue and per batch, any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_host_queue_poll(
    queue: *mut PresenceHostQueue,
    max: u32,
    batch: *mut PresenceEventBatch,
) -> PresenceResult {
    call("presence_host_queue_poll", || {
        // SAFETY: a live queue by the caller's contract.
        let q = non_null(queue, "queue").map(|q| unsafe { &*q })?;
        let b = self::batch(batch)?;
        b.clear();
        b.host = true;
        while b.deliveries.len() < max as usize {
            match q.events.try_recv() {
                Ok(event) => {
                    b.deliveries.push(Delivery { event, connection: ConnectionId(0), view: View::Own })
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) if b.deliveries.is_empty() => {
                    return Err(Error::state(
                        "the host queue was cut off (it fell pending_dispatch_capacity events behind, or its engine was freed): free it and create another",
                    ));
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            }
        }
        b.describe_all();
        Ok(())
    })
}

/// Releases a host queue and the events still in it; the engine stops queueing for it
/// at its next event. NULL is accepted and ignored. Any thread, before or after the
/// engine is freed, but not while another thread uses the queue.
#[no_mangle]
pub unsafe extern "C" fn presence_host_queue_free(queue: *mut PresenceHostQueue) {
    if queue.is_null() {
        return;
    }
    let _ = call("presence_host_queue_free", || {
        // SAFETY: a live queue from `presence_host_queue_new`, by contract not used elsewhere.
        drop(unsafe { Box::from_raw(queue) });
        Ok(())
    });
}

/// The filters of a host listener or queue; NULL means no filter.
unsafe fn filter_arg(event_type: *const c_char, user_id: *const c_char) -> Result<ListenerFilter, Error> {
    Ok(ListenerFilter {
        event_type: unsafe { opt_str_arg(event_type, "event_type") }?.map(str::to_owned),
        user_id: unsafe { opt_str_arg(user_id, "user_id") }?.map(str::to_owned),
    })
}

// ----- typed listeners -----

/// A typed callback. `user_data` is the pointer given at registration, passed back
/// untouched; `event` and its strings are valid only during the call. Callbacks run as
/// those of `presence_add_listener` do (same threads, order, re-entrancy and rules: no
/// longjmp, no C++ exception may escape). No JSON is rendered unless the callback asks
/// for it with `presence_event_info_json`.
pub type PresenceEventInfoCallback =
    Option<unsafe extern "C-unwind" fn(user_data: *mut c_void, event: *const PresenceEventInfo)>;

/// A finalizer for a listener's `user_data`.
pub type PresenceUserDataFree = Option<unsafe extern "C-unwind" fn(user_data: *mut c_void)>;

/// A listener's `user_data` with its finalizer, called when the listener is dropped (after
/// removal, once no dispatch still holds it, or when the engine is freed) if the listener
/// was registered. The engine never dereferences `user_data`; the host promises it is
/// safe to use from every thread that calls into the engine.
struct UserData {
    pointer: *mut c_void,
    free: PresenceUserDataFree,
    /// Set once the listener is registered: a failed registration leaves `user_data` to
    /// the caller.
    registered: AtomicBool,
}

// SAFETY: see the type's documentation: the host's part of the contract.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

impl Drop for UserData {
    fn drop(&mut self) {
        if let (true, Some(free)) = (self.registered.load(Ordering::Acquire), self.free) {
            // SAFETY: the host registered `free` for exactly this pointer; called once.
            unsafe { free(self.pointer) };
        }
    }
}

/// A typed C callback with its user data, moved into the engine's listener list.
struct TypedCallback {
    function: unsafe extern "C-unwind" fn(user_data: *mut c_void, event: *const PresenceEventInfo),
    user_data: Arc<UserData>,
}

/// What a typed callback receives, with what `presence_event_info_json` needs to find the
/// event behind the `info` pointer. `info` comes first so the two share an address.
#[repr(C)]
struct CallbackEvent<'a> {
    info: PresenceEventInfo,
    event: &'a Event,
    view: View,
    recipient: Option<ConnectionId>,
    /// A delivery's JSON, spliced on request (a host listener's is the event's own).
    json: RefCell<Option<Vec<u8>>>,
    /// The callback running further up this thread's stack, if any.
    outer: *const CallbackEvent<'a>,
}

thread_local! {
    /// The innermost typed callback running on this thread.
    static CURRENT: Cell<*const ()> = const { Cell::new(ptr::null()) };
    /// Byte buffers for strings and JSON, reused so a callback allocates nothing in steady
    /// state (a stack of them: callbacks may nest).
    static BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread; more are dropped after use.
const KEPT_BUFFERS: usize = 8;

pub(super) fn take_buffer() -> Vec<u8> {
    BUFFERS.try_with(|b| b.borrow_mut().pop()).ok().flatten().unwrap_or_default()
}

pub(super) fn give_back(mut buffer: Vec<u8>) {
    buffer.clear();
    let _ = BUFFERS.try_with(|b| {
        let mut kept = b.borrow_mut();
        if kept.len() < KEPT_BUFFERS {
            kept.push(buffer);
        }
    });
}

/// Restores the outer callback as the current one, even when the callback unwinds.
struct Restore(*const ());

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl TypedCallback {
    /// Describes the event (strings in a reused buffer) and calls the C function with it.
    fn invoke(&self, event: &Event, view: View, recipient: Option<ConnectionId>) {
        with_room(strings_len(event), |mut strings| {
            let info = describe(event, recipient.map_or(0, |c| c.0), view, &mut strings);
            self.call(info, event, view, recipient);
        });
    }

    /// Calls the C function with `info`, findable by `presence_event_info_json` meanwhile.
    fn call(&self, info: PresenceEventInfo, event: &Event, view: View, recipient: Option<ConnectionId>) {
        let outer = CURRENT.with(Cell::get);
        let call =
            CallbackEvent { info, event, view, recipient, json: RefCell::new(None), outer: outer.cast() };
        let this: *const CallbackEvent = &call;
        CURRENT.with(|c| c.set(this.cast()));
        let restore = Restore(outer);
        // SAFETY: the host registered `function` for this call shape; `call.info` and its
        // strings outlive the call.
        unsafe { (self.function)(self.user_data.pointer, &call.info) };
        drop(restore);
        if let Some(json) = call.json.into_inner() {
            give_back(json);
        }
    }
}

fn add_typed(
    function: &'static str,
    engine: *mut PresenceEngine,
    cb: PresenceEventInfoCallback,
    user_data: *mut c_void,
    user_data_free: PresenceUserDataFree,
    out: *mut PresenceListenerId,
    filter: Option<(*const c_char, *const c_char)>,
) -> PresenceResult {
    call(function, || {
        let e = unsafe { support::engine(engine) }?;
        let filter = match filter {
            Some((event_type, user_id)) => Some(unsafe { filter_arg(event_type, user_id) }?),
            None => None,
        };
        let function = cb.ok_or_else(|| null("cb"))?;
        let out = non_null(out, "out")?;
        let user_data = Arc::new(UserData {
            pointer: user_data,
            free: user_data_free,
            registered: AtomicBool::new(false),
        });
        let callback = TypedCallback { function, user_data: user_data.clone() };
        let id = match filter {
            Some(filter) => {
                e.add_listener(filter, move |event: &Event| callback.invoke(event, View::Own, None))?
            }
            None => e.add_delivery_listener(move |d: &Delivery| {
                callback.invoke(&d.event, d.view, Some(d.connection))
            }),
        };
        user_data.registered.store(true, Ordering::Release);
        unsafe { out.write(id.0) };
        Ok(())
    })
}

/// Registers a typed host listener: as `presence_add_listener` (same filters, own views,
/// `connection_id` 0), but `cb` receives a `PresenceEventInfo` and no JSON is rendered
/// unless it asks with `presence_event_info_json`.
///
/// `event_type` and `user_id` may be NULL (no filter) and are copied; `cb` and `out` are
/// required. `user_data` may be anything: it is passed back untouched and never
/// dereferenced; it must be safe to use from every thread that calls into the engine.
/// `user_data_free` may be NULL; otherwise, once this call succeeds, the engine calls it
/// exactly once with `user_data`, after the listener is removed and no callback of it runs
/// any more (on the thread that removes it, or the one whose dispatch still held it), or
/// when the engine is freed. When this call fails it is never called: `user_data` stays
/// the caller's. Cost: O(listeners). Errors: NULL, UTF8. Any thread, including from a
/// callback.
#[no_mangle]
pub unsafe extern "C" fn presence_add_typed_listener(
    engine: *mut PresenceEngine,
    event_type: *const c_char,
    user_id: *const c_char,
    cb: PresenceEventInfoCallback,
    user_data: *mut c_void,
    user_data_free: PresenceUserDataFree,
    out: *mut PresenceListenerId,
) -> PresenceResult {
    add_typed(
        "presence_add_typed_listener",
        engine,
        cb,
        user_data,
        user_data_free,
        out,
        Some((event_type, user_id)),
    )
}

/// Registers a typed delivery listener: as `presence_add_delivery_listener` (one call per
/// event and recipient connection, in that recipient's view), but `cb` receives a
/// `PresenceEventInfo` and no JSON is rendered unless it asks. Allocates nothing per
/// delivery in steady state.
///
/// `cb` and `out` are required; `user_data` and `user_data_free` as for
/// `presence_add_typed_listener`. Cost: O(listeners). Errors: NULL. Any thread, including
/// from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_add_typed_delivery_listener(
    engine: *mut PresenceEngine,
    cb: PresenceEventInfoCallback,
    user_data: *mut c_void,
    user_data_free: PresenceUserDataFree,
    out: *mut PresenceListenerId,
) -> PresenceResult {
    add_typed("presence_add_typed_delivery_listener", engine, cb, user_data, user_data_free, out, None)
}

/// Inside a typed callback only: the event it received, as JSON, exactly as
/// `presence_add_listener` / `presence_add_delivery_listener` would have handed it
/// (with `connection_id` for deliveries). The string is owned by the engine and valid
/// until the callback returns. Each event's JSON in each view is rendered once and shared
/// by every recipient. Cost: O(size of the event) on the first request in a view, then
/// O(1) for a host listener and O(length) to add a delivery's `connection_id`.
///
/// `event` must be the pointer a typed callback running on this thread received (an outer
/// one's too, when callbacks nest); `out_json` is required. Errors: NULL, STATE (`event`
/// is not the event of a typed callback running on this thread, e.g. one from a batch:
/// use `presence_batch_event_json` for those). The calling thread of the callback only.
#[no_mangle]
pub unsafe extern "C" fn presence_event_info_json(
    event: *const PresenceEventInfo,
    out_json: *mut *const c_char,
) -> PresenceResult {
    call("presence_event_info_json", || {
        if event.is_null() {
            return Err(null("event"));
        }
        let out = non_null(out_json, "out_json")?;
        let mut running: *const CallbackEvent = CURRENT.with(Cell::get).cast();
        // SAFETY: every pointer in the chain is a `CallbackEvent` on this thread's stack,
        // alive while its callback runs (it is unlinked before it ends).
        while let Some(call) = unsafe { running.as_ref() } {
            if ptr::eq(&call.info, event) {
                let rendered = call.event.rendered(call.view);
                let json = match call.recipient {
                    None => rendered.c_str().as_ptr(),
                    Some(c) => {
                        let mut slot = call.json.borrow_mut();
                        let text = slot.get_or_insert_with(|| {
                            let mut text = take_buffer();
                            rendered.write(Some(c), &mut text);
                            text.push(0);
                            text
                        });
                        text.as_ptr().cast()
                    }
                };
                unsafe { out.write(json) };
                return Ok(());
            }
            running = call.outer;
        }
        Err(Error::new(ErrorKind::State, "event is not the event of a typed callback running on this thread"))
    })
}

const _: () = {
    assert!(PRESENCE_CLOSE_DISCONNECT == CloseReason::Disconnect as u32);
    assert!(PRESENCE_CLOSE_TIMEOUT == CloseReason::Timeout as u32);
    assert!(PRESENCE_CLOSE_SLOW_CONSUMER == CloseReason::SlowConsumer as u32);
    assert!(PRESENCE_CLOSE_NODE_LOST == CloseReason::NodeLost as u32);
};
