//! The customer archive (customers, sites, assets), the parts catalogue and
//! van stock.

use actix_web::{web, HttpRequest, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::paging::{self, PageQuery, Window};
use super::preconditions;
use super::{input, require_role, ApiError, State, CATALOGUE, DISPATCH, OFFICE};
use crate::audit::{self, Action, Entry};
use crate::auth::accounts;
use crate::db::DbConn;
use crate::records::{self, NewAsset, NewCustomer, NewSite, Part, RecordError};

/// Runs `f` on a pooled connection; record errors become 400/404.
pub(super) async fn query<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&mut DbConn) -> Result<T, RecordError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(state.db.run(move |c| Ok(f(c))).await??)
}

/// Runs `f` and records `action` on `subject` in the audit log, in one
/// transaction: a change is never kept without its audit entry (and a
/// versioned write is not half done when the client is told it failed).
async fn audited<T: Send + 'static>(
    state: &State,
    actor: &str,
    action: Action,
    f: impl FnOnce(&mut DbConn) -> Result<(T, String, serde_json::Value), RecordError> + Send + 'static,
) -> Result<T, ApiError> {
    let actor = actor.to_string();
    let out = state
        .db
        .run(move |c| {
            Ok(crate::db::transaction(c, |c| {
                let (value, subject, detail) = f(c)?;
                audit::record(
                    c,
                    Entry {
                        action,
                        actor_user_id: Some(&actor),
                        subject: Some(&subject),
                        detail,
                        ip: None,
                    },
                )?;
                Ok::<_, RecordError>(value)
            }))
        })
        .await??;
    Ok(out)
}

fn check_customer(new: &NewCustomer) -> Result<(), ApiError> {
    input::texts(&[
        ("name", &new.name, input::MAX_NAME),
        ("phone", &new.phone, input::MAX_NAME),
        ("email", &new.email, input::MAX_NAME),
        ("address", &new.address, input::MAX_TEXT),
        ("notes", &new.notes, input::MAX_TEXT),
    ])
}

fn check_site(new: &NewSite) -> Result<(), ApiError> {
    input::texts(&[
        ("name", &new.name, input::MAX_NAME),
        ("address", &new.address, input::MAX_TEXT),
    ])
}

fn check_asset(new: &NewAsset) -> Result<(), ApiError> {
    input::texts(&[
        ("product", &new.product, input::MAX_NAME),
        ("model", &new.model, input::MAX_NAME),
        ("serial", &new.serial, input::MAX_ID),
        (
            "site_id",
            new.site_id.as_deref().unwrap_or(""),
            input::MAX_ID,
        ),
    ])?;
    input::date("purchased_at", &new.purchased_at)?;
    input::date("warranty_until", &new.warranty_until)
}

pub async fn create_customer(
    state: State,
    user: AuthUser,
    body: super::input::Json<NewCustomer>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let new = body.into_inner();
    check_customer(&new)?;
    let c = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let cust = records::create_customer(c, new)?;
        let id = cust.id.clone();
        Ok((cust, id, serde_json::json!({ "created": "customer" })))
    })
    .await?;
    Ok(preconditions::with_etag(
        HttpResponse::Created(),
        c.version,
        c,
    ))
}

/// Replaces a customer's contact fields; `If-Match` guards a lost update.
pub async fn update_customer(
    state: State,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<NewCustomer>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let expect = preconditions::if_match(&req)?;
    let (id, new) = (path.into_inner(), body.into_inner());
    check_customer(&new)?;
    let c = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let cust = records::update_customer(c, &id, new, expect.as_ref())?;
        Ok((cust, id, serde_json::json!({ "updated": "customer" })))
    })
    .await?;
    Ok(preconditions::ok_with_etag(c.version, c))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct SearchQuery {
    /// Part of a name, phone or e-mail (case-insensitive).
    #[serde(default)]
    #[param(max_length = 200)]
    q: String,
    #[serde(default)]
    include_archived: bool,
    /// Page size, by name (default 100, at most 500).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    cursor: Option<String>,
}

pub async fn search_customers(
    state: State,
    user: AuthUser,
    params: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let q = params.into_inner();
    input::text("q", &q.q, input::MAX_QUERY)?;
    let w: Window<(String, String)> = Window::new(
        q.limit,
        q.cursor.as_deref(),
        paging::Limits {
            default: 100,
            max: 500,
        },
    )?;
    let (after, fetch) = (w.after.clone(), w.fetch());
    let rows = query(&state, move |c| {
        records::search_customers(c, &q.q, q.include_archived, after, fetch)
    })
    .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |c| (c.name.clone(), c.id.clone()))))
}

/// The customer archive card.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CustomerCard {
    pub customer: records::Customer,
    pub sites: Vec<records::Site>,
    pub assets: Vec<records::Asset>,
}

/// A customer with their sites and assets (the customer archive card).
pub async fn get_customer(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let id = path.into_inner();
    let card = query(&state, move |c| {
        let customer = records::get_customer(c, &id)?;
        let sites = records::sites_of(c, &id)?;
        let assets = records::assets_of(c, &id)?;
        Ok(CustomerCard {
            customer,
            sites,
            assets,
        })
    })
    .await?;
    // The card's ETag is the customer record's version (sites and assets
    // carry their own `version`).
    Ok(preconditions::ok_with_etag(card.customer.version, card))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ArchiveBody {
    archived: bool,
}

pub async fn archive_customer(
    state: State,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<ArchiveBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let expect = preconditions::if_match(&req)?;
    let (id, archived) = (path.into_inner(), body.archived);
    let c = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let cust = records::set_customer_archived(c, &id, archived, expect.as_ref())?;
        Ok((cust, id, serde_json::json!({ "archived": archived })))
    })
    .await?;
    Ok(preconditions::ok_with_etag(c.version, c))
}

pub async fn create_site(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<NewSite>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let (id, new) = (path.into_inner(), body.into_inner());
    check_site(&new)?;
    let s = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let site = records::create_site(c, &id, new)?;
        Ok((site, id, serde_json::json!({ "created": "site" })))
    })
    .await?;
    Ok(preconditions::with_etag(
        HttpResponse::Created(),
        s.version,
        s,
    ))
}

pub async fn get_site(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let id = path.into_inner();
    let s = query(&state, move |c| records::get_site(c, &id)).await?;
    Ok(preconditions::ok_with_etag(s.version, s))
}

pub async fn update_site(
    state: State,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<NewSite>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let expect = preconditions::if_match(&req)?;
    let (id, new) = (path.into_inner(), body.into_inner());
    check_site(&new)?;
    let s = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let site = records::update_site(c, &id, new, expect.as_ref())?;
        let customer = site.customer_id.clone();
        Ok((
            site,
            customer,
            serde_json::json!({ "updated": "site", "site_id": id }),
        ))
    })
    .await?;
    Ok(preconditions::ok_with_etag(s.version, s))
}

pub async fn create_asset(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<NewAsset>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let (id, new) = (path.into_inner(), body.into_inner());
    check_asset(&new)?;
    let a = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let asset = records::create_asset(c, &id, new)?;
        Ok((asset, id, serde_json::json!({ "created": "asset" })))
    })
    .await?;
    Ok(preconditions::with_etag(
        HttpResponse::Created(),
        a.version,
        a,
    ))
}

pub async fn get_asset(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let id = path.into_inner();
    let a = query(&state, move |c| records::get_asset(c, &id)).await?;
    Ok(preconditions::ok_with_etag(a.version, a))
}

/// Replaces an asset's fields; `If-Match` guards a lost update.
pub async fn update_asset(
    state: State,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<NewAsset>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, DISPATCH)?;
    let expect = preconditions::if_match(&req)?;
    let (id, new) = (path.into_inner(), body.into_inner());
    check_asset(&new)?;
    let a = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let asset = records::update_asset(c, &id, new, expect.as_ref())?;
        let customer = asset.customer_id.clone();
        Ok((
            asset,
            customer,
            serde_json::json!({ "updated": "asset", "asset_id": id }),
        ))
    })
    .await?;
    Ok(preconditions::ok_with_etag(a.version, a))
}

/// The parts catalogue; every signed-in role may read it (devices pick parts).
pub async fn list_parts(
    state: State,
    _user: AuthUser,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let w: Window<String> = q.window(paging::DEFAULT)?;
    let (after, fetch) = (w.after.clone(), w.fetch());
    let rows = query(&state, move |c| {
        records::list_parts_after(c, after.as_deref(), fetch)
    })
    .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |p| p.part_no.clone())))
}

/// One catalogue part, with its ETag.
pub async fn get_part(
    state: State,
    _user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let no = path.into_inner();
    let n = no.clone();
    let p = query(&state, move |c| records::get_part(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no part `{no}`")))?;
    Ok(preconditions::ok_with_etag(p.version, p))
}

/// Creates or replaces a part; with `If-Match`, only replaces the version
/// named (412 otherwise, and for a part that does not exist).
pub async fn put_part(
    state: State,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<String>,
    body: super::input::Json<PartBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, CATALOGUE)?;
    let expect = preconditions::if_match(&req)?;
    let b = body.into_inner();
    let part_no = path.into_inner();
    input::texts(&[
        ("part_no", &part_no, input::MAX_ID),
        ("name", &b.name, input::MAX_NAME),
    ])?;
    let part = Part {
        part_no,
        name: b.name,
        unit_cost_cents: b.unit_cost_cents,
        active: b.active.unwrap_or(true),
        created_at: 0,
        version: 1,
    };
    let p = audited(&state, &user.0.id, Action::RecordChanged, move |c| {
        let p = records::upsert_part(c, part, expect.as_ref())?;
        let no = p.part_no.clone();
        Ok((p, no, serde_json::json!({ "part": "upserted" })))
    })
    .await?;
    Ok(preconditions::ok_with_etag(p.version, p))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PartBody {
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    unit_cost_cents: i64,
    active: Option<bool>,
}

/// Resolves a technician username to the account (404 if not a technician).
async fn technician_id(state: &State, username: String) -> Result<String, ApiError> {
    let found = state
        .db
        .run(move |c| accounts::find_for_login(c, &username).map(|u| (username, u)))
        .await?;
    match found {
        (_, Some((u, _))) if u.role == Role::Technician => Ok(u.id),
        (name, _) => Err(ApiError::not_found(format!("no technician `{name}`"))),
    }
}

/// A van's stock levels per part and its movements, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct VanStock {
    pub levels: Vec<records::StockLevel>,
    pub movements: Vec<crate::projection::MovementRow>,
}

/// Van parts on tickets that did not move stock.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StockAnomalies {
    pub anomalies: Vec<records::StockAnomaly>,
}

/// A van's stock (technicians see their own; office roles everyone's).
pub async fn van_stock(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let username = path.into_inner();
    if user.0.role == Role::Technician && user.0.username != username {
        return Err(ApiError::forbidden("technicians see only their own van"));
    }
    let id = technician_id(&state, username).await?;
    let (levels, movements) = query(&state, move |c| records::van_stock(c, &id)).await?;
    Ok(HttpResponse::Ok().json(VanStock { levels, movements }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct MovementBody {
    /// The technician's username.
    #[schema(max_length = 128)]
    technician: String,
    #[schema(max_length = 128)]
    part_no: String,
    /// Positive: restock; negative: correction (not zero).
    #[schema(minimum = -1000000, maximum = 1000000)]
    qty_delta: i64,
    /// Default `restock`.
    #[serde(default)]
    #[schema(max_length = 4000)]
    reason: String,
}

/// Restock (positive) or correct (negative) a technician's van.
pub async fn record_movement(
    state: State,
    user: AuthUser,
    body: super::input::Json<MovementBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, CATALOGUE)?;
    let b = body.into_inner();
    input::texts(&[
        ("technician", &b.technician, input::MAX_ID),
        ("part_no", &b.part_no, input::MAX_ID),
        ("reason", &b.reason, input::MAX_TEXT),
    ])?;
    let tech = technician_id(&state, b.technician.clone()).await?;
    let m = audited(&state, &user.0.id, Action::StockMoved, move |c| {
        let reason = if b.reason.is_empty() { "restock".to_string() } else { b.reason };
        let m = records::record_movement(c, &tech, &b.part_no, b.qty_delta, &reason)?;
        let detail = serde_json::json!({ "technician": b.technician, "part_no": m.part_no, "qty_delta": m.qty_delta });
        Ok((m, tech, detail))
    })
    .await?;
    Ok(HttpResponse::Created().json(m))
}

/// Van parts on tickets that did not move stock (unknown part numbers,
/// implausible quantities): the back office resolves them.
pub async fn stock_anomalies(state: State, user: AuthUser) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let rows = query(&state, records::stock_anomalies).await?;
    Ok(HttpResponse::Ok().json(StockAnomalies { anomalies: rows }))
}
