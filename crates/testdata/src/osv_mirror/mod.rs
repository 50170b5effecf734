//! A local HTTP server in the OSV.dev export layout, serving the shared real data with fault
//! injection, for the tests of tocsin's updaters (feature `osv-mirror`).
//!
//! # Layout (base URL `B` = [`OsvMirror::base_url`])
//! After [`OsvMirror::publish_path`] / [`OsvMirror::publish_records`] of ecosystem `E`:
//! - `B/E/all.zip`: every record as a flat `<ID>.json` entry (deflated, sorted by id, entry times
//!   fixed at 1980-01-01 so identical record sets give identical bytes and the same `ETag`);
//! - `B/E/modified_id.csv`: one line `<modified>,<ID>` per record, no header, newest first (ties
//!   by id, ascending), each line ending in `\n`. `<modified>` is the record's own `modified`
//!   field converted to UTC and truncated to whole seconds, `2024-07-30T14:43:15Z`
//!   ([`normalise_modified`]); a record without a readable `modified` gets the publish time; a
//!   record whose bytes changed since the previous publish while its `modified` did not advance
//!   past the time it was listed at is listed at the newest time of the publish, or one second
//!   after its previous listing if that is later (so that the list shows every change, as an
//!   export stamping its own times would), and keeps that time while its bytes stay the same;
//! - `B/E/<ID>.json`: each record alone, its bytes exactly as published;
//! - `B/modified_id.csv` (`<modified>,E/<ID>` over every ecosystem, newest first) and
//!   `B/ecosystems.txt` (one ecosystem a line, sorted), as at the root of OSV.dev's bucket.
//!
//! The ecosystem is a path segment as given (`crates.io`, `Debian`, `AlmaLinux:9`); request
//! paths are percent-decoded before lookup, so `AlmaLinux%3A9/…` finds `AlmaLinux:9/…`.
//! [`OsvMirror::put_file`] serves any other bytes at any path (a plain tar.gz / zip / JSON feed).
//!
//! # HTTP
//! GET and HEAD (anything else: 405). Every file has `Content-Length`, a strong `ETag` (the first
//! 32 hex digits of the SHA-256 of its bytes, quoted) and `Last-Modified` (when it was published,
//! as an HTTP-date). The clock is logical: each publish or `put_file` takes the current second,
//! or one second after the previous publish if that is later, so publishes in one test have
//! distinct, strictly increasing `Last-Modified` values. Re-publishing identical bytes at a path
//! keeps its `ETag` and `Last-Modified` (like a sync that uploads only changed objects).
//! `If-None-Match` (any listed tag, weak or strong, or `*`) and otherwise `If-Modified-Since`
//! (`Last-Modified` ≤ the date; IMF-fixdate only, an unreadable date is ignored) give
//! `304 Not Modified` with the validators and no body. Unknown paths: 404. `Range` is ignored.
//!
//! # Faults
//! [`OsvMirror::set_fault`] on a path (exact, after percent-decoding, or `"*"` for every path; an
//! exact entry wins) changes how GET/HEAD requests there are answered, see [`Fault`]. Status and
//! delay faults apply to every request on the path (whether or not a file exists there); body
//! faults apply only to GET requests answered `200` with a body (a `304`, `404` or HEAD neither
//! triggers nor uses them up).
//!
//! # Runtime
//! The server runs on its own thread with its own single-threaded tokio runtime, so it works
//! from `#[tokio::test]` (either flavour) and from synchronous tests alike, and dropping the
//! [`OsvMirror`] stops it and closes every connection. Publishing is synchronous (it reads files
//! and builds the zip on the caller's thread).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tocsin_testdata::osv_mirror::{update_steps, Fault, OsvMirror};
//! let mirror = OsvMirror::start().await?;
//! let steps = update_steps("crates.io");
//! mirror.publish_path("crates.io", &steps[0])?;
//! mirror.set_fault("/crates.io/all.zip", Fault::Status(503, 2));
//! let url = format!("{}/crates.io/all.zip", mirror.base_url());
//! # let _ = url; Ok(()) }
//! ```
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

mod records;
mod server;

pub use records::{
    churn, normalise_modified, read_records, record_modified, update_steps, Churn, Record,
};

/// The chunk size of [`Fault::SlowBody`].
pub const SLOW_BODY_CHUNK: usize = 4096;

/// A fault injected on a path ([`OsvMirror::set_fault`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer the next `times` requests with this status (a final status: 2xx–5xx) and a short
    /// text body, then serve normally. `times` 0 never fires.
    Status(u16, u32),
    /// Send the headers with the full `Content-Length`, the first half of the body (rounded
    /// down), then close the connection: the client's body read fails.
    DropMidBody,
    /// Wait this long before sending the response headers (a server slower than the client's
    /// timeout); the response is then the normal one.
    Delay(Duration),
    /// Send the body in chunks of [`SLOW_BODY_CHUNK`] bytes with this pause between them.
    SlowBody(Duration),
    /// Serve only the first N bytes as if they were the whole file (a correct, shorter
    /// `Content-Length`; the `ETag` and `Last-Modified` stay the full file's): a truncated
    /// archive.
    Truncate(usize),
}

/// One request the mirror answered ([`OsvMirror::requests`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, percent-decoded (what files and faults are matched against).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The response status.
    pub status: u16,
    /// Body bytes handed to the connection so far (for a dropped or slow body, what was sent
    /// before the connection closed; 0 for HEAD and 304).
    pub body_bytes: u64,
    /// The `If-None-Match` header, as received.
    pub if_none_match: Option<String>,
    /// The `If-Modified-Since` header, as received.
    pub if_modified_since: Option<String>,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

/// What one publish did, compared with the previous publish of the ecosystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishStats {
    /// Records published.
    pub records: usize,
    /// Ids new in this publish.
    pub added: usize,
    /// Ids of the previous publish that are gone (their files now answer 404).
    pub removed: usize,
    /// Ids kept whose bytes changed.
    pub changed: usize,
    /// Ids kept with identical bytes.
    pub unchanged: usize,
    /// The publish time, as the `Last-Modified` of the files this publish changed.
    pub last_modified: String,
    /// The size of `all.zip`.
    pub all_zip_bytes: usize,
}

/// A file as the mirror serves it ([`OsvMirror::file`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedFile {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its `ETag` header value (quoted).
    pub etag: String,
    /// Its `Last-Modified` header value (HTTP-date).
    pub last_modified: String,
}

/// A running mirror. Stops (closing every connection) when dropped.
pub struct OsvMirror {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, Arc<File>>,
    ecosystems: BTreeMap<String, Ecosystem>,
    /// The last time handed out by the logical clock.
    clock: Option<OffsetDateTime>,
    faults: HashMap<String, FaultSlot>,
    log: Vec<LogEntry>,
}

#[derive(Default)]
struct Ecosystem {
    /// id → (normalised modified, SHA-256 of the bytes)
    records: BTreeMap<String, (String, [u8; 32])>,
}

pub(crate) struct File {
    pub(crate) bytes: Bytes,
    pub(crate) etag: String,
    pub(crate) last_modified: OffsetDateTime,
}

struct FaultSlot {
    fault: Fault,
    remaining: Option<u32>,
}

pub(crate) struct LogEntry {
    pub(crate) request: Request,
    pub(crate) sent: Arc<AtomicU64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge the server for the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file at `path`, if any.
    pub(crate) fn file(&self, path: &str) -> Option<Arc<File>> {
        self.lock().files.get(path).cloned()
    }

    /// The fault for `path` if it `applies`; using it up counts down its remaining uses.
    pub(crate) fn take_fault(&self, path: &str, applies: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut inner = self.lock();
        let key = if inner.faults.contains_key(path) {
            path
        } else if inner.faults.contains_key("*") {
            "*"
        } else {
            return None;
        };
        let slot = inner.faults.get_mut(key)?;
        if !applies(&slot.fault) {
            return None;
        }
        let fault = slot.fault.clone();
        if let Some(n) = slot.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.faults.remove(key);
            }
        }
        Some(fault)
    }

    pub(crate) fn log(&self, request: Request) -> Arc<AtomicU64> {
        let sent = Arc::new(AtomicU64::new(0));
        self.lock().log.push(LogEntry {
            request,
            sent: sent.clone(),
        });
        sent
    }
}

impl Inner {
    /// The next time of the logical clock: now (whole seconds), or one second after the
    /// previous one if that is later.
    fn tick(&mut self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let t = match self.clock {
            Some(prev) if prev + time::Duration::SECOND > now => prev + time::Duration::SECOND,
            _ => now,
        };
        self.clock = Some(t);
        t
    }

    /// Serves `bytes` at `path`; identical bytes keep the file's validators.
    fn put(&mut self, path: String, bytes: Bytes, at: OffsetDateTime) -> bool {
        let etag = etag(&bytes);
        if let Some(f) = self.files.get(&path) {
            if f.etag == etag && f.bytes == bytes {
                return false;
            }
        }
        self.files.insert(
            path,
            Arc::new(File {
                bytes,
                etag,
                last_modified: at,
            }),
        );
        true
    }

    /// Rebuilds `/modified_id.csv` and `/ecosystems.txt` from every ecosystem.
    fn rebuild_root(&mut self, at: OffsetDateTime) {
        let mut lines: Vec<(&str, String)> = Vec::new();
        for (eco, e) in &self.ecosystems {
            for (id, (modified, _)) in &e.records {
                lines.push((modified, format!("{eco}/{id}")));
            }
        }
        let csv = csv(lines);
        let list: String = self.ecosystems.keys().map(|e| format!("{e}\n")).collect();
        self.put("/modified_id.csv".into(), csv.into(), at);
        self.put("/ecosystems.txt".into(), list.into(), at);
    }
}

/// `<modified>,<name>` lines, newest first, ties by name.
fn csv(mut lines: Vec<(&str, String)>) -> Vec<u8> {
    lines.sort_by(|a, b| b.0.cmp(a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = Vec::new();
    for (m, name) in lines {
        out.extend_from_slice(m.as_bytes());
        out.push(b',');
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The strong `ETag` of `bytes`: the first 32 hex digits of their SHA-256, quoted.
pub fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// `/`-prefixed form of a path given by a caller.
fn norm_path(path: &str) -> String {
    if path == "*" || path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

fn check_ecosystem(ecosystem: &str) -> io::Result<()> {
    if ecosystem.is_empty() || ecosystem.contains('/') || ecosystem == "." || ecosystem == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ecosystem {ecosystem:?} is not one path segment"),
        ));
    }
    Ok(())
}

/// `all.zip`: one deflated `<ID>.json` entry per record, sorted by id, fixed entry times.
fn build_zip(records: &[Record]) -> io::Result<Vec<u8>> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (id, bytes) in sorted {
        zip.start_file(format!("{id}.json"), options)
            .map_err(io::Error::other)?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish().map_err(io::Error::other)?.into_inner())
}

impl OsvMirror {
    /// Starts a mirror on `127.0.0.1:<free port>`, serving nothing yet.
    pub async fn start() -> io::Result<OsvMirror> {
        Self::start_blocking()
    }

    /// [`OsvMirror::start`] for synchronous callers (no tokio runtime needed).
    pub fn start_blocking() -> io::Result<OsvMirror> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("osv-mirror-{}", addr.port()))
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            let _ = ready_tx.send(Ok(()));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let app = server::router(state);
                    tokio::select! {
                        r = axum::serve(listener, app) => {
                            if let Err(e) = r {
                                eprintln!("osv-mirror on {addr}: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("osv-mirror thread ended before listening"))??;
        Ok(OsvMirror {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` + `path` (a leading `/` is added if missing).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), norm_path(path))
    }

    /// Publishes one snapshot of `ecosystem`: every record of `path` (a folder, `.tar.gz`,
    /// `.zip` or one `.json`, as [`read_records`] reads it), replacing the previous snapshot:
    /// `all.zip`, `modified_id.csv` and the per-record files are rebuilt, files of records no
    /// longer present answer 404.
    pub fn publish_path(&self, ecosystem: &str, path: &Path) -> io::Result<PublishStats> {
        self.publish_records(ecosystem, read_records(path)?)
    }

    /// [`OsvMirror::publish_path`] from records in memory: `(id, bytes)`, ids unique. The
    /// bytes need not be valid JSON (a record without a readable `modified` is listed in
    /// `modified_id.csv` with the publish time), so tests can publish a broken record.
    pub fn publish_records(
        &self,
        ecosystem: &str,
        records: Vec<Record>,
    ) -> io::Result<PublishStats> {
        check_ecosystem(ecosystem)?;
        {
            let mut ids: Vec<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
            ids.sort_unstable();
            if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("record id {} published twice", w[0]),
                ));
            }
            if let Some(bad) = ids.iter().find(|id| id.is_empty() || id.contains('/')) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("record id {bad:?} is not a file name"),
                ));
            }
        }
        // The expensive parts outside the lock.
        let zip = build_zip(&records)?;
        let meta: Vec<(Option<String>, [u8; 32])> = records
            .iter()
            .map(|(_, b)| (record_modified(b), Sha256::digest(b).into()))
            .collect();

        let mut inner = self.shared.lock();
        let at = inner.tick();
        let stamp = records::format_modified(at).unwrap_or_default();
        let old = inner.ecosystems.remove(ecosystem).unwrap_or_default();
        // The newest time this publish lists: its records' own, or what was listed before.
        let newest = meta
            .iter()
            .filter_map(|(m, _)| m.clone())
            .chain(old.records.values().map(|(listed, _)| listed.clone()))
            .max()
            .unwrap_or_else(|| stamp.clone());
        let mut eco = Ecosystem::default();
        for ((id, _), (modified, sha)) in records.iter().zip(meta) {
            let mut modified = modified.unwrap_or_else(|| stamp.clone());
            if let Some((listed, osha)) = old.records.get(id) {
                if *osha != sha && modified <= *listed {
                    // Its content changed while its `modified` did not (RustSec's export does
                    // this): list it as the newest change of this publish, and after the time it
                    // was listed at, as an export that stamps its own modification times would,
                    // so that the list shows every change and a client following it sees what
                    // the archive holds.
                    let after = records::one_second_after(listed).unwrap_or_default();
                    modified = newest.clone().max(after);
                } else if *osha == sha && *listed > modified {
                    // Listed later than its own time by an earlier publish: keep that.
                    modified = listed.clone();
                }
            }
            eco.records.insert(id.clone(), (modified, sha));
        }
        let (mut added, mut changed, mut unchanged) = (0, 0, 0);
        for (id, (_, sha)) in &eco.records {
            match old.records.get(id) {
                None => added += 1,
                Some((_, osha)) if osha == sha => unchanged += 1,
                Some(_) => changed += 1,
            }
        }
        let removed_ids: Vec<&String> = old
            .records
            .keys()
            .filter(|id| !eco.records.contains_key(*id))
            .collect();
        for id in &removed_ids {
            inner.files.remove(&format!("/{ecosystem}/{id}.json"));
        }
        let removed = removed_ids.len();
        for (id, bytes) in records.iter() {
            inner.put(
                format!("/{ecosystem}/{id}.json"),
                Bytes::copy_from_slice(bytes),
                at,
            );
        }
        let csv = csv(eco
            .records
            .iter()
            .map(|(id, (m, _))| (m.as_str(), id.clone()))
            .collect());
        let all_zip_bytes = zip.len();
        inner.put(format!("/{ecosystem}/all.zip"), zip.into(), at);
        inner.put(format!("/{ecosystem}/modified_id.csv"), csv.into(), at);
        inner.ecosystems.insert(ecosystem.to_string(), eco);
        inner.rebuild_root(at);
        Ok(PublishStats {
            records: records.len(),
            added,
            removed,
            changed,
            unchanged,
            last_modified: server::http_date(at),
            all_zip_bytes,
        })
    }

    /// Serves `bytes` at `path` (leading `/` optional), e.g. a feed given as a plain URL. Takes
    /// one tick of the clock; identical bytes keep the file's validators. Overwrites a file a
    /// publish made until the next publish rebuilds it.
    pub fn put_file(&self, path: &str, bytes: Vec<u8>) {
        let mut inner = self.shared.lock();
        let at = inner.tick();
        inner.put(norm_path(path), bytes.into(), at);
    }

    /// Removes the file at `path`: it then answers 404. (A record file removed this way stays
    /// in `all.zip` and `modified_id.csv`.)
    pub fn remove(&self, path: &str) {
        self.shared.lock().files.remove(&norm_path(path));
    }

    /// The file served at `path`, if any.
    pub fn file(&self, path: &str) -> Option<ServedFile> {
        self.shared.file(&norm_path(path)).map(|f| ServedFile {
            bytes: f.bytes.to_vec(),
            etag: f.etag.clone(),
            last_modified: server::http_date(f.last_modified),
        })
    }

    /// Every path served, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.lock().files.keys().cloned().collect();
        v.sort();
        v
    }

    /// Injects `fault` on `path` (exact, leading `/` optional, or `"*"` for every path),
    /// replacing any fault there. [`Fault::Status`] fires its own count of times; the others
    /// stay until cleared (see [`OsvMirror::set_fault_times`]).
    ///
    /// # Panics
    /// On a status outside 200..=599.
    pub fn set_fault(&self, path: &str, fault: Fault) {
        let remaining = match fault {
            Fault::Status(_, n) => Some(n),
            _ => None,
        };
        self.insert_fault(path, fault, remaining);
    }

    /// Injects `fault` on `path` for the next `times` requests it applies to (a count given in
    /// a [`Fault::Status`] is ignored); 0 removes the fault.
    pub fn set_fault_times(&self, path: &str, fault: Fault, times: u32) {
        self.insert_fault(path, fault, Some(times));
    }

    fn insert_fault(&self, path: &str, fault: Fault, remaining: Option<u32>) {
        if let Fault::Status(code, _) = fault {
            assert!(
                (200..=599).contains(&code),
                "Fault::Status({code}): not a final status"
            );
        }
        let path = norm_path(path);
        let mut inner = self.shared.lock();
        if remaining == Some(0) {
            inner.faults.remove(&path);
        } else {
            inner.faults.insert(path, FaultSlot { fault, remaining });
        }
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Every request answered since the start or [`OsvMirror::reset_log`], in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .lock()
            .log
            .iter()
            .map(|e| {
                let mut r = e.request.clone();
                r.body_bytes = e.sent.load(Ordering::SeqCst);
                r
            })
            .collect()
    }

    /// Empties the request log.
    pub fn reset_log(&self) {
        self.shared.lock().log.clear();
    }
}

impl Drop for OsvMirror {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for OsvMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsvMirror")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
