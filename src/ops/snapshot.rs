//! A consistent copy of every table, as a stream: what `wacrm backup` receives from a running
//! server. One redb read transaction is held for the whole stream, so the copy is the database as
//! of the moment the request arrived: every write acknowledged before it is in, nothing after it,
//! nothing half-written.
//!
//! Stream: `WACRM-SNAPSHOT 1\n`, then frames `T <name>` (a table starts) and `R <key> <value>`
//! (lengths as u32 BE), then `E <rows u64> <sha256 of every frame byte>`. A stream cut short has no
//! valid end frame and is rejected.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use redb::{Database, Durability, ReadTransaction, ReadableTable, TableDefinition, TableHandle};
use sha2::{Digest, Sha256};

use crate::storage::StoreError;

const MAGIC: &[u8] = b"WACRM-SNAPSHOT 1\n";
/// Rows per intermediate commit while writing the copy (bounded memory, fast inserts).
const SINK_BATCH: u64 = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O: {0}")]
    Io(#[from] io::Error),
    #[error("snapshot stream is damaged or incomplete: {0}")]
    Damaged(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SnapshotError {
    pub fn code(&self) -> &'static str {
        match self {
            SnapshotError::Io(_) => "snapshot_io",
            SnapshotError::Damaged(_) => "snapshot_damaged",
            SnapshotError::Store(e) => e.code(),
        }
    }
}

fn redb_err(e: impl Into<redb::Error>) -> SnapshotError {
    SnapshotError::Store(StoreError::Io(e.into().to_string()))
}

/// Rows per table in a copy.
pub type TableCounts = BTreeMap<String, u64>;

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn frame(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        for p in parts {
            self.hash.update(p);
            self.inner.write_all(p)?;
        }
        Ok(())
    }
}

/// Writes every table of `txn` to `out`. Returns the rows per table.
pub fn write_snapshot<W: Write>(
    txn: &ReadTransaction,
    out: W,
) -> Result<TableCounts, SnapshotError> {
    let mut w = HashingWriter {
        inner: out,
        hash: Sha256::new(),
    };
    w.inner.write_all(MAGIC)?;
    let mut counts = TableCounts::new();
    let names: Vec<String> = txn
        .list_tables()
        .map_err(redb_err)?
        .map(|t| t.name().to_string())
        .collect();
    let mut total = 0u64;
    for name in names {
        let table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .map_err(redb_err)?;
        w.frame(&[b"T", &(name.len() as u32).to_be_bytes(), name.as_bytes()])?;
        let mut rows = 0u64;
        for item in table.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            let (k, v) = (k.value(), v.value());
            w.frame(&[
                b"R",
                &(k.len() as u32).to_be_bytes(),
                k,
                &(v.len() as u32).to_be_bytes(),
                v,
            ])?;
            rows += 1;
        }
        total += rows;
        counts.insert(name, rows);
    }
    let digest = w.hash.clone().finalize();
    w.inner.write_all(b"E")?;
    w.inner.write_all(&total.to_be_bytes())?;
    w.inner.write_all(&digest)?;
    w.inner.flush()?;
    Ok(counts)
}

/// Writes rows into a fresh database: buffered, committed in batches without fsync, then once
/// durably at the end (a crash before that leaves no claim of a complete copy).
pub struct RowSink<'db> {
    db: &'db Database,
    table: Option<String>,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    pending_bytes: usize,
    counts: TableCounts,
}

impl<'db> RowSink<'db> {
    pub fn new(db: &'db Database) -> Self {
        Self {
            db,
            table: None,
            pending: Vec::new(),
            pending_bytes: 0,
            counts: TableCounts::new(),
        }
    }

    pub fn start_table(&mut self, name: &str) -> Result<(), SnapshotError> {
        self.flush()?;
        self.table = Some(name.to_string());
        self.counts.entry(name.to_string()).or_insert(0);
        // Created even if it stays empty: the copy has the same tables as the original.
        self.flush_into(name, true)
    }

    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        let name = self
            .table
            .as_ref()
            .ok_or_else(|| SnapshotError::Damaged("row before any table".into()))?;
        *self.counts.entry(name.clone()).or_insert(0) += 1;
        self.pending_bytes += key.len() + value.len();
        self.pending.push((key.to_vec(), value.to_vec()));
        if self.pending.len() as u64 >= SINK_BATCH || self.pending_bytes >= 32 * 1024 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        match self.table.clone() {
            Some(name) if !self.pending.is_empty() => self.flush_into(&name, false),
            _ => Ok(()),
        }
    }

    fn flush_into(&mut self, name: &str, durable: bool) -> Result<(), SnapshotError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        {
            let mut table = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(name))
                .map_err(redb_err)?;
            for (k, v) in self.pending.drain(..) {
                table.insert(k.as_slice(), v.as_slice()).map_err(redb_err)?;
            }
        }
        self.pending_bytes = 0;
        txn.commit().map_err(redb_err)?;
        Ok(())
    }

    /// The final, durable commit.
    pub fn finish(mut self) -> Result<TableCounts, SnapshotError> {
        self.flush()?;
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(redb_err)?;
        Ok(self.counts)
    }
}

/// Copies every table of `txn` straight into `sink` (no stream: the offline backup).
pub fn copy_snapshot(txn: &ReadTransaction, sink: &mut RowSink<'_>) -> Result<(), SnapshotError> {
    let names: Vec<String> = txn
        .list_tables()
        .map_err(redb_err)?
        .map(|t| t.name().to_string())
        .collect();
    for name in names {
        let table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .map_err(redb_err)?;
        sink.start_table(&name)?;
        for item in table.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            sink.insert(k.value(), v.value())?;
        }
    }
    Ok(())
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                SnapshotError::Damaged("the stream ended early".into())
            } else {
                SnapshotError::Io(e)
            }
        })?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn sized(&mut self, max: usize) -> Result<Vec<u8>, SnapshotError> {
        let mut len = [0u8; 4];
        self.exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > max {
            return Err(SnapshotError::Damaged(format!("field of {len} bytes")));
        }
        let mut buf = vec![0u8; len];
        self.exact(&mut buf)?;
        Ok(buf)
    }
}

/// Reads a snapshot stream into `sink`, checking its end frame (row count and hash).
pub fn read_snapshot<R: Read>(input: R, sink: &mut RowSink<'_>) -> Result<u64, SnapshotError> {
    let mut r = HashingReader {
        inner: input,
        hash: Sha256::new(),
    };
    let mut magic = vec![0u8; MAGIC.len()];
    r.inner.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(SnapshotError::Damaged("not a wacrm snapshot".into()));
    }
    let mut rows = 0u64;
    loop {
        let mut kind = [0u8; 1];
        r.inner.read_exact(&mut kind).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                SnapshotError::Damaged("the stream ended before its end frame".into())
            } else {
                SnapshotError::Io(e)
            }
        })?;
        match kind[0] {
            b'T' => {
                r.hash.update(kind);
                let name = r.sized(1024)?;
                let name = String::from_utf8(name)
                    .map_err(|_| SnapshotError::Damaged("table name".into()))?;
                sink.start_table(&name)?;
            }
            b'R' => {
                r.hash.update(kind);
                let key = r.sized(64 * 1024 * 1024)?;
                let value = r.sized(1024 * 1024 * 1024)?;
                sink.insert(&key, &value)?;
                rows += 1;
            }
            b'E' => {
                let digest = r.hash.clone().finalize();
                let mut total = [0u8; 8];
                r.inner.read_exact(&mut total)?;
                let mut expected = [0u8; 32];
                r.inner.read_exact(&mut expected)?;
                if u64::from_be_bytes(total) != rows {
                    return Err(SnapshotError::Damaged(format!(
                        "{rows} rows received, {} sent",
                        u64::from_be_bytes(total)
                    )));
                }
                if digest.as_slice() != expected {
                    return Err(SnapshotError::Damaged("checksum mismatch".into()));
                }
                return Ok(rows);
            }
            other => return Err(SnapshotError::Damaged(format!("unknown frame {other:#x}"))),
        }
    }
}

/// A `Write` that hands 256 KiB chunks to an async consumer (the HTTP response body).
pub struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl ChunkWriter {
    pub fn new(tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, io::Error>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// Ends the body with an error so the client sees a broken stream, not a short one.
    pub fn fail(self, message: String) {
        let _ = self.tx.blocking_send(Err(io::Error::other(message)));
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A `Read` over chunks arriving from an async producer (the HTTP response being downloaded).
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    current: bytes::Bytes,
}

impl ChunkReader {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>) -> Self {
        Self {
            rx,
            current: bytes::Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
