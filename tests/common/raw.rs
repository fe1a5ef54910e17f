//! A bare WebSocket client that can send anything, for tests of bad input.

use fieldsync_shared::protocol::{self, Message};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

use super::{Server, WAIT};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bare WebSocket client that can send anything.
pub struct Raw {
    pub ws: Socket,
    pub server_peer: String,
}

impl Raw {
    pub async fn connect(server: &Server) -> Self {
        Self::connect_url(&server.sync_url()).await
    }

    pub async fn connect_url(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self {
            ws,
            server_peer: String::new(),
        }
    }

    pub async fn joined(server: &Server, peer: &str) -> Self {
        Self::joined_url(&server.sync_url(), peer).await
    }

    /// Connected to `url` (a user's token and device) and joined as `peer`.
    pub async fn joined_url(url: &str, peer: &str) -> Self {
        let mut raw = Self::connect_url(url).await;
        raw.send(&Message::Join {
            sender_id: peer.into(),
            peer_metadata: None,
            supported_protocol_versions: vec!["1".into()],
        })
        .await;
        match raw.next().await {
            Some(Ok(Message::Peer { sender_id, .. })) => raw.server_peer = sender_id,
            other => panic!("expected peer, got {other:?}"),
        }
        raw
    }

    pub async fn send(&mut self, msg: &Message) {
        self.send_bytes(protocol::encode(msg)).await;
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.ws.send(Ws::Binary(bytes.into())).await.unwrap();
    }

    /// The next protocol message, or Err(close code, reason).
    pub async fn next(&mut self) -> Option<Result<Message, (u16, String)>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // One deadline for the message: pings alone must not keep a
            // test waiting for ever.
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("server answered");
            match frame? {
                Ok(Ws::Binary(b)) => {
                    return Some(Ok(protocol::decode(&b).expect("server frames decode")))
                }
                Ok(Ws::Close(f)) => {
                    return Some(Err(f
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()))))
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Asserts: an `error` message containing `needle`, then a close with `code`.
    pub async fn expect_error_then_close(&mut self, code: u16, needle: &str) {
        match self.next().await {
            Some(Ok(Message::Error { message, .. })) => {
                assert!(message.contains(needle), "error was: {message}")
            }
            other => panic!("expected an error message containing {needle:?}, got {other:?}"),
        }
        match self.next().await {
            Some(Err((c, reason))) => {
                assert_eq!(c, code, "close reason: {reason}");
                assert!(!reason.is_empty(), "close carries a reason");
            }
            other => panic!("expected close {code}, got {other:?}"),
        }
    }

    /// Like `expect_error_then_close`, after skipping ordinary replies.
    pub async fn expect_error_then_close_skipping(&mut self, code: u16, needle: &str) {
        loop {
            match self.next().await {
                Some(Ok(Message::Error { message, .. })) => {
                    assert!(message.contains(needle), "error was: {message}");
                    break;
                }
                Some(Ok(_)) => continue,
                other => panic!("expected an error message containing {needle:?}, got {other:?}"),
            }
        }
        match self.next().await {
            Some(Err((c, reason))) => assert_eq!(c, code, "close reason: {reason}"),
            other => panic!("expected close {code}, got {other:?}"),
        }
    }
}
