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

/// A value already encoded as a `V` row (version prefix, then JSON). Built outside the writer
/// thread, it costs the writer (the one serialized resource) nothing but the insert.
pub struct Encoded<V> {
    bytes: Vec<u8>,
    _row: std::marker::PhantomData<fn() -> V>,
}

impl<V: Record> Encoded<V> {
    pub fn new(value: &V) -> Result<Self, StoreError> {
        Ok(Self {
            bytes: encode(value)?,
            _row: std::marker::PhantomData,
        })
    }

    /// Encodes `mirror`, a borrowed stand-in that serializes to exactly the JSON of a `V` (same
    /// fields, same order). Each mirror has a test that decodes what it encodes as a `V`.
    pub fn from_mirror<M: Serialize>(mirror: &M) -> Result<Self, StoreError> {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&V::VERSION.to_le_bytes());
        serde_json::to_writer(&mut bytes, mirror)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode {}: {e}", V::NAME)))?;
        Ok(Self {
            bytes,
            _row: std::marker::PhantomData,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
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
