//! Clair v2/v3 notifications: the webhook body, the v3 gRPC `NotificationService` pages and
//! the read mark, and how the two streams of a notification are walked.
//!
//! The webhook says `{"Notification":{"Name":…}}` and nothing else, so the consumer is told
//! where Clair's v3 API is (`--clair-v3`). A notification is one changed vulnerability: the
//! *old* stream lists the images its old version affected, the *new* stream the images its new
//! version affects, both in ascending `index` (a stable id of the image, the same in both
//! streams, strictly increasing across pages). Every image of the new stream gets
//! `VulnerabilityFound`; an image of the old stream that is not in the new one gets
//! `VulnerabilityResolved`.
//!
//! Deciding "not in the new one" without holding a whole stream: the streams are walked side by
//! side ([`step`]). An old image is decided once the new stream's page reaches past its index;
//! the new stream moves to its next page only when no old image at or below the end of its
//! current page can still be undecided, and the old stream moves once every image on its page is
//! decided. Each stream's checkpoint is its page token and the highest index done, so a restarted
//! consumer asks for the same pages and skips every index at or below the mark ("once index 500
//! is processed, nothing below 500 comes again").
//!
//! Calls go to package `coreos.clair`; a server that does not implement it (Clair before
//! 2018-04) is asked again under the older `clairpb` name, and that is remembered. Each call has
//! a timeout and answers are bounded in size; calls carry Clair's PSK JWT when one is set
//! (tocsin guards its gRPC service with it).
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tocsin_clairpb::clairpb::notification_service_client::NotificationServiceClient as OldClient;
use tocsin_clairpb::coreos::clair::notification_service_client::NotificationServiceClient;
use tocsin_clairpb::coreos::clair::{
    GetNotificationRequest, MarkNotificationAsReadRequest, PagedVulnerableAncestries,
};
use tocsin_deliver::jwt::PskSigner;
use tocsin_model::Severity;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use crate::checkpoint::Streams;
use crate::KubeError;

/// The webhook body of Clair v1/v2/v3.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Webhook {
    /// `{"Name": …}`.
    #[serde(rename = "Notification")]
    pub notification: WebhookNotification,
}

/// The webhook's notification.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WebhookNotification {
    /// The notification's name.
    #[serde(rename = "Name")]
    pub name: String,
}

/// The vulnerability of one stream, as far as events need it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vulnerability {
    /// Its name.
    pub name: String,
    /// Its severity as Clair spells it (`High`, `Defcon1`…).
    pub severity: String,
    /// The version that fixes it, if the server says (notifications usually do not).
    pub fixed_by: String,
}

impl Vulnerability {
    /// The severity, normalised; an unknown spelling is `Unknown`.
    pub fn normalized_severity(&self) -> Severity {
        self.severity.parse().unwrap_or(Severity::Unknown)
    }
}

/// An image on a page: its index and name (a manifest digest, or whatever name the notifier
/// gives images, such as a label value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ancestry {
    /// The stable, increasing index.
    pub index: i32,
    /// The image's name.
    pub name: String,
}

/// One page of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamPage {
    /// The stream's vulnerability (`None`: no such version, e.g. a new advisory has no old one).
    pub vulnerability: Option<Vulnerability>,
    /// Its images on this page, in ascending index.
    pub ancestries: Vec<Ancestry>,
    /// The next page's token; "" at the end of the stream.
    pub next: String,
}

/// One answer of `GetNotification`: a page of each stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The old stream's page.
    pub old: StreamPage,
    /// The new stream's page.
    pub new: StreamPage,
}

fn stream_page(p: Option<PagedVulnerableAncestries>, which: &str) -> Result<StreamPage, KubeError> {
    let Some(p) = p else {
        return Ok(StreamPage::default());
    };
    let mut last: Option<i32> = None;
    for a in &p.ancestries {
        if last.is_some_and(|l| a.index <= l) {
            return Err(KubeError::Notifier(format!(
                "the {which} stream's indexes do not increase ({} after {})",
                a.index,
                last.unwrap_or_default()
            )));
        }
        last = Some(a.index);
    }
    Ok(StreamPage {
        vulnerability: p.vulnerability.map(|v| Vulnerability {
            name: v.name,
            severity: v.severity,
            fixed_by: v.fixed_by,
        }),
        ancestries: p
            .ancestries
            .into_iter()
            .map(|a| Ancestry {
                index: a.index,
                name: a.name,
            })
            .collect(),
        next: p.next_page,
    })
}

/// What one page of a notification asks for, and where the streams go next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Images of the new stream not done before: `VulnerabilityFound`.
    pub found: Vec<Ancestry>,
    /// Images of the old stream decided on this page and absent from the new stream:
    /// `VulnerabilityResolved`.
    pub resolved: Vec<Ancestry>,
    /// Where the streams are once this step's events are recorded.
    pub next: Streams,
    /// Both streams are finished: only the read mark is left.
    pub done: bool,
}

/// Walks the streams one page further (module doc). `at` is where they were when `page` was
/// asked for; indexes at or below a stream's mark are the part of the page done before a
/// restart, and are skipped.
pub fn step(at: &Streams, page: &Page) -> Step {
    let (old, new) = (&page.old, &page.new);
    let found: Vec<Ancestry> = new
        .ancestries
        .iter()
        .filter(|a| at.new.through.is_none_or(|t| a.index > t))
        .cloned()
        .collect();
    // Past the end of the new stream nothing is in it; otherwise nothing beyond this page's
    // last index is known yet.
    let new_end = if new.next.is_empty() {
        i32::MAX
    } else {
        new.ancestries
            .last()
            .map(|a| a.index)
            .or(at.new.through)
            .unwrap_or(i32::MIN)
    };
    let in_new: BTreeSet<i32> = new.ancestries.iter().map(|a| a.index).collect();
    let undecided = old
        .ancestries
        .iter()
        .filter(|a| at.old.through.is_none_or(|t| a.index > t));
    let (decided, pending): (Vec<&Ancestry>, Vec<&Ancestry>) =
        undecided.partition(|a| a.index <= new_end);
    let resolved = decided
        .iter()
        .filter(|a| !in_new.contains(&a.index))
        .map(|a| (*a).clone())
        .collect();

    let mut next = at.clone();
    if let Some(last) = new.ancestries.last() {
        next.new.through = Some(next.new.through.map_or(last.index, |t| t.max(last.index)));
    }
    if let Some(last) = decided.last() {
        next.old.through = Some(next.old.through.map_or(last.index, |t| t.max(last.index)));
    }
    let old_page_done = pending.is_empty();
    let done = if old_page_done && !old.next.is_empty() {
        // The new page is asked for again with the next old page: old images on it may sit at
        // or below this new page's end.
        next.old.page = old.next.clone();
        false
    } else if !new.next.is_empty() {
        // Every old image still undecided lies past this new page.
        next.new.page = new.next.clone();
        false
    } else {
        // The new stream is finished, so every old image was decided.
        true
    };
    Step {
        found,
        resolved,
        next,
        done,
    }
}

/// Largest gRPC answer read.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// A client of a v3 `NotificationService` (Clair v3's, or tocsin's).
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    target: String,
    origin: String,
    signer: Option<Arc<PskSigner>>,
    limit: i32,
    /// The server answered `Unimplemented` under `coreos.clair`: use `clairpb`.
    old_package: Arc<AtomicBool>,
}

impl Client {
    /// A client of the service at `url` (`http://` or `https://host:port`), asking for `limit`
    /// images per stream and page, each call within `timeout`. `ca` is a PEM CA bundle
    /// trusted for `https` besides the web's roots.
    pub fn new(
        url: &str,
        ca: Option<&[u8]>,
        signer: Option<PskSigner>,
        limit: u32,
        timeout: Duration,
    ) -> Result<Client, KubeError> {
        let bad = |e: &dyn std::fmt::Display| KubeError::Config(format!("--clair-v3 {url}: {e}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e))?;
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad(&e))?
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)));
        match parsed.scheme() {
            "http" => {}
            "https" => {
                let mut tls = ClientTlsConfig::new().with_webpki_roots();
                if let Some(ca) = ca {
                    tls = tls.ca_certificate(Certificate::from_pem(ca));
                }
                endpoint = endpoint.tls_config(tls).map_err(|e| bad(&e))?;
            }
            other => return Err(bad(&format!("scheme {other:?} is not http or https"))),
        }
        Ok(Client {
            channel: endpoint.connect_lazy(),
            target: url.to_string(),
            origin: parsed.origin().ascii_serialization(),
            signer: signer.map(Arc::new),
            limit: i32::try_from(limit.max(1)).unwrap_or(i32::MAX),
            old_package: Arc::new(AtomicBool::new(false)),
        })
    }

    /// `scheme://host:port` of the API.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, KubeError> {
        let mut req = tonic::Request::new(message);
        if let Some(s) = &self.signer {
            let token = s
                .sign()
                .map_err(|e| KubeError::Config(format!("signing a request: {e}")))?;
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|e| KubeError::Config(format!("a bearer token header: {e}")))?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }

    fn failed(&self, call: &str, name: &str, status: &tonic::Status) -> KubeError {
        KubeError::Notifier(format!(
            "{call} {name:?} at {}: {:?}: {}",
            self.target,
            status.code(),
            status.message()
        ))
    }

    /// The pages at `at`'s tokens; `None` when the notification is gone: NOT_FOUND (collected)
    /// or `deleted` set (marked read already).
    pub async fn page(&self, name: &str, at: &Streams) -> Result<Option<Page>, KubeError> {
        let message = || GetNotificationRequest {
            old_vulnerability_page: at.old.page.clone(),
            new_vulnerability_page: at.new.page.clone(),
            limit: self.limit,
            name: name.to_string(),
        };
        let mut answer = Err(tonic::Status::unimplemented(""));
        if !self.old_package.load(Ordering::Relaxed) {
            answer = NotificationServiceClient::new(self.channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .get_notification(self.request(message())?)
                .await;
            if answer
                .as_ref()
                .is_err_and(|s| s.code() == Code::Unimplemented)
            {
                self.old_package.store(true, Ordering::Relaxed);
            }
        }
        if self.old_package.load(Ordering::Relaxed) {
            answer = OldClient::new(self.channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .get_notification(self.request(message())?)
                .await;
        }
        let notification = match answer {
            Ok(r) => r.into_inner().notification,
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(self.failed("GetNotification", name, &s)),
        };
        let Some(n) = notification else {
            return Err(KubeError::Notifier(format!(
                "GetNotification {name:?} at {}: an answer without a notification",
                self.target
            )));
        };
        // Marked read already (by this consumer before a crash, or by a webhook replayed
        // after): Clair keeps serving it with `deleted` set, and it is done.
        if !n.deleted.is_empty() {
            return Ok(None);
        }
        Ok(Some(Page {
            old: stream_page(n.old, "old")?,
            new: stream_page(n.new, "new")?,
        }))
    }

    /// Marks the notification read; NOT_FOUND means already gone (Clair answers a second mark
    /// that way).
    pub async fn mark_read(&self, name: &str) -> Result<(), KubeError> {
        let message = || MarkNotificationAsReadRequest {
            name: name.to_string(),
        };
        let answer = if self.old_package.load(Ordering::Relaxed) {
            OldClient::new(self.channel.clone())
                .mark_notification_as_read(self.request(message())?)
                .await
        } else {
            NotificationServiceClient::new(self.channel.clone())
                .mark_notification_as_read(self.request(message())?)
                .await
        };
        match answer {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(self.failed("MarkNotificationAsRead", name, &s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Stream;

    fn stream(indexes: &[i32], next: &str) -> StreamPage {
        StreamPage {
            vulnerability: None,
            ancestries: indexes
                .iter()
                .map(|i| Ancestry {
                    index: *i,
                    name: format!("image-{i}"),
                })
                .collect(),
            next: next.into(),
        }
    }

    /// Pages `old` and `new` (sorted index lists) `limit` at a time as a server does, walks
    /// them with [`step`] from `start`, and returns (found, resolved, requests made).
    fn walk(old: &[i32], new: &[i32], limit: usize, start: Streams) -> (Vec<i32>, Vec<i32>, u32) {
        // A token is the position of the page's first element.
        let serve = |all: &[i32], token: &str| -> StreamPage {
            let from: usize = if token.is_empty() {
                0
            } else {
                token.parse().expect("a token")
            };
            let end = (from + limit).min(all.len());
            let next = if end < all.len() {
                end.to_string()
            } else {
                String::new()
            };
            stream(&all[from..end], &next)
        };
        let (mut found, mut resolved, mut requests) = (vec![], vec![], 0);
        let mut at = start;
        loop {
            requests += 1;
            assert!(requests < 1000, "the walk does not end");
            let page = Page {
                old: serve(old, &at.old.page),
                new: serve(new, &at.new.page),
            };
            let s = step(&at, &page);
            found.extend(s.found.iter().map(|a| a.index));
            resolved.extend(s.resolved.iter().map(|a| a.index));
            at = s.next;
            if s.done {
                return (found, resolved, requests);
            }
        }
    }

    #[test]
    fn every_new_image_is_found_and_every_old_only_image_resolved() {
        let cases: &[(&[i32], &[i32])] = &[
            (&[], &[1, 2, 3]),
            (&[1, 2, 3], &[]),
            (&[1, 2, 3], &[1, 2, 3]),
            (&[2, 4, 6, 8, 10], &[1, 2, 3, 4, 5]),
            (&[3, 4], &[1, 3]),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[9]),
            (&[9], &[1, 2, 3, 4, 5, 6, 7, 8]),
            (&[5, 6, 7, 8, 20, 21], &[1, 2, 6, 19, 20, 30, 31, 32]),
            (&[], &[]),
        ];
        for (old, new) in cases {
            let want_resolved: Vec<i32> =
                old.iter().copied().filter(|i| !new.contains(i)).collect();
            for limit in [1, 2, 3, 100] {
                let (found, resolved, _) = walk(old, new, limit, Streams::default());
                assert_eq!(&found, new, "old {old:?} new {new:?} limit {limit}");
                assert_eq!(
                    resolved, want_resolved,
                    "old {old:?} new {new:?} limit {limit}"
                );
            }
        }
    }

    #[test]
    fn a_walk_resumed_from_any_checkpoint_repeats_and_skips_nothing() {
        let (old, new): (&[i32], &[i32]) = (&[2, 3, 5, 8, 13, 21], &[1, 2, 4, 8, 16, 21, 22]);
        let limit = 2;
        // Every checkpoint a walk passes through, and what was done before it.
        let mut at = Streams::default();
        let mut done_found = vec![];
        let mut done_resolved = vec![];
        let (all_found, all_resolved, _) = walk(old, new, limit, Streams::default());
        loop {
            let (found, resolved, _) = walk(old, new, limit, at.clone());
            let mut f = done_found.clone();
            f.extend(found);
            let mut r = done_resolved.clone();
            r.extend(resolved);
            assert_eq!((&f, &r), (&all_found, &all_resolved), "resumed at {at:?}");
            // One step further.
            let serve = |all: &[i32], token: &str| {
                let from: usize = if token.is_empty() {
                    0
                } else {
                    token.parse().expect("a token")
                };
                let end = (from + limit).min(all.len());
                stream(
                    &all[from..end],
                    &if end < all.len() {
                        end.to_string()
                    } else {
                        String::new()
                    },
                )
            };
            let s = step(
                &at,
                &Page {
                    old: serve(old, &at.old.page),
                    new: serve(new, &at.new.page),
                },
            );
            done_found.extend(s.found.iter().map(|a| a.index));
            done_resolved.extend(s.resolved.iter().map(|a| a.index));
            if s.done {
                break;
            }
            at = s.next;
        }
    }

    #[test]
    fn indexes_at_or_below_the_mark_are_not_done_again() {
        let at = Streams {
            old: Stream {
                page: "p".into(),
                through: Some(5),
            },
            new: Stream {
                page: "q".into(),
                through: Some(6),
            },
        };
        let page = Page {
            old: stream(&[4, 5, 7], ""),
            new: stream(&[6, 7, 9], ""),
        };
        let s = step(&at, &page);
        assert_eq!(s.found.iter().map(|a| a.index).collect::<Vec<_>>(), [7, 9]);
        assert!(s.resolved.is_empty(), "7 is in the new stream: {s:?}");
        assert!(s.done);
        assert_eq!((s.next.old.through, s.next.new.through), (Some(7), Some(9)));
    }

    #[test]
    fn pages_whose_indexes_do_not_increase_are_refused() {
        let p = PagedVulnerableAncestries {
            ancestries: vec![
                tocsin_clairpb::coreos::clair::IndexedAncestryName {
                    index: 3,
                    name: "a".into(),
                },
                tocsin_clairpb::coreos::clair::IndexedAncestryName {
                    index: 3,
                    name: "b".into(),
                },
            ],
            ..Default::default()
        };
        let err = stream_page(Some(p), "new").expect_err("not increasing");
        assert!(err.to_string().contains("do not increase"), "{err}");
    }

    #[test]
    fn the_webhook_reads_as_clair_sends_it() {
        let hook: Webhook = serde_json::from_slice(
            br#"{"Notification":{"Name":"ec45ec87-bfc8-4129-a1c3-d2b82622175a"}}"#,
        )
        .expect("a webhook");
        assert_eq!(
            hook.notification.name,
            "ec45ec87-bfc8-4129-a1c3-d2b82622175a"
        );
        assert!(serde_json::from_slice::<Webhook>(br#"{"notification_id":"x"}"#).is_err());
    }
}
