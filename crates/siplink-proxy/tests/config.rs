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

/// The issues of a trunk connection with `lines` added (the connection is
/// otherwise valid).
fn trunk_issues(lines: &str) -> Vec<String> {
    issues(&format!(
        "{HEAD}\n[[connections]]\nname = \"c\"\nkind = \"trunk\"\ndial_patterns = [\".*\"]\n{lines}\n"
    ))
}

/// Port 0, ports above 65535, empty and malformed hosts are refused in every
/// form an address takes, each with the field named (`sips:38.3ps:0` was
/// accepted before: found by the proxy_config fuzz target).
#[test]
fn impossible_addresses_are_refused_in_every_form_with_the_field_named() {
    let cases: &[(&str, &str)] = &[
        ("host:0", "port 0"),
        ("pbx.example.com:0", "port 0"),
        ("10.0.0.1:0", "port 0"),
        ("[::1]:0", "port 0"),
        ("[2001:db8::1]:00", "port 0"),
        ("sip:pbx.example.com:0", "port 0"),
        ("sips:pbx.example.com:0", "port 0"),
        ("sips:38.3ps:0", "port 0"),
        ("sip:[::1]:0;transport=tcp", "port 0"),
        ("SIP:10.0.0.1:0", "port 0"),
        ("host:65536", "above 65535"),
        ("host:99999999999", "above 65535"),
        ("[::1]:70000", "above 65535"),
        ("sip:host:65536", "bad SIP URI"),
        ("host:", "empty port"),
        ("[::1]:", "empty port"),
        ("host:5o60", "digits only"),
        ("host:-1", "digits only"),
        (":5060", "empty host"),
        ("[]:5060", "not an IPv6 address"),
        ("[pbx.example.com]:5060", "not an IPv6 address"),
        ("pbx.example.com:5060:", "not an IPv6 address"),
        ("a:b:0", "not an IPv6 address"),
        ("pbx..example.com", "bad host"),
        ("pbx example.com", "bad host"),
        ("sip:", "bad SIP URI"),
        ("sip:;transport=tcp", "bad SIP URI"),
        ("", "empty address"),
        ("   ", "empty address"),
    ];
    for (addr, says) in cases {
        for field in ["addresses", "outbound_proxy"] {
            let lines = match field {
                "addresses" => format!("addresses = [{addr:?}]"),
                _ => format!("addresses = [\"10.0.0.1\"]\noutbound_proxy = {addr:?}"),
            };
            let i = trunk_issues(&lines);
            let at = if field == "addresses" {
                "connections[0] \"c\": addresses[0]: ".to_owned()
            } else {
                "connections[0] \"c\": outbound_proxy: ".to_owned()
            };
            assert!(
                i.iter().any(|x| x.starts_with(&at) && x.contains(says)),
                "{addr:?} in {field}: expected {at}…{says}…, got {i:?}"
            );
        }
        // The parser alone agrees, in every default transport.
        for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            assert!(
                siplink_proxy::config::parse_address(addr, t).is_err(),
                "{addr:?} parsed"
            );
        }
    }
    // The valid neighbours still pass.
    for ok in [
        "host",
        "pbx.example.com:5060",
        "[::1]:5061",
        "::1",
        "2001:db8::1",
        "sips:pbx.example.com",
        "sips:38.3ps:5061",
        "sip:[::1]:65535;transport=tcp",
        "10.0.0.1:1",
    ] {
        assert_eq!(
            trunk_issues(&format!("addresses = [{ok:?}]")),
            Vec::<String>::new(),
            "{ok}"
        );
    }
}

#[test]
fn hosts_without_ports_are_checked_where_only_a_host_belongs() {
    let base = |proxy_extra: &str, conn_extra: &str| {
        issues(&format!(
            r#"
[proxy]
domains = ["a.test"]
{proxy_extra}
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[connections]]
name = "c"
kind = "trunk"
addresses = ["10.0.0.1"]
{conn_extra}
"#
        ))
    };
    for (proxy, conn, at) in [
        (
            "advertise = \"pbx.example.com:5060\"",
            "",
            "proxy.advertise",
        ),
        ("advertise = \"\"", "", "proxy.advertise"),
        (
            "advertise = \"sip:proxy.example.com\"",
            "",
            "proxy.advertise",
        ),
        ("advertise = \"1.2.3.4:0\"", "", "proxy.advertise"),
        ("advertise = \"a b\"", "", "proxy.advertise"),
        ("status_listen = \"127.0.0.1:0\"", "", "proxy.status_listen"),
        (
            "",
            "domain = \"pbx.example.com:0\"",
            "connections[0] \"c\": domain",
        ),
        ("", "domain = \"\"", "connections[0] \"c\": domain"),
    ] {
        let i = base(proxy, conn);
        assert!(
            i.iter().any(|x| x.starts_with(&format!("{at}: "))),
            "{proxy}{conn}: expected an issue at {at}, got {i:?}"
        );
    }
    for d in ["a.test:0", "a.test:5060", "", "[::1]:5060", "sip:a.test"] {
        let i = issues(&format!(
            "[proxy]\ndomains = [{d:?}]\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n"
        ));
        assert!(
            i.iter().any(|x| x.starts_with("proxy.domains[0]: ")),
            "{d:?}: {i:?}"
        );
    }
    // Good values pass.
    for (proxy, conn) in [
        (
            "advertise = \"proxy.example.com\"",
            "domain = \"pbx.example.com\"",
        ),
        ("advertise = \"2001:db8::1\"", ""),
        ("advertise = \"[2001:db8::1]\"", ""),
        ("advertise = \"203.0.113.5\"", ""),
    ] {
        assert_eq!(base(proxy, conn), Vec::<String>::new(), "{proxy} {conn}");
    }
}

#[test]
fn a_listener_port_out_of_range_is_a_parse_error_and_port_0_a_warning() {
    let e = Config::from_toml(
        "[proxy]\ndomains = [\"a.test\"]\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:65536\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 5"), "{e}");
    let c = Config::from_toml(
        "[proxy]\ndomains = [\"a.test\"]\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    // Port 0 binds a port the system picks: valid (tests use it), but warned.
    c.validate().unwrap();
    let w = c.warnings().join("\n");
    assert!(w.contains("listen[0] (127.0.0.1:0): port 0"), "{w}");
}

#[test]
fn tls_pins_are_checked() {
    let fp = "sha256:".to_owned() + &["AB"; 32].join(":");
    let other = "sha256:".to_owned() + &"cd".repeat(32);
    // Valid: a TLS trunk pinned in hex, or by its key in base64.
    assert_eq!(
        trunk_issues(&format!(
            "transport = \"tls\"\naddresses = [\"10.0.0.1\"]\ntls_pin = {fp:?}"
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        trunk_issues(
            "addresses = [\"sips:pbx.example.com\"]\ntls_pin = \"spki-sha256:q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80=\""
        ),
        Vec::<String>::new()
    );
    for (lines, says) in [
        (
            "transport = \"tls\"\naddresses = [\"10.0.0.1\"]\ntls_pin = \"sha1:00\"".to_owned(),
            "a pin starts with sha256:",
        ),
        (
            "transport = \"tls\"\naddresses = [\"10.0.0.1\"]\ntls_pin = \"sha256:abcd\"".to_owned(),
            "32 bytes",
        ),
        (
            format!("addresses = [\"10.0.0.1\"]\ntls_pin = {fp:?}"),
            "does not use TLS",
        ),
    ] {
        let i = trunk_issues(&lines);
        assert!(
            i.iter()
                .any(|x| x.starts_with("connections[0] \"c\": tls_pin: ") && x.contains(says)),
            "{lines}: {i:?}"
        );
    }
    // Two connections to one host must agree.
    let i = issues(&format!(
        r#"{HEAD}
[[connections]]
name = "a"
kind = "trunk"
transport = "tls"
addresses = ["pbx.example.com"]
tls_pin = {fp:?}
[[connections]]
name = "b"
kind = "trunk"
addresses = ["sips:PBX.example.com:5062"]
tls_pin = {other:?}
"#
    ));
    assert!(
        i.iter()
            .any(|x| x.starts_with("connections[1] \"b\": tls_pin: ")
                && x.contains("same host \"pbx.example.com\"")),
        "{i:?}"
    );
}

#[test]
fn udp_workers_and_sharing_are_checked() {
    let ok = Config::from_toml(
        r#"
        [proxy]
        domains = ["a.test"]
        [[listen]]
        transport = "udp"
        address = "127.0.0.1:5060"
        workers = 4
        sharing = "reuseport"
        "#,
    )
    .unwrap();
    assert_eq!(ok.listeners[0].workers, Some(4));
    assert_eq!(
        ok.listeners[0].udp_sharing(),
        Some(siplink_transport::UdpSharing::ReusePort)
    );
    let i = issues(
        r#"
        [proxy]
        domains = ["a.test"]
        [[listen]]
        transport = "udp"
        address = "127.0.0.1:5060"
        workers = 0
        sharing = "spread"
        [[listen]]
        transport = "tcp"
        address = "127.0.0.1:5060"
        workers = 2
        "#,
    );
    let text = i.join("\n");
    assert!(
        text.contains("listen[0] (UDP 127.0.0.1:5060): workers must be 1 to 256"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"listen[0] (UDP 127.0.0.1:5060): sharing must be "shared", "reuseport" or "threads""#
        ),
        "{text}"
    );
    assert!(
        text.contains("listen[1] (TCP 127.0.0.1:5060): workers and sharing only apply to udp"),
        "{text}"
    );
}

#[test]
fn contact_fallback_is_off_by_default_a_boolean_and_warned_without_a_stream_listener() {
    // Off unless written: a binding goes with its TCP/TLS/WS connection.
    let c = Config::from_toml(HEAD).unwrap();
    assert!(!c.proxy.contact_fallback);
    assert!(
        Config::demo()
            .proxy
            .contact_fallback
            .then_some(())
            .is_none()
    );
    let on = HEAD.replace("[proxy]\n", "[proxy]\ncontact_fallback = true\n");
    let c = Config::from_toml(&on).unwrap();
    assert!(c.proxy.contact_fallback);
    c.validate().unwrap();
    // Only UDP listens: nothing can lose a connection, so it does nothing.
    let w = c.warnings().join("\n");
    assert!(
        w.contains("proxy.contact_fallback = true has no effect: no listener is TCP"),
        "{w}"
    );
    let with_tcp = format!("{on}[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:5060\"\n");
    let w = Config::from_toml(&with_tcp).unwrap().warnings().join("\n");
    assert!(!w.contains("contact_fallback"), "{w}");
    // Anything but a boolean is refused, naming the field and its line.
    for bad in ["\"yes\"", "1", "\"keep\""] {
        let text = HEAD.replace("[proxy]\n", &format!("[proxy]\ncontact_fallback = {bad}\n"));
        let e = Config::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("contact_fallback"), "{bad}: {e}");
        assert!(e.contains("line 3"), "{bad}: {e}");
    }
    // It survives the round trip through TOML.
    let again = Config::from_toml(&c.to_toml()).unwrap();
    assert!(again.proxy.contact_fallback);
}
