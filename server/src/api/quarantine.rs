//! Edits the server undid (write validation), for dispatchers and managers.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::{require_role, ApiError, State};
use crate::storage;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct QuarantineQuery {
    /// Only this ticket's.
    doc_id: Option<String>,
    /// At most this many, newest first (default 100; 1 to 1000).
    limit: Option<i64>,
}

pub async fn list(
    state: State,
    user: AuthUser,
    q: web::Query<QuarantineQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(
        &user.0,
        &[
            Role::Dispatcher,
            Role::Supervisor,
            Role::Manager,
            Role::Admin,
        ],
    )?;
    let QuarantineQuery { doc_id, limit } = q.into_inner();
    let limit = limit.unwrap_or(100).clamp(1, 1000);
    let mut rows = state
        .db
        .run(move |c| storage::list_quarantined(c, doc_id.as_deref(), limit))
        .await?;
    // `device_id` is the id the device chose (as in `/sync?device=`), not the
    // per-user key devices are stored under (see auth::devices).
    for r in &mut rows {
        if let Some(client) = r.device_id.strip_prefix(&format!("{}:", r.user_id)) {
            r.device_id = client.to_string();
        }
    }
    Ok(HttpResponse::Ok().json(rows))
}
