//! Channels through the engine on a manual clock: members, watchers, presence
//! subscriptions, event delivery and queries, asserting exact event sequences (who gets
//! what, in which order and view) and exact JSON answers.
#[path = "../common/mod.rs"]
mod common;

mod delivery;
mod invisible;
mod members;
mod queries;
mod routes_model;
mod subscriptions;
mod watching;
