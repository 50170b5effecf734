//! Clair v4 notifications (wire reference §2.1, §2.5) and the delivery bookkeeping around them.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::claircore::{Distribution, Package, Repository};
use crate::{Digest, Severity};

/// Why a manifest is in a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Newly affected.
    Added,
    /// No longer affected.
    Removed,
    /// Still affected, but the vulnerability changed (opt-in; not in Clair's enum).
    Changed,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Added => "added",
            Reason::Removed => "removed",
            Reason::Changed => "changed",
        }
    }
}

/// The vulnerability summary of a v4 notification.
///
/// Written with both `severity` and `normalized_severity` (same value) and both `repo` and
/// `repository`, because Clair's notifier writes one and Quay and Clair's OpenAPI read the other.
#[derive(Clone, Debug, PartialEq)]
pub struct VulnSummary {
    /// Advisory name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Affected package.
    pub package: Option<Package>,
    /// Affected distribution.
    pub distribution: Option<Distribution>,
    /// Affected repository.
    pub repository: Option<Repository>,
    /// Normalised severity.
    pub severity: Severity,
    /// Fixed version.
    pub fixed_in_version: String,
    /// Space-separated links.
    pub links: String,
}

#[derive(Serialize)]
struct VulnSummaryOut<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<&'a Package>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distribution: Option<&'a Distribution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo: Option<&'a Repository>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<&'a Repository>,
    severity: Severity,
    normalized_severity: Severity,
    fixed_in_version: &'a str,
    links: &'a str,
}

#[derive(Deserialize)]
struct VulnSummaryIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    package: Option<Package>,
    #[serde(default)]
    distribution: Option<Distribution>,
    #[serde(default)]
    repo: Option<Repository>,
    #[serde(default)]
    repository: Option<Repository>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    normalized_severity: Option<Severity>,
    #[serde(default)]
    fixed_in_version: String,
    #[serde(default)]
    links: String,
}

impl Serialize for VulnSummary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        VulnSummaryOut {
            name: &self.name,
            description: &self.description,
            package: self.package.as_ref(),
            distribution: self.distribution.as_ref(),
            repo: self.repository.as_ref(),
            repository: self.repository.as_ref(),
            severity: self.severity,
            normalized_severity: self.severity,
            fixed_in_version: &self.fixed_in_version,
            links: &self.links,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for VulnSummary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = VulnSummaryIn::deserialize(d)?;
        Ok(VulnSummary {
            name: v.name,
            description: v.description,
            package: v.package,
            distribution: v.distribution,
            repository: v.repository.or(v.repo),
            severity: v.normalized_severity.or(v.severity).unwrap_or_default(),
            fixed_in_version: v.fixed_in_version,
            links: v.links,
        })
    }
}

impl VulnSummary {
    /// The summary of one of tocsin's vulnerabilities.
    pub fn of(v: &crate::vuln::Vulnerability) -> Self {
        VulnSummary {
            name: v.name.clone(),
            description: v.description.clone(),
            package: Some(v.claircore_package()),
            distribution: v.distribution.clone(),
            repository: v.repository.clone(),
            severity: v.normalized_severity,
            fixed_in_version: v.fixed_in_version.clone(),
            links: v.links.clone(),
        }
    }
}

/// One v4 notification entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Entry id.
    pub id: Uuid,
    /// The manifest.
    pub manifest: Digest,
    /// Why.
    pub reason: Reason,
    /// Which vulnerability.
    pub vulnerability: VulnSummary,
}

/// Paging information of a v4 page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageInfo {
    /// The requested page size, echoed.
    pub size: u64,
    /// Token for the next page; present only when more entries follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A page of a v4 notification set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationPage {
    /// Paging.
    pub page: PageInfo,
    /// The entries (always an array).
    pub notifications: Vec<Notification>,
}

/// The delivery state of a notification set (its receipt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Created, not yet delivered.
    Created,
    /// Delivered to the channel.
    Delivered,
    /// The last attempt failed; more will follow until the dead-letter age.
    DeliveryFailed,
    /// Gave up: older than the dead-letter age without a successful delivery.
    DeadLetter,
    /// Deleted by the client (or after direct delivery); never delivered again.
    Deleted,
}

impl ReceiptStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Created => "created",
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::DeliveryFailed => "delivery_failed",
            ReceiptStatus::DeadLetter => "dead_letter",
            ReceiptStatus::Deleted => "deleted",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ReceiptStatus::Created,
            ReceiptStatus::Delivered,
            ReceiptStatus::DeliveryFailed,
            ReceiptStatus::DeadLetter,
            ReceiptStatus::Deleted,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_writes_both_spellings_and_reads_either() {
        let s = VulnSummary {
            name: "CVE-1".into(),
            description: "d".into(),
            package: None,
            distribution: None,
            repository: Some(Repository {
                name: "pypi".into(),
                ..Default::default()
            }),
            severity: Severity::High,
            fixed_in_version: "1.2".into(),
            links: "".into(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["severity"], "High");
        assert_eq!(v["normalized_severity"], "High");
        assert_eq!(v["repo"], v["repository"]);
        assert!(v.get("package").is_none());
        let back: VulnSummary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn page_omits_next_at_the_end() {
        let p = NotificationPage {
            page: PageInfo {
                size: 10,
                next: None,
            },
            notifications: vec![],
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"page":{"size":10},"notifications":[]}"#
        );
    }
}
