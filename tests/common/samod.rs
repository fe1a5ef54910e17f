//! `samod` (the Rust automerge-repo implementation, from crates.io) as a
//! device against the real server: a `Dialer` over our tokio-tungstenite
//! that can tap the protocol messages crossing it, and a device that signs
//! in, goes offline (its connection closed, its repo and documents kept) and
//! comes back.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::{Automerge, ChangeHash};
use fieldsync_shared::protocol::{self, Message};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

use super::WAIT;

/// One protocol message that crossed a tapped samod connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// From the server (else: sent by samod).
    pub incoming: bool,
    /// `sync`, `request`, `doc-unavailable`, … (`undecodable` if our decoder
    /// could not read it).
    pub kind: String,
    /// The document it is about (bs58check id), if any.
    pub document_id: Option<String>,
    /// In a `sync` or `request`: how many heads and changes of the
    /// document the Automerge sync message carries.
    pub heads: usize,
    pub changes: usize,
}

pub type Frames = Arc<Mutex<Vec<Frame>>>;

fn record(frames: &Option<Frames>, incoming: bool, bytes: &[u8]) {
    let Some(frames) = frames else { return };
    let frame = match protocol::decode(bytes) {
        Ok(m) => {
            let document_id = match &m {
                Message::Sync { document_id, .. }
                | Message::Request { document_id, .. }
                | Message::DocUnavailable { document_id, .. }
                | Message::Ephemeral { document_id, .. }
                | Message::RemoteHeadsChanged { document_id, .. } => Some(document_id.to_string()),
                _ => None,
            };
            let (heads, changes) = match &m {
                Message::Sync { data, .. } | Message::Request { data, .. } => {
                    match automerge::sync::Message::decode(data) {
                        Ok(s) => (s.heads.len(), s.changes.len()),
                        Err(_) => (usize::MAX, usize::MAX),
                    }
                }
                _ => (0, 0),
            };
            Frame {
                incoming,
                kind: m.type_name().to_string(),
                document_id,
                heads,
                changes,
            }
        }
        Err(_) => Frame {
            incoming,
            kind: "undecodable".into(),
            document_id: None,
            heads: 0,
            changes: 0,
        },
    };
    frames.lock().unwrap().push(frame);
}

/// samod's `Dialer` over tokio-tungstenite (samod's own `tungstenite` feature
/// would pull in native-tls): one WebSocket binary frame per protocol message.
pub struct WsDialer {
    pub url: String,
    /// Where every message of every connection is recorded, if anywhere.
    pub frames: Option<Frames>,
}

impl WsDialer {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            frames: None,
        }
    }

    pub fn tapped(url: &str, frames: Frames) -> Self {
        Self {
            url: url.to_string(),
            frames: Some(frames),
        }
    }
}

impl samod::Dialer for WsDialer {
    type Error = Infallible;

    fn url(&self) -> samod::Url {
        // For samod's logs only: leave the access token out.
        let mut url = samod::Url::parse(&self.url).unwrap();
        url.set_query(None);
        url
    }

    #[allow(clippy::type_complexity)]
    fn connect(
        &self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<samod::Transport, samod::DialError<Self::Error>>>
                + Send
                + 'static,
        >,
    > {
        let url = self.url.clone();
        let frames = self.frames.clone();
        Box::pin(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .map_err(samod::DialError::transient)?;
            let (sink, stream) = ws.split();
            let tap_in = frames.clone();
            let stream = Box::pin(stream.filter_map(move |frame| {
                let out = match frame {
                    Ok(Ws::Binary(bytes)) => {
                        record(&tap_in, true, &bytes);
                        Some(Ok(bytes.to_vec()))
                    }
                    // Pings are answered by tungstenite; a close ends the
                    // stream right after.
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                };
                futures_util::future::ready(out)
            }));
            let sink = sink.with(move |bytes: Vec<u8>| {
                record(&frames, false, &bytes);
                futures_util::future::ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(
                    Ws::Binary(bytes.into()),
                ))
            });
            Ok(samod::Transport::new(stream, sink))
        })
    }
}

/// Quick reconnects: a test never waits long for a dialer.
pub fn backoff() -> samod::BackoffConfig {
    samod::BackoffConfig {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_retries: None,
    }
}

/// A repo with in-memory storage and the given peer id.
pub async fn repo(peer_id: &str) -> samod::Repo {
    samod::Repo::build_tokio()
        .with_peer_id(samod::PeerId::from(peer_id))
        .load()
        .await
}

/// `automerge:<id>` or `<id>` as samod's document id.
pub fn doc_id(url: &str) -> samod::DocumentId {
    url.trim_start_matches("automerge:")
        .parse()
        .unwrap_or_else(|_| panic!("not a document URL: {url}"))
}

/// A device: a samod repo that lives through disconnects (documents and
/// local edits stay in its storage), dialing the server when online, every
/// message of every connection recorded.
pub struct SamodDevice {
    pub name: String,
    pub repo: samod::Repo,
    sync_url: String,
    dialer: Option<samod::DialerHandle<Infallible>>,
    pub frames: Frames,
}

impl SamodDevice {
    /// Connected to `sync_url` (a user's token and device id).
    pub async fn online(sync_url: &str, name: &str) -> Self {
        let mut device = Self {
            name: name.to_string(),
            repo: repo(name).await,
            sync_url: sync_url.to_string(),
            dialer: None,
            frames: Arc::default(),
        };
        device.connect().await;
        device
    }

    /// Dials the server and waits for the handshake.
    pub async fn connect(&mut self) {
        assert!(self.dialer.is_none(), "{} is connected already", self.name);
        let dialer = self
            .repo
            .dial(
                backoff(),
                Arc::new(WsDialer::tapped(&self.sync_url, self.frames.clone())),
            )
            .unwrap();
        tokio::time::timeout(WAIT, dialer.established())
            .await
            .unwrap_or_else(|_| panic!("{} connects in time", self.name))
            .unwrap_or_else(|e| panic!("{} connects: {e}", self.name));
        self.dialer = Some(dialer);
    }

    /// Goes offline: the dialer is closed (no reconnects) and this waits
    /// until the repo has no connection left. Documents stay.
    pub async fn disconnect(&mut self) {
        let dialer = self.dialer.take().expect("connected");
        dialer.close();
        let (now, mut changes) = self.repo.connected_peers();
        if now.is_empty() {
            return;
        }
        tokio::time::timeout(WAIT, async {
            while let Some(conns) = changes.next().await {
                if conns.is_empty() {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} still has a connection", self.name));
    }

    /// The live connection to the server.
    pub fn connection(&self) -> samod::ConnectionId {
        self.dialer
            .as_ref()
            .and_then(|d| d.connection_id())
            .unwrap_or_else(|| panic!("{} is not connected", self.name))
    }

    pub fn is_connected(&self) -> bool {
        self.dialer.as_ref().is_some_and(|d| d.is_connected())
    }

    /// `Repo::find`: the document once synced with the server, or `None`
    /// once the server said it is unavailable.
    pub async fn find(&self, url: &str) -> Option<samod::DocHandle> {
        tokio::time::timeout(WAIT, self.repo.find(doc_id(url)))
            .await
            .unwrap_or_else(|_| panic!("{}: find {url} did not resolve in time", self.name))
            .expect("repo running")
    }

    /// Waits until the repo has `url` synced, without asking for it again:
    /// for a document the server said was unavailable and is expected to
    /// send later (`find` would answer `None` at once).
    pub async fn wait_found(&self, url: &str) -> samod::DocHandle {
        let (mut state, mut updates) = self.repo.search(doc_id(url)).expect("repo running");
        tokio::time::timeout(WAIT, async {
            loop {
                if let samod::SearchState::Found(handle) = state {
                    return handle;
                }
                state = updates.next().await.expect("repo running");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}: {url} never arrived", self.name))
    }

    pub async fn create(&self, content: Automerge) -> samod::DocHandle {
        tokio::time::timeout(WAIT, self.repo.create(content))
            .await
            .expect("created in time")
            .expect("repo running")
    }

    /// Waits until the server has every change of `doc` this device has
    /// (fieldsync only acknowledges heads it has committed).
    pub async fn wait_stored(&self, doc: &samod::DocHandle) {
        tokio::time::timeout(WAIT, doc.they_have_our_changes(self.connection()))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: the server did not acknowledge {} at {:?}",
                    self.name,
                    doc.document_id(),
                    heads(doc)
                )
            });
    }

    /// The kinds of the messages about `doc` received from the server, in
    /// order.
    pub fn received(&self, doc: &samod::DocumentId) -> Vec<String> {
        self.kinds(doc, true)
    }

    /// The kinds of the messages about `doc` this device sent, in order.
    pub fn sent(&self, doc: &samod::DocumentId) -> Vec<String> {
        self.kinds(doc, false)
    }

    fn kinds(&self, doc: &samod::DocumentId, incoming: bool) -> Vec<String> {
        self.frames_about(doc, incoming)
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    /// The messages about `doc` received (`incoming`) or sent, in order.
    pub fn frames_about(&self, doc: &samod::DocumentId, incoming: bool) -> Vec<Frame> {
        let id = doc.to_string();
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.incoming == incoming && f.document_id.as_deref() == Some(&id))
            .cloned()
            .collect()
    }

    pub async fn stop(self) {
        self.repo.stop().await;
    }
}

/// The document's heads, sorted.
pub fn heads(doc: &samod::DocHandle) -> Vec<ChangeHash> {
    let mut heads = doc.with_document(|d| d.get_heads());
    heads.sort();
    heads
}

/// One local change (one transaction) to a samod document.
pub fn change<E: std::fmt::Debug>(
    doc: &samod::DocHandle,
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), E>,
) {
    doc.with_document(|d| d.transact(f).map(|_| ()).map_err(|e| e.error))
        .unwrap_or_else(|e| panic!("change to {}: {e:?}", doc.document_id()));
}

/// Polls `ok` (every 20 ms, up to `WAIT`); panics with `what()` otherwise.
pub async fn eventually(what: impl Fn() -> String, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
