//! Edits the server undid (write validation), for dispatchers and managers.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::paging::{self, Window};
use super::{require_role, ApiError, State};
use crate::storage;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct QuarantineQuery {
    /// Only this ticket's.
    doc_id: Option<String>,
    /// Page size, newest first (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

/// Who reads the edits write validation undid.
pub const READERS: &[Role] = &[
    Role::Dispatcher,
    Role::Supervisor,
    Role::Manager,
    Role::Admin,
];

pub async fn list(
    state: State,
    user: AuthUser,
    q: web::Query<QuarantineQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, READERS)?;
    let QuarantineQuery {
        doc_id,
        limit,
        cursor,
    } = q.into_inner();
    let w: Window<(i64, String)> = Window::new(limit, cursor.as_deref(), paging::DEFAULT)?;
    let (before, fetch) = (w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| storage::list_quarantined(c, doc_id.as_deref(), before, fetch))
        .await?;
    let mut page = w.page(rows, |r| (r.at, r.id.clone()));
    // `device_id` is the id the device chose (as in `/sync?device=`), not the
    // per-user key devices are stored under (see auth::devices).
    for r in &mut page.items {
        if let Some(client) = r.device_id.strip_prefix(&format!("{}:", r.user_id)) {
            r.device_id = client.to_string();
        }
    }
    Ok(HttpResponse::Ok().json(page))
}
