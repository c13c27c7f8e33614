//! Virtual-time tests of one registration.

#[path = "support/sans_io.rs"]
mod sans_io;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use sans_io::*;
use siplink_message::HeaderName;
use siplink_register::{FailureReason, Input, Output, State, TargetAddr, Transport};

fn header(m: &siplink_message::Message, name: HeaderName) -> String {
    String::from_utf8(m.header(name).unwrap_or_default().to_vec()).unwrap()
}

fn registered(reg: &mut siplink_register::Registration, t0: Instant) -> siplink_message::Message {
    let req = first_register(reg, t0);
    let out = feed(reg, ok(&req, 3600), t0 + secs(0.1));
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
    req
}

#[test]
fn request_follows_rfc3261_10_2() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 1);
    let req = first_register(&mut reg, t0);
    assert_eq!(req.request_uri().unwrap().as_str(), "sip:example.com");
    assert_eq!(req.to().unwrap().uri.as_str(), "sip:1001@example.com");
    assert_eq!(req.from().unwrap().uri.as_str(), "sip:1001@example.com");
    assert!(req.from().unwrap().tag().is_some());
    assert!(req.to().unwrap().tag().is_none());
    assert_eq!(req.call_id().unwrap(), reg.call_id());
    assert_eq!(req.expires().unwrap(), Some(3600));
    assert_eq!(req.max_forwards().unwrap(), Some(70));
    let via = req.top_via().unwrap();
    assert!(via.has_magic_cookie());
    assert_eq!(via.rport(), Some(None));
    let c = &req.contact().unwrap().as_slice()[0];
    assert_eq!(c.uri.as_str(), "sip:1001@192.168.1.10:5060");
    assert_eq!(header(&req, HeaderName::Supported), "path");
}

#[test]
fn digest_401_then_200_keeps_call_id_and_increments_cseq() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 2);
    let req = first_register(&mut reg, t0);
    assert!(req.header(HeaderName::Authorization).is_none());
    let out = feed(&mut reg, challenge(&req, "n1"), t0 + secs(0.05));
    let (retry, _) = sent(&out);
    assert_eq!(retry.call_id().unwrap(), req.call_id().unwrap());
    assert_eq!(retry.cseq().unwrap().seq, req.cseq().unwrap().seq + 1);
    let auth = header(&retry, HeaderName::Authorization);
    assert!(auth.contains("username=\"1001\"") && auth.contains("nonce=\"n1\""));
    let out = feed(&mut reg, ok(&retry, 3600), t0 + secs(0.1));
    assert_eq!(
        last_state(&out),
        Some(State::Registered {
            expires_at: t0 + secs(0.05) + Duration::from_secs(3600)
        })
    );
}

#[test]
fn proxy_407_is_answered_with_proxy_authorization() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 3);
    let req = first_register(&mut reg, t0);
    let m = req
        .response(407)
        .header(
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"example.com\", nonce=\"p1\", qop=\"auth\"",
        )
        .build()
        .unwrap();
    let (retry, _) = sent(&feed(&mut reg, m, t0));
    assert!(header(&retry, HeaderName::ProxyAuthorization).contains("nonce=\"p1\""));
}

#[test]
fn refresh_before_expiry_with_margin_and_jitter() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 4);
    let req = registered(&mut reg, t0);
    let wake = reg.poll_timeout().unwrap();
    // lead = 5 s + up to 10 % of 3600 s, counted from when the request was sent.
    assert!(wake >= t0 + secs(3600.0 - 5.0 - 360.0), "{:?}", wake - t0);
    assert!(wake <= t0 + secs(3595.0), "{:?}", wake - t0);
    assert!(poll_all(&mut reg, wake - secs(0.001)).is_empty());
    let out = poll_all(&mut reg, wake);
    let (refresh, _) = sent(&out);
    // A refresh does not leave the Registered state.
    assert_eq!(last_state(&out), None);
    assert_eq!(refresh.call_id().unwrap(), req.call_id().unwrap());
    assert!(refresh.cseq().unwrap().seq > req.cseq().unwrap().seq);
}

#[test]
fn granted_expiry_from_contact_param_or_expires_header() {
    let t0 = Instant::now();
    // The Contact's expires parameter wins over the Expires header.
    let mut reg = registration(config(), 5);
    let req = first_register(&mut reg, t0);
    let m = req
        .response(200)
        .header(HeaderName::Contact, "<sip:other@192.0.2.9>;expires=50")
        .header(
            HeaderName::Contact,
            "<sip:1001@192.168.1.10:5060>;expires=120",
        )
        .header(HeaderName::Expires, 900)
        .build()
        .unwrap();
    let out = feed(&mut reg, m, t0);
    assert_eq!(
        last_state(&out),
        Some(State::Registered {
            expires_at: t0 + secs(120.0)
        })
    );
    assert!(reg.poll_timeout().unwrap() <= t0 + secs(115.0));
    assert!(reg.poll_timeout().unwrap() >= t0 + secs(60.0));
    // Without a matching Contact: the Expires header.
    let mut reg = registration(config(), 6);
    let req = first_register(&mut reg, t0);
    let m = req
        .response(200)
        .header(HeaderName::Expires, 900)
        .build()
        .unwrap();
    let out = feed(&mut reg, m, t0);
    assert_eq!(
        last_state(&out),
        Some(State::Registered {
            expires_at: t0 + secs(900.0)
        })
    );
}

#[test]
fn short_expiry_refreshes_at_half_life_or_later_never_after_expiry() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 7);
    let req = first_register(&mut reg, t0);
    feed(&mut reg, ok(&req, 4), t0);
    let w = reg.poll_timeout().unwrap();
    assert!(w >= t0 + secs(2.0) && w <= t0 + secs(4.0), "{:?}", w - t0);
}

#[test]
fn interval_too_brief_retries_once_with_min_expires() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 8);
    let req = first_register(&mut reg, t0);
    let m = req
        .response(423)
        .header(HeaderName::MinExpires, 7200)
        .build()
        .unwrap();
    let (retry, _) = sent(&feed(&mut reg, m, t0));
    assert_eq!(retry.expires().unwrap(), Some(7200));
    assert_eq!(retry.call_id().unwrap(), req.call_id().unwrap());
    // A second 423 in the same attempt is a failure, not a loop.
    let m = retry
        .response(423)
        .header(HeaderName::MinExpires, 9000)
        .build()
        .unwrap();
    let out = feed(&mut reg, m, t0);
    no_send(&out);
    assert_eq!(
        last_state(&out),
        Some(State::Failed {
            reason: FailureReason::IntervalTooBrief
        })
    );
    // The raised expiry is kept for later attempts.
    let at = reg.poll_timeout().unwrap();
    let (later, _) = sent(&poll_all(&mut reg, at));
    assert_eq!(later.expires().unwrap(), Some(7200));
}

#[test]
fn timeouts_back_off_per_rfc5626_with_jitter_bounds() {
    let t0 = Instant::now();
    for seed in 0..20 {
        let mut reg = registration(config(), 100 + seed);
        let mut now = t0;
        reg.start(now);
        let mut req = sent(&poll_all(&mut reg, now)).0;
        for (k, upper) in [60.0, 120.0, 240.0, 480.0, 960.0, 1800.0, 1800.0, 1800.0]
            .into_iter()
            .enumerate()
        {
            now += secs(32.0); // Timer F
            let out = input(&mut reg, Input::Timeout, now);
            let Some(State::Retrying { reason, at }) =
                last_state(&out).or(Some(reg.state().clone()))
            else {
                panic!("{out:?}")
            };
            assert_eq!(reason, FailureReason::Timeout);
            let wait = (at - now).as_secs_f64();
            assert!(
                wait >= upper / 2.0 && wait <= upper,
                "failure {}: wait {wait} not in [{}, {upper}]",
                k + 1,
                upper / 2.0
            );
            assert_eq!(reg.poll_timeout(), Some(at));
            now = at;
            let next = sent(&poll_all(&mut reg, now)).0;
            assert_eq!(next.call_id().unwrap(), req.call_id().unwrap());
            req = next;
        }
        // A success resets the count.
        feed(&mut reg, ok(&req, 3600), now);
        now = reg.poll_timeout().unwrap();
        sent(&poll_all(&mut reg, now));
        let out = input(&mut reg, Input::TransportError, now);
        let Some(State::Retrying { at, .. }) = last_state(&out) else {
            panic!("{out:?}")
        };
        assert!(at - now <= secs(60.0) && at - now >= secs(30.0));
    }
}

#[test]
fn backoff_base_and_max_are_configurable() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.timing.backoff_base = Duration::from_secs(10);
    cfg.timing.backoff_max = Duration::from_secs(50);
    let mut reg = registration(cfg, 9);
    reg.start(t0);
    poll_all(&mut reg, t0);
    let mut now = t0;
    for upper in [20.0, 40.0, 50.0, 50.0] {
        let out = input(&mut reg, Input::Timeout, now);
        let Some(State::Retrying { at, .. }) = last_state(&out) else {
            panic!("{out:?}")
        };
        let wait = (at - now).as_secs_f64();
        assert!(wait >= upper / 2.0 && wait <= upper, "{wait} vs {upper}");
        now = at;
        sent(&poll_all(&mut reg, now));
    }
}

#[test]
fn server_errors_back_off_and_retry_after_is_honoured() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 10);
    let req = first_register(&mut reg, t0);
    let m = req
        .response(503)
        .header(HeaderName::RetryAfter, 300)
        .build()
        .unwrap();
    let out = feed(&mut reg, m, t0);
    assert_eq!(
        last_state(&out),
        Some(State::Retrying {
            reason: FailureReason::ServerError(503),
            at: t0 + secs(300.0)
        })
    );
    // A Retry-After shorter than the backoff does not shorten it.
    let req = sent(&poll_all(&mut reg, t0 + secs(300.0))).0;
    let now = t0 + secs(300.0);
    let m = req
        .response(500)
        .header(HeaderName::RetryAfter, 1)
        .build()
        .unwrap();
    let out = feed(&mut reg, m, now);
    let Some(State::Retrying { at, .. }) = last_state(&out) else {
        panic!("{out:?}")
    };
    assert!(at - now >= secs(30.0), "{:?}", at - now);
    // An absurd Retry-After is capped.
    let mut cfg = config();
    cfg.timing.max_retry_after = Duration::from_secs(900);
    let mut reg = registration(cfg, 11);
    let req = first_register(&mut reg, t0);
    let m = req
        .response(503)
        .header(HeaderName::RetryAfter, 86400)
        .build()
        .unwrap();
    let out = feed(&mut reg, m, t0);
    assert!(matches!(last_state(&out), Some(State::Retrying { at, .. }) if at == t0 + secs(900.0)));
}

#[test]
fn failover_to_the_second_registrar_and_auth_stays_on_the_challenger() {
    let t0 = Instant::now();
    let a = TargetAddr::new("192.0.2.1", 5060, Transport::Udp);
    let b = TargetAddr::new("192.0.2.2", 5060, Transport::Udp);
    let mut cfg = config();
    cfg.targets = vec![a.clone(), b.clone()];
    let mut reg = registration(cfg, 12);
    reg.start(t0);
    let (req, target) = sent(&poll_all(&mut reg, t0));
    assert_eq!(target, a);
    // Timeout on A: straight on to B, no backoff.
    let now = t0 + secs(32.0);
    let out = input(&mut reg, Input::Timeout, now);
    assert!(matches!(last_state(&out), Some(State::Retrying { at, .. }) if at == now));
    let (req2, target) = sent(&poll_all(&mut reg, now));
    assert_eq!(target, b);
    assert_eq!(req2.call_id().unwrap(), req.call_id().unwrap());
    // B challenges: the answer goes to B too.
    let (req3, target) = sent(&feed(&mut reg, challenge(&req2, "nb"), now));
    assert_eq!(target, b);
    // B is unavailable (503): both tried, so back off; then start over at A.
    let out = feed(&mut reg, response(&req3, 503), now);
    let Some(State::Retrying { at, .. }) = last_state(&out) else {
        panic!("{out:?}")
    };
    assert!(at - now >= secs(30.0) && at - now <= secs(60.0));
    let (_, target) = sent(&poll_all(&mut reg, at));
    assert_eq!(target, a);
}

#[test]
fn failover_skips_a_registrar_blocked_by_retry_after() {
    let t0 = Instant::now();
    let a = TargetAddr::new("192.0.2.1", 5060, Transport::Udp);
    let b = TargetAddr::new("192.0.2.2", 5060, Transport::Udp);
    let mut cfg = config();
    cfg.targets = vec![a.clone(), b.clone()];
    let mut reg = registration(cfg, 13);
    reg.start(t0);
    let (req, _) = sent(&poll_all(&mut reg, t0));
    let m = req
        .response(503)
        .header(HeaderName::RetryAfter, 3000)
        .build()
        .unwrap();
    let out = feed(&mut reg, m, t0);
    let (req, target) = sent(&{
        let mut o = out;
        o.extend(poll_all(&mut reg, t0));
        o
    });
    assert_eq!(target, b);
    // B times out as well: the next attempt (A) waits for A's Retry-After.
    let out = input(&mut reg, Input::Timeout, t0 + secs(32.0));
    let _ = req;
    assert!(
        matches!(last_state(&out), Some(State::Retrying { at, .. }) if at == t0 + secs(3000.0))
    );
}

#[test]
fn credentials_rejected_fails_with_slow_retry_or_never() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 14);
    let req = first_register(&mut reg, t0);
    let (retry, _) = sent(&feed(&mut reg, challenge(&req, "n1"), t0));
    // A fresh challenge (not stale) after our answer: wrong password.
    let out = feed(&mut reg, challenge(&retry, "n2"), t0);
    no_send(&out);
    assert_eq!(
        last_state(&out),
        Some(State::Failed {
            reason: FailureReason::AuthRejected
        })
    );
    let w = reg.poll_timeout().unwrap();
    assert!(w >= t0 + secs(300.0) && w <= t0 + secs(600.0));

    // 403 after an answered challenge, with retry disabled.
    let mut cfg = config();
    cfg.timing.failed_retry = None;
    let mut reg = registration(cfg, 15);
    let req = first_register(&mut reg, t0);
    let (retry, _) = sent(&feed(&mut reg, challenge(&req, "n1"), t0));
    let out = feed(&mut reg, response(&retry, 403), t0);
    assert_eq!(
        last_state(&out),
        Some(State::Failed {
            reason: FailureReason::AuthRejected
        })
    );
    assert_eq!(reg.poll_timeout(), None);
}

#[test]
fn challenge_without_credentials_fails() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.credentials = None;
    let mut reg = registration(cfg, 16);
    let req = first_register(&mut reg, t0);
    let out = feed(&mut reg, challenge(&req, "n1"), t0);
    no_send(&out);
    assert!(matches!(
        last_state(&out),
        Some(State::Failed {
            reason: FailureReason::AuthRejected
        })
    ));
}

#[test]
fn not_found_fails_with_slow_retry() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 17);
    let req = first_register(&mut reg, t0);
    let out = feed(&mut reg, response(&req, 404), t0);
    assert_eq!(
        last_state(&out),
        Some(State::Failed {
            reason: FailureReason::NotFound
        })
    );
    let w = reg.poll_timeout().unwrap();
    let out = poll_all(&mut reg, w);
    sent(&out);
    assert_eq!(last_state(&out), Some(State::Registering));
}

#[test]
fn contact_rewritten_with_the_address_the_registrar_saw() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 18);
    let req = first_register(&mut reg, t0);
    assert_eq!(
        reg.contact().unwrap().to_string(),
        "sip:1001@192.168.1.10:5060"
    );
    let via = format!(
        "SIP/2.0/UDP 192.168.1.10:5060;rport=40000;branch={};received=203.0.113.5",
        req.top_via().unwrap().branch().unwrap()
    );
    let out = feed(&mut reg, with_via(ok(&req, 3600), &via), t0);
    // Not reported as registered yet: the binding points at the private address.
    assert_eq!(last_state(&out), None);
    let (rereg, _) = sent(&out);
    let contacts = rereg.contact().unwrap().as_slice().to_vec();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].uri.as_str(), "sip:1001@203.0.113.5:40000");
    assert_eq!(contacts[0].expires(), None);
    assert_eq!(contacts[1].uri.as_str(), "sip:1001@192.168.1.10:5060");
    assert_eq!(contacts[1].expires(), Some(0));
    assert_eq!(rereg.call_id().unwrap(), req.call_id().unwrap());
    assert_eq!(reg.contact_addr(), ("203.0.113.5", 40000));
    assert_eq!(
        reg.contact().unwrap().to_string(),
        "sip:1001@203.0.113.5:40000"
    );
    // The registrar sees the same public address: registered, no loop.
    let out = feed(&mut reg, with_via(ok(&rereg, 3600), &via), t0);
    no_send(&out);
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
    // The refresh carries the public contact only.
    let w = reg.poll_timeout().unwrap();
    let (refresh, _) = sent(&poll_all(&mut reg, w));
    let contacts = refresh.contact().unwrap().as_slice().to_vec();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].uri.as_str(), "sip:1001@203.0.113.5:40000");
}

#[test]
fn contact_rewrite_can_be_disabled_and_ignores_matching_addresses() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.rewrite_contact = false;
    let mut reg = registration(cfg, 19);
    let req = first_register(&mut reg, t0);
    let via = "SIP/2.0/UDP 192.168.1.10:5060;rport=40000;branch=z9hG4bKx;received=203.0.113.5";
    let out = feed(&mut reg, with_via(ok(&req, 3600), via), t0);
    no_send(&out);
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));

    let mut reg = registration(config(), 20);
    let req = first_register(&mut reg, t0);
    let via = "SIP/2.0/UDP 192.168.1.10:5060;rport=5060;branch=z9hG4bKx";
    let out = feed(&mut reg, with_via(ok(&req, 3600), via), t0);
    no_send(&out);
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
}

#[test]
fn unregister_on_shutdown() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 21);
    let req = registered(&mut reg, t0);
    let now = t0 + secs(10.0);
    let out = input(&mut reg, Input::Shutdown, now);
    let (unreg, _) = sent(&out);
    assert_eq!(unreg.expires().unwrap(), Some(0));
    assert_eq!(unreg.call_id().unwrap(), req.call_id().unwrap());
    assert!(unreg.cseq().unwrap().seq > req.cseq().unwrap().seq);
    assert_eq!(
        unreg.contact().unwrap().as_slice()[0].uri.as_str(),
        "sip:1001@192.168.1.10:5060"
    );
    // The unregister may be challenged too.
    let (unreg2, _) = sent(&feed(&mut reg, challenge(&unreg, "u1"), now));
    assert_eq!(unreg2.expires().unwrap(), Some(0));
    assert!(unreg2.header(HeaderName::Authorization).is_some());
    let out = feed(&mut reg, response(&unreg2, 200), now);
    assert_eq!(last_state(&out), Some(State::Unregistered));
    assert!(reg.is_finished());
    assert_eq!(reg.poll_timeout(), None);
    // Later inputs are ignored.
    assert!(input(&mut reg, Input::Timeout, now).is_empty());
}

#[test]
fn unregister_waits_a_bounded_time() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 22);
    registered(&mut reg, t0);
    let now = t0 + secs(10.0);
    sent(&input(&mut reg, Input::Shutdown, now));
    assert_eq!(reg.poll_timeout(), Some(now + secs(4.0)));
    assert!(poll_all(&mut reg, now + secs(3.9)).is_empty());
    let out = poll_all(&mut reg, now + secs(4.0));
    assert_eq!(last_state(&out), Some(State::Unregistered));
    assert!(reg.is_finished());
}

#[test]
fn shutdown_before_any_binding_sends_nothing() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 23);
    reg.start(t0 + secs(5.0));
    let out = input(&mut reg, Input::Shutdown, t0);
    no_send(&out);
    assert!(reg.is_finished());
    // A REGISTER in flight may create a binding: unregister it.
    let mut reg = registration(config(), 24);
    first_register(&mut reg, t0);
    let (unreg, _) = sent(&input(&mut reg, Input::Shutdown, t0));
    assert_eq!(unreg.expires().unwrap(), Some(0));
}

#[test]
fn responses_that_do_not_match_are_ignored() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 25);
    let req = first_register(&mut reg, t0);
    let (retry, _) = sent(&feed(&mut reg, challenge(&req, "n1"), t0));
    // A late response to the first request (old CSeq) changes nothing.
    assert!(feed(&mut reg, ok(&req, 3600), t0).is_empty());
    // Provisional responses are ignored.
    assert!(feed(&mut reg, response(&retry, 100), t0).is_empty());
    let out = feed(&mut reg, ok(&retry, 3600), t0);
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
}

#[test]
fn outbound_instance_reg_id_keepalives_and_439() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.transport = Transport::Tcp;
    cfg = cfg.with_outbound("urn:uuid:00000000-0000-1000-8000-000A95A0E128", 1);
    let mut reg = registration(cfg.clone(), 26);
    let req = first_register(&mut reg, t0);
    let c = &req.contact().unwrap().as_slice()[0];
    assert_eq!(c.uri.as_str(), "sip:1001@192.168.1.10:5060;transport=tcp");
    assert_eq!(
        c.instance(),
        Some("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
    );
    assert_eq!(c.reg_id(), Some(1));
    assert_eq!(header(&req, HeaderName::Supported), "path, outbound");
    assert!(req.top_via().unwrap().is_transport("TCP"));
    let m = req
        .response(200)
        .header(
            HeaderName::Contact,
            "<sip:1001@198.51.100.7:61000;transport=tcp>;expires=600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1",
        )
        .header(HeaderName::Require, "outbound")
        .header(HeaderName::FlowTimer, 30)
        .build()
        .unwrap();
    // Even though the registrar saw another address, Outbound needs no rewrite.
    let via = "SIP/2.0/TCP 192.168.1.10:5060;rport=61000;branch=z9hG4bKx;received=198.51.100.7";
    let out = feed(&mut reg, with_via(m, via), t0);
    no_send(&out);
    assert_eq!(
        last_state(&out),
        Some(State::Registered {
            expires_at: t0 + secs(600.0)
        })
    );
    assert!(reg.outbound_active());
    let ka = reg.poll_timeout().unwrap();
    assert!(
        ka >= t0 + secs(24.0) && ka <= t0 + secs(30.0),
        "{:?}",
        ka - t0
    );
    let out = poll_all(&mut reg, ka);
    assert!(
        matches!(&out[..], [Output::Keepalive { target }] if target.transport == Transport::Tcp)
    );

    // 439: retried without Outbound.
    let mut reg = registration(cfg, 27);
    let req = first_register(&mut reg, t0);
    let (retry, _) = sent(&feed(&mut reg, response(&req, 439), t0));
    let c = &retry.contact().unwrap().as_slice()[0];
    assert_eq!(c.reg_id(), None);
    assert_eq!(header(&retry, HeaderName::Supported), "path");
}

#[test]
fn flow_closed_reregisters_promptly_but_rate_limited() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.transport = Transport::Tcp;
    let mut reg = registration(cfg, 28);
    let req = first_register(&mut reg, t0);
    feed(&mut reg, ok(&req, 3600), t0);
    let now = t0 + secs(100.0);
    let out = input(&mut reg, Input::FlowClosed, now);
    let Some(State::Retrying { reason, at }) = last_state(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(reason, FailureReason::FlowClosed);
    assert!(at >= now && at <= now + secs(2.0));
    let (req, _) = sent(&poll_all(&mut reg, at));
    let out = feed(&mut reg, ok(&req, 3600), at + secs(0.1));
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
    // The new connection drops right away: no sooner than 30 s after the last.
    let now2 = at + secs(1.0);
    let out = input(&mut reg, Input::FlowClosed, now2);
    let Some(State::Retrying { at: at2, .. }) = last_state(&out) else {
        panic!("{out:?}")
    };
    assert!(at2 >= at + secs(30.0), "{:?}", at2 - at);
    // Over UDP there is no flow to lose.
    let mut reg = registration(config(), 29);
    let req = first_register(&mut reg, t0);
    feed(&mut reg, ok(&req, 3600), t0);
    assert!(input(&mut reg, Input::FlowClosed, now).is_empty());
}

#[test]
fn outbound_proxy_gets_a_route_and_the_request() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.outbound_proxy = Some(uri("sip:edge.example.net:5080;transport=tcp"));
    let mut reg = registration(cfg, 30);
    reg.start(t0);
    let (req, target) = sent(&poll_all(&mut reg, t0));
    assert_eq!(
        target,
        TargetAddr::new("edge.example.net", 5080, Transport::Tcp)
    );
    assert!(req.route().unwrap()[0].uri.as_sip().unwrap().lr());
    assert_eq!(req.request_uri().unwrap().as_str(), "sip:example.com");
}

#[test]
fn invalid_configurations_are_refused() {
    let mut cfg = config();
    cfg.expires = 0;
    assert!(siplink_register::Registration::new(cfg).is_err());
    let mut cfg = config();
    cfg.contact_user = "bad user".into();
    assert!(siplink_register::Registration::new(cfg).is_err());
    let mut cfg = config();
    cfg.timing.backoff_max = Duration::from_secs(1);
    assert!(siplink_register::Registration::new(cfg).is_err());
    // Port 0 in every address form.
    let refused = |cfg: siplink_register::RegistrationConfig, says: &str| {
        let Err(e) = siplink_register::Registration::new(cfg) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains(says), "{e}");
    };
    let mut cfg = config();
    cfg.registrar = uri("sip:registrar.example.com:0");
    refused(cfg, "registrar URI's port is 0");
    let mut cfg = config();
    cfg.outbound_proxy = Some(uri("sips:proxy.example.com:0;lr"));
    refused(cfg, "outbound proxy URI's port is 0");
    let mut cfg = config();
    cfg.local_port = 0;
    refused(cfg, "local_port is 0");
    let mut cfg = config();
    cfg.targets = vec![TargetAddr::new("192.0.2.1", 0, Transport::Udp)];
    refused(cfg, "targets need a host and a port");
    let mut cfg = config();
    cfg.targets = vec![TargetAddr::new("", 5060, Transport::Udp)];
    refused(cfg, "targets need a host and a port");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn refresh_is_never_late_nor_earlier_than_half_life(seed in any::<u64>(), granted in 1u32..200_000) {
        let t0 = Instant::now();
        let mut reg = registration(config(), seed);
        let req = first_register(&mut reg, t0);
        let sent_at = t0;
        let now = t0 + secs(0.2);
        feed(&mut reg, ok(&req, granted), now);
        let g = Duration::from_secs(u64::from(granted));
        let w = reg.poll_timeout().unwrap();
        let latest = sent_at + g - Duration::from_secs(5).min(g / 2);
        prop_assert!(w <= latest.max(now));
        prop_assert!(w >= (sent_at + g / 2).min(latest).max(now));
    }

    #[test]
    fn backoff_stays_within_rfc5626_bounds(seed in any::<u64>(), failures in 1usize..12) {
        let t0 = Instant::now();
        let mut reg = registration(config(), seed);
        reg.start(t0);
        poll_all(&mut reg, t0);
        let mut now = t0;
        for k in 1..=failures {
            let out = input(&mut reg, Input::TransportError, now);
            let Some(State::Retrying { at, .. }) = last_state(&out).or(Some(reg.state().clone())) else {
                return Err(TestCaseError::fail("not retrying"));
            };
            let upper = (30.0 * 2f64.powi(k as i32)).min(1800.0);
            let wait = (at - now).as_secs_f64();
            prop_assert!(wait >= upper / 2.0 - 1e-6 && wait <= upper + 1e-6);
            now = at;
            poll_all(&mut reg, now);
        }
    }
}

fn reuse(outputs: &[Output]) -> bool {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Send { reuse_address, .. } => Some(*reuse_address),
            _ => None,
        })
        .unwrap()
}

#[test]
fn only_continuations_reuse_the_resolved_address() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 31);
    reg.start(t0);
    let out = poll_all(&mut reg, t0);
    assert!(!reuse(&out), "a new attempt resolves again");
    let (req, _) = sent(&out);
    let out = feed(&mut reg, challenge(&req, "n1"), t0);
    assert!(
        reuse(&out),
        "the digest answer goes where the challenge came from"
    );
    let (retry, _) = sent(&out);
    let out = input(&mut reg, Input::Timeout, t0 + secs(32.0));
    let _ = retry;
    let at = match last_state(&out) {
        Some(State::Retrying { at, .. }) => at,
        other => panic!("{other:?}"),
    };
    assert!(!reuse(&poll_all(&mut reg, at)));
}

#[test]
fn retry_after_defers_the_slow_retry_of_a_permanent_failure() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 32);
    let req = first_register(&mut reg, t0);
    let m = req
        .response(404)
        .header(HeaderName::RetryAfter, 3000)
        .build()
        .unwrap();
    feed(&mut reg, m, t0);
    assert_eq!(reg.poll_timeout(), Some(t0 + secs(3000.0)));
}

#[test]
fn refresh_carries_credentials_preemptively_and_recovers_from_a_reused_nonce() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 33);
    let req = first_register(&mut reg, t0);
    let (retry, _) = sent(&feed(&mut reg, challenge(&req, "n1"), t0));
    feed(&mut reg, ok(&retry, 600), t0);
    let w = reg.poll_timeout().unwrap();
    let (refresh, _) = sent(&poll_all(&mut reg, w));
    let auth = header(&refresh, HeaderName::Authorization);
    assert!(
        auth.contains("nonce=\"n1\"") && auth.contains("nc=00000002"),
        "{auth}"
    );
    // A registrar that does not accept nonce reuse challenges again with the
    // same nonce: answered afresh once, not taken as wrong credentials.
    let out = feed(&mut reg, challenge(&refresh, "n1"), w);
    let (again, _) = sent(&out);
    assert!(header(&again, HeaderName::Authorization).contains("nc=00000001"));
    let out = feed(&mut reg, ok(&again, 600), w);
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
}

#[test]
fn ipv6_local_address_in_via_and_contact() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.local_host = "2001:db8::10".into();
    let mut reg = registration(cfg, 34);
    let req = first_register(&mut reg, t0);
    assert_eq!(
        req.contact().unwrap().as_slice()[0].uri.as_str(),
        "sip:1001@[2001:db8::10]:5060"
    );
    assert_eq!(req.top_via().unwrap().sent_by(), "[2001:db8::10]:5060");
    // A 200 whose Via matches our address: no rewrite.
    let via = "SIP/2.0/UDP [2001:db8::10]:5060;rport=5060;branch=z9hG4bKx;received=[2001:db8::10]";
    let out = feed(&mut reg, with_via(ok(&req, 3600), via), t0);
    no_send(&out);
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
}

#[test]
fn target_display_and_transport_properties() {
    assert_eq!(
        TargetAddr::new("2001:db8::1", 5061, Transport::Tls).to_string(),
        "[2001:db8::1]:5061;transport=TLS"
    );
    assert_eq!(
        TargetAddr::new("sip.example.com", 5060, Transport::Udp).to_string(),
        "sip.example.com:5060;transport=UDP"
    );
    assert!(!Transport::Udp.is_reliable() && Transport::Wss.is_reliable());
    assert_eq!(Transport::Tls.default_port(), 5061);
}

#[test]
fn huge_grants_do_not_overflow_the_clock() {
    let t0 = Instant::now();
    let mut reg = registration(config(), 35);
    let req = first_register(&mut reg, t0);
    let out = feed(&mut reg, ok(&req, u32::MAX), t0);
    assert!(matches!(last_state(&out), Some(State::Registered { .. })));
    assert!(reg.poll_timeout().unwrap() <= t0 + Duration::from_secs(365 * 24 * 3600));
}
