//! Back-office reconciliation over REST (issue 11 §1): the queue with its
//! checks, approve and dispute, exports of reconciled jobs. Thin: parse,
//! authorise (`office::may`, the one table of who may do what), call
//! `office`, serialise. Decisions are server edits of the ticket document,
//! through its actor like every dispatcher edit.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use fieldsync_shared::status::{self, Status};
use fieldsync_shared::ticket;
use fieldsync_shared::DocumentId;
use serde::Deserialize;

use super::auth::AuthUser;
use super::paging::{self, Window};
use super::tickets::parse_doc;
use super::{input, ApiError, State};
use crate::audit::{self, Action, Entry};
use crate::auth::accounts::User;
use crate::office::checks::{Check, Level};
use crate::office::export::{self, ExportRow, Format};
use crate::office::reconciliation::{self as recon, DecisionRow, DocDecision, Review};
use crate::office::{may, Act};
use crate::storage;
use crate::sync::hub::{Hub, ServerEditFn};

type HubData = web::Data<Arc<Hub>>;

fn require(user: &User, act: Act) -> Result<(), ApiError> {
    if may(user.role, act) {
        return Ok(());
    }
    let what = match act {
        Act::Read => "read the reconciliation queue or exports",
        Act::ReadTicket => "read a ticket's reconciliation",
        Act::Decide => "reconcile or dispute tickets",
        Act::Export => "export reconciled jobs",
        Act::Catalogue => "change the parts catalogue",
    };
    Err(ApiError::forbidden(format!(
        "role `{}` may not {what}",
        user.role
    )))
}

/// One page of the reconciliation queue, in the shape of every list
/// (`items`, `next_cursor`); `count` and `blocking` are of this page (how
/// many tickets, how many a check blocks).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Queue {
    pub items: Vec<Review>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub count: usize,
    pub blocking: usize,
}

/// One decision with the checks it was made on.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Decision {
    pub id: String,
    /// `reconciled` or `disputed`.
    pub decision: String,
    pub reason: String,
    /// Approved although a check was a problem.
    #[serde(rename = "override")]
    pub override_problems: bool,
    /// The deciding user's id.
    pub by: String,
    pub at: String,
    /// The checks as they were then.
    #[schema(value_type = Vec<Check>)]
    pub checks: serde_json::Value,
}

/// A ticket's reconciliation now.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TicketReconciliation {
    pub document_id: String,
    pub status: String,
    /// The latest decision as the ticket document carries it (`state`,
    /// `reason`, `by`, `by_username`, `at`, `override`); null before any.
    #[schema(value_type = Option<Object>)]
    pub reconciliation: Option<serde_json::Value>,
    pub decisions: Vec<Decision>,
    pub review: Review,
    pub quarantined_edits: Vec<storage::QuarantineRow>,
}

/// A decision just made.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Decided {
    pub document_id: String,
    pub status: String,
    pub decision: Decision,
}

/// What an export contains (not its bytes: see `content`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ExportInfo {
    pub id: String,
    pub from: String,
    pub to: String,
    pub format: String,
    pub created_by: String,
    pub created_at: String,
    pub job_count: i64,
    pub line_count: i64,
    pub content_sha256: String,
    pub jobs: Vec<export::Job>,
    /// Where its bytes are.
    pub content: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SerialRequired {
    pub part_no: String,
    pub serial_required: bool,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct QueueQuery {
    /// `signed_off` (default: waiting for reconciliation) or `disputed`.
    #[param(inline, value_type = Option<QueueStatus>)]
    status: Option<String>,
    /// Page size, oldest completion first (default 100, at most 500).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum QueueStatus {
    SignedOff,
    Disputed,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// `GET /reconciliation/queue`: signed-off tickets with their checks.
pub async fn queue(
    state: State,
    user: AuthUser,
    q: web::Query<QueueQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Read)?;
    let QueueQuery {
        status,
        limit,
        cursor,
    } = q.into_inner();
    let status = status.unwrap_or_else(|| "signed_off".into());
    if status != "signed_off" && status != "disputed" {
        return Err(ApiError::bad_request(
            "`status` must be signed_off (waiting) or disputed",
        ));
    }
    let w: Window<(String, String)> = Window::new(
        limit,
        cursor.as_deref(),
        paging::Limits {
            default: 100,
            max: 500,
        },
    )?;
    let (after, limit) = (w.after.clone(), w.limit);
    let store = state.blobs.clone();
    let (items, next) = state
        .db
        .run(move |c| recon::queue(c, &store, &status, after, limit))
        .await?;
    let page = paging::Page::continuing(items, next);
    let blocking = page.items.iter().filter(|i| i.blocking).count();
    Ok(HttpResponse::Ok().json(Queue {
        count: page.items.len(),
        blocking,
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// The checks of one ticket now.
async fn review_of(state: &State, doc: DocumentId) -> Result<Review, ApiError> {
    let (store, key) = (state.blobs.clone(), doc.to_string());
    state
        .db
        .run(move |c| {
            let Some(facts) = recon::load_facts(c, &key, Some(&store))? else {
                return Ok(None);
            };
            let catalogue = recon::catalogue(c)?;
            let names = recon::usernames(c)?;
            recon::review(c, &facts, &catalogue, &names).map(Some)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such ticket"))
}

/// `GET /tickets/{doc_id}/reconciliation`: the latest decision as the
/// ticket document carries it (what the dispatcher acts on), every decision
/// with the checks it was made on, the checks now, and edits quarantined on
/// the ticket (after reconciliation: devices that wrote to a locked ticket).
pub async fn ticket_state(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::ReadTicket)?;
    let doc = parse_doc(&path.into_inner())?;
    let review = review_of(&state, doc).await?;
    let key = doc.to_string();
    let (current, decisions, mut quarantined) = state
        .db
        .run(move |c| {
            let stored = storage::load(c, &key)?.materialize()?;
            let current = recon::read_from_doc(&stored);
            let decisions = recon::decisions(c, &key)?;
            let quarantined = storage::list_quarantined(c, Some(&key), None, 200)?;
            Ok((current, decisions, quarantined))
        })
        .await?;
    for r in &mut quarantined {
        if let Some(client) = r.device_id.strip_prefix(&format!("{}:", r.user_id)) {
            r.device_id = client.to_string();
        }
    }
    Ok(HttpResponse::Ok().json(TicketReconciliation {
        document_id: doc.to_string(),
        status: review.status.clone(),
        reconciliation: current,
        decisions: decisions.iter().map(decision).collect(),
        review,
        quarantined_edits: quarantined,
    }))
}

fn decision(d: &DecisionRow) -> Decision {
    Decision {
        id: d.id.clone(),
        decision: d.decision.clone(),
        reason: d.reason.clone(),
        override_problems: d.override_problems,
        by: d.by_user.clone(),
        at: d.at.clone(),
        checks: serde_json::from_str(&d.checks).unwrap_or_default(),
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct ApproveBody {
    /// Approve although a check is a problem (needs `note`).
    #[serde(default, rename = "override")]
    override_problems: bool,
    #[serde(default)]
    #[schema(max_length = 4000)]
    note: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct DisputeBody {
    #[schema(pattern = r"\S", max_length = 4000)]
    reason: String,
}

fn problems(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.level == Level::Problem)
        .map(|c| format!("{}: {}", c.name, c.message))
        .collect()
}

/// Applies a decision to the ticket document (status + `reconciliation`
/// map + a line in the notes), then records it and audits it.
#[allow(clippy::too_many_arguments)]
async fn decide(
    state: &State,
    hub: &Arc<Hub>,
    user: &User,
    doc: DocumentId,
    review: &Review,
    to: Status,
    reason: String,
    override_problems: bool,
) -> Result<DecisionRow, ApiError> {
    let at = crate::db::now_rfc3339();
    let decision = DocDecision {
        state: to.as_str(),
        reason: reason.clone(),
        by: user.id.clone(),
        by_username: user.username.clone(),
        at: at.clone(),
        override_problems,
    };
    // The checks were made on this content: if a device changes the visits
    // or parts before the edit lands, the clerk must look again.
    let checked = review.content_sha256.clone();
    let (role, who) = (user.role, user.username.clone());
    let from_allowed: &'static [Status] = match to {
        Status::Reconciled => &[Status::SignedOff, Status::Disputed],
        _ => &[Status::SignedOff],
    };
    let edit: ServerEditFn = Box::new(move |tx| {
        let now = ticket::read_header(&*tx).map_err(|e| e.to_string())?.status;
        let from: Status = now.parse().map_err(|e| format!("{e}"))?;
        if !from_allowed.contains(&from) {
            return Err(format!(
                "the ticket is {from}; only {} tickets can be {to}",
                from_allowed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        status::check_transition(role, from, to).map_err(|e| e.to_string())?;
        if let Some(checked) = &checked {
            if &ticket::current_content_sha256(&*tx) != checked {
                return Err(
                    "the ticket's visits or parts changed while it was being checked; review it again"
                        .into(),
                );
            }
        }
        ticket::set_status(tx, to).map_err(|e| e.to_string())?;
        recon::write_to_doc(tx, &decision)?;
        if !decision.reason.is_empty() {
            let line = format!("\n[{to} by {who}] {}", decision.reason);
            ticket::append_note(tx, &line).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    hub.server_edit(doc, &user.id, user.role, false, edit)
        .await?;
    let row = DecisionRow {
        id: uuid::Uuid::now_v7().to_string(),
        doc_id: doc.to_string(),
        ticket_no: review.ticket_no.clone(),
        decision: to.as_str().to_string(),
        reason,
        override_problems,
        checks: serde_json::to_string(&review.checks).unwrap_or_else(|_| "[]".into()),
        by_user: user.id.clone(),
        at,
    };
    let (stored, uid) = (row.clone(), user.id.clone());
    let action = if to == Status::Reconciled {
        Action::TicketReconciled
    } else {
        Action::TicketDisputed
    };
    state
        .db
        .run(move |c| {
            crate::db::transaction(c, |c| {
                recon::record_decision(c, &stored)?;
                audit::record(
                    c,
                    Entry {
                        action,
                        actor_user_id: Some(&uid),
                        subject: Some(&stored.doc_id),
                        detail: serde_json::json!({
                            "ticket_no": stored.ticket_no,
                            "decision_id": stored.id,
                            "reason": stored.reason,
                            "override": stored.override_problems,
                        }),
                        ip: None,
                    },
                )
            })
        })
        .await?;
    Ok(row)
}

/// `POST /tickets/{doc_id}/reconcile`: approve → `reconciled` (locked).
/// Refused (409 `checks_failed`) while a check is a problem, unless
/// `override: true` with a `note`.
pub async fn reconcile(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Decide)?;
    let doc = parse_doc(&path.into_inner())?;
    let ApproveBody {
        override_problems,
        note,
    } = input::optional_json(&body)?;
    input::text("note", &note, input::MAX_TEXT)?;
    let note = note.trim().to_string();
    if override_problems && note.is_empty() {
        return Err(ApiError::unprocessable(
            "`override` needs a `note` saying why the problems are accepted",
        ));
    }
    let review = review_of(&state, doc).await?;
    let problems = problems(&review.checks);
    if !problems.is_empty() && !override_problems {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "checks_failed",
            format!(
                "not reconciled: {}. Fix the ticket, dispute it, or approve with \"override\": true and a note",
                problems.join("; ")
            ),
        ));
    }
    let overridden = override_problems && !problems.is_empty();
    let row = decide(
        &state,
        &hub,
        &user.0,
        doc,
        &review,
        Status::Reconciled,
        note,
        overridden,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Decided {
        document_id: doc.to_string(),
        status: "reconciled".into(),
        decision: decision(&row),
    }))
}

/// `POST /tickets/{doc_id}/dispute`: back to the dispatcher with a reason
/// (in the ticket's `reconciliation` map and notes).
pub async fn dispute(
    state: State,
    hub: HubData,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<DisputeBody>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Decide)?;
    let doc = parse_doc(&path.into_inner())?;
    let reason = body.into_inner().reason;
    input::text("reason", &reason, input::MAX_TEXT)?;
    let reason = reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::bad_request("`reason` is required"));
    }
    let review = review_of(&state, doc).await?;
    let row = decide(
        &state,
        &hub,
        &user.0,
        doc,
        &review,
        Status::Disputed,
        reason,
        false,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Decided {
        document_id: doc.to_string(),
        status: "disputed".into(),
        decision: decision(&row),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// A date (2026-11-01) or an RFC 3339 time.
    #[param(format = Date)]
    from: String,
    /// A date (included) or an RFC 3339 time, after `from`.
    #[param(format = Date)]
    to: String,
    /// Default `csv`.
    #[param(inline, value_type = Option<ExportFormat>)]
    format: Option<String>,
}

fn content_response(row: &ExportRow) -> HttpResponse {
    let format = Format::parse(&row.format).unwrap_or(Format::Csv);
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header(("X-Export-Id", row.id.clone()))
        .insert_header(("X-Content-SHA256", row.content_sha256.clone()))
        .insert_header(("X-Export-Jobs", row.job_count.to_string()))
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"reconciled-{}.{}\"",
                row.id,
                format.as_str()
            ),
        ))
        .body(row.content.clone())
}

async fn audit_export(
    state: &State,
    user: &User,
    action: Action,
    row: &ExportRow,
) -> Result<(), ApiError> {
    let detail = serde_json::json!({
        "from": row.period_from, "to": row.period_to, "format": row.format,
        "jobs": row.job_count, "content_sha256": row.content_sha256,
    });
    super::tickets::audit_one(state, action, &user.id, row.id.clone(), detail).await
}

/// `GET /reconciliation/export?from=&to=&format=csv|jsonl`: a new, recorded
/// export of the jobs reconciled in the period (a date `to` includes that
/// day). The body is the file; `X-Export-Id` names the record.
pub async fn create_export(
    state: State,
    user: AuthUser,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Export)?;
    let ExportQuery { from, to, format } = q.into_inner();
    let parse = |v: &str, name: &str, end: bool| {
        export::bound(v, end).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{name}` must be a date like 2026-11-01 or an RFC 3339 time"
            ))
        })
    };
    let (from, to) = (parse(&from, "from", false)?, parse(&to, "to", true)?);
    if from >= to {
        return Err(ApiError::unprocessable("`to` must be after `from`"));
    }
    let format = Format::parse(format.as_deref().unwrap_or("csv"))
        .ok_or_else(|| ApiError::bad_request("`format` must be csv or jsonl"))?;
    let by = user.0.id.clone();
    let row = state
        .db
        .run(move |c| export::create(c, &from, &to, format, &by))
        .await?;
    audit_export(&state, &user.0, Action::ReconciliationExported, &row).await?;
    Ok(content_response(&row))
}

fn export_json(row: &ExportRow) -> ExportInfo {
    ExportInfo {
        id: row.id.clone(),
        from: row.period_from.clone(),
        to: row.period_to.clone(),
        format: row.format.clone(),
        created_by: row.created_by.clone(),
        created_at: row.created_at.clone(),
        job_count: row.job_count,
        line_count: row.line_count,
        content_sha256: row.content_sha256.clone(),
        jobs: row.jobs(),
        content: format!("/api/v1/reconciliation/exports/{}/content", row.id),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportsQuery {
    /// Page size, newest first (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

/// `GET /reconciliation/exports`: the exports made, newest first.
pub async fn list_exports(
    state: State,
    user: AuthUser,
    q: web::Query<ExportsQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Read)?;
    let q = q.into_inner();
    let w: Window<(String, String)> = Window::new(q.limit, q.cursor.as_deref(), paging::DEFAULT)?;
    let (before, fetch) = (w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| export::list(c, before, fetch))
        .await?;
    let out: Vec<ExportInfo> = rows.iter().map(export_json).collect();
    Ok(HttpResponse::Ok().json(w.page(out, |e| (e.created_at.clone(), e.id.clone()))))
}

async fn load_export(state: &State, id: String) -> Result<ExportRow, ApiError> {
    input::text("id", &id, input::MAX_ID)?;
    state
        .db
        .run(move |c| export::get(c, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("no such export"))
}

/// `GET /reconciliation/exports/{id}`: what an export contains (period,
/// who, when, its jobs, the content hash).
pub async fn get_export(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Read)?;
    let row = load_export(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(export_json(&row)))
}

/// `GET /reconciliation/exports/{id}/content`: the same bytes as when it
/// was made.
pub async fn export_content(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Read)?;
    let row = load_export(&state, path.into_inner()).await?;
    if !row.intact() {
        return Err(ApiError::internal(format!(
            "export {} no longer matches its recorded SHA-256",
            row.id
        )));
    }
    audit_export(
        &state,
        &user.0,
        Action::ReconciliationExportDownloaded,
        &row,
    )
    .await?;
    Ok(content_response(&row))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SerialRequiredBody {
    serial_required: bool,
}

/// `PUT /parts/{part_no}/serial-required`: whether fitting this part must
/// record its serial number (the `parts_serials` check).
pub async fn set_serial_required(
    state: State,
    user: AuthUser,
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<SerialRequiredBody>,
) -> Result<HttpResponse, ApiError> {
    require(&user.0, Act::Catalogue)?;
    let expect = super::preconditions::if_match(&req)?;
    let part_no = path.into_inner();
    input::text("part_no", &part_no, input::MAX_ID)?;
    let required = body.into_inner().serial_required;
    let (no, uid) = (part_no.clone(), user.0.id.clone());
    let version = state
        .db
        .run(move |c| {
            Ok(crate::db::transaction(c, |c| {
                let version = recon::set_serial_required(c, &no, required, expect.as_ref())?;
                audit::record(
                    c,
                    Entry {
                        action: Action::RecordChanged,
                        actor_user_id: Some(&uid),
                        subject: Some(&no),
                        detail: serde_json::json!({ "part_no": no, "serial_required": required }),
                        ip: None,
                    },
                )?;
                Ok::<_, crate::records::RecordError>(version)
            }))
        })
        .await??;
    Ok(super::preconditions::ok_with_etag(
        version,
        SerialRequired {
            part_no,
            serial_required: required,
        },
    ))
}
