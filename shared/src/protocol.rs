//! The automerge-repo network protocol (as spoken by
//! `@automerge/automerge-repo-network-websocket` 2.x): one CBOR map per binary
//! WebSocket frame. Field names and quirks were read from that package's source:
//! the JS side encodes with cbor-x (`useRecords:false`, byte strings as plain CBOR
//! bytes), sends `count`/`timestamp` as floats, `storageId` as CBOR `undefined` and
//! `add`/`remove` as null. The decoder accepts all of that; the encoder writes the
//! plain forms the JS decoder reads.

use std::collections::BTreeMap;
use std::io::Cursor;

use ciborium::Value;

use crate::doc_id::{DocumentId, DocumentIdError};

pub const PROTOCOL_V1: &str = "1";

/// A peer's id as it appears in `senderId`/`targetId`.
pub type PeerId = String;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerMetadata {
    pub storage_id: Option<String>,
    pub is_ephemeral: bool,
}

/// Who sent a relayed ephemeral message, as fieldsync verified it from the
/// sender's sign-in. The server adds it (key `verifiedSender`) to every
/// ephemeral it relays; stock clients skip unknown keys, and whatever a
/// client puts there itself is never relayed.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedSender {
    pub user_id: String,
    pub role: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RemoteHeads {
    pub heads: Vec<String>,
    pub timestamp: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Join {
        sender_id: PeerId,
        peer_metadata: Option<PeerMetadata>,
        supported_protocol_versions: Vec<String>,
    },
    Peer {
        sender_id: PeerId,
        target_id: PeerId,
        peer_metadata: Option<PeerMetadata>,
        selected_protocol_version: String,
    },
    /// The sender closes the connection after sending this.
    Error {
        sender_id: PeerId,
        target_id: Option<PeerId>,
        message: String,
    },
    Sync {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    /// "I do not have this document, send it to me" (a sync message from an empty doc).
    Request {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    DocUnavailable {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
    },
    Ephemeral {
        sender_id: PeerId,
        target_id: PeerId,
        count: u64,
        session_id: String,
        document_id: DocumentId,
        data: Vec<u8>,
        /// Set by the server on what it relays (None from clients).
        verified_sender: Option<VerifiedSender>,
    },
    RemoteSubscriptionChange {
        sender_id: PeerId,
        target_id: PeerId,
        add: Vec<String>,
        remove: Vec<String>,
    },
    RemoteHeadsChanged {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        new_heads: BTreeMap<String, RemoteHeads>,
    },
}

impl Message {
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Error { .. } => "error",
            Message::Sync { .. } => "sync",
            Message::Request { .. } => "request",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
        }
    }

    pub fn sender_id(&self) -> &str {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Error { sender_id, .. }
            | Message::Sync { sender_id, .. }
            | Message::Request { sender_id, .. }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. }
            | Message::RemoteSubscriptionChange { sender_id, .. }
            | Message::RemoteHeadsChanged { sender_id, .. } => sender_id,
        }
    }

    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            Message::Sync { document_id, .. }
            | Message::Request { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. } => Some(*document_id),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("frame is not valid CBOR: {0}")]
    NotCbor(String),
    #[error("frame has {0} bytes after the CBOR message")]
    TrailingBytes(usize),
    #[error("message is not a CBOR map")]
    NotAMap,
    #[error("message has no `type` field")]
    MissingType,
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("`{msg_type}` message is missing field `{field}`")]
    MissingField {
        msg_type: String,
        field: &'static str,
    },
    #[error("`{msg_type}` message has field `{field}` of the wrong kind (expected {expected})")]
    WrongFieldType {
        msg_type: String,
        field: &'static str,
        expected: &'static str,
    },
    #[error("`{msg_type}` message has an invalid documentId: {source}")]
    BadDocumentId {
        msg_type: String,
        source: DocumentIdError,
    },
    #[error("`{msg_type}` message has zero-length data")]
    EmptyData { msg_type: String },
}

/// Encodes one message as the CBOR map the JS client expects.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut m = MapBuilder::new(msg.type_name());
    match msg {
        Message::Join {
            sender_id,
            peer_metadata,
            supported_protocol_versions,
        } => {
            m.text("senderId", sender_id);
            if let Some(meta) = peer_metadata {
                m.put("peerMetadata", metadata_value(meta));
            }
            m.put(
                "supportedProtocolVersions",
                Value::Array(
                    supported_protocol_versions
                        .iter()
                        .map(|v| Value::Text(v.clone()))
                        .collect(),
                ),
            );
        }
        Message::Peer {
            sender_id,
            target_id,
            peer_metadata,
            selected_protocol_version,
        } => {
            m.text("senderId", sender_id);
            m.put(
                "peerMetadata",
                metadata_value(&peer_metadata.clone().unwrap_or_default()),
            );
            m.text("selectedProtocolVersion", selected_protocol_version);
            m.text("targetId", target_id);
        }
        Message::Error {
            sender_id,
            target_id,
            message,
        } => {
            m.text("senderId", sender_id);
            m.text("message", message);
            if let Some(t) = target_id {
                m.text("targetId", t);
            }
        }
        Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        }
        | Message::Request {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            m.text("senderId", sender_id);
            m.text("targetId", target_id);
            m.text("documentId", &document_id.to_string());
            m.put("data", Value::Bytes(data.clone()));
        }
        Message::DocUnavailable {
            sender_id,
            target_id,
            document_id,
        } => {
            m.text("senderId", sender_id);
            m.text("targetId", target_id);
            m.text("documentId", &document_id.to_string());
        }
        Message::Ephemeral {
            sender_id,
            target_id,
            ..
        } => {
            m.text("senderId", sender_id);
            m.text("targetId", target_id);
            m.0.extend(ephemeral_tail_entries(msg));
        }
        Message::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            m.text("senderId", sender_id);
            m.text("targetId", target_id);
            m.put(
                "add",
                Value::Array(add.iter().cloned().map(Value::Text).collect()),
            );
            m.put(
                "remove",
                Value::Array(remove.iter().cloned().map(Value::Text).collect()),
            );
        }
        Message::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            m.text("senderId", sender_id);
            m.text("targetId", target_id);
            m.text("documentId", &document_id.to_string());
            let heads = new_heads
                .iter()
                .map(|(storage, h)| {
                    (
                        Value::Text(storage.clone()),
                        Value::Map(vec![
                            (
                                Value::Text("heads".into()),
                                Value::Array(h.heads.iter().cloned().map(Value::Text).collect()),
                            ),
                            (Value::Text("timestamp".into()), Value::Float(h.timestamp)),
                        ]),
                    )
                })
                .collect();
            m.put("newHeads", Value::Map(heads));
        }
    }
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    ciborium::into_writer(&Value::Map(m.0), &mut out).expect("CBOR encoding into a Vec");
    out
}

/// The entries of an ephemeral message after `type`, `senderId` and
/// `targetId`: the part every recipient of a relayed message shares.
fn ephemeral_tail_entries(msg: &Message) -> Vec<(Value, Value)> {
    let Message::Ephemeral {
        count,
        session_id,
        document_id,
        data,
        verified_sender,
        ..
    } = msg
    else {
        return Vec::new();
    };
    let mut m = MapBuilder(Vec::new());
    m.put("count", Value::Integer((*count).into()));
    m.text("sessionId", session_id);
    m.text("documentId", &document_id.to_string());
    if let Some(v) = verified_sender {
        m.put(
            "verifiedSender",
            Value::Map(vec![
                (Value::Text("userId".into()), Value::Text(v.user_id.clone())),
                (Value::Text("role".into()), Value::Text(v.role.clone())),
                (Value::Text("name".into()), Value::Text(v.name.clone())),
            ]),
        );
    }
    m.put("data", Value::Bytes(data.clone()));
    m.0
}

/// An ephemeral message encoded once for all the peers it is relayed to:
/// only `targetId` differs per recipient, so each copy in a send queue is
/// this shared buffer plus a few bytes of head (`for_target` joins them when
/// the frame is written). Bytes equal `encode` of the same message.
#[derive(Debug)]
pub struct EphemeralFrame {
    sender_id: PeerId,
    entries: usize,
    tail: Vec<u8>,
}

impl EphemeralFrame {
    /// None unless `msg` is an ephemeral message (its `targetId` is ignored).
    pub fn new(msg: &Message) -> Option<Self> {
        let Message::Ephemeral { sender_id, .. } = msg else {
            return None;
        };
        let entries = ephemeral_tail_entries(msg);
        let mut tail = Vec::new();
        for (k, v) in &entries {
            ciborium::into_writer(k, &mut tail).expect("CBOR encoding into a Vec");
            ciborium::into_writer(v, &mut tail).expect("CBOR encoding into a Vec");
        }
        Some(Self {
            sender_id: sender_id.clone(),
            entries: entries.len() + 3,
            tail,
        })
    }

    /// Bytes held for one queued copy (the shared part counted in full).
    pub fn len(&self) -> usize {
        self.tail.len() + self.sender_id.len() + 64
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn for_target(&self, target_id: &str) -> Vec<u8> {
        let head = [
            ("type", "ephemeral"),
            ("senderId", self.sender_id.as_str()),
            ("targetId", target_id),
        ];
        let mut out = Vec::with_capacity(self.tail.len() + 32 + target_id.len());
        // A map header: major type 5 with the entry count (always < 24 here).
        debug_assert!(self.entries < 24);
        out.push(0xa0 | self.entries as u8);
        for (k, v) in head {
            ciborium::into_writer(&Value::Text(k.into()), &mut out).expect("CBOR");
            ciborium::into_writer(&Value::Text(v.into()), &mut out).expect("CBOR");
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

/// Decodes one frame. Every failure says what was wrong, for the `error` reply.
pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    crate::cbor_shape::check(frame).map_err(DecodeError::NotCbor)?;
    let mut cursor = Cursor::new(frame);
    let value: Value =
        ciborium::from_reader(&mut cursor).map_err(|e| DecodeError::NotCbor(e.to_string()))?;
    let rest = frame.len() - cursor.position() as usize;
    if rest != 0 {
        return Err(DecodeError::TrailingBytes(rest));
    }
    let Value::Map(entries) = value else {
        return Err(DecodeError::NotAMap);
    };
    let fields = Fields::new(entries)?;
    let t = fields.msg_type.clone();
    let msg = match t.as_str() {
        "join" => Message::Join {
            sender_id: fields.text("senderId")?,
            peer_metadata: fields.metadata("peerMetadata")?,
            supported_protocol_versions: fields.text_list("supportedProtocolVersions")?,
        },
        "peer" => Message::Peer {
            sender_id: fields.text("senderId")?,
            target_id: fields.text("targetId")?,
            peer_metadata: fields.metadata("peerMetadata")?,
            selected_protocol_version: fields.text("selectedProtocolVersion")?,
        },
        "error" => Message::Error {
            sender_id: fields.text("senderId")?,
            target_id: fields.opt_text("targetId")?,
            message: fields.opt_text("message")?.unwrap_or_default(),
        },
        "sync" => Message::Sync {
            sender_id: fields.text("senderId")?,
            target_id: fields.text("targetId")?,
            document_id: fields.document_id()?,
            data: fields.data()?,
        },
        "request" => Message::Request {
            sender_id: fields.text("senderId")?,
            target_id: fields.text("targetId")?,
            document_id: fields.document_id()?,
            data: fields.data()?,
        },
        "doc-unavailable" => Message::DocUnavailable {
            sender_id: fields.text("senderId")?,
            target_id: fields.text("targetId")?,
            document_id: fields.document_id()?,
        },
        "ephemeral" => Message::Ephemeral {
            sender_id: fields.text("senderId")?,
            target_id: fields.text("targetId")?,
            count: fields.count("count")?,
            session_id: fields.text("sessionId")?,
            document_id: fields.document_id()?,
            data: fields.data()?,
            verified_sender: fields.verified_sender(),
        },
        "remote-subscription-change" => Message::RemoteSubscriptionChange {
            sender_id: fields.text("senderId")?,
            target_id: fields.text("targetId")?,
            add: fields.opt_text_list("add")?,
            remove: fields.opt_text_list("remove")?,
        },
        "remote-heads-changed" => Message::RemoteHeadsChanged {
            sender_id: fields.text("senderId")?,
            target_id: fields.text("targetId")?,
            document_id: fields.document_id()?,
            new_heads: fields.new_heads()?,
        },
        other => return Err(DecodeError::UnknownType(other.to_string())),
    };
    Ok(msg)
}

struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    fn new(msg_type: &str) -> Self {
        Self(vec![(
            Value::Text("type".into()),
            Value::Text(msg_type.into()),
        )])
    }
    fn put(&mut self, key: &str, v: Value) {
        self.0.push((Value::Text(key.into()), v));
    }
    fn text(&mut self, key: &str, v: &str) {
        self.put(key, Value::Text(v.into()));
    }
}

fn metadata_value(meta: &PeerMetadata) -> Value {
    let mut entries = Vec::new();
    if let Some(s) = &meta.storage_id {
        entries.push((Value::Text("storageId".into()), Value::Text(s.clone())));
    }
    entries.push((
        Value::Text("isEphemeral".into()),
        Value::Bool(meta.is_ephemeral),
    ));
    Value::Map(entries)
}

struct Fields {
    msg_type: String,
    entries: Vec<(String, Value)>,
}

impl Fields {
    fn new(raw: Vec<(Value, Value)>) -> Result<Self, DecodeError> {
        // Non-text keys cannot be protocol fields; skip them rather than fail.
        let entries: Vec<(String, Value)> = raw
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::Text(k) => Some((k, v)),
                _ => None,
            })
            .collect();
        let msg_type = match entries.iter().find(|(k, _)| k == "type") {
            Some((_, Value::Text(t))) => t.clone(),
            _ => return Err(DecodeError::MissingType),
        };
        Ok(Self { msg_type, entries })
    }

    /// The value of a field; CBOR null and undefined count as absent. Tags are
    /// looked through: older automerge-repo (1.x) sends byte strings as cbor-x
    /// typed arrays (tag 64).
    fn get(&self, field: &str) -> Option<&Value> {
        let mut v = self
            .entries
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)?;
        while let Value::Tag(_, inner) = v {
            v = inner;
        }
        (!v.is_null()).then_some(v)
    }

    fn missing(&self, field: &'static str) -> DecodeError {
        DecodeError::MissingField {
            msg_type: self.msg_type.clone(),
            field,
        }
    }

    fn wrong(&self, field: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::WrongFieldType {
            msg_type: self.msg_type.clone(),
            field,
            expected,
        }
    }

    fn opt_text(&self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Text(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(field, "text")),
        }
    }

    fn text(&self, field: &'static str) -> Result<String, DecodeError> {
        self.opt_text(field)?.ok_or_else(|| self.missing(field))
    }

    fn opt_text_list(&self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Text(s) => Ok(s.clone()),
                    _ => Err(self.wrong(field, "array of text")),
                })
                .collect(),
            Some(_) => Err(self.wrong(field, "array of text")),
        }
    }

    fn text_list(&self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        if self.get(field).is_none() {
            return Err(self.missing(field));
        }
        self.opt_text_list(field)
    }

    fn document_id(&self) -> Result<DocumentId, DecodeError> {
        let text = self.text("documentId")?;
        text.parse().map_err(|source| DecodeError::BadDocumentId {
            msg_type: self.msg_type.clone(),
            source,
        })
    }

    fn data(&self) -> Result<Vec<u8>, DecodeError> {
        match self.get("data") {
            None => Err(self.missing("data")),
            Some(Value::Bytes(b)) if b.is_empty() => Err(DecodeError::EmptyData {
                msg_type: self.msg_type.clone(),
            }),
            Some(Value::Bytes(b)) => Ok(b.clone()),
            Some(_) => Err(self.wrong("data", "byte string")),
        }
    }

    /// Counters arrive as integers or (from JS) as float64.
    fn count(&self, field: &'static str) -> Result<u64, DecodeError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::Integer(i)) => {
                u64::try_from(*i).map_err(|_| self.wrong(field, "non-negative number"))
            }
            Some(Value::Float(f)) if *f >= 0.0 && f.fract() == 0.0 && *f <= u64::MAX as f64 => {
                Ok(*f as u64)
            }
            Some(_) => Err(self.wrong(field, "non-negative number")),
        }
    }

    /// Lenient: a malformed value reads as absent (the server ignores what
    /// clients send here anyway).
    fn verified_sender(&self) -> Option<VerifiedSender> {
        let Some(Value::Map(entries)) = self.get("verifiedSender") else {
            return None;
        };
        let text = |key: &str| {
            entries.iter().find_map(|(k, v)| match (k.as_text(), v) {
                (Some(k), Value::Text(s)) if k == key => Some(s.clone()),
                _ => None,
            })
        };
        Some(VerifiedSender {
            user_id: text("userId")?,
            role: text("role")?,
            name: text("name").unwrap_or_default(),
        })
    }

    fn metadata(&self, field: &'static str) -> Result<Option<PeerMetadata>, DecodeError> {
        let Some(v) = self.get(field) else {
            return Ok(None);
        };
        let Value::Map(entries) = v else {
            return Err(self.wrong(field, "map"));
        };
        let mut meta = PeerMetadata::default();
        for (k, v) in entries {
            match (k.as_text(), v) {
                (Some("storageId"), Value::Text(s)) => meta.storage_id = Some(s.clone()),
                (Some("isEphemeral"), Value::Bool(b)) => meta.is_ephemeral = *b,
                _ => {} // undefined storageId and unknown keys are allowed
            }
        }
        Ok(Some(meta))
    }

    fn new_heads(&self) -> Result<BTreeMap<String, RemoteHeads>, DecodeError> {
        let bad = || self.wrong("newHeads", "map of storageId to {heads, timestamp}");
        let Some(Value::Map(entries)) = self.get("newHeads") else {
            return Err(bad());
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let (Some(storage), Value::Map(inner)) = (k.as_text(), v) else {
                return Err(bad());
            };
            let mut heads = RemoteHeads {
                heads: Vec::new(),
                timestamp: 0.0,
            };
            for (ik, iv) in inner {
                match (ik.as_text(), iv) {
                    (Some("heads"), Value::Array(hs)) => {
                        heads.heads = hs
                            .iter()
                            .filter_map(|h| h.as_text().map(str::to_string))
                            .collect()
                    }
                    (Some("timestamp"), Value::Float(f)) => heads.timestamp = *f,
                    (Some("timestamp"), Value::Integer(i)) => {
                        heads.timestamp = i128::from(*i) as f64
                    }
                    _ => {}
                }
            }
            out.insert(storage.to_string(), heads);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        out
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn every_message_round_trips() {
        let doc = DocumentId::random();
        let msgs = vec![
            Message::Join {
                sender_id: "a".into(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some("s".into()),
                    is_ephemeral: false,
                }),
                supported_protocol_versions: vec!["1".into()],
            },
            Message::Peer {
                sender_id: "srv".into(),
                target_id: "a".into(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: None,
                    is_ephemeral: true,
                }),
                selected_protocol_version: "1".into(),
            },
            Message::Error {
                sender_id: "srv".into(),
                target_id: Some("a".into()),
                message: "nope".into(),
            },
            Message::Sync {
                sender_id: "a".into(),
                target_id: "srv".into(),
                document_id: doc,
                data: vec![1, 2],
            },
            Message::Request {
                sender_id: "a".into(),
                target_id: "srv".into(),
                document_id: doc,
                data: vec![3],
            },
            Message::DocUnavailable {
                sender_id: "srv".into(),
                target_id: "a".into(),
                document_id: doc,
            },
            Message::Ephemeral {
                sender_id: "a".into(),
                target_id: "srv".into(),
                count: 7,
                session_id: "sess".into(),
                document_id: doc,
                data: vec![9],
                verified_sender: None,
            },
            Message::Ephemeral {
                sender_id: "srv-relayed".into(),
                target_id: "b".into(),
                count: 1 << 40,
                session_id: "sess.0123456789abcdef".into(),
                document_id: doc,
                data: vec![7; 300],
                verified_sender: Some(VerifiedSender {
                    user_id: "u-1".into(),
                    role: "technician".into(),
                    name: "Li Wei".into(),
                }),
            },
            Message::RemoteSubscriptionChange {
                sender_id: "a".into(),
                target_id: "srv".into(),
                add: vec!["x".into()],
                remove: vec![],
            },
            Message::RemoteHeadsChanged {
                sender_id: "a".into(),
                target_id: "srv".into(),
                document_id: doc,
                new_heads: BTreeMap::from([(
                    "st".to_string(),
                    RemoteHeads {
                        heads: vec!["h1".into()],
                        timestamp: 12.0,
                    },
                )]),
            },
        ];
        for m in msgs {
            assert_eq!(decode(&encode(&m)).unwrap(), m, "{}", m.type_name());
            // A relay's shared encoding gives the same bytes per recipient.
            if let (Some(frame), Message::Ephemeral { target_id, .. }) =
                (EphemeralFrame::new(&m), &m)
            {
                assert_eq!(frame.for_target(target_id), encode(&m));
            }
        }
    }

    #[test]
    fn accepts_js_quirks() {
        // float64 count, undefined storageId, null add/remove
        let doc = DocumentId::random();
        let eph = cbor(Value::Map(vec![
            (t("type"), t("ephemeral")),
            (t("senderId"), t("js")),
            (t("targetId"), t("srv")),
            (t("count"), Value::Float(3.0)),
            (t("sessionId"), t("s1")),
            (t("documentId"), t(&doc.to_string())),
            (t("data"), Value::Bytes(vec![0xa0])),
        ]));
        assert!(matches!(
            decode(&eph).unwrap(),
            Message::Ephemeral { count: 3, .. }
        ));

        let mut join = cbor(Value::Map(vec![
            (t("type"), t("join")),
            (t("senderId"), t("js")),
            (
                t("peerMetadata"),
                Value::Map(vec![
                    (t("storageId"), Value::Null),
                    (t("isEphemeral"), Value::Bool(true)),
                ]),
            ),
            (t("supportedProtocolVersions"), Value::Array(vec![t("1")])),
        ]));
        // Replace the CBOR null (0xf6) of storageId with undefined (0xf7).
        let pos = join.iter().position(|b| *b == 0xf6).unwrap();
        join[pos] = 0xf7;
        match decode(&join).unwrap() {
            Message::Join {
                peer_metadata: Some(meta),
                ..
            } => {
                assert_eq!(meta.storage_id, None);
                assert!(meta.is_ephemeral);
            }
            other => panic!("{other:?}"),
        }

        let sub = cbor(Value::Map(vec![
            (t("type"), t("remote-subscription-change")),
            (t("senderId"), t("js")),
            (t("targetId"), t("srv")),
            (t("add"), Value::Null),
            (t("remove"), Value::Array(vec![t("st")])),
        ]));
        assert_eq!(
            decode(&sub).unwrap(),
            Message::RemoteSubscriptionChange {
                sender_id: "js".into(),
                target_id: "srv".into(),
                add: vec![],
                remove: vec!["st".into()]
            }
        );
    }

    #[test]
    fn accepts_tagged_byte_strings_from_older_clients() {
        let doc = DocumentId::random();
        let frame = cbor(Value::Map(vec![
            (t("type"), t("sync")),
            (t("senderId"), t("old")),
            (t("targetId"), t("srv")),
            (t("documentId"), t(&doc.to_string())),
            (
                t("data"),
                Value::Tag(64, Box::new(Value::Bytes(vec![1, 2, 3]))),
            ),
        ]));
        assert!(
            matches!(decode(&frame).unwrap(), Message::Sync { data, .. } if data == vec![1, 2, 3])
        );
    }

    #[test]
    fn rejects_bad_frames_with_reasons() {
        assert!(matches!(
            decode(b"\xff\x00garbage"),
            Err(DecodeError::NotCbor(_))
        ));
        assert_eq!(
            decode(&cbor(Value::Integer(5.into()))),
            Err(DecodeError::NotAMap)
        );
        assert_eq!(
            decode(&cbor(Value::Map(vec![]))),
            Err(DecodeError::MissingType)
        );
        assert_eq!(
            decode(&cbor(Value::Map(vec![(t("type"), t("teleport"))]))),
            Err(DecodeError::UnknownType("teleport".into()))
        );
        let mut two = cbor(Value::Map(vec![(t("type"), t("join"))]));
        two.push(0);
        assert_eq!(decode(&two), Err(DecodeError::TrailingBytes(1)));

        let req = |doc: &str, data: Value| {
            cbor(Value::Map(vec![
                (t("type"), t("request")),
                (t("senderId"), t("a")),
                (t("targetId"), t("b")),
                (t("documentId"), t(doc)),
                (t("data"), data),
            ]))
        };
        assert!(matches!(
            decode(&req("not-a-doc-id", Value::Bytes(vec![1]))),
            Err(DecodeError::BadDocumentId { .. })
        ));
        let good = DocumentId::random().to_string();
        assert!(matches!(
            decode(&req(&good, Value::Bytes(vec![]))),
            Err(DecodeError::EmptyData { .. })
        ));
        assert!(matches!(
            decode(&req(&good, t("text instead of bytes"))),
            Err(DecodeError::WrongFieldType { field: "data", .. })
        ));
    }
}
