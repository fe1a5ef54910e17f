//! Admin API: accounts and the audit log.

use actix_web::{web, HttpRequest, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::paging::{self, PageQuery, Window};
use super::preconditions;
use super::{input, require_role, ApiError, State};
use crate::audit::{self, Action};
use crate::auth::accounts::{self, AccountError};
use crate::auth::sessions;

/// Who manages accounts and reads the audit log.
pub const ADMINS: &[Role] = &[Role::Admin];

pub async fn list(
    state: State,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, ADMINS)?;
    let w: Window<String> = q.window(paging::DEFAULT)?;
    let (after, fetch) = (w.after.clone(), w.fetch());
    let users = state
        .db
        .run(move |c| accounts::list_after(c, after.as_deref(), fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(users, |u| u.username.clone())))
}

/// One account, with its ETag (admin, or your own).
pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let username = path.into_inner();
    if user.0.username != username {
        require_role(&user.0, ADMINS)?;
    }
    let name = username.clone();
    let found = state
        .db
        .run(move |c| Ok(accounts::find_for_login(c, &name)?.map(|(u, _)| u)))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no such user `{username}`")))?;
    Ok(preconditions::ok_with_etag(found.version, found))
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
    require_role(&user.0, ADMINS)?;
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
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, ADMINS)?;
    let expect = preconditions::if_match(&req)?;
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
                |c| accounts::set_disabled(c, &username, true, expect.as_ref()),
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
    Ok(preconditions::ok_with_etag(updated.version, updated))
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
    req: HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<NewPassword>,
) -> Result<HttpResponse, ApiError> {
    let expect = preconditions::if_match(&req)?;
    let username = path.into_inner();
    if user.0.username != username {
        require_role(&user.0, ADMINS)?;
    }
    let actor = user.0.id;
    let hash = state
        .passwords
        .reserve()?
        .hash(body.into_inner().password)
        .await
        .map_err(AccountError::from)?;
    let changed = state
        .db
        .run(move |c| {
            Ok(accounts::audited(
                c,
                Action::PasswordChanged,
                Some(&actor),
                &username,
                serde_json::json!({}),
                |c| sessions::change_password(c, &username, &hash, expect.as_ref()),
            ))
        })
        .await??;
    Ok(HttpResponse::NoContent()
        .insert_header((
            actix_web::http::header::ETAG,
            preconditions::etag(changed.version),
        ))
        .finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only this action (e.g. `login_failed`, `user_created`).
    action: Option<String>,
    /// Page size, newest first (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

pub async fn audit(
    state: State,
    user: AuthUser,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, ADMINS)?;
    let AuditQuery {
        action,
        limit,
        cursor,
    } = q.into_inner();
    let w: Window<i64> = Window::new(limit, cursor.as_deref(), paging::DEFAULT)?;
    let (after, fetch) = (w.after, w.fetch());
    let rows = state
        .db
        .run(move |c| audit::list(c, action.as_deref(), after, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |r| r.id)))
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
    req: HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<NewRole>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, ADMINS)?;
    let expect = preconditions::if_match(&req)?;
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
                |c| accounts::set_role(c, &username, role, expect.as_ref()),
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
    Ok(preconditions::ok_with_etag(updated.version, updated))
}

/// The most accounts `GET /people` lists.
const MAX_PEOPLE: i64 = 5000;

/// Who an id on a ticket is: what office roles may know of any account.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Person {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct People {
    pub items: Vec<Person>,
}

/// Every account's name and role (office roles), by username: the names
/// behind user ids in ticket histories, and the technicians a dispatcher
/// can assign (those not disabled).
pub async fn people(state: State, user: AuthUser) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, super::OFFICE)?;
    let users = state
        .db
        .run(|c| accounts::list_after(c, None, MAX_PEOPLE))
        .await?;
    let items = users
        .into_iter()
        .map(|u| Person {
            id: u.id,
            username: u.username,
            display_name: u.display_name,
            role: u.role,
            disabled: u.disabled,
        })
        .collect();
    Ok(HttpResponse::Ok().json(People { items }))
}
