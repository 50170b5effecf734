//! Fronting a Clair: tocsin in place of Clair's notifier (`notifier.matcher_addr`,
//! `notifier.indexer_addr`).
//!
//! Clair's notifier polls the matcher for each updater's newest update operation and diffs it
//! against the operation before it *in the matcher*: operations created between two polls are
//! never notified one by one, and when the one before was garbage-collected its changes are
//! lost or notified as "everything added". tocsin instead **mirrors** every update operation
//! Clair retains into its own store, in order: each is the previous mirrored operation's
//! vulnerabilities with the matcher's update diff applied, or, when that previous operation is
//! no longer retained (or the diff does not apply), the operation's whole content (an update
//! diff without `prev`). Mirrored operations are then processed like any other — diffed against
//! the last operation tocsin processed, committed exactly once across crashes and processes —
//! with the manifests each vulnerability affects taken from Clair's indexer
//! ([`Clair::affectedness`]). So a Clair that is down or slow delays notifications but never
//! loses a change, and tocsin having fallen behind Clair's retention (`update_retention`) is
//! reported ([`Gap`], a warn log line, `tocsin_clair_retention_gaps_total`) while the changes
//! are still found by tocsin's own diff.
//!
//! The calls are Clair's notifier's (`clair:notifier/poller.go`, `processor.go`): the newest
//! operations with `If-None-Match` on the matcher's ETag, all retained operations, update diffs,
//! and the indexer's affected-manifest lookup in chunks of 1000; signed with a PSK JWT (issuer
//! `clair-intraservice`) when `auth.psk` is set. Every call has a connect timeout, a whole-call
//! timeout, a size bound and retries with backoff ([`FetchOptions`]).
//!
//! One call is tocsin's own: from claircore v1.5.51 the lookup filters the versions of Go and
//! npm packages in SQL by the vulnerability's range, and `update_diff` carries no range, so it
//! answers every manifest holding such a package whatever its version (checked against a real
//! Clair: 171 Go advisories for an image two of them affect). For those ecosystems tocsin keeps
//! a manifest only when Clair's own vulnerability report for it (`GET
//! /matcher/api/v1/vulnerability_report/{digest}`, once per manifest and lookup) names the
//! advisory for that package ([`CONFIRMED_ECOSYSTEMS`]).
//!
//! No crate speaks Clair's internal matcher and indexer API; the HTTP is reqwest's.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use tocsin_deliver::jwt::{PskSigner, INTRASERVICE_ISSUER};
use tocsin_deliver::PskKey;
use tocsin_engine::{AffectedManifests, Engine, Guard, Processed};
use tocsin_model::claircore::{self, UpdateOperation};
use tocsin_model::vuln::{Addressed, Affected, VulnId, Vulnerability};
use tocsin_model::Digest;
use tocsin_store::ImportOutcome;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::FetchOptions;
use crate::http::{Http, Reply};
use crate::run::{follow_schedule, Lease, Leased};
use crate::UpdaterError;

/// The followed-source name the Clair mirror's schedule, lease and state are kept under.
pub const CLAIR_SOURCE: &str = "clair";

/// The prefix of a mirrored operation's fingerprint; the rest is the Clair operation's ref.
const FINGERPRINT_PREFIX: &str = "clair:";

/// Vulnerabilities per `affected_manifest` request, as Clair's notifier sends them.
const AFFECTED_CHUNK: usize = 1000;

/// Ecosystems whose claircore matchers (`gobin`, `nodejs`) are version-authoritative, so that
/// the affected-manifest lookup, lacking the range, ignores versions (module doc): their
/// answers are confirmed with Clair's vulnerability report of each manifest.
pub const CONFIRMED_ECOSYSTEMS: [&str; 2] = ["Go", "npm"];

/// Where the Clair is and how to talk to it.
#[derive(Clone, Debug)]
pub struct ClairConfig {
    /// The matcher's base URL (`notifier.matcher_addr`).
    pub matcher: Url,
    /// The indexer's base URL (`notifier.indexer_addr`).
    pub indexer: Url,
    /// `auth.psk.key`: requests are signed when set.
    pub psk: Option<PskKey>,
    /// How often the matcher is polled (`notifier.poll_interval`).
    pub poll_interval: Duration,
    /// Timeouts, retries and size bound of every call.
    pub fetch: FetchOptions,
    /// How long a run holds the mirror's lease before another process may take it over.
    pub lease: Duration,
}

impl ClairConfig {
    /// The matcher's address as logs and status pages show it (password hidden).
    pub fn shown_matcher(&self) -> String {
        tocsin_deliver::redact_url(self.matcher.as_str())
    }

    /// The indexer's address as logs and status pages show it (password hidden).
    pub fn shown_indexer(&self) -> String {
        tocsin_deliver::redact_url(self.indexer.as_str())
    }
}

/// A Clair's matcher and indexer, as tocsin calls them.
#[derive(Debug)]
pub struct Clair {
    http: Http,
    matcher: Url,
    indexer: Url,
    signer: Option<PskSigner>,
    config: ClairConfig,
}

/// One `update_diff` answer.
#[derive(Debug, Deserialize)]
struct Diff {
    #[serde(default)]
    added: Option<Vec<claircore::Vulnerability>>,
    #[serde(default)]
    removed: Option<Vec<claircore::Vulnerability>>,
}

/// One `affected_manifest` answer (the vulnerabilities it echoes are not needed).
#[derive(Debug, Deserialize)]
struct AffectedAnswer {
    #[serde(default)]
    vulnerable_manifests: BTreeMap<String, Vec<String>>,
}

/// What tocsin reads of a vulnerability report: its vulnerabilities' names and packages.
#[derive(Debug, Deserialize)]
struct ReportAnswer {
    #[serde(default)]
    vulnerabilities: Option<HashMap<String, ReportVulnerability>>,
}

#[derive(Debug, Deserialize)]
struct ReportVulnerability {
    #[serde(default)]
    name: String,
    #[serde(default)]
    package: Option<ReportPackage>,
}

#[derive(Debug, Deserialize)]
struct ReportPackage {
    #[serde(default)]
    name: String,
}

/// Update operations by updater, newest first, as the matcher lists them.
pub type Operations = BTreeMap<String, Vec<UpdateOperation>>;

/// The decoders of a Clair's answers: pure, and public for the fuzz targets. Each answer is
/// already bounded in size when it arrives (`max_download_size`); serde_json keeps its
/// recursion limit.
pub mod answers {
    use super::*;

    fn bad(what: &str, e: impl std::fmt::Display) -> UpdaterError {
        UpdaterError::Clair {
            what: what.to_string(),
            message: format!("the answer is not what Clair sends: {e}"),
        }
    }

    /// `update_operation`: operations by updater, newest first.
    pub fn operations(body: &[u8]) -> Result<Operations, UpdaterError> {
        serde_json::from_slice(body).map_err(|e| bad("the update operations", e))
    }

    /// `update_diff` of an operation of `updater`: (added, removed) as tocsin's vulnerabilities.
    pub fn diff(updater: &str, body: &[u8]) -> Result<Changes, UpdaterError> {
        let d: Diff = serde_json::from_slice(body).map_err(|e| bad("an update diff", e))?;
        Ok((
            convert(updater, d.added.unwrap_or_default())?,
            convert(updater, d.removed.unwrap_or_default())?,
        ))
    }

    /// `affected_manifest` for the vulnerabilities numbered `asked` (their ids in the
    /// request): (vulnerability number, manifest) pairs. A number that was not asked, or a
    /// manifest that is not a digest, is an error.
    pub fn affected(
        body: &[u8],
        asked: std::ops::Range<usize>,
    ) -> Result<Vec<(usize, Digest)>, UpdaterError> {
        let what = "the affected manifests";
        let answer: AffectedAnswer = serde_json::from_slice(body).map_err(|e| bad(what, e))?;
        let mut out = Vec::new();
        for (digest, ids) in answer.vulnerable_manifests {
            let d = Digest::parse(&digest).map_err(|e| UpdaterError::Clair {
                what: what.into(),
                message: format!("{digest:?} is not a digest: {e}"),
            })?;
            for id in ids {
                let n = id
                    .parse::<usize>()
                    .ok()
                    .filter(|i| asked.contains(i))
                    .ok_or_else(|| UpdaterError::Clair {
                        what: what.into(),
                        message: format!("names vulnerability {id:?}, which was not asked"),
                    })?;
                out.push((n, d.clone()));
            }
        }
        Ok(out)
    }

    /// `vulnerability_report`: the (advisory, package name) pairs it names.
    pub fn report_pairs(body: &[u8]) -> Result<HashSet<(String, String)>, UpdaterError> {
        let answer: ReportAnswer =
            serde_json::from_slice(body).map_err(|e| bad("a vulnerability report", e))?;
        Ok(answer
            .vulnerabilities
            .unwrap_or_default()
            .into_values()
            .map(|v| (v.name, v.package.map(|p| p.name).unwrap_or_default()))
            .collect())
    }
}

/// An update diff as tocsin's vulnerabilities: (added, removed), by content address.
pub type Changes = (HashMap<VulnId, Addressed>, HashMap<VulnId, Addressed>);

impl Clair {
    /// A client for the Clair `config` names.
    pub fn new(config: ClairConfig) -> Result<Arc<Clair>, UpdaterError> {
        Ok(Arc::new(Clair {
            http: Http::new(config.fetch)?,
            matcher: config.matcher.clone(),
            indexer: config.indexer.clone(),
            signer: config
                .psk
                .as_ref()
                .map(|k| PskSigner::with_issuer(k, INTRASERVICE_ISSUER)),
            config,
        }))
    }

    /// The affectedness source the engine processes mirrored operations with.
    pub fn affectedness(self: &Arc<Self>) -> Arc<dyn AffectedManifests> {
        Arc::clone(self) as Arc<dyn AffectedManifests>
    }

    fn url(base: &Url, path: &str) -> Result<Url, UpdaterError> {
        base.join(path).map_err(|e| UpdaterError::Clair {
            what: format!("building the URL of {path} on {base}"),
            message: e.to_string(),
        })
    }

    /// One call, signed afresh on every attempt.
    async fn call(
        &self,
        method: Method,
        url: &Url,
        extra: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + Sync),
        requests: &mut u32,
    ) -> Result<Reply, UpdaterError> {
        let sign = |b: reqwest::RequestBuilder| {
            let b = extra(b);
            match self.signer.as_ref().map(PskSigner::sign) {
                Some(Ok(token)) => b.header(AUTHORIZATION, format!("Bearer {token}")),
                Some(Err(e)) => {
                    // HS256 over a key already decoded does not fail; Clair would then
                    // answer 401, which says more than a panic.
                    tracing::warn!(error = %e, "signing a request to Clair");
                    b
                }
                None => b,
            }
        };
        self.http
            .call(
                method,
                url,
                &sign,
                self.config.fetch.max_download_size,
                requests,
            )
            .await
    }

    /// The newest operation of every updater, unless the matcher's ETag is still `etag`
    /// (`None`): (new ETag, operations).
    async fn latest(
        &self,
        etag: Option<&str>,
        requests: &mut u32,
    ) -> Result<Option<(Option<String>, Operations)>, UpdaterError> {
        let mut url = Self::url(&self.matcher, "/matcher/api/v1/internal/update_operation")?;
        url.set_query(Some("kind=vulnerability&latest=true"));
        let etag_header = etag.and_then(|e| HeaderValue::from_str(e).ok());
        let reply = self
            .call(
                Method::GET,
                &url,
                &|b| match &etag_header {
                    Some(v) => b.header(IF_NONE_MATCH, v.clone()),
                    None => b,
                },
                requests,
            )
            .await?;
        if reply.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let etag = reply
            .headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Some((etag, answers::operations(&reply.body)?)))
    }

    /// Every retained operation of every updater, newest first.
    async fn operations(&self, requests: &mut u32) -> Result<Operations, UpdaterError> {
        let mut url = Self::url(&self.matcher, "/matcher/api/v1/internal/update_operation")?;
        url.set_query(Some("kind=vulnerability"));
        let reply = self.call(Method::GET, &url, &|b| b, requests).await?;
        answers::operations(&reply.body)
    }

    /// `cur`'s changes since `prev`, or its whole content when `prev` is `None`.
    async fn diff(
        &self,
        updater: &str,
        cur: &str,
        prev: Option<&str>,
        requests: &mut u32,
    ) -> Result<Changes, UpdaterError> {
        let mut url = Self::url(&self.matcher, "/matcher/api/v1/internal/update_diff")?;
        match prev {
            Some(p) => url
                .query_pairs_mut()
                .append_pair("cur", cur)
                .append_pair("prev", p),
            None => url.query_pairs_mut().append_pair("cur", cur),
        };
        let reply = self.call(Method::GET, &url, &|b| b, requests).await?;
        answers::diff(updater, &reply.body)
    }

    /// The manifests each of `vulns` affects, by the indexer.
    async fn affected_manifests(
        &self,
        vulns: &[&Vulnerability],
    ) -> Result<Vec<Vec<Digest>>, UpdaterError> {
        let url = Self::url(&self.indexer, "/indexer/api/v1/internal/affected_manifest/")?;
        let mut out = vec![Vec::new(); vulns.len()];
        let mut requests = 0;
        for (chunk_no, chunk) in vulns.chunks(AFFECTED_CHUNK).enumerate() {
            let base = chunk_no * AFFECTED_CHUNK;
            let body: Vec<claircore::Vulnerability> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| to_clair(v, &(base + i).to_string()))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({ "vulnerabilities": body }))
                .map_err(|e| UpdaterError::Clair {
                    what: "encoding an affected-manifest request".into(),
                    message: e.to_string(),
                })?;
            let reply = self
                .call(
                    Method::POST,
                    &url,
                    &|b| {
                        b.header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone())
                    },
                    &mut requests,
                )
                .await?;
            for (slot, d) in answers::affected(&reply.body, base..base + chunk.len())? {
                out[slot].push(d);
            }
        }
        metrics::counter!("tocsin_clair_requests_total", "call" => "affected_manifest")
            .increment(u64::from(requests));
        self.confirm(vulns, &mut out).await?;
        Ok(out)
    }

    /// Keeps, for the vulnerabilities of [`CONFIRMED_ECOSYSTEMS`], only the manifests whose
    /// vulnerability report names the advisory for that package; a manifest Clair no longer
    /// knows (404) is not affected.
    async fn confirm(
        &self,
        vulns: &[&Vulnerability],
        out: &mut [Vec<Digest>],
    ) -> Result<(), UpdaterError> {
        let mut reports: HashMap<Digest, Option<HashSet<(String, String)>>> = HashMap::new();
        let (mut requests, mut dropped) = (0, 0u64);
        for (v, manifests) in vulns.iter().zip(out.iter_mut()) {
            if !CONFIRMED_ECOSYSTEMS.contains(&v.package.ecosystem.as_str()) {
                continue;
            }
            let pair = (v.name.clone(), v.package.name.clone());
            let mut kept = Vec::with_capacity(manifests.len());
            for d in std::mem::take(manifests) {
                if !reports.contains_key(&d) {
                    let report = self.vulnerability_report(&d, &mut requests).await?;
                    reports.insert(d.clone(), report);
                }
                if reports
                    .get(&d)
                    .and_then(Option::as_ref)
                    .is_some_and(|pairs| pairs.contains(&pair))
                {
                    kept.push(d);
                } else {
                    dropped += 1;
                }
            }
            *manifests = kept;
        }
        if requests > 0 {
            metrics::counter!("tocsin_clair_requests_total", "call" => "vulnerability_report")
                .increment(u64::from(requests));
            metrics::counter!("tocsin_clair_unconfirmed_total").increment(dropped);
            tracing::info!(
                manifests = reports.len(),
                unconfirmed = dropped,
                "confirmed the indexer's Go and npm answers with Clair's vulnerability reports"
            );
        }
        Ok(())
    }

    /// The (advisory, package) pairs of Clair's vulnerability report for `manifest`; `None`
    /// when Clair does not know the manifest.
    async fn vulnerability_report(
        &self,
        manifest: &Digest,
        requests: &mut u32,
    ) -> Result<Option<HashSet<(String, String)>>, UpdaterError> {
        let url = Self::url(
            &self.matcher,
            &format!("/matcher/api/v1/vulnerability_report/{manifest}"),
        )?;
        match self.call(Method::GET, &url, &|b| b, requests).await {
            Ok(reply) => answers::report_pairs(&reply.body).map(Some),
            Err(UpdaterError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl AffectedManifests for Clair {
    async fn affected(&self, vulns: &[&Vulnerability]) -> Result<Vec<Vec<Digest>>, String> {
        self.affected_manifests(vulns)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A vulnerability as the indexer's lookup wants it: Clair's own fields, the package's
/// architecture included (the matchers compare it under `arch_op`).
fn to_clair(v: &Vulnerability, id: &str) -> claircore::Vulnerability {
    let mut c = v.to_claircore(id);
    if let (Affected::Claircore { arch, .. }, Some(p)) = (&v.affected, c.package.as_mut()) {
        p.arch = arch.clone();
    }
    c
}

/// Which of Clair's operations of one updater to mirror, oldest first, and from what.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// Clair refs to mirror, oldest first.
    todo: Vec<String>,
    /// The Clair ref tocsin's latest operation mirrors, when Clair still retains it (the first
    /// diff's `prev`).
    base: Option<String>,
    /// tocsin's latest mirrored ref, when Clair no longer retains it.
    gap: Option<String>,
}

/// Plans one updater: `retained` newest first, `mirrored` the Clair ref of tocsin's latest
/// operation of that updater (`None` when it has none, or its latest was not mirrored from
/// Clair). With nothing mirrored yet, only the newest operation is (as Clair's notifier
/// starts); when the mirrored one is gone from Clair, every retained operation is, the oldest
/// from its whole content.
fn plan(retained: &[String], mirrored: Option<&str>) -> Plan {
    let Some(mark) = mirrored else {
        return Plan {
            todo: retained.first().cloned().into_iter().collect(),
            base: None,
            gap: None,
        };
    };
    match retained.iter().position(|r| r == mark) {
        Some(i) => Plan {
            todo: retained[..i].iter().rev().cloned().collect(),
            base: Some(mark.to_string()),
            gap: None,
        },
        None => Plan {
            todo: retained.iter().rev().cloned().collect(),
            base: None,
            gap: Some(mark.to_string()),
        },
    }
}

/// The Clair ref a tocsin operation mirrors, from its fingerprint.
fn mirrored_ref(op: &UpdateOperation) -> Option<&str> {
    op.fingerprint.strip_prefix(FINGERPRINT_PREFIX)
}

/// An operation mirrored by a run.
#[derive(Clone, Debug, Serialize)]
pub struct Mirrored {
    /// The updater.
    pub updater: String,
    /// Clair's operation.
    pub clair: String,
    /// tocsin's operation.
    pub operation: String,
    /// `diff` (the previous mirrored operation plus the update diff) or `full`.
    pub mode: &'static str,
    /// Vulnerabilities in it.
    pub vulnerabilities: usize,
}

/// tocsin's newest mirrored operation was no longer retained by Clair: operations between it
/// and `resumed_from` were never seen one by one (their changes are in the first diff after).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Gap {
    /// The updater.
    pub updater: String,
    /// The Clair operation tocsin mirrored last.
    pub missing: String,
    /// Clair's oldest retained operation, mirrored from its whole content.
    pub resumed_from: String,
}

/// What one run of the mirror did.
#[derive(Clone, Debug, Serialize)]
pub struct ClairReport {
    /// `not_modified` (the matcher's ETag held), `up_to_date` or `mirrored`.
    pub outcome: &'static str,
    /// Operations mirrored, oldest first per updater.
    pub mirrored: Vec<Mirrored>,
    /// Updaters tocsin had fallen behind Clair's retention on.
    pub gaps: Vec<Gap>,
    /// Operations processed (the mirrored ones, and any left from an earlier failed pass).
    #[serde(skip)]
    pub processed: Vec<Processed>,
    /// Requests to the matcher (retries included); the indexer's are counted in the metric.
    pub requests: u32,
    /// How long the run took.
    #[serde(with = "secs")]
    pub elapsed: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// The mirror's own state, kept with its schedule in the store.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Memory {
    /// The matcher's ETag after the last complete run.
    #[serde(default)]
    etag: Option<String>,
    /// The last gap found, for status pages.
    #[serde(default)]
    last_gap: Option<Gap>,
}

impl Memory {
    fn parse(text: &str) -> Memory {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// Mirrors a Clair's update operations into tocsin on the poll interval (see the module doc).
pub struct ClairFollower {
    engine: Arc<Engine>,
    clair: Arc<Clair>,
    holder: Uuid,
    running: tokio::sync::Mutex<()>,
}

impl ClairFollower {
    /// Mirrors `clair` into `engine` (whose affectedness source should be
    /// [`Clair::affectedness`]).
    pub fn new(engine: Arc<Engine>, clair: Arc<Clair>) -> ClairFollower {
        ClairFollower {
            engine,
            clair,
            holder: Uuid::new_v4(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The Clair followed.
    pub fn clair(&self) -> &ClairConfig {
        &self.clair.config
    }

    /// Runs now, whatever the schedule, unless another run holds the mirror
    /// ([`UpdaterError::Busy`]).
    pub async fn run_now(&self) -> Result<ClairReport, UpdaterError> {
        match self.run(false).await? {
            Some(r) => Ok(r),
            None => Err(UpdaterError::Busy {
                name: CLAIR_SOURCE.into(),
                why: "another run (in this or another process) holds it".into(),
            }),
        }
    }

    async fn run(&self, due_only: bool) -> Result<Option<ClairReport>, UpdaterError> {
        let Ok(_local) = self.running.try_lock() else {
            return Ok(None);
        };
        let lease = Lease {
            store: self.engine.store().as_ref(),
            name: CLAIR_SOURCE,
            holder: self.holder,
            lease: self.clair.config.lease,
            interval: self.clair.config.poll_interval,
        };
        let mut requests = 0;
        let mut gaps = Vec::new();
        let (counted, gapped) = (&mut requests, &mut gaps);
        let Some(Leased {
            result,
            started,
            elapsed,
            failures,
            next_run,
        }) = lease
            .run(due_only, move |state| async move {
                let mut memory = Memory::parse(&state);
                let mirrored = self.mirror(&mut memory, counted, gapped).await;
                // Processing runs whatever mirroring did: an operation mirrored by an earlier
                // run whose processing failed (Clair's indexer down) is still pending.
                let result = match mirrored {
                    Ok(m) => match self.engine.process_pending().await {
                        Ok(p) => Ok((m, p)),
                        Err(e) => Err(UpdaterError::Engine(e)),
                    },
                    Err(e) => Err(e),
                };
                (result, serde_json::to_string(&memory).unwrap_or_default())
            })
            .await?
        else {
            return Ok(None);
        };
        metrics::counter!("tocsin_clair_requests_total", "call" => "matcher")
            .increment(u64::from(requests));
        match result {
            Ok((mirrored, processed)) => {
                let outcome = match &mirrored {
                    None => "not_modified",
                    Some(m) if m.is_empty() => "up_to_date",
                    Some(_) => "mirrored",
                };
                metrics::counter!("tocsin_clair_runs_total", "outcome" => outcome).increment(1);
                metrics::gauge!("tocsin_clair_last_success_timestamp_seconds")
                    .set(started.unix_timestamp() as f64);
                let report = ClairReport {
                    outcome,
                    mirrored: mirrored.unwrap_or_default(),
                    gaps,
                    processed,
                    requests,
                    elapsed,
                };
                tracing::info!(
                    outcome,
                    mirrored = report.mirrored.len(),
                    processed = report.processed.len(),
                    gaps = report.gaps.len(),
                    requests,
                    elapsed_ms = elapsed.as_millis() as u64,
                    next_run = %next_run,
                    "Clair mirror run"
                );
                Ok(Some(report))
            }
            Err(e) => {
                metrics::counter!("tocsin_clair_runs_total", "outcome" => "failed").increment(1);
                tracing::warn!(error = %e, failures, next_run = %next_run, "Clair mirror run failed; what was mirrored is kept and the rest is tried again");
                Err(e)
            }
        }
    }

    /// Mirrors every operation tocsin lacks: `None` when the matcher's ETag held.
    async fn mirror(
        &self,
        memory: &mut Memory,
        requests: &mut u32,
        gaps: &mut Vec<Gap>,
    ) -> Result<Option<Vec<Mirrored>>, UpdaterError> {
        let Some((etag, newest)) = self.clair.latest(memory.etag.as_deref(), requests).await?
        else {
            return Ok(None);
        };
        let mine: HashMap<String, UpdateOperation> = self
            .engine
            .store()
            .updaters()
            .await?
            .into_iter()
            .filter_map(|u| u.latest.map(|l| (u.name, l)))
            .collect();
        let behind = newest.iter().any(|(updater, ops)| {
            ops.first().is_some_and(|newest| {
                mine.get(updater).and_then(mirrored_ref) != Some(newest.reference.as_str())
            })
        });
        let mut done = Vec::new();
        if behind {
            let all = self.clair.operations(requests).await?;
            for (updater, ops) in &all {
                let retained: Vec<String> = ops.iter().map(|o| o.reference.clone()).collect();
                let latest = mine.get(updater);
                let plan = plan(&retained, latest.and_then(mirrored_ref));
                if let Some(missing) = &plan.gap {
                    let resumed_from = plan.todo.first().cloned().unwrap_or_default();
                    tracing::warn!(
                        updater,
                        missing,
                        resumed_from,
                        "tocsin fell behind Clair's retention of update operations \
                         (matcher.update_retention): operations after the last one mirrored \
                         were garbage-collected by Clair; they are not notified one by one, \
                         but their changes are, in the next diff against tocsin's own copy"
                    );
                    metrics::counter!("tocsin_clair_retention_gaps_total", "updater" => updater.clone())
                        .increment(1);
                    let gap = Gap {
                        updater: updater.clone(),
                        missing: missing.clone(),
                        resumed_from,
                    };
                    memory.last_gap = Some(gap.clone());
                    gaps.push(gap);
                }
                let mut base = plan.base.zip(latest.map(|l| l.reference.clone()));
                for cur in plan.todo {
                    let m = self
                        .mirror_one(updater, &cur, base.as_ref(), requests)
                        .await?;
                    base = Some((cur, m.operation.clone()));
                    done.push(m);
                }
            }
        }
        memory.etag = etag;
        Ok(Some(done))
    }

    /// Mirrors Clair operation `cur` of `updater`; `base` is (Clair ref, tocsin ref) of the
    /// previous mirrored operation when Clair still retains it.
    async fn mirror_one(
        &self,
        updater: &str,
        cur: &str,
        base: Option<&(String, String)>,
        requests: &mut u32,
    ) -> Result<Mirrored, UpdaterError> {
        let mut mode = "full";
        let mut vulns = None;
        if let Some((prev, mine)) = base {
            let diff = self.clair.diff(updater, cur, Some(prev), requests).await?;
            match self.apply(mine, diff).await? {
                Ok(v) => {
                    mode = "diff";
                    vulns = Some(v);
                }
                Err(why) => tracing::warn!(
                    updater,
                    cur,
                    prev,
                    why,
                    "Clair's update diff does not apply to tocsin's copy; reading the whole operation"
                ),
            }
        }
        let vulns = match vulns {
            Some(v) => v,
            None => {
                let (added, _) = self.clair.diff(updater, cur, None, requests).await?;
                added.into_values().collect()
            }
        };
        let n = vulns.len();
        let outcome = self
            .engine
            .import_with(
                updater,
                &format!("{FINGERPRINT_PREFIX}{cur}"),
                &vulns,
                Guard::Skip,
            )
            .await?;
        let op = match outcome {
            ImportOutcome::Created(op) | ImportOutcome::Unchanged(op) => op,
            ImportOutcome::Held(h) => h.operation,
        };
        tracing::info!(updater, clair = cur, operation = %op.reference, mode, vulnerabilities = n, "Clair update operation mirrored");
        Ok(Mirrored {
            updater: updater.to_string(),
            clair: cur.to_string(),
            operation: op.reference,
            mode,
            vulnerabilities: n,
        })
    }

    /// tocsin's operation `mine` with `diff` applied, or why it does not apply (a removed
    /// vulnerability tocsin's copy does not hold).
    async fn apply(
        &self,
        mine: &str,
        (added, removed): Changes,
    ) -> Result<Result<Vec<Addressed>, String>, UpdaterError> {
        let op = Uuid::parse_str(mine).map_err(|e| UpdaterError::Clair {
            what: format!("tocsin's operation {mine}"),
            message: e.to_string(),
        })?;
        let store = self.engine.store();
        let ids = store.operation_vulnerabilities(op).await?;
        let mut current: HashMap<VulnId, Vulnerability> =
            store.vulnerabilities(&ids).await?.into_iter().collect();
        for id in removed.into_keys() {
            if current.remove(&id).is_none() {
                return Ok(Err(format!(
                    "removed vulnerability {id} is not in tocsin's operation {mine}"
                )));
            }
        }
        let mut out: HashMap<VulnId, Addressed> = current
            .into_values()
            .map(|v| {
                let a = Addressed::new(v);
                (a.id().clone(), a)
            })
            .collect();
        out.extend(added);
        Ok(Ok(out.into_values().collect()))
    }

    /// Runs on the poll interval until `stop`, sharing the schedule with other processes
    /// through the store.
    pub async fn follow(self: Arc<Self>, stop: CancellationToken) {
        let store = Arc::clone(self.engine.store());
        follow_schedule(&store, CLAIR_SOURCE, stop, || async {
            // A failure is logged and recorded; the schedule says when to try again.
            let _ = self.run(true).await;
        })
        .await
    }
}

/// Clair's vulnerabilities as tocsin's, by content address (Clair rows that differ only in
/// fields tocsin does not keep become one).
fn convert(
    updater: &str,
    vulns: Vec<claircore::Vulnerability>,
) -> Result<HashMap<VulnId, Addressed>, UpdaterError> {
    let mut out = HashMap::with_capacity(vulns.len());
    for (i, mut v) in vulns.into_iter().enumerate() {
        // The diff's rows carry the matcher's updater name; a mismatch would be Clair's bug,
        // and the operation belongs to `updater` whatever a row says.
        v.updater = updater.to_string();
        let a = Addressed::new(tocsin_feeds::from_clair(updater, i, v)?);
        out.insert(a.id().clone(), a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vuln(updater: &str, json: serde_json::Value) -> Vulnerability {
        let v: claircore::Vulnerability = serde_json::from_value(json).expect("a vulnerability");
        tocsin_feeds::from_clair(updater, 0, v).expect("converts")
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("a digest")
    }

    /// Clair's lookup answers every manifest holding a Go module; tocsin keeps those whose
    /// vulnerability report names the advisory, drops one Clair no longer knows (404), asks
    /// once per manifest, and leaves other ecosystems alone.
    #[tokio::test]
    async fn go_answers_are_confirmed_by_each_manifests_vulnerability_report() {
        let mirror = tocsin_testdata::osv_mirror::OsvMirror::start()
            .await
            .expect("a server");
        let (a, b, c) = (digest('a'), digest('b'), digest('c'));
        let report = |vulns: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({
                "manifest_hash": "", "packages": {}, "vulnerabilities": vulns,
                "package_vulnerabilities": {}}))
            .expect("JSON")
        };
        mirror.put_file(
            &format!("/matcher/api/v1/vulnerability_report/{a}"),
            report(
                serde_json::json!({"12": {"id": "12", "name": "GO-2022-1059",
                "package": {"name": "golang.org/x/text", "version": ""}}}),
            ),
        );
        mirror.put_file(
            &format!("/matcher/api/v1/vulnerability_report/{b}"),
            report(
                serde_json::json!({"13": {"id": "13", "name": "GO-2020-0015",
                "package": {"name": "golang.org/x/text", "version": ""}}}),
            ),
        );
        let base = Url::parse(&mirror.base_url()).expect("a URL");
        let clair = Clair::new(ClairConfig {
            matcher: base.clone(),
            indexer: base,
            psk: None,
            poll_interval: Duration::from_secs(60),
            fetch: FetchOptions::default(),
            lease: Duration::from_secs(60),
        })
        .expect("a client");
        let go = vuln(
            "osv/go",
            serde_json::json!({"name": "GO-2022-1059", "updater": "osv/go",
                "package": {"name": "golang.org/x/text", "kind": "binary"},
                "repository": {"name": "go", "uri": "https://pkg.go.dev/"},
                "fixed_in_version": "0.3.8", "normalized_severity": "Unknown"}),
        );
        let debian = vuln(
            "debian/updater",
            serde_json::json!({"name": "DSA-1", "updater": "debian/updater",
                "package": {"name": "openssl", "kind": "source"},
                "distribution": {"did": "debian", "version_id": "12"},
                "fixed_in_version": "3.0.1", "normalized_severity": "High"}),
        );
        assert_eq!(go.package.ecosystem, "Go");
        let mut out = vec![
            vec![a.clone(), b.clone(), c.clone()],
            vec![b.clone(), c.clone()],
        ];
        clair
            .confirm(&[&go, &debian], &mut out)
            .await
            .expect("confirmed");
        assert_eq!(out, vec![vec![a], vec![b, c]]);
        let asked: Vec<String> = mirror.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(asked.len(), 3, "one report per manifest: {asked:?}");
    }

    #[test]
    fn report_pairs_read_names_and_packages() {
        let pairs = answers::report_pairs(
            br#"{"vulnerabilities":{"1":{"name":"A","package":{"name":"p"}},"2":{"name":"B"}}}"#,
        )
        .expect("a report");
        assert!(pairs.contains(&("A".into(), "p".into())));
        assert!(pairs.contains(&("B".into(), String::new())));
        assert!(answers::report_pairs(br#"{"vulnerabilities":null}"#)
            .expect("empty")
            .is_empty());
        assert!(answers::report_pairs(b"[1]").is_err());
    }

    fn refs(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_first_contact_mirrors_only_the_newest() {
        let p = plan(&refs(&["c", "b", "a"]), None);
        assert_eq!(p.todo, refs(&["c"]));
        assert_eq!((p.base, p.gap), (None, None));
        assert!(plan(&[], None).todo.is_empty());
    }

    #[test]
    fn every_newer_operation_is_mirrored_in_order_from_the_mark() {
        let p = plan(&refs(&["d", "c", "b", "a"]), Some("b"));
        assert_eq!(p.todo, refs(&["c", "d"]));
        assert_eq!(p.base.as_deref(), Some("b"));
        assert_eq!(p.gap, None);
        let p = plan(&refs(&["d", "c"]), Some("d"));
        assert!(p.todo.is_empty());
    }

    #[test]
    fn a_collected_mark_is_a_gap_and_every_retained_operation_is_mirrored() {
        let p = plan(&refs(&["d", "c"]), Some("a"));
        assert_eq!(p.todo, refs(&["c", "d"]));
        assert_eq!(p.base, None);
        assert_eq!(p.gap.as_deref(), Some("a"));
    }

    #[test]
    fn only_mirrored_operations_have_a_clair_ref() {
        let op = |fp: &str| UpdateOperation {
            reference: "x".into(),
            updater: "u".into(),
            fingerprint: fp.into(),
            date: String::new(),
            kind: String::new(),
        };
        assert_eq!(mirrored_ref(&op("clair:abc")), Some("abc"));
        assert_eq!(mirrored_ref(&op("sha256:abc")), None);
    }
}
