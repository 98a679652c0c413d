//! An embeddable user-presence engine: who is online, invisible, what their status and
//! last-seen time are, who is in and watching which channel, and presence-change events
//! the moment any of that changes.
//!
//! [`Engine`] is the entry point; the C ABI lives in `ffi` and `include/presence.h`.
pub mod channel;
pub mod config;
mod engine;
pub mod error;
pub mod event;
pub mod ffi;
mod persist;
pub(crate) mod query;
mod state;
pub mod time;
pub mod user;

pub use config::{Clock, Config, Dispatch};
pub use engine::{Engine, ListenerFilter, ListenerId};
pub use error::{Error, ErrorKind, Result};
pub use event::{ChannelRef, CloseReason, ConnectionId, Delivery, Event, EventKind};
pub use user::{UserPatch, UserSnapshot, View};

impl ConnectionId {
    /// The host itself as a viewer: own views of everyone.
    pub const HOST: ConnectionId = ConnectionId(0);
}
