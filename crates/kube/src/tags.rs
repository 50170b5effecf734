//! The optional mapping of images to the references pods run them by (`--tag-label KEY`), for
//! clusters that run images by tag: a container whose digest is not known (not started, or a
//! runtime that reports none) runs manifest `D` when `D`'s label `KEY` names the container's
//! image reference (tocsin's manifests carry labels such as `image=registry/repo:tag`).
//!
//! The labels are read from the notifier that sent the notification — tocsin serves
//! `GET /api/v1/manifests/{digest}` on the same port as its pull and v3 APIs — signed like the
//! other calls, within the same timeout and a size bound, and kept per (notifier, digest) so a
//! notification naming a manifest a thousand times asks once. A notifier without that API (a
//! real Clair answers 404) maps nothing. v2/v3 notifications from a tocsin configured with
//! `legacy_layer_label: KEY` already name their images by the label's value; such a name is
//! taken as the reference directly.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tocsin_deliver::jwt::PskSigner;
use tocsin_model::Digest;

use crate::images;
use crate::KubeError;

/// Largest manifest answer read (it carries the manifest's whole index report).
const MAX_MANIFEST_BYTES: usize = 32 << 20;
/// Entries kept before the cache starts over, so a long-running consumer stays bounded.
const CACHE_LIMIT: usize = 50_000;

/// Maps manifests to references through a label.
pub struct TagMap {
    label: String,
    http: reqwest::Client,
    signer: Option<Arc<PskSigner>>,
    cache: Mutex<HashMap<(String, Digest), Option<String>>>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    labels: HashMap<String, String>,
}

impl TagMap {
    /// A map through label `label`, reading manifests within `timeout`, signed by `signer`.
    pub fn new(
        label: &str,
        signer: Option<PskSigner>,
        timeout: Duration,
    ) -> Result<TagMap, KubeError> {
        if label.is_empty() || label.chars().any(|c| c.is_whitespace() || c == '=') {
            return Err(KubeError::Config(format!(
                "--tag-label {label:?} is not a label key"
            )));
        }
        Ok(TagMap {
            label: label.to_string(),
            http: crate::http::client(timeout)?,
            signer: signer.map(Arc::new),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The normalised reference `digest` is labelled with at the notifier `base`
    /// (`scheme://host:port`); `None` when it has no such label or the notifier does not
    /// know the manifest.
    pub async fn reference(
        &self,
        base: &str,
        digest: &Digest,
    ) -> Result<Option<String>, KubeError> {
        let key = (base.to_string(), digest.clone());
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let url = format!("{}/api/v1/manifests/{digest}", base.trim_end_matches('/'));
        let failed = |e: &dyn std::fmt::Display| KubeError::Notifier(format!("GET {url}: {e}"));
        let req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json");
        let resp = crate::http::signed(req, self.signer.as_deref())?
            .send()
            .await
            .map_err(|e| failed(&e))?;
        let status = resp.status();
        let found = if status == reqwest::StatusCode::NOT_FOUND {
            None
        } else if !status.is_success() {
            return Err(failed(&format!("HTTP {status}")));
        } else {
            let body = crate::http::body(resp, MAX_MANIFEST_BYTES, &format!("GET {url}")).await?;
            let m: Manifest = serde_json::from_slice(&body)
                .map_err(|e| failed(&format!("not a manifest: {e}")))?;
            m.labels.get(&self.label).and_then(|v| images::normalize(v))
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, found.clone());
        }
        Ok(found)
    }
}

/// `scheme://host[:port]` of `url`.
pub fn origin(url: &str) -> Result<String, KubeError> {
    let u = reqwest::Url::parse(url)
        .map_err(|e| KubeError::Notifier(format!("{url:?} is not a URL: {e}")))?;
    let o = u.origin();
    if o.is_tuple() {
        Ok(o.ascii_serialization())
    } else {
        Err(KubeError::Notifier(format!("{url:?} has no origin")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Path, State};
    use axum::routing::get;

    const D: &str = "sha256:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a";
    const E: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    async fn manifest(
        State(calls): State<Arc<Mutex<u32>>>,
        Path(digest): Path<String>,
    ) -> Result<axum::Json<serde_json::Value>, axum::http::StatusCode> {
        *calls.lock().expect("lock") += 1;
        if digest == D {
            Ok(axum::Json(
                serde_json::json!({"digest": D, "format": "dpkg",
                "labels": {"image": "shop/web:1.2", "team": "a"}, "report": {}}),
            ))
        } else {
            Err(axum::http::StatusCode::NOT_FOUND)
        }
    }

    #[tokio::test]
    async fn a_labelled_manifest_maps_to_its_normalised_reference_once() {
        let calls = Arc::new(Mutex::new(0));
        let app = axum::Router::new()
            .route("/api/v1/manifests/{digest}", get(manifest))
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base =
            origin(&format!("http://{addr}/notifier/api/v1/notification/abc")).expect("an origin");
        assert_eq!(base, format!("http://{addr}"));

        let map = TagMap::new("image", None, Duration::from_secs(5)).expect("a map");
        let d = Digest::parse(D).expect("a digest");
        for _ in 0..3 {
            assert_eq!(
                map.reference(&base, &d).await.expect("answered").as_deref(),
                Some("docker.io/shop/web:1.2")
            );
        }
        let e = Digest::parse(E).expect("a digest");
        assert_eq!(map.reference(&base, &e).await.expect("answered"), None);
        assert_eq!(map.reference(&base, &e).await.expect("answered"), None);
        assert_eq!(*calls.lock().expect("lock"), 2, "one call per manifest");

        let other = TagMap::new("team", None, Duration::from_secs(5)).expect("a map");
        assert_eq!(
            other
                .reference(&base, &d)
                .await
                .expect("answered")
                .as_deref(),
            Some("docker.io/library/a:latest")
        );
        assert!(TagMap::new("a=b", None, Duration::from_secs(5)).is_err());
    }
}
