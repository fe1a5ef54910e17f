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
//! A stream lasts as long as the access token that opened it; the console
//! then reconnects with a fresh one, so a disabled account or changed role
//! stops receiving within one token lifetime. A reader that falls behind is
//! told to reload (`resync`) instead of being sent a partial picture.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use futures_util::stream;
use tokio::sync::broadcast::{self, error::RecvError};

use super::auth::AuthUser;
use super::{require_role, ApiError, State, OFFICE};
use crate::sync::hub::Hub;

type HubData = web::Data<Arc<Hub>>;

/// A comment line this often keeps proxies from closing a quiet stream and
/// finds readers that went away.
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
            _ = tokio::time::sleep(KEEPALIVE) => ": keepalive\n\n".into(),
            _ = tokio::time::sleep_until(self.until) => {
                self.ended = true;
                event("expired", serde_json::json!({}))
            }
        };
        Some(frame)
    }
}

fn event(name: &str, data: serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

pub async fn stream_events(
    state: State,
    hub: HubData,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let slot = StreamSlot::take(&user.0.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("at most {MAX_STREAMS_PER_USER} open event streams per account; close one"),
        )
    })?;
    let feed = Feed {
        commits: hub.commits.subscribe(),
        sla: state.sla_updates.subscribe(),
        until: tokio::time::Instant::now() + state.keys.access_ttl,
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
