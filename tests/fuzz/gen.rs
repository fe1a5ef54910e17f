//! Structure-aware generators for the fuzz tests, shared by the sans-IO fuzz
//! tests (`server/src/sync/fuzz_tests.rs`) and the end-to-end run
//! (`tests/fuzz.rs`), both of which include this file with `#[path]`. It uses
//! only public APIs (protocol, ticket schema, automerge, ciborium).
//!
//! What it makes: protocol messages of every type; ticket documents with
//! ticket-shaped offline edits and the sync messages a device sends for
//! them (exchanged for real, or as V1/V2 messages holding raw, compressed,
//! packed or whole-document chunks); and ways to break them: byte
//! mutations, truncation, CBOR-level field drops/swaps/wrong types,
//! re-encodings with indefinite lengths and over-long heads, deep nesting,
//! lying counts, and Automerge chunks mutated behind a recomputed checksum.
//!
//! Settings: `FUZZ_CASES` (cases per property, or frames in the e2e run;
//! each test has its own default) and `FUZZ_SEED` (a u64, or `random`;
//! fixed by default so CI is reproducible).
#![allow(dead_code)]

use std::collections::BTreeMap;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ObjType, ReadDoc, Value as AmValue, ROOT};
use ciborium::Value;
use fieldsync_shared::protocol::{self, Message, PeerMetadata, RemoteHeads};
use fieldsync_shared::status::Status;
use fieldsync_shared::ticket::{self, Intake, PartUsed};
use fieldsync_shared::DocumentId;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- settings

/// Default seed: CI runs the same cases every time.
pub const DEFAULT_SEED: u64 = 0x00f1_e1d5_11c0;

/// `FUZZ_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    match std::env::var("FUZZ_CASES") {
        Ok(v) => v.parse().expect("FUZZ_CASES must be a number"),
        Err(_) => default,
    }
}

/// `FUZZ_SEED` (a u64 or `random`), or the fixed default.
pub fn seed() -> RngSeed {
    match std::env::var("FUZZ_SEED") {
        Ok(v) if v == "random" => RngSeed::Random,
        Ok(v) => RngSeed::Fixed(v.parse().expect("FUZZ_SEED must be a u64 or `random`")),
        Err(_) => RngSeed::Fixed(DEFAULT_SEED),
    }
}

/// A proptest configuration: fixed seed, `FUZZ_CASES` or `default_cases`,
/// failures saved under `proptest-regressions/` and replayed first.
pub fn config(default_cases: u32) -> Config {
    Config {
        cases: cases(default_cases),
        rng_seed: seed(),
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

// ------------------------------------------------------- protocol messages

pub fn arb_text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-z0-9-]{1,12}",
        2 => any::<String>(),
        1 => Just(String::new()),
        1 => "\\PC{300,600}",
        1 => "[a\u{0}\u{7f}\u{feff}\u{10ffff}é]{1,8}",
    ]
    .boxed()
}

pub fn arb_doc_id() -> BoxedStrategy<DocumentId> {
    any::<[u8; 16]>().prop_map(DocumentId::from_bytes).boxed()
}

fn arb_data() -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 1..48).boxed()
}

fn arb_metadata() -> BoxedStrategy<Option<PeerMetadata>> {
    proptest::option::of((proptest::option::of(arb_text()), any::<bool>()).prop_map(
        |(storage_id, is_ephemeral)| PeerMetadata {
            storage_id,
            is_ephemeral,
        },
    ))
    .boxed()
}

fn arb_new_heads() -> BoxedStrategy<BTreeMap<String, RemoteHeads>> {
    proptest::collection::btree_map(
        arb_text(),
        (vec(arb_text(), 0..4), -1e15f64..1e15)
            .prop_map(|(heads, timestamp)| RemoteHeads { heads, timestamp }),
        0..4,
    )
    .boxed()
}

/// Any protocol message, sent by `sender`, about one of `docs` (or any doc),
/// carrying `data` in sync/request/ephemeral messages.
pub fn arb_message_with(
    sender: BoxedStrategy<String>,
    doc: BoxedStrategy<DocumentId>,
    data: BoxedStrategy<Vec<u8>>,
) -> BoxedStrategy<Message> {
    let s = sender;
    prop_oneof![
        1 => (s.clone(), arb_metadata(), vec(prop_oneof![Just("1".to_string()), arb_text()], 0..3))
            .prop_map(|(sender_id, peer_metadata, supported_protocol_versions)| Message::Join {
                sender_id,
                peer_metadata,
                supported_protocol_versions
            }),
        1 => (s.clone(), arb_text(), arb_metadata(), arb_text()).prop_map(
            |(sender_id, target_id, peer_metadata, v)| Message::Peer {
                sender_id,
                target_id,
                // `peer` always carries metadata on the wire.
                peer_metadata: Some(peer_metadata.unwrap_or_default()),
                selected_protocol_version: v
            }
        ),
        1 => (s.clone(), proptest::option::of(arb_text()), arb_text()).prop_map(
            |(sender_id, target_id, message)| Message::Error {
                sender_id,
                target_id,
                message
            }
        ),
        4 => (s.clone(), arb_text(), doc.clone(), data.clone()).prop_map(
            |(sender_id, target_id, document_id, data)| Message::Sync {
                sender_id,
                target_id,
                document_id,
                data
            }
        ),
        2 => (s.clone(), arb_text(), doc.clone(), data.clone()).prop_map(
            |(sender_id, target_id, document_id, data)| Message::Request {
                sender_id,
                target_id,
                document_id,
                data
            }
        ),
        1 => (s.clone(), arb_text(), doc.clone()).prop_map(|(sender_id, target_id, document_id)| {
            Message::DocUnavailable {
                sender_id,
                target_id,
                document_id,
            }
        }),
        1 => (s.clone(), arb_text(), any::<u64>(), arb_text(), doc.clone(), data).prop_map(
            |(sender_id, target_id, count, session_id, document_id, data)| Message::Ephemeral {
                sender_id,
                target_id,
                count,
                session_id,
                document_id,
                data,
                verified_sender: None,
            }
        ),
        1 => (s.clone(), arb_text(), vec(arb_text(), 0..3), vec(arb_text(), 0..3)).prop_map(
            |(sender_id, target_id, add, remove)| Message::RemoteSubscriptionChange {
                sender_id,
                target_id,
                add,
                remove
            }
        ),
        1 => (s, arb_text(), doc, arb_new_heads()).prop_map(
            |(sender_id, target_id, document_id, new_heads)| Message::RemoteHeadsChanged {
                sender_id,
                target_id,
                document_id,
                new_heads
            }
        ),
    ]
    .boxed()
}

/// Any protocol message with arbitrary fields.
pub fn arb_message() -> BoxedStrategy<Message> {
    arb_message_with(arb_text(), arb_doc_id(), arb_data())
}

// ------------------------------------------------- CBOR-level structure

/// The CBOR map `protocol::encode` writes for `msg`.
pub fn to_value(msg: &Message) -> Value {
    ciborium::from_reader(&protocol::encode(msg)[..]).expect("encode writes CBOR")
}

/// Arbitrary CBOR values (the wrong types a hostile client puts in fields).
pub fn arb_cbor() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| Value::Integer(i.into())),
        any::<u64>().prop_map(|i| Value::Integer(i.into())),
        vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        any::<f64>().prop_map(Value::Float),
        arb_text().prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            (any::<u64>(), inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
        ]
    })
    .boxed()
}

/// A change to a message's top-level map.
#[derive(Clone, Debug)]
pub enum Tweak {
    /// Remove a field.
    Drop(Index),
    /// Give a field a value of another type.
    Replace(Index, Value),
    /// Swap the values of two fields.
    Swap(Index, Index),
    /// The same key twice.
    DuplicateKey(Index),
    /// A new key (e.g. an unknown field, or a second `type`).
    Add(String, Value),
    RenameKey(Index, String),
    /// A non-text key.
    NonTextKey(Index, Value),
    /// Wrap the value in a tag.
    Tag(Index, u64),
    /// Wrap the value in `n` one-element arrays.
    Nest(Index, usize),
}

pub fn arb_tweak() -> BoxedStrategy<Tweak> {
    let key = prop_oneof![
        Just("type".to_string()),
        Just("senderId".to_string()),
        Just("data".to_string()),
        Just("documentId".to_string()),
        arb_text(),
    ];
    prop_oneof![
        1 => any::<Index>().prop_map(Tweak::Drop),
        3 => (any::<Index>(), arb_cbor()).prop_map(|(i, v)| Tweak::Replace(i, v)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Tweak::Swap(a, b)),
        1 => any::<Index>().prop_map(Tweak::DuplicateKey),
        1 => (key.clone(), arb_cbor()).prop_map(|(k, v)| Tweak::Add(k, v)),
        1 => (any::<Index>(), key).prop_map(|(i, k)| Tweak::RenameKey(i, k)),
        1 => (any::<Index>(), arb_cbor()).prop_map(|(i, k)| Tweak::NonTextKey(i, k)),
        1 => (any::<Index>(), prop_oneof![Just(64u64), Just(55799), any::<u64>()])
            .prop_map(|(i, t)| Tweak::Tag(i, t)),
        1 => (any::<Index>(), 1usize..40).prop_map(|(i, n)| Tweak::Nest(i, n)),
    ]
    .boxed()
}

pub fn apply_tweaks(v: &mut Value, tweaks: &[Tweak]) {
    let Value::Map(entries) = v else { return };
    for t in tweaks {
        if entries.is_empty() {
            if let Tweak::Add(k, v) = t {
                entries.push((Value::Text(k.clone()), v.clone()));
            }
            continue;
        }
        let n = entries.len();
        match t {
            Tweak::Drop(i) => {
                entries.remove(i.index(n));
            }
            Tweak::Replace(i, v) => entries[i.index(n)].1 = v.clone(),
            Tweak::Swap(a, b) => {
                let (a, b) = (a.index(n), b.index(n));
                let va = entries[a].1.clone();
                entries[a].1 = entries[b].1.clone();
                entries[b].1 = va;
            }
            Tweak::DuplicateKey(i) => {
                let e = entries[i.index(n)].clone();
                entries.push(e);
            }
            Tweak::Add(k, v) => entries.push((Value::Text(k.clone()), v.clone())),
            Tweak::RenameKey(i, k) => entries[i.index(n)].0 = Value::Text(k.clone()),
            Tweak::NonTextKey(i, k) => entries[i.index(n)].0 = k.clone(),
            Tweak::Tag(i, tag) => {
                let e = &mut entries[i.index(n)].1;
                *e = Value::Tag(*tag, Box::new(e.clone()));
            }
            Tweak::Nest(i, depth) => {
                let e = &mut entries[i.index(n)].1;
                for _ in 0..*depth {
                    *e = Value::Array(vec![e.clone()]);
                }
            }
        }
    }
}

/// How `encode_cbor` lays items out: bit k of `indefinite` makes the k-th
/// container/string indefinite-length (strings split into chunks); `wide`
/// writes every head with an 8-byte argument. Both are valid CBOR that
/// decodes to the same value.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub indefinite: u64,
    pub wide: bool,
}

pub fn arb_style() -> BoxedStrategy<Style> {
    (any::<u64>(), any::<bool>())
        .prop_map(|(indefinite, wide)| Style { indefinite, wide })
        .boxed()
}

pub fn encode_cbor(v: &Value, style: Style) -> Vec<u8> {
    let mut e = Encoder {
        out: Vec::new(),
        style,
        k: 0,
    };
    e.value(v);
    e.out
}

struct Encoder {
    out: Vec<u8>,
    style: Style,
    k: u32,
}

impl Encoder {
    fn head(&mut self, major: u8, arg: u64) {
        let m = major << 5;
        if self.style.wide {
            self.out.push(m | 27);
            self.out.extend(arg.to_be_bytes());
        } else if arg < 24 {
            self.out.push(m | arg as u8);
        } else if arg <= 0xff {
            self.out.extend([m | 24, arg as u8]);
        } else if arg <= 0xffff {
            self.out.push(m | 25);
            self.out.extend((arg as u16).to_be_bytes());
        } else if arg <= 0xffff_ffff {
            self.out.push(m | 26);
            self.out.extend((arg as u32).to_be_bytes());
        } else {
            self.out.push(m | 27);
            self.out.extend(arg.to_be_bytes());
        }
    }

    fn indefinite(&mut self) -> bool {
        let bit = (self.style.indefinite >> (self.k % 64)) & 1 == 1;
        self.k += 1;
        bit
    }

    fn string(&mut self, major: u8, bytes: &[u8], cuts: &[usize]) {
        if self.indefinite() {
            self.out.push(major << 5 | 31);
            let mut start = 0;
            for &c in cuts.iter().chain([bytes.len()].iter()) {
                self.head(major, (c - start) as u64);
                self.out.extend(&bytes[start..c]);
                start = c;
            }
            self.out.push(0xff);
        } else {
            self.head(major, bytes.len() as u64);
            self.out.extend(bytes);
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Integer(i) => {
                let i = i128::from(*i);
                if i >= 0 {
                    self.head(0, i as u64)
                } else {
                    self.head(1, (-1 - i) as u64)
                }
            }
            Value::Bytes(b) => {
                let cuts: Vec<usize> = (1..b.len()).step_by(3).collect();
                self.string(2, b, &cuts)
            }
            Value::Text(s) => {
                // Chunks of an indefinite text string must each be UTF-8.
                let cuts: Vec<usize> = s
                    .char_indices()
                    .map(|(i, _)| i)
                    .skip(1)
                    .step_by(2)
                    .collect();
                self.string(3, s.as_bytes(), &cuts)
            }
            Value::Array(items) => {
                if self.indefinite() {
                    self.out.push(0x9f);
                    items.iter().for_each(|i| self.value(i));
                    self.out.push(0xff);
                } else {
                    self.head(4, items.len() as u64);
                    items.iter().for_each(|i| self.value(i));
                }
            }
            Value::Map(entries) => {
                let indefinite = self.indefinite();
                if indefinite {
                    self.out.push(0xbf);
                } else {
                    self.head(5, entries.len() as u64);
                }
                for (k, v) in entries {
                    self.value(k);
                    self.value(v);
                }
                if indefinite {
                    self.out.push(0xff);
                }
            }
            Value::Tag(t, inner) => {
                self.head(6, *t);
                self.value(inner);
            }
            Value::Float(f) => {
                self.out.push(0xfb);
                self.out.extend(f.to_be_bytes());
            }
            Value::Bool(b) => self.out.push(if *b { 0xf5 } else { 0xf4 }),
            _ => self.out.push(0xf6),
        }
    }
}

/// Items and nesting depth of a value, counted as `cbor_shape` counts them.
pub fn shape(v: &Value) -> (usize, usize) {
    match v {
        Value::Array(items) => items.iter().fold((1, 0), |(n, d), i| {
            let (ni, di) = shape(i);
            (n + ni, d.max(di + 1))
        }),
        Value::Map(entries) => entries.iter().fold((1, 0), |(n, d), (k, v)| {
            let (nk, dk) = shape(k);
            let (nv, dv) = shape(v);
            (n + nk + nv, d.max(dk + 1).max(dv + 1))
        }),
        Value::Tag(_, inner) => {
            let (n, d) = shape(inner);
            (n + 1, d + 1)
        }
        _ => (1, 0),
    }
}

// --------------------------------------------------------- byte mutations

/// CBOR heads that start something big, deep or indefinite.
pub const NASTY_BYTES: &[u8] = &[
    0x00, 0xff, 0x80, 0x7f, 0x9f, 0xbf, 0x5f, 0x7f, 0xf7, 0xf6, 0x1b, 0x5b, 0x7b, 0x9b, 0xbb, 0xc0,
    0xd8, 0xdb, 0x1c, 0xfb, 0x40, 0x60, 0x81, 0xa1,
];

#[derive(Clone, Debug)]
pub enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    /// Repeat a slice in place.
    Repeat(Index, usize, usize),
    /// A head claiming a huge length or count.
    Liar(Index, u8),
}

pub fn arb_mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Truncate),
        4 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        3 => (any::<Index>(), proptest::sample::select(NASTY_BYTES)).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..9)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1usize..16, 1usize..64).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        1 => (any::<Index>(), proptest::sample::select(&[0x5b_u8, 0x7b, 0x9b, 0xbb, 0x1b][..]))
            .prop_map(|(i, b)| Mutation::Liar(i, b)),
    ]
    .boxed()
}

pub fn arb_mutations() -> BoxedStrategy<Vec<Mutation>> {
    vec(arb_mutation(), 1..4).boxed()
}

pub fn mutate(bytes: &mut Vec<u8>, muts: &[Mutation]) {
    for m in muts {
        if bytes.is_empty() {
            bytes.push(0xa0);
        }
        let n = bytes.len();
        match m {
            Mutation::Truncate(i) => bytes.truncate(i.index(n)),
            Mutation::Flip(i, x) => bytes[i.index(n)] ^= x,
            Mutation::Set(i, b) => bytes[i.index(n)] = *b,
            Mutation::Insert(i, b) => {
                let at = i.index(n + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(i, k) => {
                let at = i.index(n);
                bytes.drain(at..(at + k).min(n));
            }
            Mutation::Repeat(i, len, times) => {
                let at = i.index(n);
                let slice = bytes[at..(at + len).min(n)].to_vec();
                let rep: Vec<u8> = slice
                    .iter()
                    .copied()
                    .cycle()
                    .take(slice.len() * times)
                    .collect();
                bytes.splice(at..at, rep);
            }
            Mutation::Liar(i, b) => {
                let at = i.index(n);
                bytes[at] = *b;
                bytes.splice(
                    at + 1..at + 1,
                    [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                );
            }
        }
    }
}

/// Frames that are hostile by construction: deep nesting, lying or huge
/// counts, the item limit's edges.
pub fn arb_pathological() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        // Deep nesting of arrays, maps, tags or indefinite arrays.
        (
            proptest::sample::select(&[0x81u8, 0xa1, 0xc6, 0x9f, 0xbf][..]),
            1usize..3000
        )
            .prop_map(|(b, n)| {
                let mut f = vec![b; n];
                f.push(0x01);
                f
            }),
        // A valid message map whose last field nests deeply.
        (1usize..2000).prop_map(|n| {
            let mut f = vec![0xa2, 0x64];
            f.extend(b"type");
            f.extend([0x64]);
            f.extend(b"sync");
            f.extend([0x61, b'x']);
            f.extend(std::iter::repeat_n(0x81, n));
            f.push(0x00);
            f
        }),
        // Heads claiming up to 2^64 - 1 items or bytes.
        (
            proptest::sample::select(&[0x5b_u8, 0x7b, 0x9b, 0xbb][..]),
            any::<u64>(),
            0usize..32
        )
            .prop_map(|(h, n, pad)| {
                let mut f = vec![h];
                f.extend(n.to_be_bytes());
                f.resize(f.len() + pad, 0x01);
                f
            }),
        // Flat arrays just under and over the item limit.
        (4090usize..4100).prop_map(|n| {
            let mut f = vec![0x99];
            f.extend((n as u16).to_be_bytes());
            f.resize(f.len() + n, 0x01);
            f
        }),
        // An indefinite map that never ends, or breaks at odd places.
        vec(proptest::sample::select(NASTY_BYTES), 0..64).prop_map(|tail| {
            let mut f = vec![0xbf];
            f.extend(tail);
            f
        }),
        vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

// ------------------------------------------------------ ticket documents

/// An edit a technician's or dispatcher's app makes offline.
#[derive(Clone, Debug)]
pub enum Edit {
    Note(String),
    /// A long note: changes over 256 bytes are compressed by Automerge.
    LongNote(usize),
    DeleteNote(usize, usize),
    Status(usize),
    CheckIn(String),
    CheckOut(usize, String, bool),
    Part(String, i64),
    Priority(String),
    Sign(String),
    Checklist(String),
    /// Replace a whole container (as `doc.visits = [...]` does).
    ReplaceVisits,
    Commit,
}

pub fn arb_edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        3 => arb_text().prop_map(Edit::Note),
        1 => (1usize..60).prop_map(Edit::LongNote),
        1 => (0usize..100, 1usize..20).prop_map(|(a, b)| Edit::DeleteNote(a, b)),
        1 => (0usize..16).prop_map(Edit::Status),
        2 => arb_text().prop_map(Edit::CheckIn),
        1 => (0usize..8, arb_text(), any::<bool>()).prop_map(|(i, w, f)| Edit::CheckOut(i, w, f)),
        1 => (arb_text(), prop_oneof![1i64..10, any::<i64>()]).prop_map(|(p, q)| Edit::Part(p, q)),
        1 => arb_text().prop_map(Edit::Priority),
        1 => arb_text().prop_map(Edit::Sign),
        1 => arb_text().prop_map(Edit::Checklist),
        1 => Just(Edit::ReplaceVisits),
        3 => Just(Edit::Commit),
    ]
    .boxed()
}

pub fn arb_intake() -> BoxedStrategy<Intake> {
    (arb_text(), arb_text(), arb_text(), arb_text())
        .prop_map(
            |(ticket_no, customer_name, fault_description, serial)| Intake {
                ticket_no: format!("T-{ticket_no}"),
                customer_name,
                fault_description,
                serial,
                priority: "B".into(),
                occurred_at: "2026-11-22T08:30:00Z".into(),
                ..Intake::default()
            },
        )
        .boxed()
}

/// Applies edits the way the app does; edits that do not fit the document
/// (a check-out of a missing visit) are skipped.
pub fn apply_edits(doc: &mut AutoCommit, edits: &[Edit]) {
    for e in edits {
        match e {
            Edit::Note(t) => {
                let _ = ticket::append_note(doc, t);
            }
            Edit::LongNote(n) => {
                let _ = ticket::append_note(doc, &"replaced the pump seal; ".repeat(*n));
            }
            Edit::DeleteNote(at, n) => {
                if let Ok(Some((AmValue::Object(ObjType::Text), notes))) = doc.get(ROOT, "notes") {
                    let len = doc.length(&notes);
                    if len > 0 {
                        let at = at % len;
                        let n = (*n).min(len - at) as isize;
                        let _ = doc.splice_text(&notes, at, n, "");
                    }
                }
            }
            Edit::Status(i) => {
                let _ = ticket::set_status(doc, Status::ALL[i % Status::ALL.len()]);
            }
            Edit::CheckIn(id) => {
                let _ = ticket::check_in(doc, id, "tom", "2026-11-24T09:00:00Z");
            }
            Edit::CheckOut(i, work, fixed) => {
                let visits = ticket::read(doc).map(|t| t.visits).unwrap_or_default();
                if !visits.is_empty() {
                    let id = visits[i % visits.len()].id.clone();
                    let _ = ticket::check_out(doc, &id, "2026-11-24T10:00:00Z", work, "ok", *fixed);
                }
            }
            Edit::Part(part_no, qty) => {
                let _ = ticket::add_part(
                    doc,
                    &PartUsed {
                        id: format!("p-{part_no}"),
                        part_no: part_no.clone(),
                        qty: *qty,
                        source: "van".into(),
                        ..PartUsed::default()
                    },
                );
            }
            Edit::Priority(p) => {
                let _ =
                    automerge::transaction::Transactable::put(doc, ROOT, "priority", p.as_str());
            }
            Edit::Sign(name) => {
                let heads = doc.get_heads();
                let _ = ticket::sign(doc, name, "2026-11-24T10:05:00Z", "00", &heads);
            }
            Edit::Checklist(item) => {
                if let Ok(Some((AmValue::Object(ObjType::List), list))) = doc.get(ROOT, "checklist")
                {
                    let len = doc.length(&list);
                    let _ = automerge::transaction::Transactable::insert(
                        doc,
                        &list,
                        len,
                        item.as_str(),
                    );
                }
            }
            Edit::ReplaceVisits => {
                let _ = automerge::transaction::Transactable::put_object(
                    doc,
                    ROOT,
                    "visits",
                    ObjType::List,
                );
            }
            Edit::Commit => {
                doc.commit();
            }
        }
    }
    doc.commit();
}

/// A ticket as the server holds it, and a device's copy with offline edits.
pub struct Scenario {
    pub server: Automerge,
    pub device: AutoCommit,
}

/// The inputs of a scenario (what proptest shrinks).
pub fn arb_script() -> BoxedStrategy<(Intake, Vec<Edit>, Vec<Edit>)> {
    (arb_intake(), vec(arb_edit(), 0..6), vec(arb_edit(), 1..14)).boxed()
}

/// Builds the scenario: the server created the ticket and made `server_edits`;
/// the device got the created ticket and then made `device_edits` offline.
pub fn scenario(intake: &Intake, server_edits: &[Edit], device_edits: &[Edit]) -> Scenario {
    let mut base = AutoCommit::new().with_actor(automerge::ActorId::from(b"server-actor".to_vec()));
    ticket::create(&mut base, intake).expect("a new ticket");
    base.commit();
    let mut device = base
        .fork()
        .with_actor(automerge::ActorId::from(b"device-actor".to_vec()));
    apply_edits(&mut base, server_edits);
    apply_edits(&mut device, device_edits);
    Scenario {
        server: base.document().clone(),
        device,
    }
}

/// A V1 sync message carrying `changes`.
pub fn sync_message(heads: Vec<automerge::ChangeHash>, changes: Vec<Vec<u8>>) -> sync::Message {
    sync::Message {
        heads,
        need: vec![],
        have: vec![],
        changes: changes.into(),
        flags: None,
        version: sync::MessageVersion::V1,
    }
}

/// How a device's changes travel.
#[derive(Clone, Copy, Debug)]
pub enum Carrier {
    /// The sync protocol run for real against a copy of the server's doc:
    /// the device's messages, in order.
    Exchanged,
    /// Every change the server lacks, uncompressed, one per entry.
    Raw,
    /// The same, compressed where Automerge compresses (over 256 bytes).
    Compressed,
    /// All in one entry, concatenated.
    Packed,
    /// The device's whole saved document (what a V2 message carries).
    WholeDoc,
}

pub fn arb_carrier() -> BoxedStrategy<Carrier> {
    prop_oneof![
        Just(Carrier::Exchanged),
        Just(Carrier::Raw),
        Just(Carrier::Compressed),
        Just(Carrier::Packed),
        Just(Carrier::WholeDoc),
    ]
    .boxed()
}

/// The changes the server lacks, as the device would send them.
pub fn device_changes(s: &mut Scenario, compressed: bool) -> Vec<Vec<u8>> {
    let have = s.server.get_heads();
    s.device
        .get_changes(&have)
        .into_iter()
        .filter(|c| s.server.get_change_by_hash(&c.hash()).is_none())
        .map(|c| {
            if compressed {
                c.clone().bytes().to_vec()
            } else {
                c.raw_bytes().to_vec()
            }
        })
        .collect()
}

/// The sync messages that carry the device's changes to the server.
pub fn device_messages(s: &mut Scenario, carrier: Carrier) -> Vec<sync::Message> {
    let heads = s.device.get_heads();
    match carrier {
        Carrier::Exchanged => {
            let mut server = s.server.clone();
            let (mut ss, mut ds) = (sync::State::new(), sync::State::new());
            let mut out = Vec::new();
            for _ in 0..6 {
                let Some(m) = s.device.sync().generate_sync_message(&mut ds) else {
                    break;
                };
                out.push(m.clone());
                if server.receive_sync_message(&mut ss, m).is_err() {
                    break;
                }
                if let Some(reply) = server.generate_sync_message(&mut ss) {
                    let _ = s.device.sync().receive_sync_message(&mut ds, reply);
                }
            }
            out
        }
        Carrier::Raw => vec![sync_message(heads, device_changes(s, false))],
        Carrier::Compressed => vec![sync_message(heads, device_changes(s, true))],
        Carrier::Packed => vec![sync_message(heads, vec![device_changes(s, false).concat()])],
        Carrier::WholeDoc => {
            let mut m = sync_message(heads, vec![s.device.save()]);
            m.version = sync::MessageVersion::V2;
            vec![m]
        }
    }
}

/// Breaking an Automerge chunk list.
#[derive(Clone, Debug)]
pub enum ChunkDamage {
    /// Mutate one chunk's bytes (maybe recomputing its checksum afterwards,
    /// so Automerge itself parses the damaged change).
    Bytes(Index, Vec<Mutation>, bool),
    /// Change a chunk's type byte.
    Kind(Index, u8),
    /// Drop a chunk (its dependants queue).
    Drop(Index),
    /// Send a chunk twice.
    Duplicate(Index),
    /// Reverse the order.
    Reverse,
}

pub fn arb_chunk_damage() -> BoxedStrategy<ChunkDamage> {
    prop_oneof![
        4 => (any::<Index>(), arb_mutations(), any::<bool>()).prop_map(|(i, m, fix)| ChunkDamage::Bytes(i, m, fix)),
        1 => (any::<Index>(), prop_oneof![0u8..4, any::<u8>()]).prop_map(|(i, k)| ChunkDamage::Kind(i, k)),
        1 => any::<Index>().prop_map(ChunkDamage::Drop),
        1 => any::<Index>().prop_map(ChunkDamage::Duplicate),
        1 => Just(ChunkDamage::Reverse),
    ]
    .boxed()
}

/// Recomputes an uncompressed change chunk's header checksum (the first 4
/// bytes of the SHA-256 of type, length and body).
pub fn fix_checksum(chunk: &mut [u8]) {
    if chunk.len() >= 9 {
        let hash = Sha256::digest(&chunk[8..]);
        chunk[4..8].copy_from_slice(&hash[..4]);
    }
}

pub fn damage_chunks(msg: &mut sync::Message, damage: &[ChunkDamage]) {
    let mut chunks: Vec<Vec<u8>> = msg.changes.iter().map(|c| c.to_vec()).collect();
    for d in damage {
        if chunks.is_empty() {
            break;
        }
        let n = chunks.len();
        match d {
            ChunkDamage::Bytes(i, muts, fix) => {
                let c = &mut chunks[i.index(n)];
                // Mutations land in the body, past magic, checksum and type.
                let mut body = c.split_off(c.len().min(9));
                mutate(&mut body, muts);
                c.extend(body);
                if *fix {
                    fix_checksum(c);
                }
            }
            ChunkDamage::Kind(i, k) => {
                let c = &mut chunks[i.index(n)];
                if c.len() > 8 {
                    c[8] = *k;
                }
            }
            ChunkDamage::Drop(i) => {
                chunks.remove(i.index(n));
            }
            ChunkDamage::Duplicate(i) => {
                let c = chunks[i.index(n)].clone();
                chunks.push(c);
            }
            ChunkDamage::Reverse => chunks.reverse(),
        }
    }
    msg.changes = chunks.into();
}

/// How one sync message is broken.
#[derive(Clone, Debug)]
pub struct Damage {
    pub carrier: Carrier,
    /// Which of the carrier's messages.
    pub pick: Index,
    /// 0: honest; 1-2: damaged chunks; 3: damaged encoding.
    pub how: u8,
    pub chunks: Vec<ChunkDamage>,
    pub muts: Vec<Mutation>,
}

pub fn arb_damage() -> BoxedStrategy<Damage> {
    (
        arb_carrier(),
        any::<Index>(),
        0u8..4,
        vec(arb_chunk_damage(), 1..3),
        arb_mutations(),
    )
        .prop_map(|(carrier, pick, how, chunks, muts)| Damage {
            carrier,
            pick,
            how,
            chunks,
            muts,
        })
        .boxed()
}

/// The encoded sync message `d` describes, for the scenario's device.
pub fn damaged_bytes(s: &mut Scenario, d: &Damage) -> Vec<u8> {
    let msgs = device_messages(s, d.carrier);
    let mut m = if msgs.is_empty() {
        sync_message(vec![], vec![])
    } else {
        msgs[d.pick.index(msgs.len())].clone()
    };
    match d.how {
        0 => m.encode(),
        1 | 2 => {
            damage_chunks(&mut m, &d.chunks);
            m.encode()
        }
        _ => {
            let mut bytes = m.encode();
            mutate(&mut bytes, &d.muts);
            bytes
        }
    }
}

/// A device that forks the server's current document under another actor
/// and makes `edits`: its damaged messages apply to that document.
pub fn fuzzer_on(server: &Automerge, edits: &[Edit]) -> Scenario {
    let mut device = AutoCommit::load(&server.save())
        .expect("the server's document loads")
        .with_actor(automerge::ActorId::from(b"fuzzer-actor".to_vec()));
    apply_edits(&mut device, edits);
    Scenario {
        server: server.clone(),
        device,
    }
}

/// Encoded sync-message bytes for a ticket of their own: honest ones, ones
/// with damaged chunks, and damaged encodings.
pub fn arb_sync_bytes() -> BoxedStrategy<Vec<u8>> {
    (arb_script(), arb_damage())
        .prop_map(|((intake, se, de), d)| damaged_bytes(&mut scenario(&intake, &se, &de), &d))
        .boxed()
}

// ------------------------------------------------------------- frames

/// One WebSocket frame from a hostile client.
#[derive(Clone, Debug)]
pub enum Frame {
    Binary(Vec<u8>),
    Text(String),
}

/// A frame from a client joined as `peer`, about one of `docs`: valid
/// messages of every type (often with real Automerge data), mutated bytes,
/// CBOR-level tweaks, re-encodings, pathological shapes, text frames.
pub fn arb_frame(peer: String, docs: Vec<DocumentId>) -> BoxedStrategy<Frame> {
    let sender = prop_oneof![9 => Just(peer), 1 => arb_text()].boxed();
    let doc = if docs.is_empty() {
        arb_doc_id()
    } else {
        prop_oneof![3 => proptest::sample::select(docs), 1 => arb_doc_id()].boxed()
    };
    let data = prop_oneof![1 => arb_data(), 2 => arb_sync_bytes().prop_filter("non-empty", |d| !d.is_empty())].boxed();
    let msg = arb_message_with(sender, doc, data);
    prop_oneof![
        4 => msg.clone().prop_map(|m| Frame::Binary(protocol::encode(&m))),
        3 => (msg.clone(), arb_mutations()).prop_map(|(m, muts)| {
            let mut b = protocol::encode(&m);
            mutate(&mut b, &muts);
            Frame::Binary(b)
        }),
        3 => (msg.clone(), vec(arb_tweak(), 1..4), arb_style()).prop_map(|(m, tweaks, style)| {
            let mut v = to_value(&m);
            apply_tweaks(&mut v, &tweaks);
            Frame::Binary(encode_cbor(&v, style))
        }),
        1 => (msg, arb_style()).prop_map(|(m, style)| Frame::Binary(encode_cbor(&to_value(&m), style))),
        1 => arb_pathological().prop_map(Frame::Binary),
        1 => arb_text().prop_map(Frame::Text),
    ]
    .boxed()
}

/// A join frame for `peer`.
pub fn join(peer: &str) -> Vec<u8> {
    protocol::encode(&Message::Join {
        sender_id: peer.into(),
        peer_metadata: None,
        supported_protocol_versions: vec!["1".into()],
    })
}
