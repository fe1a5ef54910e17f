//! One WebSocket connection's protocol state, without I/O: fed decoded frames,
//! it returns what to do (send, close, hand a sync message to a document).
//! The handshake and every validation rule of the wire protocol live here.

use automerge::sync;
use fieldsync_shared::protocol::{self, Message, PeerId, PeerMetadata, PROTOCOL_V1};
use fieldsync_shared::DocumentId;

use super::chunk_guard::{self, ChunkLimits, Refusal};

/// WebSocket close codes we use (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    /// Storage is failing: reconnect later (the changes stay on the device).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Largest ephemeral (presence, cursor) message: they are relayed to every
/// reader of the document, so they are kept small.
pub const MAX_EPHEMERAL_BYTES: usize = 64 * 1024;
/// Longest ephemeral session id (automerge-repo 2.x sends 10–11 base-36
/// characters, samod a 36-character UUID). Relayed ids are longer: the
/// server appends `.` and a 16-hex device tag (`presence`).
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Distinct ephemeral session ids one connection may use.
pub const MAX_SESSIONS_PER_CONNECTION: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub text: String,
}

#[derive(Debug)]
pub enum Action {
    Send(Message),
    /// The peer finished the handshake (a second join with the same peer id
    /// replaces the older connection).
    Joined(PeerId),
    /// Hand a sync message to the document. `request`: the peer lacks the doc.
    Sync {
        doc: DocumentId,
        msg: sync::Message,
        request: bool,
        /// What the message costs (`chunk_guard`), charged to the user's
        /// rate budget.
        cost: chunk_guard::Cost,
    },
    /// Relay to the document's other peers.
    Ephemeral(Message),
    Close(CloseReason),
}

enum State {
    AwaitingJoin,
    Joined(PeerId),
    Closed,
}

pub struct Session {
    server_peer_id: PeerId,
    storage_id: Option<String>,
    limits: ChunkLimits,
    state: State,
    /// Last `count` relayed per ephemeral session id.
    ephemeral_counts: std::collections::HashMap<String, u64>,
}

impl Session {
    pub fn new(server_peer_id: PeerId, storage_id: Option<String>, limits: ChunkLimits) -> Self {
        Self {
            server_peer_id,
            storage_id,
            limits,
            state: State::AwaitingJoin,
            ephemeral_counts: Default::default(),
        }
    }

    pub fn peer_id(&self) -> Option<&str> {
        match &self.state {
            State::Joined(p) => Some(p),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// A binary frame arrived.
    pub fn on_frame(&mut self, frame: &[u8]) -> Vec<Action> {
        if self.is_closed() {
            return Vec::new();
        }
        match protocol::decode(frame) {
            Ok(msg) => self.on_message(msg),
            Err(e) => self.fail(
                close_code::PROTOCOL_ERROR,
                &format!("undecodable message: {e}"),
            ),
        }
    }

    /// Text frames are not part of the protocol.
    pub fn on_text_frame(&mut self) -> Vec<Action> {
        self.fail(
            close_code::UNSUPPORTED_DATA,
            "text frames are not supported; send CBOR in binary frames",
        )
    }

    /// Ends the session with a protocol `error` message, then a close.
    pub fn fail(&mut self, code: u16, text: &str) -> Vec<Action> {
        let target_id = self.peer_id().map(str::to_string);
        self.state = State::Closed;
        vec![
            Action::Send(Message::Error {
                sender_id: self.server_peer_id.clone(),
                target_id,
                message: text.to_string(),
            }),
            Action::Close(CloseReason {
                code,
                text: truncate(text),
            }),
        ]
    }

    fn on_message(&mut self, msg: Message) -> Vec<Action> {
        if let Message::Join {
            sender_id,
            supported_protocol_versions,
            ..
        } = msg
        {
            return self.on_join(sender_id, supported_protocol_versions);
        }
        let peer = match &self.state {
            State::Joined(p) => p.clone(),
            _ => {
                return self.fail(
                    close_code::PROTOCOL_ERROR,
                    &format!("expected a join message first, got `{}`", msg.type_name()),
                )
            }
        };
        if let Message::Ephemeral { sender_id, .. } = &msg {
            if *sender_id != peer {
                // Stock clients pass a relayed ephemeral on to their other
                // peers with its original sender: this is our own relay
                // coming back. It was delivered already; drop it, never
                // relay it (a sender is only ever the connection's own peer).
                return Vec::new();
            }
        }
        if msg.sender_id() != peer {
            return self.fail(
                close_code::PROTOCOL_ERROR,
                &format!(
                    "senderId `{}` does not match the joined peer `{peer}`",
                    msg.sender_id()
                ),
            );
        }
        match msg {
            Message::Sync {
                document_id, data, ..
            } => self.on_sync(document_id, &data, false),
            Message::Request {
                document_id, data, ..
            } => self.on_sync(document_id, &data, true),
            Message::Ephemeral { data, .. } if data.len() > MAX_EPHEMERAL_BYTES => self.fail(
                close_code::TOO_BIG,
                &format!("ephemeral messages are limited to {MAX_EPHEMERAL_BYTES} bytes"),
            ),
            m @ Message::Ephemeral { .. } => self.on_ephemeral(m),
            // The server does not gossip remote heads; clients that enable it
            // send these and must not be cut off for it.
            Message::RemoteSubscriptionChange { .. } | Message::RemoteHeadsChanged { .. } => {
                Vec::new()
            }
            // A client telling us it lacks a doc we offered: nothing to do.
            Message::DocUnavailable { .. } => Vec::new(),
            Message::Error { message, .. } => {
                tracing::info!(peer = %peer, %message, "peer reported an error");
                self.state = State::Closed;
                vec![Action::Close(CloseReason {
                    code: close_code::NORMAL,
                    text: "peer reported an error".into(),
                })]
            }
            Message::Peer { .. } => self.fail(
                close_code::PROTOCOL_ERROR,
                "`peer` is sent by servers, not clients",
            ),
            Message::Join { .. } => unreachable!("handled above"),
        }
    }

    /// Session ids must be short tokens, a connection uses a few, and each
    /// (session, count) is relayed once: a repeat or an older count is a
    /// duplicate and is dropped.
    fn on_ephemeral(&mut self, msg: Message) -> Vec<Action> {
        let Message::Ephemeral {
            session_id, count, ..
        } = &msg
        else {
            return Vec::new();
        };
        let valid = (1..=MAX_SESSION_ID_LEN).contains(&session_id.len())
            && session_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return self.fail(
                close_code::PROTOCOL_ERROR,
                &format!("sessionId must be 1 to {MAX_SESSION_ID_LEN} letters, digits, '-' or '_'"),
            );
        }
        let known = self.ephemeral_counts.len();
        match self.ephemeral_counts.get(session_id).copied() {
            Some(last) if *count <= last => Vec::new(),
            None if known >= MAX_SESSIONS_PER_CONNECTION => self.fail(
                close_code::POLICY,
                &format!(
                    "at most {MAX_SESSIONS_PER_CONNECTION} ephemeral session ids per connection"
                ),
            ),
            _ => {
                self.ephemeral_counts.insert(session_id.clone(), *count);
                vec![Action::Ephemeral(msg)]
            }
        }
    }

    fn on_join(&mut self, sender_id: PeerId, versions: Vec<String>) -> Vec<Action> {
        if sender_id.is_empty() || sender_id.len() > 256 {
            return self.fail(
                close_code::PROTOCOL_ERROR,
                "senderId must be 1 to 256 characters",
            );
        }
        if let State::Joined(existing) = &self.state {
            if *existing != sender_id {
                return self.fail(
                    close_code::PROTOCOL_ERROR,
                    "a connection cannot change its peer id",
                );
            }
        }
        if !versions.iter().any(|v| v == PROTOCOL_V1) {
            // Same wording as the reference server.
            return self.fail(close_code::PROTOCOL_ERROR, "unsupported protocol version");
        }
        // Identity seam: when accounts exist (issue 4), the connection's verified
        // identity is bound to this peer here, before any document data flows.
        self.state = State::Joined(sender_id.clone());
        vec![
            Action::Joined(sender_id.clone()),
            Action::Send(Message::Peer {
                sender_id: self.server_peer_id.clone(),
                target_id: sender_id,
                peer_metadata: Some(PeerMetadata {
                    storage_id: self.storage_id.clone(),
                    is_ephemeral: false,
                }),
                selected_protocol_version: PROTOCOL_V1.into(),
            }),
        ]
    }

    fn on_sync(&mut self, doc: DocumentId, data: &[u8], request: bool) -> Vec<Action> {
        match chunk_guard::admit(doc, data, self.limits) {
            Ok((msg, cost)) => vec![Action::Sync {
                doc,
                msg,
                request,
                cost,
            }],
            Err(Refusal::Malformed(e)) => self.fail(close_code::PROTOCOL_ERROR, &e),
            Err(Refusal::TooBig(e)) => self.fail(close_code::TOO_BIG, &e),
        }
    }
}

/// Close reasons must fit in a control frame (123 bytes).
fn truncate(text: &str) -> String {
    if text.len() <= 120 {
        return text.to_string();
    }
    let mut end = 120;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::sync::SyncDoc;
    use automerge::Automerge;

    const LIMITS: ChunkLimits = ChunkLimits {
        max_inflated_bytes: 1 << 20,
        max_rows: 10_000,
    };

    fn join(peer: &str) -> Vec<u8> {
        protocol::encode(&Message::Join {
            sender_id: peer.into(),
            peer_metadata: None,
            supported_protocol_versions: vec!["1".into()],
        })
    }

    fn sync_frame(peer: &str, doc: DocumentId, data: Vec<u8>) -> Vec<u8> {
        protocol::encode(&Message::Sync {
            sender_id: peer.into(),
            target_id: "srv".into(),
            document_id: doc,
            data,
        })
    }

    fn closes_with_error(actions: &[Action], code: u16, needle: &str) {
        assert!(
            matches!(&actions[0], Action::Send(Message::Error { message, .. }) if message.contains(needle)),
            "{actions:?}"
        );
        assert!(
            matches!(&actions[1], Action::Close(r) if r.code == code),
            "{actions:?}"
        );
    }

    #[test]
    fn handshake_answers_with_peer_and_protocol_version() {
        let mut s = Session::new("srv".into(), Some("store-1".into()), LIMITS);
        let acts = s.on_frame(&join("dev-1"));
        assert!(matches!(&acts[0], Action::Joined(p) if p == "dev-1"));
        match &acts[1] {
            Action::Send(Message::Peer {
                target_id,
                selected_protocol_version,
                peer_metadata,
                ..
            }) => {
                assert_eq!(target_id, "dev-1");
                assert_eq!(selected_protocol_version, "1");
                assert_eq!(
                    peer_metadata.as_ref().unwrap().storage_id.as_deref(),
                    Some("store-1")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.peer_id(), Some("dev-1"));
    }

    #[test]
    fn rejects_unsupported_versions_and_messages_before_join() {
        let mut s = Session::new("srv".into(), None, LIMITS);
        let frame = protocol::encode(&Message::Join {
            sender_id: "d".into(),
            peer_metadata: None,
            supported_protocol_versions: vec!["2".into()],
        });
        closes_with_error(
            &s.on_frame(&frame),
            close_code::PROTOCOL_ERROR,
            "unsupported protocol version",
        );

        let mut s = Session::new("srv".into(), None, LIMITS);
        let doc = DocumentId::random();
        closes_with_error(
            &s.on_frame(&sync_frame("d", doc, vec![1])),
            close_code::PROTOCOL_ERROR,
            "expected a join",
        );
        assert!(
            s.on_frame(&join("d")).is_empty(),
            "a closed session ignores further frames"
        );
    }

    #[test]
    fn routes_sync_and_request_and_rejects_corrupt_sync_data() {
        let mut s = Session::new("srv".into(), None, LIMITS);
        s.on_frame(&join("d"));
        let doc = DocumentId::random();
        let msg = Automerge::new()
            .generate_sync_message(&mut sync::State::new())
            .unwrap();
        let acts = s.on_frame(&sync_frame("d", doc, msg.encode()));
        assert!(matches!(&acts[0], Action::Sync { doc: d, request: false, .. } if *d == doc));

        closes_with_error(
            &s.on_frame(&sync_frame("d", doc, vec![0x42, 1, 2, 3])),
            close_code::PROTOCOL_ERROR,
            "invalid Automerge sync message",
        );
    }

    #[test]
    fn rejects_garbage_spoofed_senders_text_and_server_messages() {
        let mut s = Session::new("srv".into(), None, LIMITS);
        closes_with_error(
            &s.on_frame(b"\x00\x01garbage"),
            close_code::PROTOCOL_ERROR,
            "undecodable",
        );

        let mut s = Session::new("srv".into(), None, LIMITS);
        s.on_frame(&join("d"));
        let doc = DocumentId::random();
        closes_with_error(
            &s.on_frame(&sync_frame("someone-else", doc, vec![1])),
            close_code::PROTOCOL_ERROR,
            "does not match",
        );

        let mut s = Session::new("srv".into(), None, LIMITS);
        closes_with_error(
            &s.on_text_frame(),
            close_code::UNSUPPORTED_DATA,
            "text frames",
        );

        let mut s = Session::new("srv".into(), None, LIMITS);
        s.on_frame(&join("d"));
        let peer = protocol::encode(&Message::Peer {
            sender_id: "d".into(),
            target_id: "srv".into(),
            peer_metadata: None,
            selected_protocol_version: "1".into(),
        });
        closes_with_error(
            &s.on_frame(&peer),
            close_code::PROTOCOL_ERROR,
            "sent by servers",
        );
    }

    fn ephemeral(sender: &str, session: &str, count: u64) -> Vec<u8> {
        protocol::encode(&Message::Ephemeral {
            sender_id: sender.into(),
            target_id: "srv".into(),
            count,
            session_id: session.into(),
            document_id: DocumentId::random(),
            data: vec![1, 2],
            verified_sender: None,
        })
    }

    #[test]
    fn ephemeral_echoes_and_duplicates_are_dropped_and_session_ids_bounded() {
        let mut s = Session::new("srv".into(), None, LIMITS);
        s.on_frame(&join("d"));
        assert!(matches!(
            s.on_frame(&ephemeral("d", "s1", 1))[..],
            [Action::Ephemeral(_)]
        ));
        // A stock client relaying another peer's message back: dropped, no close.
        assert!(s.on_frame(&ephemeral("someone-else", "s9", 1)).is_empty());
        // The same (session, count) again, or an older count: dropped.
        assert!(s.on_frame(&ephemeral("d", "s1", 1)).is_empty());
        assert!(s.on_frame(&ephemeral("d", "s1", 0)).is_empty());
        assert!(matches!(
            s.on_frame(&ephemeral("d", "s1", 2))[..],
            [Action::Ephemeral(_)]
        ));
        assert!(!s.is_closed());
        for i in 2..=MAX_SESSIONS_PER_CONNECTION {
            assert!(!s.on_frame(&ephemeral("d", &format!("s{i}"), 1)).is_empty());
        }
        closes_with_error(
            &s.on_frame(&ephemeral("d", "one-too-many", 1)),
            close_code::POLICY,
            "session ids",
        );
        let mut s = Session::new("srv".into(), None, LIMITS);
        s.on_frame(&join("d"));
        closes_with_error(
            &s.on_frame(&ephemeral("d", &"x".repeat(65), 1)),
            close_code::PROTOCOL_ERROR,
            "sessionId",
        );
    }

    #[test]
    fn tolerates_remote_heads_messages_and_repeated_join() {
        let mut s = Session::new("srv".into(), None, LIMITS);
        s.on_frame(&join("d"));
        let sub = protocol::encode(&Message::RemoteSubscriptionChange {
            sender_id: "d".into(),
            target_id: "srv".into(),
            add: vec!["x".into()],
            remove: vec![],
        });
        assert!(s.on_frame(&sub).is_empty());
        assert!(matches!(s.on_frame(&join("d"))[0], Action::Joined(_)));
        closes_with_error(
            &s.on_frame(&join("other")),
            close_code::PROTOCOL_ERROR,
            "cannot change its peer id",
        );
    }
}
