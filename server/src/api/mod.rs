//! The REST API under `/api/v1`: JSON in and out, errors as
//! `{"error": {"code", "message"}}` with the matching HTTP status.

pub mod auth;
pub mod blobs;
pub mod capabilities;
pub mod complaints;
pub mod devices;
pub mod docs;
pub mod errors;
pub mod events;
pub mod history;
pub mod input;
pub mod openapi;
pub mod paging;
pub mod preconditions;
pub mod quarantine;
pub mod reconciliation;
pub mod records;
pub mod reports;
pub mod sla;
pub mod surveys;
pub mod tickets;
pub mod users;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use fieldsync_shared::roles::Role;

use crate::auth::accounts::{AccountError, User};
use crate::auth::client_limit::LoginRateLimit;
use crate::auth::devices::DeviceError;
use crate::auth::hash_pool::{Busy, PasswordPool};
use crate::auth::jwt::JwtKeys;
use crate::auth::sessions::SessionError;
use crate::db::{Db, DbError};

/// What request handlers share.
pub struct ApiState {
    pub db: Db,
    pub keys: JwtKeys,
    pub blobs: crate::blobs::BlobStore,
    /// Password hashing, off the database pool (see auth::hash_pool).
    pub passwords: PasswordPool,
    /// Login requests per client address (see auth::client_limit).
    pub login_rate: LoginRateLimit,
    /// The service rules' clock offset (see app::ServiceOptions).
    pub clock_offset: chrono::Duration,
    /// Signs customers' survey links (`server_meta.survey_link_secret`).
    pub survey_key: Vec<u8>,
    /// Whether escalations are also queued for the webhook.
    pub webhook: bool,
    /// How customers reach this server (`--public-url`), for survey links.
    pub public_url: Option<String>,
    /// Tickets whose stored SLA state the SLA watch just rewrote (None: a
    /// sweep of every ticket), for the console's live board.
    pub sla_updates: tokio::sync::broadcast::Sender<Option<String>>,
}

impl ApiState {
    /// "Now" for the service rules.
    pub fn service_now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.clock_offset
    }
}

pub type State = web::Data<Arc<ApiState>>;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (503 while storage is failing).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 503 + `Retry-After`: storage is failing; nothing was changed.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "storage unavailable; answered 503");
        crate::metrics::METRICS.storage_unavailable.inc();
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "storage is temporarily unavailable; nothing was changed, retry later",
            )
        }
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 500 with a generic message; the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error in API request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
    /// 422: the request has the documented shape but breaks a rule the
    /// schema cannot state (an end before its start, a time outside the
    /// allowed window, a field required only when another is missing).
    /// 400 is kept for requests that do not match the schema.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// A refusal worth retrying after `secs` (429 limits, 503 busy).
    pub fn retry_after(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        secs: u32,
    ) -> Self {
        Self {
            retry_after: Some(secs),
            ..Self::new(status, code, message)
        }
    }
}

impl From<Busy> for ApiError {
    fn from(e: Busy) -> Self {
        Self::retry_after(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string(), 1)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            r.insert_header(("Retry-After", secs.to_string()));
        }
        r.json(serde_json::json!({ "error": { "code": self.code, "message": self.message } }))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            Self::unavailable(e)
        } else {
            Self::internal(e)
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::InvalidCredentials => {
                Self::unauthorized("invalid_credentials", e.to_string())
            }
            SessionError::InvalidRefreshToken => {
                Self::unauthorized("invalid_refresh_token", e.to_string())
            }
            SessionError::TooManyAttempts { retry_after_secs } => Self::retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                e.to_string(),
                retry_after_secs,
            ),
            SessionError::TooManyRequests { retry_after_secs } => Self::retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                e.to_string(),
                retry_after_secs,
            ),
            SessionError::Busy(busy) => busy.into(),
            SessionError::Db(db) => db.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::BadUsername | AccountError::Password(_) => {
                Self::bad_request(e.to_string())
            }
            AccountError::UsernameTaken(_) => Self::conflict(e.to_string()),
            AccountError::NotFound(_) => Self::not_found(e.to_string()),
            AccountError::Stale(s) => s.into(),
            AccountError::Db(db) => db.into(),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::BadId | DeviceError::BadLabel => Self::bad_request(e.to_string()),
            DeviceError::Revoked(_) => Self::forbidden(e.to_string()),
            DeviceError::Ambiguous(_) => {
                Self::new(StatusCode::CONFLICT, "ambiguous_device", e.to_string())
            }
            DeviceError::NotFound(_) => Self::not_found(e.to_string()),
            DeviceError::Db(db) => db.into(),
        }
    }
}

/// Who may create and change tickets and customer records.
pub const DISPATCH: &[Role] = &[Role::Dispatcher, Role::Admin];
/// Who maintains the parts catalogue and van stock.
pub const CATALOGUE: &[Role] = &[Role::BackOffice, Role::Admin];
/// Office roles: read every ticket, customer and history.
pub const OFFICE: &[Role] = &[
    Role::Dispatcher,
    Role::BackOffice,
    Role::Supervisor,
    Role::Manager,
    Role::Admin,
];

/// 403 unless `user` has one of `roles`.
pub fn require_role(user: &User, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&user.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role `{}` may not do this",
            user.role
        )))
    }
}

/// The REST API, one entry per route: the router and the OpenAPI document
/// (`openapi.rs`) are both generated from this table, so they cannot drift.
/// `public`: no access token; `query`: the query-string type; `body` (or
/// `optional_body`): the JSON request body's type; `raw_body`: a non-JSON
/// body's media type; `example`: an example body; `ok`: the success statuses
/// and the JSON answer, `(T)` one value or `[T]` a list, then `also` other
/// media types the answer can take.
macro_rules! api_routes {
    ($( $method:ident $path:literal => $handler:path, $summary:literal
        $(, public: $public:literal)?
        $(, query: $query:ty)?
        $(, body: $body:ty)?
        $(, optional_body: $obody:ty)?
        $(, raw_body: $raw:literal)?
        $(, example: $example:literal)?
        $(, etag: $etag:literal)?
        , ok: $($status:literal)|+ $(($one:ty))? $([$many:ty])? $(, also: $($also:literal)|+)? ; )*) => {
        fn register(scope: actix_web::Scope) -> actix_web::Scope {
            scope $( .route($path, web::$method().to($handler)) )*
        }
        /// Every route under `/api/v1`, for the OpenAPI document.
        pub const ROUTES: &[openapi::RouteDoc] = &[$(openapi::RouteDoc {
            method: stringify!($method),
            path: $path,
            operation: stringify!($handler),
            summary: $summary,
            public: api_routes!(@or $($public)? false),
            query: api_routes!(@opt $(openapi::query_params::<$query> as fn() -> _)?),
            request: api_routes!(@opt
                $((openapi::named::<$body> as fn(&mut openapi::Schemas) -> _, false))?
                $((openapi::named::<$obody> as fn(&mut openapi::Schemas) -> _, true))?),
            raw_request: api_routes!(@opt $($raw)?),
            example: api_routes!(@opt $($example)?),
            etag: api_routes!(@opt $($etag)?),
            ok: &[$($status),+],
            response: api_routes!(@opt
                $(openapi::named::<$one> as fn(&mut openapi::Schemas) -> _)?
                $(openapi::list_of::<$many> as fn(&mut openapi::Schemas) -> _)?),
            also: &[$($($also),+)?],
        }),*];
    };
    (@or $v:literal $d:literal) => { $v };
    (@or $d:literal) => { $d };
    (@opt $v:expr) => { Some($v) };
    (@opt) => { None };
}

api_routes! {
    post "/auth/login" => auth::login, "Log in: access token (15 min) and rotating refresh token",
        public: true, body: auth::LoginBody, example: r#"{"username":"dora","password":"fieldsync-demo"}"#,
        ok: 200 (crate::auth::sessions::TokenPair);
    post "/auth/refresh" => auth::refresh, "Exchange a refresh token for new tokens (reuse revokes the family)",
        public: true, body: auth::RefreshBody, ok: 200 (crate::auth::sessions::TokenPair);
    post "/auth/logout" => auth::logout, "Revoke a refresh token", public: true, body: auth::RefreshBody, ok: 204;
    get "/me" => auth::me, "The signed-in user", ok: 200 (User);
    get "/me/capabilities" => capabilities::mine, "What the signed-in user's role may do (the console shows only these pages and actions)",
        ok: 200 (capabilities::Capabilities);
    get "/events" => events::stream_events, "Live ticket changes as server-sent events (office roles): `ticket` {doc_id} after each commit, `sla` after the SLA watch rewrote states, `resync` after falling behind, `expired` when the access token does",
        ok: 200, also: "text/event-stream";
    get "/users" => users::list, "List accounts (admin), by username", query: paging::PageQuery, ok: 200 [User];
    post "/users" => users::create, "Create an account (admin)", body: users::NewUser,
        example: r#"{"username":"tom","display_name":"Tom","role":"technician","password":"…"}"#, ok: 201 (User);
    get "/users/{username}" => users::get, "One account (admin, or your own)", etag: "read", ok: 200 (User);
    post "/users/{username}/disable" => users::disable, "Disable an account (admin); its sessions close", etag: "write", ok: 200 (User);
    put "/users/{username}/password" => users::set_password, "Set a password (admin, or your own)", body: users::NewPassword,
        etag: "write", ok: 204;
    put "/users/{username}/role" => users::set_role, "Change a role (admin)", body: users::NewRole,
        example: r#"{"role":"dispatcher"}"#, etag: "write", ok: 200 (User);
    get "/people" => users::people, "Every account's name and role, by username (office roles): who the ids on tickets are, whom to assign",
        ok: 200 (users::People);
    get "/audit" => users::audit, "The audit log (admin)", query: users::AuditQuery, ok: 200 [crate::audit::Row];
    get "/devices" => devices::list, "Devices (own; all for admins and dispatchers), oldest first", query: paging::PageQuery,
        ok: 200 [crate::auth::devices::Device];
    post "/devices" => devices::register, "Register a device (201), or touch one already registered (200)", body: devices::NewDevice,
        example: r#"{"id":"tom-phone","name":"Tom's phone","platform":"android"}"#, ok: 201 | 200 (crate::auth::devices::Device);
    post "/devices/{id}/revoke" => devices::revoke, "Revoke a device; its live sync sessions close", ok: 200 (crate::auth::devices::Device);
    post "/tickets" => tickets::create, "Create a ticket from an intake (dispatcher); returns its automerge URL", body: tickets::NewTicket,
        example: r#"{"customer_id":"…","asset_id":"…","fault_description":"Motor stops under load","occurred_at":"2026-11-22T08:30:00Z","reported_via":"phone","priority":"A","technician":"tom"}"#,
        ok: 201 (tickets::Opened);
    get "/tickets" => tickets::list, "List tickets (technicians: their own)", query: tickets::ListQuery, ok: 200 [crate::projection::TicketRow];
    get "/tickets/{doc_id}" => tickets::get, "One ticket's service-history row", ok: 200 (crate::projection::TicketRow);
    get "/tickets/{doc_id}/document" => tickets::document, "The ticket's whole document as the server holds it (notes, checklist, attachments, assignment, survey)",
        ok: 200 (tickets::TicketDocument);
    get "/tickets/{doc_id}/timeline" => history::timeline, "A ticket's timeline: status events (who/when), visits, parts, signoff, SLA state now",
        ok: 200 (history::TicketTimeline);
    put "/tickets/{doc_id}/assignment" => tickets::assign, "Assign or reassign a technician (dispatcher)", body: tickets::AssignBody,
        example: r#"{"technician":"tom"}"#, ok: 200 (tickets::Assigned);
    put "/tickets/{doc_id}/appointment" => tickets::set_appointment, "Set the appointment window (dispatcher)", body: tickets::AppointmentBody,
        example: r#"{"start":"2026-11-24T09:00:00Z","end":"2026-11-24T11:00:00Z"}"#, ok: 200 (tickets::Appointment);
    post "/tickets/{doc_id}/cancel" => tickets::cancel, "Cancel (dispatcher; status machine applies)", optional_body: tickets::ReasonBody,
        example: r#"{"reason":"customer fixed it"}"#, ok: 200 (tickets::StatusChanged);
    post "/tickets/{doc_id}/reopen" => tickets::reopen, "Reopen (dispatcher; status machine applies)", optional_body: tickets::ReasonBody,
        example: r#"{"reason":"fault returned"}"#, ok: 200 (tickets::StatusChanged);
    post "/customers" => records::create_customer, "Create a customer (dispatcher)", body: crate::records::NewCustomer,
        example: r#"{"name":"Acme Bakery","phone":"+86 10 5555 0100","email":"","address":"1 Oven Road"}"#, etag: "read",
        ok: 201 (crate::records::Customer);
    get "/customers" => records::search_customers, "Search customers", query: records::SearchQuery, ok: 200 [crate::records::Customer];
    get "/customers/{id}" => records::get_customer, "A customer with sites and assets; the ETag is the customer's version",
        etag: "read", ok: 200 (records::CustomerCard);
    put "/customers/{id}" => records::update_customer, "Replace a customer's contact fields (dispatcher)", body: crate::records::NewCustomer,
        example: r#"{"name":"Acme Bakery","phone":"+86 10 5555 0101","email":"office@acme.example","address":"1 Oven Road"}"#,
        etag: "write", ok: 200 (crate::records::Customer);
    put "/customers/{id}/archived" => records::archive_customer, "Archive or restore a customer (records are never deleted)",
        body: records::ArchiveBody, example: r#"{"archived":true}"#, etag: "write", ok: 200 (crate::records::Customer);
    post "/customers/{id}/sites" => records::create_site, "Add a site", body: crate::records::NewSite,
        example: r#"{"name":"Main bakery","address":"1 Oven Road"}"#, etag: "read", ok: 201 (crate::records::Site);
    get "/sites/{id}" => records::get_site, "One site", etag: "read", ok: 200 (crate::records::Site);
    put "/sites/{id}" => records::update_site, "Replace a site's name and address (dispatcher)", body: crate::records::NewSite,
        example: r#"{"name":"Main bakery","address":"2 Oven Road"}"#, etag: "write", ok: 200 (crate::records::Site);
    post "/customers/{id}/assets" => records::create_asset, "Add a purchased asset", body: crate::records::NewAsset,
        example: r#"{"product":"Dough mixer","model":"DM-40","serial":"SN-778","purchased_at":"2024-03-01","warranty_until":"2027-03-01"}"#,
        etag: "read", ok: 201 (crate::records::Asset);
    get "/assets/{id}" => records::get_asset, "One asset record", etag: "read", ok: 200 (crate::records::Asset);
    put "/assets/{id}" => records::update_asset, "Replace an asset's fields (dispatcher); it stays with its customer",
        body: crate::records::NewAsset,
        example: r#"{"product":"Dough mixer","model":"DM-40","serial":"SN-778","purchased_at":"2024-03-01","warranty_until":"2028-03-01"}"#,
        etag: "write", ok: 200 (crate::records::Asset);
    get "/customers/{id}/history" => history::customer, "Service history of a customer", ok: 200 (history::CustomerHistory);
    get "/assets/{id}/history" => history::asset, "Service history of an asset (by record or serial)", ok: 200 (history::AssetHistory);
    get "/technicians/{username}/history" => history::technician, "Service history of a technician", ok: 200 (history::TechnicianHistory);
    get "/technicians/{username}/van-stock" => records::van_stock, "Van stock levels and movements", ok: 200 (records::VanStock);
    get "/parts" => records::list_parts, "The parts catalogue, by part number", query: paging::PageQuery, ok: 200 [crate::records::Part];
    get "/parts/{part_no}" => records::get_part, "One catalogue part", etag: "read", ok: 200 (crate::records::Part);
    put "/parts/{part_no}" => records::put_part, "Add or update a catalogue part (back office); with If-Match, only update that version",
        body: records::PartBody, example: r#"{"name":"Mixer motor 400 W","unit_cost_cents":32000,"active":true}"#,
        etag: "write", ok: 200 (crate::records::Part);
    post "/stock-movements" => records::record_movement, "Restock or correct a van (back office)", body: records::MovementBody,
        example: r#"{"technician":"tom","part_no":"MTR-40","qty_delta":2,"reason":"restock"}"#, ok: 201 (crate::projection::MovementRow);
    get "/stock/anomalies" => records::stock_anomalies, "Van parts on tickets that did not move stock (unknown part, implausible quantity)",
        ok: 200 (records::StockAnomalies);
    put "/blobs/{sha256}" => blobs::put, "Upload an attachment (content-addressed, idempotent; raw bytes): 201 stored, 200 already there",
        raw_body: "application/octet-stream", ok: 201 | 200;
    get "/blobs/{sha256}" => blobs::get, "Download an attachment through a ticket referencing it", query: blobs::GetQuery,
        ok: 200, also: "application/octet-stream";
    get "/quarantined-edits" => quarantine::list, "Edits undone by write validation", query: quarantine::QuarantineQuery,
        ok: 200 [crate::storage::QuarantineRow];
    get "/sla/states" => sla::states, "Stored SLA states of many tickets (office roles), e.g. for a board", query: sla::StatesQuery,
        ok: 200 (sla::StoredStates);
    get "/tickets/{doc_id}/sla" => sla::ticket_sla, "A ticket's SLA state per target (respond, resolve), now or at a time",
        query: sla::AtQuery, ok: 200 (sla::SlaAnswer);
    post "/tickets/{doc_id}/contacts" => sla::record_contact, "Record a contact with the customer now (office, assigned technician): the response when sla.respond_on is first_contact",
        body: sla::ContactBody, example: r#"{"channel":"phone","note":"told her we come tomorrow 9-11"}"#, ok: 201 (crate::office::contacts::Contact);
    get "/tickets/{doc_id}/contacts" => sla::list_contacts, "Contacts with the customer about a ticket, oldest first",
        query: paging::PageQuery, ok: 200 [crate::office::contacts::Contact];
    get "/escalations" => sla::list_escalations, "Escalations, newest first (technicians: their own)", query: sla::EscalationQuery,
        ok: 200 [crate::office::escalations::Escalation];
    post "/escalations/{id}/acknowledge" => sla::acknowledge, "Acknowledge an escalation (its recipients, supervisors, managers)",
        ok: 200 (crate::office::escalations::Escalation);
    get "/callbacks" => sla::list_callbacks, "Callback tasks (48 h after completion; after a low survey score)",
        query: crate::office::closed_loop::CallbackFilter, ok: 200 [crate::office::closed_loop::Callback];
    post "/callbacks/{id}/outcome" => sla::callback_outcome, "Record a callback's outcome (office)", body: sla::Outcome,
        example: r#"{"reached":true,"solved":true,"note":"works again"}"#, ok: 200 (crate::office::closed_loop::Callback);
    get "/customer-flags" => sla::list_flags, "Customers flagged after unsatisfied services in a row", query: sla::FlagQuery,
        ok: 200 [crate::office::closed_loop::CustomerFlag];
    post "/customer-flags/{id}/clear" => sla::clear_flag, "Clear a customer flag (supervisor, manager)", body: sla::ClearBody,
        example: r#"{"note":"called, agreed a maintenance plan"}"#, ok: 204;
    post "/tickets/{doc_id}/survey-link" => surveys::create_link, "A single-use survey link for the customer of a completed job, valid until the survey window closes (office)",
        ok: 201 (surveys::LinkMade);
    get "/tickets/{doc_id}/survey-links" => surveys::list_links, "Survey links made for a ticket, newest first: when, by whom, used or not (office)",
        query: paging::PageQuery, ok: 200 [crate::office::surveys::Link];
    post "/survey-answers" => surveys::answer_json, "Record a customer's survey answer with the link's token (the public page /survey/{token} posts the same)",
        public: true, body: surveys::JsonAnswer, example: r#"{"token":"…","efficiency":5,"attitude":4,"reasonableness":4,"comment":"quick and tidy"}"#,
        ok: 200 (surveys::Recorded);
    post "/complaints" => complaints::create, "Record a complaint about a customer and/or ticket (office); a product-quality one opens a repair job",
        body: complaints::CreateBody,
        example: r#"{"customer_id":"…","doc_id":"","category":"product_quality","description":"the new mill jams again","received_at":"2026-11-23T10:00:00Z","asset_id":"…","open_repair":true}"#,
        ok: 201 (complaints::ComplaintMade);
    get "/complaints" => complaints::list, "Complaints, newest first (office)", query: crate::office::complaints::Filter,
        ok: 200 [crate::office::complaints::Complaint];
    get "/complaints/{id}" => complaints::get, "One complaint with its response and resolution states and due times (office)",
        ok: 200 (crate::office::complaints::Complaint);
    post "/complaints/{id}/respond" => complaints::respond, "Record the first response to the complainant (office)", body: complaints::RespondBody,
        example: r#"{"note":"called back, apologised"}"#, ok: 200 (crate::office::complaints::Complaint);
    post "/complaints/{id}/start" => complaints::start, "Record that handling has started (office; due within complaints.start_minutes, 24 h)",
        ok: 200 (crate::office::complaints::Complaint);
    post "/complaints/{id}/resolve" => complaints::resolve, "Resolve a complaint; customer_satisfied=false schedules a second contact (office)",
        body: complaints::ResolveBody, example: r#"{"resolution":"replaced the part free of charge","customer_satisfied":true}"#,
        ok: 200 (crate::office::complaints::Complaint);
    get "/webhook-deliveries" => sla::webhook_deliveries, "The outgoing webhook's delivery log, newest first: attempts, status, errors (admin)",
        query: paging::PageQuery, ok: 200 [crate::office::webhooks::Delivery];
    get "/policy" => sla::get_policy, "The service policy: SLA targets, calendar, escalation tiers (office roles)",
        ok: 200 (crate::service::policy::Policy);
    put "/policy" => sla::put_policy, "Replace the service policy (admin; omitted fields take the seed defaults)",
        body: crate::service::policy::Policy,
        example: r#"{"sla":{"A":{"respond_minutes":120,"resolve_minutes":2880},"at_risk_share":0.25,"calendar":{"utc_offset_minutes":480,"working_days":[1,2,3,4,5],"open":"09:00","close":"18:00","holidays":["2026-10-01"]}}}"#,
        ok: 200 (crate::service::policy::Policy);
    get "/reconciliation/queue" => reconciliation::queue, "Signed-off tickets waiting for reconciliation, with automatic checks (back office, admin; supervisors and managers read)",
        query: reconciliation::QueueQuery, ok: 200 (reconciliation::Queue);
    get "/tickets/{doc_id}/reconciliation" => reconciliation::ticket_state, "A ticket's reconciliation: latest decision (as in the document), every decision with its checks, the checks now, quarantined edits",
        ok: 200 (reconciliation::TicketReconciliation);
    post "/tickets/{doc_id}/reconcile" => reconciliation::reconcile, "Approve → reconciled, then locked (back office); refused while a check is a problem unless override with a note",
        optional_body: reconciliation::ApproveBody, example: r#"{"override":false,"note":""}"#, ok: 200 (reconciliation::Decided);
    post "/tickets/{doc_id}/dispute" => reconciliation::dispute, "Dispute → disputed, back to the dispatcher with the reason in the ticket (back office)",
        body: reconciliation::DisputeBody, example: r#"{"reason":"two motors billed, one fitted"}"#, ok: 200 (reconciliation::Decided);
    get "/reconciliation/export" => reconciliation::create_export, "Export reconciled jobs (one line per labour/part billing line); recorded, X-Export-Id names it",
        query: reconciliation::ExportQuery, ok: 200, also: "text/csv" | "application/x-ndjson";
    get "/reconciliation/exports" => reconciliation::list_exports, "Exports made, newest first", query: reconciliation::ExportsQuery,
        ok: 200 [reconciliation::ExportInfo];
    get "/reconciliation/exports/{id}" => reconciliation::get_export, "One export: period, who, when, its jobs, content hash",
        ok: 200 (reconciliation::ExportInfo);
    get "/reconciliation/exports/{id}/content" => reconciliation::export_content, "One export's content again, byte for byte",
        ok: 200, also: "text/csv" | "application/x-ndjson";
    put "/parts/{part_no}/serial-required" => reconciliation::set_serial_required, "Whether fitting a catalogue part must record its serial (back office)",
        body: reconciliation::SerialRequiredBody, example: r#"{"serial_required":true}"#, etag: "write",
        ok: 200 (reconciliation::SerialRequired);
    get "/reports/{period}" => reports::report, "A periodic report (office roles): period week|month|quarter|year; overview, KPIs against targets per company and technician, problems, trend over the 3 periods before",
        query: reports::ReportQuery, ok: 200 (crate::office::reports::Report), also: "text/csv" | "image/svg+xml";
    get "/kpis" => reports::kpis, "KPIs of any span (technicians: their own only)", query: reports::KpiQuery, ok: 200 (reports::KpiAnswer);
    post "/sync/batch" => crate::sync::batch::batch_endpoint, "HTTP batch sync: sync messages for many documents in one request",
        body: crate::sync::batch::BatchRequest,
        example: r#"{"device":"tom-phone","messages":[{"document_id":"…","data":"<base64 Automerge sync message>"}]}"#,
        ok: 200 (crate::sync::batch::BatchReplies);
    get "/openapi.json" => openapi::serve, "This document", public: true, ok: 200;
}

/// The API under `/api/v1`. Extractor errors (query string, path, JSON
/// body) are answered by `errors` in the JSON error format, as are unknown
/// routes and wrong methods (the scope's default service).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        register(
            web::scope("/api/v1")
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_JSON_BODY)
                        .error_handler(errors::json_body),
                )
                .app_data(web::QueryConfig::default().error_handler(errors::query_string))
                .app_data(web::PathConfig::default().error_handler(errors::path)),
        )
        .default_service(web::to(errors::no_route)),
    );
}

/// Largest JSON request body, in bytes.
pub const MAX_JSON_BODY: usize = 64 * 1024;
