//! A database written by an older release (schema 2) opens, upgrades and reads back: change sets
//! stored as JSON naming manifests by digest, and manifests without stored index packages.
use tocsin_model::inventory::installed_packages;
use tocsin_store::conformance::{digest, manifest, t};
use tocsin_store::{ImportOutcome, Store};
use tocsin_store_postgres::testing::throwaway_database;

#[tokio::test]
async fn rows_written_before_schema_3_still_read() {
    let Some(db) = throwaway_database().await else {
        return;
    };
    db.migrate_to(2).await;
    let (client, conn) = tokio_postgres::connect(db.connstring(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let m = manifest(7);
    client
        .execute(
            "INSERT INTO manifest (digest, format, labels, report, content_hash, packages,
                                   created_at, updated_at)
             VALUES ($1, 'index-report', $2, $3, $4, 1, 0, 0)",
            &[
                &m.digest.as_str(),
                &serde_json::to_string(&m.labels).unwrap(),
                &serde_json::to_string(&m.report).unwrap(),
                &m.content_hash(),
            ],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO updater (name) VALUES ('u');
             INSERT INTO operation (ref, updater, fingerprint, kind, date, vulns)
             VALUES ('00000000-0000-0000-0000-000000000009', 'u', 'fp', 'vulnerability',
                     '2026-01-01T00:00:00Z', 0);",
        )
        .await
        .unwrap();
    let json = format!(
        r#"{{"updater":"u","prev":null,"cur":"00000000-0000-0000-0000-000000000009","changes":[{{"old":null,"new":null,"old_affected":["{}"],"new_affected":["{}","{}"]}}]}}"#,
        digest(2),
        digest(7),
        digest(2)
    );
    client
        .execute(
            "INSERT INTO change_set (op, body) SELECT seq, $1 FROM operation",
            &[&json],
        )
        .await
        .unwrap();

    let store = db.store().await;
    assert_eq!(
        store.get_manifest(&digest(7)).await.unwrap(),
        Some(m.clone())
    );
    let entries = store.index_entries_after(None, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].packages.to_vec(), installed_packages(&m.report));
    let cs = store
        .change_set(uuid::Uuid::from_u128(9))
        .await
        .unwrap()
        .unwrap();
    let names = |ids| -> Vec<String> {
        cs.digests(ids)
            .unwrap()
            .into_iter()
            .map(ToString::to_string)
            .collect()
    };
    let mut both = vec![digest(7).to_string(), digest(2).to_string()];
    both.sort();
    assert_eq!(names(&cs.changes[0].new_affected), both);
    assert_eq!(
        names(&cs.changes[0].old_affected),
        vec![digest(2).to_string()]
    );
    // New writes use the new forms and read back the same way.
    let ImportOutcome::Created(_) = store.import_snapshot("v", "fp2", &[], t(1)).await.unwrap()
    else {
        panic!("expected a new operation")
    };
    let mut changed = manifest(8);
    changed.digest = digest(7);
    changed.report.manifest_hash = digest(7).to_string();
    store.put_manifest(&changed, t(1)).await.unwrap();
    let e = store.index_entries(&[entries[0].id]).await.unwrap();
    assert_eq!(e[0].packages.to_vec(), installed_packages(&changed.report));
}
