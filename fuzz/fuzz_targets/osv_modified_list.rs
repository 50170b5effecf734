//! OSV.dev's `modified_id.csv` as an incremental follower reads it (`feeds::export`).
//! Laws: a list that parses is sorted newest first with valid ids; planning from any cursor
//! never panics and asks either for the full archive or for distinct ids listed at or after the
//! cursor, at most `max` of them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_feeds::export::{parse_list, plan, Plan};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a cursor among the list's own times and a limit.
    let (pick, list) = match data.split_first() {
        Some((p, rest)) => (*p as usize, rest),
        None => return,
    };
    let Ok(parsed) = parse_list(list) else {
        return;
    };
    for w in parsed.windows(2) {
        assert!(w[0].at >= w[1].at, "not newest first");
    }
    for m in &parsed {
        assert!(!m.id.is_empty() && !m.id.contains('/') && !m.id.contains(','));
    }
    let Some(cursor) = parsed.get(pick % parsed.len().max(1)).map(|m| m.at) else {
        return;
    };
    let max = pick % 7;
    match plan(&parsed, cursor, max) {
        Plan::Full(why) => assert!(!why.is_empty()),
        Plan::Fetch(ids) => {
            assert!(ids.len() <= max);
            let mut seen = std::collections::HashSet::new();
            for id in &ids {
                assert!(seen.insert(id), "fetched twice");
                assert!(parsed.iter().any(|m| &m.id == id && m.at >= cursor));
            }
        }
    }
});
