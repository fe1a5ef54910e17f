//! End-to-end fuzz run (issue 10) against the real server process, on both
//! backends: generated WebSocket frames over several connections (valid
//! messages of every type, real and damaged Automerge sync data, mutated
//! and re-laid-out CBOR, pathological shapes, text and oversized frames)
//! and generated REST request bodies for every POST/PUT route that the
//! OpenAPI document lists with a JSON body, while an honest device keeps
//! editing and syncing a ticket. Afterwards: the server is alive and
//! `/health` answers; no answer was a 5xx other than 503 and every error
//! was in the JSON error format; no sync connection was closed with 1011
//! (a commit that failed because of its input); the honest device is
//! connected and every one of its edits was acknowledged; peak RSS grew by
//! less than `PEAK_GROWTH_KB`.
//!
//! Bounded: `FUZZ_CASES` frames (default 800, over 4 clients that
//! reconnect whenever the server closes them) and 30 % as many REST
//! bodies; ~6 s per backend, both backends in parallel. Seed: `FUZZ_SEED` (a u64
//! or `random`; fixed by default). Generators: `tests/fuzz/gen.rs`; the
//! sans-IO properties are in `server/src/sync/fuzz_tests.rs`.

mod common;
#[path = "fuzz/gen.rs"]
mod gen;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use automerge::ReadDoc;
use common::{add_users, http, http_full, Server, TestDb, WAIT};
use fieldsync_shared::client::Device;
use fieldsync_shared::protocol::{self, Message};
use fieldsync_shared::{ticket, DocumentId};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRng, TestRunner};
use serde_json::{json, Value as Json};
use tokio_tungstenite::tungstenite::Message as Ws;

/// Peak RSS may grow by at most this much during the run (KiB).
const PEAK_GROWTH_KB: u64 = 200 * 1024;
/// `--max-message-bytes` of the fuzzed server.
const MAX_FRAME: usize = 1 << 20;

/// A deterministic generator (per backend and purpose, from `FUZZ_SEED`).
fn runner(salt: u64) -> TestRunner {
    // One seed per process, so a printed seed reproduces the whole run.
    static RANDOM: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = match gen::seed() {
        RngSeed::Fixed(s) => s,
        RngSeed::Random => *RANDOM.get_or_init(rand::random),
    };
    eprintln!("fuzz e2e: FUZZ_SEED={seed} (salt {salt})");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(seed ^ salt).to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn draw<S: Strategy>(runner: &mut TestRunner, s: &S) -> S::Value {
    s.new_tree(runner).expect("generate a value").current()
}

// ------------------------------------------------------------ WebSocket

#[derive(Default, Debug)]
struct SocketStats {
    frames: usize,
    connections: usize,
    errors: usize,
    /// Close codes the server sent.
    closes: Vec<(u16, String)>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads what the server sent within `wait`; false once it closed.
async fn drain(ws: &mut Socket, stats: &mut SocketStats, wait: Duration) -> bool {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return true,
            Ok(None) | Ok(Some(Err(_))) => return false,
            Ok(Some(Ok(Ws::Binary(b)))) => {
                let msg = protocol::decode(&b).expect("the server's frames decode");
                if let Message::Error { message, .. } = msg {
                    assert!(!message.is_empty());
                    stats.errors += 1;
                }
            }
            Ok(Some(Ok(Ws::Close(f)))) => {
                if let Some(f) = f {
                    stats.closes.push((u16::from(f.code), f.reason.to_string()));
                }
                return false;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// One hostile client: sends `frames` after a join, reconnecting (and
/// joining again) whenever the server closes the connection.
async fn hostile_client(url: String, peer: String, frames: Vec<gen::Frame>) -> SocketStats {
    let mut stats = SocketStats::default();
    let mut ws: Option<Socket> = None;
    for frame in frames {
        if ws.is_none() {
            let (mut s, _) = tokio_tungstenite::connect_async_with_config(&url, None, true)
                .await
                .expect("the server accepts connections during the run");
            s.send(Ws::Binary(gen::join(&peer).into())).await.unwrap();
            stats.connections += 1;
            ws = Some(s);
        }
        let s = ws.as_mut().unwrap();
        let sent = match frame {
            gen::Frame::Binary(b) => s.send(Ws::Binary(b.into())).await,
            gen::Frame::Text(t) => s.send(Ws::Text(t.into())).await,
        };
        stats.frames += 1;
        if sent.is_err() || !drain(s, &mut stats, Duration::from_millis(15)).await {
            ws = None;
        }
    }
    if let Some(mut s) = ws {
        let _ = s.close(None).await;
        drain(&mut s, &mut stats, Duration::from_millis(200)).await;
    }
    stats
}

// ----------------------------------------------------------------- REST

/// A JSON value of any shape, including the values that break handlers:
/// extreme numbers, NUL and long strings, deep nesting.
fn arb_json() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(-1i64),
            Just(0),
            any::<i64>()
        ]
        .prop_map(Json::from),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        gen::arb_text().prop_map(Json::from),
        Just(json!("a\u{0}b")),
        (1usize..5000).prop_map(|n| Json::from("x".repeat(n))),
        Just(json!("2026-02-30")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
            proptest::collection::vec(("[a-z_]{1,10}", inner), 0..4)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

#[derive(Clone, Debug)]
enum BodyTweak {
    Drop(prop::sample::Index),
    Replace(prop::sample::Index, Json),
    Add(String, Json),
    Nest(prop::sample::Index, usize),
}

fn arb_body_tweak() -> BoxedStrategy<BodyTweak> {
    prop_oneof![
        1 => any::<prop::sample::Index>().prop_map(BodyTweak::Drop),
        3 => (any::<prop::sample::Index>(), arb_json()).prop_map(|(i, v)| BodyTweak::Replace(i, v)),
        1 => ("[a-z_]{1,12}", arb_json()).prop_map(|(k, v)| BodyTweak::Add(k, v)),
        1 => (any::<prop::sample::Index>(), 1usize..300).prop_map(|(i, n)| BodyTweak::Nest(i, n)),
    ]
    .boxed()
}

/// One generated request body: the route's example with tweaked fields,
/// any JSON value, or damaged bytes.
#[derive(Clone, Debug)]
enum Body {
    Tweaked(Vec<BodyTweak>),
    Whole(Json),
    Bytes(Vec<gen::Mutation>),
}

fn arb_body() -> BoxedStrategy<Body> {
    prop_oneof![
        6 => proptest::collection::vec(arb_body_tweak(), 0..4).prop_map(Body::Tweaked),
        1 => arb_json().prop_map(Body::Whole),
        2 => gen::arb_mutations().prop_map(Body::Bytes),
    ]
    .boxed()
}

fn body_bytes(example: &Json, body: &Body) -> Vec<u8> {
    match body {
        Body::Whole(v) => v.to_string().into_bytes(),
        Body::Bytes(muts) => {
            let mut b = example.to_string().into_bytes();
            gen::mutate(&mut b, muts);
            b
        }
        Body::Tweaked(tweaks) => {
            let mut v = example.clone();
            if let Json::Object(map) = &mut v {
                for t in tweaks {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    let key = |i: &prop::sample::Index| {
                        (!keys.is_empty()).then(|| keys[i.index(keys.len())].clone())
                    };
                    match t {
                        BodyTweak::Drop(i) => {
                            if let Some(k) = key(i) {
                                map.remove(&k);
                            }
                        }
                        BodyTweak::Replace(i, new) => {
                            if let Some(k) = key(i) {
                                map.insert(k, new.clone());
                            }
                        }
                        BodyTweak::Add(k, new) => {
                            map.insert(k.clone(), new.clone());
                        }
                        BodyTweak::Nest(i, depth) => {
                            if let Some(k) = key(i) {
                                let mut inner = map[&k].clone();
                                for _ in 0..*depth {
                                    inner = json!([inner]);
                                }
                                map.insert(k, inner);
                            }
                        }
                    }
                }
            }
            v.to_string().into_bytes()
        }
    }
}

struct RestTargets {
    doc: DocumentId,
    customer: String,
}

/// Fills a route's path parameters: mostly real records, sometimes junk.
fn fill_path(path: &str, t: &RestTargets, junk: Option<&str>) -> String {
    let junk = junk.map(|j| {
        j.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    });
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let real = match seg {
            // Only the sacrificial account's password and role are changed.
            "{username}" => "fuzz-victim".to_string(),
            "{doc_id}" => t.doc.to_string(),
            "{id}" => t.customer.clone(),
            "{part_no}" => "FZ-1".to_string(),
            s if s.starts_with('{') => "x".to_string(),
            s => {
                out.push_str(s);
                continue;
            }
        };
        match (&junk, seg) {
            (Some(j), s) if s != "{username}" && !j.is_empty() => out.push_str(j),
            _ => out.push_str(&real),
        }
    }
    out
}

#[derive(Default, Debug)]
struct RestStats {
    requests: usize,
    by_status: std::collections::BTreeMap<u16, usize>,
}

/// Sends `count` generated bodies; every answer must be a non-5xx (503 is
/// overload) and every error must use the JSON error format.
fn rest_fuzz(
    port: u16,
    tokens: &[Option<String>],
    t: &RestTargets,
    count: usize,
    salt: u64,
) -> RestStats {
    let routes = json_routes_for(port);
    let mut r = runner(salt);
    let mut stats = RestStats::default();
    let pick = (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        arb_body(),
        proptest::option::weighted(0.15, gen::arb_text()),
        0u8..10,
    );
    for _ in 0..count {
        let (route, token, body, junk, ct) = draw(&mut r, &pick);
        let (method, path, example) = &routes[route.index(routes.len())];
        let token = tokens[token.index(tokens.len())].as_deref();
        let path = fill_path(path, t, junk.as_deref());
        let bytes = body_bytes(example, &body);
        let content_type = if ct == 0 {
            "text/plain"
        } else {
            "application/json"
        };
        let reply = http_full(port, method, &path, token, content_type, &bytes);
        stats.requests += 1;
        *stats.by_status.entry(reply.status).or_default() += 1;
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        assert!(
            reply.status != 0 && (reply.status < 500 || reply.status == 503),
            "{method} {path} answered {} for body {shown:?}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        if reply.status >= 400 {
            let err = reply.json();
            assert!(
                err["error"]["code"].is_string() && err["error"]["message"].is_string(),
                "{method} {path} answered {} without the JSON error format for body {shown:?}: {:?}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
    }
    stats
}

/// Routes with a JSON request body, from the served OpenAPI document.
fn json_routes_for(port: u16) -> Vec<(String, String, Json)> {
    let (status, doc) = http(port, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if let Some(example) = op.pointer("/requestBody/content/application~1json/example") {
                out.push((method.to_uppercase(), path.clone(), example.clone()));
            }
        }
    }
    assert!(
        out.len() >= 10,
        "the OpenAPI document lists JSON bodies: {out:?}"
    );
    out
}

// ------------------------------------------------------------- the run

async fn hostile_frames_and_bodies_while_an_honest_device_syncs(db: TestDb) {
    add_users(
        &db,
        &[
            ("fuzz-tech", "technician"),
            ("fuzz-office", "back_office"),
            ("fuzz-admin", "admin"),
            ("fuzz-victim", "technician"),
        ],
    );
    // Budgets raised so the fuzzers reach past the rate limiter; the honest
    // device is another user (budgets are per user) in any case.
    let server = Server::start(
        &db,
        &[
            "--max-message-bytes",
            &MAX_FRAME.to_string(),
            "--max-messages-per-sec",
            "5000",
            "--max-bytes-per-sec",
            "268435456",
            "--max-ops-per-sec",
            "10000000",
        ],
    );
    let tech = server.login("fuzz-tech", "fuzz-tech-password");
    let office = server.login("fuzz-office", "fuzz-office-password");
    let admin = server.login("fuzz-admin", "fuzz-admin-password");

    // A customer and a ticket assigned to the fuzzing technician: its
    // sync traffic reaches a real ticket with a projection.
    let (status, customer) = http(
        server.port,
        "POST",
        "/api/v1/customers",
        Some(&admin),
        Some(json!({"name": "Fuzz Bakery", "address": "1 Oven Road"})),
    );
    assert_eq!(status, 201, "{customer}");
    let customer = customer["id"].as_str().expect("customer id").to_string();
    let (status, created) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&admin),
        Some(
            json!({"customer_id": customer, "product": "Dough mixer", "fault_description": "fuzz target", "occurred_at": "2026-11-22T08:30:00Z", "reported_via": "phone", "priority": "B", "technician": "fuzz-tech"}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    let fuzz_doc: DocumentId = created["document_id"].as_str().unwrap().parse().unwrap();

    // The honest device: the harness admin, its own ticket, editing it all
    // through the run.
    let honest = Device::new("honest");
    honest.connect(&server.sync_url()).await.unwrap();
    let honest_doc = honest.create(|d| {
        ticket::create(
            d,
            &ticket::Intake {
                ticket_no: "T-HONEST".into(),
                priority: "B".into(),
                ..Default::default()
            },
        )
        .unwrap()
    });
    honest.wait_acknowledged(honest_doc, WAIT).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let editor = {
        let (dev, stop) = (honest.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                dev.change(honest_doc, |d| {
                    ticket::append_note(d, &format!("<honest {n}>")).unwrap()
                })
                .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            n
        })
    };

    let (_, peak_before) = server.memory_kb();
    let errors_before = server.metric("fieldsync_protocol_errors_total");
    let salt = db.backend as u64;
    let frames_total = gen::cases(800) as usize;

    // Hostile sockets: the technician (may write the fuzz ticket), the
    // back office (read-only) and an admin, on the fuzz ticket, the honest
    // ticket and unknown documents.
    let mut r = runner(salt);
    let mut clients = Vec::new();
    let users = [
        (&tech, "tech"),
        (&office, "office"),
        (&tech, "tech2"),
        (&admin, "admin"),
    ];
    for (i, (token, name)) in users.iter().enumerate() {
        // The admin could write the honest ticket; it fuzzes the others.
        let docs = if *name == "admin" {
            vec![fuzz_doc]
        } else {
            vec![fuzz_doc, honest_doc]
        };
        let peer = format!("fuzz-{name}");
        let strategy = gen::arb_frame(peer.clone(), docs);
        let mut frames: Vec<gen::Frame> = (0..frames_total / users.len())
            .map(|_| draw(&mut r, &strategy))
            .collect();
        if i == 0 {
            // Over the frame limit, twice.
            frames.insert(
                frames.len() / 3,
                gen::Frame::Binary(vec![0xa1; MAX_FRAME + 10]),
            );
            frames.insert(
                frames.len() * 2 / 3,
                gen::Frame::Binary(vec![0x00; MAX_FRAME * 2]),
            );
        }
        let url = server.sync_url_for(token, &format!("fuzz-dev-{name}"));
        clients.push(tokio::spawn(hostile_client(url, peer, frames)));
    }

    // REST bodies, meanwhile.
    let rest = {
        let port = server.port;
        let targets = RestTargets {
            doc: fuzz_doc,
            customer: customer.clone(),
        };
        let tokens = vec![
            Some(admin.clone()),
            Some(admin.clone()),
            Some(admin.clone()),
            Some(tech.clone()),
            None,
        ];
        let count = frames_total * 3 / 10;
        tokio::task::spawn_blocking(move || {
            rest_fuzz(port, &tokens, &targets, count, salt ^ 0x5e57)
        })
    };

    let mut sockets = SocketStats::default();
    for c in clients {
        let s = c.await.expect("a hostile client task");
        sockets.frames += s.frames;
        sockets.connections += s.connections;
        sockets.errors += s.errors;
        sockets.closes.extend(s.closes);
    }
    let rest = rest
        .await
        .expect("the REST fuzzer (see its assertion above)");
    stop.store(true, Ordering::Relaxed);
    let edits = editor.await.unwrap();
    eprintln!(
        "fuzz e2e ({:?}): {} frames over {} connections, {} errors, closes {:?}; REST {:?}; honest edits {}",
        db.backend,
        sockets.frames,
        sockets.connections,
        sockets.errors,
        close_summary(&sockets.closes),
        rest.by_status,
        edits
    );

    // The server is alive and serving.
    let health = http_full(server.port, "GET", "/health", None, "text/plain", b"");
    assert_eq!(health.status, 200, "/health after the run");
    // The input reached the server's checks.
    assert!(sockets.frames >= frames_total / 2);
    assert!(server.metric("fieldsync_protocol_errors_total") > errors_before);
    // No connection was closed because a commit failed on its input.
    let internal: Vec<_> = sockets.closes.iter().filter(|(c, _)| *c == 1011).collect();
    assert!(internal.is_empty(), "closed with 1011: {internal:?}");
    // The honest device kept syncing; every edit is acknowledged.
    assert!(edits >= 5, "the honest device made {edits} edits");
    assert!(
        honest.is_connected(),
        "the honest session survived the run: {:?}",
        honest.last_close()
    );
    honest.wait_acknowledged(honest_doc, WAIT).await.unwrap();
    let notes = honest
        .read(honest_doc, |d| ticket::read(d).map(|t| t.notes))
        .unwrap()
        .unwrap();
    for i in 0..edits {
        assert!(
            notes.contains(&format!("<honest {i}>")),
            "edit {i} is in the document"
        );
    }
    // A fresh reader gets the same document from the server.
    let reader = Device::new("reader");
    reader.want(honest_doc);
    reader.connect(&server.sync_url()).await.unwrap();
    let heads = honest.heads(honest_doc);
    reader
        .wait_until(WAIT, "the honest edits load from the server", |d| {
            let mine = d.heads(honest_doc);
            heads.iter().all(|h| mine.contains(h))
        })
        .await
        .unwrap();
    assert!(reader
        .read(honest_doc, |d| d
            .get(automerge::ROOT, "ticket_no")
            .unwrap()
            .is_some())
        .unwrap());
    // Memory stayed bounded.
    let (_, peak_after) = server.memory_kb();
    assert!(
        peak_after.saturating_sub(peak_before) < PEAK_GROWTH_KB,
        "peak RSS grew by {} KiB (bound {PEAK_GROWTH_KB} KiB)",
        peak_after - peak_before
    );
}

fn close_summary(closes: &[(u16, String)]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for (c, _) in closes {
        *m.entry(*c).or_default() += 1;
    }
    m
}

on_both_backends!(hostile_frames_and_bodies_while_an_honest_device_syncs);

// ----------------------------------------------- explicit regression cases

/// Found by the REST run: a device id with a NUL (`"device": "a\u0000b"` in
/// `POST /api/v1/sync/batch`, or `/sync?device=a%00b`) is used in a query
/// (`devices::find` in `sync::ws::identify`) before `devices::valid_id`
/// refuses it; PostgreSQL rejects the NUL ("invalid byte sequence for
/// encoding UTF8: 0x00") and the request is answered 500. SQLite answers 400.
async fn nul_in_device_id_is_refused_with_400(db: TestDb) {
    let server = Server::start(&db, &[]);
    let reply = http_full(
        server.port,
        "POST",
        "/api/v1/sync/batch",
        Some(&server.token),
        "application/json",
        br#"{"device":"a\u0000b","messages":[]}"#,
    );
    assert_eq!(
        reply.status,
        400,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    let url = server.sync_url_for(&server.token, "a%00b");
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 400),
        other => panic!(
            "expected a 400 refusal, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_device_id_is_refused_with_400_sqlite() {
    nul_in_device_id_is_refused_with_400(TestDb::new(common::Backend::Sqlite)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_device_id_is_refused_with_400_postgres() {
    let Some(db) = TestDb::postgres_or_skip() else {
        return;
    };
    nul_in_device_id_is_refused_with_400(db).await
}
