//! Interop: the stock JavaScript client (`@automerge/automerge-repo` +
//! `@automerge/automerge-repo-network-websocket` from npm, driven by
//! scripts/interop/device.mjs) and the Rust device edit the same ticket
//! offline, reconnect, and end with identical heads and content.
//! Needs `npm ci` in scripts/interop (`.ci/run` does it).

mod common;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ROOT};
use common::js_device::{encode_heads, js_heads, JsDevice};
use common::{Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::DocumentId;
use serde_json::json;

fn text_of(doc: &AutoCommit, key: &str) -> String {
    let (_, id) = doc.get(ROOT, key).unwrap().unwrap();
    doc.text(id).unwrap()
}

/// automerge JS 3.x writes plain strings as Text objects; Rust may write
/// scalars. A reader must accept both.
fn str_of(doc: &AutoCommit, key: &str) -> String {
    match doc.get(ROOT, key).unwrap().unwrap() {
        (automerge::Value::Object(ObjType::Text), id) => doc.text(id).unwrap(),
        (v, _) => v.into_scalar().unwrap().into_string().unwrap(),
    }
}

async fn js_and_rust_devices_converge_after_offline_edits(db: TestDb) {
    let server = Server::start(&db, &[]);
    let rust = Device::new("rust-tech");
    rust.connect(&server.sync_url()).await.unwrap();
    let id = rust.create(|d| {
        d.put(ROOT, "ticket_no", "T-2001").unwrap();
        d.put(ROOT, "status", "assigned").unwrap();
        d.put(ROOT, "priority", "B").unwrap();
        let notes = d.put_object(ROOT, "notes", ObjType::Text).unwrap();
        d.splice_text(&notes, 0, 0, "Compressor trips.").unwrap();
    });
    rust.wait_acknowledged(id, WAIT).await.unwrap();

    let mut js = JsDevice::start(&server.sync_url());
    js.call(json!({"cmd": "connect"}));
    let found = js.call(json!({"cmd": "find", "url": id.url()}));
    assert_eq!(found["doc"]["ticket_no"], "T-2001");
    assert_eq!(found["doc"]["notes"], "Compressor trips.");

    // Both go offline and edit: different fields, the same field, and
    // concurrent typing in the notes text.
    js.call(json!({"cmd": "disconnect"}));
    rust.disconnect().await;
    js.call(json!({"cmd": "set", "url": id.url(), "path": ["status"], "value": "on_site"}));
    js.call(json!({"cmd": "set", "url": id.url(), "path": ["priority"], "value": "A"}));
    js.call(
        json!({"cmd": "splice", "url": id.url(), "path": ["notes"], "index": 0, "text": "[js] "}),
    );
    rust.change(id, |d| {
        d.put(ROOT, "work_done", "cleaned condenser").unwrap();
        d.put(ROOT, "priority", "C").unwrap();
        let (_, notes) = d.get(ROOT, "notes").unwrap().unwrap();
        let end = d.text(&notes).unwrap().chars().count();
        d.splice_text(&notes, end, 0, " [rust] fixed.").unwrap();
    })
    .unwrap();

    // Reconnect; each side waits for the server's (durable) acknowledgement.
    js.call(json!({"cmd": "connect"}));
    rust.connect(&server.sync_url()).await.unwrap();
    js.call(json!({"cmd": "wait-synced", "url": id.url(), "timeoutMs": 15000}));
    rust.wait_acknowledged(id, WAIT).await.unwrap();

    // Converged: identical heads and content on both.
    let deadline = std::time::Instant::now() + WAIT;
    let js_doc = loop {
        let dump = js.call(json!({"cmd": "dump", "url": id.url()}));
        if js_heads(&dump) == encode_heads(&rust.heads(id)) {
            break dump;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no convergence: js {dump} rust {:?}",
            encode_heads(&rust.heads(id))
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    rust.read(id, |d| {
        assert_eq!(js_doc["doc"]["notes"], text_of(d, "notes"));
        assert_eq!(text_of(d, "notes"), "[js] Compressor trips. [rust] fixed.");
        assert_eq!(js_doc["doc"]["status"], str_of(d, "status"));
        assert_eq!(str_of(d, "status"), "on_site");
        assert_eq!(js_doc["doc"]["work_done"], "cleaned condenser");
        // Concurrent writes to one field: both sides pick the same winner.
        assert_eq!(js_doc["doc"]["priority"], str_of(d, "priority"));
    });

    // And the other way round: a ticket created on the JS device.
    let created =
        js.call(json!({"cmd": "create", "doc": {"ticket_no": "T-2002", "notes": "from js"}}));
    let url = created["url"].as_str().unwrap().to_string();
    js.call(json!({"cmd": "wait-synced", "url": url, "timeoutMs": 15000}));
    let id2 = DocumentId::parse_url_or_id(&url).unwrap();
    let fresh = Device::new("rust-reader");
    fresh.want(id2);
    fresh.connect(&server.sync_url()).await.unwrap();
    fresh
        .wait_until(WAIT, "JS ticket arrives", |d| {
            d.status(id2) == Some(DocStatus::Local)
        })
        .await
        .unwrap();
    assert_eq!(encode_heads(&fresh.heads(id2)), js_heads(&created));
    assert_eq!(fresh.read(id2, |d| text_of(d, "notes")).unwrap(), "from js");
    js.call(json!({"cmd": "exit"}));
}

on_both_backends!(js_and_rust_devices_converge_after_offline_edits);
