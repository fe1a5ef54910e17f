//! Fuzz-style property tests (issue 10) of everything that reads a hostile
//! device's bytes before, or while, they reach a document: the CBOR
//! pre-decode walk (`cbor_shape`), the protocol decoder, the sans-IO
//! `Session`, the chunk guard (`chunk_guard::inspect`) and `DocState`.
//! Generators: `tests/fuzz/gen.rs` (shared with the end-to-end run).
//!
//! Stable Rust, bounded time (a few seconds per property by default), fixed
//! seed. Run longer with `FUZZ_CASES=<cases per property>` and another seed
//! with `FUZZ_SEED=<u64>` or `FUZZ_SEED=random`, e.g.
//! `FUZZ_CASES=20000 FUZZ_SEED=random cargo test -p fieldsync-server --lib fuzz_tests`.
//! Failures are saved in `server/proptest-regressions/sync/fuzz_tests.txt`
//! and replayed first; explicit regression cases are plain `#[test]`s below.

#[path = "../../../tests/fuzz/gen.rs"]
mod gen;

use automerge::sync::{self, SyncDoc};
use automerge::{AutoCommit, Automerge, Change, ReadDoc};
use ciborium::Value;
use fieldsync_shared::cbor_shape::{self, MAX_DEPTH, MAX_ITEMS};
use fieldsync_shared::protocol::{self, Message};
use fieldsync_shared::roles::Role;
use fieldsync_shared::DocumentId;
use proptest::collection::vec;
use proptest::prelude::*;

use super::chunk_guard::{self, ChunkLimits, GuardError};
use super::doc_state::DocState;
use super::session::{close_code, Action, Session};
use gen::*;

/// The server's defaults (`--max-inflated-bytes`, `--max-ops-per-message`).
const LIMITS: ChunkLimits = ChunkLimits {
    max_inflated_bytes: 32 << 20,
    max_rows: 1_000_000,
};

/// Byte-identical re-encoding: equality that also holds for NaN timestamps.
fn reencodes(msg: &Message) {
    let bytes = protocol::encode(msg);
    let again = protocol::decode(&bytes)
        .unwrap_or_else(|e| panic!("an accepted message does not re-decode: {e}: {msg:?}"));
    assert_eq!(protocol::encode(&again), bytes, "{msg:?}");
}

proptest! {
    #![proptest_config(config(1500))]

    /// Every valid message of every type survives encode → decode.
    #[test]
    fn valid_messages_round_trip(msg in arb_message()) {
        prop_assert_eq!(protocol::decode(&protocol::encode(&msg)), Ok(msg));
    }

    /// cbor-x and other encoders may use indefinite lengths and over-long
    /// heads: the same message in any valid layout decodes the same.
    #[test]
    fn any_valid_cbor_layout_of_a_message_decodes_the_same(msg in arb_message(), style in arb_style()) {
        let frame = encode_cbor(&to_value(&msg), style);
        prop_assert_eq!(protocol::decode(&frame), Ok(msg));
    }

    /// Mutated bytes: `decode` never panics, and whatever it accepts
    /// re-encodes to a frame it decodes again the same.
    #[test]
    fn mutated_frames_never_panic_and_accepted_ones_reencode(msg in arb_message(), muts in arb_mutations()) {
        let mut frame = protocol::encode(&msg);
        mutate(&mut frame, &muts);
        if let Ok(m) = protocol::decode(&frame) {
            reencodes(&m);
        }
    }

    /// Dropped, swapped, renamed, duplicated, wrong-typed, tagged and nested
    /// fields, in any CBOR layout: no panic; accepted messages re-encode.
    #[test]
    fn tweaked_fields_never_panic_and_accepted_ones_reencode(
        msg in arb_message(),
        tweaks in vec(arb_tweak(), 1..5),
        style in arb_style(),
    ) {
        let mut v = to_value(&msg);
        apply_tweaks(&mut v, &tweaks);
        let frame = encode_cbor(&v, style);
        if let Ok(m) = protocol::decode(&frame) {
            reencodes(&m);
        }
    }

    /// Deep nesting, lying counts, the item limit's edges, random bytes.
    #[test]
    fn pathological_frames_are_refused_or_reencode(frame in arb_pathological()) {
        let _ = cbor_shape::check(&frame);
        if let Ok(m) = protocol::decode(&frame) {
            reencodes(&m);
        }
    }

    /// The walk's verdict on well-formed CBOR is exact: it accepts a value
    /// iff it is within the item and depth limits (whatever the layout), and
    /// every proper prefix of it is refused (truncated). Anything it accepts
    /// ciborium then decodes without panicking.
    #[test]
    fn cbor_walk_is_exact_on_well_formed_values(v in arb_cbor(), style in arb_style(), cut in any::<proptest::sample::Index>()) {
        let frame = encode_cbor(&v, style);
        let (items, depth) = shape(&v);
        let within = items <= MAX_ITEMS && depth <= MAX_DEPTH;
        prop_assert_eq!(cbor_shape::check(&frame).is_ok(), within, "{} items, depth {}", items, depth);
        let cut = cut.index(frame.len());
        prop_assert!(cbor_shape::check(&frame[..cut]).is_err(), "prefix of {} bytes accepted", cut);
        let _ = ciborium::from_reader::<Value, _>(&frame[..]);
    }

    /// Random bytes through the walk: never a panic, and an accepted frame
    /// is never cut short (the walk reads no further than the frame).
    #[test]
    fn cbor_walk_never_panics_on_bytes(frame in vec(any::<u8>(), 0..256), muts in arb_mutations()) {
        let mut frame = frame;
        mutate(&mut frame, &muts);
        let _ = cbor_shape::check(&frame);
        let _ = protocol::decode(&frame);
    }
}

// ------------------------------------------------------------- session

/// What a session must do for any frame sequence: never panic; an `error`
/// is always followed by a close; once closed, it answers nothing; sync
/// data reaches a document only after a join, from the joined peer, and
/// only when the chunk guard measured it within the limits.
fn check_session(frames: &[Frame]) -> Result<(), TestCaseError> {
    let limits = ChunkLimits {
        max_inflated_bytes: 1 << 20,
        max_rows: 20_000,
    };
    let mut s = Session::new("srv".into(), Some("store".into()), limits);
    let mut joined = false;
    for f in frames {
        let was_closed = s.is_closed();
        let actions = match f {
            Frame::Binary(b) => s.on_frame(b),
            Frame::Text(_) => s.on_text_frame(),
        };
        if was_closed {
            // `on_text_frame` fails again on a closed session; frames are ignored.
            if let Frame::Binary(_) = f {
                prop_assert!(
                    actions.is_empty(),
                    "a closed session answered: {:?}",
                    actions
                );
            }
            continue;
        }
        for (i, a) in actions.iter().enumerate() {
            match a {
                Action::Joined(p) => {
                    prop_assert!(!p.is_empty() && p.len() <= 256);
                    joined = true;
                }
                Action::Sync { cost, msg, .. } => {
                    prop_assert!(joined, "sync before join");
                    prop_assert!(cost.rows <= limits.max_rows);
                    prop_assert!(cost.inflated_bytes <= limits.max_inflated_bytes);
                    let cost = chunk_guard::inspect(msg.changes.iter(), limits);
                    prop_assert!(cost.is_ok(), "{:?}", cost);
                }
                Action::Ephemeral(m) => {
                    prop_assert!(joined);
                    prop_assert_eq!(Some(m.sender_id()), s.peer_id());
                }
                Action::Send(Message::Error { .. }) => {
                    prop_assert!(
                        matches!(actions.get(i + 1), Some(Action::Close(_))),
                        "an error without a close: {:?}",
                        actions
                    );
                }
                Action::Send(Message::Peer { .. }) => prop_assert!(joined),
                Action::Send(other) => prop_assert!(false, "unexpected send {:?}", other),
                Action::Close(r) => {
                    prop_assert!(
                        r.text.len() <= 123,
                        "close reason too long for a control frame"
                    );
                    prop_assert!(s.is_closed());
                    prop_assert!(
                        [
                            close_code::NORMAL,
                            close_code::PROTOCOL_ERROR,
                            close_code::UNSUPPORTED_DATA,
                            close_code::TOO_BIG
                        ]
                        .contains(&r.code),
                        "close code {}",
                        r.code
                    );
                }
            }
        }
    }
    Ok(())
}

fn arb_session_frames() -> impl Strategy<Value = Vec<Frame>> {
    let docs: Vec<DocumentId> = (0..3u8).map(|i| DocumentId::from_bytes([i; 16])).collect();
    let frame = arb_frame("dev".into(), docs);
    (vec(frame, 1..12), any::<bool>()).prop_map(|(mut frames, join_first)| {
        if join_first {
            frames.insert(0, Frame::Binary(join("dev")));
        }
        frames
    })
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn session_survives_any_frame_sequence(frames in arb_session_frames()) {
        check_session(&frames)?;
    }
}

// --------------------------------------------------------- chunk guard

proptest! {
    #![proptest_config(config(400))]

    /// Real changes (raw, compressed, packed) and saved documents (with and
    /// without compressed columns) made by Automerge from ticket-shaped
    /// edits: all accepted, and counted at least at their operations.
    #[test]
    fn chunk_guard_accepts_real_automerge_data_and_counts_its_ops(
        (intake, server_edits, device_edits) in arb_script(),
    ) {
        let mut s = scenario(&intake, &server_edits, &device_edits);
        let changes: Vec<Change> = s.device.get_changes(&[]);
        let ops: u64 = changes.iter().map(|c| c.len() as u64).sum();
        for c in &changes {
            let raw = c.raw_bytes().to_vec();
            let cost = chunk_guard::inspect([raw.as_slice()], LIMITS);
            prop_assert!(matches!(cost, Ok(k) if k.rows >= c.len() as u64), "raw change: {:?} for {} ops", cost, c.len());
            let compressed = c.clone().bytes().to_vec();
            let cost = chunk_guard::inspect([compressed.as_slice()], LIMITS);
            prop_assert!(matches!(cost, Ok(k) if k.rows >= c.len() as u64), "compressed change: {:?} for {} ops", cost, c.len());
        }
        let raws: Vec<Vec<u8>> = changes.iter().map(|c| c.raw_bytes().to_vec()).collect();
        let cost = chunk_guard::inspect(raws.iter().map(|c| c.as_slice()), LIMITS);
        prop_assert!(matches!(cost, Ok(k) if k.rows >= ops), "all changes: {:?} for {} ops", cost, ops);
        let packed = raws.concat();
        let cost = chunk_guard::inspect([packed.as_slice()], LIMITS);
        prop_assert!(matches!(cost, Ok(k) if k.rows >= ops), "packed: {:?} for {} ops", cost, ops);

        let doc_ops = s.device.document().stats().num_ops;
        for saved in [s.device.save(), s.device.save_nocompress()] {
            let cost = chunk_guard::inspect([saved.as_slice()], LIMITS);
            prop_assert!(matches!(cost, Ok(k) if k.rows >= doc_ops), "saved doc: {:?} for {} ops", cost, doc_ops);
        }
    }

    /// Damaged chunks (mutated bytes, even behind a recomputed checksum;
    /// wrong types; truncation): `inspect` never panics, and whatever it
    /// accepts that Automerge then parses holds no more operations than
    /// `inspect` counted (the count bounds what applying it costs).
    #[test]
    fn chunk_guard_never_undercounts_damaged_chunks(
        (intake, server_edits, device_edits) in arb_script(),
        which in 0u8..3,
        muts in arb_mutations(),
        fix in any::<bool>(),
    ) {
        let mut s = scenario(&intake, &server_edits, &device_edits);
        let mut chunk = match which {
            0 => s.device.get_last_local_change().map(|c| c.raw_bytes().to_vec()).unwrap_or_default(),
            1 => s.device.get_last_local_change().map(|c| c.clone().bytes().to_vec()).unwrap_or_default(),
            _ => s.device.save(),
        };
        let mut body = chunk.split_off(chunk.len().min(9));
        mutate(&mut body, &muts);
        chunk.extend(body);
        if fix {
            fix_checksum(&mut chunk);
        }
        let limits = ChunkLimits { max_inflated_bytes: 4 << 20, max_rows: 200_000 };
        if let Ok(cost) = chunk_guard::inspect([chunk.as_slice()], limits) {
            // Automerge itself may panic on forged chunks (the server contains
            // it: `damaged_whole_document_is_refused_without_a_panic`); here
            // only the count is judged.
            let quiet = |f: &dyn Fn() -> Option<u64>| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok().flatten()
            };
            if let Some(ops) = quiet(&|| Change::from_bytes(chunk.clone()).ok().map(|c| c.len() as u64)) {
                prop_assert!(cost.rows >= ops, "{:?} for a change of {} ops", cost, ops);
            }
            if chunk.get(8) == Some(&0) {
                if let Some(ops) = quiet(&|| Automerge::load(&chunk).ok().map(|d| d.stats().num_ops)) {
                    prop_assert!(cost.rows >= ops, "{:?} for a document of {} ops", cost, ops);
                }
            }
        }
    }

    /// Random bytes after a valid chunk header: never a panic.
    #[test]
    fn chunk_guard_never_panics_on_bytes(kind in 0u8..4, body in vec(any::<u8>(), 0..200), muts in arb_mutations()) {
        let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, kind];
        let mut b = body;
        mutate(&mut b, &muts);
        let mut len = b.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            chunk.push(if len == 0 { byte } else { byte | 0x80 });
            if len == 0 {
                break;
            }
        }
        chunk.extend(b);
        let small = ChunkLimits { max_inflated_bytes: 1 << 16, max_rows: 10_000 };
        match chunk_guard::inspect([chunk.as_slice()], small) {
            Ok(cost) => prop_assert!(cost.rows <= small.max_rows && cost.inflated_bytes <= small.max_inflated_bytes),
            Err(GuardError::Malformed { .. } | GuardError::TooManyBytes { .. } | GuardError::TooManyRows { .. }) => {}
        }
    }
}

// ------------------------------------------------------------ DocState

/// Runs the sync protocol between the device and the server state until
/// quiet; returns whether it converged (the server has the device's heads).
fn honest_sync(server: &mut DocState, conn: u64, device: &mut AutoCommit) -> bool {
    let mut ds = sync::State::new();
    for _ in 0..30 {
        let Some(m) = device.sync().generate_sync_message(&mut ds) else {
            break;
        };
        let Ok(r) = server.receive(conn, "honest", m) else {
            return false;
        };
        if r.heads_changed {
            let _ = server.follow_up(
                &r.applied,
                &r.heads_before,
                Role::Admin,
                false,
                "honest",
                "2026-11-24T10:00:00Z",
            );
        }
        for (to, _, reply) in server.after_commit(conn, r.heads_changed) {
            if to == conn {
                let _ = device.sync().receive_sync_message(&mut ds, reply);
            }
        }
    }
    let heads = device.get_heads();
    heads
        .iter()
        .all(|h| server.doc().get_change_by_hash(h).is_some())
}

fn arb_role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

/// Sync messages as the session hands them over (decoded, measured by the
/// chunk guard), honest or damaged, from another device on the same ticket,
/// then the server's follow-up (integrity, status settling) for a random
/// role: `receive` never panics; a refused message leaves the heads
/// unchanged; an accepted one reports exactly the heads it moved; the
/// document still saves and loads to the same heads; and an honest device
/// still syncs. `forge`: damaged changes get a recomputed header checksum,
/// so Automerge itself parses them.
fn check_doc_state(
    (intake, server_edits, device_edits): &(fieldsync_shared::ticket::Intake, Vec<Edit>, Vec<Edit>),
    hostile: &[(Vec<Edit>, Damage)],
    role: Role,
    forge: bool,
) -> Result<(), TestCaseError> {
    let mut s = scenario(intake, server_edits, device_edits);
    let mut ds = DocState::new(s.server.clone());
    // What the server has stored (it reloads this after a panic).
    let mut stored = s.server.clone();
    for (edits, damage) in hostile {
        let mut damage = damage.clone();
        if !forge {
            for c in &mut damage.chunks {
                if let ChunkDamage::Bytes(_, _, fix) = c {
                    *fix = false;
                }
            }
        }
        let mut fuzzer = fuzzer_on(ds.doc(), edits);
        let bytes = damaged_bytes(&mut fuzzer, &damage);
        let Ok(msg) = sync::Message::decode(&bytes) else {
            continue;
        };
        if chunk_guard::inspect(msg.changes.iter(), LIMITS).is_err() {
            continue;
        }
        let before = ds.doc().get_heads();
        match ds.receive(1, "fuzzer", msg) {
            // Automerge panicked part-way: the server evicts the document and
            // reloads what is stored.
            Err(_) if ds.diverged() => ds = DocState::new(stored.clone()),
            Err(_) => prop_assert_eq!(
                ds.doc().get_heads(),
                before,
                "a refused message moved the heads"
            ),
            Ok(r) => {
                prop_assert_eq!(&r.heads_before, &before);
                prop_assert_eq!(r.heads_changed, ds.doc().get_heads() != before);
                for c in &r.new_changes {
                    prop_assert!(ds.doc().get_change_by_hash(&c.hash).is_some());
                }
                let mut commit = r.new_changes.clone();
                if r.heads_changed {
                    let f = ds.follow_up(
                        &r.applied,
                        &r.heads_before,
                        role,
                        false,
                        "fuzzer",
                        "2026-11-24T10:00:00Z",
                    );
                    commit.extend(f.changes);
                }
                for c in commit {
                    stored
                        .apply_changes([Change::from_bytes(c.bytes).unwrap()])
                        .unwrap();
                }
                let _ = ds.after_commit(1, r.heads_changed);
            }
        }
    }
    let saved = ds.doc().save();
    let loaded = Automerge::load(&saved);
    prop_assert!(
        matches!(&loaded, Ok(d) if d.get_heads() == ds.doc().get_heads()),
        "document no longer loads: {:?}",
        loaded.err()
    );
    prop_assert!(
        honest_sync(&mut ds, 2, &mut s.device),
        "the honest device did not converge after the fuzzer"
    );
    Ok(())
}

fn arb_hostile() -> impl Strategy<Value = Vec<(Vec<Edit>, Damage)>> {
    vec((vec(arb_edit(), 1..8), arb_damage()), 1..4)
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn doc_state_survives_damaged_sync_messages(script in arb_script(), hostile in arb_hostile(), role in arb_role()) {
        check_doc_state(&script, &hostile, role, false)?;
    }

    #[test]
    fn doc_state_survives_forged_sync_messages(script in arb_script(), hostile in arb_hostile(), role in arb_role()) {
        check_doc_state(&script, &hostile, role, true)?;
    }
}

// ----------------------------------------------- explicit regression cases

/// Regressions found by these tests stay here as plain cases.
#[test]
fn deep_indefinite_nesting_is_refused_without_recursion() {
    for b in [0x81u8, 0x9f, 0xbf, 0xc6, 0xa1] {
        let mut frame = vec![b; 200_000];
        frame.push(0x01);
        assert!(cbor_shape::check(&frame).is_err());
        assert!(protocol::decode(&frame).is_err());
    }
}

/// The minimal case `doc_state_survives_damaged_sync_messages` found: a
/// change whose "other actors" list names an actor the document has never
/// seen (here: the ticket creator's actor id with one bit flipped), with
/// its header checksum recomputed (anyone can: the first 4 bytes of a
/// SHA-256). It parses, passes `parse_chunks` and the chunk guard, then
/// panics inside Automerge's `receive_sync_message` (automerge 0.12
/// `op_set2/change/batch.rs:1121`, `lookup_actor(a).unwrap()` in
/// `import_ops`). In the server the panic kills the document's actor task.
/// (Single-bit flips in the op columns, behind a fixed checksum, reach the
/// same kind of panic.)
fn forged_change() -> (DocState, sync::Message) {
    let intake = fieldsync_shared::ticket::Intake {
        ticket_no: "T-0".into(),
        ..Default::default()
    };
    let s = scenario(&intake, &[Edit::Note("0".into())], &[]);
    let ds = DocState::new(s.server.clone());
    // An edit of an object the creator made: the change refers to its actor.
    let mut fuzzer = fuzzer_on(ds.doc(), &[Edit::DeleteNote(0, 1)]);
    let mut change = fuzzer
        .device
        .get_last_local_change()
        .unwrap()
        .raw_bytes()
        .to_vec();
    let other = change
        .windows(12)
        .position(|w| w == b"server-actor")
        .expect("the creator's actor is listed");
    change[other + 11] ^= 1; // "server-actos"
    fix_checksum(&mut change);
    (ds, sync_message(vec![], vec![change]))
}

#[test]
fn change_naming_an_unknown_actor_is_refused_without_a_panic() {
    let (mut ds, msg) = forged_change();
    assert!(chunk_guard::inspect(msg.changes.iter(), LIMITS).is_ok());
    let before = ds.doc().get_heads();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ds.receive(1, "fuzzer", msg).is_ok()
    }));
    assert!(r.is_ok(), "DocState::receive panicked");
    assert_eq!(
        ds.doc().get_heads(),
        before,
        "the forged change was refused"
    );
}

/// The minimal case `chunk_guard_never_undercounts_damaged_chunks` found:
/// a whole saved ticket document (what a V2 sync message carries) with one
/// bit flipped and its header checksum recomputed. `DocState::receive`
/// checks document chunks with `Automerge::load_with_options` in
/// `parse_chunks` (doc_state.rs), and that load panics instead of returning
/// an error (here: index out of bounds in automerge 0.12
/// `op_set2/change.rs:282`, `ActorMapper`; other flips hit the assertion
/// `self.data[index].is_none()` in `op_set2/change/collector.rs:299`). ~30 of the ~3000 single-bit flips of
/// this 373-byte document do it.
#[test]
fn damaged_whole_document_is_refused_without_a_panic() {
    let intake = fieldsync_shared::ticket::Intake {
        ticket_no: "T-0".into(),
        ..Default::default()
    };
    let mut s = scenario(&intake, &[], &[]);
    let mut doc = s.device.save_nocompress();
    doc[109] ^= 1;
    fix_checksum(&mut doc);
    let mut msg = sync_message(vec![], vec![doc]);
    msg.version = sync::MessageVersion::V2;
    assert!(chunk_guard::inspect(msg.changes.iter(), LIMITS).is_ok());
    let mut ds = DocState::new(s.server.clone());
    let before = ds.doc().get_heads();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ds.receive(1, "fuzzer", msg).is_ok()
    }));
    assert!(r.is_ok(), "DocState::receive panicked");
    assert_eq!(ds.doc().get_heads(), before);
}
