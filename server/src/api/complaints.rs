//! Complaints over REST (issue 11 §3). Thin: parse, authorise (office
//! roles), call `office::complaints`, serialise.

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;

use super::auth::AuthUser;
use super::input::{self, MAX_ID, MAX_TEXT};
use super::paging::{self, Window};
use super::tickets;
use super::{require_role, ApiError, State, OFFICE};
use crate::db::on_conn;
use crate::db::schema::customers;
use crate::db::schema::tickets as tickets_t;
use crate::office::complaints::{self, NewComplaint};
use crate::office::{policy_store, sla_watch::parse_time};
use crate::service::complaints::Category;

type HubData = web::Data<std::sync::Arc<crate::sync::hub::Hub>>;

/// A complaint may be entered this long after the customer made it.
const MAX_LATE_DAYS: i64 = 30;

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewComplaintBody)]
pub struct CreateBody {
    /// Optional when `doc_id` names a ticket (its customer is taken).
    #[serde(default)]
    #[schema(max_length = 128)]
    customer_id: String,
    /// The ticket it is about, if any.
    #[serde(default)]
    #[schema(max_length = 128)]
    doc_id: String,
    #[schema(value_type = crate::service::complaints::Category)]
    category: String,
    #[schema(pattern = r"\S", max_length = 4000)]
    description: String,
    /// When the customer complained (RFC 3339, not in the future, at most
    /// 30 days ago; default now).
    #[schema(format = DateTime)]
    received_at: Option<String>,
    /// Open a repair job for it (default: for product-quality complaints).
    open_repair: Option<bool>,
    /// The customer's asset the repair is for (default: the asset of the
    /// ticket the complaint is about).
    #[serde(default)]
    #[schema(max_length = 128)]
    asset_id: String,
}

/// A complaint just recorded; `repair_error` says why its repair job could
/// not be opened (the complaint is kept).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ComplaintMade {
    #[serde(flatten)]
    pub complaint: complaints::Complaint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair_error: Option<String>,
}

/// `POST /complaints`.
pub async fn create(
    state: State,
    hub: HubData,
    user: AuthUser,
    body: super::input::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let b = body.into_inner();
    input::texts(&[
        ("customer_id", &b.customer_id, MAX_ID),
        ("asset_id", &b.asset_id, MAX_ID),
        ("doc_id", &b.doc_id, MAX_ID),
        ("description", &b.description, MAX_TEXT),
    ])?;
    let category: Category = b.category.parse().map_err(ApiError::bad_request)?;
    if b.description.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`description` says what the complaint is",
        ));
    }
    let now = state.service_now();
    let received_at = match &b.received_at {
        None => now,
        Some(s) => parse_time(s)
            .filter(|t| *t <= now + chrono::Duration::minutes(5))
            .filter(|t| (now - *t).num_days() < MAX_LATE_DAYS)
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "`received_at` must be an RFC 3339 time, not in the future, at most {MAX_LATE_DAYS} days ago"
                ))
            })?,
    };
    let (uid, webhook) = (user.0.id.clone(), state.webhook);
    let repair = b
        .open_repair
        .unwrap_or(category == Category::ProductQuality);
    let made = state
        .db
        .run(move |c| {
            let mut customer_id = b.customer_id.clone();
            let mut ticket_no = String::new();
            let mut asset_id = b.asset_id.clone();
            if !b.doc_id.is_empty() {
                let t: Option<(String, String, String)> = on_conn!(c, |c| tickets_t::table
                    .find(&b.doc_id)
                    .select((
                        tickets_t::ticket_no,
                        tickets_t::customer_id,
                        tickets_t::asset_id
                    ))
                    .first(c)
                    .optional())?;
                let Some((no, cid, aid)) = t else {
                    return Ok(Err(ApiError::unprocessable("`doc_id`: no such ticket")));
                };
                if customer_id.is_empty() {
                    customer_id = cid.clone();
                } else if !cid.is_empty() && cid != customer_id {
                    return Ok(Err(ApiError::unprocessable(
                        "`doc_id` is a ticket of another customer",
                    )));
                }
                ticket_no = no;
                if asset_id.is_empty() {
                    asset_id = aid;
                }
            }
            let known: i64 = on_conn!(c, |c| customers::table
                .find(&customer_id)
                .count()
                .get_result(c))?;
            if known == 0 {
                return Ok(Err(ApiError::unprocessable(
                    "`customer_id`: no such customer (give it, or a ticket of a known customer)",
                )));
            }
            let policy = policy_store::load(c)?;
            let n = NewComplaint {
                customer_id: &customer_id,
                doc_id: &b.doc_id,
                ticket_no: &ticket_no,
                category,
                description: b.description.trim(),
                received_at,
                created_by: &uid,
            };
            Ok(Ok((
                complaints::create(c, &policy, &n, now, webhook)?,
                asset_id,
            )))
        })
        .await??;
    let (mut made, asset_id) = made;
    // The complaint is recorded first (it must not be lost); then the repair
    // job a product-quality complaint calls for (seed 000 §5.3).
    let mut repair_error = None;
    if repair {
        let intake = tickets::NewTicket::repair_for_complaint(
            &made.customer_id,
            &asset_id,
            &made.description,
        );
        match tickets::open_ticket(&state, &hub, &user.0, intake).await {
            Ok((doc, _, _)) => {
                let (id, key) = (made.id.clone(), doc.to_string());
                state
                    .db
                    .run(move |c| complaints::set_repair(c, &id, &key))
                    .await?;
                made.repair_doc_id = doc.to_string();
            }
            Err(e) => {
                tracing::warn!(complaint = %made.id, error = %e, "the repair job of a complaint could not be opened");
                repair_error = Some(e.message);
            }
        }
    }
    Ok(HttpResponse::Created().json(ComplaintMade {
        complaint: made,
        repair_error,
    }))
}

/// `GET /complaints`: `?open=true&state=at_risk|breached|…&customer_id=&doc_id=`.
pub async fn list(
    state: State,
    user: AuthUser,
    q: web::Query<complaints::Filter>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let f = q.into_inner();
    let w: Window<(String, String)> = Window::new(f.limit, f.cursor.as_deref(), paging::DEFAULT)?;
    let (after, fetch) = (w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| complaints::list(c, &f, after, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |c| (c.received_at.clone(), c.id.clone()))))
}

/// `GET /complaints/{id}`.
pub async fn get(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let id = path.into_inner();
    state
        .db
        .run(move |c| complaints::get(c, &id))
        .await?
        .map(|k| HttpResponse::Ok().json(k))
        .ok_or_else(|| ApiError::not_found("no such complaint"))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RespondBody {
    #[schema(pattern = r"\S", max_length = 4000)]
    note: String,
}

/// 400 unless `value` is some text within the limit.
fn required_text(field: &str, value: &str, what: &str) -> Result<(), ApiError> {
    input::text(field, value, MAX_TEXT)?;
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("`{field}` says {what}")));
    }
    Ok(())
}

/// Runs one step of a complaint (`office::complaints::respond`/`resolve`,
/// the caller authorised) with the policy in force; 409 `refused` if it did
/// not apply.
async fn step(
    state: State,
    user: AuthUser,
    id: String,
    refused: &'static str,
    run: impl FnOnce(
            &mut crate::db::DbConn,
            &crate::service::policy::Policy,
            Step<'_>,
        ) -> Result<Option<complaints::Complaint>, crate::db::DbError>
        + Send
        + 'static,
) -> Result<HttpResponse, ApiError> {
    let (uid, now, webhook) = (user.0.id.clone(), state.service_now(), state.webhook);
    state
        .db
        .run(move |c| {
            let policy = policy_store::load(c)?;
            run(
                c,
                &policy,
                Step {
                    id: &id,
                    by: &uid,
                    now,
                    webhook,
                },
            )
        })
        .await?
        .map(|k| HttpResponse::Ok().json(k))
        .ok_or_else(|| ApiError::conflict(refused))
}

/// Who takes a step on which complaint, and when.
struct Step<'a> {
    id: &'a str,
    by: &'a str,
    now: chrono::DateTime<chrono::Utc>,
    webhook: bool,
}

/// `POST /complaints/{id}/respond`: the first response to the customer.
pub async fn respond(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<RespondBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let b = body.into_inner();
    required_text("note", &b.note, "how the customer was answered")?;
    let refused = "no such open complaint waiting for a first response";
    step(
        state,
        user,
        path.into_inner(),
        refused,
        move |c, policy, s| complaints::respond(c, policy, s.id, s.by, &b.note, s.now, s.webhook),
    )
    .await
}

/// `POST /complaints/{id}/start`: someone has started handling it.
pub async fn start(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let refused = "no such open complaint that is not being handled yet";
    step(
        state,
        user,
        path.into_inner(),
        refused,
        move |c, policy, s| complaints::start(c, policy, s.id, s.by, s.now, s.webhook),
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResolveBody {
    #[schema(pattern = r"\S", max_length = 4000)]
    resolution: String,
    /// Whether the customer is satisfied with the outcome (false: a second
    /// contact is scheduled).
    customer_satisfied: Option<bool>,
}

/// `POST /complaints/{id}/resolve`.
pub async fn resolve(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    body: super::input::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let b = body.into_inner();
    required_text("resolution", &b.resolution, "how it was resolved")?;
    step(
        state,
        user,
        path.into_inner(),
        "no such open complaint",
        move |c, policy, s| {
            complaints::resolve(
                c,
                policy,
                s.id,
                s.by,
                b.resolution.trim(),
                b.customer_satisfied,
                s.now,
                s.webhook,
            )
        },
    )
    .await
}
