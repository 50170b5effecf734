use super::*;

/// One accepted form: URI → (scheme, host, port, user, password, vhost).
type Accepted = (
    &'static str,
    Scheme,
    &'static str,
    u16,
    &'static str,
    &'static str,
    &'static str,
);

use Scheme::{Amqp, Amqps};

/// Every form amqp091-go's `ParseURI` accepts that tocsin accepts too, with what it means.
const ACCEPTED: &[Accepted] = &[
    // Clair's sample configs and CI: the trailing slash is the default vhost (issue 20).
    (
        "amqp://guest:guest@host:5672/",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "/",
    ),
    (
        "amqp://guest:guest@rabbitmq:5672/",
        Amqp,
        "rabbitmq",
        5672,
        "guest",
        "guest",
        "/",
    ),
    // No path, and `/` written encoded.
    (
        "amqp://guest:guest@host:5672",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "/",
    ),
    (
        "amqp://guest:guest@host:5672/%2f",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "/",
    ),
    ("amqp://host/%2F", Amqp, "host", 5672, "guest", "guest", "/"),
    // Named vhosts: the path without its first `/`, decoded.
    (
        "amqp://user:pass@host:10000/vhost",
        Amqp,
        "host",
        10000,
        "user",
        "pass",
        "vhost",
    ),
    (
        "amqp://host/a%2Fb",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "a/b",
    ),
    (
        "amqp://host/a/b",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "a/b",
    ),
    (
        "amqp://host/%2F%2F",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "//",
    ),
    (
        "amqp://host/%2Fslash%2F",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "/slash/",
    ),
    ("amqp://host//", Amqp, "host", 5672, "guest", "guest", "/"),
    (
        "amqp://host/v%20x",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "v x",
    ),
    (
        "amqp://host/caf%C3%A9",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "café",
    ),
    (
        "amqp://host/v+w",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "v+w",
    ),
    // No port: the scheme's default.
    (
        "amqp://user:pass@host/",
        Amqp,
        "host",
        5672,
        "user",
        "pass",
        "/",
    ),
    ("amqp://host:/", Amqp, "host", 5672, "guest", "guest", "/"),
    (
        "amqp://host:05672",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "/",
    ),
    // No user info, or part of it: guest/guest fills in what is absent.
    ("amqp://host", Amqp, "host", 5672, "guest", "guest", "/"),
    ("amqp://user@host", Amqp, "host", 5672, "user", "guest", "/"),
    ("amqp://user:@host", Amqp, "host", 5672, "user", "", "/"),
    ("amqp://:@host/", Amqp, "host", 5672, "", "", "/"),
    (
        "amqp://guest:pass@",
        Amqp,
        "localhost",
        5672,
        "guest",
        "pass",
        "/",
    ),
    // User info is %-decoded and ends at the last `@`.
    (
        "amqp://u%40x:p%3Aw%2F@host/",
        Amqp,
        "host",
        5672,
        "u@x",
        "p:w/",
        "/",
    ),
    ("amqp://u:p@w@host/", Amqp, "host", 5672, "u", "p@w", "/"),
    ("amqp://u:p+w@host/", Amqp, "host", 5672, "u", "p+w", "/"),
    // No host: localhost.
    ("amqp://", Amqp, "localhost", 5672, "guest", "guest", "/"),
    (
        "amqp://:10000",
        Amqp,
        "localhost",
        10000,
        "guest",
        "guest",
        "/",
    ),
    (
        "amqp:///vhost",
        Amqp,
        "localhost",
        5672,
        "guest",
        "guest",
        "vhost",
    ),
    (
        "amqp:/vhost",
        Amqp,
        "localhost",
        5672,
        "guest",
        "guest",
        "vhost",
    ),
    (
        "amqp://///v",
        Amqp,
        "localhost",
        5672,
        "guest",
        "guest",
        "v",
    ),
    (
        "amqp:////v",
        Amqp,
        "localhost",
        5672,
        "guest",
        "guest",
        "/v",
    ),
    // Addresses; IPv6 in brackets, with or without a zone.
    (
        "amqp://192.168.1.1:1000/",
        Amqp,
        "192.168.1.1",
        1000,
        "guest",
        "guest",
        "/",
    ),
    ("amqp://[::1]", Amqp, "::1", 5672, "guest", "guest", "/"),
    (
        "amqp://guest:guest@[::1]:1000/",
        Amqp,
        "::1",
        1000,
        "guest",
        "guest",
        "/",
    ),
    (
        "amqp://[fe80::1%25en0]:5671",
        Amqp,
        "fe80::1%en0",
        5671,
        "guest",
        "guest",
        "/",
    ),
    ("amqp://h%C3%A9/", Amqp, "hé", 5672, "guest", "guest", "/"),
    // amqps: port 5671 by default.
    ("amqps://host", Amqps, "host", 5671, "guest", "guest", "/"),
    ("amqps:///", Amqps, "localhost", 5671, "guest", "guest", "/"),
    (
        "amqps://host:1000/",
        Amqps,
        "host",
        1000,
        "guest",
        "guest",
        "/",
    ),
    (
        "amqps://u:p@broker.example/prod",
        Amqps,
        "broker.example",
        5671,
        "u",
        "p",
        "prod",
    ),
    // The scheme is case-insensitive; the host keeps its case.
    (
        "AMQP://Host:5672/",
        Amqp,
        "Host",
        5672,
        "guest",
        "guest",
        "/",
    ),
    ("aMqPs://h", Amqps, "h", 5671, "guest", "guest", "/"),
    // A fragment is dropped.
    (
        "amqp://host/v#frag",
        Amqp,
        "host",
        5672,
        "guest",
        "guest",
        "v",
    ),
];

#[test]
fn every_accepted_form_means_what_amqp091_go_makes_of_it() {
    for &(text, scheme, host, port, user, password, vhost) in ACCEPTED {
        let uri = BrokerUri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(uri.scheme, scheme, "{text}: scheme");
        assert_eq!(uri.host, host, "{text}: host");
        assert_eq!(uri.port, port, "{text}: port");
        assert_eq!(uri.username, user, "{text}: user");
        assert_eq!(uri.password(), password, "{text}: password");
        assert_eq!(uri.vhost, vhost, "{text}: vhost");
        assert!(uri.tls.is_empty(), "{text}");
        assert_eq!(uri.is_tls(), scheme == Amqps, "{text}");
        assert_eq!(text.parse::<BrokerUri>().as_ref(), Ok(&uri), "FromStr");
    }
}

/// Refused forms and the error each gets. `secret` marks a password that must never show.
const REFUSED: &[(&str, UriError)] = &[
    // Schemes.
    ("http://u:secret@host/", UriError::Scheme(String::new())),
    ("amqpx://host/", UriError::Scheme(String::new())),
    ("rabbit:5672", UriError::Scheme(String::new())),
    ("rabbit", UriError::NoScheme),
    ("//u:secret@host/", UriError::NoScheme),
    (":amqp://host", UriError::NoScheme),
    ("1amqp://host", UriError::NoScheme),
    ("amqp:u:secret@host", UriError::NoAuthority),
    ("amqp:", UriError::NoAuthority),
    // Whitespace and control characters (Clair's own test: " amqp://").
    (" amqp://", UriError::Whitespace),
    ("amqp://u:sec ret@host/", UriError::Whitespace),
    ("amqp://host/\n", UriError::ControlCharacter),
    ("amqp://host/\t", UriError::ControlCharacter),
    // Ports.
    ("amqp://u:secret@host:99999/", UriError::PortRange),
    ("amqp://host:65536/", UriError::PortRange),
    ("amqp://host:0/", UriError::PortRange),
    ("amqp://host:99999999999999999999/", UriError::PortRange),
    ("amqp://host:abc/", UriError::PortNotNumber),
    ("amqp://host:12a/", UriError::PortNotNumber),
    ("amqp://host:-1/", UriError::PortNotNumber),
    // A `/` in an unencoded password ends the authority: what follows its `:` is no port, and
    // the message must not quote it.
    ("amqp://u:sec/ret@host/", UriError::PortNotNumber),
    ("amqp://[::1]x/", UriError::PortNotNumber),
    // Hosts.
    ("amqp://::1/", UriError::UnbracketedIpv6),
    ("amqp://host:5672:5672/", UriError::UnbracketedIpv6),
    ("amqp://[::1/", UriError::UnclosedBracket),
    ("amqp://h%41/", UriError::Escape("host")),
    ("amqp://h%zz/", UriError::Escape("host")),
    ("amqp://h{x}/", UriError::HostCharacter),
    ("amqp://[fe80::1%25en{0]/", UriError::HostCharacter),
    // User info.
    ("amqp://u:secret%zz@host/", UriError::Escape("password")),
    ("amqp://u%zz:secret@host/", UriError::Escape("user name")),
    ("amqp://u:secret[@host/", UriError::Userinfo),
    ("amqp://u:s\u{e9}cret@host/", UriError::Userinfo),
    ("amqp://u:secret%ff@host/", UriError::NotUtf8("password")),
    // Path and fragment.
    ("amqp://host/%zz", UriError::Escape("path")),
    ("amqp://host/%2", UriError::Escape("path")),
    ("amqp://host/%ff", UriError::NotUtf8("path")),
    ("amqp://host/v#%zz", UriError::Escape("fragment")),
];

#[test]
fn refused_forms_get_an_error_that_never_shows_the_password() {
    for (text, expected) in REFUSED {
        let got = BrokerUri::parse(text).expect_err(text);
        match (expected, &got) {
            // The scheme is the one part quoted back.
            (UriError::Scheme(_), UriError::Scheme(s)) => {
                assert!(text.starts_with(&format!("{s}:")), "{text}: {s}")
            }
            _ => assert_eq!(&got, expected, "{text}"),
        }
        let message = got.to_string();
        assert!(!message.contains("secret"), "{text}: {message}");
        assert!(!message.contains("ret@"), "{text}: {message}");
    }
    let long = format!("amqp://host/{}", "v".repeat(256));
    assert_eq!(BrokerUri::parse(&long), Err(UriError::VhostTooLong));
    let max = format!("amqp://host/{}", "v".repeat(255));
    assert_eq!(BrokerUri::parse(&max).unwrap().vhost.len(), 255);
}

#[test]
fn tls_query_parameters_are_read_decoded() {
    let uri = BrokerUri::parse(
        "amqps://u:p@broker:5671/%2f?certfile=/etc/tocsin/client.pem&keyfile=/etc/tocsin/client.key\
         &cacertfile=/etc/tocsin/ca%20bundle.pem&server_name_indication=rabbit.example",
    )
    .unwrap();
    assert_eq!(uri.vhost, "/");
    assert_eq!(
        uri.tls,
        UriTls {
            certfile: Some("/etc/tocsin/client.pem".into()),
            keyfile: Some("/etc/tocsin/client.key".into()),
            cacertfile: Some("/etc/tocsin/ca bundle.pem".into()),
            server_name: Some("rabbit.example".into()),
        }
    );
    // `+` is a space in a query; an empty value is no value; the first of a repeated key wins;
    // non-ASCII paths are %-decoded as UTF-8.
    let uri = BrokerUri::parse(
        "amqps://h/?certfile=/a+b.pem&keyfile=&cacertfile=/x/%D0%BF.pem&cacertfile=/other.pem",
    )
    .unwrap();
    assert_eq!(uri.tls.certfile, Some("/a b.pem".into()));
    assert_eq!(uri.tls.keyfile, None);
    assert_eq!(uri.tls.cacertfile, Some("/x/п.pem".into()));
    // They are parsed on amqp:// too (amqp091-go does); the deliverer ignores them there.
    let uri = BrokerUri::parse("amqp://h/?cacertfile=/ca.pem").unwrap();
    assert_eq!(uri.tls.cacertfile, Some("/ca.pem".into()));
}

#[test]
fn connection_query_parameters_follow_amqp091_go() {
    let uri = BrokerUri::parse(
        "amqp://h/?heartbeat=%2B5&connection_timeout=2500&channel_max=8\
         &auth_mechanism=EXTERNAL&auth_mechanism=plain",
    )
    .unwrap();
    assert_eq!(uri.heartbeat, Some(5));
    assert_eq!(uri.connection_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(uri.channel_max, Some(8));
    assert_eq!(uri.auth_mechanism, Some(SASLMechanism::External));
    // heartbeat=0 is kept (follow the broker); 0 for the others means "not set".
    let uri = BrokerUri::parse("amqp://h/?heartbeat=0&connection_timeout=0&channel_max=0").unwrap();
    assert_eq!(uri.heartbeat, Some(0));
    assert_eq!(uri.connection_timeout, None);
    assert_eq!(uri.channel_max, None);
    assert_eq!(uri.auth_mechanism, None);
    let uri =
        BrokerUri::parse("amqp://h/?heartbeat=1&heartbeat=2&auth_mechanism=AMQPlain").unwrap();
    assert_eq!(uri.heartbeat, Some(1));
    assert_eq!(uri.auth_mechanism, Some(SASLMechanism::AMQPlain));
    // Parameters amqp091-go does not read are ignored, malformed or not: frame_max included.
    let uri = BrokerUri::parse("amqp://h/?frame_max=zzz&verify=verify_none&x=%zz&a=1;b=2").unwrap();
    assert_eq!(uri.to_lapin().query, AMQPQueryString::default());
}

#[test]
fn unusable_query_parameters_name_the_parameter() {
    for (query, name) in [
        ("heartbeat=x", "heartbeat"),
        // `+` is a space in a query, and Go's Atoi refuses " 5".
        ("heartbeat=+5", "heartbeat"),
        ("heartbeat=", "heartbeat"),
        ("heartbeat=-1", "heartbeat"),
        ("heartbeat=65536", "heartbeat"),
        ("heartbeat=5;x=1", "heartbeat"),
        ("heartbeat=%zz", "heartbeat"),
        ("connection_timeout=1.5", "connection_timeout"),
        ("connection_timeout=-5", "connection_timeout"),
        ("channel_max=+8", "channel_max"),
        ("channel_max=70000", "channel_max"),
        ("channel_max=-1", "channel_max"),
        ("auth_mechanism=cram-md5", "auth_mechanism"),
        ("auth_mechanism=plain&auth_mechanism=", "auth_mechanism"),
        ("certfile=/a%zz", "certfile"),
        ("keyfile=/k.pem;x", "keyfile"),
    ] {
        let text = format!("amqp://u:secret@h/?{query}");
        match BrokerUri::parse(&text) {
            Err(e @ UriError::Param { name: got, .. }) => {
                assert_eq!(got, name, "{query}");
                assert!(e.to_string().contains(name), "{e}");
                assert!(!e.to_string().contains("secret"), "{e}");
            }
            other => panic!("{query}: {other:?}"),
        }
    }
}

#[test]
fn lapin_receives_the_parsed_fields() {
    let uri = BrokerUri::parse(
        "amqps://u%40x:p%2Fw@[::1]:1000/a%2Fb?heartbeat=7&connection_timeout=1500&channel_max=9&auth_mechanism=external",
    )
    .unwrap();
    assert_eq!(
        uri.to_lapin(),
        AMQPUri {
            scheme: AMQPScheme::AMQPS,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: "u@x".into(),
                    password: "p/w".into(),
                },
                host: "::1".into(),
                port: 1000,
            },
            vhost: "a/b".into(),
            query: AMQPQueryString {
                frame_max: None,
                channel_max: Some(9),
                heartbeat: Some(7),
                connection_timeout: Some(1500),
                auth_mechanism: Some(SASLMechanism::External),
            },
        }
    );
}

/// Why tocsin does not hand the string to lapin (module documentation): these pin the
/// differences, so a lapin upgrade that changes them is noticed.
#[test]
fn lapins_own_parser_differs_where_clair_uris_need_it() {
    let lapin = |s: &str| s.parse::<AMQPUri>().unwrap();
    // The trailing slash: lapin's empty vhost, RabbitMQ's "vhost  not found".
    assert_eq!(lapin("amqp://guest:guest@rabbitmq:5672/").vhost, "");
    assert_eq!(
        BrokerUri::parse("amqp://guest:guest@rabbitmq:5672/")
            .unwrap()
            .vhost,
        "/"
    );
    // A zone identifier is refused.
    assert!("amqp://[fe80::1%25en0]/".parse::<AMQPUri>().is_err());
    // A bracketed IPv6 host becomes localhost.
    assert_eq!(
        lapin("amqp://[2001:db8::5]:5672/x").authority.host,
        "localhost"
    );
    assert_eq!(
        BrokerUri::parse("amqp://[2001:db8::5]:5672/x")
            .unwrap()
            .host,
        "2001:db8::5"
    );
}

#[test]
fn display_and_debug_hide_the_password() {
    let uri = BrokerUri::parse("amqp://guest:hunter2@[::1]:5672/%2f").unwrap();
    assert_eq!(uri.to_string(), "amqp://guest:***@[::1]:5672/%2F");
    assert!(!format!("{uri:?}").contains("hunter2"));
    let uri = BrokerUri::parse("amqps://u%40x:hunter2@[fe80::1%25en0]/a%2Fb").unwrap();
    assert_eq!(
        uri.to_string(),
        "amqps://u%40x:***@[fe80::1%25en0]:5671/a%2Fb"
    );
    // What is shown parses back to the same broker and vhost.
    let back = BrokerUri::parse(&uri.to_string()).unwrap();
    assert_eq!(
        (back.host, back.port, back.vhost, back.username),
        (uri.host, uri.port, uri.vhost, uri.username)
    );
}
