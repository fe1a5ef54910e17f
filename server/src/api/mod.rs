//! The REST API under `/api/v1`: JSON in and out, errors as
//! `{"error": {"code", "message"}}` with the matching HTTP status.

pub mod auth;
pub mod blobs;
pub mod devices;
pub mod history;
pub mod quarantine;
pub mod records;
pub mod tickets;
pub mod users;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use fieldsync_shared::roles::Role;

use crate::auth::accounts::{AccountError, User};
use crate::auth::devices::DeviceError;
use crate::auth::jwt::JwtKeys;
use crate::auth::sessions::SessionError;
use crate::db::{Db, DbError};

/// What request handlers share.
pub struct ApiState {
    pub db: Db,
    pub keys: JwtKeys,
    pub blobs: crate::blobs::BlobStore,
}

pub type State = web::Data<Arc<ApiState>>;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 500 with a generic message; the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error in API request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .json(serde_json::json!({ "error": { "code": self.code, "message": self.message } }))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        Self::internal(e)
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::InvalidCredentials => {
                Self::unauthorized("invalid_credentials", e.to_string())
            }
            SessionError::InvalidRefreshToken => {
                Self::unauthorized("invalid_refresh_token", e.to_string())
            }
            SessionError::TooManyAttempts => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                e.to_string(),
            ),
            SessionError::Db(db) => db.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::BadUsername | AccountError::Password(_) => {
                Self::bad_request(e.to_string())
            }
            AccountError::UsernameTaken(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            AccountError::NotFound(_) => Self::not_found(e.to_string()),
            AccountError::Db(db) => db.into(),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::BadId => Self::bad_request(e.to_string()),
            DeviceError::Revoked(_) | DeviceError::OtherUser(_) => Self::forbidden(e.to_string()),
            DeviceError::NotFound(_) => Self::not_found(e.to_string()),
            DeviceError::Db(db) => db.into(),
        }
    }
}

/// Who may create and change tickets and customer records.
pub const DISPATCH: &[Role] = &[Role::Dispatcher, Role::Admin];
/// Who maintains the parts catalogue and van stock.
pub const CATALOGUE: &[Role] = &[Role::BackOffice, Role::Admin];
/// Office roles: read every ticket, customer and history.
pub const OFFICE: &[Role] = &[
    Role::Dispatcher,
    Role::BackOffice,
    Role::Supervisor,
    Role::Manager,
    Role::Admin,
];

/// 403 unless `user` has one of `roles`.
pub fn require_role(user: &User, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&user.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role `{}` may not do this",
            user.role
        )))
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(
                web::JsonConfig::default()
                    .limit(64 * 1024)
                    .error_handler(|err, _| {
                        ApiError::bad_request(format!("invalid JSON body: {err}")).into()
                    }),
            )
            .route("/auth/login", web::post().to(auth::login))
            .route("/auth/refresh", web::post().to(auth::refresh))
            .route("/auth/logout", web::post().to(auth::logout))
            .route("/me", web::get().to(auth::me))
            .route("/users", web::get().to(users::list))
            .route("/users", web::post().to(users::create))
            .route("/users/{username}/disable", web::post().to(users::disable))
            .route(
                "/users/{username}/password",
                web::put().to(users::set_password),
            )
            .route("/users/{username}/role", web::put().to(users::set_role))
            .route("/audit", web::get().to(users::audit))
            .route("/devices", web::get().to(devices::list))
            .route("/devices", web::post().to(devices::register))
            .route("/devices/{id}/revoke", web::post().to(devices::revoke))
            .route("/tickets", web::post().to(tickets::create))
            .route("/tickets", web::get().to(tickets::list))
            .route("/tickets/{doc_id}", web::get().to(tickets::get))
            .route(
                "/tickets/{doc_id}/timeline",
                web::get().to(history::timeline),
            )
            .route(
                "/tickets/{doc_id}/appointment",
                web::put().to(tickets::set_appointment),
            )
            .route("/tickets/{doc_id}/cancel", web::post().to(tickets::cancel))
            .route("/tickets/{doc_id}/reopen", web::post().to(tickets::reopen))
            .route("/customers", web::post().to(records::create_customer))
            .route("/customers", web::get().to(records::search_customers))
            .route("/customers/{id}", web::get().to(records::get_customer))
            .route(
                "/customers/{id}/archived",
                web::put().to(records::archive_customer),
            )
            .route(
                "/customers/{id}/sites",
                web::post().to(records::create_site),
            )
            .route(
                "/customers/{id}/assets",
                web::post().to(records::create_asset),
            )
            .route("/customers/{id}/history", web::get().to(history::customer))
            .route("/assets/{id}/history", web::get().to(history::asset))
            .route(
                "/technicians/{username}/history",
                web::get().to(history::technician),
            )
            .route(
                "/technicians/{username}/van-stock",
                web::get().to(records::van_stock),
            )
            .route("/parts", web::get().to(records::list_parts))
            .route("/parts/{part_no}", web::put().to(records::put_part))
            .route("/stock-movements", web::post().to(records::record_movement))
            .route("/blobs/{sha256}", web::put().to(blobs::put))
            .route("/blobs/{sha256}", web::get().to(blobs::get))
            .route(
                "/tickets/{doc_id}/assignment",
                web::put().to(tickets::assign),
            )
            .route("/quarantined-edits", web::get().to(quarantine::list)),
    );
}
