//! Replication (cluster mode), the outbox: what this node changed, recorded by the
//! commands as deltas for the shared store. The other direction is in `remote`.
use super::{State, UserIdx};
use crate::event::ConnectionId;
use crate::replication::{ChannelDelta, ChannelOp, ConnectionChange, Delta, Field, FieldWrite, UserDelta};
use crate::shared_str::SharedStr;
use crate::time::Millis;
use crate::user::UserChanges;
use serde_json::Value;

/// The shared fields a patch writes, as the store keeps them.
pub(super) fn patch_fields(changes: UserChanges) -> Vec<FieldWrite> {
    let mut fields = Vec::new();
    if let Some(status) = changes.status {
        fields.push((Field::Status, status.map(str::to_string)));
    }
    if let Some(invisible) = changes.invisible {
        fields.push((Field::Invisible, Some(flag(invisible))));
    }
    for (name, value) in changes.custom {
        fields.push((Field::Custom(name.clone()), value.as_ref().map(Value::to_string)));
    }
    fields
}

pub(super) fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

impl State {
    /// Starts recording deltas (cluster mode). Cost: O(1).
    pub fn enable_replication(&mut self) {
        self.replication = Some(Vec::new());
    }

    /// Whether deltas wait to be taken. Cost: O(1).
    pub fn has_deltas(&self) -> bool {
        self.replication.as_ref().is_some_and(|d| !d.is_empty())
    }

    /// Records that user `u` changed: a connection opened or closed, fields written. Does
    /// nothing (and builds no fields) unless replicating. Cost: O(fields).
    pub(super) fn replicate(
        &mut self,
        now: Millis,
        u: UserIdx,
        connection: Option<ConnectionChange>,
        fields: impl FnOnce() -> Vec<FieldWrite>,
    ) {
        if self.replication.is_none() {
            return;
        }
        let user = &self.users[u as usize];
        let mut delta = UserDelta::new(user.id.clone(), now);
        delta.connection = connection;
        delta.last_active = user.last_active.get();
        delta.fields = fields();
        if delta.fields.iter().any(|(f, _)| *f != Field::Invisible) {
            delta.fields.push((Field::UpdatedAt, Some(user.updated_at.to_string())));
        }
        self.replication.as_mut().expect("checked above").push(Delta::User(delta));
    }

    /// Records a change of channel `cid`. Does nothing (and builds nothing) unless
    /// replicating. Cost: O(size of the change).
    pub(super) fn replicate_channel(&mut self, cid: &SharedStr, at: Millis, op: impl FnOnce() -> ChannelOp) {
        if let Some(deltas) = &mut self.replication {
            deltas.push(Delta::Channel(ChannelDelta { cid: cid.clone(), at, op: op() }));
        }
    }

    /// Records that connection `connection` of user `u` started or stopped watching `cid`.
    pub(super) fn replicate_watch(
        &mut self,
        cid: &SharedStr,
        at: Millis,
        connection: ConnectionId,
        u: UserIdx,
        start: bool,
    ) {
        let user = self.users[u as usize].id.clone();
        self.replicate_channel(cid, at, || ChannelOp::Watch { connection, user, start });
    }
}
