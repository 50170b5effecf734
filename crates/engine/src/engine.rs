use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use time::OffsetDateTime;
use tocsin_index::{IndexStats, ManifestIndex, VulnEntry, VulnIndex};
use tocsin_model::change::{ChangeSet, ManifestSet};
use tocsin_model::claircore::{UpdateOperation, VulnerabilityReport};
use tocsin_model::inventory::{installed_packages, Manifest};
use tocsin_model::notification::{Notification, Reason, VulnSummary};
use tocsin_model::vuln::{Addressed, VulnId, Vulnerability};
use tocsin_model::{Digest, Severity};
use tocsin_store::{
    ImportOutcome, IndexEntry, LegacyLayer, ManifestId, MarkRead, NewLegacyNotification,
    NewLegacyNotifications, NewNotificationSet, ProcessedUpdate, PutOutcome, Store, StoreError,
    StoreEvent,
};
use tokio::sync::{broadcast, Mutex, Notify};
use uuid::Uuid;

use crate::legacy::{self, Cursor, LegacyPage, LegacyVulnerability, PageTokens, StreamPage};
use crate::projection::{v4_entries, V4Options};
use crate::{detect, EngineError};

/// What an updater's first update operation does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FirstUpdate {
    /// Notify everything it affects (Clair's behaviour).
    #[default]
    Notify,
    /// Record it as a silent baseline.
    Baseline,
}

/// Engine settings.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// v4 projection options.
    pub v4: V4Options,
    /// First-update behaviour.
    pub first_update: FirstUpdate,
    /// Channels every new set gets a delivery receipt for (empty: pull only).
    pub channels: Vec<String>,
    /// The manifest label whose value v2/v3 show as a manifest's name (`LayerName`, ancestry
    /// name), e.g. `image`; manifests without it, or `None`, show their digest.
    pub legacy_layer_label: Option<String>,
    /// The storm guard (`tocsin.updaters.withdraw_guard`): a snapshot that would withdraw more
    /// than this fraction (0–1) of an updater's current vulnerabilities, or is empty where the
    /// current one is not, is imported *held* instead of being processed. `None`: no guard.
    pub withdraw_guard: Option<f64>,
    /// Where processing learns which manifests a vulnerability affects, when not from tocsin's
    /// own index: a fronted Clair's indexer (`notifier.indexer_addr`). With one, no v2/v3
    /// notifications are made (see the crate doc).
    pub affected_by: Option<Arc<dyn crate::AffectedManifests>>,
}

/// Whether [`Engine::import_with`] applies the storm guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Guard {
    /// Hold a snapshot that trips [`EngineConfig::withdraw_guard`].
    #[default]
    Apply,
    /// Import it whatever it withdraws (an operator's explicit `force`).
    Skip,
}

/// The result of processing one update operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processed {
    /// Updater.
    pub updater: String,
    /// The operation.
    pub operation: Uuid,
    /// Vulnerabilities changed.
    pub changes: usize,
    /// The notification set created, if any.
    pub set: Option<Uuid>,
    /// Entries in it.
    pub entries: usize,
    /// Clair v2/v3 notifications created (one per changed vulnerability naming a manifest).
    pub legacy: usize,
    /// Distinct manifests whose affectedness changed (newly affected or no longer affected by
    /// some vulnerability).
    pub manifests: u64,
}

struct Manifests {
    index: ManifestIndex,
    digests: HashMap<ManifestId, Digest>,
    /// Position in the store's manifest change feed up to which `index` is current.
    seq: u64,
}

struct Vulns {
    index: VulnIndex,
    /// The update operation each updater's entries come from.
    loaded: HashMap<String, String>,
}

/// The pipeline and its indexes; see the crate doc.
pub struct Engine {
    store: Arc<dyn Store>,
    cfg: EngineConfig,
    manifests: RwLock<Manifests>,
    vulns: RwLock<Vulns>,
    /// Serialises readers of the manifest change feed, and processing passes, in this process;
    /// other processes are kept out by the store's compare-and-set.
    feed: Mutex<()>,
    processing: Mutex<()>,
    sets_created: Arc<Notify>,
    /// What recent passes processed, so a caller whose operation was processed by another pass
    /// of this process (the background loop) can still learn its result.
    recent: std::sync::Mutex<std::collections::VecDeque<Processed>>,
    /// Woken when another process imported an update operation (see `follow_store_events`).
    work_available: Arc<Notify>,
    /// The page-token key, read from (or first stored in) the store once.
    tokens: tokio::sync::OnceCell<PageTokens>,
    /// The change sets and layer tables v2/v3 pages were last computed from: a client pages
    /// through one notification after another of one operation, and decoding a large change set
    /// per page would dominate the request.
    legacy_cache: std::sync::Mutex<Vec<(Uuid, Arc<LegacyOperation>)>>,
}

/// Manifests read at a time while rebuilding the index at start (bounds the start-up peak; the
/// store returns only their packages, in a compact form).
const REBUILD_PAGE: usize = 1000;

/// What v2/v3 pages of one operation are computed from.
struct LegacyOperation {
    change_set: ChangeSet,
    layers: HashMap<Digest, (u32, String)>,
}

/// Manifest changes read from the feed at a time.
const FEED_PAGE: usize = 1000;

/// Operations kept in the v2/v3 page cache.
const LEGACY_CACHE: usize = 8;

/// How many results [`Engine::processed`] remembers.
const RECENT: usize = 1024;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn lock_poisoned() -> EngineError {
    EngineError::Inconsistent("an index lock was poisoned by a panic".into())
}

impl Engine {
    /// Opens the engine over a store: loads every manifest into the reverse index and every
    /// updater's newest vulnerabilities into the forward one.
    pub async fn open(store: Arc<dyn Store>, cfg: EngineConfig) -> Result<Self, EngineError> {
        let started = Instant::now();
        // Read the feed position first: changes made while we load are applied again later,
        // which is harmless (applying a change is idempotent).
        let mut manifests = Manifests {
            index: ManifestIndex::new(),
            digests: HashMap::new(),
            seq: store.manifest_change_head().await?,
        };
        let mut after = None;
        loop {
            let page = store.index_entries_after(after, REBUILD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for e in page {
                manifests.index.add_refs(e.id, e.packages.iter());
                manifests.digests.insert(e.id, e.digest);
            }
        }
        let engine = Engine {
            store,
            cfg,
            manifests: RwLock::new(manifests),
            vulns: RwLock::new(Vulns {
                index: VulnIndex::new(),
                loaded: HashMap::new(),
            }),
            feed: Mutex::new(()),
            processing: Mutex::new(()),
            sets_created: Arc::new(Notify::new()),
            recent: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
            work_available: Arc::new(Notify::new()),
            tokens: tokio::sync::OnceCell::new(),
            legacy_cache: std::sync::Mutex::new(Vec::new()),
        };
        engine.refresh_vulnerabilities().await?;
        for u in engine.store.updaters().await? {
            if let Some(h) = &u.held {
                tracing::warn!(updater = %u.name, operation = %h.operation.reference, reason = %h.reason, "an update operation is held by the storm guard until accepted");
            }
            metrics::gauge!("tocsin_updater_held_operations", "updater" => u.name.clone())
                .set(if u.held.is_some() { 1.0 } else { 0.0 });
        }
        let stats = engine.index_stats()?;
        tracing::info!(
            manifests = stats.manifests,
            references = stats.references,
            vulnerabilities = engine.current_vulnerabilities()?,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "indexes built"
        );
        engine.publish_index_metrics(&stats);
        Ok(engine)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Woken whenever a notification set is created (delivery workers wait on it).
    pub fn sets_created(&self) -> Arc<Notify> {
        Arc::clone(&self.sets_created)
    }

    /// Woken when an update operation was imported by another process (or the CLI) and may be
    /// waiting for [`process_pending`](Self::process_pending). Only fed while
    /// [`follow_store_events`](Self::follow_store_events) runs.
    pub fn work_available(&self) -> Arc<Notify> {
        Arc::clone(&self.work_available)
    }

    /// Relays the store's events until `stop` resolves, so this process reacts promptly to work
    /// done elsewhere: an import wakes [`work_available`](Self::work_available), a new set wakes
    /// [`sets_created`](Self::sets_created), a manifest change is applied to the index at once.
    /// Missed events (a lagging subscriber, a re-established connection) wake everything. Returns
    /// at once when the store cannot announce events: then the callers' polling is all there is.
    pub async fn follow_store_events(&self, stop: impl std::future::Future<Output = ()>) {
        let Some(mut events) = self.store.events() else {
            tracing::debug!("the store announces no events; relying on polling");
            return;
        };
        tokio::pin!(stop);
        loop {
            let event = tokio::select! {
                _ = &mut stop => return,
                e = events.recv() => e,
            };
            let (manifests, work, sets) = match event {
                Ok(StoreEvent::ManifestChanged) => (true, false, false),
                Ok(StoreEvent::OperationImported(updater)) => {
                    tracing::debug!(%updater, "update operation imported elsewhere");
                    (false, true, false)
                }
                Ok(StoreEvent::SetCreated) => (false, false, true),
                Ok(StoreEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    (true, true, true)
                }
                Err(broadcast::error::RecvError::Closed) => {
                    tracing::warn!("the store's event channel closed; relying on polling");
                    return;
                }
            };
            if work {
                self.work_available.notify_one();
            }
            if sets {
                self.sets_created.notify_one();
            }
            if manifests {
                // Our own puts already refreshed; applying the feed again is then a no-op.
                if let Err(e) = self.refresh_manifests().await {
                    tracing::warn!(error = %e, "following the manifest change feed failed; will retry at the next change or processing pass");
                }
            }
        }
    }

    /// Size figures of the reverse index.
    pub fn index_stats(&self) -> Result<IndexStats, EngineError> {
        Ok(self
            .manifests
            .read()
            .map_err(|_| lock_poisoned())?
            .index
            .stats())
    }

    fn publish_index_metrics(&self, s: &IndexStats) {
        metrics::gauge!("tocsin_index_manifests").set(s.manifests as f64);
        metrics::gauge!("tocsin_index_package_references").set(s.references as f64);
        metrics::gauge!("tocsin_index_bitmap_bytes").set(s.bitmap_bytes as f64);
        metrics::gauge!("tocsin_index_keys").set(s.keys as f64);
        metrics::gauge!("tocsin_index_postings").set(s.postings as f64);
        metrics::gauge!("tocsin_index_posting_list_bytes").set(s.posting_list_bytes as f64);
        if s.references > 0 {
            metrics::gauge!("tocsin_index_bitmap_bytes_per_reference")
                .set(s.bitmap_bytes as f64 / s.references as f64);
        }
    }

    /// Makes every updater's newest update operation the one vulnerability reports use,
    /// whichever process imported it.
    pub async fn refresh_vulnerabilities(&self) -> Result<(), EngineError> {
        for u in self.store.updaters().await? {
            let Some(op) = u.latest else { continue };
            let current = self
                .vulns
                .read()
                .map_err(|_| lock_poisoned())?
                .loaded
                .get(&u.name)
                .is_some_and(|r| *r == op.reference);
            if current {
                continue;
            }
            let ids = self.store.operation_vulnerabilities(op_ref(&op)?).await?;
            let vulns = self.store.vulnerabilities(&ids).await?;
            if vulns.len() != ids.len() {
                return Err(EngineError::Inconsistent(format!(
                    "update operation {} of {} references {} vulnerabilities but {} are stored",
                    op.reference,
                    u.name,
                    ids.len(),
                    vulns.len()
                )));
            }
            let entries = vulns
                .into_iter()
                .map(|(id, v)| VulnEntry::new(id, v))
                .collect();
            let mut g = self.vulns.write().map_err(|_| lock_poisoned())?;
            g.index.set_updater(&u.name, entries);
            g.loaded.insert(u.name.clone(), op.reference.clone());
        }
        Ok(())
    }

    /// Applies the store's manifest change feed to the reverse index: manifests created,
    /// replaced or deleted by this process or any other. Returns how many changes were applied.
    pub async fn refresh_manifests(&self) -> Result<usize, EngineError> {
        self.apply_manifest_changes(None).await
    }

    /// [`refresh_manifests`](Self::refresh_manifests), taking the packages of the manifest this
    /// process has just stored from `known` instead of reading them back.
    async fn apply_manifest_changes(
        &self,
        known: Option<(ManifestId, &Manifest)>,
    ) -> Result<usize, EngineError> {
        let _f = self.feed.lock().await;
        let mut applied = 0;
        loop {
            let seq = self.manifests.read().map_err(|_| lock_poisoned())?.seq;
            let changes = self.store.manifest_changes(seq, FEED_PAGE).await?;
            if changes.is_empty() {
                break;
            }
            // Gone again already when absent here: its delete follows later in the feed.
            let wanted: Vec<ManifestId> = changes
                .iter()
                .filter(|c| !c.deleted && known.is_none_or(|(id, _)| id != c.id))
                .map(|c| c.id)
                .collect();
            let mut loaded: HashMap<ManifestId, IndexEntry> = HashMap::new();
            if !wanted.is_empty() {
                loaded.extend(
                    self.store
                        .index_entries(&wanted)
                        .await?
                        .into_iter()
                        .map(|e| (e.id, e)),
                );
            }
            let mut g = self.manifests.write().map_err(|_| lock_poisoned())?;
            for c in changes {
                g.index.remove(c.id);
                g.digests.remove(&c.id);
                if !c.deleted {
                    match (known, loaded.remove(&c.id)) {
                        (Some((id, m)), _) if id == c.id => {
                            g.index.add(id, &installed_packages(&m.report));
                            g.digests.insert(id, m.digest.clone());
                        }
                        (_, Some(e)) => {
                            g.index.add_refs(e.id, e.packages.iter());
                            g.digests.insert(e.id, e.digest);
                        }
                        _ => {}
                    }
                }
                g.seq = c.seq;
                applied += 1;
            }
        }
        if applied > 0 {
            let stats = self.index_stats()?;
            self.publish_index_metrics(&stats);
        }
        Ok(applied)
    }

    // ---- manifests ----------------------------------------------------------------------------

    /// Stores a manifest and indexes it (replacing its previous inventory).
    pub async fn put_manifest(
        &self,
        m: &Manifest,
    ) -> Result<(ManifestId, PutOutcome), EngineError> {
        let (id, outcome) = self.store.put_manifest(m, now()).await?;
        if outcome != PutOutcome::Unchanged {
            self.apply_manifest_changes(Some((id, m))).await?;
        }
        metrics::counter!("tocsin_manifests_put_total", "outcome" => outcome_name(outcome))
            .increment(1);
        Ok((id, outcome))
    }

    /// Removes a manifest from the store and the index; false when it was not there.
    pub async fn delete_manifest(&self, digest: &Digest) -> Result<bool, EngineError> {
        let deleted = self.store.delete_manifest(digest).await?;
        if deleted {
            self.refresh_manifests().await?;
        }
        Ok(deleted)
    }

    /// A claircore VulnerabilityReport for a stored manifest, from the current vulnerabilities of
    /// every updater (the forward direction of the matching engine).
    pub async fn vulnerability_report(
        &self,
        digest: &Digest,
    ) -> Result<Option<VulnerabilityReport>, EngineError> {
        let Some(m) = self.store.get_manifest(digest).await? else {
            return Ok(None);
        };
        self.refresh_vulnerabilities().await?;
        let vulns = self.vulns.read().map_err(|_| lock_poisoned())?;
        let mut report = VulnerabilityReport {
            manifest_hash: m.digest.to_string(),
            packages: m.report.packages.clone(),
            distributions: m.report.distributions.clone(),
            repository: m.report.repository.clone(),
            environments: m.report.environments.clone(),
            ..Default::default()
        };
        for p in installed_packages(&m.report) {
            let hits = vulns.index.matching(&p);
            if hits.is_empty() {
                continue;
            }
            let list = report
                .package_vulnerabilities
                .entry(p.package_id.clone())
                .or_default();
            for e in hits {
                let id = e.id.to_string();
                if !list.contains(&id) {
                    list.push(id.clone());
                }
                report
                    .vulnerabilities
                    .entry(id.clone())
                    .or_insert_with(|| e.vuln.to_claircore(&id));
            }
        }
        // Most severe first across ecosystems too.
        for list in report.package_vulnerabilities.values_mut() {
            // Most severe first; equal severities by advisory name, then id, for a stable order.
            let key = |id: &String| {
                let v = report.vulnerabilities.get(id);
                (
                    v.map(|v| v.normalized_severity).unwrap_or_default(),
                    v.map(|v| v.name.clone()).unwrap_or_default(),
                )
            };
            list.sort_by(|a, b| {
                let (sa, na) = key(a);
                let (sb, nb) = key(b);
                sb.cmp(&sa).then_with(|| na.cmp(&nb)).then_with(|| a.cmp(b))
            });
        }
        Ok(Some(report))
    }

    // ---- feeds --------------------------------------------------------------------------------

    /// Stores a feed snapshot (all-or-nothing) and, when it is new, makes its vulnerabilities the
    /// updater's current ones for vulnerability reports. Processing happens in
    /// [`process_pending`](Self::process_pending).
    pub async fn import(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
    ) -> Result<ImportOutcome, EngineError> {
        self.import_with(updater, fingerprint, vulns, Guard::Apply)
            .await
    }

    /// [`import`](Self::import), choosing whether the storm guard applies: with
    /// [`Guard::Apply`] and a configured [`EngineConfig::withdraw_guard`], a snapshot that
    /// withdraws too much is stored *held* ([`ImportOutcome::Held`]): not processed, not used by
    /// vulnerability reports, until [`accept`](Self::accept) or a later import replaces it.
    pub async fn import_with(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        guard: Guard,
    ) -> Result<ImportOutcome, EngineError> {
        if let Some(v) = vulns.iter().find(|v| v.updater != updater) {
            return Err(EngineError::Invalid(format!(
                "vulnerability {} belongs to updater {:?}, not {updater:?}",
                v.name, v.updater
            )));
        }
        let hold = match (guard, self.cfg.withdraw_guard) {
            (Guard::Apply, Some(limit)) => self.storm(updater, fingerprint, vulns, limit).await?,
            _ => None,
        };
        let outcome = match &hold {
            Some(reason) => {
                self.store
                    .import_held(updater, fingerprint, vulns, now(), reason)
                    .await?
            }
            None => {
                self.store
                    .import_snapshot(updater, fingerprint, vulns, now())
                    .await?
            }
        };
        // Any import that did not hold replaced the held operation, if there was one.
        let held = matches!(outcome, ImportOutcome::Held(_));
        metrics::gauge!("tocsin_updater_held_operations", "updater" => updater.to_string())
            .set(if held { 1.0 } else { 0.0 });
        if let ImportOutcome::Held(h) = &outcome {
            tracing::warn!(
                updater,
                operation = %h.operation.reference,
                reason = %h.reason,
                "update operation held by the storm guard: not processed until accepted \
                 (POST /api/v1/updaters/{{name}}/operations/{{ref}}/accept, `tocsin feed accept`) \
                 or replaced by a later snapshot"
            );
        }
        if let ImportOutcome::Created(op) = &outcome {
            // Built under the read lock: reports keep being served while new rules compile.
            let entries = {
                let g = self.vulns.read().map_err(|_| lock_poisoned())?;
                g.index.build_entries(updater, vulns)
            };
            let mut g = self.vulns.write().map_err(|_| lock_poisoned())?;
            g.index.install_entries(updater, entries);
            g.loaded.insert(updater.to_string(), op.reference.clone());
            drop(g);
            tracing::info!(updater, operation = %op.reference, vulnerabilities = vulns.len(), "update operation created");
        }
        let label = match outcome {
            ImportOutcome::Created(_) => "created",
            ImportOutcome::Unchanged(_) => "unchanged",
            ImportOutcome::Held(_) => "held",
        };
        metrics::counter!("tocsin_imports_total", "outcome" => label).increment(1);
        Ok(outcome)
    }

    /// Why the storm guard holds this snapshot, or `None` when it may be processed: it would
    /// withdraw more than `limit` of the updater's current vulnerabilities (identities present
    /// now and absent from the snapshot; a changed record is not a withdrawal), or it is empty
    /// where the current one is not. An updater's first snapshot is never held.
    async fn storm(
        &self,
        updater: &str,
        fingerprint: &str,
        vulns: &[Addressed],
        limit: f64,
    ) -> Result<Option<String>, EngineError> {
        let Some(current) = self
            .store
            .updaters()
            .await?
            .into_iter()
            .find(|u| u.name == updater)
            .and_then(|u| u.latest)
        else {
            return Ok(None);
        };
        if current.fingerprint == fingerprint {
            return Ok(None);
        }
        let cur_ids = self
            .store
            .operation_vulnerabilities(op_ref(&current)?)
            .await?;
        let total = cur_ids.len();
        if total == 0 {
            return Ok(None);
        }
        if vulns.is_empty() {
            return Ok(Some(format!(
                "the snapshot is empty, where the current update operation {} holds {total} \
                 vulnerabilities",
                current.reference
            )));
        }
        let new_ids: std::collections::HashSet<&VulnId> = vulns.iter().map(|v| v.id()).collect();
        let removed: Vec<VulnId> = cur_ids
            .into_iter()
            .filter(|id| !new_ids.contains(id))
            .collect();
        // Even counting every removed record as a withdrawal, the snapshot passes: no need to
        // read their bodies.
        if (removed.len() as f64) <= limit * total as f64 {
            return Ok(None);
        }
        let kept: std::collections::HashSet<_> = vulns.iter().map(|v| v.identity()).collect();
        let withdrawn = self
            .store
            .vulnerabilities(&removed)
            .await?
            .iter()
            .filter(|(_, v)| !kept.contains(&v.identity()))
            .count();
        if (withdrawn as f64) <= limit * total as f64 {
            return Ok(None);
        }
        Ok(Some(format!(
            "would withdraw {withdrawn} of the {total} current vulnerabilities ({:.1}%), more \
             than withdraw_guard {:.1}%",
            withdrawn as f64 * 100.0 / total as f64,
            limit * 100.0
        )))
    }

    /// Accepts an updater's held update operation: it becomes the updater's newest, is used by
    /// vulnerability reports and is processed by the next [`process_pending`](Self::process_pending).
    pub async fn accept(&self, updater: &str, op: Uuid) -> Result<UpdateOperation, EngineError> {
        let accepted = self.store.accept_operation(updater, op).await?;
        metrics::gauge!("tocsin_updater_held_operations", "updater" => updater.to_string())
            .set(0.0);
        tracing::info!(updater, operation = %accepted.reference, "held update operation accepted");
        self.refresh_vulnerabilities().await?;
        Ok(accepted)
    }

    // ---- processing ---------------------------------------------------------------------------

    /// Processes every unprocessed update operation of every updater, oldest first per updater.
    /// A processor that loses the compare-and-set to another process skips that operation.
    pub async fn process_pending(&self) -> Result<Vec<Processed>, EngineError> {
        let _p = self.processing.lock().await;
        // Another process (or the CLI) may have changed manifests since we last looked.
        self.refresh_manifests().await?;
        let mut done = Vec::new();
        for u in self.store.updaters().await? {
            let ops = self.store.update_operations(&u.name).await?;
            // ops are newest first; the unprocessed ones are those before the processed mark.
            let mut pending: Vec<&UpdateOperation> = Vec::new();
            for op in &ops {
                if Some(op_ref(op)?) == u.processed {
                    break;
                }
                pending.push(op);
            }
            if u.processed.is_some() && pending.len() == ops.len() {
                return Err(EngineError::Inconsistent(format!(
                    "updater {}: processed operation {:?} is not among its operations",
                    u.name, u.processed
                )));
            }
            let mut prev = u.processed;
            for op in pending.into_iter().rev() {
                match self.process_one(&u.name, prev, op_ref(op)?).await {
                    Ok(p) => {
                        prev = Some(p.operation);
                        if let Ok(mut r) = self.recent.lock() {
                            if r.len() == RECENT {
                                r.pop_front();
                            }
                            r.push_back(p.clone());
                        }
                        done.push(p);
                    }
                    Err(EngineError::Store(StoreError::Conflict(why))) => {
                        tracing::info!(updater = %u.name, %why, "another process got there first");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(done)
    }

    async fn process_one(
        &self,
        updater: &str,
        prev: Option<Uuid>,
        cur: Uuid,
    ) -> Result<Processed, EngineError> {
        let started = Instant::now();
        let prev_ids = match prev {
            Some(p) => self.store.operation_vulnerabilities(p).await?,
            None => Vec::new(),
        };
        let cur_ids = self.store.operation_vulnerabilities(cur).await?;
        let prev_set: std::collections::HashSet<&VulnId> = prev_ids.iter().collect();
        let cur_set: std::collections::HashSet<&VulnId> = cur_ids.iter().collect();
        let changed: Vec<VulnId> = prev_ids
            .iter()
            .filter(|i| !cur_set.contains(i))
            .chain(cur_ids.iter().filter(|i| !prev_set.contains(i)))
            .cloned()
            .collect();
        let vulns: HashMap<VulnId, Vulnerability> = self
            .store
            .vulnerabilities(&changed)
            .await?
            .into_iter()
            .collect();
        let pairs =
            detect::pair_changes(&prev_ids, &cur_ids, &vulns).map_err(EngineError::Inconsistent)?;
        let (changes, manifests) = match &self.cfg.affected_by {
            Some(source) => crate::affected::changes(pairs, &vulns, source.as_ref())
                .await
                .map_err(EngineError::Affectedness)?,
            None => {
                let g = self.manifests.read().map_err(|_| lock_poisoned())?;
                detect::changes(pairs, &vulns, &g.index, &g.digests)
            }
        };
        let change_set = ChangeSet {
            updater: updater.to_string(),
            prev,
            cur,
            changes,
            manifests,
        };
        let silent = prev.is_none() && self.cfg.first_update == FirstUpdate::Baseline;
        let entries = if silent {
            Vec::new()
        } else {
            v4_entries(&change_set, &vulns, self.cfg.v4).map_err(|id| {
                EngineError::Inconsistent(format!(
                    "operation {cur}: manifest {id} is named but has no digest"
                ))
            })?
        };
        // The layer table of v2/v3 names manifests of tocsin's own inventory; an outside
        // source's ids are local to the change set.
        let legacy = match silent || self.cfg.affected_by.is_some() {
            true => None,
            false => Some(self.legacy_notifications(&change_set, &vulns).await?),
        };
        let notifications = (!entries.is_empty()).then(|| NewNotificationSet {
            id: Uuid::new_v4(),
            updater: updater.to_string(),
            operation: Some(cur),
            entries,
            channels: self.cfg.channels.clone(),
            created_at: now(),
        });
        let mut touched = ManifestSet::new();
        for c in &change_set.changes {
            touched |= &c.old_affected ^ &c.new_affected;
        }
        let processed = Processed {
            manifests: touched.len(),
            updater: updater.to_string(),
            operation: cur,
            changes: change_set.changes.len(),
            set: notifications.as_ref().map(|s| s.id),
            entries: notifications.as_ref().map_or(0, |s| s.entries.len()),
            legacy: legacy.as_ref().map_or(0, |l| l.notifications.len()),
        };
        self.store
            .commit_processed(&ProcessedUpdate {
                updater: updater.to_string(),
                prev,
                cur,
                change_set,
                notifications,
                legacy,
            })
            .await?;
        let secs = started.elapsed().as_secs_f64();
        metrics::counter!("tocsin_update_operations_processed_total").increment(1);
        metrics::histogram!("tocsin_processing_seconds").record(secs);
        if processed.set.is_some() {
            metrics::counter!("tocsin_notification_sets_created_total").increment(1);
            metrics::counter!("tocsin_notification_entries_created_total")
                .increment(processed.entries as u64);
            self.sets_created.notify_one();
        }
        tracing::info!(
            updater,
            operation = %cur,
            changes = processed.changes,
            set = ?processed.set,
            entries = processed.entries,
            manifests = processed.manifests,
            legacy = processed.legacy,
            seconds = secs,
            "update operation processed"
        );
        Ok(processed)
    }

    /// The v2/v3 notifications of a change set: one per change that names a manifest, and the
    /// layer table fixing each named manifest's index (its id now) and display name.
    async fn legacy_notifications(
        &self,
        cs: &ChangeSet,
        vulns: &HashMap<VulnId, Vulnerability>,
    ) -> Result<NewLegacyNotifications, EngineError> {
        let mut notifications = Vec::new();
        let mut named = ManifestSet::new();
        for (i, c) in cs.changes.iter().enumerate() {
            if !legacy::is_notified(c) {
                continue;
            }
            let v = c
                .new
                .as_ref()
                .or(c.old.as_ref())
                .and_then(|id| vulns.get(id))
                .ok_or_else(|| {
                    EngineError::Inconsistent(format!(
                        "change {i} of operation {} names no stored vulnerability",
                        cs.cur
                    ))
                })?;
            let change = u32::try_from(i).map_err(|_| {
                EngineError::Inconsistent(format!("operation {} has over 2^32 changes", cs.cur))
            })?;
            notifications.push(NewLegacyNotification {
                name: legacy::notification_name(cs.cur, &v.identity()),
                change,
            });
            named |= &c.old_affected;
            named |= &c.new_affected;
        }
        let ids: Vec<ManifestId> = named.iter().collect();
        let labels = match &self.cfg.legacy_layer_label {
            Some(label) => self.store.manifest_labels(&ids, label).await?,
            None => HashMap::new(),
        };
        let mut layers = Vec::with_capacity(ids.len());
        for id in ids {
            let digest = cs.digest(id).ok_or_else(|| {
                EngineError::Inconsistent(format!(
                    "operation {}: manifest {id} is named but has no digest",
                    cs.cur
                ))
            })?;
            // A manifest deleted since the change set was computed keeps its digest as name.
            let name = labels
                .get(&id)
                .cloned()
                .unwrap_or_else(|| digest.to_string());
            layers.push(LegacyLayer {
                digest: digest.clone(),
                index: id,
                name,
            });
        }
        Ok(NewLegacyNotifications {
            notifications,
            layers,
            created_at: now(),
        })
    }

    /// The key that signs v2/v3 page tokens, shared by every process on the store.
    pub async fn page_tokens(&self) -> Result<&PageTokens, EngineError> {
        self.tokens
            .get_or_try_init(|| async {
                use rand::RngCore;
                let mut candidate = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut candidate);
                let key = self.store.secret(legacy::TOKEN_SECRET, &candidate).await?;
                Ok(PageTokens::new(key))
            })
            .await
    }

    async fn legacy_operation(&self, op: Uuid) -> Result<Arc<LegacyOperation>, EngineError> {
        if let Ok(cache) = self.legacy_cache.lock() {
            if let Some((_, o)) = cache.iter().find(|(id, _)| *id == op) {
                return Ok(Arc::clone(o));
            }
        }
        let change_set = self.store.change_set(op).await?.ok_or_else(|| {
            EngineError::Inconsistent(format!(
                "update operation {op} has v2/v3 notifications but no change set"
            ))
        })?;
        let layers = legacy::layer_map(&self.store.legacy_layers(op).await?);
        let loaded = Arc::new(LegacyOperation { change_set, layers });
        if let Ok(mut cache) = self.legacy_cache.lock() {
            if cache.len() == LEGACY_CACHE {
                cache.remove(0);
            }
            cache.push((op, Arc::clone(&loaded)));
        }
        Ok(loaded)
    }

    /// One page of a v2/v3 notification: up to `limit` manifests of each stream from its cursor.
    /// `None` when no such notification exists (a read one still pages).
    pub async fn legacy_page(
        &self,
        name: Uuid,
        old: Cursor,
        new: Cursor,
        limit: usize,
    ) -> Result<Option<LegacyPage>, EngineError> {
        let Some(notification) = self.store.legacy_notification(name).await? else {
            return Ok(None);
        };
        let op = self.legacy_operation(notification.operation).await?;
        let change = usize::try_from(notification.change)
            .ok()
            .and_then(|i| op.change_set.changes.get(i))
            .ok_or_else(|| {
                EngineError::Inconsistent(format!(
                    "v2/v3 notification {name} points at change {} of operation {}, which has {}",
                    notification.change,
                    notification.operation,
                    op.change_set.changes.len()
                ))
            })?;
        let ids: Vec<VulnId> = change.old.iter().chain(&change.new).cloned().collect();
        let vulns: HashMap<VulnId, Vulnerability> = self
            .store
            .vulnerabilities(&ids)
            .await?
            .into_iter()
            .collect();
        let side = |id: &Option<VulnId>, affected: &ManifestSet, from: Cursor| {
            let Some(id) = id else { return Ok(None) };
            let v = vulns.get(id).ok_or_else(|| {
                EngineError::Inconsistent(format!(
                    "v2/v3 notification {name}: vulnerability {id} is not stored"
                ))
            })?;
            let all = legacy::stream(affected, &op.change_set, &op.layers).map_err(|e| {
                EngineError::Inconsistent(format!("v2/v3 notification {name}: {e}"))
            })?;
            let (layers, next) = legacy::page(&all, from, limit);
            Ok::<_, EngineError>(Some(StreamPage {
                vulnerability: LegacyVulnerability::of(v),
                layers,
                next,
            }))
        };
        Ok(Some(LegacyPage {
            old: side(&change.old, &change.old_affected, old)?,
            new: side(&change.new, &change.new_affected, new)?,
            notification,
        }))
    }

    /// Marks a v2/v3 notification read (v2 `DELETE`, v3 `MarkNotificationAsRead`).
    pub async fn mark_legacy_read(&self, name: Uuid) -> Result<MarkRead, EngineError> {
        Ok(self.store.mark_legacy_read(name, now()).await?)
    }

    /// The result of processing `operation`, when this process processed it recently.
    pub fn processed(&self, operation: Uuid) -> Option<Processed> {
        let r = self.recent.lock().ok()?;
        r.iter().rev().find(|p| p.operation == operation).cloned()
    }

    /// Clair's test mode: one set for updater `test-updater` with one `added` entry for
    /// vulnerability `test-vulnerability` on a random manifest.
    pub async fn create_test_set(&self) -> Result<Uuid, EngineError> {
        let manifest = Digest::sha256_of(Uuid::new_v4().as_bytes());
        let set = NewNotificationSet {
            id: Uuid::new_v4(),
            updater: "test-updater".into(),
            operation: None,
            entries: vec![Notification {
                id: Uuid::new_v4(),
                manifest,
                reason: Reason::Added,
                vulnerability: VulnSummary {
                    name: "test-vulnerability".into(),
                    description:
                        "this vulnerability indicates you are running the notifier in test mode."
                            .into(),
                    package: None,
                    distribution: None,
                    repository: None,
                    severity: Severity::Unknown,
                    fixed_in_version: String::new(),
                    links: String::new(),
                },
            }],
            channels: self.cfg.channels.clone(),
            created_at: now(),
        };
        self.store.create_notification_set(&set).await?;
        metrics::counter!("tocsin_notification_sets_created_total").increment(1);
        self.sets_created.notify_one();
        Ok(set.id)
    }

    /// Per-updater vulnerability counts currently used for reports.
    pub fn current_vulnerabilities(&self) -> Result<usize, EngineError> {
        Ok(self.vulns.read().map_err(|_| lock_poisoned())?.index.len())
    }
}

fn op_ref(op: &UpdateOperation) -> Result<Uuid, EngineError> {
    Uuid::parse_str(&op.reference).map_err(|e| {
        EngineError::Inconsistent(format!(
            "update operation ref {:?} is not a UUID: {e}",
            op.reference
        ))
    })
}

fn outcome_name(o: PutOutcome) -> &'static str {
    match o {
        PutOutcome::Created => "created",
        PutOutcome::Replaced => "replaced",
        PutOutcome::Unchanged => "unchanged",
    }
}
