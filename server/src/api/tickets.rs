//! Tickets for dispatchers: creation from an intake (the server writes the
//! Automerge document), list/filter/search, assignment (the input of the
//! share policy), appointment window, cancel and reopen. Every edit goes
//! through the document's actor: validated by the status machine, committed
//! with its service-history rows, then sent to connected devices.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use fieldsync_shared::status::{self, Status};
use fieldsync_shared::ticket::{self, Intake};
use fieldsync_shared::DocumentId;
use serde::Deserialize;

use super::auth::AuthUser;
use super::paging::{self, Window};
use super::{input, require_role, ApiError, State, DISPATCH};
use crate::audit::{self, Action, Entry};
use crate::auth::accounts::{self, User};
use crate::db::ticket_numbers;
use crate::history::{self, TicketFilter};
use crate::records;
use crate::sharing::{self, DocAccess};
use crate::sync::hub::{DocCommand, EditError, Hub, ServerEditFn};

type HubData = web::Data<Arc<Hub>>;

/// A ticket id from the path. One that cannot be a document id names no
/// ticket: 404, as for an unknown one.
pub fn parse_doc(raw: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse_url_or_id(raw)
        .map_err(|e| ApiError::not_found(format!("no such ticket (bad document id: {e})")))
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::NotFound => ApiError::not_found(e.to_string()),
            EditError::Exists => ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "conflict",
                e.to_string(),
            ),
            EditError::Invalid(m) => ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "invalid_transition",
                m,
            ),
            EditError::Unavailable => ApiError::unavailable(e),
        }
    }
}

/// An edit that moves the status: refused unless the status machine lets
/// `role` make that transition from the current status.
fn transition(role: Role, to: Status) -> impl Fn(&str) -> Result<(), String> {
    move |from: &str| {
        let from: Status = from.parse().map_err(|e| format!("{e}"))?;
        status::check_transition(role, from, to).map_err(|e| e.to_string())
    }
}

fn current_status(tx: &automerge::transaction::Transaction<'_>) -> String {
    ticket::read(tx).map(|t| t.status).unwrap_or_default()
}

/// Refuses the edit while the reconciliation lock holds for `role`.
fn not_locked(tx: &automerge::transaction::Transaction<'_>, role: Role) -> Result<(), String> {
    if status::locked_for(role, &current_status(tx)) {
        return Err("the ticket is reconciled and locked; only an admin can change it".into());
    }
    Ok(())
}

async fn audit_ticket(
    state: &State,
    action: Action,
    actor: &str,
    doc: DocumentId,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    audit_one(state, action, actor, doc.to_string(), detail).await
}

/// Records one audit entry on its own (after the change it describes).
pub(super) async fn audit_one(
    state: &State,
    action: Action,
    actor: &str,
    subject: String,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let actor = actor.to_string();
    state
        .db
        .run(move |c| {
            audit::record(
                c,
                Entry {
                    action,
                    actor_user_id: Some(&actor),
                    subject: Some(&subject),
                    detail,
                    ip: None,
                },
            )
        })
        .await?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AssignBody {
    /// Username of the technician.
    #[schema(max_length = 128)]
    technician: String,
}

/// A ticket and who it is assigned to now.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Assigned {
    pub document_id: String,
    /// The `automerge:` URL devices sync.
    pub url: String,
    pub technician_id: String,
}

/// A ticket just opened from an intake.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Opened {
    pub document_id: String,
    /// The `automerge:` URL devices sync.
    pub url: String,
    pub ticket_no: String,
    /// Set when the intake named a technician.
    pub technician_id: Option<String>,
}

/// The appointment window as stored (RFC 3339, UTC).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Appointment {
    pub start: String,
    pub end: String,
}

/// A ticket's status after a dispatcher's decision.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StatusChanged {
    pub document_id: String,
    #[schema(value_type = TicketStatus)]
    pub status: String,
}

/// The statuses of the ticket status machine (DESIGN.md).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TicketStatus {
    New,
    Assigned,
    EnRoute,
    OnSite,
    Paused,
    Completed,
    SignedOff,
    Disputed,
    Reconciled,
    Cancelled,
    Reopened,
}

/// `GET /tickets?sla=`: the SLA state a ticket is in now.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SlaFilter {
    OnTime,
    AtRisk,
    Breached,
    Settled,
    None,
}

/// Ticket priorities (the A/B/C matrix of seed 000).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum Priority {
    A,
    B,
    C,
}

/// Assigns `doc` to the technician `username`: the share-policy table, the
/// document's `assignment` (and new/reopened → assigned), the audit log.
async fn assign_to(
    state: &State,
    hub: &Arc<Hub>,
    actor: &User,
    doc: DocumentId,
    username: String,
) -> Result<String, ApiError> {
    let tech = state
        .db
        .run(move |c| accounts::find_for_login(c, &username).map(|u| (username, u)))
        .await?;
    let tech = match tech {
        (_, Some((u, _))) if u.role == Role::Technician && !u.disabled => u,
        (name, Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "`{name}` is not an active technician"
            )))
        }
        (name, None) => return Err(ApiError::not_found(format!("no such user `{name}`"))),
    };
    let (tech_id, by, at) = (tech.id.clone(), actor.id.clone(), crate::db::now_rfc3339());
    let role = actor.role;
    let edit: ServerEditFn = Box::new(move |tx| {
        not_locked(tx, role)?;
        ticket::set_assignment(tx, &tech_id, &by, &at).map_err(|e| e.to_string())?;
        let from = current_status(tx);
        if from == "new" || from == "reopened" {
            transition(role, Status::Assigned)(&from)?;
            ticket::set_status(tx, Status::Assigned).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    hub.server_edit(doc, &actor.id, actor.role, false, edit)
        .await?;
    let (doc_key, tech_id, by) = (doc.to_string(), tech.id.clone(), actor.id.clone());
    let assignment = state
        .db
        .run(move |c| sharing::assign(c, &doc_key, &tech_id, &by))
        .await?;
    // Live sessions of the previous technician stop receiving the ticket now;
    // the new technician's devices that asked before get it.
    hub.dispatch_if_loaded(doc, DocCommand::AccessChanged(assignment))
        .await;
    audit_ticket(
        state,
        Action::TicketAssigned,
        &actor.id,
        doc,
        serde_json::json!({ "technician": tech.username }),
    )
    .await?;
    Ok(tech.id)
}

pub async fn assign(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<AssignBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let doc = parse_doc(&path.into_inner())?;
    let technician = body.into_inner().technician;
    input::text("technician", &technician, input::MAX_ID)?;
    let tech = assign_to(&state, &hub, &user.0, doc, technician).await?;
    Ok(HttpResponse::Ok().json(Assigned {
        document_id: doc.to_string(),
        url: doc.url(),
        technician_id: tech,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewTicket {
    #[serde(default)]
    #[schema(max_length = 128)]
    ticket_no: String,
    /// A customer archive record: fills name, phone and address when they
    /// are not given.
    #[serde(default)]
    #[schema(max_length = 128)]
    customer_id: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    customer_name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    customer_phone: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    customer_address: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    site: String,
    /// An asset record of that customer: fills product, model and serial.
    #[serde(default)]
    #[schema(max_length = 128)]
    asset_id: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    product: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    model: String,
    #[serde(default)]
    #[schema(max_length = 128)]
    serial: String,
    #[schema(min_length = 1, max_length = 4000)]
    fault_description: String,
    #[serde(default)]
    #[schema(format = DateTime)]
    occurred_at: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    reported_via: String,
    #[schema(value_type = Priority)]
    priority: String,
    /// Assign at once to this technician (username).
    #[schema(max_length = 128)]
    technician: Option<String>,
}

impl NewTicket {
    /// The repair job a product-quality complaint opens (seed 000 §5.3):
    /// the complainant's, on the asset if known, priority A (product
    /// failure), reported via the complaint.
    pub fn repair_for_complaint(customer_id: &str, asset_id: &str, description: &str) -> Self {
        NewTicket {
            ticket_no: String::new(),
            customer_id: customer_id.to_string(),
            customer_name: String::new(),
            customer_phone: String::new(),
            customer_address: String::new(),
            site: String::new(),
            asset_id: asset_id.to_string(),
            product: String::new(),
            model: String::new(),
            serial: String::new(),
            fault_description: format!("Complaint (product quality): {description}"),
            occurred_at: String::new(),
            reported_via: "complaint".into(),
            priority: "A".into(),
            technician: None,
        }
    }
}

fn or(given: String, record: &str) -> String {
    if given.trim().is_empty() {
        record.to_string()
    } else {
        given
    }
}

/// Turns the request into an intake, filling from the customer archive.
async fn intake_from(state: &State, b: NewTicket, doc_id: DocumentId) -> Result<Intake, ApiError> {
    if !["A", "B", "C"].contains(&b.priority.as_str()) {
        return Err(ApiError::bad_request("priority must be A, B or C"));
    }
    input::texts(&[
        ("ticket_no", &b.ticket_no, input::MAX_ID),
        ("customer_id", &b.customer_id, input::MAX_ID),
        ("customer_name", &b.customer_name, input::MAX_NAME),
        ("customer_phone", &b.customer_phone, input::MAX_NAME),
        ("customer_address", &b.customer_address, input::MAX_TEXT),
        ("site", &b.site, input::MAX_NAME),
        ("asset_id", &b.asset_id, input::MAX_ID),
        ("product", &b.product, input::MAX_NAME),
        ("model", &b.model, input::MAX_NAME),
        ("serial", &b.serial, input::MAX_ID),
        ("fault_description", &b.fault_description, input::MAX_TEXT),
        ("occurred_at", &b.occurred_at, input::MAX_NAME),
        ("reported_via", &b.reported_via, input::MAX_NAME),
    ])?;
    let (cid, aid) = (b.customer_id.clone(), b.asset_id.clone());
    let (customer, asset) = state
        .db
        .run(move |c| {
            let customer = match cid.is_empty() {
                true => None,
                false => Some(records::get_customer(c, &cid)),
            };
            let asset = match aid.is_empty() {
                true => None,
                false => Some(records::get_asset(c, &aid)),
            };
            Ok((customer, asset))
        })
        .await?;
    let customer = customer.transpose()?;
    let asset = asset.transpose()?;
    if let (Some(a), Some(c)) = (&asset, &customer) {
        if a.customer_id != c.id {
            return Err(ApiError::unprocessable(
                "the asset belongs to another customer",
            ));
        }
    }
    if asset.is_some() && customer.is_none() {
        return Err(ApiError::unprocessable(
            "`asset_id` needs the asset's `customer_id`",
        ));
    }
    let c = |f: fn(&records::Customer) -> &str| customer.as_ref().map(f).unwrap_or("");
    let a = |f: fn(&records::Asset) -> &str| asset.as_ref().map(f).unwrap_or("");
    if occurred_invalid(&b.occurred_at) {
        return Err(ApiError::bad_request(
            "`occurred_at` must be an RFC 3339 time",
        ));
    }
    let intake = Intake {
        ticket_no: if b.ticket_no.trim().is_empty() {
            format!(
                "T-{}-{}",
                chrono::Utc::now().format("%Y%m%d"),
                &doc_id.to_string()[..6]
            )
        } else {
            b.ticket_no.trim().to_string()
        },
        customer_id: b.customer_id,
        customer_name: or(b.customer_name, c(|c| &c.name)),
        customer_phone: or(b.customer_phone, c(|c| &c.phone)),
        customer_address: or(b.customer_address, c(|c| &c.address)),
        site: b.site,
        asset_id: b.asset_id,
        product: or(b.product, a(|a| &a.product)),
        model: or(b.model, a(|a| &a.model)),
        serial: or(b.serial, a(|a| &a.serial)),
        fault_description: b.fault_description,
        occurred_at: b.occurred_at,
        reported_via: b.reported_via,
        priority: b.priority,
    };
    for (name, v) in [
        ("customer_name", &intake.customer_name),
        ("product", &intake.product),
        ("fault_description", &intake.fault_description),
    ] {
        if v.trim().is_empty() {
            return Err(ApiError::unprocessable(format!(
                "`{name}` is required (or give the customer/asset record it comes from)"
            )));
        }
    }
    Ok(intake)
}

fn occurred_invalid(v: &str) -> bool {
    !v.is_empty() && chrono::DateTime::parse_from_rfc3339(v).is_err()
}

impl From<records::RecordError> for ApiError {
    fn from(e: records::RecordError) -> Self {
        match e {
            // Well-formed input that breaks a record rule (a site of another
            // customer, a zero stock movement): 422, see `ApiError::unprocessable`.
            records::RecordError::Invalid(m) => ApiError::unprocessable(m),
            records::RecordError::NotFound(m) => ApiError::not_found(m),
            records::RecordError::Stale(s) => s.into(),
            records::RecordError::Db(d) => d.into(),
        }
    }
}

/// Creates a ticket: the server writes the Automerge document (durably,
/// with its history rows, before answering) and returns its `automerge:` URL
/// for devices to sync.
pub async fn create(
    state: State,
    hub: HubData,
    user: AuthUser,
    body: super::input::Json<NewTicket>,
) -> Result<HttpResponse, ApiError> {
    // One rule for who creates tickets, over REST and through sync.
    if !fieldsync_shared::permissions::may_create_tickets(user.0.role) {
        return Err(ApiError::forbidden(format!(
            "role `{}` may not create tickets",
            user.0.role
        )));
    }
    let (doc_id, ticket_no, technician) =
        open_ticket(&state, &hub, &user.0, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(Opened {
        document_id: doc_id.to_string(),
        url: doc_id.url(),
        ticket_no,
        technician_id: technician,
    }))
}

/// Opens a ticket from an intake for `user` (the caller decided they may):
/// reserves its number, writes the document through its actor (durably,
/// with its history rows), audits it and assigns it if asked. Returns its
/// id, number and technician.
pub async fn open_ticket(
    state: &State,
    hub: &Arc<Hub>,
    user: &User,
    mut b: NewTicket,
) -> Result<(DocumentId, String, Option<String>), ApiError> {
    let technician = b.technician.take();
    if let Some(t) = &technician {
        input::text("technician", t, input::MAX_ID)?;
    }
    let doc_id = DocumentId::random();
    let intake = intake_from(state, b, doc_id).await?;
    let ticket_no = intake.ticket_no.clone();
    let (no, key) = (ticket_no.clone(), doc_id.to_string());
    if !state
        .db
        .run(move |c| ticket_numbers::reserve(c, &no, &key))
        .await?
    {
        return Err(ApiError::conflict(format!(
            "ticket number `{ticket_no}` is taken"
        )));
    }
    let edit: ServerEditFn =
        Box::new(move |tx| ticket::create(tx, &intake).map_err(|e| e.to_string()));
    if let Err(e) = hub
        .server_edit(doc_id, &user.id, user.role, true, edit)
        .await
    {
        // The ticket does not exist: give its number back (best-effort; a
        // leftover reservation only blocks that number).
        let (no, key) = (ticket_no.clone(), doc_id.to_string());
        let _ = state
            .db
            .run(move |c| ticket_numbers::release(c, &no, &key))
            .await;
        return Err(e.into());
    }
    audit_ticket(
        state,
        Action::TicketCreated,
        &user.id,
        doc_id,
        serde_json::json!({ "ticket_no": ticket_no }),
    )
    .await?;
    let technician = match technician {
        Some(t) => Some(assign_to(state, hub, user, doc_id, t).await?),
        None => None,
    };
    Ok((doc_id, ticket_no, technician))
}

/// `GET /tickets?status=&priority=&technician=&customer_id=&from=&to=&q=`.
/// Technicians only ever see their own assigned tickets.
pub async fn list(
    state: State,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (technician, mut filter, window) = query.into_inner().into_filter()?;
    if let Some(name) = technician {
        let found = state
            .db
            .run(move |c| accounts::find_for_login(c, &name))
            .await?;
        // An unknown technician matches nothing rather than everything.
        filter.technician_id = Some(found.map(|(u, _)| u.id).unwrap_or_default());
    }
    if user.0.role == Role::Technician {
        filter.technician_id = Some(user.0.id.clone());
    }
    let rows = state
        .db
        .run(move |c| history::list_tickets(c, &filter))
        .await?;
    Ok(HttpResponse::Ok().json(window.page(rows, |t| (t.created_at.clone(), t.doc_id.clone()))))
}

/// The query of `GET /tickets`. Every field is spelled out (no
/// `#[serde(flatten)]`: with it, serde_urlencoded hands numbers over as
/// strings and `limit=10` failed to parse).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Technician username (or use `technician_id`).
    #[param(max_length = 200)]
    technician: Option<String>,
    #[param(max_length = 200)]
    status: Option<String>,
    #[param(max_length = 200)]
    priority: Option<String>,
    #[param(max_length = 200)]
    technician_id: Option<String>,
    #[param(max_length = 200)]
    customer_id: Option<String>,
    #[param(max_length = 200)]
    asset_id: Option<String>,
    #[param(max_length = 200)]
    serial: Option<String>,
    /// Created at or after: a date (2026-11-01) or an RFC 3339 time.
    #[param(format = Date)]
    from: Option<String>,
    /// Created before the end of: a date (included) or an RFC 3339 time.
    #[param(format = Date)]
    to: Option<String>,
    #[param(max_length = 200)]
    q: Option<String>,
    #[param(inline, value_type = Option<SlaFilter>)]
    sla: Option<String>,
    /// Page size, newest first (default 100, at most 500).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

impl ListQuery {
    /// Checks the values and splits off the technician username.
    #[allow(clippy::type_complexity)]
    fn into_filter(
        self,
    ) -> Result<(Option<String>, TicketFilter, Window<(String, String)>), ApiError> {
        for (name, v) in [("from", &self.from), ("to", &self.to)] {
            if let Some(v) = v {
                input::date_or_time(name, v)?;
            }
        }
        let short = [
            ("technician", &self.technician),
            ("status", &self.status),
            ("priority", &self.priority),
            ("technician_id", &self.technician_id),
            ("customer_id", &self.customer_id),
            ("asset_id", &self.asset_id),
            ("serial", &self.serial),
        ];
        for (name, v) in short {
            input::text(name, v.as_deref().unwrap_or(""), input::MAX_NAME)?;
        }
        input::text("q", self.q.as_deref().unwrap_or(""), input::MAX_QUERY)?;
        if let Some(v) = &self.sla {
            if !["on_time", "at_risk", "breached", "settled", "none"].contains(&v.as_str()) {
                return Err(ApiError::bad_request(
                    "`sla` must be one of on_time, at_risk, breached, settled, none",
                ));
            }
        }
        let window: Window<(String, String)> = Window::new(
            self.limit,
            self.cursor.as_deref(),
            paging::Limits {
                default: 100,
                max: history::MAX_LIMIT,
            },
        )?;
        let filter = TicketFilter {
            status: self.status,
            priority: self.priority,
            technician_id: self.technician_id,
            customer_id: self.customer_id,
            asset_id: self.asset_id,
            serial: self.serial,
            from: self.from,
            to: self.to,
            q: self.q,
            sla: self.sla,
            limit: Some(window.fetch()),
            after: window.after.clone(),
        };
        Ok((self.technician, filter, window))
    }
}

/// The ticket's projection row; 404 for technicians it is not assigned to
/// (the share policy: hidden looks like unknown).
pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, row) = readable_ticket(&state, &user.0, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// The ticket `raw` names and its history row, if `user` may read it;
/// 404 otherwise (unknown and hidden look the same).
async fn readable_ticket(
    state: &State,
    user: &User,
    raw: &str,
) -> Result<(DocumentId, crate::projection::TicketRow), ApiError> {
    let doc = parse_doc(raw)?;
    check_can_read(state, user, doc).await?;
    let key = doc.to_string();
    let row = state.db.run(move |c| history::get_ticket(c, &key)).await?;
    row.map(|r| (doc, r))
        .ok_or_else(|| ApiError::not_found("no such ticket"))
}

/// The share policy for API reads of one ticket.
pub async fn check_can_read(state: &State, user: &User, doc: DocumentId) -> Result<(), ApiError> {
    let (key, role, uid) = (doc.to_string(), user.role, user.id.clone());
    let access = state
        .db
        .run(move |c| {
            let a = sharing::load_assignment(c, &key)?;
            Ok(sharing::doc_access(role, &uid, true, &a))
        })
        .await?;
    match access {
        DocAccess::Full => Ok(()),
        _ => Err(ApiError::not_found("no such ticket")),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AppointmentBody {
    /// RFC 3339.
    #[schema(format = DateTime)]
    start: String,
    /// RFC 3339, after `start`.
    #[schema(format = DateTime)]
    end: String,
}

pub async fn set_appointment(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<AppointmentBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let doc = parse_doc(&path.into_inner())?;
    let AppointmentBody { start, end } = body.into_inner();
    let parse = |v: &str, name: &str| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| ApiError::bad_request(format!("`{name}` must be an RFC 3339 time")))
    };
    let (s, e) = (parse(&start, "start")?, parse(&end, "end")?);
    if e <= s {
        return Err(ApiError::unprocessable("`end` must be after `start`"));
    }
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (start, end) = (fmt(s), fmt(e));
    let (s2, e2) = (start.clone(), end.clone());
    let role = user.0.role;
    let edit: ServerEditFn = Box::new(move |tx| {
        not_locked(tx, role)?;
        ticket::set_appointment(tx, &s2, &e2).map_err(|e| e.to_string())
    });
    hub.server_edit(doc, &user.0.id, user.0.role, false, edit)
        .await?;
    audit_ticket(
        &state,
        Action::TicketUpdated,
        &user.0.id,
        doc,
        serde_json::json!({ "appointment": { "start": start, "end": end } }),
    )
    .await?;
    Ok(HttpResponse::Ok().json(Appointment { start, end }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct ReasonBody {
    #[serde(default)]
    #[schema(max_length = 4000)]
    reason: String,
}

/// Cancel or reopen: a dispatcher decision, checked by the status machine;
/// the reason is appended to the ticket's notes.
async fn decide(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Bytes,
    to: Status,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let doc = parse_doc(&path.into_inner())?;
    let reason = input::optional_json::<ReasonBody>(&body)?.reason;
    input::text("reason", &reason, input::MAX_TEXT)?;
    let role = user.0.role;
    let (who, r) = (user.0.username.clone(), reason.clone());
    let edit: ServerEditFn = Box::new(move |tx| {
        let from = current_status(tx);
        transition(role, to)(&from)?;
        ticket::set_status(tx, to).map_err(|e| e.to_string())?;
        let line = format!("\n[{to} by {who}] {r}");
        ticket::append_note(tx, line.trim_end()).map_err(|e| e.to_string())
    });
    hub.server_edit(doc, &user.0.id, user.0.role, false, edit)
        .await?;
    audit_ticket(
        &state,
        Action::TicketUpdated,
        &user.0.id,
        doc,
        serde_json::json!({ "status": to.as_str(), "reason": reason }),
    )
    .await?;
    Ok(HttpResponse::Ok().json(StatusChanged {
        document_id: doc.to_string(),
        status: to.as_str().to_string(),
    }))
}

pub async fn cancel(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(state, hub, user, path, body, Status::Cancelled).await
}

pub async fn reopen(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(state, hub, user, path, body, Status::Reopened).await
}

/// The whole ticket document as the server holds it, for the console's
/// ticket page: the fields the service history leaves out (notes, checklist,
/// attachments, assignment, survey) beside those it keeps.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TicketDocument {
    pub doc_id: String,
    /// The document as JSON: maps, lists, text as strings, byte values as
    /// `{"bytes": length}`.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    /// What the caller may do to the ticket now, by the rules the edit
    /// endpoints apply (role, status machine, reconciliation lock).
    pub actions: TicketActions,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TicketActions {
    /// Assign or reassign, set the appointment window.
    pub assign: bool,
    pub cancel: bool,
    pub reopen: bool,
}

impl TicketActions {
    fn of(role: Role, status: &str) -> Self {
        let dispatch = DISPATCH.contains(&role) && !status::locked_for(role, status);
        let to = |s: Status| dispatch && transition(role, s)(status).is_ok();
        Self {
            assign: dispatch,
            cancel: to(Status::Cancelled),
            reopen: to(Status::Reopened),
        }
    }
}

pub async fn document(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Only tickets the history knows: an id that names nothing must not
    // start (and keep in memory) a document task.
    let (doc, _) = readable_ticket(&state, &user.0, &path.into_inner()).await?;
    let read: crate::sync::hub::ReadFn = Box::new(|d| crate::sync::validation::field_json_root(d));
    let document = hub
        .read(doc, read)
        .await?
        .ok_or_else(|| ApiError::not_found("no such ticket"))?;
    let status = document["status"].as_str().unwrap_or_default().to_string();
    Ok(HttpResponse::Ok().json(TicketDocument {
        doc_id: doc.to_string(),
        actions: TicketActions::of(user.0.role, &status),
        document,
    }))
}
