//! Users: input validation, the stored record, and the two views (own and public).
use crate::error::{quote, Error, Result};
use crate::shared_str::SharedStr;
use crate::time::{Millis, Timestamp};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 255;
/// Longest status text, in bytes.
pub const MAX_STATUS_BYTES: usize = 1024;
/// Most custom JSON per user, in bytes of compact JSON.
pub const MAX_CUSTOM_BYTES: usize = 5 * 1024;

/// Fields the engine manages; input naming them is rejected.
const MANAGED_FIELDS: [&str; 4] = ["online", "last_active", "created_at", "updated_at"];
/// Names a custom field may not take: they would render over a real field.
const RESERVED_FIELDS: [&str; 7] =
    ["id", "online", "status", "last_active", "invisible", "created_at", "updated_at"];

/// Custom fields in insertion order.
pub type CustomFields = Map<String, Value>;

/// The Unicode format characters (general category Cf, Unicode 15.1): zero-width spaces
/// and joiners, the byte order mark, bidirectional overrides, invisible operators, tags.
/// They render as nothing, so an id holding one could pass for another id.
const FORMAT_CHARACTERS: [(char, char); 21] = [
    ('\u{AD}', '\u{AD}'),
    ('\u{600}', '\u{605}'),
    ('\u{61C}', '\u{61C}'),
    ('\u{6DD}', '\u{6DD}'),
    ('\u{70F}', '\u{70F}'),
    ('\u{890}', '\u{891}'),
    ('\u{8E2}', '\u{8E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a Unicode format character (general category Cf). O(1).
pub(crate) fn is_format_character(c: char) -> bool {
    FORMAT_CHARACTERS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The first character an id may not hold: whitespace, a control character or a Unicode
/// format character (general category Cf: zero-width spaces and joiners, the byte order
/// mark, bidirectional overrides), so that two ids that look the same are the same id.
/// Cost: O(len).
pub(crate) fn forbidden_id_character(id: &str) -> Option<char> {
    // The usual ids are printable ASCII, which a byte test clears: no ASCII character is a
    // format character, and ASCII's whitespace and controls are exactly the bytes outside
    // `!`..=`~`.
    if id.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    id.chars().find(|&c| c.is_whitespace() || c.is_control() || is_format_character(c))
}

/// Checks a user id: 1..=255 bytes, no whitespace, no control characters, no Unicode
/// format characters (general category Cf, such as U+200B ZERO WIDTH SPACE; this rejects
/// emoji sequences joined by U+200D too). Cost: O(len).
pub fn validate_user_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_USER_ID_BYTES {
        return Err(Error::invalid(format!(
            "user id must be 1..={MAX_USER_ID_BYTES} bytes, got {} bytes",
            id.len()
        )));
    }
    if let Some(c) = forbidden_id_character(id) {
        return Err(Error::invalid(format!(
            "user id {} contains whitespace, a control or a format character ({c:?})",
            quote(id)
        )));
    }
    Ok(())
}

pub(crate) fn validate_status(status: &str) -> Result<()> {
    if status.len() > MAX_STATUS_BYTES {
        return Err(Error::invalid(format!(
            "status is {} bytes, at most {MAX_STATUS_BYTES} allowed",
            status.len()
        )));
    }
    Ok(())
}

/// What a user upsert changes, apart from naming the user: the core applies it to the user
/// an id names, so that connecting by id alone or switching visibility needs no owned
/// patch (and no allocation). The default changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UserChanges<'a> {
    /// `Some(None)` clears the status.
    pub status: Option<Option<&'a str>>,
    /// `Some` sets the sticky invisible flag; `None` keeps it.
    pub invisible: Option<bool>,
    /// `None` removes the field.
    pub custom: &'a [(String, Option<Value>)],
}

impl UserChanges<'_> {
    /// The status length and the custom field names. Cost: O(len of status + fields).
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(Some(status)) = self.status {
            validate_status(status)?;
        }
        if let Some((key, _)) = self.custom.iter().find(|(k, _)| RESERVED_FIELDS.contains(&k.as_str())) {
            return Err(Error::invalid(format!(
                "user: '{key}' is not a custom field name (it is the engine's)"
            )));
        }
        Ok(())
    }
}

/// A validated user upsert: the fields present in the input, nothing else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    /// The user to create or update.
    pub id: String,
    /// `Some(None)` clears the status.
    pub status: Option<Option<String>>,
    /// `Some` sets the sticky invisible flag; `None` keeps it.
    pub invisible: Option<bool>,
    /// `None` removes the field.
    pub custom: Vec<(String, Option<Value>)>,
}

impl UserPatch {
    /// A patch that names only the user.
    pub fn id(id: impl Into<String>) -> Self {
        UserPatch { id: id.into(), ..Default::default() }
    }

    /// Parses and validates user JSON (`{"id": "...", "status": ..., "invisible": ..., custom...}`).
    /// Cost: O(len).
    pub fn from_json(json: &str) -> Result<UserPatch> {
        let value: Value = serde_json::from_str(json).map_err(|e| Error::json(format!("user: {e}")))?;
        UserPatch::from_value(value)
    }

    /// Checks the rules a typed patch may break: the id and the status length (custom data
    /// size is checked when merged). Cost: O(len of id and status).
    pub fn validate(&self) -> Result<()> {
        validate_user_id(&self.id)?;
        self.changes().validate()
    }

    /// The fields it changes, borrowed.
    pub(crate) fn changes(&self) -> UserChanges<'_> {
        UserChanges {
            status: self.status.as_ref().map(Option::as_deref),
            invisible: self.invisible,
            custom: &self.custom,
        }
    }

    /// Validates an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<UserPatch> {
        let Value::Object(map) = value else {
            return Err(Error::json("user: expected a JSON object"));
        };
        let mut patch = UserPatch::default();
        let mut id = None;
        for (key, value) in map {
            match key.as_str() {
                "id" => match value {
                    Value::String(s) => id = Some(s),
                    other => return Err(Error::json(format!("user: id must be a string, got {other}"))),
                },
                "status" => match value {
                    Value::Null => patch.status = Some(None),
                    Value::String(s) => {
                        validate_status(&s)?;
                        patch.status = Some(Some(s));
                    }
                    other => {
                        return Err(Error::json(format!(
                            "user: status must be a string or null, got {other}"
                        )))
                    }
                },
                "invisible" => match value {
                    Value::Bool(b) => patch.invisible = Some(b),
                    other => {
                        return Err(Error::json(format!("user: invisible must be a boolean, got {other}")))
                    }
                },
                k if MANAGED_FIELDS.contains(&k) => {
                    return Err(Error::invalid(format!(
                        "user: '{k}' is managed by the engine and cannot be set"
                    )))
                }
                _ => patch.custom.push((key, if value.is_null() { None } else { Some(value) })),
            }
        }
        patch.id = id.ok_or_else(|| Error::json("user: missing \"id\""))?;
        validate_user_id(&patch.id)?;
        Ok(patch)
    }
}

/// Compact JSON size of a custom-field map.
fn custom_bytes(custom: &CustomFields) -> usize {
    serde_json::to_vec(custom).map(|v| v.len()).unwrap_or(usize::MAX)
}

/// Merges custom-field changes into `current`, answering the new map when something changed.
/// Fails, changing nothing, when the result would exceed [`MAX_CUSTOM_BYTES`]; `owner`
/// ("user", "channel") starts the message. Cost: O(size of the fields).
pub fn merge_custom(
    owner: &str,
    current: Option<&Arc<CustomFields>>,
    changes: &[(String, Option<Value>)],
) -> Result<Option<Arc<CustomFields>>> {
    if changes.is_empty() {
        return Ok(None);
    }
    let mut next: CustomFields = current.map(|c| (**c).clone()).unwrap_or_default();
    let mut changed = false;
    for (key, value) in changes {
        match value {
            Some(v) => {
                if next.get(key) != Some(v) {
                    next.insert(key.clone(), v.clone());
                    changed = true;
                }
            }
            None => changed |= next.shift_remove(key).is_some(),
        }
    }
    if !changed {
        return Ok(None);
    }
    let size = custom_bytes(&next);
    if size > MAX_CUSTOM_BYTES {
        return Err(Error::invalid(format!(
            "{owner}: custom data is {size} bytes, at most {MAX_CUSTOM_BYTES} allowed"
        )));
    }
    Ok(Some(Arc::new(next)))
}

/// Which rendering of a user a recipient is entitled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The user's own connections and the host: adds `invisible`, `online` means connected.
    Own,
    /// Everyone else: `online` is false while invisible, no `invisible` field.
    Public,
}

/// An immutable picture of a user at one moment, shared by every recipient of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSnapshot {
    /// The user id.
    pub id: SharedStr,
    /// A number naming the user within its engine for the engine's whole life: keys start
    /// at 1, are given in the order users are created, and never name another user, also
    /// not after a load (loaded users get new ones). A host can index its own per-user data
    /// by it instead of hashing the id. Not saved in snapshots.
    pub key: u64,
    /// The custom status text; `None` when not set.
    pub status: Option<SharedStr>,
    /// Custom fields in insertion order; `None` when there are none.
    pub custom: Option<Arc<CustomFields>>,
    /// The sticky invisible flag (shown only in own views).
    pub invisible: bool,
    /// Holds a live connection (or is inside the offline grace).
    pub connected: bool,
    /// The last visible moment of activity (Unix milliseconds); `None` if the user never
    /// connected visibly.
    pub last_active: Option<Millis>,
    /// When the user was created (Unix milliseconds).
    pub created_at: Millis,
    /// When the user's status or custom fields last changed (Unix milliseconds); visibility
    /// changes never move it.
    pub updated_at: Millis,
}

impl UserSnapshot {
    /// The `online` flag in `view`.
    pub fn online(&self, view: View) -> bool {
        match view {
            View::Own => self.connected,
            View::Public => self.connected && !self.invisible,
        }
    }

    /// The user as a JSON object in `view`. Cost: O(size of the user).
    pub fn to_value(&self, view: View) -> Value {
        serde_json::to_value(UserView { user: self, view }).expect("a user always serializes")
    }
}

/// A user rendered in one view. It serializes straight into the output (no `Value`
/// tree), always in this field order: `id`, `online`, `status`, `last_active`,
/// `invisible` (own view only), `created_at`, `updated_at`, then custom fields.
#[derive(Clone, Copy)]
pub struct UserView<'a> {
    /// The user to render.
    pub user: &'a UserSnapshot,
    /// The view to render it in.
    pub view: View,
}

impl Serialize for UserView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_user(s, self.user, Some(self.user.online(self.view)), self.view == View::Own)
    }
}

/// A user as a snapshot file stores it: the own view without `online` (everyone loads
/// offline).
pub(crate) struct StoredUser<'a>(pub &'a UserSnapshot);

impl Serialize for StoredUser<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_user(s, self.0, None, true)
    }
}

/// The fields of `u` in their fixed order, with `online` and `invisible` as asked.
fn serialize_user<S: Serializer>(
    s: S,
    u: &UserSnapshot,
    online: Option<bool>,
    invisible: bool,
) -> std::result::Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("id", &*u.id)?;
    if let Some(online) = online {
        m.serialize_entry("online", &online)?;
    }
    if let Some(status) = &u.status {
        m.serialize_entry("status", &**status)?;
    }
    if let Some(t) = u.last_active {
        m.serialize_entry("last_active", &Timestamp(t))?;
    }
    if invisible {
        m.serialize_entry("invisible", &u.invisible)?;
    }
    m.serialize_entry("created_at", &Timestamp(u.created_at))?;
    m.serialize_entry("updated_at", &Timestamp(u.updated_at))?;
    for (k, v) in u.custom.iter().flat_map(|c| c.iter()) {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_patch() {
        let p = UserPatch::from_json(r#"{"id":"a","status":"hi","invisible":true,"name":"A","image":null}"#)
            .unwrap();
        assert_eq!(p.id, "a");
        assert_eq!(p.status, Some(Some("hi".into())));
        assert_eq!(p.invisible, Some(true));
        assert_eq!(p.custom, vec![("name".into(), Some(Value::from("A"))), ("image".into(), None)]);
    }

    #[test]
    fn rejects_bad_input_with_the_right_kind() {
        use crate::error::ErrorKind::*;
        let kind = |j: &str| UserPatch::from_json(j).unwrap_err().kind();
        assert_eq!(kind("{"), Json);
        assert_eq!(kind("[]"), Json);
        assert_eq!(kind(r#"{"status":"x"}"#), Json);
        assert_eq!(kind(r#"{"id":5}"#), Json);
        assert_eq!(kind(r#"{"id":""}"#), Invalid);
        assert_eq!(kind(r#"{"id":"a b"}"#), Invalid);
        assert_eq!(kind(r#"{"id":"a\u0001"}"#), Invalid);
        assert_eq!(kind(&format!(r#"{{"id":"{}"}}"#, "x".repeat(256))), Invalid);
        assert_eq!(kind(r#"{"id":"a","online":true}"#), Invalid);
        assert_eq!(kind(r#"{"id":"a","last_active":"x"}"#), Invalid);
        assert_eq!(kind(r#"{"id":"a","invisible":"yes"}"#), Json);
        assert_eq!(kind(&format!(r#"{{"id":"a","status":"{}"}}"#, "s".repeat(1025))), Invalid);
    }

    #[test]
    fn custom_merge_enforces_the_size_limit() {
        let big = vec![("blob".to_string(), Some(Value::String("x".repeat(MAX_CUSTOM_BYTES))))];
        assert_eq!(merge_custom("user", None, &big).unwrap_err().kind(), crate::error::ErrorKind::Invalid);
        let same = merge_custom("user", None, &[("a".into(), Some(1.into()))]).unwrap().unwrap();
        assert!(merge_custom("user", Some(&same), &[("a".into(), Some(1.into()))]).unwrap().is_none());
    }
}
