//! `/api/v1/auth/*` and the bearer-token extractor.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{ApiError, State};
use crate::auth::accounts::{self, User};
use crate::auth::client_limit::ClientAddr;
use crate::auth::jwt::TokenError;
use crate::auth::sessions;
use crate::db::transaction;

fn client_ip(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// Limits: see `sessions::login` (per-address rate, hash-pool queue,
/// per-(username, address) failure throttle).
pub async fn login(
    state: State,
    req: HttpRequest,
    body: super::input::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let client = ClientAddr::of(req.peer_addr().map(|a| a.ip()));
    let LoginBody { username, password } = body.into_inner();
    let guards = sessions::LoginGuards {
        passwords: &state.passwords,
        per_address: &state.login_rate,
        keys: &state.keys,
    };
    let pair = sessions::login(&state.db, guards, username, password, client).await?;
    Ok(HttpResponse::Ok().json(pair))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshBody {
    refresh_token: String,
}

pub async fn refresh(
    state: State,
    req: HttpRequest,
    body: super::input::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let ip = client_ip(&req);
    let keys = state.keys.clone();
    let token = body.into_inner().refresh_token;
    // Not one transaction: a detected reuse must stay revoked even though the
    // request fails.
    let pair = state
        .db
        .run(move |c| Ok(sessions::refresh(c, &keys, &token, ip.as_deref())))
        .await??;
    Ok(HttpResponse::Ok().json(pair))
}

pub async fn logout(
    state: State,
    req: HttpRequest,
    body: super::input::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let ip = client_ip(&req);
    let token = body.into_inner().refresh_token;
    state
        .db
        .run(move |c| {
            Ok(transaction(c, |c| {
                sessions::logout(c, &token, ip.as_deref())
            }))
        })
        .await??;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(user.0)
}

/// The caller, from `Authorization: Bearer <access token>`: a valid,
/// unexpired token of a user who exists and is not disabled.
pub struct AuthUser(pub User);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<State>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::unauthorized("unauthorized", "authentication is not configured")
            })?;
            let token = header
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "missing_token",
                        "send Authorization: Bearer <access token>",
                    )
                })?;
            let claims = state.keys.verify(token).map_err(|e| match e {
                TokenError::Expired => {
                    ApiError::unauthorized("token_expired", "access token expired; refresh it")
                }
                TokenError::Invalid => {
                    ApiError::unauthorized("invalid_token", "access token is invalid")
                }
            })?;
            let (user, current) = state
                .db
                .run(move |c| {
                    let current = accounts::get_current(c, &claims)?;
                    let user = match current {
                        Some(_) => None,
                        None => accounts::get(c, &claims.sub)?,
                    };
                    Ok((user, current))
                })
                .await?;
            match (current, user) {
                (Some(u), _) if !u.disabled => Ok(AuthUser(u)),
                (Some(_), _) => Err(ApiError::unauthorized(
                    "user_disabled",
                    "this account is disabled",
                )),
                // The user exists, but the token is from before a password change.
                (None, Some(_)) => Err(ApiError::unauthorized(
                    "token_revoked",
                    "access token was revoked by a password change; log in again",
                )),
                (None, None) => Err(ApiError::unauthorized(
                    "invalid_token",
                    "access token is invalid",
                )),
            }
        })
    }
}
