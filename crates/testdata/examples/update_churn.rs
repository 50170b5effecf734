//! Prints, for each update sequence of the shared data, what changes between consecutive
//! snapshots: records added, removed, changed, and changed without a change of `modified` (which
//! a `modified_id.csv`-driven incremental fetch cannot see).
//!
//! `cargo run -p tocsin-testdata --features osv-mirror --example update_churn [feed…]`
use tocsin_testdata::osv_mirror::{churn, read_records, update_steps, Churn};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let feeds: Vec<&str> = if args.is_empty() {
        vec!["crates.io", "almalinux9", "debian"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    for feed in feeds {
        let steps = update_steps(feed);
        if steps.is_empty() {
            println!("{feed}: no snapshots");
            continue;
        }
        println!("## {feed} ({} snapshots)", steps.len());
        println!(
            "| step | records | added | added, not newer | removed | changed (JSON) | changed bytes | changed, same `modified` | `modified` backwards | only `modified` |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let mut total = Churn::default();
        let mut prev = read_records(&steps[0])?;
        for (i, step) in steps.iter().enumerate().skip(1) {
            let next = read_records(step)?;
            let c = churn(&prev, &next);
            println!(
                "| {:02}→{:02} | {}→{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                i - 1,
                i,
                c.old,
                c.new,
                c.added,
                c.added_not_newer,
                c.removed,
                c.changed,
                c.changed_bytes,
                c.changed_same_modified,
                c.changed_modified_backwards,
                c.modified_only
            );
            total.added += c.added;
            total.added_not_newer += c.added_not_newer;
            total.removed += c.removed;
            total.changed += c.changed;
            total.changed_bytes += c.changed_bytes;
            total.changed_same_modified += c.changed_same_modified;
            total.changed_modified_backwards += c.changed_modified_backwards;
            total.modified_only += c.modified_only;
            prev = next;
        }
        println!(
            "| total | | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            total.added,
            total.added_not_newer,
            total.removed,
            total.changed,
            total.changed_bytes,
            total.changed_same_modified,
            total.changed_modified_backwards,
            total.modified_only
        );
    }
    Ok(())
}
