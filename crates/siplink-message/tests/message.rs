//! Behaviour of the message parser, the edit API, the builder and validation:
//! the RFC 3261 §24 example flows, header-name forms, list headers, framing of a
//! datagram, parse limits and error positions, §8.2.6 response building, header
//! injection, edits and the status code of every validation failure.

use siplink_message::headers::{Contacts, Via};
use siplink_message::uri::Host;
use siplink_message::{
    Error, HeaderName, Message, MessageBuilder, Method, ParseOptions, Rejection, Role,
    ValidationOptions,
};

// ----- helpers -----

/// Message text written with `\n` line ends, sent with CRLF.
fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

/// A header section (written with `\n`) followed by `body`.
fn with_body(head: &str, body: &[u8]) -> Vec<u8> {
    let mut v = crlf(head);
    v.extend_from_slice(body);
    v
}

fn parse(bytes: &[u8]) -> Message {
    Message::parse(bytes.to_vec()).unwrap_or_else(|e| {
        panic!(
            "must parse: {e}\n{}",
            String::from_utf8_lossy(bytes).replace('\r', "\\r")
        )
    })
}

/// An SDP offer of exactly `len` bytes (the RFC shows "(SDP not shown)" with a
/// Content-Length; the attribute line pads to it).
fn sdp(user: &str, host: &str, len: usize) -> Vec<u8> {
    let mut s = format!(
        "v=0\r\no={user} 2890844526 2890844526 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\n"
    );
    let pad = len - s.len() - "a=x:\r\n".len();
    s.push_str("a=x:");
    s.push_str(&"p".repeat(pad));
    s.push_str("\r\n");
    assert_eq!(s.len(), len);
    s.into_bytes()
}

fn opts(role: Role, supported: &[&str]) -> ValidationOptions {
    ValidationOptions {
        role,
        supported: supported.iter().map(|s| s.to_string()).collect(),
    }
}

fn branches(msg: &Message) -> Vec<String> {
    msg.via()
        .unwrap()
        .iter()
        .map(|v| v.branch().unwrap().to_string())
        .collect()
}

fn sip_host(h: &str) -> Host {
    Host::parse(h).unwrap()
}

/// A valid OPTIONS request with `extra` header lines (written with `\n`) before
/// Content-Length.
fn options(extra: &str) -> Vec<u8> {
    crlf(&format!(
        "OPTIONS sip:carol@chicago.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877
Max-Forwards: 70
To: <sip:carol@chicago.example.com>
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 63104 OPTIONS
{extra}Content-Length: 0

"
    ))
}

/// `options("")` without the line that starts with `prefix`.
fn options_without(prefix: &str) -> Vec<u8> {
    let text = String::from_utf8(options("")).unwrap();
    text.split_inclusive("\r\n")
        .filter(|l| !l.starts_with(prefix))
        .collect::<String>()
        .into_bytes()
}

fn syntax_offset(e: &Error) -> usize {
    match e {
        Error::Syntax { offset, .. }
        | Error::OutOfRange { offset, .. }
        | Error::InvalidContentLength { offset, .. } => *offset,
        other => panic!("expected an error with an offset, got {other:?}"),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

// ----- RFC 3261 §24.1: registration -----

const REGISTER_F1: &str = "REGISTER sip:registrar.biloxi.com SIP/2.0
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7
Max-Forwards: 70
To: Bob <sip:bob@biloxi.com>
From: Bob <sip:bob@biloxi.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: <sip:bob@192.0.2.4>
Expires: 7200
Content-Length: 0

";

const REGISTER_F2: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7
 ;received=192.0.2.4
To: Bob <sip:bob@biloxi.com>;tag=2493k59kd
From: Bob <sip:bob@biloxi.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: <sip:bob@192.0.2.4>
Expires: 7200
Content-Length: 0

";

#[test]
fn rfc3261_24_1_register_request() {
    let bytes = crlf(REGISTER_F1);
    let msg = parse(&bytes);
    assert!(msg.is_request());
    assert_eq!(msg.method(), Some(&Method::Register));
    assert_eq!(msg.version(), b"SIP/2.0");
    let ruri = msg.request_uri().unwrap().as_sip().unwrap();
    assert_eq!(ruri.host(), &sip_host("registrar.biloxi.com"));
    assert_eq!(ruri.user(), None);
    let via = msg.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.host, sip_host("bobspc.biloxi.com"));
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.branch(), Some("z9hG4bKnashds7"));
    assert!(via.has_magic_cookie());
    assert_eq!(msg.max_forwards(), Ok(Some(70)));
    let to = msg.to().unwrap();
    assert_eq!(to.display_name.as_deref(), Some("Bob"));
    assert_eq!(to.uri.as_str(), "sip:bob@biloxi.com");
    assert_eq!(to.tag(), None);
    let from = msg.from().unwrap();
    assert_eq!(from.tag(), Some("456248"));
    assert_eq!(msg.call_id(), Ok("843817637684230@998sdasdh09"));
    let cseq = msg.cseq().unwrap();
    assert_eq!((cseq.seq, &cseq.method), (1826, &Method::Register));
    let contacts = msg.contact().unwrap();
    assert_eq!(contacts.as_slice().len(), 1);
    assert_eq!(contacts.as_slice()[0].uri.as_str(), "sip:bob@192.0.2.4");
    assert_eq!(msg.expires(), Ok(Some(7200)));
    assert_eq!(msg.content_length(), Some(0));
    assert!(msg.body().is_empty());
    assert_eq!(msg.header_count(), 9);
    assert_eq!(msg.validate(), Ok(()));
    assert_eq!(msg.to_bytes(), bytes);
}

#[test]
fn rfc3261_24_1_register_response_and_built_reply() {
    let bytes = crlf(REGISTER_F2);
    let ok = parse(&bytes);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.reason(), Some(&b"OK"[..]));
    assert_eq!(ok.method(), None);
    // The folded line belongs to the Via value.
    assert_eq!(
        ok.header(HeaderName::Via),
        Some(
            &b"SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n ;received=192.0.2.4"[..]
        )
    );
    assert_eq!(ok.top_via().unwrap().received(), Some("192.0.2.4"));
    assert_eq!(ok.to().unwrap().tag(), Some("2493k59kd"));
    assert_eq!(ok.validate(), Ok(()));

    // The registrar's reply built from F1 carries the same dialog identifiers.
    let req = parse(&crlf(REGISTER_F1));
    let built = req
        .response_with_tag(200, Some("2493k59kd"))
        .header(HeaderName::Contact, "<sip:bob@192.0.2.4>")
        .header(HeaderName::Expires, 7200)
        .build()
        .unwrap();
    for name in [
        HeaderName::To,
        HeaderName::From,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        assert_eq!(built.header(name), ok.header(name), "{name}");
    }
    assert_eq!(built.top_via().unwrap().branch(), Some("z9hG4bKnashds7"));
    assert_eq!(built.expires(), Ok(Some(7200)));
}

// ----- RFC 3261 §24.2: session setup -----

fn invite_f1() -> Vec<u8> {
    with_body(
        "INVITE sip:bob@biloxi.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
Max-Forwards: 70
To: Bob <sip:bob@biloxi.com>
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.com>
Content-Type: application/sdp
Content-Length: 142

",
        &sdp("alice", "pc33.atlanta.com", 142),
    )
}

const TRYING_F2: &str = "SIP/2.0 100 Trying
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
 ;received=192.0.2.1
To: Bob <sip:bob@biloxi.com>
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Content-Length: 0

";

fn invite_f3() -> Vec<u8> {
    with_body(
        "INVITE sip:bob@biloxi.com SIP/2.0
Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
 ;received=192.0.2.1
Max-Forwards: 69
To: Bob <sip:bob@biloxi.com>
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.com>
Content-Type: application/sdp
Content-Length: 142

",
        &sdp("alice", "pc33.atlanta.com", 142),
    )
}

fn invite_f5() -> Vec<u8> {
    with_body(
        "INVITE sip:bob@192.0.2.4 SIP/2.0
Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bK4b43c2ff8.1
Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1
 ;received=192.0.2.2
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
 ;received=192.0.2.1
Max-Forwards: 68
To: Bob <sip:bob@biloxi.com>
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.com>
Content-Type: application/sdp
Content-Length: 142

",
        &sdp("alice", "pc33.atlanta.com", 142),
    )
}

const RINGING_F6: &str = "SIP/2.0 180 Ringing
Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bK4b43c2ff8.1
 ;received=192.0.2.3
Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1
 ;received=192.0.2.2
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
 ;received=192.0.2.1
To: Bob <sip:bob@biloxi.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
Contact: <sip:bob@192.0.2.4>
CSeq: 314159 INVITE
Content-Length: 0

";

const RINGING_F7: &str = "SIP/2.0 180 Ringing
Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1
 ;received=192.0.2.2
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
 ;received=192.0.2.1
To: Bob <sip:bob@biloxi.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
Contact: <sip:bob@192.0.2.4>
CSeq: 314159 INVITE
Content-Length: 0

";

fn ok_f12() -> Vec<u8> {
    with_body(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
 ;received=192.0.2.1
To: Bob <sip:bob@biloxi.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.4>
Content-Type: application/sdp
Content-Length: 131

",
        &sdp("bob", "192.0.2.4", 131),
    )
}

const ACK_F13: &str = "ACK sip:bob@192.0.2.4 SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds9
Max-Forwards: 70
To: Bob <sip:bob@biloxi.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 ACK
Content-Length: 0

";

const BYE_F14: &str = "BYE sip:alice@pc33.atlanta.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10
Max-Forwards: 70
From: Bob <sip:bob@biloxi.com>;tag=a6c85cf
To: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 231 BYE
Content-Length: 0

";

const OK_F15: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10
From: Bob <sip:bob@biloxi.com>;tag=a6c85cf
To: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 231 BYE
Content-Length: 0

";

#[test]
fn rfc3261_24_2_invite() {
    let bytes = invite_f1();
    let msg = parse(&bytes);
    assert_eq!(msg.method(), Some(&Method::Invite));
    assert_eq!(msg.request_uri().unwrap().as_str(), "sip:bob@biloxi.com");
    assert_eq!(branches(&msg), ["z9hG4bKnashds8"]);
    assert_eq!(msg.top_via().unwrap().port, None);
    assert_eq!(msg.max_forwards(), Ok(Some(70)));
    assert_eq!(msg.from().unwrap().display_name.as_deref(), Some("Alice"));
    assert_eq!(msg.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(msg.to().unwrap().tag(), None);
    assert_eq!(msg.call_id(), Ok("a84b4c76e66710"));
    assert_eq!(msg.cseq().unwrap().seq, 314159);
    assert_eq!(msg.cseq().unwrap().method, Method::Invite);
    assert_eq!(
        msg.contact().unwrap().as_slice()[0].uri.as_str(),
        "sip:alice@pc33.atlanta.com"
    );
    assert!(
        msg.content_type()
            .unwrap()
            .unwrap()
            .is("application", "sdp")
    );
    assert_eq!(msg.content_length(), Some(142));
    assert_eq!(&msg.body()[..], &sdp("alice", "pc33.atlanta.com", 142)[..]);
    assert_eq!(msg.trailing_bytes(), 0);
    for role in [Role::Uas, Role::Proxy, Role::Syntax] {
        assert_eq!(msg.validate_with(&opts(role, &[])), Ok(()));
    }
    assert_eq!(msg.to_bytes(), bytes);

    let f5 = parse(&invite_f5());
    assert_eq!(
        branches(&f5),
        [
            "z9hG4bK4b43c2ff8.1",
            "z9hG4bK77ef4c2312983.1",
            "z9hG4bKnashds8"
        ]
    );
    let received: Vec<_> = f5.via().unwrap().iter().map(Via::received).collect();
    assert_eq!(received, [None, Some("192.0.2.2"), Some("192.0.2.1")]);
    assert_eq!(f5.max_forwards(), Ok(Some(68)));
    assert_eq!(f5.request_uri().unwrap().as_str(), "sip:bob@192.0.2.4");
    assert_eq!(f5.validate(), Ok(()));
}

#[test]
fn rfc3261_24_2_proxy_forwarding_by_edits() {
    // The atlanta.com proxy turns F1 into F3: stamps `received` on the top Via,
    // adds its own Via on top and decrements Max-Forwards.
    let f1 = parse(&invite_f1());
    let f3 = parse(&invite_f3());
    let mut fwd = f1.clone();
    assert!(fwd.replace_first_value(
        HeaderName::Via,
        "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1",
    ));
    fwd.prepend_header(
        HeaderName::Via,
        "SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1",
    );
    let mf = f1.max_forwards().unwrap().unwrap() - 1;
    fwd.set_header(HeaderName::MaxForwards, mf.to_string());
    let fwd = fwd.reparse().unwrap();
    assert_eq!(fwd.via().unwrap(), f3.via().unwrap());
    assert_eq!(fwd.max_forwards(), f3.max_forwards());
    assert_eq!(fwd.body(), f3.body());
    assert_eq!(fwd.header_count(), f3.header_count());
    for (a, b) in fwd.headers().zip(f3.headers()) {
        assert_eq!(a.name(), b.name());
        if a.name() != HeaderName::Via {
            assert_eq!(a.value(), b.value(), "{}", a.name());
        }
    }
    assert_eq!(fwd.validate_with(&opts(Role::Proxy, &[])), Ok(()));

    // And a 180 going back: F6 minus its top Via is F7.
    let mut back = parse(&crlf(RINGING_F6));
    assert!(back.remove_first_value(HeaderName::Via));
    assert_eq!(back.to_bytes(), crlf(RINGING_F7));
}

#[test]
fn rfc3261_24_2_responses() {
    let trying = parse(&crlf(TRYING_F2));
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.reason(), Some(&b"Trying"[..]));
    assert_eq!(trying.to().unwrap().tag(), None);
    assert_eq!(trying.top_via().unwrap().received(), Some("192.0.2.1"));
    assert_eq!(trying.validate(), Ok(()));

    let ringing = parse(&crlf(RINGING_F6));
    assert_eq!(ringing.status(), Some(180));
    assert_eq!(ringing.reason(), Some(&b"Ringing"[..]));
    assert_eq!(ringing.via().unwrap().len(), 3);
    assert_eq!(ringing.top_via().unwrap().received(), Some("192.0.2.3"));
    assert_eq!(ringing.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(
        ringing.contact().unwrap().as_slice()[0].uri.as_str(),
        "sip:bob@192.0.2.4"
    );
    assert_eq!(ringing.validate(), Ok(()));

    let ok = parse(&ok_f12());
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.content_length(), Some(131));
    assert_eq!(&ok.body()[..], &sdp("bob", "192.0.2.4", 131)[..]);
    assert_eq!(ok.cseq().unwrap().method, Method::Invite);
    assert_eq!(ok.validate(), Ok(()));
}

#[test]
fn rfc3261_24_2_response_to_folded_request() {
    // The 180 Bob builds from F5 (whose Via lines are folded) has F6's Via
    // values, in order, and his tag.
    let ringing = parse(&crlf(RINGING_F6));
    let f5 = parse(&invite_f5());
    let built = f5
        .response_with_tag(180, Some("a6c85cf"))
        .header(HeaderName::Contact, "<sip:bob@192.0.2.4>")
        .build()
        .unwrap();
    assert_eq!(branches(&built), branches(&ringing));
    assert_eq!(built.to().unwrap(), ringing.to().unwrap());
    assert_eq!(built.from().unwrap(), ringing.from().unwrap());
    assert_eq!(built.cseq().unwrap(), ringing.cseq().unwrap());
    assert_eq!(built.reason(), Some(&b"Ringing"[..]));
}

#[test]
fn rfc3261_24_2_ack_bye() {
    let ack = parse(&crlf(ACK_F13));
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    assert_eq!(ack.cseq().unwrap().seq, 314159);
    assert_eq!(ack.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKnashds9"));
    assert_eq!(ack.validate(), Ok(()));

    let bye = parse(&crlf(BYE_F14));
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(
        bye.request_uri().unwrap().as_str(),
        "sip:alice@pc33.atlanta.com"
    );
    let via = bye.top_via().unwrap();
    assert_eq!(via.host, sip_host("192.0.2.4"));
    assert_eq!(via.branch(), Some("z9hG4bKnashds10"));
    assert_eq!(bye.from().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(bye.to().unwrap().tag(), Some("1928301774"));
    assert_eq!(bye.cseq().unwrap().seq, 231);
    assert_eq!(bye.validate(), Ok(()));

    let ok = parse(&crlf(OK_F15));
    let built = bye.response(200).build().unwrap();
    // The To already has a tag: it is copied as is, not given another one.
    assert_eq!(built.to_bytes(), ok.to_bytes());
}

// ----- header names -----

#[test]
fn compact_forms_and_case_insensitive_names() {
    let bytes = crlf(
        "INVITE sip:bob@biloxi.com SIP/2.0
v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8
VIA: SIP/2.0/TCP second.example.com;branch=z9hG4bK2
max-FORWARDS: 70
t: Bob <sip:bob@biloxi.com>
F: Alice <sip:alice@atlanta.com>;tag=1928301774
i: a84b4c76e66710
cseq: 314159 INVITE
m: <sip:alice@pc33.atlanta.com>
k: 100rel
S: lunch
c: text/plain
L: 4

body",
    );
    let msg = parse(&bytes);
    assert_eq!(branches(&msg), ["z9hG4bKnashds8", "z9hG4bK2"]);
    assert_eq!(msg.count(HeaderName::Via), 2);
    assert_eq!(msg.max_forwards(), Ok(Some(70)));
    assert_eq!(msg.to().unwrap().display_name.as_deref(), Some("Bob"));
    assert_eq!(msg.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(msg.call_id(), Ok("a84b4c76e66710"));
    assert_eq!(msg.cseq().unwrap().seq, 314159);
    assert_eq!(msg.contact().unwrap().as_slice().len(), 1);
    assert_eq!(msg.supported().unwrap(), ["100rel"]);
    assert_eq!(msg.header(HeaderName::Subject), Some(&b"lunch"[..]));
    assert!(msg.content_type().unwrap().unwrap().is("text", "plain"));
    assert_eq!(msg.content_length(), Some(4));
    assert_eq!(&msg.body()[..], b"body");
    // Names are kept as written.
    let raw: Vec<_> = msg.headers().map(|h| h.raw_name().to_vec()).collect();
    assert_eq!(raw[0], b"v");
    assert_eq!(raw[2], b"max-FORWARDS");
    assert_eq!(msg.validate(), Ok(()));
    assert_eq!(msg.to_bytes(), bytes);

    for (raw, name) in [
        (&b"v"[..], HeaderName::Via),
        (b"V", HeaderName::Via),
        (b"call-id", HeaderName::CallId),
        (b"CALL-ID", HeaderName::CallId),
        (b"l", HeaderName::ContentLength),
        (b"x-v", HeaderName::Other),
    ] {
        assert_eq!(HeaderName::from_bytes(raw), name, "{raw:?}");
    }
    // HCOLON allows whitespace before the colon.
    let msg = parse(&options("X-Spaced \t: yes\n"));
    assert_eq!(
        msg.header_values_named("x-spaced").collect::<Vec<_>>(),
        [b"yes"]
    );
}

#[test]
fn list_header_on_several_lines_is_a_comma_list() {
    let lines = crlf(
        "OPTIONS sip:carol@chicago.example.com SIP/2.0
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1
Via: SIP/2.0/UDP b.example.com;branch=z9hG4bK2
Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3
Route: <sip:p1.example.com;lr>
Route: <sip:p2.example.com;lr>
Contact: <sip:a@a.example.com>;q=0.5
Contact: \"B, the second\" <sip:b@b.example.com>;expires=60
Max-Forwards: 70
To: <sip:carol@chicago.example.com>
From: <sip:alice@example.com>;tag=1
Call-ID: x
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    let list = crlf(
        "OPTIONS sip:carol@chicago.example.com SIP/2.0
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , SIP/2.0/UDP b.example.com;branch=z9hG4bK2,
 SIP/2.0/UDP c.example.com;branch=z9hG4bK3
Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>
Contact: <sip:a@a.example.com>;q=0.5, \"B, the second\" <sip:b@b.example.com>;expires=60
Max-Forwards: 70
To: <sip:carol@chicago.example.com>
From: <sip:alice@example.com>;tag=1
Call-ID: x
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    let (a, b) = (parse(&lines), parse(&list));
    assert_eq!(a.via().unwrap(), b.via().unwrap());
    assert_eq!(a.via().unwrap().len(), 3);
    assert_eq!(a.route().unwrap(), b.route().unwrap());
    assert_eq!(a.route().unwrap().len(), 2);
    assert!(
        a.route()
            .unwrap()
            .iter()
            .all(|r| r.uri.as_sip().unwrap().lr())
    );
    assert_eq!(a.contact().unwrap(), b.contact().unwrap());
    let c = b.contact().unwrap().as_slice();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].q(), Some(0.5));
    assert_eq!(c[1].display_name.as_deref(), Some("B, the second"));
    assert_eq!(c[1].expires(), Some(60));
    // One item per line from header_values.
    assert_eq!(a.header_values(HeaderName::Via).count(), 3);
    assert_eq!(b.header_values(HeaderName::Via).count(), 1);
    assert_eq!(a.validate(), Ok(()));
    assert_eq!(b.validate(), Ok(()));
}

#[test]
fn contact_star() {
    let msg = parse(&crlf(
        &REGISTER_F1
            .replace("Contact: <sip:bob@192.0.2.4>", "Contact: *")
            .replace("Expires: 7200", "Expires: 0"),
    ));
    assert_eq!(msg.contact(), Ok(&Contacts::Star));
    assert!(msg.contact().unwrap().as_slice().is_empty());
    assert_eq!(msg.validate(), Ok(()));
    let mixed = parse(&crlf(&REGISTER_F1.replace(
        "Contact: <sip:bob@192.0.2.4>",
        "Contact: *, <sip:bob@192.0.2.4>",
    )));
    assert!(mixed.contact().is_err());
    assert_eq!(mixed.validate().unwrap_err().status, 400);
}

#[test]
fn unknown_headers_are_kept_in_order() {
    let bytes =
        options("X-B: 2\nx-a: first, with comma\nP-Custom: \"q\"  \nX-A:  second\nX-Empty:\n");
    let msg = parse(&bytes);
    let names: Vec<_> = msg
        .headers()
        .filter(|h| h.name() == HeaderName::Other)
        .map(|h| (h.raw_name().to_vec(), h.value().to_vec()))
        .collect();
    let expect: Vec<(Vec<u8>, Vec<u8>)> = [
        ("X-B", "2"),
        ("x-a", "first, with comma"),
        ("P-Custom", "\"q\""),
        ("X-A", "second"),
        ("X-Empty", ""),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(names, expect);
    assert_eq!(
        msg.header_values_named("X-a").collect::<Vec<_>>(),
        [&b"first, with comma"[..], b"second"]
    );
    assert_eq!(msg.count(HeaderName::Other), 5);
    assert_eq!(msg.validate(), Ok(()));
    // An edit elsewhere keeps them byte for byte and in place.
    let mut edited = msg.clone();
    edited.set_header(HeaderName::MaxForwards, "69");
    let out = edited.to_bytes();
    let expected = String::from_utf8(bytes)
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 69");
    assert_eq!(out, expected.as_bytes());
}

// ----- datagram framing -----

#[test]
fn leading_crlfs_are_skipped() {
    let msg = options("");
    let mut bytes = b"\r\n\r\n\r\n".to_vec();
    bytes.extend_from_slice(&msg);
    let parsed = parse(&bytes);
    assert_eq!(parsed.method(), Some(&Method::Options));
    assert_eq!(parsed.to_bytes(), msg);
    assert_eq!(parsed.validate(), Ok(()));
    // A lone LF is not a leading CRLF.
    let mut bad = b"\n".to_vec();
    bad.extend_from_slice(&msg);
    assert!(Message::parse(bad).is_err());
}

#[test]
fn trailing_datagram_bytes_are_ignored() {
    let mut bytes = crlf(
        "MESSAGE sip:bob@biloxi.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKm1
Max-Forwards: 70
To: <sip:bob@biloxi.com>
From: <sip:alice@atlanta.com>;tag=1
Call-ID: m1
CSeq: 1 MESSAGE
Content-Type: text/plain
Content-Length: 5

",
    );
    let len = bytes.len();
    bytes.extend_from_slice(b"hello, and some junk\r\n\0");
    let msg = parse(&bytes);
    assert_eq!(&msg.body()[..], b"hello");
    assert_eq!(msg.trailing_bytes(), bytes.len() - len - 5);
    assert_eq!(msg.to_bytes(), bytes[..len + 5]);
    assert_eq!(msg.validate(), Ok(()));
    // Edits never bring the junk back.
    let mut edited = msg.clone();
    edited.append_extension_header("X-Edit", "1");
    assert!(!edited.to_bytes().ends_with(b"junk\r\n\0"));
    assert!(edited.to_bytes().ends_with(b"\r\n\r\nhello"));

    // Without Content-Length the rest of the datagram is the body.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let no_cl = text.replace("Content-Length: 5\r\n", "");
    let msg = parse(no_cl.as_bytes());
    assert_eq!(&msg.body()[..], b"hello, and some junk\r\n\0");
    assert_eq!(msg.content_length(), None);
    assert_eq!(msg.trailing_bytes(), 0);
}

// ----- parse options and errors -----

#[test]
fn parse_option_limits() {
    let bytes = options("");
    let tight = ParseOptions {
        max_size: bytes.len() - 1,
        ..ParseOptions::default()
    };
    let e = Message::parse_with(bytes.clone(), &tight).unwrap_err();
    assert_eq!(
        e,
        Error::TooLarge {
            size: bytes.len(),
            limit: bytes.len() - 1
        }
    );
    assert_eq!(e.status_code(), 513);
    assert_eq!(Rejection::from(e).status, 513);
    let exact = ParseOptions {
        max_size: bytes.len(),
        ..ParseOptions::default()
    };
    assert!(Message::parse_with(bytes.clone(), &exact).is_ok());

    // The default limit is the largest UDP payload.
    let big = options(&format!("X-Pad: {}\n", "a".repeat(65_536)));
    assert!(matches!(
        Message::parse(big),
        Err(Error::TooLarge { limit: 65_535, .. })
    ));

    let n = parse(&bytes).header_count();
    let few = ParseOptions {
        max_headers: n - 1,
        ..ParseOptions::default()
    };
    assert_eq!(
        Message::parse_with(bytes.clone(), &few).unwrap_err(),
        Error::TooManyHeaders { limit: n - 1 }
    );
    let enough = ParseOptions {
        max_headers: n,
        ..ParseOptions::default()
    };
    assert!(Message::parse_with(bytes.clone(), &enough).is_ok());
    let many = options(&"X-H: 1\n".repeat(300));
    assert_eq!(
        Message::parse(many).unwrap_err(),
        Error::TooManyHeaders { limit: 256 }
    );

    let stream = ParseOptions {
        require_content_length: true,
        ..ParseOptions::default()
    };
    let no_cl = options_without("Content-Length");
    assert_eq!(
        Message::parse_with(no_cl.clone(), &stream).unwrap_err(),
        Error::MissingContentLength
    );
    assert!(Message::parse_with(no_cl, &ParseOptions::default()).is_ok());
    // Compact form counts.
    let compact = String::from_utf8(options(""))
        .unwrap()
        .replace("Content-Length: 0", "l: 0");
    assert!(Message::parse_with(compact.into_bytes(), &stream).is_ok());
}

#[test]
fn framing_errors() {
    // Header section not terminated.
    let bytes = options("");
    assert_eq!(
        Message::parse(bytes[..bytes.len() - 2].to_vec()).unwrap_err(),
        Error::Incomplete
    );
    // Body shorter than Content-Length.
    let short = String::from_utf8(options(""))
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 10")
        + "abc";
    assert_eq!(
        Message::parse(short.into_bytes()).unwrap_err(),
        Error::TruncatedBody {
            declared: 10,
            available: 3
        }
    );
    // Two different Content-Length values; the same value twice is fine.
    let two = options("Content-Length: 1\n");
    let e = Message::parse(two.clone()).unwrap_err();
    assert!(matches!(e, Error::InvalidContentLength { .. }), "{e:?}");
    assert_eq!(syntax_offset(&e), find(&two, b"Content-Length: 0") + 16);
    assert!(Message::parse(options("Content-Length: 0\n")).is_ok());
    let bad = String::from_utf8(options(""))
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 0x1");
    let e = Message::parse(bad.clone().into_bytes()).unwrap_err();
    assert_eq!(syntax_offset(&e), find(bad.as_bytes(), b"0x1"));
}

#[test]
fn error_offsets_point_at_the_fault() {
    // A bad header name: at its first byte.
    let bytes = options("@Bad: x\n");
    let e = Message::parse(bytes.clone()).unwrap_err();
    assert_eq!(syntax_offset(&e), find(&bytes, b"@Bad"), "{e}");
    // A space inside a name: at the byte where ':' was expected.
    let bytes = options("Bad Name: x\n");
    let e = Message::parse(bytes.clone()).unwrap_err();
    assert_eq!(syntax_offset(&e), find(&bytes, b"Name: x"), "{e}");
    // No colon at all.
    let bytes = options("NoColon\n");
    let e = Message::parse(bytes.clone()).unwrap_err();
    assert_eq!(syntax_offset(&e), find(&bytes, b"NoColon") + 7, "{e}");
    // A bare LF ends a header line: at the LF.
    let mut bytes = options("");
    let at = find(&bytes, b"Call-ID: a84b4c76e66710\r\n") + 23;
    bytes.remove(at);
    let e = Message::parse(bytes.clone()).unwrap_err();
    assert_eq!(syntax_offset(&e), at, "{e}");
    // The start line.
    let e = Message::parse(crlf("INV@TE sip:a@b SIP/2.0\nContent-Length: 0\n\n")).unwrap_err();
    assert_eq!(syntax_offset(&e), 0, "{e}");
    let e = Message::parse(crlf("INVITE sip:a@b SIP/2.x\nContent-Length: 0\n\n")).unwrap_err();
    assert_eq!(syntax_offset(&e), 15, "{e}");
    let e = Message::parse(crlf("SIP/2.0 20 OK\nContent-Length: 0\n\n")).unwrap_err();
    assert_eq!(syntax_offset(&e), 8, "{e}");
    let e = Message::parse(crlf("SIP/2.0 700 Odd\nContent-Length: 0\n\n")).unwrap_err();
    assert!(matches!(e, Error::OutOfRange { offset: 8, .. }), "{e:?}");
    // Typed views point into the message.
    let bytes = options("Expires: 12x\n");
    let msg = parse(&bytes);
    let e = msg.expires().unwrap_err();
    assert_eq!(
        syntax_offset(&e),
        find(&bytes, b"x\r\nContent-Length"),
        "{e}"
    );
    let bytes = String::from_utf8(options(""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 256");
    let msg = parse(bytes.as_bytes());
    let e = msg.max_forwards().unwrap_err();
    assert!(matches!(e, Error::OutOfRange { .. }), "{e:?}");
    assert_eq!(syntax_offset(&e), find(bytes.as_bytes(), b"256"));
    let bytes = String::from_utf8(options(""))
        .unwrap()
        .replace("CSeq: 63104 OPTIONS", "CSeq: 63104OPTIONS");
    let msg = parse(bytes.as_bytes());
    let e = msg.cseq().unwrap_err();
    assert_eq!(
        syntax_offset(&e),
        find(bytes.as_bytes(), b"OPTIONS\r\n"),
        "{e}"
    );
    assert_eq!(msg.validate().unwrap_err().status, 400);
    let bytes = String::from_utf8(options(""))
        .unwrap()
        .replace("branch=z9hG4bKhjhs8ass877", "branch=z9hG4bK;;");
    let msg = parse(bytes.as_bytes());
    let e = msg.via().unwrap_err();
    assert_eq!(syntax_offset(&e), find(bytes.as_bytes(), b";;") + 1, "{e}");
}

#[test]
fn error_offsets_count_leading_crlfs() {
    // Leading CRLFs are skipped (RFC 3261 §7.5), but an offset must still point
    // at the fault in the bytes handed to `parse`.
    let mut bytes = b"\r\n\r\n".to_vec();
    bytes.extend_from_slice(&options("@Bad: x\n"));
    let e = Message::parse(bytes.clone()).unwrap_err();
    assert_eq!(syntax_offset(&e), find(&bytes, b"@Bad"), "{e}");
}

// ----- building responses (RFC 3261 §8.2.6) -----

fn invite_for_responses() -> Message {
    parse(&crlf(
        "INVITE sip:bob@biloxi.com SIP/2.0
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2
Record-Route: <sip:p1.example.com;lr>
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1
Max-Forwards: 68
To: Bob <sip:bob@biloxi.com>
From: Alice <sip:alice@atlanta.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Timestamp: 54.2 0.5
X-Custom: not copied
Contact: <sip:alice@pc33.atlanta.com>
Content-Length: 0

",
    ))
}

#[test]
fn response_building_copies_per_8_2_6() {
    let req = invite_for_responses();
    let ringing = req.response(180).build().unwrap();
    assert_eq!(ringing.status(), Some(180));
    assert_eq!(ringing.reason(), Some(&b"Ringing"[..]));
    assert_eq!(
        branches(&ringing),
        ["z9hG4bKp1", "z9hG4bKp2", "z9hG4bKnashds8"]
    );
    // Via lines are copied as they are, in order.
    assert_eq!(
        ringing.header_values(HeaderName::Via).collect::<Vec<_>>(),
        req.header_values(HeaderName::Via).collect::<Vec<_>>()
    );
    assert_eq!(ringing.from().unwrap(), req.from().unwrap());
    assert_eq!(ringing.call_id(), req.call_id());
    assert_eq!(ringing.cseq(), req.cseq());
    let to = ringing.to().unwrap();
    assert_eq!(to.uri, req.to().unwrap().uri);
    assert_eq!(to.display_name.as_deref(), Some("Bob"));
    let tag = to.tag().expect("a To tag on a non-100 response");
    assert!(tag.len() >= 8, "{tag}");
    // A fresh random tag each time.
    let again = req.response(180).build().unwrap();
    assert_ne!(again.to().unwrap().tag(), Some(tag));
    // Timestamp only on 100; extension headers, Max-Forwards, Contact not copied.
    assert_eq!(ringing.count(HeaderName::Timestamp), 0);
    assert_eq!(ringing.count(HeaderName::MaxForwards), 0);
    assert_eq!(ringing.count(HeaderName::Contact), 0);
    assert_eq!(ringing.header_values_named("X-Custom").count(), 0);
    assert_eq!(ringing.content_length(), Some(0));
    assert_eq!(ringing.validate(), Ok(()));

    let trying = req.response(100).build().unwrap();
    assert_eq!(trying.reason(), Some(&b"Trying"[..]));
    assert_eq!(trying.to().unwrap().tag(), None);
    assert_eq!(trying.header(HeaderName::Timestamp), Some(&b"54.2 0.5"[..]));
    assert_eq!(branches(&trying), branches(&ringing));

    let ok = req.response_with_tag(200, Some("bobtag1")).build().unwrap();
    assert_eq!(ok.to().unwrap().tag(), Some("bobtag1"));
    assert_eq!(
        ok.header(HeaderName::To),
        Some(&b"Bob <sip:bob@biloxi.com>;tag=bobtag1"[..])
    );
    // An explicit tag is not used on a 100 either.
    let trying = req.response_with_tag(100, Some("x")).build().unwrap();
    assert_eq!(trying.to().unwrap().tag(), None);

    // Reason phrases: default table, custom with line breaks removed.
    assert_eq!(
        MessageBuilder::response(486)
            .to_bytes()
            .unwrap()
            .split(|&c| c == b'\r')
            .next(),
        Some(&b"SIP/2.0 486 Busy Here"[..])
    );
    let r = MessageBuilder::response_with_reason(200, "Fine\r\nVia: injected")
        .build()
        .unwrap();
    assert_eq!(r.reason(), Some(&b"FineVia: injected"[..]));
    assert_eq!(r.count(HeaderName::Via), 0);
}

#[test]
fn builder_refuses_line_breaks() {
    let base = || {
        MessageBuilder::request(Method::Options, "sip:a@example.com")
            .header(HeaderName::Via, "SIP/2.0/UDP h.example.com;branch=z9hG4bK1")
            .header(HeaderName::CallId, "c1")
    };
    assert!(base().build().is_ok());
    for value in [
        "x\r\nVia: evil",
        "x\nVia: evil",
        "x\rVia: evil",
        "x\r\n injected-fold",
    ] {
        assert!(
            base().header(HeaderName::Subject, value).build().is_err(),
            "header {value:?}"
        );
        assert!(
            base()
                .header_bytes(HeaderName::Subject, value.as_bytes().to_vec())
                .build()
                .is_err(),
            "header_bytes {value:?}"
        );
        assert!(
            base().extension_header("X-Test", value).build().is_err(),
            "extension_header {value:?}"
        );
        assert!(
            base()
                .header(HeaderName::Subject, value)
                .to_bytes()
                .is_err(),
            "to_bytes {value:?}"
        );
    }
    // Header names must be tokens.
    for name in ["X-Bad Name", "X-Bad:", "", "X-Bad\r\nVia"] {
        assert!(
            base().extension_header(name, "v").build().is_err(),
            "name {name:?}"
        );
    }
    // Content-Length comes from the body, whatever the caller says.
    let m = base()
        .header(HeaderName::ContentLength, 99)
        .body("text/plain", &b"hi"[..])
        .build()
        .unwrap();
    assert_eq!(m.content_length(), Some(2));
    assert_eq!(m.count(HeaderName::ContentLength), 1);
    assert_eq!(&m.body()[..], b"hi");
}

#[test]
fn builder_refuses_line_breaks_in_the_request_uri() {
    // The Request-URI is written into the start line: a line break there would
    // inject headers just like one in a header value.
    let b = MessageBuilder::request(
        Method::Options,
        "sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP evil.example.com;branch=z9hG4bKevil\r\nX-Rest:",
    )
    .header(HeaderName::Via, "SIP/2.0/UDP h.example.com;branch=z9hG4bK1");
    match b.build() {
        Err(_) => {}
        Ok(m) => panic!(
            "request URI with CRLF accepted; Via values: {:?}",
            m.header_values(HeaderName::Via)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
        ),
    }
}

// ----- edits -----

#[test]
fn set_request_uri() {
    let f1 = parse(&invite_f1());
    let mut msg = f1.clone();
    assert!(msg.set_request_uri("sip:bob@192.0.2.4;transport=udp"));
    assert!(msg.is_edited());
    let out = msg.to_bytes();
    assert!(out.starts_with(b"INVITE sip:bob@192.0.2.4;transport=udp SIP/2.0\r\nVia: "));
    // Everything after the start line is untouched.
    let old = f1.to_bytes();
    let old_rest = &old[find(&old, b"\r\n") + 2..];
    let new_rest = &out[find(&out, b"\r\n") + 2..];
    assert_eq!(new_rest, old_rest);
    assert_eq!(
        msg.request_uri().unwrap().as_str(),
        "sip:bob@192.0.2.4;transport=udp"
    );
    assert_eq!(msg.method(), Some(&Method::Invite));
    let re = msg.reparse().unwrap();
    assert_eq!(
        re.request_uri()
            .unwrap()
            .as_sip()
            .unwrap()
            .transport()
            .as_deref(),
        Some("udp")
    );
    assert_eq!(re.validate(), Ok(()));
    // A response has no Request-URI.
    let mut resp = parse(&crlf(OK_F15));
    assert!(!resp.set_request_uri("sip:x@example.com"));
    assert!(!resp.is_edited());
}

#[test]
fn set_request_uri_keeps_the_version() {
    // The edited message still says SIP/2.0, before and after re-parsing.
    let mut msg = parse(&invite_f1());
    msg.set_request_uri("sip:bob@192.0.2.4");
    assert_eq!(msg.version(), b"SIP/2.0");
    assert_eq!(msg.validate(), Ok(()));
}

#[test]
fn set_request_uri_keeps_an_extension_method() {
    let bytes = String::from_utf8(options(""))
        .unwrap()
        .replace("OPTIONS", "FOOBAR");
    let mut msg = parse(bytes.as_bytes());
    assert_eq!(msg.method().unwrap().as_str(), "FOOBAR");
    assert!(msg.method().unwrap().is_extension());
    msg.set_request_uri("sip:x@example.com");
    let re = msg.reparse().unwrap();
    assert_eq!(re.method().unwrap().as_str(), "FOOBAR");
    assert_eq!(re.cseq().unwrap().method.as_str(), "FOOBAR");
    assert_eq!(re.validate(), Ok(()));
}

#[test]
fn set_body_updates_content_length() {
    let mut msg = parse(&options(""));
    msg.set_body(Some("application/sdp"), &b"v=0\r\n"[..]);
    assert_eq!(msg.content_length(), Some(5));
    assert_eq!(&msg.body()[..], b"v=0\r\n");
    let out = msg.to_bytes();
    assert!(out.ends_with(b"Content-Length: 5\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"));
    let re = msg.reparse().unwrap();
    assert_eq!(re.content_length(), Some(5));
    assert_eq!(&re.body()[..], b"v=0\r\n");
    assert!(re.content_type().unwrap().unwrap().is("application", "sdp"));
    assert_eq!(re.count(HeaderName::ContentLength), 1);

    // Replacing a body with a shorter one, compact Content-Length included.
    let mut msg = parse(&with_body(
        "MESSAGE sip:bob@biloxi.com SIP/2.0
Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1
l: 11
Max-Forwards: 70
To: <sip:bob@biloxi.com>
From: <sip:alice@atlanta.com>;tag=1
Call-ID: m1
CSeq: 1 MESSAGE
c: text/plain

",
        b"hello world",
    ));
    assert_eq!(msg.content_length(), Some(11));
    msg.set_body(None, &b"\0\r\n"[..]);
    let re = msg.reparse().unwrap();
    assert_eq!(&re.body()[..], b"\0\r\n");
    assert_eq!(re.content_length(), Some(3));
    assert_eq!(re.count(HeaderName::ContentLength), 1);
    assert!(re.content_type().unwrap().unwrap().is("text", "plain"));
    assert_eq!(re.validate(), Ok(()));
    // An empty body.
    msg.set_body(None, bytes::Bytes::new());
    let re = msg.reparse().unwrap();
    assert!(re.body().is_empty());
    assert_eq!(re.content_length(), Some(0));
}

#[test]
fn remove_and_replace_first_value() {
    let bytes = options("Route: <sip:p1.example.com;lr>\n");
    let text = String::from_utf8(bytes).unwrap().replace(
        "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877",
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com;branch=z9hG4bKb\r\nVia: SIP/2.0/UDP c.example.com;branch=z9hG4bKc",
    );
    let msg = parse(text.as_bytes());
    assert_eq!(branches(&msg), ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]);

    let mut m = msg.clone();
    assert!(m.remove_first_value(HeaderName::Via));
    let expected = text.replace(
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com",
        "Via: SIP/2.0/UDP b.example.com",
    );
    assert_eq!(m.to_bytes(), expected.as_bytes());
    assert_eq!(branches(&m), ["z9hG4bKb", "z9hG4bKc"]);
    assert!(m.remove_first_value(HeaderName::Via));
    assert_eq!(branches(&m), ["z9hG4bKc"]);
    assert_eq!(m.count(HeaderName::Via), 1);
    assert!(m.remove_first_value(HeaderName::Via));
    assert_eq!(m.count(HeaderName::Via), 0);
    assert!(!m.remove_first_value(HeaderName::Via));
    assert_eq!(m.validate().unwrap_err().status, 400);
    // A single-valued line goes away entirely.
    let mut m = msg.clone();
    assert!(m.remove_first_value(HeaderName::Route));
    assert_eq!(
        m.to_bytes(),
        text.replace("Route: <sip:p1.example.com;lr>\r\n", "")
            .as_bytes()
    );
    // Nothing to remove: not edited.
    let mut m = msg.clone();
    assert!(!m.remove_first_value(HeaderName::RecordRoute));
    assert!(!m.is_edited());

    let mut m = msg.clone();
    assert!(m.replace_first_value(
        HeaderName::Via,
        "SIP/2.0/UDP a.example.com;branch=z9hG4bKa;received=192.0.2.9;rport=5062"
    ));
    assert_eq!(branches(&m), ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]);
    let top = m.top_via().unwrap();
    assert_eq!(top.received(), Some("192.0.2.9"));
    assert_eq!(top.rport(), Some(Some(5062)));
    assert!(!m.replace_first_value(HeaderName::Path, "<sip:x>"));
}

#[test]
fn set_prepend_append_remove_header() {
    let bytes =
        options("Route: <sip:p1.example.com;lr>\nX-Mid: m\nRoute: <sip:p2.example.com;lr>\n");
    let text = String::from_utf8(bytes).unwrap();
    let msg = parse(text.as_bytes());

    // set_header: one line at the first one's place.
    let mut m = msg.clone();
    m.set_header(HeaderName::Route, "<sip:only.example.com;lr>");
    let expected = text
        .replace(
            "Route: <sip:p1.example.com;lr>",
            "Route: <sip:only.example.com;lr>",
        )
        .replace("Route: <sip:p2.example.com;lr>\r\n", "");
    assert_eq!(m.to_bytes(), expected.as_bytes());
    assert_eq!(m.route().unwrap().len(), 1);
    // set_header of an absent header appends it.
    let mut m = msg.clone();
    m.set_header(HeaderName::Subject, "hi");
    assert_eq!(
        m.to_bytes(),
        text.replace(
            "Content-Length: 0\r\n",
            "Content-Length: 0\r\nSubject: hi\r\n"
        )
        .as_bytes()
    );

    // prepend_header: before the first line of the header, or first of all.
    let mut m = msg.clone();
    m.prepend_header(HeaderName::Route, "<sip:p0.example.com;lr>");
    let uris: Vec<_> = m
        .route()
        .unwrap()
        .iter()
        .map(|r| r.uri.to_string())
        .collect();
    assert_eq!(
        uris,
        [
            "sip:p0.example.com;lr",
            "sip:p1.example.com;lr",
            "sip:p2.example.com;lr"
        ]
    );
    let mut m = msg.clone();
    m.prepend_header(HeaderName::RecordRoute, "<sip:rr.example.com;lr>");
    assert_eq!(m.headers().next().unwrap().name(), HeaderName::RecordRoute);
    assert!(
        m.to_bytes()
            .starts_with(b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\nRecord-Route: <sip:rr.example.com;lr>\r\nVia: ")
    );

    // append_header / append_extension_header: after the last header.
    let mut m = msg.clone();
    m.append_header(HeaderName::Supported, "path");
    m.append_extension_header("X-Last", "z");
    assert!(
        m.to_bytes()
            .ends_with(b"Content-Length: 0\r\nSupported: path\r\nX-Last: z\r\n\r\n")
    );
    assert_eq!(m.supported().unwrap(), ["path"]);
    assert_eq!(m.header_values_named("x-last").collect::<Vec<_>>(), [b"z"]);

    // remove_header: every line.
    let mut m = msg.clone();
    assert_eq!(m.remove_header(HeaderName::Route), 2);
    assert_eq!(m.route().unwrap().len(), 0);
    assert_eq!(m.remove_header(HeaderName::Route), 0);
    let mut m = msg.clone();
    assert_eq!(m.remove_header(HeaderName::Path), 0);
    assert!(!m.is_edited());

    // Typed views follow edits (the cache is dropped).
    let mut m = msg.clone();
    assert_eq!(m.max_forwards(), Ok(Some(70)));
    m.set_header(HeaderName::MaxForwards, "0");
    assert_eq!(m.max_forwards(), Ok(Some(0)));
    assert_eq!(
        m.validate_with(&opts(Role::Proxy, &[])).unwrap_err().status,
        483
    );
}

#[test]
fn edits_keep_folded_lines() {
    let bytes = crlf(RINGING_F6);
    let mut msg = parse(&bytes);
    msg.append_extension_header("X-Added", "1");
    let out = msg.to_bytes();
    let text = String::from_utf8(bytes).unwrap();
    let expected = text.replace(
        "Content-Length: 0\r\n",
        "Content-Length: 0\r\nX-Added: 1\r\n",
    );
    assert_eq!(out, expected.as_bytes());
    let re = msg.reparse().unwrap();
    assert_eq!(re.top_via().unwrap().received(), Some("192.0.2.3"));
}

// ----- validation -----

#[test]
fn missing_and_repeated_headers_are_400() {
    for (prefix, name) in [
        ("Via", "Via"),
        ("From", "From"),
        ("To", "To"),
        ("Call-ID", "Call-ID"),
        ("CSeq", "CSeq"),
    ] {
        let msg = parse(&options_without(prefix));
        let r = msg.validate().unwrap_err();
        assert_eq!(r.status, 400, "{prefix}: {r}");
        assert!(r.reason.contains(name), "{prefix}: {r}");
    }
    // Max-Forwards is not mandatory for validation.
    assert_eq!(parse(&options_without("Max-Forwards")).validate(), Ok(()));
    for extra in [
        "From: <sip:x@example.com>;tag=2\n",
        "To: <sip:y@example.com>\n",
        "Call-ID: other\n",
        "CSeq: 1 OPTIONS\n",
        "Max-Forwards: 70\n",
    ] {
        let r = parse(&options(extra)).validate().unwrap_err();
        assert_eq!(r.status, 400, "{extra}: {r}");
    }
    // A response without Via is dropped (400 too).
    let resp = parse(&crlf(
        &OK_F15.replace("Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10\n", ""),
    ));
    assert_eq!(resp.validate().unwrap_err().status, 400);
}

#[test]
fn cseq_method_mismatch_is_400() {
    let text = String::from_utf8(options(""))
        .unwrap()
        .replace("CSeq: 63104 OPTIONS", "CSeq: 63104 INVITE");
    let r = parse(text.as_bytes()).validate().unwrap_err();
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("CSeq"), "{r}");
    // Methods are case-sensitive.
    let text = String::from_utf8(options(""))
        .unwrap()
        .replace("CSeq: 63104 OPTIONS", "CSeq: 63104 options");
    assert_eq!(parse(text.as_bytes()).validate().unwrap_err().status, 400);
}

#[test]
fn other_version_is_505() {
    let text = String::from_utf8(options(""))
        .unwrap()
        .replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
    let msg = parse(text.as_bytes());
    assert_eq!(msg.version(), b"SIP/7.0");
    let r = msg.validate().unwrap_err();
    assert_eq!(r.status, 505);
    let resp = parse(&crlf(&OK_F15.replace("SIP/2.0 200", "SIP/3.0 200")));
    assert_eq!(resp.validate().unwrap_err().status, 505);
}

#[test]
fn version_is_case_insensitive() {
    // RFC 3261 §7.1: "The SIP-Version string is case-insensitive".
    let text = String::from_utf8(options(""))
        .unwrap()
        .replace("SIP/2.0\r\nVia", "sip/2.0\r\nVia");
    let msg = parse(text.as_bytes());
    assert_eq!(msg.validate(), Ok(()));
}

#[test]
fn unsupported_uri_scheme_is_416() {
    for uri in [
        "mailto:carol@chicago.example.com",
        "http://example.com/x",
        "urn:service:sos",
    ] {
        let text = String::from_utf8(options("")).unwrap().replace(
            "OPTIONS sip:carol@chicago.example.com",
            &format!("OPTIONS {uri}"),
        );
        let r = parse(text.as_bytes()).validate().unwrap_err();
        assert_eq!(r.status, 416, "{uri}: {r}");
    }
    // tel: and sips: are fine.
    for uri in ["tel:+1-201-555-0123", "sips:carol@chicago.example.com"] {
        let text = String::from_utf8(options("")).unwrap().replace(
            "OPTIONS sip:carol@chicago.example.com",
            &format!("OPTIONS {uri}"),
        );
        assert_eq!(parse(text.as_bytes()).validate(), Ok(()), "{uri}");
    }
    // Headers in a Request-URI are a 400.
    let text = String::from_utf8(options("")).unwrap().replace(
        "OPTIONS sip:carol@chicago.example.com",
        "OPTIONS sip:carol@chicago.example.com?Subject=x",
    );
    assert_eq!(parse(text.as_bytes()).validate().unwrap_err().status, 400);
}

#[test]
fn require_and_proxy_require_are_420() {
    let msg = parse(&options("Require: foo, 100rel\nRequire: bar\n"));
    let r = msg
        .validate_with(&opts(Role::Uas, &["100rel"]))
        .unwrap_err();
    assert_eq!(r.status, 420);
    assert_eq!(r.unsupported, ["foo", "bar"]);
    assert!(r.reason.contains("foo"), "{r}");
    // Option tags compare case-insensitively.
    assert_eq!(
        msg.validate_with(&opts(Role::Uas, &["FOO", "100rel", "Bar"])),
        Ok(())
    );
    // A proxy ignores Require; UAS ignores Proxy-Require.
    assert_eq!(msg.validate_with(&opts(Role::Proxy, &[])), Ok(()));
    assert_eq!(msg.validate_with(&opts(Role::Syntax, &[])), Ok(()));
    let msg = parse(&options("Proxy-Require: sec-agree\n"));
    let r = msg.validate_with(&opts(Role::Proxy, &[])).unwrap_err();
    assert_eq!(r.status, 420);
    assert_eq!(r.unsupported, ["sec-agree"]);
    assert_eq!(msg.validate_with(&opts(Role::Uas, &[])), Ok(()));
    // RFC 3261 §8.2.2.3: not for ACK (nor CANCEL).
    let ack = crlf(&ACK_F13.replace("Content-Length", "Require: foo\nContent-Length"));
    assert_eq!(parse(&ack).validate(), Ok(()));
}

#[test]
fn max_forwards_zero_is_483_for_proxies_only() {
    let text = String::from_utf8(options(""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let msg = parse(text.as_bytes());
    let r = msg.validate_with(&opts(Role::Proxy, &[])).unwrap_err();
    assert_eq!(r.status, 483);
    assert_eq!(msg.validate_with(&opts(Role::Uas, &[])), Ok(()));
    assert_eq!(msg.validate(), Ok(()));
    let text = String::from_utf8(options(""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 1");
    assert_eq!(
        parse(text.as_bytes()).validate_with(&opts(Role::Proxy, &[])),
        Ok(())
    );
}

#[test]
fn too_large_is_513() {
    let e = Message::parse_with(
        options(""),
        &ParseOptions {
            max_size: 100,
            ..ParseOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 100, .. }));
    assert_eq!(e.status_code(), 513);
    assert_eq!(Error::VersionNotSupported { offset: 0 }.status_code(), 505);
    assert_eq!(Error::Incomplete.status_code(), 400);
    assert_eq!(Error::MissingContentLength.status_code(), 400);
}

#[test]
fn malformed_typed_headers_are_400() {
    for extra in [
        "Expires: soon\n",
        "Content-Type: text\n",
        "Route: sip:p1.example.com;lr, \n",
        "Supported: a b\n",
        "Date: yesterday\n",
        "Retry-After: x\n",
    ] {
        let r = parse(&options(extra)).validate().unwrap_err();
        assert_eq!(r.status, 400, "{extra}: {r}");
    }
    let text = String::from_utf8(options(""))
        .unwrap()
        .replace("Call-ID: a84b4c76e66710", "Call-ID: a b");
    assert_eq!(parse(text.as_bytes()).validate().unwrap_err().status, 400);
}

#[test]
fn tags_read_alone_match_the_whole_header() {
    let values: [&[u8]; 8] = [
        b"<sip:b@x.example>;tag=abc",
        b"Bob <sip:b@x.example>;TAG=\"q \\\" t\";x",
        b"<sip:b@x.example>;x;tag",
        b"<sip:b@x.example> ; tag = 1 ;tag=2",
        b"sip:b@x.example;tag=7;x=\"y\"",
        b"<sip:b@x.example>;x=\"\xff\";tag=1",
        b"<sip:b@x.example>;tag=1;;",
        b"<sip:b@x.example>;tag=1 junk",
    ];
    for v in values {
        let mut text = options("").to_vec();
        let at = text.windows(4).position(|w| w == b"To: ").unwrap() + 4;
        let end = at + text[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        text.splice(at..end, v.iter().copied());
        let m = Message::parse(text.clone()).unwrap();
        let whole = Message::parse(text).unwrap();
        let whole = whole.to().map(|n| n.tag().map(str::to_owned));
        assert_eq!(
            m.to_tag().map(|t| t.map(str::to_owned)),
            whole,
            "{}",
            String::from_utf8_lossy(v)
        );
    }
}

#[test]
fn call_id_and_max_forwards_are_read_the_same_every_time() {
    let m = parse(&options(""));
    assert_eq!(m.call_id(), Ok("a84b4c76e66710"));
    assert_eq!(m.call_id(), Ok("a84b4c76e66710"));
    assert_eq!(m.max_forwards(), Ok(Some(70)));
    let text = String::from_utf8(options("")).unwrap();
    let bad = parse(text.replace("a84b4c76e66710", "a84b4c76e66710@").as_bytes());
    let first = bad.call_id().unwrap_err();
    assert_eq!(bad.call_id().unwrap_err(), first);
    assert!(matches!(
        first,
        Error::Syntax {
            context: "Call-ID header",
            ..
        }
    ));
    let mut edited = m.clone();
    edited.set_header(HeaderName::CallId, "new@id");
    assert_eq!(edited.call_id(), Ok("new@id"));
    edited.set_header(HeaderName::CallId, "two@at@signs");
    assert!(edited.call_id().is_err());
    edited.set_header(HeaderName::MaxForwards, "256");
    assert!(edited.max_forwards().is_err());
    edited.remove_header(HeaderName::MaxForwards);
    assert_eq!(edited.max_forwards(), Ok(None));
}

#[test]
fn repeated_edits_keep_every_line_right() {
    let mut m = parse(&options("X-A: a\nX-B: b\n"));
    for k in 0..500u32 {
        m.set_header(HeaderName::MaxForwards, k.to_string());
        if k % 3 == 0 {
            m.append_extension_header("X-Count", k.to_string());
        }
        if k % 7 == 0 {
            m.remove_header(HeaderName::Other);
        }
    }
    assert!(m.max_forwards().is_err()); // 499 is above 255
    assert_eq!(m.header(HeaderName::MaxForwards), Some(&b"499"[..]));
    let re = m.reparse().unwrap();
    assert_eq!(re.to_bytes(), m.to_bytes());
    let x: Vec<&[u8]> = m.header_values_named("X-Count").collect();
    // The last removal (k = 497) took every extension line.
    assert_eq!(x, [&b"498"[..]]);
    assert_eq!(m.call_id(), Ok("a84b4c76e66710"));
}

/// A CSeq of digits only (no method) is an error, not a panic: the one-pass
/// reader looked one byte past the value (found by the mutation proptest).
#[test]
fn cseq_without_method_is_an_error() {
    for value in ["123456789", "1", "42 "] {
        let text = format!(
            "OPTIONS sip:a@b.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b.test>;tag=1\r\nTo: <sip:a@b.test>\r\nCall-ID: c\r\nCSeq: {value}\r\nContent-Length: 0\r\n\r\n"
        );
        let m =
            siplink_message::Message::parse(text).expect("the message parses; the CSeq view fails");
        assert!(m.cseq().is_err(), "{value:?} accepted");
    }
}

#[test]
fn an_edit_forgets_only_the_views_of_the_header_it_edits() {
    let mut msg = parse(&options(""));
    let from = msg.from().unwrap().clone();
    assert_eq!(
        msg.top_via().unwrap().host,
        Host::Domain("pc33.example.com".into())
    );
    // A clone shares what was parsed, and then goes its own way.
    let mut copy = msg.clone();
    assert_eq!(copy.from().unwrap(), &from);

    assert!(msg.replace_first_value(HeaderName::Via, "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK2"));
    assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bK2"));
    assert_eq!(msg.via().unwrap().len(), 1);
    assert_eq!(msg.from().unwrap(), &from);
    // The clone still reads its own Via.
    assert_eq!(
        copy.top_via().unwrap().host,
        Host::Domain("pc33.example.com".into())
    );

    msg.set_header(HeaderName::To, "<sip:b@example.com>;tag=t9");
    assert_eq!(msg.to_tag().unwrap(), Some("t9"));
    assert_eq!(msg.to().unwrap().tag(), Some("t9"));
    msg.set_header(HeaderName::From, "<sip:c@example.com>;tag=f2");
    assert_eq!(msg.from_tag().unwrap(), Some("f2"));
    assert_eq!(msg.from().unwrap().uri.as_str(), "sip:c@example.com");
    msg.set_header(HeaderName::CallId, "bad id with spaces");
    assert!(msg.call_id().is_err());
    msg.set_header(HeaderName::CSeq, "7 OPTIONS");
    assert_eq!(msg.cseq().unwrap().seq, 7);
    msg.append_header(HeaderName::Contact, "<sip:c@192.0.2.9>");
    assert!(matches!(msg.contact().unwrap(), Contacts::List(l) if l.len() == 1));
    msg.append_header(HeaderName::Expires, "60");
    assert_eq!(msg.expires().unwrap(), Some(60));
    assert_eq!(msg.remove_header(HeaderName::Expires), 1);
    assert_eq!(msg.expires().unwrap(), None);

    // The clone was edited after the original: its views are its own.
    copy.set_header(HeaderName::CSeq, "9 OPTIONS");
    assert_eq!(copy.cseq().unwrap().seq, 9);
    assert_eq!(msg.cseq().unwrap().seq, 7);
    assert_eq!(copy.from().unwrap(), &from);
    // And the edited messages still read the same once written and parsed again.
    for m in [&msg, &copy] {
        let again = m.reparse().unwrap();
        assert_eq!(again.from().unwrap(), m.from().unwrap());
        assert_eq!(again.cseq().unwrap(), m.cseq().unwrap());
        assert_eq!(again.top_via().unwrap(), m.top_via().unwrap());
        assert_eq!(again.to().unwrap(), m.to().unwrap());
    }
}
