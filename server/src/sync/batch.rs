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
use tokio::sync::{mpsc, oneshot};

use super::hub::{DocCommand, Hub, KillSwitch, PeerHandle};
use super::ws::{identify, Identity};
use crate::api::{ApiError, State};
use crate::metrics::METRICS;

/// Most documents in one request.
pub const MAX_MESSAGES: usize = 500;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
struct BatchRequest {
    device: String,
    #[serde(default)]
    device_name: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    messages: Vec<BatchMessage>,
}

#[derive(Deserialize)]
struct BatchMessage {
    document_id: String,
    data: String,
}

#[derive(Serialize, Debug)]
struct BatchReply {
    document_id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
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
    let batch: BatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid batch body: {e}")))?;
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
    // Every document at once: their commits share group-commit transactions.
    let replies = futures_util::future::join_all(
        batch
            .messages
            .into_iter()
            .map(|m| one(hub.get_ref().clone(), identity.clone(), m)),
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "replies": replies })))
}

async fn one(hub: Arc<Hub>, who: Arc<Identity>, m: BatchMessage) -> BatchReply {
    let doc = match DocumentId::parse_url_or_id(&m.document_id) {
        Ok(d) => d,
        Err(e) => return BatchReply::error(m.document_id, format!("bad document id: {e}")),
    };
    let msg = match B64
        .decode(m.data.as_bytes())
        .map_err(|e| format!("`data` is not base64: {e}"))
        .and_then(|b| {
            if b.is_empty() {
                return Err("`data` is empty".to_string());
            }
            sync::Message::decode(&b)
                .map_err(|e| format!("`data` is not an Automerge sync message: {e}"))
        }) {
        Ok(msg) => msg,
        Err(e) => {
            METRICS.protocol_errors.inc();
            return BatchReply::error(m.document_id, e);
        }
    };
    let (out, mut inbox) = mpsc::channel(8);
    let peer = PeerHandle {
        conn: hub.next_conn_id(),
        peer_id: format!("batch-{}", who.device.id),
        user_id: who.user.id.clone(),
        device_id: who.device.id.clone(),
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
        },
    )
    .await;
    let (done, handled) = oneshot::channel();
    hub.dispatch(doc, DocCommand::Barrier(done)).await;
    let _ = handled.await;
    hub.dispatch_if_loaded(doc, DocCommand::PeerLeft { conn })
        .await;
    let mut reply = BatchReply {
        document_id: m.document_id,
        status: "ok",
        data: None,
        error: None,
    };
    while let Ok(msg) = inbox.try_recv() {
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
