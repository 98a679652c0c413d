//! Listeners: host callbacks for events (with a filter) and delivery callbacks for each
//! (event, recipient connection); adding and removing them, and telling the core what to
//! record for them.
//!
//! The registry indexes host listeners by the user their filter names, so an event costs
//! the listeners that can match it, not every listener; adding or removing one is
//! O(log listeners). Each listener remembers the `seq` current when it was added and is
//! only ever handed later events.
use super::{Engine, Shared};
use crate::core::Outgoing;
use crate::error::{Error, Result};
use crate::event::{ConnectionId, Delivery, Event, EventKind};
use crate::user::{validate_user_id, View};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Identifies a listener for removal; never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

    /// `INVALID` for a filter that could never match: an unknown event type (the message
    /// names the known ones) or a user id the engine would never accept.
    pub(super) fn validate(&self) -> Result<()> {
        if let Some(t) = self.event_type.as_deref() {
            if !EventKind::TYPES.iter().any(|&(_, name)| name == t) {
                let known: Vec<&str> = EventKind::TYPES.iter().map(|&(_, name)| name).collect();
                let shown: String = t.chars().take(64).collect();
                let cut = if shown.len() < t.len() { format!(" ({} bytes)", t.len()) } else { String::new() };
                return Err(Error::invalid(format!(
                    "unknown event type {shown:?}{cut}; known types: {}",
                    known.join(", ")
                )));
            }
        }
        if let Some(u) = self.user_id.as_deref() {
            validate_user_id(u).map_err(|e| Error::invalid(format!("user id filter: {}", e.message())))?;
        }
        Ok(())
    }

    fn matches_type(&self, event: &Event) -> bool {
        self.event_type.as_deref().is_none_or(|t| t == event.type_name())
    }
}

/// Answers whether the listener stays registered.
type EventCallback = Box<dyn Fn(&Arc<Event>) -> bool + Send + Sync>;
type DeliveryCallback = Box<dyn Fn(&Delivery) + Send + Sync>;
type DeliveryRunCallback = Box<dyn Fn(&DeliveryRun<'_>) + Send + Sync>;

pub(super) enum Callback {
    Host(ListenerFilter, EventCallback),
    Delivery(DeliveryCallback),
    /// A delivery listener called once per run of an event's deliveries.
    DeliveryRun(DeliveryRunCallback),
}

/// Deliveries of one event, in the order a delivery listener is to get them: all of the
/// event's recipients in a dispatch chunk when the listener is the only delivery listener,
/// else one (the calls of several listeners interleave per delivery). A listener that
/// describes an event does so once per run instead of once per delivery. A panic in the
/// listener (which only a bug of the engine's own run listener could cause) ends its run.
pub(crate) struct DeliveryRun<'a> {
    pub(crate) event: &'a Arc<Event>,
    recipients: RunRecipients<'a>,
    /// The listener's removal flag: a listener removed during the run gets no more of it.
    removed: &'a AtomicBool,
    /// How many deliveries `for_each` handed out.
    handed: Cell<u32>,
}

enum RunRecipients<'a> {
    /// Only `Outgoing::Delivery` items.
    Items(&'a [Outgoing]),
    One(ConnectionId, View),
}

impl<'a> DeliveryRun<'a> {
    /// The deliveries `items` of `event`.
    pub(super) fn of_items(event: &'a Arc<Event>, items: &'a [Outgoing], removed: &'a AtomicBool) -> Self {
        DeliveryRun { event, recipients: RunRecipients::Items(items), removed, handed: Cell::new(0) }
    }

    /// The one delivery `d`.
    pub(super) fn of_one(d: &'a Delivery, removed: &'a AtomicBool) -> Self {
        let recipients = RunRecipients::One(d.connection, d.view);
        DeliveryRun { event: &d.event, recipients, removed, handed: Cell::new(0) }
    }

    /// How many deliveries the run holds.
    pub(crate) fn len(&self) -> usize {
        match self.recipients {
            RunRecipients::Items(items) => items.len(),
            RunRecipients::One(..) => 1,
        }
    }

    /// Calls `f` with each recipient and its view, in order, until the listener is removed.
    pub(crate) fn for_each(&self, mut f: impl FnMut(ConnectionId, View)) {
        let mut hand = |connection, view| {
            if self.removed.load(Ordering::SeqCst) {
                return false;
            }
            self.handed.set(self.handed.get() + 1);
            f(connection, view);
            true
        };
        match self.recipients {
            RunRecipients::Items(items) => {
                for item in items {
                    if let Outgoing::Delivery { connection, view } = *item {
                        if !hand(connection, view) {
                            return;
                        }
                    }
                }
            }
            RunRecipients::One(connection, view) => {
                hand(connection, view);
            }
        }
    }

    pub(super) fn handed(&self) -> u32 {
        self.handed.get()
    }
}

pub(super) struct Listener {
    pub(super) id: ListenerId,
    /// The `seq` current when the listener was added: it sees only later events.
    pub(super) after_seq: u64,
    /// Set on removal so a call already collected for dispatch is skipped.
    pub(super) removed: AtomicBool,
    pub(super) callback: Callback,
}

impl Listener {
    /// Whether this listener is to be called for `item`'s event.
    pub(super) fn wants(&self, event: &Event) -> bool {
        event.seq > self.after_seq
            && match &self.callback {
                Callback::Host(filter, _) => filter.matches_type(event),
                Callback::Delivery(_) | Callback::DeliveryRun(_) => true,
            }
    }
}

/// Listeners in the order they were added.
type Ordered = BTreeMap<ListenerId, Arc<Listener>>;

/// Every listener of an engine, indexed for dispatch.
#[derive(Default)]
pub(super) struct Registry {
    /// Which list each listener is in, for removal.
    by_id: HashMap<ListenerId, Option<Arc<str>>>,
    /// Host listeners without a user filter.
    any_user: Ordered,
    /// Host listeners with a user filter, by that user.
    by_user: HashMap<Arc<str>, Ordered>,
    deliveries: Ordered,
}

impl Registry {
    fn insert(&mut self, listener: Arc<Listener>) {
        let id = listener.id;
        let user = match &listener.callback {
            Callback::Host(ListenerFilter { user_id: Some(u), .. }, _) => Some(Arc::<str>::from(u.as_str())),
            _ => None,
        };
        match (&listener.callback, &user) {
            (Callback::Host(..), Some(u)) => {
                self.by_user.entry(u.clone()).or_default().insert(id, listener);
            }
            (Callback::Host(..), None) => {
                self.any_user.insert(id, listener);
            }
            (Callback::Delivery(_) | Callback::DeliveryRun(_), _) => {
                self.deliveries.insert(id, listener);
            }
        }
        self.by_id.insert(id, user);
    }

    fn remove(&mut self, id: ListenerId) -> Option<Arc<Listener>> {
        let user = self.by_id.remove(&id)?;
        let removed = match user {
            Some(u) => {
                let bucket = self.by_user.get_mut(&u).expect("a user-filtered listener has its bucket");
                let removed = bucket.remove(&id);
                if bucket.is_empty() {
                    self.by_user.remove(&u);
                }
                removed
            }
            None => self.any_user.remove(&id).or_else(|| self.deliveries.remove(&id)),
        };
        removed.inspect(|l| l.removed.store(true, Ordering::SeqCst))
    }

    /// Has the core record host events and deliveries only while some listener takes
    /// them (an event that reaches nobody is then not built). Called under the state lock
    /// after every change to the registry.
    pub(super) fn set_recording(&self, state: &mut crate::core::State) {
        state.record_events = !self.any_user.is_empty() || !self.by_user.is_empty();
        state.record_deliveries = !self.deliveries.is_empty();
    }

    /// Appends to `calls` the host listeners that want `event`, in the order they were
    /// added, tagged with `item`. Cost: O(listeners without a user filter + listeners of
    /// the event's user).
    pub(super) fn host_calls(&self, event: &Event, item: u32, calls: &mut Vec<(u32, Arc<Listener>)>) {
        let mut any = self.any_user.values().peekable();
        let mut mine =
            event.user_id().and_then(|u| self.by_user.get(u)).into_iter().flat_map(|b| b.values()).peekable();
        loop {
            let next = match (any.peek(), mine.peek()) {
                (Some(a), Some(m)) if m.id < a.id => mine.next(),
                (Some(_), _) => any.next(),
                (None, Some(_)) => mine.next(),
                (None, None) => return,
            };
            let listener = next.expect("peeked");
            if listener.wants(event) {
                calls.push((item, listener.clone()));
            }
        }
    }

    /// Appends the delivery listeners to `out`, in the order they were added. Cost:
    /// O(delivery listeners).
    pub(super) fn delivery_listeners(&self, out: &mut Vec<Arc<Listener>>) {
        out.extend(self.deliveries.values().cloned());
    }
}

impl Engine {
    pub(super) fn add(&self, callback: Callback) -> ListenerId {
        let id = ListenerId(self.next_listener.fetch_add(1, Ordering::Relaxed));
        let mut registry = self.listeners.lock();
        // The seq is read and the recording switched on under the state lock, so the
        // listener gets exactly the events committed after this point.
        let mut inner = self.inner.lock();
        let listener = Arc::new(Listener {
            id,
            after_seq: inner.state.seq(),
            removed: AtomicBool::new(false),
            callback,
        });
        registry.insert(listener);
        registry.set_recording(&mut inner.state);
        id
    }

    /// Calls `callback` for every event matching `filter` emitted from now on, with the
    /// own view of users. `INVALID` for an unknown event type (the message names the known
    /// ones) or a user id that could never be valid. Cost: O(log listeners).
    pub fn add_listener(
        &self,
        filter: ListenerFilter,
        callback: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Result<ListenerId> {
        filter.validate()?;
        Ok(self.add_listener_unchecked(filter, callback))
    }

    /// [`Engine::add_listener`] without refusing a filter that could never match: such a
    /// listener is registered (and removable) but never called. ABI version 1's
    /// `presence_add_listener` accepted every filter, and still does.
    pub(crate) fn add_listener_unchecked(
        &self,
        filter: ListenerFilter,
        callback: impl Fn(&Event) + Send + Sync + 'static,
    ) -> ListenerId {
        self.add(Callback::Host(
            filter,
            Box::new(move |event: &Arc<Event>| {
                callback(event);
                true
            }),
        ))
    }

    /// Calls `callback` once per (event, recipient connection) for events emitted from now
    /// on. Cost: O(log listeners).
    pub fn add_delivery_listener(&self, callback: impl Fn(&Delivery) + Send + Sync + 'static) -> ListenerId {
        self.add(Callback::Delivery(Box::new(callback)))
    }

    /// A delivery listener called per [`DeliveryRun`]: the same deliveries in the same
    /// order as [`Engine::add_delivery_listener`]'s, grouped by event.
    pub(crate) fn add_delivery_run_listener(
        &self,
        callback: impl Fn(&DeliveryRun<'_>) + Send + Sync + 'static,
    ) -> ListenerId {
        self.add(Callback::DeliveryRun(Box::new(callback)))
    }

    /// Removes a listener. Once this returns the listener is never called again: if its
    /// callback is running on another thread right now, this waits for that one call to
    /// return (and for no other callback: at most until the dispatching thread moves on
    /// from this listener). Called from inside a callback of this engine it never waits
    /// (the call in progress on this thread, if it is the listener's own, finishes
    /// normally). Use [`Engine::remove_listener_nowait`] where waiting could deadlock, for
    /// example while holding a lock the callback takes. Cost: O(log listeners), plus the
    /// wait.
    pub fn remove_listener(&self, id: ListenerId) -> Result<()> {
        self.unregister(id)?;
        if !self.dispatching_here() {
            self.wait_out_call(id);
        }
        Ok(())
    }

    /// Removes a listener without waiting: it is never called again after a call already
    /// running on another thread (if any) returns. Cost: O(log listeners).
    pub fn remove_listener_nowait(&self, id: ListenerId) -> Result<()> {
        self.unregister(id).map(drop)
    }
}

impl Shared {
    /// Unregisters and drops every listener while the engine is still whole, for an engine
    /// about to be freed: what their drop runs (a C `user_data` finalizer) may call back
    /// into the engine. Listeners added meanwhile go too. Cost: O(listeners).
    pub(crate) fn drop_listeners(&self) {
        loop {
            let dropped: Vec<Arc<Listener>> = {
                let mut registry = self.listeners.lock();
                let ids: Vec<ListenerId> = registry.by_id.keys().copied().collect();
                let dropped = ids.into_iter().filter_map(|id| registry.remove(id)).collect();
                registry.set_recording(&mut self.inner.lock().state);
                dropped
            };
            if dropped.is_empty() {
                return;
            }
            // Outside the locks: a finalizer may call into the engine.
            drop(dropped);
        }
    }

    pub(super) fn unregister(&self, id: ListenerId) -> Result<Arc<Listener>> {
        let mut registry = self.listeners.lock();
        let found =
            registry.remove(id).ok_or_else(|| Error::not_found(format!("unknown listener {}", id.0)))?;
        registry.set_recording(&mut self.inner.lock().state);
        Ok(found)
    }
}
