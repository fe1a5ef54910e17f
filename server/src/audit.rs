//! The append-only security audit log. Written in the same transaction as the
//! action it records where there is one.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::audit_log;
use crate::db::{now_millis, on_conn, DbConn, DbError};

/// What happened. One place for the names, so queries can filter on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Login,
    LoginFailed,
    /// A (username, client address) reached the failure limit and is locked out.
    LoginLocked,
    TokenRefreshed,
    RefreshTokenReused,
    Logout,
    UserCreated,
    UserDisabled,
    UserEnabled,
    PasswordChanged,
    DeviceRegistered,
    DeviceRevoked,
    SyncRefused,
    TicketAssigned,
    EditQuarantined,
    RoleChanged,
    TicketCreated,
    TicketUpdated,
    RecordChanged,
    StockMoved,
    PolicyChanged,
    TicketEscalated,
    EscalationAcknowledged,
    /// Back office approved a ticket (issue 11 §1).
    TicketReconciled,
    /// Back office disputed a ticket, with a reason.
    TicketDisputed,
    /// An export of reconciled jobs was made …
    ReconciliationExported,
    /// … or downloaded again.
    ReconciliationExportDownloaded,
    /// A complaint was recorded, answered or resolved (issue 11 §3).
    ComplaintRecorded,
    ComplaintResponded,
    ComplaintStarted,
    ComplaintResolved,
    /// A survey link was made for a customer …
    SurveyLinkCreated,
    /// … and answered through it.
    SurveyAnswered,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::LoginLocked => "login_locked",
            Action::TokenRefreshed => "token_refreshed",
            Action::RefreshTokenReused => "refresh_token_reused",
            Action::Logout => "logout",
            Action::UserCreated => "user_created",
            Action::UserDisabled => "user_disabled",
            Action::UserEnabled => "user_enabled",
            Action::PasswordChanged => "password_changed",
            Action::DeviceRegistered => "device_registered",
            Action::DeviceRevoked => "device_revoked",
            Action::SyncRefused => "sync_refused",
            Action::TicketAssigned => "ticket_assigned",
            Action::EditQuarantined => "edit_quarantined",
            Action::RoleChanged => "role_changed",
            Action::TicketCreated => "ticket_created",
            Action::TicketUpdated => "ticket_updated",
            Action::RecordChanged => "record_changed",
            Action::StockMoved => "stock_moved",
            Action::PolicyChanged => "policy_changed",
            Action::TicketEscalated => "ticket_escalated",
            Action::EscalationAcknowledged => "escalation_acknowledged",
            Action::ComplaintRecorded => "complaint_recorded",
            Action::ComplaintResponded => "complaint_responded",
            Action::ComplaintStarted => "complaint_started",
            Action::ComplaintResolved => "complaint_resolved",
            Action::SurveyLinkCreated => "survey_link_created",
            Action::SurveyAnswered => "survey_answered",
            Action::TicketReconciled => "ticket_reconciled",
            Action::TicketDisputed => "ticket_disputed",
            Action::ReconciliationExported => "reconciliation_exported",
            Action::ReconciliationExportDownloaded => "reconciliation_export_downloaded",
        }
    }
}

pub struct Entry<'a> {
    pub action: Action,
    pub actor_user_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub detail: serde_json::Value,
    pub ip: Option<&'a str>,
}

pub fn record(conn: &mut DbConn, e: Entry<'_>) -> Result<(), DbError> {
    let detail = e.detail.to_string();
    on_conn!(conn, |c| {
        diesel::insert_into(audit_log::table)
            .values((
                audit_log::at.eq(now_millis()),
                audit_log::actor_user_id.eq(e.actor_user_id),
                audit_log::action.eq(e.action.as_str()),
                audit_log::subject.eq(e.subject),
                audit_log::detail.eq(&detail),
                audit_log::ip.eq(e.ip),
            ))
            .execute(c)
            .map(|_| ())
            .map_err(DbError::from)
    })
}

#[derive(Debug, Serialize, Queryable, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub struct Row {
    /// A sequence number in storage; a string in the API, like every id.
    #[serde(serialize_with = "id_as_string")]
    #[schema(value_type = String)]
    pub id: i64,
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub actor_user_id: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub detail: String,
    pub ip: Option<String>,
}

fn id_as_string<S: serde::Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// How many `action` entries about `subject` were written since `since_ms`.
pub fn count_since(
    conn: &mut DbConn,
    action: Action,
    subject: &str,
    since_ms: i64,
) -> Result<i64, DbError> {
    on_conn!(conn, |c| audit_log::table
        .filter(audit_log::action.eq(action.as_str()))
        .filter(audit_log::subject.eq(subject))
        .filter(audit_log::at.ge(since_ms))
        .count()
        .get_result(c)
        .map_err(DbError::from))
}

/// Newest first, older than entry `before` if given; optionally one action only.
pub fn list(
    conn: &mut DbConn,
    action: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Row>, DbError> {
    on_conn!(conn, |c| {
        let mut q = audit_log::table
            .order(audit_log::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(a) = action {
            q = q.filter(audit_log::action.eq(a));
        }
        if let Some(b) = before {
            q = q.filter(audit_log::id.lt(b));
        }
        q.load::<Row>(c).map_err(DbError::from)
    })
}
