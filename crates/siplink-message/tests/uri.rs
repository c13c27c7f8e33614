//! URI parsing, printing, building and comparison (RFC 3261 §19.1/§25, RFC 3966,
//! RFC 4475, RFC 5118).

use std::net::{Ipv4Addr, Ipv6Addr};

use siplink_message::Error;
use siplink_message::uri::{Host, SipUri, Uri};

fn sip(s: &'static str) -> SipUri {
    match Uri::parse(s) {
        Ok(Uri::Sip(u)) => u,
        other => panic!("{s}: {other:?}"),
    }
}

fn syntax_err(s: &'static str) -> (usize, &'static str) {
    match Uri::parse(s) {
        Err(Error::Syntax {
            offset, expected, ..
        }) => (offset, expected),
        other => panic!("{s}: expected a syntax error, got {other:?}"),
    }
}

fn eq(a: &'static str, b: &'static str) -> bool {
    let (a, b) = (Uri::parse(a).unwrap(), Uri::parse(b).unwrap());
    let r = a.equivalent(&b);
    assert_eq!(r, b.equivalent(&a), "equivalence must be symmetric");
    r
}

#[test]
fn basic_components() {
    let u = sip(
        "sip:alice:secretword@atlanta.com:5070;transport=tcp;lr?subject=project%20x&priority=urgent",
    );
    assert!(!u.is_secure());
    assert_eq!(u.scheme(), "sip");
    assert_eq!(u.user(), Some("alice"));
    assert_eq!(u.password(), Some("secretword"));
    assert_eq!(u.host(), &Host::Domain("atlanta.com".into()));
    assert_eq!(u.port(), Some(5070));
    assert_eq!(u.transport().as_deref(), Some("tcp"));
    assert!(u.lr());
    assert_eq!(u.params().len(), 2);
    assert_eq!(u.headers().len(), 2);
    assert_eq!(u.header("Subject").as_deref(), Some("project x"));
    assert_eq!(u.headers().get("priority"), Some(Some("urgent")));
    let u = sip("SIPS:bob@Biloxi.example.com");
    assert!(u.is_secure());
    assert_eq!(u.scheme(), "sips");
    assert_eq!(u.port_or_default(), 5061);
    assert_eq!(u.to_string(), "SIPS:bob@Biloxi.example.com");
    let u = sip("sip:example.com");
    assert_eq!(u.user(), None);
    assert_eq!(u.port_or_default(), 5060);
}

#[test]
fn as_bytes_and_display_are_the_original() {
    for s in [
        "sip:%61lice@AtLanTa.CoM;Transport=TCP",
        "sips:[2001:db8::10]:5070;maddr=[::1]?h=%20",
        "tel:+1-201-555-0123;ext=12",
        "nobodyKnowsThisScheme:totallyopaquecontent",
    ] {
        let u = Uri::parse(s).unwrap();
        assert_eq!(u.as_bytes(), s.as_bytes());
        assert_eq!(u.to_string(), s);
        assert_eq!(s.parse::<Uri>().unwrap(), u);
    }
}

#[test]
fn helper_params() {
    let u = sip("sip:h;TTL=15;Maddr=239.255.255.1;method=REGISTER;user=phone;x");
    assert_eq!(u.ttl(), Some(15));
    assert_eq!(u.maddr().as_deref(), Some("239.255.255.1"));
    assert_eq!(u.method().as_deref(), Some("REGISTER"));
    assert_eq!(u.user_param().as_deref(), Some("phone"));
    assert_eq!(u.param("x"), Some(None));
    assert_eq!(u.param("y"), None);
    assert!(!u.lr());
    assert_eq!(sip("sip:h;ttl=256").ttl(), None);
    assert_eq!(sip("sip:h;ttl=abc").ttl(), None);
}

#[test]
fn rfc4475_esc01() {
    let u = sip("sip:sips%3Auser%40example.com@example.net");
    assert_eq!(u.user(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        u.user_unescaped().unwrap().as_ref(),
        b"sips:user@example.com"
    );
    assert_eq!(u.host(), &Host::Domain("example.net".into()));
    let u = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
    assert_eq!(u.user_unescaped().unwrap().as_ref(), b"caller");
    assert!(u.lr());
    assert_eq!(u.param("name").unwrap().as_deref(), Some("value%41"));
    // kept raw
    assert_eq!(u.params().iter().next().unwrap().name, "%6C%72");
    assert!(u.equivalent(&sip("sip:caller@host5.example.net;lr;name=value%2541")));
    assert_eq!(
        sip("sip:%75se%72@example.com")
            .user_unescaped()
            .unwrap()
            .as_ref(),
        b"user"
    );
    assert_eq!(
        sip("sip:I%20have%20spaces@example.net")
            .user_unescaped()
            .unwrap()
            .as_ref(),
        b"I have spaces"
    );
}

#[test]
fn rfc4475_escnull() {
    let a = sip("sip:%00@host5.example.com");
    let b = sip("sip:%00%00@host5.example.com");
    assert_eq!(a.user_unescaped().unwrap().as_ref(), b"\0");
    assert_eq!(b.user_unescaped().unwrap().as_ref(), b"\0\0");
    assert!(!a.equivalent(&b));
    let c = sip("sip:null-%00-null@example.com");
    assert_eq!(c.user_unescaped().unwrap().as_ref(), b"null-\0-null");
}

#[test]
fn rfc4475_semiuri() {
    let u = sip("sip:user;par=u%40example.net@example.com");
    assert_eq!(u.user(), Some("user;par=u%40example.net"));
    assert_eq!(
        u.user_unescaped().unwrap().as_ref(),
        b"user;par=u@example.net"
    );
    assert_eq!(u.host(), &Host::Domain("example.com".into()));
    assert!(u.params().is_empty());
}

#[test]
fn rfc4475_intmeth() {
    let u = sip(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
    );
    assert_eq!(
        u.user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.host(), &Host::Domain("example.com".into()));
    let to = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com");
    assert_eq!(to.password(), None);
}

#[test]
fn rfc4475_longreq() {
    let long = concat!(
        "sip:user@example.com:6000;unknownparam1=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongvalue",
        ";longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=shortvalue",
        ";verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue"
    );
    let u = sip(long);
    assert_eq!(u.port(), Some(6000));
    assert_eq!(u.params().len(), 3);
    assert_eq!(
        u.param("longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename")
            .unwrap()
            .as_deref(),
        Some("shortvalue")
    );
    assert_eq!(u.params().iter().nth(2).unwrap().value, None);
    let name = "amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername";
    let c = sip(
        "sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@host5.example.net",
    );
    assert_eq!(c.user(), Some(name));
}

#[test]
fn rfc4475_uri_headers() {
    let u = sip("sip:user@example.com?Route=%3Csip:example.com%3E");
    assert_eq!(u.headers().len(), 1);
    assert_eq!(u.header("route").as_deref(), Some("<sip:example.com>"));
    let u = sip("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
    assert_eq!(
        u.headers().get("Route"),
        Some(Some("%3Csip:sip.example.com%3E"))
    );
    let u = sip("sip:h?a=&b=c");
    assert_eq!(u.headers().get("a"), Some(Some("")));
}

#[test]
fn rfc4475_other_uris() {
    assert_eq!(
        sip("sip:vivekg@chair-dnrc.example.com;unknownparam").param("unknownparam"),
        Some(None)
    );
    assert_eq!(
        sip("sip:+19725552222@gw1.example.net;unknownparam").user(),
        Some("+19725552222")
    );
    assert_eq!(
        sip("sip:caller@host39923.example.net").user(),
        Some("caller")
    );
}

#[test]
fn rfc4475_lws_and_brackets_rejected() {
    assert_eq!(
        syntax_err("sip:user@example.com; lr"),
        (21, "URI parameter name")
    );
    assert!(Uri::parse("sip:user@example.com ;lr").is_err());
    assert!(Uri::parse(" sip:user@example.com").is_err());
    assert!(Uri::parse("sip:user@example.com ").is_err());
    assert!(Uri::parse("sip:us er@example.com").is_err());
    assert!(Uri::parse("sip:user@exa\r\n mple.com").is_err());
    assert!(Uri::parse("sip:user@example.com;a=b\t").is_err());
    assert!(Uri::parse("<sip:user@example.com>").is_err());
    assert!(Uri::parse("sip: user@example.com").is_err());
    assert!(Uri::parse("sip:user@example.com?a=b c").is_err());
    assert!(Uri::parse("tel:+1 234").is_err());
    assert!(Uri::parse("http://a b").is_err());
}

#[test]
fn other_schemes_are_absolute() {
    for (s, scheme, rest) in [
        (
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "nobodyKnowsThisScheme",
            "totallyopaquecontent",
        ),
        (
            "soap.beep://192.0.2.103:3002",
            "soap.beep",
            "//192.0.2.103:3002",
        ),
        ("isbn:2983792873", "isbn", "2983792873"),
        ("http://www.example.com", "http", "//www.example.com"),
        ("name:John_Smith", "name", "John_Smith"),
        (
            "mailto:alice@example.com?subject=hi%20there",
            "mailto",
            "alice@example.com?subject=hi%20there",
        ),
        ("urn:service:sos", "urn", "service:sos"),
    ] {
        let u = Uri::parse(s).unwrap();
        let a = u.as_absolute().unwrap();
        assert_eq!(u.scheme(), scheme);
        assert_eq!(a.opaque(), rest);
        assert!(u.as_sip().is_none());
    }
    assert!(eq(
        "HTTP://www.example.com/%7Ea",
        "http://www.example.com/~a"
    ));
    assert!(!eq("http://www.example.com/A", "http://www.example.com/a"));
    assert!(!eq("isbn:1", "sip:isbn"));
    assert!(Uri::parse("x:").is_err());
    assert!(Uri::parse("x:a%zz").is_err());
    assert!(Uri::parse("x:a<b").is_err());
    assert!(Uri::parse("1x:a").is_err());
    assert!(Uri::parse(":a").is_err());
    assert!(Uri::parse("noscheme").is_err());
}

#[test]
fn scheme_case_insensitive() {
    assert_eq!(Uri::parse("SIP:a@b.com").unwrap().scheme(), "sip");
    assert_eq!(Uri::parse("SiPs:a@b.com").unwrap().scheme(), "sips");
    assert_eq!(Uri::parse("TEL:+1234").unwrap().scheme(), "tel");
    assert!(eq("SIP:a@b.com", "sip:a@b.com"));
}

#[test]
fn rfc5118_ipv6() {
    let u = sip("sip:[2001:db8::10]");
    let addr: Ipv6Addr = "2001:db8::10".parse().unwrap();
    assert!(
        matches!(u.host(), Host::Ipv6 { addr: a, text } if *a == addr && text == "[2001:db8::10]")
    );
    assert_eq!(u.port(), None);
    let u = sip("sip:[2001:db8::10]:5070");
    assert_eq!(u.port(), Some(5070));
    assert_eq!(u.host().ip(), Some(addr.into()));
    // port-ambiguous: all inside the brackets is the address.
    let u = sip("sip:[2001:db8::10:5070]");
    assert_eq!(u.port(), None);
    assert_eq!(
        u.host().ip(),
        Some("2001:db8::10:5070".parse::<Ipv6Addr>().unwrap().into())
    );
    let u = sip("sip:ted@[::ffff:192.0.2.2]");
    assert_eq!(
        u.host().ip(),
        Some("::ffff:192.0.2.2".parse::<Ipv6Addr>().unwrap().into())
    );
    let two = sip("sip:user@[2001:db8::192.0.2.1]");
    let three = sip("sip:user@[2001:db8:::192.0.2.1]");
    assert_eq!(two.host().ip(), three.host().ip());
    assert!(two.equivalent(&three));
    assert_eq!(three.to_string(), "sip:user@[2001:db8:::192.0.2.1]");
    assert!(matches!(three.host(), Host::Ipv6 { text, .. } if text == "[2001:db8:::192.0.2.1]"));
    // ipv6-bad: no brackets.
    assert!(matches!(
        Uri::parse("sip:2001:db8::10"),
        Err(Error::Syntax { .. })
    ));
    assert!(Uri::parse("sip:[2001:db8::10").is_err());
    assert!(Uri::parse("sip:[2001:db8::10]5060").is_err());
    assert!(Uri::parse("sip:[2001:db8::10::1]").is_err());
    assert!(Uri::parse("sip:[1:2:3]").is_err());
    assert!(Uri::parse("sip:[fe80::1%25eth0]").is_err());
    assert!(Uri::parse("sip:[]").is_err());
    assert!(eq("sip:[2001:DB8::10]", "sip:[2001:db8:0::10]"));
    assert!(!eq("sip:[2001:db8::10]", "sip:[2001:db8::11]"));
}

#[test]
fn hosts() {
    assert_eq!(
        sip("sip:a@192.0.2.4").host(),
        &Host::Ipv4(Ipv4Addr::new(192, 0, 2, 4))
    );
    assert_eq!(sip("sip:a@255.255.255.255:0").port(), Some(0));
    assert!(matches!(sip("sip:a@example.com.").host(), Host::Domain(d) if d == "example.com."));
    assert!(matches!(sip("sip:a@3com").host(), Host::Domain(_)));
    assert!(matches!(sip("sip:a@x-1.y2.com").host(), Host::Domain(_)));
    for bad in [
        "sip:a@",
        "sip:",
        "sip:a@-x.com",
        "sip:a@x-.com",
        "sip:a@x..com",
        "sip:a@.x.com",
        "sip:a@x.com..",
        "sip:a@192.0.2.256",
        "sip:a@192.0.2",
        "sip:a@1.2.3.4.5",
        "sip:a@x.123",
        "sip:a@ex_ample.com",
        "sip:a@exa%6Dple.com",
        "sip:a@1.2.3.4.",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad}");
    }
    assert!(eq("sip:a@EXAMPLE.com", "sip:a@example.COM"));
    assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
    assert_eq!(
        Host::parse("[2001:db8::1]").unwrap(),
        Host::parse("2001:db8::1").unwrap()
    );
    assert_eq!(
        Host::parse("192.0.2.1").unwrap().ip(),
        Some([192, 0, 2, 1].into())
    );
    assert!(Host::parse("a.com:5060").is_err());
}

#[test]
fn ports() {
    assert_eq!(sip("sip:h:65535").port(), Some(65535));
    assert_eq!(sip("sip:h:0005060").port(), Some(5060));
    assert!(matches!(
        Uri::parse("sip:h:65536"),
        Err(Error::OutOfRange { offset: 6, .. })
    ));
    assert!(matches!(
        Uri::parse("sip:h:99999999999999999999999"),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(syntax_err("sip:h:"), (6, "port number"));
    assert_eq!(syntax_err("sip:h:x"), (6, "port number"));
    assert!(Uri::parse("sip:h:5060:5060").is_err());
}

#[test]
fn userinfo_rules() {
    assert_eq!(sip("sip:a:@h").password(), Some(""));
    assert!(Uri::parse("sip:@h").is_err());
    assert!(Uri::parse("sip::pw@h").is_err());
    assert!(Uri::parse("sip:a@b@h").is_err());
    assert!(Uri::parse("sip:a:b:c@h").is_err());
    assert!(Uri::parse("sip:a%4@h").is_err());
    assert!(Uri::parse("sip:a%GG@h").is_err());
    assert!(Uri::parse("sip:a[b@h").is_err());
    // user-unreserved '?' and '=': the '@' decides.
    assert_eq!(sip("sip:h?x=a@b").user(), Some("h?x=a"));
    assert!(Uri::parse("sip:h?x=a@b@c").is_err());
    assert_eq!(syntax_err("sip:a%4@h"), (5, "escape sequence %HH"));
}

#[test]
fn params_and_headers_rules() {
    let u = sip("sip:h;z;b=[::1];c=/:&+$;%41=%42?x=[]/?:+$&y=");
    assert_eq!(u.params().len(), 4);
    assert_eq!(u.param("A").unwrap().as_deref(), Some("B"));
    assert_eq!(u.headers().len(), 2);
    for bad in [
        "sip:h;",
        "sip:h;=v",
        "sip:h;a=",
        "sip:h;a=b=c",
        "sip:h;a=%",
        "sip:h?",
        "sip:h?a",
        "sip:h?=b",
        "sip:h?a=b&",
        "sip:h?a=b?c=d;e",
        "sip:h?a=b;c",
        "sip:h;a\"b",
        "sip:h;a=<b>",
        "sip:h;a=b?c=d&e=f@",
        "sip:h?a=b=c",
    ] {
        assert!(
            matches!(Uri::parse(bad), Err(Error::Syntax { .. })),
            "{bad}"
        );
    }
}

#[test]
fn error_positions_are_in_the_message() {
    // parse_src is crate-internal; the offsets of Uri::parse count from the input.
    assert_eq!(
        syntax_err("sip:user@host;a=b;=c"),
        (18, "URI parameter name")
    );
    assert_eq!(
        syntax_err("sip:user@ho st"),
        (11, "port, ';' parameter, '?' headers or end of URI")
    );
    assert_eq!(
        syntax_err("sip:user@h?a=b&c"),
        (16, "'=' after URI header name")
    );
    assert_eq!(syntax_err("sipx"), (4, "':' after URI scheme"));
    assert_eq!(syntax_err("sip:é@h").0, 4);
    let e = Uri::parse("sip:a@b;c=").unwrap_err();
    assert_eq!(
        e.clone().offset_by(100),
        match e {
            Error::Syntax {
                offset,
                context,
                expected,
            } => Error::Syntax {
                offset: offset + 100,
                context,
                expected
            },
            _ => unreachable!(),
        }
    );
}

#[test]
fn rfc3261_19_1_4_equal() {
    assert!(eq(
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;security=on"
    ));
    assert!(eq(
        "sip:carol@chicago.com;newparam=5",
        "sip:carol@chicago.com;security=on"
    ));
    assert!(eq(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    ));
    assert!(eq(
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
    ));
}

#[test]
fn rfc3261_19_1_4_not_equal() {
    assert!(!eq(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com;transport=udp"
    ));
    assert!(!eq(
        "sip:bob@biloxi.com;transport=udp",
        "sip:bob@biloxi.com:6000;transport=tcp"
    ));
    assert!(!eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com?Subject=next%20meeting"
    ));
    assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
}

#[test]
fn rfc3261_19_1_4_more_rules() {
    // SIP vs SIPS
    assert!(!eq("sip:a@h", "sips:a@h"));
    // reserved characters are not equal to their escapes, others are
    assert!(!eq("sip:a;b@h", "sip:a%3Bb@h"));
    assert!(eq("sip:a%3bb@h", "sip:a%3Bb@h"));
    assert!(eq("sip:%41@h", "sip:A@h"));
    assert!(!eq("sip:%41@h", "sip:a@h"));
    // password
    assert!(!eq("sip:a:x@h", "sip:a:X@h"));
    assert!(!eq("sip:a:x@h", "sip:a@h"));
    assert!(eq("sip:a:%78@h", "sip:a:x@h"));
    assert!(!eq("sip:a@h", "sip:h"));
    // user/ttl/method/maddr present in only one never match
    for p in [
        "user=phone",
        "ttl=1",
        "method=INVITE",
        "maddr=h2",
        "transport=udp",
    ] {
        let with = format!("sip:a@h;{p}");
        let with = Uri::parse(with).unwrap();
        assert!(!with.equivalent(&Uri::parse("sip:a@h").unwrap()), "{p}");
        assert!(with.equivalent(&with.clone()));
    }
    // parameters in both must match (case-insensitively, escapes decoded)
    assert!(!eq("sip:a@h;x=1", "sip:a@h;x=2"));
    assert!(eq("sip:a@h;x=ABC", "sip:a@h;X=abc"));
    assert!(eq("sip:a@h;%6C%72", "sip:a@h;lr"));
    assert!(eq("sip:a@h;lr", "sip:a@h"));
    assert!(!eq("sip:a@h;x", "sip:a@h;x=1"));
    assert!(eq(
        "sip:a@h;maddr=239.1.1.1;ttl=5",
        "sip:a@h;TTL=5;MADDR=239.1.1.1"
    ));
    // headers must all match, in any order
    assert!(!eq("sip:a@h?x=1", "sip:a@h?x=2"));
    assert!(!eq("sip:a@h?x=1&y=2", "sip:a@h?x=1"));
    assert!(!eq("sip:a@h?x=1&x=1", "sip:a@h?x=1&y=2"));
    assert!(eq("sip:a@h?X=%41", "sip:a@h?x=a"));
    // ports
    assert!(eq("sip:a@h:5060", "sip:a@h:05060"));
    // reflexive for odd URIs
    assert!(eq(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    ));
    assert!(!eq("sip:a@h", "tel:+1234"));
}

#[test]
fn tel_uris() {
    let u = Uri::parse("tel:+1-201-555-0123").unwrap();
    let t = u.as_tel().unwrap();
    assert!(t.is_global());
    assert_eq!(t.number(), "+1-201-555-0123");
    assert_eq!(t.normalized_number(), "+12015550123");
    let t = Uri::parse("tel:7042;phone-context=example.com").unwrap();
    let t = t.as_tel().unwrap();
    assert!(!t.is_global());
    assert_eq!(t.phone_context(), Some("example.com"));
    let t = Uri::parse("tel:863-1234;phone-context=+1-914-555").unwrap();
    assert_eq!(t.as_tel().unwrap().phone_context(), Some("+1-914-555"));
    let t = Uri::parse("tel:+1-201-555-0123;ext=1234;isub=a%20b/c;foo=bar").unwrap();
    let t = t.as_tel().unwrap();
    assert_eq!(t.extension(), Some("1234"));
    assert_eq!(t.isub(), Some("a%20b/c"));
    assert_eq!(t.param("foo").unwrap().as_deref(), Some("bar"));
    assert!(Uri::parse("tel:*21#;phone-context=example.com").is_ok());
    assert!(Uri::parse("tel:+(1)201.555.0123").is_ok());
    for bad in [
        "tel:",
        "tel:+",
        "tel:+-",
        "tel:7042",
        "tel:+1;phone-context=example.com",
        "tel:7042;phone-context",
        "tel:7042;phone-context=",
        "tel:7042;phone-context=ex_ample",
        "tel:+1;ext=abc",
        "tel:+1;",
        "tel:+1;=x",
        "tel:+1;a=",
        "tel:+1x",
        "tel:+1;a_b=1",
        "tel:+1?x=y",
        "tel:12;phone-context=+",
    ] {
        assert!(
            matches!(Uri::parse(bad), Err(Error::Syntax { .. })),
            "{bad}"
        );
    }
    // RFC 3966 §4 comparison
    assert!(eq("tel:+1-201-555-0123", "tel:+1.201.555.0123"));
    assert!(eq(
        "tel:+1-201-555-0123;ext=1-2;a=B",
        "TEL:+12015550123;A=b;ext=12"
    ));
    assert!(eq(
        "tel:7042;phone-context=EXAMPLE.com",
        "tel:7042;phone-context=example.com"
    ));
    assert!(eq(
        "tel:7042;phone-context=+1-914",
        "tel:7042;phone-context=+1914"
    ));
    assert!(!eq(
        "tel:7042;phone-context=+1914",
        "tel:7042;phone-context=example.com"
    ));
    assert!(!eq("tel:+1234", "tel:+1235"));
    assert!(!eq("tel:+1234", "tel:+1234;a=1"));
    assert!(!eq("tel:+1234;a=1", "tel:+1234;a=2"));
    assert!(!eq("tel:+1234;a", "tel:+1234;a=2"));
    assert!(!eq("tel:1234;phone-context=+1", "tel:+11234"));
}

#[test]
fn builder_roundtrips() {
    let u = SipUri::builder(Host::parse("example.com").unwrap())
        .user("alice smith@home;x")
        .password("p:w")
        .port(5080)
        .transport("tcp")
        .lr()
        .param("odd name", Some("v a;l"))
        .header("Subject", "hi there&more")
        .build()
        .unwrap();
    assert_eq!(
        u.to_string(),
        "sip:alice%20smith%40home;x:p%3Aw@example.com:5080;transport=tcp;lr;odd%20name=v%20a%3Bl?Subject=hi%20there%26more"
    );
    assert_eq!(u.user_unescaped().unwrap().as_ref(), b"alice smith@home;x");
    assert_eq!(u.password_unescaped().unwrap().as_ref(), b"p:w");
    assert_eq!(u.param("odd name").unwrap().as_deref(), Some("v a;l"));
    assert_eq!(u.header("subject").as_deref(), Some("hi there&more"));
    let again = SipUri::parse(u.to_string()).unwrap();
    assert!(again.equivalent(&u));
    assert_eq!(again, u);

    let v6 = SipUri::builder(Host::from("2001:db8::1".parse::<Ipv6Addr>().unwrap()))
        .secure(true)
        .user([0u8, b'%', 0xff])
        .maddr("[2001:db8::2]")
        .ttl(16)
        .method("INVITE")
        .user_param("phone")
        .build()
        .unwrap();
    assert_eq!(
        v6.to_string(),
        "sips:%00%25%FF@[2001:db8::1];maddr=[2001:db8::2];ttl=16;method=INVITE;user=phone"
    );
    assert_eq!(v6.user_unescaped().unwrap().as_ref(), &[0u8, b'%', 0xff]);
    assert_eq!(v6.ttl(), Some(16));

    let v4 = SipUri::builder(Host::from(Ipv4Addr::new(192, 0, 2, 1)))
        .build()
        .unwrap();
    assert_eq!(v4.to_string(), "sip:192.0.2.1");

    // Derive from a parsed URI: escapes kept, params replaced/removed.
    let parsed = sip("sip:cal%6Cer@host5.example.net;%6C%72;transport=udp;n%61me=x?h=1");
    let d = parsed
        .to_builder()
        .transport("tcp")
        .remove_param("lr")
        .param("NAME", Some("y"))
        .clear_headers()
        .port(None)
        .build()
        .unwrap();
    assert_eq!(
        d.to_string(),
        "sip:cal%6Cer@host5.example.net;transport=tcp;n%61me=y"
    );
    assert_eq!(parsed.to_builder().build().unwrap(), parsed);
    let no_user = parsed.to_builder().without_user().build().unwrap();
    assert_eq!(no_user.user(), None);
    let uri: Uri = d.into();
    assert_eq!(uri.scheme(), "sip");

    // invalid parts
    assert!(
        SipUri::builder(Host::Domain("bad host".into()))
            .build()
            .is_err()
    );
    assert!(
        SipUri::builder(Host::Domain("h".into()))
            .user("")
            .build()
            .is_err()
    );
    assert!(
        SipUri::builder(Host::Domain("h".into()))
            .password("x")
            .build()
            .is_err()
    );
    assert!(
        SipUri::builder(Host::Domain("h".into()))
            .param("a", Some(""))
            .build()
            .is_err()
    );
    assert!(
        SipUri::builder(Host::Domain("h".into()))
            .param("", None)
            .build()
            .is_err()
    );
}

#[test]
fn sip_uri_parse_rejects_other_schemes() {
    assert!(SipUri::parse("tel:+1234").is_err());
    assert!("sips:a@b".parse::<SipUri>().unwrap().is_secure());
}

#[test]
fn hostile_inputs_do_not_hang() {
    let mut s = String::from("sip:a@h");
    for _ in 0..20_000 {
        s.push_str(";p=v");
    }
    assert_eq!(sip_owned(&s).params().len(), 20_000);
    let s = format!("sip:{}@h", "%41".repeat(30_000));
    assert_eq!(sip_owned(&s).user_unescaped().unwrap().len(), 30_000);
    let s = format!("sip:[{}]", ":".repeat(100_000));
    assert!(Uri::parse(s).is_err());
    let s = format!("sip:{}", "a.".repeat(50_000));
    assert!(Uri::parse(s).is_ok());
    assert!(Uri::parse(vec![b'%'; 1000]).is_err());
    assert!(Uri::parse(Vec::new()).is_err());
    assert!(Uri::parse(vec![0xffu8; 10]).is_err());
}

fn sip_owned(s: &str) -> SipUri {
    SipUri::parse(s.to_owned()).unwrap()
}

#[test]
fn repeated_parameters_stay_reflexive_and_symmetric() {
    assert!(eq("sip:h;tl=1;tl=2", "SIP:h;tl=1;tl=2"));
    assert!(eq("sip:h;tl=2;tl=1", "sip:h;tl=1;tl=2"));
    assert!(!eq("sip:h;tl=1;tl=2", "sip:h;tl=1"));
    assert!(eq("tel:+1;a=1;a=2", "TEL:+1;a=1;a=2"));
    assert!(eq("sip:h?a=1&a=2", "SIP:h?a=2&a=1"));
}

#[test]
fn ipv4_host_writes_as_the_standard_library_does() {
    for a in [
        [0, 0, 0, 0],
        [127, 0, 0, 1],
        [192, 0, 2, 9],
        [10, 99, 100, 255],
        [255, 255, 255, 255],
        [1, 20, 200, 9],
    ] {
        let ip = Ipv4Addr::from(a);
        assert_eq!(Host::Ipv4(ip).to_string(), ip.to_string());
    }
}
