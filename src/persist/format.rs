//! The snapshot document: `{"format": "presence-engine", "version": 1, "users": [...],
//! "channels": [...]}`, in that key order. Users are written in their own view without
//! `online` (everyone loads offline); channels with their fields and sorted member ids,
//! sorted by cid.
//!
//! Both directions stream: writing serializes straight from the shared records into the
//! file, reading parses one entry at a time and feeds it to the core, so neither holds a
//! tree of the whole document. `format` and `version` must come before the data, so a
//! file that is not a snapshot is rejected before anything else is read; each entry's
//! fields other than `members` are capped at [`MAX_ENTRY_FIELD_BYTES`] of JSON text
//! before they are parsed into values.
use crate::channel::ChannelPatch;
use crate::core::{LoadedChannel, LoadedUser, Restore, Saved, SavedChannel};
use crate::error::{Error, Result};
use crate::time::{parse_millis, Millis};
use crate::user::{validate_user_id, StoredUser, UserPatch, UserSnapshot};
use serde::de::{self, DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use std::io::{self, Read, Write};

/// Snapshot format version written by `save` and required by `load`.
pub const SNAPSHOT_VERSION: u64 = 1;
const FORMAT_NAME: &str = "presence-engine";
/// The most JSON text the fields of one user or channel may take in a snapshot, `members`
/// aside: far above what the engine writes (an id, a status and 5 KiB of custom data),
/// small enough that parsing it into values costs little.
pub const MAX_ENTRY_FIELD_BYTES: usize = 256 * 1024;

// ----- writing -----

/// Writes the snapshot document of `saved` to `out`, sorting channels by cid and members
/// by id first. Cost: O(size of the data + channels log channels + members log members).
pub fn write(out: &mut impl Write, mut saved: Saved) -> io::Result<()> {
    saved.channels.sort_unstable_by(|a, b| a.channel.cid.cmp(&b.channel.cid));
    let users = &saved.users;
    for ch in &mut saved.channels {
        ch.members.sort_unstable_by(|&a, &b| users[a as usize].id.cmp(&users[b as usize].id));
    }
    serde_json::to_writer(out, &Document(&saved)).map_err(io::Error::from)
}

struct Document<'a>(&'a Saved);

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("format", FORMAT_NAME)?;
        m.serialize_entry("version", &SNAPSHOT_VERSION)?;
        m.serialize_entry("users", &Seq(self.0.users.iter().map(StoredUser)))?;
        let users = &self.0.users;
        m.serialize_entry(
            "channels",
            &Seq(self.0.channels.iter().map(|channel| StoredChannel { channel, users })),
        )?;
        m.end()
    }
}

/// Serializes the items of an iterator as a JSON array without collecting them.
struct Seq<I>(I);

impl<I: Iterator<Item = T> + Clone, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for item in self.0.clone() {
            seq.serialize_element(&item)?;
        }
        seq.end()
    }
}

/// A channel's fields followed by its `members`' ids.
struct StoredChannel<'a> {
    channel: &'a SavedChannel,
    users: &'a [UserSnapshot],
}

impl Serialize for StoredChannel<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.channel.channel.serialize_fields(&mut m)?;
        let ids = self.channel.members.iter().map(|&u| &*self.users[u as usize].id);
        m.serialize_entry("members", &Seq(ids))?;
        m.end()
    }
}

// ----- reading -----

/// Parses a snapshot document from `reader`, adding each user and channel to `restore` as
/// it is read. A read failure, a syntax error and a document breaking a rule are told
/// apart by the error's category (`Io`, `Syntax`/`Eof`, `Data`). Cost: O(size of the
/// document); memory O(largest entry).
pub fn read(reader: impl Read, restore: &mut Restore) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    DocumentSeed(restore).deserialize(&mut de).and_then(|()| de.end())
}

/// Passes an error from the core through serde, keeping its message.
fn rejected<E: de::Error>(e: Error) -> E {
    E::custom(e.message())
}

struct DocumentSeed<'r>(&'r mut Restore);

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a presence-engine snapshot object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let wrong = |what: &str| A::Error::custom(format!("not a presence-engine snapshot ({what})"));
        if map.next_key::<String>()?.as_deref() != Some("format") {
            return Err(wrong("it must begin with \"format\""));
        }
        if map.next_value::<String>()? != FORMAT_NAME {
            return Err(wrong("\"format\" is not \"presence-engine\""));
        }
        if map.next_key::<String>()?.as_deref() != Some("version") {
            return Err(wrong("\"version\" must follow \"format\""));
        }
        let version = map.next_value::<Box<RawValue>>()?;
        if version.get() != SNAPSHOT_VERSION.to_string() {
            let shown: String = version.get().chars().take(40).collect();
            return Err(A::Error::custom(format!(
                "unsupported version {shown}, expected {SNAPSHOT_VERSION}"
            )));
        }
        let (mut users, mut channels) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "users" if !users && !channels => {
                    map.next_value_seed(Entries { restore: &mut *self.0, channels: false })?;
                    users = true;
                }
                "channels" if users && !channels => {
                    map.next_value_seed(Entries { restore: &mut *self.0, channels: true })?;
                    channels = true;
                }
                "users" | "channels" => {
                    return Err(A::Error::custom(
                        "\"users\" and \"channels\" must come once each, users first",
                    ))
                }
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        if !channels {
            return Err(A::Error::custom(format!(
                "missing \"{}\" array",
                if users { "channels" } else { "users" }
            )));
        }
        Ok(())
    }
}

/// The `users` or `channels` array, each entry added to the restore as soon as it is read.
struct Entries<'r> {
    restore: &'r mut Restore,
    channels: bool,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.channels { "an array of channels" } else { "an array of users" })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let what = if self.channels { "channel" } else { "user" };
        while let Some(entry) = seq.next_element_seed(EntrySeed { what, members: self.channels })? {
            let added = if self.channels {
                read_channel(entry).and_then(|c| self.restore.add_channel(c))
            } else {
                read_user(entry.fields).and_then(|u| self.restore.add_user(u))
            };
            added.map_err(rejected)?;
        }
        Ok(())
    }
}

/// One user or channel: its fields parsed into values once their text was found small
/// enough, and (channels) its member ids.
struct Entry {
    fields: Map<String, Value>,
    members: Option<Vec<String>>,
}

struct EntrySeed {
    what: &'static str,
    /// Read `members` as a list of ids (channels) instead of as a field.
    members: bool,
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Entry;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Entry, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} object", self.what)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Entry, A::Error> {
        let mut raw: Vec<(String, Box<RawValue>)> = Vec::new();
        let mut members = None;
        let mut bytes = 0usize;
        while let Some(key) = map.next_key::<String>()? {
            if self.members && key == "members" {
                members = Some(map.next_value::<Vec<String>>()?);
                continue;
            }
            let value = map.next_value::<Box<RawValue>>()?;
            bytes += key.len() + value.get().len();
            if bytes > MAX_ENTRY_FIELD_BYTES {
                return Err(A::Error::custom(format!(
                    "a {}'s fields take more than {MAX_ENTRY_FIELD_BYTES} bytes of JSON",
                    self.what
                )));
            }
            raw.push((key, value));
        }
        let mut fields = Map::new();
        for (key, value) in raw {
            fields.insert(key, serde_json::from_str(value.get()).map_err(A::Error::custom)?);
        }
        Ok(Entry { fields, members })
    }
}

/// Takes an optional timestamp field out of `m`.
fn time(m: &mut Map<String, Value>, key: &str) -> Result<Option<Millis>> {
    match m.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_millis(&s).map(Some),
        Some(other) => Err(Error::json(format!("{key} must be a timestamp, got {other}"))),
    }
}

fn read_user(mut m: Map<String, Value>) -> Result<LoadedUser> {
    let last_active = time(&mut m, "last_active")?;
    let created_at = time(&mut m, "created_at")?.unwrap_or(0);
    let updated_at = time(&mut m, "updated_at")?.unwrap_or(created_at);
    let patch = UserPatch::from_value(Value::Object(m))?;
    Ok(LoadedUser { patch, last_active, created_at, updated_at })
}

fn read_channel(entry: Entry) -> Result<LoadedChannel> {
    let Entry { fields: mut m, members } = entry;
    let created_at = time(&mut m, "created_at")?.unwrap_or(0);
    let updated_at = time(&mut m, "updated_at")?.unwrap_or(created_at);
    m.shift_remove("member_count");
    m.shift_remove("type");
    m.shift_remove("id");
    let mut patch = ChannelPatch::from_json(&Value::Object(m).to_string())?;
    let members = members.unwrap_or_default();
    for id in &members {
        validate_user_id(id)?;
    }
    patch.members = members;
    Ok(LoadedChannel { patch, created_at, updated_at })
}
