//! Which workloads run an image: a watched cache of pods (kube-runtime's reflector, one per
//! watched namespace or one over all of them), each pod's digests ([`crate::images`]) and its
//! workload ([`crate::workloads`]).
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use tocsin_model::Digest;

use crate::images;
use crate::workloads::{workload_of, Controllers, Workload};
use crate::KubeError;

/// The workloads running images.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// For each of `digests` that some watched pod runs, the workloads running it.
    async fn running(
        &self,
        digests: &BTreeSet<Digest>,
    ) -> Result<BTreeMap<Digest, BTreeSet<Workload>>, KubeError>;
}

/// [`Cluster`] from watched pods.
pub struct PodCache {
    stores: Vec<Store<Pod>>,
    controllers: Arc<dyn Controllers>,
}

impl PodCache {
    /// Starts watching pods in `namespaces` (all namespaces when empty) on tasks of their own,
    /// which re-list and back off on errors as kube-runtime's watcher does; returns once every
    /// cache holds its first full list.
    pub async fn start(
        client: Client,
        namespaces: &[String],
        controllers: Arc<dyn Controllers>,
    ) -> Result<PodCache, KubeError> {
        let apis: Vec<Api<Pod>> = if namespaces.is_empty() {
            vec![Api::all(client)]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let mut stores = Vec::new();
        for api in apis {
            let (store, writer) = reflector::store();
            let stream = reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            );
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    if let Err(e) = event {
                        tracing::warn!(error = %e, "watching pods; the watcher retries");
                    }
                }
            });
            stores.push(store);
        }
        for store in &stores {
            store
                .wait_until_ready()
                .await
                .map_err(|e| KubeError::Config(format!("the pod cache stopped: {e}")))?;
        }
        Ok(PodCache {
            stores,
            controllers,
        })
    }

    /// A cache over pods a test provides.
    pub fn from_stores(stores: Vec<Store<Pod>>, controllers: Arc<dyn Controllers>) -> PodCache {
        PodCache {
            stores,
            controllers,
        }
    }
}

#[async_trait::async_trait]
impl Cluster for PodCache {
    async fn running(
        &self,
        digests: &BTreeSet<Digest>,
    ) -> Result<BTreeMap<Digest, BTreeSet<Workload>>, KubeError> {
        let mut out: BTreeMap<Digest, BTreeSet<Workload>> = BTreeMap::new();
        for store in &self.stores {
            for pod in store.state() {
                let runs: Vec<Digest> = images::digests(&pod)
                    .into_iter()
                    .filter(|d| digests.contains(d))
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let workload = workload_of(&pod, self.controllers.as_ref()).await?;
                for d in runs {
                    out.entry(d).or_default().insert(workload.clone());
                }
            }
        }
        Ok(out)
    }
}
