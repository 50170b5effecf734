//! What the consumer reads from outside, under arbitrary input: webhook bodies, v4 pages and
//! image references never panic and are refused or read whole; the v3 walk finds and resolves
//! exactly what the two streams imply, for any streams, page size and restart point.
use std::collections::BTreeSet;

use proptest::prelude::*;
use tocsin_kube::checkpoint::Streams;
use tocsin_kube::v3::{self, Ancestry, Page, StreamPage};
use tocsin_kube::{images, v4};

/// Serves `all` (sorted) `limit` at a time; a token is the position of the page's first index.
fn serve(all: &[i32], token: &str, limit: usize) -> StreamPage {
    let from: usize = token.parse().unwrap_or(0).min(all.len());
    let end = (from + limit).min(all.len());
    StreamPage {
        vulnerability: None,
        ancestries: all[from..end]
            .iter()
            .map(|i| Ancestry {
                index: *i,
                name: i.to_string(),
            })
            .collect(),
        next: if end < all.len() {
            end.to_string()
        } else {
            String::new()
        },
    }
}

/// Walks from `at` to the end, or `stop` steps; returns (found, resolved, where it stopped).
fn walk(
    old: &[i32],
    new: &[i32],
    limit: usize,
    mut at: Streams,
    stop: usize,
) -> (Vec<i32>, Vec<i32>, Option<Streams>) {
    let (mut found, mut resolved) = (vec![], vec![]);
    for _ in 0..stop {
        let page = Page {
            old: serve(old, &at.old.page, limit),
            new: serve(new, &at.new.page, limit),
        };
        let s = v3::step(&at, &page);
        found.extend(s.found.iter().map(|a| a.index));
        resolved.extend(s.resolved.iter().map(|a| a.index));
        if s.done {
            return (found, resolved, None);
        }
        at = s.next;
    }
    (found, resolved, Some(at))
}

fn sorted(v: BTreeSet<i32>) -> Vec<i32> {
    v.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_v3_walk_is_exact_and_resumes_anywhere(
        old in proptest::collection::btree_set(0i32..200, 0..40).prop_map(sorted),
        new in proptest::collection::btree_set(0i32..200, 0..40).prop_map(sorted),
        limit in 1usize..8,
        crash_after in 0usize..20,
    ) {
        let want_resolved: Vec<i32> = old.iter().copied().filter(|i| !new.contains(i)).collect();
        // Enough steps for any walk: one per page of each stream, and one more.
        let bound = old.len() + new.len() + 2;
        let (found, resolved, rest) = walk(&old, &new, limit, Streams::default(), bound);
        prop_assert!(rest.is_none(), "the walk ends");
        prop_assert_eq!(&found, &new);
        prop_assert_eq!(&resolved, &want_resolved);
        // Stopped after some steps and resumed from the checkpoint: the two parts together are
        // the whole walk, nothing repeated, nothing skipped.
        let (mut f, mut r, at) = walk(&old, &new, limit, Streams::default(), crash_after);
        if let Some(at) = at {
            let (f2, r2, rest) = walk(&old, &new, limit, at, bound);
            prop_assert!(rest.is_none());
            f.extend(f2);
            r.extend(r2);
        }
        prop_assert_eq!(f, new);
        prop_assert_eq!(r, want_resolved);
    }

    #[test]
    fn v4_pages_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = v4::parse_page(&bytes);
    }

    #[test]
    fn v4_pages_of_json_are_read_whole_or_refused(
        manifest in "(sha256:[0-9a-f]{64}|[ -~]{0,20})",
        reason in "(added|removed|[a-z]{0,8})",
        severity in "[A-Za-z]{0,10}",
    ) {
        let body = serde_json::json!({"page": {"next": "x"}, "notifications": [
            {"manifest": manifest, "reason": reason,
                "vulnerability": {"name": "N", "normalized_severity": severity}}]});
        let read = v4::parse_page(&serde_json::to_vec(&body).expect("JSON"));
        let acceptable =
            manifest.starts_with("sha256:") && (reason == "added" || reason == "removed");
        prop_assert_eq!(read.is_ok(), acceptable);
    }

    #[test]
    fn webhooks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<v4::Webhook>(&bytes);
        let _ = serde_json::from_slice::<v3::Webhook>(&bytes);
    }

    #[test]
    fn references_normalize_once(reference in "[ -~]{0,60}") {
        if let Some(n) = images::normalize(&reference) {
            prop_assert_eq!(images::normalize(&n), Some(n.clone()), "normalising is idempotent");
        }
    }
}
