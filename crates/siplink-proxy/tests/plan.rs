//! The typed plan: every example configuration becomes a plan with the
//! expected kinds and parsed values; every invalid configuration gives its
//! error at the right location; reload diffs; the engine's view of a plan.

mod plan_support;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plan_support::{assert_issue, errors, plan};
use siplink_auth::{Algorithm, HashFunction, StoredSecret};
use siplink_message::{Message, Transport};
use siplink_proxy::Config;
use siplink_proxy::config::{
    AccountConfig, ConnectionConfig, ConnectionKind, DialPatternConfig, RegistrationMode,
    UserConfig,
};
use siplink_proxy::engine::{
    Caller, Engine, Fate, Output, PbxSource, Query, ServerTx, View, dispatch,
};
use siplink_proxy::plan::{Accounts, Allowed, Host, Kind, LiveState, Plan, PlanView, Target};
use siplink_transport::{FlowId, Origin};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn target(host: &str, port: u16, protocol: Transport) -> Target {
    Target {
        host: Host::parse(host).expect("test host"),
        port: port.try_into().expect("non-zero test port"),
        protocol,
    }
}

/// A user with a password or an HA1 (built from TOML, so that fields added
/// to `UserConfig` later keep this file compiling).
fn user(name: &str, password: Option<&str>, ha1: Option<&str>) -> UserConfig {
    let mut u = Config::demo().users[0].clone();
    u.name = name.into();
    u.password = password.map(Into::into);
    u.ha1 = ha1.map(Into::into);
    u.connections = None;
    u
}

/// A per-user account with a password.
fn account(user: &str, username: &str) -> AccountConfig {
    let text = format!(
        "[[users]]\nname = \"{user}\"\npassword = \"x\"\n\
         [[connections]]\nname = \"c\"\naddresses = [\"192.0.2.1\"]\n\
         registration = {{ mode = \"per-user\" }}\n\
         accounts = [{{ user = \"{user}\", username = \"{username}\", password = \"pw\" }}]\n"
    );
    let c = Config::from_toml(&text).expect("account TOML");
    c.connections[0].accounts[0].clone()
}

fn conn_mut<'a>(c: &'a mut Config, name: &str) -> &'a mut ConnectionConfig {
    c.connections
        .iter_mut()
        .find(|c| c.name == name)
        .expect("connection in the test config")
}

// ---------------------------------------------------------------------------
// Valid configurations
// ---------------------------------------------------------------------------

#[test]
fn the_demo_plan_has_one_connection_of_each_kind_with_its_values() {
    let plan = Plan::demo();
    assert_eq!(
        plan.proxy.domains,
        vec![
            Host::Name("siplink.test".into()),
            Host::Ip("127.0.0.1".parse().unwrap())
        ]
    );
    assert_eq!(plan.proxy.realm, "siplink.test");
    assert_eq!(plan.proxy.digest_algorithms, vec![Algorithm::Md5]);
    assert_eq!(
        plan.proxy.status_listen,
        Some("127.0.0.1:8081".parse().unwrap())
    );
    assert_eq!(plan.listeners.len(), 3);
    assert_eq!(plan.listeners[2].protocol, Transport::Ws);
    assert_eq!(plan.listeners[2].advertised, ("127.0.0.1".to_owned(), 8080));
    assert_eq!(plan.limits.max_calls, 10_000);
    assert_eq!(plan.limits.min_expires, Duration::from_secs(60));
    assert_eq!(plan.limits.max_expires, Duration::from_secs(3600));

    // Users: 1003 may use office-pbx only, as an index.
    assert_eq!(plan.users.len(), 3);
    assert_eq!(plan.user("1001").unwrap().allowed, Allowed::All);
    assert_eq!(
        plan.user("1003").unwrap().allowed,
        Allowed::Only(vec![plan.connection_index("office-pbx").unwrap()])
    );

    // The index from names to positions.
    for (i, name) in ["office-pbx", "carrier", "branch-pbx"].iter().enumerate() {
        assert_eq!(plan.connection_index(name), Some(i));
        assert_eq!(plan.connections[i].common.index, i);
        assert_eq!(plan.connections[i].common.name, *name);
    }
    assert_eq!(plan.connection_index("nope"), None);

    let office = plan.connection("office-pbx").unwrap();
    assert_eq!(office.common.deliver_to, plan.user_index("1001"));
    let Kind::OutboundRegistration(or) = &office.kind else {
        panic!("office-pbx is {:?}", office.kind)
    };
    assert_eq!(or.targets, vec![target("127.0.0.1", 5070, Transport::Udp)]);
    assert_eq!(or.domain, Host::Ip("127.0.0.1".parse().unwrap()));
    assert_eq!(or.expires, Duration::from_secs(300));
    assert!(
        !or.probe.enabled,
        "outbound registration: probes off by default"
    );
    let Accounts::Shared(account) = &or.accounts else {
        panic!("shared mode")
    };
    assert_eq!(account.username, "proxy");
    assert_eq!(account.contact_user, "proxy");
    assert_eq!(account.credentials.username, "proxy");
    assert_eq!(account.user, None);

    let carrier = plan.connection("carrier").unwrap();
    let Kind::Trunk(t) = &carrier.kind else {
        panic!("carrier is {:?}", carrier.kind)
    };
    assert_eq!(t.targets, vec![target("127.0.0.1", 5080, Transport::Udp)]);
    assert_eq!(t.sources, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert!(t.probe.enabled);
    assert_eq!(t.probe.interval, Duration::from_secs(30));
    assert_eq!(t.probe.down_after, 3);
    assert_eq!(t.credentials, None);
    assert_eq!(carrier.targets(), t.targets.as_slice());
    assert_eq!(carrier.probe(), Some(&t.probe));
    assert!(plan.connection("branch-pbx").unwrap().targets().is_empty());
    assert_eq!(plan.connection("branch-pbx").unwrap().probe(), None);
    assert_eq!(carrier.common.dial_patterns.len(), 3);
    assert_eq!(carrier.common.dial_patterns[2].regex(), "9(0[0-9]+)");
    assert_eq!(carrier.common.dial_patterns[2].rewrite(), Some("$1"));
    assert_eq!(carrier.common.deliver_to, None);

    let branch = plan.connection("branch-pbx").unwrap();
    let Kind::InboundRegistration(ir) = &branch.kind else {
        panic!("branch-pbx is {:?}", branch.kind)
    };
    assert_eq!(ir.username, "branch");
    assert_eq!(ir.domain, None);
    assert_eq!(branch.common.deliver_to, plan.user_index("1002"));
    // The digest server finds the PBX's secret by its user name.
    assert!(plan.digest_secret("branch").is_some());
    assert!(plan.digest_secret("1002").is_some());
    assert!(
        plan.digest_secret("proxy").is_none(),
        "an outbound account is no server account"
    );

    // The compiled dial plan routes by connection index.
    let route = plan
        .dial_plan()
        .lookup("4001")
        .expect("4001 matches office-pbx");
    assert_eq!(*route.connection(), 0);
    let route = plan.dial_plan().lookup("9012345678").expect("9 + number");
    assert_eq!(*route.connection(), 1);
    assert_eq!(route.rewritten(), "012345678");
}

#[test]
fn every_example_config_becomes_a_plan() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("proxy") && name.ends_with(".toml") {
            let plan = Plan::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!plan.connections.is_empty(), "{name}");
            seen += 1;
        }
    }
    assert_eq!(seen, 4, "proxy.toml and the three PBX examples");
    // The commented example is the demo.
    let example = Plan::load(examples().join("proxy.toml")).unwrap();
    assert!(Plan::diff(&example, &Plan::demo()).is_empty());
}

#[test]
fn the_asterisk_example_has_a_per_user_registration_with_user_indexes() {
    let plan = Plan::load(examples().join("proxy-asterisk.toml")).unwrap();
    assert_eq!(
        plan.proxy.advertise,
        Some(Host::Ip("198.51.100.10".parse().unwrap()))
    );
    // 0.0.0.0 listeners are advertised under the advertise host.
    assert_eq!(
        plan.listeners[0].advertised,
        ("198.51.100.10".to_owned(), 5060)
    );
    let kinds: Vec<ConnectionKind> = plan.connections.iter().map(|c| c.kind.kind()).collect();
    assert_eq!(
        kinds,
        [
            ConnectionKind::OutboundRegistration,
            ConnectionKind::Trunk,
            ConnectionKind::OutboundRegistration
        ]
    );
    let ext = plan.connection("asterisk-ext").unwrap();
    assert!(!ext.common.enabled);
    let Kind::OutboundRegistration(or) = &ext.kind else {
        panic!()
    };
    let Accounts::PerUser(accounts) = &or.accounts else {
        panic!("per-user mode")
    };
    let got: Vec<(Option<usize>, &str, &str, &str)> = accounts
        .iter()
        .map(|a| {
            (
                a.user,
                a.username.as_str(),
                a.contact_user.as_str(),
                a.credentials.username.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some(0), "201", "asterisk-ext-alice", "201"),
            (Some(1), "202", "asterisk-ext-bob", "202")
        ]
    );
    // bob's allow list, by index; a disabled connection is not in the dial plan.
    assert_eq!(plan.user("bob").unwrap().allowed, Allowed::Only(vec![0, 2]));
    assert_eq!(plan.dial_plan().connection_count(), 2);
}

#[test]
fn the_3cx_example_parses_a_sips_uri_as_tls_to_a_host_name() {
    let plan = Plan::load(examples().join("proxy-3cx.toml")).unwrap();
    let tls = plan.connection("3cx-tls").unwrap();
    let Kind::Trunk(t) = &tls.kind else { panic!() };
    assert_eq!(
        t.targets,
        vec![target("pbx.example.com", 5061, Transport::Tls)]
    );
    assert_eq!(t.domain, Host::Name("pbx.example.com".into()));
    assert!(t.sources.is_empty(), "a host name identifies no source");
    let id = plan.connection("3cx-tls-identify").unwrap();
    let Kind::Trunk(t) = &id.kind else { panic!() };
    assert!(!t.probe.enabled);
    assert_eq!(t.targets, vec![target("192.0.2.40", 5060, Transport::Udp)]);
    let Kind::InboundRegistration(ir) = &plan.connection("3cx-registered").unwrap().kind else {
        panic!()
    };
    assert_eq!(ir.username, "pbx3cx");
}

#[test]
fn addresses_in_every_form_parse_to_typed_targets() {
    let udp = Transport::Udp;
    let cases = [
        ("pbx.example.com", target("pbx.example.com", 5060, udp)),
        ("PBX.Example.COM:5070", target("pbx.example.com", 5070, udp)),
        ("192.0.2.1", target("192.0.2.1", 5060, udp)),
        ("[2001:db8::1]:5070", target("2001:db8::1", 5070, udp)),
        ("[2001:db8::1]", target("2001:db8::1", 5060, udp)),
        ("2001:db8::1", target("2001:db8::1", 5060, udp)),
        (
            "sip:pbx.example.com;transport=tcp",
            target("pbx.example.com", 5060, Transport::Tcp),
        ),
        (
            "sips:pbx.example.com",
            target("pbx.example.com", 5061, Transport::Tls),
        ),
        // RFC 3261 §26.2.2: sips with transport=tcp is TLS.
        (
            "sips:pbx.example.com;transport=tcp",
            target("pbx.example.com", 5061, Transport::Tls),
        ),
        ("sip:[2001:db8::2]:5080", target("2001:db8::2", 5080, udp)),
    ];
    for (text, want) in cases {
        assert_eq!(Target::parse(text, udp), Ok(want), "{text}");
    }
    assert_eq!(
        Target::parse("192.0.2.1", Transport::Tls).unwrap().port(),
        5061
    );
    let t = Target::parse("[2001:db8::1]:5070", udp).unwrap();
    assert_eq!(t.to_string(), "udp:[2001:db8::1]:5070");
    assert_eq!(t.addr().host_port(), "[2001:db8::1]:5070");
}

#[test]
fn port_zero_and_hostless_addresses_are_refused_in_every_form() {
    for text in [
        "192.0.2.1:0",
        "pbx.example.com:0",
        "[2001:db8::1]:0",
        "sip:pbx.example.com:0",
        "sip:[2001:db8::1]:0;transport=tcp",
        "sips:pbx.example.com:0",
    ] {
        let e = Target::parse(text, Transport::Udp).unwrap_err();
        assert!(e.contains('0'), "{text}: {e}");
    }
    for text in [
        "sips:",
        "sips:;transport=tls",
        "sips:0.0.0.0",
        "sips:[::]:5061",
        "sips:224.0.0.1",
        "sips:pbx.example.com;transport=udp",
        "sips:pbx..example.com",
        "sips:-pbx.example.com",
        "0.0.0.0:5060",
        "",
        "pbx.example.com:",
        "pbx.example.com:70000",
        "[2001:db8::1",
        "pbx_ex ample",
    ] {
        assert!(
            Target::parse(text, Transport::Udp).is_err(),
            "{text:?} was accepted"
        );
    }
}

#[test]
fn a_password_gives_the_ha1_of_every_offered_hash_and_an_ha1_only_md5() {
    // RFC 2617 §3.5: HA1 of Mufasa / testrealm@host.com / "Circle Of Life".
    let mut c = Config::demo();
    c.proxy.realm = Some("testrealm@host.com".into());
    c.proxy.digest_algorithms = vec!["SHA-256".into(), "MD5".into()];
    c.users.push(user("Mufasa", Some("Circle Of Life"), None));
    c.users.push(user(
        "simba",
        None,
        Some("939E7578ED9E3C518A452ACEE763BCE9"),
    ));
    let plan = plan(&c);
    let m = &plan.user("Mufasa").unwrap().secret;
    assert_eq!(
        m.ha1(HashFunction::Md5),
        Some("939e7578ed9e3c518a452acee763bce9")
    );
    let sha = m.ha1(HashFunction::Sha256).expect("SHA-256 offered");
    assert_eq!(sha.len(), 64);
    assert_eq!(
        m.stored(Algorithm::Md5Sess),
        Some(StoredSecret::Ha1("939e7578ed9e3c518a452acee763bce9".into()))
    );
    let s = &plan.user("simba").unwrap().secret;
    assert_eq!(
        s.ha1(HashFunction::Md5),
        Some("939e7578ed9e3c518a452acee763bce9")
    );
    assert_eq!(s.ha1(HashFunction::Sha256), None);
    assert!(!format!("{m:?}").contains("939e"), "Debug shows no secret");
}

// ---------------------------------------------------------------------------
// Invalid configurations
// ---------------------------------------------------------------------------

#[test]
fn port_zero_is_an_error_at_its_location_in_every_place() {
    let mut c = Config::demo();
    c.listeners[0].address = "127.0.0.1:0".parse().unwrap();
    c.proxy.status_listen = Some("127.0.0.1:0".parse().unwrap());
    conn_mut(&mut c, "office-pbx").addresses = vec!["sip:127.0.0.1:0".into()];
    let carrier = conn_mut(&mut c, "carrier");
    carrier.addresses = vec![
        "127.0.0.1:5080".into(),
        "[::1]:0".into(),
        "sips:pbx.example.com:0".into(),
    ];
    carrier.outbound_proxy = Some("sip:proxy.example.com:0;transport=tcp".into());
    let e = errors(&c);
    assert_issue(&e, "listen[0] (UDP 127.0.0.1:0)", "port 0");
    assert_issue(&e, "proxy.status_listen", "port 0");
    assert_issue(&e, "connections[0] \"office-pbx\": addresses[0]", "port 0");
    assert_issue(&e, "connections[1] \"carrier\": addresses[1]", "0");
    assert_issue(&e, "connections[1] \"carrier\": addresses[2]", "port 0");
    assert_issue(&e, "connections[1] \"carrier\": outbound_proxy", "port 0");
    assert!(!e.has("connections[1] \"carrier\": addresses[0]"));
    // Every problem at once, each location once.
    let mut locations: Vec<&str> = e.issues.iter().map(|i| i.location.as_str()).collect();
    let n = locations.len();
    locations.sort();
    locations.dedup();
    assert_eq!(locations.len(), n, "a location reported twice:\n{e}");
    assert_eq!(n, 6, "{e}");
}

#[test]
fn a_sips_uri_without_a_usable_host_is_an_error() {
    for bad in [
        "sips:0.0.0.0",
        "sips:pbx.example.com;transport=udp",
        "sips:;transport=tls",
    ] {
        let mut c = Config::demo();
        conn_mut(&mut c, "carrier").addresses = vec![bad.into()];
        let e = errors(&c);
        assert!(
            e.has("connections[1] \"carrier\": addresses[0]"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn names_users_and_patterns_are_checked() {
    let mut c = Config::demo();
    c.users[2].connections = Some(vec!["office-pbx".into(), "nowhere".into()]);
    c.users.push(c.users[0].clone());
    let mut dup = ConnectionConfig::new("carrier", ConnectionKind::Trunk);
    dup.addresses = vec!["192.0.2.9".into()];
    c.connections.push(dup);
    conn_mut(&mut c, "office-pbx").dial_patterns = vec![
        DialPatternConfig::Plain("4[0-9]{3}".into()),
        DialPatternConfig::Plain("".into()),
        DialPatternConfig::Plain("   ".into()),
        DialPatternConfig::Plain("4[0-9".into()),
        DialPatternConfig::Rewrite {
            pattern: "9(0[0-9]+)".into(),
            rewrite: "$7".into(),
        },
    ];
    conn_mut(&mut c, "branch-pbx").deliver_to = Some("9999".into());
    let e = errors(&c);
    assert_issue(
        &e,
        "users[2] \"1003\": connections[1]",
        "no connection named \"nowhere\"",
    );
    assert_issue(&e, "users[3] \"1001\"", "duplicate user name");
    assert_issue(
        &e,
        "connections[3] \"carrier\"",
        "duplicate connection name",
    );
    assert_issue(
        &e,
        "connections[0] \"office-pbx\": dial_patterns[1]",
        "empty dial pattern",
    );
    assert_issue(
        &e,
        "connections[0] \"office-pbx\": dial_patterns[2]",
        "empty dial pattern",
    );
    assert_issue(
        &e,
        "connections[0] \"office-pbx\": dial_patterns[3]",
        "4[0-9",
    );
    assert_issue(&e, "connections[0] \"office-pbx\": dial_patterns[4]", "$7");
    assert_issue(
        &e,
        "connections[2] \"branch-pbx\": deliver_to",
        "no user named \"9999\"",
    );
    assert!(!e.has("connections[0] \"office-pbx\": dial_patterns[0]"));
}

#[test]
fn credentials_are_checked() {
    let mut c = Config::demo();
    c.users[0].password = None;
    c.users[0].ha1 = Some("not-hex".into());
    c.users[1].password = None;
    c.users[1].ha1 = Some("939e7578ed9e3c518a452acee763bce".into()); // 31 digits
    c.users[2].ha1 = Some("939e7578ed9e3c518a452acee763bce9".into()); // and a password
    let carrier = conn_mut(&mut c, "carrier");
    carrier.username = Some("trunkuser".into());
    carrier.ha1 = Some("939e7578ed9e3c518a452acee763bce9".into());
    let office = conn_mut(&mut c, "office-pbx");
    office.password = None;
    let e = errors(&c);
    assert_issue(&e, "users[0] \"1001\": ha1", "32 hex digits");
    assert_issue(&e, "users[1] \"1002\": ha1", "32 hex digits");
    assert_issue(&e, "users[2] \"1003\"", "not both");
    assert_issue(
        &e,
        "connections[1] \"carrier\": realm",
        "realm it was made in",
    );
    assert_issue(
        &e,
        "connections[0] \"office-pbx\": password",
        "missing credentials",
    );

    // An MD5 HA1 cannot answer SHA-256 challenges: with only SHA-256
    // offered, the account could never authenticate.
    let mut c = Config::demo();
    c.proxy.digest_algorithms = vec!["SHA-256".into()];
    c.users[0].password = None;
    c.users[0].ha1 = Some("939e7578ed9e3c518a452acee763bce9".into());
    let e = errors(&c);
    assert_issue(&e, "users[0] \"1001\": ha1", "MD5");
    assert_eq!(e.issues.len(), 1, "{e}");
}

#[test]
fn fields_of_another_kind_and_bad_hosts_are_errors() {
    let mut c = Config::demo();
    c.proxy.advertise = Some("bad host!".into());
    c.proxy.domains.push("exa mple".into());
    let carrier = conn_mut(&mut c, "carrier");
    carrier.accounts = vec![account("1001", "201")];
    carrier.domain = Some("pbx..example.com".into());
    let branch = conn_mut(&mut c, "branch-pbx");
    branch.probe.enabled = Some(true);
    branch.outbound_proxy = Some("192.0.2.1".into());
    branch.domain = Some("elsewhere.example.net".into());
    let e = errors(&c);
    assert_issue(&e, "proxy.advertise", "bad host!");
    assert_issue(&e, "proxy.domains[2]", "exa mple");
    assert_issue(
        &e,
        "connections[1] \"carrier\": accounts",
        "does not apply to a trunk",
    );
    assert_issue(&e, "connections[1] \"carrier\": domain", "pbx..example.com");
    assert_issue(
        &e,
        "connections[2] \"branch-pbx\": probe",
        "inbound-registration",
    );
    assert_issue(
        &e,
        "connections[2] \"branch-pbx\": outbound_proxy",
        "inbound-registration",
    );
    assert_issue(
        &e,
        "connections[2] \"branch-pbx\": domain",
        "not one of the registrar's domains",
    );
}

#[test]
fn per_user_accounts_and_inbound_aors_must_be_distinct() {
    let mut c = Config::demo();
    let office = conn_mut(&mut c, "office-pbx");
    office.registration.mode = RegistrationMode::PerUser;
    office.username = None;
    office.password = None;
    office.accounts = vec![
        account("1001", "201"),
        account("1001", "202"),
        account("ghost", "203"),
    ];
    let mut second = ConnectionConfig::new("branch-2", ConnectionKind::InboundRegistration);
    second.username = Some("branch".into());
    second.password = Some("pw".into());
    c.connections.push(second);
    let e = errors(&c);
    assert_issue(
        &e,
        "connections[0] \"office-pbx\": accounts[1]: user",
        "another account",
    );
    assert_issue(
        &e,
        "connections[0] \"office-pbx\": accounts[2]",
        "no user named \"ghost\"",
    );
    assert_issue(
        &e,
        "connections[3] \"branch-2\": username",
        "\"branch-pbx\"",
    );
}

#[test]
fn the_validators_messages_are_kept_and_not_repeated() {
    // Config::validate reports a missing address; the plan adds nothing at
    // the same location.
    let mut c = Config::demo();
    conn_mut(&mut c, "carrier").addresses.clear();
    let from_validator = c.validate().unwrap_err();
    let e = errors(&c);
    assert_eq!(
        e.issues[..from_validator.issues.len()],
        from_validator.issues[..]
    );
    let at = "connections[1] \"carrier\": addresses";
    assert_eq!(
        e.issues.iter().filter(|i| i.location == at).count(),
        1,
        "{e}"
    );
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("siplink-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let mut c = Config::demo();
    let mut l = c.listeners[1].clone();
    l.address = "127.0.0.1:0".parse().unwrap();
    c.listeners.push(l);
    std::fs::write(&path, c.to_toml()).unwrap();
    let e = Plan::load(&path).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(path.as_path()));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: listen[3]", path.display())),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Reload diff
// ---------------------------------------------------------------------------

#[test]
fn the_diff_says_what_a_reload_keeps_rebuilds_and_cannot_apply() {
    let old = Plan::demo();
    assert_eq!(
        Plan::diff(&old, &Plan::demo()).unchanged,
        ["office-pbx", "carrier", "branch-pbx"]
    );
    assert!(Plan::diff(&old, &Plan::demo()).is_empty());

    let mut c = Config::demo();
    // A user inserted first shifts every user index: office-pbx's
    // deliver_to is still 1001, so it is unchanged.
    c.users.insert(0, user("0999", Some("pw"), None));
    conn_mut(&mut c, "carrier").addresses = vec!["127.0.0.1:5090".into()];
    c.connections.retain(|c| c.name != "branch-pbx");
    let mut new = ConnectionConfig::new("second-carrier", ConnectionKind::Trunk);
    new.addresses = vec!["192.0.2.50".into()];
    new.dial_patterns = vec![DialPatternConfig::Plain("00[0-9]+".into())];
    c.connections.push(new);
    c.limits.max_calls = 50;
    c.listeners.pop();
    let d = Plan::diff(&old, &plan(&c));
    assert_eq!(d.unchanged, ["office-pbx"]);
    assert_eq!(d.changed, ["carrier"]);
    assert_eq!(d.added, ["second-carrier"]);
    assert_eq!(d.removed, ["branch-pbx"]);
    assert!(d.users);
    assert!(!d.reordered);
    assert_eq!(d.restart_needed(), ["listen", "limits"]);

    // Domains and realm: one warning, as the running proxy gives it.
    let mut c = Config::demo();
    c.proxy.realm = Some("other.test".into());
    let d = Plan::diff(&old, &plan(&c));
    assert!(d.realm && !d.domains);
    assert_eq!(d.restart_needed(), ["proxy.domains/realm"]);
    // A realm change changes every password's HA1.
    assert!(d.users);
    // Writing the default realm out changes nothing.
    let mut c = Config::demo();
    c.proxy.realm = None;
    assert!(Plan::diff(&old, &plan(&c)).is_empty());

    // The registrar keeps the flow-loss rule it started with.
    let mut c = Config::demo();
    c.proxy.contact_fallback = true;
    let new = plan(&c);
    assert!(new.proxy.contact_fallback && !old.proxy.contact_fallback);
    let d = Plan::diff(&old, &new);
    assert!(d.contact_fallback);
    assert_eq!(d.restart_needed(), ["proxy.contact_fallback"]);
    assert!(!d.is_empty());

    // Order matters for routing.
    let mut c = Config::demo();
    c.connections.swap(0, 1);
    let d = Plan::diff(&old, &plan(&c));
    assert!(d.reordered);
    assert_eq!(d.changed, Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// The engine's view
// ---------------------------------------------------------------------------

fn origin(peer: &str) -> Origin {
    Origin {
        protocol: Transport::Udp,
        peer: peer.parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
        flow: None,
    }
}

fn request(method: &str, ruri: &str) -> Message {
    let text = format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-plan-1;rport\r\n\
         Max-Forwards: 70\r\n\
         To: <{ruri}>\r\n\
         From: <sip:someone@siplink.test>;tag=77\r\n\
         Call-ID: plan-{method}-{ruri}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:someone@127.0.0.1:40000>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(text).expect("test request parses")
}

fn view() -> PlanView {
    PlanView::new(Arc::new(Plan::demo()), (), [7; 32])
}

#[test]
fn the_view_answers_from_the_plan() {
    let v = view();
    assert!(v.is_registrar_domain("siplink.test"));
    assert!(v.is_registrar_domain("SIPLINK.TEST"));
    assert!(v.is_registrar_domain("127.0.0.1"));
    assert!(!v.is_registrar_domain("example.com"));
    for u in ["1001", "1002", "1003"] {
        assert!(v.is_user(u));
    }
    assert!(!v.is_user("branch"), "the inbound PBX's account is no user");
    assert!(v.authenticate_calls());
    assert!(v.local().is_local_host("siplink.test"));
    assert_eq!(v.face(Transport::Ws, None), ("127.0.0.1".to_owned(), 8080));
    assert_eq!(v.face(Transport::Tls, None), ("127.0.0.1".to_owned(), 5060));

    // PBX sources: the trunk's and the registration's static addresses (on
    // loopback with their port); a phone on loopback is no PBX.
    let src = |c: &str, d: Option<&str>| PbxSource {
        connection: c.into(),
        deliver_to: d.map(str::to_owned),
    };
    assert_eq!(
        v.connection_of(&origin("127.0.0.1:5080"), None),
        Some(src("carrier", None))
    );
    assert_eq!(
        v.connection_of(&origin("127.0.0.1:5070"), Some("4001")),
        Some(src("office-pbx", Some("1001")))
    );
    assert_eq!(v.connection_of(&origin("127.0.0.1:40000"), None), None);

    // Flow tokens round-trip; forged ones do not.
    let flow = FlowId::from_raw(0x2a);
    let token = v.flow_token(flow);
    assert_eq!(v.flow_from_token(&token), Some(flow));
    let other = PlanView::new(Arc::new(Plan::demo()), (), [8; 32]);
    assert_eq!(other.flow_from_token(&token), None, "another key");
    assert_eq!(v.flow_from_token(&token.replace("fl2a", "fl2b")), None);
    assert_eq!(v.flow_from_token("fl+2ax0000000000000000"), None);
    assert_eq!(v.dialog_mac("a"), v.dialog_mac("a"));
    assert_ne!(v.dialog_mac("a"), v.dialog_mac("b"));
    assert_ne!(v.dialog_mac("a"), other.dialog_mac("a"));
}

struct Live {
    registrar: IpAddr,
    pbx_flow: FlowId,
}

impl LiveState for Live {
    fn registrar_of(&self, connection: usize, contact_user: &str) -> Option<IpAddr> {
        (connection == 0 && contact_user == "proxy").then_some(self.registrar)
    }
    fn is_registered_pbx(&self, connection: usize, origin: &Origin) -> bool {
        connection == 2 && origin.flow == Some(self.pbx_flow)
    }
}

#[test]
fn live_state_names_registrars_and_registered_pbxs() {
    let live = Live {
        registrar: "192.0.2.99".parse().unwrap(),
        pbx_flow: FlowId::from_raw(5),
    };
    let v = PlanView::new(Arc::new(Plan::demo()), live, [1; 32]);
    let o = origin("192.0.2.99:5060");
    assert_eq!(
        v.connection_of(&o, Some("proxy")).map(|s| s.connection),
        Some("office-pbx".to_owned())
    );
    assert_eq!(
        v.connection_of(&o, Some("1001")),
        None,
        "not our contact user"
    );
    assert_eq!(
        v.connection_of(&origin("192.0.2.98:5060"), Some("proxy")),
        None
    );
    let mut o = origin("203.0.113.7:5060");
    o.protocol = Transport::Tcp;
    o.flow = Some(FlowId::from_raw(5));
    assert_eq!(
        v.connection_of(&o, None),
        Some(PbxSource {
            connection: "branch-pbx".into(),
            deliver_to: Some("1002".into())
        })
    );
    o.flow = Some(FlowId::from_raw(6));
    assert_eq!(v.connection_of(&o, None), None);
}

#[test]
fn dispatch_over_a_plan_view_follows_the_config() {
    let v = view();
    let fate =
        |m: &str, ruri: &str, from: &str| dispatch(&request(m, ruri), &origin(from), &v).fate;
    assert_eq!(
        fate("REGISTER", "sip:siplink.test", "127.0.0.1:40000"),
        Fate::Registrar
    );
    assert_eq!(
        fate("REGISTER", "sip:example.com", "127.0.0.1:40000"),
        Fate::Answer(403, "Not A Domain Of This Registrar")
    );
    assert_eq!(
        fate("INVITE", "sip:4001@siplink.test", "127.0.0.1:40000"),
        Fate::ToNumber {
            number: "4001".into(),
            caller: Caller::Phone { authenticate: true }
        }
    );
    assert_eq!(
        fate("INVITE", "sip:1002@siplink.test", "127.0.0.1:40000"),
        Fate::ToUser {
            user: "1002".into(),
            caller: Caller::Phone { authenticate: true }
        }
    );
    // From the office PBX to an extension we do not have: its deliver_to.
    assert_eq!(
        fate("INVITE", "sip:7777@127.0.0.1", "127.0.0.1:5070"),
        Fate::ToUser {
            user: "1001".into(),
            caller: Caller::Pbx("office-pbx".into())
        }
    );
    // From the carrier (no deliver_to) to a stranger: 404.
    assert_eq!(
        fate("INVITE", "sip:7777@127.0.0.1", "127.0.0.1:5080"),
        Fate::Answer(404, "Not Found")
    );
}

/// The next output that is not an event.
fn lookup(engine: &mut Engine<PlanView>) -> Option<Output> {
    std::iter::from_fn(|| engine.poll_output()).find(|o| !matches!(o, Output::Event(_)))
}

#[test]
fn an_engine_runs_on_a_plan_view() {
    let plan = Arc::new(Plan::demo());
    let mut engine = Engine::new(
        PlanView::new(plan.clone(), (), [3; 32]),
        plan.engine_config(),
    );
    assert_eq!(engine.config().max_calls, 10_000);
    let now = Instant::now();
    engine.handle_request(
        ServerTx(1),
        request("INVITE", "sip:1003@siplink.test"),
        origin("127.0.0.1:5080"),
        now,
    );
    match lookup(&mut engine) {
        Some(Output::Lookup {
            query: Query::Bindings { user },
            ..
        }) => assert_eq!(user, "1003"),
        other => panic!("{other:?}"),
    }
    engine.handle_request(
        ServerTx(2),
        request("INVITE", "sip:4001@siplink.test"),
        origin("127.0.0.1:40000"),
        now,
    );
    match lookup(&mut engine) {
        Some(Output::Lookup {
            query: Query::Authenticate { .. },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A reload swaps the plan under the same key.
    let mut c = Config::demo();
    c.proxy.authenticate_calls = false;
    engine
        .view_mut()
        .set_plan(Arc::new(Plan::from_config(&c).unwrap()));
    assert!(!engine.view_mut().authenticate_calls());
}

// ---------------------------------------------------------------------------
// Properties of address parsing
// ---------------------------------------------------------------------------

mod properties {
    use std::net::IpAddr;

    use proptest::prelude::*;
    use siplink_message::Transport;
    use siplink_proxy::plan::{Host, Target};

    fn usable(h: &Host) -> bool {
        match h.ip() {
            Some(IpAddr::V4(ip)) => {
                !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
            }
            Some(IpAddr::V6(ip)) => !(ip.is_unspecified() || ip.is_multicast()),
            None => true,
        }
    }

    fn host() -> impl Strategy<Value = Host> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| Host::Ip(IpAddr::from(b))),
            any::<[u16; 8]>().prop_map(|s| Host::Ip(IpAddr::from(s))),
            "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,8}){0,3}".prop_map(Host::Name),
        ]
        .prop_filter("a usable host", usable)
    }

    fn protocol() -> impl Strategy<Value = Transport> {
        prop_oneof![
            Just(Transport::Udp),
            Just(Transport::Tcp),
            Just(Transport::Tls)
        ]
    }

    proptest! {
        /// Every target written as `host:port` or as a `sip:` URI with its
        /// transport parses back to itself.
        #[test]
        fn written_targets_parse_back(host in host(), port in 1u16.., protocol in protocol()) {
            let want = Target { host: host.clone(), port: port.try_into().unwrap(), protocol };
            let hp = format!("{}:{port}", host.uri_host());
            prop_assert_eq!(Target::parse(&hp, protocol), Ok(want.clone()));
            let token = protocol.via_token().to_ascii_lowercase();
            let uri = format!("sip:{hp};transport={token}");
            prop_assert_eq!(Target::parse(&uri, Transport::Udp), Ok(want.clone()));
            let upper = format!("SIP:{};transport={}", hp.to_ascii_uppercase(), token.to_ascii_uppercase());
            prop_assert_eq!(Target::parse(&upper, Transport::Udp), Ok(want));
        }

        /// The plan accepts no address the configuration's own parser refuses,
        /// and reads the same host, port and transport from it (`sips:` aside:
        /// the plan reads `sips:...;transport=tcp` as TLS).
        #[test]
        fn the_plan_parser_is_stricter_but_agrees(
            text in "(sip:|sips:|SIP:)?(\\[?[0-9a-fA-F:.]{0,20}\\]?|[a-zA-Z0-9._-]{0,20})(:[0-9]{0,6})?(;transport=[a-z]{0,4})?"
        ) {
            if let Ok(t) = Target::parse(&text, Transport::Udp) {
                prop_assert!(t.port() != 0);
                if !text.to_ascii_lowercase().starts_with("sips:") {
                    let c = siplink_proxy::config::parse_address(&text, Transport::Udp);
                    prop_assert!(c.is_ok(), "{:?}: plan {:?}, config {:?}", text, t, c);
                    let c = c.unwrap();
                    prop_assert!(c.host.eq_ignore_ascii_case(&t.host.to_string()), "{:?}: {:?} vs {:?}", text, c, t);
                    prop_assert_eq!(c.port, t.port());
                    prop_assert_eq!(c.transport, t.protocol);
                }
            }
        }

        /// No input makes the parser panic.
        #[test]
        fn any_text_is_parsed_or_refused(text in ".{0,64}") {
            let _ = Target::parse(&text, Transport::Udp);
            let _ = Host::parse(&text);
        }
    }
}

#[test]
fn the_view_gives_each_connections_media_settings() {
    use siplink_proxy::media::{ConnectionMedia, MediaMode, RtpEngineConfig};
    let mut config = siplink_proxy::Config::demo();
    config
        .media
        .rtpengine
        .push(RtpEngineConfig::new("127.0.0.1:2223"));
    let pbx = config
        .connections
        .iter_mut()
        .find(|c| c.name == "office-pbx")
        .expect("the demo's office-pbx");
    pbx.media = MediaMode::Bridge;
    pbx.transcode = true;
    let v = PlanView::new(Arc::new(Plan::from_config(&config).unwrap()), (), [7; 32]);
    assert_eq!(
        v.connection_media("office-pbx"),
        ConnectionMedia {
            mode: MediaMode::Bridge,
            transcode: true
        }
    );
    assert_eq!(v.connection_media("carrier").mode, MediaMode::Off);
    assert_eq!(
        v.connection_media("no-such-connection").mode,
        MediaMode::Off
    );
    // The demo as shipped: no rtpengine, media off everywhere.
    assert_eq!(view().connection_media("office-pbx").mode, MediaMode::Off);
}
