//! Devices: each belongs to one user; revoked devices are refused.
//!
//! The app chooses its device id (`client_id`); the server scopes it per
//! user: the row key, and the id the sync code and the API use, is
//! `<user id>:<client id>` (`key`). One user's registrations can therefore
//! never block or reveal another's.

use std::collections::HashMap;

use diesel::prelude::*;
use serde::Serialize;

use super::accounts::User;
use crate::db::schema::{devices, users};
use crate::db::{now_millis, on_conn, DbConn, DbError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Queryable, utoipa::ToSchema)]
pub struct Device {
    /// `<user id>:<client id>`, unique.
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub platform: String,
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: i64,
    #[serde(serialize_with = "crate::timestamps::opt_ms_as_rfc3339")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<i64>,
    /// The id the app chose.
    pub client_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device id must be 1-128 characters of letters, digits, '-' or '_'")]
    BadId,
    #[error("device {0} has been revoked")]
    Revoked(String),
    #[error(
        "device id `{0}` is used by several users; use the device's full id from GET /devices"
    )]
    Ambiguous(String),
    #[error("device name and platform must be at most {MAX_LABEL_LEN} characters")]
    BadLabel,
    #[error("no such device {0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Longest device name or platform label.
pub const MAX_LABEL_LEN: usize = 200;

/// The row key of `client_id` for `user_id`.
pub fn key(user_id: &str, client_id: &str) -> String {
    format!("{user_id}:{client_id}")
}

pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<Device>, DbError> {
    on_conn!(conn, |c| devices::table
        .find(id)
        .first::<Device>(c)
        .optional()
        .map_err(DbError::from))
}

/// `user`'s device with the app-chosen `client_id`.
pub fn find(conn: &mut DbConn, user_id: &str, client_id: &str) -> Result<Option<Device>, DbError> {
    get(conn, &key(user_id, client_id))
}

/// A device by its full id, or by a client id only one user has.
pub fn resolve(conn: &mut DbConn, id: &str) -> Result<Device, DeviceError> {
    if let Some(d) = get(conn, id)? {
        return Ok(d);
    }
    let mut found: Vec<Device> = on_conn!(conn, |c| devices::table
        .filter(devices::client_id.eq(id))
        .limit(2)
        .load::<Device>(c)
        .map_err(DbError::from))?;
    match found.len() {
        0 => Err(DeviceError::NotFound(id.into())),
        1 => Ok(found.remove(0)),
        _ => Err(DeviceError::Ambiguous(id.into())),
    }
}

/// Registers `client_id` under `user` on first use, or checks that it is not
/// revoked; updates `last_seen_at`. Returns the device and whether it is new.
pub fn register_or_touch(
    conn: &mut DbConn,
    user: &User,
    client_id: &str,
    name: &str,
    platform: &str,
) -> Result<(Device, bool), DeviceError> {
    if !valid_id(client_id) {
        return Err(DeviceError::BadId);
    }
    if name.chars().count() > MAX_LABEL_LEN
        || platform.chars().count() > MAX_LABEL_LEN
        || name.contains('\0')
        || platform.contains('\0')
    {
        return Err(DeviceError::BadLabel);
    }
    let id = &key(&user.id, client_id);
    let now = now_millis();
    let name = if name.trim().is_empty() {
        client_id
    } else {
        name.trim()
    };
    let platform = if platform.trim().is_empty() {
        "unknown"
    } else {
        platform.trim()
    };
    let inserted = on_conn!(conn, |c| diesel::insert_into(devices::table)
        .values((
            devices::id.eq(id),
            devices::user_id.eq(&user.id),
            devices::name.eq(name),
            devices::platform.eq(platform),
            devices::created_at.eq(now),
            devices::last_seen_at.eq(now),
            devices::client_id.eq(client_id),
        ))
        .on_conflict_do_nothing()
        .execute(c)
        .map_err(DbError::from))?;
    let device = get(conn, id)?.ok_or_else(|| DeviceError::NotFound(id.into()))?;
    if device.revoked_at.is_some() {
        return Err(DeviceError::Revoked(id.into()));
    }
    if inserted == 0 {
        on_conn!(conn, |c| diesel::update(devices::table.find(id))
            .set(devices::last_seen_at.eq(now))
            .execute(c)
            .map_err(DbError::from))?;
    }
    Ok((device, inserted == 1))
}

/// Records that a known device (by full id) was seen now (best-effort; see sync::ws).
pub fn touch(conn: &mut DbConn, id: &str) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::update(devices::table.find(id))
        .set(devices::last_seen_at.eq(now_millis()))
        .execute(c)
        .map(|_| ())
        .map_err(DbError::from))
}

/// Revokes a device given by full id (or an unambiguous client id).
pub fn revoke(conn: &mut DbConn, id: &str) -> Result<Device, DeviceError> {
    let id = &resolve(conn, id)?.id;
    let n = on_conn!(conn, |c| diesel::update(
        devices::table
            .find(id)
            .filter(devices::revoked_at.is_null())
    )
    .set(devices::revoked_at.eq(now_millis()))
    .execute(c)
    .map_err(DbError::from))?;
    let device = get(conn, id)?.ok_or_else(|| DeviceError::NotFound(id.into()))?;
    let _ = n; // revoking twice is fine
    Ok(device)
}

/// All devices, or one user's.
pub fn list(conn: &mut DbConn, user_id: Option<&str>) -> Result<Vec<Device>, DbError> {
    list_after(conn, user_id, None, i64::MAX)
}

/// Oldest first (`created_at`, then `id`), at most `limit` after `after`.
pub fn list_after(
    conn: &mut DbConn,
    user_id: Option<&str>,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Device>, DbError> {
    on_conn!(conn, |c| {
        let mut q = devices::table
            .order((devices::created_at, devices::id))
            .limit(limit)
            .into_boxed();
        if let Some(u) = user_id {
            q = q.filter(devices::user_id.eq(u));
        }
        if let Some((at, id)) = &after {
            q = q.filter(
                devices::created_at
                    .gt(*at)
                    .or(devices::created_at.eq(*at).and(devices::id.gt(id.clone()))),
            );
        }
        q.load::<Device>(c).map_err(DbError::from)
    })
}

/// Why a live sync session must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// The device was revoked (or vanished) or its user disabled.
    RevokedOrDisabled,
    /// The user's password changed after the session may have started.
    PasswordChanged,
}

impl Blocked {
    pub fn reason(self) -> &'static str {
        match self {
            Blocked::RevokedOrDisabled => "device revoked or account disabled",
            Blocked::PasswordChanged => "password changed; log in again",
        }
    }
}

/// Of the given connected devices, each with the earliest time (unix ms)
/// its session may have started, those that may no longer sync. Used to
/// close live sessions within seconds, whoever made the change.
pub fn blocked_among(
    conn: &mut DbConn,
    connected: &[(String, i64)],
) -> Result<Vec<(String, Blocked)>, DbError> {
    if connected.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = connected.iter().map(|(id, _)| id.as_str()).collect();
    let rows: Vec<(String, Option<i64>, bool, Option<i64>)> = on_conn!(conn, |c| devices::table
        .inner_join(users::table.on(users::id.eq(devices::user_id)))
        .filter(devices::id.eq_any(&ids))
        .select((
            devices::id,
            devices::revoked_at,
            users::disabled,
            users::tokens_revoked_at
        ))
        .load(c)
        .map_err(DbError::from))?;
    let rows: HashMap<String, (Option<i64>, bool, Option<i64>)> = rows
        .into_iter()
        .map(|(id, revoked, disabled, tokens)| (id, (revoked, disabled, tokens)))
        .collect();
    Ok(connected
        .iter()
        .filter_map(|(id, since)| {
            let why = match rows.get(id) {
                // A device row that vanished is blocked too.
                None => Blocked::RevokedOrDisabled,
                Some((revoked, disabled, _)) if revoked.is_some() || *disabled => {
                    Blocked::RevokedOrDisabled
                }
                Some((_, _, Some(changed))) if *changed >= *since => Blocked::PasswordChanged,
                _ => return None,
            };
            Some((id.clone(), why))
        })
        .collect())
}
