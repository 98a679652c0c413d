//! Dispatch: delivering the outbox to listeners after the lock is released, in `seq`
//! order, never concurrently, and without losing items when a callback panics.
use super::listeners::Callback;
use super::Shared;
use crate::core::Outgoing;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// Items taken from the outbox for delivery. If a callback panics, what was not delivered
/// goes back to the front of the outbox, so nothing is lost.
struct Batch<'a> {
    engine: &'a Shared,
    items: VecDeque<Outgoing>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.items.is_empty() {
            let mut inner = self.engine.inner.lock();
            let mut later = std::mem::replace(&mut inner.outbox, std::mem::take(&mut self.items));
            inner.outbox.append(&mut later);
        }
    }
}

/// Resets the dispatching flag even when a callback panics.
struct DispatchGuard<'a>(&'a Cell<bool>);

impl Drop for DispatchGuard<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Shared {
    /// Delivers everything in the outbox, in order, unless this thread is already doing
    /// so further up its stack. Answers how many callbacks ran. The outbox is taken a batch
    /// at a time (one lock, one listener snapshot per batch); events that callbacks cause
    /// form the next batch.
    pub(super) fn dispatch(&self) -> u32 {
        let flag = self.dispatching.lock();
        if flag.get() {
            return 0;
        }
        flag.set(true);
        let _reset = DispatchGuard(&flag);
        let mut delivered = 0u32;
        loop {
            let mut batch = Batch { engine: self, items: std::mem::take(&mut self.inner.lock().outbox) };
            if batch.items.is_empty() {
                return delivered;
            }
            let listeners = self.listeners.lock().clone();
            while let Some(item) = batch.items.pop_front() {
                for listener in listeners.iter() {
                    let _call = listener.in_call.lock();
                    if listener.removed.load(Ordering::Acquire) {
                        continue;
                    }
                    match (&listener.callback, &item) {
                        (Callback::Host(filter, f), Outgoing::Event(e)) if filter.matches(e) => f(e),
                        (Callback::Delivery(f), Outgoing::Delivery(d)) => f(d),
                        _ => continue,
                    }
                    delivered = delivered.saturating_add(1);
                }
            }
        }
    }
}
