//! Receivers: a connection's events, or the host's, as `crossbeam_channel` receivers that
//! work with `select!`, `recv_timeout` and iteration.
use super::listeners::{Callback, ListenerId};
use super::{Engine, Shared};
use crate::error::{Error, Result};
use crate::event::{ConnectionId, Delivery, Event};
use crate::ListenerFilter;
use crossbeam_channel::Receiver;
use std::sync::{Arc, Weak};

impl Engine {
    /// The connection's deliveries as a channel, in `seq` order, starting with those
    /// already queued: the receiver takes the place of its queue (and of
    /// [`Engine::poll_events`]) while it lives. Deliveries reach it as the change commits,
    /// without a callback, in either dispatch mode. The queue's bound holds: a receiver
    /// holding `connection_queue_capacity` undrained deliveries when another arrives closes
    /// the connection with reason `slow_consumer`, and then sees the channel disconnected.
    /// Dropping the receiver ends the subscription (the queue takes over again); closing
    /// the connection disconnects it after the last delivery; subscribing again replaces
    /// the previous receiver. `STATE` when queues are disabled
    /// (`connection_queue_capacity` 0); `LIMIT` when `connection_queue_capacity` is above
    /// [`MAX_RECEIVER_BOUND`] (the channel's room is allocated whole). Cost: O(capacity)
    /// to allocate, O(queued) to move; then one channel send per delivery.
    ///
    /// ```
    /// use presence::Engine;
    /// use std::time::Duration;
    ///
    /// let engine = Engine::from_json(None)?;
    /// engine.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#)?;
    /// let bob = engine.connect_user("bob")?;
    /// let inbox = engine.subscribe(bob)?;
    /// engine.start_watching(bob, "team:red", true)?;
    /// engine.connect_user("alice")?;
    /// // bob's own watching.start, then alice coming online.
    /// let first = inbox.recv_timeout(Duration::from_secs(1)).expect("bob watching");
    /// assert_eq!(first.event.type_name(), "user.watching.start");
    /// let second = inbox.recv_timeout(Duration::from_secs(1)).expect("alice online");
    /// assert_eq!((second.event.type_name(), second.user_id(), second.online()), ("user.presence.changed", "alice", true));
    /// # Ok::<(), presence::Error>(())
    /// ```
    pub fn subscribe(&self, connection: ConnectionId) -> Result<Receiver<Delivery>> {
        let capacity = self.config.connection_queue_capacity as usize;
        if capacity == 0 {
            return Err(Error::state("subscribe needs connection queues (connection_queue_capacity is 0)"));
        }
        let (sink, receiver) =
            crossbeam_channel::bounded(receiver_room(capacity, "connection_queue_capacity")?);
        self.lock()?.state.attach_sink(connection, sink)?;
        Ok(receiver)
    }

    /// Every event matching `filter` from now on, as a channel (own views, as host
    /// listeners see them), delivered through dispatch like a host listener (in manual
    /// mode, inside `pump`). Bounded by `pending_dispatch_capacity`: a consumer that falls
    /// that far behind is cut off (its receiver sees the channel disconnected after the
    /// last event it got), so nothing is dropped silently. Dropping the receiver ends the
    /// subscription at the next event. `INVALID` for a filter that could never match;
    /// `LIMIT` when `pending_dispatch_capacity` is above [`MAX_RECEIVER_BOUND`] (the
    /// channel's room is allocated whole). Cost: O(log listeners + that room); then one
    /// channel send per matching event.
    pub fn events(&self, filter: ListenerFilter) -> Result<Receiver<Arc<Event>>> {
        self.events_listener(filter).map(|(receiver, _)| receiver)
    }

    /// [`Engine::events`] with a guard that ends the listener when dropped, at once
    /// instead of at its next matching event: an event that may never come (a rare type,
    /// a user gone) would otherwise keep the listener, and the channel's room for
    /// `pending_dispatch_capacity` events, for the engine's life. The guard does not keep
    /// the engine alive.
    pub(crate) fn events_until_dropped(
        &self,
        filter: ListenerFilter,
    ) -> Result<(Receiver<Arc<Event>>, EventsGuard)> {
        let (receiver, id) = self.events_listener(filter)?;
        Ok((receiver, EventsGuard { engine: Arc::downgrade(&self.shared), id }))
    }

    /// The receiver of [`Engine::events`] and the id of the listener filling it.
    fn events_listener(&self, filter: ListenerFilter) -> Result<(Receiver<Arc<Event>>, ListenerId)> {
        filter.validate()?;
        let room =
            receiver_room(self.config.pending_dispatch_capacity as usize, "pending_dispatch_capacity")?;
        let (sender, receiver) = crossbeam_channel::bounded(room);
        // A full or dropped receiver ends the listener (the callback answers false).
        let id = self.add(Callback::Host(
            filter,
            Box::new(move |event: &Arc<Event>| sender.try_send(event.clone()).is_ok()),
        ));
        Ok((receiver, id))
    }
}

/// Ends the listener behind an [`Engine::events_until_dropped`] receiver when dropped
/// (nothing once the engine is gone, or the listener already ended).
pub(crate) struct EventsGuard {
    engine: Weak<Shared>,
    id: ListenerId,
}

impl Drop for EventsGuard {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.upgrade() {
            let _ = engine.unregister(self.id);
        }
    }
}

/// The largest bound a receiver takes. A receiver's channel allocates room for its whole
/// bound when it is made (16 to 24 bytes per event): a larger bound answers `LIMIT` instead
/// of aborting the process on an allocation that fails.
pub const MAX_RECEIVER_BOUND: usize = 1 << 20;

/// `bound`, the value of `setting`, when a receiver may take it; `LIMIT` otherwise.
fn receiver_room(bound: usize, setting: &str) -> Result<usize> {
    if bound > MAX_RECEIVER_BOUND {
        return Err(Error::limit(format!(
            "{setting} is {bound}: a receiver allocates room for that many events at once, so it takes at most {MAX_RECEIVER_BOUND}"
        )));
    }
    Ok(bound)
}
