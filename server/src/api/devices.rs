//! Devices: a user registers their own; admins and dispatchers list and revoke.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::paging::{self, PageQuery, Window};
use super::{require_role, ApiError, State};
use crate::audit::{self, Action, Entry};
use crate::auth::devices::{self, DeviceError};
use crate::db::transaction;

/// Who may see every device and revoke any.
pub const DEVICE_ADMINS: &[Role] = &[Role::Admin, Role::Dispatcher];

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewDevice {
    /// A stable id the app generates once (e.g. a UUID); the server makes one if absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    platform: String,
}

pub async fn register(
    state: State,
    user: AuthUser,
    body: super::input::Json<NewDevice>,
) -> Result<HttpResponse, ApiError> {
    let NewDevice { id, name, platform } = body.into_inner();
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let user = user.0;
    let (device, new) = state
        .db
        .run(move |c| {
            Ok(transaction(c, |c| {
                let (d, new) = devices::register_or_touch(c, &user, &id, &name, &platform)?;
                if new {
                    audit::record(
                        c,
                        Entry {
                            action: Action::DeviceRegistered,
                            actor_user_id: Some(&user.id),
                            subject: Some(&d.id),
                            detail: serde_json::json!({ "name": d.name, "platform": d.platform }),
                            ip: None,
                        },
                    )?;
                }
                Ok::<_, DeviceError>((d, new))
            }))
        })
        .await??;
    Ok(if new {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(device))
}

pub async fn list(
    state: State,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let own = (!DEVICE_ADMINS.contains(&user.0.role)).then(|| user.0.id.clone());
    let w: Window<(i64, String)> = q.window(paging::DEFAULT)?;
    let (after, fetch) = (w.after.clone(), w.fetch());
    let list = state
        .db
        .run(move |c| devices::list_after(c, own.as_deref(), after, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(list, |d| (d.created_at, d.id.clone()))))
}

/// Revocation is permanent; live sync sessions of the device close within
/// seconds (see app::close_blocked_devices).
/// Revokes a device; its live sync connections on this instance close at
/// once (other instances: within ~2 s, by the revocation watcher).
pub async fn revoke(
    state: State,
    hub: web::Data<std::sync::Arc<crate::sync::hub::Hub>>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DEVICE_ADMINS)?;
    let id = path.into_inner();
    let actor = user.0.id;
    let device = state
        .db
        .run(move |c| {
            Ok(transaction(c, |c| {
                let d = devices::revoke(c, &id)?;
                audit::record(
                    c,
                    Entry {
                        action: Action::DeviceRevoked,
                        actor_user_id: Some(&actor),
                        subject: Some(&d.id),
                        detail: serde_json::json!({ "user_id": d.user_id }),
                        ip: None,
                    },
                )?;
                Ok::<_, DeviceError>(d)
            }))
        })
        .await??;
    hub.close_device(&device.id, "this device has been revoked");
    Ok(HttpResponse::Ok().json(device))
}
