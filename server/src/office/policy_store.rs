//! The service policy document in the database (one row): every instance
//! reads the same rules. Absent: the seed defaults.

use diesel::prelude::*;

use crate::db::schema::service_policy;
use crate::db::{now_rfc3339, on_conn, DbConn, DbError};
use crate::service::policy::Policy;

pub fn load(conn: &mut DbConn) -> Result<Policy, DbError> {
    let json: Option<String> = on_conn!(conn, |c| service_policy::table
        .filter(service_policy::id.eq(1))
        .select(service_policy::policy)
        .first(c)
        .optional())?;
    Ok(match json {
        // A stored document was valid when saved; if a later version cannot
        // read it, the defaults apply and the problem is logged.
        Some(j) => serde_json::from_str(&j).unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored service policy is unreadable; using the defaults");
            Policy::default()
        }),
        None => Policy::default(),
    })
}

/// Stores a validated policy.
pub fn save(conn: &mut DbConn, policy: &Policy, by_user: &str) -> Result<(), DbError> {
    let json = serde_json::to_string(policy).expect("a policy serialises");
    let now = now_rfc3339();
    let row = (
        service_policy::id.eq(1),
        service_policy::policy.eq(&json),
        service_policy::updated_at.eq(&now),
        service_policy::updated_by.eq(by_user),
    );
    on_conn!(conn, |c| diesel::insert_into(service_policy::table)
        .values(row)
        .on_conflict(service_policy::id)
        .do_update()
        .set(row)
        .execute(c))?;
    Ok(())
}
