//! ABI version 2: typed host and delivery listeners, with a finalizer for their `user_data`.
use super::support::{self, call, non_null, null, opt_str_arg};
use super::typed::*;
use super::{PresenceEngine, PresenceListenerId, PresenceResult};
use crate::engine::{DeliveryRun, ListenerFilter};
use crate::error::{Error, ErrorKind};
use crate::event::{CloseReason, ConnectionId, Event};
use crate::user::View;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::os::raw::c_char;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The filters of a host listener or queue; NULL means no filter.
pub(super) unsafe fn filter_arg(
    event_type: *const c_char,
    user_id: *const c_char,
) -> Result<ListenerFilter, Error> {
    Ok(ListenerFilter {
        event_type: unsafe { opt_str_arg(event_type, "event_type") }?.map(str::to_owned),
        user_id: unsafe { opt_str_arg(user_id, "user_id") }?.map(str::to_owned),
    })
}

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
struct CallbackEvent {
    info: PresenceEventInfo,
    /// The event `info` describes, alive while the callback runs.
    event: *const Event,
    view: View,
    recipient: Option<ConnectionId>,
    /// A delivery's JSON, spliced on request (a host listener's is the event's own).
    json: RefCell<Option<Vec<u8>>>,
    /// The callback running further up this thread's stack, if any.
    outer: Cell<*const CallbackEvent>,
}

impl CallbackEvent {
    fn new(info: PresenceEventInfo, event: &Event, view: View, recipient: Option<ConnectionId>) -> Self {
        CallbackEvent {
            info,
            event,
            view,
            recipient,
            json: RefCell::new(None),
            outer: Cell::new(ptr::null()),
        }
    }
}

/// The last event described for a typed delivery listener on this thread: the deliveries
/// of one event to its recipients are dispatched one after the other, and their infos
/// differ only in the recipient's fields, so they share one description, updated in place
/// for each recipient.
struct Described {
    /// The event (held, so that the identity check cannot be fooled by an address reused
    /// for another event, and so that the frame's pointer to it stays valid) and the frame
    /// its deliveries are called with.
    last: Option<(Arc<Event>, CallbackEvent)>,
}

impl Described {
    /// The frame for a delivery of `event` to `recipient`: the last one, described anew
    /// unless it was of the same event, with the recipient in it.
    fn frame(&mut self, event: &Arc<Event>, recipient: ConnectionId, view: View) -> &CallbackEvent {
        if !matches!(&self.last, Some((last, _)) if Arc::ptr_eq(last, event)) {
            let info = describe(event, 0, View::Own);
            self.last = Some((event.clone(), CallbackEvent::new(info, event, View::Own, None)));
        }
        let (_, frame) = self.last.as_mut().expect("described above");
        frame.to_recipient(event, recipient, view);
        frame
    }
}

impl CallbackEvent {
    /// Turns the frame of a delivery of `event` into that of `recipient` in `view`.
    fn to_recipient(&mut self, event: &Event, recipient: ConnectionId, view: View) {
        self.info.set_recipient(event, recipient.0, view);
        self.view = view;
        self.recipient = Some(recipient);
        // Left by a callback that unwound: it was the previous recipient's.
        if let Some(json) = self.json.get_mut().take() {
            give_back(json);
        }
    }
}

thread_local! {
    /// Borrowed while a typed delivery callback runs with its info: a callback nested in
    /// it (another engine's, dispatched from inside it) describes its event on the stack.
    static DESCRIBED: RefCell<Described> = const { RefCell::new(Described { last: None }) };
    /// The innermost typed callback running on this thread.
    static CURRENT: Cell<*const ()> = const { Cell::new(ptr::null()) };
    /// Byte buffers for JSON, reused so a callback allocates nothing in steady
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
    /// Describes the event and calls the C function with it.
    fn invoke(&self, event: &Event, view: View, recipient: Option<ConnectionId>) {
        let info = describe(event, recipient.map_or(0, |c| c.0), view);
        self.call(&CallbackEvent::new(info, event, view, recipient));
    }

    /// Calls the C function for each delivery of `run`, describing the event once: on
    /// the stack for a run of several, else in the per-thread frame that the deliveries
    /// of one event to several listeners share.
    fn invoke_run(&self, run: &DeliveryRun) {
        if run.len() > 1 {
            let mut frame = CallbackEvent::new(describe(run.event, 0, View::Own), run.event, View::Own, None);
            run.for_each(|recipient, view| {
                frame.to_recipient(run.event, recipient, view);
                self.call(&frame);
            });
            return;
        }
        run.for_each(|recipient, view| {
            let shared = DESCRIBED.try_with(|described| {
                let Ok(mut described) = described.try_borrow_mut() else { return false };
                self.call(described.frame(run.event, recipient, view));
                true
            });
            if shared != Ok(true) {
                self.invoke(run.event, view, Some(recipient));
            }
        });
    }

    /// Calls the C function with `call.info`, findable by `presence_event_info_json`
    /// meanwhile.
    fn call(&self, call: &CallbackEvent) {
        let outer = CURRENT.with(Cell::get);
        call.outer.set(outer.cast());
        let this: *const CallbackEvent = call;
        CURRENT.with(|c| c.set(this.cast()));
        let restore = Restore(outer);
        // SAFETY: the host registered `function` for this call shape; `call.info` and its
        // strings outlive the call.
        unsafe { (self.function)(self.user_data.pointer, &call.info) };
        drop(restore);
        if let Some(json) = call.json.take() {
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
            None => e.add_delivery_run_listener(move |run: &DeliveryRun| callback.invoke_run(run)),
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
/// when the engine is freed (inside `presence_engine_free`, with the engine still whole:
/// it may call into the engine, except to free it). When this call fails it is never
/// called: `user_data` stays the caller's. Cost: O(listeners). Errors: NULL, UTF8,
/// INVALID (a filter that could never match: an unknown event type or an invalid user
/// id). Any thread, including from a callback.
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
        // SAFETY: every pointer in the chain is a `CallbackEvent` of a callback running on
        // this thread (on its stack, or the thread's reused frame), alive with its event
        // while that callback runs (it is unlinked before it ends).
        while let Some(call) = unsafe { running.as_ref() } {
            if ptr::eq(&call.info, event) {
                let rendered = unsafe { &*call.event }.rendered(call.view);
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
            running = call.outer.get();
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
