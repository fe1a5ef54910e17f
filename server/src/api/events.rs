//! Live ticket changes for the web console, as server-sent events.
//!
//! Fed by the hub's commit broadcast, the same path that follows every
//! committed change (device syncs and API edits alike) right after its
//! service-history rows are stored: an event names a ticket whose rows just
//! moved, and the page re-reads what it shows. Events carry no ticket data,
//! so nothing is revealed beyond what the reader may list anyway (office
//! roles read every ticket).
//!
//! `sla` events follow the SLA watch: a ticket's stored SLA state was
//! rewritten (`{doc_id}`), or every ticket's was (`{}`, the periodic sweep).
//!
//! A stream ends when the access token that opened it expires (the console
//! then reconnects with a fresh one), and within `KEEPALIVE` of the account
//! being disabled, its password changed or its role leaving the office: the
//! account is looked at again with every keepalive. A reader that falls
//! behind is told to reload (`resync`) instead of being sent a partial
//! picture.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;
use actix_web::{web, HttpResponse};
use futures_util::stream;
use tokio::sync::broadcast::{self, error::RecvError};

use super::auth::AuthUser;
use super::{require_role, ApiError, State, OFFICE};
use crate::auth::accounts;
use crate::auth::jwt::Claims;
use crate::sync::hub::Hub;

type HubData = web::Data<Arc<Hub>>;

/// A comment line this often keeps proxies from closing a quiet stream and
/// finds readers that went away; the account is checked as often.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Open streams one account may hold (a console per tab, a few tabs); more
/// are refused with 429 rather than letting one user pile up connections.
const MAX_STREAMS_PER_USER: usize = 8;

fn open_streams() -> &'static Mutex<HashMap<String, usize>> {
    static OPEN: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// One open stream of a user, counted while it lives.
struct StreamSlot(String);

impl StreamSlot {
    fn take(user_id: &str) -> Option<Self> {
        let mut open = open_streams().lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user_id.to_string()).or_default();
        if *n >= MAX_STREAMS_PER_USER {
            return None;
        }
        *n += 1;
        Some(Self(user_id.to_string()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = open_streams().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.0);
            }
        }
    }
}

/// What the stream carries between frames.
struct Feed {
    db: crate::db::Db,
    claims: Claims,
    keepalive: tokio::time::Interval,
    commits: broadcast::Receiver<String>,
    sla: broadcast::Receiver<Option<String>>,
    until: tokio::time::Instant,
    started: bool,
    ended: bool,
    /// Held while the stream lives (the per-user limit).
    _slot: StreamSlot,
}

impl Feed {
    async fn next_frame(&mut self) -> Option<String> {
        if self.ended {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some("retry: 2000\nevent: ready\ndata: {}\n\n".into());
        }
        let frame = tokio::select! {
            got = self.commits.recv() => match got {
                Ok(doc) => event("ticket", serde_json::json!({ "doc_id": doc })),
                Err(RecvError::Lagged(_)) => event("resync", serde_json::json!({})),
                Err(RecvError::Closed) => return None,
            },
            got = self.sla.recv() => match got {
                Ok(Some(doc)) => event("sla", serde_json::json!({ "doc_id": doc })),
                Ok(None) => event("sla", serde_json::json!({})),
                Err(RecvError::Lagged(_)) => event("resync", serde_json::json!({})),
                Err(RecvError::Closed) => return None,
            },
            _ = self.keepalive.tick() => {
                if self.account_still_reads().await {
                    ": keepalive\n\n".into()
                } else {
                    self.ended = true;
                    event("expired", serde_json::json!({}))
                }
            },
            _ = tokio::time::sleep_until(self.until) => {
                self.ended = true;
                event("expired", serde_json::json!({}))
            }
        };
        Some(frame)
    }
}

impl Feed {
    /// The token's account still exists, is enabled, has the password it
    /// had and an office role. A database that does not answer keeps the
    /// stream (it carries nothing but ticket ids).
    async fn account_still_reads(&self) -> bool {
        let claims = self.claims.clone();
        match self
            .db
            .run(move |c| accounts::get_current(c, &claims))
            .await
        {
            Ok(Some(u)) => !u.disabled && OFFICE.contains(&u.role),
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

fn event(name: &str, data: serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

pub async fn stream_events(
    state: State,
    hub: HubData,
    req: HttpRequest,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    // AuthUser checked the token; its claims say when it expires.
    let claims = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| state.keys.verify(t).ok())
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "access token is invalid"))?;
    let left = (claims.exp - chrono::Utc::now().timestamp()).max(0) as u64;
    let left = Duration::from_secs(left).min(state.keys.access_ttl);
    let slot = StreamSlot::take(&user.0.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("at most {MAX_STREAMS_PER_USER} open event streams per account; close one"),
        )
    })?;
    let now = tokio::time::Instant::now();
    let feed = Feed {
        db: state.db.clone(),
        claims,
        keepalive: tokio::time::interval_at(now + KEEPALIVE, KEEPALIVE),
        commits: hub.commits.subscribe(),
        sla: state.sla_updates.subscribe(),
        until: now + left,
        started: false,
        ended: false,
        _slot: slot,
    };
    let body = stream::unfold(feed, |mut feed| async move {
        let frame = feed.next_frame().await?;
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(frame)), feed))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
