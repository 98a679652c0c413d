//! The reference model: primary facts only, everything derived recomputed when needed.
use crate::observed::{Dv, Ev};
use crate::ops::Cfg;
use crate::T0;
use presence::time::format_millis;
use presence::ErrorKind;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
pub struct MUser {
    /// Creation order (ties between due timers break by it).
    pub idx: usize,
    pub status: Option<String>,
    pub name: Option<u8>,
    pub invisible: bool,
    pub last_active: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub grace_until: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct MConn {
    pub user: String,
    pub last_seen: i64,
    /// When the engine's timeout timer for it is due (connect + timeout, then each
    /// deadline it was pushed back to).
    pub timeout_due: i64,
    /// Watched channels in the order watching started, with the presence flag.
    pub watching: Vec<(String, bool)>,
    /// Users returned by `query_users` with presence (the "direct" route).
    pub direct: BTreeSet<String>,
}

#[derive(Clone, Debug)]
pub struct MChan {
    pub idx: usize,
    pub members: BTreeSet<String>,
    pub created_at: i64,
}

pub type OpResult = Result<Option<Value>, ErrorKind>;
/// A user's presence as the views show it: (online to others, online in the own view,
/// status, invisible).
pub type Views = (bool, bool, Option<String>, bool);

pub struct Model {
    pub cfg: Cfg,
    pub now: i64,
    pub users: BTreeMap<String, MUser>,
    pub conns: BTreeMap<u64, MConn>,
    pub chans: BTreeMap<String, MChan>,
    /// Channel slots: the engine reuses the slot of a deleted channel (last freed first);
    /// the slot orders watching events when a user's visibility flips.
    pub next_chan_idx: usize,
    pub free_chan_idx: Vec<usize>,
    pub next_conn: u64,
    pub host: Vec<Ev>,
    pub deliveries: BTreeMap<u64, Vec<Dv>>,
    /// Deliveries queued per connection during the current step (the harness drains every
    /// queue after each step).
    pub queued: BTreeMap<u64, usize>,
    /// Connections whose queue overflowed, in order; closed when the command settles.
    pub overflowed: Vec<u64>,
    pub overflowed_set: BTreeSet<u64>,
}

pub struct Patch {
    pub id: &'static str,
    pub invisible: Option<bool>,
    pub status: Option<Option<&'static str>>,
    pub name: Option<Option<u8>>,
}

impl Model {
    /// The user behind viewer `v` (`None` for the host, 0); an unknown connection is NotFound.
    pub fn viewer_user(&self, v: u64) -> Result<Option<String>, ErrorKind> {
        match v {
            0 => Ok(None),
            _ => self.conns.get(&v).map(|c| Some(c.user.clone())).ok_or(ErrorKind::NotFound),
        }
    }

    pub fn new(cfg: Cfg) -> Self {
        Model {
            cfg,
            now: T0,
            users: BTreeMap::new(),
            conns: BTreeMap::new(),
            chans: BTreeMap::new(),
            next_chan_idx: 0,
            free_chan_idx: Vec::new(),
            next_conn: 1,
            host: Vec::new(),
            deliveries: BTreeMap::new(),
            queued: BTreeMap::new(),
            overflowed: Vec::new(),
            overflowed_set: BTreeSet::new(),
        }
    }

    // ----- derived state, recomputed from scratch -----

    pub fn live_conns(&self, u: &str) -> Vec<u64> {
        self.conns.iter().filter(|(_, c)| c.user == u).map(|(&id, _)| id).collect()
    }
    pub fn connected(&self, u: &str) -> bool {
        !self.live_conns(u).is_empty() || self.users[u].grace_until.is_some()
    }
    pub fn public_online(&self, u: &str) -> bool {
        self.connected(u) && !self.users[u].invisible
    }
    /// `online` of `u` for a viewer (`None`: the host).
    pub fn online_for(&self, u: &str, viewer_user: Option<&str>) -> bool {
        if viewer_user.is_none_or(|v| v == u) {
            self.connected(u)
        } else {
            self.public_online(u)
        }
    }
    /// Users connection `c` receives user events about: the union of its routes.
    pub fn subs(&self, c: u64) -> BTreeSet<String> {
        let conn = &self.conns[&c];
        let mut s = conn.direct.clone();
        for (cid, presence) in &conn.watching {
            if *presence {
                s.extend(self.chans[cid].members.iter().cloned());
            }
        }
        s
    }
    pub fn watchers(&self, cid: &str) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.watching.iter().any(|(w, _)| w == cid))
            .map(|(&id, _)| id)
            .collect()
    }
    pub fn user_watches(&self, u: &str, cid: &str) -> bool {
        self.watchers(cid).iter().any(|c| self.conns[c].user == u)
    }
    /// Distinct visible users among the channel's watchers.
    pub fn visible_watchers(&self, cid: &str) -> BTreeSet<String> {
        self.watchers(cid)
            .into_iter()
            .map(|c| self.conns[&c].user.clone())
            .filter(|u| !self.users[u].invisible)
            .collect()
    }

    // ----- rendering -----

    pub fn render_user(&self, u: &str, viewer_user: Option<&str>) -> Value {
        let user = &self.users[u];
        let own = viewer_user.is_none_or(|v| v == u);
        let mut m = Map::new();
        m.insert("id".into(), json!(u));
        m.insert("online".into(), json!(self.online_for(u, viewer_user)));
        if let Some(s) = &user.status {
            m.insert("status".into(), json!(s));
        }
        if let Some(t) = user.last_active {
            m.insert("last_active".into(), json!(format_millis(t)));
        }
        if own {
            m.insert("invisible".into(), json!(user.invisible));
        }
        m.insert("created_at".into(), json!(format_millis(user.created_at)));
        m.insert("updated_at".into(), json!(format_millis(user.updated_at)));
        if let Some(n) = user.name {
            m.insert("name".into(), json!(n));
        }
        Value::Object(m)
    }

    pub fn render_channel_state(&self, cid: &str, viewer_user: Option<&str>) -> Value {
        let ch = &self.chans[cid];
        let (ty, id) = cid.split_once(':').unwrap();
        let members: Vec<Value> = ch
            .members
            .iter()
            .map(|u| json!({"user_id": u, "user": self.render_user(u, viewer_user)}))
            .collect();
        let watchers = self.visible_watchers(cid);
        json!({
            "channel": {
                "cid": cid, "type": ty, "id": id,
                "member_count": ch.members.len(),
                "created_at": format_millis(ch.created_at),
                "updated_at": format_millis(ch.created_at),
            },
            "members": members,
            "watcher_count": watchers.len(),
            "watchers": watchers.iter().map(|u| self.render_user(u, viewer_user)).collect::<Vec<_>>(),
        })
    }

    // ----- emission -----

    pub fn ev(&self, ty: &'static str, u: &str, online: bool) -> Ev {
        Ev {
            ty,
            user: u.to_owned(),
            online,
            status: self.users[u].status.clone(),
            cid: None,
            watcher_count: None,
            closed: None,
        }
    }

    /// What the views show of `u`'s presence now.
    pub fn views(&self, u: &str) -> Views {
        let user = &self.users[u];
        (self.public_online(u), self.connected(u), user.status.clone(), user.invisible)
    }

    /// `user.presence.changed` to every recipient whose view of `u` changed since `before`:
    /// everyone subscribed when the public view changed, else host listeners and `u`'s own
    /// subscribed connections when only the own view did.
    pub fn presence_changed(&mut self, u: &str, before: Views) {
        let after = self.views(u);
        if after.0 != before.0 || after.2 != before.2 {
            self.emit_user("user.presence.changed", u, false);
        } else if after != before {
            self.emit_user("user.presence.changed", u, true);
        }
    }

    /// A user event: host listeners, and every connection subscribed to the user (only the
    /// user's own connections when `own_only`).
    pub fn emit_user(&mut self, ty: &'static str, u: &str, own_only: bool) {
        self.host.push(self.ev(ty, u, self.connected(u)));
        let recipients: Vec<u64> = self
            .conns
            .keys()
            .copied()
            .filter(|&c| self.subs(c).contains(u) && (!own_only || self.conns[&c].user == u))
            .collect();
        for c in recipients {
            let viewer = self.conns[&c].user.clone();
            let dv = Dv { ev: self.ev(ty, u, self.online_for(u, Some(&viewer))), own_view: viewer == u };
            self.deliver(c, dv);
        }
    }

    /// One delivery into a connection's queue (and to delivery listeners); a full queue
    /// marks the connection as a slow consumer and takes nothing more.
    pub fn deliver(&mut self, c: u64, dv: Dv) {
        if self.overflowed_set.contains(&c) {
            return;
        }
        if self.cfg.queue_cap > 0 {
            let queued = self.queued.entry(c).or_default();
            if *queued >= self.cfg.queue_cap as usize {
                self.overflowed_set.insert(c);
                self.overflowed.push(c);
                return;
            }
            *queued += 1;
        }
        self.deliveries.entry(c).or_default().push(dv);
    }

    /// End of a command: close every slow consumer in ascending connection id, round by
    /// round (a close can overflow other queues, which the next round closes).
    pub fn settle(&mut self) {
        while !self.overflowed.is_empty() {
            let mut round = std::mem::take(&mut self.overflowed);
            round.sort_unstable();
            for c in round {
                if self.conns.contains_key(&c) {
                    self.close(c, "slow_consumer");
                }
            }
        }
    }

    /// A channel event: host listeners, and every connection watching the channel.
    pub fn emit_channel(&mut self, ty: &'static str, cid: &str, u: &str, watcher_count: Option<u32>) {
        let mut ev = self.ev(ty, u, self.connected(u));
        ev.cid = Some(cid.to_owned());
        ev.watcher_count = watcher_count;
        self.host.push(ev.clone());
        for c in self.watchers(cid) {
            let viewer = self.conns[&c].user.clone();
            let mut seen = ev.clone();
            seen.online = self.online_for(u, Some(&viewer));
            self.deliver(c, Dv { ev: seen, own_view: viewer == u });
        }
    }

    // ----- commands -----

    pub fn create_user(&mut self, u: &str) -> bool {
        if self.users.contains_key(u) {
            return false;
        }
        let idx = self.users.len();
        self.users.insert(
            u.to_owned(),
            MUser {
                idx,
                status: None,
                name: None,
                invisible: false,
                last_active: None,
                created_at: self.now,
                updated_at: self.now,
                grace_until: None,
            },
        );
        true
    }

    /// Applies a user patch; answers (presence before, had live connections before,
    /// custom fields changed).
    pub fn apply_patch(&mut self, p: &Patch) -> (Views, bool, bool) {
        let created = self.create_user(p.id);
        let had_conns = !self.live_conns(p.id).is_empty();
        // A user the patch creates counts as already having the patched status and
        // visibility: creation alone emits nothing.
        let before = if created {
            (
                false,
                false,
                match p.status {
                    Some(s) => s.map(str::to_owned),
                    None => None,
                },
                p.invisible.unwrap_or(false),
            )
        } else {
            self.views(p.id)
        };
        let now = self.now;
        let user = self.users.get_mut(p.id).unwrap();
        let mut changed = false;
        if let Some(s) = p.status {
            let s = s.map(str::to_owned);
            if user.status != s {
                user.status = s;
                changed = true;
            }
        }
        // Visibility never moves updated_at (others would see it move while the user
        // appears offline).
        if let Some(i) = p.invisible {
            user.invisible = i;
        }
        // Hiding ends an offline grace: it keeps online only users others saw online.
        if user.invisible && !had_conns {
            user.grace_until = None;
        }
        let mut custom_changed = false;
        if let Some(n) = p.name {
            if user.name != n {
                user.name = n;
                changed = true;
                custom_changed = true;
            }
        }
        if changed {
            user.updated_at = now;
        }
        (before, had_conns, custom_changed && !created)
    }

    /// What a change to user `u` emits, compared with `before`.
    pub fn user_changed(&mut self, u: &str, before: Views, had_conns: bool, custom_changed: bool) {
        let flipped = self.users[u].invisible != before.3;
        let connected_now = !self.live_conns(u).is_empty();
        // Going invisible while connected stamps the last visible moment; coming back while
        // connected stamps now. A user who was not connected before (connecting with
        // `invisible: true`) was not visible, so nothing is stamped.
        if flipped && connected_now && had_conns {
            let now = self.now;
            self.users.get_mut(u).unwrap().last_active = Some(now);
        }
        self.presence_changed(u, before);
        if custom_changed {
            self.emit_user("user.updated", u, false);
        }
        if flipped {
            let mut watched: Vec<(usize, String)> = self
                .live_conns(u)
                .iter()
                .flat_map(|c| self.conns[c].watching.iter().map(|(w, _)| w.clone()))
                .map(|w| (self.chans[&w].idx, w))
                .collect();
            watched.sort();
            watched.dedup();
            let ty = if self.users[u].invisible { "user.watching.stop" } else { "user.watching.start" };
            for (_, cid) in watched {
                let count = self.visible_watchers(&cid).len() as u32;
                self.emit_channel(ty, &cid, u, Some(count));
            }
        }
    }

    pub fn connect(&mut self, p: &Patch) -> Result<u64, ErrorKind> {
        if self.users.contains_key(p.id) && self.live_conns(p.id).len() >= self.cfg.max_conns as usize {
            return Err(ErrorKind::Limit);
        }
        let (before, had_conns, custom_changed) = self.apply_patch(p);
        let c = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            c,
            MConn {
                user: p.id.to_owned(),
                last_seen: self.now,
                timeout_due: self.now + self.cfg.timeout as i64,
                watching: Vec::new(),
                direct: BTreeSet::new(),
            },
        );
        let now = self.now;
        let user = self.users.get_mut(p.id).unwrap();
        user.grace_until = None;
        if !user.invisible {
            user.last_active = Some(now);
        }
        self.user_changed(p.id, before, had_conns, custom_changed);
        Ok(c)
    }

    pub fn upsert(&mut self, p: &Patch) {
        let (before, had_conns, custom_changed) = self.apply_patch(p);
        self.user_changed(p.id, before, had_conns, custom_changed);
    }

    pub fn unwatch(&mut self, c: u64, cid: &str) {
        let conn = self.conns.get_mut(&c).unwrap();
        let Some(pos) = conn.watching.iter().position(|(w, _)| w == cid) else {
            return;
        };
        // The engine's watch list moves its last entry into the freed place (O(1) removal),
        // which sets the order of a closing connection's watching.stop events.
        conn.watching.swap_remove(pos);
        let u = conn.user.clone();
        if !self.user_watches(&u, cid) && !self.users[&u].invisible {
            let count = self.visible_watchers(cid).len() as u32;
            self.emit_channel("user.watching.stop", cid, &u, Some(count));
        }
    }

    pub fn close(&mut self, c: u64, reason: &'static str) {
        let watching: Vec<String> = self.conns[&c].watching.iter().map(|(w, _)| w.clone()).collect();
        for w in watching {
            self.unwatch(c, &w);
        }
        let u = self.conns[&c].user.clone();
        let before = self.views(&u);
        self.conns.remove(&c);
        if self.live_conns(&u).is_empty() {
            let now = self.now;
            let grace = self.cfg.grace as i64;
            let user = self.users.get_mut(&u).unwrap();
            if !user.invisible {
                user.last_active = Some(now);
            }
            if grace > 0 && !user.invisible {
                user.grace_until = Some(now + grace);
            }
        }
        self.presence_changed(&u, before);
        let mut ev = self.ev("connection.closed", &u, self.connected(&u));
        ev.closed = Some((c, reason));
        self.host.push(ev);
    }

    /// Would connection `c` hold more than `max_subscriptions_per_connection` users after
    /// subscribing to `more`?
    pub fn over_limit<'a>(&self, c: u64, more: impl IntoIterator<Item = &'a String>) -> bool {
        let mut s = self.subs(c);
        s.extend(more.into_iter().cloned());
        s.len() > self.cfg.max_subs as usize
    }

    pub fn watch(&mut self, c: u64, cid: &str, presence: bool) -> Result<(), ErrorKind> {
        let was = self.conns[&c].watching.iter().find(|(w, _)| w == cid).map(|&(_, p)| p);
        if presence && was != Some(true) && self.over_limit(c, &self.chans[cid].members) {
            return Err(ErrorKind::Limit);
        }
        match was {
            Some(true) => {}
            Some(false) => {
                if presence {
                    let conn = self.conns.get_mut(&c).unwrap();
                    conn.watching.iter_mut().find(|(w, _)| w == cid).unwrap().1 = true;
                }
            }
            None => {
                let u = self.conns[&c].user.clone();
                let first = !self.user_watches(&u, cid);
                self.conns.get_mut(&c).unwrap().watching.push((cid.to_owned(), presence));
                if first && !self.users[&u].invisible {
                    let count = self.visible_watchers(cid).len() as u32;
                    self.emit_channel("user.watching.start", cid, &u, Some(count));
                }
            }
        }
        Ok(())
    }

    pub fn add_members(&mut self, cid: &str, ids: &[&'static str]) -> Result<(), ErrorKind> {
        let ids_set: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let presence_watchers: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.watching.iter().any(|(w, p)| w == cid && *p))
            .map(|(&id, _)| id)
            .collect();
        if presence_watchers.iter().any(|&c| self.over_limit(c, &ids_set)) {
            return Err(ErrorKind::Limit);
        }
        if !self.chans.contains_key(cid) {
            let idx = self.free_chan_idx.pop().unwrap_or_else(|| {
                self.next_chan_idx += 1;
                self.next_chan_idx - 1
            });
            self.chans.insert(cid.to_owned(), MChan { idx, members: BTreeSet::new(), created_at: self.now });
        }
        for &id in ids {
            self.create_user(id);
            if self.chans.get_mut(cid).unwrap().members.insert(id.to_owned()) {
                self.emit_channel("member.added", cid, id, None);
            }
        }
        Ok(())
    }

    /// Removes members (all named users must exist); NotFound changes nothing.
    pub fn remove_members(&mut self, cid: &str, ids: &[&'static str]) -> Result<(), ErrorKind> {
        if !self.chans.contains_key(cid) || ids.iter().any(|u| !self.users.contains_key(*u)) {
            return Err(ErrorKind::NotFound);
        }
        for u in ids {
            if self.chans.get_mut(cid).unwrap().members.remove(*u) {
                self.emit_channel("member.removed", cid, u, None);
            }
        }
        Ok(())
    }

    /// Watchers stop watching and members leave, without events.
    pub fn delete_channel(&mut self, cid: &str) -> Result<(), ErrorKind> {
        let ch = self.chans.remove(cid).ok_or(ErrorKind::NotFound)?;
        self.free_chan_idx.push(ch.idx);
        for conn in self.conns.values_mut() {
            if let Some(pos) = conn.watching.iter().position(|(w, _)| w == cid) {
                conn.watching.swap_remove(pos);
            }
        }
        Ok(())
    }

    pub fn tick(&mut self) {
        let now = self.now;
        let timeout = self.cfg.timeout as i64;
        loop {
            // The next due timer in the engine's order: (due, grace before timeout, user
            // creation order / connection id).
            let mut next: Option<(i64, u8, u64, String)> = None;
            for (u, user) in &self.users {
                if let Some(g) = user.grace_until {
                    if g <= now {
                        let key = (g, 1, user.idx as u64, u.clone());
                        if next.as_ref().is_none_or(|n| key < *n) {
                            next = Some(key);
                        }
                    }
                }
            }
            if timeout > 0 {
                for (&c, conn) in &self.conns {
                    if conn.timeout_due <= now {
                        let key = (conn.timeout_due, 2, c, String::new());
                        if next.as_ref().is_none_or(|n| key < *n) {
                            next = Some(key);
                        }
                    }
                }
            }
            let Some((_, kind, id, u)) = next else { break };
            if kind == 1 {
                let before = self.views(&u);
                self.users.get_mut(&u).unwrap().grace_until = None;
                self.presence_changed(&u, before);
            } else {
                let deadline = self.conns[&id].last_seen + timeout;
                if deadline <= now {
                    self.close(id, "timeout");
                } else {
                    self.conns.get_mut(&id).unwrap().timeout_due = deadline;
                }
            }
        }
        // last_active refresh: no events.
        let refresh = self.cfg.refresh as i64;
        let refreshed: Vec<String> = self
            .users
            .iter()
            .filter(|(u, user)| {
                !user.invisible
                    && !self.live_conns(u).is_empty()
                    && user.last_active.is_some_and(|t| t + refresh <= now)
            })
            .map(|(u, _)| u.clone())
            .collect();
        for u in refreshed {
            self.users.get_mut(&u).unwrap().last_active = Some(now);
        }
    }
}
