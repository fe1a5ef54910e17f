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

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use super::auth::AuthUser;
use super::{require_role, ApiError, State, OFFICE};
use crate::sync::hub::Hub;

type HubData = web::Data<Arc<Hub>>;

/// A comment line this often keeps proxies from closing a quiet stream and
/// finds readers that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);

enum Next {
    Frame(String),
    End,
}

pub async fn stream_events(
    state: State,
    hub: HubData,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    require_role(&user.0, OFFICE)?;
    let rx = (hub.commits.subscribe(), state.sla_updates.subscribe());
    let until = tokio::time::Instant::now() + state.keys.access_ttl;
    let first = Some("retry: 2000\nevent: ready\ndata: {}\n\n".to_string());
    let body = stream::unfold(
        (rx, first, false),
        move |((mut rx, mut sla), first, done)| async move {
            if done {
                return None;
            }
            if let Some(f) = first {
                return Some((
                    Ok::<_, actix_web::Error>(web::Bytes::from(f)),
                    ((rx, sla), None, false),
                ));
            }
            let next = tokio::select! {
                got = sla.recv() => match got {
                    Ok(doc) => Next::Frame(format!(
                        "event: sla\ndata: {}\n\n",
                        doc.map_or_else(|| serde_json::json!({}), |d| serde_json::json!({ "doc_id": d }))
                    )),
                    Err(RecvError::Lagged(_)) => Next::Frame("event: resync\ndata: {}\n\n".into()),
                    Err(RecvError::Closed) => Next::End,
                },
                got = rx.recv() => match got {
                    Ok(doc) => Next::Frame(format!(
                        "event: ticket\ndata: {}\n\n",
                        serde_json::json!({ "doc_id": doc })
                    )),
                    Err(RecvError::Lagged(_)) => Next::Frame("event: resync\ndata: {}\n\n".into()),
                    Err(RecvError::Closed) => Next::End,
                },
                _ = tokio::time::sleep(KEEPALIVE) => Next::Frame(": keepalive\n\n".into()),
                _ = tokio::time::sleep_until(until) => Next::Frame("event: expired\ndata: {}\n\n".into()),
            };
            match next {
                Next::End => None,
                Next::Frame(f) => {
                    let last = f.starts_with("event: expired");
                    Some((Ok(web::Bytes::from(f)), ((rx, sla), None, last)))
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
