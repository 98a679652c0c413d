//! Events: the struct a callback sees, listeners, polling and pumping.
use super::support::{self, call, non_null, null, opt_str_arg, write_string};
use super::typed::{cid_in, online_in, user_id_in};
use super::typed_listeners::{give_back, take_buffer};
use super::{PresenceConnectionId, PresenceEngine, PresenceListenerId, PresenceResult};
use crate::engine::{ListenerFilter, ListenerId};
use crate::event::{ConnectionId, Delivery, Event};
use crate::user::View;
use std::ffi::c_void;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// One event handed to a callback. The struct and every string it points at are owned by
/// the engine and valid only during the callback: copy what you need to keep.
#[repr(C)]
pub struct PresenceEvent {
    /// The event type: "user.presence.changed", "user.updated", "user.watching.start",
    /// "user.watching.stop", "member.added", "member.removed", "connection.closed", or,
    /// for host listeners only, "engine.overflow" and "cluster.status" (about no user:
    /// `user_id` is NULL).
    pub r#type: *const c_char,
    /// The engine-wide sequence number, strictly increasing in the order of the changes.
    pub seq: u64,
    /// The recipient connection for delivery listeners; 0 for host listeners.
    pub connection_id: PresenceConnectionId,
    /// The id of the user the event is about, or NULL.
    pub user_id: *const c_char,
    /// The channel (`type:id`) the event is about, or NULL for events about no channel.
    pub cid: *const c_char,
    /// That user's `online` flag as the recipient sees it (the own view for host
    /// listeners, so an invisible user with connections is online there).
    pub online: bool,
    /// The whole event as a JSON object (with `connection_id` for delivery listeners).
    pub json: *const c_char,
}

/// A callback. `user_data` is the pointer given at registration, passed back untouched;
/// `event` is valid only during the call. Callbacks run on the thread that caused the
/// events (immediate dispatch; if another thread is delivering at that moment, that
/// thread delivers them, in order, and the call returns without waiting) or that calls
/// `presence_pump` (manual dispatch), never while the engine holds its lock, never
/// concurrently with another callback of the same engine, in `seq` order. A call delivers
/// at most what it caused plus a bounded number more (1024 items); the rest waits for the
/// next call or `presence_pump`. In cluster mode with immediate dispatch, the events of
/// changes made on other nodes are delivered on the engine's cluster link thread (a
/// thread of the library's). A callback may call any function of the engine except
/// `presence_engine_free` on it (refused, see there); events it causes are delivered after
/// the current one. No call waits for another thread's callbacks, except
/// `presence_remove_listener` for a call of the listener it removes, and
/// `presence_engine_free` in cluster mode for a call running on the link thread.
/// It must not longjmp out of the callback, and must not let a C++ exception escape it
/// (wrap its body in try/catch): an exception reaching the engine aborts the process.
pub type PresenceEventCallback =
    Option<unsafe extern "C-unwind" fn(user_data: *mut c_void, event: *const PresenceEvent)>;

/// A C callback and its `user_data`, moved into the engine's listener list. The engine
/// may call it from any thread that calls into it: making `user_data` safe for that is
/// the host's part of the contract, documented on `presence_add_listener`.
#[derive(Clone, Copy)]
struct CCallback {
    function: unsafe extern "C-unwind" fn(user_data: *mut c_void, event: *const PresenceEvent),
    user_data: *mut c_void,
}

// SAFETY: the engine never dereferences `user_data`; it only hands it back to `function`,
// and the host promises (see presence_add_listener) that this is fine from any thread.
unsafe impl Send for CCallback {}
unsafe impl Sync for CCallback {}

impl CCallback {
    /// Calls the C function with the event as `recipient` (`None`: the host) sees it in
    /// `view`. The strings are the event's own, the JSON is the event's own rendering for
    /// that view (a delivery's `connection_id` spliced in), so a call allocates nothing in
    /// steady state. Building them runs behind a panic boundary of its own: a failure
    /// there skips this callback rather than unwinding through the engine's dispatch loop.
    fn invoke(&self, event: &Event, view: View, recipient: Option<ConnectionId>) {
        let mut json = take_buffer();
        let built = catch_unwind(AssertUnwindSafe(|| {
            let rendered = event.rendered(view);
            let json = match recipient {
                None => rendered.c_str().as_ptr(),
                Some(_) => {
                    rendered.write(recipient, &mut json);
                    json.push(0);
                    json.as_ptr().cast()
                }
            };
            PresenceEvent {
                r#type: event.kind.type_name_nul().as_ptr().cast(),
                seq: event.seq,
                connection_id: recipient.map_or(0, |c| c.0),
                user_id: user_id_in(event),
                cid: cid_in(event),
                online: online_in(event, view),
                json,
            }
        }));
        match built {
            // SAFETY: the host registered `function` for exactly this call shape;
            // `event` and its strings outlive the call.
            Ok(event) => unsafe { (self.function)(self.user_data, &event) },
            Err(payload) => eprintln!(
                "presence: event {} not handed to a C callback: internal error: {}",
                event.seq,
                support::panic_message(payload.as_ref())
            ),
        }
        give_back(json);
    }
}

/// Registers a host listener: `cb` is called once per event matching the filters, with
/// `connection_id` 0, the own view of users (an invisible user is shown with `invisible`
/// true), and `online` telling whether the user holds live connections.
///
/// `event_type` may be NULL (every type) or a type such as "user.presence.changed";
/// `user_id` may be NULL (any user) or a user id; both are copied. `cb` is required.
/// `user_data` may be anything, NULL included: it is passed back untouched, never
/// dereferenced or freed by the engine; it must stay valid until the listener is removed
/// or the engine freed, and be safe to use from every thread that calls into the engine
/// (callbacks run on the calling or pumping thread, and in cluster mode on the link
/// thread, see `PresenceEventCallback`). `out` is required and receives the
/// listener id. A filter that could never match (an unknown event type, a user id no
/// user can have) registers a listener that is never called. Errors: NULL, UTF8. Any
/// thread, including from a callback (the new listener sees events dispatched after it
/// is added).
#[no_mangle]
pub unsafe extern "C" fn presence_add_listener(
    engine: *mut PresenceEngine,
    event_type: *const c_char,
    user_id: *const c_char,
    cb: PresenceEventCallback,
    user_data: *mut c_void,
    out: *mut PresenceListenerId,
) -> PresenceResult {
    call("presence_add_listener", || {
        let e = unsafe { support::engine(engine) }?;
        let event_type = unsafe { opt_str_arg(event_type, "event_type") }?;
        let user_id = unsafe { opt_str_arg(user_id, "user_id") }?;
        let function = cb.ok_or_else(|| null("cb"))?;
        let out = non_null(out, "out")?;
        let filter =
            ListenerFilter { event_type: event_type.map(str::to_owned), user_id: user_id.map(str::to_owned) };
        let callback = CCallback { function, user_data };
        let id =
            e.add_listener_unchecked(filter, move |event: &Event| callback.invoke(event, View::Own, None));
        unsafe { out.write(id.0) };
        Ok(())
    })
}

/// Registers a delivery listener: `cb` is called once per (event, recipient connection),
/// with `connection_id` the recipient, the user in the view that recipient is entitled to,
/// and `online` as that recipient sees it. Deliveries reach delivery listeners whether or
/// not the connection also has a queue.
///
/// `cb` is required; `user_data` as for `presence_add_listener`; `out` is required and
/// receives the listener id. Errors: NULL. Any thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_add_delivery_listener(
    engine: *mut PresenceEngine,
    cb: PresenceEventCallback,
    user_data: *mut c_void,
    out: *mut PresenceListenerId,
) -> PresenceResult {
    call("presence_add_delivery_listener", || {
        let e = unsafe { support::engine(engine) }?;
        let function = cb.ok_or_else(|| null("cb"))?;
        let out = non_null(out, "out")?;
        let callback = CCallback { function, user_data };
        let id = e
            .add_delivery_listener(move |d: &Delivery| callback.invoke(&d.event, d.view, Some(d.connection)));
        unsafe { out.write(id.0) };
        Ok(())
    })
}

/// Removes a listener. Once this returns its callback is never called again, even for an
/// event being dispatched right now: if another thread is inside this listener's callback,
/// this waits for that one call to return (never for other callbacks, never from inside
/// a callback of this engine). A callback may remove itself. The listener's `user_data`
/// is the caller's to release afterwards. Where waiting could deadlock (the caller holds
/// a lock the callback takes), use `presence_remove_listener_nowait`.
///
/// Errors: NULL (`engine`), NOT_FOUND (an unknown or already removed id, or 0). Any
/// thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_remove_listener(
    engine: *mut PresenceEngine,
    id: PresenceListenerId,
) -> PresenceResult {
    call("presence_remove_listener", || {
        let e = unsafe { support::engine(engine) }?;
        e.remove_listener(ListenerId(id))
    })
}

/// Drains up to `max` events from connection `conn`'s queue, oldest first, as a JSON
/// array of delivered events (each with `connection_id`); "[]" when there are none.
///
/// `engine` and `out_json_array` are required. On success `*out_json_array` is a new
/// string owned by the caller (release it with `presence_string_free`). Errors: NULL,
/// NOT_FOUND (unknown or closed connection; 0, the host, has no queue). Any thread,
/// including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_poll_events(
    engine: *mut PresenceEngine,
    conn: PresenceConnectionId,
    max: u32,
    out_json_array: *mut *mut c_char,
) -> PresenceResult {
    call("presence_poll_events", || {
        let e = unsafe { support::engine(engine) }?;
        let out = non_null(out_json_array, "out_json_array")?;
        let events = e.poll_events(ConnectionId(conn), max as usize)?;
        let mut array = vec![b'['];
        for (i, d) in events.iter().enumerate() {
            if i > 0 {
                array.push(b',');
            }
            d.write_json(&mut array);
        }
        array.push(b']');
        unsafe { write_string(out, String::from_utf8(array).expect("spliced JSON is UTF-8")) }
    })
}

/// Runs, on the calling thread, the callbacks of every event waiting for dispatch (with
/// `"dispatch": "manual"`, the game-loop model; with immediate dispatch there is normally
/// nothing waiting). Called from inside a callback it runs nothing (the outer dispatch
/// delivers).
///
/// `engine` is required; `out_delivered` may be NULL, otherwise it receives the number
/// of listener calls made: the callbacks that ran, and one per event a host queue took.
/// Errors: NULL (`engine`). Any thread.
#[no_mangle]
pub unsafe extern "C" fn presence_pump(
    engine: *mut PresenceEngine,
    out_delivered: *mut u32,
) -> PresenceResult {
    call("presence_pump", || {
        let e = unsafe { support::engine(engine) }?;
        let delivered = e.pump();
        if !out_delivered.is_null() {
            unsafe { out_delivered.write(delivered) };
        }
        Ok(())
    })
}

/// Removes a listener without waiting (ABI version 2): no call of it starts after this
/// returns, but a call already running on another thread may still be running; it is the
/// last. Safe to call while holding a lock the callback takes. Release `user_data` only
/// once that call can no longer be running (for example after the next dispatch ends).
///
/// Errors: NULL (`engine`), NOT_FOUND (an unknown or already removed id, or 0). Any
/// thread, including from a callback.
#[no_mangle]
pub unsafe extern "C" fn presence_remove_listener_nowait(
    engine: *mut PresenceEngine,
    id: PresenceListenerId,
) -> PresenceResult {
    call("presence_remove_listener_nowait", || {
        let e = unsafe { support::engine(engine) }?;
        e.remove_listener_nowait(ListenerId(id))
    })
}
