//! Admin API: accounts and the audit log.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::{input, require_role, ApiError, State};
use crate::audit::{self, Action};
use crate::auth::accounts::{self, AccountError};
use crate::auth::sessions;

pub async fn list(state: State, user: AuthUser) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Admin])?;
    let users = state.db.run(accounts::list).await?;
    Ok(HttpResponse::Ok().json(users))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    username: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    display_name: String,
    #[schema(value_type = Role)]
    role: String,
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

pub async fn create(
    state: State,
    user: AuthUser,
    body: super::input::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Admin])?;
    let NewUser {
        username,
        display_name,
        role,
        password,
    } = body.into_inner();
    let role: Role = role
        .parse()
        .map_err(|e: fieldsync_shared::roles::UnknownRole| ApiError::bad_request(e.to_string()))?;
    input::text("display_name", &display_name, input::MAX_NAME)?;
    if !accounts::valid_username(&username) {
        return Err(AccountError::BadUsername.into());
    }
    let hash = state
        .passwords
        .reserve()?
        .hash(password)
        .await
        .map_err(AccountError::from)?;
    let actor = user.0.id;
    let detail = serde_json::json!({ "role": role });
    let created = state
        .db
        .run(move |c| {
            Ok(accounts::audited(
                c,
                Action::UserCreated,
                Some(&actor),
                &username,
                detail,
                |c| accounts::create(c, &username, &display_name, role, &hash),
            ))
        })
        .await??;
    Ok(HttpResponse::Created().json(created))
}

/// Disables an account; its live sync connections on this instance close at
/// once (other instances: within ~2 s, by the revocation watcher).
pub async fn disable(
    state: State,
    hub: web::Data<std::sync::Arc<crate::sync::hub::Hub>>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Admin])?;
    let username = path.into_inner();
    let actor = user.0.id;
    let (updated, devices) = state
        .db
        .run(move |c| {
            let updated = match accounts::audited(
                c,
                Action::UserDisabled,
                Some(&actor),
                &username,
                serde_json::json!({}),
                |c| accounts::set_disabled(c, &username, true),
            ) {
                Ok(u) => u,
                Err(e) => return Ok(Err(e)),
            };
            let devices = crate::auth::devices::list(c, Some(&updated.id))?;
            Ok(Ok((updated, devices)))
        })
        .await??;
    for d in devices {
        hub.close_device(&d.id, "this account is disabled");
    }
    Ok(HttpResponse::Ok().json(updated))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewPassword {
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// Admins may set anyone's password; users their own. Every token and live
/// sync session of the user ends (`sessions::change_password`), the
/// caller's own included: they log in again with the new password.
pub async fn set_password(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<NewPassword>,
) -> Result<HttpResponse, ApiError> {
    let username = path.into_inner();
    if user.0.username != username {
        require_role(&user.0, &[Role::Admin])?;
    }
    let actor = user.0.id;
    let hash = state
        .passwords
        .reserve()?
        .hash(body.into_inner().password)
        .await
        .map_err(AccountError::from)?;
    state
        .db
        .run(move |c| {
            Ok(accounts::audited(
                c,
                Action::PasswordChanged,
                Some(&actor),
                &username,
                serde_json::json!({}),
                |c| sessions::change_password(c, &username, &hash),
            ))
        })
        .await??;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only this action (e.g. `login_failed`, `user_created`).
    action: Option<String>,
    /// At most this many, newest first (default 100; 1 to 1000).
    limit: Option<i64>,
}

pub async fn audit(
    state: State,
    user: AuthUser,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Admin])?;
    let AuditQuery { action, limit } = q.into_inner();
    let limit = limit.unwrap_or(100).clamp(1, 1000);
    let rows = state
        .db
        .run(move |c| audit::list(c, action.as_deref(), limit))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewRole {
    #[schema(value_type = Role)]
    role: String,
}

/// Changes a role. The user's live sync sessions on this instance are closed
/// so the new permissions apply from the next connection on.
pub async fn set_role(
    state: State,
    hub: web::Data<std::sync::Arc<crate::sync::hub::Hub>>,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<NewRole>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, &[Role::Admin])?;
    let username = path.into_inner();
    let role: Role = body
        .into_inner()
        .role
        .parse()
        .map_err(|e: fieldsync_shared::roles::UnknownRole| ApiError::bad_request(e.to_string()))?;
    let actor = user.0.id;
    let detail = serde_json::json!({ "role": role });
    let (updated, devices) = state
        .db
        .run(move |c| {
            let updated = match accounts::audited(
                c,
                Action::RoleChanged,
                Some(&actor),
                &username,
                detail,
                |c| accounts::set_role(c, &username, role),
            ) {
                Ok(u) => u,
                Err(e) => return Ok(Err(e)),
            };
            let devices = crate::auth::devices::list(c, Some(&updated.id))?;
            Ok(Ok((updated, devices)))
        })
        .await??;
    for d in devices {
        hub.close_device(&d.id, "your role changed; reconnect");
    }
    Ok(HttpResponse::Ok().json(updated))
}
