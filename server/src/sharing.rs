//! The share policy: who may see which document. One place for the rule;
//! the doc actor and the API ask it, nothing else decides.
//!
//! - Technicians see only tickets currently assigned to them. A technician a
//!   ticket was assigned to before keeps *write-only* access: their offline
//!   edits made before a reassignment are still accepted (nothing is lost),
//!   but they receive nothing more of the ticket.
//! - Technicians cannot create documents through sync (dispatchers do).
//! - Every other role sees every document. Teams are not modelled yet, so a
//!   dispatcher sees all tickets; read-only roles (back office) are enforced by
//!   write validation, which is not built yet.
//!
//! A document a peer may not see is answered exactly like an unknown one
//! (`doc-unavailable`), so its existence does not leak.

use std::collections::HashSet;

use diesel::prelude::*;
use fieldsync_shared::roles::Role;

use crate::db::schema::ticket_assignments as ta;
use crate::db::{now_millis, on_conn, transaction, DbConn, DbError};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    pub current: Option<String>,
    /// Technicians the ticket was assigned to before.
    pub past: HashSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocAccess {
    Full,
    /// May upload changes, receives nothing of the document.
    WriteOnly,
    Hidden,
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
        Role::Technician if doc_exists && assignment.past.contains(user_id) => DocAccess::WriteOnly,
        Role::Technician => DocAccess::Hidden,
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
        if unassigned.is_none() {
            a.current = Some(tech);
        } else {
            a.past.insert(tech);
        }
    }
    Ok(a)
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
            past: HashSet::from(["tess".to_string()]),
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
            assert_eq!(
                doc_access(role, "x", false, &Assignment::default()),
                DocAccess::Full
            );
        }
    }
}
