//! A connection's send queue, bounded in bytes as well as in messages.
//!
//! Doc actors never wait on a connection: they queue and move on. What one
//! connection can hold is therefore the server's memory at risk, so the
//! queue is bounded twice: a sync message that does not fit closes the
//! connection (it reconnects and resyncs: nothing is lost), an ephemeral one
//! that does not fit in the much smaller ephemeral share is dropped (presence
//! is best-effort), so a reader that falls behind loses presence first and
//! never sync messages. A relayed ephemeral is one shared buffer
//! (`EphemeralFrame`) however many queues hold it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fieldsync_shared::protocol::{self, EphemeralFrame, Message, PeerId};
use tokio::sync::mpsc;

/// Bytes of relayed ephemerals a connection may have queued: beyond it (or
/// beyond `EPHEMERAL_BACKLOG` messages of any kind) it is sent no more.
pub const EPHEMERAL_QUEUE_BYTES: usize = 256 * 1024;
/// Messages queued for a reader beyond which it is sent no ephemeral ones.
pub const EPHEMERAL_BACKLOG: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    pub max_bytes: usize,
    pub max_messages: usize,
}

pub enum Outgoing {
    Message(Message),
    Ephemeral {
        frame: Arc<EphemeralFrame>,
        target_id: PeerId,
    },
}

impl Outgoing {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Outgoing::Message(m) => protocol::encode(m),
            Outgoing::Ephemeral { frame, target_id } => frame.for_target(target_id),
        }
    }

    /// Bytes this entry keeps alive while queued (close enough: the CBOR
    /// envelope of a message is small next to its data).
    fn size(&self) -> usize {
        match self {
            Outgoing::Message(m) => message_size(m),
            Outgoing::Ephemeral { frame, target_id } => frame.len() + target_id.len(),
        }
    }
}

fn message_size(m: &Message) -> usize {
    let data = match m {
        Message::Sync { data, .. }
        | Message::Request { data, .. }
        | Message::Ephemeral { data, .. } => data.len(),
        Message::Error { message, .. } => message.len(),
        _ => 0,
    };
    data + 128
}

#[derive(Default)]
struct Queued {
    bytes: AtomicUsize,
    messages: AtomicUsize,
}

/// The sending half, held by doc actors (through `PeerHandle`).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<(Outgoing, usize)>,
    queued: Arc<Queued>,
    limits: OutboxLimits,
}

/// The receiving half, read by the connection's task.
pub struct OutboxReader {
    rx: mpsc::UnboundedReceiver<(Outgoing, usize)>,
    queued: Arc<Queued>,
}

/// Why a message was not queued.
#[derive(Debug, PartialEq)]
pub enum Full {
    /// The connection has fallen too far behind.
    Behind,
    /// It is gone (closed while the message was on its way).
    Closed,
}

pub fn outbox(limits: OutboxLimits) -> (Outbox, OutboxReader) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(Queued::default());
    (
        Outbox {
            tx,
            queued: queued.clone(),
            limits,
        },
        OutboxReader { rx, queued },
    )
}

impl Outbox {
    /// Queues a protocol message. Refused when the queue is over either
    /// bound; one message of any size is accepted into an empty queue (the
    /// first sync of a large ticket must get through).
    pub fn push(&self, msg: Message) -> Result<(), Full> {
        let item = Outgoing::Message(msg);
        let size = item.size();
        let (bytes, messages) = self.load();
        if messages >= self.limits.max_messages
            || (messages > 0 && bytes + size > self.limits.max_bytes)
        {
            return Err(Full::Behind);
        }
        self.enqueue(item, size)
    }

    /// Queues a message whatever the bounds (the error sent just before a
    /// close).
    pub fn force(&self, msg: Message) {
        let item = Outgoing::Message(msg);
        let size = item.size();
        let _ = self.enqueue(item, size);
    }

    /// Queues a relayed ephemeral unless the reader is behind; false when it
    /// was dropped.
    pub fn push_ephemeral(&self, frame: Arc<EphemeralFrame>, target_id: PeerId) -> bool {
        let item = Outgoing::Ephemeral { frame, target_id };
        let size = item.size();
        let (bytes, messages) = self.load();
        if messages >= EPHEMERAL_BACKLOG.min(self.limits.max_messages)
            || bytes + size > EPHEMERAL_QUEUE_BYTES.min(self.limits.max_bytes)
        {
            return false;
        }
        self.enqueue(item, size).is_ok()
    }

    /// Bytes and messages queued now.
    pub fn load(&self) -> (usize, usize) {
        (
            self.queued.bytes.load(Ordering::Relaxed),
            self.queued.messages.load(Ordering::Relaxed),
        )
    }

    fn enqueue(&self, item: Outgoing, size: usize) -> Result<(), Full> {
        self.queued.bytes.fetch_add(size, Ordering::Relaxed);
        self.queued.messages.fetch_add(1, Ordering::Relaxed);
        self.tx.send((item, size)).map_err(|_| {
            self.queued.bytes.fetch_sub(size, Ordering::Relaxed);
            self.queued.messages.fetch_sub(1, Ordering::Relaxed);
            Full::Closed
        })
    }
}

impl OutboxReader {
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let got = self.rx.recv().await;
        Some(self.taken(got?))
    }

    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let got = self.rx.try_recv().ok();
        Some(self.taken(got?))
    }

    fn taken(&self, (item, size): (Outgoing, usize)) -> Outgoing {
        self.queued.bytes.fetch_sub(size, Ordering::Relaxed);
        self.queued.messages.fetch_sub(1, Ordering::Relaxed);
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_shared::DocumentId;

    fn sync(bytes: usize) -> Message {
        Message::Sync {
            sender_id: "srv".into(),
            target_id: "p".into(),
            document_id: DocumentId::random(),
            data: vec![0; bytes],
        }
    }

    fn frame(bytes: usize) -> Arc<EphemeralFrame> {
        Arc::new(
            EphemeralFrame::new(&Message::Ephemeral {
                sender_id: "a".into(),
                target_id: String::new(),
                count: 1,
                session_id: "s".into(),
                document_id: DocumentId::random(),
                data: vec![1; bytes],
                verified_sender: None,
            })
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn bounded_in_bytes_and_ephemerals_dropped_first() {
        let (out, mut reader) = outbox(OutboxLimits {
            max_bytes: 4 * 1024 * 1024,
            max_messages: 1000,
        });
        // One message larger than the bound fits into an empty queue...
        out.push(sync(5 * 1024 * 1024)).unwrap();
        // ...but nothing more fits behind it; ephemerals are dropped.
        assert_eq!(out.push(sync(10)), Err(Full::Behind));
        assert!(!out.push_ephemeral(frame(100), "p".into()));
        reader.recv().await.unwrap();
        assert_eq!(out.load(), (0, 0));

        // Ephemerals stop at their 256 KiB share while sync messages still fit.
        let f = frame(60 * 1024);
        let mut relayed = 0;
        while out.push_ephemeral(f.clone(), "p".into()) {
            relayed += 1;
        }
        assert_eq!(relayed, EPHEMERAL_QUEUE_BYTES / (f.len() + 1));
        assert!(out.load().0 <= EPHEMERAL_QUEUE_BYTES);
        out.push(sync(2 * 1024 * 1024)).unwrap();
        assert_eq!(out.push(sync(2 * 1024 * 1024)), Err(Full::Behind));
        // Every queued copy shares one buffer.
        assert_eq!(Arc::strong_count(&f), relayed + 1);
        while reader.try_recv().is_some() {}
        assert_eq!(out.load(), (0, 0));
        assert_eq!(Arc::strong_count(&f), 1);
    }

    #[tokio::test]
    async fn bounded_in_messages() {
        let (out, _reader) = outbox(OutboxLimits {
            max_bytes: usize::MAX,
            max_messages: 3,
        });
        for _ in 0..3 {
            out.push(sync(1)).unwrap();
        }
        assert_eq!(out.push(sync(1)), Err(Full::Behind));
        // A dropped reader refuses too, saying so.
        let (out, reader) = outbox(OutboxLimits {
            max_bytes: 100,
            max_messages: 3,
        });
        drop(reader);
        assert_eq!(out.push(sync(1)), Err(Full::Closed));
        assert_eq!(out.load(), (0, 0));
    }
}
