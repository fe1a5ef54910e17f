//! SLA, escalations and the service policy over REST. Thin: the rules are in
//! `service`, the workflows in `office`.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::paging::{self, Page, PageQuery, Window};
use super::tickets::{check_can_read, parse_doc};
use super::{require_role, ApiError, State, OFFICE};
use crate::audit::{self, Action, Entry};
use crate::db::transaction;
use crate::office::sla_watch::{self, parse_time};
use crate::office::{closed_loop, contacts, escalations, policy_store};
use crate::service::policy::Policy;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AtQuery {
    /// RFC 3339, within ten years of now; default now.
    #[param(format = DateTime)]
    at: Option<String>,
}

/// One ticket's SLA state at a time.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SlaAnswer {
    pub doc_id: String,
    pub ticket_no: String,
    /// The time it was evaluated at (RFC 3339).
    pub at: String,
    /// The worst state of its targets: `on_time`, `at_risk`, `breached`,
    /// `settled` or `none`.
    pub summary: String,
    /// None: no SLA target applies (no priority).
    pub sla: Option<crate::service::sla::TicketSla>,
}

/// One ticket's SLA state, computed from its history now (or `at`).
pub async fn ticket_sla(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    q: web::Query<AtQuery>,
) -> Result<HttpResponse, ApiError> {
    let doc = parse_doc(&path.into_inner())?;
    check_can_read(&state, &user.0, doc).await?;
    let now = match &q.at {
        Some(s) => parse_time(s)
            .ok_or_else(|| ApiError::bad_request("`at` must be an RFC 3339 time"))
            .and_then(|t| {
                ((t - state.service_now()).num_days().abs() <= 3660)
                    .then_some(t)
                    .ok_or_else(|| ApiError::unprocessable("`at` must be within ten years of now"))
            })?,
        None => state.service_now(),
    };
    let key = doc.to_string();
    let e = state
        .db
        .run(move |c| {
            let policy = policy_store::load(c)?;
            sla_watch::evaluate_ticket(c, &policy, &key, now)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such ticket"))?;
    Ok(HttpResponse::Ok().json(SlaAnswer {
        summary: sla_watch::summary(&e.sla).to_string(),
        doc_id: e.doc_id,
        ticket_no: e.ticket_no,
        at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sla: e.sla,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct EscalationQuery {
    open: Option<bool>,
    tier: Option<String>,
    doc_id: Option<String>,
    /// Only those that notified the caller.
    mine: Option<bool>,
    /// Page size, newest first (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

/// Escalations, newest first. Technicians see those sent to them.
pub async fn list_escalations(
    state: State,
    user: AuthUser,
    q: web::Query<EscalationQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let mine = q.mine == Some(true) || user.0.role == Role::Technician;
    let w: Window<(String, String)> = Window::new(q.limit, q.cursor.as_deref(), paging::DEFAULT)?;
    let f = escalations::Filter {
        open: q.open,
        tier: q.tier,
        doc_id: q.doc_id,
        notified_user: mine.then(|| user.0.id.clone()),
    };
    let (after, limit) = (w.after.clone(), w.limit);
    let (items, scanned, more) = state
        .db
        .run(move |c| escalations::list(c, &f, after, limit))
        .await?;
    Ok(HttpResponse::Ok().json(Page::continuing(items, more.then_some(scanned).flatten())))
}

/// Acknowledges an escalation: someone it notified, a supervisor, a manager
/// or an admin.
pub async fn acknowledge(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let me = user.0.clone();
    let out = state
        .db
        .run(move |c| {
            let Some(e) = escalations::get(c, &id)? else {
                return Ok(Err(ApiError::not_found("no such escalation")));
            };
            let notified: Vec<String> = serde_json::from_str(&e.notified).unwrap_or_default();
            let senior = matches!(me.role, Role::Supervisor | Role::Manager | Role::Admin);
            if !senior && !notified.contains(&me.id) {
                return Ok(Err(ApiError::forbidden(
                    "this escalation was not sent to you",
                )));
            }
            transaction(c, |c| {
                escalations::acknowledge(c, &id, &me.id)?;
                audit::record(
                    c,
                    Entry {
                        action: Action::EscalationAcknowledged,
                        actor_user_id: Some(&me.id),
                        subject: Some(&e.doc_id),
                        detail: serde_json::json!({ "escalation": id }),
                        ip: None,
                    },
                )
            })?;
            Ok(Ok(escalations::get(c, &id)?))
        })
        .await??;
    Ok(HttpResponse::Ok().json(out))
}

/// Who works the callback and flag queues.
const CALLERS: &[Role] = &[
    Role::Dispatcher,
    Role::BackOffice,
    Role::Supervisor,
    Role::Manager,
    Role::Admin,
];

/// Callback tasks: `?open=true`, `?overdue=true`, `?customer_id=`.
pub async fn list_callbacks(
    state: State,
    user: AuthUser,
    q: web::Query<closed_loop::CallbackFilter>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let (f, now) = (q.into_inner(), state.service_now());
    let w: Window<(String, String)> = Window::new(f.limit, f.cursor.as_deref(), paging::DEFAULT)?;
    let (after, fetch) = (w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| closed_loop::list_callbacks(c, &f, now, after, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |cb| (cb.due_at.clone(), cb.id.clone()))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CallbackOutcome)]
pub struct Outcome {
    /// Whether the customer was reached.
    reached: bool,
    /// Whether the problem is solved (if asked).
    solved: Option<bool>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    note: String,
}

pub async fn callback_outcome(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<Outcome>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, CALLERS)?;
    let b = body.into_inner();
    crate::api::input::text("note", &b.note, crate::api::input::MAX_TEXT)?;
    let (id, uid, now) = (path.into_inner(), user.0.id.clone(), state.service_now());
    let done = state
        .db
        .run(move |c| {
            transaction(c, |c| {
                let done = closed_loop::record_outcome(c, &id, b.reached, b.solved, &b.note, &uid, now)?;
                if let Some(cb) = &done {
                    audit::record(
                        c,
                        Entry {
                            action: Action::TicketUpdated,
                            actor_user_id: Some(&uid),
                            subject: Some(&cb.doc_id),
                            detail: serde_json::json!({ "callback": cb.id, "reached": cb.reached, "solved": cb.solved }),
                            ip: None,
                        },
                    )?;
                }
                Ok::<_, crate::db::DbError>(done)
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such open callback"))?;
    Ok(HttpResponse::Ok().json(done))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FlagQuery {
    open: Option<bool>,
    /// Page size, newest first (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

/// Customers flagged for unsatisfied services in a row.
pub async fn list_flags(
    state: State,
    user: AuthUser,
    q: web::Query<FlagQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let open = q.open == Some(true);
    let w: Window<(String, String)> = Window::new(q.limit, q.cursor.as_deref(), paging::DEFAULT)?;
    let (before, fetch) = (w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| closed_loop::list_flags(c, open, before, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |f| (f.flagged_at.clone(), f.id.clone()))))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ClearBody {
    #[schema(pattern = r"\S")]
    note: String,
}

/// Clears a customer flag: an explicit decision by a supervisor, manager
/// or admin, with a note.
pub async fn clear_flag(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<ClearBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Supervisor, Role::Manager, Role::Admin])?;
    let note = body.into_inner().note;
    if note.trim().is_empty() {
        return Err(ApiError::bad_request("a note saying why is required"));
    }
    crate::api::input::text("note", &note, crate::api::input::MAX_TEXT)?;
    let (id, uid, now) = (path.into_inner(), user.0.id.clone(), state.service_now());
    let cleared = state
        .db
        .run(move |c| {
            transaction(c, |c| {
                let ok = closed_loop::clear_flag(c, &id, &uid, &note, now)?;
                if ok {
                    audit::record(
                        c,
                        Entry {
                            action: Action::RecordChanged,
                            actor_user_id: Some(&uid),
                            subject: Some(&id),
                            detail: serde_json::json!({ "customer_flag_cleared": id, "note": note }),
                            ip: None,
                        },
                    )?;
                }
                Ok::<_, crate::db::DbError>(ok)
            })
        })
        .await?;
    if !cleared {
        return Err(ApiError::not_found("no such open flag"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The webhook delivery log, newest first (admin).
pub async fn webhook_deliveries(
    state: State,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Admin])?;
    let w: Window<(String, String)> = q.window(paging::DEFAULT)?;
    let (before, fetch) = (w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| crate::office::webhooks::log(c, before, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |d| (d.created_at.clone(), d.id.clone()))))
}

pub async fn get_policy(state: State, user: AuthUser) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let p = state.db.run(policy_store::load).await?;
    Ok(HttpResponse::Ok().json(p))
}

/// Replaces the policy (admin). Fields left out take their defaults.
pub async fn put_policy(
    state: State,
    user: AuthUser,
    body: super::input::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Admin])?;
    let policy: Policy = serde_json::from_value(body.into_inner())
        .map_err(|e| ApiError::bad_request(format!("invalid policy: {e}")))?;
    policy
        .validate()
        .map_err(|e| ApiError::unprocessable(format!("invalid policy: {e}")))?;
    let (p, uid) = (policy.clone(), user.0.id.clone());
    state
        .db
        .run(move |c| {
            transaction(c, |c| {
                policy_store::save(c, &p, &uid)?;
                audit::record(
                    c,
                    Entry {
                        action: Action::PolicyChanged,
                        actor_user_id: Some(&uid),
                        subject: None,
                        detail: serde_json::to_value(&p).unwrap_or_default(),
                        ip: None,
                    },
                )
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(policy))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ContactBody {
    #[schema(value_type = ContactChannel)]
    channel: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    note: String,
}

/// How the customer was contacted (`contacts::CHANNELS`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ContactChannel {
    Phone,
    Sms,
    Email,
    Visit,
    Other,
}

/// `POST /tickets/{doc_id}/contacts`: the customer was contacted now (the
/// office, or the technician the ticket is assigned to). The ticket's SLA
/// is evaluated at once: with `respond_on: first_contact` this answers it.
pub async fn record_contact(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<ContactBody>,
) -> Result<HttpResponse, ApiError> {
    let doc = parse_doc(&path.into_inner())?;
    // Office roles and the assigned technician: whoever may read it fully.
    check_can_read(&state, &user.0, doc).await?;
    let b = body.into_inner();
    if !contacts::CHANNELS.contains(&b.channel.as_str()) {
        return Err(ApiError::bad_request(format!(
            "`channel` is one of {}",
            contacts::CHANNELS.join(", ")
        )));
    }
    crate::api::input::text("note", &b.note, crate::api::input::MAX_TEXT)?;
    let (key, uid, now, webhook) = (
        doc.to_string(),
        user.0.id.clone(),
        state.service_now(),
        state.webhook,
    );
    let made = state
        .db
        .run(move |c| {
            if crate::history::get_ticket(c, &key)?.is_none() {
                return Ok(None);
            }
            let made = transaction(c, |c| {
                let made = contacts::record(c, &key, &uid, &b.channel, &b.note, now)?;
                audit::record(
                    c,
                    Entry {
                        action: Action::TicketUpdated,
                        actor_user_id: Some(&uid),
                        subject: Some(&key),
                        detail: serde_json::json!({ "contact": made.id, "channel": made.channel }),
                        ip: None,
                    },
                )?;
                Ok::<_, crate::db::DbError>(made)
            })?;
            sla_watch::sweep(c, Some(vec![key.clone()]), now, webhook)?;
            Ok(Some(made))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such ticket"))?;
    Ok(HttpResponse::Created().json(made))
}

/// `GET /tickets/{doc_id}/contacts`, oldest first.
pub async fn list_contacts(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let doc = parse_doc(&path.into_inner())?;
    let w: Window<(String, String)> = q.window(paging::DEFAULT)?;
    check_can_read(&state, &user.0, doc).await?;
    let (key, after, fetch) = (doc.to_string(), w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| contacts::list(c, &key, after, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |r| (r.at.clone(), r.id.clone()))))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct StatesQuery {
    /// Ticket ids (or automerge URLs), comma-separated, at most 200.
    #[param(pattern = r"^[1-9A-HJ-NP-Za-km-z:,]*$", max_length = 8000)]
    ids: String,
}

/// The longest `ids` accepted (the documented `max_length`).
const MAX_IDS_TEXT: usize = 8_000;

/// The most tickets one `GET /sla/states` reads.
const MAX_STATES: usize = 200;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StoredStates {
    /// One per ticket that has a stored state, by ticket id.
    pub items: Vec<sla_watch::StoredSla>,
}

/// Stored SLA states of many tickets at once (office roles): one request
/// for a board of tickets instead of one per ticket.
pub async fn states(
    state: State,
    user: AuthUser,
    q: web::Query<StatesQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    // Exactly the documented pattern: bs58 letters, ':' (automerge URLs), ','.
    let allowed = |b: u8| matches!(b, b'1'..=b'9' | b'A'..=b'H' | b'J'..=b'N' | b'P'..=b'Z' | b'a'..=b'k' | b'm'..=b'z' | b':' | b',');
    if q.ids.len() > MAX_IDS_TEXT || !q.ids.bytes().all(allowed) {
        return Err(ApiError::unprocessable(format!(
            "`ids` is at most {MAX_IDS_TEXT} characters of ticket ids and commas"
        )));
    }
    // A text that is no ticket id names no ticket: it has no state (as an
    // unknown ticket has none), rather than failing the whole board.
    let ids: Vec<String> = q
        .ids
        .split(',')
        .map(str::trim)
        .filter_map(|s| fieldsync_shared::DocumentId::parse_url_or_id(s).ok())
        .map(|d| d.to_string())
        .collect();
    if ids.len() > MAX_STATES {
        return Err(ApiError::unprocessable(format!(
            "at most {MAX_STATES} ids per request"
        )));
    }
    let items = state.db.run(move |c| sla_watch::stored(c, &ids)).await?;
    Ok(HttpResponse::Ok().json(StoredStates { items }))
}
