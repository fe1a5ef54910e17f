//! The task that owns one loaded document. Commands arrive in order; for each
//! sync message: apply → commit (group commit) → only then reply and fan out.
//!
//! After a failed commit the actor evicts itself: its peers are closed with a
//! retryable code (they keep their changes and resync on reconnect) and the
//! next command loads the document from storage afresh, so memory never
//! holds what storage does not (nor misses what a commit whose answer was lost
//! did store). Nothing uncommitted is ever acknowledged, fanned out or
//! projected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use fieldsync_shared::protocol::{EphemeralFrame, Message};
use fieldsync_shared::DocumentId;
use tokio::sync::mpsc;

use super::doc_state::{ConnId, DocState};
use super::hub::{DocCommand, EditError, Hub, PeerHandle, ServerEditFn};
use super::session::close_code;
use crate::metrics::{EditRejection, METRICS};
use tracing::Instrument;

use crate::projection::{self, TicketRows};
use crate::sharing::{self, Assignment, DocAccess};
use crate::storage::committer::CommitError;
use crate::storage::{self, DocWrite, NewChange, Quarantined};
use fieldsync_shared::roles::Role;

/// Compact on eviction only when it saves a meaningful number of rows.
const COMPACT_ON_EVICT_MIN: usize = 16;

/// The close reason after a failed commit (WebSocket code 1013 when storage is
/// failing: the stock clients reconnect and resend).
const STORAGE_FAILED: &str =
    "storage unavailable: your changes were not stored and stay on the device; retry later";

struct DocActor {
    hub: Arc<Hub>,
    doc_id: DocumentId,
    doc_key: String,
    state: DocState,
    handles: HashMap<ConnId, PeerHandle>,
    /// Changes stored outside a snapshot (compaction folds them in).
    loose_changes: usize,
    /// Who the ticket is assigned to, for the share policy.
    assignment: Assignment,
    /// Connections that asked for the document but may not see it (yet).
    waiting: HashMap<ConnId, PeerHandle>,
    /// The service-history rows last committed for this document (None:
    /// not known since load); unchanged rows are not rewritten.
    last_projection: Option<TicketRows>,
    /// Memory no longer equals storage: serve nothing more, leave.
    evicted: bool,
}

pub(crate) async fn run(
    hub: Arc<Hub>,
    doc_id: DocumentId,
    generation: u64,
    rx: mpsc::Receiver<DocCommand>,
) {
    let span = tracing::info_span!(parent: None, "doc_actor", doc = %doc_id);
    run_actor(hub, doc_id, generation, rx)
        .instrument(span)
        .await
}

async fn run_actor(
    hub: Arc<Hub>,
    doc_id: DocumentId,
    generation: u64,
    mut rx: mpsc::Receiver<DocCommand>,
) {
    METRICS.docs_active.inc();
    let doc_key = doc_id.to_string();
    let key = doc_key.clone();
    let loaded = hub
        .db
        .run(move |c| Ok((storage::load(c, &key)?, sharing::load_assignment(c, &key)?)))
        .await
        .and_then(|(stored, assignment)| {
            Ok((stored.materialize()?, stored.changes.len(), assignment))
        });
    match loaded {
        Ok((doc, loose_changes, assignment)) => {
            METRICS.docs_loaded.inc();
            let mut actor = DocActor {
                hub: hub.clone(),
                doc_id,
                doc_key,
                state: DocState::new(doc),
                handles: HashMap::new(),
                loose_changes,
                assignment,
                waiting: HashMap::new(),
                last_projection: None,
                evicted: false,
            };
            actor.serve(generation, &mut rx).await;
        }
        Err(e) => {
            tracing::error!(doc = %doc_id, error = %e, advice = %crate::storage::health::advice(&hub.db.target, &e), "could not load document");
            let code = if e.is_unavailable() {
                close_code::TRY_AGAIN_LATER
            } else {
                close_code::INTERNAL
            };
            // Refuse what is queued; the next command starts a fresh attempt.
            while !hub.try_unregister_doc(doc_id, generation, &rx) {
                match rx.recv().await {
                    Some(DocCommand::Sync { peer, .. }) => peer.fail(
                        &hub.server_peer_id,
                        code,
                        "document could not be loaded; retry later",
                    ),
                    Some(DocCommand::ServerEdit { reply, .. }) => {
                        let _ = reply.send(Err(EditError::Unavailable));
                    }
                    Some(DocCommand::Read { reply, .. }) => {
                        let _ = reply.send(Err(EditError::Unavailable));
                    }
                    Some(DocCommand::Barrier(done)) => {
                        let _ = done.send(());
                    }
                    _ => {}
                }
            }
        }
    }
    METRICS.docs_active.dec();
    hand_on_leftovers(hub, doc_id, rx);
}

/// Commands that raced with the actor's exit go to its successor, in order.
fn hand_on_leftovers(hub: Arc<Hub>, doc_id: DocumentId, mut rx: mpsc::Receiver<DocCommand>) {
    rx.close();
    let mut leftovers = Vec::new();
    while let Ok(cmd) = rx.try_recv() {
        leftovers.push(cmd);
    }
    if !leftovers.is_empty() {
        tokio::spawn(async move {
            for cmd in leftovers {
                hub.dispatch(doc_id, cmd).await;
            }
        });
    }
}

impl DocActor {
    async fn serve(&mut self, generation: u64, rx: &mut mpsc::Receiver<DocCommand>) {
        let idle = self.hub.config.idle_evict;
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        self.handle(cmd).await;
                        if self.evicted {
                            self.hub.remove_doc(self.doc_id, generation);
                            return;
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep(idle), if !self.state.has_peers() && self.waiting.is_empty() => {
                    if self.loose_changes >= COMPACT_ON_EVICT_MIN {
                        self.compact().await;
                    }
                    if self.hub.try_unregister_doc(self.doc_id, generation, rx) {
                        METRICS.docs_evicted.inc();
                        tracing::debug!(doc = %self.doc_id, "evicted idle document");
                        return;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, cmd: DocCommand) {
        match cmd {
            DocCommand::Sync {
                peer,
                msg,
                request,
                received,
                span,
            } => {
                // Inside the sender's span (its connection or HTTP request),
                // so every line about this message names the connection.
                let span = tracing::info_span!(parent: &span, "sync_msg", doc = %self.doc_id);
                self.on_sync(peer, msg, request, received)
                    .instrument(span)
                    .await
            }
            DocCommand::Ephemeral { from, frame } => self.on_ephemeral(from, frame),
            DocCommand::PeerLeft { conn } => {
                self.state.remove_peer(conn);
                self.handles.remove(&conn);
                self.waiting.remove(&conn);
            }
            DocCommand::AccessChanged(assignment) => self.on_access_changed(assignment),
            DocCommand::Barrier(done) => {
                let _ = done.send(());
            }
            DocCommand::ServerEdit {
                by_user,
                role,
                create,
                edit,
                reply,
            } => {
                let result = self.on_server_edit(&by_user, role, create, edit).await;
                let _ = reply.send(result);
            }
            DocCommand::Read { read, reply } => {
                let value = (!self.state.is_empty()).then(|| read(self.state.doc()));
                let _ = reply.send(Ok(value));
            }
        }
    }

    fn access(&self, peer: &PeerHandle) -> DocAccess {
        let device = sharing::SyncDevice {
            id: &peer.device_id,
            registered_at: peer.device_registered_at,
        };
        sharing::sync_access(
            peer.role,
            &peer.user_id,
            device,
            !self.state.is_empty(),
            &self.assignment,
            crate::db::now_millis(),
        )
    }

    fn unavailable(&self, peer: &PeerHandle) {
        peer.send(Message::DocUnavailable {
            sender_id: self.hub.server_peer_id.clone(),
            target_id: peer.peer_id.clone(),
            document_id: self.doc_id,
        });
    }

    /// Reassignment: peers who lost access stop receiving the document at once.
    fn on_access_changed(&mut self, assignment: Assignment) {
        self.assignment = assignment;
        let peers: Vec<PeerHandle> = self.handles.values().cloned().collect();
        for peer in peers {
            match self.access(&peer) {
                DocAccess::Hidden => {
                    self.drop_peer(peer.conn);
                    self.unavailable(&peer);
                    self.waiting.insert(peer.conn, peer);
                }
                DocAccess::WriteOnly | DocAccess::Locked => {
                    self.state.set_write_only(peer.conn, true)
                }
                DocAccess::Full => self.state.set_write_only(peer.conn, false),
            }
        }
        self.offer_to_waiting();
    }

    /// Peers that asked before they were allowed to see the document (not
    /// assigned yet, or it did not exist) get it as soon as they may.
    fn offer_to_waiting(&mut self) {
        let waiting: Vec<PeerHandle> = self.waiting.values().cloned().collect();
        for peer in waiting {
            if self.access(&peer) == DocAccess::Full {
                self.waiting.remove(&peer.conn);
                self.state.add_peer(peer.conn, &peer.peer_id);
                self.handles.insert(peer.conn, peer.clone());
                for (_, target_id, m) in self.state.after_commit(peer.conn, false) {
                    peer.send(Message::Sync {
                        sender_id: self.hub.server_peer_id.clone(),
                        target_id,
                        document_id: self.doc_id,
                        data: m.encode(),
                    });
                }
            }
        }
    }

    async fn on_sync(
        &mut self,
        peer: PeerHandle,
        msg: automerge::sync::Message,
        request: bool,
        received_at: Instant,
    ) {
        METRICS.sync_messages.inc();
        let conn = peer.conn;
        let peer_has_doc = !msg.heads.is_empty();
        let carried_changes = !msg.changes.is_empty();
        let access = self.access(&peer);
        if access == DocAccess::Hidden {
            // Exactly what an unknown document gets: no existence leak. The
            // peer is remembered: if the ticket is assigned to its user later,
            // it is sent the document without asking again.
            self.drop_peer(conn);
            self.unavailable(&peer);
            self.waiting.insert(conn, peer);
            return;
        }
        self.waiting.remove(&conn);
        self.handles.insert(conn, peer.clone());
        let applying = Instant::now();
        let received = self.state.receive(conn, &peer.peer_id, msg);
        METRICS.apply_time.observe(applying.elapsed());
        let write_only = matches!(access, DocAccess::WriteOnly | DocAccess::Locked);
        self.state.set_write_only(conn, write_only);
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(doc = %self.doc_id, peer = %peer.peer_id, error = %e, "rejected sync message");
                METRICS.protocol_errors.inc();
                crate::metrics::edit_rejected(EditRejection::CorruptData);
                self.drop_peer(conn);
                peer.fail(
                    &self.hub.server_peer_id,
                    close_code::PROTOCOL_ERROR,
                    &format!("rejected Automerge data for {}: {e}", self.doc_id),
                );
                if self.state.diverged() {
                    self.evict("the document is reloading after rejected data; reconnect");
                }
                return;
            }
        };

        let mut changes = received.new_changes;
        let mut quarantined = Vec::new();
        let mut touch = None;
        if received.heads_changed {
            let at = crate::db::now_rfc3339();
            let judging = Instant::now();
            let follow = self.state.follow_up(
                &received.applied,
                &received.heads_before,
                peer.role,
                access == DocAccess::Locked,
                &peer.user_id,
                &at,
            );
            METRICS.validation_time.observe(judging.elapsed());
            for (v, compensation) in follow.violations {
                tracing::info!(doc = %self.doc_id, user = %peer.user_id, device = %peer.device_id, path = %v.path, "quarantined a forbidden edit");
                crate::metrics::edit_rejected(quarantine_reason(
                    access == DocAccess::Locked || follow.locked,
                    &v.path,
                ));
                quarantined.push(Quarantined {
                    user_id: peer.user_id.clone(),
                    device_id: peer.device_id.clone(),
                    path: v.path,
                    attempted: v.attempted,
                    restored: v.restored,
                    compensation,
                });
            }
            changes.extend(follow.changes);
            touch = Some(follow.touched);
        }
        let acknowledges = !changes.is_empty();
        if let Err(e) = self.commit(changes, quarantined, touch.as_ref()).await {
            tracing::warn!(doc = %self.doc_id, peer = %peer.peer_id, error = %e, "changes not stored; the device keeps them and retries");
            crate::metrics::edit_rejected(EditRejection::StorageUnavailable);
            self.drop_peer(conn);
            peer.fail(
                &self.hub.server_peer_id,
                if e.unavailable {
                    close_code::TRY_AGAIN_LATER
                } else {
                    close_code::INTERNAL
                },
                STORAGE_FAILED,
            );
            if self.state.diverged() {
                self.evict(STORAGE_FAILED);
            }
            return;
        }
        crate::blobs::access::link_new_references(
            &self.hub.db,
            &self.doc_key,
            self.state.doc(),
            &received.heads_before,
            touch.as_ref().map(|t| &t.fields),
            &peer.user_id,
            peer.role,
        )
        .await;

        if let Some(bytes) = received.pending_over_limit {
            // Reloading from storage is the only way to drop Automerge's
            // queue of changes whose dependencies never arrived.
            METRICS.limit_violations.inc();
            crate::metrics::edit_rejected(EditRejection::MissingDependencies);
            tracing::warn!(doc = %self.doc_id, peer = %peer.peer_id, user = %peer.user_id, bytes, "dropping changes whose dependencies never arrived");
            self.drop_peer(conn);
            peer.fail(
                &self.hub.server_peer_id,
                close_code::POLICY,
                &format!("{bytes} bytes of changes whose dependencies never arrived; send them with their dependencies"),
            );
            self.state.mark_diverged();
            self.evict("the document is reloading; reconnect");
            return;
        }

        if self.state.is_empty() && (request || !peer_has_doc) {
            // Neither side has this document. The peer stays registered, so it
            // is sent the document if another peer uploads it later.
            peer.send(Message::DocUnavailable {
                sender_id: self.hub.server_peer_id.clone(),
                target_id: peer.peer_id.clone(),
                document_id: self.doc_id,
            });
            return;
        }

        self.send_updates(conn, received.heads_changed);
        if write_only {
            if access == DocAccess::WriteOnly && carried_changes {
                self.close_write_only(&peer).await;
            }
            self.answer_write_only(&peer, carried_changes || !peer_has_doc);
        }
        if acknowledges {
            // Committed, and the reply that acknowledges it is queued.
            METRICS.ack_latency.observe(received_at.elapsed());
        }

        if self.loose_changes >= self.hub.config.compact_after {
            self.compact().await;
        }
    }

    /// Sync messages after a commit: the reply to `from` and, when the heads
    /// moved, updates to every other reader.
    fn send_updates(&mut self, from: ConnId, heads_changed: bool) {
        for (to, target_id, m) in self.state.after_commit(from, heads_changed) {
            if let Some(h) = self.handles.get(&to) {
                h.send(Message::Sync {
                    sender_id: self.hub.server_peer_id.clone(),
                    target_id,
                    document_id: self.doc_id,
                    data: m.encode(),
                });
            }
        }
    }

    /// ONE transaction: the changes, quarantined edits and, when they moved,
    /// the document's service-history rows. On failure the document is marked
    /// for eviction (see the module comment).
    async fn commit(
        &mut self,
        changes: Vec<NewChange>,
        quarantined: Vec<Quarantined>,
        touch: Option<&crate::sync::integrity::Touch>,
    ) -> Result<(), CommitError> {
        if changes.is_empty() {
            return Ok(());
        }
        // The rows are brought up to date in memory now; if the commit
        // fails they are forgotten (and rewritten whole next time).
        let projecting = Instant::now();
        let projection = match (self.last_projection.as_mut(), touch) {
            (Some(rows), Some(t)) => {
                let delta = projection::update(rows, &self.doc_key, self.state.doc(), t);
                if delta == Some(projection::RowsDelta::All(None)) {
                    self.last_projection = None; // no longer a ticket
                }
                delta
            }
            _ => {
                let rows = projection::project(&self.doc_key, self.state.doc());
                self.last_projection = rows.clone();
                Some(projection::RowsDelta::All(rows.map(Box::new)))
            }
        };
        METRICS.projection_time.observe(projecting.elapsed());
        let n = changes.len();
        let write = DocWrite {
            doc_id: self.doc_key.clone(),
            changes,
            quarantined,
            projection,
        };
        let span = tracing::info_span!("commit", changes = n);
        match self.hub.committer.commit(write).instrument(span).await {
            Ok(()) => {
                self.loose_changes += n;
                // Whoever follows the history (SLA watch) hears of it; no
                // listener, or a slow one, costs nothing here.
                let _ = self.hub.commits.send(self.doc_key.clone());
                Ok(())
            }
            Err(e) => {
                // Whether it reached the disk is unknown (an answer can be
                // lost after COMMIT), and this commit may carry server changes
                // (undo, forwarding, status events) that must exist once, not
                // twice: memory cannot be trusted to equal storage either way.
                // The document is evicted and reloaded from what is stored;
                // the device resends, and its changes are judged again only
                // if they are not there.
                self.last_projection = None;
                self.state.mark_diverged();
                Err(e)
            }
        }
    }

    async fn on_server_edit(
        &mut self,
        by_user: &str,
        role: Role,
        create: bool,
        edit: ServerEditFn,
    ) -> Result<(), EditError> {
        match (create, self.state.is_empty()) {
            (false, true) => return Err(EditError::NotFound),
            (true, false) => return Err(EditError::Exists),
            _ => {}
        }
        let heads_before = self.state.doc().get_heads();
        let mut changes = match self.state.server_edit(edit) {
            Ok(Some(c)) => vec![c],
            Ok(None) => return Ok(()),
            Err(e) => return Err(EditError::Invalid(e)),
        };
        let at = crate::db::now_rfc3339();
        changes.extend(self.state.settle(&heads_before, by_user, role, &at, None));
        if let Err(e) = self.commit(changes, Vec::new(), None).await {
            tracing::warn!(doc = %self.doc_id, error = %e, "a server edit was not stored");
            if self.state.diverged() {
                self.evict(STORAGE_FAILED);
            }
            return Err(EditError::Unavailable);
        }
        // No connection sent this: every reader gets the update.
        self.send_updates(0, true);
        self.offer_to_waiting();
        Ok(())
    }

    /// A past assignee's device has uploaded what it had since the
    /// reassignment: its write-only window on this ticket ends (sharing.rs).
    /// If that cannot be stored, the window stays open (it ends with time).
    async fn close_write_only(&mut self, peer: &PeerHandle) {
        let at = crate::db::now_millis();
        self.assignment.closed.insert(peer.device_id.clone(), at);
        let (doc, device) = (self.doc_id.to_string(), peer.device_id.clone());
        if let Err(e) = self
            .hub
            .db
            .run(move |c| sharing::close_write_only(c, &doc, &device, at))
            .await
        {
            tracing::warn!(doc = %self.doc_id, device = %peer.device_id, error = %e, "could not record the end of a write-only window");
        }
    }

    /// A write-only peer is never sent document content. To collect its
    /// edits, the server first answers like an empty peer (no heads, empty
    /// bloom filter), so the device uploads every change it has; once a message
    /// with changes arrived (stored above), or if the peer has no copy at all
    /// (`done`), it is told the document is unavailable, which ends the
    /// exchange. Two round trips, no loop.
    fn answer_write_only(&self, peer: &PeerHandle, done: bool) {
        if done {
            self.unavailable(peer);
            return;
        }
        let empty = automerge::sync::Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: vec![automerge::sync::Have::default()],
            changes: automerge::sync::ChunkList::empty(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        peer.send(Message::Sync {
            sender_id: self.hub.server_peer_id.clone(),
            target_id: peer.peer_id.clone(),
            document_id: self.doc_id,
            data: empty.encode(),
        });
    }

    fn on_ephemeral(&mut self, from: ConnId, frame: Arc<EphemeralFrame>) {
        // Only peers that may read this document broadcast to it (not a
        // technician taken off the ticket, who only uploads).
        if !self
            .handles
            .get(&from)
            .is_some_and(|h| self.access(h) == DocAccess::Full)
        {
            return;
        }
        for (conn, target) in self.state.reader_ids() {
            if conn == from {
                continue;
            }
            if let Some(h) = self.handles.get(&conn) {
                // Presence is best-effort: a reader that is not keeping up
                // gets none, so relayed copies cannot pile up in its queue.
                if !h.out.push_ephemeral(frame.clone(), target.to_string()) {
                    METRICS.ephemeral_dropped.inc();
                }
            }
        }
    }

    /// Memory differs from storage: close every peer of the document with a
    /// retryable code and leave; the next command loads it from storage.
    fn evict(&mut self, why: &str) {
        METRICS.docs_evicted_diverged.inc();
        tracing::warn!(doc = %self.doc_id, "evicting the document so it is reloaded from storage");
        for peer in self.handles.values().chain(self.waiting.values()) {
            peer.fail(&self.hub.server_peer_id, close_code::TRY_AGAIN_LATER, why);
        }
        self.handles.clear();
        self.waiting.clear();
        self.evicted = true;
    }

    fn drop_peer(&mut self, conn: ConnId) {
        self.state.remove_peer(conn);
        self.handles.remove(&conn);
    }

    /// Writes a snapshot and prunes the rows it covers. Failure is harmless:
    /// the changes stay stored and compaction is retried later.
    async fn compact(&mut self) {
        let doc = self.state.doc();
        let saved = doc.save();
        let heads = doc.get_heads();
        let known = self.state.all_change_hashes();
        let key = self.doc_key.clone();
        match self
            .hub
            .db
            .run(move |c| storage::write_snapshot(c, &key, &saved, &heads, &known))
            .await
        {
            Ok(r) => {
                METRICS.docs_compacted.inc();
                tracing::debug!(doc = %self.doc_id, removed = r.changes_removed, "compacted");
                self.loose_changes = 0;
            }
            Err(e) => {
                tracing::warn!(doc = %self.doc_id, error = %e, "compaction failed; will retry")
            }
        }
    }
}

/// Why a quarantined edit was undone, for `fieldsync_edits_rejected_total`.
fn quarantine_reason(locked: bool, path: &str) -> EditRejection {
    use fieldsync_shared::permissions::{group_of, FieldGroup};
    if locked {
        EditRejection::Locked
    } else if group_of(path) == FieldGroup::ServerRecord {
        EditRejection::ServerRecord
    } else if path == "status" {
        EditRejection::StatusTransition
    } else {
        EditRejection::ForbiddenField
    }
}
