//! The C ABI. `include/presence.h` is generated from this folder by cbindgen
//! (`PRESENCE_BLESS=1 cargo test --test header` rewrites it; plain
//! `cargo test --test header` fails with a diff when it is stale), so the doc comments
//! here are the header's documentation: they say who owns what, what may be NULL and
//! which threads may call. One file per area, in the header's order: `engine`
//! (versions, errors, lifetime), `users`, `channels`, `queries`, `events`, `typed`,
//! `host_queues`, `typed_listeners` and `typed_reads` (ABI version 2: the typed event path), `time`, `persist`, `cluster`;
//! `support` holds the machinery they share.
//!
//! Every function runs its body behind `support::call`: a panic becomes
//! `PRESENCE_ERR_PANIC`, every failure leaves a message for `presence_last_error`, and
//! out-parameters are written only on success (all pointer arguments are checked before
//! anything changes, so a NULL out-parameter never leaves a half-done operation behind).
#![allow(clippy::missing_safety_doc)] // the contract of each function is in its doc comment

mod support;

// The areas, declared in the order their functions appear in the header (cbindgen keeps
// declaration order; the blank lines keep rustfmt from sorting them).
mod engine;

mod users;

mod channels;

mod queries;

mod events;

mod typed;

mod host_queues;

mod typed_listeners;

mod typed_reads;

mod time;

mod persist;

mod cluster;

pub use channels::*;
pub use cluster::*;
pub use engine::*;
pub use events::*;
pub use host_queues::*;
pub use persist::*;
pub use queries::*;
pub use time::*;
pub use typed::*;
pub use typed_listeners::*;
pub use typed_reads::*;
pub use users::*;

#[cfg(test)]
mod tests;
