//! Which workloads run an image: a watched cache of pods (kube-runtime's reflector, one per
//! watched namespace or one over all of them), each pod's digests ([`crate::images`]) and its
//! workload ([`crate::workloads`]).
//!
//! An optional label selector narrows the pods watched (`labelSelector` on the lists and the
//! watches alike), for clusters where only some workloads matter or the pods are too many to
//! keep. The watches ask for bookmarks (`allowWatchBookmarks=true`, on by default in
//! kube-runtime's watcher), so a resumed watch starts from a recent resource version instead of
//! falling out of the API server's window and re-listing everything.
//!
//! Start-up waits for each cache's first full list, but only so long: a list that keeps failing
//! (a 403 where the permission check was skipped, a broken API server) is an error naming the
//! namespace and the API server's answer, instead of a consumer that never starts serving and
//! never says why. Once filled, a cache never fails: the watcher logs errors and retries with
//! kube-runtime's default backoff, re-listing when its resource version is too old (410 Gone),
//! and the cache keeps answering from what it last saw meanwhile.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use tocsin_model::Digest;

use crate::images;
use crate::workloads::{workload_of, Controllers, Workload};
use crate::KubeError;

/// An image as a pod can be found running it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Image {
    /// By manifest digest ([`images::digests`]).
    Digest(Digest),
    /// By normalised reference, for containers whose digest is not known
    /// ([`images::unresolved`]).
    Reference(String),
}

/// The workloads running images.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// For each of `images` that some watched pod runs, the workloads running it.
    async fn running(
        &self,
        images: &BTreeSet<Image>,
    ) -> Result<BTreeMap<Image, BTreeSet<Workload>>, KubeError>;
}

/// [`Cluster`] from watched pods.
pub struct PodCache {
    stores: Vec<Store<Pod>>,
    controllers: Arc<dyn Controllers>,
    /// The watchers feeding `stores`: they stop with the cache, so a failed start leaves
    /// nothing retrying behind it.
    watchers: Vec<tokio::task::AbortHandle>,
}

impl PodCache {
    /// Starts watching the pods matching `selector` (a label selector, all pods when `None` or
    /// empty) in `namespaces` (all namespaces when empty) on tasks of their own, which re-list
    /// and back off on errors as kube-runtime's watcher does; returns once every cache holds its
    /// first full list, or an error naming the first namespace whose list did not succeed
    /// within `ready_within` and the last error its watcher saw.
    pub async fn start(
        client: Client,
        namespaces: &[String],
        selector: Option<&str>,
        controllers: Arc<dyn Controllers>,
        ready_within: Duration,
    ) -> Result<PodCache, KubeError> {
        let deadline = tokio::time::Instant::now() + ready_within;
        let scopes: Vec<(String, Api<Pod>)> = if namespaces.is_empty() {
            vec![("all namespaces".to_string(), Api::all(client))]
        } else {
            namespaces
                .iter()
                .map(|ns| {
                    (
                        format!("namespace {ns}"),
                        Api::namespaced(client.clone(), ns),
                    )
                })
                .collect()
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = selector.filter(|s| !s.is_empty()) {
            config = config.labels(selector);
        }
        let mut cache = PodCache {
            stores: Vec::new(),
            controllers,
            watchers: Vec::new(),
        };
        let mut last_errors = Vec::new();
        for (scope, api) in scopes {
            let (store, writer) = reflector::store();
            let stream =
                reflector::reflector(writer, watcher(api, config.clone()).default_backoff());
            // The watcher only logs its errors; the last one is what a start that times out
            // has to tell.
            let (last_error, seen) = tokio::sync::watch::channel(None::<String>);
            let task = tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    if let Err(e) = event {
                        tracing::warn!(error = %e, "watching pods; the watcher retries");
                        last_error.send_replace(Some(describe(&e)));
                    }
                }
            });
            cache.watchers.push(task.abort_handle());
            cache.stores.push(store);
            last_errors.push((scope, seen));
        }
        for (store, (scope, seen)) in cache.stores.iter().zip(&last_errors) {
            match tokio::time::timeout_at(deadline, store.wait_until_ready()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(KubeError::Config(format!(
                        "the pod cache of {scope} stopped: {e}"
                    )))
                }
                Err(_) => {
                    let cause = seen
                        .borrow()
                        .clone()
                        .unwrap_or_else(|| "the API server did not answer".to_string());
                    return Err(KubeError::Config(format!(
                        "could not list the pods in {scope} within {ready_within:?}: {cause}"
                    )));
                }
            }
        }
        Ok(cache)
    }

    /// A cache over pods a test provides.
    pub fn from_stores(stores: Vec<Store<Pod>>, controllers: Arc<dyn Controllers>) -> PodCache {
        PodCache {
            stores,
            controllers,
            watchers: Vec::new(),
        }
    }
}

/// `e`, with the API server's answer told plainly rather than as kube's debug dump of it.
fn describe(e: &watcher::Error) -> String {
    let (doing, status) = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => ("listing", s),
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => ("watching", s),
        watcher::Error::WatchError(s) => ("watching", s),
        _ => return e.to_string(),
    };
    format!(
        "{doing}, the API server answered {} {}: {}",
        status.code, status.reason, status.message
    )
}

impl Drop for PodCache {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
    }
}

#[async_trait::async_trait]
impl Cluster for PodCache {
    async fn running(
        &self,
        wanted: &BTreeSet<Image>,
    ) -> Result<BTreeMap<Image, BTreeSet<Workload>>, KubeError> {
        let by_reference = wanted.iter().any(|i| matches!(i, Image::Reference(_)));
        let mut out: BTreeMap<Image, BTreeSet<Workload>> = BTreeMap::new();
        for store in &self.stores {
            for pod in store.state() {
                let mut runs: Vec<Image> = images::digests(&pod)
                    .into_iter()
                    .map(Image::Digest)
                    .filter(|i| wanted.contains(i))
                    .collect();
                if by_reference {
                    runs.extend(
                        images::unresolved(&pod)
                            .into_iter()
                            .map(Image::Reference)
                            .filter(|i| wanted.contains(i)),
                    );
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde_json::{json, Value};

    /// Responses are axum bodies because kube's own body cannot be streamed from a test, and a
    /// watch is a stream the test writes events into.
    type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<axum::body::Body>>;
    type Respond = tower_test::mock::SendResponse<Response<axum::body::Body>>;
    type Events = futures::channel::mpsc::UnboundedSender<Result<String, std::io::Error>>;

    /// Long enough for a loaded machine and the watcher's backoff (under 2 s after a first
    /// error); only a hang reaches it.
    const PATIENCE: Duration = Duration::from_secs(20);

    const SELECTOR: &str = "app=web,tier!=batch";

    /// Looks nothing up: every pod here is bare, its own workload.
    struct NoControllers;

    #[async_trait::async_trait]
    impl Controllers for NoControllers {
        async fn controller_of(
            &self,
            kind: &str,
            _namespace: &str,
            name: &str,
        ) -> Result<Option<OwnerReference>, KubeError> {
            panic!("a bare pod needs no lookup, asked for {kind} {name}");
        }
    }

    fn client() -> (Client, Handle) {
        let (service, handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<axum::body::Body>>();
        (Client::new(service, "default"), handle)
    }

    async fn start(
        client: Client,
        namespaces: &[&str],
        selector: Option<&str>,
        ready_within: Duration,
    ) -> Result<PodCache, KubeError> {
        let namespaces: Vec<String> = namespaces.iter().map(ToString::to_string).collect();
        PodCache::start(
            client,
            &namespaces,
            selector,
            Arc::new(NoControllers),
            ready_within,
        )
        .await
    }

    /// The digest pod `name` runs, its own.
    fn digest(name: &str) -> String {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(name)))
    }

    /// A bare pod in `namespace`, running [`digest`]`(name)` as the kubelet reports it.
    fn pod(namespace: &str, name: &str, resource_version: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                "resourceVersion": resource_version},
            "spec": {"containers": [{"name": "app", "image": format!("registry.example/{name}:1")}]},
            "status": {"containerStatuses": [{"name": "app",
                "image": format!("registry.example/{name}:1"),
                "imageID": format!("docker-pullable://registry.example/{name}@{}", digest(name)),
                "ready": true, "restartCount": 0}]}
        })
    }

    fn respond(code: u16, body: &Value) -> Response<axum::body::Body> {
        Response::builder()
            .status(code)
            .body(axum::body::Body::from(
                serde_json::to_vec(body).expect("JSON"),
            ))
            .expect("a response")
    }

    fn list(resource_version: &str, pods: &[Value]) -> Response<axum::body::Body> {
        respond(
            200,
            &json!({"apiVersion": "v1", "kind": "PodList",
                "metadata": {"resourceVersion": resource_version}, "items": pods}),
        )
    }

    fn status(code: u16, reason: &str, message: &str) -> Response<axum::body::Body> {
        respond(
            code,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "reason": reason, "code": code}),
        )
    }

    /// A watch response kept open: each line sent on the sender is one event; dropping the
    /// sender ends the watch.
    fn watch() -> (Events, Response<axum::body::Body>) {
        let (events, body) = futures::channel::mpsc::unbounded();
        let response = Response::builder()
            .status(200)
            .body(axum::body::Body::from_stream(body))
            .expect("a response");
        (events, response)
    }

    fn send(events: &Events, event: &Value) {
        events
            .unbounded_send(Ok(format!("{event}\n")))
            .expect("the watch is open");
    }

    /// The next request's path and decoded query.
    async fn next(handle: &mut Handle) -> (String, BTreeMap<String, String>, Respond) {
        let (req, respond) = tokio::time::timeout(PATIENCE, handle.next_request())
            .await
            .expect("a request in time")
            .expect("a request");
        assert_eq!(req.method(), "GET");
        let url = reqwest::Url::parse(&format!("http://api{}", req.uri())).expect("a URL");
        let query = url.query_pairs().into_owned().collect();
        (url.path().to_string(), query, respond)
    }

    /// What the watcher's list asks: the first page of the most recent state, no resource
    /// version.
    fn list_query(selector: Option<&str>) -> BTreeMap<String, String> {
        let mut q = BTreeMap::from([("limit".to_string(), "500".to_string())]);
        if let Some(s) = selector {
            q.insert("labelSelector".into(), s.into());
        }
        q
    }

    /// What the watcher's watch asks: changes after `resource_version`, with bookmarks.
    fn watch_query(selector: Option<&str>, resource_version: &str) -> BTreeMap<String, String> {
        let mut q = BTreeMap::from([
            ("watch".to_string(), "true".to_string()),
            ("allowWatchBookmarks".into(), "true".into()),
            ("resourceVersion".into(), resource_version.into()),
            ("timeoutSeconds".into(), "290".into()),
        ]);
        if let Some(s) = selector {
            q.insert("labelSelector".into(), s.into());
        }
        q
    }

    /// The names of the (bare) pods the cache finds running any of `names`' digests.
    async fn running(cache: &PodCache, names: &[&str]) -> BTreeSet<String> {
        let digests: BTreeSet<Image> = names
            .iter()
            .map(|n| Image::Digest(Digest::parse(&digest(n)).expect("a digest")))
            .collect();
        let found = cache.running(&digests).await.expect("answered");
        for (d, workloads) in &found {
            for w in workloads {
                assert_eq!(
                    d,
                    &Image::Digest(Digest::parse(&digest(&w.name)).expect("a digest")),
                    "{w:?}"
                );
                assert_eq!(
                    (w.kind.as_str(), w.uid.clone()),
                    ("Pod", format!("uid-{}", w.name))
                );
            }
        }
        found
            .into_values()
            .flatten()
            .map(|w| format!("{}/{}", w.namespace, w.name))
            .collect()
    }

    /// Polls until the cache finds exactly `expected`; watch events reach it on another task.
    async fn eventually(cache: &PodCache, names: &[&str], expected: &[&str]) {
        let expected: BTreeSet<String> = expected.iter().map(ToString::to_string).collect();
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                if running(cache, names).await == expected {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let now = running(cache, names).await;
        assert!(waited.is_ok(), "found {now:?}, expected {expected:?}");
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(ToString::to_string).collect()
    }

    #[tokio::test]
    async fn the_selector_reaches_the_list_and_the_watch() {
        for (namespaces, path) in [
            (&["shop"][..], "/api/v1/namespaces/shop/pods"),
            (&[][..], "/api/v1/pods"),
        ] {
            let (client, mut handle) = client();
            let starting = tokio::spawn(start(client, namespaces, Some(SELECTOR), PATIENCE));
            let (p, q, respond) = next(&mut handle).await;
            assert_eq!((p.as_str(), q), (path, list_query(Some(SELECTOR))));
            respond.send_response(list("100", &[pod("shop", "a-web", "90")]));
            let cache = starting.await.expect("joined").expect("started");
            assert_eq!(running(&cache, &["a-web"]).await, set(&["shop/a-web"]));

            let (p, q, respond) = next(&mut handle).await;
            assert_eq!((p.as_str(), q), (path, watch_query(Some(SELECTOR), "100")));
            let (events, response) = watch();
            respond.send_response(response);
            send(
                &events,
                &json!({"type": "ADDED", "object": pod("shop", "b-web", "101")}),
            );
            eventually(&cache, &["a-web", "b-web"], &["shop/a-web", "shop/b-web"]).await;
        }
    }

    #[tokio::test]
    async fn an_empty_selector_selects_everything() {
        let (client, mut handle) = client();
        let starting = tokio::spawn(start(client, &["shop"], Some(""), PATIENCE));
        let (_, q, respond) = next(&mut handle).await;
        assert_eq!(q, list_query(None));
        respond.send_response(list("1", &[]));
        let _cache = starting.await.expect("joined").expect("started");
        let (_, q, _respond) = next(&mut handle).await;
        assert_eq!(q, watch_query(None, "1"));
    }

    /// A watch whose resource version fell out of the API server's window (410 Gone) is
    /// started over from a new list, which replaces the cache: a pod only the new list has is
    /// found, one it lacks is gone.
    #[tokio::test]
    async fn a_watch_gone_too_old_lists_again() {
        let (client, mut handle) = client();
        let starting = tokio::spawn(start(client, &["shop"], None, PATIENCE));
        let path = "/api/v1/namespaces/shop/pods";
        let (p, q, respond) = next(&mut handle).await;
        assert_eq!((p.as_str(), q), (path, list_query(None)));
        respond.send_response(list(
            "10",
            &[pod("shop", "kept", "5"), pod("shop", "old", "6")],
        ));
        let cache = starting.await.expect("joined").expect("started");
        let names = ["kept", "old", "new"];
        assert_eq!(
            running(&cache, &names).await,
            set(&["shop/kept", "shop/old"])
        );

        let (p, q, respond) = next(&mut handle).await;
        assert_eq!((p.as_str(), q), (path, watch_query(None, "10")));
        let (events, response) = watch();
        respond.send_response(response);
        send(
            &events,
            &json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "status": "Failure", "code": 410, "reason": "Expired",
                "message": "too old resource version"}}),
        );

        let (p, q, respond) = next(&mut handle).await;
        assert_eq!((p.as_str(), q), (path, list_query(None)), "a new list");
        respond.send_response(list(
            "20",
            &[pod("shop", "kept", "5"), pod("shop", "new", "18")],
        ));
        let (p, q, _respond) = next(&mut handle).await;
        assert_eq!((p.as_str(), q), (path, watch_query(None, "20")));
        // The watcher asks for the watch only after the reflector stored the whole list.
        assert_eq!(
            running(&cache, &names).await,
            set(&["shop/kept", "shop/new"])
        );
        drop(events);
    }

    /// A bookmark moves the resource version a resumed watch starts from, past events that
    /// did not match the watch.
    #[tokio::test]
    async fn a_bookmark_moves_where_the_next_watch_starts() {
        let (client, mut handle) = client();
        let starting = tokio::spawn(start(client, &[], Some(SELECTOR), PATIENCE));
        let (p, q, respond) = next(&mut handle).await;
        assert_eq!(
            (p.as_str(), q),
            ("/api/v1/pods", list_query(Some(SELECTOR)))
        );
        respond.send_response(list("10", &[]));
        let cache = starting.await.expect("joined").expect("started");

        let (p, q, respond) = next(&mut handle).await;
        assert_eq!(
            (p.as_str(), q),
            ("/api/v1/pods", watch_query(Some(SELECTOR), "10"))
        );
        let (events, response) = watch();
        respond.send_response(response);
        send(
            &events,
            &json!({"type": "ADDED", "object": pod("shop", "web", "11")}),
        );
        send(
            &events,
            &json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"resourceVersion": "35"}}}),
        );
        // The API server ends every watch after its timeout; the next one resumes.
        drop(events);

        let (p, q, _respond) = next(&mut handle).await;
        assert_eq!(
            (p.as_str(), q),
            ("/api/v1/pods", watch_query(Some(SELECTOR), "35"))
        );
        assert_eq!(running(&cache, &["web"]).await, set(&["shop/web"]));
    }

    /// Of two namespaces, the one whose lists are forbidden fails the start, named with the
    /// API server's answer, once the bound has passed (the watcher keeps retrying until then,
    /// in case the role is being granted).
    #[tokio::test]
    async fn a_list_that_keeps_failing_fails_the_start() {
        let (client, mut handle) = client();
        let (seen, mut requests) = futures::channel::mpsc::unbounded();
        let server = tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                let (path, query, respond) = next(&mut handle).await;
                if path == "/api/v1/namespaces/ops/pods" {
                    respond.send_response(status(
                        403,
                        "Forbidden",
                        "pods is forbidden: User \"system:serviceaccount:tocsin:tocsin\" \
                         cannot list resource \"pods\" in API group \"\" in the namespace \"ops\"",
                    ));
                } else if query.contains_key("watch") {
                    // Held open, as the API server would.
                    open.push(respond);
                } else {
                    respond.send_response(list("1", &[]));
                }
                seen.unbounded_send((path, query))
                    .expect("the test listens");
            }
        });
        let started = tokio::time::timeout(
            PATIENCE,
            start(client, &["shop", "ops"], None, Duration::from_secs(5)),
        )
        .await
        .expect("start gives up by itself");
        let Err(KubeError::Config(text)) = started else {
            panic!("not a Config error: {:?}", started.map(|_| ()));
        };
        assert!(
            text.starts_with(
                "could not list the pods in namespace ops within 5s: listing, the API server \
                 answered 403 Forbidden: pods is forbidden: User"
            ) && text.contains("cannot list resource \"pods\""),
            "{text}"
        );
        server.abort();
        let mut ops = 0;
        while let Ok((path, query)) = requests.try_recv() {
            if path == "/api/v1/namespaces/ops/pods" {
                assert_eq!(query, list_query(None), "only lists, never a watch");
                ops += 1;
            }
        }
        assert!(ops >= 1);
    }

    /// A watch the API server fails (500) after the start is retried from the same resource
    /// version, without a new list, and the cache answers meanwhile.
    #[tokio::test]
    async fn a_failing_watch_is_retried_and_the_cache_keeps_serving() {
        let (client, mut handle) = client();
        let starting = tokio::spawn(start(client, &["shop"], None, PATIENCE));
        let path = "/api/v1/namespaces/shop/pods";
        let (_, q, respond) = next(&mut handle).await;
        assert_eq!(q, list_query(None));
        respond.send_response(list("10", &[pod("shop", "one", "9")]));
        let cache = starting.await.expect("joined").expect("started");

        let (p, q, respond) = next(&mut handle).await;
        assert_eq!((p.as_str(), q), (path, watch_query(None, "10")));
        respond.send_response(status(500, "InternalError", "etcd is unavailable"));
        assert_eq!(running(&cache, &["one", "two"]).await, set(&["shop/one"]));

        let (p, q, respond) = next(&mut handle).await;
        assert_eq!(
            (p.as_str(), q),
            (path, watch_query(None, "10")),
            "the same watch"
        );
        let (events, response) = watch();
        respond.send_response(response);
        send(
            &events,
            &json!({"type": "ADDED", "object": pod("shop", "two", "11")}),
        );
        eventually(&cache, &["one", "two"], &["shop/one", "shop/two"]).await;
    }
}
