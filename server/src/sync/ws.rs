//! `GET /sync`: the WebSocket glue between actix-ws and the sans-IO `Session`.
//! One task per connection reads frames, executes the session's actions, and
//! writes what doc actors queue for it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, ProtocolError};
use fieldsync_shared::protocol::{Message, VerifiedSender};
use fieldsync_shared::DocumentId;

use serde::Deserialize;

use super::hub::{DocCommand, Hub, KillSwitch, PeerHandle};
use super::outbox::{outbox, Outbox, OutboxReader, Outgoing};
use super::presence;
use super::rate::{Budget, Exceeded};
use super::session::{close_code, Action, CloseReason, Session};
use crate::api::{ApiError, ApiState};
use crate::audit::{self, Action as AuditAction, Entry};
use crate::auth::accounts::{self, User};
use crate::auth::devices::{self, Device, DeviceError};
use crate::auth::jwt::TokenError;
use crate::db::transaction;
use crate::metrics::{ConnGauge, ConnState, METRICS};
use tracing::Instrument;

/// Who is on the other end, checked before the upgrade: no document data
/// flows for an unauthenticated connection.
pub struct Identity {
    pub user: User,
    pub device: Device,
    /// Access-token expiry (unix seconds): the connection closes then.
    pub expires_at: i64,
}

#[derive(Deserialize)]
struct SyncQuery {
    token: Option<String>,
    device: Option<String>,
    device_name: Option<String>,
    platform: Option<String>,
}

/// Browsers cannot set headers on a WebSocket, so the access token and the
/// device id travel in the query: `/sync?token=<access token>&device=<id>`
/// (optional `device_name`, `platform` on first use). Refusals are plain HTTP
/// 400/401/403 with the usual JSON error body.
async fn authenticate(req: &HttpRequest, api: &ApiState) -> Result<Identity, ApiError> {
    let q = web::Query::<SyncQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?
        .into_inner();
    let token = q.token.ok_or_else(|| {
        ApiError::unauthorized(
            "missing_token",
            "connect to /sync?token=<access token>&device=<device id>",
        )
    })?;
    let device_id = q.device.ok_or_else(|| {
        ApiError::bad_request("the `device` query parameter (a stable device id) is required")
    })?;
    let ip = req.peer_addr().map(|a| a.ip().to_string());
    identify(api, &token, device_id, q.device_name, q.platform, ip).await
}

/// Checks an access token and the device it is used from (registered on
/// first use; refused when revoked or another user's). Shared by the
/// WebSocket and the HTTP batch endpoint.
pub async fn identify(
    api: &ApiState,
    token: &str,
    device_id: String,
    device_name: Option<String>,
    platform: Option<String>,
    ip: Option<String>,
) -> Result<Identity, ApiError> {
    let claims = api.keys.verify(token).map_err(token_error)?;
    // Checked before any query: PostgreSQL refuses some bytes (NUL) in text.
    if !devices::valid_id(&device_id) {
        return Err(ApiError::bad_request(DeviceError::BadId.to_string()));
    }
    let (name, platform) = (
        device_name.unwrap_or_default(),
        platform.unwrap_or_default(),
    );
    let identity = api
        .db
        .run(move |c| {
            // Audit of a refusal is best-effort: a refusal must not turn into
            // a 500 because storage refuses writes.
            let refused = |c: &mut crate::db::DbConn, user: Option<&str>, why: &str| {
                if let Err(e) = audit::record(c, Entry { action: AuditAction::SyncRefused, actor_user_id: user, subject: Some(&device_id), detail: serde_json::json!({ "reason": why }), ip: ip.as_deref() }) {
                    tracing::warn!(error = %e, "could not audit a refused sync connection");
                }
            };
            let user = match accounts::get_current(c, &claims)? {
                Some(u) if !u.disabled => u,
                Some(u) => {
                    refused(c, Some(&u.id), "account disabled");
                    return Ok(Err(ApiError::unauthorized("user_disabled", "this account is disabled")));
                }
                None => return Ok(Err(ApiError::unauthorized("invalid_token", "access token is invalid"))),
            };
            // A known device connects with reads only: connecting and reading
            // must work while writes fail (disk full, database read-only).
            if let Some(device) = devices::find(c, &user.id, &device_id)? {
                if device.user_id == user.id && device.revoked_at.is_none() {
                    return Ok(Ok((Identity { user, device, expires_at: claims.exp }, false)));
                }
            }
            let result = transaction(c, |c| {
                let (device, new) = devices::register_or_touch(c, &user, &device_id, &name, &platform)?;
                if new {
                    audit::record(c, Entry { action: AuditAction::DeviceRegistered, actor_user_id: Some(&user.id), subject: Some(&device.id), detail: serde_json::json!({ "name": device.name, "platform": device.platform }), ip: ip.as_deref() })?;
                }
                Ok::<_, DeviceError>(device)
            });
            Ok(match result {
                Ok(device) => Ok((Identity { user, device, expires_at: claims.exp }, true)),
                Err(DeviceError::Db(e)) => return Err(e),
                Err(e @ DeviceError::BadId) => Err(ApiError::bad_request(e.to_string())),
                Err(e) => {
                    refused(c, Some(&user.id), &e.to_string());
                    Err(ApiError::forbidden(e.to_string()))
                }
            })
        })
        .await??;
    let (identity, written) = identity;
    let touch_id = identity.device.id.clone();
    if !written {
        // Last-seen is best-effort and off the connect path.
        let db = api.db.clone();
        tokio::spawn(async move {
            if let Err(e) = db.run(move |c| devices::touch(c, &touch_id)).await {
                tracing::debug!(error = %e, "could not update a device's last-seen time");
            }
        });
    }
    Ok(identity)
}

pub fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Expired => ApiError::unauthorized(
            "token_expired",
            "access token expired; refresh it and reconnect",
        ),
        TokenError::Invalid => ApiError::unauthorized("invalid_token", "access token is invalid"),
    }
}

pub async fn sync_endpoint(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Arc<Hub>>,
    api: crate::api::State,
) -> Result<HttpResponse, actix_web::Error> {
    let identity = authenticate(&req, &api).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let limit = hub.config.max_message_bytes;
    // actix-ws defaults (64 KiB frames, 1 MiB reassembled) are too small for
    // the first sync of a large ticket.
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    let peer_addr = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let (conn, out_rx) = Connection::new(hub.get_ref().clone(), session, peer_addr, identity);
    // A root span (the upgrade request ends now); the request id links them.
    let span = tracing::info_span!(
        parent: None,
        "sync_conn",
        conn = conn.conn,
        request_id = crate::request_id::of(&req).unwrap_or_default(),
        user = %conn.identity.user.username,
        device = %conn.identity.device.id,
    );
    actix_web::rt::spawn(conn.run(stream, out_rx).instrument(span));
    Ok(response)
}

struct Connection {
    hub: Arc<Hub>,
    ws: actix_ws::Session,
    proto: Session,
    conn: u64,
    peer_addr: String,
    handle: Option<PeerHandle>,
    out_tx: Outbox,
    /// Appended to the session ids of this device's relayed ephemerals.
    session_tag: String,
    verified: VerifiedSender,
    kill: Arc<KillSwitch>,
    docs: HashSet<DocumentId>,
    identity: Identity,
    /// The user's budget, shared with their other connections.
    budget: Arc<std::sync::Mutex<Budget>>,
    /// Size of the frame being handled (already charged to the budget).
    frame_len: usize,
    /// When the frame being handled arrived.
    frame_at: Instant,
    /// This connection in `fieldsync_connections{state}`.
    state: ConnGauge,
}

impl Connection {
    fn new(
        hub: Arc<Hub>,
        ws: actix_ws::Session,
        peer_addr: String,
        identity: Identity,
    ) -> (Self, OutboxReader) {
        let (out_tx, out_rx) = outbox(hub.config.outbox_limits());
        let proto = Session::new(
            hub.server_peer_id.clone(),
            Some(hub.storage_id.clone()),
            hub.config.chunk_limits(),
        );
        let conn = hub.next_conn_id();
        let budget = hub.budgets.for_user(&identity.user.id);
        let me = Self {
            hub,
            ws,
            proto,
            conn,
            peer_addr,
            handle: None,
            out_tx,
            session_tag: presence::session_tag(&identity.device.id),
            verified: presence::verified_sender(&identity.user),
            kill: Arc::new(KillSwitch::default()),
            docs: HashSet::new(),
            identity,
            budget,
            frame_len: 0,
            frame_at: Instant::now(),
            state: ConnGauge::new(),
        };
        (me, out_rx)
    }
}

impl Connection {
    async fn run(mut self, stream: AggregatedMessageStream, out_rx: OutboxReader) {
        let c = &mut self;
        METRICS.connections_open.inc();
        METRICS.connections_total.inc();
        tracing::debug!(conn = c.conn, addr = %c.peer_addr, "sync connection opened");
        let reason = c.event_loop(stream, out_rx).await;
        c.state.set(ConnState::Closing);
        c.cleanup().await;
        METRICS.connections_open.dec();
        tracing::debug!(conn = c.conn, peer = ?c.proto.peer_id(), ?reason, "sync connection closed");
        let close = reason.map(|r| actix_ws::CloseReason {
            code: CloseCode::from(r.code),
            description: Some(r.text),
        });
        let _ = c.ws.clone().close(close).await;
    }
}

impl Connection {
    async fn event_loop(
        &mut self,
        mut stream: AggregatedMessageStream,
        mut out_rx: OutboxReader,
    ) -> Option<CloseReason> {
        let mut ping = tokio::time::interval(self.hub.config.ping_interval);
        let mut last_heard = Instant::now();
        let kill = self.kill.clone();
        let token_left = (self.identity.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
        let token_expiry = tokio::time::sleep(std::time::Duration::from_secs(token_left));
        tokio::pin!(token_expiry);
        loop {
            tokio::select! {
                _ = &mut token_expiry => {
                    return Some(CloseReason {
                        code: close_code::POLICY,
                        text: "access token expired; refresh it and reconnect".into(),
                    });
                }
                frame = stream.recv() => {
                    last_heard = Instant::now();
                    let actions = match frame {
                        None => return None,
                        Some(Ok(AggregatedMessage::Binary(bytes))) => {
                            METRICS.frames_received.inc();
                            self.frame_len = bytes.len();
                            self.frame_at = Instant::now();
                            match self.charge(|b| b.message(bytes.len())) {
                                Ok(()) => self.proto.on_frame(&bytes),
                                Err(e) => self.proto.fail(close_code::POLICY, &e.to_string()),
                            }
                        }
                        Some(Ok(AggregatedMessage::Text(_))) => self.proto.on_text_frame(),
                        Some(Ok(AggregatedMessage::Ping(p))) => {
                            if self.ws.pong(&p).await.is_err() { return None; }
                            continue;
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => continue,
                        Some(Ok(AggregatedMessage::Close(_))) => return None,
                        Some(Err(ProtocolError::Overflow)) => self.proto.fail(
                            close_code::TOO_BIG,
                            &format!("message exceeds the {} byte limit", self.hub.config.max_message_bytes),
                        ),
                        // The peer vanished mid-frame: a disconnect, not bad input.
                        Some(Err(ProtocolError::Io(_))) => return None,
                        Some(Err(e)) => self.proto.fail(close_code::PROTOCOL_ERROR, &format!("WebSocket protocol error: {e}")),
                    };
                    if let Some(reason) = self.execute(actions).await {
                        return Some(reason);
                    }
                }
                Some(msg) = out_rx.recv() => {
                    if self.send_queued(msg).await.is_err() { return None; }
                }
                reason = kill.triggered() => {
                    // Deliver what was queued before the kill (e.g. the error message).
                    while let Some(msg) = out_rx.try_recv() {
                        if self.send_queued(msg).await.is_err() { break; }
                    }
                    return Some(reason);
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.hub.config.peer_timeout {
                        return Some(CloseReason { code: close_code::GOING_AWAY, text: "no traffic or pong; timed out".into() });
                    }
                    if self.ws.ping(b"").await.is_err() { return None; }
                }
            }
        }
    }

    async fn send(&mut self, msg: &Message) -> Result<(), actix_ws::Closed> {
        self.ws
            .binary(fieldsync_shared::protocol::encode(msg))
            .await
    }

    /// Writes what a doc actor queued; the frame exists only while it is
    /// written (a relayed ephemeral is shared until then).
    async fn send_queued(&mut self, item: Outgoing) -> Result<(), actix_ws::Closed> {
        self.ws.binary(item.encode()).await
    }

    /// Runs the session's actions; returns a close reason to end the connection.
    async fn execute(&mut self, actions: Vec<Action>) -> Option<CloseReason> {
        for action in actions {
            match action {
                Action::Send(msg) => {
                    if let Message::Error { message, .. } = &msg {
                        METRICS.protocol_errors.inc();
                        tracing::warn!(conn = self.conn, addr = %self.peer_addr, peer = ?self.handle.as_ref().map(|h| &h.peer_id), error = %message, "protocol error");
                    }
                    if self.send(&msg).await.is_err() {
                        return Some(CloseReason {
                            code: close_code::NORMAL,
                            text: String::new(),
                        });
                    }
                }
                Action::Joined(peer_id) => {
                    if self.handle.is_none() {
                        if let Err(e) = self.hub.register_peer(
                            &self.identity.device.id,
                            &peer_id,
                            self.conn,
                            self.kill.clone(),
                        ) {
                            return self.fail_now(close_code::POLICY, &e.to_string()).await;
                        }
                        self.handle = Some(PeerHandle {
                            conn: self.conn,
                            peer_id,
                            user_id: self.identity.user.id.clone(),
                            device_id: self.identity.device.id.clone(),
                            device_registered_at: self.identity.device.created_at,
                            role: self.identity.user.role,
                            out: self.out_tx.clone(),
                            kill: self.kill.clone(),
                        });
                        self.state.set(ConnState::Open);
                    }
                }
                Action::Sync {
                    doc,
                    msg,
                    request,
                    cost,
                } => {
                    let Some(peer) = self.handle.clone() else {
                        continue;
                    };
                    let arrived = self.frame_len;
                    if let Err(e) =
                        self.charge(|b| b.sync_cost(cost.rows, cost.inflated_bytes, arrived))
                    {
                        return self.fail_now(close_code::POLICY, &e.to_string()).await;
                    }
                    let limit = self.hub.config.max_docs_per_session;
                    if !self.docs.contains(&doc) && self.docs.len() >= limit {
                        METRICS.limit_violations.inc();
                        let msg = format!("too many documents in one session (limit {limit}); reconnect to sync others");
                        return self.fail_now(close_code::POLICY, &msg).await;
                    }
                    self.docs.insert(doc);
                    self.hub
                        .dispatch(
                            doc,
                            DocCommand::Sync {
                                peer,
                                msg,
                                request,
                                received: self.frame_at,
                                span: tracing::Span::current(),
                            },
                        )
                        .await;
                }
                Action::Ephemeral(msg) => {
                    let Some(doc) = msg.document_id() else {
                        continue;
                    };
                    if !self.charge_ephemeral(self.frame_len) {
                        METRICS.ephemeral_dropped.inc();
                        continue;
                    }
                    let Some(frame) = presence::relay_frame(msg, &self.session_tag, &self.verified)
                    else {
                        continue;
                    };
                    if !self.hub.relay_ephemeral(doc, self.conn, Arc::new(frame)) {
                        METRICS.ephemeral_dropped.inc();
                    }
                }
                Action::Close(reason) => return Some(reason),
            }
        }
        None
    }

    /// Charges the user's budget; going over it is counted and logged.
    fn charge(&self, f: impl FnOnce(&mut Budget) -> Result<(), Exceeded>) -> Result<(), Exceeded> {
        let result = f(&mut self.budget.lock().unwrap_or_else(|e| e.into_inner()));
        if let Err(e) = &result {
            METRICS.limit_violations.inc();
            tracing::warn!(conn = self.conn, user = %self.identity.user.id, error = %e, "sync rate limit");
        }
        result
    }

    fn charge_ephemeral(&self, bytes: usize) -> bool {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        budget.ephemeral(bytes)
    }

    /// Sends the protocol error and returns the close reason.
    async fn fail_now(&mut self, code: u16, text: &str) -> Option<CloseReason> {
        tracing::warn!(conn = self.conn, addr = %self.peer_addr, device = %self.identity.device.id, error = %text, "closing sync connection");
        let mut reason = None;
        for action in self.proto.fail(code, text) {
            match action {
                Action::Send(m) => {
                    let _ = self.send(&m).await;
                }
                Action::Close(r) => reason = Some(r),
                _ => {}
            }
        }
        reason
    }

    async fn cleanup(&mut self) {
        for doc in self.docs.drain() {
            self.hub
                .dispatch_if_loaded(doc, DocCommand::PeerLeft { conn: self.conn })
                .await;
        }
        if let Some(h) = &self.handle {
            self.hub.unregister_peer(&h.peer_id, self.conn);
        }
    }
}
