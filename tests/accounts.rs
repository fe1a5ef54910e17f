//! Accounts and sessions end to end: CLI bootstrap, login, JWT-protected API,
//! refresh-token rotation with reuse detection, logout, disabling, audit log.

mod common;

use common::{cli, http, Server, TestDb};
use serde_json::{json, Value};

fn login(server: &Server, user: &str, pw: &str) -> (u16, Value) {
    http(
        server.port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": user, "password": pw})),
    )
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

async fn cli_bootstraps_the_first_admin(db: TestDb) {
    let out = cli(
        &db.url,
        &["user", "add", "boss", "--role", "admin"],
        "s3cret-pass\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created boss (admin)"));

    let dup = cli(
        &db.url,
        &["user", "add", "boss", "--role", "admin"],
        "another-pass\n",
    );
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("username `boss` is taken"));
    let weak = cli(
        &db.url,
        &["user", "add", "weak", "--role", "technician"],
        "short\n",
    );
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 8 characters"));
    let bad_role = cli(
        &db.url,
        &["user", "add", "x", "--role", "king"],
        "long-enough\n",
    );
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));

    let list = cli(&db.url, &["user", "list"], "");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("boss") && text.contains("admin") && text.contains("active"),
        "{text}"
    );
    assert!(!text.contains("weak"));

    let server = Server::start(&db, &[]);
    let (status, body) = login(&server, "boss", "s3cret-pass");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["token_type"], "Bearer");
}

async fn login_api_and_roles(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "root", "--role", "admin"],
        "admin-password\n"
    )
    .status
    .success());
    let server = Server::start(&db, &[]);
    let port = server.port;

    // Wrong password and unknown user look the same.
    let (s1, b1) = login(&server, "root", "nope-nope");
    let (s2, b2) = login(&server, "ghost", "nope-nope");
    assert_eq!((s1, error_code(&b1)), (401, "invalid_credentials"));
    assert_eq!((s2, error_code(&b2)), (401, "invalid_credentials"));
    assert_eq!(b1["error"]["message"], b2["error"]["message"]);

    let (_, admin) = login(&server, "root", "admin-password");
    let admin_token = admin["access_token"].as_str().unwrap().to_string();

    // Bearer token checks.
    assert_eq!(
        error_code(&http(port, "GET", "/api/v1/me", None, None).1),
        "missing_token"
    );
    assert_eq!(
        error_code(&http(port, "GET", "/api/v1/me", Some("garbage"), None).1),
        "invalid_token"
    );
    let (status, me) = http(port, "GET", "/api/v1/me", Some(&admin_token), None);
    assert_eq!((status, me["username"].as_str()), (200, Some("root")));

    // Admin creates a dispatcher; the dispatcher may not administer accounts.
    let (status, created) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(
            json!({"username": "dana", "display_name": "Dana D.", "role": "dispatcher", "password": "dispatch-pw"}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["role"], "dispatcher");
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(json!({"username": "dana", "role": "dispatcher", "password": "dispatch-pw"})),
    );
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(json!({"username": "x", "role": "emperor", "password": "long-enough"})),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/users",
        Some(&admin_token),
        Some(json!({"nonsense": true})),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"));

    let (_, dana) = login(&server, "dana", "dispatch-pw");
    let dana_token = dana["access_token"].as_str().unwrap().to_string();
    let (status, body) = http(port, "GET", "/api/v1/users", Some(&dana_token), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, users) = http(port, "GET", "/api/v1/users", Some(&admin_token), None);
    assert_eq!(status, 200);
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"root") && names.contains(&"dana"),
        "{names:?}"
    );

    // Disabling cuts off the existing token and future logins.
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/users/dana/disable",
        Some(&admin_token),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        error_code(&http(port, "GET", "/api/v1/me", Some(&dana_token), None).1),
        "user_disabled"
    );
    assert_eq!(login(&server, "dana", "dispatch-pw").0, 401);
    let refresh = dana["refresh_token"].as_str().unwrap();
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    );
    assert_eq!(status, 401);
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "tech", "--role", "technician"],
        "tech-password\n"
    )
    .status
    .success());
    assert!(cli(
        &db.url,
        &["user", "add", "root", "--role", "admin"],
        "admin-password\n"
    )
    .status
    .success());
    let server = Server::start(&db, &[]);
    let port = server.port;
    let refresh = |token: &str| {
        http(
            port,
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": token})),
        )
    };

    let (_, first) = login(&server, "tech", "tech-password");
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = refresh(&r1);
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/me",
            Some(second["access_token"].as_str().unwrap()),
            None
        )
        .0,
        200
    );

    // r1 was used already: replaying it revokes the family, so r2 dies too.
    let (status, body) = refresh(&r1);
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
    assert_eq!(refresh(&r2).0, 401, "the whole family is revoked");

    // Logout revokes a fresh family.
    let (_, again) = login(&server, "tech", "tech-password");
    let r3 = again["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        http(
            port,
            "POST",
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": r3}))
        )
        .0,
        204
    );
    assert_eq!(refresh(&r3).0, 401);

    // Everything is in the audit log, visible to admins only.
    let (_, admin) = login(&server, "root", "admin-password");
    let admin_token = admin["access_token"].as_str().unwrap();
    let (_, reused) = http(
        port,
        "GET",
        "/api/v1/audit?action=refresh_token_reused",
        Some(admin_token),
        None,
    );
    assert_eq!(reused.as_array().unwrap().len(), 1, "{reused}");
    let (_, all) = http(port, "GET", "/api/v1/audit", Some(admin_token), None);
    let actions: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "login",
        "token_refreshed",
        "refresh_token_reused",
        "logout",
        "user_created",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (_, tech) = login(&server, "tech", "tech-password");
    assert_eq!(
        http(
            port,
            "GET",
            "/api/v1/audit",
            Some(tech["access_token"].as_str().unwrap()),
            None
        )
        .0,
        403
    );
    assert_eq!(login(&server, "tech", "wrong-password").0, 401);
    let (_, failed) = http(
        port,
        "GET",
        "/api/v1/audit?action=login_failed",
        Some(admin_token),
        None,
    );
    assert_eq!(failed[0]["subject"], "tech");
}

async fn repeated_failed_logins_are_throttled(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "vic", "--role", "technician"],
        "vic-password\n"
    )
    .status
    .success());
    let server = Server::start(&db, &[]);
    for _ in 0..5 {
        assert_eq!(login(&server, "vic", "guess-guess").0, 401);
    }
    // Even the right password is refused now, with a clear error.
    let (status, body) = login(&server, "vic", "vic-password");
    assert_eq!((status, error_code(&body)), (429, "too_many_attempts"));
    // Other accounts are unaffected.
    assert_eq!(
        login(&server, common::HARNESS_USER, common::HARNESS_PASSWORD).0,
        200
    );
}

async fn role_changes_are_audited_and_apply_to_live_sessions(db: TestDb) {
    assert!(cli(
        &db.url,
        &["user", "add", "rita", "--role", "technician"],
        "rita-password\n"
    )
    .status
    .success());
    let out = cli(
        &db.url,
        &["user", "set-role", "rita", "--role", "dispatcher"],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&db, &[]);
    let (_, rita) = login(&server, "rita", "rita-password");
    assert_eq!(rita["user"]["role"], "dispatcher");
    let rita_token = rita["access_token"].as_str().unwrap().to_string();

    let dev = fieldsync_shared::client::Device::new("rita-peer");
    dev.connect(&server.sync_url_for(&rita_token, "rita-phone"))
        .await
        .unwrap();
    let (status, body) = http(
        server.port,
        "PUT",
        "/api/v1/users/rita/role",
        Some(&rita_token),
        Some(json!({"role": "admin"})),
    );
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden"),
        "only admins change roles"
    );
    let (status, body) = http(
        server.port,
        "PUT",
        "/api/v1/users/rita/role",
        Some(&server.token),
        Some(json!({"role": "back_office"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "back_office");
    dev.wait_until(common::WAIT, "live session closed", |d| !d.is_connected())
        .await
        .unwrap();
    assert!(dev.last_close().unwrap().1.contains("role changed"));

    let (_, audit) = http(
        server.port,
        "GET",
        "/api/v1/audit?action=role_changed",
        Some(&server.token),
        None,
    );
    let roles: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        vec!["rita", "rita"],
        "CLI and API changes are both audited"
    );
}

on_both_backends!(
    role_changes_are_audited_and_apply_to_live_sessions,
    repeated_failed_logins_are_throttled,
    cli_bootstraps_the_first_admin,
    login_api_and_roles,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
);
