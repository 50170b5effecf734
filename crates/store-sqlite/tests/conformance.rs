//! The shared store conformance suite, run on the embedded store (one fresh database per test).
use tocsin_store_sqlite::SqliteStore;

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open a fresh store");
    (store, dir)
}

tocsin_store::store_conformance_suite!(fresh());

/// The same suite on the in-memory variant, whose reads share the writer connection.
mod in_memory {
    async fn fresh() -> tocsin_store_sqlite::SqliteStore {
        tocsin_store_sqlite::SqliteStore::open_in_memory().expect("open an in-memory store")
    }

    tocsin_store::store_conformance_suite!(fresh());
}
