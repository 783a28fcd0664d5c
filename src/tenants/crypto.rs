//! Secrets at rest (channel access tokens, app secrets): AES-256-GCM under a master key generated on
//! first start and kept beside the database (mode 0600). Each ciphertext is bound to where it lives
//! (tenant, channel, field) through the associated data, so a sealed value copied to another row
//! does not open.

use std::fs;
use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("a stored secret could not be decrypted (wrong master key or tampered data)")]
    Open,
}

/// A value encrypted at rest. `Debug` never shows it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

const KEY_LEN: usize = 32;

impl MasterKey {
    /// Loads the key from `path`, creating it (0600) if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(path, &key).map_err(|e| err(format!("cannot create: {e}")))?;
                key.to_vec()
            }
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        };
        if bytes.len() != KEY_LEN {
            return Err(err(format!(
                "has {} bytes, expected {KEY_LEN}; restore it from your backup",
                bytes.len()
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        Ok(Self { cipher })
    }

    pub fn seal(&self, plaintext: &str, context: &str) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a fresh nonce and an in-memory key cannot fail for inputs this small.
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Sealed(B64.encode(out))
    }

    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<String, CryptoError> {
        let bytes = B64.decode(&sealed.0).map_err(|_| CryptoError::Open)?;
        if bytes.len() < 12 {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Open)
    }
}

/// Writes a file readable by the owner only, atomically (temp file, then rename).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = key.seal("EAAG-token", "t1/c1/access_token");
        assert!(!format!("{sealed:?}").contains("EAAG"));
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(
            again.open(&sealed, "t1/c1/access_token").unwrap(),
            "EAAG-token"
        );
    }

    #[test]
    fn sealed_value_is_bound_to_its_context_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(&dir.path().join("a.key")).unwrap();
        let other = MasterKey::load_or_create(&dir.path().join("b.key")).unwrap();
        let sealed = key.seal("secret", "t1/c1/app_secret");
        assert!(key.open(&sealed, "t2/c1/app_secret").is_err());
        assert!(other.open(&sealed, "t1/c1/app_secret").is_err());
    }

    #[test]
    fn a_truncated_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, b"short").unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("expected 32"), "{err}");
    }
}
