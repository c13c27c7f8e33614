//! `[media]` and the connections' media modes: TOML to a typed `MediaPlan`,
//! defaults, every invalid value at its location, the ng client's settings
//! built from the plan, and reload diffs.

mod plan_support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use plan_support::{assert_issue, errors, plan};
use siplink_proxy::media::{ConnectionMedia, MediaMode, MediaSide, RtpEngineConfig};
use siplink_proxy::{Config, Plan};

fn demo_with(extra: &str) -> Config {
    let text = format!("{}\n{extra}", siplink_proxy::DEMO_CONFIG);
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn conn<'a>(c: &'a mut Config, name: &str) -> &'a mut siplink_proxy::ConnectionConfig {
    c.connections
        .iter_mut()
        .find(|c| c.name == name)
        .expect("a demo connection")
}

const TWO_INSTANCES: &str = r#"
[media]
retransmit_ms = 200
timeout_ms = 1000
ping_interval = 2

[[media.rtpengine]]
ng = "10.0.0.5:2223"
weight = 3
internal = { interface = "internal", address = "10.0.0.5" }
external = { interface = "external", address = "203.0.113.5" }

[[media.rtpengine]]
ng = "[::1]:2224"
"#;

#[test]
fn without_a_media_section_media_is_off_everywhere_with_default_timing() {
    let p = Plan::demo();
    assert!(p.media.instances.is_empty());
    assert_eq!(p.media.retransmit, Duration::from_millis(500));
    assert_eq!(p.media.timeout, Duration::from_millis(2000));
    assert_eq!(p.media.ping_interval, Duration::from_secs(5));
    assert_eq!(p.media.client_config(), None);
    for c in &p.connections {
        assert_eq!(c.common.media, ConnectionMedia::default());
        assert_eq!(c.common.media.mode, MediaMode::Off);
        assert!(!c.common.media.transcode);
    }
    // Nothing media-related is written back for a config without it.
    let toml = Config::demo().to_toml();
    assert!(!toml.contains("media"), "{toml}");
    assert!(!toml.contains("transcode"), "{toml}");
}

#[test]
fn instances_sides_and_timing_become_a_typed_plan() {
    let p = plan(&demo_with(TWO_INSTANCES));
    assert_eq!(p.media.instances.len(), 2);
    let a = &p.media.instances[0];
    assert_eq!(a.ng, "10.0.0.5:2223".parse::<SocketAddr>().unwrap());
    assert_eq!(a.weight, 3);
    assert_eq!(a.internal.interface.as_deref(), Some("internal"));
    assert_eq!(
        a.external.address,
        Some("203.0.113.5".parse::<IpAddr>().unwrap())
    );
    let b = &p.media.instances[1];
    assert_eq!(b.ng, "[::1]:2224".parse::<SocketAddr>().unwrap());
    assert_eq!(b.weight, 1, "default weight");
    assert_eq!(b.internal, MediaSide::default());
    assert_eq!(p.media.retransmit, Duration::from_millis(200));
    assert_eq!(p.media.timeout, Duration::from_millis(1000));
    assert_eq!(p.media.ping_interval, Duration::from_secs(2));
    assert_eq!(
        p.media.instance("[::1]:2224".parse().unwrap()),
        Some(b),
        "lookup by ng address"
    );
}

#[test]
fn the_ng_client_config_comes_from_the_plan() {
    let p = plan(&demo_with(TWO_INSTANCES));
    let c = p.media.client_config().expect("instances are configured");
    let got: Vec<(SocketAddr, u32)> = c.instances.iter().map(|i| (i.addr, i.weight)).collect();
    assert_eq!(
        got,
        [
            ("10.0.0.5:2223".parse().unwrap(), 3),
            ("[::1]:2224".parse().unwrap(), 1)
        ]
    );
    assert_eq!(c.retransmit_interval, Duration::from_millis(200));
    // 1000 ms at 200 ms: 5 sends, the first and 4 resends.
    assert_eq!(c.retries, 4);
    assert_eq!(c.ping_interval, Duration::from_secs(2));
    // A timeout that is not a multiple rounds up to whole intervals.
    let mut config = demo_with(TWO_INSTANCES);
    config.media.timeout_ms = 1100;
    let c = plan(&config).media.client_config().unwrap();
    assert_eq!(c.retries, 5);
    config.media.timeout_ms = 200;
    assert_eq!(plan(&config).media.client_config().unwrap().retries, 0);
}

#[test]
fn connection_modes_parse_and_reach_the_plan() {
    let mut config = demo_with(TWO_INSTANCES);
    conn(&mut config, "office-pbx").media = MediaMode::Bridge;
    conn(&mut config, "office-pbx").transcode = true;
    conn(&mut config, "carrier").media = MediaMode::Relay;
    // Round trip through TOML: the names are "off", "relay", "bridge".
    let text = config.to_toml();
    assert!(text.contains("media = \"bridge\""), "{text}");
    assert!(text.contains("media = \"relay\""), "{text}");
    assert!(text.contains("transcode = true"), "{text}");
    let back = Config::from_toml(&text).unwrap();
    assert_eq!(back, config);
    let p = plan(&back);
    let m = |n: &str| p.connection(n).unwrap().common.media;
    assert_eq!(
        m("office-pbx"),
        ConnectionMedia {
            mode: MediaMode::Bridge,
            transcode: true
        }
    );
    assert_eq!(m("carrier").mode, MediaMode::Relay);
    assert_eq!(m("branch-pbx").mode, MediaMode::Off);
}

#[test]
fn an_unknown_mode_is_a_toml_error() {
    let text = siplink_proxy::DEMO_CONFIG.replacen(
        "name = \"office-pbx\"",
        "name = \"office-pbx\"\nmedia = \"transcode\"",
        1,
    );
    assert!(text.contains("media = \"transcode\""));
    let e = Config::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("unknown variant `transcode`"), "{e}");
}

#[test]
fn a_connection_with_media_but_no_instance_names_both() {
    let mut config = Config::demo();
    conn(&mut config, "carrier").media = MediaMode::Relay;
    let e = errors(&config);
    assert_issue(
        &e,
        r#"connections[1] "carrier": media"#,
        "media = \"relay\" needs an rtpengine, but media.rtpengine lists none",
    );
    // The running proxy's loader refuses it too.
    assert!(config.validate().is_err());
}

#[test]
fn transcode_without_bridge_is_refused() {
    let mut config = demo_with(TWO_INSTANCES);
    conn(&mut config, "carrier").media = MediaMode::Relay;
    conn(&mut config, "carrier").transcode = true;
    assert_issue(
        &errors(&config),
        r#"connections[1] "carrier": transcode"#,
        "transcode needs media = \"bridge\" (this connection has media = \"relay\")",
    );
}

#[test]
fn bad_ng_addresses_are_refused_at_their_index() {
    let mut config = Config::demo();
    for ng in [
        "127.0.0.1:0",
        "rtpengine.example.com:2223",
        "127.0.0.1",
        "0.0.0.0:2223",
        "127.0.0.1:2223",
        "127.0.0.1:2223",
    ] {
        config.media.rtpengine.push(RtpEngineConfig::new(ng));
    }
    let e = errors(&config);
    assert_issue(&e, "media.rtpengine[0]: ng", "port 0");
    assert_issue(&e, "media.rtpengine[1]: ng", "host names are not resolved");
    assert_issue(&e, "media.rtpengine[2]: ng", "is not IP:port");
    assert_issue(&e, "media.rtpengine[3]: ng", "unspecified address");
    assert_issue(
        &e,
        "media.rtpengine[5]: ng",
        "127.0.0.1:2223 is already media.rtpengine[4]",
    );
    assert!(!e.has("media.rtpengine[4]: ng"), "{e}");
    assert_eq!(e.issues.len(), 5, "{e}");
}

#[test]
fn duplicates_are_found_whatever_the_spelling() {
    let mut config = Config::demo();
    config
        .media
        .rtpengine
        .push(RtpEngineConfig::new("[::1]:2223"));
    config
        .media
        .rtpengine
        .push(RtpEngineConfig::new("[0:0::1]:2223"));
    assert_issue(
        &errors(&config),
        "media.rtpengine[1]: ng",
        "is already media.rtpengine[0]",
    );
}

#[test]
fn interfaces_come_in_pairs_and_are_names() {
    let mut config = Config::demo();
    let mut a = RtpEngineConfig::new("127.0.0.1:2223");
    a.internal.interface = Some("internal".into());
    let mut b = RtpEngineConfig::new("127.0.0.1:2224");
    b.external.interface = Some("external".into());
    let mut c = RtpEngineConfig::new("127.0.0.1:2225");
    c.internal.interface = Some("in side".into());
    c.external.interface = Some("x/y".into());
    c.external.address = Some("0.0.0.0".parse().unwrap());
    c.weight = 5000;
    config.media.rtpengine = vec![a, b, c];
    let e = errors(&config);
    assert_issue(
        &e,
        "media.rtpengine[0]: external.interface",
        "name the interface towards phones too",
    );
    assert_issue(
        &e,
        "media.rtpengine[1]: internal.interface",
        "name the interface towards PBXs too",
    );
    assert_issue(
        &e,
        "media.rtpengine[2]: internal.interface",
        "is not an rtpengine interface name",
    );
    assert_issue(
        &e,
        "media.rtpengine[2]: external.interface",
        "is not an rtpengine interface name",
    );
    assert_issue(
        &e,
        "media.rtpengine[2]: external.address",
        "cannot be advertised",
    );
    assert_issue(&e, "media.rtpengine[2]: weight", "5000 is above 1000");
}

#[test]
fn timing_out_of_range_is_refused() {
    let mut config = Config::demo();
    config.media.retransmit_ms = 5;
    config.media.timeout_ms = 0;
    config.media.ping_interval = 0;
    let e = errors(&config);
    assert_issue(&e, "media.retransmit_ms", "5 is not between 10 and 10000");
    assert_issue(
        &e,
        "media.timeout_ms",
        "must be at least media.retransmit_ms (5)",
    );
    assert_issue(&e, "media.ping_interval", "0 s is not between 1 and 3600");
    config.media.retransmit_ms = 1000;
    config.media.timeout_ms = 500;
    config.media.ping_interval = 3601;
    let e = errors(&config);
    assert!(!e.has("media.retransmit_ms"), "{e}");
    assert_issue(
        &e,
        "media.timeout_ms",
        "500 must be at least media.retransmit_ms (1000)",
    );
    assert_issue(&e, "media.ping_interval", "3601 s");
}

#[test]
fn unknown_media_fields_are_refused() {
    let e = Config::from_toml(&format!(
        "{}\n[media]\nretransmit = 3\n",
        siplink_proxy::DEMO_CONFIG
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `retransmit`"), "{e}");
    let e = Config::from_toml(&format!(
        "{}\n[[media.rtpengine]]\nng = \"127.0.0.1:1\"\ninternal = {{ iface = \"x\" }}\n",
        siplink_proxy::DEMO_CONFIG
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `iface`"), "{e}");
}

#[test]
fn a_configured_media_section_warns_that_it_is_not_acted_on_by_the_classic_core() {
    assert!(
        !Config::demo()
            .warnings()
            .iter()
            .any(|w| w.contains("media"))
    );
    let mut config = demo_with(TWO_INSTANCES);
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.contains("not acted on with proxy.core = \"classic\"")),
        "{:?}",
        config.warnings()
    );
    // The engine core acts on it: no warning.
    config.proxy.core = siplink_proxy::CoreKind::Engine;
    assert!(
        !config.warnings().iter().any(|w| w.contains("media")),
        "{:?}",
        config.warnings()
    );
}

#[test]
fn diff_reports_media_section_and_connection_mode_changes() {
    let old = plan(&demo_with(TWO_INSTANCES));
    // Same media: nothing.
    let same = plan(&demo_with(TWO_INSTANCES));
    let d = Plan::diff(&old, &same);
    assert!(d.is_empty(), "{d:?}");
    assert!(!d.media);

    // An instance's weight: the section changed, a restart applies it.
    let mut config = demo_with(TWO_INSTANCES);
    config.media.rtpengine[1].weight = 2;
    let d = Plan::diff(&old, &plan(&config));
    assert!(d.media);
    assert_eq!(d.restart_needed(), ["media"]);
    assert!(d.changed.is_empty(), "{d:?}");

    // Timing alone is a change too.
    let mut config = demo_with(TWO_INSTANCES);
    config.media.ping_interval = 9;
    assert!(Plan::diff(&old, &plan(&config)).media);

    // A connection's mode: that connection changed, not the section.
    let mut config = demo_with(TWO_INSTANCES);
    conn(&mut config, "carrier").media = MediaMode::Bridge;
    let d = Plan::diff(&old, &plan(&config));
    assert!(!d.media);
    assert_eq!(d.changed, ["carrier"]);
    assert_eq!(d.unchanged, ["office-pbx", "branch-pbx"]);
    assert!(d.restart_needed().is_empty());

    // Transcode alone changes the connection.
    let mut config2 = config.clone();
    conn(&mut config2, "carrier").transcode = true;
    let d = Plan::diff(&plan(&config), &plan(&config2));
    assert_eq!(d.changed, ["carrier"]);
}
