//! Start-up check of the consumer's permissions, with SelfSubjectAccessReviews: a missing one
//! is a clear error naming every permission lacking, instead of a watcher retrying forbidden
//! lists forever or events failing one by one later.
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::KubeError;

/// One permission: verb on group/resource, in a namespace or cluster-wide (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// `list`, `watch`, `get`, `create`.
    pub verb: &'static str,
    /// API group ("" for the core group).
    pub group: &'static str,
    /// Resource, plural.
    pub resource: &'static str,
    /// Namespace, or every namespace.
    pub namespace: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        match &self.namespace {
            Some(ns) => write!(
                f,
                "{} {}{group} in namespace {ns}",
                self.verb, self.resource
            ),
            None => write!(
                f,
                "{} {}{group} in all namespaces",
                self.verb, self.resource
            ),
        }
    }
}

/// What the consumer needs where it watches `namespaces` (all when empty).
pub fn needed(namespaces: &[String]) -> Vec<Permission> {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let mut out = Vec::new();
    for ns in scopes {
        for (verb, group, resource) in [
            ("list", "", "pods"),
            ("watch", "", "pods"),
            ("get", "apps", "replicasets"),
            ("get", "batch", "jobs"),
            ("create", "events.k8s.io", "events"),
            ("get", "events.k8s.io", "events"),
            ("update", "events.k8s.io", "events"),
        ] {
            out.push(Permission {
                verb,
                group,
                resource,
                namespace: ns.clone(),
            });
        }
    }
    out
}

/// Asks the API server about each of `permissions`; an error lists every one denied.
pub async fn check(client: &Client, permissions: &[Permission]) -> Result<(), KubeError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for p in permissions {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(p.verb.into()),
                    group: Some(p.group.into()),
                    resource: Some(p.resource.into()),
                    namespace: p.namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| KubeError::Api {
                what: format!("asking whether it may {p} (SelfSubjectAccessReview)"),
                source: Box::new(e),
            })?;
        let status = answer.status.unwrap_or_default();
        if !status.allowed {
            let why = status
                .reason
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            denied.push(format!("{p}{why}"));
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(KubeError::Config(format!(
            "the consumer's service account lacks permissions: {}; deploy/kubernetes/rbac.yaml \
             grants exactly what it needs",
            denied.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    #[test]
    fn what_is_needed_where() {
        let all = needed(&[]);
        assert!(all.iter().all(|p| p.namespace.is_none()));
        assert!(all.contains(&Permission {
            verb: "watch",
            group: "",
            resource: "pods",
            namespace: None
        }));
        let two = needed(&["shop".into(), "ops".into()]);
        assert_eq!(two.len(), 2 * all.len());
        assert_eq!(
            two[4].to_string(),
            "create events.events.k8s.io in namespace shop"
        );
    }

    /// The shipped ClusterRole grants every permission the check asks for, and no other.
    #[test]
    fn the_shipped_role_is_exactly_what_is_checked() {
        use serde::Deserialize as _;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/kubernetes/rbac.yaml");
        let text = std::fs::read_to_string(&path).expect("deploy/kubernetes/rbac.yaml");
        let role = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde_json::Value::deserialize(d).expect("YAML"))
            .find(|d| d["kind"] == "ClusterRole")
            .expect("a ClusterRole");
        let mut granted = std::collections::BTreeSet::new();
        for rule in role["rules"].as_array().expect("rules") {
            let strings = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|v| v.as_str().expect("a string").to_string())
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        granted.insert((verb, group.clone(), resource.clone()));
                    }
                }
            }
        }
        let checked: std::collections::BTreeSet<(String, String, String)> = needed(&[])
            .into_iter()
            .map(|p| (p.verb.into(), p.group.into(), p.resource.into()))
            .collect();
        assert_eq!(granted, checked);
    }

    #[tokio::test]
    async fn denied_permissions_are_named_together() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let server = tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                assert_eq!(
                    req.uri().path(),
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
                );
                let bytes = req.into_body().collect_bytes().await.expect("a body");
                let mut review: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                let attrs = &review["spec"]["resourceAttributes"];
                let allowed = attrs["resource"] != "jobs" && attrs["verb"] != "watch";
                review["status"] = serde_json::json!({"allowed": allowed,
                    "reason": if allowed { "" } else { "no RBAC policy matched" }});
                send.send_response(
                    Response::builder()
                        .status(201)
                        .body(Body::from(serde_json::to_vec(&review).expect("JSON")))
                        .expect("a response"),
                );
            }
        });
        let err = check(&client, &needed(&["shop".into()]))
            .await
            .expect_err("two are denied");
        let text = err.to_string();
        assert!(
            text.contains("watch pods in namespace shop (no RBAC policy matched)")
                && text.contains("get jobs.batch in namespace shop")
                && !text.contains("list pods"),
            "{text}"
        );
        drop(client);
        server.abort();
    }
}
