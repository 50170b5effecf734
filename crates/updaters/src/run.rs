//! Running sources: one run (claim, fetch, import, record) and the schedule that repeats it.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::Url;
use serde::Serialize;
use time::OffsetDateTime;
use tocsin_engine::{Engine, Processed};
use tocsin_feeds::{Limits, Snapshot};
use tocsin_model::claircore::UpdateOperation;
use tocsin_model::vuln::Addressed;
use tocsin_store::{ImportOutcome, SourceRun, SourceState, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Location, SourceKind, SourceSpec, UpdatersConfig};
use crate::http::{Body, Got, Http, Sink};
use crate::state::{SourceMemory, Validators};
use crate::UpdaterError;
use tocsin_feeds::export::{self as osv, Plan};

/// How a successful run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The source answered 304 (or a local file is unchanged): nothing was read.
    NotModified,
    /// Content was read and equals the updater's latest (or held) operation: nothing created.
    Unchanged,
    /// A new update operation was created (and processed).
    Created,
    /// A new update operation was stored held by the storm guard.
    Held,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::NotModified => "not_modified",
            Outcome::Unchanged => "unchanged",
            Outcome::Created => "created",
            Outcome::Held => "held",
        }
    }
}

/// What one run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The updater.
    pub updater: String,
    /// How it ended.
    pub outcome: Outcome,
    /// `full`, `incremental` or `local`.
    pub mode: &'static str,
    /// Why an incremental source read its full archive, when it did.
    pub fallback: Option<String>,
    /// HTTP requests made (retries included).
    pub requests: u32,
    /// Bytes downloaded.
    pub bytes: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// The operation created, found unchanged, or held (absent when nothing was read).
    pub operation: Option<UpdateOperation>,
    /// Why it is held.
    pub held: Option<String>,
    /// Vulnerabilities in the snapshot read (absent when nothing was read).
    pub vulnerabilities: Option<usize>,
    /// What processing the new operation produced.
    pub processed: Vec<Processed>,
}

/// Progress of a run, for progress bars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// Bytes of a download so far, and its announced length.
    Downloading {
        /// What is being fetched.
        url: String,
        /// Bytes so far.
        bytes: u64,
        /// Content-Length, when announced.
        total: Option<u64>,
    },
    /// Records fetched one by one (incremental OSV): so far, of how many.
    Records {
        /// Fetched so far.
        done: u64,
        /// To fetch.
        total: u64,
    },
    /// Record files read from the snapshot.
    Reading {
        /// Read so far.
        done: u64,
        /// In the snapshot, when known.
        total: Option<u64>,
    },
    /// Importing and processing.
    Importing,
}

/// Receives [`RunEvent`]s.
pub type Events = Arc<dyn Fn(RunEvent) + Send + Sync>;

/// A configured source with its shared state, for status pages.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    /// The updater.
    pub name: String,
    /// Where it is fetched from.
    pub source: String,
    /// `osv` (an OSV.dev-layout ecosystem) or `snapshot`.
    pub kind: &'static str,
    /// The period, in seconds.
    pub interval_seconds: u64,
    /// The schedule and last results, once it was first claimed.
    pub state: Option<SourceState>,
    /// The validators kept for the next conditional fetch.
    pub validator: Validators,
    /// The newest `modified` time an incremental OSV source includes.
    #[serde(with = "time::serde::rfc3339::option")]
    pub cursor: Option<OffsetDateTime>,
}

/// Records fetched at once by an incremental run.
const RECORD_CONCURRENCY: usize = 8;
/// The largest `modified_id.csv` read (OSV.dev's largest ecosystem lists are a few MB).
const MAX_LIST_BYTES: u64 = 256 << 20;
/// How often an idle source looks at the shared schedule (another process may have run it, or
/// its lease may have expired).
const POLL: Duration = Duration::from_secs(60);
/// The first retry of a failed source; doubles per failure, capped at its period.
const FAILURE_BACKOFF: Duration = Duration::from_secs(60);

/// Follows the configured sources (see the crate doc).
pub struct Updaters {
    engine: Arc<Engine>,
    config: UpdatersConfig,
    http: Http,
    limits: Limits,
    /// This process's lease holder id.
    holder: Uuid,
    /// Keeps two runs of one source in this process apart (the store's lease is per process).
    running: HashMap<String, tokio::sync::Mutex<()>>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn no_events() -> Events {
    Arc::new(|_| {})
}

/// Requests made and bytes downloaded by one run.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    requests: u32,
    bytes: u64,
}

/// What one fetch read, before import.
struct Fetched {
    mode: &'static str,
    fallback: Option<String>,
    /// `None`: nothing new was read (304, unchanged local file, empty change list).
    snapshot: Option<Snapshot>,
}

impl Updaters {
    /// Follows `config`'s sources through `engine`, reading snapshots within `limits`.
    pub fn new(
        engine: Arc<Engine>,
        config: UpdatersConfig,
        limits: Limits,
    ) -> Result<Updaters, UpdaterError> {
        let http = Http::new(config.fetch)?;
        let running = config
            .sources
            .iter()
            .map(|s| (s.name.clone(), tokio::sync::Mutex::new(())))
            .collect();
        Ok(Updaters {
            engine,
            config,
            http,
            limits,
            holder: Uuid::new_v4(),
            running,
        })
    }

    /// The configured sources.
    pub fn sources(&self) -> &[SourceSpec] {
        &self.config.sources
    }

    /// The engine runs import through.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn spec(&self, name: &str) -> Result<&SourceSpec, UpdaterError> {
        self.config
            .sources
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| UpdaterError::UnknownSource(name.to_string()))
    }

    /// Every configured source with its shared state.
    pub async fn statuses(&self) -> Result<Vec<SourceStatus>, UpdaterError> {
        let mut states: HashMap<String, SourceState> = self
            .engine
            .store()
            .sources()
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        Ok(self
            .config
            .sources
            .iter()
            .map(|spec| {
                let state = states.remove(&spec.name);
                let memory = state
                    .as_ref()
                    .map(|s| SourceMemory::parse(&s.state))
                    .unwrap_or_default();
                let validator = match &spec.kind {
                    SourceKind::Snapshot(_) | SourceKind::Osv { .. } => memory.archive.clone(),
                };
                SourceStatus {
                    name: spec.name.clone(),
                    source: spec.location(),
                    kind: match spec.kind {
                        SourceKind::Osv { .. } => "osv",
                        SourceKind::Snapshot(_) => "snapshot",
                    },
                    interval_seconds: spec.interval.as_secs(),
                    state,
                    validator,
                    cursor: memory.cursor,
                }
            })
            .collect())
    }

    /// Runs source `name` now, whatever its schedule, unless another process or run holds it
    /// ([`UpdaterError::Busy`]).
    pub async fn run_now(&self, name: &str, events: Events) -> Result<RunReport, UpdaterError> {
        match self.run(name, false, events).await? {
            Some(r) => Ok(r),
            None => Err(self.busy(name, "another run holds it").await),
        }
    }

    async fn busy(&self, name: &str, fallback: &str) -> UpdaterError {
        let why = match self.engine.store().sources().await {
            Ok(states) => states
                .into_iter()
                .find(|s| s.name == name)
                .and_then(|s| s.lease_until)
                .filter(|until| *until > now())
                .map(|until| format!("being fetched by another process (lease until {until})"))
                .unwrap_or_else(|| fallback.to_string()),
            Err(_) => fallback.to_string(),
        };
        UpdaterError::Busy {
            name: name.to_string(),
            why,
        }
    }

    /// One run: `Ok(None)` when `due_only` and it is not due, or another process holds it.
    async fn run(
        &self,
        name: &str,
        due_only: bool,
        events: Events,
    ) -> Result<Option<RunReport>, UpdaterError> {
        let spec = self.spec(name)?;
        let Some(local) = self.running.get(name) else {
            return Err(UpdaterError::UnknownSource(name.to_string()));
        };
        let Ok(_local) = local.try_lock() else {
            return if due_only {
                Ok(None)
            } else {
                Err(UpdaterError::Busy {
                    name: name.to_string(),
                    why: "a run is in progress in this process".into(),
                })
            };
        };
        let lease = Lease {
            store: self.engine.store().as_ref(),
            name,
            holder: self.holder,
            lease: self.config.lease,
            interval: spec.interval,
        };
        let mut tally = Tally::default();
        let (counted, events) = (&mut tally, &events);
        let Some(Leased {
            result,
            started,
            elapsed,
            failures,
            next_run,
        }) = lease
            .run(due_only, move |state| async move {
                let mut memory = SourceMemory::parse(&state);
                let result = self
                    .fetch_and_import(spec, &mut memory, counted, events)
                    .await;
                (result, memory.to_text())
            })
            .await?
        else {
            return Ok(None);
        };
        let Tally { requests, bytes } = tally;
        metrics::histogram!("tocsin_updater_fetch_seconds", "updater" => name.to_string())
            .record(elapsed.as_secs_f64());
        metrics::counter!("tocsin_updater_fetched_bytes_total", "updater" => name.to_string())
            .increment(bytes);
        match result {
            Ok(mut report) => {
                report.requests = requests;
                report.bytes = bytes;
                report.elapsed = elapsed;
                metrics::counter!("tocsin_updater_runs_total", "updater" => name.to_string(), "outcome" => report.outcome.label()).increment(1);
                metrics::gauge!("tocsin_updater_last_success_timestamp_seconds", "updater" => name.to_string())
                    .set(started.unix_timestamp() as f64);
                tracing::info!(
                    updater = name,
                    outcome = report.outcome.label(),
                    mode = report.mode,
                    fallback = report.fallback.as_deref().unwrap_or(""),
                    requests,
                    bytes,
                    elapsed_ms = elapsed.as_millis() as u64,
                    operation = report.operation.as_ref().map(|o| o.reference.as_str()).unwrap_or(""),
                    next_run = %next_run,
                    "updater run"
                );
                Ok(Some(report))
            }
            Err(e) => {
                metrics::counter!("tocsin_updater_runs_total", "updater" => name.to_string(), "outcome" => "failed").increment(1);
                tracing::warn!(updater = name, error = %e, kind = e.kind(), requests, failures, next_run = %next_run, "updater run failed; nothing imported");
                Err(e)
            }
        }
    }

    async fn fetch_and_import(
        &self,
        spec: &SourceSpec,
        memory: &mut SourceMemory,
        tally: &mut Tally,
        events: &Events,
    ) -> Result<RunReport, UpdaterError> {
        let name = spec.name.as_str();
        // Validators describe the snapshot in `memory.base` at `memory.location`; trust them only
        // while the store still has it as the updater's latest or held operation, and the source
        // is still configured there.
        let info = self
            .engine
            .store()
            .updaters()
            .await?
            .into_iter()
            .find(|u| u.name == name);
        let latest = info.as_ref().and_then(|u| u.latest.clone());
        let held = info.as_ref().and_then(|u| u.held.clone());
        let base_op = memory.base.as_ref().and_then(|base| {
            latest
                .iter()
                .chain(held.iter().map(|h| &h.operation))
                .find(|op| op.fingerprint == *base)
                .cloned()
        });
        let location = spec.location();
        if base_op.is_none() || memory.location.as_deref() != Some(location.as_str()) {
            *memory = SourceMemory {
                location: Some(location),
                ..SourceMemory::default()
            };
        }
        let fetched = match &spec.kind {
            SourceKind::Snapshot(Location::Url(url)) => {
                self.fetch_url(spec, url, memory, tally, events).await?
            }
            SourceKind::Snapshot(Location::Path(path)) => {
                self.read_local(spec, path, memory, events).await?
            }
            SourceKind::Osv {
                base: Location::Path(base),
                ecosystem,
            } => {
                let dir = base.join(ecosystem);
                let zip = dir.join("all.zip");
                let path = if zip.is_file() { zip } else { dir };
                self.read_local(spec, &path, memory, events).await?
            }
            SourceKind::Osv {
                base: Location::Url(base),
                ecosystem,
            } => {
                self.fetch_osv(
                    spec,
                    base,
                    ecosystem,
                    base_op.as_ref(),
                    memory,
                    tally,
                    events,
                )
                .await?
            }
        };
        let mut report = RunReport {
            updater: name.to_string(),
            outcome: Outcome::NotModified,
            mode: fetched.mode,
            fallback: fetched.fallback,
            requests: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            operation: None,
            held: None,
            vulnerabilities: None,
            processed: Vec::new(),
        };
        let Some(snapshot) = fetched.snapshot else {
            return Ok(report);
        };
        events(RunEvent::Importing);
        let outcome = self
            .engine
            .import(name, &snapshot.fingerprint, &snapshot.vulnerabilities)
            .await?;
        memory.base = Some(snapshot.fingerprint.clone());
        report.vulnerabilities = Some(snapshot.vulnerabilities.len());
        report.operation = Some(outcome.operation().clone());
        match outcome {
            ImportOutcome::Created(op) => {
                report.outcome = Outcome::Created;
                let mut processed = self.engine.process_pending().await?;
                // The background processor may have taken it while we waited for its lock.
                if let Ok(id) = Uuid::parse_str(&op.reference) {
                    if !processed.iter().any(|p| p.operation == id) {
                        processed.extend(self.engine.processed(id));
                    }
                }
                report.processed = processed;
            }
            ImportOutcome::Unchanged(_) => report.outcome = Outcome::Unchanged,
            ImportOutcome::Held(h) => {
                report.outcome = Outcome::Held;
                report.held = Some(h.reason);
            }
        }
        Ok(report)
    }

    /// Reads a downloaded or local snapshot off the async threads.
    async fn read(
        &self,
        name: &str,
        path: PathBuf,
        keep: Option<tempfile::NamedTempFile>,
        events: &Events,
    ) -> Result<Snapshot, UpdaterError> {
        let (name, limits, events) = (name.to_string(), self.limits, Arc::clone(events));
        tokio::task::spawn_blocking(move || {
            let _keep = keep;
            tocsin_feeds::read_path_with_limits(&name, &path, &limits, &|p| {
                events(RunEvent::Reading {
                    done: p.done,
                    total: p.total,
                })
            })
        })
        .await
        .map_err(|e| UpdaterError::Io {
            what: "reading the snapshot".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(UpdaterError::from)
    }

    async fn read_local(
        &self,
        spec: &SourceSpec,
        path: &Path,
        memory: &mut SourceMemory,
        events: &Events,
    ) -> Result<Fetched, UpdaterError> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|source| UpdaterError::Io {
                what: format!("reading {}", path.display()),
                source,
            })?;
        // A file unchanged in size and time is not read again; a directory always is (its
        // files change without it).
        let signature = meta.is_file().then(|| {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}:{modified}", meta.len())
        });
        if signature.is_some() && memory.file == signature {
            return Ok(Fetched {
                mode: "local",
                fallback: None,
                snapshot: None,
            });
        }
        let snapshot = self
            .read(&spec.name, path.to_path_buf(), None, events)
            .await?;
        memory.file = signature;
        Ok(Fetched {
            mode: "local",
            fallback: None,
            snapshot: Some(snapshot),
        })
    }

    /// One GET, counted.
    async fn get(
        &self,
        spec: &SourceSpec,
        url: &Url,
        validators: Option<&Validators>,
        sink: Sink,
        tally: &mut Tally,
        events: &Events,
    ) -> Result<Got, UpdaterError> {
        let shown = url.to_string();
        let on_bytes = |so_far: u64, total: Option<u64>| {
            events(RunEvent::Downloading {
                url: shown.clone(),
                bytes: so_far,
                total,
            })
        };
        let validators = validators.filter(|v| !v.is_empty());
        let result = self
            .http
            .get(
                url,
                &spec.headers,
                validators,
                sink,
                &on_bytes,
                &mut tally.requests,
            )
            .await;
        if let Ok(Got::Body { bytes: n, .. }) = &result {
            tally.bytes += n;
        }
        result
    }

    /// A snapshot file, conditionally on the validators kept for it: `None` when not modified
    /// (a 404 is an error: a source that vanished must not read as "nothing changed").
    async fn archive(
        &self,
        spec: &SourceSpec,
        url: &Url,
        memory: &mut SourceMemory,
        tally: &mut Tally,
        events: &Events,
    ) -> Result<Option<Snapshot>, UpdaterError> {
        let got = self
            .get(spec, url, Some(&memory.archive), Sink::File, tally, events)
            .await?;
        match got {
            Got::NotModified => Ok(None),
            Got::NotFound => Err(UpdaterError::Status {
                method: "GET",
                url: url.to_string(),
                status: 404,
                attempts: 1,
            }),
            Got::Body {
                body, validators, ..
            } => {
                let snapshot = self.read_body(spec, body, events).await?;
                memory.archive = validators;
                Ok(Some(snapshot))
            }
        }
    }

    async fn fetch_url(
        &self,
        spec: &SourceSpec,
        url: &Url,
        memory: &mut SourceMemory,
        tally: &mut Tally,
        events: &Events,
    ) -> Result<Fetched, UpdaterError> {
        let snapshot = self.archive(spec, url, memory, tally, events).await?;
        Ok(Fetched {
            mode: "full",
            fallback: None,
            snapshot,
        })
    }

    async fn read_body(
        &self,
        spec: &SourceSpec,
        body: Body,
        events: &Events,
    ) -> Result<Snapshot, UpdaterError> {
        match body {
            Body::File(file) => {
                let path = file.path().to_path_buf();
                self.read(&spec.name, path, Some(file), events).await
            }
            Body::Bytes(b) => {
                let (name, limits) = (spec.name.clone(), self.limits);
                tokio::task::spawn_blocking(move || {
                    tocsin_feeds::read_bytes_with_limits(&name, &b, &limits, &|_| {})
                })
                .await
                .map_err(|e| UpdaterError::Io {
                    what: "reading the snapshot".into(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .map_err(UpdaterError::from)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_osv(
        &self,
        spec: &SourceSpec,
        base: &Url,
        ecosystem: &str,
        base_op: Option<&UpdateOperation>,
        memory: &mut SourceMemory,
        tally: &mut Tally,
        events: &Events,
    ) -> Result<Fetched, UpdaterError> {
        let url = |file: &str| -> Result<Url, UpdaterError> {
            match Location::Url(base.clone()).join(&[ecosystem, file]) {
                Location::Url(u) => Ok(u),
                Location::Path(_) => Err(UpdaterError::UnknownSource(spec.name.clone())),
            }
        };
        let list_url = url("modified_id.csv")?;
        let full_due = memory
            .last_full
            .is_none_or(|t| now() - t >= self.config.full_refresh);
        let fallback = match (memory.cursor, base_op) {
            _ if full_due => "the last full read is older than full_refresh".to_string(),
            (Some(cursor), Some(op)) => {
                match self
                    .incremental(spec, &list_url, &url, cursor, op, memory, tally, events)
                    .await?
                {
                    Ok(fetched) => return Ok(fetched),
                    Err(why) => why,
                }
            }
            (None, _) => "no position in modified_id.csv from a previous run".to_string(),
            (Some(_), None) => {
                "the updater's content is not the snapshot the previous run read".to_string()
            }
        };
        tracing::debug!(updater = %spec.name, %fallback, "reading the full archive");
        // The list first: every record modified after its newest entry is newer than the
        // archive read next, so the next run's list shows it.
        let mut listed: Option<Vec<String>> = None;
        let cursor = match self
            .get(
                spec,
                &list_url,
                None,
                Sink::Memory(MAX_LIST_BYTES),
                tally,
                events,
            )
            .await
        {
            Ok(Got::Body {
                body: Body::Bytes(b),
                validators,
                ..
            }) => match osv::parse_list(&b) {
                Ok(list) => {
                    memory.list = validators;
                    listed = Some(list.iter().map(|m| m.id.clone()).collect());
                    list.first().map(|m| m.at)
                }
                Err(why) => {
                    tracing::warn!(updater = %spec.name, %why, "modified_id.csv is unusable; following the full archive only");
                    None
                }
            },
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(updater = %spec.name, error = %e, "modified_id.csv could not be fetched; following the full archive only");
                None
            }
        };
        let zip_url = url("all.zip")?;
        let snapshot = self.archive(spec, &zip_url, memory, tally, events).await?;
        memory.silent = match (&listed, &snapshot) {
            (Some(ids), Some(snapshot)) => osv::silent(ids, &snapshot.vulnerabilities),
            // Not modified: the archive is the one the silent records were found in.
            (Some(ids), None) => {
                let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
                memory
                    .silent
                    .iter()
                    .filter(|id| ids.contains(id.as_str()))
                    .cloned()
                    .collect()
            }
            (None, _) => Vec::new(),
        };
        memory.cursor = cursor;
        if cursor.is_none() {
            memory.list = Validators::default();
        }
        memory.last_full = Some(now());
        Ok(Fetched {
            mode: "full",
            fallback: Some(fallback),
            snapshot,
        })
    }

    /// An incremental run: `Ok(Err(why))` asks for the full archive instead.
    #[allow(clippy::too_many_arguments)]
    async fn incremental(
        &self,
        spec: &SourceSpec,
        list_url: &Url,
        url: &(dyn Fn(&str) -> Result<Url, UpdaterError> + Sync),
        cursor: OffsetDateTime,
        base_op: &UpdateOperation,
        memory: &mut SourceMemory,
        tally: &mut Tally,
        events: &Events,
    ) -> Result<Result<Fetched, String>, UpdaterError> {
        let got = self
            .get(
                spec,
                list_url,
                Some(&memory.list),
                Sink::Memory(MAX_LIST_BYTES),
                tally,
                events,
            )
            .await?;
        let (list_bytes, list_validators) = match got {
            Got::NotModified => {
                return Ok(Ok(Fetched {
                    mode: "incremental",
                    fallback: None,
                    snapshot: None,
                }))
            }
            Got::NotFound => return Ok(Err("modified_id.csv is missing (404)".into())),
            Got::Body {
                body: Body::Bytes(b),
                validators,
                ..
            } => (b, validators),
            Got::Body { .. } => return Ok(Err("modified_id.csv was not read into memory".into())),
        };
        let list = match osv::parse_list(&list_bytes) {
            Ok(list) => list,
            Err(why) => return Ok(Err(format!("modified_id.csv {why}"))),
        };
        let ids = match osv::plan(&list, cursor, self.config.max_incremental) {
            Plan::Full(why) => return Ok(Err(why)),
            Plan::Fetch(ids) => ids,
        };
        let total = ids.len() as u64;
        events(RunEvent::Records { done: 0, total });
        let record_limit = self.limits.max_member_bytes;
        let mut fetched: Vec<(String, Vec<u8>)> = Vec::with_capacity(ids.len());
        {
            let quiet: Events = no_events();
            let mut stream = futures::stream::iter(ids.iter().cloned())
                .map(|id| {
                    let quiet = Arc::clone(&quiet);
                    async move {
                        let file = format!("{id}.json");
                        let u = url(&file)?;
                        let mut one = Tally::default();
                        let got = self
                            .get(spec, &u, None, Sink::Memory(record_limit), &mut one, &quiet)
                            .await;
                        Ok::<_, UpdaterError>((id, got, one))
                    }
                })
                .buffer_unordered(RECORD_CONCURRENCY);
            let mut missing = None;
            while let Some((id, got, one)) = stream.try_next().await? {
                tally.requests += one.requests;
                tally.bytes += one.bytes;
                match got? {
                    Got::Body {
                        body: Body::Bytes(data),
                        ..
                    } => fetched.push((id, data)),
                    _ => {
                        missing.get_or_insert(id);
                    }
                }
                events(RunEvent::Records {
                    done: fetched.len() as u64,
                    total,
                });
            }
            if let Some(id) = missing {
                return Ok(Err(format!(
                    "record {id} is listed in modified_id.csv but {id}.json is missing"
                )));
            }
        }
        for (id, data) in &fetched {
            match osv::record_id(data) {
                Some(found) if found == *id => {}
                found => return Ok(Err(format!("{id}.json holds record {found:?}, not {id}"))),
            }
        }
        let (name, limits) = (spec.name.clone(), self.limits);
        let fresh = tokio::task::spawn_blocking(move || {
            let mut out: Vec<Addressed> = Vec::new();
            let mut silent: Vec<String> = Vec::new();
            for (id, data) in fetched {
                let snap = tocsin_feeds::read_record(&name, &format!("{id}.json"), &data, &limits)?;
                if snap.vulnerabilities.is_empty() {
                    silent.push(id);
                }
                out.extend(snap.vulnerabilities);
            }
            Ok::<_, tocsin_feeds::FeedError>((out, silent))
        })
        .await
        .map_err(|e| UpdaterError::Io {
            what: "reading fetched records".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
        let (fresh, fresh_silent) = fresh;
        let store = self.engine.store();
        let op = Uuid::parse_str(&base_op.reference).map_err(|e| {
            UpdaterError::Store(StoreError::Corrupt(format!(
                "update operation reference {:?}: {e}",
                base_op.reference
            )))
        })?;
        let prev_ids = store.operation_vulnerabilities(op).await?;
        let previous: Vec<Addressed> = store
            .vulnerabilities(&prev_ids)
            .await?
            .into_iter()
            .map(|(_, v)| Addressed::new(v))
            .collect();
        if previous.len() != prev_ids.len() {
            return Ok(Err(format!(
                "the previous snapshot's records are not all stored ({} of {})",
                previous.len(),
                prev_ids.len()
            )));
        }
        let replaced: HashSet<String> = ids.into_iter().collect();
        if let Err(why) = osv::consistent(&list, cursor, &previous, &memory.silent) {
            return Ok(Err(why));
        }
        let silent: Vec<String> = {
            let mut s: Vec<String> = memory
                .silent
                .iter()
                .filter(|id| !replaced.contains(*id))
                .cloned()
                .chain(fresh_silent)
                .collect();
            s.sort();
            s.dedup();
            s
        };
        let name = spec.name.clone();
        let snapshot =
            tokio::task::spawn_blocking(move || osv::merge(&name, previous, &replaced, fresh))
                .await
                .map_err(|e| UpdaterError::Io {
                    what: "merging fetched records".into(),
                    source: std::io::Error::other(e.to_string()),
                })?;
        memory.list = list_validators;
        memory.cursor = list.first().map(|m| m.at).or(Some(cursor));
        memory.silent = silent;
        Ok(Ok(Fetched {
            mode: "incremental",
            fallback: None,
            snapshot: Some(snapshot),
        }))
    }

    /// Runs every source on its schedule until `stop`: one task per source, so that a slow or
    /// failing one never delays another.
    pub async fn follow(self: Arc<Self>, stop: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for spec in &self.config.sources {
            let (me, name, stop) = (Arc::clone(&self), spec.name.clone(), stop.clone());
            tasks.spawn(async move { me.follow_one(&name, stop).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn follow_one(&self, name: &str, stop: CancellationToken) {
        follow_schedule(self.engine.store(), name, stop, || async {
            // A failure is logged by the run and recorded in the store, whose schedule says
            // when to try again.
            let _ = self.run(name, true, no_events()).await;
        })
        .await
    }
}

/// Runs source `name` whenever the schedule shared in the store says it is due, until `stop`:
/// `run` claims it (only when due), runs it and records the next run.
pub(crate) async fn follow_schedule<F, Fut>(
    store: &Arc<dyn tocsin_store::Store>,
    name: &str,
    stop: CancellationToken,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        run().await;
        let next = match store.sources().await {
            Ok(states) => states.into_iter().find(|s| s.name == name).and_then(|s| {
                match (s.next_run, s.lease_until) {
                    // Someone holds it: look again when the lease ends.
                    (_, Some(until)) if until > now() => Some(until),
                    (next, _) => next,
                }
            }),
            Err(e) => {
                tracing::warn!(updater = name, error = %e, "reading the updater schedule");
                None
            }
        };
        let wait = match next {
            Some(at) => (at - now())
                .max(time::Duration::ZERO)
                .unsigned_abs()
                .min(POLL),
            None => POLL,
        };
        // A little jitter keeps processes sharing a database from claiming in lockstep.
        let wait = wait + Duration::from_millis(rand::thread_rng().gen_range(0..500));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// A source's lease and schedule in the store: what every followed source (a feed, a Clair)
/// shares around its own work.
pub(crate) struct Lease<'a> {
    pub(crate) store: &'a dyn tocsin_store::Store,
    pub(crate) name: &'a str,
    pub(crate) holder: Uuid,
    pub(crate) lease: Duration,
    pub(crate) interval: Duration,
}

/// How a leased run went.
pub(crate) struct Leased<T> {
    pub(crate) result: Result<T, UpdaterError>,
    pub(crate) started: OffsetDateTime,
    pub(crate) elapsed: Duration,
    /// Consecutive failures, counting this run as one.
    pub(crate) failures: u32,
    pub(crate) next_run: OffsetDateTime,
}

impl Lease<'_> {
    /// Claims the source (`Ok(None)`: not due when `due_only`, or held by another process), runs
    /// `work` on its stored state, and records the outcome and next run (the period after the
    /// start on success, a growing backoff after a failure), keeping the state `work` returns
    /// only on success. A lease lost during the run is logged: the other holder's record wins.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        due_only: bool,
        work: F,
    ) -> Result<Option<Leased<T>>, UpdaterError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = (Result<T, UpdaterError>, String)>,
    {
        let started = now();
        let Some(claimed) = self
            .store
            .claim_source(self.name, self.holder, started, self.lease, due_only)
            .await?
        else {
            return Ok(None);
        };
        let clock = Instant::now();
        let (result, state) = work(claimed.state).await;
        let elapsed = clock.elapsed();
        let failures = claimed.failures.saturating_add(1);
        let next_run = match &result {
            Ok(_) => started + self.interval,
            Err(_) => now() + failure_backoff(failures, self.interval),
        };
        let run = SourceRun {
            started,
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            state: result.as_ref().ok().map(|_| state),
            next_run,
        };
        match self
            .store
            .finish_source_run(self.name, self.holder, &run)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(why)) => {
                tracing::warn!(source = self.name, %why, "the lease was lost during the run; another process took the source over")
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Some(Leased {
            result,
            started,
            elapsed,
            failures,
            next_run,
        }))
    }
}

/// How long a failing source waits: a minute, doubling per failure, capped at its period, with
/// up to a tenth more of jitter.
pub(crate) fn failure_backoff(failures: u32, interval: Duration) -> Duration {
    let base = FAILURE_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(interval);
    base + base.mul_f64(rand::thread_rng().gen::<f64>() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_backoff_grows_to_the_period() {
        let hour = Duration::from_secs(3600);
        let first = failure_backoff(1, hour);
        assert!(first >= FAILURE_BACKOFF && first <= FAILURE_BACKOFF.mul_f64(1.1));
        let third = failure_backoff(3, hour);
        assert!(third >= FAILURE_BACKOFF * 4);
        assert!(failure_backoff(30, hour) <= hour.mul_f64(1.1));
        assert!(failure_backoff(30, hour) >= hour);
    }
}
