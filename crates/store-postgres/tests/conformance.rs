//! The shared store conformance suite, run on PostgreSQL: one throw-away database per test (see
//! `tocsin_store_postgres::testing`; CI fails when the server is unreachable, elsewhere the tests
//! skip with a message).
use tocsin_store_postgres::testing::throwaway_store;

tocsin_store::store_conformance_suite!(optional: throwaway_store());
