//! The store's scripts as plain Rust over in-memory maps, statement for statement, for
//! the deterministic simulation (no Redis, virtual time, controllable failures).
use super::store::{
    delta_shard, member, op_name, shard_batches, shard_of, Beat, Entry, RawEntry, Registration, Snapshot,
    Store, StoreError, StoreResult, Stored, StoredChange, StoredChannel, SHARDS,
};
use crate::replication::{ChannelDelta, ChannelOp, ConnectionChange, Delta, FieldWrite, UserDelta};
use crate::shared_str::SharedStr;
use crate::time::Millis;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// What the store accepted, in its order: the simulation's one reference engine replays it.
#[derive(Debug, Clone)]
pub enum Applied {
    /// A delta written by a node incarnation (`node#n`).
    Delta(String, Delta),
    /// A dead incarnation reaped at a time.
    Reaped(String, Millis),
}

#[derive(Default)]
struct Shard {
    users: BTreeMap<String, BTreeMap<String, String>>,
    log: Vec<(u64, RawEntry)>,
    seq: u64,
    fence: HashMap<String, u64>,
    epoch: Option<String>,
    /// Per incarnation: connection id -> user id.
    connections: HashMap<String, BTreeMap<String, String>>,
    channels: BTreeMap<String, BTreeMap<String, String>>,
    /// Per incarnation: `<connection>:<cid>` of its watches.
    watches: HashMap<String, BTreeMap<String, String>>,
    /// User changes logged since the last entry: they go out as one entry.
    user_entry: RawEntry,
}

/// The channel steps of `lua/channel.lua`; each answers whether the channel changed (and
/// so whether an entry is logged), adding what it wrote to `written`.
impl Shard {
    fn create_channel(&mut self, cid: &str, at: &str) {
        let fields = BTreeMap::from([("ca".into(), at.to_string()), ("ua".into(), at.to_string())]);
        self.channels.insert(cid.to_string(), fields);
    }

    fn upsert_channel(
        &mut self,
        cid: &str,
        at: &str,
        fields: &[FieldWrite],
        members: &[SharedStr],
        only_if_absent: bool,
        written: &mut RawEntry,
    ) -> bool {
        let existed = self.channels.contains_key(cid);
        if existed && only_if_absent {
            return false;
        }
        if !existed {
            self.create_channel(cid, at);
        }
        let channel = self.channels.get_mut(cid).expect("created above");
        write_fields(channel, fields, written);
        for m in members {
            if channel.insert(format!("m:{m}"), "1".into()).is_none() {
                written.push((format!("+m:{m}"), String::new()));
            }
        }
        true
    }

    fn start_watch(
        &mut self,
        cid: &str,
        at: &str,
        me: &str,
        connection: u64,
        user: &str,
        written: &mut RawEntry,
    ) -> bool {
        if !self.channels.contains_key(cid) {
            self.create_channel(cid, at);
        }
        let field = format!("w:{me}:{connection}");
        let channel = self.channels.get_mut(cid).expect("created above");
        if channel.insert(field.clone(), user.to_string()).is_some() {
            return false;
        }
        self.watches.entry(me.to_string()).or_default().insert(format!("{connection}:{cid}"), "1".into());
        written.push((field, user.to_string()));
        true
    }

    fn stop_watch(&mut self, cid: &str, me: &str, connection: u64, written: &mut RawEntry) -> bool {
        let field = format!("w:{me}:{connection}");
        let channel = self.channels.get_mut(cid).expect("exists");
        let Some(uid) = channel.remove(&field) else { return false };
        if let Some(w) = self.watches.get_mut(me) {
            w.remove(&format!("{connection}:{cid}"));
        }
        written.push((field, uid));
        true
    }

    fn remove_members(&mut self, cid: &str, members: &[SharedStr], written: &mut RawEntry) -> bool {
        let channel = self.channels.get_mut(cid).expect("exists");
        for m in members {
            if channel.remove(&format!("m:{m}")).is_some() {
                written.push((format!("-m:{m}"), String::new()));
            }
        }
        true
    }

    /// Removes the channel and its watches; answers its `ca` (creation time).
    fn delete_channel(&mut self, cid: &str, written: &mut RawEntry) -> String {
        let channel = self.channels.remove(cid).expect("exists");
        for (field, uid) in &channel {
            if let Some((m, conn)) = field.strip_prefix("w:").and_then(|w| w.rsplit_once(':')) {
                if let Some(w) = self.watches.get_mut(m) {
                    w.remove(&format!("{conn}:{cid}"));
                }
                written.push((field.clone(), uid.clone()));
            }
        }
        channel.get("ca").cloned().unwrap_or_default()
    }
}

/// The shared data of one simulated store.
pub struct MemoryData {
    shards: Vec<Shard>,
    leases: BTreeMap<String, Millis>,
    epoch: Option<String>,
    incarnations: u64,
    locks: HashMap<String, Millis>,
    /// The store's clock.
    pub now: Millis,
    /// Entries kept per shard log.
    pub retention: usize,
    /// While set, every call answers `Down`.
    pub down: bool,
    pub history: Vec<Applied>,
}

impl MemoryData {
    pub fn new(retention: usize) -> Self {
        MemoryData {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            leases: BTreeMap::new(),
            epoch: None,
            incarnations: 0,
            locks: HashMap::new(),
            now: 0,
            retention,
            down: false,
            history: Vec::new(),
        }
    }

    fn append(&mut self, shard: usize, uid: &str, written: RawEntry) {
        let s = &mut self.shards[shard];
        let user = s.users.get_mut(uid).expect("appending for a stored user");
        let version = user.get("v").map_or(0, |v| v.parse::<u64>().unwrap()) + 1;
        user.insert("v".into(), version.to_string());
        let counts: Vec<String> =
            user.iter().filter_map(|(k, v)| k.strip_prefix("c:").map(|m| format!("{m}={v}"))).collect();
        let mut entry: RawEntry = vec![
            ("u".into(), uid.into()),
            ("v".into(), version.to_string()),
            ("ca".into(), user.get("ca").cloned().unwrap_or_default()),
            ("la".into(), user.get("la").cloned().unwrap_or_default()),
            ("c".into(), counts.join(",")),
        ];
        entry.extend(written);
        s.user_entry.extend(entry);
    }

    /// Logs the user changes waiting for an entry, if any.
    fn flush_users(&mut self, shard: usize) {
        let entry = std::mem::take(&mut self.shards[shard].user_entry);
        if !entry.is_empty() {
            self.log(shard, entry);
        }
    }

    /// Refuses a write of an incarnation that is fenced or registered under another epoch.
    fn admit(&self, shard: usize, node: &str, registration: &Registration) -> StoreResult<()> {
        let s = &self.shards[shard];
        if s.epoch.as_deref() != Some(registration.epoch.as_str()) {
            return Err(StoreError::Lost);
        }
        if s.fence.get(node).is_some_and(|&f| f >= registration.incarnation) {
            return Err(StoreError::Fenced);
        }
        Ok(())
    }

    fn append_channel(&mut self, shard: usize, cid: &str, ca: String, written: RawEntry) {
        self.flush_users(shard);
        let mut entry: RawEntry = vec![("ch".into(), cid.into()), ("ca".into(), ca)];
        entry.extend(written);
        self.log(shard, entry);
    }

    fn log(&mut self, shard: usize, entry: RawEntry) {
        let retention = self.retention;
        let s = &mut self.shards[shard];
        s.seq += 1;
        s.log.push((s.seq, entry));
        if s.log.len() > retention {
            let drop = s.log.len() - retention;
            s.log.drain(..drop);
        }
    }

    /// `lua/channel.lua`, for an admitted incarnation.
    fn write_channel(&mut self, node: &str, registration: &Registration, delta: &ChannelDelta) {
        let shard = shard_of(&delta.cid);
        let me = member(node, registration.incarnation);
        let cid = delta.cid.to_string();
        let s = &mut self.shards[shard];
        let mut written: RawEntry = vec![("op".into(), op_name(&delta.op).into())];
        let at = delta.at.to_string();
        let changed = match &delta.op {
            ChannelOp::Upsert { fields, members, only_if_absent } => {
                s.upsert_channel(&cid, &at, fields, members, *only_if_absent, &mut written)
            }
            ChannelOp::Watch { connection, user, start: true } => {
                s.start_watch(&cid, &at, &me, connection.0, user, &mut written)
            }
            _ if !s.channels.contains_key(&cid) => false,
            ChannelOp::Watch { connection, start: false, .. } => {
                s.stop_watch(&cid, &me, connection.0, &mut written)
            }
            ChannelOp::RemoveMembers(members) => s.remove_members(&cid, members, &mut written),
            ChannelOp::Delete => {
                let ca = s.delete_channel(&cid, &mut written);
                self.append_channel(shard, &cid, ca, written);
                self.history.push(Applied::Delta(me, Delta::Channel(delta.clone())));
                return;
            }
        };
        if changed {
            let ca = s.channels[&cid].get("ca").cloned().unwrap_or_default();
            self.append_channel(shard, &cid, ca, written);
            self.history.push(Applied::Delta(me, Delta::Channel(delta.clone())));
        }
    }

    /// `user_change` of `lua/write.lua`, for an admitted incarnation.
    fn write_user(&mut self, node: &str, registration: &Registration, delta: &UserDelta) {
        let inc = registration.incarnation;
        let shard = shard_of(&delta.user);
        let uid = delta.user.to_string();
        let s = &mut self.shards[shard];
        let count = format!("c:{}", member(node, inc));
        let existed = s.users.contains_key(&uid);
        let user = s.users.entry(uid.clone()).or_default();
        if !existed {
            user.insert("ca".into(), delta.at.to_string());
        }
        let conns = s.connections.entry(member(node, inc)).or_default();
        match delta.connection {
            // Counted once however often announced, as in the script.
            Some(ConnectionChange::Opened(c)) if conns.insert(c.0.to_string(), uid.clone()).is_none() => {
                add_count(user, &count, 1);
            }
            Some(ConnectionChange::Closed(c)) if conns.remove(&c.0.to_string()).is_some() => {
                add_count(user, &count, -1);
            }
            _ => {}
        }
        if let Some(at) = delta.last_active {
            raise_last_active(user, at);
        }
        let mut written = RawEntry::new();
        if !delta.only_if_absent || !existed {
            write_fields(user, &delta.fields, &mut written);
        }
        self.append(shard, &uid, written);
        self.history.push(Applied::Delta(member(node, inc), Delta::User(delta.clone())));
    }

    fn reap_shard(&mut self, shard: usize, node: &str, inc: u64, now: Millis) {
        let m = member(node, inc);
        let s = &mut self.shards[shard];
        let fence = s.fence.entry(node.to_string()).or_insert(0);
        *fence = (*fence).max(inc);
        let conns = s.connections.remove(&m).unwrap_or_default();
        let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (c, uid) in conns {
            by_user.entry(uid).or_default().push(c);
        }
        for (uid, ids) in by_user {
            let user = self.shards[shard].users.get_mut(&uid).expect("a connection's user is stored");
            user.remove(&format!("c:{m}"));
            let connected = user.keys().any(|k| k.starts_with("c:"));
            if !connected && user.get("i").map(String::as_str) != Some("1") {
                raise_last_active(user, now);
            }
            self.append(shard, &uid, vec![("lost".into(), format!("{node} {}", ids.join(",")))]);
        }
        let watches = self.shards[shard].watches.remove(&m).unwrap_or_default();
        let mut by_channel: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in watches.keys() {
            let (conn, cid) = key.split_once(':').expect("a watch names connection and channel");
            by_channel.entry(cid.to_string()).or_default().push(conn.to_string());
        }
        for (cid, mut conns) in by_channel {
            conns.sort();
            let mut written: RawEntry = vec![("op".into(), "lost".into())];
            let Some(channel) = self.shards[shard].channels.get_mut(&cid) else { continue };
            for conn in conns {
                let field = format!("w:{m}:{conn}");
                if let Some(uid) = channel.remove(&field) {
                    written.push((field, uid));
                }
            }
            if written.len() > 1 {
                let ca = channel.get("ca").cloned().unwrap_or_default();
                self.append_channel(shard, &cid, ca, written);
            }
        }
        self.flush_users(shard);
    }
}

/// Writes or removes fields of a hash, logging each as `=<name>` or `-<name>`.
fn write_fields(hash: &mut BTreeMap<String, String>, fields: &[FieldWrite], written: &mut RawEntry) {
    for (field, value) in fields {
        let name = field.store_name();
        match value {
            Some(v) => {
                hash.insert(name.clone(), v.clone());
                written.push((format!("={name}"), v.clone()));
            }
            None => {
                hash.remove(&name);
                written.push((format!("-{name}"), String::new()));
            }
        }
    }
}

/// Adds `by` to a connection count, removing the field when it reaches zero.
fn add_count(user: &mut BTreeMap<String, String>, key: &str, by: i64) {
    let n = user.get(key).map_or(0, |v| v.parse::<i64>().unwrap()) + by;
    if n > 0 {
        user.insert(key.to_string(), n.to_string());
    } else {
        user.remove(key);
    }
}

fn raise_last_active(user: &mut BTreeMap<String, String>, at: Millis) {
    if user.get("la").is_none_or(|la| la.parse::<Millis>().unwrap() < at) {
        user.insert("la".into(), at.to_string());
    }
}

/// One node's handle on a shared [`MemoryData`].
#[derive(Clone)]
pub struct MemoryStore(pub Arc<Mutex<MemoryData>>);

impl MemoryStore {
    fn data(&self) -> StoreResult<std::sync::MutexGuard<'_, MemoryData>> {
        let data = self.0.lock().unwrap();
        if data.down {
            return Err(StoreError::Down("simulated outage".into()));
        }
        Ok(data)
    }
}

impl Store for MemoryStore {
    fn register(&mut self, node: &str, lease_ms: u64, fresh_epoch: &str) -> StoreResult<Registration> {
        let mut d = self.data()?;
        d.incarnations += 1;
        let inc = d.incarnations;
        let expiry = d.now + lease_ms as Millis;
        d.leases.insert(member(node, inc), expiry);
        let epoch = d.epoch.get_or_insert_with(|| fresh_epoch.to_string()).clone();
        for shard in &mut d.shards {
            shard.epoch.get_or_insert_with(|| epoch.clone());
        }
        Ok(Registration { incarnation: inc, epoch })
    }

    fn beat(&mut self, member: &str, lease_ms: u64, epoch: &str) -> StoreResult<Beat> {
        let mut d = self.data()?;
        if d.epoch.as_deref() != Some(epoch) {
            return Ok(Beat::EpochChanged);
        }
        let now = d.now;
        match d.leases.get(member) {
            Some(&expiry) if expiry >= now => {}
            _ => return Ok(Beat::Fenced),
        }
        d.leases.insert(member.to_string(), now + lease_ms as Millis);
        let alive = d.leases.values().filter(|&&e| e >= now).count() as u32;
        let expired = d.leases.iter().filter(|(_, &e)| e < now).map(|(m, _)| m.clone()).take(16).collect();
        Ok(Beat::Renewed { alive, expired, now })
    }

    fn write(
        &mut self,
        node: &str,
        registration: &Registration,
        deltas: &[Delta],
    ) -> (usize, StoreResult<()>) {
        let mut d = match self.data() {
            Ok(d) => d,
            Err(e) => return (0, Err(e)),
        };
        // As the script calls: a shard that refuses the incarnation applies none of its
        // deltas, the other shards apply theirs, and each call logs its own entries.
        let mut batch_of = vec![0; deltas.len()];
        for (b, (_, indexes)) in shard_batches(deltas).iter().enumerate() {
            indexes.iter().for_each(|&i| batch_of[i] = b);
        }
        let mut open_batch = [None; SHARDS];
        let mut first_refused = None;
        for (i, delta) in deltas.iter().enumerate() {
            let shard = delta_shard(delta);
            if let Err(e) = d.admit(shard, node, registration) {
                first_refused.get_or_insert((i, e));
                continue;
            }
            if open_batch[shard].replace(batch_of[i]).is_some_and(|b| b != batch_of[i]) {
                d.flush_users(shard);
            }
            match delta {
                Delta::User(delta) => d.write_user(node, registration, delta),
                Delta::Channel(delta) => d.write_channel(node, registration, delta),
            }
        }
        (0..SHARDS).for_each(|shard| d.flush_users(shard));
        match first_refused {
            Some((i, e)) => (i, Err(e)),
            None => (deltas.len(), Ok(())),
        }
    }

    fn read(&mut self, cursors: &[u64; SHARDS], max: usize) -> StoreResult<Vec<Entry>> {
        let d = self.data()?;
        let mut out = Vec::new();
        for (shard, s) in d.shards.iter().enumerate() {
            for (seq, raw) in s.log.iter().filter(|(seq, _)| *seq > cursors[shard]).take(max) {
                out.push(Entry { shard, seq: *seq, changes: Stored::parse(raw)? });
            }
        }
        Ok(out)
    }

    fn snapshot(&mut self, shard: usize) -> StoreResult<Snapshot> {
        let d = self.data()?;
        let s = &d.shards[shard];
        let raw = |h: &BTreeMap<String, String>| -> RawEntry {
            h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let users = s
            .users
            .iter()
            .map(|(uid, h)| StoredChange::parse(Some(uid), &raw(h), true))
            .collect::<StoreResult<Vec<_>>>()?;
        let channels = s
            .channels
            .iter()
            .map(|(cid, h)| StoredChannel::parse(Some(cid), &raw(h), true))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Snapshot { seq: s.seq, users, channels })
    }

    fn reap(&mut self, m: &str, now: Millis, lock_ms: u64) -> StoreResult<bool> {
        let mut d = self.data()?;
        let store_now = d.now;
        if d.locks.get(m).is_some_and(|&until| until > store_now) {
            return Ok(false);
        }
        d.locks.insert(m.to_string(), store_now + lock_ms as Millis);
        let (node, inc) = m.rsplit_once('#').expect("a member names its incarnation");
        let inc: u64 = inc.parse().expect("an incarnation is a number");
        for shard in 0..SHARDS {
            d.reap_shard(shard, node, inc, now);
        }
        d.history.push(Applied::Reaped(m.to_string(), now));
        if d.leases.get(m).is_some_and(|&e| e < store_now) {
            d.leases.remove(m);
        }
        Ok(true)
    }
}
