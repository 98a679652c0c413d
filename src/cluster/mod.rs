//! Cluster mode: the link between an engine and the shared store (Redis or Valkey) that
//! lets several engines share one presence. The core stays sans-IO: it hands over what it
//! changed (deltas) and applies what others changed (remote changes); this module moves
//! them between the core and the store on one background thread per engine.
pub(crate) mod link;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod redis_store;
#[cfg(test)]
mod sim;
pub(crate) mod store;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
