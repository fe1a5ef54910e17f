//! automerge-repo document ids: 16 random bytes, written as bs58check text
//! (`documentId` on the wire) or as a URL `automerge:<documentId>`.

use std::fmt;
use std::str::FromStr;

const URL_PREFIX: &str = "automerge:";

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentIdError {
    #[error("document id is not valid bs58check text")]
    NotBs58Check,
    #[error("document id must decode to 16 bytes, got {0}")]
    WrongLength(usize),
}

impl DocumentId {
    /// A new id laid out as a UUID v4, as automerge-repo makes them (some
    /// implementations, e.g. automerge-repo 1.x, reject ids that are not
    /// valid UUIDs).
    pub fn random() -> Self {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40; // version 4
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        Self(b)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The `automerge:<id>` URL that automerge-repo's `repo.find()` takes.
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// Accepts a bare id or an `automerge:` URL (a `#heads` suffix is ignored).
    pub fn parse_url_or_id(text: &str) -> Result<Self, DocumentIdError> {
        let bare = text.strip_prefix(URL_PREFIX).unwrap_or(text);
        let bare = bare.split('#').next().unwrap_or(bare);
        bare.parse()
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|_| DocumentIdError::NotBs58Check)?;
        let arr: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| DocumentIdError::WrongLength(bytes.len()))?;
        Ok(Self(arr))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_url() {
        let id = DocumentId::random();
        assert_eq!(id.to_string().parse::<DocumentId>().unwrap(), id);
        assert_eq!(DocumentId::parse_url_or_id(&id.url()).unwrap(), id);
        assert!(id.url().starts_with("automerge:"));
    }

    #[test]
    fn random_ids_are_uuid_v4() {
        for _ in 0..100 {
            let b = DocumentId::random().0;
            assert_eq!(b[6] >> 4, 4);
            assert_eq!(b[8] >> 6, 0b10);
        }
    }

    #[test]
    fn matches_automerge_repo_encoding() {
        // The all-zero UUID as automerge-repo's `stringifyAutomergeUrl` writes it
        // (bs58check of 16 zero bytes).
        let id = DocumentId::from_bytes([0; 16]);
        let text = id.to_string();
        assert_eq!(text, bs58::encode([0u8; 16]).with_check().into_string());
        assert_eq!(text.parse::<DocumentId>().unwrap(), id);
    }

    #[test]
    fn rejects_bad_checksum_and_wrong_length() {
        let mut text = DocumentId::random().to_string();
        let last = text.pop().unwrap();
        text.push(if last == '2' { '3' } else { '2' });
        assert_eq!(
            text.parse::<DocumentId>(),
            Err(DocumentIdError::NotBs58Check)
        );
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert_eq!(
            short.parse::<DocumentId>(),
            Err(DocumentIdError::WrongLength(8))
        );
        assert_eq!(
            "not base58 0OIl".parse::<DocumentId>(),
            Err(DocumentIdError::NotBs58Check)
        );
    }
}
