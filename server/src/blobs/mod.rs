//! Content-addressed attachment storage on disk: a blob's name is the SHA-256
//! of its bytes, so an upload is idempotent (re-sending after a dropped
//! connection is harmless) and a corrupted upload cannot pose as another.
//!
//! - `access`: who may read a blob through which ticket (uploads and links).
//! - `quota`: bytes each user may store per day.
//! - `gc`: removal of blobs no stored ticket references.

pub mod access;
pub mod gc;
pub mod quota;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
    pub max_bytes: usize,
    /// Bytes one user may newly store per 24 hours (0: unlimited).
    pub daily_quota_bytes: u64,
}

/// A file in the blob directory.
#[derive(Clone, Debug)]
pub struct BlobFile {
    /// The blob's SHA-256, or None for an upload's leftover temporary file.
    pub sha256: Option<String>,
    pub path: PathBuf,
    pub bytes: u64,
    /// Stored or last re-uploaded (see `put`).
    pub modified: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob name must be 64 lowercase hex characters (its SHA-256)")]
    BadName,
    #[error("content hashes to {actual}, not {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("blob storage failed: {0}")]
    Io(#[from] std::io::Error),
}

pub fn valid_name(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl BlobStore {
    pub fn open(dir: impl AsRef<Path>, max_bytes: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(Self {
            dir: dir.as_ref().to_path_buf(),
            max_bytes,
            daily_quota_bytes: 0,
        })
    }

    pub fn with_daily_quota(self, daily_quota_bytes: u64) -> Self {
        Self {
            daily_quota_bytes,
            ..self
        }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        // Two-level fan-out keeps directories small.
        self.dir.join(&sha256[..2]).join(sha256)
    }

    /// Stores `bytes` under `sha256` after checking the hash. Returns false if
    /// it was already stored. The file appears atomically (write + fsync + rename).
    pub fn put(&self, sha256: &str, bytes: &[u8]) -> Result<bool, BlobError> {
        if !valid_name(sha256) {
            return Err(BlobError::BadName);
        }
        let actual = sha256_hex(bytes);
        if actual != sha256 {
            return Err(BlobError::HashMismatch {
                expected: sha256.into(),
                actual,
            });
        }
        let path = self.path(sha256);
        if path.exists() {
            // A re-upload usually precedes a new reference: restart the
            // clean-up grace period (`gc` goes by modification time).
            std::fs::File::options()
                .append(true)
                .open(&path)?
                .set_modified(SystemTime::now())?;
            return Ok(false);
        }
        let dir = path.parent().expect("blob path has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{sha256}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(true)
    }

    pub fn exists(&self, sha256: &str) -> bool {
        valid_name(sha256) && self.path(sha256).is_file()
    }

    /// Every blob (and leftover temporary file) in the directory. Files that
    /// are neither are not listed, so `gc` never touches them.
    pub fn list(&self) -> std::io::Result<Vec<BlobFile>> {
        let mut out = Vec::new();
        for fan in std::fs::read_dir(&self.dir)? {
            let fan = fan?;
            let prefix = fan.file_name().to_string_lossy().into_owned();
            if !fan.file_type()?.is_dir() || prefix.len() != 2 {
                continue;
            }
            for entry in std::fs::read_dir(fan.path())? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let sha256 = if valid_name(&name) && name.starts_with(&prefix) {
                    Some(name)
                } else if name.starts_with('.') && name.ends_with(".tmp") {
                    None
                } else {
                    continue;
                };
                out.push(BlobFile {
                    sha256,
                    path: entry.path(),
                    bytes: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
        Ok(out)
    }

    pub fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, BlobError> {
        if !valid_name(sha256) {
            return Err(BlobError::BadName);
        }
        match std::fs::read(self.path(sha256)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_addressed_idempotent_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1024).unwrap();
        let data = b"signature.png bytes";
        let name = sha256_hex(data);
        assert!(store.put(&name, data).unwrap());
        assert!(!store.put(&name, data).unwrap(), "re-upload is harmless");
        assert_eq!(store.get(&name).unwrap().as_deref(), Some(&data[..]));
        assert!(matches!(
            store.put(&name, b"other"),
            Err(BlobError::HashMismatch { .. })
        ));
        assert!(matches!(
            store.put("../../etc/passwd", data),
            Err(BlobError::BadName)
        ));
        assert_eq!(store.get(&sha256_hex(b"missing")).unwrap(), None);
    }
}
