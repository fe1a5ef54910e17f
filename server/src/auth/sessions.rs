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

use super::accounts::{self, AccountError, User};
use super::client_limit::{ClientAddr, LoginRateLimit};
use super::hash_pool::{Busy, PasswordPool};
use super::jwt::JwtKeys;
use super::password::MAX_PASSWORD_LEN;
use super::throttle;
use crate::audit::{self, Action, Entry};
use crate::db::schema::refresh_tokens as rt;
use crate::db::{now_millis, on_conn, transaction, Db, DbConn, DbError};
use crate::metrics::LoginOutcome;

/// Refresh tokens live 30 days (a technician may be offline for a while).
pub const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String)]
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
    #[error("too many failed logins for this account from your address; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u32 },
    #[error("too many login requests from your address; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u32 },
    #[error(transparent)]
    Busy(#[from] Busy),
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
    let (access_token, _) = keys.issue(&user.id, user.role.as_str(), user.token_generation);
    TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: keys.access_ttl.as_secs(),
        refresh_token,
        user,
    }
}

/// What a login needs besides the database: the hash pool, the per-address
/// request limit and the token keys.
pub struct LoginGuards<'a> {
    pub passwords: &'a PasswordPool,
    pub per_address: &'a LoginRateLimit,
    pub keys: &'a JwtKeys,
}

/// Logs in. The password is checked on the hash pool between two short
/// database steps, so no connection or database permit is held meanwhile:
/// 1. per-address request limit and a hash-pool place (refusals cost nothing);
/// 2. count the attempt (`throttle::claim`, atomic) and read the user;
/// 3. check the password (or a dummy hash for an unknown user);
/// 4. record the outcome: tokens, or a failure (and maybe a lockout) in the
///    audit log. Not one transaction: a failure must stay recorded.
///
/// Every outcome is counted in `fieldsync_logins_total{outcome}`.
pub async fn login(
    db: &Db,
    guards: LoginGuards<'_>,
    username: String,
    password_attempt: String,
    client: ClientAddr,
) -> Result<TokenPair, SessionError> {
    let mut outcome = LoginOutcome::Error;
    let result = attempt_login(db, guards, username, password_attempt, client, &mut outcome).await;
    if result.is_ok() {
        outcome = LoginOutcome::Ok;
    }
    crate::metrics::login(outcome);
    result
}

async fn attempt_login(
    db: &Db,
    guards: LoginGuards<'_>,
    username: String,
    password_attempt: String,
    client: ClientAddr,
    outcome: &mut LoginOutcome,
) -> Result<TokenPair, SessionError> {
    *outcome = LoginOutcome::RateLimited;
    guards
        .per_address
        .take(&client)
        .map_err(|retry_after_secs| SessionError::TooManyRequests { retry_after_secs })?;
    // No account can have these; answer without using the pool or database.
    if !accounts::valid_username(&username) {
        *outcome = LoginOutcome::UnknownUser;
        return Err(SessionError::InvalidCredentials);
    }
    if password_attempt.len() > 4 * MAX_PASSWORD_LEN {
        *outcome = LoginOutcome::Invalid;
        return Err(SessionError::InvalidCredentials);
    }
    *outcome = LoginOutcome::Busy;
    let place = guards.passwords.reserve()?;
    *outcome = LoginOutcome::Error;
    let (name, addr) = (username.clone(), client.as_str().to_string());
    let (nth, found) = db
        .run(move |c| {
            let nth = match throttle::claim(c, &name, &addr)? {
                throttle::Claim::Granted { nth } => nth,
                throttle::Claim::Locked { retry_after_secs } => return Ok(Err(retry_after_secs)),
            };
            Ok(Ok((nth, accounts::find_for_login(c, &name)?)))
        })
        .await?
        .map_err(|retry_after_secs| {
            *outcome = LoginOutcome::Locked;
            SessionError::TooManyAttempts { retry_after_secs }
        })?;
    let stored = found.as_ref().map(|(_, hash)| hash.clone());
    let matches = place.verify(password_attempt, stored).await;
    let failure = match &found {
        None => Some(LoginOutcome::UnknownUser),
        Some(_) if !matches => Some(LoginOutcome::BadPassword),
        Some((u, _)) if u.disabled => Some(LoginOutcome::Disabled),
        Some(_) => None,
    };
    let user = found.map(|(u, _)| u).filter(|u| matches && !u.disabled);
    let keys = guards.keys.clone();
    let result = db.run(move |c| {
        let ip = Some(client.as_str());
        let Some(user) = user else {
            if let Some(ms) = throttle::failed(c, &username, client.as_str(), nth)? {
                audit::record(
                    c,
                    Entry {
                        action: Action::LoginLocked,
                        actor_user_id: None,
                        subject: Some(&username),
                        detail: serde_json::json!({ "failures": throttle::MAX_FAILURES, "locked_for_secs": ms / 1000 }),
                        ip,
                    },
                )?;
            }
            audit::record(
                c,
                Entry {
                    action: Action::LoginFailed,
                    actor_user_id: None,
                    subject: Some(&username),
                    detail: serde_json::json!({}),
                    ip,
                },
            )?;
            return Ok(Err(SessionError::InvalidCredentials));
        };
        throttle::succeeded(c, &username, client.as_str())?;
        let family = uuid::Uuid::now_v7().to_string();
        let refresh = transaction(c, |conn| {
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
        Ok(Ok(pair(&keys, user, refresh)))
    })
    .await?;
    if let (Err(SessionError::InvalidCredentials), Some(f)) = (&result, failure) {
        *outcome = f;
    }
    result
}

/// Sets a new password hash and revokes everything issued under the old
/// one: access tokens (generation), refresh-token families, and live sync
/// sessions (closed within seconds by `app::close_blocked_devices`).
pub fn change_password(
    conn: &mut DbConn,
    username: &str,
    password_hash: &str,
    expect: Option<&crate::versioning::Expect>,
) -> Result<User, AccountError> {
    let user = accounts::set_password_hash(conn, username, password_hash, expect)?;
    on_conn!(conn, |c| diesel::update(
        rt::table
            .filter(rt::user_id.eq(&user.id))
            .filter(rt::revoked_at.is_null())
    )
    .set(rt::revoked_at.eq(now_millis()))
    .execute(c)
    .map_err(DbError::from))?;
    Ok(user)
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
