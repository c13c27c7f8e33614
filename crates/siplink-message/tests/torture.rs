//! The SIP torture-test messages of RFC 4475 and the IPv6 ones of RFC 5118, one
//! test per message.
//!
//! The messages live in `tests/torture/rfc4475/*.dat` and
//! `tests/torture/rfc5118/*.dat`, rebuilt from the RFC text by
//! `tests/torture/extract.py` (see `tests/torture/README.md`). Each file is one UDP
//! datagram. `tests/torture/MANIFEST.tsv` classes every file:
//!
//! * `valid`: [`Message::parse`] succeeds, validation in [`Role::Syntax`] passes,
//!   the key fields read back right and an unedited message serialises to the
//!   bytes it was parsed from (minus trailing datagram junk);
//! * `invalid`: parsing fails with the error that names the fault, or validation
//!   rejects it with the status an element answers (400) and a reason that names
//!   the fault;
//! * `semantic`: the message parses, and validation in the right [`Role`] gives
//!   the response an element must send (505, 400, 416, 420, 483...) or passes when
//!   the answer is the application's business (415, 406, 401...).
//!
//! `manifest_covers_every_file` walks the data directory, so a file added without
//! a manifest row (or a row without its file) fails.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use siplink_message::headers::{Contacts, NameAddr, Via};
use siplink_message::uri::{Host, SipUri};
use siplink_message::{
    Error, HeaderName, Message, Method, Rejection, Role, Uri, ValidationOptions,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/torture");

// ----- helpers -----

fn read(rel: &str) -> Vec<u8> {
    let path = Path::new(DIR).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn opts(role: Role, supported: &[&str]) -> ValidationOptions {
    ValidationOptions {
        role,
        supported: supported.iter().map(|s| s.to_string()).collect(),
    }
}

fn check(msg: &Message, role: Role) -> Result<(), Rejection> {
    msg.validate_with(&opts(role, &[]))
}

fn parse(rel: &str, bytes: &[u8]) -> Message {
    Message::parse(bytes.to_vec()).unwrap_or_else(|e| panic!("{rel} must parse: {e} ({e:?})"))
}

/// A valid message: parses, passes syntax validation, its body is exactly
/// Content-Length long and it serialises to its own bytes (minus any trailing
/// datagram bytes).
fn valid(rel: &str) -> (Vec<u8>, Message) {
    let bytes = read(rel);
    let msg = parse(rel, &bytes);
    if let Err(r) = check(&msg, Role::Syntax) {
        panic!("{rel} is valid, validation (Role::Syntax) says: {r}");
    }
    if let Some(cl) = msg.content_length() {
        assert_eq!(
            msg.body().len(),
            cl as usize,
            "{rel}: body length vs Content-Length"
        );
    }
    let kept = bytes.len() - msg.trailing_bytes();
    assert!(!msg.is_edited());
    assert_eq!(
        msg.to_bytes(),
        bytes[..kept],
        "{rel}: to_bytes() of an unedited message"
    );
    (bytes, msg)
}

/// A message that parsing must refuse.
fn parse_error(rel: &str) -> (Vec<u8>, Error) {
    let bytes = read(rel);
    match Message::parse(bytes.clone()) {
        Ok(_) => panic!("{rel} is invalid but parsed"),
        Err(e) => (bytes, e),
    }
}

/// A message that parses and that validation in `role` rejects with `status`.
fn rejected(rel: &str, role: Role, status: u16) -> (Vec<u8>, Message, Rejection) {
    let bytes = read(rel);
    let msg = parse(rel, &bytes);
    match check(&msg, role) {
        Ok(()) => panic!("{rel}: validation ({role:?}) accepted it, expected {status}"),
        Err(r) => {
            assert_eq!(r.status, status, "{rel} ({role:?}): {r}");
            (bytes, msg, r)
        }
    }
}

/// A message that parses and that validation passes in every role.
fn accepted_everywhere(rel: &str) -> (Vec<u8>, Message) {
    let bytes = read(rel);
    let msg = parse(rel, &bytes);
    for role in [Role::Syntax, Role::Uas, Role::Proxy] {
        if let Err(r) = check(&msg, role) {
            panic!("{rel}: validation ({role:?}) must pass, says {r}");
        }
    }
    assert_eq!(msg.to_bytes(), bytes[..], "{rel}: to_bytes()");
    (bytes, msg)
}

/// Byte range of the first line of `bytes` that starts with `prefix`
/// (CRLF excluded).
fn line_span(bytes: &[u8], prefix: &str) -> std::ops::Range<usize> {
    let mut at = 0;
    for line in bytes.split(|&c| c == b'\n') {
        if line.starts_with(prefix.as_bytes()) {
            return at..at + line.len();
        }
        at += line.len() + 1;
    }
    panic!("no line starting with {prefix:?}");
}

fn syntax_offset(e: &Error) -> usize {
    match e {
        Error::Syntax { offset, .. } | Error::OutOfRange { offset, .. } => *offset,
        other => panic!("expected a syntax error with an offset, got {other:?}"),
    }
}

fn sip(uri: &Uri) -> &SipUri {
    uri.as_sip()
        .unwrap_or_else(|| panic!("not a sip: URI: {uri}"))
}

fn domain(h: &Host) -> &str {
    h.domain().unwrap_or_else(|| panic!("not a host name: {h}"))
}

fn ip(h: &Host) -> IpAddr {
    h.ip().unwrap_or_else(|| panic!("not an IP address: {h}"))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn user(u: &SipUri) -> Cow<'_, [u8]> {
    u.user_unescaped().expect("a user part")
}

fn display(na: &NameAddr) -> &str {
    na.display_name.as_deref().expect("a display name")
}

fn contacts(msg: &Message) -> &[NameAddr] {
    match msg.contact().expect("Contact parses") {
        Contacts::List(l) => l,
        Contacts::Star => panic!("Contact: *"),
    }
}

fn other(m: &str) -> Method {
    m.parse().unwrap()
}

/// `TRANSPORT sent-by branch` of a Via value.
fn via_summary(v: &Via) -> String {
    format!(
        "{} {} {}",
        v.transport,
        v.sent_by(),
        v.branch().unwrap_or("-")
    )
}

fn body_of(bytes: &[u8]) -> &[u8] {
    let k = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    &bytes[k + 4..]
}

// ===== RFC 4475 §3.1.1: valid messages =====

#[test]
fn rfc4475_wsinv() {
    let (bytes, msg) = valid("rfc4475/wsinv.dat");
    assert_eq!(msg.method(), Some(&Method::Invite));
    let ruri = sip(msg.request_uri().unwrap());
    assert_eq!(ruri.user(), Some("vivekg"));
    assert_eq!(domain(ruri.host()), "chair-dnrc.example.com");
    assert_eq!(ruri.param("unknownparam"), Some(None));
    // "TO :" with the value folded onto the next line, spaces around ';' and '='.
    let to = msg.to().unwrap();
    assert_eq!(sip(&to.uri).as_str(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    // "J Rosenberg \\\"" unquotes to: J Rosenberg \"
    let from = msg.from().unwrap();
    assert_eq!(display(from), "J Rosenberg \\\"");
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(sip(&from.uri).as_str(), "sip:jdrosen@example.com");
    assert_eq!(msg.max_forwards().unwrap(), Some(68));
    assert_eq!(msg.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    let cseq = msg.cseq().unwrap();
    assert_eq!((cseq.seq, &cseq.method), (9, &Method::Invite));
    // Three Via values: one folded over three lines with LWS around '/', then a
    // "v:" line holding two comma-separated values, also folded.
    let vias: Vec<_> = msg.via().unwrap().iter().map(via_summary).collect();
    assert_eq!(
        vias,
        [
            "UDP 192.0.2.2 390skdjuw",
            "TCP spindle.example.com z9hG4bK9ikj8",
            "UDP 192.168.255.111 z9hG4bK30239",
        ]
    );
    assert!(
        msg.via()
            .unwrap()
            .iter()
            .all(|v| &*v.protocol == "SIP" && &*v.version == "2.0")
    );
    // "s :" — an empty Subject.
    assert_eq!(msg.header(HeaderName::Subject), Some(&b""[..]));
    assert_eq!(
        msg.header_values_named("UnknownHeaderWithUnusualValue")
            .collect::<Vec<_>>(),
        [&b";;,,;;,;"[..]]
    );
    let nf = msg.header_values_named("NewFangledHeader").next().unwrap();
    assert!(nf.starts_with(b"newfangled value") && nf.ends_with(b"continued newfangled value"));
    let route = msg.route().unwrap();
    assert_eq!(route.len(), 1);
    let r = sip(&route[0].uri);
    assert!(r.lr());
    assert_eq!(r.param("unknownwith").flatten().as_deref(), Some("value"));
    assert_eq!(r.param("unknown-no-value"), Some(None));
    let m = &contacts(&msg)[0];
    assert_eq!(display(m), "Quoted string \"\"");
    assert_eq!(m.params.get("newparam"), Some(Some("newvalue")));
    assert_eq!(m.params.get("secondparam"), Some(None));
    assert_eq!(m.q(), Some(0.33));
    assert!(
        msg.content_type()
            .unwrap()
            .unwrap()
            .is("application", "sdp")
    );
    assert_eq!(msg.content_length(), Some(150));
    assert_eq!(msg.body()[..], *body_of(&bytes));
}

#[test]
fn rfc4475_intmeth() {
    let (_, msg) = valid("rfc4475/intmeth.dat");
    let method = other("!interesting-Method0123456789_*+`.%indeed'~");
    assert!(method.is_extension());
    assert_eq!(msg.method(), Some(&method));
    let cseq = msg.cseq().unwrap();
    assert_eq!((cseq.seq, &cseq.method), (139122385, &method));
    let ruri = sip(msg.request_uri().unwrap());
    assert_eq!(
        ruri.user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(domain(ruri.host()), "example.com");
    assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert!(msg.top_via().unwrap().is_transport("TCP"));
    // Quoted-pairs \<NUL>, \<BEL>, \<DEL> stand for the bare control characters.
    let to = msg.to().unwrap();
    assert_eq!(display(to), "BEL:\u{7} NUL:\u{0} DEL:\u{7f}");
    assert_eq!(
        sip(&to.uri).user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let from = msg.from().unwrap();
    assert_eq!(display(from), "token1~` token2'+_ token3*%!.-");
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.params.get("fromParam''~+*_!.-%"),
        Some(Some("работающий"))
    );
    assert_eq!(
        msg.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(msg.max_forwards().unwrap(), Some(255));
    let ext: Vec<_> = msg
        .header_values_named("extensionHeader-!.%*+_`'~")
        .collect();
    assert_eq!(ext, ["\u{feff}大停電".as_bytes()]);
    assert_eq!(msg.content_length(), Some(0));
}

#[test]
fn rfc4475_esc01() {
    let (_, msg) = valid("rfc4475/esc01.dat");
    assert_eq!(msg.method(), Some(&Method::Invite));
    let ruri = sip(msg.request_uri().unwrap());
    assert_eq!(ruri.user(), Some("sips%3Auser%40example.com"));
    assert_eq!(&*user(ruri), b"sips:user@example.com");
    assert_eq!(domain(ruri.host()), "example.net");
    assert!(!ruri.is_secure());
    let to = msg.to().unwrap();
    assert_eq!(&*user(sip(&to.uri)), b"user");
    assert_eq!(to.tag(), None);
    let from = msg.from().unwrap();
    assert_eq!(&*user(sip(&from.uri)), b"I have spaces");
    assert_eq!(from.tag(), Some("938"));
    assert_eq!(msg.call_id().unwrap(), "esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bKkdjuw"));
    let c = sip(&contacts(&msg)[0].uri);
    assert_eq!(&*user(c), b"caller");
    // ;%6C%72 is ;lr, n%61me=v%61lue%25%34%31 is name=value%41 (decoded once).
    assert!(c.lr());
    assert_eq!(c.param("name").flatten().as_deref(), Some("value%41"));
    assert!(
        msg.content_type()
            .unwrap()
            .unwrap()
            .is("application", "sdp")
    );
    assert_eq!(msg.body().len(), 150);
}

#[test]
fn rfc4475_escnull() {
    let (_, msg) = valid("rfc4475/escnull.dat");
    assert_eq!(msg.method(), Some(&Method::Register));
    let to = msg.to().unwrap();
    assert_eq!(&*user(sip(&to.uri)), b"null-\0-null");
    assert_eq!(&*user(sip(&msg.from().unwrap().uri)), b"null-\0-null");
    assert_eq!(msg.from().unwrap().tag(), Some("839923423"));
    // Two bindings that differ only in the number of NULs: nothing truncated.
    let c = contacts(&msg);
    assert_eq!(c.len(), 2);
    assert_eq!(&*user(sip(&c[0].uri)), b"\0");
    assert_eq!(&*user(sip(&c[1].uri)), b"\0\0");
    assert!(!c[0].uri.equivalent(&c[1].uri));
    assert_eq!(msg.cseq().unwrap().seq, 14398234);
    assert_eq!(msg.content_length(), Some(0));
}

#[test]
fn rfc4475_esc02() {
    let (_, msg) = valid("rfc4475/esc02.dat");
    // % is not an escape in a method: an unknown method, and the CSeq agrees.
    let method = other("RE%47IST%45R");
    assert_eq!(msg.method(), Some(&method));
    assert_ne!(msg.method(), Some(&Method::Register));
    assert_eq!(msg.cseq().unwrap().method, method);
    assert_eq!(display(msg.to().unwrap()), "%Z%45");
    assert_eq!(display(msg.from().unwrap()), "%Z%45");
    assert_eq!(msg.from().unwrap().tag(), Some("f232jadfj23"));
    assert_eq!(
        msg.top_via().unwrap().branch(),
        Some("z9hG4bK209%fzsnel234")
    );
    // C%6Fntact is an extension header, not a third Contact.
    let c: Vec<_> = contacts(&msg)
        .iter()
        .map(|c| sip(&c.uri).as_str().to_owned())
        .collect();
    assert_eq!(
        c,
        [
            "sip:alias1@host1.example.com",
            "sip:alias3@host3.example.com"
        ]
    );
    assert_eq!(
        msg.header_values_named("C%6Fntact").collect::<Vec<_>>(),
        [&b"<sip:alias2@host2.example.com>"[..]]
    );
}

#[test]
fn rfc4475_lwsdisp() {
    let (_, msg) = valid("rfc4475/lwsdisp.dat");
    assert_eq!(msg.method(), Some(&Method::Options));
    let from = msg.from().unwrap();
    assert_eq!(display(from), "caller");
    assert_eq!(sip(&from.uri).as_str(), "sip:caller@example.com");
    assert_eq!(from.tag(), Some("323"));
    assert_eq!(msg.call_id().unwrap(), "lwsdisp.1234abcd@funky.example.com");
    assert_eq!(
        (msg.cseq().unwrap().seq, &msg.cseq().unwrap().method),
        (60, &Method::Options)
    );
}

#[test]
fn rfc4475_longreq() {
    let (bytes, msg) = valid("rfc4475/longreq.dat");
    assert_eq!(msg.method(), Some(&Method::Invite));
    let to = msg.to().unwrap();
    let dn = display(to);
    assert!(
        dn.starts_with("I have a user name of extremeextreme")
            && dn.ends_with("extreme proportion")
    );
    assert_eq!(
        dn.len(),
        "I have a user name of ".len() + 10 * "extreme".len() + " proportion".len()
    );
    let tu = sip(&to.uri);
    assert_eq!(tu.port(), Some(6000));
    assert!(
        tu.param("unknownparam1")
            .flatten()
            .unwrap()
            .ends_with("longlongvalue")
    );
    let long = tu
        .params()
        .iter()
        .find(|p| p.name.starts_with("longparamnamename"))
        .unwrap();
    assert_eq!(long.value.as_deref(), Some("shortvalue"));
    assert!(
        tu.params()
            .iter()
            .any(|p| p.name.ends_with("ParameterNameWithNoValue") && p.value.is_none())
    );
    assert_eq!(tu.params().len(), 3);
    let from = msg.from().unwrap();
    assert!(
        from.tag().unwrap().starts_with("12982982982") && from.tag().unwrap().ends_with("2424")
    );
    assert_eq!(from.params.len(), 3);
    assert!(
        msg.call_id()
            .unwrap()
            .starts_with("longreq.onereallyreally")
    );
    // 34 Via values over 34 lines with every spelling of the name.
    let vias = msg.via().unwrap();
    assert_eq!(vias.len(), 34);
    assert_eq!(msg.count(HeaderName::Via), 34);
    assert_eq!(vias[0].sent_by(), "sip33.example.com");
    for (k, v) in vias[..33].iter().enumerate() {
        assert_eq!(v.sent_by(), format!("sip{}.example.com", 33 - k));
        assert!(v.is_transport("TCP") && v.branch().is_none());
    }
    let last = &vias[33];
    assert_eq!(last.sent_by(), "host.example.com");
    assert_eq!(last.received(), Some("192.0.2.5"));
    assert!(last.branch().unwrap().starts_with("verylonglong") && !last.has_magic_cookie());
    let long_name = "Unknown-LongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLong-Name";
    assert!(
        msg.header_values_named(long_name)
            .next()
            .unwrap()
            .starts_with(b"unknown-longlong")
    );
    assert_eq!(msg.max_forwards().unwrap(), Some(70));
    assert_eq!(contacts(&msg).len(), 1);
    assert_eq!(msg.content_length(), Some(150));
    assert_eq!(msg.body()[..], *body_of(&bytes));
}

#[test]
fn rfc4475_dblreq() {
    let (bytes, msg) = valid("rfc4475/dblreq.dat");
    assert_eq!(msg.method(), Some(&Method::Register));
    assert_eq!(
        msg.call_id().unwrap(),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    );
    assert_eq!(msg.content_length(), Some(0));
    assert!(msg.body().is_empty());
    // Everything after the empty line is junk in the datagram: ignored, counted,
    // and never part of the serialised message.
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(msg.trailing_bytes(), bytes.len() - end);
    assert_eq!(msg.trailing_bytes(), 450);
    let out = msg.to_bytes();
    assert_eq!(out, bytes[..end]);
    assert!(!out.windows(6).any(|w| w == b"INVITE"));
    assert_eq!(msg.count(HeaderName::CSeq), 1);
    assert_eq!(msg.cseq().unwrap().method, Method::Register);
    assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bKkdjuw23492"));
}

#[test]
fn rfc4475_semiuri() {
    let (_, msg) = valid("rfc4475/semiuri.dat");
    let ruri = sip(msg.request_uri().unwrap());
    // The ';' is inside the user part: no uri-parameters at all.
    assert_eq!(ruri.user(), Some("user;par=u%40example.net"));
    assert_eq!(&*user(ruri), b"user;par=u@example.net");
    assert_eq!(domain(ruri.host()), "example.com");
    assert!(ruri.params().is_empty());
    assert!(!ruri.has_param("par"));
    let accept = msg.header(HeaderName::Accept).unwrap();
    assert!(accept.starts_with(b"application/sdp") && accept.ends_with(b"message/sipfrag"));
    assert_eq!(msg.cseq().unwrap().seq, 8);
    assert_eq!(msg.max_forwards().unwrap(), Some(3));
}

#[test]
fn rfc4475_transports() {
    let (_, msg) = valid("rfc4475/transports.dat");
    let vias = msg.via().unwrap();
    let transports: Vec<&str> = vias.iter().map(|v| &*v.transport).collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    let hosts: Vec<String> = vias.iter().map(Via::sent_by).collect();
    assert_eq!(
        hosts,
        ["t1", "t2", "t3", "t4", "t5"].map(|t| format!("{t}.example.com"))
    );
    assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bKkdjuw"));
    assert_eq!(msg.call_id().unwrap(), "transports.kijh4akdnaqjkwendsasfdj");
}

#[test]
fn rfc4475_mpart01() {
    let (bytes, msg) = valid("rfc4475/mpart01.dat");
    assert_eq!(msg.method(), Some(&Method::Message));
    assert_eq!(msg.content_length(), Some(553));
    assert_eq!(msg.body().len(), 553);
    assert_eq!(msg.body()[..], *body_of(&bytes));
    assert!(msg.body().contains(&0), "the binary part has NUL bytes");
    let ct = msg.content_type().unwrap().unwrap();
    assert!(ct.is("multipart", "mixed"));
    assert_eq!(ct.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
    assert!(msg.body().starts_with(b"--7a9cbec02ceef655\r\n"));
    assert!(msg.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
    let via = msg.top_via().unwrap();
    assert_eq!(via.host, Host::Ipv4(Ipv4Addr::LOCALHOST));
    assert_eq!(via.port, Some(5070));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(
        via.branch(),
        Some("z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-")
    );
    assert_eq!(msg.from().unwrap().tag(), Some("2fb0dcc9"));
    assert_eq!(
        msg.call_id().unwrap(),
        "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA.."
    );
    assert!(msg.check_date().is_ok());
}

#[test]
fn rfc4475_unreason() {
    let (bytes, msg) = valid("rfc4475/unreason.dat");
    assert_eq!(msg.status(), Some(200));
    let line = &bytes[..line_span(&bytes, "SIP/2.0").end - 1];
    let reason = msg.reason().unwrap();
    assert_eq!(reason, &line[b"SIP/2.0 200 ".len()..]);
    let text = std::str::from_utf8(reason).expect("UTF-8 reason phrase");
    assert!(text.starts_with("= 2**3 * 5**2 ") && text.ends_with(" - простое"));
    assert_eq!(msg.cseq().unwrap().method, Method::Invite);
    assert_eq!(msg.to().unwrap().tag(), Some("2229"));
    assert_eq!(msg.body().len(), 154);
}

#[test]
fn rfc4475_noreason() {
    let (_, msg) = valid("rfc4475/noreason.dat");
    assert_eq!(msg.status(), Some(100));
    assert_eq!(msg.reason(), Some(&b""[..]));
    assert_eq!(msg.to().unwrap().tag(), Some("902jndnke3"));
    assert_eq!(msg.from().unwrap().tag(), Some("39ansfi3"));
    assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bK2398ndaoe"));
}

// ===== RFC 4475 §3.1.2: invalid messages =====

#[test]
fn rfc4475_badinv01() {
    let (bytes, msg, r) = rejected("rfc4475/badinv01.dat", Role::Syntax, 400);
    assert!(r.reason.contains("Via"), "{r}");
    let via_line = line_span(&bytes, "Via:");
    assert!(via_line.contains(&syntax_offset(&msg.via().unwrap_err())));
    // The Contact line is broken the same way.
    let e = msg.contact().unwrap_err();
    assert!(
        line_span(&bytes, "Contact:").contains(&syntax_offset(&e)),
        "{e:?}"
    );
    assert_eq!(check(&msg, Role::Uas).unwrap_err().status, 400);
}

#[test]
fn rfc4475_clerr() {
    let (bytes, e) = parse_error("rfc4475/clerr.dat");
    assert_eq!(
        e,
        Error::TruncatedBody {
            declared: 9999,
            available: body_of(&bytes).len()
        }
    );
    assert_eq!(e.status_code(), 400);
}

#[test]
fn rfc4475_ncl() {
    let (bytes, e) = parse_error("rfc4475/ncl.dat");
    let Error::InvalidContentLength { offset, .. } = e else {
        panic!("expected InvalidContentLength, got {e:?}");
    };
    assert_eq!(&bytes[offset..offset + 4], b"-999");
    assert_eq!(e.status_code(), 400);
}

#[test]
fn rfc4475_scalar02() {
    let (bytes, msg, r) = rejected("rfc4475/scalar02.dat", Role::Syntax, 400);
    assert!(r.reason.contains("CSeq"), "{r}");
    assert!(line_span(&bytes, "CSeq:").contains(&syntax_offset(&msg.cseq().unwrap_err())));
    // Max-Forwards 300 and the 101-digit Expires are out of range too.
    assert!(matches!(msg.max_forwards(), Err(Error::OutOfRange { .. })));
    assert!(matches!(msg.expires(), Err(Error::OutOfRange { .. })));
}

#[test]
fn rfc4475_scalarlg() {
    // A response: "rejected" means dropped; no status is sent back.
    let (bytes, msg, r) = rejected("rfc4475/scalarlg.dat", Role::Syntax, 400);
    assert_eq!(msg.status(), Some(503));
    assert!(r.reason.contains("CSeq"), "{r}");
    assert!(line_span(&bytes, "CSeq:").contains(&syntax_offset(&msg.cseq().unwrap_err())));
    assert!(matches!(msg.retry_after(), Err(Error::OutOfRange { .. })));
}

#[test]
fn rfc4475_quotbal() {
    let (bytes, msg, r) = rejected("rfc4475/quotbal.dat", Role::Syntax, 400);
    assert!(r.reason.contains("To"), "{r}");
    assert!(line_span(&bytes, "To:").contains(&syntax_offset(&msg.to().unwrap_err())));
}

#[test]
fn rfc4475_ltgtruri() {
    let (bytes, msg, r) = rejected("rfc4475/ltgtruri.dat", Role::Syntax, 400);
    assert!(r.reason.contains("URI"), "{r}");
    assert_eq!(
        msg.request_uri_bytes().unwrap(),
        &b"<sip:user@example.com>"[..]
    );
    let e = msg.request_uri().unwrap_err();
    assert!(
        line_span(&bytes, "INVITE").contains(&syntax_offset(&e)),
        "{e:?}"
    );
}

#[test]
fn rfc4475_lwsruri() {
    let (bytes, e) = parse_error("rfc4475/lwsruri.dat");
    let Error::Syntax {
        offset, context, ..
    } = e
    else {
        panic!("expected Syntax, got {e:?}");
    };
    assert_eq!(context, "start line");
    assert_eq!(&bytes[offset - 1..offset + 3], b"; lr");
}

#[test]
fn rfc4475_lwsstart() {
    let (bytes, e) = parse_error("rfc4475/lwsstart.dat");
    let Error::Syntax {
        offset, context, ..
    } = e
    else {
        panic!("expected Syntax, got {e:?}");
    };
    assert_eq!(context, "start line");
    assert!(line_span(&bytes, "INVITE").contains(&offset));
    assert_eq!(bytes[offset], b' ');
}

#[test]
fn rfc4475_trws() {
    let (bytes, e) = parse_error("rfc4475/trws.dat");
    let Error::Syntax {
        offset,
        context,
        expected,
    } = e
    else {
        panic!("expected Syntax, got {e:?}");
    };
    assert_eq!(context, "start line");
    assert!(expected.contains("SIP-Version"), "{expected}");
    assert!(line_span(&bytes, "OPTIONS").contains(&offset));
}

#[test]
fn rfc4475_escruri() {
    let (_, msg, r) = rejected("rfc4475/escruri.dat", Role::Syntax, 400);
    assert!(
        r.reason.contains("Request-URI") && r.reason.contains("headers"),
        "{r}"
    );
    let ruri = sip(msg.request_uri().unwrap());
    assert_eq!(ruri.header("Route").as_deref(), Some("<sip:example.com>"));
    assert_eq!(check(&msg, Role::Proxy).unwrap_err().status, 400);
}

#[test]
fn rfc4475_baddate() {
    let (bytes, msg, r) = rejected("rfc4475/baddate.dat", Role::Syntax, 400);
    assert!(r.reason.contains("Date"), "{r}");
    let e = msg.check_date().unwrap_err();
    assert!(line_span(&bytes, "Date:").contains(&syntax_offset(&e)));
}

#[test]
fn rfc4475_regbadct() {
    let (bytes, msg, r) = rejected("rfc4475/regbadct.dat", Role::Syntax, 400);
    assert!(r.reason.contains("Contact"), "{r}");
    assert!(line_span(&bytes, "Contact:").contains(&syntax_offset(&msg.contact().unwrap_err())));
}

#[test]
fn rfc4475_badaspec() {
    let (bytes, msg, r) = rejected("rfc4475/badaspec.dat", Role::Syntax, 400);
    // The reason is the URI parser's ("malformed URI at byte N"); the offset is
    // inside the To header, whose URI has spaces inside the '<' '>'.
    assert!(r.reason.contains("URI"), "{r}");
    let e = msg.to().unwrap_err();
    assert!(
        line_span(&bytes, "To:").contains(&syntax_offset(&e)),
        "{e:?}"
    );
    assert!(msg.from().is_ok());
}

#[test]
fn rfc4475_baddn() {
    // As published, the header section is never closed by an empty line: as a
    // datagram that is an incomplete message.
    let (bytes, e) = parse_error("rfc4475/baddn.dat");
    assert_eq!(e, Error::Incomplete);
    assert!(bytes.ends_with(b"l: 0\r\n"));
    // With the empty line the RFC clearly meant, the fault the test is about shows:
    // the unquoted display names contain ',' and the request gets a 400.
    let mut closed = bytes.clone();
    closed.extend_from_slice(b"\r\n");
    let msg = Message::parse(closed.clone()).expect("parses once the header section is closed");
    let r = check(&msg, Role::Syntax).unwrap_err();
    assert_eq!(r.status, 400, "{r}");
    let e = msg.from().unwrap_err();
    assert!(
        line_span(&closed, "From:").contains(&syntax_offset(&e)),
        "{e:?}"
    );
    let e = msg.to().unwrap_err();
    assert!(
        line_span(&closed, "To:").contains(&syntax_offset(&e)),
        "{e:?}"
    );
}

#[test]
fn rfc4475_bigcode() {
    let (bytes, e) = parse_error("rfc4475/bigcode.dat");
    let Error::Syntax {
        offset, context, ..
    } = e
    else {
        panic!("expected Syntax, got {e:?}");
    };
    assert_eq!(context, "start line");
    assert_eq!(offset, b"SIP/2.0 ".len());
    assert!(bytes[offset..].starts_with(b"4294967301 "));
}

// ===== RFC 4475 §3.1.2.16-18: parseable, answered by validation =====

#[test]
fn rfc4475_badvers() {
    let bytes = read("rfc4475/badvers.dat");
    let msg = parse("badvers", &bytes);
    assert_eq!(msg.version(), b"SIP/7.0");
    for role in [Role::Syntax, Role::Uas, Role::Proxy] {
        let r = check(&msg, role).unwrap_err();
        assert_eq!(r.status, 505, "{role:?}: {r}");
    }
}

#[test]
fn rfc4475_mismatch01() {
    let (_, msg, r) = rejected("rfc4475/mismatch01.dat", Role::Uas, 400);
    assert!(r.reason.contains("CSeq"), "{r}");
    assert_eq!(msg.method(), Some(&Method::Options));
    assert_eq!(msg.cseq().unwrap().method, Method::Invite);
    assert_eq!(check(&msg, Role::Proxy).unwrap_err().status, 400);
}

#[test]
fn rfc4475_mismatch02() {
    // RFC 4475 §3.1.2.18 prefers 501 for the unknown method but allows 400; the
    // validator checks the CSeq method before anything method-specific and
    // answers 400.
    let (_, msg, r) = rejected("rfc4475/mismatch02.dat", Role::Uas, 400);
    assert!(r.reason.contains("CSeq"), "{r}");
    assert_eq!(msg.method(), Some(&other("NEWMETHOD")));
    assert_eq!(msg.cseq().unwrap().method, Method::Invite);
    assert_eq!(msg.body().len(), 138);
}

// ===== RFC 4475 §3.2: transaction layer =====

#[test]
fn rfc4475_badbranch() {
    let (_, msg) = accepted_everywhere("rfc4475/badbranch.dat");
    let via = msg.top_via().unwrap();
    assert_eq!(via.branch(), Some("z9hG4bK"));
    assert!(via.has_magic_cookie());
    assert_eq!(via.host, Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
}

// ===== RFC 4475 §3.3: application layer =====

#[test]
fn rfc4475_insuf() {
    let (_, msg, r) = rejected("rfc4475/insuf.dat", Role::Uas, 400);
    assert!(r.reason.contains("Missing"), "{r}");
    for h in [
        HeaderName::To,
        HeaderName::From,
        HeaderName::CallId,
        HeaderName::MaxForwards,
    ] {
        assert_eq!(msg.count(h), 0);
    }
    assert!(
        ["To", "From", "Call-ID"]
            .iter()
            .any(|h| r.reason.contains(h)),
        "{r}"
    );
    assert_eq!(check(&msg, Role::Proxy).unwrap_err().status, 400);
}

#[test]
fn rfc4475_unkscm() {
    let (_, msg, r) = rejected("rfc4475/unkscm.dat", Role::Uas, 416);
    let Uri::Absolute(a) = msg.request_uri().unwrap() else {
        panic!("expected an opaque URI");
    };
    assert_eq!(a.scheme(), "nobodyKnowsThisScheme");
    assert_eq!(a.opaque(), "totallyopaquecontent");
    assert!(r.reason.contains("nobodyKnowsThisScheme"), "{r}");
    assert_eq!(check(&msg, Role::Proxy).unwrap_err().status, 416);
}

#[test]
fn rfc4475_novelsc() {
    let (_, msg, r) = rejected("rfc4475/novelsc.dat", Role::Uas, 416);
    assert_eq!(msg.request_uri().unwrap().scheme(), "soap.beep");
    assert!(r.reason.contains("soap.beep"), "{r}");
    assert_eq!(check(&msg, Role::Proxy).unwrap_err().status, 416);
}

#[test]
fn rfc4475_unksm2() {
    let (_, msg) = accepted_everywhere("rfc4475/unksm2.dat");
    let to = msg.to().unwrap();
    assert_eq!(to.uri.scheme(), "isbn");
    assert_eq!(to.uri.as_str(), "isbn:2983792873");
    let from = msg.from().unwrap();
    assert_eq!(from.uri.as_str(), "http://www.example.com");
    assert_eq!(from.tag(), Some("3234233"));
    let c = contacts(&msg);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].uri.scheme(), "name");
    assert_eq!(c[0].uri.as_str(), "name:John_Smith");
}

#[test]
fn rfc4475_bext01() {
    let (_, msg, r) = rejected("rfc4475/bext01.dat", Role::Uas, 420);
    assert_eq!(
        r.unsupported,
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    let r = check(&msg, Role::Proxy).unwrap_err();
    assert_eq!(r.status, 420);
    assert_eq!(
        r.unsupported,
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    );
    // Syntax-only checking ignores option tags; supporting them clears the 420.
    assert!(check(&msg, Role::Syntax).is_ok());
    let all = [
        "nothingsupportsthis",
        "NOTHINGSUPPORTSTHISEITHER",
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ];
    assert!(msg.validate_with(&opts(Role::Uas, &all)).is_ok());
    assert!(msg.validate_with(&opts(Role::Proxy, &all)).is_ok());
    let r = msg
        .validate_with(&opts(Role::Uas, &["nothingSupportsThis"]))
        .unwrap_err();
    assert_eq!(r.unsupported, ["nothingSupportsThisEither"]);
}

#[test]
fn rfc4475_invut() {
    let (_, msg) = accepted_everywhere("rfc4475/invut.dat");
    let ct = msg.content_type().unwrap().unwrap();
    assert!(ct.is("application", "unknownformat"));
    assert_eq!(msg.body().len(), 40);
    assert_eq!(msg.body().len(), msg.content_length().unwrap() as usize);
}

#[test]
fn rfc4475_regaut01() {
    let (_, msg) = accepted_everywhere("rfc4475/regaut01.dat");
    let creds = msg.authorization().unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(&*creds[0].scheme, "NoOneKnowsThisScheme");
    assert_eq!(creds[0].params.get("opaque-data"), Some(Some("here")));
    assert_eq!(msg.method(), Some(&Method::Register));
}

#[test]
fn rfc4475_multi01() {
    let (_, msg, r) = rejected("rfc4475/multi01.dat", Role::Uas, 400);
    assert!(r.reason.contains("More than one"), "{r}");
    assert!(
        ["CSeq", "Call-ID", "To", "From", "Max-Forwards"]
            .iter()
            .any(|h| r.reason.contains(h)),
        "{r}"
    );
    for h in [
        HeaderName::CSeq,
        HeaderName::CallId,
        HeaderName::To,
        HeaderName::From,
        HeaderName::MaxForwards,
    ] {
        assert_eq!(msg.count(h), 2, "{h}");
    }
    assert_eq!(check(&msg, Role::Proxy).unwrap_err().status, 400);
}

#[test]
fn rfc4475_mcl01() {
    let (bytes, e) = parse_error("rfc4475/mcl01.dat");
    let Error::InvalidContentLength { offset, .. } = e else {
        panic!("expected InvalidContentLength, got {e:?}");
    };
    // Points at the second, conflicting value (the first is 13).
    assert!(
        bytes[..offset].ends_with(b"Content-Length: "),
        "offset {offset}"
    );
    assert_eq!(bytes[offset], b'5');
    assert_eq!(e.status_code(), 400);
}

#[test]
fn rfc4475_bcast() {
    let (_, msg) = accepted_everywhere("rfc4475/bcast.dat");
    assert_eq!(msg.status(), Some(200));
    let vias = msg.via().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].host, Host::Ipv4(Ipv4Addr::BROADCAST));
    assert_eq!(vias[1].branch(), Some("z9hG4bK1saber23"));
}

#[test]
fn rfc4475_zeromf() {
    let bytes = read("rfc4475/zeromf.dat");
    let msg = parse("zeromf", &bytes);
    assert_eq!(msg.max_forwards().unwrap(), Some(0));
    assert_eq!(msg.method(), Some(&Method::Options));
    // RFC 4475 §3.3.11: an endpoint processes it; a proxy must not forward it and
    // answers 483.
    assert!(check(&msg, Role::Uas).is_ok());
    match check(&msg, Role::Proxy) {
        Err(r) => assert_eq!(r.status, 483, "{r}"),
        Ok(()) => {
            panic!("zeromf: Role::Proxy accepted a request with Max-Forwards 0 (expected 483)")
        }
    }
}

#[test]
fn rfc4475_cparam01() {
    let (_, msg) = valid("rfc4475/cparam01.dat");
    let c = contacts(&msg);
    assert_eq!(c.len(), 1);
    // addr-spec form: ;unknownparam is a Contact header parameter.
    assert_eq!(c[0].params.get("unknownparam"), Some(None));
    let u = sip(&c[0].uri);
    assert_eq!(u.as_str(), "sip:+19725552222@gw1.example.net");
    assert!(u.params().is_empty());
    assert_eq!(msg.from().unwrap().tag(), Some("DkfVgjkrtMwaerKKpe"));
    assert_eq!(msg.top_via().unwrap().port, Some(5060));
}

#[test]
fn rfc4475_cparam02() {
    let (_, msg) = valid("rfc4475/cparam02.dat");
    let c = contacts(&msg);
    assert_eq!(c.len(), 1);
    // name-addr form: ;unknownparam is inside the '<' '>', a URI parameter.
    assert!(c[0].params.is_empty());
    let u = sip(&c[0].uri);
    assert_eq!(u.param("unknownparam"), Some(None));
    assert_eq!(u.user(), Some("+19725552222"));
    assert_eq!(msg.cseq().unwrap().seq, 3);
}

#[test]
fn rfc4475_regescrt() {
    let (_, msg) = valid("rfc4475/regescrt.dat");
    let c = contacts(&msg);
    assert_eq!(c.len(), 1);
    let u = sip(&c[0].uri);
    assert_eq!(
        u.as_str(),
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
    assert!(u.has_headers());
    assert_eq!(
        u.headers().get("Route"),
        Some(Some("%3Csip:sip.example.com%3E"))
    );
    assert_eq!(u.header("route").as_deref(), Some("<sip:sip.example.com>"));
    assert!(c[0].params.is_empty());
}

#[test]
fn rfc4475_sdp01() {
    let (_, msg) = accepted_everywhere("rfc4475/sdp01.dat");
    assert_eq!(
        msg.header(HeaderName::Accept),
        Some(&b"text/nobodyKnowsThis"[..])
    );
    assert!(
        msg.content_type()
            .unwrap()
            .unwrap()
            .is("application", "sdp")
    );
    assert_eq!(msg.body().len(), 150);
}

// ===== RFC 4475 §3.4: backward compatibility =====

#[test]
fn rfc4475_inv2543() {
    let (bytes, msg) = valid("rfc4475/inv2543.dat");
    // No Content-Length: on a datagram the body is the rest of it.
    assert_eq!(msg.content_length(), None);
    assert_eq!(msg.body()[..], *body_of(&bytes));
    assert_eq!(msg.body().len(), 105);
    assert!(msg.body().ends_with(b"m=audio 49217 RTP/AVP 0\r\n"));
    assert_eq!(msg.max_forwards().unwrap(), None);
    let via = msg.top_via().unwrap();
    assert_eq!(via.branch(), None);
    assert_eq!(via.sent_by(), "iftgw.example.com");
    // To is an addr-spec: ;user=phone is a header parameter there, while in From it
    // sits inside '<' '>' and is a URI parameter.
    let to = msg.to().unwrap();
    assert_eq!(to.params.get("user"), Some(Some("phone")));
    assert_eq!(sip(&to.uri).user(), Some("+16505552222"));
    assert!(sip(&to.uri).params().is_empty());
    let from = msg.from().unwrap();
    assert_eq!(sip(&from.uri).user_param().as_deref(), Some("phone"));
    assert_eq!(from.tag(), None);
    let rr = msg.record_route().unwrap();
    assert_eq!(sip(&rr[0].uri).maddr().as_deref(), Some("ss1.example.com"));
    assert_eq!(msg.cseq().unwrap().seq, 56);
}

// ===== RFC 4475 Appendix A: the archive's extra member =====

#[test]
fn rfc4475_test_dat() {
    // Not described in the RFC; its request line has no SIP-Version.
    let (bytes, e) = parse_error("rfc4475/test.dat");
    let Error::Syntax {
        offset, context, ..
    } = e
    else {
        panic!("expected Syntax, got {e:?}");
    };
    assert_eq!(context, "start line");
    assert!(
        line_span(&bytes, "INVITE").contains(&offset) || offset == line_span(&bytes, "INVITE").end
    );
    assert_eq!(e.status_code(), 400);
}

// ===== RFC 5118: IPv6 =====

#[test]
fn rfc5118_ipv6_good() {
    let (_, msg) = valid("rfc5118/ipv6-good.dat");
    assert_eq!(msg.method(), Some(&Method::Register));
    let ruri = sip(msg.request_uri().unwrap());
    assert_eq!(ruri.user(), None);
    assert_eq!(ip(ruri.host()), v6("2001:db8::10"));
    assert_eq!(ruri.port(), None);
    let via = msg.top_via().unwrap();
    assert_eq!(ip(&via.host), v6("2001:db8::9:1"));
    assert_eq!(via.sent_by(), "[2001:db8::9:1]");
    assert_eq!(via.branch(), Some("z9hG4bKas3-111"));
    let c = &contacts(&msg)[0];
    assert_eq!(display(c), "Caller");
    assert_eq!(ip(sip(&c.uri).host()), v6("2001:db8::1"));
}

#[test]
fn rfc5118_ipv6_bad() {
    let (bytes, msg, r) = rejected("rfc5118/ipv6-bad.dat", Role::Syntax, 400);
    assert!(r.reason.contains("URI"), "{r}");
    assert_eq!(msg.request_uri_bytes().unwrap(), &b"sip:2001:db8::10"[..]);
    let e = msg.request_uri().unwrap_err();
    assert!(
        line_span(&bytes, "REGISTER").contains(&syntax_offset(&e)),
        "{e:?}"
    );
    assert_eq!(check(&msg, Role::Uas).unwrap_err().status, 400);
}

#[test]
fn rfc5118_port_ambiguous() {
    let (_, msg) = valid("rfc5118/port-ambiguous.dat");
    let ruri = sip(msg.request_uri().unwrap());
    // 5070 is the last group of the address, not a port.
    assert_eq!(ip(ruri.host()), v6("2001:db8::10:5070"));
    assert_eq!(ruri.port(), None);
    assert_eq!(ruri.port_or_default(), 5060);
}

#[test]
fn rfc5118_port_unambiguous() {
    let (_, msg) = valid("rfc5118/port-unambiguous.dat");
    let ruri = sip(msg.request_uri().unwrap());
    assert_eq!(ip(ruri.host()), v6("2001:db8::10"));
    assert_eq!(ruri.port(), Some(5070));
}

#[test]
fn rfc5118_via_received_param_with_delim() {
    let (_, msg) = valid("rfc5118/via-received-param-with-delim.dat");
    assert_eq!(msg.method(), Some(&Method::Bye));
    let via = msg.top_via().unwrap();
    assert_eq!(via.received(), Some("[2001:db8::9:255]"));
    assert_eq!(
        ip(&Host::parse(via.received().unwrap()).unwrap()),
        v6("2001:db8::9:255")
    );
    assert_eq!(ip(&via.host), v6("2001:db8::9:1"));
    assert_eq!(via.branch(), Some("z9hG4bKas3-111"));
    assert_eq!(msg.to().unwrap().tag(), Some("bd76ya"));
}

#[test]
fn rfc5118_via_received_param_no_delim() {
    let (_, msg) = valid("rfc5118/via-received-param-no-delim.dat");
    assert_eq!(msg.method(), Some(&Method::Options));
    let via = msg.top_via().unwrap();
    assert_eq!(via.received(), Some("2001:db8::9:255"));
    assert_eq!(
        ip(&Host::parse(via.received().unwrap()).unwrap()),
        v6("2001:db8::9:255")
    );
    assert_eq!(via.branch(), Some("z9hG4bKas3"));
}

#[test]
fn rfc5118_ipv6_in_sdp() {
    let (bytes, msg) = valid("rfc5118/ipv6-in-sdp.dat");
    assert_eq!(msg.content_length(), Some(251));
    assert_eq!(msg.body()[..], *body_of(&bytes));
    assert!(msg.body().windows(20).any(|w| w == b"c=IN IP6 2001:db8::2"));
    assert_eq!(
        ip(sip(msg.request_uri().unwrap()).host()),
        v6("2001:db8::10")
    );
    assert_eq!(ip(&msg.top_via().unwrap().host), v6("2001:db8::20"));
    assert_eq!(ip(sip(&contacts(&msg)[0].uri).host()), v6("2001:db8::20"));
    assert!(
        msg.content_type()
            .unwrap()
            .unwrap()
            .is("application", "sdp")
    );
}

#[test]
fn rfc5118_mult_ip_in_header() {
    let (_, msg) = valid("rfc5118/mult-ip-in-header.dat");
    assert_eq!(msg.method(), Some(&Method::Bye));
    let vias = msg.via().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (ip(&vias[0].host), vias[0].port),
        (v6("2001:db8::9:1"), Some(6050))
    );
    assert_eq!(vias[1].host, Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
    assert!(vias[2].is_transport("TCP"));
    assert_eq!(ip(&vias[2].host), v6("2001:db8::9:255"));
    assert_eq!(vias[2].received(), Some("192.0.2.200"));
    assert_eq!(msg.to().unwrap().tag(), Some("9817--94"));
}

#[test]
fn rfc5118_mult_ip_in_sdp() {
    let (bytes, msg) = valid("rfc5118/mult-ip-in-sdp.dat");
    assert_eq!(msg.content_length(), Some(189));
    assert_eq!(msg.body()[..], *body_of(&bytes));
    assert!(msg.body().windows(19).any(|w| w == b"c=IN IP4 192.0.2.1\r"));
    assert!(msg.body().windows(20).any(|w| w == b"c=IN IP6 2001:db8::1"));
    assert_eq!(ip(sip(&contacts(&msg)[0].uri).host()), v6("2001:db8::9:1"));
}

#[test]
fn rfc5118_ipv4_mapped_ipv6() {
    let (bytes, msg) = valid("rfc5118/ipv4-mapped-ipv6.dat");
    let vias = msg.via().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(
        (ip(&vias[0].host), vias[0].port),
        (v6("::ffff:192.0.2.10"), Some(19823))
    );
    assert_eq!(ip(&vias[1].host), v6("::ffff:192.0.2.2"));
    let c = &contacts(&msg)[0];
    assert_eq!(display(c), "T. desk phone");
    assert_eq!(ip(sip(&c.uri).host()), v6("::ffff:192.0.2.2"));
    assert_eq!(msg.content_length(), Some(245));
    assert_eq!(msg.body()[..], *body_of(&bytes));
}

#[test]
fn rfc5118_ipv6_bug_abnf_3_colons() {
    let (_, msg) = valid("rfc5118/ipv6-bug-abnf-3-colons.dat");
    let ruri = sip(msg.request_uri().unwrap());
    // Accepted liberally: read as the two-colon address it was meant to be.
    assert_eq!(ip(ruri.host()), v6("2001:db8::192.0.2.1"));
    assert_eq!(ruri.host().to_string(), "[2001:db8:::192.0.2.1]");
    assert_eq!(ruri.port(), None);
    assert_eq!(
        ip(sip(&msg.to().unwrap().uri).host()),
        v6("2001:db8::192.0.2.1")
    );
    assert_eq!(msg.cseq().unwrap().seq, 689);
}

#[test]
fn rfc5118_ipv6_correct_abnf_2_colons() {
    let (_, msg) = valid("rfc5118/ipv6-correct-abnf-2-colons.dat");
    let ruri = sip(msg.request_uri().unwrap());
    assert_eq!(ip(ruri.host()), v6("2001:db8::192.0.2.1"));
    assert_eq!(ruri.port(), None);
    let buggy_bytes = read("rfc5118/ipv6-bug-abnf-3-colons.dat");
    let buggy = parse("3-colons", &buggy_bytes);
    assert!(
        ruri.host()
            .equivalent(sip(buggy.request_uri().unwrap()).host())
    );
}

// ===== the manifest =====

struct Row {
    section: String,
    expected: String,
    status: Option<u16>,
}

fn manifest() -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(Path::new(DIR).join("MANIFEST.tsv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("file\trfc_section\texpected\tstatus\tnote")
    );
    let mut rows = BTreeMap::new();
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "manifest row {line:?}");
        let status = match cols[3] {
            "-" => None,
            s => Some(s.parse().unwrap_or_else(|_| panic!("status {s:?}"))),
        };
        assert!(!cols[4].is_empty(), "{}: note", cols[0]);
        let row = Row {
            section: cols[1].to_owned(),
            expected: cols[2].to_owned(),
            status,
        };
        assert!(
            rows.insert(cols[0].to_owned(), row).is_none(),
            "duplicate row {}",
            cols[0]
        );
    }
    rows
}

/// Every `.dat` file has a manifest row and every row its file, and each file
/// behaves as its class says (the per-message tests check the details).
#[test]
fn manifest_covers_every_file() {
    let rows = manifest();
    let mut files = Vec::new();
    for sub in ["rfc4475", "rfc5118"] {
        for entry in std::fs::read_dir(Path::new(DIR).join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            files.push(format!("{sub}/{name}"));
        }
    }
    files.sort();
    let listed: Vec<&String> = rows.keys().collect();
    assert_eq!(
        files.iter().collect::<Vec<_>>(),
        listed,
        "data files vs MANIFEST.tsv rows"
    );
    assert_eq!(
        files.iter().filter(|f| f.starts_with("rfc4475/")).count(),
        50
    );
    assert_eq!(
        files.iter().filter(|f| f.starts_with("rfc5118/")).count(),
        12
    );

    let roles = [Role::Syntax, Role::Uas, Role::Proxy];
    let mut wrong = Vec::new();
    for (file, row) in &rows {
        assert!(file.ends_with(".dat"), "{file}");
        let rfc = if file.starts_with("rfc4475/") {
            "4475 "
        } else {
            "5118 "
        };
        assert!(
            row.section.starts_with(rfc),
            "{file}: section {}",
            row.section
        );
        let bytes = read(file);
        let parsed = Message::parse(bytes.clone());
        let verdict = match (row.expected.as_str(), &parsed) {
            ("valid", Ok(m)) => match check(m, Role::Syntax) {
                Ok(()) if row.status.is_none() => Ok(()),
                Ok(()) => Err("valid rows have no status".to_owned()),
                Err(r) => Err(format!("valid but validation says {r}")),
            },
            ("valid", Err(e)) => Err(format!("valid but parse fails: {e}")),
            ("invalid", Err(e)) => match row.status {
                Some(s) if s != e.status_code() => Err(format!(
                    "parse error {e} maps to {}, manifest says {s}",
                    e.status_code()
                )),
                _ => Ok(()),
            },
            ("invalid", Ok(m)) => match (check(m, Role::Syntax), row.status) {
                (Ok(()), _) => Err("invalid but parses and validates".to_owned()),
                (Err(r), Some(s)) if r.status != s => {
                    Err(format!("rejected with {r}, manifest says {s}"))
                }
                (Err(r), _) if !(400..600).contains(&r.status) => Err(format!("rejected with {r}")),
                (Err(_), _) => Ok(()),
            },
            ("semantic", Err(e)) => Err(format!("semantic but parse fails: {e}")),
            ("semantic", Ok(m)) => {
                let outcomes: Vec<_> = roles.iter().map(|&role| check(m, role)).collect();
                match row.status {
                    None if outcomes.iter().all(Result::is_ok) => Ok(()),
                    None => Err(format!("expected to validate in every role: {outcomes:?}")),
                    Some(s)
                        if outcomes
                            .iter()
                            .any(|o| o.as_ref().is_err_and(|r| r.status == s)) =>
                    {
                        Ok(())
                    }
                    Some(s) => Err(format!("no role answers {s}: {outcomes:?}")),
                }
            }
            (other, _) => Err(format!("unknown class {other:?}")),
        };
        if let Err(why) = verdict {
            wrong.push(format!("{file} ({}): {why}", row.expected));
        }
    }
    assert!(
        wrong.is_empty(),
        "messages not handled as MANIFEST.tsv says:\n{}",
        wrong.join("\n")
    );
}
