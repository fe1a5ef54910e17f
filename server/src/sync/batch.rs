//! `POST /api/v1/sync/batch`: sync messages for many documents in one HTTP
//! request, for mobile background sync where a WebSocket is not possible.
//!
//! Each message goes through the same doc actor as a WebSocket message —
//! share policy, write validation, commit before reply — as a short-lived
//! peer: the server keeps no sync state between requests, so a client runs
//! rounds (send what it has, apply the replies) until it has nothing left to
//! send; the Rust client does this with `Device::start_batch_sync`,
//! `batch_outgoing` and `batch_incoming`.
//!
//! Request (JSON; `Authorization: Bearer <access token>`):
//! `{"device": "<device id>", "messages": [{"document_id": "…", "data": "<base64 sync message>"}]}`
//! Response: `{"replies": [{"document_id", "status": "ok"|"unavailable"|"error", "data"?, "error"?}]}`
//! — one reply per message, in order. A bad message gets an `error` reply
//! and touches nothing else; the other messages are still processed.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use automerge::sync;
use base64::Engine;
use fieldsync_shared::protocol::Message;
use fieldsync_shared::DocumentId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::chunk_guard::{self, ChunkLimits, Refusal};
use super::hub::{DocCommand, Hub, KillSwitch, PeerHandle};
use super::outbox::{outbox, OutboxLimits, Outgoing};
use super::rate::Budget;
use super::ws::{identify, token_error, Identity};
use crate::api::{ApiError, State};
use crate::metrics::METRICS;

/// Most documents in one request.
pub const MAX_MESSAGES: usize = 500;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct BatchRequest {
    /// The device's id (as in `/sync?device=`), registered on first use.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    device: String,
    #[serde(default)]
    device_name: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[schema(max_items = 500)]
    messages: Vec<BatchMessage>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct BatchMessage {
    document_id: String,
    /// A base64 Automerge sync message.
    data: String,
}

/// One reply per message: `ok` (with the server's sync message in
/// `data`, when it has one) or `error`.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct BatchReply {
    document_id: String,
    #[schema(value_type = String)]
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct BatchReplies {
    replies: Vec<BatchReply>,
}

impl BatchReply {
    fn error(document_id: String, e: impl ToString) -> Self {
        Self {
            document_id,
            status: "error",
            data: None,
            error: Some(e.to_string()),
        }
    }
}

pub async fn batch_endpoint(
    req: HttpRequest,
    mut payload: web::Payload,
    hub: web::Data<Arc<Hub>>,
    api: State,
) -> Result<HttpResponse, ApiError> {
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("missing_token", "send Authorization: Bearer <access token>")
        })?
        .to_string();
    // The token is checked before a byte of the body is read: an anonymous
    // caller must not make the server buffer and parse megabytes.
    let claims = api.keys.verify(&token).map_err(token_error)?;
    // One batch at a time per user, and a few in all: bodies are buffered.
    let _slot = hub.batch_slots.enter(&claims.sub).map_err(|busy| {
        let mut e = ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "batch_in_progress",
            busy.to_string(),
        );
        e.retry_after = Some(1);
        e
    })?;
    // A batch may carry many documents' messages, base64-encoded (4/3).
    let limit = hub.config.max_message_bytes.saturating_mul(4);
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("request interrupted: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("batch larger than {limit} bytes; split it"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let received = std::time::Instant::now();
    let batch: BatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid batch body: {e}")))?;
    drop(body);
    if batch.messages.len() > MAX_MESSAGES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_MESSAGES} messages per batch; split it"
        )));
    }
    let ip = req.peer_addr().map(|a| a.ip().to_string());
    let identity = identify(
        &api,
        &token,
        batch.device,
        batch.device_name,
        batch.platform,
        ip,
    )
    .await?;
    let identity = Arc::new(identity);
    // Each message is measured and charged like a WebSocket message; the
    // ones over the user's budget get an error reply and are not applied.
    let budget = hub.budgets.for_user(&identity.user.id);
    let limits = hub.config.chunk_limits();
    let mut replies = vec![];
    let mut accepted = vec![];
    for m in batch.messages {
        match admit(&m, limits, hub.config.max_message_bytes, &budget) {
            Ok((doc, msg)) => accepted.push((replies.len(), doc, msg)),
            Err(e) => {
                METRICS.protocol_errors.inc();
                replies.push(BatchReply::error(m.document_id.clone(), e));
                continue;
            }
        }
        replies.push(BatchReply::error(m.document_id, "not processed"));
    }
    // Every document at once: their commits share group-commit transactions.
    let done = futures_util::future::join_all(accepted.into_iter().map(|(i, doc, msg)| {
        let (hub, who) = (hub.get_ref().clone(), identity.clone());
        async move { (i, one(hub, who, doc, msg, received).await) }
    }))
    .await;
    for (i, reply) in done {
        let document_id = std::mem::take(&mut replies[i].document_id);
        replies[i] = BatchReply {
            document_id,
            ..reply
        };
    }
    Ok(HttpResponse::Ok().json(BatchReplies { replies }))
}

/// Decodes, measures and charges one message of a batch.
fn admit(
    m: &BatchMessage,
    limits: ChunkLimits,
    max_message_bytes: usize,
    budget: &std::sync::Mutex<Budget>,
) -> Result<(DocumentId, sync::Message), String> {
    let doc =
        DocumentId::parse_url_or_id(&m.document_id).map_err(|e| format!("bad document id: {e}"))?;
    let bytes = B64
        .decode(m.data.as_bytes())
        .map_err(|e| format!("`data` is not base64: {e}"))?;
    if bytes.is_empty() {
        return Err("`data` is empty".to_string());
    }
    if bytes.len() > max_message_bytes {
        return Err(format!(
            "`data` is larger than {max_message_bytes} bytes; split it"
        ));
    }
    let mut budget = budget.lock().unwrap_or_else(|e| e.into_inner());
    budget.message(bytes.len()).map_err(|e| e.to_string())?;
    let (msg, cost) = chunk_guard::admit(doc, &bytes, limits).map_err(|r| match r {
        Refusal::Malformed(e) | Refusal::TooBig(e) => e,
    })?;
    budget
        .sync_cost(cost.rows, cost.inflated_bytes, bytes.len())
        .map_err(|e| {
            METRICS.limit_violations.inc();
            e.to_string()
        })?;
    Ok((doc, msg))
}

async fn one(
    hub: Arc<Hub>,
    who: Arc<Identity>,
    doc: DocumentId,
    msg: sync::Message,
    received: std::time::Instant,
) -> BatchReply {
    let (out, mut inbox) = outbox(OutboxLimits {
        max_bytes: usize::MAX,
        max_messages: 8,
    });
    let peer = PeerHandle {
        conn: hub.next_conn_id(),
        peer_id: format!("batch-{}", who.device.id),
        user_id: who.user.id.clone(),
        device_id: who.device.id.clone(),
        device_registered_at: who.device.created_at,
        role: who.user.role,
        out,
        kill: Arc::new(KillSwitch::default()),
    };
    let conn = peer.conn;
    hub.dispatch(
        doc,
        DocCommand::Sync {
            peer,
            msg,
            request: false,
            received,
            span: tracing::Span::current(),
        },
    )
    .await;
    let (done, handled) = oneshot::channel();
    hub.dispatch(doc, DocCommand::Barrier(done)).await;
    let _ = handled.await;
    hub.dispatch_if_loaded(doc, DocCommand::PeerLeft { conn })
        .await;
    let mut reply = BatchReply {
        document_id: String::new(),
        status: "ok",
        data: None,
        error: None,
    };
    while let Some(Outgoing::Message(msg)) = inbox.try_recv() {
        match msg {
            Message::Sync { data, .. } => reply.data = Some(B64.encode(data)),
            Message::DocUnavailable { .. } => reply.status = "unavailable",
            Message::Error { message, .. } => {
                reply.status = "error";
                reply.error = Some(message);
            }
            _ => {}
        }
    }
    reply
}
