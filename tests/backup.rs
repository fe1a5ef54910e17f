//! `fieldsync backup` while the server serves and a device writes, then
//! `fieldsync restore` into an empty database (issue 13), on both backends:
//! every change acknowledged before the backup started is in the restored
//! database, its service-history rows are what a rebuild from its documents
//! gives, a backup of a quiet database restores to identical rows, and
//! neither command ever overwrites data.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cli, http, Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::ticket;
use fieldsync_shared::DocumentId;
use serde_json::json;

const PW: &str = "fieldsync-demo";

fn projection_rows(url: &str) -> serde_json::Value {
    let db = fieldsync_server::db::Db::open(url, 1).expect("open");
    db.run_blocking(fieldsync_server::projection::store::dump)
        .expect("dump")
}

fn stored_changes(url: &str) -> i64 {
    use diesel::prelude::*;
    let db = fieldsync_server::db::Db::open(url, 1).expect("open");
    db.run_blocking(|c| {
        use fieldsync_server::db::schema::doc_changes::dsl::*;
        Ok(match c {
            fieldsync_server::db::DbConn::Sqlite(c) => doc_changes.count().get_result::<i64>(c)?,
            fieldsync_server::db::DbConn::Postgres(c) => {
                doc_changes.count().get_result::<i64>(c)?
            }
        })
    })
    .expect("count")
}

fn run(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = cli(url, args, "");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn fetch(device: &Device, id: DocumentId) {
    device.want(id);
    device
        .wait_until(WAIT, "the ticket", |d| {
            d.status(id) == Some(DocStatus::Local)
        })
        .await
        .unwrap();
}

fn notes(device: &Device, id: DocumentId) -> String {
    device
        .read(id, |d| ticket::read(d).unwrap().notes)
        .unwrap_or_default()
}

async fn backup_while_writing_then_restore(db: TestDb) {
    let server = Server::start(&db, &["--demo"]);
    let dora = server.login("dora", PW);
    let tom = server.login("tom", PW);
    let customers = common::get_json(&server, &dora, "/api/v1/customers?q=acme");
    let (status, made) = http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&dora),
        Some(
            json!({"customer_id": customers["items"][0]["id"], "product": "Dough mixer",
                    "fault_description": "Backup under load", "priority": "B", "technician": "tom"}),
        ),
    );
    assert_eq!(status, 201, "{made}");
    let id = DocumentId::parse_url_or_id(made["document_id"].as_str().unwrap()).unwrap();

    // Acknowledged before the backup starts: these must all come back.
    let phone = Arc::new(Device::new("tom-phone-peer"));
    phone
        .connect(&server.sync_url_for(&tom, "tom-phone"))
        .await
        .unwrap();
    fetch(&phone, id).await;
    const BEFORE: usize = 20;
    for i in 1..=BEFORE {
        phone
            .change(id, |d| ticket::append_note(d, &format!("[m{i}]")).unwrap())
            .unwrap();
        phone.wait_acknowledged(id, WAIT).await.unwrap();
    }

    // The device keeps writing while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(BEFORE));
    let writer = tokio::spawn({
        let (phone, stop, written) = (phone.clone(), stop.clone(), written.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let i = written.load(Ordering::Relaxed) + 1;
                phone
                    .change(id, |d| ticket::append_note(d, &format!("[m{i}]")).unwrap())
                    .unwrap();
                phone.wait_acknowledged(id, WAIT).await.unwrap();
                written.store(i, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("during-writes.backup");
    let file_arg = file.to_string_lossy().into_owned();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let (url, f) = (db.url.clone(), file_arg.clone());
        move || run(&url, &["backup", &f])
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(ok, "backup: {stdout} {stderr}");
    assert!(stdout.contains("backup written"), "{stdout}");
    assert!(stderr.contains("backup"), "progress on stderr: {stderr}");
    let during = written.load(Ordering::Relaxed) - BEFORE;
    eprintln!("{during} changes acknowledged while the backup ran; {stdout}");

    // Never over a file, never over data.
    let (ok, _, stderr) = run(&db.url, &["backup", &file_arg]);
    assert!(!ok && stderr.contains("exists"), "{stderr}");
    let (ok, _, stderr) = run(&db.url, &["restore", &file_arg]);
    assert!(
        !ok && stderr.contains("restore only into a new or empty"),
        "{stderr}"
    );

    // Restored into an empty database, served again.
    let restored = TestDb::new(db.backend);
    let (ok, stdout, stderr) = run(&restored.url, &["restore", &file_arg]);
    assert!(ok, "restore: {stdout} {stderr}");
    let rows = projection_rows(&restored.url);
    let (ok, stdout, stderr) = run(&restored.url, &["projection", "rebuild"]);
    assert!(ok, "{stdout} {stderr}");
    assert_eq!(
        projection_rows(&restored.url),
        rows,
        "restored rows are what the documents give"
    );
    let again = Server::start(&restored, &[]);
    let tom2 = again.login("tom", PW);
    let tablet = Device::new("tom-tablet-peer");
    tablet
        .connect(&again.sync_url_for(&tom2, "tom-tablet"))
        .await
        .unwrap();
    fetch(&tablet, id).await;
    let text = notes(&tablet, id);
    for i in 1..=BEFORE {
        assert!(
            text.contains(&format!("[m{i}]")),
            "m{i} acknowledged before the backup: {text}"
        );
    }
    drop(again);

    // A quiet database restores to identical rows and changes.
    let quiet = dir.path().join("quiet.backup");
    let quiet_arg = quiet.to_string_lossy().into_owned();
    let (ok, stdout, stderr) = run(&db.url, &["backup", &quiet_arg]);
    assert!(ok, "{stdout} {stderr}");
    let copy = TestDb::new(db.backend);
    let (ok, stdout, stderr) = run(&copy.url, &["restore", &quiet_arg]);
    assert!(ok, "{stdout} {stderr}");
    assert_eq!(projection_rows(&copy.url), projection_rows(&db.url));
    assert_eq!(stored_changes(&copy.url), stored_changes(&db.url));
    let all = BEFORE + during;
    let phone_text = notes(&phone, id);
    assert!(phone_text.contains(&format!("[m{all}]")), "{phone_text}");
}

on_both_backends!(backup_while_writing_then_restore);
