//! Manifests added or removed by another process (here: a second engine on the same data
//! directory, as the CLI is next to a running server) reach this process's index before it
//! processes an update. Before the manifest change feed, such a manifest was never notified.
mod common;

use common::*;
use tocsin_engine::projection::V4Options;
use tocsin_engine::EngineConfig;

fn cfg() -> EngineConfig {
    EngineConfig {
        v4: V4Options {
            disable_summary: true,
            changed_reason: false,
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_changed_by_another_process_are_notified() {
    let Some(data) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = engine(dir.path(), cfg()).await;
    let cli = engine(dir.path(), cfg()).await;

    // Added through the other engine after the server built its index.
    let jackson = index(
        &cli,
        &data.join("inventories/clair/indexreport-buster-jackson-databind.json"),
        None,
    )
    .await;
    let snaps = snapshots(&data, "debian");
    let processed = import(&server, "osv/debian", &snaps[0]).await;
    let set = processed[0].set.expect("the buster image is affected");
    let got = entries(server.store().as_ref(), set).await;
    assert_eq!(
        got.len(),
        20,
        "every advisory affecting the image is notified"
    );
    assert!(got.iter().all(|e| e.0 == jackson));

    // Removed through the other engine: the next update must not mention it.
    assert!(cli.delete_manifest(&jackson).await.unwrap());
    let processed = import(&server, "osv/debian", &snaps[1]).await;
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0].set, None, "a deleted manifest is not notified");
    assert_eq!(server.index_stats().unwrap().manifests, 0);
}
