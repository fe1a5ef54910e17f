//! REST hardening (issue 10 items 13 and 14): unique ticket numbers, valid
//! dates, literal search text, bounded input lengths, working pagination,
//! and the JSON error format on every route and every kind of error.

mod common;

use common::{http, http_full, http_with, items, Server, TestDb};
use serde_json::{json, Value};

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

fn new_ticket(server: &Server, ticket_no: &str, fault: &str) -> (u16, Value) {
    http(
        server.port,
        "POST",
        "/api/v1/tickets",
        Some(&server.token),
        Some(json!({
            "ticket_no": ticket_no,
            "customer_name": "Acme Bakery",
            "product": "Dough mixer",
            "fault_description": fault,
            "priority": "B",
        })),
    )
}

fn new_customer(server: &Server, name: &str) -> Value {
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/customers",
        Some(&server.token),
        Some(json!({ "name": name })),
    );
    assert_eq!(status, 201, "{body}");
    body
}

async fn ticket_numbers_are_unique(db: TestDb) {
    let server = Server::start(&db, &[]);
    assert_eq!(new_ticket(&server, "T-100", "Motor stops").0, 201);
    let (status, body) = new_ticket(&server, "T-100", "Another fault");
    assert_eq!((status, error_code(&body)), (409, "conflict"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("T-100"));
    // Surrounding spaces do not make a new number.
    assert_eq!(new_ticket(&server, " T-100 ", "Third").0, 409);
    assert_eq!(new_ticket(&server, "T-101", "Other ticket").0, 201);
    let (_, rows) = http(
        server.port,
        "GET",
        "/api/v1/tickets?q=T-10",
        Some(&server.token),
        None,
    );
    assert_eq!(rows["items"].as_array().unwrap().len(), 2, "{rows}");
}

async fn asset_dates_must_be_real_dates(db: TestDb) {
    let server = Server::start(&db, &[]);
    let customer = new_customer(&server, "Dates Ltd");
    let path = format!(
        "/api/v1/customers/{}/assets",
        customer["id"].as_str().unwrap()
    );
    for (field, bad) in [
        ("purchased_at", "2026-02-30"),
        ("purchased_at", "yesterday"),
        ("warranty_until", "2027-13-01"),
        ("warranty_until", "2027-03-01T99:00:00Z"),
    ] {
        let (status, body) = http(
            server.port,
            "POST",
            &path,
            Some(&server.token),
            Some(json!({ "product": "Oven", field: bad })),
        );
        // Date-shaped but no calendar date: 422 (the schema's pattern
        // allows it); any other shape: 400 (the schema refuses it).
        let date_shaped = bad.len() == 10 && bad.as_bytes()[4] == b'-' && bad.as_bytes()[7] == b'-';
        let want = if date_shaped {
            (422, "invalid")
        } else {
            (400, "bad_request")
        };
        assert_eq!((status, error_code(&body)), want, "{field}={bad}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(field));
    }
    let (status, body) = http(
        server.port,
        "POST",
        &path,
        Some(&server.token),
        Some(json!({ "product": "Oven", "purchased_at": "2024-02-29", "warranty_until": "" })),
    );
    assert_eq!(status, 201, "{body}");
}

async fn search_text_is_literal(db: TestDb) {
    let server = Server::start(&db, &[]);
    new_customer(&server, "100% Bakery");
    new_customer(&server, "1000 Bakes");
    new_customer(&server, "Back_Office Ltd");
    new_customer(&server, "BackXOffice Ltd");
    let names = |q: &str| -> Vec<String> {
        let (status, rows) = http(
            server.port,
            "GET",
            &format!("/api/v1/customers?q={q}"),
            Some(&server.token),
            None,
        );
        assert_eq!(status, 200, "{rows}");
        rows["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("100%25"), vec!["100% Bakery"]);
    assert_eq!(names("k_o"), vec!["Back_Office Ltd"]);
    assert_eq!(names("%5C").len(), 0, "a backslash is literal too");

    assert_eq!(new_ticket(&server, "W_1", "Under 50% power").0, 201);
    assert_eq!(new_ticket(&server, "WX1", "Under 500 W power").0, 201);
    let count = |q: &str| {
        let (status, rows) = http(
            server.port,
            "GET",
            &format!("/api/v1/tickets?q={q}"),
            Some(&server.token),
            None,
        );
        assert_eq!(status, 200, "{rows}");
        rows["items"].as_array().unwrap().len()
    };
    assert_eq!(count("W_1"), 1);
    assert_eq!(count("50%25"), 1);
    assert_eq!(count("power"), 2);
}

async fn overlong_inputs_are_refused(db: TestDb) {
    let server = Server::start(&db, &[]);
    let long = "X".repeat(5000);
    let (status, body) = http(
        server.port,
        "PUT",
        &format!("/api/v1/parts/{long}"),
        Some(&server.token),
        Some(json!({ "name": "Motor" })),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("part_no"));
    let (status, body) = http(
        server.port,
        "PUT",
        "/api/v1/parts/MTR-1",
        Some(&server.token),
        Some(json!({ "name": long })),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/customers",
        Some(&server.token),
        Some(json!({ "name": long })),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let (status, body) = new_ticket(&server, &long, "fault");
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/devices",
        Some(&server.token),
        Some(json!({ "name": long })),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    // Long free text within the limit is fine.
    assert_eq!(new_ticket(&server, "T-LONG", &"y".repeat(3000)).0, 201);
}

/// Every list pages the same way: `?limit=&cursor=`, answered with
/// `{"items", "next_cursor"}`. Keyset paging: a ticket created between two
/// page reads neither shifts nor repeats the older ones.
async fn lists_page_with_a_cursor(db: TestDb) {
    let server = Server::start(&db, &[]);
    for i in 0..5 {
        assert_eq!(new_ticket(&server, &format!("P-{i}"), "fault").0, 201);
    }
    let page = |query: &str| {
        let (status, body) = http(
            server.port,
            "GET",
            &format!("/api/v1/tickets?{query}"),
            Some(&server.token),
            None,
        );
        assert_eq!(status, 200, "{query}: {body}");
        let nos = items(&body)
            .iter()
            .map(|r| r["ticket_no"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        (nos, body["next_cursor"].as_str().map(str::to_string))
    };
    let (first, c1) = page("limit=2");
    let c1 = c1.expect("more than one page");
    // A new ticket arrives between two page reads: it is newer than the
    // cursor, so the next pages are unchanged.
    assert_eq!(new_ticket(&server, "P-NEW", "fault").0, 201);
    let (second, c2) = page(&format!("limit=2&cursor={c1}"));
    let (third, c3) = page(&format!("limit=2&cursor={}", c2.unwrap()));
    assert_eq!((first.len(), second.len(), third.len()), (2, 2, 1));
    assert_eq!(c3, None, "the last page has no next cursor");
    let mut all: Vec<_> = [first, second, third].concat();
    assert!(!all.contains(&"P-NEW".to_string()));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5, "pages neither overlap nor skip: {all:?}");
    let (everything, next) = page("limit=100");
    assert_eq!((everything.len(), next), (6, None));
    assert_eq!(page("limit=3&priority=B&q=P-").0.len(), 3);

    // Other lists: the same shape and the same cursor rules.
    for i in 0..3 {
        new_customer(&server, &format!("Paging {i}"));
    }
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = http(
            server.port,
            "GET",
            &format!("/api/v1/customers?q=Paging&limit=1&cursor={cursor}"),
            Some(&server.token),
            None,
        );
        assert_eq!(status, 200, "{body}");
        names.extend(
            items(&body)
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["Paging 0", "Paging 1", "Paging 2"]);
    for path in [
        "/api/v1/audit?limit=2",
        "/api/v1/users",
        "/api/v1/devices",
        "/api/v1/parts",
    ] {
        let (status, body) = http(server.port, "GET", path, Some(&server.token), None);
        assert_eq!(status, 200, "{path}: {body}");
        items(&body);
        assert!(body.get("next_cursor").is_some(), "{path}: {body}");
    }

    // Malformed (400: the document says what a limit and a cursor look
    // like), or well-formed but not a cursor of this list (422).
    for (bad, status, code) in [
        ("limit=ten", 400, "bad_request"),
        ("limit=0", 400, "bad_request"),
        ("limit=1e3", 400, "bad_request"),
        ("from=yesterday", 400, "bad_request"),
        ("cursor=%25%25", 400, "bad_request"),
        ("cursor=not-a-cursor", 422, "invalid"),
        // base64url of `[12]`: a key of another shape than the tickets'.
        ("cursor=WzEyXQ", 422, "invalid"),
    ] {
        let r = http_full(
            server.port,
            "GET",
            &format!("/api/v1/tickets?{bad}"),
            Some(&server.token),
            "text/plain",
            b"",
        );
        assert_eq!(r.status, status, "{bad}");
        assert_eq!(
            error_code(&r.json()),
            code,
            "{bad}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// Office edits of reference records carry versions: `ETag` on read,
/// `If-Match` on write, 412 when someone else changed the record first.
async fn reference_records_refuse_lost_updates(db: TestDb) {
    let server = Server::start(&db, &[]);
    let port = server.port;
    let token = Some(server.token.as_str());
    let customer = new_customer(&server, "Acme Bakery");
    let id = customer["id"].as_str().unwrap();
    assert_eq!(customer["version"], 1);

    let read = http_with(
        port,
        "GET",
        &format!("/api/v1/customers/{id}"),
        token,
        &[],
        None,
    );
    assert_eq!(read.status, 200);
    let etag = read.header("etag").expect("an ETag").to_string();
    assert_eq!(etag, "\"1\"");

    // Two clerks read version 1; the first write wins, the second gets 412
    // and the first one's phone number is still there.
    let edit = |phone: &str, if_match: &str| {
        http_with(
            port,
            "PUT",
            &format!("/api/v1/customers/{id}"),
            token,
            &[("If-Match", if_match)],
            Some(json!({ "name": "Acme Bakery", "phone": phone })),
        )
    };
    let first = edit("+86 10 1111", &etag);
    assert_eq!(first.status, 200, "{:?}", first.json());
    assert_eq!(first.header("etag"), Some("\"2\""));
    assert_eq!(first.json()["version"], 2);
    let second = edit("+86 10 2222", &etag);
    assert_eq!(second.status, 412, "{:?}", second.json());
    assert_eq!(error_code(&second.json()), "precondition_failed");
    let now = http_with(
        port,
        "GET",
        &format!("/api/v1/customers/{id}"),
        token,
        &[],
        None,
    );
    assert_eq!(now.json()["customer"]["phone"], "+86 10 1111");
    // The loser re-reads and redoes the change; `*` and a list of tags work;
    // a weak tag never matches (If-Match compares strongly).
    assert_eq!(edit("+86 10 2222", "\"1\", \"2\"").status, 200);
    assert_eq!(edit("+86 10 3333", "W/\"3\"").status, 412);
    assert_eq!(edit("+86 10 3333", "*").status, 200);
    assert_eq!(
        edit("+86 10 3333", "\"abc\"").status,
        400,
        "a tag that cannot be one of ours is malformed"
    );
    // Without If-Match a write is unconditional, as before.
    let plain = http(
        port,
        "PUT",
        &format!("/api/v1/customers/{id}/archived"),
        token,
        Some(json!({ "archived": true })),
    );
    assert_eq!(
        (plain.0, plain.1["version"].as_i64()),
        (200, Some(5)),
        "{}",
        plain.1
    );

    // Racing writers (threads, so PostgreSQL runs them concurrently): with
    // the same If-Match exactly one wins; without If-Match none gets a 412.
    let start = http(port, "GET", &format!("/api/v1/customers/{id}"), token, None).1["customer"]
        ["version"]
        .as_i64()
        .unwrap();
    let race = |if_match: Option<String>| {
        let path = format!("/api/v1/customers/{id}");
        let token = server.token.clone();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (path, token, tag) = (path.clone(), token.clone(), if_match.clone());
                std::thread::spawn(move || {
                    let headers: Vec<(&str, &str)> = tag
                        .as_deref()
                        .map(|t| ("If-Match", t))
                        .into_iter()
                        .collect();
                    http_with(
                        port,
                        "PUT",
                        &path,
                        Some(&token),
                        &headers,
                        Some(json!({ "name": "Acme Bakery", "phone": format!("race {i}") })),
                    )
                    .status
                })
            })
            .collect();
        let mut statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        statuses.sort();
        statuses
    };
    assert_eq!(
        race(Some(format!("\"{start}\""))),
        [200, 412, 412, 412, 412, 412, 412, 412]
    );
    assert_eq!(
        race(None),
        [200; 8],
        "unconditional writers never get a 412"
    );
    let end = http(port, "GET", &format!("/api/v1/customers/{id}"), token, None).1["customer"]
        ["version"]
        .as_i64()
        .unwrap();
    assert_eq!(
        end,
        start + 9,
        "every write that succeeded bumped the version once"
    );

    // Sites and assets: their own versions.
    let (status, site) = http(
        port,
        "POST",
        &format!("/api/v1/customers/{id}/sites"),
        token,
        Some(json!({ "name": "Shop" })),
    );
    assert_eq!(status, 201, "{site}");
    let site_id = site["id"].as_str().unwrap();
    let put_site = |name: &str, if_match: &str| {
        http_with(
            port,
            "PUT",
            &format!("/api/v1/sites/{site_id}"),
            token,
            &[("If-Match", if_match)],
            Some(json!({ "name": name, "address": "2 Oven Road" })),
        )
    };
    assert_eq!(put_site("Main shop", "\"1\"").status, 200);
    assert_eq!(put_site("Back shop", "\"1\"").status, 412);
    let got = http_with(
        port,
        "GET",
        &format!("/api/v1/sites/{site_id}"),
        token,
        &[],
        None,
    );
    assert_eq!(
        (got.header("etag"), got.json()["name"].as_str()),
        (Some("\"2\""), Some("Main shop"))
    );
    let (status, asset) = http(
        port,
        "POST",
        &format!("/api/v1/customers/{id}/assets"),
        token,
        Some(json!({ "product": "Dough mixer", "serial": "SN-1" })),
    );
    assert_eq!(status, 201, "{asset}");
    let asset_id = asset["id"].as_str().unwrap();
    let put_asset = |serial: &str, if_match: &str| {
        http_with(
            port,
            "PUT",
            &format!("/api/v1/assets/{asset_id}"),
            token,
            &[("If-Match", if_match)],
            Some(
                json!({ "product": "Dough mixer", "serial": serial, "warranty_until": "2028-03-01" }),
            ),
        )
    };
    assert_eq!(put_asset("SN-2", "\"1\"").status, 200);
    assert_eq!(put_asset("SN-3", "\"1\"").status, 412);
    assert_eq!(put_asset("SN-3", "\"2\"").json()["serial"], "SN-3");

    // Parts: If-Match on a part that does not exist is 412 (nothing to
    // match), the serial rule is a change of the part too.
    let put_part = |no: &str, name: &str, if_match: Option<&str>| {
        let headers: Vec<(&str, &str)> = if_match.map(|m| ("If-Match", m)).into_iter().collect();
        http_with(
            port,
            "PUT",
            &format!("/api/v1/parts/{no}"),
            token,
            &headers,
            Some(json!({ "name": name, "unit_cost_cents": 100 })),
        )
    };
    assert_eq!(put_part("NEW-1", "Ghost", Some("*")).status, 412);
    assert_eq!(
        put_part("NEW-1", "Belt", None).header("etag"),
        Some("\"1\"")
    );
    assert_eq!(
        put_part("NEW-1", "Belt 12 mm", None).header("etag"),
        Some("\"2\"")
    );
    let serial = http_with(
        port,
        "PUT",
        "/api/v1/parts/NEW-1/serial-required",
        token,
        &[("If-Match", "\"2\"")],
        Some(json!({ "serial_required": true })),
    );
    assert_eq!((serial.status, serial.header("etag")), (200, Some("\"3\"")));
    assert_eq!(put_part("NEW-1", "Stale name", Some("\"2\"")).status, 412);
    let part = http_with(port, "GET", "/api/v1/parts/NEW-1", token, &[], None);
    assert_eq!(part.json()["name"], "Belt 12 mm");

    // Users: role, disable and password take If-Match too.
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/users",
        token,
        Some(json!({ "username": "clerk", "role": "back_office", "password": "clerk-password-1" })),
    );
    assert_eq!(status, 201);
    let role = |role: &str, if_match: &str| {
        http_with(
            port,
            "PUT",
            "/api/v1/users/clerk/role",
            token,
            &[("If-Match", if_match)],
            Some(json!({ "role": role })),
        )
    };
    let user = http_with(port, "GET", "/api/v1/users/clerk", token, &[], None);
    let user_tag = user.header("etag").unwrap().to_string();
    assert_eq!(role("dispatcher", &user_tag).status, 200);
    assert_eq!(
        role("manager", &user_tag).status,
        412,
        "the second admin's stale change"
    );
    let password = http_with(
        port,
        "PUT",
        "/api/v1/users/clerk/password",
        token,
        &[("If-Match", &user_tag)],
        Some(json!({ "password": "another-password-2" })),
    );
    assert_eq!(password.status, 412);
    let disable = http_with(
        port,
        "POST",
        "/api/v1/users/clerk/disable",
        token,
        &[("If-Match", "\"2\"")],
        None,
    );
    assert_eq!(disable.status, 200);
    let after = http_with(port, "GET", "/api/v1/users/clerk", token, &[], None).json();
    assert_eq!(
        (after["role"].as_str(), after["disabled"].as_bool()),
        (Some("dispatcher"), Some(true))
    );
}

/// Checks the JSON error format of a reply, and that it is not a 5xx.
fn assert_json_error(what: &str, r: &common::Reply) {
    assert!(
        r.status < 500,
        "{what}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    if r.status >= 400 {
        let ct = r.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{what}: {} content-type {ct:?}",
            r.status
        );
        let body = r.json();
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: {} body {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// Walks every route of the OpenAPI document with wrong methods, no token,
/// bad path parameters, bad query strings, bad and oversized bodies.
async fn every_route_answers_errors_in_json(db: TestDb) {
    let server = Server::start(&db, &[]);
    let port = server.port;
    let token = server.token.clone();
    let (status, doc) = http(port, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 20, "{}", paths.len());
    let big = vec![b'['; 200 * 1024];
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            // A server-sent event stream stays open for the token's life:
            // with a token it cannot be read to its end (tests/console.rs).
            let stream = op
                .pointer("/responses/200/content/text~1event-stream")
                .is_some();
            for param in ["no-such-thing", "%00", "%E2%82", &"z".repeat(3000)] {
                let mut path = template.clone();
                while let (Some(s), Some(e)) = (path.find('{'), path.find('}')) {
                    path.replace_range(s..=e, param);
                }
                let what =
                    |case: &str| format!("{method} {template} ({case}, param {:.20})", param);
                if !public {
                    let r = http_full(port, &method, &path, None, "application/json", b"{}");
                    assert_json_error(&what("no token"), &r);
                    // A NUL in the URL is refused before anything else.
                    let expected = if param == "%00" && path != *template {
                        400
                    } else {
                        401
                    };
                    assert_eq!(r.status, expected, "{}", what("no token"));
                }
                for (case, ct, body) in [
                    ("broken JSON", "application/json", b"{\"a\":".as_slice()),
                    ("wrong JSON type", "application/json", b"[1,2]".as_slice()),
                    ("wrong field types", "application/json", br#"{"name":7,"password":[],"role":{},"id":1,"qty_delta":"x","archived":"yes","technician":null}"#.as_slice()),
                    ("NUL in JSON", "application/json", br#"{"name":"a\u0000b","username":"a\u0000","password":"p\u0000assword","reason":"\u0000"}"#.as_slice()),
                    ("not JSON", "text/plain", b"hello".as_slice()),
                    ("oversized", "application/json", big.as_slice()),
                ] {
                    // The server lingers ~1 s on an unread body: one oversized
                    // request per route is enough.
                    if (case == "oversized" && param != "no-such-thing") || stream {
                        continue;
                    }
                    let r = http_full(port, &method, &path, Some(&token), ct, body);
                    assert_json_error(&what(case), &r);
                }
                if stream {
                    continue;
                }
                let query = "?limit=abc&offset=-1&include_archived=maybe&q=%25%00&action=%00&doc=%00&from=x";
                let r = http_full(
                    port,
                    &method,
                    &format!("{path}{query}"),
                    Some(&token),
                    "application/json",
                    b"{}",
                );
                assert_json_error(&what("bad query"), &r);
            }
            // A method the route does not have.
            let path = template.replace('{', "").replace('}', "");
            let r = http_full(
                port,
                "PATCH",
                &path,
                Some(&token),
                "application/json",
                b"{}",
            );
            assert_json_error(&format!("PATCH {template}"), &r);
            assert_eq!(r.status, 405, "PATCH {template}");
        }
    }
    for unknown in [
        "/api/v1/nope",
        "/api/v2/tickets",
        "/nope",
        "/api/v1/tickets/a/b/c",
    ] {
        let r = http_full(port, "GET", unknown, Some(&token), "application/json", b"");
        assert_json_error(unknown, &r);
        assert_eq!(r.status, 404, "{unknown}");
    }
    // The harness admin survived the walk (no route was tricked into a change).
    assert_eq!(http(port, "GET", "/api/v1/me", Some(&token), None).0, 200);
}

on_both_backends!(
    ticket_numbers_are_unique,
    asset_dates_must_be_real_dates,
    search_text_is_literal,
    overlong_inputs_are_refused,
    lists_page_with_a_cursor,
    reference_records_refuse_lost_updates,
    every_route_answers_errors_in_json,
);
