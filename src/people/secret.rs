//! High-entropy tokens (sessions, API keys, invitation links) and their stored form: only a
//! SHA-256 of the token is kept, which is enough because the token itself is 256 random bits.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new random token with a readable prefix (`wak_…` for API keys, `wss_…` for sessions).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The hash of a string with a purpose label, for indexes that must not hold the value itself.
pub fn labelled_hash(label: &str, value: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    h.finalize().into()
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
