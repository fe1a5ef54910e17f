//! User accounts: creation, lookup, disabling, password changes.

use diesel::prelude::*;
use fieldsync_shared::roles::Role;
use serde::Serialize;

use super::password::PasswordError;
use crate::audit::{self, Action, Entry};
use crate::db::schema::users;
use crate::db::{now_millis, on_conn, transaction, DbConn, DbError};
use crate::versioning::{self, Expect};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Bumped when the password changes; access tokens carry the generation
    /// they were issued under and stop working when it moves on.
    #[serde(skip)]
    pub token_generation: i64,
    /// Bumped by every change of the account (disable, role, password);
    /// the ETag, and what `If-Match` names.
    pub version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("username must be 1-64 characters of letters, digits, '.', '_', '-' or '@'")]
    BadUsername,
    #[error("username `{0}` is taken")]
    UsernameTaken(String),
    #[error("no such user `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Stale(#[from] crate::versioning::Stale),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Db(#[from] DbError),
}

type UserRow = (String, String, String, String, bool, i64, i64, i64);

/// The columns of a `UserRow`, in order.
const USER_COLUMNS: (
    users::id,
    users::username,
    users::display_name,
    users::role,
    users::disabled,
    users::created_at,
    users::token_generation,
    users::version,
) = (
    users::id,
    users::username,
    users::display_name,
    users::role,
    users::disabled,
    users::created_at,
    users::token_generation,
    users::version,
);

fn to_user(row: UserRow) -> Result<User, DbError> {
    let (id, username, display_name, role, disabled, created_at, token_generation, version) = row;
    let role = role
        .parse()
        .map_err(|e| DbError::Corrupt(format!("user {id}: {e}")))?;
    Ok(User {
        id,
        username,
        display_name,
        role,
        disabled,
        created_at,
        token_generation,
        version,
    })
}

pub fn valid_username(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// Creates an account with an already hashed password (see `password`,
/// `hash_pool`: hashing never runs while a database connection is held).
pub fn create(
    conn: &mut DbConn,
    username: &str,
    display_name: &str,
    role: Role,
    password_hash: &str,
) -> Result<User, AccountError> {
    if !valid_username(username) {
        return Err(AccountError::BadUsername);
    }
    let hash = password_hash;
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_millis();
    let display = if display_name.trim().is_empty() {
        username
    } else {
        display_name.trim()
    };
    let inserted = on_conn!(conn, |c| diesel::insert_into(users::table)
        .values((
            users::id.eq(&id),
            users::username.eq(username),
            users::display_name.eq(display),
            users::role.eq(role.as_str()),
            users::password_hash.eq(hash),
            users::disabled.eq(false),
            users::created_at.eq(now),
            users::updated_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(c)
        .map_err(DbError::from))?;
    if inserted == 0 {
        return Err(AccountError::UsernameTaken(username.to_string()));
    }
    Ok(User {
        id,
        username: username.into(),
        display_name: display.into(),
        role,
        disabled: false,
        created_at: now,
        token_generation: 0,
        version: 1,
    })
}

/// The user and their password hash, for login.
pub fn find_for_login(
    conn: &mut DbConn,
    username: &str,
) -> Result<Option<(User, String)>, DbError> {
    let row: Option<(UserRow, String)> = on_conn!(conn, |c| users::table
        .filter(users::username.eq(username))
        .select((USER_COLUMNS, users::password_hash,))
        .first(c)
        .optional()
        .map_err(DbError::from))?;
    row.map(|(u, h)| Ok((to_user(u)?, h))).transpose()
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<User>, DbError> {
    let row: Option<UserRow> = on_conn!(conn, |c| users::table
        .find(id)
        .select(USER_COLUMNS)
        .first(c)
        .optional()
        .map_err(DbError::from))?;
    row.map(to_user).transpose()
}

/// The user an access token names, if the token is still theirs: the user
/// exists and the token was issued under their current generation (no
/// password change since). Disabled users are returned; callers refuse them
/// with their own message.
pub fn get_current(
    conn: &mut DbConn,
    claims: &super::jwt::Claims,
) -> Result<Option<User>, DbError> {
    Ok(get(conn, &claims.sub)?.filter(|u| u.token_generation == claims.gen))
}

pub fn list(conn: &mut DbConn) -> Result<Vec<User>, DbError> {
    list_after(conn, None, i64::MAX)
}

/// By username: at most `limit` accounts after `after`.
pub fn list_after(
    conn: &mut DbConn,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<User>, DbError> {
    let rows: Vec<UserRow> = on_conn!(conn, |c| {
        let mut q = users::table
            .order(users::username)
            .select(USER_COLUMNS)
            .limit(limit)
            .into_boxed();
        if let Some(a) = after {
            q = q.filter(users::username.gt(a));
        }
        q.load(c).map_err(DbError::from)
    })?;
    rows.into_iter().map(to_user).collect()
}

pub fn count(conn: &mut DbConn) -> Result<i64, DbError> {
    on_conn!(conn, |c| users::table
        .count()
        .get_result(c)
        .map_err(DbError::from))
}

/// Disables (or re-enables) by username; returns the user.
pub fn set_disabled(
    conn: &mut DbConn,
    username: &str,
    disabled: bool,
    expect: Option<&Expect>,
) -> Result<User, AccountError> {
    let guard = guard_of(conn, username, expect)?;
    let n = on_conn!(conn, |c| {
        let mut q = diesel::update(users::table.filter(users::username.eq(username)))
            .set((
                users::disabled.eq(disabled),
                users::updated_at.eq(now_millis()),
                users::version.eq(users::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(users::version.eq(v));
        }
        q.execute(c).map_err(DbError::from)
    })?;
    versioning::updated(n, guard)?;
    updated_user(conn, username, n)
}

pub fn set_role(
    conn: &mut DbConn,
    username: &str,
    role: Role,
    expect: Option<&Expect>,
) -> Result<User, AccountError> {
    let guard = guard_of(conn, username, expect)?;
    let n = on_conn!(conn, |c| {
        let mut q = diesel::update(users::table.filter(users::username.eq(username)))
            .set((
                users::role.eq(role.as_str()),
                users::updated_at.eq(now_millis()),
                users::version.eq(users::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(users::version.eq(v));
        }
        q.execute(c).map_err(DbError::from)
    })?;
    versioning::updated(n, guard)?;
    updated_user(conn, username, n)
}

/// The account's version now checked against `expect` (404 if there is no
/// such account): the version the UPDATE must still find, if any.
fn guard_of(
    conn: &mut DbConn,
    username: &str,
    expect: Option<&Expect>,
) -> Result<Option<i64>, AccountError> {
    let read = find_for_login(conn, username)?
        .ok_or_else(|| AccountError::NotFound(username.to_string()))?
        .0
        .version;
    Ok(versioning::guard(expect, read)?)
}

/// Stores a new password hash and invalidates every access token issued
/// before (generation bump) and live sync sessions (`tokens_revoked_at`,
/// see `app::close_blocked_devices`). Refresh tokens: `sessions::change_password`.
pub fn set_password_hash(
    conn: &mut DbConn,
    username: &str,
    password_hash: &str,
    expect: Option<&Expect>,
) -> Result<User, AccountError> {
    let now = now_millis();
    let guard = guard_of(conn, username, expect)?;
    let n = on_conn!(conn, |c| {
        let mut q = diesel::update(users::table.filter(users::username.eq(username)))
            .set((
                users::password_hash.eq(password_hash),
                users::token_generation.eq(users::token_generation + 1),
                users::tokens_revoked_at.eq(now),
                users::updated_at.eq(now),
                users::version.eq(users::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(users::version.eq(v));
        }
        q.execute(c).map_err(DbError::from)
    })?;
    versioning::updated(n, guard)?;
    updated_user(conn, username, n)
}

/// The user after an update by username that touched `rows` rows.
fn updated_user(conn: &mut DbConn, username: &str, rows: usize) -> Result<User, AccountError> {
    let found = if rows == 0 {
        None
    } else {
        find_for_login(conn, username)?
    };
    found
        .map(|(u, _)| u)
        .ok_or_else(|| AccountError::NotFound(username.to_string()))
}

/// Runs an account change and its audit entry in one transaction.
pub fn audited<T>(
    conn: &mut DbConn,
    action: Action,
    actor_user_id: Option<&str>,
    subject: &str,
    detail: serde_json::Value,
    change: impl FnOnce(&mut DbConn) -> Result<T, AccountError>,
) -> Result<T, AccountError> {
    transaction(conn, |conn| {
        let v = change(conn)?;
        audit::record(
            conn,
            Entry {
                action,
                actor_user_id,
                subject: Some(subject),
                detail,
                ip: None,
            },
        )?;
        Ok(v)
    })
}
