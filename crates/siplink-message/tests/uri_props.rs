//! Property tests: generated SIP/SIPS/tel URIs round-trip through Display and the
//! parser; the builder's output re-parses to an equivalent URI; arbitrary bytes
//! and mutations of valid URIs never panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use siplink_message::uri::{Host, SipUri, Uri};

const UNRESERVED_MARK: &str = "-_.!~*'()";
const RESERVED: &[u8] = b";/?:@&=+$,";

/// One character of an escaped component: a literal or a `%HH` escape.
#[derive(Debug, Clone)]
enum Unit {
    Raw(u8),
    Esc(u8, bool),
}

fn unit(extra: &'static str) -> impl Strategy<Value = Unit> {
    let raw: Vec<u8> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .map(|c| c as u8)
        .chain(UNRESERVED_MARK.bytes())
        .chain(extra.bytes())
        .collect();
    prop_oneof![
        4 => proptest::sample::select(raw).prop_map(Unit::Raw),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(b, up)| Unit::Esc(b, up)),
    ]
}

fn render(units: &[Unit]) -> String {
    let mut s = String::new();
    for u in units {
        match *u {
            Unit::Raw(c) => s.push(c as char),
            Unit::Esc(b, true) => s.push_str(&format!("%{b:02X}")),
            Unit::Esc(b, false) => s.push_str(&format!("%{b:02x}")),
        }
    }
    s
}

fn decode(units: &[Unit]) -> Vec<u8> {
    units
        .iter()
        .map(|u| match *u {
            Unit::Raw(c) | Unit::Esc(c, _) => c,
        })
        .collect()
}

/// Re-encodes: non-reserved escapes become literals and alphanumeric literals
/// become escapes; RFC 3261 §19.1.4 says the result is equivalent.
fn reencode(units: &[Unit]) -> Vec<Unit> {
    units
        .iter()
        .map(|u| match *u {
            Unit::Esc(b, _)
                if b.is_ascii_alphanumeric() || UNRESERVED_MARK.as_bytes().contains(&b) =>
            {
                Unit::Raw(b)
            }
            Unit::Raw(c) if c.is_ascii_alphanumeric() => Unit::Esc(c, true),
            ref other => other.clone(),
        })
        .collect()
}

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(label(), 0..4),
        "[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?",
        any::<bool>(),
    )
        .prop_map(|(mut labels, top, dot)| {
            labels.push(top);
            let mut s = labels.join(".");
            if dot {
                s.push('.');
            }
            s
        })
}

fn host_text() -> impl Strategy<Value = String> {
    prop_oneof![
        domain(),
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        any::<u128>().prop_map(|a| format!("[{}]", Ipv6Addr::from(a))),
        (any::<u128>(), any::<bool>()).prop_map(|(a, up)| {
            let s = format!("[{}]", Ipv6Addr::from(a));
            if up { s.to_uppercase() } else { s }
        }),
    ]
}

#[derive(Debug, Clone)]
struct Parts {
    secure: bool,
    user: Option<(Vec<Unit>, Option<Vec<Unit>>)>,
    host: String,
    port: Option<u16>,
    params: Vec<(Vec<Unit>, Option<Vec<Unit>>)>,
    headers: Vec<(Vec<Unit>, Vec<Unit>)>,
}

fn units(extra: &'static str, min: usize, max: usize) -> impl Strategy<Value = Vec<Unit>> {
    proptest::collection::vec(unit(extra), min..max)
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        any::<bool>(),
        proptest::option::of((
            units("&=+$,;?/", 1, 12),
            proptest::option::of(units("&=+$,", 0, 8)),
        )),
        host_text(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(
            (
                units("[]/:&+$", 1, 8),
                proptest::option::of(units("[]/:&+$", 1, 8)),
            ),
            0..4,
        ),
        proptest::collection::vec((units("[]/?:+$", 1, 6), units("[]/?:+$", 0, 8)), 0..3),
    )
        .prop_map(|(secure, user, host, port, params, headers)| Parts {
            secure,
            user,
            host,
            port,
            params,
            headers,
        })
}

fn render_parts(p: &Parts, enc: &dyn Fn(&[Unit]) -> String) -> String {
    let mut s = String::from(if p.secure { "sips:" } else { "sip:" });
    if let Some((u, pw)) = &p.user {
        s.push_str(&enc(u));
        if let Some(pw) = pw {
            s.push(':');
            s.push_str(&enc(pw));
        }
        s.push('@');
    }
    s.push_str(&p.host);
    if let Some(port) = p.port {
        s.push_str(&format!(":{port}"));
    }
    for (n, v) in &p.params {
        s.push(';');
        s.push_str(&enc(n));
        if let Some(v) = v {
            s.push('=');
            s.push_str(&enc(v));
        }
    }
    for (i, (n, v)) in p.headers.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(&enc(n));
        s.push('=');
        s.push_str(&enc(v));
    }
    s
}

fn tel() -> impl Strategy<Value = (String, String)> {
    // (with separators, without)
    (
        proptest::collection::vec(("[0-9]", proptest::option::of("[-.()]")), 1..15),
        proptest::option::of("[0-9]{1,5}"),
        proptest::collection::vec(("[a-z][a-z0-9-]{0,6}", "[a-zA-Z0-9]{1,6}"), 0..3),
    )
        .prop_map(|(digits, ext, params)| {
            let mut with = String::from("tel:+");
            let mut without = String::from("tel:+");
            for (d, sep) in digits {
                with.push_str(&d);
                without.push_str(&d);
                if let Some(sep) = sep {
                    with.push_str(&sep);
                }
            }
            if let Some(e) = ext {
                with.push_str(&format!(";ext={e}"));
                without.push_str(&format!(";ext={e}"));
            }
            for (i, (n, v)) in params.iter().enumerate() {
                // distinct names; "ext"/"isub"/"phone-context" avoided
                let n = format!("x{i}{n}");
                with.push_str(&format!(";{n}={v}"));
                without.push_str(&format!(";{}={}", n.to_uppercase(), v.to_lowercase()));
            }
            (with, without)
        })
}

fn mutate(s: &str, ops: &[(u16, u8, u8)]) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    for &(pos, byte, op) in ops {
        let pos = usize::from(pos) % (b.len() + 1);
        match op % 3 {
            0 if pos < b.len() => b[pos] = byte,
            1 => b.insert(pos, byte),
            _ if pos < b.len() => {
                b.remove(pos);
            }
            _ => {}
        }
    }
    b
}

fn check_consistent(input: &[u8]) {
    if let Ok(u) = Uri::parse(input.to_vec()) {
        assert_eq!(u.as_bytes(), input);
        assert!(u.equivalent(&u));
        // Same URI, scheme in another case: exercises the rules, not the
        // identical-text shortcut.
        let colon = input.iter().position(|&c| c == b':').unwrap();
        let mut other = input.to_vec();
        other[..colon]
            .iter_mut()
            .filter(|c| c.is_ascii_alphabetic())
            .for_each(|c| *c ^= 0x20);
        let other = Uri::parse(other).expect("scheme case does not matter");
        assert!(u.equivalent(&other) && other.equivalent(&u));
        let again = Uri::parse(u.to_string()).expect("display re-parses");
        assert_eq!(again, u);
        if let Some(s) = u.as_sip() {
            let rebuilt = s.to_builder().build().expect("to_builder re-builds");
            assert!(rebuilt.equivalent(s));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_sip_uris_roundtrip(p in parts()) {
        let text = render_parts(&p, &|u| render(u));
        let uri = Uri::parse(text.clone()).unwrap_or_else(|e| panic!("{text}: {e}"));
        prop_assert_eq!(uri.to_string(), text.clone());
        prop_assert!(uri.equivalent(&uri));
        let upper = Uri::parse(text.replacen("sip", "SIP", 1)).unwrap();
        prop_assert!(uri.equivalent(&upper) && upper.equivalent(&uri));
        let sip = uri.as_sip().unwrap();
        prop_assert_eq!(sip.is_secure(), p.secure);
        prop_assert_eq!(sip.port(), p.port);
        prop_assert_eq!(sip.params().len(), p.params.len());
        prop_assert_eq!(sip.headers().len(), p.headers.len());
        if let Some((u, pw)) = &p.user {
            prop_assert_eq!(sip.user_unescaped().unwrap().into_owned(), decode(u));
            prop_assert_eq!(
                sip.password_unescaped().map(|c| c.into_owned()),
                pw.as_ref().map(|pw| decode(pw))
            );
        } else {
            prop_assert!(sip.user().is_none());
        }
        prop_assert_eq!(sip.host().to_string(), p.host.clone());
        // Re-parse of the Display text is identical and equivalent.
        let again = Uri::parse(uri.to_string()).unwrap();
        prop_assert!(again.equivalent(&uri));
        // Re-encoding non-reserved characters and changing the host case keep
        // the URI equivalent.
        let mut q = p.clone();
        q.host = if q.host.starts_with('[') { q.host.clone() } else { q.host.to_uppercase() };
        let re = render_parts(&q, &|u| render(&reencode(u)));
        let re = Uri::parse(re.clone()).unwrap_or_else(|e| panic!("{re}: {e}"));
        prop_assert!(re.equivalent(&uri), "{} vs {}", re, uri);
        // SIP vs SIPS never match.
        let mut flip = p.clone();
        flip.secure = !flip.secure;
        let flip = Uri::parse(render_parts(&flip, &|u| render(u))).unwrap();
        prop_assert!(!flip.equivalent(&uri));
        // The builder reproduces it exactly.
        let rebuilt = sip.to_builder().build().unwrap();
        prop_assert_eq!(&rebuilt, sip);
    }

    #[test]
    fn built_uris_reparse_equivalent(
        secure in any::<bool>(),
        user in proptest::option::of((proptest::collection::vec(any::<u8>(), 1..12),
                                      proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)))),
        host in host_text(),
        port in proptest::option::of(any::<u16>()),
        // Names without `%`: `%58` and `X` name the same parameter once decoded.
        params in proptest::collection::vec(("[ -$&-~]{1,6}", proptest::option::of("[ -~]{1,6}")), 0..4),
        headers in proptest::collection::vec(("[ -~]{1,6}", "[ -~]{0,6}"), 0..3),
    ) {
        let mut b = SipUri::builder(Host::parse(&host).unwrap()).secure(secure).port(port);
        if let Some((u, pw)) = &user {
            b = b.user(u);
            if let Some(pw) = pw {
                b = b.password(pw);
            }
        }
        // The first occurrence of each name (case-insensitively) is what the
        // builder keeps; later duplicates are skipped here.
        let mut kept: Vec<(String, Option<String>)> = Vec::new();
        for (n, v) in &params {
            if kept.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)) {
                continue;
            }
            kept.push((n.clone(), v.clone()));
            b = b.param(n, v.as_deref());
        }
        for (n, v) in &headers {
            b = b.header(n, v);
        }
        let built = b.build().unwrap();
        let text = built.to_string();
        let parsed = SipUri::parse(text.clone()).unwrap();
        prop_assert!(parsed.equivalent(&built));
        prop_assert_eq!(parsed.to_string(), text);
        if let Some((u, pw)) = &user {
            prop_assert_eq!(parsed.user_unescaped().unwrap().into_owned(), u.clone());
            prop_assert_eq!(parsed.password_unescaped().map(|c| c.into_owned()), pw.clone());
        }
        for (n, v) in &kept {
            let got = parsed.param(n).unwrap().map(|c| c.into_owned());
            prop_assert_eq!(got, v.clone());
        }
        if let Some((n, v)) = headers.first() {
            prop_assert_eq!(parsed.header(n).unwrap().into_owned(), v.clone());
        }
    }

    #[test]
    fn generated_tel_uris_roundtrip((with, without) in tel()) {
        let a = Uri::parse(with.clone()).unwrap_or_else(|e| panic!("{with}: {e}"));
        let b = Uri::parse(without.clone()).unwrap_or_else(|e| panic!("{without}: {e}"));
        prop_assert_eq!(a.to_string(), with);
        prop_assert!(a.equivalent(&b));
        prop_assert!(b.equivalent(&a));
        prop_assert_eq!(
            a.as_tel().unwrap().normalized_number(),
            b.as_tel().unwrap().normalized_number()
        );
    }

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_consistent(&input);
        let mut with_scheme = b"sip:".to_vec();
        with_scheme.extend_from_slice(&input);
        check_consistent(&with_scheme);
    }

    #[test]
    fn uri_alphabet_never_panics(s in "(sips?|tel|x):[a-zA-Z0-9%@:;?&=+$,/\\[\\].\\-_!~*'()#]{0,40}") {
        check_consistent(s.as_bytes());
    }

    #[test]
    fn mutations_never_panic(p in parts(), ops in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 1..4)) {
        let text = render_parts(&p, &|u| render(u));
        check_consistent(&mutate(&text, &ops));
    }

    #[test]
    fn equivalence_is_symmetric(a in parts(), b in parts()) {
        let a = Uri::parse(render_parts(&a, &|u| render(u))).unwrap();
        let b = Uri::parse(render_parts(&b, &|u| render(u))).unwrap();
        prop_assert_eq!(a.equivalent(&b), b.equivalent(&a));
    }
}

#[test]
fn reserved_escapes_are_distinct() {
    for &c in RESERVED {
        let raw = format!("sip:a{}b@h", c as char);
        let esc = format!("sip:a%{:02X}b@h", c);
        if let (Ok(r), Ok(e)) = (Uri::parse(raw), Uri::parse(esc)) {
            assert!(!r.equivalent(&e), "{c}");
        }
    }
}
