//! The Kubernetes consumer (`tocsin kube`): turns Clair notifications — v2/v3 webhooks paged
//! through the v3 gRPC API, v4 webhooks paged through their callback — into events on the
//! workloads that run the affected images.
//!
//! The data flow, one module a step:
//! - [`consume`]: one notification from its checkpoint to its acknowledgement, page by page;
//! - [`cluster`]: the watched pods, and which workloads run a manifest;
//! - [`images`]: which manifest digests a pod runs (container statuses' `imageID`, pinned spec
//!   images), and by which references the containers of unknown digest run theirs;
//! - [`tags`]: the optional mapping of manifests to references through a manifest label;
//! - [`workloads`]: which workload a pod belongs to (its controller, walked up through
//!   ReplicaSets and Jobs);
//! - [`events`]: the events.k8s.io/v1 event for one (workload, vulnerability, reason), named so
//!   that recording it again aggregates instead of adding;
//! - [`recorder`]: records them through the API server, each notification at most once;
//! - [`checkpoint`]: how far each notification is, on disk, so a restart resumes it;
//! - [`v4`]: Clair v4's webhook, pages and acknowledgement;
//! - [`v3`]: Clair v2/v3's webhook, the v3 gRPC pages and read mark, and the side-by-side walk
//!   of a notification's old and new streams;
//! - [`service`]: the webhook endpoint and the worker; [`rbac`]: the start-up permission check.
//!
//! This crate is the only one that depends on kube-rs and k8s-openapi, so the notifier's crates
//! do not pay for them.
pub mod checkpoint;
pub mod cluster;
pub mod consume;
pub mod events;
#[cfg(test)]
mod fixtures;
mod http;
pub mod images;
pub mod rbac;
pub mod recorder;
pub mod service;
pub mod tags;
pub mod v3;
pub mod v4;
pub mod workloads;

/// What can go wrong in the consumer.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A setting is not usable.
    #[error("{0}")]
    Config(String),
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The notifier's answer was not usable, or it could not be reached.
    #[error("{0}")]
    Notifier(String),
    /// The consumer's own state (checkpoints) could not be read or written.
    #[error("{0}")]
    State(String),
    /// An object kept changing under a read-modify-write.
    #[error("{0}: the object kept changing; gave up")]
    Conflict(String),
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tocsin_deliver::jwt::PskSigner;
use tocsin_deliver::PskKey;
use tocsin_model::Severity;

/// Everything `tocsin kube` runs with.
pub struct Settings {
    /// Namespaces watched; all when empty.
    pub namespaces: Vec<String>,
    /// Only pods with these labels are watched (a label selector, `app=web,tier!=test`).
    pub pod_selector: Option<String>,
    /// How long the first list of pods may take before start-up fails.
    pub ready_within: Duration,
    /// Match containers whose digest is not known by reference, through this manifest label
    /// ([`tags`]).
    pub tag_label: Option<String>,
    /// Entries below this severity record nothing.
    pub min_severity: Severity,
    /// Where checkpoints are kept.
    pub state_dir: PathBuf,
    /// The PSK: inbound webhooks must be signed with it by one of these issuers.
    pub inbound_psk: Option<(PskKey, Vec<String>)>,
    /// Signs the consumer's calls to pull APIs.
    pub signer: Option<PskSigner>,
    /// Clair's v3 gRPC API (`http://` or `https://host:port`), through which v2/v3 webhooks
    /// (`POST /clair`) are paged; without it that path answers 404.
    pub clair_v3: Option<String>,
    /// A PEM CA bundle trusted for an `https` v3 API, besides the web's roots.
    pub clair_v3_ca: Option<Vec<u8>>,
    /// Entries per page asked for (v3: images per stream and page).
    pub page_size: u32,
    /// Timeout of each call to a notifier.
    pub timeout: Duration,
    /// Who records the events.
    pub reporter: events::Reporter,
    /// Skip the start-up permission check.
    pub skip_permission_check: bool,
    /// Renders the process's metrics for `GET /metrics` (Prometheus text), when set.
    pub metrics: Option<service::Metrics>,
}

/// A client as kube-rs users expect: the in-cluster service account, else the kubeconfig
/// (`KUBECONFIG`, `~/.kube/config`).
pub async fn connect() -> Result<kube::Client, KubeError> {
    kube::Client::try_default().await.map_err(|e| {
        KubeError::Config(format!(
            "no Kubernetes API server to talk to (neither an in-cluster service account nor a \
             usable kubeconfig): {e}"
        ))
    })
}

/// Runs the consumer through `client` on `listener` until `shutdown`: checks its permissions,
/// fills the pod cache, resumes what a previous run accepted, serves webhooks.
pub async fn run(
    settings: Settings,
    client: kube::Client,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), KubeError> {
    if !settings.skip_permission_check {
        rbac::check(&client, &rbac::needed(&settings.namespaces)).await?;
    }
    let checkpoints = checkpoint::Checkpoints::open(&settings.state_dir)?;
    let controllers = Arc::new(workloads::ApiControllers::new(client.clone()));
    let pods = cluster::PodCache::start(
        client.clone(),
        &settings.namespaces,
        settings.pod_selector.as_deref(),
        controllers,
        settings.ready_within,
    )
    .await?;
    let recorder = recorder::Recorder::new(client, settings.reporter);
    let v3 = match &settings.clair_v3 {
        Some(url) => Some(v3::Client::new(
            url,
            settings.clair_v3_ca.as_deref(),
            settings.signer.clone(),
            settings.page_size,
            settings.timeout,
        )?),
        None => None,
    };
    let tags = match &settings.tag_label {
        Some(label) => Some(tags::TagMap::new(
            label,
            settings.signer.clone(),
            settings.timeout,
        )?),
        None => None,
    };
    let notifier = v4::Client::new(settings.signer, settings.page_size, settings.timeout)?;
    let consumer = consume::Consumer::new(
        Arc::new(pods),
        Arc::new(recorder),
        notifier,
        v3,
        checkpoints,
        settings.min_severity,
    );
    let consumer = match tags {
        Some(t) => consumer.with_tags(t),
        None => consumer,
    };
    service::run(
        Arc::new(consumer),
        service::Inbound {
            psk: settings.inbound_psk,
            metrics: settings.metrics,
        },
        listener,
        shutdown,
    )
    .await
}
