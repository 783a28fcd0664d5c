//! Versioned values. Every stored value is `[version: u16 LE][JSON]`, so a later binary can read an
//! older layout and migrate it (`Record::upgrade`), and an older binary can refuse a newer one.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

pub trait Record: Serialize + DeserializeOwned + Send + 'static {
    /// Current layout version of this value type.
    const VERSION: u16;
    /// Human name used in errors.
    const NAME: &'static str;

    /// Reads an older layout. The default accepts none: a type that changes its layout bumps
    /// `VERSION` and overrides this.
    fn upgrade(version: u16, json: &[u8]) -> Result<Self, StoreError> {
        let _ = json;
        Err(StoreError::Corrupt(format!(
            "{} has layout version {version}, this binary reads only {}",
            Self::NAME,
            Self::VERSION
        )))
    }
}

pub fn encode<V: Record>(value: &V) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&V::VERSION.to_le_bytes());
    serde_json::to_writer(&mut out, value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {}: {e}", V::NAME)))?;
    Ok(out)
}

pub fn decode<V: Record>(bytes: &[u8]) -> Result<V, StoreError> {
    if bytes.len() < 2 {
        return Err(StoreError::Corrupt(format!(
            "{} value is truncated",
            V::NAME
        )));
    }
    let version = u16::from_le_bytes([bytes[0], bytes[1]]);
    let json = &bytes[2..];
    if version == V::VERSION {
        serde_json::from_slice(json)
            .map_err(|e| StoreError::Corrupt(format!("{} value unreadable: {e}", V::NAME)))
    } else {
        V::upgrade(version, json)
    }
}

impl Record for super::TenantId {
    const VERSION: u16 = 1;
    const NAME: &'static str = "tenant id";
}
