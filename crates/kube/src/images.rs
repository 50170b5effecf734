//! Which images a pod runs.
//!
//! A pod runs manifest `D` when one of its container statuses (containers, init and ephemeral
//! containers) has an `imageID` ending in `@D` — what the kubelet reports the runtime resolved,
//! `docker-pullable://registry/repo@sha256:…` or `registry/repo@sha256:…` — or when its spec
//! pins an image by digest (`registry/repo:tag@sha256:…`), which covers pods not yet started.
//! Images the spec names by tag only are returned apart ([`tagged`]), for the optional mapping
//! through a manifest label.
use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use tocsin_model::Digest;

/// The digest `reference` is pinned to: what follows its last `@`, when that is a digest.
pub fn pinned(reference: &str) -> Option<Digest> {
    let (_, digest) = reference.rsplit_once('@')?;
    Digest::parse(digest).ok()
}

/// Every spec image of `pod`: containers, init containers, ephemeral containers.
fn spec_images(pod: &Pod) -> impl Iterator<Item = &str> {
    let spec = pod.spec.as_ref();
    let containers = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .filter_map(|c| c.image.as_deref());
    let ephemeral = spec
        .into_iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .filter_map(|c| c.image.as_deref());
    containers.chain(ephemeral)
}

/// The manifest digests `pod` runs (module doc).
pub fn digests(pod: &Pod) -> BTreeSet<Digest> {
    let statuses = pod.status.as_ref().into_iter().flat_map(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .chain(s.init_container_statuses.iter().flatten())
            .chain(s.ephemeral_container_statuses.iter().flatten())
            .map(|c| c.image_id.as_str())
    });
    statuses
        .chain(spec_images(pod))
        .filter_map(pinned)
        .collect()
}

/// The spec images `pod` names by tag only (not pinned by digest), as written.
pub fn tagged(pod: &Pod) -> BTreeSet<String> {
    spec_images(pod)
        .filter(|i| pinned(i).is_none())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a";
    const B: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const C: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a Pod")
    }

    #[test]
    fn statuses_and_pinned_specs_name_the_digests() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [{"name": "app", "image": "registry.example/app:1.0"}],
                "initContainers": [{"name": "init", "image": format!("registry.example/init:2@{B}")}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
            },
            "status": {
                "containerStatuses": [{"name": "app", "image": "registry.example/app:1.0",
                    "imageID": format!("docker-pullable://registry.example/app@{A}"),
                    "ready": true, "restartCount": 0}],
                "ephemeralContainerStatuses": [{"name": "debug", "image": "busybox",
                    "imageID": format!("docker.io/library/busybox@{C}"),
                    "ready": false, "restartCount": 0}]
            }
        }));
        let got: Vec<String> = digests(&p).iter().map(ToString::to_string).collect();
        assert_eq!(got, vec![A, B, C]);
        let tags: Vec<String> = tagged(&p).into_iter().collect();
        assert_eq!(tags, vec!["busybox", "registry.example/app:1.0"]);
    }

    #[test]
    fn odd_references_name_nothing() {
        for r in [
            "",
            "@",
            "repo@sha256:short",
            "repo@md5:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a",
            "repo:tag",
            "containerd://0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a",
        ] {
            assert_eq!(pinned(r), None, "{r:?}");
        }
        assert!(digests(&pod(serde_json::json!({"metadata": {"name": "bare"}}))).is_empty());
    }
}
