//! Authentication (RFC 3261 §10.3 steps 3 and 4) and Outbound (RFC 5626 §6).

mod support;

use std::time::Duration;

use siplink_auth::{
    ClientCredentials, DigestClient, DigestServer, FailureLimiter, LimiterConfig, RequestInfo,
    ServerConfig, StoredSecret,
};
use siplink_message::{HeaderName, Message};
use siplink_registrar::{
    Aor, Authenticator, BindingTable, EventKind, FlowId, Reach, Registrar, RegistrarConfig,
    RemoveReason,
};
use support::{Clock, Reg, contacts, open_config, values};

fn authenticator(limiter: LimiterConfig) -> Authenticator {
    let server = DigestServer::with_secret(ServerConfig::new("example.com"), b"test secret 0123");
    let users = |user: &str, _realm: &str, _alg| match user {
        "alice" => Some(StoredSecret::Password("alice-pw".into())),
        "pbx" => Some(StoredSecret::Password("pbx-pw".into())),
        _ => None,
    };
    Authenticator::new(server, users).with_limiter(FailureLimiter::new(limiter))
}

fn auth_registrar(a: Authenticator) -> Registrar {
    Registrar::new(RegistrarConfig::new(["example.com"]), Some(a)).unwrap()
}

/// Sends `reg`, answers the 401 as `user`/`password`, returns the final answer.
fn register_as(
    r: &Registrar,
    t: &mut BindingTable,
    c: &Clock,
    at: u64,
    reg: &Reg,
    user: &str,
    password: &str,
) -> Message {
    let first = r.handle_register(&reg.build(), &c.at(at), t).unwrap();
    assert_eq!(first.status(), 401);
    let www = first.response.www_authenticate().unwrap().to_vec();
    let mut client = DigestClient::new("example.com", ClientCredentials::password(user, password));
    let info = RequestInfo::new("REGISTER", &reg.ruri);
    let answers = client.answer("example.com", &www, &[], &info).unwrap();
    let mut retry = reg.clone().cseq(reg.cseq + 1);
    for a in answers {
        retry = retry.header(HeaderName::Authorization, &a.credentials.to_string());
    }
    r.handle_register(&retry.build(), &c.at(at), t)
        .unwrap()
        .response
}

#[test]
fn no_credentials_is_401_with_challenges() {
    let r = auth_registrar(authenticator(LimiterConfig::default()));
    let mut t = BindingTable::new();
    let d = r
        .handle_register(&Reg::new("alice").build(), &Clock::new().at(0), &mut t)
        .unwrap();
    assert_eq!(d.status(), 401);
    let ch = d.response.www_authenticate().unwrap();
    assert_eq!(ch.len(), 2);
    assert_eq!(ch[0].realm(), Some("example.com"));
    assert!(d.changes.is_empty());
    assert_eq!(t.usage().bindings, 0);
}

#[test]
fn right_credentials_register() {
    let r = auth_registrar(authenticator(LimiterConfig::default()));
    let mut t = BindingTable::new();
    let c = Clock::new();
    let ok = register_as(&r, &mut t, &c, 0, &Reg::new("alice"), "alice", "alice-pw");
    assert_eq!(ok.status(), Some(200));
    assert_eq!(contacts(&ok), ["<sip:alice@192.0.2.10:5060>;expires=3600"]);
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn wrong_password_or_unknown_user_is_403() {
    let r = auth_registrar(authenticator(LimiterConfig::default()));
    let mut t = BindingTable::new();
    let c = Clock::new();
    let no = register_as(&r, &mut t, &c, 0, &Reg::new("alice"), "alice", "guess");
    assert_eq!(no.status(), Some(403));
    let no = register_as(&r, &mut t, &c, 0, &Reg::new("mallory"), "mallory", "x");
    assert_eq!(no.status(), Some(403));
    assert_eq!(t.usage().bindings, 0);
}

#[test]
fn a_user_may_only_register_its_own_aors() {
    let pbx = Aor::parse("sip:pbx-trunk@example.com").unwrap();
    let r = auth_registrar(authenticator(LimiterConfig::default()).with_owner("pbx", pbx));
    let mut t = BindingTable::new();
    let c = Clock::new();
    // alice (default rule: owns sip:alice@<our domain>) may not register bob.
    let bob = Reg::new("bob");
    assert_eq!(
        register_as(&r, &mut t, &c, 0, &bob, "alice", "alice-pw").status(),
        Some(403)
    );
    // pbx owns exactly the AORs listed for it.
    let trunk = Reg::new("pbx-trunk");
    assert_eq!(
        register_as(&r, &mut t, &c, 0, &trunk, "pbx", "pbx-pw").status(),
        Some(200)
    );
    let own_name = Reg::new("pbx").call_id("p2");
    assert_eq!(
        register_as(&r, &mut t, &c, 0, &own_name, "pbx", "pbx-pw").status(),
        Some(403)
    );
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn failures_block_that_source_for_that_user_only() {
    let limiter = LimiterConfig {
        max_failures: 2,
        window: Duration::from_secs(60),
        cooldown: Duration::from_secs(60),
        ..LimiterConfig::default()
    };
    let r = auth_registrar(authenticator(limiter));
    let mut t = BindingTable::new();
    let c = Clock::new();
    for _ in 0..2 {
        let no = register_as(&r, &mut t, &c, 0, &Reg::new("alice"), "alice", "guess");
        assert_eq!(no.status(), Some(403));
    }
    // Now that source is refused for alice, with the right password too...
    let blocked = register_as(&r, &mut t, &c, 1, &Reg::new("alice"), "alice", "alice-pw");
    assert_eq!(blocked.status(), Some(403));
    // ...but alice from anywhere else registers at once.
    let elsewhere = c.from("198.51.100.9:5060", None);
    let ok = register_as(
        &r,
        &mut t,
        &elsewhere,
        1,
        &Reg::new("alice"),
        "alice",
        "alice-pw",
    );
    assert_eq!(ok.status(), Some(200));
    // And from the first source after the cool-down.
    let later = Reg::new("alice").call_id("later");
    let ok = register_as(&r, &mut t, &c, 61, &later, "alice", "alice-pw");
    assert_eq!(ok.status(), Some(200));
}

#[test]
fn spoofed_failures_do_not_count() {
    // A guesser takes nonces issued to itself and sends its wrong answers
    // with the PBX's address: none of them is tried, none counts against the
    // PBX.
    let r = auth_registrar(authenticator(LimiterConfig::default()));
    let mut t = BindingTable::new();
    let attacker = Clock::new().from("203.0.113.66:5060", None);
    let pbx = Clock::new().from("192.0.2.10:5060", None);
    for k in 0..30 {
        let reg = Reg::new("pbx").cseq(10 + 2 * k);
        let first = r
            .handle_register(&reg.build(), &attacker.at(0), &mut t)
            .unwrap();
        let www = first.response.www_authenticate().unwrap().to_vec();
        let mut client = DigestClient::new("example.com", ClientCredentials::password("pbx", "x"));
        let info = RequestInfo::new("REGISTER", &reg.ruri);
        let answers = client.answer("example.com", &www, &[], &info).unwrap();
        let retry = reg.clone().cseq(reg.cseq + 1).header(
            HeaderName::Authorization,
            &answers[0].credentials.to_string(),
        );
        // The nonce was not issued to this address: a fresh stale challenge,
        // the password untried (the same answer whether it is right or wrong).
        let no = r
            .handle_register(&retry.build(), &pbx.at(0), &mut t)
            .unwrap();
        assert_eq!(no.status(), 401);
        let www = no.response.www_authenticate().unwrap();
        assert!(www.iter().all(|c| c.stale()));
    }
    let ok = register_as(&r, &mut t, &pbx, 1, &Reg::new("pbx"), "pbx", "pbx-pw");
    assert_eq!(ok.status(), Some(200));
}

#[test]
fn users_and_non_users_look_alike() {
    let r = auth_registrar(authenticator(LimiterConfig::default()));
    let mut t = BindingTable::new();
    let c = Clock::new();
    let shape = |m: &Message| {
        let mut names: Vec<String> = m
            .headers()
            .map(|h| String::from_utf8_lossy(h.raw_name()).to_ascii_lowercase())
            .collect();
        names.sort();
        (m.status(), names, m.reason().map(<[u8]>::to_vec))
    };
    let mut seen = Vec::new();
    for (k, user) in ["alice", "mallory"].iter().enumerate() {
        // No credentials: 401 with the same challenges.
        let reg = Reg::new(user).cseq(100 * k as u32 + 1);
        let first = r.handle_register(&reg.build(), &c.at(0), &mut t).unwrap();
        let www = first.response.www_authenticate().unwrap().to_vec();
        assert_eq!(www.len(), 2);
        for ch in &www {
            assert_eq!(ch.realm(), Some("example.com"));
            assert_eq!(ch.nonce().map(str::len), Some(80));
        }
        // Wrong credentials: 403.
        let wrong = register_as(
            &r,
            &mut t,
            &c,
            0,
            &reg.clone().cseq(100 * k as u32 + 50),
            user,
            "guess",
        );
        seen.push((shape(&first.response), shape(&wrong)));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].0.0, Some(401));
    assert_eq!(seen[0].1.0, Some(403));
}

fn outbound_reg(user: &str, instance: &str, reg_id: u32, contact_ip: &str) -> Reg {
    Reg::new(user)
        .contacts(&[&format!(
            "<sip:{user}@{contact_ip};transport=tcp;ob>;+sip.instance=\"<urn:uuid:{instance}>\";reg-id={reg_id}"
        )])
        .header(HeaderName::Supported, "path, outbound")
}

#[test]
fn outbound_bindings_are_keyed_by_instance_and_reg_id() {
    let r = Registrar::new(open_config(), None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new().from("203.0.113.7:40000", Some(11));
    let d = r
        .handle_register(
            &outbound_reg("alice", "u-1", 1, "10.0.0.5").build(),
            &c.at(0),
            &mut t,
        )
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(values(&d.response, HeaderName::Require), ["outbound"]);
    assert!(values(&d.response, HeaderName::Supported)[0].contains("outbound"));
    let a = Aor::parse("sip:alice@example.com").unwrap();
    let b = &t.bindings(&a)[0];
    assert!(b.outbound);
    assert_eq!(b.instance.as_deref(), Some("urn:uuid:u-1"));
    assert_eq!((b.reg_id, b.flow), (Some(1), Some(FlowId::from_raw(11))));
    // Same instance and reg-id from a new connection, with a new Call-ID and
    // another contact address: the binding is replaced, not added.
    let c2 = Clock::new().from("203.0.113.7:40001", Some(12));
    let again = outbound_reg("alice", "u-1", 1, "10.0.0.6").call_id("new-call");
    let d = r
        .handle_register(&again.build(), &c2.at(10), &mut t)
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(d.events[0].kind, EventKind::Refreshed);
    assert_eq!(t.usage().bindings, 1);
    assert_eq!(t.bindings(&a)[0].flow, Some(FlowId::from_raw(12)));
    // Another reg-id of the same instance is a second flow.
    let second = outbound_reg("alice", "u-1", 2, "10.0.0.6")
        .call_id("new-call")
        .cseq(2);
    r.handle_register(&second.build(), &c2.at(11), &mut t)
        .unwrap();
    assert_eq!(t.usage().bindings, 2);
    // Without Supported: outbound, reg-id is ignored (RFC 3261 rules).
    let plain =
        Reg::new("bob").contacts(&["<sip:bob@10.0.0.9>;+sip.instance=\"<urn:uuid:u-9>\";reg-id=1"]);
    let d = r.handle_register(&plain.build(), &c.at(0), &mut t).unwrap();
    assert!(values(&d.response, HeaderName::Require).is_empty());
    assert!(!t.bindings(&Aor::parse("sip:bob@example.com").unwrap())[0].outbound);
}

#[test]
fn a_closed_flow_removes_its_outbound_bindings_and_plain_tcp_ones() {
    let r = Registrar::new(open_config(), None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new().from("203.0.113.7:40000", Some(21));
    r.handle_register(
        &outbound_reg("alice", "u-1", 1, "10.0.0.5").build(),
        &c.at(0),
        &mut t,
    )
    .unwrap();
    r.handle_register(&Reg::new("bob").build(), &c.at(0), &mut t)
        .unwrap();
    let alice = Aor::parse("sip:alice@example.com").unwrap();
    let bob = Aor::parse("sip:bob@example.com").unwrap();
    assert_eq!(
        t.lookup(&alice, c.at(1).now)[0].reach,
        Reach::Flow(FlowId::from_raw(21))
    );
    assert_eq!(
        t.lookup(&bob, c.at(1).now)[0].reach,
        Reach::Flow(FlowId::from_raw(21))
    );
    assert!(
        r.handle_flow_closed(FlowId::from_raw(99), c.at(1).now, &mut t)
            .is_empty()
    );
    let ev = r.handle_flow_closed(FlowId::from_raw(21), c.at(1).now, &mut t);
    // Both go: alice's by RFC 5626, bob's plain TCP one because nothing but
    // the dead connection reached its Contact (Kamailio's handle_lost_tcp).
    assert_eq!(ev.len(), 2);
    assert!(
        ev.iter()
            .all(|e| e.kind == EventKind::Removed(RemoveReason::FlowClosed))
    );
    let mut gone: Vec<String> = ev.iter().map(|e| e.binding.aor.to_string()).collect();
    gone.sort();
    assert_eq!(gone, ["sip:alice@example.com", "sip:bob@example.com"]);
    assert!(t.lookup(&alice, c.at(1).now).is_empty());
    assert!(t.lookup(&bob, c.at(1).now).is_empty());
    assert_eq!(t.usage().bindings, 0);
    assert_eq!(t.poll_timeout(), None);
    assert!(
        r.handle_flow_closed(FlowId::from_raw(21), c.at(1).now, &mut t)
            .is_empty()
    );
}

#[test]
fn contact_fallback_keeps_plain_tcp_bindings_with_their_contact() {
    let mut cfg = open_config();
    cfg.contact_fallback = true;
    let r = Registrar::new(cfg, None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new().from("203.0.113.7:40000", Some(21));
    r.handle_register(
        &outbound_reg("alice", "u-1", 1, "10.0.0.5").build(),
        &c.at(0),
        &mut t,
    )
    .unwrap();
    r.handle_register(&Reg::new("bob").build(), &c.at(0), &mut t)
        .unwrap();
    let alice = Aor::parse("sip:alice@example.com").unwrap();
    let bob = Aor::parse("sip:bob@example.com").unwrap();
    let mut ev = r.handle_flow_closed(FlowId::from_raw(21), c.at(1).now, &mut t);
    ev.sort_by_key(|e| e.binding.aor.to_string());
    let kinds: Vec<EventKind> = ev.iter().map(|e| e.kind).collect();
    // The outbound binding goes regardless; bob's is kept, marked as having
    // lost its flow.
    assert_eq!(
        kinds,
        [
            EventKind::Removed(RemoveReason::FlowClosed),
            EventKind::FlowLost
        ]
    );
    assert_eq!(ev[1].binding.flow, None);
    assert!(t.lookup(&alice, c.at(1).now).is_empty());
    match &t.lookup(&bob, c.at(1).now)[0].reach {
        Reach::Contact { uri, path } => {
            assert_eq!(uri.to_string(), "sip:bob@192.0.2.10:5060");
            assert!(path.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        r.handle_flow_closed(FlowId::from_raw(21), c.at(1).now, &mut t)
            .is_empty()
    );
}

#[test]
fn first_hop_without_ob_is_439() {
    let r = Registrar::new(open_config(), None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let req = outbound_reg("alice", "u-1", 1, "10.0.0.5").header(
        HeaderName::Path,
        "<sip:core.example.com;lr>, <sip:edge.example.com;lr>",
    );
    assert_eq!(
        r.handle_register(&req.build(), &c.at(0), &mut t)
            .unwrap()
            .status(),
        439
    );
    let req = outbound_reg("alice", "u-1", 1, "10.0.0.5").header(
        HeaderName::Path,
        "<sip:core.example.com;lr>, <sip:edge.example.com;lr;ob>",
    );
    let d = r.handle_register(&req.build(), &c.at(0), &mut t).unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(values(&d.response, HeaderName::Path).len(), 2);
}

#[test]
fn two_contacts_with_reg_id_is_400() {
    let r = Registrar::new(open_config(), None).unwrap();
    let mut t = BindingTable::new();
    let req = Reg::new("alice")
        .contacts(&[
            "<sip:a@10.0.0.5;ob>;+sip.instance=\"<urn:uuid:u-1>\";reg-id=1",
            "<sip:a@10.0.0.5;ob>;+sip.instance=\"<urn:uuid:u-1>\";reg-id=2",
        ])
        .header(HeaderName::Supported, "outbound");
    assert_eq!(
        r.handle_register(&req.build(), &Clock::new().at(0), &mut t)
            .unwrap()
            .status(),
        400
    );
}

#[test]
fn require_outbound_is_accepted() {
    let r = Registrar::new(open_config(), None).unwrap();
    let mut t = BindingTable::new();
    let req = outbound_reg("alice", "u-1", 1, "10.0.0.5").header(HeaderName::Require, "outbound");
    let d = r
        .handle_register(&req.build(), &Clock::new().at(0), &mut t)
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(values(&d.response, HeaderName::Require), ["outbound"]);
}

#[test]
fn an_expired_nonce_is_401_stale() {
    let r = auth_registrar(authenticator(LimiterConfig::default()));
    let mut t = BindingTable::new();
    let c = Clock::new();
    let reg = Reg::new("alice");
    let first = r.handle_register(&reg.build(), &c.at(0), &mut t).unwrap();
    let www = first.response.www_authenticate().unwrap().to_vec();
    let mut client = DigestClient::new(
        "example.com",
        ClientCredentials::password("alice", "alice-pw"),
    );
    let info = RequestInfo::new("REGISTER", &reg.ruri);
    let answers = client.answer("example.com", &www, &[], &info).unwrap();
    let mut retry = reg.clone().cseq(2);
    for a in answers {
        retry = retry.header(HeaderName::Authorization, &a.credentials.to_string());
    }
    // The nonce lifetime (300 s) is over.
    let d = r
        .handle_register(&retry.build(), &c.at(400), &mut t)
        .unwrap();
    assert_eq!(d.status(), 401);
    assert!(d.response.www_authenticate().unwrap()[0].stale());
    assert_eq!(t.usage().bindings, 0);
}
