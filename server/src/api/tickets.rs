//! Ticket assignment (the input of the share policy).

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
use crate::sync::hub::{DocCommand, Hub};

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

pub async fn assign(
    state: State,
    hub: web::Data<Arc<Hub>>,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Json<AssignBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, ASSIGNERS)?;
    let doc = parse_doc(&path.into_inner())?;
    let username = body.into_inner().technician;
    let actor = user.0.id;
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
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "document_id": doc.to_string(),
        "url": doc.url(),
        "technician_id": assignment.current,
    })))
}
