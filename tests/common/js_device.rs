//! The stock JS automerge-repo client (`scripts/interop/device.mjs`, from
//! npm) as a device of the test: one JSON command per line on its stdin, one
//! JSON reply per line on its stdout. Used by the interop tests with the
//! Rust device client and with samod.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use automerge::ChangeHash;
use serde_json::{json, Value};

pub struct JsDevice {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl JsDevice {
    /// Starts `node device.mjs <sync_url>` (installing the pinned npm
    /// packages first if they are missing).
    pub fn start(sync_url: &str) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/interop");
        super::install_node_packages(dir);
        let mut child = Command::new("node")
            .arg("device.mjs")
            .arg(sync_url)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns its reply; panics on `ok: false` or
    /// if the device exited.
    pub fn call(&mut self, req: Value) -> Value {
        tokio::task::block_in_place(|| {
            writeln!(self.stdin, "{req}").unwrap();
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "the JS device exited during {req}");
            let reply: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("bad reply {line:?} to {req}"));
            assert_eq!(reply["ok"], true, "JS device failed {req}: {reply}");
            reply
        })
    }

    /// The document as the JS device has it (`heads`, `doc`).
    pub fn dump(&mut self, url: &str) -> Value {
        self.call(json!({"cmd": "dump", "url": url}))
    }
}

impl Drop for JsDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// automerge-repo's encoding of heads: bs58check of each hash, sorted.
pub fn encode_heads(heads: &[ChangeHash]) -> Vec<String> {
    let mut out: Vec<String> = heads
        .iter()
        .map(|h| bs58::encode(h.0).with_check().into_string())
        .collect();
    out.sort();
    out
}

/// The heads in a JS device's reply, sorted.
pub fn js_heads(reply: &Value) -> Vec<String> {
    let mut heads: Vec<String> = reply["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    heads.sort();
    heads
}
