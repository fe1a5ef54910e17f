//! Sync authentication: every sync connection belongs to a known user on a
//! known device; refused before any document data flows; live sessions close
//! within seconds of device revocation or account disabling, and when the
//! access token expires.

mod common;

use std::time::{Duration, Instant};

use common::{cli, http, Server, TestDb, WAIT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::DocumentId;

/// The HTTP status a refused upgrade got (from the client's error text).
async fn refused_status(url: &str) -> String {
    match Device::new("probe").connect(url).await {
        Ok(()) => panic!("connection to {url} was accepted"),
        Err(e) => e.to_string(),
    }
}

async fn wait_closed(dev: &Device) -> (u16, String) {
    let started = Instant::now();
    dev.wait_until(WAIT, "server closes the session", |d| !d.is_connected())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed within seconds"
    );
    dev.last_close()
        .expect("closed by the server with a reason")
}

async fn unauthenticated_connections_are_refused(db: TestDb) {
    let server = Server::start(&db, &[]);
    let base = server.bare_sync_url();
    assert!(refused_status(&base).await.contains("401"));
    assert!(refused_status(&format!("{base}?token=garbage&device=d1"))
        .await
        .contains("401"));
    assert!(
        refused_status(&format!("{base}?token={}", server.token))
            .await
            .contains("400"),
        "device id required"
    );
    assert!(
        refused_status(&format!("{base}?token={}&device=bad%20id", server.token))
            .await
            .contains("400")
    );

    // Device ids are scoped per user (issue 10 item 7): another user's
    // device with the same id is a different device.
    assert!(cli(
        &db.url,
        &["user", "add", "tina", "--role", "technician"],
        "tina-password\n"
    )
    .status
    .success());
    let tina = server.login("tina", "tina-password");
    let dev = Device::new("tina-phone");
    dev.connect(&server.sync_url_for(&tina, "tina-phone-1"))
        .await
        .unwrap();
    Device::new("admin-phone")
        .connect(&server.sync_url_for(&server.token, "tina-phone-1"))
        .await
        .expect("the same device id under another user");

    // Registration shows up for the user and in the audit log.
    let (_, devices) = http(server.port, "GET", "/api/v1/devices", Some(&tina), None);
    let ids: Vec<&str> = devices["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["tina-phone-1"],
        "technicians see their own devices only"
    );
    let (_, audit) = http(
        server.port,
        "GET",
        "/api/v1/audit?action=device_registered",
        Some(&server.token),
        None,
    );
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["subject"].as_str().unwrap().ends_with(":tina-phone-1")));
}

async fn revoking_a_device_closes_its_sessions_and_refuses_it(db: TestDb) {
    let server = Server::start(&db, &[]);
    assert!(cli(
        &db.url,
        &["user", "add", "tom", "--role", "technician"],
        "tom-password\n"
    )
    .status
    .success());
    let tom = server.login("tom", "tom-password");
    let url = server.sync_url_for(&tom, "tom-tablet");
    let dev = Device::new("tom-tablet-peer");
    dev.connect(&url).await.unwrap();
    // The session is live: it gets answers.
    let probe = DocumentId::random();
    dev.want(probe);
    dev.wait_until(WAIT, "doc-unavailable", |d| {
        d.status(probe) == Some(DocStatus::Unavailable)
    })
    .await
    .unwrap();

    // A technician may not revoke; a dispatcher or admin may.
    let (status, _) = http(
        server.port,
        "POST",
        "/api/v1/devices/tom-tablet/revoke",
        Some(&tom),
        None,
    );
    assert_eq!(status, 403);
    let started = std::time::Instant::now();
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/devices/tom-tablet/revoke",
        Some(&server.token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let revoked = body["revoked_at"].as_str().expect("RFC 3339 time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(revoked).is_ok(),
        "{revoked}"
    );

    let (code, reason) = wait_closed(&dev).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("revoked"), "{reason}");
    // At once on this instance, not at the watcher's next 2-second round.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(700),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(refused_status(&url).await.contains("403"));
    // Another device of the same user still works.
    let other = Device::new("tom-phone-peer");
    other
        .connect(&server.sync_url_for(&tom, "tom-phone"))
        .await
        .unwrap();
}

async fn disabling_a_user_closes_their_sessions(db: TestDb) {
    let server = Server::start(&db, &[]);
    assert!(cli(
        &db.url,
        &["user", "add", "una", "--role", "technician"],
        "una-password\n"
    )
    .status
    .success());
    let una = server.login("una", "una-password");
    let dev = Device::new("una-peer");
    dev.connect(&server.sync_url_for(&una, "una-phone"))
        .await
        .unwrap();

    // Disabled from the command line: another process, seen through the database.
    assert!(cli(&db.url, &["user", "disable", "una"], "")
        .status
        .success());
    let (code, reason) = wait_closed(&dev).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("disabled"), "{reason}");
    assert!(refused_status(&server.sync_url_for(&una, "una-phone"))
        .await
        .contains("401"));
}

async fn sessions_close_when_the_access_token_expires(db: TestDb) {
    let server = Server::start(&db, &["--access-token-ttl-secs", "2"]);
    let dev = Device::new("short-lived");
    dev.connect(&server.sync_url()).await.unwrap();
    let (code, reason) = wait_closed(&dev).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("expired"), "{reason}");
    // A fresh token reconnects.
    let fresh = server.login(common::HARNESS_USER, common::HARNESS_PASSWORD);
    dev.connect(&server.sync_url_for(&fresh, "short-lived-2"))
        .await
        .unwrap();
}

on_both_backends!(
    unauthenticated_connections_are_refused,
    revoking_a_device_closes_its_sessions_and_refuses_it,
    disabling_a_user_closes_their_sessions,
    sessions_close_when_the_access_token_expires,
);
