//! Real-PBX messages (`tests/fixtures/pbx/`, sources in its `MANIFEST.tsv`)
//! through the parser: every one parses, its typed views read what a proxy
//! needs, it re-serialises byte for byte, and after a proxy's edit (a Via
//! added and Max-Forwards decremented on a request, the top Via removed from
//! a response) every other line is still byte for byte the PBX's.

use std::collections::BTreeSet;
use std::path::PathBuf;

use siplink_message::{HeaderName, Message};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pbx")
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What the typed views must read from one fixture.
#[derive(Default)]
struct Expect {
    file: &'static str,
    /// The method, or the status code as text.
    start: &'static str,
    branch: &'static str,
    /// `Some(None)`: a bare `rport`; `Some(Some(n))`: `rport=n`.
    rport: Option<Option<u16>>,
    received: Option<&'static str>,
    /// Other top-Via flags that must be there (`alias`).
    via_flags: &'static [&'static str],
    vias: usize,
    from_tag: &'static str,
    to_tag: Option<&'static str>,
    call_id: &'static str,
    cseq: (u32, &'static str),
    contact: Option<&'static str>,
    /// Parameters of the Contact's URI.
    contact_uri_params: &'static [(&'static str, Option<&'static str>)],
    /// RFC 5626 on the Contact: `+sip.instance`, `reg-id`, `;ob`.
    instance: Option<&'static str>,
    reg_id: Option<u32>,
    ob: bool,
    record_route: usize,
    route: &'static [&'static str],
    event: Option<&'static str>,
    subscription_state: Option<&'static str>,
    content_type: Option<&'static str>,
    content_length: u32,
    max_forwards: Option<u8>,
    expires: Option<u32>,
    session_expires: Option<&'static str>,
    min_se: Option<&'static str>,
    user_agent: Option<&'static str>,
    server: Option<&'static str>,
}

fn expectations() -> Vec<Expect> {
    vec![
        Expect {
            file: "asterisk-pjsip-invite-to-user.sip",
            start: "INVITE",
            branch: "z9hG4bKPj8c99c754-a79c-4ef1-9749-ff5a98f36e28",
            rport: Some(None),
            vias: 1,
            from_tag: "4fbeb581-74f7-418a-9b4a-bb977fb563e4",
            call_id: "1b58673a-23e2-4f12-9514-861f1a7e21fc",
            cseq: (6509, "INVITE"),
            contact: Some("sip:asterisk@198.51.100.110:5060"),
            content_type: Some("application/sdp"),
            content_length: 312,
            max_forwards: Some(70),
            session_expires: Some("1800"),
            min_se: Some("90"),
            user_agent: Some("Asterisk PBX 14.7.7"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-pjsip-180-ringing.sip",
            start: "180",
            branch: "z9hG4bK-524287-1---2e91df7b4228e515",
            rport: Some(Some(60773)),
            received: Some("198.51.100.112"),
            vias: 1,
            from_tag: "9480006f",
            to_tag: Some("dab28d84-1b8e-49f0-8a97-9cc960ae3ede"),
            call_id: "vAS_mOFDoAoDYkDQC2-3nw..",
            cseq: (2, "INVITE"),
            contact: Some("sip:198.51.100.110:5060"),
            server: Some("Asterisk PBX 14.7.7"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-pjsip-200-ok-sdp.sip",
            start: "200",
            branch: "z9hG4bK-524287-1---2e91df7b4228e515",
            rport: Some(Some(60773)),
            received: Some("198.51.100.112"),
            vias: 1,
            from_tag: "9480006f",
            to_tag: Some("dab28d84-1b8e-49f0-8a97-9cc960ae3ede"),
            call_id: "vAS_mOFDoAoDYkDQC2-3nw..",
            cseq: (2, "INVITE"),
            contact: Some("sip:198.51.100.110:5060"),
            content_type: Some("application/sdp"),
            content_length: 294,
            server: Some("Asterisk PBX 14.7.7"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-pjsip-bye.sip",
            start: "BYE",
            branch: "z9hG4bKPjbf2343d9-f3f4-40d8-a365-0af518cd30b7",
            rport: Some(None),
            vias: 1,
            from_tag: "dab28d84-1b8e-49f0-8a97-9cc960ae3ede",
            to_tag: Some("9480006f"),
            call_id: "vAS_mOFDoAoDYkDQC2-3nw..",
            cseq: (23837, "BYE"),
            max_forwards: Some(70),
            user_agent: Some("Asterisk PBX 14.7.7"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-call-phone-invite.sip",
            start: "INVITE",
            branch: "z9hG4bK-524287-1---2e91df7b4228e515",
            vias: 1,
            from_tag: "9480006f",
            call_id: "vAS_mOFDoAoDYkDQC2-3nw..",
            cseq: (2, "INVITE"),
            contact: Some("sip:1102@198.51.100.112:60773;transport=UDP"),
            contact_uri_params: &[("transport", Some("UDP"))],
            content_type: Some("application/sdp"),
            content_length: 604,
            max_forwards: Some(70),
            user_agent: Some("Z 5.2.19 rv2.8.99"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-call-phone-ack.sip",
            start: "ACK",
            branch: "z9hG4bK-524287-1---d345166dcc150bed",
            vias: 1,
            from_tag: "9480006f",
            to_tag: Some("dab28d84-1b8e-49f0-8a97-9cc960ae3ede"),
            call_id: "vAS_mOFDoAoDYkDQC2-3nw..",
            cseq: (2, "ACK"),
            contact: Some("sip:1102@198.51.100.112:60773;transport=UDP"),
            contact_uri_params: &[("transport", Some("UDP"))],
            max_forwards: Some(70),
            user_agent: Some("Z 5.2.19 rv2.8.99"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-pjsip-invite-freepbx.sip",
            start: "INVITE",
            branch: "z9hG4bKPj2088afaa-5794-4bc0-b08e-d332b42f7d91",
            rport: Some(None),
            vias: 1,
            from_tag: "551734e6-3253-4f5a-82cb-f4af2400298c",
            call_id: "9b3bc102-a89f-41c6-b17b-fe2e75aaa613",
            cseq: (16613, "INVITE"),
            contact: Some("sip:asterisk@198.51.100.35:5060"),
            content_type: Some("application/sdp"),
            content_length: 428,
            max_forwards: Some(70),
            session_expires: Some("1800"),
            min_se: Some("90"),
            user_agent: Some("FPBX-16.0.40.9(18.24.2)"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-pjsip-register-outbound.sip",
            start: "REGISTER",
            branch: "z9hG4bKPj16827fd1-08bb-41fc-9b25-1e1450073e7b",
            rport: Some(None),
            vias: 1,
            from_tag: "80076755-751e-4204-a3f5-93967616125d",
            call_id: "558269f0-035a-4306-bb5d-9de9abac81e8",
            cseq: (25893, "REGISTER"),
            contact: Some("sip:asterisk@198.51.100.91:5060"),
            max_forwards: Some(70),
            expires: Some(180),
            user_agent: Some("Asterisk PBX 20.5.0"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-pjsip-notify-mwi-ws.sip",
            start: "NOTIFY",
            branch: "z9hG4bKPjb7879062-418b-407c-96c5-1a1eeca3410c",
            rport: Some(None),
            via_flags: &["alias"],
            vias: 1,
            from_tag: "a297d6ff-7677-4f61-921b-7964ca60bb33",
            to_tag: Some("1318mk42ft"),
            call_id: "s4di2vaoq0bi20t167mj",
            cseq: (18889, "NOTIFY"),
            contact: Some("sip:198.51.100.59:8080;transport=ws"),
            contact_uri_params: &[("transport", Some("ws"))],
            event: Some("message-summary"),
            subscription_state: Some("active;expires=299"),
            content_type: Some("application/simple-message-summary"),
            content_length: 49,
            max_forwards: Some(70),
            user_agent: Some("Innovate Asterisk"),
            ..Expect::default()
        },
        Expect {
            file: "asterisk-chansip-options-qualify.sip",
            start: "OPTIONS",
            branch: "z9hG4bK6b79a498",
            rport: Some(None),
            vias: 1,
            from_tag: "as0c668be1",
            call_id: "6a3b8816079a2089449667f4490d6038@pbx.example.com",
            cseq: (102, "OPTIONS"),
            contact: Some("sip:asterisk@198.51.100.18"),
            max_forwards: Some(70),
            user_agent: Some("Asterisk PBX"),
            ..Expect::default()
        },
        Expect {
            file: "freeswitch-notify-mwi-ws.sip",
            start: "NOTIFY",
            branch: "z9hG4bKagUFp5yHFKQem",
            vias: 1,
            from_tag: "gQtgc4Kt278Ze",
            call_id: "698bf7bb-9617-1235-adb0-000c296e460f",
            cseq: (105442593, "NOTIFY"),
            contact: Some("sip:mod_sofia@203.0.113.96:5060"),
            route: &["sip:4u62q9h6@203.0.113.122:56374"],
            event: Some("message-summary"),
            subscription_state: Some("terminated;reason=noresource"),
            content_type: Some("application/simple-message-summary"),
            content_length: 91,
            max_forwards: Some(70),
            user_agent: Some("FreeSWITCH-mod_sofia/1.6.12+git~20161011T134956Z~b91a0a6f2b~64bit"),
            ..Expect::default()
        },
        Expect {
            file: "freeswitch-200-ok-session-expires.sip",
            start: "200",
            branch: "z9hG4bK1064390103",
            rport: Some(Some(5060)),
            vias: 1,
            from_tag: "291367939",
            to_tag: Some("1Uyy4pFFS9N7p"),
            call_id: "2105648811",
            cseq: (20, "INVITE"),
            contact: Some("sip:12345@198.51.100.122:5060;transport=udp"),
            contact_uri_params: &[("transport", Some("udp"))],
            content_type: Some("application/sdp"),
            content_length: 224,
            session_expires: Some("300;refresher=uas"),
            user_agent: Some("FreeSWITCH-mod_sofia/1.6.19~64bit"),
            ..Expect::default()
        },
        Expect {
            file: "freeswitch-200-ok-hold-inactive.sip",
            start: "200",
            branch: "z9hG4bK0055b34c414bea11afb7787fc359e795",
            rport: Some(Some(5060)),
            vias: 1,
            from_tag: "80c1d637414bea11afb7787fc359e795",
            to_tag: Some("j244SUpK929jp"),
            call_id: "6479510b-c776-1238-aabe-f403434a73d0",
            cseq: (53, "INVITE"),
            contact: Some("sip:mod_sofia@192.0.2.195:5080"),
            content_type: Some("application/sdp"),
            content_length: 230,
            user_agent: Some("FreeSWITCH-mod_sofia/1.10.2-release.4~64bit"),
            ..Expect::default()
        },
        Expect {
            file: "freeswitch-invite-sdp.sip",
            start: "INVITE",
            branch: "z9hG4bKKv1g4cFHc199j",
            rport: Some(None),
            vias: 1,
            from_tag: "r8g7m62Kjt4ja",
            call_id: "3695b7f3-9e03-122e-b3a9-60eb69502500",
            cseq: (7361818, "INVITE"),
            contact: Some("sip:mod_sofia@203.0.113.40:5060"),
            content_type: Some("application/sdp"),
            content_length: 313,
            max_forwards: Some(69),
            user_agent: Some("FreeSWITCH-mod_sofia/1.0.head-git-cc06fdb 2011-01-17 10-41-01 -0600"),
            ..Expect::default()
        },
        Expect {
            file: "3cx-180-ringing.sip",
            start: "180",
            branch: "z9hG4bK4ae566b4",
            vias: 1,
            from_tag: "1cd26e954e8545b",
            to_tag: Some("e173c348"),
            call_id: "8d00ec747e46f97@192.0.2.13",
            cseq: (21, "INVITE"),
            contact: Some("sip:1501@203.0.113.68:5060"),
            user_agent: Some("3CXPhoneSystem 18.0.7.312 (312)"),
            ..Expect::default()
        },
        Expect {
            file: "3cx-200-ok-sdp.sip",
            start: "200",
            branch: "z9hG4bK4ae566b4",
            vias: 1,
            from_tag: "1cd26e954e8545b",
            to_tag: Some("e173c348"),
            call_id: "8d00ec747e46f97@192.0.2.13",
            cseq: (21, "INVITE"),
            contact: Some("sip:1501@203.0.113.68:5060"),
            content_type: Some("application/sdp"),
            content_length: 237,
            user_agent: Some("3CXPhoneSystem 18.0.7.312 (312)"),
            ..Expect::default()
        },
        Expect {
            file: "3cx-register-trunk.sip",
            start: "REGISTER",
            branch: "z9hG4bKbe63.e74cfa44.0",
            vias: 2,
            from_tag: "93f19e16",
            call_id: "UOkD5E5R0354For8iu8vLA..",
            cseq: (1254, "REGISTER"),
            contact: Some("sip:0990000000100@203.0.113.166:5060;rinstance=3af294ec9401e21f"),
            contact_uri_params: &[("rinstance", Some("3af294ec9401e21f"))],
            max_forwards: Some(69),
            expires: Some(120),
            user_agent: Some("3CXPhoneSystem 20.0.9.995 (995)"),
            ..Expect::default()
        },
        Expect {
            file: "3cx-received-phone-register-outbound.sip",
            start: "REGISTER",
            branch: "z9hG4bKPj06b2879a07b243ba95552c277079e4ba",
            rport: Some(Some(18437)),
            via_flags: &["alias"],
            vias: 1,
            from_tag: "7bec73af99f246aebc8c6633792b7c45",
            call_id: "1a80b33572124f73b19350e600773b73",
            cseq: (18510, "REGISTER"),
            contact: Some("sip:103@198.51.100.226:18437;transport=TCP;ob"),
            contact_uri_params: &[("transport", Some("TCP")), ("ob", None)],
            instance: Some("urn:uuid:00000000-0000-0000-0000-000097ad08d1"),
            reg_id: Some(1),
            ob: true,
            max_forwards: Some(70),
            expires: Some(600),
            user_agent: Some("TinyPhone Pjsua2 v36.0.0.79"),
            ..Expect::default()
        },
        Expect {
            file: "kamailio-uac-register.sip",
            start: "REGISTER",
            branch: "z9hG4bKdb22.edd7eac5000000000000000000000000.0",
            vias: 1,
            from_tag: "6a39af2190f8b2c99cc63bfeb3a3959c-bfba",
            call_id: "5e171580088d170a-9952@192.0.2.12",
            cseq: (10, "REGISTER"),
            contact: Some("sip:login@kamailio.example.com:5068"),
            max_forwards: Some(70),
            expires: Some(360),
            user_agent: Some("kamailio (4.3.0-dev5 (x86_64/linux))"),
            ..Expect::default()
        },
        Expect {
            file: "kamailio-options-keepalive.sip",
            start: "OPTIONS",
            branch: "z9hG4bKf9a8.84ce88f2.0",
            vias: 1,
            from_tag: "da76c6ce9075f5e66171cab8d9fb6e65-553a",
            call_id: "6366632413717bc3-11979@192.0.2.126",
            cseq: (14, "OPTIONS"),
            max_forwards: Some(70),
            ..Expect::default()
        },
        Expect {
            file: "kamailio-relayed-bye.sip",
            start: "BYE",
            branch: "z9hG4bKcbce.1e200d33771522a7baea07b052e62613.0",
            vias: 2,
            from_tag: "2f6fdw29-CC-1021",
            to_tag: Some("as49ab4db4"),
            call_id: "4ffhw785wd5ah9bba94kke5921674b98@UAC",
            cseq: (2, "BYE"),
            max_forwards: Some(68),
            ..Expect::default()
        },
    ]
}

fn text(v: Option<&[u8]>) -> Option<String> {
    v.map(|v| String::from_utf8_lossy(v).into_owned())
}

fn check(e: &Expect) {
    let f = e.file;
    let bytes = load(f);
    let m = Message::parse(bytes.clone()).unwrap_or_else(|err| panic!("{f}: {err}"));
    match m.method() {
        Some(method) => assert_eq!(method.to_string(), e.start, "{f}: method"),
        None => assert_eq!(m.status().unwrap().to_string(), e.start, "{f}: status"),
    }
    let vias = m.via().unwrap_or_else(|err| panic!("{f}: Via: {err}"));
    assert_eq!(vias.len(), e.vias, "{f}: Via count");
    let top = m.top_via().unwrap();
    assert_eq!(top.branch(), Some(e.branch), "{f}: branch");
    assert!(top.has_magic_cookie(), "{f}: magic cookie");
    assert_eq!(top.rport(), e.rport, "{f}: rport");
    assert_eq!(top.received(), e.received, "{f}: received");
    for flag in e.via_flags {
        assert!(top.params.contains(flag), "{f}: Via ;{flag}");
    }
    assert_eq!(m.from_tag().unwrap(), Some(e.from_tag), "{f}: From tag");
    assert_eq!(m.to_tag().unwrap(), e.to_tag, "{f}: To tag");
    assert_eq!(m.call_id().unwrap(), e.call_id, "{f}: Call-ID");
    let cseq = m.cseq().unwrap();
    assert_eq!(
        (cseq.seq, cseq.method.to_string().as_str()),
        e.cseq,
        "{f}: CSeq"
    );
    match e.contact {
        Some(uri) => {
            let contacts = m
                .contact()
                .unwrap_or_else(|err| panic!("{f}: Contact: {err}"));
            let c = &contacts.as_slice()[0];
            assert_eq!(contacts.as_slice().len(), 1, "{f}: one Contact");
            assert_eq!(c.uri.to_string(), uri, "{f}: Contact URI");
            let sip = c.uri.as_sip().expect("a sip: Contact");
            for (name, value) in e.contact_uri_params {
                assert_eq!(
                    sip.param(name).map(|v| v.map(|v| v.into_owned())),
                    Some(value.map(str::to_owned)),
                    "{f}: Contact ;{name}"
                );
            }
            assert_eq!(c.instance(), e.instance, "{f}: +sip.instance");
            assert_eq!(c.reg_id(), e.reg_id, "{f}: reg-id");
            assert_eq!(sip.has_param("ob"), e.ob, "{f}: ;ob");
        }
        None => assert_eq!(m.count(HeaderName::Contact), 0, "{f}: no Contact"),
    }
    assert_eq!(
        m.record_route().unwrap().len(),
        e.record_route,
        "{f}: Record-Route"
    );
    let route: Vec<String> = m
        .route()
        .unwrap()
        .iter()
        .map(|r| r.uri.to_string())
        .collect();
    assert_eq!(route, e.route, "{f}: Route");
    assert_eq!(
        text(m.header(HeaderName::Event)).as_deref(),
        e.event,
        "{f}: Event"
    );
    assert_eq!(
        text(m.header_values_named("Subscription-State").next()).as_deref(),
        e.subscription_state,
        "{f}: Subscription-State"
    );
    assert_eq!(
        m.content_type().unwrap().map(|t| t.to_string()).as_deref(),
        e.content_type,
        "{f}: Content-Type"
    );
    assert_eq!(
        m.content_length(),
        Some(e.content_length),
        "{f}: Content-Length"
    );
    assert_eq!(m.body().len() as u32, e.content_length, "{f}: body");
    assert_eq!(
        m.max_forwards().unwrap(),
        e.max_forwards,
        "{f}: Max-Forwards"
    );
    assert_eq!(m.expires().unwrap(), e.expires, "{f}: Expires");
    assert_eq!(
        text(m.header(HeaderName::SessionExpires)).as_deref(),
        e.session_expires,
        "{f}: Session-Expires"
    );
    assert_eq!(
        text(m.header_values_named("Min-SE").next()).as_deref(),
        e.min_se,
        "{f}: Min-SE"
    );
    assert_eq!(
        text(m.user_agent()).as_deref(),
        e.user_agent,
        "{f}: User-Agent"
    );
    assert_eq!(text(m.server()).as_deref(), e.server, "{f}: Server");
}

#[test]
fn the_manifest_lists_every_fixture_with_a_source() {
    let manifest = String::from_utf8(load("MANIFEST.tsv")).unwrap();
    let mut lines = manifest.lines();
    assert_eq!(
        lines.next(),
        Some("file\tpbx\tkind\tsource\tchanges"),
        "header row"
    );
    let mut listed = BTreeSet::new();
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "five columns: {line}");
        assert!(
            ["asterisk", "freeswitch", "3cx", "kamailio"].contains(&cols[1]),
            "{line}"
        );
        assert!(!cols[2].is_empty() && !cols[4].is_empty(), "{line}");
        assert!(cols[3].starts_with("https://github.com"), "{line}");
        assert!(
            listed.insert(cols[0].to_owned()),
            "listed twice: {}",
            cols[0]
        );
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sip"))
        .collect();
    assert_eq!(listed, on_disk);
    let expected: BTreeSet<String> = expectations().iter().map(|e| e.file.to_owned()).collect();
    assert_eq!(expected, on_disk, "every fixture has its expectations");
    assert!(on_disk.len() >= 15);
}

#[test]
fn every_fixture_is_crlf_with_a_correct_content_length() {
    for e in expectations() {
        let bytes = load(e.file);
        let lone_lf = bytes
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
        assert!(!lone_lf, "{}: a bare LF", e.file);
    }
}

#[test]
fn every_fixture_parses_and_its_typed_views_read_what_a_proxy_needs() {
    for e in expectations() {
        check(&e);
    }
}

#[test]
fn every_fixture_reserialises_byte_for_byte() {
    for e in expectations() {
        let bytes = load(e.file);
        let m = Message::parse(bytes.clone()).unwrap();
        assert!(!m.is_edited(), "{}", e.file);
        assert_eq!(m.to_bytes().as_ref(), bytes.as_slice(), "{}", e.file);
        // And once more through a reparse of the output.
        let again = m.reparse().unwrap();
        assert_eq!(again.to_bytes().as_ref(), bytes.as_slice(), "{}", e.file);
    }
}

/// The header lines of `bytes` (raw, without their CRLF), and the body.
fn split(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an empty line");
    let head = &bytes[..end];
    let lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    (lines, bytes[end + 4..].to_vec())
}

fn named(line: &[u8], names: &[&str]) -> bool {
    let name = line.split(|b| *b == b':').next().unwrap_or_default();
    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
    names.contains(&name.as_str())
}

#[test]
fn after_a_proxy_edit_every_other_line_is_byte_identical() {
    const OURS: &str = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsl1nk.fixture";
    for e in expectations() {
        let f = e.file;
        let bytes = load(f);
        let mut m = Message::parse(bytes.clone()).unwrap();
        if !m.is_request() {
            continue;
        }
        let hops = m.max_forwards().unwrap().unwrap_or(70);
        m.prepend_header(HeaderName::Via, OURS);
        m.set_header(HeaderName::MaxForwards, (hops - 1).to_string());
        let out = m.to_bytes();
        let edited = Message::parse(out.clone()).unwrap_or_else(|err| panic!("{f}: {err}"));
        let (before, body_before) = split(&bytes);
        let (after, body_after) = split(&out);
        assert_eq!(before[0], after[0], "{f}: request line");
        let keep = |lines: &[Vec<u8>]| -> Vec<Vec<u8>> {
            lines[1..]
                .iter()
                .filter(|l| !named(l, &["via", "v", "max-forwards"]))
                .cloned()
                .collect()
        };
        assert_eq!(keep(&before), keep(&after), "{f}: untouched lines");
        assert_eq!(body_before, body_after, "{f}: body");
        // Their Vias are still theirs, byte for byte, below ours.
        let theirs = |lines: &[Vec<u8>]| -> Vec<Vec<u8>> {
            lines
                .iter()
                .filter(|l| named(l, &["via", "v"]))
                .cloned()
                .collect()
        };
        assert_eq!(theirs(&before), theirs(&after)[1..].to_vec(), "{f}: Vias");
        let vias = edited.via().unwrap();
        assert_eq!(vias.len(), e.vias + 1, "{f}");
        assert_eq!(vias[0].branch(), Some("z9hG4bKsl1nk.fixture"), "{f}");
        assert_eq!(vias[1].branch(), Some(e.branch), "{f}");
        assert_eq!(edited.max_forwards().unwrap(), Some(hops - 1), "{f}");
        assert_eq!(edited.call_id().unwrap(), e.call_id, "{f}");
    }
}

/// A response as it reaches the proxy (our Via on top of the PBX's copy of
/// the request's), our Via removed: exactly the PBX's bytes again.
#[test]
fn a_response_with_our_via_removed_is_the_pbx_bytes_again() {
    let mut responses = 0;
    for e in expectations() {
        let f = e.file;
        let bytes = load(f);
        if !bytes.starts_with(b"SIP/2.0 ") {
            continue;
        }
        responses += 1;
        let eol = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let mut with_ours = bytes[..eol].to_vec();
        with_ours.extend_from_slice(
            b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsl1nk.fixture;received=192.0.2.1\r\n",
        );
        with_ours.extend_from_slice(&bytes[eol..]);
        let mut m = Message::parse(with_ours).unwrap_or_else(|err| panic!("{f}: {err}"));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKsl1nk.fixture"));
        assert!(m.remove_first_value(HeaderName::Via), "{f}");
        assert_eq!(m.to_bytes().as_ref(), bytes.as_slice(), "{f}");
        check(&e);
    }
    assert_eq!(responses, 6);
}
