//! Timers: heartbeat timeouts, the offline grace, and the periodic `last_active` refresh
//! of connected visible users, in one heap ordered by due time.
use super::{OptMillis, State, Timer, UserIdx};
use crate::config::deadline_after;
use crate::event::{CloseReason, ConnectionId};
use crate::time::Millis;
use std::cmp::Reverse;

impl State {
    /// Applies every timer due at `now`: heartbeat timeouts, offline grace expiry and
    /// last_active refresh. Cost: O(d log n) for d due timers; O(1) when nothing is due.
    pub fn tick(&mut self, now: Millis) {
        while let Some(&Reverse((due, timer))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Timeout(id) => self.timeout_due(now, id),
                Timer::Grace(u) => self.grace_due(now, due, u),
                Timer::Refresh(u) => self.refresh_due(now, u),
            }
        }
        self.settle(now);
    }

    /// Arms the `last_active` refresh of user `u` unless it is armed already. O(log timers).
    pub(super) fn arm_refresh(&mut self, now: Millis, u: UserIdx) {
        let user = &mut self.users[u as usize];
        if user.refresh_armed {
            return;
        }
        if let Some(due) = deadline_after(now, self.config.last_active_refresh_ms) {
            user.refresh_armed = true;
            self.timers.push(Reverse((due, Timer::Refresh(u))));
        }
    }

    /// Closes the connection when no heartbeat came within the timeout; otherwise re-arms
    /// the timer for the deadline its last heartbeat set.
    fn timeout_due(&mut self, now: Millis, id: ConnectionId) {
        let Ok(c) = self.slot(id) else {
            return; // closed already
        };
        match deadline_after(self.conn(c).last_seen, self.config.connection_timeout_ms) {
            Some(deadline) if deadline <= now => self.close_connection(now, c, CloseReason::Timeout),
            Some(deadline) => self.timers.push(Reverse((deadline, Timer::Timeout(id)))),
            None => {}
        }
    }

    /// Ends the offline grace of user `u` set for `due`, unless they reconnected since (or
    /// a later grace replaced it).
    fn grace_due(&mut self, now: Millis, due: Millis, u: UserIdx) {
        let user = &self.users[u as usize];
        if user.grace_until == OptMillis(due) && user.connections.is_empty() {
            let before = self.presence_before(u);
            self.users[u as usize].grace_until = OptMillis::NONE;
            self.user_changed(now, u, before, false);
        }
    }

    /// Stamps `last_active` of a connected visible user and re-arms the refresh.
    fn refresh_due(&mut self, now: Millis, u: UserIdx) {
        let refresh = self.config.last_active_refresh_ms;
        let user = &mut self.users[u as usize];
        if user.connections.is_empty() || user.invisible {
            user.refresh_armed = false;
            return;
        }
        let last = user.last_active.get().unwrap_or(now);
        let next = match deadline_after(last, refresh) {
            Some(due) if due <= now => {
                user.last_active = OptMillis(now);
                deadline_after(now, refresh)
            }
            later => later,
        };
        match next {
            Some(next) if next > now => self.timers.push(Reverse((next, Timer::Refresh(u)))),
            // No later moment to refresh at.
            _ => user.refresh_armed = false,
        }
    }
}
