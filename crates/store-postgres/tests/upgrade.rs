//! A database written by an older release opens, upgrades and reads back: from schema 2, change
//! sets stored as JSON naming manifests by digest, and manifests without stored index packages;
//! from schema 3, update operations without a status (they are accepted).
use tocsin_model::inventory::installed_packages;
use tocsin_store::conformance::{digest, hold, manifest, t};
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

#[tokio::test]
async fn operations_stored_before_schema_4_are_accepted() {
    let Some(db) = throwaway_database().await else {
        return;
    };
    db.migrate_to(3).await;
    let (client, conn) = tokio_postgres::connect(db.connstring(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO updater (name) VALUES ('u');
             INSERT INTO operation (ref, updater, fingerprint, kind, date, vulns)
             VALUES ('00000000-0000-0000-0000-000000000005', 'u', 'fp', 'vulnerability',
                     '2026-01-01T00:00:00Z', 0);",
        )
        .await
        .unwrap();

    let store = db.store().await;
    let op = uuid::Uuid::from_u128(5).to_string();
    let listed = store.update_operations("u").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|o| o.reference.clone())
            .collect::<Vec<_>>(),
        vec![op.clone()]
    );
    let info = store.updaters().await.unwrap();
    assert_eq!((info[0].operations, info[0].held.clone()), (1, None));
    // The upgraded operation is the one fingerprints compare with; the new states work beside it.
    let held = hold(&store, "u", "fp-2", &[], t(0), "everything withdrawn").await;
    assert_eq!(store.updaters().await.unwrap()[0].held, Some(held));
    match store.import_snapshot("u", "fp", &[], t(1)).await.unwrap() {
        ImportOutcome::Unchanged(o) => assert_eq!(o.reference, op),
        other => panic!("expected Unchanged, got {other:?}"),
    }
    assert_eq!(store.updaters().await.unwrap()[0].held, None);
    assert!(store.sources().await.unwrap().is_empty());
}
