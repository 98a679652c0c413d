//! Users: creating and changing them, and deciding which presence events a change causes.
use super::replication::patch_fields;
use super::{OptMillis, PresenceBefore, Recipients, State, UserIdx, Viewer};
use crate::answer::ViewedUser;
use crate::error::Result;
use crate::event::{ConnectionId, EventKind};
use crate::replication::Field;
use crate::shared_str::SharedStr;
use crate::time::Millis;
use crate::user::{merge_custom, validate_status, validate_user_id, CustomFields, UserChanges, UserPatch};
use std::sync::Arc;

impl State {
    pub(super) fn presence_before(&self, u: UserIdx) -> PresenceBefore {
        let user = &self.users[u as usize];
        PresenceBefore {
            online: user.public_online(),
            connected: user.connected(),
            status: user.status.clone(),
            invisible: user.invisible,
            had_connections: !user.connections.is_empty(),
        }
    }

    /// Emits what a change to user `u` caused, compared with `before`:
    /// - `user.presence.changed` to every recipient whose view of the user changed: to host
    ///   listeners and all subscribers when the public view changed (`online` or `status`);
    ///   to host listeners and the user's own subscribed connections only when just the own
    ///   view changed (`invisible` flipped, or an invisible user's first connection opened
    ///   or last one closed);
    /// - `user.updated` when custom fields changed;
    /// - when visibility flipped, watching events in every channel the user watches.
    pub(super) fn user_changed(
        &mut self,
        now: Millis,
        u: UserIdx,
        before: PresenceBefore,
        custom_changed: bool,
    ) {
        let user = &mut self.users[u as usize];
        let visibility_flipped = user.invisible != before.invisible;
        // Flipping visibility while connected stamps the last visible moment (going
        // invisible) or now (coming back). Connecting invisibly stamps nothing: the user was
        // not visibly connected (a visible connect stamps by itself).
        if visibility_flipped && before.had_connections && !user.connections.is_empty() {
            user.last_active = OptMillis(now);
        }
        let public_changed = user.public_online() != before.online || user.status != before.status;
        let own_changed = public_changed || visibility_flipped || user.connected() != before.connected;
        if own_changed {
            let recipients =
                if public_changed { Recipients::SubscribersOf(u) } else { Recipients::OwnSubscribersOf(u) };
            let user = user.snapshot();
            self.emit(now, EventKind::PresenceChanged { user }, u, recipients);
        }
        if custom_changed {
            let user = self.users[u as usize].snapshot();
            self.emit(now, EventKind::UserUpdated { user }, u, Recipients::SubscribersOf(u));
        }
        if visibility_flipped {
            if !self.users[u as usize].invisible {
                self.arm_refresh(now, u);
            }
            self.visibility_changed_in_channels(now, u);
        }
    }

    /// Applies `changes` to user `u`; answers whether custom fields changed. `custom` is
    /// the merged custom map computed (and size-checked) beforehand.
    pub(super) fn apply_patch(
        &mut self,
        now: Millis,
        u: UserIdx,
        changes: UserChanges,
        custom: Option<Arc<CustomFields>>,
    ) -> bool {
        let user = &mut self.users[u as usize];
        let mut changed = false;
        if let Some(status) = changes.status {
            let status: Option<SharedStr> = status.map(SharedStr::new);
            if user.status != status {
                user.status = status;
                changed = true;
            }
        }
        // Visibility never touches updated_at: others would see it move while the user
        // appears offline.
        if let Some(invisible) = changes.invisible {
            user.invisible = invisible;
            // The offline grace keeps online only a user others saw online: hiding ends it,
            // so turning visible again later shows nothing of the hidden time.
            if invisible && user.connections.is_empty() {
                user.grace_until = OptMillis::NONE;
            }
        }
        let custom_changed = custom.is_some();
        if let Some(custom) = custom {
            user.custom = if custom.is_empty() { None } else { Some(custom) };
            changed = true;
        }
        if changed {
            user.updated_at = now;
        }
        custom_changed
    }

    /// Validates `patch` against the stored user (`existing`, found by the patch's id),
    /// answering the merged custom fields.
    fn prepare_patch(
        &self,
        id: &str,
        changes: UserChanges,
        existing: Option<UserIdx>,
    ) -> Result<Option<Arc<CustomFields>>> {
        // A user that exists was made with a valid id: calls and snapshots validate theirs,
        // and a cluster's store holds the ids its nodes validated.
        if existing.is_none() {
            validate_user_id(id)?;
        }
        changes.validate()?;
        let current = existing.and_then(|u| self.users[u as usize].custom.as_ref());
        merge_custom("user", current, changes.custom)
    }

    /// Takes the "before" picture for a patch; a user the patch creates counts as already
    /// having the patched status and visibility, so creation alone emits nothing.
    fn before_patch(&self, u: UserIdx, created: bool, changes: UserChanges) -> PresenceBefore {
        let mut before = self.presence_before(u);
        if created {
            if let Some(status) = changes.status {
                before.status = status.map(SharedStr::new);
            }
            before.invisible = changes.invisible.unwrap_or(false);
        }
        before
    }

    /// Validates and applies `changes` to user `id`, creating the user when needed
    /// (`existing` is the user found by `id`, so that a caller that looked it up already
    /// does not hash the id again). Answers the user, the "before" picture to emit
    /// against, and whether custom fields of an existing user changed. On error nothing
    /// changes.
    pub(super) fn patch_user(
        &mut self,
        now: Millis,
        id: &str,
        changes: UserChanges,
        existing: Option<UserIdx>,
    ) -> Result<(UserIdx, PresenceBefore, bool)> {
        let custom = self.prepare_patch(id, changes, existing)?;
        let (u, created) = match existing {
            Some(u) => (u, false),
            None => (self.create_user(id, now), true),
        };
        let before = self.before_patch(u, created, changes);
        let custom_changed = self.apply_patch(now, u, changes, custom) && !created;
        Ok((u, before, custom_changed))
    }

    /// Creates or merges a user (top-level merge: absent fields keep their value). Creating
    /// a user emits nothing; changing one emits `user.presence.changed` (status, or online
    /// flipped by `invisible`) and `user.updated` (custom fields).
    /// Cost: O(size of the input + subscribers of the user).
    pub fn upsert_user(&mut self, now: Millis, patch: &UserPatch) -> Result<()> {
        let changes = patch.changes();
        let (u, before, custom_changed) =
            self.patch_user(now, &patch.id, changes, self.find_user(&patch.id))?;
        self.replicate(now, u, None, || patch_fields(changes));
        self.user_changed(now, u, before, custom_changed);
        self.settle(now);
        Ok(())
    }

    /// Sets or clears the sticky invisible flag. Cost: O(subscribers + channels watched).
    pub fn set_invisible(&mut self, now: Millis, user_id: &str, invisible: bool) -> Result<()> {
        let u = self.user_idx(user_id)?;
        let changes = UserChanges { invisible: Some(invisible), ..UserChanges::default() };
        let before = self.presence_before(u);
        self.apply_patch(now, u, changes, None);
        self.replicate(now, u, None, || patch_fields(changes));
        self.user_changed(now, u, before, false);
        self.settle(now);
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) the status. Cost: O(subscribers of the user).
    pub fn set_status(&mut self, now: Millis, user_id: &str, status: Option<&str>) -> Result<()> {
        if let Some(s) = status {
            validate_status(s)?;
        }
        let u = self.user_idx(user_id)?;
        let write = || vec![(Field::Status, status.map(str::to_string))];
        if self.users[u as usize].status.as_deref() == status {
            // In cluster mode the status shown may be an older one read back from the store
            // while a later write of this node is still on its way: the write goes out anyway,
            // so the store ends with the value written last.
            self.replicate(now, u, None, write);
            return Ok(());
        }
        let before = self.presence_before(u);
        let user = &mut self.users[u as usize];
        user.status = status.map(SharedStr::new);
        user.updated_at = now;
        self.replicate(now, u, None, write);
        self.user_changed(now, u, before, false);
        self.settle(now);
        Ok(())
    }

    /// The user as `viewer` sees it (0: the host, own view). Cost: O(size of the user).
    pub fn get_user(&self, viewer: ConnectionId, user_id: &str) -> Result<ViewedUser> {
        let viewer = self.viewer(viewer)?;
        let u = self.user_idx(user_id)?;
        Ok(self.viewed(viewer, u))
    }

    pub(super) fn viewed(&self, viewer: Viewer, u: UserIdx) -> ViewedUser {
        ViewedUser { user: Arc::new(self.users[u as usize].snapshot()), view: viewer.view_of(u) }
    }
}
