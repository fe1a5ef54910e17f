//! Login, refresh-token rotation and logout.
//!
//! A login returns a short-lived JWT access token and an opaque refresh token.
//! Only the SHA-256 of a refresh token is stored. Each refresh marks the
//! presented token used and issues the next one of the same family; presenting
//! an already-used token means it was copied, so the whole family is revoked
//! (the legitimate holder has to log in again) and the reuse is audited.

use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::accounts::{self, User};
use super::jwt::JwtKeys;
use super::password;
use crate::audit::{self, Action, Entry};
use crate::db::schema::refresh_tokens as rt;
use crate::db::{now_millis, on_conn, transaction, DbConn, DbError};

/// Refresh tokens live 30 days (a technician may be offline for a while).
pub const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// Login throttling: after this many failed attempts for one username within
/// the window, further attempts are refused until the window has passed. The
/// count comes from the audit log, so it holds across server instances.
pub const MAX_FAILED_LOGINS: i64 = 5;
pub const FAILED_LOGIN_WINDOW_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub user: User,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed logins for this account; try again in 15 minutes")]
    TooManyAttempts,
    #[error("refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error(transparent)]
    Db(#[from] DbError),
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn store_refresh(conn: &mut DbConn, family: &str, user_id: &str) -> Result<String, DbError> {
    let token = new_refresh_token();
    let now = now_millis();
    on_conn!(conn, |c| diesel::insert_into(rt::table)
        .values((
            rt::id.eq(uuid::Uuid::now_v7().to_string()),
            rt::family_id.eq(family),
            rt::user_id.eq(user_id),
            rt::token_hash.eq(token_hash(&token)),
            rt::created_at.eq(now),
            rt::expires_at.eq(now + REFRESH_TTL_MS),
        ))
        .execute(c)
        .map_err(DbError::from))?;
    Ok(token)
}

fn pair(keys: &JwtKeys, user: User, refresh_token: String) -> TokenPair {
    let (access_token, _) = keys.issue(&user.id, user.role.as_str());
    TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: keys.access_ttl.as_secs(),
        refresh_token,
        user,
    }
}

/// Not wrapped in a transaction by callers: a failed attempt must stay in the
/// audit log even though the request fails.
pub fn login(
    conn: &mut DbConn,
    keys: &JwtKeys,
    username: &str,
    password_attempt: &str,
    ip: Option<&str>,
) -> Result<TokenPair, SessionError> {
    let since = now_millis() - FAILED_LOGIN_WINDOW_MS;
    if audit::count_since(conn, Action::LoginFailed, username, since)? >= MAX_FAILED_LOGINS {
        return Err(SessionError::TooManyAttempts);
    }
    let found = accounts::find_for_login(conn, username)?;
    let ok = match &found {
        Some((user, hash)) => password::verify(password_attempt, hash) && !user.disabled,
        None => {
            password::verify_dummy(password_attempt);
            false
        }
    };
    let Some((user, _)) = found.filter(|_| ok) else {
        audit::record(
            conn,
            Entry {
                action: Action::LoginFailed,
                actor_user_id: None,
                subject: Some(username),
                detail: serde_json::json!({}),
                ip,
            },
        )?;
        return Err(SessionError::InvalidCredentials);
    };
    let family = uuid::Uuid::now_v7().to_string();
    let refresh = transaction(conn, |conn| {
        let token = store_refresh(conn, &family, &user.id)?;
        audit::record(
            conn,
            Entry {
                action: Action::Login,
                actor_user_id: Some(&user.id),
                subject: Some(&user.username),
                detail: serde_json::json!({ "family": family }),
                ip,
            },
        )?;
        Ok::<_, DbError>(token)
    })?;
    Ok(pair(keys, user, refresh))
}

type RefreshRow = (String, String, String, i64, Option<i64>, Option<i64>);

fn find_refresh(conn: &mut DbConn, token: &str) -> Result<Option<RefreshRow>, DbError> {
    let hash = token_hash(token);
    on_conn!(conn, |c| rt::table
        .filter(rt::token_hash.eq(&hash))
        .select((
            rt::id,
            rt::family_id,
            rt::user_id,
            rt::expires_at,
            rt::used_at,
            rt::revoked_at
        ))
        .first(c)
        .optional()
        .map_err(DbError::from))
}

fn revoke_family(conn: &mut DbConn, family: &str) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::update(
        rt::table
            .filter(rt::family_id.eq(family))
            .filter(rt::revoked_at.is_null())
    )
    .set(rt::revoked_at.eq(now_millis()))
    .execute(c)
    .map(|_| ())
    .map_err(DbError::from))
}

/// Rotates a refresh token. Marking it used is a conditional update, so two
/// concurrent refreshes with the same token cannot both succeed.
pub fn refresh(
    conn: &mut DbConn,
    keys: &JwtKeys,
    token: &str,
    ip: Option<&str>,
) -> Result<TokenPair, SessionError> {
    let Some((id, family, user_id, expires_at, used_at, revoked_at)) = find_refresh(conn, token)?
    else {
        return Err(SessionError::InvalidRefreshToken);
    };
    if revoked_at.is_some() || expires_at < now_millis() {
        return Err(SessionError::InvalidRefreshToken);
    }
    let claimed = used_at.is_none()
        && on_conn!(conn, |c| diesel::update(
            rt::table.find(&id).filter(rt::used_at.is_null())
        )
        .set(rt::used_at.eq(now_millis()))
        .execute(c)
        .map_err(DbError::from))?
            == 1;
    if !claimed {
        revoke_family(conn, &family)?;
        audit::record(
            conn,
            Entry {
                action: Action::RefreshTokenReused,
                actor_user_id: Some(&user_id),
                subject: Some(&family),
                detail: serde_json::json!({ "revoked_family": family }),
                ip,
            },
        )?;
        return Err(SessionError::InvalidRefreshToken);
    }
    let user = match accounts::get(conn, &user_id)? {
        Some(u) if !u.disabled => u,
        _ => {
            revoke_family(conn, &family)?;
            return Err(SessionError::InvalidRefreshToken);
        }
    };
    let next = store_refresh(conn, &family, &user.id)?;
    audit::record(
        conn,
        Entry {
            action: Action::TokenRefreshed,
            actor_user_id: Some(&user.id),
            subject: Some(&family),
            detail: serde_json::json!({}),
            ip,
        },
    )?;
    Ok(pair(keys, user, next))
}

/// Revokes the token's whole family. Unknown tokens are ignored (logging out
/// twice is not an error).
pub fn logout(conn: &mut DbConn, token: &str, ip: Option<&str>) -> Result<(), SessionError> {
    if let Some((_, family, user_id, ..)) = find_refresh(conn, token)? {
        revoke_family(conn, &family)?;
        audit::record(
            conn,
            Entry {
                action: Action::Logout,
                actor_user_id: Some(&user_id),
                subject: Some(&family),
                detail: serde_json::json!({}),
                ip,
            },
        )?;
    }
    Ok(())
}
