//! Connections: opening, closing (by the host, by timeout, as a slow consumer), heartbeats
//! and each connection's event queue.
use super::replication::patch_fields;
use super::{place, prefetch, ConnectionRecord, OptMillis, Slot, State, Timer};
use crate::config::deadline_after;
use crate::error::{quote, Error, Result};
use crate::event::{CloseReason, ConnectionId, Delivery, EventKind};
use crate::replication::ConnectionChange;
use crate::time::Millis;
use crate::user::UserChanges;
use crossbeam_channel::Sender;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::VecDeque;
use thin_vec::ThinVec;

impl State {
    /// Upserts the user in `patch` and opens a connection for them. The first connection of
    /// a visible user emits `user.presence.changed` (online); later ones emit nothing.
    /// Cost: O(size of the input + subscribers of the user + log(timers)).
    pub fn connect(&mut self, now: Millis, user_id: &str, changes: UserChanges) -> Result<ConnectionId> {
        let existing = self.find_user(user_id);
        if let Some(u) = existing {
            // Read again when the connection's presence change fans out.
            prefetch(self.users[u as usize].subscribers.as_ptr());
            let max = self.config.max_connections_per_user as usize;
            if self.users[u as usize].connections.len() >= max {
                return Err(Error::limit(format!(
                    "user {} already holds {max} connections (max_connections_per_user)",
                    quote(user_id)
                )));
            }
        }
        let (u, before, custom_changed) = self.patch_user(now, user_id, changes, existing)?;
        let id = ConnectionId(self.next_connection);
        self.next_connection += 1;
        let record = ConnectionRecord {
            id,
            user: u,
            last_seen: now,
            watching: ThinVec::new(),
            subscriptions: HashMap::new(),
            queue: VecDeque::new(),
            sink: None,
            overflowed: false,
        };
        let c = place(&mut self.connections, &mut self.free_slots, record);
        self.connection_slots.insert(id, c);
        let user = &mut self.users[u as usize];
        user.connections.push(c);
        user.grace_until = OptMillis::NONE;
        if !user.invisible {
            user.last_active = OptMillis(now);
            self.arm_refresh(now, u);
        }
        self.replicate(now, u, Some(ConnectionChange::Opened(id)), || patch_fields(changes));
        self.user_changed(now, u, before, custom_changed);
        if self.config.connection_timeout_ms > 0 {
            if let Some(due) = deadline_after(now, self.config.connection_timeout_ms) {
                self.timers.push(Reverse((due, Timer::Timeout(id))));
            }
        }
        self.settle(now);
        Ok(id)
    }

    /// Closes a connection as the host asked. Cost: O(channels it watched + users it was
    /// subscribed to + subscribers of its user).
    pub fn disconnect(&mut self, now: Millis, c: ConnectionId) -> Result<()> {
        let c = self.slot(c)?;
        self.close_connection(now, c, CloseReason::Disconnect);
        self.settle(now);
        Ok(())
    }

    /// Records a sign of life. Cost: O(1).
    pub fn heartbeat(&mut self, now: Millis, c: ConnectionId) -> Result<()> {
        let c = self.slot(c)?;
        self.conn_mut(c).last_seen = now;
        Ok(())
    }

    pub(super) fn close_connection(&mut self, now: Millis, c: Slot, reason: CloseReason) {
        let u = self.conn(c).user;
        // The whole list at once: removing entries one by one would be wasted work.
        let watching = std::mem::take(&mut self.conn_mut(c).watching);
        for ch in watching {
            if let Some(watcher) = self.channel_mut(ch).watchers.remove(&c) {
                self.watch_ended(now, c, ch, watcher.presence);
            }
        }
        let conn = self.connections[c as usize].take().expect("closing a live connection");
        if !self.dropped_watches.is_empty() {
            self.dropped_watches.retain(|(id, _), _| *id != conn.id);
        }
        self.connection_slots.remove(&conn.id);
        self.free_slots.push(c);
        for (&s, sub) in &conn.subscriptions {
            self.remove_subscriber(s, sub.pos);
        }
        let before = self.presence_before(u);
        let user = &mut self.users[u as usize];
        user.connections.retain(|&x| x != c);
        if user.connections.is_empty() {
            if !user.invisible {
                user.last_active = OptMillis(now);
            }
            // Only a user others saw online lingers: an invisible session ends unseen.
            if self.config.offline_grace_ms > 0 && !user.invisible {
                // A grace without an end keeps the user online until they reconnect.
                let due = deadline_after(now, self.config.offline_grace_ms);
                user.grace_until = OptMillis(due.unwrap_or(Millis::MAX));
                if let Some(due) = due {
                    self.timers.push(Reverse((due, Timer::Grace(u))));
                }
            }
        }
        self.replicate(now, u, Some(ConnectionChange::Closed(conn.id)), Vec::new);
        self.user_changed(now, u, before, false);
        self.emit_to_host(now, |s| EventKind::ConnectionClosed {
            connection: conn.id,
            user: s.users[u as usize].snapshot(),
            reason,
        });
    }

    /// Sends the connection's deliveries to `sink` from now on, starting with those
    /// already queued (they fit: the sink has the queue's capacity). Replaces an earlier
    /// sink, whose receiver then sees the channel disconnected. Cost: O(queued).
    pub fn attach_sink(&mut self, c: ConnectionId, sink: Sender<Delivery>) -> Result<()> {
        let c = self.slot(c)?;
        let conn = self.conn_mut(c);
        for delivery in conn.queue.drain(..) {
            sink.try_send(delivery).expect("a fresh sink holds a full queue");
        }
        conn.sink = Some(sink);
        Ok(())
    }

    /// Drains up to `max` queued deliveries of a connection, oldest first. Cost: O(max).
    pub fn poll(&mut self, c: ConnectionId, max: usize) -> Result<Vec<Delivery>> {
        let c = self.slot(c)?;
        let queue = &mut self.conn_mut(c).queue;
        let n = max.min(queue.len());
        Ok(queue.drain(..n).collect())
    }

    /// Moves up to `max` queued deliveries of `c` onto the end of `out`, oldest first,
    /// answering how many moved. When `out` is empty and every queued delivery is asked
    /// for, the queue and `out` trade places (the connection keeps `out`'s room): O(1),
    /// the usual case of a host draining each frame. Otherwise O(moved), allocating
    /// nothing once `out` has room.
    pub fn poll_into(&mut self, c: ConnectionId, max: usize, out: &mut VecDeque<Delivery>) -> Result<usize> {
        let c = self.slot(c)?;
        let queue = &mut self.conn_mut(c).queue;
        let n = max.min(queue.len());
        if out.is_empty() && n == queue.len() {
            std::mem::swap(queue, out);
        } else {
            move_front(queue, n, out);
        }
        Ok(n)
    }

    /// Moves up to `max_each` queued deliveries of each of `connections`, in list order
    /// and oldest first, onto the end of `out`, answering how many moved. Every id is
    /// checked before anything moves: an unknown one fails the call with nothing moved.
    /// Cost: O(connections + moved), allocating nothing once `out` has room.
    pub fn poll_many_into(
        &mut self,
        connections: &[ConnectionId],
        max_each: usize,
        out: &mut VecDeque<Delivery>,
    ) -> Result<usize> {
        let mut slots = std::mem::take(&mut self.poll_slots);
        slots.clear();
        let found = connections.iter().try_for_each(|&c| {
            slots.push(self.slot(c)?);
            Ok(())
        });
        let mut moved = 0;
        if found.is_ok() {
            for &c in &slots {
                let queue = &mut self.conn_mut(c).queue;
                let n = max_each.min(queue.len());
                move_front(queue, n, out);
                moved += n;
            }
        }
        // The room is kept for the next call, unless a one-off long list made it large.
        if slots.capacity() <= MAX_KEPT_POLL_SLOTS {
            self.poll_slots = slots;
        }
        found.map(|()| moved)
    }
}

/// The most slots `poll_many_into` keeps room for between calls (256 KiB).
const MAX_KEPT_POLL_SLOTS: usize = 1 << 16;

/// Moves the first `n` deliveries of `queue` onto the end of `out`. One by one from the
/// front: a `drain(..n)` costs several times more per event (per-element bookkeeping,
/// then restoring the rest).
fn move_front(queue: &mut VecDeque<Delivery>, n: usize, out: &mut VecDeque<Delivery>) {
    out.reserve(n);
    for _ in 0..n {
        out.push_back(queue.pop_front().expect("n are queued"));
    }
}
