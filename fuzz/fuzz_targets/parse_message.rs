//! Message parser: arbitrary bytes never panic. Whatever parses is read through
//! every typed accessor and validated in every role; unedited, it serialises to
//! the input minus leading CRLFs and trailing datagram bytes; edited, it
//! re-parses and reads the edits back.
//!
//! Seed with the torture messages:
//! `cargo +nightly fuzz run parse_message /tmp/corpus \
//!   ../crates/siplink-message/tests/torture/rfc4475 ../crates/siplink-message/tests/torture/rfc5118`
#![no_main]

use libfuzzer_sys::fuzz_target;
use siplink_message::{HeaderName, Message, Role, ValidationOptions};

/// Reads every view; results are discarded, only panics matter.
fn read_all(msg: &Message) {
    let _ = (msg.is_request(), msg.method(), msg.status(), msg.reason());
    let _ = (msg.version(), msg.request_uri_bytes(), msg.request_uri());
    for h in msg.headers() {
        let _ = (h.name(), h.raw_name(), h.value(), h.value_str());
        if let Some(name) = std::str::from_utf8(h.raw_name()).ok() {
            let _ = msg.header_values_named(name).count();
        }
    }
    let _ = msg.header_count();
    if let Ok(vias) = msg.via() {
        for v in vias {
            let _ = (v.branch(), v.received(), v.rport(), v.maddr(), v.ttl());
            let _ = (v.has_magic_cookie(), v.sent_by(), v.to_string());
        }
    }
    let _ = msg.top_via();
    for na in [msg.from(), msg.to()].into_iter().flatten() {
        let _ = (na.tag(), na.to_string());
    }
    if let Ok(c) = msg.contact() {
        for na in c.as_slice() {
            let _ = (na.expires(), na.q(), na.instance(), na.reg_id());
        }
        let _ = c.is_star();
    }
    for list in [msg.route(), msg.record_route(), msg.path()]
        .into_iter()
        .flatten()
    {
        for na in list {
            let _ = (na.uri.as_sip().map(|u| u.lr()), na.to_string());
        }
    }
    let _ = (msg.call_id(), msg.cseq().map(ToString::to_string));
    let _ = (msg.max_forwards(), msg.expires(), msg.min_expires());
    let _ = msg.content_type().map(|c| c.map(ToString::to_string));
    if let Ok(ch) = msg.www_authenticate() {
        for c in ch {
            let _ = (c.realm(), c.nonce(), c.qop_options().count(), c.stale());
        }
    }
    let _ = msg.proxy_authenticate();
    if let Ok(cr) = msg.authorization() {
        for c in cr {
            let _ = (c.username(), c.uri(), c.response(), c.nc());
        }
    }
    let _ = msg.proxy_authorization();
    let _ = (msg.allow(), msg.supported(), msg.require());
    let _ = (msg.proxy_require(), msg.unsupported(), msg.retry_after());
    let _ = (msg.user_agent(), msg.server(), msg.check_date());
    let _ = (msg.body(), msg.content_length(), msg.trailing_bytes());
    for role in [Role::Uas, Role::Proxy, Role::Syntax] {
        let opts = ValidationOptions {
            role,
            supported: vec!["100rel".into(), "path".into()],
        };
        if let Err(r) = msg.validate_with(&opts) {
            assert!((400..=699).contains(&r.status), "{r}");
        }
    }
    let _ = msg.to_string();
}

fuzz_target!(|data: &[u8]| {
    let msg = match Message::parse(data.to_vec()) {
        Ok(m) => m,
        Err(e) => {
            let _ = (e.status_code(), e.to_string());
            return;
        }
    };
    read_all(&msg);

    // Unedited: the received bytes, without leading CRLFs and trailing bytes.
    let lead = data.chunks(2).take_while(|c| *c == b"\r\n").count() * 2;
    let expected = &data[lead..data.len() - msg.trailing_bytes()];
    assert!(!msg.is_edited());
    assert_eq!(&msg.to_bytes()[..], expected);
    let same = msg.reparse().expect("an unedited message re-parses");
    assert_eq!(same.to_bytes(), msg.to_bytes());

    if msg.is_request() {
        if let Ok(resp) = msg.response_with_tag(200, Some("fuzz")).build() {
            assert_eq!(resp.status(), Some(200));
            read_all(&resp);
        }
    }

    // Edits: a new top Via and Max-Forwards, then re-parse.
    let mut edited = msg.clone();
    edited.prepend_header(
        HeaderName::Via,
        "SIP/2.0/UDP fuzz.invalid;branch=z9hG4bKfuzz",
    );
    edited.set_header(HeaderName::MaxForwards, "70");
    assert!(edited.is_edited());
    let re = edited.reparse().expect("an edited message re-parses");
    assert_eq!(
        re.header(HeaderName::Via),
        Some(&b"SIP/2.0/UDP fuzz.invalid;branch=z9hG4bKfuzz"[..])
    );
    assert_eq!(re.max_forwards(), Ok(Some(70)));
    assert_eq!(re.count(HeaderName::MaxForwards), 1);
    assert_eq!(re.body(), msg.body());
    read_all(&re);

    // Removing the value just added gives back the other header lines.
    let mut edited = re;
    assert!(edited.remove_first_value(HeaderName::Via));
    let re = edited
        .reparse()
        .expect("re-parses after remove_first_value");
    assert_eq!(re.count(HeaderName::Via), msg.count(HeaderName::Via));
    read_all(&re);

    // A new body updates Content-Length.
    let mut edited = msg.clone();
    edited.set_body(Some("text/plain"), &b"fuzz\r\nbody"[..]);
    let re = edited.reparse().expect("re-parses after set_body");
    assert_eq!(&re.body()[..], b"fuzz\r\nbody");
    assert_eq!(re.content_length(), Some(10));
    assert_eq!(re.trailing_bytes(), 0);
    read_all(&re);

    if msg.is_request() {
        let mut edited = msg.clone();
        assert!(edited.set_request_uri("sip:fuzz@example.com"));
        let re = edited.reparse().expect("re-parses after set_request_uri");
        assert_eq!(
            re.request_uri_bytes().map(|b| &b[..]),
            Some(&b"sip:fuzz@example.com"[..])
        );
        assert_eq!(re.method(), msg.method());
        read_all(&re);
    }
});
