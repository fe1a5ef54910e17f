//! Password hashing: argon2id with a per-user random salt, stored as a PHC
//! string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`). Parameters follow
//! the OWASP recommendation (19 MiB memory, 2 iterations, 1 lane); verification
//! reads them from the stored string, so they can be raised later without
//! invalidating existing hashes.
//!
//! These functions are CPU- and memory-heavy: servers call them through
//! `hash_pool`, never on an async worker or while holding a database connection.

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};

pub const MIN_PASSWORD_LEN: usize = 8;
/// Longer passwords are refused: hashing cost grows with the input, and no
/// one types more.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// The most argon2 memory a stored hash may ask for (64 MiB): verification
/// memory is reused per worker thread and must stay bounded.
const MAX_VERIFY_BLOCKS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The length rules for a new password (checked before any hashing).
pub fn check_new(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if chars > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_new(password)?;
    // A random 16-byte salt from the OS (argon2's `getrandom` feature).
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Constant-time verification against a stored PHC string.
pub fn verify(password: &str, stored: &str) -> bool {
    verify_with(password, stored, &mut Vec::new())
}

/// `verify` with caller-owned argon2 memory: a hashing thread keeps one
/// buffer for its lifetime instead of allocating 19 MiB per attempt, so the
/// memory of a login burst is the pool size times 19 MiB, allocated once.
pub fn verify_with(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let mut check = || -> Option<bool> {
        let phc = PasswordHash::new(stored).ok()?;
        let expected = phc.hash?;
        let params = Params::try_from(&phc).ok()?;
        let algorithm = Algorithm::try_from(phc.algorithm.as_str()).ok()?;
        let version = match phc.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::V0x13,
        };
        let salt = phc.salt?;
        let blocks = params.block_count();
        if blocks > MAX_VERIFY_BLOCKS || password.len() > 4 * MAX_PASSWORD_LEN {
            return None;
        }
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory[..])
            .ok()?;
        // `Output` compares in constant time.
        Some(Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

/// A valid hash of no one's password: a login for an unknown user verifies
/// against it, so it costs the same time as a real one.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("not-a-real-password").expect("hash"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert_ne!(a, b, "per-user salt");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify("correct horse", &a));
        assert!(!verify("wrong horse", &a));
        assert!(!verify("correct horse", "not a phc string"));
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(
            hash(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(PasswordError::TooLong)
        );
    }

    #[test]
    fn verification_reuses_its_memory_and_agrees_with_the_library() {
        use argon2::PasswordVerifier;
        let stored = hash("correct horse").unwrap();
        let mut memory = Vec::new();
        for _ in 0..3 {
            assert!(verify_with("correct horse", &stored, &mut memory));
            assert!(!verify_with("correct hors", &stored, &mut memory));
        }
        assert_eq!(memory.len(), 19 * 1024, "one 19 MiB buffer, reused");
        let phc = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &phc)
            .is_ok());
    }
}
