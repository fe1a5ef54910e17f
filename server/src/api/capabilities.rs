//! What the signed-in user's role may do, in the words of the web console's
//! pages and buttons. Every answer is read from the rule the API handler
//! itself checks (the same role lists and functions), so the console never
//! offers an action the API would refuse; `tests/console.rs` asks the API
//! for each role to prove it.

use actix_web::HttpResponse;
use fieldsync_shared::roles::Role;
use serde::Serialize;

use super::auth::AuthUser;
use super::{ApiError, CATALOGUE, DISPATCH, OFFICE};
use crate::office::{may, Act};

#[derive(Serialize, utoipa::ToSchema, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub role: Role,
    /// Read every ticket, customer, history, SLA state and escalation
    /// (the dispatch board, ticket pages, customer archive).
    pub read_office: bool,
    /// Create tickets and customers, assign, set appointments, cancel, reopen.
    pub dispatch: bool,
    /// Read the reconciliation queue and exports.
    pub read_reconciliation: bool,
    /// Approve or dispute signed-off jobs.
    pub reconcile: bool,
    /// Export reconciled jobs (CSV).
    pub export: bool,
    /// Periodic reports and company KPIs.
    pub reports: bool,
    /// Edit the parts catalogue and van stock.
    pub catalogue: bool,
    /// Accounts: create, disable, role, password; the audit log.
    pub admin_users: bool,
    /// List and revoke every device (not only one's own).
    pub admin_devices: bool,
    /// Edits undone by write validation.
    pub read_quarantine: bool,
}

impl Capabilities {
    pub fn of(role: Role) -> Self {
        Self {
            role,
            read_office: OFFICE.contains(&role),
            dispatch: DISPATCH.contains(&role),
            read_reconciliation: may(role, Act::Read),
            reconcile: may(role, Act::Decide),
            export: may(role, Act::Export),
            reports: crate::office::reports::may_read_reports(role),
            catalogue: CATALOGUE.contains(&role),
            admin_users: super::users::ADMINS.contains(&role),
            admin_devices: super::devices::DEVICE_ADMINS.contains(&role),
            read_quarantine: super::quarantine::READERS.contains(&role),
        }
    }
}

pub async fn mine(user: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Capabilities::of(user.0.role)))
}
