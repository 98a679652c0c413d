//! The snapshot document: `{"format": "presence-engine", "version": 1, "users": [...],
//! "channels": [...]}`. Users are written in their own view without `online` (everyone
//! loads offline); channels with their fields and sorted member ids. Reading checks the
//! document and feeds the core one typed entry at a time.
use crate::channel::ChannelPatch;
use crate::core::{LoadedChannel, LoadedUser, Restore, Saved, SavedChannel, State};
use crate::error::{Error, ErrorKind, Result};
use crate::time::{parse_millis, Millis};
use crate::user::{UserPatch, View};
use serde_json::{json, Map, Value};

/// Snapshot format version written by `save` and required by `load`.
pub const SNAPSHOT_VERSION: u64 = 1;
const FORMAT_NAME: &str = "presence-engine";

/// The snapshot document of `saved`. Cost: O(size of the data).
pub fn document(saved: &Saved) -> Value {
    let users: Vec<Value> = saved
        .users
        .iter()
        .map(|u| {
            let mut v = u.to_value(View::Own);
            if let Value::Object(m) = &mut v {
                m.shift_remove("online");
            }
            v
        })
        .collect();
    let channels: Vec<Value> = saved.channels.iter().map(channel_value).collect();
    json!({"format": FORMAT_NAME, "version": SNAPSHOT_VERSION, "users": users, "channels": channels})
}

fn channel_value(saved: &SavedChannel) -> Value {
    let mut v = serde_json::to_value(&saved.channel).expect("a channel always serializes");
    let members: Vec<&str> = saved.members.iter().map(|id| &**id).collect();
    if let Value::Object(m) = &mut v {
        m.insert("members".into(), json!(members));
    }
    v
}

/// Replaces the users and channels of `state` with those of a snapshot document; see
/// `State::load`. Whatever is wrong inside the document is an `ErrorKind::Json` error.
/// Cost: O(size of the document).
pub fn load(state: &mut State, doc: &Value) -> Result<()> {
    state.load(|restore| {
        read(restore, doc).map_err(|e| match e.kind() {
            ErrorKind::Json => e,
            _ => Error::json(format!("snapshot: {}", e.message())),
        })
    })
}

fn malformed(what: String) -> Error {
    Error::json(format!("snapshot: {what}"))
}

fn read(restore: &mut Restore, doc: &Value) -> Result<()> {
    if doc.get("format").and_then(Value::as_str) != Some(FORMAT_NAME) {
        return Err(malformed("not a presence-engine snapshot (\"format\" missing or wrong)".into()));
    }
    match doc.get("version").and_then(Value::as_u64) {
        Some(SNAPSHOT_VERSION) => {}
        other => {
            return Err(malformed(format!("unsupported version {other:?}, expected {SNAPSHOT_VERSION}")))
        }
    }
    for user in array(doc, "users")? {
        restore.add_user(read_user(user)?)?;
    }
    for channel in array(doc, "channels")? {
        restore.add_channel(read_channel(channel)?)?;
    }
    Ok(())
}

fn array<'a>(doc: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    doc.get(key).and_then(Value::as_array).ok_or_else(|| malformed(format!("missing \"{key}\" array")))
}

/// Takes an optional timestamp field out of `m`.
fn time(m: &mut Map<String, Value>, key: &str) -> Result<Option<Millis>> {
    match m.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_millis(&s).map(Some),
        Some(other) => Err(malformed(format!("{key} must be a timestamp, got {other}"))),
    }
}

fn read_user(user: &Value) -> Result<LoadedUser> {
    let Value::Object(mut m) = user.clone() else {
        return Err(malformed("a user is not an object".into()));
    };
    let last_active = time(&mut m, "last_active")?;
    let created_at = time(&mut m, "created_at")?.unwrap_or(0);
    let updated_at = time(&mut m, "updated_at")?.unwrap_or(created_at);
    let patch = UserPatch::from_value(Value::Object(m))?;
    Ok(LoadedUser { patch, last_active, created_at, updated_at })
}

fn read_channel(channel: &Value) -> Result<LoadedChannel> {
    let Value::Object(mut m) = channel.clone() else {
        return Err(malformed("a channel is not an object".into()));
    };
    let created_at = time(&mut m, "created_at")?.unwrap_or(0);
    let updated_at = time(&mut m, "updated_at")?.unwrap_or(created_at);
    m.shift_remove("member_count");
    m.shift_remove("type");
    m.shift_remove("id");
    let patch = ChannelPatch::from_json(&Value::Object(m).to_string())?;
    Ok(LoadedChannel { patch, created_at, updated_at })
}
