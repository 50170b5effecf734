//! Test fixtures shared by the modules' tests.
use crate::events::{Finding, Reason};
use crate::workloads::Workload;

/// A Deployment `name` in namespace `shop`, uid `uid-<name>`.
pub fn workload(name: &str) -> Workload {
    Workload {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: "shop".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

/// `vulnerability` found in openssl of a Debian 10 image (the shared data's jackson image).
pub fn finding(vulnerability: &str) -> Finding {
    Finding {
        reason: Reason::Found,
        vulnerability: vulnerability.into(),
        severity: "High".into(),
        package: "openssl".into(),
        fixed_in: "1.1.1n-0+deb10u2".into(),
        image: "sha256:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a".into(),
    }
}
