//! Presence subscriptions: which connections hear about which users. A connection is
//! subscribed to a user while any route holds (a channel watched with presence that has
//! the user as a member, or a `query_users` with presence), within
//! `max_subscriptions_per_connection`.
use super::{live_mut, Slot, State, Subscription, UserIdx};
use crate::error::{Error, Result};
use crate::event::ConnectionId;
use hashbrown::HashSet;

impl State {
    /// How many of `users` connection `c` is not yet subscribed to.
    pub(super) fn new_subscriptions(&self, c: Slot, users: impl IntoIterator<Item = UserIdx>) -> usize {
        let conn = self.conn(c);
        let mut seen = HashSet::new();
        users.into_iter().filter(|u| !conn.subscriptions.contains_key(u) && seen.insert(*u)).count()
    }

    /// [`State::new_subscriptions`] for users known to be distinct (one channel's members,
    /// one query page): no set needed.
    pub(super) fn new_distinct_subscriptions(
        &self,
        c: Slot,
        users: impl IntoIterator<Item = UserIdx>,
    ) -> usize {
        let conn = self.conn(c);
        users.into_iter().filter(|u| !conn.subscriptions.contains_key(u)).count()
    }

    pub(super) fn check_subscription_limit(&self, c: Slot, added: usize) -> Result<()> {
        let max = self.config.max_subscriptions_per_connection as usize;
        let have = self.conn(c).subscriptions.len();
        if added > 0 && have + added > max {
            return Err(Error::limit(format!(
                "connection {} would hold {} presence subscriptions, more than max_subscriptions_per_connection {max}",
                self.conn(c).id,
                have + added
            )));
        }
        Ok(())
    }

    /// Adds one route (a presence-watched channel, or `direct`) from `c` to user `u`. O(1).
    pub(super) fn subscribe(&mut self, c: Slot, u: UserIdx, direct: bool) {
        let user = &mut self.users[u as usize];
        let conn = live_mut(&mut self.connections, c);
        let sub = conn.subscriptions.entry(u).or_insert_with(|| {
            user.subscribers.push(c);
            Subscription { channel_refs: 0, direct: false, pos: (user.subscribers.len() - 1) as u32 }
        });
        if direct {
            sub.direct = true;
        } else {
            sub.channel_refs += 1;
        }
    }

    /// Drops one route from `c` to `u`; the subscription ends with its last route. O(1).
    pub(super) fn unsubscribe(&mut self, c: Slot, u: UserIdx, direct: bool) {
        let conn = live_mut(&mut self.connections, c);
        let Some(sub) = conn.subscriptions.get_mut(&u) else {
            return;
        };
        if direct {
            sub.direct = false;
        } else {
            sub.channel_refs = sub.channel_refs.saturating_sub(1);
        }
        if sub.channel_refs == 0 && !sub.direct {
            let pos = sub.pos;
            conn.subscriptions.remove(&u);
            self.remove_subscriber(u, pos);
        }
    }

    /// Removes the subscriber at `pos` of user `u`, fixing the position kept by the
    /// connection that moved into its place. O(1).
    pub(super) fn remove_subscriber(&mut self, u: UserIdx, pos: u32) {
        let subscribers = &mut self.users[u as usize].subscribers;
        subscribers.swap_remove(pos as usize);
        if let Some(&moved) = subscribers.get(pos as usize) {
            if let Some(sub) = live_mut(&mut self.connections, moved).subscriptions.get_mut(&u) {
                sub.pos = pos;
            }
        }
    }

    /// Ends the `query_users` route from `c` to a user; channel routes stay. Cost: O(1).
    pub fn unsubscribe_user(&mut self, c: ConnectionId, user_id: &str) -> Result<()> {
        let c = self.slot(c)?;
        let u = self.user_idx(user_id)?;
        self.unsubscribe(c, u, true);
        Ok(())
    }
}
