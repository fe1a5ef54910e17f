//! The Rust device client: a local document store plus sync with a fieldsync
//! (or any automerge-repo) server over WebSocket.
//!
//! Offline first: `change` always succeeds locally (and is written to disk when
//! the device has a directory). Whatever the server has not acknowledged is the
//! offline queue; `connect` syncs every local document, so edits made offline
//! reach the server on reconnect. "Acknowledged" means the server reported heads
//! that include ours — fieldsync only does that after committing them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::{AutoCommit, ChangeHash};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::doc_id::DocumentId;
use crate::protocol::{self, Message, PeerId, PeerMetadata, PROTOCOL_V1};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("WebSocket error: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("unknown document {0}")]
    UnknownDocument(DocumentId),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("local storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored document {0} is corrupt: {1}")]
    Corrupt(PathBuf, Box<automerge::AutomergeError>),
}

/// What the device knows about one document's availability on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocStatus {
    /// We have it locally (maybe not yet on the server).
    Local,
    /// Requested from the server, nothing received yet.
    Requesting,
    /// The server said nobody has it.
    Unavailable,
}

struct LocalDoc {
    doc: AutoCommit,
    /// Sync state with the server for the current connection.
    sync: sync::State,
    status: DocStatus,
}

/// Called after a remote change was applied to a document.
pub type RemoteChangeHook = Box<dyn Fn(DocumentId, &mut AutoCommit) + Send + Sync>;

struct Shared {
    peer_id: PeerId,
    dir: Option<PathBuf>,
    docs: Mutex<HashMap<DocumentId, LocalDoc>>,
    /// Documents with local changes not yet offered to the server.
    dirty: Mutex<HashSet<DocumentId>>,
    wake: Notify,
    /// Bumped on every event, for `wait_until`.
    events: watch::Sender<u64>,
    conn: Mutex<ConnState>,
    on_remote_change: Mutex<Option<RemoteChangeHook>>,
    ephemeral_inbox: Mutex<Vec<ReceivedEphemeral>>,
    ephemeral_outbox: Mutex<Vec<Message>>,
    /// Every head the server has claimed to hold, per document: the server
    /// vouches that those changes (and their ancestors) are stored.
    server_heads: Mutex<HashMap<DocumentId, HashSet<ChangeHash>>>,
}

#[derive(Default)]
struct ConnState {
    /// Set by `connect`, cleared (before the wake-up) when the connection ends.
    connected: bool,
    server_peer: Option<PeerId>,
    server_storage_id: Option<String>,
    stop: Option<Arc<Notify>>,
    task: Option<tokio::task::JoinHandle<()>>,
    last_error: Option<String>,
    last_close: Option<(u16, String)>,
}

/// An ephemeral message relayed by the server.
#[derive(Clone, Debug)]
pub struct ReceivedEphemeral {
    pub document_id: DocumentId,
    pub sender_id: PeerId,
    /// As relayed: the sender's session id with the server's per-device tag.
    pub session_id: String,
    /// The signed-in user behind it, as the server verified it.
    pub sender: Option<crate::protocol::VerifiedSender>,
    pub data: Vec<u8>,
}

/// A device: cheap to clone, all clones share one store and connection.
#[derive(Clone)]
pub struct Device {
    shared: Arc<Shared>,
}

impl Device {
    /// An in-memory device (tests, load generator).
    pub fn new(peer_id: impl Into<PeerId>) -> Self {
        Self::build(peer_id.into(), None, HashMap::new())
    }

    /// A device that keeps its documents in `dir` (`<documentId>.automerge`),
    /// loading what a previous run left there.
    pub fn open(peer_id: impl Into<PeerId>, dir: impl AsRef<Path>) -> Result<Self, ClientError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let mut docs = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().and_then(|e| e.to_str()) != Some("automerge") {
                continue;
            }
            let Ok(id) = stem.parse::<DocumentId>() else {
                continue;
            };
            let bytes = std::fs::read(&path)?;
            let doc = AutoCommit::load(&bytes)
                .map_err(|e| ClientError::Corrupt(path.clone(), Box::new(e)))?;
            docs.insert(
                id,
                LocalDoc {
                    doc,
                    sync: sync::State::new(),
                    status: DocStatus::Local,
                },
            );
        }
        Ok(Self::build(peer_id.into(), Some(dir), docs))
    }

    fn build(peer_id: PeerId, dir: Option<PathBuf>, docs: HashMap<DocumentId, LocalDoc>) -> Self {
        let dirty = docs.keys().copied().collect();
        Self {
            shared: Arc::new(Shared {
                peer_id,
                dir,
                docs: Mutex::new(docs),
                dirty: Mutex::new(dirty),
                wake: Notify::new(),
                events: watch::channel(0).0,
                conn: Mutex::new(ConnState::default()),
                on_remote_change: Mutex::new(None),
                ephemeral_inbox: Mutex::new(Vec::new()),
                ephemeral_outbox: Mutex::new(Vec::new()),
                server_heads: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn peer_id(&self) -> &str {
        &self.shared.peer_id
    }

    /// Creates a document locally; it reaches the server on the next sync.
    pub fn create(&self, init: impl FnOnce(&mut AutoCommit)) -> DocumentId {
        let id = DocumentId::random();
        let mut doc = AutoCommit::new();
        init(&mut doc);
        commit_now(&mut doc);
        self.insert_doc(id, doc, DocStatus::Local);
        id
    }

    /// Adds a document received out of band (e.g. a saved file).
    pub fn import(&self, id: DocumentId, doc: AutoCommit) {
        self.insert_doc(id, doc, DocStatus::Local);
    }

    fn insert_doc(&self, id: DocumentId, mut doc: AutoCommit, status: DocStatus) {
        let _ = self.persist(id, &mut doc);
        lock(&self.shared.docs).insert(
            id,
            LocalDoc {
                doc,
                sync: sync::State::new(),
                status,
            },
        );
        self.mark_dirty(id);
    }

    /// Starts syncing a document this device does not have (automerge-repo's
    /// `find`): it is requested from the server.
    pub fn want(&self, id: DocumentId) {
        {
            let mut docs = lock(&self.shared.docs);
            if docs.contains_key(&id) {
                return;
            }
            docs.insert(
                id,
                LocalDoc {
                    doc: AutoCommit::new(),
                    sync: sync::State::new(),
                    status: DocStatus::Requesting,
                },
            );
        }
        self.mark_dirty(id);
    }

    /// Edits a document locally (works offline) and schedules a sync.
    pub fn change<R>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&mut AutoCommit) -> R,
    ) -> Result<R, ClientError> {
        let r = {
            let mut docs = lock(&self.shared.docs);
            let local = docs.get_mut(&id).ok_or(ClientError::UnknownDocument(id))?;
            let r = f(&mut local.doc);
            commit_now(&mut local.doc);
            local.status = DocStatus::Local;
            self.persist(id, &mut local.doc)?;
            r
        };
        self.mark_dirty(id);
        Ok(r)
    }

    pub fn read<R>(&self, id: DocumentId, f: impl FnOnce(&mut AutoCommit) -> R) -> Option<R> {
        lock(&self.shared.docs).get_mut(&id).map(|l| f(&mut l.doc))
    }

    pub fn heads(&self, id: DocumentId) -> Vec<ChangeHash> {
        self.read(id, |d| d.get_heads()).unwrap_or_default()
    }

    pub fn status(&self, id: DocumentId) -> Option<DocStatus> {
        lock(&self.shared.docs).get(&id).map(|l| l.status)
    }

    pub fn documents(&self) -> Vec<DocumentId> {
        lock(&self.shared.docs).keys().copied().collect()
    }

    /// True when the server has acknowledged every change we have.
    pub fn acknowledged(&self, id: DocumentId) -> bool {
        let mut docs = lock(&self.shared.docs);
        let Some(local) = docs.get_mut(&id) else {
            return false;
        };
        let ours = local.doc.get_heads();
        match &local.sync.their_heads {
            Some(theirs) => ours.iter().all(|h| theirs.contains(h)),
            None => false,
        }
    }

    /// Every head the server ever reported for `id` on any connection. With
    /// fieldsync these are acknowledgements: each one, and everything before
    /// it, must be in the server's storage (the durability tests check this).
    pub fn server_claimed_heads(&self, id: DocumentId) -> Vec<ChangeHash> {
        lock(&self.shared.server_heads)
            .get(&id)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Documents whose changes the server has not acknowledged (the offline queue).
    pub fn pending(&self) -> Vec<DocumentId> {
        self.documents()
            .into_iter()
            .filter(|id| self.status(*id) == Some(DocStatus::Local) && !self.acknowledged(*id))
            .collect()
    }

    /// HTTP batch sync (`POST /api/v1/sync/batch`), for when a WebSocket is
    /// not possible (mobile background sync). The server keeps no sync state
    /// between requests, so a batch session starts from scratch: call this,
    /// then alternate `batch_outgoing` (POST those) and `batch_incoming` (for
    /// each reply) until `batch_outgoing` returns nothing. Do not mix with a
    /// live WebSocket connection.
    pub fn start_batch_sync(&self) {
        let mut docs = lock(&self.shared.docs);
        let mut dirty = lock(&self.shared.dirty);
        for (id, local) in docs.iter_mut() {
            local.sync = sync::State::new();
            dirty.insert(*id);
        }
    }

    /// The sync messages to send in the next batch request.
    pub fn batch_outgoing(&self) -> Vec<(DocumentId, Vec<u8>)> {
        collect_outgoing(self, "server")
            .into_iter()
            .filter_map(|m| match m {
                Message::Sync {
                    document_id, data, ..
                }
                | Message::Request {
                    document_id, data, ..
                } => Some((document_id, data)),
                _ => None,
            })
            .collect()
    }

    /// Applies one reply of a batch: the server's sync message, or None when
    /// it answered that the document is unavailable (unknown or not shared).
    pub fn batch_incoming(&self, id: DocumentId, reply: Option<Vec<u8>>) {
        let server = String::from("server");
        let msg = match reply {
            Some(data) => Message::Sync {
                sender_id: server.clone(),
                target_id: self.shared.peer_id.clone(),
                document_id: id,
                data,
            },
            None => Message::DocUnavailable {
                sender_id: server,
                target_id: self.shared.peer_id.clone(),
                document_id: id,
            },
        };
        handle_incoming(self, msg);
    }

    pub fn set_remote_change_hook(&self, hook: RemoteChangeHook) {
        *lock(&self.shared.on_remote_change) = Some(hook);
    }

    pub fn send_ephemeral(&self, id: DocumentId, data: Vec<u8>) {
        let conn = lock(&self.shared.conn);
        if let (Some(server), Some(_)) = (&conn.server_peer, &conn.stop) {
            let msg = Message::Ephemeral {
                sender_id: self.shared.peer_id.clone(),
                target_id: server.clone(),
                count: EPHEMERAL_COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                session_id: self.shared.peer_id.clone(),
                document_id: id,
                data,
                verified_sender: None,
            };
            drop(conn);
            lock(&self.shared.ephemeral_outbox).push(msg);
            self.shared.wake.notify_one();
        }
    }

    pub fn ephemeral_received(&self) -> Vec<ReceivedEphemeral> {
        lock(&self.shared.ephemeral_inbox).clone()
    }

    pub fn is_connected(&self) -> bool {
        lock(&self.shared.conn).connected
    }

    /// The server's storage id (from the handshake).
    pub fn server_storage_id(&self) -> Option<String> {
        lock(&self.shared.conn).server_storage_id.clone()
    }

    /// The last protocol error the server sent.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.conn).last_error.clone()
    }

    /// The close code and reason of the last connection, if the server closed it.
    pub fn last_close(&self) -> Option<(u16, String)> {
        lock(&self.shared.conn).last_close.clone()
    }

    /// Connects, completes the handshake, and starts syncing every local
    /// document in the background.
    pub async fn connect(&self, url: &str) -> Result<(), ClientError> {
        self.disconnect().await;
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(Box::new)?;
        let join = Message::Join {
            sender_id: self.shared.peer_id.clone(),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: self.shared.dir.is_none(),
            }),
            supported_protocol_versions: vec![PROTOCOL_V1.into()],
        };
        ws.send(WsMessage::Binary(protocol::encode(&join).into()))
            .await
            .map_err(Box::new)?;
        let (server_peer, storage) = loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .map_err(|_| ClientError::Handshake("no peer message within 10 s".into()))?;
            match frame {
                Some(Ok(WsMessage::Binary(b))) => match protocol::decode(&b) {
                    Ok(Message::Peer {
                        sender_id,
                        peer_metadata,
                        ..
                    }) => break (sender_id, peer_metadata.and_then(|m| m.storage_id)),
                    Ok(Message::Error { message, .. }) => {
                        return Err(ClientError::Handshake(message))
                    }
                    Ok(other) => {
                        return Err(ClientError::Handshake(format!(
                            "unexpected {}",
                            other.type_name()
                        )))
                    }
                    Err(e) => return Err(ClientError::Handshake(e.to_string())),
                },
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(ClientError::Handshake(format!(
                        "closed: {:?}",
                        frame.map(|f| f.reason.to_string())
                    )))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Box::new(e).into()),
                None => return Err(ClientError::Handshake("connection closed".into())),
            }
        };
        // A new connection means fresh sync states; every doc is offered again.
        {
            let mut docs = lock(&self.shared.docs);
            let mut dirty = lock(&self.shared.dirty);
            for (id, local) in docs.iter_mut() {
                local.sync = sync::State::new();
                dirty.insert(*id);
            }
        }
        let stop = Arc::new(Notify::new());
        {
            // Marked connected before the task runs, so a connection that ends
            // at once cannot be left looking alive.
            let mut conn = lock(&self.shared.conn);
            conn.connected = true;
            conn.server_peer = Some(server_peer.clone());
            conn.server_storage_id = storage;
            conn.stop = Some(stop.clone());
            conn.last_error = None;
            conn.last_close = None;
        }
        let task = tokio::spawn(run_connection(self.clone(), ws, server_peer, stop));
        lock(&self.shared.conn).task = Some(task);
        self.shared.wake.notify_one();
        self.bump();
        Ok(())
    }

    /// Goes offline. Local edits keep working and are synced on the next connect.
    pub async fn disconnect(&self) {
        let (stop, task) = {
            let mut conn = lock(&self.shared.conn);
            (conn.stop.take(), conn.task.take())
        };
        if let Some(stop) = stop {
            stop.notify_one();
        }
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Waits until `pred` holds, re-checking after every sync event.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Device) -> bool,
    ) -> Result<(), ClientError> {
        let mut rx = self.shared.events.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return if pred(self) {
                        Ok(())
                    } else {
                        Err(ClientError::Timeout(timeout, what.to_string()))
                    };
                }
            }
        }
    }

    /// Waits until the server has acknowledged all our changes to `id`.
    pub async fn wait_acknowledged(
        &self,
        id: DocumentId,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.wait_until(timeout, &format!("acknowledgement of {id}"), |d| {
            d.acknowledged(id)
        })
        .await
    }

    fn mark_dirty(&self, id: DocumentId) {
        lock(&self.shared.dirty).insert(id);
        self.shared.wake.notify_one();
        self.bump();
    }

    fn bump(&self) {
        self.shared.events.send_modify(|v| *v += 1);
    }

    fn persist(&self, id: DocumentId, doc: &mut AutoCommit) -> Result<(), ClientError> {
        let Some(dir) = &self.shared.dir else {
            return Ok(());
        };
        let path = dir.join(format!("{id}.automerge"));
        let tmp = dir.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, doc.save())?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// Commits pending edits stamped with the device clock in seconds, as the
/// JS client does: the server's status history keeps when a step happened
/// on site.
fn commit_now(doc: &mut AutoCommit) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    doc.commit_with(automerge::transaction::CommitOptions::default().with_time(secs));
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static EPHEMERAL_COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn run_connection(device: Device, mut ws: Ws, server: PeerId, stop: Arc<Notify>) {
    let shared = device.shared.clone();
    let mut keepalive = tokio::time::interval(Duration::from_secs(10));
    loop {
        // Offer every dirty document.
        let outgoing = collect_outgoing(&device, &server);
        for msg in outgoing {
            if ws
                .send(WsMessage::Binary(protocol::encode(&msg).into()))
                .await
                .is_err()
            {
                return finish(&device, None);
            }
        }
        tokio::select! {
            _ = stop.notified() => {
                let _ = ws.close(None).await;
                return finish(&device, None);
            }
            _ = shared.wake.notified() => {}
            _ = keepalive.tick() => {
                if ws.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return finish(&device, None);
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(WsMessage::Binary(b))) => match protocol::decode(&b) {
                    Ok(msg) => handle_incoming(&device, msg),
                    Err(e) => tracing::warn!(error = %e, "undecodable message from server"),
                },
                Some(Ok(WsMessage::Close(frame))) => return finish(&device, frame),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return finish(&device, None),
            }
        }
    }
}

fn finish(device: &Device, frame: Option<CloseFrame>) {
    {
        let mut conn = lock(&device.shared.conn);
        conn.connected = false;
        if let Some(f) = frame {
            conn.last_close = Some((u16::from(f.code), f.reason.to_string()));
        }
    }
    device.bump();
}

fn collect_outgoing(device: &Device, server: &str) -> Vec<Message> {
    let shared = &device.shared;
    let dirty: Vec<DocumentId> = lock(&shared.dirty).drain().collect();
    let mut out = Vec::new();
    {
        let mut docs = lock(&shared.docs);
        for id in dirty {
            let Some(local) = docs.get_mut(&id) else {
                continue;
            };
            if let Some(m) = local.doc.sync().generate_sync_message(&mut local.sync) {
                let data = m.encode();
                out.push(if local.status == DocStatus::Requesting {
                    Message::Request {
                        sender_id: shared.peer_id.clone(),
                        target_id: server.into(),
                        document_id: id,
                        data,
                    }
                } else {
                    Message::Sync {
                        sender_id: shared.peer_id.clone(),
                        target_id: server.into(),
                        document_id: id,
                        data,
                    }
                });
            }
        }
    }
    out.append(&mut lock(&shared.ephemeral_outbox));
    out
}

fn handle_incoming(device: &Device, msg: Message) {
    let shared = &device.shared;
    match msg {
        Message::Sync {
            document_id, data, ..
        } => {
            let Ok(m) = sync::Message::decode(&data) else {
                tracing::warn!(doc = %document_id, "server sent an undecodable sync message");
                return;
            };
            lock(&shared.server_heads)
                .entry(document_id)
                .or_default()
                .extend(m.heads.iter().copied());
            let mut docs = lock(&shared.docs);
            let local = docs.entry(document_id).or_insert_with(|| LocalDoc {
                doc: AutoCommit::new(),
                sync: sync::State::new(),
                status: DocStatus::Requesting,
            });
            let before = local.doc.get_heads();
            if let Err(e) = local.doc.sync().receive_sync_message(&mut local.sync, m) {
                tracing::warn!(doc = %document_id, error = %e, "could not apply server sync message");
                return;
            }
            if local.doc.get_heads() != before {
                local.status = DocStatus::Local;
                let _ = device.persist(document_id, &mut local.doc);
                if let Some(hook) = lock(&shared.on_remote_change).as_ref() {
                    hook(document_id, &mut local.doc);
                }
            }
            drop(docs);
            // Reply (sync protocol round trip) on the next loop iteration.
            lock(&shared.dirty).insert(document_id);
        }
        Message::DocUnavailable { document_id, .. } => {
            if let Some(local) = lock(&shared.docs).get_mut(&document_id) {
                if local.status == DocStatus::Requesting {
                    local.status = DocStatus::Unavailable;
                }
            }
        }
        Message::Ephemeral {
            document_id,
            sender_id,
            data,
            session_id,
            verified_sender,
            ..
        } => {
            lock(&shared.ephemeral_inbox).push(ReceivedEphemeral {
                document_id,
                sender_id,
                session_id,
                sender: verified_sender,
                data,
            });
        }
        Message::Error { message, .. } => {
            tracing::warn!(%message, "server reported an error");
            lock(&shared.conn).last_error = Some(message);
        }
        _ => {}
    }
    device.bump();
}
