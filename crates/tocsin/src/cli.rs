//! The command line, defined once; `--help` is generated from these definitions.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// tocsin: tells you when a new, withdrawn or changed vulnerability affects the images and
/// software you already inventoried, and delivers that news reliably. Compatible with Clair's
/// notifier (v4) configuration, pull API and webhook.
#[derive(Debug, Parser)]
#[command(name = "tocsin", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (YAML; Clair's notifier keys plus a `tocsin:` section).
    #[arg(long, short = 'c', global = true, env = "TOCSIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store (overrides tocsin.data_dir).
    #[arg(long, global = true, env = "TOCSIN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TOCSIN_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: HTTP API, update processing, delivery and garbage collection.
    Serve,
    /// Run a self-contained demonstration on real data: a temporary instance with a local webhook
    /// receiver indexes real inventories, imports two consecutive real feed snapshots, and prints
    /// what was notified and delivered.
    Demo(DemoArgs),
    /// Manage the manifest index.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Import and inspect vulnerability feeds.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Inspect and acknowledge notification sets.
    #[command(subcommand)]
    Notification(NotificationCommand),
    /// Run the Kubernetes consumer: receive Clair notification webhooks (v4 at POST /clair/v4,
    /// v2/v3 at POST /clair), page each notification, record an event on every workload running
    /// an affected image (Warning VulnerabilityFound, Normal VulnerabilityResolved), then
    /// acknowledge it. Talks to the cluster through the in-cluster service account, else the
    /// kubeconfig.
    #[cfg(feature = "kube")]
    Kube(Box<KubeArgs>),
}

/// `tocsin kube` options.
#[cfg(feature = "kube")]
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// Address of the webhook endpoints (POST /clair/v4, POST /clair) and of /healthz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "TOCSIN_KUBE_LISTEN")]
    pub listen: String,
    /// A namespace to watch (repeat, or separate with commas); every namespace when none.
    #[arg(
        long = "namespace",
        value_delimiter = ',',
        env = "TOCSIN_KUBE_NAMESPACES"
    )]
    pub namespaces: Vec<String>,
    /// Watch only pods with these labels (a Kubernetes label selector: app=web,tier!=test).
    #[arg(long, env = "TOCSIN_KUBE_POD_SELECTOR")]
    pub pod_selector: Option<String>,
    /// Also match containers whose digest is not known (not started yet, or a runtime that
    /// reports none) by their image reference, through this manifest label of the notifier's
    /// manifests (tocsin: `image=registry/repo:tag`).
    #[arg(long, env = "TOCSIN_KUBE_TAG_LABEL")]
    pub tag_label: Option<String>,
    /// The lowest severity recorded: Unknown (everything), Negligible, Low, Medium, High,
    /// Critical.
    #[arg(long, default_value = "Unknown", env = "TOCSIN_KUBE_MIN_SEVERITY")]
    pub min_severity: String,
    /// Where checkpoints are kept (progress through notifications, for restarts).
    #[arg(
        long,
        default_value = "/var/lib/tocsin-kube",
        env = "TOCSIN_KUBE_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    /// Clair's PSK (base64, as `auth.psk.key`): webhooks must be signed with it, and the
    /// consumer signs its calls to the pull API with it.
    #[arg(long, env = "TOCSIN_KUBE_PSK", hide_env_values = true)]
    pub psk: Option<String>,
    /// Issuers accepted on signed webhooks (Clair's notifier signs as clair-notifier).
    #[arg(
        long = "psk-issuer",
        value_delimiter = ',',
        default_value = "clair-notifier"
    )]
    pub psk_issuers: Vec<String>,
    /// Issuer of the consumer's own signed calls (list it in the notifier's `auth.psk.iss`).
    #[arg(long, default_value = "quay")]
    pub sign_as: String,
    /// Clair's v3 gRPC API (http:// or https://host:port; tocsin serves it on its HTTP port):
    /// v2/v3 webhooks (POST /clair) are paged through it. Without it, POST /clair answers 404.
    #[arg(long, env = "TOCSIN_KUBE_CLAIR_V3")]
    pub clair_v3: Option<String>,
    /// A PEM CA bundle trusted for an https --clair-v3, besides the web's roots.
    #[arg(long, env = "TOCSIN_KUBE_CLAIR_V3_CA")]
    pub clair_v3_ca: Option<PathBuf>,
    /// Entries per page asked of the pull API (v3: images per stream and page).
    #[arg(long, default_value_t = 500)]
    pub page_size: u32,
    /// Timeout of each call to the notifier (Go duration: 30s, 1m).
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// The events' reportingController (a qualified name).
    #[arg(long, default_value = "tocsin.dev/kube")]
    pub reporting_controller: String,
    /// The events' reportingInstance (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub reporting_instance: Option<String>,
    /// Skip the start-up permission check (SelfSubjectAccessReviews).
    #[arg(long)]
    pub skip_permission_check: bool,
}

/// `tocsin demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The shared data folder (inventories/, updates/).
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Which update sequences to replay (folders of updates/, comma-separated); the first two
    /// snapshots of each are imported as updater `osv/<folder>`.
    #[arg(long, default_value = "debian,crates.io")]
    pub feeds: String,
    /// Keep the temporary data directory and print its path.
    #[arg(long)]
    pub keep: bool,
}

/// `tocsin manifest …`
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Add (or replace) a manifest from an inventory file.
    Add(ManifestAdd),
    /// Add (or replace) many manifests at once: a JSON Lines stream of claircore IndexReports
    /// (one per line, each naming its digest in `manifest_hash`), plain or gzip-compressed.
    /// All-or-nothing: a bad line stores nothing and names the line.
    Import(ManifestImport),
    /// List stored manifests.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Remove a manifest.
    Rm {
        /// Manifest digest.
        digest: String,
    },
    /// Print a manifest's Clair vulnerability report (JSON).
    Report {
        /// Manifest digest.
        digest: String,
    },
}

/// `tocsin manifest add` arguments.
#[derive(Debug, Args)]
pub struct ManifestAdd {
    /// Inventory file: IndexReport, CycloneDX or SPDX JSON, dpkg status, Cargo.lock, pip list.
    pub file: PathBuf,
    /// Manifest digest (required unless the file is an IndexReport, which carries its own).
    #[arg(long)]
    pub digest: Option<String>,
    /// Inventory format (default: sniffed): index-report, cyclonedx, spdx, dpkg-status,
    /// cargo-lock, pip.
    #[arg(long)]
    pub format: Option<String>,
    /// Distribution of a dpkg status file (e.g. debian:12, ubuntu:22.04).
    #[arg(long)]
    pub distribution: Option<String>,
    /// Label key=value (repeatable), e.g. --label image=quay.io/org/app:1.2
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

/// `tocsin manifest import` arguments.
#[derive(Debug, Args)]
pub struct ManifestImport {
    /// The JSON Lines file (`.gz` or plain; the content decides), or `-` for standard input.
    pub path: PathBuf,
    /// Label key=value given to every manifest (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

/// `tocsin feed …`
#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Import a snapshot of an updater (OSV directory, .zip, .tar.gz, or a JSON array of OSV
    /// records or claircore vulnerabilities) and process it. All-or-nothing.
    Import {
        /// Updater name, e.g. osv/go.
        name: String,
        /// Snapshot path.
        path: PathBuf,
        /// Import even when the storm guard (tocsin.updaters.withdraw_guard) would hold it.
        #[arg(long)]
        force: bool,
    },
    /// List updaters, their update operations, held operations and followed sources.
    List,
    /// Fetch followed feeds now (tocsin.updaters), whatever their schedule, with a progress
    /// bar; skips a source another process is fetching.
    Update {
        /// Updaters to fetch (default: every configured source).
        names: Vec<String>,
        /// Print each run's report as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Accept an updater's update operation held by the storm guard, and process it.
    Accept {
        /// Updater name, e.g. osv/debian.
        name: String,
        /// The held operation's reference (see `tocsin feed list`).
        operation: String,
    },
}

/// `tocsin notification …`
#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// List notification sets, newest first.
    List {
        /// Only sets in this state: created, delivered, delivery_failed, dead_letter, deleted.
        #[arg(long)]
        status: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Print a set's entries (and its delivery attempts).
    Show {
        /// Notification set id.
        id: String,
        /// Show at most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Acknowledge (delete) a set: ends its delivery, as Clair's DELETE does.
    Ack {
        /// Notification set id.
        id: String,
    },
}
