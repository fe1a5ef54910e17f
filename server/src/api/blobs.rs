//! `PUT/GET /api/v1/blobs/{sha256}`: attachments (photos, signatures).
//! Upload is content-addressed and idempotent; download follows the share
//! policy of a ticket that references the blob.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use fieldsync_shared::{ticket, DocumentId};
use futures_util::StreamExt;
use serde::Deserialize;

use super::auth::AuthUser;
use super::{require_role, ApiError, State};
use crate::blobs::BlobError;
use crate::sharing::{self, DocAccess};
use crate::storage;

/// Roles that write attachments into tickets.
const UPLOADERS: &[Role] = &[Role::Technician, Role::Dispatcher, Role::Admin];

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::BadName | BlobError::HashMismatch { .. } => {
                ApiError::bad_request(e.to_string())
            }
            BlobError::Io(io) => ApiError::internal(format!("blob storage failed: {io}")),
        }
    }
}

pub async fn put(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, UPLOADERS)?;
    let name = path.into_inner();
    let max = state.blobs.max_bytes;
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("blobs are limited to {max} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let store = state.blobs.clone();
    let created = web::block(move || store.put(&name, &bytes))
        .await
        .map_err(ApiError::internal)??;
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .finish())
}

#[derive(Deserialize)]
pub struct GetQuery {
    /// The ticket (document id or automerge URL) that references the blob.
    doc: Option<String>,
}

pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    q: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let doc = q.into_inner().doc.ok_or_else(|| {
        ApiError::bad_request("pass ?doc=<ticket document id> that references this blob")
    })?;
    let doc = DocumentId::parse_url_or_id(&doc)
        .map_err(|e| ApiError::bad_request(format!("bad document id: {e}")))?;
    let key = doc.to_string();
    let (stored, assignment) = state
        .db
        .run(move |c| Ok((storage::load(c, &key)?, sharing::load_assignment(c, &key)?)))
        .await?;
    let not_found = || ApiError::not_found("no such blob for this ticket");
    let access = sharing::doc_access(user.0.role, &user.0.id, !stored.is_empty(), &assignment);
    if stored.is_empty() || access != DocAccess::Full {
        return Err(not_found());
    }
    if !ticket::referenced_blobs(&stored.materialize()?).contains(&name) {
        return Err(not_found());
    }
    let store = state.blobs.clone();
    let bytes = web::block(move || store.get(&name))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bytes))
}
