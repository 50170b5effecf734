//! The command line on real data: `manifest`, `feed` and `notification` subcommands, bad input
//! (non-zero exit, a clear message, nothing changed), `--help` everywhere, and configuration
//! errors at start.
mod common;

use std::path::Path;

use common::{run_cli, shared_data, tocsin_command, CliOutput, ConfigSpec};
use serde_json::Value;

const JACKSON: &str = "sha256:0194e59b0b159c8182f2d382953a61d169aa285fe847121f8fc59e7c5a47791a";

fn digest(n: u64) -> String {
    format!("sha256:{n:064x}")
}

/// `tocsin --data-dir DIR ARGS…`
fn cli(dir: &Path, args: &[&str]) -> CliOutput {
    let dir = dir.to_str().expect("UTF-8 temporary path");
    let mut all = vec!["--data-dir", dir];
    all.extend_from_slice(args);
    run_cli(&all)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Everything the CLI can list: manifests, feeds and notification sets.
fn state(dir: &Path) -> String {
    [
        cli(dir, &["manifest", "list"]).success(),
        cli(dir, &["feed", "list"]).success(),
        cli(dir, &["notification", "list"]).success(),
    ]
    .join("\n")
}

/// The set ids of `notification list` (first column, after the header).
fn listed_sets(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 4).then(|| {
                (
                    cols[0].to_string(),
                    cols[1].to_string(),
                    cols[3].to_string(),
                )
            })
        })
        .collect()
}

/// The UUID that follows `word ` in `text`.
fn uuid_after<'a>(text: &'a str, word: &str) -> &'a str {
    let at = text
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} not in {text:?}"));
    let rest = &text[at + word.len()..];
    let id = rest
        .get(..36)
        .unwrap_or_else(|| panic!("no id after {word:?} in {text:?}"));
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "{id:?} is not a UUID in {text:?}"
    );
    id
}

#[test]
fn manifest_feed_and_notification_commands_work_on_real_data() {
    let Some(data) = shared_data() else { return };
    let work = tempfile::tempdir().expect("temporary directory");
    let dir = work.path().join("data");
    let inv = data.join("inventories");

    // manifest add: an IndexReport carries its digest; adding it twice changes nothing.
    let report = inv.join("clair/indexreport-buster-jackson-databind.json");
    let out = cli(&dir, &["manifest", "add", path(&report)]).success();
    assert!(out.starts_with(&format!("added {JACKSON}")), "{out}");
    assert!(out.contains("91 packages, index-report"), "{out}");
    let out = cli(&dir, &["manifest", "add", path(&report)]).success();
    assert!(out.starts_with(&format!("unchanged {JACKSON}")), "{out}");

    // A CycloneDX SBOM with a digest and labels, a dpkg status file with its distribution, a
    // Cargo.lock.
    let sbom = inv.join("cyclonedx/SBOM_juice-shop_v11.1.2_bom.json");
    let out = cli(
        &dir,
        &[
            "manifest",
            "add",
            path(&sbom),
            "--digest",
            &digest(5),
            "--label",
            "image=shop:11",
            "--label",
            "team=sec",
        ],
    )
    .success();
    assert!(out.starts_with(&format!("added {}", digest(5))), "{out}");
    assert!(out.contains("cyclonedx"), "{out}");
    let status = inv.join("dpkg/postgresql.status");
    let out = cli(
        &dir,
        &[
            "manifest",
            "add",
            path(&status),
            "--digest",
            &digest(6),
            "--distribution",
            "debian:10",
        ],
    )
    .success();
    assert!(out.contains("3 packages, dpkg-status"), "{out}");
    let lock = inv.join("cargo/tansu.Cargo.lock");
    let out = cli(
        &dir,
        &["manifest", "add", path(&lock), "--digest", &digest(7)],
    )
    .success();
    assert!(out.contains("cargo-lock"), "{out}");

    // manifest list
    let list = cli(&dir, &["manifest", "list"]).success();
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{list}");
    let shop = rows
        .iter()
        .find(|r| r.starts_with(&digest(5)))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(shop.contains("cyclonedx") && shop.contains("840"), "{shop}");
    assert!(shop.ends_with("image=shop:11,team=sec"), "{shop}");
    assert!(rows.iter().any(|r| r.starts_with(JACKSON)), "{list}");

    // manifest report, before any feed: the packages, no vulnerabilities.
    let before: Value =
        serde_json::from_str(&cli(&dir, &["manifest", "report", JACKSON]).success())
            .expect("the report is JSON");
    assert_eq!(before["manifest_hash"], JACKSON);
    assert_eq!(before["packages"].as_object().map(|p| p.len()), Some(91));
    assert!(before["vulnerabilities"]
        .as_object()
        .is_none_or(|v| v.is_empty()));

    // feed import: a real tar.gz, then the same again, then a real directory.
    let debian = data.join("updates/debian/00-20221001.tar.gz");
    let out = cli(&dir, &["feed", "import", "osv/debian", path(&debian)]).success();
    assert!(
        out.starts_with("imported 7873 vulnerabilities into osv/debian: update operation "),
        "{out}"
    );
    let debian_op = uuid_after(&out, "update operation ").to_string();
    let debian_set = uuid_after(&out, "notification ").to_string();
    let out = cli(&dir, &["feed", "import", "osv/debian", path(&debian)]).success();
    assert!(
        out.starts_with(&format!(
            "osv/debian unchanged (same content as update operation {debian_op})"
        )),
        "{out}"
    );
    let crates_dir = data.join("osv/crates.io");
    let out = cli(
        &dir,
        &["feed", "import", "osv/crates.io", path(&crates_dir)],
    )
    .success();
    assert!(out.contains("into osv/crates.io"), "{out}");
    let crates_set = uuid_after(&out, "notification ").to_string();

    // feed list
    let feeds = cli(&dir, &["feed", "list"]).success();
    assert!(
        feeds.contains(&format!("osv/debian  (1 operations, 7873 vulnerabilities in the newest; processed up to {debian_op})")),
        "{feeds}"
    );
    assert!(feeds.contains("osv/crates.io  (1 operations"), "{feeds}");
    assert!(feeds.contains(&format!("  {debian_op}  ")), "{feeds}");

    // The forward direction sees the feed now.
    let after: Value = serde_json::from_str(&cli(&dir, &["manifest", "report", JACKSON]).success())
        .expect("the report is JSON");
    let vulns = after["vulnerabilities"]
        .as_object()
        .expect("vulnerabilities");
    assert!(
        !vulns.is_empty(),
        "the Debian feed affects the buster image"
    );
    assert!(
        vulns.values().all(|v| v["updater"] == "osv/debian"),
        "{after}"
    );

    // notification list / show / ack
    let sets = listed_sets(&cli(&dir, &["notification", "list"]).success());
    let ids: Vec<&str> = sets.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        ids,
        [crates_set.as_str(), debian_set.as_str()],
        "newest first: {sets:?}"
    );
    assert!(
        sets.iter().all(|s| s.1 == "delivered"),
        "no channel: nothing to deliver: {sets:?}"
    );
    let show = cli(&dir, &["notification", "show", &debian_set]).success();
    let first = show.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("notification {debian_set} from osv/debian (")),
        "{show}"
    );
    let entries: Vec<&str> = show.lines().filter(|l| l.starts_with("  added ")).collect();
    assert!(!entries.is_empty(), "{show}");
    assert!(
        first.contains(&format!("({} entries, delivered)", entries.len())),
        "{show}"
    );
    assert!(entries.iter().any(|l| l.contains(JACKSON)), "{show}");
    assert!(
        entries.iter().any(|l| l.contains(&digest(6))),
        "the dpkg manifest is affected too: {show}"
    );

    let out = cli(&dir, &["notification", "ack", &debian_set]).success();
    assert_eq!(out.trim(), format!("acknowledged {debian_set}"));
    let deleted =
        listed_sets(&cli(&dir, &["notification", "list", "--status", "deleted"]).success());
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].0, debian_set);
    let err = cli(&dir, &["notification", "ack", &debian_set]).failure();
    assert!(err.contains("not found (or already acknowledged)"), "{err}");

    // manifest rm
    let out = cli(&dir, &["manifest", "rm", &digest(6)]).success();
    assert_eq!(out.trim(), format!("removed {}", digest(6)));
    let list = cli(&dir, &["manifest", "list"]).success();
    assert!(!list.contains(&digest(6)), "{list}");
    let err = cli(&dir, &["manifest", "rm", &digest(6)]).failure();
    assert!(err.contains("not found"), "{err}");

    // With a configuration file: its data directory and its webhook channel are used, so a new
    // set waits for delivery (the CLI does not deliver; `serve` does).
    let spec = ConfigSpec {
        webhook: Some("http://127.0.0.1:9/hook".into()),
        ..ConfigSpec::new(common::free_port(), &dir)
    };
    let cfg = spec.write(&work.path().join("tocsin.yaml"));
    let next = data.join("updates/debian/01-20221101.tar.gz");
    let out = run_cli(&[
        "--config",
        path(&cfg),
        "feed",
        "import",
        "osv/debian",
        path(&next),
    ])
    .success();
    let new_set = uuid_after(&out, "notification ").to_string();
    let sets = listed_sets(&run_cli(&["--config", path(&cfg), "notification", "list"]).success());
    assert_eq!(sets[0].0, new_set, "{sets:?}");
    assert_eq!(sets[0].1, "created", "{sets:?}");
    assert_eq!(sets[0].2, "osv/debian", "{sets:?}");
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message_and_changes_nothing() {
    let Some(data) = shared_data() else { return };
    let work = tempfile::tempdir().expect("temporary directory");
    let dir = work.path().join("data");
    let inv = data.join("inventories");
    let report = inv.join("clair/indexreport-buster-jackson-databind.json");
    cli(&dir, &["manifest", "add", path(&report)]).success();
    let crates = data.join("updates/crates.io/00-20260731T121131-e046f255a.tar.gz");
    cli(&dir, &["feed", "import", "osv/crates.io", path(&crates)]).success();
    let before = state(&dir);

    let truncated_json = work.path().join("truncated.json");
    let text = std::fs::read(&report).expect("reading the IndexReport");
    std::fs::write(&truncated_json, &text[..text.len() / 2]).expect("writing");
    let truncated_tgz = work.path().join("truncated.tar.gz");
    let bytes = std::fs::read(&crates).expect("reading the snapshot");
    std::fs::write(&truncated_tgz, &bytes[..bytes.len() / 3]).expect("writing");
    let sbom = inv.join("cyclonedx/SBOM_laravel-7.12.0_bom.1.4.json");
    let status = inv.join("dpkg/postgresql.status");
    let d = digest(9);

    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["manifest", "add", path(&truncated_json)],
            &["truncated.json", "invalid JSON"],
        ),
        (
            vec!["manifest", "add", path(&report), "--format", "docx"],
            &["unknown format \"docx\"", "index-report"],
        ),
        (
            vec!["manifest", "add", path(&sbom)],
            &["SBOM_laravel", "digest is required"],
        ),
        (
            vec!["manifest", "add", path(&status), "--digest", &d],
            &["postgresql.status", "distribution is required"],
        ),
        (
            vec!["manifest", "add", path(&sbom), "--digest", "nodigest"],
            &["\"nodigest\""],
        ),
        (
            vec![
                "manifest",
                "add",
                path(&sbom),
                "--digest",
                &d,
                "--label",
                "team",
            ],
            &["label \"team\" is not KEY=VALUE"],
        ),
        (
            vec!["manifest", "add", "/nonexistent/inventory.json"],
            &["/nonexistent/inventory.json"],
        ),
        (
            vec!["feed", "import", "osv/crates.io", path(&truncated_tgz)],
            &["truncated.tar.gz"],
        ),
        (
            vec!["feed", "import", "osv/other", "/nonexistent/feed"],
            &["/nonexistent/feed"],
        ),
        (vec!["manifest", "report", &d], &["not found"]),
        (vec!["manifest", "rm", &d], &["not found"]),
        (
            vec!["notification", "show", "xyz"],
            &["\"xyz\" is not a UUID"],
        ),
        (
            vec![
                "notification",
                "show",
                "6f1c1f4e-8d7a-4c2e-9c1e-0a0b0c0d0e0f",
            ],
            &["not found"],
        ),
        (
            vec!["notification", "list", "--status", "sent"],
            &["unknown status \"sent\""],
        ),
    ];
    for (args, needles) in cases {
        let err = cli(&dir, &args).failure();
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: stderr lacks {n:?}: {err}");
        }
    }
    assert_eq!(state(&dir), before, "a failed command changed the store");
}

#[test]
fn every_subcommand_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["demo"],
        &["manifest"],
        &["manifest", "add"],
        &["manifest", "list"],
        &["manifest", "rm"],
        &["manifest", "report"],
        &["feed"],
        &["feed", "import"],
        &["feed", "list"],
        &["notification"],
        &["notification", "list"],
        &["notification", "show"],
        &["notification", "ack"],
    ];
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let out = run_cli(&args).success();
        assert!(out.contains("Usage: tocsin"), "{args:?}: {out}");
        if let Some(last) = c.last() {
            assert!(out.contains(last), "{args:?}: {out}");
        }
    }
    // No subcommand at all is a usage error, not a crash.
    let err = run_cli(&[]).failure();
    assert!(err.contains("Usage"), "{err}");
}

/// Runs `tocsin --config FILE serve` with `yaml` and expects it to refuse to start.
fn serve_refuses(yaml: &str) -> String {
    let work = tempfile::tempdir().expect("temporary directory");
    let cfg = work.path().join("tocsin.yaml");
    std::fs::write(&cfg, yaml).expect("writing the configuration");
    let mut child = tocsin_command()
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .current_dir(work.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning tocsin serve");
    // A service that accepted the file would run forever: give it a bounded time to fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for tocsin") {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                use std::io::Read;
                let _ = s.read_to_string(&mut err);
            }
            assert!(!status.success(), "tocsin serve accepted {yaml:?}");
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tocsin serve started with {yaml:?} instead of refusing it");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn unknown_configuration_keys_are_errors_that_name_the_key() {
    let port = common::free_port();
    let err = serve_refuses(&format!(
        "http_listen_addr: 127.0.0.1:{port}\nnotifier:\n  delivery_intervall: 1m\n"
    ));
    assert!(err.contains("delivery_intervall"), "{err}");
    let err = serve_refuses(&format!(
        "http_listen_addr: 127.0.0.1:{port}\ntocsin:\n  data_dir: ./d\n  procces_interval: 1s\n"
    ));
    assert!(err.contains("procces_interval"), "{err}");
    let err = serve_refuses("colour: blue\n");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn an_amqp_channel_with_wrong_credentials_is_refused_at_start_with_a_clear_error() {
    let up = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 5672)),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    if !up {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RabbitMQ is not listening on 127.0.0.1:5672 (scripts/services.sh starts it)"
        );
        eprintln!("skipping: RabbitMQ is not listening on 127.0.0.1:5672");
        return;
    }
    let port = common::free_port();
    let err = serve_refuses(&format!(
        "http_listen_addr: 127.0.0.1:{port}\n\
         notifier:\n  amqp:\n    routing_key: notifications\n    uris: [\"amqp://guest:not-the-password@127.0.0.1:5672/\"]\n    callback: http://127.0.0.1:{port}/notifier/api/v1/notification/\n\
         tocsin:\n  data_dir: ./data\n"
    ));
    assert!(err.contains("amqp"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the broker password leaked: {err}"
    );
}

#[tokio::test]
async fn a_clair_amqp_uri_with_a_trailing_slash_starts_serve() {
    // Issue 20: Clair's form `amqp://guest:guest@rabbitmq:5672/` stopped `tocsin serve` with
    // "NOT_ALLOWED - vhost  not found"; the trailing `/` is the default vhost, as in Clair.
    let up = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 5672)),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    if !up {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RabbitMQ is not listening on 127.0.0.1:5672 (scripts/services.sh starts it)"
        );
        eprintln!("skipping: RabbitMQ is not listening on 127.0.0.1:5672");
        return;
    }
    let work = tempfile::tempdir().expect("temporary directory");
    let port = common::free_port();
    let cfg = work.path().join("tocsin.yaml");
    std::fs::write(
        &cfg,
        format!(
            "http_listen_addr: 127.0.0.1:{port}\n\
             notifier:\n  amqp:\n    direct: true\n    exchange:\n      name: \"\"\n      type: \"direct\"\n      durability: true\n      auto_delete: false\n    uris: [\"amqp://guest:guest@127.0.0.1:5672/\"]\n    routing_key: \"notifications\"\n\
             tocsin:\n  data_dir: {:?}\n",
            work.path().join("data").display().to_string()
        ),
    )
    .expect("writing the configuration");
    let mut server = common::Server::start(&cfg, port, &work.path().join("tocsin.log"), &[]);
    server.ready().await;
    // The delivery worker checks the broker after the API is up; a refusal ends the process.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let log = loop {
        let log = server.log_since_start();
        if log.contains("delivery worker started") {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the AMQP delivery worker did not start; log:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(log.contains("connected to AMQP broker"), "{log}");
    assert!(
        !log.contains("guest:guest"),
        "the broker password leaked: {log}"
    );
    server.terminate();
}

/// `tocsin kube` checks every flag before it connects, and says plainly when there is no
/// cluster to talk to.
#[test]
fn kube_refuses_bad_flags_and_a_missing_cluster_clearly() {
    let cases: [(&[&str], &str); 5] = [
        (&["--min-severity", "Bogus"], "--min-severity \"Bogus\""),
        (&["--timeout", "soon"], "--timeout \"soon\""),
        (&["--psk", "not base64!"], "--psk"),
        (&["--reporting-controller", "kube"], "qualified name"),
        (&["--page-size", "0"], "--page-size"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["kube"];
        args.extend_from_slice(flags);
        let err = run_cli(&args).failure();
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let dir = tempfile::tempdir().expect("a directory");
    let out = tocsin_command()
        .args(["kube", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("running tocsin kube");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Kubernetes API server to talk to") && err.contains("no-such-kubeconfig"),
        "{err}"
    );
}
