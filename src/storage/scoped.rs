//! Tenant-scoped and operator access to the two redb tables.
//!
//! All tenant-owned data lives in one table whose keys are `tenant id (16 bytes) | collection (1 byte)
//! | suffix`. A [`TenantWrite`] / [`TenantRead`] is created for one tenant and builds every key itself,
//! so no caller can name another tenant's key: this is the appliance's row-level security. Deleting
//! a tenant is one range delete over its prefix.
//!
//! Cross-tenant data (the tenant registry, webhook routing, the event queue) lives in a second
//! table reached only through [`OperatorWrite`] / [`OperatorRead`], with their own collection type
//! so the two kinds cannot be mixed up.

use std::marker::PhantomData;

use redb::{ReadOnlyTable, ReadableTable, Table, TableDefinition};

use super::ids::TenantId;
use super::record::{decode, encode, Encoded, Record};
use super::StoreError;

/// Raw table definitions: public for whole-store operations only (backup, migration, checks).
pub const TENANT_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tenant_rows");
pub const GLOBAL_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("global_rows");

/// A kind of tenant-owned value, with its one-byte tag. Tags are allocated in `collections.rs`.
pub struct Collection<V> {
    tag: u8,
    _value: PhantomData<fn() -> V>,
}

impl<V> Collection<V> {
    pub const fn new(tag: u8) -> Self {
        Self {
            tag,
            _value: PhantomData,
        }
    }
    pub fn tag(&self) -> u8 {
        self.tag
    }
}

/// A kind of cross-tenant value, reachable only through the operator path.
pub struct GlobalCollection<V> {
    tag: u8,
    _value: PhantomData<fn() -> V>,
}

impl<V> GlobalCollection<V> {
    pub const fn new(tag: u8) -> Self {
        Self {
            tag,
            _value: PhantomData,
        }
    }
}

fn tenant_key(tenant: &TenantId, tag: u8, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(17 + suffix.len());
    key.extend_from_slice(tenant.as_bytes());
    key.push(tag);
    key.extend_from_slice(suffix);
    key
}

fn global_key(tag: u8, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + suffix.len());
    key.push(tag);
    key.extend_from_slice(suffix);
    key
}

/// The exclusive upper bound of all keys starting with `prefix` (None: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

type RawRow<'a> = (
    redb::AccessGuard<'a, &'static [u8]>,
    redb::AccessGuard<'a, &'static [u8]>,
);
type RowIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a>;

fn scan_table<'a, T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &'a T,
    prefix: Vec<u8>,
    reverse: bool,
) -> Result<RowIter<'a>, StoreError> {
    let range = match prefix_end(&prefix) {
        Some(end) => table.range::<&[u8]>(prefix.as_slice()..end.as_slice())?,
        None => table.range::<&[u8]>(prefix.as_slice()..)?,
    };
    let map = |item: Result<RawRow<'_>, redb::StorageError>| {
        item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
            .map_err(StoreError::from)
    };
    if reverse {
        Ok(Box::new(range.rev().map(map)))
    } else {
        Ok(Box::new(range.map(map)))
    }
}

/// Tables opened once per write transaction (group-commit batch).
pub struct WriteTables<'t> {
    pub(super) tenant: Table<'t, &'static [u8], &'static [u8]>,
    pub(super) global: Table<'t, &'static [u8], &'static [u8]>,
}

/// Read access to one tenant's data, for the whole life of one read transaction.
pub struct TenantRead<'a> {
    pub(super) tenant: TenantId,
    pub(super) table: &'a ReadOnlyTable<&'static [u8], &'static [u8]>,
}

/// Write access to one tenant's data inside a (group-commit) write transaction.
pub struct TenantWrite<'a, 't> {
    pub(super) tenant: TenantId,
    pub(super) tables: &'a mut WriteTables<'t>,
}

/// Rows decoded from a scan: (key suffix after the collection tag, value).
pub type Rows<V> = Vec<(Vec<u8>, V)>;

macro_rules! tenant_read_methods {
    () => {
        pub fn tenant(&self) -> TenantId {
            self.tenant
        }

        pub fn get<V: Record>(
            &self,
            collection: &Collection<V>,
            key: &[u8],
        ) -> Result<Option<V>, StoreError> {
            let full = tenant_key(&self.tenant, collection.tag, key);
            match self.table_ref().get(full.as_slice())? {
                Some(value) => decode(value.value()).map(Some),
                None => Ok(None),
            }
        }

        pub fn contains<V: Record>(
            &self,
            collection: &Collection<V>,
            key: &[u8],
        ) -> Result<bool, StoreError> {
            let full = tenant_key(&self.tenant, collection.tag, key);
            Ok(self.table_ref().get(full.as_slice())?.is_some())
        }

        /// Rows of `collection` whose key starts with `prefix`, in key order (or reversed), at most
        /// `limit` of them.
        pub fn scan<V: Record>(
            &self,
            collection: &Collection<V>,
            prefix: &[u8],
            reverse: bool,
            limit: usize,
        ) -> Result<Rows<V>, StoreError> {
            let full = tenant_key(&self.tenant, collection.tag, prefix);
            let strip = 17;
            let mut out = Vec::new();
            for item in scan_table(self.table_ref(), full, reverse)?.take(limit) {
                let (key, value) = item?;
                out.push((key[strip..].to_vec(), decode(&value)?));
            }
            Ok(out)
        }
    };
}

impl TenantRead<'_> {
    fn table_ref(&self) -> &ReadOnlyTable<&'static [u8], &'static [u8]> {
        self.table
    }
    tenant_read_methods!();
}

impl<'t> TenantWrite<'_, 't> {
    fn table_ref(&self) -> &Table<'_, &'static [u8], &'static [u8]> {
        &self.tables.tenant
    }
    tenant_read_methods!();

    pub fn put<V: Record>(
        &mut self,
        collection: &Collection<V>,
        key: &[u8],
        value: &V,
    ) -> Result<(), StoreError> {
        let full = tenant_key(&self.tenant, collection.tag, key);
        let bytes = encode(value)?;
        self.tables
            .tenant
            .insert(full.as_slice(), bytes.as_slice())?;
        Ok(())
    }

    /// Inserts only if the key is absent; returns whether it inserted. The basis of idempotency
    /// (a redelivered wamid is a no-op).
    pub fn insert_new<V: Record>(
        &mut self,
        collection: &Collection<V>,
        key: &[u8],
        value: &V,
    ) -> Result<bool, StoreError> {
        if self.contains(collection, key)? {
            return Ok(false);
        }
        self.put(collection, key, value)?;
        Ok(true)
    }

    /// [`TenantWrite::insert_new`] of a value encoded beforehand.
    pub fn insert_new_encoded<V: Record>(
        &mut self,
        collection: &Collection<V>,
        key: &[u8],
        value: &Encoded<V>,
    ) -> Result<bool, StoreError> {
        // One walk down the tree instead of a lookup then an insert: the webhook path calls this
        // for every message, and a key already present (a redelivery) is the rare case.
        let full = tenant_key(&self.tenant, collection.tag, key);
        let previous = self
            .tables
            .tenant
            .insert(full.as_slice(), value.as_bytes())?
            .map(|old| old.value().to_vec());
        match previous {
            None => Ok(true),
            Some(old) => {
                // Put the first value back: a redelivery changes nothing.
                self.tables.tenant.insert(full.as_slice(), old.as_slice())?;
                Ok(false)
            }
        }
    }

    pub fn delete<V: Record>(
        &mut self,
        collection: &Collection<V>,
        key: &[u8],
    ) -> Result<bool, StoreError> {
        let full = tenant_key(&self.tenant, collection.tag, key);
        Ok(self.tables.tenant.remove(full.as_slice())?.is_some())
    }

    /// The global indexes a tenant change must keep in step (webhook routing, the event queue).
    /// Only global collections are reachable from here, never another tenant's rows.
    pub fn global(&mut self) -> GlobalWrite<'_, 't> {
        GlobalWrite {
            tables: &mut *self.tables,
        }
    }
}

/// Writes to global (cross-tenant) collections only.
pub struct GlobalWrite<'a, 't> {
    pub(super) tables: &'a mut WriteTables<'t>,
}

/// Operator (cross-tenant) write access. Created only by the storage layer's operator entry points.
pub struct OperatorWrite<'a, 't> {
    pub(super) tables: &'a mut WriteTables<'t>,
}

/// Operator (cross-tenant) read access.
pub struct OperatorRead<'a> {
    pub(super) global: &'a ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) tenant: &'a ReadOnlyTable<&'static [u8], &'static [u8]>,
}

macro_rules! operator_read_methods {
    () => {
        pub fn get<V: Record>(
            &self,
            collection: &GlobalCollection<V>,
            key: &[u8],
        ) -> Result<Option<V>, StoreError> {
            let full = global_key(collection.tag, key);
            match self.global_ref().get(full.as_slice())? {
                Some(value) => decode(value.value()).map(Some),
                None => Ok(None),
            }
        }

        /// Whether a row exists, without decoding it.
        pub fn contains<V: Record>(
            &self,
            collection: &GlobalCollection<V>,
            key: &[u8],
        ) -> Result<bool, StoreError> {
            let full = global_key(collection.tag, key);
            Ok(self.global_ref().get(full.as_slice())?.is_some())
        }

        pub fn scan<V: Record>(
            &self,
            collection: &GlobalCollection<V>,
            prefix: &[u8],
            reverse: bool,
            limit: usize,
        ) -> Result<Rows<V>, StoreError> {
            let full = global_key(collection.tag, prefix);
            let mut out = Vec::new();
            for item in scan_table(self.global_ref(), full, reverse)?.take(limit) {
                let (key, value) = item?;
                out.push((key[1..].to_vec(), decode(&value)?));
            }
            Ok(out)
        }

        /// How many rows are stored under `prefix`, without copying or decoding any of them
        /// (queue depths, which metrics and readiness read on every scrape).
        pub fn count<V: Record>(
            &self,
            collection: &GlobalCollection<V>,
            prefix: &[u8],
        ) -> Result<usize, StoreError> {
            let full = global_key(collection.tag, prefix);
            let range = match prefix_end(&full) {
                Some(end) => self
                    .global_ref()
                    .range::<&[u8]>(full.as_slice()..end.as_slice())?,
                None => self.global_ref().range::<&[u8]>(full.as_slice()..)?,
            };
            let mut rows = 0;
            for item in range {
                item?;
                rows += 1;
            }
            Ok(rows)
        }

        /// Up to `limit` rows under `prefix` whose keys sort after `after`, in key order: a queue
        /// read one page at a time.
        pub fn scan_after<V: Record>(
            &self,
            collection: &GlobalCollection<V>,
            prefix: &[u8],
            after: &[u8],
            limit: usize,
        ) -> Result<Rows<V>, StoreError> {
            use std::ops::Bound;
            let start = global_key(collection.tag, after);
            let end = prefix_end(&global_key(collection.tag, prefix));
            let upper = match &end {
                Some(end) => Bound::Excluded(end.as_slice()),
                None => Bound::Unbounded,
            };
            let range = self
                .global_ref()
                .range::<&[u8]>((Bound::Excluded(start.as_slice()), upper))?;
            let mut out = Vec::new();
            for item in range.take(limit) {
                let (key, value) = item?;
                out.push((key.value()[1..].to_vec(), decode(value.value())?));
            }
            Ok(out)
        }
    };
}

impl OperatorRead<'_> {
    fn global_ref(&self) -> &ReadOnlyTable<&'static [u8], &'static [u8]> {
        self.global
    }
    operator_read_methods!();

    /// Number of keys and bytes stored under one tenant's prefix (operator reports).
    pub fn tenant_footprint(&self, tenant: &TenantId) -> Result<(u64, u64), StoreError> {
        let mut rows = 0;
        let mut bytes = 0;
        for item in scan_table(self.tenant, tenant.as_bytes().to_vec(), false)? {
            let (k, v) = item?;
            rows += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((rows, bytes))
    }
}

macro_rules! global_write_methods {
    () => {
        fn global_ref(&self) -> &Table<'t, &'static [u8], &'static [u8]> {
            &self.tables.global
        }
        operator_read_methods!();

        pub fn put<V: Record>(
            &mut self,
            collection: &GlobalCollection<V>,
            key: &[u8],
            value: &V,
        ) -> Result<(), StoreError> {
            let full = global_key(collection.tag, key);
            let bytes = encode(value)?;
            self.tables
                .global
                .insert(full.as_slice(), bytes.as_slice())?;
            Ok(())
        }

        /// [`Self::put`] of a value encoded beforehand.
        pub fn put_encoded<V: Record>(
            &mut self,
            collection: &GlobalCollection<V>,
            key: &[u8],
            value: &Encoded<V>,
        ) -> Result<(), StoreError> {
            let full = global_key(collection.tag, key);
            self.tables
                .global
                .insert(full.as_slice(), value.as_bytes())?;
            Ok(())
        }

        pub fn delete<V: Record>(
            &mut self,
            collection: &GlobalCollection<V>,
            key: &[u8],
        ) -> Result<bool, StoreError> {
            let full = global_key(collection.tag, key);
            Ok(self.tables.global.remove(full.as_slice())?.is_some())
        }
    };
}

impl<'t> GlobalWrite<'_, 't> {
    global_write_methods!();
}

impl<'t> OperatorWrite<'_, 't> {
    global_write_methods!();

    /// A tenant handle for work the operator does on a tenant's behalf (creating it, routing a
    /// webhook to it). The handle is as narrow as any other: it sees that tenant only.
    pub fn tenant(&mut self, tenant: TenantId) -> TenantWrite<'_, 't> {
        TenantWrite {
            tenant,
            tables: &mut *self.tables,
        }
    }

    /// Removes every key of one tenant. Returns the number of rows removed.
    pub fn delete_tenant_rows(&mut self, tenant: &TenantId) -> Result<u64, StoreError> {
        let start = tenant.as_bytes().to_vec();
        let end = prefix_end(&start);
        let mut removed = 0u64;
        let counter = |_: &[u8], _: &[u8]| {
            removed += 1;
            false
        };
        match end {
            Some(end) => self
                .tables
                .tenant
                .retain_in::<&[u8], _>(start.as_slice()..end.as_slice(), counter)?,
            None => self
                .tables
                .tenant
                .retain_in::<&[u8], _>(start.as_slice().., counter)?,
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(&[1, 2, 3]), Some(vec![1, 2, 4]));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }
}
