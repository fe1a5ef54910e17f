//! Presence interop: ephemeral messages between stock automerge-repo clients
//! of different users on one ticket, relayed by fieldsync.
//!
//! - `js_presence_reaches_every_peer_without_disconnects`: three stock JS
//!   clients (`Presence` from `@automerge/automerge-repo`, driven by
//!   scripts/interop/presence.mjs) see each other's state and goodbye, while
//!   their relay echoes (stock clients pass every received ephemeral back to
//!   the server) never cost a connection.
//! - `samod_and_js_exchange_ephemerals_without_disconnects`: two `samod` (Rust
//!   automerge-repo) peers and one JS peer broadcast to each other.
//! - `relayed_presence_names_the_verified_user`: the server stamps each
//!   relayed ephemeral with the sender's signed-in identity (`verifiedSender`)
//!   and suffixes its `sessionId` per sending device.
//!
//! Needs Node.js and `npm ci` in scripts/interop (done on first use).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::sync::SyncDoc;
use automerge::ReadDoc;
use ciborium::Value as Cbor;
use common::samod::WsDialer;
use common::{cli, http, Server, TestDb, WAIT};
use fieldsync_shared::protocol::{self, Message};
use fieldsync_shared::DocumentId;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Ws;

/// Presence heartbeat: short, so a few seconds carry many messages (and so
/// many relay echoes from the stock clients).
const HEARTBEAT_MS: u64 = 200;
/// Long enough that no peer is ever forgotten for silence during a test: a
/// peer that disappears did so because of its goodbye.
const PEER_TTL_MS: u64 = 60_000;
/// How long the peers keep talking in the "soak" phase of a test.
const SOAK: Duration = Duration::from_secs(3);
const SOAK_ROUNDS: u64 = 20;

// ---------------------------------------------------------------- users ---

/// A signed-in user as the server knows them (from `/api/v1/me`).
#[derive(Clone, Debug)]
struct Person {
    username: String,
    token: String,
    id: String,
    role: String,
    name: String,
}

impl Person {
    /// What the server must stamp on this user's relayed ephemerals.
    fn verified_sender(&self) -> Value {
        json!({"userId": self.id, "role": self.role, "name": self.name})
    }
}

/// Creates the accounts (`(username, role, display name)`) before the
/// server starts; the password is `<username>-password`.
fn add_people(db: &TestDb, people: &[(&str, &str, &str)]) {
    for (user, role, display) in people {
        let out = cli(
            &db.url,
            &[
                "user",
                "add",
                user,
                "--role",
                role,
                "--display-name",
                display,
            ],
            &format!("{user}-password\n"),
        );
        assert!(
            out.status.success(),
            "could not create user {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn sign_in(server: &Server, username: &str) -> Person {
    let token = server.login(username, &format!("{username}-password"));
    let (status, me) = http(server.port, "GET", "/api/v1/me", Some(&token), None);
    assert_eq!(status, 200, "{me}");
    Person {
        username: username.to_string(),
        token,
        id: me["id"].as_str().unwrap().to_string(),
        role: me["role"].as_str().unwrap().to_string(),
        name: me["display_name"].as_str().unwrap().to_string(),
    }
}

/// The dispatcher creates a ticket through the API and assigns it to the
/// technician in the same call (so the technician may read it); returns its
/// automerge URL.
fn create_ticket(server: &Server, dispatcher: &Person, technician: &Person) -> String {
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&dispatcher.token),
        Some(json!({
            "customer_name": "Acme Bakery", "product": "Dough mixer",
            "fault_description": "Motor stops under load", "priority": "B",
            "technician": technician.username,
        })),
    );
    assert_eq!(status, 201, "{body}");
    body["url"].as_str().unwrap().to_string()
}

// -------------------------------------------------------------- metrics ---

/// Connection counters: every reconnect, however quick, adds to `total`.
#[derive(Debug, PartialEq, Eq)]
struct Conns {
    total: u64,
    open: u64,
}

fn conns(server: &Server) -> Conns {
    Conns {
        total: server.metric("fieldsync_connections_total"),
        open: server.metric("fieldsync_connections_open"),
    }
}

/// After the initial connects: exactly `peers` connections, none refused.
fn baseline(server: &Server, peers: u64) -> Conns {
    let now = conns(server);
    assert_eq!(
        now,
        Conns {
            total: peers,
            open: peers
        },
        "one connection per peer"
    );
    now
}

/// Nothing was closed or reopened since `baseline`, and no connection was
/// ended for a protocol error, a limit or a slow reader.
fn assert_no_disconnects(server: &Server, baseline: &Conns) {
    assert_eq!(
        &conns(server),
        baseline,
        "a connection was closed or reopened"
    );
    for metric in [
        "fieldsync_protocol_errors_total",
        "fieldsync_limit_violations_total",
        "fieldsync_slow_peers_dropped_total",
    ] {
        assert_eq!(server.metric(metric), 0, "{metric}");
    }
}

// -------------------------------------------------------------- JS peer ---

/// One stock automerge-repo JS client (scripts/interop/presence.mjs).
struct JsPeer {
    peer_id: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl JsPeer {
    fn start(sync_url: &str, peer_id: &str) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/interop");
        common::install_node_packages(dir);
        let mut child = Command::new("node")
            .arg("presence.mjs")
            .arg(sync_url)
            .arg(peer_id)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            peer_id: peer_id.to_string(),
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns its reply; panics on `ok: false`. Every
    /// waiting command has its own deadline on the JS side.
    fn call(&mut self, req: Value) -> Value {
        tokio::task::block_in_place(|| {
            writeln!(self.stdin, "{req}").unwrap();
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "{} exited during {req}", self.peer_id);
            let reply: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("bad reply {line:?} to {req}"));
            assert_eq!(reply["ok"], true, "{} failed {req}: {reply}", self.peer_id);
            reply
        })
    }

    /// Connects and opens the ticket (which makes it a reader of it, so the
    /// server relays the ticket's ephemerals to it).
    fn open(&mut self, url: &str) -> Value {
        self.call(json!({"cmd": "connect"}));
        self.call(json!({"cmd": "find", "url": url}))["doc"].clone()
    }

    fn start_presence(&mut self, initial: Value) {
        self.call(json!({
            "cmd": "presence-start", "initialState": initial,
            "heartbeatMs": HEARTBEAT_MS, "peerTtlMs": PEER_TTL_MS,
        }));
    }

    fn presence(&mut self, channel: &str, value: Value) {
        self.call(json!({"cmd": "presence-broadcast", "channel": channel, "value": value}));
    }

    /// Waits until every peer in `expect` shows (at least) the given state
    /// and none of `absent` is shown.
    fn wait_peer_states(&mut self, expect: Value, absent: &[&str]) -> Value {
        self.call(json!({
            "cmd": "wait-peer-states", "expect": expect, "absent": absent, "timeoutMs": 10_000,
        }))["states"]
            .clone()
    }

    fn stats(&mut self) -> Value {
        self.call(json!({"cmd": "stats"}))
    }

    /// The stock client saw no connection end and joined exactly once.
    fn assert_never_disconnected(&mut self) -> Value {
        let stats = self.stats()["stats"].clone();
        for key in [
            "peerDisconnected",
            "adapterPeerDisconnected",
            "adapterClose",
        ] {
            assert_eq!(stats[key], 0, "{}: {key} in {stats}", self.peer_id);
        }
        assert_eq!(stats["peerEvents"], 1, "{} rejoined: {stats}", self.peer_id);
        stats
    }
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ samod peer ---

/// A `samod` repo with one dialer to the server and the ticket open.
struct SamodPeer {
    peer_id: String,
    repo: samod::Repo,
    doc: samod::DocHandle,
    /// Payloads from `DocHandle::ephemera()`, CBOR-decoded.
    received: Arc<Mutex<Vec<Cbor>>>,
    dialer: samod::DialerHandle<Infallible>,
    /// The connection the dialer first established.
    connection: samod::ConnectionId,
    /// Every lifecycle event of the dialer after that.
    events: Arc<Mutex<Vec<samod::DialerEvent>>>,
}

impl SamodPeer {
    async fn open(sync_url: &str, peer_id: &str, ticket_url: &str) -> Self {
        let repo = common::samod::repo(peer_id).await;
        let dialer = repo
            .dial(common::samod::backoff(), Arc::new(WsDialer::new(sync_url)))
            .unwrap();
        tokio::time::timeout(WAIT, dialer.established())
            .await
            .expect("samod connects in time")
            .expect("samod connects");
        let connection = dialer.connection_id().expect("connected");
        // `DialerHandle::events()` borrows the handle (edition 2024 capture
        // rules), so the listening task owns a clone; it says when it listens.
        let events = Arc::new(Mutex::new(Vec::new()));
        let (listening, ready) = tokio::sync::oneshot::channel();
        let (handle, sink) = (dialer.clone(), events.clone());
        tokio::spawn(async move {
            let mut stream = handle.events();
            let _ = listening.send(());
            while let Some(e) = stream.next().await {
                sink.lock().unwrap().push(e);
            }
        });
        ready.await.unwrap();

        // samod finds the ticket through the server (it asks with `request`).
        let doc = tokio::time::timeout(WAIT, repo.find(common::samod::doc_id(ticket_url)))
            .await
            .expect("samod finds the ticket in time")
            .unwrap()
            .unwrap_or_else(|| panic!("{peer_id}: the server says the ticket is unavailable"));
        let has_ticket_no =
            doc.with_document(|d| d.get(automerge::ROOT, "ticket_no").unwrap().is_some());
        assert!(has_ticket_no, "{peer_id} got the ticket's content");

        let received = Arc::new(Mutex::new(Vec::new()));
        let mut ephemera = Box::pin(doc.ephemera());
        let sink = received.clone();
        tokio::spawn(async move {
            while let Some(bytes) = ephemera.next().await {
                let value: Cbor =
                    ciborium::from_reader(&bytes[..]).expect("ephemeral payloads are CBOR");
                sink.lock().unwrap().push(value);
            }
        });
        Self {
            peer_id: peer_id.to_string(),
            repo,
            dialer,
            connection,
            doc,
            received,
            events,
        }
    }

    /// Broadcasts `{from, n}` (CBOR: the JS client only passes on payloads it
    /// can decode).
    fn broadcast(&self, n: u64) {
        self.doc.broadcast(payload(&self.peer_id, n));
    }

    /// Waits until `{from, n}` arrived from each of `from`.
    async fn wait_received(&self, from: &[&str], n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got: Vec<(String, u64)> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter_map(from_n)
                .collect();
            if from.iter().all(|f| got.contains(&(f.to_string(), n))) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: want n={n} from {from:?}, got {got:?}",
                self.peer_id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Still on the connection it opened the ticket on: never dropped,
    /// retried or replaced.
    fn assert_never_disconnected(&self) {
        let events = self.events.lock().unwrap();
        assert!(
            events
                .iter()
                .all(|e| matches!(e, samod::DialerEvent::Connected { .. })),
            "{}: dialer events {events:?}",
            self.peer_id
        );
        assert!(self.dialer.is_connected(), "{}", self.peer_id);
        assert_eq!(
            self.dialer.connection_id(),
            Some(self.connection),
            "{}: reconnected",
            self.peer_id
        );
    }
}

/// `{"from": <peer id>, "n": n}` as CBOR.
fn payload(from: &str, n: u64) -> Vec<u8> {
    let value = Cbor::Map(vec![
        (Cbor::Text("from".into()), Cbor::Text(from.into())),
        (Cbor::Text("n".into()), Cbor::Integer(n.into())),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).unwrap();
    out
}

fn cbor_get<'a>(map: &'a Cbor, key: &str) -> Option<&'a Cbor> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn from_n(value: &Cbor) -> Option<(String, u64)> {
    let from = cbor_get(value, "from")?.as_text()?.to_string();
    let n = u64::try_from(cbor_get(value, "n")?.as_integer()?).ok()?;
    Some((from, n))
}

// --------------------------------------------------------------- raw peer ---

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bare WebSocket peer that sees the relayed frames exactly as sent (all
/// CBOR keys, not only those the protocol decoder knows) and can send keys
/// of its own.
struct RawPeer {
    peer_id: String,
    server_peer: String,
    sink: SplitSink<Socket, Ws>,
    /// Every relayed ephemeral, the whole CBOR map.
    ephemerals: Arc<Mutex<Vec<Cbor>>>,
    /// Set when the server closes the socket.
    closed: Arc<Mutex<Option<String>>>,
}

impl RawPeer {
    /// Joins and syncs the ticket (so it is one of its readers).
    async fn open(sync_url: &str, peer_id: &str, doc: DocumentId) -> Self {
        let (mut ws, _) = tokio_tungstenite::connect_async(sync_url).await.unwrap();
        ws.send(Ws::Binary(
            protocol::encode(&Message::Join {
                sender_id: peer_id.into(),
                peer_metadata: None,
                supported_protocol_versions: vec!["1".into()],
            })
            .into(),
        ))
        .await
        .unwrap();
        let server_peer = match next_message(&mut ws).await {
            Message::Peer { sender_id, .. } => sender_id,
            other => panic!("expected peer, got {other:?}"),
        };
        let empty = automerge::Automerge::new()
            .generate_sync_message(&mut automerge::sync::State::new())
            .unwrap()
            .encode();
        ws.send(Ws::Binary(
            protocol::encode(&Message::Request {
                sender_id: peer_id.into(),
                target_id: server_peer.clone(),
                document_id: doc,
                data: empty,
            })
            .into(),
        ))
        .await
        .unwrap();
        loop {
            match next_message(&mut ws).await {
                Message::Sync { document_id, .. } if document_id == doc => break,
                _ => continue,
            }
        }
        let (sink, mut stream) = ws.split();
        let ephemerals = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        let (seen, gone) = (ephemerals.clone(), closed.clone());
        tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(Ws::Binary(bytes)) => {
                        let value: Cbor = ciborium::from_reader(&bytes[..]).unwrap();
                        if cbor_get(&value, "type").and_then(Cbor::as_text) == Some("ephemeral") {
                            seen.lock().unwrap().push(value);
                        }
                    }
                    Ok(Ws::Close(frame)) => {
                        *gone.lock().unwrap() = Some(format!("closed: {frame:?}"));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        *gone.lock().unwrap() = Some(format!("error: {e}"));
                        break;
                    }
                }
            }
        });
        Self {
            peer_id: peer_id.to_string(),
            server_peer,
            sink,
            ephemerals,
            closed,
        }
    }

    /// An ephemeral built by hand: the protocol's keys plus `extra`.
    async fn send_ephemeral(
        &mut self,
        doc: DocumentId,
        session: &str,
        count: u64,
        extra: Vec<(&str, Cbor)>,
    ) {
        let text = |s: &str| Cbor::Text(s.into());
        let mut map = vec![
            (text("type"), text("ephemeral")),
            (text("senderId"), text(&self.peer_id)),
            (text("targetId"), text(&self.server_peer)),
            (text("count"), Cbor::Integer(count.into())),
            (text("sessionId"), text(session)),
            (text("documentId"), text(&doc.to_string())),
            (text("data"), Cbor::Bytes(payload(&self.peer_id, count))),
        ];
        map.extend(extra.into_iter().map(|(k, v)| (text(k), v)));
        let mut bytes = Vec::new();
        ciborium::into_writer(&Cbor::Map(map), &mut bytes).unwrap();
        self.sink.send(Ws::Binary(bytes.into())).await.unwrap();
    }
}

async fn next_message(ws: &mut Socket) -> Message {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("server answered")
            .expect("socket open")
            .unwrap();
        if let Ws::Binary(bytes) = frame {
            return protocol::decode(&bytes).unwrap();
        }
    }
}

fn cbor_to_json(value: &Cbor) -> Value {
    serde_json::to_value(value).unwrap()
}

// ----------------------------------------------------------------- tests ---

/// Three users' stock JS clients on one ticket: each sees the other two's
/// latest presence; a goodbye removes its sender; for the whole time, with
/// heartbeats every 200 ms and every relayed message echoed back to the
/// server by each stock client, no connection is closed.
async fn js_presence_reaches_every_peer_without_disconnects(db: TestDb) {
    add_people(
        &db,
        &[
            ("tim", "technician", "Tim Tech"),
            ("dora", "dispatcher", "Dora Dispatch"),
            ("ada", "admin", "Ada Admin"),
        ],
    );
    let server = Server::start(&db, &[]);
    let (tim, dora, ada) = (
        sign_in(&server, "tim"),
        sign_in(&server, "dora"),
        sign_in(&server, "ada"),
    );
    let ticket = create_ticket(&server, &dora, &tim);

    let people = [&tim, &dora, &ada];
    let mut peers: Vec<JsPeer> = people
        .iter()
        .map(|p| {
            let url = server.sync_url_for(&p.token, &format!("{}-laptop", p.username));
            JsPeer::start(&url, &format!("js-{}", p.username))
        })
        .collect();
    for peer in &mut peers {
        let doc = peer.open(&ticket);
        assert_eq!(
            doc["status"], "assigned",
            "{} reads the ticket",
            peer.peer_id
        );
    }
    let base = baseline(&server, 3);

    // Each starts presence, then says what it is editing.
    let editing = ["notes", "parts", "status"];
    for (peer, person) in peers.iter_mut().zip(people) {
        peer.start_presence(json!({"user": person.name, "editing": null}));
    }
    for (peer, field) in peers.iter_mut().zip(editing) {
        peer.presence("editing", json!(field));
    }
    let others = |me: usize, extra: Value| -> Value {
        let mut want = serde_json::Map::new();
        for (i, person) in people.iter().enumerate().filter(|(i, _)| *i != me) {
            let mut state = json!({"user": person.name, "editing": editing[i]});
            for (k, v) in extra.as_object().unwrap() {
                state[k] = v.clone();
            }
            want.insert(format!("js-{}", person.username), state);
        }
        Value::Object(want)
    };
    for (i, peer) in peers.iter_mut().enumerate() {
        let states = peer.wait_peer_states(others(i, json!({})), &[]);
        assert_eq!(
            states.as_object().unwrap().len(),
            2,
            "{} sees exactly the two others: {states}",
            peer.peer_id
        );
    }

    // A few seconds of traffic: heartbeats plus cursor moves from everyone.
    // Each stock client echoes every message it receives back to the server.
    let pause = SOAK / SOAK_ROUNDS as u32;
    for n in 1..=SOAK_ROUNDS {
        for peer in &mut peers {
            peer.presence("cursor", json!(n));
        }
        tokio::time::sleep(pause).await;
    }
    for (i, peer) in peers.iter_mut().enumerate() {
        peer.wait_peer_states(others(i, json!({"cursor": SOAK_ROUNDS})), &[]);
        let stats = peer.stats()["stats"].clone();
        // The echoes happened (so dropping them is what kept us connected):
        // at least one per message received from the other two peers' cursor
        // moves alone.
        assert!(
            stats["echoesSent"].as_u64().unwrap() >= 2 * SOAK_ROUNDS,
            "{}: {stats}",
            peer.peer_id
        );
    }
    assert_no_disconnects(&server, &base);

    // Ada leaves the ticket: her goodbye removes her at once (not the TTL,
    // which is far longer than this test).
    peers[2].call(json!({"cmd": "presence-stop"}));
    for (i, peer) in peers[..2].iter_mut().enumerate() {
        let mut want = others(i, json!({"cursor": SOAK_ROUNDS}));
        want.as_object_mut().unwrap().remove("js-ada");
        peer.wait_peer_states(want, &["js-ada"]);
    }
    // Later traffic (heartbeats, a new cursor) does not bring her back.
    for peer in &mut peers[..2] {
        peer.presence("cursor", json!(SOAK_ROUNDS + 1));
    }
    for (i, peer) in peers[..2].iter_mut().enumerate() {
        let mut want = others(i, json!({"cursor": SOAK_ROUNDS + 1}));
        want.as_object_mut().unwrap().remove("js-ada");
        let states = peer.wait_peer_states(want, &["js-ada"]);
        assert_eq!(states.as_object().unwrap().len(), 1, "{states}");
        let stats = peer.stats()["stats"].clone();
        assert_eq!(stats["presenceGoodbyes"], json!(["js-ada"]), "{stats}");
        assert_eq!(stats["presencePruned"], json!([]), "{stats}");
    }

    // No connection was lost, on either side.
    assert_no_disconnects(&server, &base);
    for peer in &mut peers {
        peer.assert_never_disconnected();
    }
    for peer in &mut peers {
        peer.call(json!({"cmd": "exit"}));
    }
}

/// Two samod repos (a dispatcher and the back office) and a stock JS client
/// (the technician) on one ticket: broadcasts go both ways between the Rust
/// and JS implementations, repeatedly, and nobody is disconnected (both
/// clients gossip relayed messages back to the server).
async fn samod_and_js_exchange_ephemerals_without_disconnects(db: TestDb) {
    add_people(
        &db,
        &[
            ("tim", "technician", "Tim Tech"),
            ("dora", "dispatcher", "Dora Dispatch"),
            ("bob", "back_office", "Bob Books"),
        ],
    );
    let server = Server::start(&db, &[]);
    let (tim, dora, bob) = (
        sign_in(&server, "tim"),
        sign_in(&server, "dora"),
        sign_in(&server, "bob"),
    );
    let ticket = create_ticket(&server, &dora, &tim);

    let mut js = JsPeer::start(&server.sync_url_for(&tim.token, "tim-phone"), "js-tim");
    js.open(&ticket);
    let samod_dora = SamodPeer::open(
        &server.sync_url_for(&dora.token, "dora-desktop"),
        "samod-dora",
        &ticket,
    )
    .await;
    let samod_bob = SamodPeer::open(
        &server.sync_url_for(&bob.token, "bob-desktop"),
        "samod-bob",
        &ticket,
    )
    .await;
    let base = baseline(&server, 3);

    let pause = SOAK / SOAK_ROUNDS as u32;
    for n in 1..=SOAK_ROUNDS {
        samod_dora.broadcast(n);
        samod_bob.broadcast(n);
        js.call(json!({"cmd": "broadcast", "message": {"from": "js-tim", "n": n}}));
        tokio::time::sleep(pause).await;
    }

    // Everyone got everyone else's last message.
    js.call(json!({
        "cmd": "wait-received", "from": ["samod-dora", "samod-bob"],
        "match": {"n": SOAK_ROUNDS}, "timeoutMs": 10_000,
    }));
    let got = js.call(json!({"cmd": "received"}))["received"].clone();
    for r in got.as_array().unwrap() {
        // The JS event's sender is the samod peer that sent the payload.
        assert_eq!(r["senderId"], r["message"]["from"], "{r}");
    }
    samod_dora
        .wait_received(&["js-tim", "samod-bob"], SOAK_ROUNDS)
        .await;
    samod_bob
        .wait_received(&["js-tim", "samod-dora"], SOAK_ROUNDS)
        .await;
    for peer in [&samod_dora, &samod_bob] {
        let got = peer.received.lock().unwrap().clone();
        assert!(
            got.iter()
                .filter_map(from_n)
                .all(|(from, _)| from != peer.peer_id),
            "{} never gets its own messages back",
            peer.peer_id
        );
    }
    // The stock JS client passed the samod messages back to the server.
    let stats = js.assert_never_disconnected();
    assert!(
        stats["echoesSent"].as_u64().unwrap() >= SOAK_ROUNDS,
        "{stats}"
    );

    assert_no_disconnects(&server, &base);
    samod_dora.assert_never_disconnected();
    samod_bob.assert_never_disconnected();
    js.call(json!({"cmd": "exit"}));
    samod_dora.repo.stop().await;
    samod_bob.repo.stop().await;
}

/// How a relayed `sessionId` must start: `<sent sessionId>.<suffix>`.
enum SentSession {
    /// One of these (what the sender wrote on the wire).
    OneOf(Vec<String>),
    /// A UUID (samod's session ids; its API does not expose them).
    Uuid,
}

/// Splits `<session>.<16 lowercase hex>`; panics with `context` otherwise.
fn split_relayed_session(session: &str, context: &str) -> (String, String) {
    let (sent, suffix) = session
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("{context}: sessionId {session:?} has no server suffix"));
    assert!(
        !sent.is_empty()
            && suffix.len() == 16
            && suffix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{context}: sessionId {session:?} is not <session>.<16 lowercase hex>"
    );
    (sent.to_string(), suffix.to_string())
}

/// One relayed ephemeral as a receiver saw it.
struct Seen {
    sender_id: String,
    session_id: String,
    verified_sender: Value,
}

/// Checks what `receiver` saw against each sender's identity and session;
/// returns the server suffix seen per sender.
fn check_relayed(
    receiver: &str,
    seen: &[Seen],
    identity: &HashMap<String, (Person, SentSession)>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut suffixes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in seen {
        let context = format!("{receiver} from {}", s.sender_id);
        let (person, sent) = identity
            .get(&s.sender_id)
            .unwrap_or_else(|| panic!("{context}: unknown sender"));
        // The signed-in identity, not anything the client said about itself.
        let want = person.verified_sender();
        for key in ["userId", "role", "name"] {
            assert_eq!(
                s.verified_sender.get(key),
                want.get(key),
                "{context}: verifiedSender {} (want {want})",
                s.verified_sender
            );
        }
        let (prefix, suffix) = split_relayed_session(&s.session_id, &context);
        match sent {
            SentSession::OneOf(ids) => assert!(
                ids.contains(&prefix),
                "{context}: relayed sessionId {:?} does not start with a sent one {ids:?}",
                s.session_id
            ),
            SentSession::Uuid => assert!(
                uuid::Uuid::parse_str(&prefix).is_ok(),
                "{context}: relayed sessionId {:?} does not start with samod's UUID",
                s.session_id
            ),
        }
        suffixes
            .entry(s.sender_id.clone())
            .or_default()
            .insert(suffix);
    }
    suffixes
}

/// The wire contract for relayed ephemerals (server change in progress):
/// each carries `verifiedSender: {userId, role, name}` from the sender's
/// signed-in identity (a client's own `verifiedSender` is replaced), and its
/// `sessionId` is `<sent sessionId>.<16 lowercase hex>`, the suffix fixed per
/// sending device and different between devices. Checked as three stock JS
/// clients, a samod repo and a bare WebSocket peer see each other.
async fn relayed_presence_names_the_verified_user(db: TestDb) {
    add_people(
        &db,
        &[
            ("tim", "technician", "Tim Tech"),
            ("dora", "dispatcher", "Dora Dispatch"),
            ("bob", "back_office", "Bob Books"),
            ("mia", "manager", "Mia Manager"),
            ("ada", "admin", "Ada Admin"),
        ],
    );
    let server = Server::start(&db, &[]);
    let [tim, dora, bob, mia, ada] =
        ["tim", "dora", "bob", "mia", "ada"].map(|u| sign_in(&server, u));
    let ticket = create_ticket(&server, &dora, &tim);
    let doc = DocumentId::parse_url_or_id(&ticket).unwrap();

    let js_people = [&tim, &dora, &bob];
    let mut js: Vec<JsPeer> = js_people
        .iter()
        .map(|p| {
            let url = server.sync_url_for(&p.token, &format!("{}-tablet", p.username));
            JsPeer::start(&url, &format!("js-{}", p.username))
        })
        .collect();
    for peer in &mut js {
        peer.open(&ticket);
    }
    let samod_mia = SamodPeer::open(
        &server.sync_url_for(&mia.token, "mia-desktop"),
        "samod-mia",
        &ticket,
    )
    .await;
    let mut raw_ada = RawPeer::open(
        &server.sync_url_for(&ada.token, "ada-console"),
        "raw-ada",
        doc,
    )
    .await;
    let base = baseline(&server, 5);

    for (peer, person) in js.iter_mut().zip(js_people) {
        peer.start_presence(json!({"user": person.name, "editing": null}));
    }
    // Ada claims to be Tim, from two sessions of one device; samod talks too.
    let forged = Cbor::Map(vec![
        (Cbor::Text("userId".into()), Cbor::Text(tim.id.clone())),
        (Cbor::Text("role".into()), Cbor::Text("technician".into())),
        (Cbor::Text("name".into()), Cbor::Text(tim.name.clone())),
    ]);
    for n in 1..=5 {
        for session in ["ada-session", "ada-tab-2"] {
            raw_ada
                .send_ephemeral(doc, session, n, vec![("verifiedSender", forged.clone())])
                .await;
        }
        samod_mia.broadcast(n);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Wait until every JS peer saw all four others and the raw peer all four
    // presences and samod (only then check, so a missing key fails clearly).
    let js_ids: Vec<String> = js.iter().map(|p| p.peer_id.clone()).collect();
    let all_senders: Vec<String> = js_ids
        .iter()
        .cloned()
        .chain(["samod-mia".into(), "raw-ada".into()])
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    let js_seen: Vec<(String, Value)> = loop {
        let snapshot: Vec<(String, Value)> = js
            .iter_mut()
            .map(|p| {
                (
                    p.peer_id.clone(),
                    p.call(json!({"cmd": "raw-ephemerals"}))["sources"].clone(),
                )
            })
            .collect();
        let raw_senders: BTreeSet<String> = raw_ada
            .ephemerals
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| cbor_get(m, "senderId")?.as_text().map(str::to_string))
            .collect();
        let complete = snapshot.iter().all(|(me, sources)| {
            let from: BTreeSet<&str> = sources
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["senderId"].as_str())
                .collect();
            all_senders
                .iter()
                .filter(|s| *s != me)
                .all(|s| from.contains(s.as_str()))
        }) && all_senders
            .iter()
            .filter(|s| *s != "raw-ada")
            .all(|s| raw_senders.contains(s));
        if complete {
            break snapshot;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not everyone heard everyone: {snapshot:?}, raw peer heard {raw_senders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Who each sender is, and the session ids it wrote on the wire.
    let mut identity: HashMap<String, (Person, SentSession)> = HashMap::new();
    for (peer, person) in js.iter_mut().zip(js_people) {
        let sent: Vec<String> =
            serde_json::from_value(peer.stats()["sentSessionIds"].clone()).unwrap();
        assert_eq!(sent.len(), 1, "one session per JS repo: {sent:?}");
        identity.insert(
            peer.peer_id.clone(),
            (person.clone(), SentSession::OneOf(sent)),
        );
    }
    identity.insert("samod-mia".into(), (mia.clone(), SentSession::Uuid));
    identity.insert(
        "raw-ada".into(),
        (
            ada.clone(),
            SentSession::OneOf(vec!["ada-session".into(), "ada-tab-2".into()]),
        ),
    );

    let mut suffix_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut record = |suffixes: BTreeMap<String, BTreeSet<String>>| {
        for (sender, s) in suffixes {
            suffix_of.entry(sender).or_default().extend(s);
        }
    };
    for (me, sources) in &js_seen {
        let seen: Vec<Seen> = sources
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                // One identity per (sender, session) for the whole test.
                assert_eq!(
                    s["verifiedSenders"].as_array().unwrap().len(),
                    1,
                    "{me}: {s}"
                );
                Seen {
                    sender_id: s["senderId"].as_str().unwrap().to_string(),
                    session_id: s["sessionId"].as_str().unwrap().to_string(),
                    verified_sender: s["verifiedSender"].clone(),
                }
            })
            .collect();
        record(check_relayed(me, &seen, &identity));
    }
    // The bare peer reads the frames themselves: `verifiedSender` is a
    // top-level key holding a CBOR map.
    let raw_seen: Vec<Seen> = raw_ada
        .ephemerals
        .lock()
        .unwrap()
        .iter()
        .map(|m| Seen {
            sender_id: cbor_get(m, "senderId").unwrap().as_text().unwrap().into(),
            session_id: cbor_get(m, "sessionId").unwrap().as_text().unwrap().into(),
            verified_sender: cbor_get(m, "verifiedSender")
                .map(cbor_to_json)
                .unwrap_or(Value::Null),
        })
        .collect();
    record(check_relayed("raw-ada", &raw_seen, &identity));

    // Fixed per sending device (all receivers, all of its sessions), and
    // different between devices.
    for (sender, suffixes) in &suffix_of {
        assert_eq!(
            suffixes.len(),
            1,
            "{sender}: one suffix per device, got {suffixes:?}"
        );
    }
    let distinct: BTreeSet<&String> = suffix_of.values().flatten().collect();
    assert_eq!(
        distinct.len(),
        suffix_of.len(),
        "devices share a suffix: {suffix_of:?}"
    );
    assert_eq!(suffix_of.len(), all_senders.len(), "{suffix_of:?}");

    // Receivers pass the stamped messages back (suffixed sessionId and
    // all): the server drops those echoes and nobody is disconnected.
    assert_no_disconnects(&server, &base);
    for peer in &mut js {
        let stats = peer.assert_never_disconnected();
        assert!(stats["echoesSent"].as_u64().unwrap() > 0, "{stats}");
    }
    samod_mia.assert_never_disconnected();
    assert_eq!(*raw_ada.closed.lock().unwrap(), None);
    for peer in &mut js {
        peer.call(json!({"cmd": "exit"}));
    }
    samod_mia.repo.stop().await;
}

on_both_backends!(
    js_presence_reaches_every_peer_without_disconnects,
    samod_and_js_exchange_ephemerals_without_disconnects,
    relayed_presence_names_the_verified_user,
);
