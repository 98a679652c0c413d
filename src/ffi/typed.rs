//! ABI version 2, the typed event path: events as `PresenceEventInfo` structs with
//! borrowed strings, drained into a reusable batch or handed to typed listeners, with JSON
//! rendered only when asked (once per event and view, shared by every recipient). Host
//! queues are in `host_queues`, typed listeners in `typed_listeners`, the other typed
//! entry points (connect by id, read a user's presence) in `typed_reads`.
use super::support::{self, call, non_null, FfiResult};
use super::{PresenceConnectionId, PresenceEngine, PresenceResult};
use crate::engine::Engine;
use crate::error::Error;
use crate::event::{ConnectionId, Delivery, Event, EventKind};
use crate::user::View;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::ptr;

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
/// what you need to keep. Strings are NUL-terminated UTF-8 owned by the engine: its own
/// copies, shared by every event and recipient, so never free or write through them, and
/// compare them by content (or users by `user_key`), not by address (an address is reused
/// once the engine lets go of a string). Fields that do not apply to the event are NULL,
/// -1, 0 or INT64_MIN as each says. Fields may be added at the end in later versions;
/// these keep their order.
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
    /// That user's status text, or NULL when none is set. A status set through JSON may
    /// hold a NUL character ("\u0000"), which ends the C string early: `status_len` is its
    /// whole length.
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
    /// A number naming the user of `user_id` within this engine for the engine's whole
    /// life: keys start at 1, and one never names another user, also not after
    /// `presence_load` (loaded users get new keys); 0 when `user_id` is NULL. Keys are
    /// given in the order users are created, so a host can keep its own per-user data in
    /// an array indexed by key instead of hashing the id.
    pub user_key: u64,
}

/// The info of `event` for `recipient` (0: the host) in `view`. Its strings are the
/// event's own (shared strings keep a NUL after their bytes), valid while the event lives.
#[inline(always)]
pub(super) fn describe(event: &Event, recipient: PresenceConnectionId, view: View) -> PresenceEventInfo {
    let mut info = MaybeUninit::uninit();
    describe_into(&mut info, event, recipient, view);
    // SAFETY: `describe_into` wrote every field.
    unsafe { info.assume_init() }
}

/// Writes the info `describe` answers into `out`, field by field as each is known, with
/// one look at the kind and one at the user. (Built whole and then stored, the info's
/// nineteen fields were live at once: spilled to the stack and copied again. Always
/// inlined: a batch writes each info in its place.)
#[inline(always)]
pub(super) fn describe_into(
    out: &mut MaybeUninit<PresenceEventInfo>,
    event: &Event,
    recipient: PresenceConnectionId,
    view: View,
) {
    let p = out.as_mut_ptr();
    macro_rules! set {
        ($($field:ident: $value:expr),* $(,)?) => {{
            // SAFETY: `p` points at writable room for an info; each field is written once
            // before anything reads the info.
            $(unsafe { ptr::addr_of_mut!((*p).$field).write($value) };)*
        }};
    }
    set!(
        kind: event.kind.type_number(),
        type_name: event.kind.type_name_nul().as_ptr().cast(),
        seq: event.seq,
        created_at_ms: event.created_at,
        connection_id: recipient,
    );
    let (user, channel, watcher_count, close_reason, closed_connection_id, dropped) = match &event.kind {
        EventKind::PresenceChanged { user } | EventKind::UserUpdated { user } => {
            (Some(user), None, -1, 0, 0, 0)
        }
        EventKind::WatchingStart { channel, user, watcher_count }
        | EventKind::WatchingStop { channel, user, watcher_count } => {
            (Some(user), Some(channel), i64::from(*watcher_count), 0, 0, 0)
        }
        EventKind::MemberAdded { channel, user } | EventKind::MemberRemoved { channel, user } => {
            (Some(user), Some(channel), -1, 0, 0, 0)
        }
        EventKind::ConnectionClosed { connection, user, reason } => {
            (Some(user), None, -1, *reason as u32, connection.0, 0)
        }
        EventKind::EngineOverflow { dropped } => (None, None, -1, 0, 0, *dropped),
        EventKind::ClusterStatus { .. } => (None, None, -1, 0, 0, 0),
    };
    set!(
        watcher_count: watcher_count,
        close_reason: close_reason,
        closed_connection_id: closed_connection_id,
        dropped: dropped,
    );
    match channel {
        Some(c) => set!(cid: c.cid.as_c_ptr(), cid_len: c.cid.len() as u32),
        None => set!(cid: ptr::null(), cid_len: 0),
    }
    match user {
        Some(u) => {
            set!(
                user_id: u.id.as_c_ptr(),
                user_id_len: u.id.len() as u32,
                user_key: u.key,
                online: u.online(view),
                invisible: view == View::Own && u.invisible,
                last_active_ms: u.last_active.unwrap_or(i64::MIN),
            );
            match &u.status {
                Some(status) => set!(status: status.as_c_ptr(), status_len: status.len() as u32),
                None => set!(status: ptr::null(), status_len: 0),
            }
        }
        None => set!(
            user_id: ptr::null(),
            user_id_len: 0,
            user_key: 0,
            online: false,
            invisible: false,
            last_active_ms: i64::MIN,
            status: ptr::null(),
            status_len: 0,
        ),
    }
}

impl PresenceEventInfo {
    /// Turns an info of `event` into that of `recipient` in `view`: the fields `describe`
    /// sets per recipient and view.
    pub(super) fn set_recipient(&mut self, event: &Event, recipient: PresenceConnectionId, view: View) {
        self.connection_id = recipient;
        self.online = online_in(event, view);
        self.invisible = invisible_in(event, view);
    }
}

/// `user_id` of an info or a JSON callback's event: the engine's own string; NULL for
/// events about no user (engine.overflow, cluster.status).
pub(super) fn user_id_in(event: &Event) -> *const c_char {
    event.user().map_or(ptr::null(), |u| u.id.as_c_ptr())
}

/// `cid` of an info or a JSON callback's event: the engine's own string; NULL for events
/// about no channel.
pub(super) fn cid_in(event: &Event) -> *const c_char {
    event.channel().map_or(ptr::null(), |c| c.cid.as_c_ptr())
}

/// `online` of an info or a JSON callback's event: the event's user is online in `view`
/// (false without a user).
pub(super) fn online_in(event: &Event, view: View) -> bool {
    event.user().is_some_and(|u| u.online(view))
}

/// `invisible` of an info: only own views say whether the user is invisible.
fn invisible_in(event: &Event, view: View) -> bool {
    view == View::Own && event.user().is_some_and(|u| u.invisible)
}

// ----- batches -----

/// A reusable batch of drained events. Opaque: created by `presence_batch_new`, owned by
/// the caller until `presence_batch_free`. Not tied to an engine (one batch may drain
/// several engines' connections, and may outlive them). One thread at a time: a batch
/// must not be used by two threads concurrently.
pub struct PresenceEventBatch {
    /// A queue, not a vector: draining a whole connection queue trades it for this one.
    pub(super) deliveries: VecDeque<Delivery>,
    /// The deliveries' infos, whose strings are the events' own (held in `deliveries`).
    infos: Vec<PresenceEventInfo>,
    /// Per position: that event's JSON with a NUL once asked for, empty before (positions
    /// past the end: none asked yet). Kept across refills so their room is reused.
    json: Vec<Vec<u8>>,
    /// Filled from a host queue: the events are host views, rendered without
    /// `connection_id` (their `connection` is 0).
    pub(super) host: bool,
}

/// A batch handle checked for NULL.
pub(super) fn batch<'a>(b: *mut PresenceEventBatch) -> Result<&'a mut PresenceEventBatch, Error> {
    // SAFETY: a live batch by the caller's contract, used by one thread at a time.
    non_null(b, "batch").map(|b| unsafe { &mut *b })
}

impl PresenceEventBatch {
    pub(super) fn clear(&mut self) {
        self.host = false;
        // Only the events held can have had their JSON asked for (a batch that once held
        // a thousand then holds two clears two).
        let held = self.deliveries.len().min(self.json.len());
        for text in &mut self.json[..held] {
            text.clear();
        }
        self.deliveries.clear();
        self.infos.clear();
    }

    /// Clears the batch, lets `fill` check its arguments and move deliveries into it, and
    /// describes them; when `fill` fails the batch is left empty (`fill` moves nothing
    /// when it fails).
    pub(super) fn refill(&mut self, fill: impl FnOnce(&mut VecDeque<Delivery>) -> FfiResult) -> FfiResult {
        self.clear();
        fill(&mut self.deliveries)?;
        self.describe_all();
        Ok(())
    }

    /// Describes every delivery it holds, each info written in its place. Allocates only
    /// when it holds more than ever before.
    pub(super) fn describe_all(&mut self) {
        let n = self.deliveries.len();
        self.infos.clear();
        if n == 0 {
            return;
        }
        self.infos.reserve(n);
        // The queue's two parts one after the other: its own iterator asks at every step
        // which part it is in.
        let (front, back) = self.deliveries.as_slices();
        let (front_infos, back_infos) = self.infos.spare_capacity_mut()[..n].split_at_mut(front.len());
        for (infos, deliveries) in [(front_infos, front), (back_infos, back)] {
            for (info, d) in infos.iter_mut().zip(deliveries) {
                describe_into(info, &d.event, d.connection.0, d.view);
            }
        }
        // SAFETY: the loop wrote the first `n` infos (`infos` is empty and has room for `n`).
        unsafe { self.infos.set_len(n) };
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
            deliveries: VecDeque::new(),
            infos: Vec::new(),
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
    // SAFETY: a batch from `presence_batch_new`, by contract not used elsewhere.
    unsafe { support::free_box("presence_batch_free", batch) }
}

/// Clears `batch` (invalidating every pointer it handed out), then moves up to `max`
/// queued events of connection `conn` into it, oldest first, in `seq` order. No JSON is
/// rendered. When `max` takes every queued event, the connection's queue and the batch's
/// trade places: O(1) under the engine's lock, and no allocation. Otherwise the events
/// move one by one, and the batch's room grows when it is smaller than what moves. So
/// reusing batches allocates nothing in steady state. Cost: O(events moved), with one
/// short hold of the engine's lock.
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
        poll_engine(engine, batch, |e, out| e.poll_events_into(ConnectionId(conn), max as usize, out))
    })
}

/// `presence_poll_batch` for several connections in one call: clears `batch`, then moves
/// up to `max_each` queued events of each of the `count` connections of `connections`,
/// in the array's order (each connection's oldest first, in `seq` order), into it. Each
/// info's `connection_id` names its recipient. A host that drains many connections each
/// frame crosses into the library and takes the engine's lock once instead of per
/// connection. Every id is checked before anything moves. A connection listed twice is
/// drained twice. No JSON is rendered; reusing batches allocates nothing in steady state.
/// Cost: O(count + events moved), all under one hold of the engine's lock.
///
/// `engine` and `batch` are required; `connections` is read during the call only, and may
/// be NULL when `count` is 0. Errors: NULL, NOT_FOUND (an unknown or closed connection, or
/// 0, named in the message; nothing moves, every queue stays as it was); on error the
/// batch is left empty. Any thread, including from a callback; the batch by one thread at
/// a time.
#[no_mangle]
pub unsafe extern "C" fn presence_poll_batch_many(
    engine: *mut PresenceEngine,
    connections: *const PresenceConnectionId,
    count: u32,
    max_each: u32,
    batch: *mut PresenceEventBatch,
) -> PresenceResult {
    call("presence_poll_batch_many", || {
        poll_engine(engine, batch, |e, out| {
            let connections: &[ConnectionId] = if count == 0 {
                &[]
            } else {
                let p = non_null(connections.cast_mut(), "connections")?;
                // SAFETY: `count` ids by the caller's contract, read during the call only;
                // `ConnectionId` is a transparent `u64`.
                unsafe { std::slice::from_raw_parts(p.cast::<ConnectionId>(), count as usize) }
            };
            e.poll_events_many_into(connections, max_each as usize, out)
        })
    })
}

/// The body of a poll of `engine` into `batch`: the batch is cleared first (so it is left
/// empty whichever argument is wrong), then the engine is checked and `poll` moves its
/// deliveries in. Like `batch`, it takes the exported function's own pointer arguments,
/// NULL or live by that caller's contract.
fn poll_engine(
    engine: *mut PresenceEngine,
    batch: *mut PresenceEventBatch,
    poll: impl FnOnce(&Engine, &mut VecDeque<Delivery>) -> Result<usize, Error>,
) -> FfiResult {
    self::batch(batch)?.refill(|out| {
        // SAFETY: NULL or live by the exported function's contract.
        let e = unsafe { support::engine(engine) }?;
        poll(e, out).map(drop)
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
        if b.json.len() <= index as usize {
            b.json.resize_with(b.deliveries.len(), Vec::new);
        }
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
