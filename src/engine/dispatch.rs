//! Dispatch: delivering the outbox to listeners after the lock is released.
//!
//! The rules, and how they hold:
//! - Callbacks never run concurrently: one thread at a time holds the dispatch token.
//! - No thread waits for another thread's callbacks: a thread that finds the token taken
//!   leaves its items in the outbox and returns; the holder delivers them, or, past its
//!   budget, the next call or `pump` does.
//! - Order: the outbox is in `seq` order and is delivered from the front, so every
//!   listener sees its events in `seq` order.
//! - Bounded work per call: a run delivers at most what its own call queued plus
//!   [`EXTRA_ITEMS`] more (events that callbacks cause, or other threads' leftovers).
//!   Calls made from inside a callback never dispatch themselves (the token is taken), so
//!   re-entry is one level deep, and a callback that emits on every call cannot hold a
//!   thread forever.
//! - Runs: a run listener (the typed C delivery listener, which describes each event
//!   once for all its recipients) gets an event's consecutive deliveries in one call when
//!   it is the only delivery listener, and one at a time otherwise, so that delivery
//!   listeners still take turns per delivery. It checks for removal before each one.
//! - A panicking Rust listener is caught per call, counted, and its message kept for
//!   [`Engine::listener_panics`]; delivery goes on with the next listener.
use super::listeners::{Callback, DeliveryRun, Listener, ListenerId};
use super::{Engine, Inner, Shared};
use crate::core::Outgoing;
use crate::error::panic_message;
use crate::event::Delivery;
use parking_lot::{Mutex, MutexGuard};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many outbox items a dispatch run may deliver beyond those its own call queued.
pub const EXTRA_ITEMS: usize = 1024;
/// Outbox items taken per lock.
const CHUNK: usize = 256;

thread_local! {
    /// Addresses of the engines whose callbacks this thread is running.
    static DISPATCHING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// What listener panics an engine has caught.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerPanics {
    /// How many listener calls panicked since the engine was created.
    pub count: u64,
    /// The message of the latest one (with the listener id), if any.
    pub last_message: Option<String>,
}

#[derive(Default)]
pub(super) struct Dispatcher {
    /// Held by the one thread delivering; others only ever try to take it.
    token: Mutex<Scratch>,
    /// Items that calls finding the token taken left to its holder (their own items).
    handed: std::sync::atomic::AtomicUsize,
    /// The listener whose callback is running (0: none), for `remove_listener` to wait on.
    calling: AtomicU64,
    /// How many times a command appended items to the outbox; written only under the
    /// engine's lock (see `Shared::appended`).
    filled: AtomicU64,
    panics: Mutex<ListenerPanics>,
}

/// Buffers reused from run to run, so steady-state dispatch does not allocate.
#[derive(Default)]
struct Scratch {
    items: Vec<Outgoing>,
    /// Host listener calls, tagged with the position of their item.
    calls: Vec<(u32, Arc<Listener>)>,
    /// The delivery listeners, taken once per chunk of items rather than per delivery.
    deliveries: Vec<Arc<Listener>>,
}

/// Marks this thread as running the callbacks of one engine while alive.
struct Running(usize);

impl Running {
    fn enter(engine: &Shared) -> Running {
        let key = engine.key();
        DISPATCHING.with(|d| d.borrow_mut().push(key));
        Running(key)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        DISPATCHING.with(|d| {
            let mut d = d.borrow_mut();
            if let Some(at) = d.iter().rposition(|&k| k == self.0) {
                d.remove(at);
            }
        });
    }
}

impl Shared {
    fn key(&self) -> usize {
        self as *const Shared as usize
    }

    /// Counts an append to the outbox. Called with the engine's lock held (so a plain
    /// increment suffices), after the append.
    pub(super) fn appended(&self) {
        let filled = &self.dispatcher.filled;
        filled.store(filled.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// Whether the calling thread is inside a callback of this engine.
    pub(crate) fn dispatching_here(&self) -> bool {
        let key = self.key();
        DISPATCHING.with(|d| d.borrow().contains(&key))
    }

    /// Delivers up to `budget` outbox items, from the front, unless another thread (or
    /// this one, further up its stack) is delivering. Answers how many callbacks ran.
    pub(super) fn dispatch(&self, budget: usize) -> u32 {
        self.dispatch_from(budget, None)
    }

    /// [`Shared::dispatch`] for a command that holds the engine's lock (`inner`) after
    /// queueing its items: the run's first take uses that hold instead of locking again.
    pub(super) fn dispatch_locked(&self, budget: usize, inner: MutexGuard<'_, Inner>) -> u32 {
        self.dispatch_from(budget, Some(inner))
    }

    fn dispatch_from(&self, mut budget: usize, mut locked: Option<MutexGuard<'_, Inner>>) -> u32 {
        let mut delivered = 0u32;
        loop {
            let Some(mut scratch) = self.dispatcher.token.try_lock() else {
                drop(locked);
                // Another thread's holder delivers what this call caused on top of its own
                // budget; what callbacks cause (token held further up this thread's stack)
                // stays within the extra bound.
                if !self.dispatching_here() {
                    self.dispatcher.handed.fetch_add(budget.saturating_sub(EXTRA_ITEMS), Ordering::SeqCst);
                }
                return delivered;
            };
            let running = Running::enter(self);
            // `Some(filled)` when the last take left the outbox empty, with the count of
            // appends it saw then.
            let mut emptied_at = None;
            loop {
                if budget == 0 {
                    budget = self.dispatcher.handed.swap(0, Ordering::SeqCst);
                    if budget == 0 {
                        break;
                    }
                }
                let (taken, emptied, filled) =
                    self.take_items(locked.take(), &mut scratch.items, budget.min(CHUNK));
                emptied_at = emptied.then_some(filled);
                if taken == 0 {
                    break;
                }
                budget = budget.saturating_sub(taken);
                delivered = delivered.saturating_add(self.deliver(&mut scratch));
                if emptied {
                    // What the callbacks queued meanwhile is found by the checks below,
                    // which are needed anyway: one lock fewer per run.
                    break;
                }
            }
            drop(locked.take());
            drop(running);
            drop(scratch);
            // Items queued by a thread that found the token taken just before it was
            // released would otherwise wait for the next call.
            if self.dispatcher.handed.load(Ordering::SeqCst) != 0 {
                budget += self.dispatcher.handed.swap(0, Ordering::SeqCst);
            }
            // An outbox emptied by this run and appended to by no command since (on this
            // thread from a callback, or on another) is still empty: no need to lock to see.
            let untouched = emptied_at == Some(self.dispatcher.filled.load(Ordering::Acquire));
            if budget == 0 || untouched || self.inner.lock().outbox.is_empty() {
                return delivered;
            }
        }
    }

    /// Moves up to `max` items from the front of the outbox into `items` (see
    /// `Inner::take_front`), under `locked` when given (else locking); answers how many,
    /// whether that emptied the outbox, and how many appends to the outbox there had been.
    fn take_items(
        &self,
        locked: Option<MutexGuard<'_, Inner>>,
        items: &mut Vec<Outgoing>,
        max: usize,
    ) -> (usize, bool, u64) {
        let mut inner = locked.unwrap_or_else(|| self.inner.lock());
        let (taken, emptied) = inner.take_front(self.config.clock, items, max);
        (taken, emptied, self.dispatcher.filled.load(Ordering::Relaxed))
    }

    /// Calls the listeners of the items in `scratch`, in order, then clears it. Each
    /// event's deliveries reach delivery listeners through one reused [`Delivery`], so a
    /// delivery copies no reference to its event.
    fn deliver(&self, scratch: &mut Scratch) -> u32 {
        let Scratch { items, calls, deliveries } = scratch;
        {
            let registry = self.listeners.lock();
            let mut has_deliveries = false;
            for (i, item) in items.iter().enumerate() {
                match item {
                    Outgoing::Event { event, host: true } => registry.host_calls(event, i as u32, calls),
                    Outgoing::Event { host: false, .. } => {}
                    Outgoing::Delivery { .. } => has_deliveries = true,
                }
            }
            if has_deliveries {
                registry.delivery_listeners(deliveries);
            }
        }
        let mut ran = 0u32;
        let mut host = calls.drain(..).peekable();
        let mut frame: Option<Delivery> = None;
        // A lone run listener gets each event's deliveries in one call.
        let lone_run = match deliveries.as_slice() {
            [only] if matches!(only.callback, Callback::DeliveryRun(_)) => Some(only),
            _ => None,
        };
        let mut walk = items.iter().enumerate();
        while let Some((i, item)) = walk.next() {
            match item {
                Outgoing::Event { event, .. } => {
                    while let Some((_, listener)) = host.next_if(|(at, _)| *at == i as u32) {
                        ran += u32::from(self.call(&listener, |callback| match callback {
                            Callback::Host(_, f) => f(event),
                            _ => true,
                        }));
                    }
                    if let Some(listener) = &lone_run {
                        let rest = &items[i + 1..];
                        let run =
                            rest.iter().take_while(|item| matches!(item, Outgoing::Delivery { .. })).count();
                        if run > 0 {
                            if listener.wants(event) {
                                let run = DeliveryRun::of_items(event, &rest[..run], &listener.removed);
                                self.call(listener, |callback| {
                                    if let Callback::DeliveryRun(f) = callback {
                                        f(&run);
                                    }
                                    true
                                });
                                ran += run.handed();
                            }
                            walk.nth(run - 1);
                        }
                        continue;
                    }
                    if let Some(&Outgoing::Delivery { connection, view }) = items.get(i + 1) {
                        frame = Some(Delivery { event: event.clone(), connection, view });
                    }
                }
                &Outgoing::Delivery { connection, view } => {
                    // Every delivery follows its event (the outbox never starts with one).
                    let Some(d) = frame.as_mut() else { continue };
                    d.connection = connection;
                    d.view = view;
                    for listener in deliveries.iter() {
                        if listener.wants(&d.event) {
                            ran += u32::from(self.call(listener, |callback| {
                                match callback {
                                    Callback::Delivery(f) => f(d),
                                    // Among other delivery listeners: a run of one, so
                                    // the listeners' calls still alternate.
                                    Callback::DeliveryRun(f) => f(&DeliveryRun::of_one(d, &listener.removed)),
                                    Callback::Host(..) => {}
                                }
                                true
                            }));
                        }
                    }
                }
            }
        }
        drop(host);
        // No callback of this run is in progress any more. (Release: a remover that sees
        // it also sees everything the calls did; the SeqCst pairing with `removed` is
        // needed only when a call is announced.)
        self.dispatcher.calling.store(0, Ordering::Release);
        deliveries.clear();
        items.clear();
        ran
    }

    /// Calls one listener through `invoke` (which answers whether it stays registered)
    /// unless it was removed; a panic is caught and recorded. Always inlined into the
    /// delivery loop: the call itself cost a third of a delivery.
    #[inline(always)]
    fn call(&self, listener: &Listener, invoke: impl FnOnce(&Callback) -> bool) -> bool {
        // Announce the call before checking `removed` (and `remove_listener` sets `removed`
        // before reading `calling`), so a remover either sees this call or stops it. Only
        // the token's holder writes `calling`, and it stays announced across consecutive
        // calls of one listener (until `deliver` ends): a remover waits at most for the
        // calls of this chunk, each of which finds `removed` set and is skipped.
        if self.dispatcher.calling.load(Ordering::Relaxed) != listener.id.0 {
            self.dispatcher.calling.store(listener.id.0, Ordering::SeqCst);
        }
        if listener.removed.load(Ordering::SeqCst) {
            return false;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| invoke(&listener.callback)));
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                let _ = self.unregister(listener.id);
            }
            Err(payload) => self.record_panic(listener.id, payload.as_ref()),
        }
        true
    }

    fn record_panic(&self, id: ListenerId, payload: &(dyn std::any::Any + Send)) {
        let message = panic_message(payload);
        let mut panics = self.dispatcher.panics.lock();
        panics.count += 1;
        panics.last_message = Some(format!("listener {} panicked: {message}", id.0));
    }

    /// Waits until listener `id` is not running on another thread.
    pub(super) fn wait_out_call(&self, id: ListenerId) {
        let mut spins = 0u32;
        while self.dispatcher.calling.load(Ordering::SeqCst) == id.0 {
            if spins < 64 {
                std::thread::yield_now();
                spins += 1;
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }
}

impl Engine {
    /// How many listener calls panicked, and the latest message. A panicking listener
    /// never fails the call that caused its event: the change stays committed and the
    /// other listeners still get the event. Cost: O(1).
    pub fn listener_panics(&self) -> ListenerPanics {
        self.dispatcher.panics.lock().clone()
    }
}
