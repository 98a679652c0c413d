//! An embeddable user-presence engine: who is online, invisible, what their status and
//! last-seen time are, who is in and watching which channel, and presence-change events
//! the moment any of that changes.
//!
//! [`Engine`] is the entry point; the C ABI lives in `ffi` and `include/presence.h`.
//!
//! Ids come from clients, so the indexes that find users and channels by id hash them with
//! SipHash-1-3 under secret random keys drawn per engine (the standard library's
//! `RandomState`): ids chosen to collide cannot degrade a lookup from O(1) to a scan.
//! Ids are 1..=255 bytes (channel ids 1..=64) without whitespace, control characters or
//! Unicode format characters (general category Cf: zero-width spaces and joiners, the byte
//! order mark, bidirectional overrides), so two ids that render alike are one id.
//!
//! ```
//! use presence::{Answer, ConnectionId, Engine, View};
//!
//! let engine = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1546867062375}"#))?;
//! engine.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#)?;
//! let bob = engine.connect_json(r#"{"id":"bob"}"#)?;
//! engine.start_watching(bob, "team:red", true)?;
//! let alice = engine.connect_json(r#"{"id":"alice","status":"in lobby"}"#)?;
//!
//! // bob's queue holds his own watching.start, then alice coming online.
//! let seen: Vec<_> = engine.poll_events(bob, 10)?.iter().map(|d| d.event.type_name()).collect();
//! assert_eq!(seen, ["user.watching.start", "user.presence.changed"]);
//!
//! // Invisible: offline to bob, still connected in alice's own view.
//! engine.set_invisible("alice", true)?;
//! assert!(!engine.get_user(bob, "alice")?.user.online(View::Public));
//! assert!(engine.get_user(alice, "alice")?.user.online(View::Own));
//! // Every answer renders as JSON in one step.
//! assert_eq!(engine.get_user(bob, "alice")?.to_value()["online"], false);
//! assert_eq!(engine.get_user(ConnectionId::HOST, "alice")?.to_value()["last_active"], "2019-01-07T13:17:42.375Z");
//! # Ok::<(), presence::Error>(())
//! ```
// Every public item (module, type, field, variant, function, constant) has a doc comment;
// `cargo build` fails naming any that lacks one.
#![deny(missing_docs)]

pub mod answer;
pub mod channel;
#[cfg(feature = "cluster")]
mod cluster;
pub mod config;
mod core;
mod engine;
pub mod error;
pub mod event;
pub mod ffi;
mod persist;
pub(crate) mod query;
mod replication;
pub mod shared_str;
pub mod time;
pub mod user;

pub use answer::{Answer, ChannelSnapshot, ChannelState, ChannelsAnswer, UsersAnswer, ViewedUser};
pub use channel::ChannelPatch;
pub use config::{Clock, ClusterConfig, Config, Dispatch, QueryBudget};
pub use crossbeam_channel::Receiver;
pub use engine::{
    Counts, Engine, ListenerFilter, ListenerId, ListenerPanics, EXTRA_ITEMS, MAX_RECEIVER_BOUND,
};
pub use error::{Error, ErrorKind, Result};
pub use event::{ChannelRef, CloseReason, ConnectionId, Delivery, Event, EventKind};
pub use shared_str::SharedStr;
pub use user::{UserPatch, UserSnapshot, View};

impl ConnectionId {
    /// The host itself as a viewer: own views of everyone.
    pub const HOST: ConnectionId = ConnectionId(0);
}
