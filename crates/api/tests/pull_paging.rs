//! The Clair v4 pull API at scale: a notification set of more than 10,000 entries, made for real
//! (real inventories indexed over HTTP, a real Debian feed snapshot imported over HTTP and
//! processed by the engine), paged through over HTTP with every page size a client may use.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::http::StatusCode;
use common::*;
use tocsin_engine::projection::V4Options;
use tocsin_engine::EngineConfig;

/// Copies of the jackson-databind buster image, each under its own digest. The 2022-10-01 Debian
/// snapshot affects each copy with 20 advisory/package pairs, so 520 copies give 10,400 entries:
/// above 10,000 and a multiple of none of the page sizes below but 1.
const COPIES: u64 = 520;

/// One entry as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    id: String,
    manifest: String,
    reason: String,
    name: String,
    package: String,
}

/// What one full or partial pass saw.
struct Pass {
    entries: Vec<Seen>,
    pages: usize,
}

fn is_uuid_shaped(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Pages through set `id` with `page_size` (`None`: the parameter is left out), stopping after
/// `max_pages` pages. Checks every page's shape on the way.
async fn pass(app: &TestApp, id: &str, page_size: Option<u64>, max_pages: usize) -> Pass {
    let mut entries = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    let want_size = page_size.unwrap_or(500);
    loop {
        let mut uri = format!("/notifier/api/v1/notification/{id}");
        let mut params = Vec::new();
        if let Some(n) = page_size {
            params.push(format!("page_size={n}"));
        }
        if let Some(t) = &next {
            params.push(format!("next={t}"));
        }
        if !params.is_empty() {
            uri = format!("{uri}?{}", params.join("&"));
        }
        let r = app.get(&uri).await;
        let page = r.expect(StatusCode::OK);
        assert_eq!(
            r.content_type(),
            "application/vnd.clair.notification_page.v1+json"
        );
        pages += 1;
        assert_eq!(
            page["page"]["size"].as_u64(),
            Some(want_size),
            "page.size echoes the request ({uri})"
        );
        let list = page["notifications"]
            .as_array()
            .unwrap_or_else(|| panic!("notifications is an array: {page}"));
        assert!(list.len() as u64 <= want_size, "{uri}: page too long");
        for n in list {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            let seen = Seen {
                id: s(&n["id"]),
                manifest: s(&n["manifest"]),
                reason: s(&n["reason"]),
                name: s(&n["vulnerability"]["name"]),
                package: s(&n["vulnerability"]["package"]["name"]),
            };
            assert!(
                is_uuid_shaped(&seen.id) && !seen.manifest.is_empty() && !seen.name.is_empty(),
                "malformed entry {n}"
            );
            entries.push(seen);
        }
        match page["page"].get("next") {
            Some(t) => {
                let t = t
                    .as_str()
                    .unwrap_or_else(|| panic!("next is a string: {page}"));
                assert!(is_uuid_shaped(t), "next token {t:?} is not UUID-shaped");
                // A page that promises more is a full page: a short page with `next` would make
                // clients issue one more request for nothing, or end early if they check length.
                assert_eq!(list.len() as u64, want_size, "{uri}: short page with next");
                next = Some(t.to_string());
            }
            None => {
                assert!(
                    page["page"].as_object().is_some_and(|p| p.len() == 1),
                    "only size on the last page: {page}"
                );
                return Pass { entries, pages };
            }
        }
        if pages == max_pages {
            return Pass { entries, pages };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_page_exactly_once_in_a_stable_order() {
    let Some(data) = data() else { return };
    let app = TestApp::with(Options {
        engine: EngineConfig {
            v4: V4Options {
                disable_summary: true,
                changed_reason: false,
            },
            ..Default::default()
        },
        ..Default::default()
    })
    .await;

    let jackson = read(&data.join(JACKSON));
    let mut digests = BTreeSet::new();
    for i in 0..COPIES {
        let d = digest_n(i);
        app.put(
            &format!("/api/v1/manifests/{d}"),
            rekeyed_index_report(&jackson, &d),
        )
        .await
        .expect(StatusCode::CREATED);
        digests.insert(d);
    }

    // The updater's first operation notifies everything it affects (Clair's behaviour).
    let first = &snapshots(&data, "debian")[0];
    let imported = app
        .put("/api/v1/updaters/osv/debian/snapshot", read(first))
        .await
        .expect(StatusCode::CREATED);
    let processed = imported["processed"]
        .as_array()
        .expect("processed is an array");
    assert_eq!(processed.len(), 1, "{imported}");
    let total = processed[0]["entries"].as_u64().expect("entries") as usize;
    let id = processed[0]["notification_id"]
        .as_str()
        .expect("a set was created")
        .to_string();
    assert!(total >= 10_000, "only {total} entries");

    // What every copy must be notified of: the report of the image (all copies are the same
    // inventory), computed by the forward direction, independently of the change detection.
    let report = app
        .get(&format!(
            "/matcher/api/v1/vulnerability_report/{}",
            digest_n(0)
        ))
        .await
        .expect(StatusCode::OK);
    let mut per_copy = BTreeSet::new();
    for v in report["vulnerabilities"]
        .as_object()
        .expect("vulnerabilities map")
        .values()
    {
        per_copy.insert((
            v["name"].as_str().unwrap_or_default().to_string(),
            v["package"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    assert_eq!(per_copy.len() * COPIES as usize, total);

    // The reference pass: the default page size, no page_size parameter at all.
    let reference = pass(&app, &id, None, usize::MAX).await;
    assert_eq!(reference.entries.len(), total);
    assert_eq!(reference.pages, total.div_ceil(500));
    let ids: HashSet<&str> = reference.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), total, "an entry id appears twice");
    let mut by_manifest: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
    for e in &reference.entries {
        assert_eq!(e.reason, "added");
        assert!(
            by_manifest
                .entry(e.manifest.as_str())
                .or_default()
                .insert((e.name.clone(), e.package.clone())),
            "{} notified twice of {} on {}",
            e.manifest,
            e.name,
            e.package
        );
    }
    assert_eq!(
        by_manifest
            .keys()
            .map(|d| d.to_string())
            .collect::<BTreeSet<_>>(),
        digests
    );
    assert!(by_manifest.values().all(|s| *s == per_copy));
    // Page order is the projection's documented order: grouped by manifest, in digest order.
    assert!(reference
        .entries
        .windows(2)
        .all(|w| w[0].manifest <= w[1].manifest));

    // Every other page size sees the same entries in the same order.
    for size in [7, 500, 1000, 10_000] {
        let p = pass(&app, &id, Some(size), usize::MAX).await;
        assert_eq!(p.pages, total.div_ceil(size as usize), "page_size={size}");
        assert!(
            p.entries == reference.entries,
            "page_size={size}: entries or their order differ from the default pass"
        );
    }
    // page_size=1 over a prefix: 2,000 requests.
    let p = pass(&app, &id, Some(1), 2_000).await;
    assert_eq!(p.pages, 2_000);
    assert!(p.entries[..] == reference.entries[..2_000]);
}
