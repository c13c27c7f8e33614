//! The sans-IO rtpengine client in virtual time, without sockets: a scripted rtpengine
//! answers (or not) the datagrams the core asks to send.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use siplink_media::bencode::{Value, dict};
use siplink_media::ng::decode_datagram;
use siplink_media::{
    Client, ClientConfig, DeleteRequest, Error, InstanceConfig, Output, QueryRequest, Request,
    RequestId, SdpRequest,
};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A sent datagram, decoded.
#[derive(Debug, Clone)]
struct Sent {
    to: SocketAddr,
    cookie: String,
    command: String,
    call_id: Option<String>,
    raw: Vec<u8>,
}

#[derive(Default, Debug)]
struct Drained {
    sent: Vec<Sent>,
    completed: HashMap<RequestId, Value>,
    failed: HashMap<RequestId, Error>,
    health: Vec<(SocketAddr, bool)>,
}

fn drain(c: &mut Client) -> Drained {
    let mut d = Drained::default();
    while let Some(o) = c.poll_output() {
        match o {
            Output::Transmit { to, payload } => {
                let (cookie, body) = decode_datagram(&payload).unwrap();
                d.sent.push(Sent {
                    to,
                    cookie: cookie.to_owned(),
                    command: body.get("command").unwrap().as_str().unwrap().to_owned(),
                    call_id: body
                        .get("call-id")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    raw: payload.clone(),
                });
            }
            Output::Completed { id, reply } => {
                d.completed.insert(id, reply.body);
            }
            Output::Failed { id, error } => {
                d.failed.insert(id, error);
            }
            Output::Health { instance, up } => d.health.push((instance, up)),
        }
    }
    d
}

fn reply(c: &mut Client, s: &Sent, body: Value, now: Instant) {
    let mut dgram = format!("{} ", s.cookie).into_bytes();
    body.encode_into(&mut dgram);
    c.handle_datagram(s.to, &dgram, now);
}

fn ok_sdp() -> Value {
    dict([("result", Value::str("ok")), ("sdp", Value::str(SDP))])
}

fn pong() -> Value {
    dict([("result", Value::str("pong"))])
}

fn config(ports: &[u16]) -> ClientConfig {
    let mut c = ClientConfig::new(ports.iter().map(|&p| addr(p)));
    c.cookie_prefix = Some("test".into());
    c.ping_interval = Duration::from_secs(5);
    c
}

fn offer(call: &str) -> Request {
    Request::Offer(SdpRequest::offer(call, "from-1", SDP).to_plain_rtp())
}

/// A client whose first health pings were answered.
fn started(ports: &[u16], t0: Instant) -> Client {
    let mut c = Client::new(config(ports), t0);
    c.handle_timeout(t0);
    let d = drain(&mut c);
    assert_eq!(d.sent.len(), ports.len(), "one ping per instance at start");
    for s in &d.sent {
        assert_eq!(s.command, "ping");
        reply(&mut c, s, pong(), t0);
    }
    let d = drain(&mut c);
    assert!(
        d.completed.is_empty() && d.health.is_empty(),
        "pings are internal"
    );
    c
}

#[test]
fn a_request_is_sent_once_and_completed_by_its_reply() {
    let t0 = Instant::now();
    let mut c = started(&[2000], t0);
    let id = c.handle_command(offer("call-a"), t0).unwrap();
    let d = drain(&mut c);
    assert_eq!(d.sent.len(), 1);
    let s = &d.sent[0];
    assert_eq!((s.to, s.command.as_str()), (addr(2000), "offer"));
    assert!(s.cookie.starts_with("test_"));
    // The wire form: cookie, space, a bencoded dictionary with the phone→PBX flags.
    let (_, body) = decode_datagram(&s.raw).unwrap();
    assert_eq!(
        body.get("transport-protocol").unwrap().as_str(),
        Some("RTP/AVP")
    );
    assert_eq!(body.get("ICE").unwrap().as_str(), Some("remove"));
    assert_eq!(body.get("DTLS").unwrap().as_str(), Some("off"));
    assert_eq!(body.get("SDES").unwrap(), &Value::str_list(["off"]));
    assert_eq!(body.get("rtcp-mux").unwrap(), &Value::str_list(["demux"]));
    assert_eq!(
        body.get("replace").unwrap(),
        &Value::str_list(["origin", "session-connection"])
    );
    reply(&mut c, s, ok_sdp(), t0 + Duration::from_millis(2));
    let d = drain(&mut c);
    assert_eq!(d.completed[&id].get("sdp").unwrap().as_str(), Some(SDP));
    assert_eq!(c.stats().replies, 2); // the start ping and this
    assert_eq!(c.pending(), 0);
}

#[test]
fn lost_datagrams_are_retransmitted_with_the_same_cookie() {
    let t0 = Instant::now();
    let mut c = started(&[2000], t0);
    let id = c.handle_command(offer("call-a"), t0).unwrap();
    let first = drain(&mut c).sent.remove(0);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    // Nothing due before the interval.
    c.handle_timeout(t0 + Duration::from_millis(499));
    assert!(drain(&mut c).sent.is_empty());
    c.handle_timeout(t0 + Duration::from_millis(500));
    let again = drain(&mut c).sent.remove(0);
    assert_eq!(again.raw, first.raw, "a retransmission is byte-identical");
    c.handle_timeout(t0 + Duration::from_millis(1000));
    let third = drain(&mut c).sent.remove(0);
    assert_eq!(third.cookie, first.cookie);
    reply(&mut c, &third, ok_sdp(), t0 + Duration::from_millis(1010));
    let d = drain(&mut c);
    assert!(d.completed.contains_key(&id));
    assert_eq!(c.stats().retransmits, 2);
    // Nothing more for it: the next deadline is the health ping.
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
}

#[test]
fn no_reply_at_all_is_a_timeout_and_the_instance_goes_down() {
    let t0 = Instant::now();
    let mut cfg = config(&[2000]);
    cfg.retries = 2;
    cfg.retransmit_interval = Duration::from_millis(300);
    let mut c = Client::new(cfg, t0);
    let id = c.handle_command(offer("call-a"), t0).unwrap();
    let mut sends = 0;
    let mut now = t0;
    let mut d = Drained::default();
    while let Some(t) = c.poll_timeout() {
        if t > t0 + Duration::from_secs(2) {
            break;
        }
        now = t;
        c.handle_timeout(now);
        d = drain(&mut c);
        sends += d.sent.iter().filter(|s| s.command == "offer").count();
        if !d.failed.is_empty() {
            break;
        }
    }
    assert_eq!(sends, 3, "the first send and 2 retransmissions");
    assert_eq!(now, t0 + Duration::from_millis(900));
    match &d.failed[&id] {
        Error::Timeout {
            instance,
            command,
            waited,
        } => {
            assert_eq!((*instance, *command), (addr(2000), "offer"));
            assert_eq!(*waited, Duration::from_millis(900));
        }
        e => panic!("{e:?}"),
    }
    assert!(d.health.contains(&(addr(2000), false)));
    assert_eq!(c.instances().collect::<Vec<_>>(), [(addr(2000), false)]);
    assert_eq!(c.stats().timeouts, 2, "the offer and the start ping");
    // The call cannot continue; a new one finds no instance up.
    assert!(matches!(
        c.handle_command(Request::Query(QueryRequest::call("call-a")), now),
        Err(Error::InstanceDown { .. })
    ));
    assert!(matches!(
        c.handle_command(offer("call-b"), now),
        Err(Error::NoInstance)
    ));
}

#[test]
fn duplicate_unknown_and_misdirected_replies_are_dropped_and_counted() {
    let t0 = Instant::now();
    let mut c = started(&[2000, 2001], t0);
    let id = c.handle_command(offer("call-a"), t0).unwrap();
    let s = drain(&mut c).sent.remove(0);
    // From the other instance's address: not a reply to this request.
    let other = if s.to == addr(2000) {
        addr(2001)
    } else {
        addr(2000)
    };
    let mut dgram = format!("{} ", s.cookie).into_bytes();
    ok_sdp().encode_into(&mut dgram);
    c.handle_datagram(other, &dgram, t0);
    assert!(drain(&mut c).completed.is_empty());
    reply(&mut c, &s, ok_sdp(), t0);
    reply(&mut c, &s, ok_sdp(), t0);
    let d = drain(&mut c);
    assert_eq!(d.completed.len(), 1);
    assert!(d.completed.contains_key(&id));
    let unknown = Sent {
        cookie: "test_999".into(),
        ..s.clone()
    };
    reply(&mut c, &unknown, ok_sdp(), t0);
    let foreign = Sent {
        cookie: "someone-else_1".into(),
        ..s.clone()
    };
    reply(&mut c, &foreign, ok_sdp(), t0);
    c.handle_datagram(s.to, b"not an ng reply", t0);
    c.handle_datagram(s.to, b"test_1 d6:result", t0);
    assert!(drain(&mut c).completed.is_empty());
    let st = c.stats();
    assert_eq!(st.duplicates, 1);
    assert_eq!(st.unknown_cookies, 2);
    assert_eq!(st.malformed, 3);
}

#[test]
fn an_error_result_fails_the_request_with_rtpengines_reason() {
    let t0 = Instant::now();
    let mut c = started(&[2000], t0);
    let id = c
        .handle_command(Request::Query(QueryRequest::call("nope")), t0)
        .unwrap();
    let s = drain(&mut c).sent.remove(0);
    reply(
        &mut c,
        &s,
        dict([
            ("result", Value::str("error")),
            ("error-reason", Value::str("Unknown call-id")),
        ]),
        t0,
    );
    match &drain(&mut c).failed[&id] {
        Error::Rejected { command, reason } => {
            assert_eq!((*command, reason.as_str()), ("query", "Unknown call-id"));
        }
        e => panic!("{e:?}"),
    }
    // A reply without `result` is a protocol error.
    let id = c.handle_command(Request::Ping, t0).unwrap();
    let s = drain(&mut c).sent.remove(0);
    reply(&mut c, &s, dict([("x", Value::Int(1))]), t0);
    assert!(matches!(drain(&mut c).failed[&id], Error::Protocol(_)));
}

#[test]
fn a_calls_commands_follow_its_offer_and_new_calls_spread() {
    let t0 = Instant::now();
    let mut c = started(&[2000, 2001, 2002], t0);
    let mut per_instance: HashMap<SocketAddr, usize> = HashMap::new();
    for n in 0..300 {
        let call = format!("call-{n}@example.com");
        c.handle_command(offer(&call), t0).unwrap();
        let s = drain(&mut c).sent.remove(0);
        reply(&mut c, &s, ok_sdp(), t0);
        *per_instance.entry(s.to).or_default() += 1;
        assert_eq!(c.instance_of(&call), Some(s.to));
        let answer = SdpRequest::answer(&call, "from-1", "to-1", SDP).to_webrtc();
        for req in [
            Request::Answer(answer),
            Request::Query(QueryRequest::call(&call)),
            Request::Delete(DeleteRequest::call(&call)),
        ] {
            c.handle_command(req, t0).unwrap();
            let s2 = drain(&mut c).sent.remove(0);
            assert_eq!(s2.to, s.to, "{call}: {} went elsewhere", s2.command);
            assert_eq!(s2.call_id.as_deref(), Some(call.as_str()));
            reply(&mut c, &s2, dict([("result", Value::str("ok"))]), t0);
        }
        // Deleted: affinity forgotten.
        assert_eq!(c.instance_of(&call), None);
    }
    assert_eq!(c.calls(), 0);
    for port in [2000, 2001, 2002] {
        let n = per_instance[&addr(port)];
        assert!(
            (60..=140).contains(&n),
            "instance {port} took {n} of 300 calls"
        );
    }
    // The same Call-ID always hashes to the same instance.
    c.handle_command(offer("call-7@example.com"), t0).unwrap();
    let again = drain(&mut c).sent.remove(0);
    c.handle_command(offer("call-7@example.com"), t0).unwrap();
    assert_eq!(drain(&mut c).sent.remove(0).to, again.to);
}

#[test]
fn weights_share_new_calls() {
    let t0 = Instant::now();
    let mut cfg = config(&[2000, 2001]);
    cfg.instances[0].weight = 3;
    cfg.instances.push(InstanceConfig {
        addr: addr(2002),
        weight: 0,
    });
    let mut c = Client::new(cfg, t0);
    let mut heavy = 0;
    for n in 0..1000 {
        c.handle_command(offer(&format!("w-{n}")), t0).unwrap();
        let to = drain(&mut c).sent.remove(0).to;
        assert_ne!(to, addr(2002), "weight 0 takes no call while others are up");
        if to == addr(2000) {
            heavy += 1;
        }
    }
    assert!(
        (680..=820).contains(&heavy),
        "weight 3 of 4 took {heavy}/1000"
    );
}

#[test]
fn failover_new_calls_avoid_a_dead_instance_and_its_calls_fail_clearly() {
    let t0 = Instant::now();
    let mut c = started(&[2000, 2001], t0);
    // One call on each instance.
    let mut on: HashMap<SocketAddr, String> = HashMap::new();
    let mut n = 0;
    while on.len() < 2 {
        let call = format!("f-{n}");
        n += 1;
        c.handle_command(offer(&call), t0).unwrap();
        let s = drain(&mut c).sent.remove(0);
        reply(&mut c, &s, ok_sdp(), t0);
        on.entry(s.to).or_insert(call);
    }
    let dead = addr(2000);
    let dead_call = on[&dead].clone();
    // The dead instance stops answering: a query of its call times out.
    let id = c
        .handle_command(Request::Query(QueryRequest::call(&dead_call)), t0)
        .unwrap();
    let mut now = t0;
    let mut health = Vec::new();
    let mut failed = HashMap::new();
    for _ in 0..10 {
        now += Duration::from_millis(500);
        c.handle_timeout(now);
        let d = drain(&mut c);
        health.extend(d.health);
        failed.extend(d.failed);
        // The live one keeps answering its pings.
        for s in d.sent.iter().filter(|s| s.to != dead) {
            reply(&mut c, s, pong(), now);
        }
    }
    assert!(matches!(failed[&id], Error::Timeout { instance, .. } if instance == dead));
    assert_eq!(health, [(dead, false)]);
    // New calls all go to the other instance.
    for k in 0..50 {
        c.handle_command(offer(&format!("after-{k}")), now).unwrap();
        assert_eq!(drain(&mut c).sent.remove(0).to, addr(2001));
    }
    // The call on the dead instance fails at once, with a clear error, and nothing is sent.
    let answer = SdpRequest::answer(&dead_call, "from-1", "to-1", SDP);
    match c.handle_command(Request::Answer(answer), now) {
        Err(Error::InstanceDown { call_id, instance }) => {
            assert_eq!((call_id.as_str(), instance), (dead_call.as_str(), dead));
        }
        other => panic!("{other:?}"),
    }
    assert!(drain(&mut c).sent.is_empty());
    // Its delete fails the same way and forgets the call; the live call still works.
    assert!(matches!(
        c.handle_command(Request::Delete(DeleteRequest::call(&dead_call)), now),
        Err(Error::InstanceDown { .. })
    ));
    assert_eq!(c.instance_of(&dead_call), None);
    let live = on[&addr(2001)].clone();
    c.handle_command(Request::Query(QueryRequest::call(&live)), now)
        .unwrap();
    assert_eq!(drain(&mut c).sent.remove(0).to, addr(2001));
}

#[test]
fn health_pings_mark_an_instance_down_then_up_again() {
    let t0 = Instant::now();
    let mut cfg = config(&[2000]);
    cfg.ping_interval = Duration::from_secs(2);
    cfg.retries = 1;
    cfg.retransmit_interval = Duration::from_millis(250);
    let mut c = Client::new(cfg, t0);
    let mut events = Vec::new();
    let mut pings = Vec::new();
    let mut now = t0;
    // Run 20 virtual seconds: answering, then silent from 5 s, answering again from 11 s.
    while now < t0 + Duration::from_secs(20) {
        let next = c.poll_timeout().unwrap();
        assert!(next >= now, "deadlines never go backwards");
        now = next;
        let answering = !(now >= t0 + Duration::from_secs(5) && now < t0 + Duration::from_secs(11));
        c.handle_timeout(now);
        let d = drain(&mut c);
        for (inst, up) in d.health {
            events.push((inst, up, now - t0));
        }
        assert!(d.completed.is_empty() && d.failed.is_empty());
        for s in d.sent {
            assert_eq!(s.command, "ping");
            pings.push(now - t0);
            if answering {
                reply(&mut c, &s, pong(), now);
                for (inst, up) in drain(&mut c).health {
                    events.push((inst, up, now - t0));
                }
            }
        }
    }
    // Pings every 2 s; the 6 s ping is lost twice (6 s, 6.25 s) and times out at 6.5 s.
    assert_eq!(
        events,
        [
            (addr(2000), false, Duration::from_millis(6500)),
            (addr(2000), true, Duration::from_secs(12)),
        ]
    );
    assert!(pings.contains(&Duration::from_millis(6250)), "{pings:?}");
    assert_eq!(c.instances().collect::<Vec<_>>(), [(addr(2000), true)]);
}

#[test]
fn bounds_on_requests_in_flight_and_calls() {
    let t0 = Instant::now();
    let mut cfg = config(&[2000]);
    cfg.max_pending = 2;
    cfg.max_calls = 1;
    let mut c = Client::new(cfg, t0);
    c.handle_command(offer("a"), t0).unwrap();
    assert!(matches!(
        c.handle_command(offer("b"), t0),
        Err(Error::Limit(_))
    ));
    c.handle_command(Request::Ping, t0).unwrap();
    assert!(matches!(
        c.handle_command(Request::Ping, t0),
        Err(Error::Limit("requests in flight"))
    ));
    // A health ping due while requests fill every slot is skipped, not retried in a
    // busy loop: the next deadline moves on.
    let later = t0 + Duration::from_secs(1);
    c.handle_timeout(later);
    assert!(c.poll_timeout().unwrap() > later);
    // handle_command_to an unknown instance.
    assert!(matches!(
        c.handle_command_to(addr(9), Request::Ping, t0),
        Err(Error::NoInstance)
    ));
}

#[test]
fn cookies_are_unique_and_a_default_prefix_is_random() {
    let t0 = Instant::now();
    let a = Client::new(ClientConfig::new([addr(2000)]), t0);
    let b = Client::new(ClientConfig::new([addr(2000)]), t0);
    assert_ne!(a.cookie_prefix(), b.cookie_prefix());
    let mut spaced = config(&[2000]);
    spaced.cookie_prefix = Some("a b\tc".into());
    assert_eq!(Client::new(spaced, t0).cookie_prefix(), "abc");
    let mut c = Client::new(config(&[2000]), t0);
    let mut cookies = std::collections::HashSet::new();
    for n in 0..100 {
        c.handle_command(Request::Query(QueryRequest::call(format!("q{n}"))), t0)
            .unwrap();
        assert!(cookies.insert(drain(&mut c).sent.remove(0).cookie));
    }
}
