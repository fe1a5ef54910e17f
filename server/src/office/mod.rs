//! Office workflows that read and write the service history; the rules come
//! from `service`, the rows from `db`.

pub mod closed_loop;
pub mod escalations;
pub mod policy_store;
pub mod sla_watch;
pub mod webhooks;
