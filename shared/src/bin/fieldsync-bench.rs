//! Load generator: N simulated devices × M documents against a running sync
//! server on loopback. Every document is shared by two devices; each device
//! edits its documents in a closed loop (one change in flight at a time) for a
//! fixed duration. Prints one JSON object:
//!   acknowledged changes/s, ack latency (change → server acknowledged it),
//!   device→device propagation latency, and, with --server-pid, the server's
//!   CPU time per acknowledged change and its RSS.
//!
//!   fieldsync-bench --url ws://127.0.0.1:3030/sync --devices 100 --docs 1000 \
//!       --duration 20 [--server-pid PID] [--label sqlite]
//!
//! Two load shapes (`"mode"` in the JSON):
//!
//! - `keys` (default): every device writes a timestamp under its own root key
//!   (`w<i>`) of plain documents; both devices of a document write.
//! - `ticket` (`--ticket`, the load of issue #9): devices form writer/reader
//!   pairs (device 2p writes, device 2p+1 only receives). Writers create the
//!   documents as tickets (`ticket::create`: status `new`, `visits` list,
//!   `notes` Text — what a dispatcher may create) and sync them up; each
//!   change then checks in one visit (`ticket::check_in`: {id, technician_id,
//!   arrived_at}) and appends ONE character to `notes` (`ticket::append_note`).
//!   Propagation latency is measured at the readers. `--prefill N` first gives
//!   every ticket N visits and N note characters, in changes of at most
//!   PREFILL_CHUNK of each, all synced to writer and reader before the timer
//!   starts (long-ticket cost vs a new ticket). At the end every writer's
//!   ticket must hold exactly prefill + its own changes (`ticket_check`): a
//!   server that undid an edit (write validation) shows up there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, Value, ROOT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::ticket;
use fieldsync_shared::DocumentId;

/// Prefill writes at most this many visits (and note characters) per change.
const PREFILL_CHUNK: usize = 100;

struct Args {
    url: String,
    devices: usize,
    docs: usize,
    duration: Duration,
    server_pid: Option<u32>,
    label: String,
    max_changes: u64,
    /// Access token for servers that require one (fieldsync); each simulated
    /// device then connects as its own device id.
    token: Option<String>,
    /// Ticket-shaped load (issue #9) instead of root-key writes.
    ticket: bool,
    /// Ticket mode: visits and note characters each ticket gets before the timer.
    prefill: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: "ws://127.0.0.1:3030/sync".into(),
        devices: 100,
        docs: 1000,
        duration: Duration::from_secs(20),
        server_pid: None,
        label: String::new(),
        max_changes: 2_000_000,
        token: None,
        ticket: false,
        prefill: 0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--ticket" {
            a.ticket = true;
            i += 1;
            continue;
        }
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--url" => a.url = v,
            "--devices" => a.devices = v.parse().expect("--devices N"),
            "--docs" => a.docs = v.parse().expect("--docs M"),
            "--duration" => {
                a.duration = Duration::from_secs_f64(v.parse().expect("--duration SECONDS"))
            }
            "--server-pid" => a.server_pid = Some(v.parse().expect("--server-pid PID")),
            "--label" => a.label = v,
            "--max-changes" => a.max_changes = v.parse().expect("--max-changes N"),
            "--token" => a.token = Some(v),
            "--prefill" => a.prefill = v.parse().expect("--prefill N"),
            "-h" | "--help" => {
                eprintln!("usage: fieldsync-bench --url WS_URL [--token ACCESS_TOKEN] [--devices N] [--docs M] [--duration S] [--server-pid PID] [--label L] [--max-changes N] [--ticket [--prefill N]]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    assert!(
        a.devices >= 2 && a.docs >= 1,
        "need at least 2 devices and 1 document"
    );
    assert!(
        !(a.ticket && a.devices % 2 == 1),
        "--ticket pairs devices (writer, reader): give an even --devices"
    );
    assert!(
        a.ticket || a.prefill == 0,
        "--prefill applies to --ticket only"
    );
    assert!(
        a.duration <= Duration::from_secs(600),
        "runs are bounded to 10 minutes"
    );
    a
}

/// Microseconds since the bench started (all devices share the clock).
fn micros(start: Instant) -> i64 {
    start.elapsed().as_micros() as i64
}

#[derive(Default)]
struct Samples {
    ack_us: Vec<u64>,
    propagation_us: Vec<u64>,
}

/// The p-th percentile in milliseconds, as JSON (null without samples).
fn percentile(sorted: &[u64], p: f64) -> String {
    if sorted.is_empty() {
        return "null".into();
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.2}", sorted[idx] as f64 / 1000.0)
}

/// (utime + stime) in ms, and VmRSS / VmHWM in MiB, from /proc.
fn proc_stats(pid: u32) -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let hz = 100.0; // USER_HZ on Linux
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Some((
        ticks * 1000.0 / hz,
        kb("VmRSS:") / 1024.0,
        kb("VmHWM:") / 1024.0,
    ))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args();
    let start = Instant::now();
    let samples = Arc::new(Mutex::new(Samples::default()));

    // Devices, each recording when it first sees another device's write.
    let devices: Vec<Device> = (0..args.devices)
        .map(|i| {
            let d = Device::new(format!("bench-device-{i}"));
            if args.ticket {
                if i % 2 == 1 {
                    d.set_remote_change_hook(ticket_reader_hook(start, samples.clone()));
                }
            } else {
                d.set_remote_change_hook(keys_hook(i, start, samples.clone()));
            }
            d
        })
        .collect();

    eprintln!("bench: connecting {} devices to {}", args.devices, args.url);
    let urls: Vec<String> = (0..args.devices)
        .map(|i| match &args.token {
            Some(t) => format!("{}?token={t}&device=bench-device-{i}", args.url),
            None => args.url.clone(),
        })
        .collect();
    for (d, url) in devices.iter().zip(&urls) {
        connect(d, url).await;
    }

    // (creator, receiver, document). Keys mode: document j is created by
    // device j % N and shared with device (j+1) % N, both write it. Ticket
    // mode: document j belongs to pair p = j % (N/2); writer 2p creates it,
    // reader 2p+1 receives it, only the writer edits it.
    eprintln!(
        "bench: creating {} {}documents{}",
        args.docs,
        if args.ticket { "ticket " } else { "" },
        if args.prefill > 0 {
            format!(" with {} visits and note characters each", args.prefill)
        } else {
            String::new()
        }
    );
    let mut owned: Vec<Vec<DocumentId>> = vec![Vec::new(); args.devices];
    let mut ids = Vec::with_capacity(args.docs);
    for j in 0..args.docs {
        let (creator, receiver) = if args.ticket {
            let p = j % (args.devices / 2);
            (2 * p, 2 * p + 1)
        } else {
            (j % args.devices, (j + 1) % args.devices)
        };
        let id = if args.ticket {
            let d = &devices[creator];
            let id = d.create(|doc| ticket::create(doc, &bench_intake(j)).expect("ticket"));
            prefill(d, id, creator, args.prefill);
            id
        } else {
            devices[creator].create(|d| {
                d.put(ROOT, "ticket_no", format!("B-{j}")).unwrap();
            })
        };
        owned[creator].push(id);
        if !args.ticket {
            owned[receiver].push(id);
        }
        ids.push((creator, receiver, id));
    }
    let mut setup_reconnects = 0u32;
    for (n, (creator, _, id)) in ids.iter().enumerate() {
        let (d, url) = (&devices[*creator], &urls[*creator]);
        setup_wait(d, url, "upload", &mut setup_reconnects, |d| {
            d.acknowledged(*id)
        })
        .await;
        if (n + 1) % 250 == 0 {
            eprintln!("bench: {}/{} documents stored", n + 1, args.docs);
        }
    }
    for (_, receiver, id) in &ids {
        devices[*receiver].want(*id);
    }
    for (creator, receiver, id) in &ids {
        let (d, url) = (&devices[*receiver], &urls[*receiver]);
        // The receiver has everything the creator had (prefill included).
        let heads = devices[*creator].heads(*id);
        setup_wait(d, url, "shared doc arrives", &mut setup_reconnects, |d| {
            d.status(*id) == Some(DocStatus::Local)
                && d.read(*id, |doc| {
                    heads.iter().all(|h| doc.get_change_by_hash(h).is_some())
                }) == Some(true)
        })
        .await;
    }
    let setup_s = start.elapsed().as_secs_f64();
    eprintln!(
        "bench: setup done in {setup_s:.1} s; measuring for {:?}",
        args.duration
    );
    samples.lock().unwrap().propagation_us.clear();

    let before = args.server_pid.and_then(proc_stats);
    let bench_cpu_before = proc_stats(std::process::id());
    let acked = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + args.duration;
    let mut tasks = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        if owned[i].is_empty() {
            continue; // ticket readers only receive
        }
        let d = d.clone();
        let docs = owned[i].clone();
        let acked = acked.clone();
        let samples = samples.clone();
        let max = args.max_changes;
        let ticket_mode = args.ticket;
        tasks.push(tokio::spawn(async move {
            let key = format!("w{i}");
            let technician = format!("bench-device-{i}");
            let mut made: HashMap<DocumentId, usize> = HashMap::new();
            let mut n = 0usize;
            while Instant::now() < deadline && acked.load(Ordering::Relaxed) < max {
                let id = docs[(n * 7 + i) % docs.len()];
                n += 1;
                let sent = Instant::now();
                if ticket_mode {
                    // One visit and ONE note character per change; the visit id
                    // carries the send time for the reader's latency sample.
                    let visit_id = format!("w{i}-{n}-{}", micros(start));
                    let note = NOTE_CHARS[n % NOTE_CHARS.len()] as char;
                    d.change(id, |doc| {
                        ticket::check_in(doc, &visit_id, &technician, &rfc3339_now())?;
                        ticket::append_note(doc, note.encode_utf8(&mut [0; 4]))
                    })
                    .unwrap()
                    .expect("ticket edit");
                    *made.entry(id).or_default() += 1;
                } else {
                    d.change(id, |doc| {
                        doc.put(ROOT, key.as_str(), micros(start)).unwrap()
                    })
                    .unwrap();
                }
                let left =
                    deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
                if d.wait_acknowledged(id, left).await.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                    samples
                        .lock()
                        .unwrap()
                        .ack_us
                        .push(sent.elapsed().as_micros() as u64);
                }
            }
            made
        }));
    }
    let mut made: HashMap<DocumentId, usize> = HashMap::new();
    for t in tasks {
        if let Ok(m) = t.await {
            made.extend(m);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // Let the last propagations land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = args.server_pid.and_then(proc_stats);
    let bench_cpu_after = proc_stats(std::process::id());

    // Ticket mode: every writer's ticket holds exactly what it wrote (a
    // server compensation that undid an edit would show here), and how many
    // readers' copies have not caught up with their writer's yet.
    let ticket_check = if args.ticket {
        let (mut mismatched, mut readers_behind) = (0usize, 0usize);
        for (creator, receiver, id) in &ids {
            let want = args.prefill + made.get(id).copied().unwrap_or(0);
            let got = devices[*creator].read(*id, ticket_lengths).flatten();
            if got != Some((want, want)) {
                mismatched += 1;
                eprintln!("bench: ticket {id}: expected {want} visits and note characters, writer has {got:?}");
            }
            if devices[*receiver].read(*id, ticket_lengths).flatten() != got {
                readers_behind += 1;
            }
        }
        serde_json_like(&[
            ("docs", ids.len().to_string()),
            ("docs_mismatched", mismatched.to_string()),
            ("readers_behind", readers_behind.to_string()),
        ])
    } else {
        String::new()
    };

    let total = acked.load(Ordering::Relaxed);
    let mut s = std::mem::take(&mut *samples.lock().unwrap());
    s.ack_us.sort_unstable();
    s.propagation_us.sort_unstable();
    let server = match (before, after) {
        (Some((cpu0, _, _)), Some((cpu1, rss, hwm))) => serde_json_like(&[
            ("cpu_ms", format!("{:.0}", cpu1 - cpu0)),
            (
                "cpu_ms_per_change",
                format!("{:.4}", (cpu1 - cpu0) / total.max(1) as f64),
            ),
            ("rss_mib", format!("{rss:.1}")),
            ("peak_rss_mib", format!("{hwm:.1}")),
        ]),
        _ => "null".into(),
    };
    let bench_cpu = match (bench_cpu_before, bench_cpu_after) {
        (Some((a, _, _)), Some((b, _, _))) => format!("{:.0}", b - a),
        _ => "null".into(),
    };
    let mut fields = vec![
        ("label", format!("\"{}\"", args.label)),
        (
            "mode",
            if args.ticket {
                "\"ticket\""
            } else {
                "\"keys\""
            }
            .to_string(),
        ),
    ];
    if args.ticket {
        fields.push(("prefill", args.prefill.to_string()));
        fields.push(("writers", (args.devices / 2).to_string()));
    }
    fields.extend([
        ("devices", args.devices.to_string()),
        ("docs", args.docs.to_string()),
        ("duration_s", format!("{elapsed:.2}")),
        ("setup_s", format!("{setup_s:.2}")),
        ("setup_reconnects", setup_reconnects.to_string()),
        ("changes_acked", total.to_string()),
        (
            "acked_changes_per_s",
            format!("{:.1}", total as f64 / elapsed),
        ),
        (
            "ack_latency_ms",
            serde_json_like(&[
                ("p50", percentile(&s.ack_us, 0.50)),
                ("p99", percentile(&s.ack_us, 0.99)),
            ]),
        ),
        (
            "propagation_ms",
            serde_json_like(&[
                ("p50", percentile(&s.propagation_us, 0.50)),
                ("p99", percentile(&s.propagation_us, 0.99)),
                ("samples", s.propagation_us.len().to_string()),
            ]),
        ),
        ("server", server),
        ("bench_client_cpu_ms", bench_cpu),
    ]);
    if args.ticket {
        fields.push(("ticket_check", ticket_check));
    }
    println!("{}", serde_json_like(&fields));
    for d in &devices {
        d.disconnect().await;
    }
}

async fn connect(d: &Device, url: &str) {
    let mut attempt = 0;
    while let Err(e) = d.connect(url).await {
        attempt += 1;
        assert!(attempt < 5, "connect failed: {e}");
        eprintln!("bench: connect failed ({e}); retrying");
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
}

/// A setup wait (before the timer). A sync that stalls for a minute — seen
/// once with the reference server under the prefill load: an upload never
/// acknowledged — is retried once over a fresh connection, which re-offers
/// every document; counted in `setup_reconnects`.
async fn setup_wait(
    d: &Device,
    url: &str,
    what: &str,
    reconnects: &mut u32,
    mut pred: impl FnMut(&Device) -> bool,
) {
    if d.wait_until(Duration::from_secs(60), what, &mut pred)
        .await
        .is_ok()
    {
        return;
    }
    eprintln!(
        "bench: {}: {what} stalled for 60 s (connected: {}, last close: {:?}, last error: {:?}); reconnecting",
        d.peer_id(),
        d.is_connected(),
        d.last_close(),
        d.last_error()
    );
    *reconnects += 1;
    connect(d, url).await;
    d.wait_until(Duration::from_secs(60), what, pred)
        .await
        .expect(what);
}

/// Keys mode: a device samples the first time it sees each newer timestamp
/// another device wrote under its `w<i>` key.
fn keys_hook(
    i: usize,
    start: Instant,
    samples: Arc<Mutex<Samples>>,
) -> fieldsync_shared::client::RemoteChangeHook {
    let me = format!("w{i}");
    let seen: Mutex<HashMap<(DocumentId, String), i64>> = Mutex::new(HashMap::new());
    Box::new(move |doc_id, doc| {
        let now = micros(start);
        let mut seen = seen.lock().unwrap();
        for key in doc.keys(ROOT) {
            if !key.starts_with('w') || key == me {
                continue;
            }
            let Some(sent) = doc
                .get(ROOT, &key)
                .ok()
                .flatten()
                .and_then(|(v, _)| v.as_i64())
            else {
                continue;
            };
            record_propagation(&samples, seen.entry((doc_id, key)).or_insert(0), sent, now);
        }
    })
}

/// Counts a propagation sample when `sent` is newer than the last one seen.
fn record_propagation(samples: &Mutex<Samples>, last: &mut i64, sent: i64, now: i64) {
    if sent > *last {
        *last = sent;
        samples
            .lock()
            .unwrap()
            .propagation_us
            .push((now - sent).max(0) as u64);
    }
}

/// Ticket mode: a reader samples when a ticket's newest visit is one it has
/// not seen (O(1) in the ticket's length: only the last visit is read).
fn ticket_reader_hook(
    start: Instant,
    samples: Arc<Mutex<Samples>>,
) -> fieldsync_shared::client::RemoteChangeHook {
    let seen: Mutex<HashMap<DocumentId, i64>> = Mutex::new(HashMap::new());
    Box::new(move |doc_id, doc| {
        let now = micros(start);
        let Some(sent) = newest_visit_sent_at(doc) else {
            return;
        };
        let mut seen = seen.lock().unwrap();
        record_propagation(&samples, seen.entry(doc_id).or_insert(0), sent, now);
    })
}

/// The send time (bench micros) in the id of the ticket's last visit,
/// `w<writer>-<n>-<micros>`; None for prefill visits and empty tickets.
fn newest_visit_sent_at(doc: &AutoCommit) -> Option<i64> {
    let (Value::Object(ObjType::List), visits) = doc.get(ROOT, "visits").ok()?? else {
        return None;
    };
    let len = doc.length(&visits);
    let (_, item) = doc.get(&visits, len.checked_sub(1)?).ok()??;
    let (id, _) = doc.get(&item, "id").ok()??;
    id.as_str()?.rsplit_once('-')?.1.parse().ok()
}

/// (visits, note characters) of a ticket.
fn ticket_lengths(doc: &mut AutoCommit) -> Option<(usize, usize)> {
    let (_, visits) = doc.get(ROOT, "visits").ok()??;
    let (_, notes) = doc.get(ROOT, "notes").ok()??;
    Some((doc.length(&visits), doc.length(&notes)))
}

/// Note characters, one per change (ASCII: one character is one unit of
/// Text length however automerge counts).
const NOTE_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz ";

/// What a dispatcher records at intake, for bench ticket `j`.
fn bench_intake(j: usize) -> ticket::Intake {
    ticket::Intake {
        ticket_no: format!("B-{j}"),
        customer_name: format!("Bench customer {j}"),
        customer_phone: "+86 10 5555 0100".into(),
        customer_address: format!("{j} Bench Road"),
        product: "Dough mixer".into(),
        model: "DM-40".into(),
        serial: format!("SN-{j}"),
        fault_description: "Motor stops under load".into(),
        occurred_at: rfc3339_now(),
        reported_via: "phone".into(),
        priority: "B".into(),
        ..Default::default()
    }
}

/// Gives a new ticket `n` visits and `n` note characters, in changes of at
/// most PREFILL_CHUNK of each (they sync with the creation).
fn prefill(d: &Device, id: DocumentId, writer: usize, n: usize) {
    let technician = format!("bench-device-{writer}");
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(PREFILL_CHUNK);
        d.change(id, |doc| {
            let at = rfc3339_now();
            for k in done..done + chunk {
                ticket::check_in(doc, &format!("prefill-{k}"), &technician, &at)?;
            }
            let text: String = (done..done + chunk)
                .map(|k| NOTE_CHARS[k % NOTE_CHARS.len()] as char)
                .collect();
            ticket::append_note(doc, &text)
        })
        .unwrap()
        .expect("prefill");
        done += chunk;
    }
}

/// Wall-clock time as RFC 3339 UTC with milliseconds (a visit's arrived_at).
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        now.subsec_millis()
    )
}

/// A tiny JSON object writer (values are already JSON), to keep the shared
/// crate free of serde_json.
fn serde_json_like(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}
