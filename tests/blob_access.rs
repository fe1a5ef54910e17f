//! Attachments (issue 10 items 12 and 13): a blob is served through a ticket
//! only if someone allowed to see it attached it there — a hash copied from
//! another ticket opens nothing; blobs stored before that rule keep working
//! where they were referenced; uploads count against a daily per-user quota;
//! `fieldsync blobs gc` removes old unreferenced blobs and nothing else.

mod common;

use std::time::{Duration, SystemTime};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ROOT};
use common::{add_users, cli, http, http_bytes, http_full, Backend, Server, TestDb, WAIT};
use diesel::{Connection, RunQueryDsl};
use fieldsync_server::blobs::sha256_hex;
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::DocumentId;
use serde_json::json;

const USERS: &[(&str, &str)] = &[
    ("dora", "dispatcher"),
    ("bob", "back_office"),
    ("tim", "technician"),
    ("tess", "technician"),
];

fn token(server: &Server, user: &str) -> String {
    server.login(user, &format!("{user}-password"))
}

fn create_ticket(server: &Server, dispatcher: &str, technician: &str) -> DocumentId {
    let (status, created) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(dispatcher),
        Some(
            json!({"customer_name": "Acme", "product": "Mixer", "fault_description": "stops",
                    "priority": "B", "technician": technician}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    DocumentId::parse_url_or_id(created["url"].as_str().unwrap()).unwrap()
}

/// A device of `user` that has `tickets` locally.
async fn device(server: &Server, token: &str, name: &str, tickets: &[DocumentId]) -> Device {
    let d = Device::new(format!("{name}-peer"));
    d.connect(&server.sync_url_for(token, name)).await.unwrap();
    for &id in tickets {
        d.want(id);
        d.wait_until(WAIT, "the ticket", |d| {
            d.status(id) == Some(DocStatus::Local)
        })
        .await
        .unwrap();
    }
    d
}

fn add_attachment(d: &mut AutoCommit, sha: &str) {
    let (_, list) = d.get(ROOT, "attachments").unwrap().unwrap();
    let at = d.length(&list);
    let item = d.insert_object(&list, at, ObjType::Map).unwrap();
    d.put(&item, "sha256", sha).unwrap();
    d.put(&item, "kind", "photo").unwrap();
}

/// Adds an attachment on the device and waits until the server stored it.
async fn attach(d: &Device, id: DocumentId, sha: &str) {
    d.change(id, |doc| add_attachment(doc, sha)).unwrap();
    d.wait_acknowledged(id, WAIT).await.unwrap();
}

fn upload(server: &Server, token: &str, bytes: &[u8]) -> u16 {
    let path = format!("/api/v1/blobs/{}", sha256_hex(bytes));
    http_bytes(server.port, "PUT", &path, Some(token), bytes).0
}

/// GET of `sha` through `ticket`: the status (and the bytes when 200).
fn download(server: &Server, token: &str, sha: &str, ticket: DocumentId) -> (u16, Vec<u8>) {
    let path = format!("/api/v1/blobs/{sha}?doc={ticket}");
    http_bytes(server.port, "GET", &path, Some(token), b"")
}

fn photo(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect()
}

async fn a_copied_hash_opens_nothing(db: TestDb) {
    add_users(&db, USERS);
    let server = Server::start(&db, &[]);
    let (dora, bob, tim, tess) = (
        token(&server, "dora"),
        token(&server, "bob"),
        token(&server, "tim"),
        token(&server, "tess"),
    );
    let ticket1 = create_ticket(&server, &dora, "tim");
    let ticket2 = create_ticket(&server, &dora, "tess");

    // Tim photographs the fault on ticket 1.
    let pic = photo(7, 40_000);
    let sha = sha256_hex(&pic);
    assert_eq!(upload(&server, &tim, &pic), 201);
    let tim_phone = device(&server, &tim, "tim-phone", &[ticket1]).await;
    attach(&tim_phone, ticket1, &sha).await;

    // Tess learns the hash and writes it into her own ticket over sync.
    let tess_phone = device(&server, &tess, "tess-phone", &[ticket2]).await;
    attach(&tess_phone, ticket2, &sha).await;
    assert_eq!(
        download(&server, &tess, &sha, ticket2).0,
        404,
        "a hash copied into one's own ticket must not open another ticket's blob"
    );
    assert_eq!(
        download(&server, &dora, &sha, ticket2).0,
        404,
        "ticket 2's reference was never attached by someone who may see the blob"
    );
    assert_eq!(
        download(&server, &tess, &sha, ticket1).0,
        404,
        "not her ticket"
    );

    // Through ticket 1 everyone who may see ticket 1 gets it.
    for (who, t) in [("tim", &tim), ("dora", &dora), ("bob", &bob)] {
        let (status, body) = download(&server, t, &sha, ticket1);
        assert_eq!(status, 200, "{who} reads the photo through ticket 1");
        assert_eq!(body, pic, "{who}");
    }

    // The usual app order: the edit syncs before the upload finishes; the
    // upload confirms the attachment.
    let later = photo(11, 30_000);
    let later_sha = sha256_hex(&later);
    attach(&tim_phone, ticket1, &later_sha).await;
    assert_eq!(
        download(&server, &dora, &later_sha, ticket1).0,
        404,
        "not uploaded yet"
    );
    assert_eq!(upload(&server, &tim, &later), 201);
    assert_eq!(download(&server, &dora, &later_sha, ticket1).0, 200);

    // A dispatcher who can see ticket 1 may attach its photo to ticket 2:
    // then it is Tess's to see.
    let dora_desk = device(&server, &dora, "dora-desk", &[ticket2]).await;
    let (_, before) = download(&server, &tess, &later_sha, ticket2);
    assert!(before.is_empty() || before != later);
    attach(&dora_desk, ticket2, &later_sha).await;
    tess_phone
        .wait_until(WAIT, "Dora's attachment", |d| {
            d.read(ticket2, |doc| {
                fieldsync_shared::ticket::referenced_blobs(doc).contains(&later_sha)
            }) == Some(true)
        })
        .await
        .unwrap();
    assert_eq!(download(&server, &tess, &later_sha, ticket2), (200, later));
    assert_eq!(
        download(&server, &tess, &sha, ticket2).0,
        404,
        "Tess's own copy of the first hash still opens nothing"
    );
}

/// Runs SQL on the test database directly (simulating an older server).
fn sql(db: &TestDb, statements: &[&str]) {
    for s in statements {
        match db.backend {
            Backend::Sqlite => diesel::sql_query(*s)
                .execute(&mut diesel::SqliteConnection::establish(&db.url).unwrap()),
            Backend::Postgres => diesel::sql_query(*s)
                .execute(&mut diesel::PgConnection::establish(&db.url).unwrap()),
        }
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

async fn legacy_blobs_are_served_where_they_were_referenced(db: TestDb) {
    add_users(&db, USERS);
    let server = Server::start(&db, &[]);
    let (dora, tim) = (token(&server, "dora"), token(&server, "tim"));
    let ticket1 = create_ticket(&server, &dora, "tim");
    let ticket2 = create_ticket(&server, &dora, "tess");
    let pic = photo(13, 20_000);
    let sha = sha256_hex(&pic);
    assert_eq!(upload(&server, &tim, &pic), 201);
    let tim_phone = device(&server, &tim, "tim-phone", &[ticket1]).await;
    attach(&tim_phone, ticket1, &sha).await;
    tim_phone.disconnect().await;

    // As if the upload and the attachment predate upload records: no rows,
    // and the migration's marker asking for the blob directory to be read.
    let server = {
        let mut s = server;
        s.kill();
        sql(
            &db,
            &[
                "DELETE FROM blob_uploads",
                "DELETE FROM blob_links",
                "UPDATE server_meta SET value = 'pending' WHERE key = 'blob_legacy_scan'",
            ],
        );
        s.crash_and_restart()
    };
    let (dora, tim, tess) = (
        token(&server, "dora"),
        token(&server, "tim"),
        token(&server, "tess"),
    );
    assert_eq!(download(&server, &tim, &sha, ticket1), (200, pic.clone()));
    assert_eq!(download(&server, &dora, &sha, ticket1).0, 200);

    // A reference made after the upgrade is judged by the new rule.
    let tess_phone = device(&server, &tess, "tess-phone", &[ticket2]).await;
    attach(&tess_phone, ticket2, &sha).await;
    assert_eq!(download(&server, &tess, &sha, ticket2).0, 404);
    assert_eq!(download(&server, &tim, &sha, ticket1).0, 200);
}

async fn uploads_count_against_a_daily_quota(db: TestDb) {
    add_users(&db, USERS);
    let server = Server::start(&db, &["--blob-quota-bytes", "100000"]);
    let (tim, tess) = (token(&server, "tim"), token(&server, "tess"));
    let first = photo(3, 60_000);
    let second = photo(5, 50_000);
    assert_eq!(upload(&server, &tim, &first), 201);

    let path = format!("/api/v1/blobs/{}", sha256_hex(&second));
    let refused = http_full(
        server.port,
        "PUT",
        &path,
        Some(&tim),
        "application/octet-stream",
        &second,
    );
    assert_eq!(refused.status, 429, "60 000 + 50 000 bytes exceed 100 000");
    let body = refused.json();
    assert_eq!(body["error"]["code"], "blob_quota_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100000"),
        "{body}"
    );
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=24 * 3600).contains(&retry), "{retry}");
    assert!(
        !blob_path(&db, &sha256_hex(&second)).exists(),
        "nothing was stored"
    );

    assert_eq!(
        upload(&server, &tim, &first),
        200,
        "re-sending a stored blob is free"
    );
    assert_eq!(
        upload(&server, &tess, &second),
        201,
        "the quota is per user"
    );
    assert_eq!(
        upload(&server, &tim, &second),
        200,
        "stored already: free for Tim too"
    );
}

fn gc(db: &TestDb, args: &[&str]) -> String {
    let dir = db.blob_dir.path().to_string_lossy().into_owned();
    let mut all = vec!["blobs", "gc", "--blob-dir", dir.as_str()];
    all.extend_from_slice(args);
    let out = cli(&db.url, &all, "");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "blobs gc failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn blob_path(db: &TestDb, sha: &str) -> std::path::PathBuf {
    db.blob_dir.path().join(&sha[..2]).join(sha)
}

fn age(path: &std::path::Path, by: Duration) {
    std::fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - by)
        .unwrap();
}

async fn gc_deletes_only_old_unreferenced_blobs(db: TestDb) {
    add_users(&db, USERS);
    let server = Server::start(&db, &[]);
    let (dora, tim) = (token(&server, "dora"), token(&server, "tim"));
    let ticket = create_ticket(&server, &dora, "tim");
    let (kept, orphan) = (photo(17, 10_000), photo(19, 12_345));
    let (kept_sha, orphan_sha) = (sha256_hex(&kept), sha256_hex(&orphan));
    assert_eq!(upload(&server, &tim, &kept), 201);
    assert_eq!(upload(&server, &tim, &orphan), 201);
    let phone = device(&server, &tim, "tim-phone", &[ticket]).await;
    attach(&phone, ticket, &kept_sha).await;
    let leftover = blob_path(&db, &kept_sha).with_file_name(".leftover.tmp");
    std::fs::write(&leftover, b"half an upload").unwrap();

    // Fresh uploads are kept: their ticket edit may still be on its way.
    let out = gc(&db, &["--older-than-hours", "1"]);
    assert!(out.contains("2 stored, 1 referenced, 1 unreferenced but younger than 1 h (kept), 0 unreferenced deleted"), "{out}");
    assert!(blob_path(&db, &orphan_sha).exists() && leftover.exists());

    for p in [
        blob_path(&db, &kept_sha),
        blob_path(&db, &orphan_sha),
        leftover.clone(),
    ] {
        age(&p, Duration::from_secs(2 * 3600));
    }
    let out = gc(&db, &["--older-than-hours", "1", "--dry-run"]);
    assert!(
        out.contains(&format!("would delete {orphan_sha} (12345 bytes, 2 h old)")),
        "{out}"
    );
    assert!(
        blob_path(&db, &orphan_sha).exists(),
        "a dry run deletes nothing"
    );

    let out = gc(&db, &["--older-than-hours", "1"]);
    assert!(out.contains(&format!("deleted {orphan_sha}")), "{out}");
    assert!(
        out.contains("1 unreferenced deleted (12345 bytes), 1 temporary file(s) deleted"),
        "{out}"
    );
    assert!(!blob_path(&db, &orphan_sha).exists() && !leftover.exists());
    assert_eq!(
        download(&server, &tim, &kept_sha, ticket),
        (200, kept),
        "referenced: kept"
    );

    // A re-upload restarts the grace period (it precedes a new reference).
    assert_eq!(upload(&server, &tim, &orphan), 201);
    age(&blob_path(&db, &orphan_sha), Duration::from_secs(2 * 3600));
    assert_eq!(upload(&server, &tim, &orphan), 200);
    let out = gc(&db, &["--older-than-hours", "1"]);
    assert!(out.contains("0 unreferenced deleted"), "{out}");
    assert!(blob_path(&db, &orphan_sha).exists());
}

on_both_backends!(
    a_copied_hash_opens_nothing,
    legacy_blobs_are_served_where_they_were_referenced,
    uploads_count_against_a_daily_quota,
    gc_deletes_only_old_unreferenced_blobs,
);
