//! What the link needs from the shared store, the key layout, and the entry format both
//! store implementations speak (Redis, and the in-memory model the simulation runs).
use crate::event::ConnectionId;
use crate::replication::{ChannelDelta, ChannelOp, ConnectionChange, Delta, Field, FieldWrite, UserDelta};
use crate::time::Millis;
use std::fmt::{self, Write};

/// Users are spread over this many shards; each shard has its own log and its own
/// hash-tag slot. Every node of a deployment must agree on it, so it is fixed.
pub const SHARDS: usize = 16;

/// The shard of a user id or a cid: FNV-1a of it, stable across processes and versions.
pub fn shard_of(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// Key names under a namespace. Shard keys carry the tag `{s<k>}`, node leases the tag
/// `{m}`, so every script touches one slot.
#[derive(Debug, Clone)]
pub struct Keys {
    namespace: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Keys { namespace: namespace.to_string() }
    }
    fn shard_key(&self, shard: usize, rest: &str) -> String {
        format!("{}:{{s{shard}}}:{rest}", self.namespace)
    }
    /// A key of the node registry (leases, epoch, incarnations, reap locks): one slot.
    fn meta_key(&self, rest: &str) -> String {
        format!("{}:{{m}}:{rest}", self.namespace)
    }
    /// Prefix of user hashes in a shard; the user id follows.
    pub fn user_prefix(&self, shard: usize) -> String {
        self.shard_key(shard, "u:")
    }
    /// Prefix of channel hashes in a shard; the cid follows.
    pub fn channel_prefix(&self, shard: usize) -> String {
        self.shard_key(shard, "ch:")
    }
    /// Cids of a shard, for snapshots.
    pub fn channels(&self, shard: usize) -> String {
        self.shard_key(shard, "channels")
    }
    /// Prefix of the watch lists of node incarnations in a shard; the member follows.
    pub fn watches_prefix(&self, shard: usize) -> String {
        self.shard_key(shard, "watches:")
    }
    /// Watches of one node incarnation on channels in `shard` (`<connection>:<cid>`).
    pub fn node_watches(&self, shard: usize, member: &str) -> String {
        format!("{}{member}", self.watches_prefix(shard))
    }
    pub fn log(&self, shard: usize) -> String {
        self.shard_key(shard, "log")
    }
    pub fn seq(&self, shard: usize) -> String {
        self.shard_key(shard, "seq")
    }
    pub fn users(&self, shard: usize) -> String {
        self.shard_key(shard, "users")
    }
    pub fn fence(&self, shard: usize) -> String {
        self.shard_key(shard, "fence")
    }
    /// The epoch a shard takes writes under; set by registering nodes, gone with the data.
    pub fn shard_epoch(&self, shard: usize) -> String {
        self.shard_key(shard, "epoch")
    }
    /// Connections of one node incarnation whose users live in `shard`.
    pub fn node_connections(&self, shard: usize, member: &str) -> String {
        self.shard_key(shard, &format!("conns:{member}"))
    }
    pub fn leases(&self) -> String {
        self.meta_key("leases")
    }
    pub fn epoch(&self) -> String {
        self.meta_key("epoch")
    }
    pub fn incarnations(&self) -> String {
        self.meta_key("incarnations")
    }
    pub fn reap_lock(&self, member: &str) -> String {
        self.meta_key(&format!("reaping:{member}"))
    }
}

/// A node incarnation as the store names it: `node#incarnation`.
pub fn member(node: &str, incarnation: u64) -> String {
    format!("{node}#{incarnation}")
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// The store cannot be reached or answered out of line; retry later.
    Down(String),
    /// This incarnation was declared dead; its writes are refused.
    Fenced,
    /// The store no longer holds the epoch this node registered under: it lost its data.
    Lost,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Down(why) => write!(f, "store unavailable: {why}"),
            StoreError::Fenced => f.write_str("this node was declared dead and is fenced"),
            StoreError::Lost => f.write_str("the shared store lost its data"),
        }
    }
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// A new incarnation of this node.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub incarnation: u64,
    pub epoch: String,
}

/// The answer to a lease renewal.
#[derive(Debug, Clone, PartialEq)]
pub enum Beat {
    Renewed {
        /// Live leases, this node's included.
        alive: u32,
        /// Expired leases (`node#incarnation`) waiting to be reaped.
        expired: Vec<String>,
        /// The store's clock.
        now: Millis,
    },
    /// The lease expired or was reaped.
    Fenced,
    /// The store no longer holds the epoch this node registered under: it lost its data.
    EpochChanged,
}

/// One log entry or snapshot row: field names and values as the store holds them.
pub type RawEntry = Vec<(String, String)>;

/// One change to one user, read from a shard's log or snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChange {
    pub user: String,
    pub version: u64,
    pub created_at: Millis,
    pub last_active: Option<Millis>,
    pub fields: Vec<FieldWrite>,
    /// From a snapshot: `fields` is everything the user has.
    pub full: bool,
    /// Live connections per node incarnation (`node#incarnation`).
    pub connections: Vec<(String, u32)>,
    /// A dead node and the connections of it this change closed.
    pub lost: Option<(String, Vec<ConnectionId>)>,
}

impl StoredChange {
    /// Connections held by nodes other than `node` (any of its incarnations).
    pub fn connections_elsewhere(&self, node: &str) -> u32 {
        self.connections.iter().filter(|(m, _)| node_of(m) != node).map(|(_, n)| *n).sum()
    }

    /// Reads a log entry (`full` false) or a user hash from a snapshot (`full` true).
    pub fn parse<S: AsRef<str>>(user: Option<&str>, raw: &[(S, S)], full: bool) -> StoreResult<StoredChange> {
        let bad = |what: &str| StoreError::Down(format!("malformed store entry: {what}"));
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad("a number field is not a number"));
        let mut change = StoredChange {
            user: user.unwrap_or_default().to_string(),
            version: 0,
            created_at: 0,
            last_active: None,
            fields: Vec::new(),
            full,
            connections: Vec::new(),
            lost: None,
        };
        for (name, value) in raw {
            let (name, value) = (name.as_ref(), value.as_ref());
            match name {
                "u" => change.user = value.to_string(),
                "v" => change.version = num(value)? as u64,
                "ca" if !value.is_empty() => change.created_at = num(value)?,
                "la" if !value.is_empty() => change.last_active = Some(num(value)?),
                "c" => {
                    for part in value.split(',').filter(|p| !p.is_empty()) {
                        let (m, n) = part.rsplit_once('=').ok_or_else(|| bad("connection count"))?;
                        change.connections.push((m.to_string(), num(n)? as u32));
                    }
                }
                "lost" => {
                    let (node, ids) = value.split_once(' ').ok_or_else(|| bad("lost connections"))?;
                    let ids = ids
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| num(p).map(|n| ConnectionId(n as u64)))
                        .collect::<StoreResult<Vec<_>>>()?;
                    change.lost = Some((node.to_string(), ids));
                }
                other if full => {
                    if let Some(m) = other.strip_prefix("c:") {
                        change.connections.push((m.to_string(), num(value)? as u32));
                    } else if let Some(field) = Field::from_store_name(other) {
                        change.fields.push((field, Some(value.to_string())));
                    }
                }
                other => {
                    if let Some(field) = other.strip_prefix('=').and_then(Field::from_store_name) {
                        change.fields.push((field, Some(value.to_string())));
                    } else if let Some(field) = other.strip_prefix('-').and_then(Field::from_store_name) {
                        change.fields.push((field, None));
                    }
                }
            }
        }
        if change.user.is_empty() {
            return Err(bad("no user"));
        }
        Ok(change)
    }
}

/// One watching connection as the store names it: field `w:<member>:<connection>`,
/// value the user id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredWatch {
    /// The node incarnation (`node#incarnation`).
    pub member: String,
    pub connection: ConnectionId,
    pub user: String,
}

impl StoredWatch {
    /// Reads a `w:` field (`name` without the prefix) and its value.
    fn parse(name: &str, user: &str) -> StoreResult<StoredWatch> {
        let bad = || StoreError::Down("malformed store entry: a watcher".into());
        let (member, connection) = name.rsplit_once(':').ok_or_else(bad)?;
        let connection = ConnectionId(connection.parse().map_err(|_| bad())?);
        Ok(StoredWatch { member: member.to_string(), connection, user: user.to_string() })
    }

    /// The node of the incarnation.
    pub fn node(&self) -> &str {
        node_of(&self.member)
    }
}

/// The node of a `node#incarnation` member.
pub fn node_of(member: &str) -> &str {
    member.rsplit_once('#').map_or(member, |(n, _)| n)
}

/// What happened to a channel, read from a shard's log or snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredOp {
    /// Created or merged: fields written, members newly added.
    Upsert {
        fields: Vec<FieldWrite>,
        added: Vec<String>,
    },
    /// Members removed.
    Removed(Vec<String>),
    /// Deleted, with the watchers it had.
    Deleted(Vec<StoredWatch>),
    Watch {
        watch: StoredWatch,
        start: bool,
    },
    /// Watchers of a dead node incarnation, removed by reaping.
    Lost(Vec<StoredWatch>),
    /// From a snapshot: everything the channel has.
    Full {
        fields: Vec<FieldWrite>,
        members: Vec<String>,
        watchers: Vec<StoredWatch>,
    },
}

/// One change to one channel, read from a shard's log or snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChannel {
    pub cid: String,
    pub created_at: Millis,
    pub op: StoredOp,
}

impl StoredChannel {
    /// Reads a log entry (`full` false) or a channel hash from a snapshot (`full` true).
    pub fn parse<S: AsRef<str>>(cid: Option<&str>, raw: &[(S, S)], full: bool) -> StoreResult<StoredChannel> {
        let bad = |what: &str| StoreError::Down(format!("malformed store entry: {what}"));
        let (mut cid, mut created_at, mut op) = (cid.unwrap_or_default().to_string(), 0, "");
        let (mut fields, mut members, mut removed, mut watchers) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (name, value) in raw {
            let (name, value) = (name.as_ref(), value.as_ref());
            match name {
                "ch" => cid = value.to_string(),
                "op" => op = value,
                "ca" if !value.is_empty() => {
                    created_at = value.parse().map_err(|_| bad("a number field is not a number"))?
                }
                _ => {
                    if let Some(w) = name.strip_prefix("w:") {
                        watchers.push(StoredWatch::parse(w, value)?);
                    } else if let Some(m) =
                        name.strip_prefix("+m:").or(name.strip_prefix("m:").filter(|_| full))
                    {
                        members.push(m.to_string());
                    } else if let Some(m) = name.strip_prefix("-m:") {
                        removed.push(m.to_string());
                    } else if full {
                        if let Some(field) = Field::from_store_name(name) {
                            fields.push((field, Some(value.to_string())));
                        }
                    } else if let Some(field) = name.strip_prefix('=').and_then(Field::from_store_name) {
                        fields.push((field, Some(value.to_string())));
                    } else if let Some(field) = name.strip_prefix('-').and_then(Field::from_store_name) {
                        fields.push((field, None));
                    }
                }
            }
        }
        if cid.is_empty() {
            return Err(bad("no channel"));
        }
        let one_watch = |start: bool, watchers: Vec<StoredWatch>| match <[StoredWatch; 1]>::try_from(watchers)
        {
            Ok([watch]) => Ok(StoredOp::Watch { watch, start }),
            Err(_) => Err(bad("a watch names one watcher")),
        };
        let op = match (full, op) {
            (true, _) => StoredOp::Full { fields, members, watchers },
            (false, "up") => StoredOp::Upsert { fields, added: members },
            (false, "rm") => StoredOp::Removed(removed),
            (false, "del") => StoredOp::Deleted(watchers),
            (false, "ws") => one_watch(true, watchers)?,
            (false, "we") => one_watch(false, watchers)?,
            (false, "lost") => StoredOp::Lost(watchers),
            _ => return Err(bad("unknown channel change")),
        };
        Ok(StoredChannel { cid, created_at, op })
    }
}

/// A change read from a log, to a user or a channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    User(StoredChange),
    Channel(StoredChannel),
}

impl Stored {
    /// Reads a log entry: a channel's names its cid (`ch`); a user entry holds one or more
    /// user changes, each starting with its user id (`u`).
    pub fn parse<S: AsRef<str>>(raw: &[(S, S)]) -> StoreResult<Vec<Stored>> {
        if raw.iter().any(|(k, _)| k.as_ref() == "ch") {
            return Ok(vec![Stored::Channel(StoredChannel::parse(None, raw, false)?)]);
        }
        let mut starts: Vec<usize> =
            raw.iter().enumerate().filter(|(_, (k, _))| k.as_ref() == "u").map(|(i, _)| i).collect();
        if starts.first() != Some(&0) {
            starts.insert(0, 0);
        }
        starts.push(raw.len());
        starts
            .windows(2)
            .map(|w| StoredChange::parse(None, &raw[w[0]..w[1]], false).map(Stored::User))
            .collect()
    }
}

/// Appends names or values as a log entry holds them (see [`decode_entry`]).
fn encode_entry<'a>(out: &mut String, values: impl IntoIterator<Item = &'a str>) {
    for v in values {
        let _ = write!(out, "{}:{v}", v.len());
    }
}

/// Reads a log entry as the scripts store it: one stream field `e` whose value holds the
/// entry's names and values, each as `<length>:<bytes>`. Answers them borrowed from
/// `bytes`. Cost: O(bytes).
pub fn decode_entry(bytes: &[u8]) -> StoreResult<Vec<(&str, &str)>> {
    let bad = || StoreError::Down("malformed store entry: its encoding".into());
    let mut rest = std::str::from_utf8(bytes).map_err(|_| bad())?;
    let mut items = Vec::new();
    while !rest.is_empty() {
        let colon = rest.find(':').ok_or_else(bad)?;
        let len: usize = rest[..colon].parse().map_err(|_| bad())?;
        let end = (colon + 1).checked_add(len).ok_or_else(bad)?;
        items.push(rest.get(colon + 1..end).ok_or_else(bad)?);
        rest = &rest[end..];
    }
    if items.len() % 2 != 0 {
        return Err(bad());
    }
    Ok(items.chunks(2).map(|pair| (pair[0], pair[1])).collect())
}

/// A log entry: the shard's sequence number and the changes it holds, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub shard: usize,
    pub seq: u64,
    pub changes: Vec<Stored>,
}

/// Everything a shard holds, read atomically, and its sequence number at that moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub seq: u64,
    pub users: Vec<StoredChange>,
    pub channels: Vec<StoredChannel>,
}

/// Most changes one write script call applies: it amortizes the call and the epoch and
/// fence checks over many changes, and bounds how long one call holds the store.
pub const WRITE_BATCH: usize = 64;

/// The shard a delta writes to.
pub fn delta_shard(delta: &Delta) -> usize {
    match delta {
        Delta::User(d) => shard_of(&d.user),
        Delta::Channel(d) => shard_of(&d.cid),
    }
}

/// Deltas grouped into write script calls: per shard in their order, at most
/// [`WRITE_BATCH`] per call, the calls in the order of their first delta. Answers each
/// call's shard and the indexes of its deltas. Cost: O(deltas).
pub fn shard_batches(deltas: &[Delta]) -> Vec<(usize, Vec<usize>)> {
    let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut open: [Option<usize>; SHARDS] = [None; SHARDS];
    for (i, delta) in deltas.iter().enumerate() {
        let shard = delta_shard(delta);
        match open[shard] {
            Some(b) if batches[b].1.len() < WRITE_BATCH => batches[b].1.push(i),
            _ => {
                open[shard] = Some(batches.len());
                batches.push((shard, vec![i]));
            }
        }
    }
    batches
}

/// Appends one change to the write script's arguments (see `lua/write.lua`): its kind
/// (`u` user, `c` channel), the number of its arguments, then its arguments.
pub fn push_change_args(args: &mut Vec<String>, delta: &Delta) {
    let kind = args.len();
    args.push(String::new());
    args.push(String::new());
    match delta {
        Delta::User(delta) => {
            args[kind] = "u".into();
            push_user_args(args, delta);
        }
        Delta::Channel(delta) => {
            args[kind] = "c".into();
            push_channel_args(args, delta);
        }
    }
    args[kind + 1] = (args.len() - kind - 2).to_string();
}

/// A user change: id, time, last_active or '', connection opened or '', connection closed
/// or '', `1` to write fields only if the user is new, `u` and the id and the fields as
/// its log entry names them (encoded: the script copies them), field triples.
fn push_user_args(args: &mut Vec<String>, delta: &UserDelta) {
    let conn = |want_open: bool| match delta.connection {
        Some(ConnectionChange::Opened(c)) if want_open => c.0.to_string(),
        Some(ConnectionChange::Closed(c)) if !want_open => c.0.to_string(),
        _ => String::new(),
    };
    args.extend([
        delta.user.to_string(),
        delta.at.to_string(),
        delta.last_active.map(|t| t.to_string()).unwrap_or_default(),
        conn(true),
        conn(false),
        flag(delta.only_if_absent),
    ]);
    let mut head = String::with_capacity(delta.user.len() + 8);
    encode_entry(&mut head, ["u", &delta.user]);
    let names: Vec<String> = delta.fields.iter().map(|(field, _)| field.store_name()).collect();
    let mut written = String::new();
    for ((_, value), name) in delta.fields.iter().zip(&names) {
        // `=<name>` and the value, or `-<name>` and nothing.
        let _ = write!(written, "{}:{}{name}", name.len() + 1, if value.is_some() { '=' } else { '-' });
        encode_entry(&mut written, [value.as_deref().unwrap_or_default()]);
    }
    args.extend([head, written]);
    for ((_, value), name) in delta.fields.iter().zip(names) {
        args.extend([name, value.clone().unwrap_or_default(), flag(value.is_some())]);
    }
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

/// Fields written as script arguments: (name, value, `1` set | `0` remove) triples.
fn push_field_args(args: &mut Vec<String>, fields: &[FieldWrite]) {
    for (field, value) in fields {
        args.extend([field.store_name(), value.clone().unwrap_or_default(), flag(value.is_some())]);
    }
}

/// The operation of a channel change as the write script and its log entries name it.
pub fn op_name(op: &ChannelOp) -> &'static str {
    match op {
        ChannelOp::Upsert { .. } => "up",
        ChannelOp::RemoveMembers(_) => "rm",
        ChannelOp::Delete => "del",
        ChannelOp::Watch { start: true, .. } => "ws",
        ChannelOp::Watch { start: false, .. } => "we",
    }
}

/// A channel change (see `lua/channel.lua`): cid, time, operation, then by operation.
fn push_channel_args(args: &mut Vec<String>, delta: &ChannelDelta) {
    args.extend([delta.cid.to_string(), delta.at.to_string(), op_name(&delta.op).to_string()]);
    match &delta.op {
        ChannelOp::Upsert { fields, members, only_if_absent } => {
            args.push(flag(*only_if_absent));
            args.push(fields.len().to_string());
            push_field_args(args, fields);
            args.extend(members.iter().map(|m| m.to_string()));
        }
        ChannelOp::RemoveMembers(members) => args.extend(members.iter().map(|m| m.to_string())),
        ChannelOp::Delete => {}
        ChannelOp::Watch { connection, user, .. } => {
            args.push(connection.0.to_string());
            args.push(user.to_string());
        }
    }
}

/// The shared store as the link uses it. Every call is one round trip or a pipeline.
pub trait Store {
    /// Takes a new incarnation for `node` with a fresh lease; sets the epoch if the store
    /// has none (`fresh_epoch`), answering the one in force, and makes every shard that
    /// has no epoch take writes under it.
    fn register(&mut self, node: &str, lease_ms: u64, fresh_epoch: &str) -> StoreResult<Registration>;
    /// Renews the lease of `member` if it is still alive and the epoch still holds.
    fn beat(&mut self, member: &str, lease_ms: u64, epoch: &str) -> StoreResult<Beat>;
    /// Applies deltas, each shard's in their order; a shard that refuses this incarnation
    /// (fenced, or another epoch) applies none of them. Answers how many deltas, in order,
    /// come before the first refused one (all of them, or fewer with `Fenced` or `Lost`):
    /// later deltas of other shards may have been applied too and are written again (the
    /// scripts count a connection or a watch once however often it is announced).
    fn write(
        &mut self,
        node: &str,
        registration: &Registration,
        deltas: &[Delta],
    ) -> (usize, StoreResult<()>);
    /// Log entries after `cursors[shard]` in every shard, at most `max` per shard, without
    /// waiting when there are none.
    fn read(&mut self, cursors: &[u64; SHARDS], max: usize) -> StoreResult<Vec<Entry>>;
    /// Every user and channel of a shard and the shard's sequence number at that moment.
    fn snapshot(&mut self, shard: usize) -> StoreResult<Snapshot>;
    /// Reaps a dead incarnation in every shard, under a lock so that one node does it at a
    /// time; answers false when another node holds the lock.
    fn reap(&mut self, member: &str, now: Millis, lock_ms: u64) -> StoreResult<bool>;
}
