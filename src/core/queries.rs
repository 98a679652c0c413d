//! Queries over users and channels: picking candidates through the indexes, filtering and
//! paging them with a parsed [`Query`], and the presence subscriptions or watches a query
//! asks for. `UserRow` and `ChannelRow` show records to the query language.
use super::{ChannelIdx, ChannelRecord, State, UserIdx, UserRecord, Viewer};
use crate::answer::{ChannelsAnswer, UsersAnswer, ViewedUser};
use crate::error::{Error, Result};
use crate::event::ConnectionId;
use crate::query::{FieldValue, Query, Record};
use crate::time::Millis;
use crate::user::View;

impl State {
    /// Answers `{"users": [...]}`. With `presence`, subscribes the viewer to every user
    /// returned. Cost: O(k) for `id $eq/$in` filters naming k ids, O(users) for any other
    /// filter, plus O(m log m) to sort the m matches; a query whose work would pass
    /// `query_budget` is `Limit` before any user is examined.
    pub fn query_users(&mut self, viewer: ConnectionId, query: &Query) -> Result<UsersAnswer> {
        let who = self.viewer(viewer)?;
        if query.presence && matches!(who, Viewer::Host) {
            return Err(Error::invalid(
                "query_users: presence needs a connection as viewer, not the host (0)",
            ));
        }
        let keys = query.candidate_keys();
        let examined = keys.as_ref().map_or(self.users.len(), Vec::len);
        let text_budget = query.check_budget(&self.config.query_budget, examined)?;
        let candidates: Vec<UserIdx> = match keys {
            Some(keys) => {
                let mut v: Vec<UserIdx> = keys.iter().filter_map(|k| self.find_user(k)).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            None => (0..self.users.len() as UserIdx).collect(),
        };
        let rows = query.select(
            candidates.into_iter().map(|u| UserRow {
                user: &self.users[u as usize],
                idx: u,
                view: who.view_of(u),
            }),
            text_budget,
        )?;
        let page: Vec<(UserIdx, ViewedUser)> =
            query.sort_and_page(rows).into_iter().map(|row| (row.idx, self.viewed(who, row.idx))).collect();
        if let (true, Viewer::Connection(c, _)) = (query.presence, who) {
            self.check_subscription_limit(
                c,
                self.new_distinct_subscriptions(c, page.iter().map(|(u, _)| *u)),
            )?;
            for (u, _) in &page {
                self.subscribe(c, *u, true);
            }
        }
        Ok(UsersAnswer { users: page.into_iter().map(|(_, v)| v).collect() })
    }

    /// Answers `{"channels": [state, ...]}`. With `watch` or `presence` the viewer watches
    /// every channel returned (with presence subscriptions when `presence`). Cost: O(k) for
    /// `cid $eq/$in` naming k channels, O(memberships of the named users) for `members $in`,
    /// O(channels) otherwise; plus sorting and rendering the page. A query whose work would
    /// pass `query_budget` is `Limit` before any channel is examined.
    pub fn query_channels(
        &mut self,
        now: Millis,
        viewer: ConnectionId,
        query: &Query,
    ) -> Result<ChannelsAnswer> {
        let who = self.viewer(viewer)?;
        let watch = query.watch || query.presence;
        if watch && matches!(who, Viewer::Host) {
            return Err(Error::invalid(
                "query_channels: watch and presence need a connection as viewer, not the host (0)",
            ));
        }
        let (candidates, text_budget) = self.channel_candidates(query)?;
        let rows = query.select(
            candidates.into_iter().map(|ch| ChannelRow { channel: self.channel(ch), idx: ch, state: self }),
            text_budget,
        )?;
        let page: Vec<ChannelIdx> = query.sort_and_page(rows).into_iter().map(|row| row.idx).collect();
        if let (true, Viewer::Connection(c, _)) = (watch, who) {
            if query.presence {
                let members = page.iter().flat_map(|&ch| {
                    let watched_with_presence = self.channel(ch).watchers.get(&c).is_some_and(|w| w.presence);
                    self.channel(ch).members.iter().copied().filter(move |_| !watched_with_presence)
                });
                self.check_subscription_limit(c, self.new_subscriptions(c, members))?;
            }
            for &ch in &page {
                self.watch(now, c, ch, query.presence)?;
            }
            self.settle(now);
        }
        Ok(ChannelsAnswer { channels: page.into_iter().map(|ch| self.channel_state(who, ch)).collect() })
    }

    /// The channels a query can match, distinct and in index order, found through the cid
    /// index or the named members' memberships when the filter allows, with the work left
    /// for text; `Limit` when examining them would pass `query_budget`.
    fn channel_candidates(&self, query: &Query) -> Result<(Vec<ChannelIdx>, u64)> {
        let budget = &self.config.query_budget;
        let (mut candidates, text_budget): (Vec<ChannelIdx>, u64) = if let Some(keys) = query.candidate_keys()
        {
            let text_budget = query.check_budget(budget, keys.len())?;
            (keys.iter().filter_map(|k| self.channel_index.get(k.as_str()).copied()).collect(), text_budget)
        } else if let Some(ids) = query.member_candidates() {
            let users: Vec<UserIdx> = ids.iter().filter_map(|id| self.find_user(id)).collect();
            let examined = users.iter().map(|&u| self.users[u as usize].memberships.len()).sum();
            let text_budget = query.check_budget(budget, examined)?;
            (
                users.iter().flat_map(|&u| self.users[u as usize].memberships.iter().copied()).collect(),
                text_budget,
            )
        } else {
            let text_budget = query.check_budget(budget, self.channel_index.len())?;
            (self.channel_index.values().copied().collect(), text_budget)
        };
        candidates.sort_unstable();
        candidates.dedup();
        Ok((candidates, text_budget))
    }
}

struct UserRow<'a> {
    user: &'a UserRecord,
    idx: UserIdx,
    view: View,
}

impl Record for UserRow<'_> {
    fn key(&self) -> &str {
        &self.user.id
    }
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        let u = self.user;
        match name {
            "id" => Some(FieldValue::Str(&u.id)),
            "online" => Some(FieldValue::Bool(match self.view {
                View::Own => u.connected(),
                View::Public => u.public_online(),
            })),
            "status" => u.status.as_deref().map(FieldValue::Str),
            "last_active" => u.last_active.get().map(FieldValue::Time),
            "created_at" => Some(FieldValue::Time(u.created_at)),
            "updated_at" => Some(FieldValue::Time(u.updated_at)),
            other => u.custom.as_ref().and_then(|c| c.get(other)).map(FieldValue::Json),
        }
    }
    fn has_member(&self, _user_id: &str) -> bool {
        false
    }
}

struct ChannelRow<'a> {
    channel: &'a ChannelRecord,
    idx: ChannelIdx,
    state: &'a State,
}

impl Record for ChannelRow<'_> {
    fn key(&self) -> &str {
        &self.channel.cid
    }
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        let ch = self.channel;
        match name {
            "cid" => Some(FieldValue::Str(&ch.cid)),
            "type" => Some(FieldValue::Str(&ch.cid[..ch.type_len])),
            "id" => Some(FieldValue::Str(&ch.cid[ch.type_len + 1..])),
            "member_count" => Some(FieldValue::Int(ch.members.len() as i64)),
            "created_at" => Some(FieldValue::Time(ch.created_at)),
            "updated_at" => Some(FieldValue::Time(ch.updated_at)),
            "last_message_at" => ch.last_message_at.map(FieldValue::Time),
            other => ch.custom.as_ref().and_then(|c| c.get(other)).map(FieldValue::Json),
        }
    }
    fn has_member(&self, user_id: &str) -> bool {
        self.state.find_user(user_id).is_some_and(|u| self.channel.member_pos.contains_key(&u))
    }
}
