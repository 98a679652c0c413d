//! Channels: `cid` validation and channel input.
use crate::error::{quote, Error, Result};
use crate::time::{check_millis, parse_millis, Millis};
use crate::user::{forbidden_id_character, validate_user_id};
use serde_json::Value;

const MANAGED_CHANNEL_FIELDS: [&str; 3] = ["member_count", "created_at", "updated_at"];
/// Names a custom field may not take: they would render over a real field.
const RESERVED_CHANNEL_FIELDS: [&str; 8] =
    ["cid", "type", "id", "members", "member_count", "created_at", "updated_at", "last_message_at"];

/// Checks a channel type: `[a-z0-9_-]{1,64}`.
pub fn validate_channel_type(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("channel type {} must match [a-z0-9_-]{{1,64}}", quote(t))))
    }
}

/// Checks a channel id: 1..=64 bytes, no whitespace, control character, Unicode format
/// character (general category Cf, as for user ids) or `:`.
pub fn validate_channel_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 {
        return Err(Error::invalid(format!("channel id must be 1..=64 bytes, got {} bytes", id.len())));
    }
    if id.contains(':') || forbidden_id_character(id).is_some() {
        return Err(Error::invalid(format!(
            "channel id {} contains whitespace, a control or format character, or ':'",
            quote(id)
        )));
    }
    Ok(())
}

/// Splits and checks a `type:id` cid, answering the length of the type. Cost: O(len).
pub fn parse_cid(cid: &str) -> Result<usize> {
    let Some((t, id)) = cid.split_once(':') else {
        return Err(Error::invalid(format!("cid {} must be 'type:id'", quote(cid))));
    };
    validate_channel_type(t)?;
    validate_channel_id(id)?;
    Ok(t.len())
}

/// A validated channel upsert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelPatch {
    /// `type:id` of the channel to create or update.
    pub cid: String,
    /// User ids to add as members (never removes any; users that do not exist are created
    /// with only their id).
    pub members: Vec<String>,
    /// `Some(None)` clears it.
    pub last_message_at: Option<Option<Millis>>,
    /// `None` removes the field.
    pub custom: Vec<(String, Option<Value>)>,
}

impl ChannelPatch {
    /// A patch that names only the channel (`type:id`); fill in the fields to change.
    pub fn cid(cid: impl Into<String>) -> Self {
        ChannelPatch { cid: cid.into(), ..ChannelPatch::default() }
    }

    /// Checks the rules a typed patch may break: the cid, member ids, custom field names
    /// and the range of `last_message_at`. Cost: O(size of the patch).
    pub fn validate(&self) -> Result<usize> {
        let type_len = parse_cid(&self.cid)?;
        if let Some(Some(t)) = self.last_message_at {
            check_millis("channel: last_message_at", t)?;
        }
        for id in &self.members {
            validate_user_id(id)?;
        }
        if let Some((key, _)) =
            self.custom.iter().find(|(k, _)| RESERVED_CHANNEL_FIELDS.contains(&k.as_str()))
        {
            return Err(Error::invalid(format!(
                "channel: '{key}' is not a custom field name (it is the engine's)"
            )));
        }
        Ok(type_len)
    }

    /// Parses `{"type", "id", "members": [...], "last_message_at": ..., custom...}`
    /// (or `"cid"` instead of `type` and `id`). Cost: O(len).
    pub fn from_json(json: &str) -> Result<ChannelPatch> {
        let value: Value = serde_json::from_str(json).map_err(|e| Error::json(format!("channel: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Error::json("channel: expected a JSON object"));
        };
        let mut patch = ChannelPatch::default();
        let (mut ty, mut id, mut cid) = (None, None, None);
        let string = |key: &str, v: Value| match v {
            Value::String(s) => Ok(s),
            other => Err(Error::json(format!("channel: {key} must be a string, got {other}"))),
        };
        for (key, value) in map {
            match key.as_str() {
                "type" => ty = Some(string("type", value)?),
                "id" => id = Some(string("id", value)?),
                "cid" => cid = Some(string("cid", value)?),
                "members" => patch.members = parse_user_ids(&value)?,
                "last_message_at" => {
                    patch.last_message_at = Some(match value {
                        Value::Null => None,
                        Value::String(s) => Some(parse_millis(&s)?),
                        other => {
                            return Err(Error::json(format!(
                                "channel: last_message_at must be an RFC 3339 string or null, got {other}"
                            )))
                        }
                    })
                }
                k if MANAGED_CHANNEL_FIELDS.contains(&k) => {
                    return Err(Error::invalid(format!(
                        "channel: '{k}' is managed by the engine and cannot be set"
                    )))
                }
                _ => patch.custom.push((key, if value.is_null() { None } else { Some(value) })),
            }
        }
        patch.cid = match (ty, id, cid) {
            (Some(t), Some(i), None) => format!("{t}:{i}"),
            (Some(t), Some(i), Some(c)) if c == format!("{t}:{i}") => c,
            (None, None, Some(c)) => c,
            _ => {
                return Err(Error::json(
                    "channel: give \"type\" and \"id\", or \"cid\" (consistent with them)",
                ))
            }
        };
        parse_cid(&patch.cid)?;
        Ok(patch)
    }
}

/// Parses a JSON array of user ids, checking each. Cost: O(len).
pub fn parse_user_ids(value: &Value) -> Result<Vec<String>> {
    let Value::Array(items) = value else {
        return Err(Error::json(format!("expected a JSON array of user ids, got {value}")));
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => validate_user_id(s).map(|_| s.clone()),
            other => Err(Error::json(format!("user ids must be strings, got {other}"))),
        })
        .collect()
}

/// Parses user-id array JSON text.
pub fn parse_user_ids_json(json: &str) -> Result<Vec<String>> {
    let value: Value = serde_json::from_str(json).map_err(|e| Error::json(format!("user ids: {e}")))?;
    parse_user_ids(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind::*;

    #[test]
    fn cids() {
        assert_eq!(parse_cid("messaging:general").unwrap(), 9);
        for bad in ["general", "Mess:x", ":x", "t:", "t:a:b", "t:a b", &format!("t:{}", "x".repeat(65))] {
            assert_eq!(parse_cid(bad).unwrap_err().kind(), Invalid, "{bad}");
        }
    }

    #[test]
    fn channel_patch() {
        let p = ChannelPatch::from_json(r#"{"type":"team","id":"red","members":["a","b"],"color":"red"}"#)
            .unwrap();
        assert_eq!(p.cid, "team:red");
        assert_eq!(p.members, vec!["a", "b"]);
        assert_eq!(p.custom, vec![("color".into(), Some(Value::from("red")))]);
        assert_eq!(ChannelPatch::from_json(r#"{"cid":"team:red"}"#).unwrap().cid, "team:red");
        assert_eq!(ChannelPatch::from_json(r#"{"type":"team"}"#).unwrap_err().kind(), Json);
        assert_eq!(
            ChannelPatch::from_json(r#"{"cid":"team:red","member_count":3}"#).unwrap_err().kind(),
            Invalid
        );
        assert_eq!(ChannelPatch::from_json(r#"{"cid":"team:red","members":[1]}"#).unwrap_err().kind(), Json);
        assert_eq!(
            ChannelPatch::from_json(r#"{"cid":"team:red","members":["a b"]}"#).unwrap_err().kind(),
            Invalid
        );
    }
}
