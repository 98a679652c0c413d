//! ABI version 2: host queues, the events of a host listener drained per batch instead of
//! one callback per event.
use super::support::{self, call, non_null};
use super::typed::*;
use super::typed_listeners::filter_arg;
use super::{PresenceEngine, PresenceResult};
use crate::engine::EventsGuard;
use crate::error::Error;
use crate::event::{ConnectionId, Delivery, Event};
use crate::user::View;
use std::os::raw::c_char;
use std::sync::Arc;

/// A host queue: the events a host listener with the same filters would receive, kept in
/// order until the host drains them into a batch, so a host that handles many events per
/// frame crosses into its own code once per batch instead of once per event. Opaque:
/// created by `presence_host_queue_new`, owned by the caller until
/// `presence_host_queue_free`; it does not keep the engine alive.
pub struct PresenceHostQueue {
    events: crossbeam_channel::Receiver<Arc<Event>>,
    /// Ends the engine's listener for this queue when the queue is freed.
    _listener: EventsGuard,
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
/// O(log listeners + pending_dispatch_capacity: the queue's room is allocated whole); then
/// one queue push per matching event. Errors: NULL, UTF8, INVALID (a filter that could
/// never match), LIMIT (`pending_dispatch_capacity` above 1048576). Any thread, including
/// from a callback.
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
        let (events, listener) = e.events_until_dropped(filter)?;
        unsafe { out.write(Box::into_raw(Box::new(PresenceHostQueue { events, _listener: listener }))) };
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
        let b = super::typed::batch(batch)?;
        b.refill(|out| {
            // SAFETY: a live queue by the caller's contract.
            let q = non_null(queue, "queue").map(|q| unsafe { &*q })?;
            while out.len() < max as usize {
                match q.events.try_recv() {
                    Ok(event) => out.push_back(Delivery { event, connection: ConnectionId(0), view: View::Own }),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) if out.is_empty() => {
                        return Err(Error::state(
                            "the host queue was cut off (it fell pending_dispatch_capacity events behind, or its engine was freed): free it and create another",
                        ));
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
            Ok(())
        })?;
        b.host = true;
        Ok(())
    })
}

/// Releases a host queue and the events still in it; the engine stops queueing for it at
/// once. NULL is accepted and ignored. Any thread, before or after the
/// engine is freed, but not while another thread uses the queue.
#[no_mangle]
pub unsafe extern "C" fn presence_host_queue_free(queue: *mut PresenceHostQueue) {
    // SAFETY: a queue from `presence_host_queue_new`, by contract not used elsewhere.
    unsafe { support::free_box("presence_host_queue_free", queue) }
}
