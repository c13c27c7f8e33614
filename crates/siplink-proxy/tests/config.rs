//! Configuration: parsing, validation messages, the demo configuration.

use siplink_message::Transport;
use siplink_proxy::config::{Config, ConnectionKind, parse_address};

#[test]
fn demo_config_is_valid_and_has_one_connection_of_each_kind() {
    let c = Config::demo();
    c.validate().expect("demo validates");
    let kinds: Vec<ConnectionKind> = c.connections.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ConnectionKind::OutboundRegistration,
            ConnectionKind::Trunk,
            ConnectionKind::InboundRegistration
        ]
    );
    assert!(c.listeners.iter().any(|l| l.transport == Transport::Ws));
    assert!(c.listeners.iter().all(|l| l.address.ip().is_loopback()));
    assert_eq!(c.proxy.realm(), "siplink.test");
}

#[test]
fn round_trip_through_toml() {
    let c = Config::demo();
    let again = Config::from_toml(&c.to_toml()).expect("re-parses");
    assert_eq!(c, again);
}

#[test]
fn kind_defaults_to_outbound_registration() {
    let c = Config::from_toml(
        r#"
        [proxy]
        domains = ["a.test"]
        [[listen]]
        transport = "udp"
        address = "127.0.0.1:0"
        [[connections]]
        name = "pbx"
        addresses = ["10.0.0.1"]
        username = "u"
        password = "p"
        dial_patterns = [".*"]
        "#,
    )
    .unwrap();
    assert_eq!(c.connections[0].kind, ConnectionKind::OutboundRegistration);
    c.validate().unwrap();
}

fn issues(toml: &str) -> Vec<String> {
    let c = Config::from_toml(toml).expect("parses");
    match c.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
    }
}

const HEAD: &str = r#"
[proxy]
domains = ["a.test"]
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[users]]
name = "1001"
password = "x"
"#;

#[test]
fn bad_regex_names_connection_field_and_position() {
    let i = issues(&format!(
        r#"{HEAD}
        [[connections]]
        name = "carrier"
        kind = "trunk"
        addresses = ["10.0.0.1"]
        dial_patterns = ["0[0-9]{{9}}", "4[0-9"]
        "#
    ));
    assert_eq!(i.len(), 1, "{i:?}");
    assert!(
        i[0].starts_with(r#"connections[0] "carrier": dial_patterns[1]: bad pattern "4[0-9""#),
        "{}",
        i[0]
    );
}

#[test]
fn unknown_transport_is_a_parse_error_with_its_line() {
    let text = format!(
        r#"{HEAD}
[[connections]]
name = "x"
kind = "trunk"
transport = "sctp"
addresses = ["10.0.0.1"]
"#
    );
    let e = Config::from_toml(&text).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("unknown transport \"sctp\""), "{s}");
    assert!(s.contains("line 14"), "{s}");
}

#[test]
fn missing_credentials_duplicates_and_listener_conflicts_are_all_reported() {
    let i = issues(
        r#"
        [proxy]
        domains = ["a.test"]
        [[listen]]
        transport = "udp"
        address = "0.0.0.0:5060"
        [[listen]]
        transport = "udp"
        address = "127.0.0.1:5060"
        [[listen]]
        transport = "tls"
        address = "127.0.0.1:5061"
        [[connections]]
        name = "pbx"
        addresses = ["10.0.0.1"]
        dial_patterns = ["1"]
        [[connections]]
        name = "pbx"
        kind = "inbound-registration"
        username = "branch"
        [[connections]]
        name = "t"
        kind = "trunk"
        "#,
    );
    let text = i.join("\n");
    assert!(
        text.contains("listen[1] (UDP 127.0.0.1:5060): conflicts with listen[0]"),
        "{text}"
    );
    assert!(
        text.contains("listen[2] (TLS 127.0.0.1:5061): tls and wss listeners need certificate"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"connections[0] "pbx": username: outbound registration needs the user name"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"connections[0] "pbx": password: missing credentials"#),
        "{text}"
    );
    assert!(
        text.contains(r#"connections[1] "pbx": duplicate connection name"#),
        "{text}"
    );
    assert!(
        text.contains(r#"connections[1] "pbx": password: missing credentials"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"connections[2] "t": addresses: a trunk connection needs the PBX's address"#
        ),
        "{text}"
    );
}

#[test]
fn users_may_only_name_existing_connections() {
    let i = issues(
        r#"
        [proxy]
        domains = ["a.test"]
        [[listen]]
        transport = "udp"
        address = "127.0.0.1:5060"
        [[users]]
        name = "1001"
        ha1 = "not-hex"
        connections = ["nope"]
        "#,
    );
    let text = i.join("\n");
    assert!(
        text.contains(r#"users[0] "1001": ha1: ha1 must be 32 hex digits"#),
        "{text}"
    );
    assert!(
        text.contains(r#"users[0] "1001": connections[0]: no connection named "nope""#),
        "{text}"
    );
}

#[test]
fn file_name_is_in_every_line() {
    let dir = std::env::temp_dir().join(format!("siplink-proxy-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "{HEAD}\n[[connections]]\nname = \"c\"\nkind = \"trunk\"\naddresses = [\"host:0\"]\n"
        ),
    )
    .unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: connections[0] \"c\": addresses[0]: port 0 in \"host:0\"",
            path.display()
        )),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn addresses_parse_in_every_spelling() {
    let t = parse_address("pbx.example.com", Transport::Udp).unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.transport),
        ("pbx.example.com", 5060, Transport::Udp)
    );
    let t = parse_address("10.1.2.3:5080", Transport::Tcp).unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.transport),
        ("10.1.2.3", 5080, Transport::Tcp)
    );
    let t = parse_address("[2001:db8::1]:5062", Transport::Udp).unwrap();
    assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", 5062));
    let t = parse_address("2001:db8::2", Transport::Udp).unwrap();
    assert_eq!((t.host.as_str(), t.port), ("2001:db8::2", 5060));
    let t = parse_address("sip:pbx.example.com;transport=tcp", Transport::Udp).unwrap();
    assert_eq!((t.port, t.transport), (5060, Transport::Tcp));
    let t = parse_address("sips:pbx.example.com", Transport::Udp).unwrap();
    assert_eq!((t.port, t.transport), (5061, Transport::Tls));
    for bad in [
        "",
        "host:",
        "host:99999",
        "ho st",
        "[::1",
        "sip:",
        "tel:+1234",
    ] {
        assert!(
            parse_address(bad, Transport::Udp).is_err(),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn inbound_pbx_name_may_not_shadow_a_user() {
    let i = issues(&format!(
        r#"{HEAD}
        [[connections]]
        name = "branch"
        kind = "inbound-registration"
        username = "1001"
        password = "p"
        "#
    ));
    assert!(
        i.iter().any(|s| s.contains("is also a user's name")),
        "{i:?}"
    );
}
