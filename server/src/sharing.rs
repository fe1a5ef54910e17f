//! The share policy: who may see which document. One place for the rule;
//! the doc actor and the API ask it, nothing else decides.
//!
//! - Technicians see only tickets currently assigned to them. A technician a
//!   ticket was assigned to before keeps *write-only* access for a while:
//!   their offline edits made before a reassignment are still accepted
//!   (nothing is lost), but they receive nothing more of the ticket.
//! - That window ends, per device, when the device has synced the ticket
//!   once after the reassignment (its offline work is then in), or
//!   `WRITE_ONLY_WINDOW` after the reassignment; a device registered after the
//!   reassignment never had it. Later edits are still taken in (a CRDT cannot
//!   refuse part of a history), but every one is undone and quarantined for
//!   the back office (`DocAccess::Locked`).
//! - Only roles that may create tickets (`permissions::may_create_tickets`)
//!   create documents through sync.
//! - Every other role sees every document. Teams are not modelled yet, so a
//!   dispatcher sees all tickets; what each role may write is judged per
//!   operation (sync::integrity).
//!
//! A document a peer may not see is answered exactly like an unknown one
//! (`doc-unavailable`), so its existence does not leak.

use std::collections::HashMap;

use diesel::prelude::*;
use fieldsync_shared::permissions::may_create_tickets;
use fieldsync_shared::roles::Role;

use crate::db::schema::ticket_assignments as ta;
use crate::db::schema::write_only_closed as woc;
use crate::db::{now_millis, on_conn, transaction, DbConn, DbError};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    pub current: Option<String>,
    /// Technicians the ticket was assigned to before, with when their last
    /// assignment ended (unix ms).
    pub past: HashMap<String, i64>,
    /// When devices' write-only windows on this ticket closed (unix ms); a
    /// window closed before the latest reassignment does not count.
    pub closed: HashMap<String, i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocAccess {
    Full,
    /// May upload changes, receives nothing of the document.
    WriteOnly,
    /// May upload changes, every one of which is undone and quarantined;
    /// receives nothing.
    Locked,
    Hidden,
}

/// How long after a reassignment a device that has not synced since keeps
/// write-only access.
pub const WRITE_ONLY_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// The device a sync peer uses.
pub struct SyncDevice<'a> {
    pub id: &'a str,
    /// When it was registered (unix ms).
    pub registered_at: i64,
}

/// A sync peer's access: `doc_access`, with a past assignee's write-only
/// access narrowed to the devices whose window is still open.
pub fn sync_access(
    role: Role,
    user_id: &str,
    device: SyncDevice<'_>,
    doc_exists: bool,
    assignment: &Assignment,
    now_ms: i64,
) -> DocAccess {
    match doc_access(role, user_id, doc_exists, assignment) {
        DocAccess::WriteOnly => {
            let ended = assignment.past.get(user_id).copied().unwrap_or(i64::MIN);
            let open = device.registered_at <= ended
                && now_ms < ended.saturating_add(WRITE_ONLY_WINDOW_MS)
                && assignment
                    .closed
                    .get(device.id)
                    .is_none_or(|at| *at < ended);
            if open {
                DocAccess::WriteOnly
            } else {
                DocAccess::Locked
            }
        }
        other => other,
    }
}

pub fn doc_access(
    role: Role,
    user_id: &str,
    doc_exists: bool,
    assignment: &Assignment,
) -> DocAccess {
    match role {
        Role::Technician if assignment.current.as_deref() == Some(user_id) && doc_exists => {
            DocAccess::Full
        }
        Role::Technician if doc_exists && assignment.past.contains_key(user_id) => {
            DocAccess::WriteOnly
        }
        Role::Technician => DocAccess::Hidden,
        _ if !doc_exists && !may_create_tickets(role) => DocAccess::Hidden,
        _ => DocAccess::Full,
    }
}

pub fn load_assignment(conn: &mut DbConn, doc_id: &str) -> Result<Assignment, DbError> {
    let rows: Vec<(String, Option<i64>)> = on_conn!(conn, |c| ta::table
        .filter(ta::doc_id.eq(doc_id))
        .select((ta::technician_id, ta::unassigned_at))
        .load(c)
        .map_err(DbError::from))?;
    let mut a = Assignment::default();
    for (tech, unassigned) in rows {
        match unassigned {
            None => a.current = Some(tech),
            Some(at) => {
                let ended = a.past.entry(tech).or_insert(at);
                *ended = (*ended).max(at);
            }
        }
    }
    if let Some(current) = &a.current {
        a.past.remove(current);
    }
    a.closed = on_conn!(conn, |c| woc::table
        .filter(woc::doc_id.eq(doc_id))
        .select((woc::device_id, woc::closed_at))
        .load::<(String, i64)>(c)
        .map_err(DbError::from))?
    .into_iter()
    .collect();
    Ok(a)
}

/// Ends `device_id`'s write-only window on the ticket at `at` (it has
/// synced since the reassignment).
pub fn close_write_only(
    conn: &mut DbConn,
    doc_id: &str,
    device_id: &str,
    at: i64,
) -> Result<(), DbError> {
    on_conn!(conn, |c| diesel::insert_into(woc::table)
        .values((
            woc::doc_id.eq(doc_id),
            woc::device_id.eq(device_id),
            woc::closed_at.eq(at),
        ))
        .on_conflict((woc::doc_id, woc::device_id))
        .do_update()
        .set(woc::closed_at.eq(at))
        .execute(c)
        .map(|_| ())
        .map_err(DbError::from))
}

/// Assigns the ticket to `technician_id`, ending the current assignment.
pub fn assign(
    conn: &mut DbConn,
    doc_id: &str,
    technician_id: &str,
    by: &str,
) -> Result<Assignment, DbError> {
    let now = now_millis();
    transaction(conn, |conn| {
        on_conn!(conn, |c| {
            diesel::update(
                ta::table
                    .filter(ta::doc_id.eq(doc_id))
                    .filter(ta::unassigned_at.is_null()),
            )
            .set(ta::unassigned_at.eq(now))
            .execute(c)?;
            diesel::insert_into(ta::table)
                .values((
                    ta::id.eq(uuid::Uuid::now_v7().to_string()),
                    ta::doc_id.eq(doc_id),
                    ta::technician_id.eq(technician_id),
                    ta::assigned_by.eq(by),
                    ta::assigned_at.eq(now),
                ))
                .execute(c)
                .map_err(DbError::from)
        })?;
        load_assignment(conn, doc_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technicians_see_only_their_current_tickets() {
        let a = Assignment {
            current: Some("tim".into()),
            past: HashMap::from([("tess".to_string(), 1000)]),
            closed: HashMap::new(),
        };
        assert_eq!(
            doc_access(Role::Technician, "tim", true, &a),
            DocAccess::Full
        );
        assert_eq!(
            doc_access(Role::Technician, "tess", true, &a),
            DocAccess::WriteOnly
        );
        assert_eq!(
            doc_access(Role::Technician, "tom", true, &a),
            DocAccess::Hidden
        );
        // No creating documents through sync, even "assigned" ones.
        assert_eq!(
            doc_access(Role::Technician, "tim", false, &a),
            DocAccess::Hidden
        );
        for role in [
            Role::Dispatcher,
            Role::BackOffice,
            Role::Supervisor,
            Role::Manager,
            Role::Admin,
        ] {
            assert_eq!(
                doc_access(role, "x", true, &Assignment::default()),
                DocAccess::Full
            );
            // Only roles that create tickets create documents.
            let creates = if may_create_tickets(role) {
                DocAccess::Full
            } else {
                DocAccess::Hidden
            };
            assert_eq!(
                doc_access(role, "x", false, &Assignment::default()),
                creates
            );
        }
        assert!(may_create_tickets(Role::Dispatcher) && may_create_tickets(Role::Admin));
        assert!(!may_create_tickets(Role::BackOffice) && !may_create_tickets(Role::Manager));
    }

    #[test]
    fn a_past_assignees_write_window_closes_per_device() {
        let mut a = Assignment {
            current: Some("tim".into()),
            past: HashMap::from([("tess".to_string(), 10_000)]),
            closed: HashMap::new(),
        };
        let phone = SyncDevice {
            id: "tess:phone",
            registered_at: 5_000,
        };
        let access = |a: &Assignment, d: SyncDevice<'_>, now: i64| {
            sync_access(Role::Technician, "tess", d, true, a, now)
        };
        assert_eq!(
            access(&a, SyncDevice { ..phone }, 20_000),
            DocAccess::WriteOnly
        );
        // A device registered after the reassignment never had the ticket.
        let new_phone = SyncDevice {
            id: "tess:new",
            registered_at: 10_001,
        };
        assert_eq!(access(&a, new_phone, 20_000), DocAccess::Locked);
        // The window ends with time…
        let late = 10_000 + WRITE_ONLY_WINDOW_MS;
        assert_eq!(access(&a, SyncDevice { ..phone }, late), DocAccess::Locked);
        // …or once the device has synced since the reassignment.
        a.closed.insert("tess:phone".into(), 15_000);
        assert_eq!(
            access(&a, SyncDevice { ..phone }, 20_000),
            DocAccess::Locked
        );
        // A window closed before a later reassignment does not count.
        let mut again = a.clone();
        again.past.insert("tess".into(), 16_000);
        assert_eq!(
            access(&again, SyncDevice { ..phone }, 20_000),
            DocAccess::WriteOnly
        );
        // The current assignee and strangers are unaffected.
        assert_eq!(
            sync_access(
                Role::Technician,
                "tim",
                SyncDevice { ..phone },
                true,
                &a,
                20_000
            ),
            DocAccess::Full
        );
        assert_eq!(
            sync_access(
                Role::Technician,
                "tom",
                SyncDevice { ..phone },
                true,
                &a,
                20_000
            ),
            DocAccess::Hidden
        );
    }
}
