//! A Clair's answers to tocsin fronting it: update operations, update diffs, affected manifests,
//! vulnerability reports.
//! Laws: no answer panics; every vulnerability of a diff belongs to the updater asked about and
//! sits under its own content address; the affected manifests name only the vulnerabilities
//! asked about.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_model::vuln::Addressed;
use tocsin_updaters::clair_answers as answers;

const UPDATER: &str = "debian/updater";

fuzz_target!(|data: &[u8]| {
    let _ = answers::operations(data);
    if let Ok((added, removed)) = answers::diff(UPDATER, data) {
        for (id, v) in added.iter().chain(removed.iter()) {
            assert_eq!(v.updater, UPDATER, "a diff's vulnerability belongs to its updater");
            assert_eq!(v.id(), id, "kept under its own address");
            assert_eq!(Addressed::new(v.vuln().clone()).id(), id, "addresses are stable");
        }
    }
    let _ = answers::report_pairs(data);
    let asked = 3..40;
    if let Ok(pairs) = answers::affected(data, asked.clone()) {
        for (n, _) in pairs {
            assert!(asked.contains(&n), "{n} was not asked about");
        }
    }
});
