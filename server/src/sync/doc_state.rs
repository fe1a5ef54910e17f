//! One document's sync state, without I/O: the Automerge document plus a sync
//! state per connected peer. The doc actor feeds it decoded sync messages,
//! commits what `receive` says is new, and only then asks for the messages to
//! send (`after_commit`). Tested directly with in-memory peers.

use std::collections::HashMap;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, Change, ChangeHash, LoadOptions, OnPartialLoad};
use fieldsync_shared::protocol::PeerId;

use super::{chunk_guard, integrity};
use crate::storage::NewChange;
use fieldsync_shared::roles::Role;

/// Server-local id of one WebSocket connection (peer ids are client-chosen).
pub type ConnId = u64;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid Automerge data: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("corrupt Automerge chunk {index}: {reason}")]
    Corrupt { index: usize, reason: String },
    #[error("Automerge could not process the data (it panicked); the data is refused")]
    Panicked,
}

/// Runs `f`, turning a panic into `ApplyError::Panicked`.
fn contain_panic<T>(f: impl FnOnce() -> Result<T, ApplyError>) -> Result<T, ApplyError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::warn!("Automerge panicked on received data; refused");
        Err(ApplyError::Panicked)
    })
}

/// What one incoming sync message did.
pub struct Received {
    /// Changes to store before anything is sent (empty: nothing to commit):
    /// exactly the changes the message made the document apply. Changes
    /// Automerge queues (their dependencies have not arrived) are neither
    /// stored nor acknowledged until they apply: only applied changes are
    /// judged, so only judged changes are ever stored.
    pub new_changes: Vec<NewChange>,
    /// The same changes, for judging (`follow_up`).
    pub applied: Vec<Change>,
    /// The document heads before the message; `rollback` returns here.
    pub heads_before: Vec<ChangeHash>,
    /// Whether the document's heads moved (other peers must hear about it).
    pub heads_changed: bool,
    /// Set when more than `MAX_PENDING_BYTES` of changes wait for missing
    /// dependencies: after the commit, the document must be reloaded.
    pub pending_over_limit: Option<usize>,
}

struct PeerSync {
    peer_id: PeerId,
    state: sync::State,
    /// May upload changes but is sent nothing (see sharing::DocAccess and
    /// DocActor::answer_write_only).
    write_only: bool,
}

/// What `follow_up` did.
#[derive(Default)]
pub struct FollowUp {
    /// Server changes to commit with the peer's.
    pub changes: Vec<NewChange>,
    /// Undone edits, with the change that undid them.
    pub violations: Vec<(integrity::Violation, ChangeHash)>,
    /// What the peer's ops touched (for the incremental projection).
    pub touched: integrity::Touch,
    /// Every op was judged as from a locked author (the ticket is closed to
    /// the peer), whatever its role.
    pub locked: bool,
}

pub struct DocState {
    /// Root key of each object seen (see `integrity::FieldCache`).
    fields: integrity::FieldCache,
    doc: Automerge,
    peers: HashMap<ConnId, PeerSync>,
    /// Set when a rollback was not exact (see `rollback`).
    diverged: bool,
    /// Bytes of received changes Automerge holds back because their
    /// dependencies have not arrived (a rough count: what messages offered
    /// minus what they applied, since the queue was last empty).
    pending_bytes: usize,
}

/// Most bytes of changes a document holds back waiting for dependencies.
/// Past it the document is reloaded from storage, which drops them: a peer
/// cannot make the server keep changes that never apply.
pub const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

impl DocState {
    pub fn new(doc: Automerge) -> Self {
        Self {
            fields: integrity::FieldCache::default(),
            doc,
            peers: HashMap::new(),
            diverged: false,
            pending_bytes: 0,
        }
    }

    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// A document nobody has written to (unknown to the server).
    pub fn is_empty(&self) -> bool {
        self.doc.get_heads().is_empty()
    }

    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Peers that receive the document (not write-only ones).
    pub fn reader_ids(&self) -> impl Iterator<Item = (ConnId, &str)> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.write_only)
            .map(|(c, p)| (*c, p.peer_id.as_str()))
    }

    pub fn set_write_only(&mut self, conn: ConnId, write_only: bool) {
        if let Some(p) = self.peers.get_mut(&conn) {
            p.write_only = write_only;
        }
    }

    /// Starts tracking a peer (a fresh sync state) if it is new.
    pub fn add_peer(&mut self, conn: ConnId, peer_id: &str) {
        self.peers.entry(conn).or_insert_with(|| PeerSync {
            peer_id: peer_id.to_string(),
            state: sync::State::new(),
            write_only: false,
        });
    }

    pub fn remove_peer(&mut self, conn: ConnId) {
        self.peers.remove(&conn);
    }

    /// Applies a peer's sync message to the in-memory document. Nothing may be
    /// sent to anyone until `new_changes` are committed; on commit failure call
    /// `rollback(heads_before)`.
    pub fn receive(
        &mut self,
        conn: ConnId,
        peer_id: &str,
        msg: sync::Message,
    ) -> Result<Received, ApplyError> {
        self.add_peer(conn, peer_id);
        let heads_before = self.doc.get_heads();
        // Automerge skips chunks it cannot parse without reporting it, so every
        // chunk is checked first: corrupt data is refused, never half-applied.
        // Automerge 0.12 panics on some forged data that parses (an unknown
        // actor in a change, damaged columns behind a recomputed checksum):
        // a panic is refused data like any other, never a dead actor.
        contain_panic(|| parse_chunks(msg.changes.iter()))?;
        let offered: usize = msg.changes.iter().map(<[u8]>::len).sum();
        let peer = self.peers.get_mut(&conn).expect("peer added above");
        let (doc, state) = (&mut self.doc, &mut peer.state);
        match contain_panic(|| {
            doc.receive_sync_message(state, msg)
                .map_err(ApplyError::from)
        }) {
            Ok(()) => {}
            Err(e @ ApplyError::Panicked) => {
                // The document may be half-modified in ways a rollback cannot
                // see: reload it from storage.
                self.diverged = true;
                return Err(e);
            }
            Err(e) => {
                // Automerge may have applied part of the message: put it back.
                self.rollback(&heads_before);
                return Err(e);
            }
        }
        let heads_changed = self.doc.get_heads() != heads_before;
        let applied = if heads_changed {
            self.doc.get_changes(&heads_before)
        } else {
            Vec::new()
        };
        let new_changes: Vec<NewChange> = applied
            .iter()
            .map(|c| NewChange {
                hash: c.hash(),
                bytes: c.raw_bytes().to_vec(),
            })
            .collect();
        let applied_bytes: usize = new_changes.iter().map(|c| c.bytes.len()).sum();
        if offered > applied_bytes || self.pending_bytes > 0 {
            if automerge::ReadDoc::get_missing_deps(&self.doc, &[]).is_empty() {
                self.pending_bytes = 0;
            } else {
                self.pending_bytes += offered.saturating_sub(applied_bytes);
            }
        }
        Ok(Received {
            new_changes,
            applied,
            heads_before,
            heads_changed,
            pending_over_limit: (self.pending_bytes > MAX_PENDING_BYTES)
                .then_some(self.pending_bytes),
        })
    }

    /// Forgets everything applied since `heads` (used when the commit failed, so
    /// memory never holds what storage does not). Returns false when that was
    /// not possible exactly: the document then holds changes that are not
    /// stored and must be evicted and reloaded, never served (`diverged`).
    pub fn rollback(&mut self, heads: &[ChangeHash]) -> bool {
        // Sync states may reference the forgotten changes: restart them all.
        for p in self.peers.values_mut() {
            p.state = sync::State::new();
        }
        if self.doc.get_heads() == heads {
            return true;
        }
        // automerge 0.7 can panic inside fork_at on some graphs; a panic is
        // just another inexact rollback (fork_at only reads `self.doc`).
        let forked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.doc.fork_at(heads)))
                .unwrap_or_else(|_| Err(automerge::AutomergeError::Fail));
        match forked {
            Ok(doc) if doc.get_heads() == heads => {
                self.doc = doc;
                true
            }
            Ok(_) => {
                tracing::error!("rollback gave other heads; the document will be reloaded");
                self.diverged = true;
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "rollback failed; the document will be reloaded");
                self.diverged = true;
                false
            }
        }
    }

    /// Marks the in-memory document as no longer equal to what is stored.
    pub fn mark_diverged(&mut self) {
        self.diverged = true;
    }

    /// The in-memory document may hold changes that are not stored.
    pub fn diverged(&self) -> bool {
        self.diverged
    }

    /// Messages to send once the changes of the last `receive` are durable: the
    /// reply to `from`, and, when the heads moved, updates to every other peer.
    pub fn after_commit(
        &mut self,
        from: ConnId,
        heads_changed: bool,
    ) -> Vec<(ConnId, PeerId, sync::Message)> {
        let mut out = Vec::new();
        for (conn, peer) in self.peers.iter_mut() {
            // Write-only peers are answered by the doc actor, never with content.
            if peer.write_only || (*conn != from && !heads_changed) {
                continue;
            }
            if let Some(m) = self.doc.generate_sync_message(&mut peer.state) {
                out.push((*conn, peer.peer_id.clone(), m));
            }
        }
        out
    }

    /// The server's part of a peer's message, after `receive` moved the
    /// heads: merge integrity (forbidden ops undone, edits in restored
    /// objects carried over; see `integrity`), then `settle`. The returned
    /// changes are already applied and go into the same commit as the
    /// peer's.
    pub fn follow_up(
        &mut self,
        applied: &[Change],
        heads_before: &[ChangeHash],
        role: Role,
        locked: bool,
        by_user: &str,
        at: &str,
    ) -> FollowUp {
        // Reconciliation lock (issue 11 §1, office::reconciliation): a ticket
        // that was `reconciled` before this message is closed to every
        // device but an admin's, so all of the message's ops are undone and
        // quarantined, as for a closed write-only window. Judged on the
        // status at `heads_before`, so a message that also rewrites the
        // status cannot unlock itself.
        let locked = locked
            || (!heads_before.is_empty()
                && fieldsync_shared::status::locked_for(
                    role,
                    super::validation::field_json(&self.doc, "status", Some(heads_before))
                        .as_str()
                        .unwrap_or(""),
                ));
        let author = if locked {
            integrity::Author::Locked
        } else {
            role.into()
        };
        let enforced = integrity::enforce(&mut self.doc, &mut self.fields, applied, author);
        let mut out = FollowUp {
            touched: enforced.touched,
            locked,
            ..FollowUp::default()
        };
        if let Some((change, violations)) = enforced.compensation {
            out.violations = violations.into_iter().map(|v| (v, change.hash)).collect();
            out.changes.push(change);
        }
        out.changes.extend(enforced.forwarded);
        // Status events are looked for only when something wrote the status.
        let settled = if out.touched.fields.contains("status") {
            self.settle(
                heads_before,
                by_user,
                role,
                at,
                Some(&enforced.status_steps),
            )
        } else {
            Vec::new()
        };
        if !settled.is_empty() {
            out.touched.fields.insert("status".into());
            out.touched.fields.insert("status_history".into());
        }
        out.changes.extend(settled);
        out
    }

    /// After accepted changes (a peer's or the API's): a concurrent status
    /// conflict is settled by the status machine's rule, and who moved the
    /// status is recorded in the document.
    pub fn settle(
        &mut self,
        before: &[ChangeHash],
        by_user: &str,
        role: Role,
        at: &str,
        accepted_steps: Option<&[(String, i64)]>,
    ) -> Vec<NewChange> {
        let mut out = Vec::new();
        out.extend(super::validation::resolve_status_conflict(&mut self.doc));
        out.extend(super::validation::record_status_event(
            &mut self.doc,
            before,
            by_user,
            role,
            at,
            accepted_steps,
        ));
        out
    }

    /// Applies an edit made by the server itself (dispatcher API).
    pub fn server_edit(
        &mut self,
        edit: super::hub::ServerEditFn,
    ) -> Result<Option<NewChange>, String> {
        super::validation::server_change(&mut self.doc, edit)
    }

    /// Every change hash in the document (for compaction).
    pub fn all_change_hashes(&self) -> std::collections::HashSet<ChangeHash> {
        self.doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| m.hash)
            .collect()
    }
}

/// Checks every chunk of a message (changes, or whole documents/bundles)
/// before Automerge sees it: Automerge skips chunks it cannot parse without
/// reporting it.
fn parse_chunks<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Result<(), ApplyError> {
    for (index, entry) in entries.enumerate() {
        let corrupt = |reason: String| ApplyError::Corrupt { index, reason };
        let mut rest = entry;
        while !rest.is_empty() {
            let (chunk, next) = chunk_guard::split_chunk(rest).map_err(corrupt)?;
            rest = next;
            let (kind, chunk) = (chunk.kind, chunk.bytes);
            if kind == chunk_guard::CHUNK_CHANGE || kind == chunk_guard::CHUNK_COMPRESSED_CHANGE {
                let change =
                    Change::from_bytes(chunk.to_vec()).map_err(|e| corrupt(e.to_string()))?;
                // Parsing does not verify the header checksum (the first 4
                // bytes of the change hash); Automerge's loader would then
                // silently drop the chunk.
                if chunk[4..8] != change.hash().0[..4] {
                    return Err(corrupt("checksum mismatch".into()));
                }
            } else {
                // A whole document or a bundle of changes: check it loads
                // cleanly, then ask the document afterwards what is new.
                let strict = LoadOptions::new().on_partial_load(OnPartialLoad::Error);
                Automerge::load_with_options(chunk, strict).map_err(|e| corrupt(e.to_string()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ReadDoc, ROOT};

    /// Changes whose dependencies never arrive are held back, never stored,
    /// and bounded: past `MAX_PENDING_BYTES` the caller must reload.
    #[test]
    fn orphan_changes_are_not_stored_and_are_bounded() {
        let mut server = DocState::new(Automerge::new());
        let mut device = AutoCommit::new();
        device.put(ROOT, "base", 1).unwrap();
        device.commit(); // never sent
        let mut orphans = vec![];
        for i in 0..20 {
            device
                .put(ROOT, format!("k{i}"), "x".repeat(1 << 20))
                .unwrap();
            device.commit();
            orphans.push(device.get_last_local_change().unwrap().raw_bytes().to_vec());
        }
        let msg = |changes: Vec<Vec<u8>>| sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: changes.into(),
            flags: None,
            version: sync::MessageVersion::V1,
        };
        let r = server.receive(1, "p", msg(orphans[..4].to_vec())).unwrap();
        assert!(
            r.new_changes.is_empty(),
            "nothing applies, nothing is stored"
        );
        assert_eq!(r.pending_over_limit, None);
        let r = server.receive(1, "p", msg(orphans[4..].to_vec())).unwrap();
        assert!(r.new_changes.is_empty());
        assert!(r.pending_over_limit.unwrap() > MAX_PENDING_BYTES);
    }

    /// Runs the sync protocol between a client doc and the server state until
    /// quiet, committing (here: collecting) what the server reports as new.
    fn sync_client(
        server: &mut DocState,
        conn: ConnId,
        client: &mut AutoCommit,
        cs: &mut sync::State,
    ) -> Vec<NewChange> {
        let mut stored = Vec::new();
        for _ in 0..20 {
            let mut quiet = true;
            let outgoing = client.sync().generate_sync_message(cs);
            if let Some(m) = outgoing {
                quiet = false;
                let r = server.receive(conn, &format!("peer{conn}"), m).unwrap();
                stored.extend(r.new_changes);
                for (to, _, reply) in server.after_commit(conn, r.heads_changed) {
                    if to == conn {
                        client.sync().receive_sync_message(cs, reply).unwrap();
                    }
                }
            }
            if quiet {
                break;
            }
        }
        stored
    }

    #[test]
    fn stores_exactly_the_new_changes_and_they_rebuild_the_doc() {
        let mut server = DocState::new(Automerge::new());
        let mut a = AutoCommit::new();
        a.put(ROOT, "title", "pump broken").unwrap();
        a.commit();
        a.put(ROOT, "priority", "A").unwrap();
        a.commit();
        let stored = sync_client(&mut server, 1, &mut a, &mut sync::State::new());
        assert_eq!(stored.len(), 2);
        assert_eq!(server.doc().get_heads(), a.get_heads());

        // The stored bytes alone rebuild the same document.
        let mut rebuilt = Automerge::new();
        for c in &stored {
            rebuilt.load_incremental(&c.bytes).unwrap();
        }
        assert_eq!(rebuilt.get_heads(), a.get_heads());
    }

    #[test]
    fn fans_out_only_after_commit_and_only_when_heads_move() {
        let mut server = DocState::new(Automerge::new());
        let mut a = AutoCommit::new();
        a.put(ROOT, "x", 1).unwrap();
        let mut sa = sync::State::new();
        sync_client(&mut server, 1, &mut a, &mut sa);

        let mut b = AutoCommit::new();
        let mut sb = sync::State::new();
        sync_client(&mut server, 2, &mut b, &mut sb);
        assert_eq!(b.get_heads(), a.get_heads());

        a.put(ROOT, "x", 2).unwrap();
        let m = a.sync().generate_sync_message(&mut sa).unwrap();
        let r = server.receive(1, "peer1", m).unwrap();
        assert!(r.heads_changed);
        let out = server.after_commit(1, r.heads_changed);
        assert!(
            out.iter().any(|(c, _, _)| *c == 2),
            "peer 2 gets the new change"
        );

        // A message with nothing new does not wake other peers.
        let mut quiet = sync::State::new();
        let m = a.sync().generate_sync_message(&mut quiet).unwrap();
        let r = server.receive(3, "peer3", m).unwrap();
        let out = server.after_commit(3, r.heads_changed);
        assert!(out.iter().all(|(c, _, _)| *c == 3));
    }

    #[test]
    fn several_changes_packed_in_one_entry_are_accepted_and_stored() {
        let mut server = DocState::new(Automerge::new());
        let mut a = AutoCommit::new();
        let mut packed = Vec::new();
        for i in 0..3 {
            a.put(ROOT, "n", i).unwrap();
            a.commit();
            packed.extend_from_slice(a.get_last_local_change().unwrap().raw_bytes());
        }
        let msg = sync::Message {
            heads: a.get_heads(),
            need: vec![],
            have: vec![],
            changes: vec![packed].into(),
            flags: None,
            version: sync::MessageVersion::V1,
        };
        let r = server.receive(1, "peer1", msg).unwrap();
        assert_eq!(r.new_changes.len(), 3);
        assert_eq!(server.doc().get_heads(), a.get_heads());
    }

    #[test]
    fn rollback_forgets_uncommitted_changes() {
        let mut server = DocState::new(Automerge::new());
        let mut a = AutoCommit::new();
        a.put(ROOT, "x", 1).unwrap();
        let mut sa = sync::State::new();
        sync_client(&mut server, 1, &mut a, &mut sa);
        let committed = server.doc().get_heads();

        a.put(ROOT, "x", 2).unwrap();
        let m = a.sync().generate_sync_message(&mut sa).unwrap();
        let r = server.receive(1, "peer1", m).unwrap();
        assert_eq!(r.new_changes.len(), 1);
        assert!(server.rollback(&r.heads_before));
        assert!(!server.diverged());
        assert_eq!(server.doc().get_heads(), committed);
        assert_eq!(
            server.doc().get(ROOT, "x").unwrap().unwrap().0.as_i64(),
            Some(1)
        );
    }

    #[test]
    fn corrupt_changes_are_rejected_without_touching_the_doc() {
        let mut server = DocState::new(Automerge::new());
        let mut a = AutoCommit::new();
        a.put(ROOT, "x", 1).unwrap();
        sync_client(&mut server, 1, &mut a, &mut sync::State::new());
        let before = server.doc().get_heads();

        let mut b = AutoCommit::new();
        b.put(ROOT, "y", 1).unwrap();
        let good = b.get_last_local_change().unwrap().raw_bytes().to_vec();
        // Any single corrupted byte anywhere in the change is refused.
        for i in 0..good.len() {
            let mut change = good.clone();
            change[i] ^= 0xff;
            let msg = sync::Message {
                heads: vec![],
                need: vec![],
                have: vec![],
                changes: vec![change].into(),
                flags: None,
                version: sync::MessageVersion::V1,
            };
            assert!(
                server.receive(2, "peer2", msg).is_err(),
                "flipped byte {i} was accepted"
            );
        }
        assert_eq!(server.doc().get_heads(), before);
    }

    /// Issue 11 §1: once reconciled, a ticket takes no more edits from any
    /// device but an admin's; they are undone and reported as violations.
    #[test]
    fn reconciled_tickets_are_locked_for_every_device_but_an_admins() {
        use fieldsync_shared::status::Status;
        use fieldsync_shared::ticket;
        for (role, locked) in [
            (Role::Technician, true),
            (Role::BackOffice, true),
            (Role::Admin, false),
        ] {
            let mut base = AutoCommit::new();
            let intake = ticket::Intake {
                ticket_no: "T-1".into(),
                ..Default::default()
            };
            ticket::create(&mut base, &intake).unwrap();
            ticket::set_status(&mut base, Status::Reconciled).unwrap();
            let bytes = base.save();
            let mut server = DocState::new(Automerge::load(&bytes).unwrap());
            let mut device = AutoCommit::load(&bytes)
                .unwrap()
                .with_actor(automerge::ActorId::random());
            ticket::check_in(&mut device, "v9", "tom", "2026-11-27T09:00:00Z").unwrap();
            device.commit();
            let (mut cs, mut violations) = (sync::State::new(), 0);
            for _ in 0..10 {
                let Some(m) = device.sync().generate_sync_message(&mut cs) else {
                    break;
                };
                let r = server.receive(1, "peer1", m).unwrap();
                if r.heads_changed {
                    let f = server.follow_up(&r.applied, &r.heads_before, role, false, "u", "t");
                    violations += f.violations.len();
                }
                for (to, _, reply) in server.after_commit(1, r.heads_changed) {
                    if to == 1 {
                        device.sync().receive_sync_message(&mut cs, reply).unwrap();
                    }
                }
            }
            let visits = ticket::read(server.doc()).unwrap().visits.len();
            assert_eq!(
                (violations > 0, visits),
                (locked, if locked { 0 } else { 1 }),
                "{role}"
            );
            assert_eq!(device.get_heads(), server.doc().get_heads(), "{role}");
        }
    }
}
