//! Replication (cluster mode), the link's side: handing the recorded deltas over, and
//! `apply_remote` for what other nodes changed, emitting what one engine would have.
use super::replication::flag;
use super::{OptMillis, State, UserRecord};
use crate::event::{CloseReason, EventKind};
use crate::replication::{
    ChannelDelta, ChannelOp, ConnectionChange, Delta, Field, FieldWrite, Remote, RemoteChange, UserDelta,
};
use crate::shared_str::SharedStr;
use crate::time::Millis;
use crate::user::CustomFields;
use serde_json::Value;
use std::sync::Arc;

impl State {
    /// Moves the deltas recorded since the last call into `into`, in order. Cost: O(deltas).
    pub fn take_deltas(&mut self, into: &mut Vec<Delta>) {
        if let Some(deltas) = &mut self.replication {
            into.append(deltas);
        }
    }

    /// Applies one change made elsewhere (to a user or a channel), as the store ordered it.
    pub fn apply(&mut self, now: Millis, remote: &Remote) {
        match remote {
            Remote::User(change) => self.apply_remote(now, change),
            Remote::Channel(change) => self.apply_remote_channel(now, change),
        }
    }

    /// Applies one change made elsewhere to a user, as the store ordered it, emitting what one engine
    /// would have emitted for it: presence and `user.updated` events by comparing the user
    /// before and after, and `connection.closed` (`node_lost`) for each connection of a dead
    /// node that the change closed. A change at or below the version this node holds is
    /// already applied and changes nothing. Cost: O(fields + subscribers of the user).
    pub fn apply_remote(&mut self, now: Millis, change: &RemoteChange) {
        let (u, created) = self.get_or_create_user(&change.user, change.created_at);
        let held = self.users[u as usize].version;
        if !created && (change.version < held || (change.version == held && !change.full)) {
            return;
        }
        let mut before = self.presence_before(u);
        let user = &mut self.users[u as usize];
        user.version = change.version;
        user.remote_connections = change.remote_connections;
        if change.created_at != 0 {
            user.created_at = change.created_at;
        }
        if let Some(at) = change.last_active {
            if user.last_active.get().is_none_or(|la| la < at) {
                user.last_active = OptMillis(at);
            }
        }
        let mut custom = user.custom.as_deref().cloned().unwrap_or_default();
        let old_custom = custom.clone();
        if change.full {
            user.status = None;
            user.invisible = false;
            custom.clear();
        }
        write_user_fields(user, &change.fields, &mut custom);
        let custom_changed = custom != old_custom;
        if custom_changed {
            user.custom = (!custom.is_empty()).then(|| Arc::new(custom as CustomFields));
        }
        if created {
            // Creation alone emits nothing, as with a local upsert.
            before.status = user.status.clone();
            before.invisible = user.invisible;
        }
        self.user_changed(now, u, before, custom_changed && !created);
        for &connection in &change.lost {
            self.emit_to_host(now, |s| EventKind::ConnectionClosed {
                connection,
                user: s.users[u as usize].snapshot(),
                reason: CloseReason::NodeLost,
            });
        }
        self.settle(now);
    }

    /// Forgets every user's and channel's store version (the store lost its data and
    /// counts anew). Cost: O(users + channels).
    pub fn forget_versions(&mut self) {
        for user in &mut self.users {
            user.version = 0;
        }
        for channel in self.channels.iter_mut().flatten() {
            channel.version = 0;
        }
    }

    /// Deltas that re-create this node's part of the store: one per live connection and
    /// per watch of one; with `shared`, first one per user with all its shared fields and
    /// one per channel with its fields and members, written only where the store lacks
    /// them. Cost: O(connections + watches), plus O(users × fields + channels × (fields +
    /// members)) with `shared`.
    pub fn announcement(&self, now: Millis, shared: bool) -> Vec<Delta> {
        let mut deltas = Vec::new();
        if shared {
            for user in &self.users {
                let mut delta = UserDelta::new(user.id.clone(), user.created_at);
                delta.only_if_absent = true;
                delta.last_active = user.last_active.get();
                delta.fields.push((Field::Status, user.status.as_deref().map(str::to_string)));
                delta.fields.push((Field::Invisible, Some(flag(user.invisible))));
                delta.fields.push((Field::UpdatedAt, Some(user.updated_at.to_string())));
                for (name, value) in user.custom.iter().flat_map(|c| c.iter()) {
                    delta.fields.push((Field::Custom(name.clone()), Some(value.to_string())));
                }
                deltas.push(Delta::User(delta));
            }
            for channel in self.channels.iter().flatten() {
                let mut fields = vec![(Field::UpdatedAt, Some(channel.updated_at.to_string()))];
                if let Some(t) = channel.last_message_at {
                    fields.push((Field::LastMessageAt, Some(t.to_string())));
                }
                for (name, value) in channel.custom.iter().flat_map(|c| c.iter()) {
                    fields.push((Field::Custom(name.clone()), Some(value.to_string())));
                }
                let members = channel.members.iter().map(|&u| self.users[u as usize].id.clone()).collect();
                let op = ChannelOp::Upsert { fields, members, only_if_absent: true };
                deltas.push(Delta::Channel(ChannelDelta {
                    cid: channel.cid.clone(),
                    at: channel.created_at,
                    op,
                }));
            }
        }
        for conn in self.connections.iter().flatten() {
            let user = &self.users[conn.user as usize];
            let mut delta = UserDelta::new(user.id.clone(), now);
            delta.connection = Some(ConnectionChange::Opened(conn.id));
            delta.last_active = user.last_active.get();
            deltas.push(Delta::User(delta));
        }
        for conn in self.connections.iter().flatten() {
            for &ch in &conn.watching {
                let user = self.users[conn.user as usize].id.clone();
                let op = ChannelOp::Watch { connection: conn.id, user, start: true };
                deltas.push(Delta::Channel(ChannelDelta { cid: self.channel(ch).cid.clone(), at: now, op }));
            }
        }
        deltas
    }

    /// The cids of every channel. Cost: O(channels).
    pub fn channel_ids(&self) -> Vec<SharedStr> {
        self.channel_index.keys().cloned().collect()
    }

    /// Reports the cluster link's state to host listeners (`cluster.status`). Cost: O(1).
    pub fn cluster_status(&mut self, now: Millis, status: &'static str, node_id: Arc<str>) {
        self.emit_to_host(now, |_| EventKind::ClusterStatus { status, node_id });
    }
}

#[cfg(test)]
impl State {
    /// Every channel as the host sees it (fields, members, watchers, watcher count) and
    /// every user's memberships, for the simulation's comparisons.
    pub fn channel_answers(&self) -> Vec<String> {
        let ids =
            |v: &[crate::answer::ViewedUser]| v.iter().map(|u| u.user.id.to_string()).collect::<Vec<_>>();
        let mut all: Vec<String> = self
            .channel_index
            .values()
            .map(|&ch| {
                let state = self.channel_state(super::Viewer::Host, ch);
                format!(
                    "{} members:{:?} watchers:{:?} count:{} custom:{:?} last_message:{:?} created:{}",
                    state.channel.cid,
                    ids(&state.members),
                    ids(&state.watchers),
                    state.watcher_count,
                    state.channel.custom,
                    state.channel.last_message_at,
                    state.channel.created_at
                )
            })
            .collect();
        for user in &self.users {
            let mut cids: Vec<&str> = user.memberships.iter().map(|&ch| &*self.channel(ch).cid).collect();
            cids.sort_unstable();
            if !cids.is_empty() {
                all.push(format!("{} is a member of {cids:?}", user.id));
            }
        }
        all.sort();
        all
    }

    /// Every user id, for the simulation's comparisons.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.iter().map(|u| u.id.to_string()).collect()
    }
}

/// Writes a user's shared fields as the store holds them (`custom` is written back by the
/// caller, which compares it with what it was). O(fields).
fn write_user_fields(user: &mut UserRecord, fields: &[FieldWrite], custom: &mut CustomFields) {
    for (field, value) in fields {
        match field {
            Field::Status => user.status = value.as_deref().map(SharedStr::new),
            Field::Invisible => user.invisible = value.as_deref() == Some("1"),
            // Not a user field: ignored.
            Field::LastMessageAt => {}
            Field::UpdatedAt => {
                if let Some(t) = value.as_deref().and_then(|v| v.parse().ok()) {
                    user.updated_at = t;
                }
            }
            Field::Custom(name) => match value.as_deref().map(serde_json::from_str::<Value>) {
                Some(Ok(v)) => {
                    custom.insert(name.clone(), v);
                }
                // A value that is not JSON was not written by an engine: ignore it.
                Some(Err(_)) => {}
                None => {
                    custom.shift_remove(name);
                }
            },
        }
    }
}
