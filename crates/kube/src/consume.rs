//! One notification, from its checkpoint to its acknowledgement: each page's entries at or
//! above the severity threshold are matched to the workloads running their images, an event
//! is recorded for each (workload, entry), the checkpoint moves past the page, and once every
//! page is done the notification is acknowledged (v4: deleted; v2/v3: marked read) and its
//! checkpoint removed. A failure leaves the checkpoint where it was: processing it again
//! records nothing twice.
use std::collections::BTreeSet;
use std::sync::Arc;

use tocsin_model::{Digest, Severity};

use crate::checkpoint::{Checkpoint, Checkpoints, Position, Source};
use crate::cluster::{Cluster, Image};
use crate::events::{Finding, Reason};
use crate::recorder::{Record, Recorded};
use crate::tags::{self, TagMap};
use crate::v3;
use crate::v4;
use crate::KubeError;

/// What processing one notification did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Pages read.
    pub pages: u64,
    /// Entries read (v3: images of either stream that needed an event).
    pub entries: u64,
    /// Entries below the severity threshold, skipped.
    pub below_threshold: u64,
    /// Entries naming an image by something other than a manifest digest, with no tag mapping
    /// to match pods on it.
    pub unmatchable: u64,
    /// (workload, entry) pairs matched.
    pub matched: u64,
    /// Events created.
    pub created: u64,
    /// Events whose series was bumped.
    pub aggregated: u64,
    /// Events this notification had already recorded (a replay).
    pub already_recorded: u64,
    /// The notifier no longer has the notification (acknowledged or collected before this
    /// run got to it): its checkpoint is dropped.
    pub gone: bool,
}

/// One event to record, for every workload running the finding's image.
struct Item {
    severity: Severity,
    finding: Finding,
}

/// Processes notifications.
pub struct Consumer {
    cluster: Arc<dyn Cluster>,
    recorder: Arc<dyn Record>,
    notifier: v4::Client,
    v3: Option<v3::Client>,
    tags: Option<TagMap>,
    checkpoints: Checkpoints,
    min_severity: Severity,
}

impl Consumer {
    /// A consumer recording events for entries of at least `min_severity`; v2/v3
    /// notifications are paged through `v3` (without it, they cannot be accepted).
    pub fn new(
        cluster: Arc<dyn Cluster>,
        recorder: Arc<dyn Record>,
        notifier: v4::Client,
        v3: Option<v3::Client>,
        checkpoints: Checkpoints,
        min_severity: Severity,
    ) -> Consumer {
        Consumer {
            cluster,
            recorder,
            notifier,
            v3,
            tags: None,
            checkpoints,
            min_severity,
        }
    }

    /// Also matches containers whose digest is not known, by reference through `tags`.
    pub fn with_tags(mut self, tags: TagMap) -> Consumer {
        self.tags = Some(tags);
        self
    }

    /// The checkpoints, to resume what a previous run accepted.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Whether v2/v3 notifications can be processed (a v3 API is configured).
    pub fn takes_v3(&self) -> bool {
        self.v3.is_some()
    }

    /// Accepts a notification: writes its checkpoint unless it has one (a webhook sent again
    /// keeps the progress made), so it is processed even across a restart.
    pub fn accept(&self, source: Source) -> Result<Checkpoint, KubeError> {
        if let Some(existing) = self.checkpoints.load(&source)? {
            return Ok(existing);
        }
        let checkpoint = Checkpoint {
            source,
            position: Position::default(),
            accepted_at: Some(time::OffsetDateTime::now_utc().unix_timestamp()),
        };
        self.checkpoints.save(&checkpoint)?;
        Ok(checkpoint)
    }

    /// Processes `checkpoint` to the end (module doc).
    pub async fn process(&self, checkpoint: Checkpoint) -> Result<Outcome, KubeError> {
        let mut out = Outcome::default();
        let source = checkpoint.source.clone();
        let finished = match &source {
            Source::V4 { id, callback } => {
                self.process_v4(checkpoint, id, callback, &mut out).await?
            }
            Source::V3 { name } => self.process_v3(checkpoint, name, &mut out).await?,
        };
        self.checkpoints.remove(&source)?;
        if !finished {
            tracing::info!(
                notification = source.key(),
                "the notifier no longer has it; nothing more to do"
            );
            out.gone = true;
            return Ok(out);
        }
        tracing::info!(
            notification = source.key(),
            pages = out.pages,
            entries = out.entries,
            matched = out.matched,
            created = out.created,
            aggregated = out.aggregated,
            already_recorded = out.already_recorded,
            unmatchable = out.unmatchable,
            "notification processed and acknowledged"
        );
        Ok(out)
    }

    /// The v4 pages, then `DELETE`; false when the notification is gone.
    async fn process_v4(
        &self,
        mut checkpoint: Checkpoint,
        id: &str,
        callback: &str,
        out: &mut Outcome,
    ) -> Result<bool, KubeError> {
        let origin = tags::origin(callback)?;
        while !checkpoint.position.done {
            let Some(page) = self
                .notifier
                .page(callback, checkpoint.position.next.as_deref())
                .await?
            else {
                return Ok(false);
            };
            let items = page
                .entries
                .into_iter()
                .map(|e| Item {
                    severity: e.severity,
                    finding: Finding {
                        reason: e.reason,
                        vulnerability: e.vulnerability,
                        severity: e.severity.to_string(),
                        package: e.package,
                        fixed_in: e.fixed_in,
                        image: e.manifest.to_string(),
                    },
                })
                .collect();
            self.record(id, &origin, items, out).await?;
            out.pages += 1;
            checkpoint.position.pages += 1;
            match page.next {
                Some(next) => checkpoint.position.next = Some(next),
                None => checkpoint.position.done = true,
            }
            self.checkpoints.save(&checkpoint)?;
        }
        self.notifier.acknowledge(callback).await?;
        Ok(true)
    }

    /// The v3 streams side by side ([`v3::step`]), then `MarkNotificationAsRead`; false when
    /// the notification is gone.
    async fn process_v3(
        &self,
        mut checkpoint: Checkpoint,
        name: &str,
        out: &mut Outcome,
    ) -> Result<bool, KubeError> {
        let Some(client) = &self.v3 else {
            return Err(KubeError::Config(format!(
                "notification {name}: a v2/v3 notification, and no v3 API is configured (--clair-v3)"
            )));
        };
        let origin = client.origin();
        while !checkpoint.position.done {
            let at = checkpoint.position.streams.clone().unwrap_or_default();
            let Some(page) = client.page(name, &at).await? else {
                return Ok(false);
            };
            let step = v3::step(&at, &page);
            let item = |a: &v3::Ancestry, reason: Reason, v: &v3::Vulnerability| Item {
                severity: v.normalized_severity(),
                finding: Finding {
                    reason,
                    vulnerability: v.name.clone(),
                    severity: v.severity.clone(),
                    package: String::new(),
                    fixed_in: v.fixed_by.clone(),
                    image: a.name.clone(),
                },
            };
            let mut items = Vec::new();
            for (ancestries, reason, v) in [
                (&step.found, Reason::Found, &page.new.vulnerability),
                (&step.resolved, Reason::Resolved, &page.old.vulnerability),
            ] {
                if ancestries.is_empty() {
                    continue;
                }
                let Some(v) = v else {
                    return Err(KubeError::Notifier(format!(
                        "notification {name}: a stream names images but no vulnerability"
                    )));
                };
                items.extend(ancestries.iter().map(|a| item(a, reason, v)));
            }
            self.record(name, origin, items, out).await?;
            out.pages += 1;
            checkpoint.position.pages += 1;
            checkpoint.position.streams = Some(step.next);
            checkpoint.position.done = step.done;
            self.checkpoints.save(&checkpoint)?;
        }
        client.mark_read(name).await?;
        Ok(true)
    }

    /// Records `items` of `notification` (sent by the notifier at `origin`) on the workloads
    /// running their images.
    async fn record(
        &self,
        notification: &str,
        origin: &str,
        items: Vec<Item>,
        out: &mut Outcome,
    ) -> Result<(), KubeError> {
        out.entries += items.len() as u64;
        let mut wanted: Vec<(Vec<Image>, Finding)> = Vec::with_capacity(items.len());
        for item in items {
            if item.severity < self.min_severity {
                out.below_threshold += 1;
                continue;
            }
            let mut keys = Vec::with_capacity(2);
            match (Digest::parse(&item.finding.image), &self.tags) {
                (Ok(d), Some(tags)) => {
                    if let Some(r) = tags.reference(origin, &d).await? {
                        keys.push(Image::Reference(r));
                    }
                    keys.push(Image::Digest(d));
                }
                (Ok(d), None) => keys.push(Image::Digest(d)),
                (Err(_), Some(_)) => {
                    keys.extend(
                        crate::images::normalize(&item.finding.image).map(Image::Reference),
                    );
                }
                (Err(_), None) => {}
            }
            if keys.is_empty() {
                out.unmatchable += 1;
                continue;
            }
            wanted.push((keys, item.finding));
        }
        let images: BTreeSet<Image> = wanted.iter().flat_map(|(k, _)| k.clone()).collect();
        let running = self.cluster.running(&images).await?;
        for (keys, finding) in wanted {
            // A workload running the image both by digest and by reference is one workload.
            let workloads: BTreeSet<&crate::workloads::Workload> = keys
                .iter()
                .filter_map(|k| running.get(k))
                .flatten()
                .collect();
            for workload in workloads {
                out.matched += 1;
                let outcome = match self
                    .recorder
                    .record(workload, &finding, notification)
                    .await?
                {
                    Recorded::Created => {
                        out.created += 1;
                        "created"
                    }
                    Recorded::Aggregated => {
                        out.aggregated += 1;
                        "aggregated"
                    }
                    Recorded::AlreadyRecorded => {
                        out.already_recorded += 1;
                        "already_recorded"
                    }
                };
                metrics::counter!("tocsin_kube_events_total",
                    "reason" => finding.reason.as_str(), "outcome" => outcome)
                .increment(1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use axum::extract::{Query, State};
    use axum::routing::get;
    use tocsin_model::Digest;

    use super::*;
    use crate::events::Reason;
    use crate::workloads::Workload;

    const A: &str = "sha256:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a";
    const B: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    use crate::fixtures::workload;

    /// Manifest A runs in two workloads, B in none.
    struct Fixed;

    #[async_trait::async_trait]
    impl Cluster for Fixed {
        async fn running(
            &self,
            images: &BTreeSet<Image>,
        ) -> Result<BTreeMap<Image, BTreeSet<Workload>>, KubeError> {
            let a = Image::Digest(Digest::parse(A).expect("a digest"));
            Ok(images
                .iter()
                .filter(|d| **d == a)
                .map(|d| (d.clone(), [workload("web"), workload("api")].into()))
                .collect())
        }
    }

    /// Events by (workload, reason, vulnerability): the notifications recorded, in order, as
    /// the API server would hold them; fails the `fail_at`th call.
    #[derive(Default)]
    struct Memory {
        events: Mutex<HashMap<(String, Reason, String), Vec<String>>>,
        calls: Mutex<u32>,
        fail_at: Option<u32>,
    }

    #[async_trait::async_trait]
    impl Record for Memory {
        async fn record(
            &self,
            w: &Workload,
            f: &Finding,
            notification: &str,
        ) -> Result<Recorded, KubeError> {
            let mut calls = self.calls.lock().expect("lock");
            *calls += 1;
            if Some(*calls) == self.fail_at {
                return Err(KubeError::Conflict("the API server went away".into()));
            }
            let mut events = self.events.lock().expect("lock");
            let marks = events
                .entry((w.name.clone(), f.reason, f.vulnerability.clone()))
                .or_default();
            Ok(match marks.last() {
                None => {
                    marks.push(notification.into());
                    Recorded::Created
                }
                Some(last) if last == notification => Recorded::AlreadyRecorded,
                Some(_) => {
                    marks.push(notification.into());
                    Recorded::Aggregated
                }
            })
        }
    }

    #[derive(Clone, Default)]
    struct Notifier {
        deletes: Arc<Mutex<u32>>,
    }

    fn entry(manifest: &str, reason: &str, name: &str, severity: &str) -> serde_json::Value {
        serde_json::json!({"id": name, "manifest": manifest, "reason": reason,
            "vulnerability": {"name": name, "normalized_severity": severity,
                "fixed_in_version": "2.0", "package": {"name": "openssl"}}})
    }

    async fn page(Query(q): Query<HashMap<String, String>>) -> axum::Json<serde_json::Value> {
        assert_eq!(q.get("page_size").map(String::as_str), Some("2"));
        axum::Json(match q.get("next").map(String::as_str) {
            None => serde_json::json!({"page": {"size": 2, "next": "page-2"}, "notifications": [
                entry(A, "added", "CVE-1", "High"), entry(A, "added", "CVE-2", "Low")]}),
            Some("page-2") => serde_json::json!({"page": {"size": 2}, "notifications": [
                entry(A, "removed", "CVE-3", "Critical"), entry(B, "added", "CVE-4", "High")]}),
            Some(other) => panic!("unexpected token {other}"),
        })
    }

    async fn delete(State(n): State<Notifier>) -> &'static str {
        *n.deletes.lock().expect("lock") += 1;
        ""
    }

    async fn notifier() -> (String, Notifier) {
        let n = Notifier::default();
        let app = axum::Router::new()
            .route(
                "/notifier/api/v1/notification/n-1",
                get(page).delete(delete),
            )
            .with_state(n.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/notifier/api/v1/notification/n-1"), n)
    }

    fn consumer(dir: &std::path::Path, recorder: Arc<Memory>) -> Consumer {
        Consumer::new(
            Arc::new(Fixed),
            recorder,
            v4::Client::new(None, 2, std::time::Duration::from_secs(5)).expect("a client"),
            None,
            Checkpoints::open(dir).expect("checkpoints"),
            Severity::Medium,
        )
    }

    #[tokio::test]
    async fn every_page_is_recorded_then_acknowledged() {
        let (callback, n) = notifier().await;
        let dir = tempfile::tempdir().expect("a directory");
        let memory = Arc::new(Memory::default());
        let c = consumer(dir.path(), memory.clone());
        let source = Source::V4 {
            id: "n-1".into(),
            callback,
        };
        let cp = c.accept(source.clone()).expect("accepted");
        let out = c.process(cp).await.expect("processed");
        assert_eq!(
            out,
            Outcome {
                pages: 2,
                entries: 4,
                below_threshold: 1,
                matched: 4,
                created: 4,
                ..Outcome::default()
            }
        );
        let events = memory.events.lock().expect("lock");
        let mut keys: Vec<_> = events.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                ("api".into(), Reason::Found, "CVE-1".into()),
                ("api".into(), Reason::Resolved, "CVE-3".into()),
                ("web".into(), Reason::Found, "CVE-1".into()),
                ("web".into(), Reason::Resolved, "CVE-3".into()),
            ]
        );
        assert_eq!(
            *n.deletes.lock().expect("lock"),
            1,
            "acknowledged once, at the end"
        );
        assert_eq!(c.checkpoints().load(&source).expect("read"), None);
    }

    /// A notification the notifier no longer has (404: acknowledged before, or collected) is
    /// dropped, not retried forever.
    #[tokio::test]
    async fn a_notification_gone_from_the_notifier_is_dropped() {
        let (callback, n) = notifier().await;
        let dir = tempfile::tempdir().expect("a directory");
        let memory = Arc::new(Memory::default());
        let c = consumer(dir.path(), memory.clone());
        let source = Source::V4 {
            id: "gone".into(),
            callback: callback.replace("/n-1", "/gone"),
        };
        let out = c
            .process(c.accept(source.clone()).expect("accepted"))
            .await
            .expect("processed");
        assert!(out.gone && out.pages == 0 && out.created == 0, "{out:?}");
        assert_eq!(c.checkpoints().load(&source).expect("read"), None);
        assert_eq!(*n.deletes.lock().expect("lock"), 0);
        assert!(memory.events.lock().expect("lock").is_empty());
    }

    /// A failure on the second page leaves the checkpoint after the first; processing again
    /// from it records the rest, nothing twice, and acknowledges once.
    #[tokio::test]
    async fn a_failure_resumes_from_the_checkpoint_without_duplicates() {
        let (callback, n) = notifier().await;
        let dir = tempfile::tempdir().expect("a directory");
        let source = Source::V4 {
            id: "n-1".into(),
            callback,
        };
        let failing = Arc::new(Memory {
            fail_at: Some(4),
            ..Memory::default()
        });
        let c = consumer(dir.path(), failing.clone());
        let cp = c.accept(source.clone()).expect("accepted");
        c.process(cp).await.expect_err("the fourth record fails");
        assert_eq!(*n.deletes.lock().expect("lock"), 0, "not acknowledged");
        let saved = c.checkpoints().load(&source).expect("read").expect("kept");
        assert_eq!(saved.position.next.as_deref(), Some("page-2"));
        assert_eq!(saved.position.pages, 1);

        // A new process over the same API server state (the events recorded so far).
        let again = Arc::new(Memory {
            events: Mutex::new(failing.events.lock().expect("lock").clone()),
            ..Memory::default()
        });
        let c = consumer(dir.path(), again.clone());
        let resumed = c
            .checkpoints()
            .all()
            .expect("listed")
            .pop()
            .expect("one checkpoint");
        assert_eq!(c.accept(source.clone()).expect("accepted again"), resumed);
        let out = c.process(resumed).await.expect("processed");
        assert_eq!((out.pages, out.created, out.already_recorded), (1, 1, 1));
        let events = again.events.lock().expect("lock");
        assert_eq!(events.len(), 4);
        assert!(events
            .values()
            .all(|marks| marks == &vec!["n-1".to_string()]));
        assert_eq!(*n.deletes.lock().expect("lock"), 1);
    }
}
