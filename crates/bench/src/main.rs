//! `tocsin-bench`: the figures that show how fast tocsin is, measured, printed and written as
//! JSON (BENCHMARKS.md records them with the machine and the method).
//!
//! - `tocsin-bench fleet --manifests N`: the fleet-scale run — indexing over HTTP and the CLI,
//!   the first import of every OSV feed, each real update, vulnerability reports, paging a large
//!   set, webhook delivery beside a plain load loop, memory per package reference, and the
//!   per-advisory SQL baseline Clair's design implies ([`run`]).
//! - `tocsin-bench generate --manifests N`: the synthetic fleet itself as JSON Lines of
//!   IndexReports ([`fleet`]), for `tocsin manifest import` or any other client.
//! - `tocsin-bench brokers`: AMQP and STOMP channel throughput beside the broker's ceiling.
#![deny(missing_docs)]

mod baseline;
mod brokers;
mod fleet;
mod receiver;
mod run;
mod server;
mod stats;

use std::io::Write as _;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// The server's allocator, so that tocsin's matching timed in this process (the baseline's side
/// by side) runs as it does in `tocsin serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "tocsin-bench",
    about = "tocsin's benchmarks: figures, printed and written as JSON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The fleet-scale run (all workloads, memory, the SQL baseline).
    Fleet(run::FleetArgs),
    /// Write the synthetic fleet as JSON Lines of IndexReports to standard output.
    Generate {
        /// Manifests.
        #[arg(long, default_value_t = 10_000)]
        manifests: u64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The shared data folder.
        #[arg(long, default_value = "../shared/data")]
        data: std::path::PathBuf,
    },
    /// Broker channel throughput (direct mode) beside the broker's ceiling.
    Brokers(brokers::BrokerArgs),
    /// The plain HTTP load loop of the webhook workload, in a process of its own (the fleet run
    /// starts it, so that the loop meets the receiver across processes as tocsin does).
    #[command(hide = true)]
    LoadLoop {
        /// Where to POST.
        #[arg(long)]
        url: String,
        /// POSTs in all.
        #[arg(long)]
        posts: usize,
        /// POSTs in flight.
        #[arg(long)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Fleet(args) => {
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| format!("bench-fleet-{}.json", args.manifests).into());
            let figures = run::run(args).await?;
            std::fs::write(&out, serde_json::to_vec_pretty(&figures)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Generate {
            manifests,
            seed,
            data,
        } => {
            let mut vulns = Vec::new();
            for f in run::FEEDS {
                let s = tocsin_feeds::read_path(f, &data.join("osv").join(f), &|_| {})
                    .with_context(|| format!("reading osv/{f}"))?;
                vulns.extend(s.vulnerabilities);
            }
            let catalog = fleet::Catalog::new(&data, &vulns, seed)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for i in 0..manifests {
                serde_json::to_writer(&mut out, &catalog.manifest(i).report)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(())
        }
        Command::Brokers(args) => brokers::run(args).await,
        Command::LoadLoop {
            url,
            posts,
            concurrency,
        } => run::load_loop(&reqwest::Client::new(), &url, posts, concurrency).await,
    }
}
