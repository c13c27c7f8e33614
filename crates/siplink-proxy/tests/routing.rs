//! Routing: dial patterns choose the connection; allow lists, down
//! connections and failover order; and a property test against a plain
//! model (every enabled connection's patterns tried in order with `regex`).

use proptest::prelude::*;
use siplink_message::uri::Uri;
use siplink_proxy::config::Config;
use siplink_proxy::routing::{Decision, Router, dialled_number};

fn config() -> Config {
    Config::from_toml(
        r#"
        [proxy]
        domains = ["a.test"]
        [[listen]]
        transport = "udp"
        address = "127.0.0.1:5060"
        [[users]]
        name = "1001"
        password = "x"
        [[users]]
        name = "1002"
        password = "x"
        connections = ["carrier"]

        [[connections]]
        name = "office"
        kind = "trunk"
        addresses = ["10.0.0.1"]
        dial_patterns = ["4[0-9]{3}"]

        [[connections]]
        name = "carrier"
        kind = "trunk"
        addresses = ["10.0.0.2"]
        dial_patterns = ["0[0-9]{9,10}", { pattern = "9(0[0-9]+)", rewrite = "$1" }, "4[0-9]{3}"]

        [[connections]]
        name = "old"
        kind = "trunk"
        enabled = false
        addresses = ["10.0.0.3"]
        dial_patterns = [".*"]
        "#,
    )
    .unwrap()
}

fn names(d: &Decision) -> Vec<(String, String)> {
    match d {
        Decision::Route(c) | Decision::AllDown(c) => c
            .iter()
            .map(|c| (c.name.clone(), c.number.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn first_matching_connection_then_failover_order() {
    let r = Router::new(&config()).unwrap();
    let d = r.route(Some("1001"), "4001", |_| true);
    assert_eq!(
        names(&d),
        [
            ("office".into(), "4001".into()),
            ("carrier".into(), "4001".into())
        ]
    );
    let d = r.route(Some("1001"), "02081230958", |_| true);
    assert_eq!(names(&d), [("carrier".into(), "02081230958".into())]);
}

#[test]
fn rewrite_is_applied_and_separators_are_ignored() {
    let r = Router::new(&config()).unwrap();
    let d = r.route(Some("1001"), "9-020 8123 0958", |_| true);
    assert_eq!(names(&d), [("carrier".into(), "02081230958".into())]);
}

#[test]
fn disabled_connections_never_match() {
    let r = Router::new(&config()).unwrap();
    assert_eq!(r.route(Some("1001"), "12345", |_| true), Decision::NoMatch);
}

#[test]
fn allow_lists_and_unknown_callers() {
    let r = Router::new(&config()).unwrap();
    // 1002 may only use the carrier.
    let d = r.route(Some("1002"), "4001", |_| true);
    assert_eq!(names(&d), [("carrier".into(), "4001".into())]);
    assert_eq!(
        r.route(Some("nobody"), "4001", |_| true),
        Decision::NotAllowed
    );
    // A PBX (no user) may use every connection.
    assert_eq!(names(&r.route(None, "4001", |_| true)).len(), 2);
}

#[test]
fn down_connections_are_skipped_unless_all_are_down() {
    let r = Router::new(&config()).unwrap();
    let d = r.route(Some("1001"), "4001", |i| i != 0);
    assert_eq!(names(&d), [("carrier".into(), "4001".into())]);
    let d = r.route(Some("1001"), "4001", |_| false);
    assert!(
        matches!(d, Decision::AllDown(ref c) if c.len() == 2),
        "{d:?}"
    );
}

#[test]
fn dialled_number_from_uris() {
    let n = |s: &str| dialled_number(&Uri::parse(s.to_owned()).unwrap()).map(|c| c.into_owned());
    assert_eq!(n("sip:4001@a.test").as_deref(), Some("4001"));
    assert_eq!(
        n("sip:%2B44%20208@a.test;user=phone").as_deref(),
        Some("+44208")
    );
    assert_eq!(
        n("sip:+1-212-555-0100;phone-context=x@a.test").as_deref(),
        Some("+12125550100")
    );
    assert_eq!(n("tel:+1-212-555-0100").as_deref(), Some("+12125550100"));
    assert_eq!(n("sip:a.test"), None);
}

proptest! {
    #[test]
    fn matches_the_simple_model(number in "[0-9+]{0,12}", up in proptest::collection::vec(any::<bool>(), 3)) {
        let config = config();
        let r = Router::new(&config).unwrap();
        let d = r.route(Some("1001"), &number, |i| up[i]);
        // Model: every enabled connection in order; first full-matching pattern.
        let mut model = Vec::new();
        for (i, c) in config.connections.iter().enumerate() {
            if !c.enabled { continue; }
            let hit = c.dial_patterns.iter().any(|p| {
                regex::Regex::new(&format!("^(?:{})$", p.pattern())).unwrap().is_match(&number)
            });
            if hit { model.push(i); }
        }
        let got: Vec<usize> = match &d {
            Decision::Route(c) | Decision::AllDown(c) => c.iter().map(|c| c.connection).collect(),
            _ => Vec::new(),
        };
        let up_model: Vec<usize> = model.iter().copied().filter(|i| up[*i]).collect();
        let expect = if up_model.is_empty() { model.clone() } else { up_model };
        prop_assert_eq!(got, expect);
        prop_assert_eq!(matches!(d, Decision::NoMatch), model.is_empty());
    }
}
