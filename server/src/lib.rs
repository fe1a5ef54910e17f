//! fieldsync server: an offline-first sync backend for field-service tickets.
//! See README.md for the architecture and DESIGN notes.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod blobs;
pub mod cli;
pub mod console;
pub mod db;
pub mod demo;
pub mod history;
pub mod memory;
pub mod metrics;
pub mod office;
pub mod progress;
pub mod projection;
pub mod records;
pub mod request_id;
pub mod service;
pub mod sharing;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod timestamps;
pub mod versioning;
