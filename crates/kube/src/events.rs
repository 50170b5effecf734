//! The events the consumer records (events.k8s.io/v1), built so that a real API server accepts
//! them and so that one (workload, vulnerability, reason) is one event object.
//!
//! kube-runtime's `Recorder` is not used: it aggregates by (object, reason, action) and ignores
//! the note, so every vulnerability of a workload would collapse into one event. Here the
//! event's name is derived from the workload's uid, the reason, the vulnerability and the
//! package, so the same pair always lands on the same object: recording it again bumps its
//! `series` instead of adding an event, and a notification replayed after a crash finds its
//! own mark (the [`NOTIFICATION_ANNOTATION`]) and adds nothing.
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::workloads::Workload;
use crate::KubeError;

/// The annotation naming the last notification an event was recorded for.
pub const NOTIFICATION_ANNOTATION: &str = "tocsin.dev/notification";
/// The vulnerability an event is about, for tools that read events (the note is prose).
pub const VULNERABILITY_ANNOTATION: &str = "tocsin.dev/vulnerability";
/// The package, as the notification names it.
pub const PACKAGE_ANNOTATION: &str = "tocsin.dev/package";
/// The image: its manifest digest.
pub const IMAGE_ANNOTATION: &str = "tocsin.dev/image";
/// The event's `action`.
pub const ACTION: &str = "ImageScan";
/// The longest note the API server accepts, in bytes.
pub const NOTE_LIMIT: usize = 1024;
/// The longest `reportingInstance` and `action` the API server accepts.
const FIELD_LIMIT: usize = 128;

/// Why an event is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// An image of the workload became affected (`added`): a `Warning`.
    Found,
    /// It no longer is (`removed`): `Normal`.
    Resolved,
}

impl Reason {
    /// The event's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Found => "VulnerabilityFound",
            Reason::Resolved => "VulnerabilityResolved",
        }
    }

    /// The event's `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Reason::Found => "Warning",
            Reason::Resolved => "Normal",
        }
    }
}

/// One vulnerability of one image, as a notification names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Found or resolved.
    pub reason: Reason,
    /// The advisory's name.
    pub vulnerability: String,
    /// Its severity, as the notification gives it.
    pub severity: String,
    /// The affected package.
    pub package: String,
    /// The fixed version, or "".
    pub fixed_in: String,
    /// The image: its manifest digest, or the reference the workload runs.
    pub image: String,
}

impl Finding {
    /// The event's note: "image has vulnerability …" with the vulnerability, severity, package,
    /// fixed version and image, cut to [`NOTE_LIMIT`] bytes at a character boundary.
    pub fn note(&self) -> String {
        let fixed = if self.fixed_in.is_empty() {
            "no fixed version".to_string()
        } else {
            format!("fixed in {}", self.fixed_in)
        };
        // v2/v3 notifications name no package.
        let package = if self.package.is_empty() {
            String::new()
        } else {
            format!(" in package {}", self.package)
        };
        let text = match self.reason {
            Reason::Found => format!(
                "image has vulnerability {} ({}){package}, {fixed}: {}",
                self.vulnerability, self.severity, self.image
            ),
            Reason::Resolved => format!(
                "image no longer has vulnerability {} ({}){package}: {}",
                self.vulnerability, self.severity, self.image
            ),
        };
        truncate(text, NOTE_LIMIT)
    }
}

/// `text` cut to at most `limit` bytes, at a character boundary.
fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Who records: `reportingController` (a qualified name, `tocsin.dev/kube`) and
/// `reportingInstance` (the consumer's pod, or host, name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reporter {
    controller: String,
    instance: String,
}

impl Reporter {
    /// Checks both as the API server does: the controller a qualified name `prefix/name` with a
    /// DNS-subdomain prefix, the instance 1–128 characters.
    pub fn new(controller: &str, instance: &str) -> Result<Reporter, KubeError> {
        let bad =
            |why: &str| KubeError::Config(format!("reporting controller {controller:?} {why}"));
        let (prefix, name) = controller
            .split_once('/')
            .ok_or_else(|| bad("must be a qualified name such as tocsin.dev/kube"))?;
        let subdomain = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        };
        let qualified_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if !subdomain(prefix) || !qualified_name(name) {
            return Err(bad("must be a qualified name such as tocsin.dev/kube"));
        }
        if instance.is_empty() || instance.len() > FIELD_LIMIT {
            return Err(KubeError::Config(format!(
                "reporting instance {instance:?} must be 1 to {FIELD_LIMIT} characters"
            )));
        }
        Ok(Reporter {
            controller: controller.to_string(),
            instance: instance.to_string(),
        })
    }
}

/// The name of the event for `finding` on `workload`: the workload's name (cut so the whole
/// stays a valid name) and 16 hex digits of a hash of its uid, the reason, the vulnerability
/// and the package.
pub fn event_name(workload: &Workload, finding: &Finding) -> String {
    let mut h = Sha256::new();
    for part in [
        workload.uid.as_str(),
        finding.reason.as_str(),
        finding.vulnerability.as_str(),
        finding.package.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hash = hex::encode(h.finalize());
    let stem: String = workload.name.chars().take(200).collect();
    format!("{}.{}", stem.trim_end_matches(['.', '-']), &hash[..16])
}

/// The event recording `finding` on `workload` for notification `notification`, at `at`.
pub fn event(
    workload: &Workload,
    finding: &Finding,
    reporter: &Reporter,
    notification: &str,
    at: OffsetDateTime,
) -> Event {
    let micros = (at.unix_timestamp_nanos() / 1000) as i64;
    let when = k8s_openapi::jiff::Timestamp::from_microsecond(micros)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(workload, finding)),
            namespace: Some(workload.namespace.clone()),
            annotations: Some(
                [
                    (NOTIFICATION_ANNOTATION, notification),
                    (VULNERABILITY_ANNOTATION, finding.vulnerability.as_str()),
                    (PACKAGE_ANNOTATION, finding.package.as_str()),
                    (IMAGE_ANNOTATION, finding.image.as_str()),
                ]
                .into_iter()
                // v2/v3 notifications name no package.
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(when)),
        action: Some(ACTION.into()),
        reason: Some(finding.reason.as_str().into()),
        type_: Some(finding.reason.event_type().into()),
        note: Some(finding.note()),
        regarding: Some(workload.reference()),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        crate::fixtures::workload("web")
    }

    use crate::fixtures::finding;

    #[test]
    fn an_event_is_what_the_api_server_validates() {
        let reporter = Reporter::new("tocsin.dev/kube", "tocsin-kube-6f9c-x2x").expect("valid");
        let at = time::macros::datetime!(2026-12-07 10:00:00.123456 UTC);
        let e = event(&workload(), &finding("DSA-5139-1"), &reporter, "n-1", at);
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("VulnerabilityFound"));
        assert_eq!(e.action.as_deref(), Some(ACTION));
        let note = e.note.as_deref().expect("a note");
        assert!(note.starts_with("image has vulnerability DSA-5139-1 (High) in package openssl"));
        assert!(note.contains("fixed in 1.1.1n-0+deb10u2") && note.ends_with("47791a"));
        let json = serde_json::to_value(&e).expect("JSON");
        assert_eq!(json["eventTime"], "2026-12-07T10:00:00.123456Z");
        assert_eq!(json["regarding"]["kind"], "Deployment");
        assert_eq!(json["regarding"]["uid"], workload().uid);
        assert_eq!(json["reportingController"], "tocsin.dev/kube");
        assert_eq!(json["metadata"]["namespace"], "shop");
        let annotations = &json["metadata"]["annotations"];
        assert_eq!(annotations[NOTIFICATION_ANNOTATION], "n-1");
        assert_eq!(annotations[VULNERABILITY_ANNOTATION], "DSA-5139-1");
        assert_eq!(annotations[PACKAGE_ANNOTATION], "openssl");
        assert!(annotations[IMAGE_ANNOTATION]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:")));

        // A v2/v3 notification names no package: the note says nothing of one, and there is
        // no empty annotation.
        let v3 = Finding {
            package: String::new(),
            fixed_in: String::new(),
            ..finding("CVE-2022-1292")
        };
        let e = event(&workload(), &v3, &reporter, "n-2", at);
        let note = e.note.as_deref().expect("a note");
        assert!(
            note.starts_with("image has vulnerability CVE-2022-1292 (High), no fixed version: "),
            "{note}"
        );
        let json = serde_json::to_value(&e).expect("JSON");
        assert!(json["metadata"]["annotations"][PACKAGE_ANNOTATION].is_null());
    }

    #[test]
    fn one_object_per_workload_vulnerability_and_reason() {
        let (w, a) = (workload(), finding("CVE-2022-1292"));
        assert_eq!(event_name(&w, &a), event_name(&w, &a.clone()));
        let b = finding("CVE-2022-2068");
        assert_ne!(event_name(&w, &a), event_name(&w, &b));
        let resolved = Finding {
            reason: Reason::Resolved,
            ..a.clone()
        };
        assert_ne!(event_name(&w, &a), event_name(&w, &resolved));
        let other = Workload {
            uid: "another".into(),
            ..w.clone()
        };
        assert_ne!(event_name(&w, &a), event_name(&other, &a));
        let long = Workload {
            name: "a".repeat(253),
            ..w
        };
        assert!(event_name(&long, &a).len() <= 253);
    }

    #[test]
    fn notes_are_cut_to_the_limit_at_a_character_boundary() {
        let mut f = finding("CVE-1");
        f.package = "é".repeat(2000);
        let note = f.note();
        assert!(note.len() <= NOTE_LIMIT && note.len() > NOTE_LIMIT - 4);
        let resolved = Finding {
            reason: Reason::Resolved,
            fixed_in: String::new(),
            ..finding("CVE-2")
        };
        assert!(resolved
            .note()
            .starts_with("image no longer has vulnerability CVE-2 (High)"));
        let unfixed = Finding {
            fixed_in: String::new(),
            ..finding("CVE-3")
        };
        assert!(unfixed.note().contains("no fixed version"));
    }

    #[test]
    fn reporters_are_checked_as_the_api_server_does() {
        for ok in ["tocsin.dev/kube", "example.com/scanner-1"] {
            assert!(Reporter::new(ok, "i").is_ok(), "{ok}");
        }
        for bad in [
            "kube",
            "/kube",
            "Tocsin.dev/kube",
            "tocsin.dev/",
            "tocsin.dev/-x",
            "a..b/c",
        ] {
            assert!(Reporter::new(bad, "i").is_err(), "{bad}");
        }
        assert!(Reporter::new("tocsin.dev/kube", "").is_err());
        assert!(Reporter::new("tocsin.dev/kube", &"i".repeat(129)).is_err());
    }
}
