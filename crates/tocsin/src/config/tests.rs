//! Whole-file tests: Clair's own files load, defaults, and every kind of error.

use std::collections::HashMap;
use std::path::Path;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn load_str(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    Config::from_yaml(text, "test.yaml", &no_env)
}

/// The configuration, failing the test with the error's text if loading failed.
fn ok(text: &str) -> (Config, Vec<String>) {
    match load_str(text) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected a valid configuration, got: {e}"),
    }
}

/// The validation problems, failing the test if the text loaded or failed to parse.
fn problems(text: &str) -> Vec<Problem> {
    match load_str(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("expected validation problems, got: {e}"),
        Ok((config, _)) => panic!("expected validation problems, got {config:#?}"),
    }
}

fn has_problem(problems: &[Problem], key: &str, fragment: &str) -> bool {
    problems
        .iter()
        .any(|p| p.key == key && p.message.contains(fragment))
}

/// The parse error's message and line, failing the test otherwise.
fn parse_error(text: &str) -> (String, Option<usize>) {
    match load_str(text) {
        Err(ConfigError::Parse { message, line, .. }) => (message, line),
        Err(e) => panic!("expected a parse error, got: {e}"),
        Ok((config, _)) => panic!("expected a parse error, got {config:#?}"),
    }
}

fn testdata(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

#[test]
fn clair_v4_sample_loads_unchanged() {
    let path = testdata("clair-v4-notifier.yaml");
    let (config, warnings) = match Config::load(Some(&path), &no_env) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.http_listen_addr.to_string(), "0.0.0.0:6060");
    assert_eq!(config.logging.level, LogLevel::Debug);
    assert!(!config.logging.prose);

    let psk = config
        .psk
        .as_ref()
        .map(|p| (p.key.expose().as_slice(), &p.issuers));
    assert_eq!(
        psk,
        Some((
            b"secret-key-shared-with-quay".as_slice(),
            &vec!["quay".to_owned(), "clairctl".to_owned()]
        ))
    );

    match &config.storage {
        Storage::Postgres {
            connstring,
            migrations,
        } => {
            assert!(connstring.expose().starts_with("host=clair-db"));
            assert!(*migrations);
        }
        other => panic!("expected PostgreSQL storage, got {other:?}"),
    }

    let n = &config.notifier;
    assert_eq!(n.poll_interval, Duration::from_secs(300));
    assert_eq!(n.delivery_interval, Duration::from_secs(60));
    assert!(!n.disable_summary);
    assert_eq!(
        n.clair_indexer.as_ref().map(Url::as_str),
        Some("http://clair-indexer:6060/")
    );
    assert_eq!(
        n.clair_matcher.as_ref().map(Url::as_str),
        Some("http://clair-matcher:6060/")
    );
    let Some(Channel::Webhook(webhook)) = &n.channel else {
        panic!("expected a webhook channel, got {:?}", n.channel);
    };
    assert_eq!(
        webhook.target.as_str(),
        "http://quay:8080/secscan/notification"
    );
    // Clair ensures the trailing slash so the id can be appended.
    assert_eq!(
        webhook.callback.as_str(),
        "http://clair-notifier:6060/notifier/api/v1/notification/"
    );
    assert_eq!(
        webhook.headers,
        vec![
            ("Accept-Language".to_owned(), "en".to_owned()),
            ("Accept-Language".to_owned(), "de".to_owned()),
            ("X-Clair-Env".to_owned(), "staging".to_owned()),
        ]
    );
    // Clair's delivery interval also bounds tocsin's backoff unless set.
    assert_eq!(config.tocsin.delivery.max_backoff, Duration::from_secs(60));

    assert_eq!(
        config.ignored_sections,
        ["indexer", "matcher", "matchers", "updaters", "trace", "metrics"]
    );
    assert_eq!(
        warnings,
        ["introspection_addr: accepted and not used: tocsin serves metrics and health on http_listen_addr"]
    );
    assert!(!config.test_mode);
    assert_eq!(config.legacy_webhook, None);
}

#[test]
fn clair_v4_amqp_sample_loads_with_the_trailing_slash_as_the_default_vhost() {
    // Issue 20: `amqp://guest:guest@rabbitmq:5672/` made `tocsin serve` ask for the vhost "".
    let path = testdata("clair-v4-amqp.yaml");
    let (config, warnings) = match Config::load(Some(&path), &no_env) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    };
    let Some(Channel::Amqp(amqp)) = &config.notifier.channel else {
        panic!(
            "expected an AMQP channel, got {:?}",
            config.notifier.channel
        );
    };
    assert_eq!(amqp.routing_key, "notifications");
    assert_eq!(amqp.exchange.name, "");
    assert_eq!(amqp.exchange.kind, Some(ExchangeKind::Direct));
    assert!(amqp.exchange.durable);
    assert_eq!(
        amqp.delivery,
        Delivery::Direct {
            rollup: NonZeroUsize::MIN
        }
    );
    assert_eq!(amqp.uris.len(), 1);
    let uri = amqp.uris[0].uri();
    assert_eq!(
        (uri.host.as_str(), uri.port, uri.vhost.as_str()),
        ("rabbitmq", 5672, "/")
    );
    assert_eq!((uri.username.as_str(), uri.password()), ("guest", "guest"));
    assert!(!amqp.uris[0].is_tls());
    // The deliverer receives the text as written, and reads it the same way.
    assert_eq!(amqp.uris[0].text(), "amqp://guest:guest@rabbitmq:5672/");
    assert_eq!(
        amqp.uris[0].to_string(),
        "amqp://guest:***@rabbitmq:5672/%2F"
    );
    assert_eq!(
        warnings,
        [
            "introspection_addr: accepted and not used: tocsin serves metrics and health on http_listen_addr",
            "notifier.amqp.callback: ignored because direct is true (entries are sent, not a callback)"
        ]
    );
}

#[test]
fn clair_amqp_uri_forms_load_and_bad_ones_name_their_position() {
    let amqp = |uris: &str| {
        format!("notifier:\n  amqp:\n    routing_key: q\n    direct: true\n    uris: {uris}\n")
    };
    // Every form Clair's samples, docs and CI use.
    let (config, _) = ok(&amqp(
        "[\"amqp://guest:guest@rabbitmq:5672/\", \"amqp://clair:password@localhost:5672/\", \"amqp://user:pass@host:10000/vhost\", \"amqps://rabbit\", \"amqp://[::1]/%2f\"]",
    ));
    let Some(Channel::Amqp(a)) = config.notifier.channel else {
        panic!("expected AMQP");
    };
    let got: Vec<_> = a
        .uris
        .iter()
        .map(|u| (u.uri().host.clone(), u.uri().port, u.uri().vhost.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("rabbitmq".to_owned(), 5672, "/".to_owned()),
            ("localhost".to_owned(), 5672, "/".to_owned()),
            ("host".to_owned(), 10000, "vhost".to_owned()),
            ("rabbit".to_owned(), 5671, "/".to_owned()),
            ("::1".to_owned(), 5672, "/".to_owned()),
        ]
    );
    // Clair's own refused form (a leading space) and a bad port, by position, no password.
    let p = problems(&amqp(
        "[\"amqp://rabbitmq/\", \" amqp://\", \"amqp://u:hunter2@h:70000/\"]",
    ));
    assert!(has_problem(&p, "notifier.amqp.uris[1]", "space"), "{p:?}");
    assert!(has_problem(&p, "notifier.amqp.uris[2]", "port"), "{p:?}");
    assert!(!p.iter().any(|p| p.key == "notifier.amqp.uris[0]"), "{p:?}");
    assert!(p.iter().all(|p| !p.message.contains("hunter2")), "{p:?}");
}

#[test]
fn clair_v2_sample_configures_the_legacy_webhook() {
    let path = testdata("clair-v2.yaml");
    let (config, warnings) = match Config::load(Some(&path), &no_env) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    };
    let Some(legacy) = &config.legacy_webhook else {
        panic!("expected a legacy webhook, got none");
    };
    assert_eq!(
        legacy.endpoint.as_str(),
        "http://harbor-core:8080/service/notifications/clair"
    );
    assert_eq!(legacy.attempts.get(), 3);
    assert_eq!(legacy.renotify_interval, Duration::from_secs(7200));
    assert_eq!(
        legacy.proxy.as_ref().map(Url::as_str),
        Some("http://proxy.internal:3128/")
    );
    assert_eq!(legacy.server_name, None);
    assert_eq!(legacy.tls, None);
    assert_eq!(
        config.ignored_sections,
        ["clair.database", "clair.api", "clair.updater"]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.notifier.channel, None);
}

#[test]
fn legacy_defaults_and_lowercase_key() {
    let (config, _) = ok("clair:\n  notifier:\n    renotifyinterval: 30m\n    http:\n      endpoint: https://quay/secscan/notify\n");
    let legacy = config.legacy_webhook.as_ref();
    assert_eq!(
        legacy.map(|l| l.attempts.get()),
        Some(DEFAULT_LEGACY_ATTEMPTS)
    );
    assert_eq!(
        legacy.map(|l| l.renotify_interval),
        Some(Duration::from_secs(1800))
    );
    let p =
        problems("clair:\n  notifier:\n    attempts: 0\n    http:\n      endpoint: quay/notify\n");
    assert!(
        has_problem(&p, "clair.notifier.attempts", "from 1 to"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "clair.notifier.http.endpoint", "absolute http"),
        "{p:?}"
    );
}

#[test]
fn no_file_means_defaults() {
    let (config, warnings) = match Config::load(None, &no_env) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.http_listen_addr, ListenAddr::all_interfaces(6060));
    assert_eq!(
        config.logging,
        Logging {
            level: LogLevel::Info,
            prose: false,
            omit_timestamps: false
        }
    );
    assert_eq!(config.psk, None);
    assert_eq!(
        config.storage,
        Storage::Embedded {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR)
        }
    );
    assert_eq!(
        config.notifier,
        Notifier {
            clair_indexer: None,
            clair_matcher: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            delivery_interval: DEFAULT_DELIVERY_INTERVAL,
            disable_summary: false,
            channel: None,
        }
    );
    assert_eq!(
        config.tocsin,
        Tocsin {
            grpc_listen_addr: None,
            first_update: FirstUpdate::Notify,
            changed_reason: false,
            legacy_layer_label: None,
            retention: Duration::from_secs(168 * 3600),
            gc_interval: Duration::from_secs(3600),
            process_interval: Duration::from_secs(5),
            delivery: DeliveryTuning {
                connect_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(30),
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(3600),
                dead_letter_after: Duration::from_secs(168 * 3600),
                workers: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
                lease: Duration::from_secs(300),
                persistent: true,
            },
            max_body_size: 256 << 20,
            header_read_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(600),
            max_concurrent_uploads: 4,
            limits: Limits::default(),
            updaters: None,
            withdraw_guard: None,
        }
    );
    assert!(!config.test_mode);
    assert!(config.ignored_sections.is_empty());
    assert_eq!(config.legacy_webhook, None);
}

#[test]
fn empty_and_comment_only_files_are_defaults() {
    let (defaults, _) = match Config::load(None, &no_env) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(ok("").0, defaults);
    assert_eq!(ok("# nothing configured yet\n").0, defaults);
    assert_eq!(ok("notifier:\ntocsin:\n").0, defaults);
}

#[test]
fn tocsin_section_is_read() {
    let (config, warnings) = ok(r#"
tocsin:
  data_dir: /var/lib/tocsin
  first_update: baseline
  changed_reason: true
  legacy_layer_label: image
  retention: 72h
  gc_interval: 30m
  process_interval: 2s
  delivery:
    connect_timeout: 2s
    timeout: 10s
    initial_backoff: 500ms
    max_backoff: 15m
    dead_letter_after: 24h
    workers: 8
    lease: 1m
    persistent: false
  max_body_size: 1GiB
  limits:
    max_member_bytes: 4MiB
    max_decompressed_bytes: 2GiB
    max_archive_members: 1000
    max_manifest_import_bytes: 100GiB
    max_yaml_bytes: 64KiB
"#);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.storage,
        Storage::Embedded {
            data_dir: PathBuf::from("/var/lib/tocsin")
        }
    );
    let t = &config.tocsin;
    assert_eq!(t.first_update, FirstUpdate::Baseline);
    assert!(t.changed_reason);
    assert_eq!(t.legacy_layer_label.as_deref(), Some("image"));
    assert_eq!(t.retention, Duration::from_secs(72 * 3600));
    assert_eq!(t.gc_interval, Duration::from_secs(1800));
    assert_eq!(t.process_interval, Duration::from_secs(2));
    assert_eq!(t.delivery.connect_timeout, Duration::from_secs(2));
    assert_eq!(t.delivery.timeout, Duration::from_secs(10));
    assert_eq!(t.delivery.initial_backoff, Duration::from_millis(500));
    assert_eq!(t.delivery.max_backoff, Duration::from_secs(900));
    assert_eq!(t.delivery.dead_letter_after, Duration::from_secs(86400));
    assert_eq!(t.delivery.workers.get(), 8);
    assert_eq!(t.delivery.lease, Duration::from_secs(60));
    assert!(
        !t.delivery.persistent,
        "tocsin.delivery.persistent: false switches it off"
    );
    assert_eq!(t.max_body_size, 1 << 30);
    assert_eq!(
        t.limits,
        Limits {
            max_member_bytes: 4 << 20,
            max_decompressed_bytes: 2 << 30,
            max_archive_members: 1000,
            max_manifest_import_bytes: 100 << 30,
            max_yaml_bytes: 64 << 10,
        }
    );
}

#[test]
fn limits_are_positive_known_and_partial() {
    let p = problems("tocsin:\n  limits:\n    max_member_bytes: 0\n    max_archive_members: 0\n");
    assert!(
        has_problem(&p, "tocsin.limits.max_member_bytes", "greater than 0"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "tocsin.limits.max_archive_members", "greater than 0"),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");
    let (message, line) = parse_error("tocsin:\n  limits:\n    max_members: 5\n");
    assert!(
        message.contains("tocsin.limits: unknown field `max_members`"),
        "{message}"
    );
    assert_eq!(line, Some(3));
    // Unset keys keep their defaults.
    let (config, _) = ok("tocsin:\n  limits:\n    max_member_bytes: 1MiB\n");
    assert_eq!(
        config.tocsin.limits,
        Limits {
            max_member_bytes: 1 << 20,
            ..Limits::default()
        }
    );
}

#[test]
fn unknown_keys_are_named_with_their_location() {
    let (message, line) = parse_error("http_listen_addr: \":6060\"\nlog_levle: info\n");
    assert!(message.contains("unknown field `log_levle`"), "{message}");
    assert_eq!(line, Some(2));

    let (message, line) = parse_error(
        "notifier:\n  webhook:\n    target: http://quay/\n    callbak: http://tocsin/\n",
    );
    assert!(
        message.contains("notifier.webhook: unknown field `callbak`"),
        "{message}"
    );
    assert!(message.contains("line 4 column 5"), "{message}");
    assert_eq!(line, Some(4));

    let (message, _) = parse_error("tocsin:\n  delivery:\n    retries: 3\n");
    assert!(
        message.contains("tocsin.delivery: unknown field `retries`"),
        "{message}"
    );

    let (message, _) = parse_error("clair:\n  notifier:\n    http:\n      endpont: x\n");
    assert!(
        message.contains("clair.notifier.http: unknown field `endpont`"),
        "{message}"
    );

    // The error's Display names the file too.
    let err = load_str("bogus: 1\n").map(|_| ()).unwrap_err();
    assert!(err.to_string().starts_with("test.yaml: "), "{err}");
}

#[test]
fn ignored_sections_stay_opaque() {
    // Anything goes inside Clair's own sections; only their presence is reported.
    let (config, _) = ok("indexer:\n  whatever: [1, 2]\n  nested: {deep: true}\nmatchers: {}\n");
    assert_eq!(config.ignored_sections, ["indexer", "matchers"]);
}

#[test]
fn bad_urls_are_rejected() {
    let p = problems(
        "notifier:\n  webhook:\n    target: quay:8080/secscan\n    callback: ftp://tocsin/notifier/\n",
    );
    assert!(
        has_problem(
            &p,
            "notifier.webhook.target",
            "absolute http:// or https:// URL"
        ),
        "{p:?}"
    );
    assert!(
        has_problem(
            &p,
            "notifier.webhook.callback",
            "absolute http:// or https:// URL"
        ),
        "{p:?}"
    );
    let p = problems("notifier:\n  webhook:\n    target: \"http://quay/\"\n    callback: \"http://tocsin/n?x=1\"\n");
    assert!(
        has_problem(&p, "notifier.webhook.callback", "query or fragment"),
        "{p:?}"
    );
    let p = problems("notifier:\n  webhook:\n    callback: \"http://tocsin/\"\n");
    assert!(
        has_problem(&p, "notifier.webhook.target", "is required"),
        "{p:?}"
    );
}

#[test]
fn bad_base64_is_a_parse_error_at_its_line() {
    let (message, line) = parse_error("auth:\n  psk:\n    key: \"not base64!\"\n    iss: [quay]\n");
    assert!(message.contains("auth.psk.key"), "{message}");
    assert!(message.contains("base64"), "{message}");
    assert_eq!(line, Some(3));
    let p = problems("auth:\n  psk:\n    iss: [quay]\n");
    assert!(has_problem(&p, "auth.psk.key", "is required"), "{p:?}");
}

#[test]
fn psk_issuer_may_be_one_string() {
    let (config, warnings) = ok("auth:\n  psk:\n    key: c2VjcmV0\n    iss: quay\n");
    assert_eq!(config.psk.map(|p| p.issuers), Some(vec!["quay".to_owned()]));
    assert!(warnings.is_empty(), "{warnings:?}");
    let (_, warnings) = ok("auth:\n  psk:\n    key: c2VjcmV0\n");
    assert_eq!(
        warnings,
        ["auth.psk.iss: no issuers listed: tokens from any issuer signed with the key are accepted"]
    );
}

#[test]
fn bad_durations_are_parse_errors_at_their_line() {
    let (message, line) = parse_error("notifier:\n  poll_interval: 1d\n");
    assert!(message.contains("notifier.poll_interval"), "{message}");
    assert!(message.contains("unknown unit \"d\""), "{message}");
    assert_eq!(line, Some(2));
    let (message, _) = parse_error("tocsin:\n  retention: -1h\n");
    assert!(message.contains("must not be negative"), "{message}");
    let (message, _) = parse_error("tocsin:\n  gc_interval: 3600\n");
    assert!(message.contains("bare number"), "{message}");
    let p = problems("tocsin:\n  gc_interval: 0s\n");
    assert!(
        has_problem(&p, "tocsin.gc_interval", "greater than 0"),
        "{p:?}"
    );
}

#[test]
fn amqp_requires_routing_key_and_uris() {
    let p =
        problems("notifier:\n  amqp:\n    callback: http://tocsin/notifier/api/v1/notification\n");
    assert!(
        has_problem(&p, "notifier.amqp.routing_key", "is required"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "notifier.amqp.uris", "at least one broker"),
        "{p:?}"
    );

    let p = problems(
        "notifier:\n  amqp:\n    routing_key: clair\n    uris: [\"http://rabbit\", \"amqp://u:hunter2@rabbit:99999/\"]\n    callback: http://tocsin/\n    exchange: {name: clair, type: round-robin}\n",
    );
    assert!(
        has_problem(&p, "notifier.amqp.uris[0]", "scheme \"http\""),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "notifier.amqp.uris[1]", "port outside 1-65535"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "notifier.amqp.exchange.type", "round-robin"),
        "{p:?}"
    );
    // Broker passwords never appear in messages.
    assert!(p.iter().all(|p| !p.message.contains("hunter2")), "{p:?}");

    let p = problems("notifier:\n  amqp:\n    routing_key: k\n    uris: [amqp://rabbit]\n    exchange: {name: clair}\n    direct: true\n");
    assert!(
        has_problem(&p, "notifier.amqp.exchange.type", "is required"),
        "{p:?}"
    );

    let p = problems("notifier:\n  amqp:\n    routing_key: k\n    uris: [amqp://rabbit]\n");
    assert!(
        has_problem(
            &p,
            "notifier.amqp.callback",
            "required when direct is false"
        ),
        "{p:?}"
    );

    let p = problems("notifier:\n  amqp:\n    routing_key: k\n    uris: [amqp://rabbit]\n    direct: true\n    rollup: -1\n");
    assert!(
        has_problem(&p, "notifier.amqp.rollup", "0 or greater"),
        "{p:?}"
    );
}

#[test]
fn amqp_direct_and_callback_modes() {
    let (config, warnings) = ok(r#"
notifier:
  amqp:
    exchange: {name: clair-notifications, type: direct, durability: true, auto_delete: false}
    routing_key: notifications
    uris: ["amqps://clair:hunter2@rabbit-1:5671/prod", "amqp://rabbit-2"]
    direct: true
    rollup: 0
    callback: http://ignored/
"#);
    let Some(Channel::Amqp(amqp)) = config.notifier.channel else {
        panic!("expected AMQP");
    };
    assert_eq!(
        amqp.delivery,
        Delivery::Direct {
            rollup: NonZeroUsize::MIN
        }
    );
    assert_eq!(amqp.exchange.kind, Some(ExchangeKind::Direct));
    assert!(amqp.exchange.durable);
    assert_eq!(amqp.routing_key, "notifications");
    assert!(amqp.uris[0].is_tls());
    assert_eq!(amqp.uris[0].uri().password(), "hunter2");
    assert_eq!(
        amqp.uris[0].text(),
        "amqps://clair:hunter2@rabbit-1:5671/prod"
    );
    assert_eq!(
        amqp.uris[0].to_string(),
        "amqps://clair:***@rabbit-1:5671/prod"
    );
    assert!(!format!("{amqp:?}").contains("hunter2"));
    assert_eq!(
        warnings,
        ["notifier.amqp.callback: ignored because direct is true (entries are sent, not a callback)"]
    );

    let (config, _) = ok("notifier:\n  amqp:\n    routing_key: q\n    uris: [amqp://rabbit]\n    rollup: 7\n    direct: yes\n");
    let Some(Channel::Amqp(amqp)) = config.notifier.channel else {
        panic!("expected AMQP");
    };
    assert_eq!(
        amqp.delivery,
        Delivery::Direct {
            rollup: NonZeroUsize::new(7).unwrap_or(NonZeroUsize::MIN)
        }
    );
    assert_eq!(amqp.exchange.name, "");
    assert_eq!(amqp.exchange.kind, None);

    let (config, _) = ok("notifier:\n  amqp:\n    routing_key: q\n    uris: [amqp://rabbit]\n    callback: http://tocsin:6060/notifier/api/v1/notification\n");
    let Some(Channel::Amqp(amqp)) = config.notifier.channel else {
        panic!("expected AMQP");
    };
    assert_eq!(
        amqp.delivery,
        Delivery::Callback(
            Url::parse("http://tocsin:6060/notifier/api/v1/notification/")
                .unwrap_or_else(|e| panic!("{e}"))
        )
    );
}

#[test]
fn stomp_requires_destination_and_uris() {
    let p = problems("notifier:\n  stomp:\n    callback: http://tocsin/\n");
    assert!(
        has_problem(&p, "notifier.stomp.destination", "is required"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "notifier.stomp.uris", "at least one"),
        "{p:?}"
    );
    let p = problems("notifier:\n  stomp:\n    destination: /queue/clair\n    uris: [\"stomp://broker:61613\"]\n    direct: true\n    user: {passcode: x}\n");
    assert!(
        has_problem(&p, "notifier.stomp.uris[0]", "is a URL; write host:port"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "notifier.stomp.user.login", "is required"),
        "{p:?}"
    );

    let (config, _) = ok("notifier:\n  stomp:\n    destination: /queue/clair\n    uris: [\"broker-1:61613\", \"broker-2:61613\"]\n    direct: true\n    rollup: 10\n    user: {login: clair, passcode: hunter2}\n");
    let Some(Channel::Stomp(stomp)) = config.notifier.channel else {
        panic!("expected STOMP");
    };
    assert_eq!(stomp.uris.len(), 2);
    assert_eq!(stomp.uris[1].to_string(), "broker-2:61613");
    assert_eq!(
        stomp.login.as_ref().map(|l| l.login.as_str()),
        Some("clair")
    );
    assert_eq!(
        stomp.login.as_ref().map(|l| l.passcode.expose().as_str()),
        Some("hunter2")
    );
    assert!(!format!("{stomp:?}").contains("hunter2"));
}

#[test]
fn channel_precedence_is_webhook_then_amqp_then_stomp() {
    let (config, warnings) = ok(r#"
notifier:
  stomp:
    destination: /queue/clair
    uris: ["broker:61613"]
    callback: http://tocsin/
  amqp:
    routing_key: k
    uris: [amqp://rabbit]
    callback: http://tocsin/
  webhook:
    target: http://quay/secscan/notification
    callback: http://tocsin/notifier/api/v1/notification/
"#);
    assert!(matches!(config.notifier.channel, Some(Channel::Webhook(_))));
    assert_eq!(
        warnings,
        ["notifier: several delivery channels are configured (webhook, amqp, stomp); as in Clair only one is used, by precedence webhook > amqp > stomp: using webhook, ignoring amqp, stomp"]
    );

    let (config, warnings) = ok("notifier:\n  stomp:\n    destination: /q\n    uris: [\"b:1\"]\n    direct: true\n  amqp:\n    routing_key: k\n    uris: [amqp://r]\n    direct: true\n");
    assert!(matches!(config.notifier.channel, Some(Channel::Amqp(_))));
    assert!(
        warnings[0].contains("using amqp, ignoring stomp"),
        "{warnings:?}"
    );
}

#[test]
fn test_mode_follows_clair() {
    assert!(!test_mode_from_env(&no_env));
    assert!(!test_mode_from_env(&env_of(&[("NOTIFIER_TEST_MODE", "")])));
    assert!(test_mode_from_env(&env_of(&[("NOTIFIER_TEST_MODE", "1")])));
    assert!(test_mode_from_env(&env_of(&[(
        "NOTIFIER_TEST_MODE",
        "false"
    )])));
    let env = env_of(&[("NOTIFIER_TEST_MODE", "on")]);
    let config = Config::load(None, &env).map(|(c, _)| c.test_mode);
    assert!(matches!(config, Ok(true)));
}

#[test]
fn data_dir_comes_from_env_then_file_then_default() {
    let env = env_of(&[("TOCSIN_DATA_DIR", "/from/env")]);
    let storage = |text: &str, env: &dyn Fn(&str) -> Option<String>| {
        Config::from_yaml(text, "t", env).map(|(c, w)| (c.storage, w))
    };
    let dir = |p: &str| Storage::Embedded {
        data_dir: PathBuf::from(p),
    };
    assert!(
        matches!(storage("tocsin: {data_dir: /from/file}", &env), Ok((s, _)) if s == dir("/from/env"))
    );
    assert!(
        matches!(storage("tocsin: {data_dir: /from/file}", &no_env), Ok((s, _)) if s == dir("/from/file"))
    );
    let empty = env_of(&[("TOCSIN_DATA_DIR", "")]);
    assert!(matches!(storage("", &empty), Ok((s, _)) if s == dir(DEFAULT_DATA_DIR)));
    // With PostgreSQL configured the directory is unused, and the user is told.
    let result = storage("notifier: {connstring: \"postgres://u:p@db/n\"}", &env);
    let Ok((Storage::Postgres { migrations, .. }, warnings)) = result else {
        panic!("expected PostgreSQL storage, got {result:?}");
    };
    assert!(!migrations);
    assert!(
        warnings[0].starts_with("tocsin.data_dir: ignored"),
        "{warnings:?}"
    );
}

#[test]
fn connstring_shape_is_checked() {
    let p = problems("notifier:\n  connstring: clair-db\n");
    assert!(has_problem(&p, "notifier.connstring", "key=value"), "{p:?}");
}

#[test]
fn listen_addresses() {
    let addr = |text: &str| ok(text).0.http_listen_addr.to_string();
    assert_eq!(addr("http_listen_addr: localhost:6060"), "localhost:6060");
    assert_eq!(addr("http_listen_addr: 127.0.0.1:0"), "127.0.0.1:0");
    assert_eq!(addr("http_listen_addr: \"\""), "0.0.0.0:6060");
    let p = problems("http_listen_addr: \"6060\"\n");
    assert!(
        has_problem(&p, "http_listen_addr", "missing a port"),
        "{p:?}"
    );
    let p = problems("introspection_addr: nope\n");
    assert!(
        has_problem(&p, "introspection_addr", "missing a port"),
        "{p:?}"
    );
}

#[test]
fn grpc_listen_address_is_optional_and_must_differ_from_http() {
    let grpc = |text: &str| ok(text).0.tocsin.grpc_listen_addr.map(|a| a.to_string());
    assert_eq!(grpc(""), None);
    assert_eq!(grpc("tocsin: {grpc_listen_addr: \"\"}"), None);
    assert_eq!(
        grpc("tocsin: {grpc_listen_addr: \":6061\"}").as_deref(),
        Some("0.0.0.0:6061")
    );
    // Two system-chosen ports never collide.
    assert_eq!(
        grpc("http_listen_addr: 127.0.0.1:0\ntocsin: {grpc_listen_addr: 127.0.0.1:0}").as_deref(),
        Some("127.0.0.1:0")
    );
    let p =
        problems("http_listen_addr: 127.0.0.1:7000\ntocsin: {grpc_listen_addr: 127.0.0.1:7000}\n");
    assert!(
        has_problem(&p, "tocsin.grpc_listen_addr", "is http_listen_addr too"),
        "{p:?}"
    );
    let p = problems("tocsin: {grpc_listen_addr: \"7000\"}\n");
    assert!(
        has_problem(&p, "tocsin.grpc_listen_addr", "missing a port"),
        "{p:?}"
    );
}

#[test]
fn log_levels_and_formats() {
    let (config, warnings) = ok("log_level: debug-color\n");
    assert_eq!(config.logging.level, LogLevel::Debug);
    assert!(config.logging.prose);
    assert!(
        warnings[0].starts_with("log_level: \"debug-color\" is deprecated"),
        "{warnings:?}"
    );

    let (config, warnings) =
        ok("log_level: debug\nlogging:\n  level: WARN\n  omit_timestamps: true\n");
    assert_eq!(config.logging.level, LogLevel::Warn);
    assert!(config.logging.omit_timestamps);
    assert_eq!(
        warnings,
        ["log_level: ignored because logging.level is also set"]
    );

    let (config, warnings) = ok("log_level: fatal\n");
    assert_eq!(config.logging.level, LogLevel::Error);
    assert_eq!(warnings.len(), 1);

    let (message, _) = parse_error("log_level: verbose\n");
    assert!(message.contains("log_level"), "{message}");
}

#[test]
fn short_clair_intervals_fall_back_with_a_warning() {
    let (config, warnings) = ok("notifier:\n  poll_interval: 500ms\n  delivery_interval: 0s\n");
    assert_eq!(config.notifier.poll_interval, DEFAULT_POLL_INTERVAL);
    assert_eq!(config.notifier.delivery_interval, DEFAULT_DELIVERY_INTERVAL);
    assert_eq!(
        warnings,
        ["notifier.poll_interval: 500ms is below 1s; as in Clair, the default 6h0m0s is used instead"]
    );
}

#[test]
fn webhook_header_rules() {
    let base = "notifier:\n  webhook:\n    target: http://quay/\n    callback: http://tocsin/\n    headers:\n";
    let p = problems(&format!("{base}      Host: [evil]\n      X-A: [a]\n      x-a: [b]\n      \"Bad Name\": [c]\n      X-B: [\"v\\r\\nInjected: 1\"]\n"));
    assert!(
        has_problem(&p, "notifier.webhook.headers.Host", "cannot be configured"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "notifier.webhook.headers.x-a", "given twice"),
        "{p:?}"
    );
    assert!(
        has_problem(
            &p,
            "notifier.webhook.headers.Bad Name",
            "not a valid HTTP header name"
        ),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "notifier.webhook.headers.X-B", "control characters"),
        "{p:?}"
    );

    let yaml = format!("{base}      Authorization: Basic abc\n      Content-Type: [text/plain]\nauth:\n  psk: {{key: c2VjcmV0, iss: [quay]}}\n");
    let (config, warnings) = ok(&yaml);
    let Some(Channel::Webhook(webhook)) = config.notifier.channel else {
        panic!("expected a webhook");
    };
    assert_eq!(webhook.headers.len(), 2);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("Authorization: replaced by the PSK-signed bearer token"),
        "{warnings:?}"
    );
}

#[test]
fn signed_is_accepted_and_ignored_with_a_warning() {
    let (config, warnings) = ok("notifier:\n  webhook:\n    target: http://quay/\n    callback: http://tocsin/\n    signed: true\n");
    assert!(matches!(config.notifier.channel, Some(Channel::Webhook(_))));
    assert!(
        warnings[0].starts_with("notifier.webhook.signed: accepted for Clair compatibility"),
        "{warnings:?}"
    );
}

#[test]
fn clair_tls_section_serves_https() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let [cert, key, ca] = ["tls.crt", "tls.key", "clients.pem"].map(|n| dir.path().join(n));
    for f in [&cert, &key, &ca] {
        if let Err(e) = std::fs::write(f, "-----BEGIN TEST-----\n") {
            panic!("writing {}: {e}", f.display());
        }
    }
    // Clair's section as Clair writes it, root_ca included (accepted, unused, with a warning).
    let yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n  root_ca: /etc/ssl/clair-ca.pem\n",
        cert.display(),
        key.display()
    );
    let (config, warnings) = ok(&yaml);
    assert_eq!(
        config.tls,
        Some(ServerTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None
        })
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("tls.root_ca: accepted and not used")),
        "{warnings:?}"
    );
    // Client certificates: tocsin's own key.
    let (config, _) = ok(&format!(
        "{yaml}tocsin:\n  tls:\n    client_ca: {}\n",
        ca.display()
    ));
    assert_eq!(config.tls.and_then(|t| t.client_ca), Some(ca.clone()));
    // No tls section: plain HTTP.
    assert_eq!(ok("http_listen_addr: :6060\n").0.tls, None);

    // Both files are required (Clair fails at start on `tls: {}` too), and must exist.
    let p = problems("tls: {}\n");
    assert!(has_problem(&p, "tls.cert", "is required"), "{p:?}");
    assert!(has_problem(&p, "tls.key", "is required"), "{p:?}");
    let p = problems(&format!(
        "tls:\n  cert: {}\n  key: {}\n",
        cert.display(),
        dir.path().join("missing.key").display()
    ));
    assert!(has_problem(&p, "tls.key", "cannot read"), "{p:?}");
    // A client CA without TLS is a mistake, not a no-op.
    let p = problems(&format!(
        "tocsin:\n  tls:\n    client_ca: {}\n",
        ca.display()
    ));
    assert!(has_problem(&p, "tocsin.tls.client_ca", "tls.cert"), "{p:?}");
    // Unknown keys under tls are refused, as in Clair.
    let (message, _) = parse_error("tls:\n  certificate: x\n");
    assert!(message.contains("unknown field `certificate`"), "{message}");
}

#[test]
fn clair_v3_api_tls_files_are_named_in_a_warning() {
    let (config, warnings) = ok("clair:\n  api:\n    addr: 0.0.0.0:6060\n    certfile: /etc/clair/api.crt\n    keyfile: ''\n");
    assert_eq!(config.tls, None);
    assert_eq!(config.ignored_sections, ["clair.api"]);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("clair.api.certfile: ignored")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("keyfile")),
        "{warnings:?}"
    );
}

#[test]
fn keyserver_is_ignored() {
    let (config, warnings) =
        ok("auth:\n  keyserver:\n    api: http://quay/keys/\n    intraservice: c2VjcmV0\n");
    assert_eq!(config.psk, None);
    assert_eq!(config.ignored_sections, ["auth.keyserver"]);
    assert_eq!(warnings.len(), 1);
}

#[test]
fn tls_files_must_exist_and_pair_up() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let cert = dir.path().join("client.crt");
    let key = dir.path().join("client.key");
    for f in [&cert, &key] {
        if let Err(e) = std::fs::write(f, "-----BEGIN TEST-----\n") {
            panic!("writing {}: {e}", f.display());
        }
    }
    let yaml = format!(
        "notifier:\n  amqp:\n    routing_key: k\n    uris: [amqps://rabbit]\n    direct: true\n    tls:\n      cert: {}\n      key: {}\n",
        cert.display(),
        key.display()
    );
    let (config, _) = ok(&yaml);
    let Some(Channel::Amqp(amqp)) = config.notifier.channel else {
        panic!("expected AMQP");
    };
    assert_eq!(
        amqp.tls.and_then(|t| t.identity),
        Some(ClientIdentity {
            cert: cert.clone(),
            key
        })
    );

    let missing = dir.path().join("missing-ca.pem");
    let yaml = format!(
        "notifier:\n  stomp:\n    destination: /q\n    uris: [\"b:61614\"]\n    direct: true\n    tls:\n      root_ca: {}\n      cert: {}\n",
        missing.display(),
        cert.display()
    );
    let p = problems(&yaml);
    assert!(
        has_problem(&p, "notifier.stomp.tls.root_ca", "cannot read"),
        "{p:?}"
    );
    assert!(
        has_problem(
            &p,
            "notifier.stomp.tls.key",
            "required when notifier.stomp.tls.cert is set"
        ),
        "{p:?}"
    );
}

#[test]
fn delivery_tuning_rules() {
    let p = problems("tocsin:\n  delivery:\n    timeout: 5m\n    lease: 1m\n    initial_backoff: 2h\n    max_backoff: 1h\n    workers: 0\n  max_body_size: 0\n");
    assert!(
        has_problem(
            &p,
            "tocsin.delivery.lease",
            "must be longer than tocsin.delivery.timeout"
        ),
        "{p:?}"
    );
    assert!(
        has_problem(
            &p,
            "tocsin.delivery.initial_backoff",
            "longer than max_backoff"
        ),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "tocsin.delivery.workers", "at least 1"),
        "{p:?}"
    );
    assert!(
        has_problem(&p, "tocsin.max_body_size", "greater than 0"),
        "{p:?}"
    );
    // Every problem is reported at once, and the error lists them all.
    assert_eq!(p.len(), 4, "{p:?}");
    let (message, _) = parse_error("tocsin:\n  max_body_size: 10MB\n");
    assert!(message.contains("ambiguous"), "{message}");
    let (message, _) = parse_error("tocsin:\n  first_update: sometimes\n");
    assert!(
        message.contains("expected `notify` or `baseline`"),
        "{message}"
    );
}

#[test]
fn invalid_error_lists_every_problem() {
    let err = load_str("notifier:\n  amqp:\n    direct: true\n")
        .map(|_| ())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("test.yaml: invalid configuration:\n  - "),
        "{text}"
    );
    assert!(
        text.contains("notifier.amqp.routing_key: is required"),
        "{text}"
    );
    assert!(
        text.contains("notifier.amqp.uris: needs at least one broker"),
        "{text}"
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let (config, _) = ok("auth:\n  psk: {key: aHVudGVyMg==, iss: [q]}\nnotifier:\n  connstring: \"postgres://clair:hunter2@db/n\"\n");
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    // The decoded key bytes of "hunter2" must not appear either.
    assert!(!shown.contains("104, 117"), "{shown}");
    assert!(shown.contains("Secret([redacted])"), "{shown}");
}

/// Every place a secret can be written, each with its own.
const EVERY_SECRET: &str = "\
auth:
  psk: {key: aHVudGVyMi1wc2s=, iss: [q]}
notifier:
  connstring: \"postgres://clair:hunter2-pg@db/n\"
  indexer_addr: \"http://idx:hunter2-indexer@indexer:6060/\"
  matcher_addr: \"http://mat:hunter2-matcher@matcher:6060/\"
  webhook:
    target: \"https://quay:hunter2-target@quay/secscan/notify\"
    callback: \"http://tocsin:hunter2-callback@tocsin:6060/notifier/api/v1/notification/\"
    headers: {X-Api-Key: [hunter2-header]}
clair:
  notifier:
    http:
      endpoint: \"http://harbor:hunter2-v2@harbor/service/notifications/clair\"
      proxy: \"http://proxy:hunter2-proxy@proxy:3128\"
";

#[test]
fn debug_output_redacts_every_secret() {
    let (config, _) = ok(EVERY_SECRET);
    for (amqp_or_stomp, _) in [
        ("notifier:\n  amqp:\n    routing_key: r\n    callback: \"http://t/n/\"\n    uris: [\"amqp://u:hunter2-amqp@rabbit/%2f\"]\n", ()),
        ("notifier:\n  stomp:\n    destination: /queue/q\n    callback: \"http://t/n/\"\n    uris: [\"broker:61613\"]\n    user: {login: u, passcode: hunter2-stomp}\n", ()),
        ("notifier:\n  connstring: \"host=db user=clair password=hunter2-kv dbname=n\"\n", ()),
    ] {
        let (other, _) = ok(amqp_or_stomp);
        let shown = format!("{other:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    // The decoded key bytes ("hunter2-psk") must not appear either.
    assert!(!shown.contains("104, 117, 110"), "{shown}");
    assert!(
        shown.contains("https://quay:***@quay/secscan/notify"),
        "{shown}"
    );
}

#[test]
fn problems_do_not_echo_secrets() {
    let bad = [
        "notifier:\n  webhook:\n    target: \"htp://quay:hunter2-a@quay/\"\n    callback: \"http://t:hunter2-b@t/n/?x=1\"\n",
        "notifier:\n  webhook:\n    target: \"http://quay:hunter2-c@[::1/\"\n    callback: \"http://t/n/\"\n",
        "notifier:\n  amqp:\n    routing_key: r\n    callback: \"http://t/n/\"\n    uris: [\"amqp://u:hunter2-d@:99999/\", \"http://u:hunter2-e@rabbit/\"]\n",
        "notifier:\n  stomp:\n    destination: /q\n    callback: \"http://t/n/\"\n    uris: [\"stomp://u:hunter2-f@broker:61613\", \"u:hunter2-g@broker:61613\"]\n",
        "notifier:\n  connstring: \"postgres://u:hunter2-h@db:port/x\"\n",
        "clair:\n  notifier:\n    http:\n      endpoint: \"ftp://h:hunter2-i@harbor/\"\n      proxy: \"socks9://p:hunter2-j@proxy\"\n",
    ];
    for text in bad {
        let e = load_str(text).map(|_| ()).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("invalid configuration"), "{e}");
    }
}

#[test]
fn unreadable_file_is_a_read_error() {
    let missing = Path::new("/nonexistent/tocsin/config.yaml");
    match Config::load(Some(missing), &no_env) {
        Err(ConfigError::Read { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a read error, got {other:?}"),
    }
}

/// The documented example must stay a valid configuration.
#[test]
fn documented_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.example.yaml");
    let (config, warnings) = match Config::load(Some(&path), &no_env) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    };
    assert!(matches!(config.notifier.channel, Some(Channel::Webhook(_))));
    assert!(config.psk.is_some());
    assert!(warnings.is_empty(), "{warnings:?}");
    let updaters = config.tocsin.updaters.expect("the example follows feeds");
    assert_eq!(updaters.sources.len(), 10);
    assert_eq!(config.tocsin.withdraw_guard, Some(0.5));
}

#[test]
fn broker_persistence_is_on_unless_switched_off_under_tocsin() {
    assert!(ok("").0.tocsin.delivery.persistent, "default");
    assert!(
        ok("tocsin:\n  delivery:\n    persistent: true\n")
            .0
            .tocsin
            .delivery
            .persistent
    );
    let (config, warnings) = ok("tocsin:\n  delivery:\n    persistent: false\n");
    assert!(!config.tocsin.delivery.persistent);
    assert!(warnings.is_empty(), "{warnings:?}");
    // Not a key of Clair's own sections, which reject unknown keys as Clair does.
    let (message, _) = parse_error("notifier:\n  amqp:\n    persistent: false\n");
    assert!(
        message.contains("notifier.amqp: unknown field `persistent`"),
        "{message}"
    );
    let (message, line) = parse_error("tocsin:\n  delivery:\n    persistent: maybe\n");
    assert!(message.contains("tocsin.delivery.persistent"), "{message}");
    assert_eq!(line, Some(3));
}

#[test]
fn legacy_layer_label_must_be_a_label_key() {
    for bad in ["\"\"", "\"image=x\""] {
        let p = problems(&format!("tocsin:\n  legacy_layer_label: {bad}\n"));
        assert!(
            has_problem(&p, "tocsin.legacy_layer_label", "label key"),
            "{p:?}"
        );
    }
}

#[test]
fn updaters_follow_osv_and_sources() {
    let (config, _) = ok(r#"
tocsin:
  updaters:
    interval: 1h
    osv: [PyPI, crates.io, Go, npm, Maven, Debian, AlmaLinux, Alpine, Ubuntu]
    osv_base: https://osv-vulnerabilities.storage.googleapis.com
    sources:
      - name: osv/debian-mirror
        url: https://mirror.example/debian-osv.tar.gz
        interval: 30m
        headers: {Authorization: "Bearer s3cret"}
      - name: local/feed
        url: ./feeds/local.tar.gz
    withdraw_guard: 50%
"#);
    let u = config.tocsin.updaters.as_ref().expect("updaters");
    let names: Vec<&str> = u.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "osv/pypi",
            "osv/crates.io",
            "osv/go",
            "osv/npm",
            "osv/maven",
            "osv/debian",
            "osv/almalinux",
            "osv/alpine",
            "osv/ubuntu",
            "osv/debian-mirror",
            "local/feed"
        ]
    );
    assert_eq!(
        u.sources[0].location(),
        "https://osv-vulnerabilities.storage.googleapis.com/PyPI"
    );
    assert_eq!(u.sources[0].interval, Duration::from_secs(3600));
    assert_eq!(u.sources[9].interval, Duration::from_secs(1800));
    assert_eq!(
        u.sources[9].headers,
        vec![("Authorization".to_string(), "Bearer s3cret".to_string())]
    );
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "header values are redacted"
    );
    assert_eq!(
        u.sources[10].kind,
        tocsin_updaters::SourceKind::Snapshot(tocsin_updaters::Location::Path(
            "./feeds/local.tar.gz".into()
        ))
    );
    assert_eq!(config.tocsin.withdraw_guard, Some(0.5));
}

#[test]
fn updaters_defaults_and_guard_forms() {
    let (config, _) = ok("tocsin:\n  updaters: {}\n");
    let u = config
        .tocsin
        .updaters
        .expect("an empty section still guards pushes");
    assert!(u.sources.is_empty());
    assert_eq!(config.tocsin.withdraw_guard, Some(0.5));
    assert!(u.lease >= u.fetch.timeout, "a lease outlasts a transfer");
    for (form, want) in [
        ("0.25", Some(0.25)),
        ("'10%'", Some(0.1)),
        ("off", None),
        ("false", None),
        ("1", Some(1.0)),
    ] {
        let (config, _) = ok(&format!(
            "tocsin:\n  updaters:\n    withdraw_guard: {form}\n"
        ));
        assert_eq!(config.tocsin.withdraw_guard, want, "{form}");
    }
    let (config, _) = ok("tocsin:\n  updaters:\n    osv_base: /srv/osv\n    osv: [Debian]\n");
    assert_eq!(
        config.tocsin.updaters.unwrap().sources[0].kind,
        tocsin_updaters::SourceKind::Osv {
            base: tocsin_updaters::Location::Path("/srv/osv".into()),
            ecosystem: "Debian".into()
        }
    );
}

#[test]
fn updaters_refuse_what_cannot_work() {
    let p = problems(
        r#"
tocsin:
  updaters:
    osv: [Debian, "a/b"]
    withdraw_guard: 150%
    retries: 99
    max_download_size: 0
    sources:
      - name: osv/debian
        url: https://x.example/d.tar.gz
      - url: https://x.example/e.tar.gz
      - name: bad name
        url: https://x.example/f.tar.gz
      - name: creds
        url: https://user:pw@x.example/g.tar.gz
      - name: ftp
        url: ftp://x.example/h.tar.gz
      - name: hdr
        url: https://x.example/i.tar.gz
        headers: {"Bad Header": "x"}
"#,
    );
    for (key, text) in [
        ("tocsin.updaters.osv[1]", "ecosystem"),
        ("tocsin.updaters.withdraw_guard", "percentage"),
        ("tocsin.updaters.retries", "between"),
        ("tocsin.updaters.max_download_size", "greater than 0"),
        ("tocsin.updaters", "configured twice"),
        ("tocsin.updaters.sources[1].name", "required"),
        ("tocsin.updaters.sources[2].name", "at most 200"),
        ("tocsin.updaters.sources[3].url", "credentials"),
        ("tocsin.updaters.sources[4].url", "scheme"),
        ("tocsin.updaters.sources[5].headers", "header name"),
    ] {
        assert!(has_problem(&p, key, text), "{key}: {p:?}");
    }
    let (message, _) = parse_error("tocsin:\n  updaters:\n    intervall: 1h\n");
    assert!(message.contains("unknown field `intervall`"), "{message}");
}

#[test]
fn fronting_a_clair_takes_both_addresses_and_excludes_own_updaters() {
    let p = problems("notifier:\n  matcher_addr: clair:6060\n");
    assert!(
        has_problem(&p, "notifier.indexer_addr", "is needed"),
        "{p:?}"
    );
    let p = problems("notifier:\n  indexer_addr: http://clair:6060/\n");
    assert!(
        has_problem(&p, "notifier.matcher_addr", "is needed"),
        "{p:?}"
    );
    let p = problems(
        "notifier:\n  matcher_addr: clair:6060\n  indexer_addr: clair:6060\n\
         tocsin:\n  updaters:\n    osv: [Go]\n",
    );
    assert!(
        has_problem(&p, "tocsin.updaters", "fronting a Clair"),
        "{p:?}"
    );
    let (c, _) = ok("notifier:\n  matcher_addr: clair:6060\n  indexer_addr: clair:6060\n");
    assert_eq!(
        c.notifier.clair_matcher.as_ref().map(Url::as_str),
        Some("http://clair:6060/")
    );
}
