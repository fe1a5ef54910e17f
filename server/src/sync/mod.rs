//! The automerge-repo sync server: sans-IO protocol (`session`, `doc_state`),
//! the tasks that drive it (`doc_actor`, `hub`) and the WebSocket glue (`ws`).

pub mod batch;
pub mod chunk_guard;
pub mod doc_actor;
pub mod doc_state;
#[cfg(test)]
mod fuzz_tests;
pub mod hub;
pub mod integrity;
#[cfg(test)]
mod merge_properties;
pub mod outbox;
pub mod presence;
pub mod rate;
pub mod session;
pub mod validation;
pub mod ws;
