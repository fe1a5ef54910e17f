//! The customer's survey (issue 11 §3): the office makes a link
//! (`POST /tickets/{doc_id}/survey-link`), the customer opens it — a small
//! public page at `/survey/{token}`, no account — and answers once, before
//! the survey window closes. Companies with their own page post the same
//! answer as JSON to `POST /api/v1/survey-answers`. Either way the answer
//! is a server edit of the ticket document.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::AuthUser;
use super::tickets::{check_can_read, parse_doc};
use super::{require_role, ApiError, State, OFFICE};
use crate::audit::{self, Action, Entry};
use crate::office::policy_store;
use crate::office::sla_watch::parse_time;
use crate::office::surveys::{self as links, Applied, Claim, Refusal};
use crate::service::policy::Policy;
use crate::service::surveys::{self, TokenError};
use crate::sync::hub::Hub;

type HubData = web::Data<Arc<Hub>>;

/// `POST /tickets/{doc_id}/survey-link`: a single-use link for the
/// customer, valid until the survey window closes.
pub async fn create_link(
    state: State,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let doc = parse_doc(&path.into_inner())?;
    check_can_read(&state, &user.0, doc).await?;
    let (key, uid, now) = (
        state.survey_key.clone(),
        user.0.id.clone(),
        state.service_now(),
    );
    let made = state
        .db
        .run(move |c| {
            let policy = policy_store::load(c)?;
            let made = links::create_link(c, &policy, &key, &doc.to_string(), &uid, now)?;
            if let Ok(l) = &made {
                audit::record(
                    c,
                    Entry {
                        action: Action::SurveyLinkCreated,
                        actor_user_id: Some(&uid),
                        subject: Some(&l.doc_id),
                        detail: serde_json::json!({ "link": l.link_id, "expires_at": l.expires_at }),
                        ip: None,
                    },
                )?;
            }
            Ok(made)
        })
        .await?
        .map_err(|r| match r {
            Refusal::NoTicket => ApiError::not_found(r.to_string()),
            _ => ApiError::conflict(r.to_string()),
        })?;
    // Behind a proxy the request's host may be an internal name: the
    // configured public address wins.
    let base = state.public_url.clone().unwrap_or_else(|| {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    });
    let url = format!("{base}/survey/{}", made.token);
    Ok(HttpResponse::Created().json(LinkMade { link: made, url }))
}

/// `GET /tickets/{doc_id}/survey-links`: links made for a ticket, used or
/// not (never their tokens).
pub async fn list_links(
    state: State,
    user: AuthUser,
    path: web::Path<String>,
    q: web::Query<super::paging::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let doc = parse_doc(&path.into_inner())?;
    let w: super::paging::Window<(String, String)> = q.window(super::paging::DEFAULT)?;
    check_can_read(&state, &user.0, doc).await?;
    let (key, before, fetch) = (doc.to_string(), w.after.clone(), w.fetch());
    let rows = state
        .db
        .run(move |c| links::list_for(c, &key, before, fetch))
        .await?;
    Ok(HttpResponse::Ok().json(w.page(rows, |l| (l.created_at.clone(), l.id.clone()))))
}

/// Scores from 1 to the survey's scale (5 or 7, `surveys.scale`).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SurveyScores)]
pub struct Answer {
    #[schema(minimum = 1, maximum = 7)]
    efficiency: i64,
    #[schema(minimum = 1, maximum = 7)]
    attitude: i64,
    #[schema(minimum = 1, maximum = 7)]
    reasonableness: i64,
    #[serde(default)]
    #[schema(max_length = 2000)]
    comment: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SurveyAnswer)]
pub struct JsonAnswer {
    token: String,
    #[serde(flatten)]
    answer: Answer,
}

/// Why an answer was not recorded.
#[derive(Debug)]
enum NotRecorded {
    Invalid,
    Expired,
    Used,
    Bad(String),
    Already,
    NotDone,
    Unavailable,
}

impl NotRecorded {
    fn status(&self) -> StatusCode {
        match self {
            NotRecorded::Invalid => StatusCode::NOT_FOUND,
            NotRecorded::Expired | NotRecorded::Used => StatusCode::GONE,
            NotRecorded::Bad(_) => StatusCode::BAD_REQUEST,
            NotRecorded::Already | NotRecorded::NotDone => StatusCode::CONFLICT,
            NotRecorded::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    fn message(&self) -> String {
        match self {
            NotRecorded::Invalid => TokenError::Invalid.to_string(),
            NotRecorded::Expired => TokenError::Expired.to_string(),
            NotRecorded::Used => "this survey link was already used; thank you".into(),
            NotRecorded::Bad(m) => m.clone(),
            NotRecorded::Already => {
                "a survey is already recorded for this service; thank you".into()
            }
            NotRecorded::NotDone => {
                "this service was reopened or cancelled: there is nothing to rate for now".into()
            }
            NotRecorded::Unavailable => {
                "we could not save your answer just now; please try again in a minute".into()
            }
        }
    }
    fn api_error(&self) -> ApiError {
        let code = match self {
            NotRecorded::Invalid => "invalid_link",
            NotRecorded::Expired => "link_expired",
            NotRecorded::Used => "link_used",
            NotRecorded::Bad(_) => "bad_request",
            NotRecorded::Already => "already_answered",
            NotRecorded::NotDone => "not_completed",
            NotRecorded::Unavailable => "storage_unavailable",
        };
        let mut e = ApiError::new(self.status(), code, self.message());
        if matches!(self, NotRecorded::Unavailable) {
            e.retry_after = Some(5);
        }
        e
    }
}

/// The link a token names, if it is genuine, unexpired and unused, with
/// the policy in force.
async fn open_link(state: &State, token: &str) -> Result<(links::Link, Policy), NotRecorded> {
    let now = state.service_now();
    let id = surveys::verify(&state.survey_key, token, now).map_err(|e| match e {
        TokenError::Invalid => NotRecorded::Invalid,
        TokenError::Expired => NotRecorded::Expired,
    })?;
    let (link, policy) = state
        .db
        .run(move |c| Ok((links::get(c, &id)?, policy_store::load(c)?)))
        .await
        .map_err(|_| NotRecorded::Unavailable)?;
    let link = link.ok_or(NotRecorded::Invalid)?;
    if link.used_at.is_some() {
        return Err(NotRecorded::Used);
    }
    // Ended early by a newer link (the token still carries its first expiry).
    if parse_time(&link.expires_at).is_none_or(|e| e <= now) {
        return Err(NotRecorded::Expired);
    }
    Ok((link, policy))
}

/// Checks the answer, claims the link with the answer stored (from then
/// on it cannot be lost), writes it into the ticket. If that write fails the
/// answer is still taken: the repair pass (`office::surveys::repair_loop`)
/// writes it later.
async fn record(
    state: &State,
    hub: &Arc<Hub>,
    token: &str,
    a: &Answer,
) -> Result<String, NotRecorded> {
    let (link, policy) = open_link(state, token).await?;
    let survey = surveys::answer(
        &policy,
        a.efficiency,
        a.attitude,
        a.reasonableness,
        &a.comment,
    )
    .map_err(NotRecorded::Bad)?;
    let (id, now) = (link.id.clone(), state.service_now());
    let claim = state
        .db
        .run(move |c| links::claim(c, &id, &survey, now))
        .await
        .map_err(|_| NotRecorded::Unavailable)?;
    let link = match claim {
        Claim::Claimed(link) => link,
        Claim::Used => return Err(NotRecorded::Used),
        Claim::Expired => return Err(NotRecorded::Expired),
        Claim::Unknown => return Err(NotRecorded::Invalid),
        Claim::NotDone(_) => return Err(NotRecorded::NotDone),
    };
    let l = link.clone();
    let _ = state
        .db
        .run(move |c| {
            let sv = l.answer.as_deref().unwrap_or("{}");
            audit::record(
                c,
                Entry {
                    action: Action::SurveyAnswered,
                    actor_user_id: None,
                    subject: Some(&l.doc_id),
                    detail: serde_json::json!({
                        "link": l.id,
                        "answer": serde_json::from_str::<serde_json::Value>(sv).unwrap_or_default(),
                    }),
                    ip: None,
                },
            )
        })
        .await;
    match links::apply(hub, &link, now, state.webhook).await {
        Ok(Applied::Written) => Ok(link.ticket_no),
        Ok(Applied::AlreadyAnswered) => Err(NotRecorded::Already),
        Err(e) => {
            tracing::warn!(link = %link.id, error = %e, "a survey answer is taken but not yet in its ticket; the repair pass retries");
            Ok(link.ticket_no)
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Recorded {
    pub recorded: bool,
    pub ticket_no: String,
}

/// A new survey link and the address to give the customer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LinkMade {
    #[serde(flatten)]
    pub link: links::NewLink,
    pub url: String,
}

/// `POST /api/v1/survey-answers` (public: the token is the credential).
pub async fn answer_json(
    state: State,
    hub: HubData,
    body: super::input::Json<JsonAnswer>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    match record(&state, &hub, &b.token, &b.answer).await {
        Ok(ticket_no) => Ok(HttpResponse::Ok().json(Recorded {
            recorded: true,
            ticket_no,
        })),
        Err(e) => Err(e.api_error()),
    }
}

/// The public page: `/survey/{token}`.
pub fn configure_page(cfg: &mut web::ServiceConfig) {
    // Room for a 2000-character comment in any script (a CJK character is
    // ~9 bytes form-encoded); a form that cannot be read is answered as a
    // page, not as JSON.
    let form = web::FormConfig::default()
        .limit(32 * 1024)
        .error_handler(|err, _req| {
            let page = error_page(&NotRecorded::Bad(
                "please choose a score for each question and send the form again".into(),
            ));
            actix_web::error::InternalError::from_response(err, page).into()
        });
    cfg.service(
        web::resource("/survey/{token}")
            .app_data(form)
            .route(web::get().to(page))
            .route(web::post().to(submit)),
    );
}

fn html(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;\
             margin:2rem auto;padding:0 1rem;line-height:1.5}}fieldset{{margin:1rem 0;border:1px solid #ccc}}\
             label{{margin-right:.8rem;white-space:nowrap}}button{{font-size:1.1rem;padding:.5rem 1.5rem}}\
             textarea{{width:100%}}.error{{color:#a00}}</style></head><body>{body}</body></html>",
            title = escape(title)
        ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn error_page(e: &NotRecorded) -> HttpResponse {
    html(
        e.status(),
        "Service survey",
        &format!(
            "<h1>Service survey</h1><p class=\"error\">{}</p>",
            escape(&e.message())
        ),
    )
}

fn form(token: &str, ticket_no: &str, scale: i64, error: Option<&str>) -> String {
    let mut out = format!(
        "<h1>How did we do?</h1><p>Your service <strong>{}</strong> is complete. \
         Please rate it from 1 (poor) to {scale} (excellent).</p>",
        escape(ticket_no)
    );
    if let Some(e) = error {
        out += &format!("<p class=\"error\">{}</p>", escape(e));
    }
    out += &format!(
        "<form method=\"post\" action=\"/survey/{}\">",
        escape(token)
    );
    for (name, legend) in [
        (
            "efficiency",
            "How quickly and well was the problem resolved?",
        ),
        ("attitude", "How was the technician's attitude?"),
        ("reasonableness", "How reasonable was the solution?"),
    ] {
        out += &format!("<fieldset><legend>{legend}</legend>");
        for v in 1..=scale {
            out += &format!(
                "<label><input type=\"radio\" name=\"{name}\" value=\"{v}\" required> {v}</label>"
            );
        }
        out += "</fieldset>";
    }
    out += "<p><label for=\"comment\">Anything else? (optional)</label><br>\
            <textarea id=\"comment\" name=\"comment\" rows=\"4\" maxlength=\"2000\"></textarea></p>\
            <button type=\"submit\">Send</button></form>";
    out
}

async fn page(state: State, path: web::Path<String>) -> HttpResponse {
    let token = path.into_inner();
    match open_link(&state, &token).await {
        Ok((link, policy)) => html(
            StatusCode::OK,
            "Service survey",
            &form(&token, &link.ticket_no, policy.survey.scale, None),
        ),
        Err(e) => error_page(&e),
    }
}

async fn submit(
    state: State,
    hub: HubData,
    path: web::Path<String>,
    body: web::Form<Answer>,
) -> HttpResponse {
    let token = path.into_inner();
    match record(&state, &hub, &token, &body).await {
        Ok(ticket_no) => html(
            StatusCode::OK,
            "Thank you",
            &format!(
                "<h1>Thank you</h1><p>Your answer about service <strong>{}</strong> is recorded.</p>",
                escape(&ticket_no)
            ),
        ),
        Err(NotRecorded::Bad(m)) => match open_link(&state, &token).await {
            Ok((link, policy)) => html(
                StatusCode::BAD_REQUEST,
                "Service survey",
                &form(&token, &link.ticket_no, policy.survey.scale, Some(&m)),
            ),
            Err(e) => error_page(&e),
        },
        Err(e) => error_page(&e),
    }
}
