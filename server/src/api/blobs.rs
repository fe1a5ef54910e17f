//! `PUT/GET /api/v1/blobs/{sha256}`: attachments (photos, signatures).
//! Upload is content-addressed and idempotent, within a daily quota per user;
//! download goes through a ticket the caller may see that references the
//! blob and had it attached by someone allowed to see it (`blobs::access`).

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use fieldsync_shared::{ticket, DocumentId};
use futures_util::StreamExt;
use serde::Deserialize;

use super::auth::AuthUser;
use super::{require_role, ApiError, State};
use crate::blobs::{access, quota, valid_name, BlobError};
use crate::db::now_millis;
use crate::sharing::{self, DocAccess};
use crate::storage;

/// Roles that write attachments into tickets.
const UPLOADERS: &[Role] = &[Role::Technician, Role::Dispatcher, Role::Admin];

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::BadName => ApiError::bad_request(e.to_string()),
            // The bytes are well formed; they are just not the named blob.
            BlobError::HashMismatch { .. } => ApiError::unprocessable(e.to_string()),
            BlobError::Io(io) => ApiError::internal(format!("blob storage failed: {io}")),
        }
    }
}

impl From<quota::Exceeded> for ApiError {
    fn from(e: quota::Exceeded) -> Self {
        ApiError::retry_after(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "blob_quota_exceeded",
            e.to_string(),
            e.retry_after_secs,
        )
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
    if !valid_name(&name) {
        return Err(BlobError::BadName.into());
    }
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
    let len = bytes.len() as u64;
    // A blob stored already costs nothing (re-sending it only proves possession).
    if store.daily_quota_bytes > 0 && !store.exists(&name) {
        let (user_id, now) = (user.0.id.clone(), now_millis());
        let usage = state
            .db
            .run(move |c| quota::usage(c, &user_id, now))
            .await?;
        quota::check(store.daily_quota_bytes, usage, len, now)?;
    }
    let key = name.clone();
    let created = web::block(move || store.put(&key, &bytes))
        .await
        .map_err(ApiError::internal)??;
    let stored = if created { len } else { 0 };
    let user_id = user.0.id.clone();
    state
        .db
        .run(move |c| access::record_upload(c, &name, &user_id, stored))
        .await?;
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct GetQuery {
    /// The ticket (document id or automerge URL) that references the blob.
    doc: String,
}

pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    q: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let doc = q.into_inner().doc;
    // Not a ticket id: no ticket references the blob (as for an unknown one).
    let doc = DocumentId::parse_url_or_id(&doc)
        .map_err(|e| ApiError::not_found(format!("no such ticket (bad document id: {e})")))?;
    let (key, blob) = (doc.to_string(), name.clone());
    let (stored, assignment, linked) = state
        .db
        .run(move |c| {
            Ok((
                storage::load(c, &key)?,
                sharing::load_assignment(c, &key)?,
                access::may_serve(c, &key, &blob)?,
            ))
        })
        .await?;
    let not_found = || ApiError::not_found("no such blob for this ticket");
    let access = sharing::doc_access(user.0.role, &user.0.id, !stored.is_empty(), &assignment);
    if stored.is_empty() || access != DocAccess::Full {
        return Err(not_found());
    }
    // Both: the ticket references it now, and someone allowed to see it
    // attached it (a hash copied from another ticket is not enough).
    if !linked || !ticket::referenced_blobs(&stored.materialize()?).contains(&name) {
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
