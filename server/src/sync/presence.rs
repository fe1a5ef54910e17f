//! What fieldsync relays of an ephemeral (presence) message, and how it is
//! tied to the signed-in sender.
//!
//! Stock clients drop an ephemeral whose (`sessionId`, `count`) they have
//! seen (samod keys on the session id alone, automerge-repo on sender and
//! session), so a session id someone else can send is a way to silence that
//! someone. The server therefore appends a tag fixed per sending *device* to
//! every session id it relays: another device's messages can never carry it.
//! It also adds the verified user (`verifiedSender`), which stock clients
//! ignore and fieldsync-aware apps can show instead of trusting the payload.

use sha2::{Digest, Sha256};

use fieldsync_shared::protocol::{EphemeralFrame, Message, VerifiedSender};

use crate::auth::accounts::User;

/// 16 hex characters derived from the device id (not secret: what matters is
/// that the server, not the client, appends it).
pub fn session_tag(device_id: &str) -> String {
    let digest = Sha256::digest(device_id.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn verified_sender(user: &User) -> VerifiedSender {
    VerifiedSender {
        user_id: user.id.clone(),
        role: user.role.as_str().to_string(),
        name: user.display_name.clone(),
    }
}

/// The frame relayed for an ephemeral message the session accepted: the
/// sender's peer id, count and payload as sent; the session id tagged; the
/// verified sender replacing whatever the client claimed.
pub fn relay_frame(msg: Message, tag: &str, sender: &VerifiedSender) -> Option<EphemeralFrame> {
    let Message::Ephemeral {
        sender_id,
        count,
        session_id,
        document_id,
        data,
        ..
    } = msg
    else {
        return None;
    };
    EphemeralFrame::new(&Message::Ephemeral {
        sender_id,
        target_id: String::new(),
        count,
        session_id: format!("{session_id}.{tag}"),
        document_id,
        data,
        verified_sender: Some(sender.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_shared::protocol;
    use fieldsync_shared::DocumentId;

    #[test]
    fn relayed_session_ids_are_tagged_per_device_and_the_sender_is_the_verified_one() {
        let doc = DocumentId::random();
        let sent = |session: &str| Message::Ephemeral {
            sender_id: "tech-peer".into(),
            target_id: "server".into(),
            count: 1 << 62,
            session_id: session.into(),
            document_id: doc,
            data: vec![0xa0],
            verified_sender: Some(VerifiedSender {
                user_id: "forged".into(),
                role: "admin".into(),
                name: "Boss".into(),
            }),
        };
        let tech = VerifiedSender {
            user_id: "u-tech".into(),
            role: "technician".into(),
            name: "Tech".into(),
        };
        let (dispatcher_tag, tech_tag) = (session_tag("u-d:phone"), session_tag("u-t:phone"));
        assert_eq!(dispatcher_tag.len(), 16);
        assert_ne!(dispatcher_tag, tech_tag);
        // The dispatcher's relayed session id, replayed by the technician's
        // device, comes out as a different session: it cannot poison the
        // dispatcher's (session, count) at any recipient.
        let victims = format!("abc.{dispatcher_tag}");
        let frame = relay_frame(sent(&victims), &tech_tag, &tech).unwrap();
        let Message::Ephemeral {
            session_id,
            verified_sender,
            target_id,
            count,
            ..
        } = protocol::decode(&frame.for_target("viewer")).unwrap()
        else {
            panic!("not an ephemeral");
        };
        assert_eq!(session_id, format!("{victims}.{tech_tag}"));
        assert_ne!(session_id, victims);
        assert_eq!(verified_sender, Some(tech));
        assert_eq!((target_id.as_str(), count), ("viewer", 1 << 62));
    }
}
