//! Emission: an event gets its `seq`, goes to the host listeners' outbox and into each
//! recipient's queue; connections whose queue overflowed are closed once the command is
//! done.
use super::{live, live_mut, prefetch, ConnectionRecord, Outgoing, Recipients, Slot, State, UserIdx};
use crate::event::{CloseReason, Delivery, Event, EventKind};
use crate::time::Millis;
use crate::user::View;
use std::sync::Arc;

impl State {
    /// Assigns the next `seq` and hands the event to the host-listener outbox and to each
    /// recipient's queue. `subject` is the user the event is about (recipients among their
    /// own connections get the own view). Cost: O(recipients).
    /// An event that reaches nobody (no host listeners, no recipients) is counted in `seq`
    /// but not built.
    pub(super) fn emit(&mut self, now: Millis, kind: EventKind, subject: UserIdx, recipients: Recipients) {
        self.seq += 1;
        let capacity = self.config.connection_queue_capacity as usize;
        let to_connections = (capacity > 0 || self.record_deliveries) && !self.nobody_in(&recipients);
        if !to_connections && !self.record_events {
            return;
        }
        let event = Arc::new(Event::new(self.seq, now, kind));
        if self.record_events {
            self.push_host_event(event.clone());
        }
        if !to_connections {
            return;
        }
        let mut fan_out = FanOut {
            event: &event,
            subject,
            capacity,
            record: self.record_deliveries,
            headed: self.record_events,
            outbox: &mut self.outbox,
            outbox_calls: &mut self.outbox_calls,
            overflowed: &mut self.overflowed,
        };
        match recipients {
            Recipients::SubscribersOf(u) => {
                let subscribers = &self.users[u as usize].subscribers;
                // All the records first, so their cache misses overlap: delivering takes
                // an atomic reference per recipient, which keeps later loads waiting.
                for &c in subscribers.iter() {
                    prefetch(&self.connections[c as usize]);
                }
                for &c in subscribers.iter() {
                    fan_out.deliver(&mut self.connections, c);
                }
            }
            Recipients::OwnSubscribersOf(u) => {
                for &c in self.users[u as usize].subscribers.iter() {
                    if live(&self.connections, c).user == u {
                        fan_out.deliver(&mut self.connections, c);
                    }
                }
            }
            Recipients::WatchersOf(ch) => {
                if let Some(channel) = self.channels[ch as usize].as_ref() {
                    for &c in channel.watchers.keys() {
                        fan_out.deliver(&mut self.connections, c);
                    }
                }
            }
        }
    }

    /// Whether `recipients` names no connection at all. O(1).
    fn nobody_in(&self, recipients: &Recipients) -> bool {
        match *recipients {
            Recipients::SubscribersOf(u) | Recipients::OwnSubscribersOf(u) => {
                self.users[u as usize].subscribers.is_empty()
            }
            Recipients::WatchersOf(ch) => {
                self.channels[ch as usize].as_ref().is_none_or(|c| c.watchers.is_empty())
            }
        }
    }

    /// Assigns the next `seq` to an event for host listeners only; `kind` makes it (a
    /// user snapshot, say) only when there are host listeners to take it. Cost: O(1).
    pub(super) fn emit_to_host(&mut self, now: Millis, kind: impl FnOnce(&State) -> EventKind) {
        self.seq += 1;
        if self.record_events {
            let kind = kind(self);
            self.push_host_event(Arc::new(Event::new(self.seq, now, kind)));
        }
    }

    /// Puts an event for host listeners into the outbox.
    fn push_host_event(&mut self, event: Arc<Event>) {
        self.outbox.push(Outgoing::Event { event, host: true });
        self.outbox_calls += 1;
    }

    /// Closes every connection whose queue overflowed during the command, in ascending
    /// connection id, round by round (closing one can overflow others): the order, and so
    /// which events the survivors get, never depends on hash-map iteration order.
    pub(super) fn settle(&mut self, now: Millis) {
        // `overflowed` holds slots marked during this command, and no command opens a
        // connection after marking one, so none of them can have been reused yet.
        while !self.overflowed.is_empty() {
            let mut round = std::mem::take(&mut self.overflowed);
            round.sort_unstable_by_key(|&c| self.connections[c as usize].as_ref().map(|r| r.id));
            for c in round {
                if self.connections[c as usize].is_some() {
                    self.close_connection(now, c, CloseReason::SlowConsumer);
                }
            }
        }
    }
}

/// One event on its way to its recipients.
struct FanOut<'a> {
    event: &'a Arc<Event>,
    subject: UserIdx,
    capacity: usize,
    record: bool,
    /// Whether the event is in the outbox already, to head its deliveries there.
    headed: bool,
    outbox: &'a mut Vec<Outgoing>,
    outbox_calls: &'a mut usize,
    overflowed: &'a mut Vec<Slot>,
}

impl FanOut<'_> {
    /// Queues the event for connection `c` (own view when it belongs to the subject) and
    /// records the delivery for listeners; a full queue marks the connection overflowed
    /// instead. O(1). Always inlined: this is the fan-out's inner loop, and a call per
    /// recipient cost as much as the work.
    #[inline(always)]
    fn deliver(&mut self, connections: &mut [Option<ConnectionRecord>], c: Slot) {
        let conn = live_mut(connections, c);
        if conn.overflowed {
            return;
        }
        let view = if conn.user == self.subject { View::Own } else { View::Public };
        let connection = conn.id;
        if self.capacity > 0
            && !conn.enqueue(Delivery { event: self.event.clone(), connection, view }, self.capacity)
        {
            conn.overflowed = true;
            self.overflowed.push(c);
            return;
        }
        if self.record {
            if !self.headed {
                self.outbox.push(Outgoing::Event { event: self.event.clone(), host: false });
                self.headed = true;
            }
            self.outbox.push(Outgoing::Delivery { connection, view });
            *self.outbox_calls += 1;
        }
    }
}
