//! Which workload a pod belongs to: its controller, followed up one more level where
//! controllers nest (ReplicaSet → Deployment, Job → CronJob; also a ReplicaSet of another
//! controller, such as an Argo Rollout, whose owner reference names it without it being
//! fetched). StatefulSets, DaemonSets, ReplicationControllers and any other controller are
//! workloads themselves; a pod without a controller is its own workload.
use std::collections::HashMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Api, Client};
use tokio::sync::Mutex;

use crate::KubeError;

/// What events are recorded on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    /// `apps/v1`, `batch/v1`, `v1`, …
    pub api_version: String,
    /// `Deployment`, `CronJob`, `Pod`, …
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

impl Workload {
    fn owned(owner: &OwnerReference, namespace: &str) -> Workload {
        Workload {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            namespace: namespace.to_string(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        }
    }

    /// The reference an event's `regarding` holds.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..ObjectReference::default()
        }
    }
}

/// The controlling owner reference of an object, if any.
pub fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// The controller kinds followed one level up (the only kinds fetched: `get` on
/// `replicasets` and `jobs` is all the consumer's role allows).
const NESTED: [&str; 2] = ["ReplicaSet", "Job"];

/// Looks up the controller of a ReplicaSet or Job.
#[async_trait::async_trait]
pub trait Controllers: Send + Sync {
    /// The controlling owner of the `kind` object `name` in `namespace`; `None` when it has
    /// none or is gone.
    async fn controller_of(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<OwnerReference>, KubeError>;
}

/// The workload `pod` belongs to (module doc).
pub async fn workload_of(pod: &Pod, lookup: &dyn Controllers) -> Result<Workload, KubeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(owner) = controller(&pod.metadata) else {
        return Ok(Workload {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace,
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        });
    };
    if NESTED.contains(&owner.kind.as_str()) {
        if let Some(parent) = lookup
            .controller_of(&owner.kind, &namespace, &owner.name)
            .await?
        {
            return Ok(Workload::owned(&parent, &namespace));
        }
    }
    Ok(Workload::owned(owner, &namespace))
}

/// [`Controllers`] from the API server, remembered per object (a ReplicaSet's or Job's
/// controller does not change; a new one is a new object with a new name).
pub struct ApiControllers {
    client: Client,
    seen: Mutex<HashMap<(String, String, String), Option<OwnerReference>>>,
}

impl ApiControllers {
    /// Lookups through `client`.
    pub fn new(client: Client) -> ApiControllers {
        ApiControllers {
            client,
            seen: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl Controllers for ApiControllers {
    async fn controller_of(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<OwnerReference>, KubeError> {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if let Some(found) = self.seen.lock().await.get(&key) {
            return Ok(found.clone());
        }
        let meta = match kind {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|o| o.map(|o| o.metadata)),
            "Job" => Api::<Job>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|o| o.map(|o| o.metadata)),
            _ => return Ok(None),
        }
        .map_err(|e| KubeError::Api {
            what: format!("getting {kind} {namespace}/{name}"),
            source: Box::new(e),
        })?;
        let found = meta.as_ref().and_then(controller).cloned();
        // A missing object is not remembered: it may be a cache racing its creation.
        if meta.is_some() {
            self.seen.lock().await.insert(key, found.clone());
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<(&'static str, &'static str, OwnerReference)>);

    #[async_trait::async_trait]
    impl Controllers for Fixed {
        async fn controller_of(
            &self,
            kind: &str,
            _namespace: &str,
            name: &str,
        ) -> Result<Option<OwnerReference>, KubeError> {
            Ok(self
                .0
                .iter()
                .find(|(k, n, _)| *k == kind && *n == name)
                .map(|(_, _, o)| o.clone()))
        }
    }

    fn owner(api_version: &str, kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            ..OwnerReference::default()
        }
    }

    fn pod_owned_by(owners: Vec<OwnerReference>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-7d4-abcde".into()),
                namespace: Some("shop".into()),
                uid: Some("uid-pod".into()),
                owner_references: Some(owners),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[tokio::test]
    async fn owners_are_walked_to_the_top_controller() {
        let lookup = Fixed(vec![
            (
                "ReplicaSet",
                "web-7d4",
                owner("apps/v1", "Deployment", "web"),
            ),
            ("Job", "backup-29", owner("batch/v1", "CronJob", "backup")),
        ]);
        let cases = [
            (
                owner("apps/v1", "ReplicaSet", "web-7d4"),
                "Deployment",
                "web",
            ),
            (owner("batch/v1", "Job", "backup-29"), "CronJob", "backup"),
            // A bare ReplicaSet and a Job of no CronJob are workloads themselves.
            (
                owner("apps/v1", "ReplicaSet", "lonely"),
                "ReplicaSet",
                "lonely",
            ),
            (owner("batch/v1", "Job", "once"), "Job", "once"),
            (owner("apps/v1", "StatefulSet", "db"), "StatefulSet", "db"),
            (owner("apps/v1", "DaemonSet", "agent"), "DaemonSet", "agent"),
            (
                owner("v1", "ReplicationController", "old"),
                "ReplicationController",
                "old",
            ),
        ];
        for (o, kind, name) in cases {
            let w = workload_of(&pod_owned_by(vec![o]), &lookup)
                .await
                .expect("a workload");
            assert_eq!((w.kind.as_str(), w.name.as_str()), (kind, name));
            assert_eq!(w.namespace, "shop");
            assert_eq!(w.uid, format!("uid-{name}"));
        }
    }

    #[tokio::test]
    async fn a_pod_without_a_controller_is_its_own_workload() {
        let lookup = Fixed(vec![]);
        let mut not_controller = owner("apps/v1", "ReplicaSet", "web-7d4");
        not_controller.controller = None;
        for owners in [vec![], vec![not_controller]] {
            let w = workload_of(&pod_owned_by(owners), &lookup)
                .await
                .expect("a workload");
            assert_eq!(
                (w.api_version.as_str(), w.kind.as_str(), w.name.as_str()),
                ("v1", "Pod", "web-7d4-abcde")
            );
        }
    }

    /// The API lookups: a ReplicaSet fetched once and remembered, a missing Job asked again,
    /// kinds the role cannot read never asked.
    #[tokio::test]
    async fn controllers_are_fetched_once_from_the_api_server() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let lookup = ApiControllers::new(Client::new(service, "default"));
        let server = tokio::spawn(async move {
            let mut paths = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let path = req.uri().path().to_string();
                let (code, body) = if path.ends_with("/replicasets/web-7d4") {
                    let rs = ReplicaSet {
                        metadata: ObjectMeta {
                            name: Some("web-7d4".into()),
                            owner_references: Some(vec![owner("apps/v1", "Deployment", "web")]),
                            ..ObjectMeta::default()
                        },
                        ..ReplicaSet::default()
                    };
                    (200, serde_json::to_vec(&rs).expect("JSON"))
                } else {
                    let status = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404});
                    (404, serde_json::to_vec(&status).expect("JSON"))
                };
                paths.push(path);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(body))
                        .expect("a response"),
                );
            }
            paths
        });
        for _ in 0..2 {
            let found = lookup
                .controller_of("ReplicaSet", "shop", "web-7d4")
                .await
                .expect("looked up");
            assert_eq!(found.map(|o| o.name), Some("web".to_string()));
            let gone = lookup
                .controller_of("Job", "shop", "once")
                .await
                .expect("looked up");
            assert_eq!(gone, None);
            assert_eq!(
                lookup
                    .controller_of("StatefulSet", "shop", "db")
                    .await
                    .expect("looked up"),
                None
            );
        }
        drop(lookup);
        let paths = server.await.expect("joined");
        assert_eq!(
            paths,
            vec![
                "/apis/apps/v1/namespaces/shop/replicasets/web-7d4",
                "/apis/batch/v1/namespaces/shop/jobs/once",
                "/apis/batch/v1/namespaces/shop/jobs/once",
            ]
        );
    }

    #[tokio::test]
    async fn a_replica_set_of_another_controller_names_that_controller() {
        let lookup = Fixed(vec![(
            "ReplicaSet",
            "web-7d4",
            owner("example.com/v1", "Rollout", "web"),
        )]);
        let w = workload_of(
            &pod_owned_by(vec![owner("apps/v1", "ReplicaSet", "web-7d4")]),
            &lookup,
        )
        .await
        .expect("a workload");
        assert_eq!(
            (w.api_version.as_str(), w.kind.as_str(), w.name.as_str()),
            ("example.com/v1", "Rollout", "web")
        );
    }
}
