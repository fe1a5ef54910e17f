//! What fieldsync's server and its devices share: document ids, the
//! automerge-repo wire protocol and, behind the `client` feature, the Rust
//! device client used by tests, the load generator and native apps.

pub mod cbor_shape;
pub mod doc_id;
pub mod permissions;
pub mod protocol;
pub mod roles;
pub mod status;
pub mod ticket;

pub use doc_id::DocumentId;

#[cfg(feature = "client")]
pub mod client;
