//! Service history: per customer, per asset, per technician, and one
//! ticket's full timeline (status events with who/when, visits, parts,
//! signoff). Read from the projection tables.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::AuthUser;
use super::records::query;
use super::tickets::{check_can_read, parse_doc};
use super::{require_role, ApiError, State, OFFICE};
use crate::auth::accounts;
use crate::history;
use crate::records;

#[derive(Serialize, ToSchema)]
pub struct CustomerHistory {
    pub customer: records::Customer,
    pub history: Vec<history::ServiceRecord>,
}

#[derive(Serialize, ToSchema)]
pub struct AssetHistory {
    pub asset: records::Asset,
    pub history: Vec<history::ServiceRecord>,
}

#[derive(Serialize, ToSchema)]
pub struct TechnicianRef {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TechnicianHistory {
    pub technician: TechnicianRef,
    pub history: Vec<history::ServiceRecord>,
}

/// The timeline with the ticket's SLA state now (None: no target applies).
#[derive(Serialize, ToSchema)]
pub struct TicketTimeline {
    #[serde(flatten)]
    pub timeline: history::Timeline,
    pub sla: Option<crate::service::sla::TicketSla>,
}

pub async fn customer(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let id = path.into_inner();
    let out = query(&state, move |c| {
        let customer = records::get_customer(c, &id)?;
        let h = history::for_customer(c, &id)?;
        Ok(CustomerHistory {
            customer,
            history: h,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

pub async fn asset(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let id = path.into_inner();
    let out = query(&state, move |c| {
        let asset = records::get_asset(c, &id)?;
        let h = history::for_asset(c, &id, &asset.serial)?;
        Ok(AssetHistory { asset, history: h })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// A technician's service history (technicians may read their own).
pub async fn technician(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let username = path.into_inner();
    if !(user.0.role == Role::Technician && user.0.username == username) {
        require_role(&user.0, OFFICE)?;
    }
    let out = state
        .db
        .run(move |c| {
            let Some((tech, _)) = accounts::find_for_login(c, &username)? else {
                return Ok(None);
            };
            let h = history::for_technician(c, &tech.id)?;
            Ok(Some(TechnicianHistory {
                technician: TechnicianRef {
                    id: tech.id,
                    username: tech.username,
                    display_name: tech.display_name,
                },
                history: h,
            }))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(HttpResponse::Ok().json(out))
}

/// Everything that happened on one ticket, in order.
pub async fn timeline(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let doc = parse_doc(&path.into_inner())?;
    check_can_read(&state, &user.0, doc).await?;
    let key = doc.to_string();
    let now = state.service_now();
    let (t, sla) = state
        .db
        .run(move |c| {
            let Some(t) = history::timeline(c, &key)? else {
                return Ok(None);
            };
            let policy = crate::office::policy_store::load(c)?;
            let sla = crate::office::sla_watch::evaluate_ticket(c, &policy, &key, now)?;
            Ok(Some((t, sla.and_then(|e| e.sla))))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such ticket"))?;
    Ok(HttpResponse::Ok().json(TicketTimeline { timeline: t, sla }))
}
