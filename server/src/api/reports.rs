//! KPIs and periodic reports over REST (issue 11 §4). Thin: parse,
//! authorise (`office::reports::may_read_reports`), call `office::reports`,
//! serialise.
//!
//! Reports are for the office roles. A technician may read their own KPIs
//! (`GET /kpis`, no `technician` or their own username) and nothing else.

use actix_web::{web, HttpResponse};
use fieldsync_shared::roles::Role;
use serde::Deserialize;

use super::auth::AuthUser;
use super::{ApiError, State};
use crate::office::policy_store;
use crate::office::reports::{self, Format, PeriodKind, ReportError, ReportPeriod};
use crate::service::kpi::Period;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ReportQuery {
    /// `2026-W47`, `2026-11`, `2026-Q4`, `2026` or a date in the period;
    /// default: the period running now.
    #[param(pattern = r"^\d{4}(-W\d{2}|-Q[1-4]|-\d{2}(-\d{2})?)?$")]
    at: Option<String>,
    /// json (default), csv or svg.
    #[param(inline, value_type = Option<ReportFormat>)]
    format: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ReportFormat {
    Json,
    Csv,
    Svg,
}

/// The KPIs of a span.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct KpiAnswer {
    pub from: String,
    pub to: String,
    /// The technician the figures are for (null: the company).
    pub technician: Option<String>,
    pub kpis: Vec<reports::KpiLine>,
}

/// Reports assembled at once, on all instances' API workers of this
/// process: each may read up to `MAX_REPORT_TICKETS` tickets and holds a
/// database connection meanwhile, so more wait for a retry (503) rather
/// than for the sync path's connections.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

fn busy() -> ApiError {
    ApiError::retry_after(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "reports_busy",
        "two reports are being made already; retry in a few seconds",
        5,
    )
}

fn refused(e: ReportError) -> ApiError {
    match e {
        ReportError::TooLarge(_) => ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "report_too_large",
            e.to_string(),
        ),
        ReportError::BadPeriod(m) => ApiError::unprocessable(m),
        ReportError::Db(d) => d.into(),
    }
}

/// A technician's own KPIs span at most this (a quarter).
const TECHNICIAN_MAX_DAYS: i64 = 93;

/// `GET /reports/{period}`: the report of a week, month, quarter or year.
pub async fn report(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    if !reports::may_read_reports(user.0.role) {
        return Err(ApiError::forbidden(format!(
            "role `{}` may not read reports",
            user.0.role
        )));
    }
    let kind_name = path.into_inner();
    let kind = PeriodKind::parse(&kind_name).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown period `{kind_name}`: week, month, quarter or year"
        ))
    })?;
    let format = Format::parse(q.format.as_deref().unwrap_or("json"))
        .ok_or_else(|| ApiError::bad_request("`format` must be json, csv or svg"))?;
    let at = q.at.clone();
    let now = state.service_now();
    let _permit = RUNNING.try_acquire().map_err(|_| busy())?;
    let rendered = state
        .db
        .run(move |c| {
            let period = match at {
                Some(at) => ReportPeriod::parse(kind, &at),
                None => {
                    let offset = reports::utc_offset_minutes(&policy_store::load(c)?);
                    let zone = chrono::FixedOffset::east_opt(offset * 60)
                        .unwrap_or(chrono::FixedOffset::east_opt(0).expect("UTC"));
                    ReportPeriod::containing(kind, now.with_timezone(&zone).date_naive())
                        .ok_or_else(|| "no period around now".to_string())
                }
            };
            let period = match period {
                Ok(p) => p,
                Err(e) => return Ok(Err(ApiError::unprocessable(e))),
            };
            match reports::build(c, &period, now, reports::MAX_REPORT_TICKETS, &mut |_| {}) {
                Ok(r) => Ok(Ok(r)),
                Err(ReportError::Db(e)) => Err(e),
                Err(e) => Ok(Err(refused(e))),
            }
            .map(|r| r.map(|r| (r, period.label())))
        })
        .await??;
    // Rendered after the database connection is given back.
    let (report, label) = rendered;
    let body = reports::render(&report, format).map_err(ApiError::internal)?;
    let ext = match format {
        Format::Json => "json",
        Format::Csv => "csv",
        Format::Svg => "svg",
    };
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            "Content-Disposition",
            format!("inline; filename=\"report-{kind_name}-{label}.{ext}\""),
        ))
        .body(body))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct KpiQuery {
    /// A date (the company's midnight) or an RFC 3339 time.
    #[param(format = Date)]
    from: String,
    /// A date (included) or an RFC 3339 time (excluded), after `from`; at
    /// most 3 years after it (technicians: 93 days).
    #[param(format = Date)]
    to: String,
    /// A technician's username: their share (a technician: only their own).
    technician: Option<String>,
}

/// `GET /kpis?from=&to=&technician=`: the KPIs of any span.
pub async fn kpis(
    state: State,
    user: AuthUser,
    q: web::Query<KpiQuery>,
) -> Result<HttpResponse, ApiError> {
    let KpiQuery {
        from,
        to,
        technician,
    } = q.into_inner();
    let me = &user.0;
    let technician = if reports::may_read_reports(me.role) {
        technician
    } else if me.role == Role::Technician && technician.as_deref().is_none_or(|t| t == me.username)
    {
        Some(me.username.clone())
    } else {
        return Err(ApiError::forbidden(format!(
            "role `{}` may read only its own KPIs",
            me.role
        )));
    };
    let now = state.service_now();
    let max_days = if reports::may_read_reports(me.role) {
        3 * 366
    } else {
        TECHNICIAN_MAX_DAYS
    };
    let _permit = RUNNING.try_acquire().map_err(|_| busy())?;
    let answer = state
        .db
        .run(move |c| {
            let offset = reports::utc_offset_minutes(&policy_store::load(c)?);
            let bounds = (
                reports::range_bound(&from, false, offset),
                reports::range_bound(&to, true, offset),
            );
            let (Some(start), Some(end)) = bounds else {
                return Ok(Err(ApiError::bad_request(
                    "`from` and `to` must be dates like 2026-11-01 or RFC 3339 times",
                )));
            };
            if start >= end {
                return Ok(Err(ApiError::unprocessable("`to` must be after `from`")));
            }
            if end - start > chrono::Duration::days(max_days) {
                return Ok(Err(ApiError::unprocessable(format!(
                    "at most {max_days} days at a time"
                ))));
            }
            let tech_id = match &technician {
                Some(name) => match reports::user_id(c, name)? {
                    Some(id) => Some(id),
                    None => return Ok(Err(ApiError::not_found(format!("no user `{name}`")))),
                },
                None => None,
            };
            let range = Period { start, end };
            let lines = match reports::kpis_between(c, &range, tech_id.as_deref(), now) {
                Ok(lines) => lines,
                Err(ReportError::Db(e)) => return Err(e),
                Err(e) => return Ok(Err(refused(e))),
            };
            let fmt = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            Ok(Ok(KpiAnswer {
                from: fmt(start),
                to: fmt(end),
                technician,
                kpis: lines,
            }))
        })
        .await??;
    Ok(HttpResponse::Ok().json(answer))
}
