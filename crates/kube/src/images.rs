//! Which images a pod runs.
//!
//! A pod runs manifest `D` when one of its container statuses (containers, init and ephemeral
//! containers) has an `imageID` ending in `@D` — what the kubelet reports the runtime resolved,
//! `docker-pullable://registry/repo@sha256:…` or `registry/repo@sha256:…` — or when its spec
//! pins an image by digest (`registry/repo:tag@sha256:…`), which covers pods not yet started.
//! Containers whose digest is not known are returned apart, by reference ([`unresolved`]), for
//! the optional mapping through a manifest label.
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

/// The images `pod` runs by reference only: containers whose spec image is not pinned by
/// digest and whose status gives no digest either (not started, or a runtime that reports
/// none), as [`normalize`]d references. A container whose digest is known is matched by it
/// alone: a tag moved since the pod started names another manifest than the one it runs.
pub fn unresolved(pod: &Pod) -> BTreeSet<String> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let resolved: BTreeSet<&str> = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
        })
        .filter(|c| pinned(&c.image_id).is_some())
        .map(|c| c.name.as_str())
        .collect();
    let containers = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .map(|c| (c.name.as_str(), c.image.as_deref()))
    });
    let ephemeral = spec.into_iter().flat_map(|s| {
        s.ephemeral_containers
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.image.as_deref()))
    });
    containers
        .chain(ephemeral)
        .filter(|(name, _)| !resolved.contains(name))
        .filter_map(|(_, image)| image)
        .filter(|i| pinned(i).is_none())
        .filter_map(normalize)
        .collect()
}

/// `reference` in the one form a container runtime resolves it to, so that the ways people
/// write one image compare equal: `nginx`, `docker.io/nginx` and
/// `docker.io/library/nginx:latest` are all `docker.io/library/nginx:latest`. A first
/// component with a `.` or a `:`, or `localhost`, is a registry; otherwise the registry is
/// Docker Hub, whose one-component repositories live under `library/`. No tag means `latest`;
/// a digest is kept. `None` for what is not an image reference (empty, spaces, upper-case
/// repository).
pub fn normalize(reference: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    // A tag is what follows the last ':' after the last '/' (a registry's port comes before).
    let (name, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        "docker.io".to_string()
    } else {
        registry
    };
    if path.is_empty() || path.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let path = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let mut out = format!("{registry}/{path}");
    match (tag, digest) {
        (Some(t), _) if !t.is_empty() => out.push_str(&format!(":{t}")),
        (_, None) => out.push_str(":latest"),
        _ => {}
    }
    if let Some(d) = digest {
        out.push_str(&format!("@{d}"));
    }
    Some(out)
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
        // Every container's digest is known: nothing is matched by reference.
        assert!(unresolved(&p).is_empty());
    }

    #[test]
    fn containers_without_a_known_digest_are_matched_by_reference() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [
                    {"name": "app", "image": "registry.example/app:1.0"},
                    {"name": "side", "image": "nginx"},
                    {"name": "pinned", "image": format!("registry.example/p:1@{A}")}
                ],
                "initContainers": [{"name": "init", "image": "registry.example:5000/init"}]
            },
            "status": {
                "containerStatuses": [
                    {"name": "app", "image": "registry.example/app:1.0", "imageID": "",
                        "ready": false, "restartCount": 0},
                    {"name": "side", "image": "nginx:latest",
                        "imageID": format!("docker.io/library/nginx@{B}"),
                        "ready": true, "restartCount": 0}
                ]
            }
        }));
        let refs: Vec<String> = unresolved(&p).into_iter().collect();
        assert_eq!(
            refs,
            vec![
                "registry.example/app:1.0",
                "registry.example:5000/init:latest"
            ]
        );
    }

    #[test]
    fn references_normalize_as_a_runtime_resolves_them() {
        for (written, normal) in [
            ("nginx", Some("docker.io/library/nginx:latest")),
            ("docker.io/nginx", Some("docker.io/library/nginx:latest")),
            (
                "index.docker.io/library/nginx:1.25",
                Some("docker.io/library/nginx:1.25"),
            ),
            ("bitnami/redis:7", Some("docker.io/bitnami/redis:7")),
            ("quay.io/org/app", Some("quay.io/org/app:latest")),
            ("localhost/app:dev", Some("localhost/app:dev")),
            (
                "registry:5000/team/app",
                Some("registry:5000/team/app:latest"),
            ),
            (
                "registry:5000/team/app:2@sha256:abc",
                Some("registry:5000/team/app:2@sha256:abc"),
            ),
            ("", None),
            ("has space", None),
            ("Upper/Case", None),
        ] {
            assert_eq!(normalize(written).as_deref(), normal, "{written:?}");
        }
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
