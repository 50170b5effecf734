//! Followed sources across processes: two stores on one database (two pools, as two `tocsin
//! serve` processes would have) racing for the same source from several tasks each.
use std::sync::Arc;
use std::time::Duration;

use tocsin_store::conformance::{source_run, t};
use tocsin_store::{Store, StoreError};
use tocsin_store_postgres::testing::throwaway_database;
use uuid::Uuid;

const MINUTE: Duration = Duration::from_secs(60);
const CLAIMERS: u128 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_for_a_source_one_wins() {
    let Some(db) = throwaway_database().await else {
        return;
    };
    let processes = [db.store().await, db.store().await];
    for round in 0..20u32 {
        let name = format!("osv/source-{round}");
        // Even rounds race to create the source, odd ones to take over an expired lease.
        let now = if round % 2 == 0 {
            t(0)
        } else {
            processes[0]
                .claim_source(&name, Uuid::from_u128(999), t(0), MINUTE, false)
                .await
                .unwrap()
                .expect("the first claim creates the source");
            t(60)
        };
        let start = Arc::new(tokio::sync::Barrier::new(CLAIMERS as usize));
        let mut tasks = tokio::task::JoinSet::new();
        for holder in 1..=CLAIMERS {
            let store = processes[(holder % 2) as usize].clone();
            let (name, start) = (name.clone(), Arc::clone(&start));
            tasks.spawn(async move {
                start.wait().await;
                let got = store
                    .claim_source(&name, Uuid::from_u128(holder), now, MINUTE, true)
                    .await;
                (holder, got)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (holder, got) = joined.unwrap();
            match got {
                Ok(Some(state)) => {
                    assert_eq!(state.lease_until, Some(now + MINUTE));
                    winners.push(holder);
                }
                Ok(None) => {}
                Err(e) => panic!("round {round}: holder {holder}'s claim failed: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let winner = Uuid::from_u128(winners[0]);
        let loser = Uuid::from_u128(winners[0] % CLAIMERS + 1);
        // Only the winner's run is recorded, whichever process records it.
        let run = source_run(now, Ok(()), Some("etag"), now + MINUTE);
        let err = processes[0]
            .finish_source_run(&name, loser, &run)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        processes[1]
            .finish_source_run(&name, winner, &run)
            .await
            .unwrap();
    }
    let sources = processes[0].sources().await.unwrap();
    assert_eq!(sources.len(), 20);
    assert!(sources
        .iter()
        .all(|s| s.lease_until.is_none() && s.state == "etag" && s.failures == 0));
}
