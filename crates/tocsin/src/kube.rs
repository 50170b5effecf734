//! `tocsin kube`: the Kubernetes consumer (crate `tocsin-kube`), from its flags.
use anyhow::{anyhow, Context, Result};
use tocsin_deliver::jwt::PskSigner;
use tocsin_deliver::PskKey;
use tocsin_kube::events::Reporter;
use tocsin_kube::Settings;
use tocsin_model::Severity;

use crate::cli::KubeArgs;

/// The settings `args` describe: every flag checked before anything connects.
fn settings(args: &KubeArgs) -> Result<Settings> {
    let min_severity: Severity = args.min_severity.parse().map_err(|_| {
        anyhow!(
            "--min-severity {:?}: expected Unknown, Negligible, Low, Medium, High or Critical",
            args.min_severity
        )
    })?;
    let timeout = crate::duration::parse_go_duration(&args.timeout)
        .map_err(|e| anyhow!("--timeout {:?}: {e}", args.timeout))?;
    let key = match &args.psk {
        None => None,
        Some(text) => Some(
            PskKey::from_base64(text.trim())
                .map_err(|e| anyhow!("--psk (TOCSIN_KUBE_PSK): {e}"))?,
        ),
    };
    let instance = match &args.reporting_instance {
        Some(i) => i.clone(),
        None => std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "tocsin-kube".to_string()),
    };
    let reporter = Reporter::new(&args.reporting_controller, &instance)
        .map_err(|e| anyhow!("--reporting-controller / --reporting-instance: {e}"))?;
    if args.page_size == 0 {
        return Err(anyhow!("--page-size must be at least 1"));
    }
    let clair_v3_ca = match &args.clair_v3_ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("--clair-v3-ca {}", path.display()))?)
        }
        None => None,
    };
    Ok(Settings {
        namespaces: args
            .namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        pod_selector: args.pod_selector.clone(),
        tag_label: args.tag_label.clone(),
        // The first list also waits for the API server to come up; a minute, then a clear error.
        ready_within: std::time::Duration::from_secs(60),
        min_severity,
        state_dir: args.state_dir.clone(),
        signer: key
            .as_ref()
            .map(|k| PskSigner::with_issuer(k, &args.sign_as)),
        inbound_psk: key.map(|k| (k, args.psk_issuers.clone())),
        clair_v3: args.clair_v3.clone(),
        clair_v3_ca,
        page_size: args.page_size,
        timeout,
        reporter,
        skip_permission_check: args.skip_permission_check,
        metrics: None,
    })
}

/// Runs the consumer until `shutdown`.
pub async fn run(
    args: &KubeArgs,
    metrics: tocsin_api::MetricsRenderer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut settings = settings(args)?;
    settings.metrics = Some(metrics);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let client = tocsin_kube::connect().await?;
    tocsin_kube::run(settings, client, listener, shutdown)
        .await
        .context("the Kubernetes consumer")
}
