//! Listeners: host callbacks for events (with a filter) and delivery callbacks for each
//! (event, recipient connection); adding and removing them, and telling the core what to
//! record for them.
use super::Engine;
use crate::error::{Error, Result};
use crate::event::{Delivery, Event};
use parking_lot::ReentrantMutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Identifies a listener for removal; never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u64);

/// Which events a host listener receives. `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerFilter {
    /// An event type such as `user.presence.changed`.
    pub event_type: Option<String>,
    /// Only events about this user (the Unity-style `user.PresenceChanged`).
    pub user_id: Option<String>,
}

impl ListenerFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }
    /// Events of one type.
    pub fn event_type(t: impl Into<String>) -> Self {
        ListenerFilter { event_type: Some(t.into()), user_id: None }
    }
    /// Events about one user.
    pub fn user(id: impl Into<String>) -> Self {
        ListenerFilter { event_type: None, user_id: Some(id.into()) }
    }
    pub(super) fn matches(&self, event: &Event) -> bool {
        self.event_type.as_deref().is_none_or(|t| t == event.type_name())
            && self.user_id.as_deref().is_none_or(|u| u == event.user_id())
    }
}

type EventCallback = Box<dyn Fn(&Event) + Send + Sync>;
type DeliveryCallback = Box<dyn Fn(&Delivery) + Send + Sync>;

pub(super) enum Callback {
    Host(ListenerFilter, EventCallback),
    Delivery(DeliveryCallback),
}

pub(super) struct Listener {
    id: ListenerId,
    /// Set on removal so a snapshot taken before it never calls the listener again.
    pub(super) removed: AtomicBool,
    /// Held around each call (checked `removed` inside), so `remove_listener` can wait
    /// out a call in flight on another thread. Re-entrant: a callback may remove itself.
    pub(super) in_call: ReentrantMutex<()>,
    pub(super) callback: Callback,
}

impl Engine {
    fn add(&self, callback: Callback) -> ListenerId {
        let id = ListenerId(self.next_listener.fetch_add(1, Ordering::Relaxed));
        let mut listeners = self.listeners.lock();
        let mut next: Vec<Arc<Listener>> = listeners.as_ref().clone();
        next.push(Arc::new(Listener {
            id,
            removed: AtomicBool::new(false),
            in_call: ReentrantMutex::new(()),
            callback,
        }));
        *listeners = Arc::new(next);
        self.update_recording(&listeners);
        id
    }

    /// Tells the core which kinds of outgoing items anyone listens for, so an engine without
    /// listeners does not queue them.
    fn update_recording(&self, listeners: &[Arc<Listener>]) {
        let events = listeners.iter().any(|l| matches!(l.callback, Callback::Host(..)));
        let deliveries = listeners.iter().any(|l| matches!(l.callback, Callback::Delivery(..)));
        let mut inner = self.inner.lock();
        inner.state.record_events = events;
        inner.state.record_deliveries = deliveries;
    }

    /// Calls `callback` for every event matching `filter` emitted from now on, with the
    /// own view of users. Cost: O(listeners).
    pub fn add_listener(
        &self,
        filter: ListenerFilter,
        callback: impl Fn(&Event) + Send + Sync + 'static,
    ) -> ListenerId {
        self.add(Callback::Host(filter, Box::new(callback)))
    }

    /// Calls `callback` once per (event, recipient connection). Cost: O(listeners).
    pub fn add_delivery_listener(&self, callback: impl Fn(&Delivery) + Send + Sync + 'static) -> ListenerId {
        self.add(Callback::Delivery(Box::new(callback)))
    }

    /// Removes a listener; it is never called again once this returns (even for an event
    /// being dispatched right now on another thread: this waits for such a call to end).
    /// Cost: O(listeners).
    pub fn remove_listener(&self, id: ListenerId) -> Result<()> {
        let found = {
            let mut listeners = self.listeners.lock();
            let Some(found) = listeners.iter().find(|l| l.id == id).cloned() else {
                return Err(Error::not_found(format!("unknown listener {}", id.0)));
            };
            found.removed.store(true, Ordering::Release);
            let next: Vec<Arc<Listener>> = listeners.iter().filter(|l| l.id != id).cloned().collect();
            *listeners = Arc::new(next);
            self.update_recording(&listeners);
            found
        };
        // Wait out a call in flight on another thread (without holding the listener list,
        // which that call may need); from inside the listener's own call this returns at once.
        drop(found.in_call.lock());
        Ok(())
    }
}
