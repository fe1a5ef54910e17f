//! Identity: accounts with argon2id passwords, JWT access tokens and rotating
//! refresh tokens.

pub mod accounts;
pub mod devices;
pub mod jwt;
pub mod password;
pub mod sessions;
