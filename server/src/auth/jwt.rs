//! Short-lived access tokens (JWT, HS256). The signing secret comes from
//! `--jwt-secret` / `FIELDSYNC_JWT_SECRET`, or is generated on first run and
//! kept in the database (`server_meta.jwt_secret`), so every instance on one
//! database accepts the same tokens and a restart does not log everyone out.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    /// The user's token generation at issue (see `accounts::get_current`);
    /// tokens from before this field existed count as generation 0.
    #[serde(default)]
    pub gen: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("access token expired")]
    Expired,
    #[error("access token invalid")]
    Invalid,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl: Duration,
}

impl JwtKeys {
    /// `secret` must not be empty (the server refuses short ones at start).
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        super::jwt_ring::install();
        Self {
            encoding: EncodingKey::from_secret(secret).expect("a non-empty JWT secret"),
            decoding: DecodingKey::from_secret(secret).expect("a non-empty JWT secret"),
            access_ttl,
        }
    }

    /// Returns the token and its expiry (unix seconds).
    pub fn issue(&self, user_id: &str, role: &str, gen: i64) -> (String, i64) {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.to_string(),
            iat: now,
            exp: now + self.access_ttl.as_secs() as i64,
            gen,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail");
        (token, claims.exp)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// A new random secret, hex encoded.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_and_verifies_and_rejects_tampering_and_other_keys() {
        let keys = JwtKeys::new(b"secret-one", Duration::from_secs(60));
        let (token, exp) = keys.issue("u1", "dispatcher", 3);
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.role.as_str(),
                claims.exp,
                claims.gen
            ),
            ("u1", "dispatcher", exp, 3)
        );
        let other = JwtKeys::new(b"secret-two", Duration::from_secs(60));
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'x');
        assert_eq!(keys.verify(&tampered), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_reported_as_expired() {
        let keys = JwtKeys::new(b"k", Duration::from_secs(0));
        let claims = Claims {
            sub: "u".into(),
            role: "admin".into(),
            iat: 0,
            exp: 1,
            gen: 0,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
    }
}
