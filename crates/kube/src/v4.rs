//! Clair v4 notifications: the webhook body, the pull API's pages and the acknowledgement.
//!
//! The webhook says `{"notification_id","callback"}`; the pages are
//! `GET <callback>?page_size=N[&next=T]` → `{"page":{"size","next"},"notifications":[…]}`,
//! where `next` is present only while more entries follow; `DELETE <callback>` acknowledges
//! (a 404 is "already gone", as Quay treats it). Calls are signed with the PSK when one is
//! configured, as Quay signs its calls to Clair's notifier. Every answer is read within a size
//! bound and the whole call within a timeout.
use std::time::Duration;

use serde::Deserialize;
use tocsin_deliver::jwt::PskSigner;
use tocsin_model::{Digest, Severity};

use crate::events::Reason;
use crate::KubeError;

/// The webhook body of Clair v4.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Webhook {
    /// The notification set's id.
    pub notification_id: String,
    /// Its pull-API URL.
    pub callback: String,
}

/// One entry of a page, as far as events need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The manifest it is about.
    pub manifest: Digest,
    /// `added` → found, `removed` → resolved.
    pub reason: Reason,
    /// The advisory's name.
    pub vulnerability: String,
    /// Its normalised severity.
    pub severity: Severity,
    /// The affected package.
    pub package: String,
    /// The fixed version, or "".
    pub fixed_in: String,
}

/// One page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Its entries.
    pub entries: Vec<Entry>,
    /// The token of the next page; `None` at the end.
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct WirePage {
    #[serde(default)]
    page: WirePageInfo,
    #[serde(default)]
    notifications: Vec<WireEntry>,
}

#[derive(Default, Deserialize)]
struct WirePageInfo {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct WireEntry {
    manifest: String,
    reason: String,
    vulnerability: WireVulnerability,
}

#[derive(Deserialize)]
struct WireVulnerability {
    #[serde(default)]
    name: String,
    #[serde(default)]
    normalized_severity: String,
    #[serde(default)]
    fixed_in_version: String,
    #[serde(default)]
    package: Option<WirePackage>,
}

#[derive(Deserialize)]
struct WirePackage {
    #[serde(default)]
    name: String,
}

/// Reads a page. An entry with a manifest that is not a digest or a reason other than `added`
/// or `removed` makes the page an error naming it: skipping it would lose an event.
pub fn parse_page(body: &[u8]) -> Result<Page, KubeError> {
    let page: WirePage = serde_json::from_slice(body)
        .map_err(|e| KubeError::Notifier(format!("a notification page does not read: {e}")))?;
    let mut entries = Vec::with_capacity(page.notifications.len());
    for (i, n) in page.notifications.into_iter().enumerate() {
        let bad = |why: String| KubeError::Notifier(format!("notification entry {i}: {why}"));
        let manifest = Digest::parse(&n.manifest)
            .map_err(|e| bad(format!("manifest {:?}: {e}", n.manifest)))?;
        let reason = match n.reason.as_str() {
            "added" => Reason::Found,
            "removed" => Reason::Resolved,
            other => return Err(bad(format!("reason {other:?} is not added or removed"))),
        };
        entries.push(Entry {
            manifest,
            reason,
            severity: n
                .vulnerability
                .normalized_severity
                .parse()
                .unwrap_or(Severity::Unknown),
            vulnerability: n.vulnerability.name,
            package: n.vulnerability.package.map(|p| p.name).unwrap_or_default(),
            fixed_in: n.vulnerability.fixed_in_version,
        });
    }
    Ok(Page {
        entries,
        next: page.page.next.filter(|n| !n.is_empty()),
    })
}

/// Largest page answer read.
const MAX_PAGE_BYTES: usize = 64 << 20;

/// A client of v4 pull APIs (tocsin's or Clair's).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    signer: Option<std::sync::Arc<PskSigner>>,
    page_size: u32,
}

impl Client {
    /// Pages of `page_size` entries, each call within `timeout`, signed by `signer` if any.
    pub fn new(
        signer: Option<PskSigner>,
        page_size: u32,
        timeout: Duration,
    ) -> Result<Client, KubeError> {
        Ok(Client {
            http: crate::http::client(timeout)?,
            signer: signer.map(std::sync::Arc::new),
            page_size: page_size.max(1),
        })
    }

    fn signed(&self, b: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, KubeError> {
        crate::http::signed(b, self.signer.as_deref())
    }

    /// The page of `callback` after `next` (the first page when `None`); `None` when the
    /// notification is gone (404: acknowledged or collected already, as Quay reads it).
    pub async fn page(
        &self,
        callback: &str,
        next: Option<&str>,
    ) -> Result<Option<Page>, KubeError> {
        let mut url = reqwest::Url::parse(callback)
            .map_err(|e| KubeError::Notifier(format!("callback {callback:?}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("page_size", &self.page_size.to_string());
        if let Some(n) = next {
            url.query_pairs_mut().append_pair("next", n);
        }
        let failed = |e: reqwest::Error| KubeError::Notifier(format!("GET {url}: {e}"));
        let resp = self
            .signed(self.http.get(url.clone()))?
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failed)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(KubeError::Notifier(format!("GET {url}: HTTP {status}")));
        }
        let body = crate::http::body(resp, MAX_PAGE_BYTES, &format!("GET {url}")).await?;
        parse_page(&body).map(Some)
    }

    /// Acknowledges the notification: `DELETE <callback>`; 404 means already gone.
    pub async fn acknowledge(&self, callback: &str) -> Result<(), KubeError> {
        let resp = self
            .signed(self.http.delete(callback))?
            .send()
            .await
            .map_err(|e| KubeError::Notifier(format!("DELETE {callback}: {e}")))?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(KubeError::Notifier(format!(
                "DELETE {callback}: HTTP {status}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "sha256:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a";

    #[test]
    fn pages_read_as_clair_sends_them() {
        let body = serde_json::json!({
            "page": {"size": 2, "next": "0a1c8a4e-0000-4000-8000-000000000001"},
            "notifications": [
                {"id": "1", "manifest": M, "reason": "added", "vulnerability": {
                    "name": "DSA-5139-1", "fixed_in_version": "1.1.1n-0+deb10u2",
                    "links": "", "description": "", "normalized_severity": "High",
                    "package": {"id": "", "name": "openssl", "version": "", "kind": "binary"}}},
                {"id": "2", "manifest": M, "reason": "removed", "vulnerability": {
                    "name": "CVE-1", "normalized_severity": "Critically odd"}}
            ]
        });
        let page = parse_page(&serde_json::to_vec(&body).expect("JSON")).expect("a page");
        assert_eq!(
            page.next.as_deref(),
            Some("0a1c8a4e-0000-4000-8000-000000000001")
        );
        assert_eq!(page.entries.len(), 2);
        let (a, b) = (&page.entries[0], &page.entries[1]);
        assert_eq!((a.reason, a.severity), (Reason::Found, Severity::High));
        assert_eq!(
            (a.package.as_str(), a.fixed_in.as_str()),
            ("openssl", "1.1.1n-0+deb10u2")
        );
        assert_eq!(
            (b.reason, b.severity),
            (Reason::Resolved, Severity::Unknown)
        );
        assert_eq!(b.package, "");
        let last = parse_page(br#"{"page":{"size":2},"notifications":[]}"#).expect("a page");
        assert_eq!(
            last,
            Page {
                entries: vec![],
                next: None
            }
        );
    }

    #[test]
    fn an_entry_that_cannot_be_acted_on_is_an_error() {
        for (manifest, reason) in [("sha256:abc", "added"), (M, "changed")] {
            let body = serde_json::json!({"page": {}, "notifications": [
                {"manifest": manifest, "reason": reason, "vulnerability": {"name": "X"}}]});
            let err = parse_page(&serde_json::to_vec(&body).expect("JSON")).expect_err("bad");
            assert!(err.to_string().contains("entry 0"), "{err}");
        }
        assert!(parse_page(b"<html>").is_err());
    }
}
