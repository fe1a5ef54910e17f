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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ReadDoc, ROOT};
use fieldsync_shared::client::{Device, DocStatus};
use fieldsync_shared::DocumentId;

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
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
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
            "-h" | "--help" => {
                eprintln!("usage: fieldsync-bench --url WS_URL [--token ACCESS_TOKEN] [--devices N] [--docs M] [--duration S] [--server-pid PID] [--label L] [--max-changes N]");
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
            let me = format!("w{i}");
            let seen: Mutex<HashMap<(DocumentId, String), i64>> = Mutex::new(HashMap::new());
            let samples = samples.clone();
            d.set_remote_change_hook(Box::new(move |doc_id, doc| {
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
                        .and_then(|(v, _)| v.to_i64())
                    else {
                        continue;
                    };
                    let last = seen.entry((doc_id, key)).or_insert(0);
                    if sent > *last {
                        *last = sent;
                        samples
                            .lock()
                            .unwrap()
                            .propagation_us
                            .push((now - sent).max(0) as u64);
                    }
                }
            }));
            d
        })
        .collect();

    eprintln!("bench: connecting {} devices to {}", args.devices, args.url);
    for (i, d) in devices.iter().enumerate() {
        let url = match &args.token {
            Some(t) => format!("{}?token={t}&device=bench-device-{i}", args.url),
            None => args.url.clone(),
        };
        let mut attempt = 0;
        while let Err(e) = d.connect(&url).await {
            attempt += 1;
            assert!(attempt < 5, "connect failed: {e}");
            eprintln!("bench: connect failed ({e}); retrying");
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
    }

    // Document j is created by device j % N and shared with device (j+1) % N.
    eprintln!("bench: creating {} documents", args.docs);
    let mut owned: Vec<Vec<DocumentId>> = vec![Vec::new(); args.devices];
    let mut ids = Vec::with_capacity(args.docs);
    for j in 0..args.docs {
        let creator = j % args.devices;
        let id = devices[creator].create(|d| {
            d.put(ROOT, "ticket_no", format!("B-{j}")).unwrap();
        });
        owned[creator].push(id);
        owned[(creator + 1) % args.devices].push(id);
        ids.push((creator, id));
    }
    for (n, (creator, id)) in ids.iter().enumerate() {
        devices[*creator]
            .wait_acknowledged(*id, Duration::from_secs(60))
            .await
            .expect("upload");
        if (n + 1) % 250 == 0 {
            eprintln!("bench: {}/{} documents stored", n + 1, args.docs);
        }
    }
    for (creator, id) in &ids {
        devices[(creator + 1) % args.devices].want(*id);
    }
    for (creator, id) in &ids {
        let d = &devices[(creator + 1) % args.devices];
        d.wait_until(Duration::from_secs(60), "shared doc arrives", |d| {
            d.status(*id) == Some(DocStatus::Local)
        })
        .await
        .expect("fetch");
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
        let d = d.clone();
        let docs = owned[i].clone();
        let acked = acked.clone();
        let samples = samples.clone();
        let max = args.max_changes;
        tasks.push(tokio::spawn(async move {
            let key = format!("w{i}");
            let mut n = 0usize;
            while Instant::now() < deadline && acked.load(Ordering::Relaxed) < max {
                let id = docs[(n * 7 + i) % docs.len()];
                n += 1;
                let sent = Instant::now();
                d.change(id, |doc| {
                    doc.put(ROOT, key.as_str(), micros(start)).unwrap()
                })
                .unwrap();
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
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // Let the last propagations land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = args.server_pid.and_then(proc_stats);
    let bench_cpu_after = proc_stats(std::process::id());

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
    let json = serde_json_like(&[
        ("label", format!("\"{}\"", args.label)),
        ("devices", args.devices.to_string()),
        ("docs", args.docs.to_string()),
        ("duration_s", format!("{elapsed:.2}")),
        ("setup_s", format!("{setup_s:.2}")),
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
    println!("{json}");
    for d in &devices {
        d.disconnect().await;
    }
}

/// A tiny JSON object writer (values are already JSON), to keep the shared
/// crate free of serde_json.
fn serde_json_like(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}
