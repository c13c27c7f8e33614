//! RFC 3261 §10.3 steps 1 to 8, limits and expiry, without authentication.

mod support;

use siplink_message::{HeaderName, MessageBuilder, Method};
use siplink_registrar::{
    Aor, BindingTable, Change, Error, EventKind, FloodConfig, InMemoryStore, LocationStore, Reach,
    Registrar, RegistrarConfig, RemoveReason, TooManyContacts,
};
use support::{Clock, Reg, block_on, contacts, expire, open_config, values};

fn registrar() -> Registrar {
    Registrar::new(open_config(), None).unwrap()
}

fn aor(s: &str) -> Aor {
    Aor::parse(s).unwrap()
}

#[test]
fn register_answers_200_with_the_binding() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let d = r
        .handle_register(&Reg::new("alice").build(), &c.at(0), &mut t)
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(
        contacts(&d.response),
        ["<sip:alice@192.0.2.10:5060>;expires=3600"]
    );
    assert_eq!(d.response.call_id().unwrap(), "call-alice");
    assert_eq!(
        values(&d.response, HeaderName::Supported),
        ["path, outbound"]
    );
    assert!(values(&d.response, HeaderName::Require).is_empty());
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].kind, EventKind::Added);
    let b = &t.bindings(&aor("sip:alice@example.com"))[0];
    assert_eq!(b.call_id, "call-alice");
    assert_eq!(b.cseq, 1);
    assert_eq!(b.source, c.source);
    assert_eq!(b.remaining(c.at(0).now), 3600);
}

#[test]
fn foreign_request_uri_domain_is_404() {
    let r = registrar();
    let mut t = BindingTable::new();
    let req = Reg::new("alice").ruri("sip:other.net").build();
    assert!(!r.is_ours(&req));
    let d = r
        .handle_register(&req, &Clock::new().at(0), &mut t)
        .unwrap();
    assert_eq!(d.status(), 404);
    assert_eq!(t.usage().bindings, 0);
    assert!(r.is_ours(&Reg::new("alice").ruri("sip:EXAMPLE.com").build()));
}

#[test]
fn aor_outside_our_domains_is_404() {
    let r = registrar();
    let mut t = BindingTable::new();
    let req = Reg::new("alice").to("<sip:alice@other.net>").build();
    assert_eq!(
        r.handle_register(&req, &Clock::new().at(0), &mut t)
            .unwrap()
            .status(),
        404
    );
    let req = Reg::new("alice").to("<tel:+15551234>").build();
    assert_eq!(
        r.handle_register(&req, &Clock::new().at(0), &mut t)
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn unsupported_require_is_420_with_unsupported() {
    let r = registrar();
    let mut t = BindingTable::new();
    let req = Reg::new("alice")
        .header(HeaderName::Require, "path, 100rel, foo")
        .build();
    let d = r
        .handle_register(&req, &Clock::new().at(0), &mut t)
        .unwrap();
    assert_eq!(d.status(), 420);
    assert_eq!(
        values(&d.response, HeaderName::Unsupported),
        ["100rel, foo"]
    );
}

#[test]
fn path_without_path_support_is_420() {
    let mut cfg = open_config();
    cfg.supported = vec!["outbound".into()];
    let r = Registrar::new(cfg, None).unwrap();
    let mut t = BindingTable::new();
    let req = Reg::new("alice")
        .header(HeaderName::Path, "<sip:edge.example.com;lr>")
        .build();
    let d = r
        .handle_register(&req, &Clock::new().at(0), &mut t)
        .unwrap();
    assert_eq!(d.status(), 420);
    assert_eq!(values(&d.response, HeaderName::Unsupported), ["path"]);
}

#[test]
fn malformed_request_is_400() {
    let r = registrar();
    let mut t = BindingTable::new();
    // Two CSeq headers.
    let req = Reg::new("alice")
        .header(HeaderName::CSeq, "2 REGISTER")
        .build();
    assert_eq!(
        r.handle_register(&req, &Clock::new().at(0), &mut t)
            .unwrap()
            .status(),
        400
    );
    // `*` mixed with a contact.
    let req = Reg::new("alice")
        .contacts(&["*", "<sip:alice@192.0.2.10>"])
        .expires(0)
        .build();
    assert_eq!(
        r.handle_register(&req, &Clock::new().at(0), &mut t)
            .unwrap()
            .status(),
        400
    );
}

#[test]
fn star_needs_expires_zero() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(&Reg::new("alice").build(), &c.at(0), &mut t)
        .unwrap();
    for req in [
        Reg::new("alice").contacts(&["*"]).cseq(2).build(),
        Reg::new("alice")
            .contacts(&["*"])
            .cseq(2)
            .expires(30)
            .build(),
    ] {
        assert_eq!(
            r.handle_register(&req, &c.at(1), &mut t).unwrap().status(),
            400
        );
    }
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn star_removes_every_binding() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let req = Reg::new("alice")
        .contacts(&["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"])
        .build();
    r.handle_register(&req, &c.at(0), &mut t).unwrap();
    let other = Reg::new("alice")
        .call_id("other")
        .contacts(&["<sip:alice@192.0.2.12>"]);
    r.handle_register(&other.build(), &c.at(0), &mut t).unwrap();
    assert_eq!(t.usage().bindings, 3);
    let star = Reg::new("alice")
        .contacts(&["*"])
        .expires(0)
        .cseq(2)
        .build();
    let d = r.handle_register(&star, &c.at(5), &mut t).unwrap();
    assert_eq!(d.status(), 200);
    assert!(contacts(&d.response).is_empty());
    assert_eq!(d.events.len(), 3);
    assert!(
        d.events
            .iter()
            .all(|e| e.kind == EventKind::Removed(RemoveReason::Unregistered))
    );
    assert_eq!(t.usage().bindings, 0);
    assert_eq!(t.usage().aors, 0);
}

#[test]
fn star_with_an_old_cseq_of_the_same_call_id_is_500() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(&Reg::new("alice").cseq(5).build(), &c.at(0), &mut t)
        .unwrap();
    let star = Reg::new("alice")
        .contacts(&["*"])
        .expires(0)
        .cseq(5)
        .build();
    assert_eq!(
        r.handle_register(&star, &c.at(1), &mut t).unwrap().status(),
        500
    );
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn expiry_comes_from_param_then_header_then_default() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let req = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.1>;expires=120", "<sip:a@192.0.2.2>"])
        .expires(300)
        .build();
    let d = r.handle_register(&req, &c.at(0), &mut t).unwrap();
    assert_eq!(d.status(), 200);
    let mut got = contacts(&d.response);
    got.sort();
    assert_eq!(
        got,
        [
            "<sip:a@192.0.2.1>;expires=120",
            "<sip:a@192.0.2.2>;expires=300"
        ]
    );
    let d = r
        .handle_register(&Reg::new("bob").build(), &c.at(0), &mut t)
        .unwrap();
    assert_eq!(
        contacts(&d.response),
        ["<sip:bob@192.0.2.10:5060>;expires=3600"]
    );
}

#[test]
fn too_brief_is_423_with_min_expires() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    for req in [
        Reg::new("alice").expires(30).build(),
        Reg::new("alice")
            .contacts(&["<sip:a@192.0.2.1>;expires=59", "<sip:a@192.0.2.2>"])
            .build(),
    ] {
        let d = r.handle_register(&req, &c.at(0), &mut t).unwrap();
        assert_eq!(d.status(), 423);
        assert_eq!(d.response.min_expires().unwrap(), Some(60));
        assert!(d.changes.is_empty());
    }
    assert_eq!(t.usage().bindings, 0);
    // Exactly the minimum is fine.
    let d = r.handle_register(&Reg::new("alice").expires(60).build(), &c.at(0), &mut t);
    assert_eq!(d.unwrap().status(), 200);
}

#[test]
fn too_long_is_clamped_to_max_expires() {
    let r = registrar();
    let mut t = BindingTable::new();
    let d = r
        .handle_register(
            &Reg::new("alice").expires(86_400).build(),
            &Clock::new().at(0),
            &mut t,
        )
        .unwrap();
    assert_eq!(
        contacts(&d.response),
        ["<sip:alice@192.0.2.10:5060>;expires=3600"]
    );
}

#[test]
fn expires_zero_removes_one_binding_and_unknown_is_a_no_op() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let req = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.1>", "<sip:a@192.0.2.2>"])
        .build();
    r.handle_register(&req, &c.at(0), &mut t).unwrap();
    let req = Reg::new("alice")
        .contacts(&[
            "<sip:a@192.0.2.1>;expires=0",
            "<sip:a@192.0.2.99>;expires=0",
        ])
        .cseq(2)
        .build();
    let d = r.handle_register(&req, &c.at(10), &mut t).unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(contacts(&d.response), ["<sip:a@192.0.2.2>;expires=3590"]);
    assert_eq!(d.events.len(), 1);
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn contact_matching_uses_uri_comparison() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(
        &Reg::new("alice")
            .contacts(&["<sip:a@HOST.example.com;transport=tcp>"])
            .build(),
        &c.at(0),
        &mut t,
    )
    .unwrap();
    let d = r
        .handle_register(
            &Reg::new("alice")
                .contacts(&["<sip:a@host.example.com;Transport=TCP>"])
                .cseq(2)
                .build(),
            &c.at(1),
            &mut t,
        )
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(d.events[0].kind, EventKind::Refreshed);
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn aor_canonical_form() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(
        &Reg::new("alice")
            .to("\"Alice\" <sip:%61lice@EXAMPLE.com;user=phone>")
            .build(),
        &c.at(0),
        &mut t,
    )
    .unwrap();
    assert_eq!(t.bindings(&aor("sip:alice@example.com")).len(), 1);
    assert_eq!(
        aor("sips:Bob@Example.com:5061").as_str(),
        "sips:Bob@example.com:5061"
    );
    assert_ne!(aor("sip:Bob@example.com"), aor("sip:bob@example.com"));
    assert!(Aor::parse("tel:+1555").is_err());
    assert_eq!(aor("sip:a@Example.com.").as_str(), "sip:a@example.com");
    assert_eq!(aor("sip:example.com").user(), None);
}

#[test]
fn out_of_order_cseq_is_500_and_changes_nothing() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(
        &Reg::new("alice").cseq(10).expires(600).build(),
        &c.at(0),
        &mut t,
    )
    .unwrap();
    for seq in [9, 10] {
        // Same Call-ID, older or equal CSeq: even a removal is refused.
        let req = Reg::new("alice").cseq(seq).expires(0).build();
        let d = r.handle_register(&req, &c.at(1), &mut t).unwrap();
        assert_eq!(d.status(), 500);
        assert!(d.changes.is_empty());
    }
    let b = &t.bindings(&aor("sip:alice@example.com"))[0];
    assert_eq!((b.cseq, b.remaining(c.at(1).now)), (10, 599));
    // A higher CSeq updates.
    let d = r
        .handle_register(
            &Reg::new("alice").cseq(11).expires(900).build(),
            &c.at(2),
            &mut t,
        )
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(t.bindings(&aor("sip:alice@example.com"))[0].cseq, 11);
    // Another Call-ID (the UA rebooted) may use any CSeq.
    let req = Reg::new("alice").call_id("rebooted").cseq(1).build();
    let d = r.handle_register(&req, &c.at(3), &mut t).unwrap();
    assert_eq!(d.status(), 200);
    let b = &t.bindings(&aor("sip:alice@example.com"))[0];
    assert_eq!((b.call_id.as_str(), b.cseq), ("rebooted", 1));
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn a_failing_contact_aborts_the_whole_request() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(&Reg::new("alice").cseq(5).build(), &c.at(0), &mut t)
        .unwrap();
    let req = Reg::new("alice")
        .contacts(&["<sip:new@192.0.2.50>", "<sip:alice@192.0.2.10:5060>"])
        .cseq(4)
        .build();
    assert_eq!(
        r.handle_register(&req, &c.at(1), &mut t).unwrap().status(),
        500
    );
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn query_without_contact_lists_bindings() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(&Reg::new("alice").expires(600).build(), &c.at(0), &mut t)
        .unwrap();
    let q = Reg::new("alice").contacts(&[]).cseq(2).build();
    let d = r.handle_register(&q, &c.at(100), &mut t).unwrap();
    assert_eq!(d.status(), 200);
    assert!(d.changes.is_empty());
    assert_eq!(
        contacts(&d.response),
        ["<sip:alice@192.0.2.10:5060>;expires=500"]
    );
}

#[test]
fn ok_lists_all_bindings_with_remaining_time_and_q() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let a = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.1>;q=0.5"])
        .expires(600);
    r.handle_register(&a.build(), &c.at(0), &mut t).unwrap();
    let b = Reg::new("alice")
        .call_id("second-phone")
        .contacts(&["<sip:a@192.0.2.2>;q=0.9"])
        .expires(1200);
    let d = r.handle_register(&b.build(), &c.at(100), &mut t).unwrap();
    assert_eq!(
        contacts(&d.response),
        [
            "<sip:a@192.0.2.2>;q=0.9;expires=1200",
            "<sip:a@192.0.2.1>;q=0.5;expires=500"
        ]
    );
}

#[test]
fn lookup_orders_by_q_then_freshness() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let regs = [
        ("<sip:a@192.0.2.1>;q=0.1", "c1", 0),
        ("<sip:a@192.0.2.2>", "c2", 1),
        ("<sip:a@192.0.2.3>;q=0.7", "c3", 2),
        ("<sip:a@192.0.2.4>;q=0.7", "c4", 3),
    ];
    for (contact, call, at) in regs {
        let req = Reg::new("alice").contacts(&[contact]).call_id(call).build();
        assert_eq!(
            r.handle_register(&req, &c.at(at), &mut t).unwrap().status(),
            200
        );
    }
    let order: Vec<String> = t
        .lookup(&aor("sip:alice@example.com"), c.at(4).now)
        .iter()
        .map(|x| x.binding.uri().to_string())
        .collect();
    // No q counts as 1.0; equal q: the most recent first.
    assert_eq!(
        order,
        [
            "sip:a@192.0.2.2",
            "sip:a@192.0.2.4",
            "sip:a@192.0.2.3",
            "sip:a@192.0.2.1"
        ]
    );
    // Refreshing the older q=0.7 one moves it ahead.
    let req = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.3>;q=0.7"])
        .call_id("c3")
        .cseq(2);
    r.handle_register(&req.build(), &c.at(5), &mut t).unwrap();
    let second = &t.lookup(&aor("sip:alice@example.com"), c.at(6).now)[1];
    assert_eq!(second.binding.uri().to_string(), "sip:a@192.0.2.3");
}

#[test]
fn bindings_expire_at_their_time_with_virtual_time() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(&Reg::new("alice").expires(60).build(), &c.at(0), &mut t)
        .unwrap();
    r.handle_register(&Reg::new("bob").expires(120).build(), &c.at(0), &mut t)
        .unwrap();
    assert_eq!(t.poll_timeout(), Some(c.at(60).now));
    assert!(expire(&mut t, c.at(59).now).is_empty());
    assert_eq!(
        t.lookup(&aor("sip:alice@example.com"), c.at(59).now).len(),
        1
    );
    // Due but not yet collected: lookup already hides it.
    assert!(
        t.lookup(&aor("sip:alice@example.com"), c.at(60).now)
            .is_empty()
    );
    let ev = expire(&mut t, c.at(60).now);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Removed(RemoveReason::Expired));
    assert_eq!(ev[0].binding.aor, aor("sip:alice@example.com"));
    // The wall-clock expiry is the same moment on the wall clock.
    assert_eq!(ev[0].binding.expires_at_wall, c.at(60).now_system);
    assert_eq!(t.poll_timeout(), Some(c.at(120).now));
    assert_eq!(t.usage().bindings, 1);
    // A refresh moves the expiry.
    let req = Reg::new("bob").expires(120).cseq(2).build();
    r.handle_register(&req, &c.at(100), &mut t).unwrap();
    assert!(expire(&mut t, c.at(200).now).is_empty());
    assert_eq!(expire(&mut t, c.at(220).now).len(), 1);
    assert_eq!(t.usage(), Default::default());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn an_expired_binding_not_yet_collected_is_replaced_cleanly() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(
        &Reg::new("alice").cseq(9).expires(60).build(),
        &c.at(0),
        &mut t,
    )
    .unwrap();
    // Same Call-ID and an old CSeq: the binding is gone, so no 500.
    let d = r
        .handle_register(
            &Reg::new("alice").cseq(1).expires(60).build(),
            &c.at(61),
            &mut t,
        )
        .unwrap();
    assert_eq!(d.status(), 200);
    let kinds: Vec<EventKind> = d.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Removed(RemoveReason::Expired), EventKind::Added]
    );
    assert_eq!(t.usage().bindings, 1);
}

#[test]
fn too_many_contacts_replaces_the_oldest() {
    let mut cfg = open_config();
    cfg.max_contacts_per_aor = 2;
    let r = Registrar::new(cfg, None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new();
    for (k, ip) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].iter().enumerate() {
        let req = Reg::new("alice")
            .contacts(&[&format!("<sip:a@{ip}>")])
            .call_id(ip)
            .build();
        let d = r.handle_register(&req, &c.at(k as u64), &mut t).unwrap();
        assert_eq!(d.status(), 200);
    }
    let left: Vec<String> = t
        .lookup(&aor("sip:alice@example.com"), c.at(3).now)
        .iter()
        .map(|x| x.binding.uri().to_string())
        .collect();
    assert_eq!(left, ["sip:a@192.0.2.3", "sip:a@192.0.2.2"]);
    // More new contacts in one request than the limit: 403.
    let req = Reg::new("bob")
        .contacts(&[
            "<sip:b@192.0.2.1>",
            "<sip:b@192.0.2.2>",
            "<sip:b@192.0.2.3>",
        ])
        .build();
    assert_eq!(
        r.handle_register(&req, &c.at(4), &mut t).unwrap().status(),
        403
    );
}

#[test]
fn too_many_contacts_can_reject() {
    let mut cfg = open_config();
    cfg.max_contacts_per_aor = 1;
    cfg.on_too_many = TooManyContacts::Reject;
    let r = Registrar::new(cfg, None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new();
    r.handle_register(&Reg::new("alice").build(), &c.at(0), &mut t)
        .unwrap();
    let req = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.77>"])
        .call_id("x")
        .build();
    assert_eq!(
        r.handle_register(&req, &c.at(1), &mut t).unwrap().status(),
        403
    );
    // Refreshing the existing one stays fine.
    let req = Reg::new("alice").cseq(2).build();
    assert_eq!(
        r.handle_register(&req, &c.at(2), &mut t).unwrap().status(),
        200
    );
}

#[test]
fn global_limits_answer_503() {
    let mut cfg = open_config();
    cfg.max_aors = 1;
    cfg.max_bindings = 2;
    let r = Registrar::new(cfg, None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new();
    assert_eq!(
        r.handle_register(&Reg::new("alice").build(), &c.at(0), &mut t)
            .unwrap()
            .status(),
        200
    );
    let d = r
        .handle_register(&Reg::new("bob").build(), &c.at(0), &mut t)
        .unwrap();
    assert_eq!(d.status(), 503);
    assert!(d.response.retry_after().unwrap().is_some());
    let more = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.2>"])
        .call_id("2");
    assert_eq!(
        r.handle_register(&more.build(), &c.at(1), &mut t)
            .unwrap()
            .status(),
        200
    );
    let more = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.3>"])
        .call_id("3");
    assert_eq!(
        r.handle_register(&more.build(), &c.at(2), &mut t)
            .unwrap()
            .status(),
        503
    );
    // Swapping one binding for another keeps the total: allowed.
    let swap = Reg::new("alice")
        .contacts(&["<sip:a@192.0.2.2>;expires=0", "<sip:a@192.0.2.3>"])
        .call_id("2")
        .cseq(2);
    assert_eq!(
        r.handle_register(&swap.build(), &c.at(3), &mut t)
            .unwrap()
            .status(),
        200
    );
    assert_eq!(t.usage().bindings, 2);
}

#[test]
fn a_register_flood_from_one_source_gets_503() {
    let mut cfg = open_config();
    cfg.flood = Some(FloodConfig {
        max_requests: 3,
        window: std::time::Duration::from_secs(10),
        capacity: 16,
    });
    let r = Registrar::new(cfg, None).unwrap();
    let mut t = BindingTable::new();
    let c = Clock::new();
    for k in 1..=3 {
        let req = Reg::new("alice").cseq(k).build();
        assert_eq!(
            r.handle_register(&req, &c.at(1), &mut t).unwrap().status(),
            200
        );
    }
    let d = r
        .handle_register(&Reg::new("alice").cseq(4).build(), &c.at(2), &mut t)
        .unwrap();
    assert_eq!(d.status(), 503);
    assert_eq!(d.response.retry_after().unwrap().unwrap().seconds, 9);
    // Another source is not affected.
    let other = c.from("198.51.100.1:5060", None);
    let d = r
        .handle_register(&Reg::new("bob").build(), &other.at(2), &mut t)
        .unwrap();
    assert_eq!(d.status(), 200);
    // The next window is open again.
    let d = r
        .handle_register(&Reg::new("alice").cseq(5).build(), &c.at(11), &mut t)
        .unwrap();
    assert_eq!(d.status(), 200);
}

#[test]
fn path_is_stored_and_echoed_when_supported() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new().from("203.0.113.5:5060", Some(7));
    let req = Reg::new("alice")
        .header(
            HeaderName::Path,
            "<sip:p2.example.com;lr>, <sip:p1.example.com;lr>",
        )
        .header(HeaderName::Supported, "path")
        .build();
    let d = r.handle_register(&req, &c.at(0), &mut t).unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(
        values(&d.response, HeaderName::Path),
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    let b = &t.bindings(&aor("sip:alice@example.com"))[0];
    assert_eq!(
        b.path,
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    // Without Supported: path it is stored but not echoed.
    let req = Reg::new("bob")
        .header(HeaderName::Path, "<sip:p1.example.com;lr>")
        .build();
    let d = r.handle_register(&req, &c.at(0), &mut t).unwrap();
    assert!(values(&d.response, HeaderName::Path).is_empty());
    assert_eq!(t.bindings(&aor("sip:bob@example.com"))[0].path.len(), 1);
    // Not on a flow: reached through the Contact and Path.
    let mut t2 = BindingTable::new();
    let c2 = Clock::new().from("203.0.113.5:5060", None);
    r.handle_register(&req, &c2.at(0), &mut t2).unwrap();
    match &t2.lookup(&aor("sip:bob@example.com"), c2.at(1).now)[0].reach {
        Reach::Contact { uri, path } => {
            assert_eq!(uri.to_string(), "sip:bob@192.0.2.10:5060");
            assert_eq!(path, &["<sip:p1.example.com;lr>"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_register_and_missing_authenticator_are_errors() {
    let r = registrar();
    let mut t = BindingTable::new();
    let opt = MessageBuilder::request(Method::Options, "sip:example.com")
        .header(HeaderName::Via, "SIP/2.0/UDP h;branch=z9hG4bK1")
        .header(HeaderName::To, "<sip:a@example.com>")
        .header(HeaderName::From, "<sip:a@example.com>;tag=1")
        .header(HeaderName::CallId, "x")
        .header(HeaderName::CSeq, "1 OPTIONS")
        .build()
        .unwrap();
    assert_eq!(
        r.handle_register(&opt, &Clock::new().at(0), &mut t)
            .unwrap_err(),
        Error::NotRegister
    );
    let err = Registrar::new(RegistrarConfig::new(["example.com"]), None).unwrap_err();
    assert_eq!(err, Error::AuthenticatorMissing);
    let mut bad = open_config();
    bad.min_expires = 7200;
    assert!(matches!(Registrar::new(bad, None), Err(Error::Config(_))));
}

#[test]
fn async_store_drives_the_same_processing_and_streams_events() {
    let r = registrar();
    let store = InMemoryStore::new();
    let events = store.subscribe();
    let c = Clock::new();
    let d =
        block_on(r.handle_register_with(&Reg::new("alice").expires(60).build(), &c.at(0), &store))
            .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(d.events.len(), 1);
    let a = aor("sip:alice@example.com");
    let found = block_on(store.lookup(&a, c.at(1).now)).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].reach,
        Reach::Flow(siplink_registrar::FlowId::from_raw(1))
    );
    assert_eq!(store.poll_timeout(), Some(c.at(60).now));
    let expired = block_on(store.handle_timeout(c.at(60).now)).unwrap();
    assert_eq!(expired.len(), 1);
    let kinds: Vec<EventKind> = events.try_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Added, EventKind::Removed(RemoveReason::Expired)]
    );
    let store_dyn: &dyn LocationStore = &store;
    assert_eq!(block_on(store_dyn.usage()).unwrap().bindings, 0);
}

#[test]
fn a_failing_store_answers_500() {
    use siplink_registrar::{
        AorSnapshot, BindingEvent, Change, FlowId, StoreFuture, Target, Usage,
    };
    use std::time::Instant;
    struct Broken;
    impl LocationStore for Broken {
        fn bindings<'a>(&'a self, _: &'a Aor) -> StoreFuture<'a, AorSnapshot> {
            Box::pin(async {
                Ok(AorSnapshot {
                    bindings: Vec::new(),
                    version: 0,
                })
            })
        }
        fn usage(&self) -> StoreFuture<'_, Usage> {
            Box::pin(async { Ok(Usage::default()) })
        }
        fn apply<'a>(
            &'a self,
            _: &'a Aor,
            _: u64,
            _: Vec<Change>,
        ) -> StoreFuture<'a, Vec<BindingEvent>> {
            Box::pin(async { Err(Error::Store("down".into())) })
        }
        fn lookup<'a>(&'a self, _: &'a Aor, _: Instant) -> StoreFuture<'a, Vec<Target>> {
            Box::pin(async { Err(Error::Store("down".into())) })
        }
        fn handle_timeout(&self, _: Instant) -> StoreFuture<'_, Vec<BindingEvent>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn flow_closed(
            &self,
            _: FlowId,
            _: Instant,
            _: bool,
        ) -> StoreFuture<'_, Vec<BindingEvent>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }
    let r = registrar();
    let d =
        block_on(r.handle_register_with(&Reg::new("alice").build(), &Clock::new().at(0), &Broken))
            .unwrap();
    assert_eq!(d.status(), 500);
    assert!(d.events.is_empty());
}

#[test]
fn a_concurrent_change_is_detected_and_the_decision_recomputed() {
    use siplink_registrar::{
        AorSnapshot, BindingEvent, Change, FlowId, StoreFuture, Target, Usage,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Lets another registrar win the race before the first apply.
    struct Racy<'r> {
        inner: InMemoryStore,
        other: &'r Registrar,
        clock: Clock,
        applies: AtomicUsize,
    }
    impl LocationStore for Racy<'_> {
        fn bindings<'a>(&'a self, aor: &'a Aor) -> StoreFuture<'a, AorSnapshot> {
            self.inner.bindings(aor)
        }
        fn usage(&self) -> StoreFuture<'_, Usage> {
            self.inner.usage()
        }
        fn apply<'a>(
            &'a self,
            aor: &'a Aor,
            version: u64,
            changes: Vec<Change>,
        ) -> StoreFuture<'a, Vec<BindingEvent>> {
            if self.applies.fetch_add(1, Ordering::SeqCst) == 0 {
                let req = Reg::new("alice")
                    .call_id("racer")
                    .contacts(&["<sip:a@192.0.2.200>"]);
                let d = block_on(self.other.handle_register_with(
                    &req.build(),
                    &self.clock.at(0),
                    &self.inner,
                ));
                assert_eq!(d.unwrap().status(), 200);
            }
            self.inner.apply(aor, version, changes)
        }
        fn lookup<'a>(&'a self, aor: &'a Aor, now: Instant) -> StoreFuture<'a, Vec<Target>> {
            self.inner.lookup(aor, now)
        }
        fn handle_timeout(&self, now: Instant) -> StoreFuture<'_, Vec<BindingEvent>> {
            self.inner.handle_timeout(now)
        }
        fn flow_closed(
            &self,
            flow: FlowId,
            now: Instant,
            fallback: bool,
        ) -> StoreFuture<'_, Vec<BindingEvent>> {
            self.inner.flow_closed(flow, now, fallback)
        }
    }
    let other = registrar();
    let c = Clock::new();
    let store = Racy {
        inner: InMemoryStore::new(),
        other: &other,
        clock: c,
        applies: AtomicUsize::new(0),
    };
    let r = registrar();
    let d = block_on(r.handle_register_with(&Reg::new("alice").build(), &c.at(0), &store)).unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(store.applies.load(Ordering::SeqCst), 2);
    // The retried decision saw the racer's binding: the 200 lists both.
    assert_eq!(contacts(&d.response).len(), 2);
    let a = aor("sip:alice@example.com");
    assert_eq!(
        block_on(store.inner.lookup(&a, c.at(1).now)).unwrap().len(),
        2
    );
}

#[test]
fn table_apply_if_refuses_a_stale_version() {
    let r = registrar();
    let mut t = BindingTable::new();
    let c = Clock::new();
    let a = aor("sip:alice@example.com");
    assert_eq!(t.version(&a), 0);
    r.handle_register(&Reg::new("alice").build(), &c.at(0), &mut t)
        .unwrap();
    let v = t.version(&a);
    assert_ne!(v, 0);
    let remove = t.bindings(&a).into_iter().map(|b| Change::Remove {
        aor: a.clone(),
        id: b.id,
        reason: RemoveReason::Unregistered,
    });
    let remove: Vec<Change> = remove.collect();
    assert_eq!(t.apply_if(&a, v + 1, remove.clone()), Err(Error::Conflict));
    assert_eq!(t.usage().bindings, 1);
    assert_eq!(t.apply_if(&a, v, remove).unwrap().len(), 1);
    assert_eq!(t.version(&a), 0);
}

#[test]
fn two_phase_api_applies_nothing_itself() {
    use siplink_registrar::Step;
    let r = registrar();
    let c = Clock::new();
    let req = Reg::new("alice").build();
    let Step::Proceed(p) = r.check(&req, &c.at(0)).unwrap() else {
        panic!("expected Proceed");
    };
    assert_eq!(p.aor(), &aor("sip:alice@example.com"));
    let d = r
        .decide(&req, p, Vec::new(), Default::default(), &c.at(0))
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(d.changes.len(), 1);
    assert!(d.events.is_empty());
    assert!(matches!(&d.changes[0], Change::Insert(b) if b.cseq == 1));
    let bad = Reg::new("alice").ruri("sip:nowhere.test").build();
    assert!(matches!(r.check(&bad, &c.at(0)).unwrap(), Step::Respond(d) if d.status() == 404));
}

#[test]
fn non_sip_request_uri_is_416() {
    let r = registrar();
    let mut t = BindingTable::new();
    let req = Reg::new("alice").ruri("tel:+15551234").build();
    assert_eq!(
        r.handle_register(&req, &Clock::new().at(0), &mut t)
            .unwrap()
            .status(),
        416
    );
}

#[test]
fn in_memory_store_closes_flows() {
    let r = registrar();
    let store = InMemoryStore::new();
    let c = Clock::new().from("203.0.113.9:50000", Some(5));
    let req = Reg::new("pbx")
        .contacts(&["<sip:pbx@10.1.1.1;ob>;+sip.instance=\"<urn:uuid:pbx-1>\";reg-id=1"])
        .header(HeaderName::Supported, "outbound");
    let d = block_on(r.handle_register_with(&req.build(), &c.at(0), &store)).unwrap();
    assert_eq!(d.status(), 200);
    let ev = block_on(r.handle_flow_closed_with(
        siplink_registrar::FlowId::from_raw(5),
        c.at(1).now,
        &store,
    ))
    .unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Removed(RemoveReason::FlowClosed));
    assert!(
        block_on(store.lookup(&aor("sip:pbx@example.com"), c.at(1).now))
            .unwrap()
            .is_empty()
    );
}
