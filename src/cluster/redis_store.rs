//! [`Store`] over one Redis (or Valkey) connection with the `redis` crate's synchronous
//! client. Any error drops the connection (a timed-out reply could otherwise arrive as the
//! answer to a later command); the next call connects again and loads the scripts.
use super::store::{
    decode_entry, member, push_change_args, shard_batches, Beat, Entry, Keys, RawEntry, Registration,
    Snapshot, Store, StoreError, StoreResult, Stored, StoredChange, StoredChannel, SHARDS,
};
use crate::replication::Delta;
use crate::time::Millis;
use redis::{Connection, Value};
use std::time::Duration;

const COMMON: &str = include_str!("lua/common.lua");

/// The scripts, each loaded once per connection and called by hash.
struct Scripts {
    write: redis::Script,
    reap: redis::Script,
    snapshot: redis::Script,
    meta: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        let shard_script = |body: &str| redis::Script::new(&format!("{COMMON}\n{body}"));
        Scripts {
            write: shard_script(&format!(
                "{}\n{}",
                include_str!("lua/channel.lua"),
                include_str!("lua/write.lua")
            )),
            reap: shard_script(include_str!("lua/reap.lua")),
            snapshot: redis::Script::new(include_str!("lua/snapshot.lua")),
            meta: redis::Script::new(include_str!("lua/meta.lua")),
        }
    }
    fn all(&self) -> [&redis::Script; 4] {
        [&self.write, &self.reap, &self.snapshot, &self.meta]
    }
}

/// See the module documentation.
pub struct RedisStore {
    client: redis::Client,
    connection: Option<Connection>,
    keys: Keys,
    scripts: Scripts,
    retention: u64,
    timeout: Duration,
    /// The server's `run_id` when last connected: a new one means it restarted, maybe from an
    /// older save or as a promoted replica, so its logs may have gone back in time.
    run_id: Option<String>,
    restarted: bool,
}

fn down(e: impl std::fmt::Display) -> StoreError {
    StoreError::Down(e.to_string())
}

fn text(v: &Value) -> StoreResult<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(down),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        Value::Okay => Ok("OK".into()),
        other => Err(StoreError::Down(format!("unexpected store reply {other:?}"))),
    }
}

fn items(v: &Value) -> StoreResult<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(&[]),
        other => Err(StoreError::Down(format!("expected an array from the store, got {other:?}"))),
    }
}

fn pairs(v: &Value) -> StoreResult<RawEntry> {
    let flat = items(v)?;
    flat.chunks(2)
        .map(|kv| match kv {
            [k, v] => Ok((text(k)?, text(v)?)),
            _ => Err(StoreError::Down("odd field list from the store".into())),
        })
        .collect()
}

impl RedisStore {
    /// A store at `url` (not connected yet). `timeout` bounds every round trip, so a paused
    /// or unreachable store turns into `Down` instead of a stall.
    pub fn new(url: &str, namespace: &str, retention: u64, timeout: Duration) -> crate::Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| crate::Error::invalid(format!("cluster.redis_url: {e}")))?;
        Ok(RedisStore {
            client,
            connection: None,
            keys: Keys::new(namespace),
            scripts: Scripts::new(),
            retention,
            timeout,
            run_id: None,
            restarted: false,
        })
    }

    fn connection(&mut self) -> StoreResult<&mut Connection> {
        if self.connection.is_none() {
            let mut c = self.client.get_connection_with_timeout(self.timeout).map_err(down)?;
            c.set_read_timeout(Some(self.timeout)).map_err(down)?;
            c.set_write_timeout(Some(self.timeout)).map_err(down)?;
            for script in self.scripts.all() {
                script.load(&mut c).map_err(down)?;
            }
            // A proxy may not answer INFO: then restarts go unnoticed here, as before.
            let info: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap_or_default();
            let run_id = info.lines().find_map(|l| l.strip_prefix("run_id:")).map(|id| id.trim().to_string());
            if run_id.is_some() {
                self.restarted |= self.run_id.is_some() && self.run_id != run_id;
                self.run_id = run_id;
            }
            self.connection = Some(c);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    /// Runs a command or pipeline; any failure drops the connection.
    fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> StoreResult<T> {
        let result = f(self.connection()?);
        if result.is_err() {
            self.connection = None;
        }
        result.map_err(down)
    }

    fn meta(&mut self, op: &str, who: &str, lease_ms: u64, epoch: &str) -> StoreResult<Value> {
        let keys = [self.keys.leases(), self.keys.epoch(), self.keys.incarnations()];
        let hash = self.scripts.meta.get_hash().to_string();
        self.run(|c| {
            redis::cmd("EVALSHA")
                .arg(&hash)
                .arg(3)
                .arg(&keys)
                .arg(op)
                .arg(who)
                .arg(lease_ms)
                .arg(epoch)
                .query(c)
        })
    }

    fn shard_call(&mut self, hash: &str, keys: &[String], args: &[String]) -> StoreResult<Value> {
        self.run(|c| redis::cmd("EVALSHA").arg(hash).arg(keys.len()).arg(keys).arg(args).query(c))
    }

    fn write_keys(&self, member: &str, shard: usize) -> [String; 8] {
        [
            self.keys.log(shard),
            self.keys.seq(shard),
            self.keys.users(shard),
            self.keys.channels(shard),
            self.keys.fence(shard),
            self.keys.shard_epoch(shard),
            self.keys.node_connections(shard, member),
            self.keys.node_watches(shard, member),
        ]
    }
}

impl Store for RedisStore {
    fn register(&mut self, node: &str, lease_ms: u64, fresh_epoch: &str) -> StoreResult<Registration> {
        let answer = self.meta("register", node, lease_ms, fresh_epoch)?;
        let registration = match items(&answer)? {
            [inc, epoch, _now] => {
                Registration { incarnation: text(inc)?.parse().map_err(down)?, epoch: text(epoch)? }
            }
            _ => return Err(StoreError::Down("malformed registration answer".into())),
        };
        let mut pipe = redis::pipe();
        for shard in 0..SHARDS {
            pipe.cmd("SET").arg(self.keys.shard_epoch(shard)).arg(&registration.epoch).arg("NX").ignore();
        }
        self.run(|c| pipe.query::<()>(c))?;
        Ok(registration)
    }

    fn beat(&mut self, member: &str, lease_ms: u64, epoch: &str) -> StoreResult<Beat> {
        // A restarted server that kept an older save still holds the epoch, but its sequence
        // numbers went back: readers would skip the new entries as already applied. Treat
        // it as a store that lost its data (re-announce, rebuild from snapshots).
        self.connection()?;
        if std::mem::take(&mut self.restarted) {
            return Ok(Beat::EpochChanged);
        }
        let answer = self.meta("beat", member, lease_ms, epoch)?;
        let answer = items(&answer)?;
        match answer.first().map(text).transpose()?.as_deref() {
            Some("epoch") => Ok(Beat::EpochChanged),
            Some("fenced") => Ok(Beat::Fenced),
            Some("ok") if answer.len() == 4 => Ok(Beat::Renewed {
                alive: text(&answer[1])?.parse().map_err(down)?,
                expired: items(&answer[2])?.iter().map(text).collect::<StoreResult<_>>()?,
                now: text(&answer[3])?.parse().map_err(down)?,
            }),
            _ => Err(StoreError::Down("malformed lease answer".into())),
        }
    }

    fn write(
        &mut self,
        node: &str,
        registration: &Registration,
        deltas: &[Delta],
    ) -> (usize, StoreResult<()>) {
        let script = self.scripts.write.get_hash().to_string();
        let me = member(node, registration.incarnation);
        let batches = shard_batches(deltas);
        let mut pipe = redis::pipe();
        for (shard, indexes) in &batches {
            let mut args = vec![
                node.to_string(),
                registration.incarnation.to_string(),
                self.retention.to_string(),
                registration.epoch.clone(),
                self.keys.user_prefix(*shard),
                self.keys.channel_prefix(*shard),
                self.keys.watches_prefix(*shard),
            ];
            for &i in indexes {
                push_change_args(&mut args, &deltas[i]);
            }
            pipe.cmd("EVALSHA").arg(&script).arg(8).arg(&self.write_keys(&me, *shard)[..]).arg(args);
        }
        let answers: Vec<Value> = match self.run(|c| pipe.query(c)) {
            Ok(a) => a,
            Err(e) => return (0, Err(e)),
        };
        // A refused call refused all of its deltas; every delta before the first refused
        // one is in a call that was applied.
        let mut first_refused: Option<(usize, StoreError)> = None;
        for ((_, indexes), answer) in batches.iter().zip(&answers) {
            let refusal = items(answer).ok().and_then(|a| a.first()).and_then(|v| text(v).ok());
            let error = match refusal.as_deref() {
                Some("fenced") => StoreError::Fenced,
                Some("epoch") => StoreError::Lost,
                _ => continue,
            };
            if first_refused.as_ref().is_none_or(|(at, _)| indexes[0] < *at) {
                first_refused = Some((indexes[0], error));
            }
        }
        match first_refused {
            Some((at, error)) => (at, Err(error)),
            None => (deltas.len(), Ok(())),
        }
    }

    fn read(&mut self, cursors: &[u64; SHARDS], max: usize) -> StoreResult<Vec<Entry>> {
        let logs: Vec<String> = (0..SHARDS).map(|s| self.keys.log(s)).collect();
        let ids: Vec<String> = cursors.iter().map(|n| format!("0-{n}")).collect();
        // Not BLOCK: Redis checks blocking timeouts only about every 100 ms (its `hz`), and
        // writes would wait behind a blocked read; the link thread paces idle polls itself.
        let answer: Value = self.run(|c| {
            redis::cmd("XREAD").arg("COUNT").arg(max).arg("STREAMS").arg(&logs).arg(&ids).query(c)
        })?;
        let mut out = Vec::new();
        for stream in items(&answer)? {
            let [name, entries] = items(stream)? else {
                return Err(StoreError::Down("malformed stream reply".into()));
            };
            let name = text(name)?;
            let shard =
                logs.iter().position(|l| *l == name).ok_or_else(|| down("reply names an unknown log"))?;
            for entry in items(entries)? {
                let [id, fields] = items(entry)? else {
                    return Err(StoreError::Down("malformed stream entry".into()));
                };
                let id = text(id)?;
                let seq =
                    id.strip_prefix("0-").and_then(|n| n.parse().ok()).ok_or_else(|| down("entry id"))?;
                let [name, Value::BulkString(encoded)] = items(fields)? else {
                    return Err(StoreError::Down("malformed stream entry".into()));
                };
                if text(name)? != "e" {
                    return Err(StoreError::Down("malformed stream entry".into()));
                }
                out.push(Entry { shard, seq, changes: Stored::parse(&decode_entry(encoded)?)? });
            }
        }
        Ok(out)
    }

    fn snapshot(&mut self, shard: usize) -> StoreResult<Snapshot> {
        let hash = self.scripts.snapshot.get_hash().to_string();
        let keys = [self.keys.users(shard), self.keys.seq(shard), self.keys.channels(shard)];
        let args = [self.keys.user_prefix(shard), self.keys.channel_prefix(shard)];
        let answer = self.shard_call(&hash, &keys, &args)?;
        let [seq, users, channels] = items(&answer)? else {
            return Err(StoreError::Down("malformed snapshot reply".into()));
        };
        let odd = || StoreError::Down("odd snapshot reply".into());
        let users = items(users)?
            .chunks(2)
            .map(|pair| match pair {
                [uid, hash] => StoredChange::parse(Some(&text(uid)?), &pairs(hash)?, true),
                _ => Err(odd()),
            })
            .collect::<StoreResult<_>>()?;
        let channels = items(channels)?
            .chunks(2)
            .map(|pair| match pair {
                [cid, hash] => StoredChannel::parse(Some(&text(cid)?), &pairs(hash)?, true),
                _ => Err(odd()),
            })
            .collect::<StoreResult<_>>()?;
        Ok(Snapshot { seq: text(seq)?.parse().map_err(down)?, users, channels })
    }

    fn reap(&mut self, dead: &str, now: Millis, lock_ms: u64) -> StoreResult<bool> {
        let lock = self.keys.reap_lock(dead);
        let locked: Value =
            self.run(|c| redis::cmd("SET").arg(&lock).arg(1).arg("NX").arg("PX").arg(lock_ms).query(c))?;
        if locked == Value::Nil {
            return Ok(false);
        }
        let (node, inc) = dead.rsplit_once('#').ok_or_else(|| down("lease member without incarnation"))?;
        let hash = self.scripts.reap.get_hash().to_string();
        for shard in 0..SHARDS {
            let keys = [
                self.keys.log(shard),
                self.keys.seq(shard),
                self.keys.fence(shard),
                self.keys.node_connections(shard, dead),
                self.keys.node_watches(shard, dead),
            ];
            let args = [
                node.to_string(),
                inc.to_string(),
                self.retention.to_string(),
                self.keys.user_prefix(shard),
                now.to_string(),
                self.keys.channel_prefix(shard),
            ];
            self.shard_call(&hash, &keys, &args)?;
        }
        self.meta("forget", dead, 0, "")?;
        Ok(true)
    }
}
