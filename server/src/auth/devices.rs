//! Devices: each belongs to one user; revoked devices are refused.

use std::collections::HashSet;

use diesel::prelude::*;
use serde::Serialize;

use super::accounts::User;
use crate::db::schema::{devices, users};
use crate::db::{now_millis, on_conn, DbConn, DbError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Queryable)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub platform: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device id must be 1-128 characters of letters, digits, '-' or '_'")]
    BadId,
    #[error("device {0} has been revoked")]
    Revoked(String),
    #[error("device {0} belongs to another user")]
    OtherUser(String),
    #[error("no such device {0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn valid_id(id: &str) -> bool {
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

/// Registers `id` under `user` on first use, or checks that it is theirs and
/// not revoked; updates `last_seen_at`. Returns the device and whether it is new.
pub fn register_or_touch(
    conn: &mut DbConn,
    user: &User,
    id: &str,
    name: &str,
    platform: &str,
) -> Result<(Device, bool), DeviceError> {
    if !valid_id(id) {
        return Err(DeviceError::BadId);
    }
    let now = now_millis();
    let name = if name.trim().is_empty() {
        id
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
        ))
        .on_conflict_do_nothing()
        .execute(c)
        .map_err(DbError::from))?;
    let device = get(conn, id)?.ok_or_else(|| DeviceError::NotFound(id.into()))?;
    if device.user_id != user.id {
        return Err(DeviceError::OtherUser(id.into()));
    }
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

/// Records that a known device was seen now (best-effort; see sync::ws).
pub fn touch(conn: &mut DbConn, id: &str) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::update(devices::table.find(id))
        .set(devices::last_seen_at.eq(now_millis()))
        .execute(c)
        .map(|_| ())
        .map_err(DbError::from))
}

pub fn revoke(conn: &mut DbConn, id: &str) -> Result<Device, DeviceError> {
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
    on_conn!(conn, |c| {
        let mut q = devices::table.order(devices::created_at).into_boxed();
        if let Some(u) = user_id {
            q = q.filter(devices::user_id.eq(u));
        }
        q.load::<Device>(c).map_err(DbError::from)
    })
}

/// Of the given devices, those that may no longer sync: revoked, or whose
/// user is disabled. Used to close live sessions within seconds.
pub fn blocked_among(conn: &mut DbConn, ids: &[String]) -> Result<HashSet<String>, DbError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(String, Option<i64>, bool)> = on_conn!(conn, |c| devices::table
        .inner_join(users::table.on(users::id.eq(devices::user_id)))
        .filter(devices::id.eq_any(ids))
        .select((devices::id, devices::revoked_at, users::disabled))
        .load(c)
        .map_err(DbError::from))?;
    let known: HashSet<&str> = rows.iter().map(|(id, ..)| id.as_str()).collect();
    let mut blocked: HashSet<String> = rows
        .iter()
        .filter(|(_, revoked, disabled)| revoked.is_some() || *disabled)
        .map(|(id, ..)| id.clone())
        .collect();
    // A device row that vanished is blocked too.
    blocked.extend(
        ids.iter()
            .filter(|id| !known.contains(id.as_str()))
            .cloned(),
    );
    Ok(blocked)
}
