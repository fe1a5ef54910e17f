//! Tickets: creation from an intake (the server writes the Automerge
//! document) and assignment (the input of the share policy).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use fieldsync_shared::DocumentId;
use serde::Deserialize;

use super::auth::AuthUser;
use super::{require_role, ApiError, State};
use crate::audit::{self, Action, Entry};
use crate::auth::accounts;
use crate::sharing;
use crate::storage::{DocWrite, NewChange};
use crate::sync::hub::{DocCommand, Hub};
use fieldsync_shared::ticket::{self, Intake};

/// Who may assign tickets (DESIGN.md: assignment is written by dispatchers and admins).
const ASSIGNERS: &[Role] = &[Role::Dispatcher, Role::Admin];

#[derive(Deserialize)]
pub struct AssignBody {
    /// Username of the technician.
    technician: String,
}

fn parse_doc(raw: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse_url_or_id(raw)
        .map_err(|e| ApiError::bad_request(format!("bad document id: {e}")))
}

/// Assigns `doc` to the technician `username` and tells the loaded document.
async fn assign_to(
    state: &State,
    hub: &Hub,
    actor: String,
    doc: DocumentId,
    username: String,
) -> Result<sharing::Assignment, ApiError> {
    let doc_key = doc.to_string();
    let assignment = state
        .db
        .run(move |c| {
            let tech = match accounts::find_for_login(c, &username)? {
                Some((u, _)) if u.role == Role::Technician && !u.disabled => u,
                Some(_) => {
                    return Ok(Err(ApiError::bad_request(format!(
                        "`{username}` is not an active technician"
                    ))))
                }
                None => {
                    return Ok(Err(ApiError::not_found(format!(
                        "no such user `{username}`"
                    ))))
                }
            };
            let a = sharing::assign(c, &doc_key, &tech.id, &actor)?;
            audit::record(
                c,
                Entry {
                    action: Action::TicketAssigned,
                    actor_user_id: Some(&actor),
                    subject: Some(&doc_key),
                    detail: serde_json::json!({ "technician": tech.username }),
                    ip: None,
                },
            )?;
            Ok(Ok(a))
        })
        .await??;
    // Live sessions of the previous technician stop receiving the ticket now.
    hub.dispatch_if_loaded(doc, DocCommand::AccessChanged(assignment.clone()))
        .await;
    Ok(assignment)
}

pub async fn assign(
    state: State,
    hub: web::Data<Arc<Hub>>,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Json<AssignBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, ASSIGNERS)?;
    let doc = parse_doc(&path.into_inner())?;
    let assignment = assign_to(&state, &hub, user.0.id, doc, body.into_inner().technician).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "document_id": doc.to_string(),
        "url": doc.url(),
        "technician_id": assignment.current,
    })))
}

#[derive(Deserialize)]
pub struct NewTicket {
    #[serde(default)]
    ticket_no: String,
    customer_name: String,
    #[serde(default)]
    customer_phone: String,
    #[serde(default)]
    customer_address: String,
    product: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    serial: String,
    fault_description: String,
    #[serde(default)]
    occurred_at: String,
    #[serde(default)]
    reported_via: String,
    priority: String,
    /// Assign at once to this technician (username).
    technician: Option<String>,
}

/// Creates a ticket: the server writes the Automerge document (durably, before
/// answering) and returns its `automerge:` URL for devices to sync.
pub async fn create(
    state: State,
    hub: web::Data<Arc<Hub>>,
    user: AuthUser,
    body: web::Json<NewTicket>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, ASSIGNERS)?;
    let b = body.into_inner();
    if !["A", "B", "C"].contains(&b.priority.as_str()) {
        return Err(ApiError::bad_request("priority must be A, B or C"));
    }
    for (name, v) in [
        ("customer_name", &b.customer_name),
        ("product", &b.product),
        ("fault_description", &b.fault_description),
    ] {
        if v.trim().is_empty() {
            return Err(ApiError::bad_request(format!("`{name}` is required")));
        }
    }
    let doc_id = DocumentId::random();
    let ticket_no = if b.ticket_no.trim().is_empty() {
        format!(
            "T-{}-{}",
            chrono::Utc::now().format("%Y%m%d"),
            &doc_id.to_string()[..6]
        )
    } else {
        b.ticket_no.trim().to_string()
    };
    let intake = Intake {
        ticket_no: ticket_no.clone(),
        customer_name: b.customer_name,
        customer_phone: b.customer_phone,
        customer_address: b.customer_address,
        product: b.product,
        model: b.model,
        serial: b.serial,
        fault_description: b.fault_description,
        occurred_at: b.occurred_at,
        reported_via: b.reported_via,
        priority: b.priority,
    };
    let mut doc = automerge::AutoCommit::new();
    ticket::create(&mut doc, &intake).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let changes = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| NewChange {
            hash: c.hash(),
            bytes: c.raw_bytes().to_vec(),
        })
        .collect();
    let write = DocWrite {
        doc_id: doc_id.to_string(),
        changes,
        quarantined: Vec::new(),
    };
    hub.committer.commit(write).await.map_err(|e| {
        tracing::error!(error = %e, "could not store a new ticket");
        ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "could not store the ticket; retry",
        )
    })?;
    let actor = user.0.id.clone();
    let (doc_key, no) = (doc_id.to_string(), ticket_no.clone());
    state
        .db
        .run(move |c| {
            audit::record(
                c,
                Entry {
                    action: Action::TicketCreated,
                    actor_user_id: Some(&actor),
                    subject: Some(&doc_key),
                    detail: serde_json::json!({ "ticket_no": no }),
                    ip: None,
                },
            )
        })
        .await?;
    let technician = match b.technician {
        Some(t) => assign_to(&state, &hub, user.0.id, doc_id, t).await?.current,
        None => None,
    };
    Ok(HttpResponse::Created().json(serde_json::json!({
        "document_id": doc_id.to_string(),
        "url": doc_id.url(),
        "ticket_no": ticket_no,
        "technician_id": technician,
    })))
}
