//! Identity: accounts with argon2id passwords, JWT access tokens and rotating
//! refresh tokens; login limits (hash pool, per-address rate, per-account
//! failure throttle).

pub mod accounts;
pub mod client_limit;
pub mod devices;
pub mod hash_pool;
pub mod jwt;
mod jwt_ring;
pub mod password;
pub mod sessions;
pub mod throttle;
