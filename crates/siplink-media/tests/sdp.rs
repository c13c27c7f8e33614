//! SDP: the RFC and real-software vectors, errors, limits, helpers, and round trips.

mod support;

use support::*;
use proptest::prelude::*;
use siplink_media::sdp::{Bandwidth, Candidate, MediaDesc, Rtpmap, Timing};
use siplink_media::{
    Attribute, Connection, Direction, Error, Line, Media, MediaProtocol, Origin, Sdp, SdpLimits,
    Setup, TypedAttribute,
};

fn all_vectors() -> Vec<(&'static str, String)> {
    vec![
        ("rfc8866", rfc8866_example()),
        ("rfc4566", rfc4566_example()),
        ("rfc3264 offer", rfc3264_offer()),
        ("rfc3264 answer", rfc3264_answer()),
        ("chrome", chrome_offer(50000)),
        ("asterisk", asterisk_pjsip_offer()),
        ("freeswitch", freeswitch_offer()),
        ("sipp", sipp_pcmu_offer(6000)),
        ("pjsua", pjsua_answer()),
    ]
}

fn err_line(r: Result<Sdp, Error>) -> (usize, String) {
    match r {
        Err(Error::Sdp { line, what }) => (line, what),
        other => panic!("expected an SDP error, got {other:?}"),
    }
}

#[test]
fn every_vector_serialises_back_to_the_same_bytes() {
    for (name, text) in all_vectors() {
        let sdp = Sdp::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sdp.to_string(), text, "{name}");
    }
}

#[test]
fn lf_input_gives_the_same_model_and_crlf_output() {
    for (name, text) in all_vectors() {
        let lf = text.replace("\r\n", "\n");
        let a = Sdp::parse(text.as_bytes()).unwrap();
        let b = Sdp::parse(lf.as_bytes()).unwrap();
        assert_eq!(a, b, "{name}");
        assert_eq!(b.to_string(), text, "{name}");
    }
    // No final line end at all.
    let text = sipp_pcmu_offer(6000);
    let trimmed = text.trim_end();
    assert_eq!(Sdp::parse(trimmed.as_bytes()).unwrap().to_string(), text);
}

#[test]
fn rfc8866_example_fields() {
    let sdp = Sdp::parse(rfc8866_example().as_bytes()).unwrap();
    let o = sdp.origin().unwrap();
    assert_eq!(o.username, "jdoe");
    assert_eq!(o.session_id, "3724394400");
    assert_eq!(o.session_version, 3724394405);
    assert_eq!(o.address, "198.51.100.1");
    assert!(
        sdp.session
            .contains(&Line::SessionName("Call to John Smith".into()))
    );
    assert!(sdp.session.contains(&Line::Phone("+1 617 555-6011".into())));
    assert!(
        sdp.session
            .contains(&Line::Timing(Timing { start: 0, stop: 0 }))
    );
    assert_eq!(sdp.media.len(), 3);
    assert_eq!(sdp.media[1].desc.port, 49180);
    // The video section has its own IPv6 connection; audio uses the session's.
    assert_eq!(
        sdp.media_connection(2).unwrap().ip(),
        Some("2001:db8::2".parse().unwrap())
    );
    assert_eq!(
        sdp.media_connection(0).unwrap().ip(),
        Some("198.51.100.1".parse().unwrap())
    );
    let video = sdp.media[2].codecs();
    assert_eq!(video.len(), 1);
    assert_eq!(
        (video[0].name.as_str(), video[0].clock_rate),
        ("h263-1998", 90000)
    );
}

#[test]
fn rfc4566_example_multicast_and_session_attribute() {
    let sdp = Sdp::parse(rfc4566_example().as_bytes()).unwrap();
    let c = sdp.connection().unwrap();
    assert_eq!(c.address, "224.2.17.12/127");
    assert_eq!(c.ip(), Some("224.2.17.12".parse().unwrap()));
    assert_eq!(
        sdp.attribute("recvonly").unwrap().typed(),
        Some(TypedAttribute::Direction(Direction::RecvOnly))
    );
    assert!(sdp.session.contains(&Line::Timing(Timing {
        start: 2873397496,
        stop: 2873404696
    })));
}

#[test]
fn rfc3264_offer_answer_codecs_in_common() {
    let offer = Sdp::parse(rfc3264_offer().as_bytes()).unwrap();
    let answer = Sdp::parse(rfc3264_answer().as_bytes()).unwrap();
    assert_eq!(offer.session[2], Line::SessionName(String::new()));
    let audio: Vec<_> = offer.media[0]
        .codecs()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(audio, ["PCMU", "PCMA", "iLBC"]);
    let common: Vec<_> = offer
        .common_codecs(&answer)
        .into_iter()
        .map(|c| (c.name, c.clock_rate))
        .collect();
    assert_eq!(
        common,
        [("PCMU".to_string(), 8000), ("MPV".to_string(), 90000)]
    );
}

#[test]
fn chrome_offer_is_webrtc_with_typed_attributes() {
    let sdp = Sdp::parse(chrome_offer(50000).as_bytes()).unwrap();
    assert!(sdp.is_webrtc());
    let m = &sdp.media[0];
    let p = m.protocol();
    assert_eq!(p, MediaProtocol::UdpTlsRtpSavpf);
    assert!(p.is_dtls() && p.is_secure() && p.has_feedback() && p.is_rtp());
    assert_eq!(m.mid(), Some("0"));
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    assert!(m.has_attribute("rtcp-mux"));
    let typed: Vec<TypedAttribute> = m.typed_attributes().collect();
    assert!(typed.contains(&TypedAttribute::Setup(Setup::ActPass)));
    assert!(typed.contains(&TypedAttribute::IceUfrag("GVWP".into())));
    assert!(typed.contains(&TypedAttribute::IceOptions(vec!["trickle".into()])));
    assert!(typed.contains(&TypedAttribute::Rtcp {
        port: 9,
        address: Some("IN IP4 0.0.0.0".into())
    }));
    assert!(typed.contains(&TypedAttribute::Rtpmap(Rtpmap {
        payload_type: 111,
        encoding: "opus".into(),
        clock_rate: 48000,
        channels: Some(2)
    })));
    assert!(typed.contains(&TypedAttribute::Fmtp {
        format: "111".into(),
        params: "minptime=10;useinbandfec=1".into()
    }));
    assert!(typed.contains(&TypedAttribute::Ssrc {
        id: 2607947206,
        attribute: "cname".into(),
        value: Some("z8aoN2l/L7oiSqrJ".into())
    }));
    let cand = typed
        .iter()
        .find_map(|t| match t {
            TypedAttribute::Candidate(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        cand,
        Candidate {
            foundation: "2999745851".into(),
            component: 1,
            transport: "udp".into(),
            priority: 2122260223,
            address: "127.0.0.1".into(),
            port: 50000,
            kind: "host".into(),
            rest: Some("generation 0 network-id 1".into()),
        }
    );
    let fp = typed.iter().find_map(|t| match t {
        TypedAttribute::Fingerprint { hash, value } => Some((hash.clone(), value.len())),
        _ => None,
    });
    assert_eq!(fp, Some(("sha-256".into(), 95)));
    // Session level: BUNDLE group, and an attribute with a leading space kept as is.
    assert_eq!(
        sdp.attribute("group").unwrap().typed(),
        Some(TypedAttribute::Group {
            semantics: "BUNDLE".into(),
            ids: vec!["0".into()]
        })
    );
    assert_eq!(
        sdp.attribute("msid-semantic").unwrap().value.as_deref(),
        Some(" WMS a7299aa1-1469-48ed-b99f-30e5ebc5fd14")
    );
    assert_eq!(sdp.attribute("extmap-allow-mixed").unwrap().typed(), None);
    let names: Vec<_> = m.codecs().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "opus",
            "red",
            "G722",
            "PCMU",
            "PCMA",
            "telephone-event",
            "telephone-event"
        ]
    );
}

#[test]
fn pbx_offers_are_plain_rtp() {
    for text in [
        asterisk_pjsip_offer(),
        freeswitch_offer(),
        sipp_pcmu_offer(6000),
        pjsua_answer(),
    ] {
        let sdp = Sdp::parse(text.as_bytes()).unwrap();
        assert!(!sdp.is_webrtc(), "{text}");
        assert_eq!(sdp.media[0].protocol(), MediaProtocol::RtpAvp);
        assert!(!sdp.media[0].protocol().is_secure());
    }
    let ast = Sdp::parse(asterisk_pjsip_offer().as_bytes()).unwrap();
    let typed: Vec<_> = ast.media[0].typed_attributes().collect();
    assert!(typed.contains(&TypedAttribute::Ptime(20)));
    assert!(typed.contains(&TypedAttribute::MaxPtime(150)));
    let pj = Sdp::parse(pjsua_answer().as_bytes()).unwrap();
    assert_eq!(
        pj.session[3],
        Line::Bandwidth(Bandwidth {
            kind: "AS".into(),
            value: 285
        })
    );
    assert_eq!(
        pj.attribute("X-nat").unwrap(),
        &Attribute::new("X-nat", Some("0".into()))
    );
}

#[test]
fn common_codecs_between_browser_and_pbxs() {
    let chrome = Sdp::parse(chrome_offer(50000).as_bytes()).unwrap();
    let names = |a: &Sdp, b: &Sdp| -> Vec<String> {
        a.common_codecs(b).into_iter().map(|c| c.name).collect()
    };
    let ast = Sdp::parse(asterisk_pjsip_offer().as_bytes()).unwrap();
    assert_eq!(names(&chrome, &ast), ["G722", "PCMU", "PCMA"]);
    assert_eq!(names(&ast, &chrome), ["PCMA", "PCMU", "G722"]);
    let fs = Sdp::parse(freeswitch_offer().as_bytes()).unwrap();
    assert_eq!(names(&chrome, &fs), ["PCMA"]);
    let sipp = Sdp::parse(sipp_pcmu_offer(6000).as_bytes()).unwrap();
    assert!(chrome.has_common_codec(&sipp));
    // G.729 only: nothing in common (telephone-event does not count).
    let g729 = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let g729 = Sdp::parse(g729.as_bytes()).unwrap();
    assert!(!chrome.has_common_codec(&g729));
    assert!(!g729.has_common_codec(&fs));
    // A rejected section (port 0) offers nothing.
    let mut off = sipp.clone();
    off.media[0].desc.port = 0;
    assert!(!chrome.has_common_codec(&off));
}

#[test]
fn unknown_lines_and_attributes_are_kept_in_place() {
    let text = crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "y=1234567890",
        "t=0 0",
        "a=X-weird value : with colons",
        "m=audio 4000 RTP/AVP 0",
        "x=vendor line",
        "a=x-cisco-sess-id:whatever  double  spaced",
        "k=prompt",
    ]);
    let sdp = Sdp::parse(text.as_bytes()).unwrap();
    assert_eq!(
        sdp.session[3],
        Line::Other {
            kind: 'y',
            value: "1234567890".into()
        }
    );
    assert_eq!(
        sdp.session[5],
        Line::Attribute(Attribute::new(
            "X-weird value ",
            Some(" with colons".into())
        ))
    );
    assert_eq!(sdp.media[0].lines.len(), 3);
    assert_eq!(sdp.to_string(), text);
}

#[test]
fn edits_serialise_and_reparse() {
    let mut sdp = Sdp::parse(chrome_offer(50000).as_bytes()).unwrap();
    sdp.origin_mut().unwrap().session_version += 1;
    let m = &mut sdp.media[0];
    assert_eq!(m.remove_attributes("candidate"), 1);
    m.remove_attributes("fingerprint");
    m.desc.proto = "RTP/AVP".into();
    m.push_attribute(TypedAttribute::Ptime(20));
    m.push_attribute(TypedAttribute::Direction(Direction::SendOnly));
    let text = sdp.to_string();
    assert!(text.contains("o=- 8436422327585670287 3 IN IP4 127.0.0.1\r\n"));
    assert!(text.contains("a=ptime:20\r\na=sendonly\r\n"));
    let again = Sdp::parse(text.as_bytes()).unwrap();
    assert_eq!(again, sdp);
    assert!(again.is_webrtc(), "ICE credentials are still there");
    assert_eq!(again.media[0].protocol(), MediaProtocol::RtpAvp);
}

#[test]
fn typed_attributes_round_trip_through_their_text() {
    let typed = [
        TypedAttribute::Rtpmap(Rtpmap {
            payload_type: 96,
            encoding: "opus".into(),
            clock_rate: 48000,
            channels: Some(2),
        }),
        TypedAttribute::Crypto {
            tag: 1,
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key_params: "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32".into(),
            session_params: None,
        },
        TypedAttribute::Extmap {
            id: 1,
            direction: Some("sendonly".into()),
            uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".into(),
            attributes: Some("vad=on".into()),
        },
        TypedAttribute::Rtcp {
            port: 53020,
            address: None,
        },
        TypedAttribute::Setup(Setup::Passive),
        TypedAttribute::EndOfCandidates,
        TypedAttribute::IceLite,
    ];
    for t in typed {
        let a = Attribute::from(t.clone());
        assert_eq!(a.typed(), Some(t));
    }
}

#[test]
fn errors_name_the_line_and_the_fault() {
    let base = |extra: &str| format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n{extra}");
    let cases: &[(&str, usize, &str)] = &[
        (
            "m=audio port RTP/AVP 0\r\n",
            5,
            "port `port` is not a number",
        ),
        ("m=audio 70000 RTP/AVP 0\r\n", 5, "out of range"),
        ("m=audio 4000\r\n", 5, "`m=` needs media, port and protocol"),
        (
            "m=audio 4000 RTP/AVP 0\r\na=rtpmap:200 X/8000\r\n",
            6,
            "payload type 200 is over 127",
        ),
        (
            "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
            6,
            "clock rate is missing",
        ),
        ("a=setup:sideways\r\n", 5, "not a DTLS role"),
        (
            "a=candidate:1 1 udp 2 192.0.2.1 9 host\r\n",
            5,
            "`typ` expected",
        ),
        ("a=ptime:x\r\n", 5, "ptime"),
        (
            "m=audio 4000 RTP/AVP 0\r\no=- 2 2 IN IP4 192.0.2.1\r\n",
            6,
            "session-level line",
        ),
        ("o=- 2 2 IN IP4 192.0.2.1\r\n", 5, "a second `o=`"),
        ("c=IN IP4\r\n", 5, "`c=` needs 3 fields"),
        ("b=AS\r\n", 5, "`b=` needs"),
        ("t=0\r\n", 5, "`t=` needs 2 fields"),
        ("hello\r\n", 5, "expected `<type>=<value>`"),
        ("a=\r\n", 5, "attribute name is empty"),
        ("a=x\u{1}y\r\n", 5, "control character 0x01"),
        ("a=x\ry\r\n", 5, "control character 0x0d"),
        ("v=0\r\n", 5, "only be the first line"),
    ];
    for (extra, line, what) in cases {
        let (l, w) = err_line(Sdp::parse(base(extra).as_bytes()));
        assert_eq!(l, *line, "{extra:?}: {w}");
        assert!(w.contains(what), "{extra:?}: {w}");
    }
    let (l, w) = err_line(Sdp::parse(b"o=- 1 1 IN IP4 192.0.2.1\r\n"));
    assert_eq!((l, w.as_str()), (1, "the first line must be `v=`"));
    let (l, w) = err_line(Sdp::parse(b"v=0\r\ns=-\r\n"));
    assert_eq!((l, w.as_str()), (0, "no `o=` line"));
    let (l, _) = err_line(Sdp::parse(
        b"v=0\r\no=- 1 1 IN IP4 x\r\nm=audio 1 RTP/AVP 0\r\n",
    ));
    assert_eq!(l, 3);
    let (l, w) = err_line(Sdp::parse(b""));
    assert_eq!((l, w.as_str()), (0, "empty description"));
    let (l, w) = err_line(Sdp::parse(b"v=0\r\no=- 1 1 IN IP4 x\r\ns=\xff\r\n"));
    assert_eq!((l, w.as_str()), (3, "not UTF-8 text"));
}

#[test]
fn limits_are_enforced() {
    let limits = SdpLimits {
        max_len: 400,
        max_lines: 12,
        max_line_len: 60,
        max_media: 2,
        max_attributes: 3,
    };
    let head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
    let parse = |s: String| Sdp::parse_with(s.as_bytes(), &limits);
    assert!(
        parse(format!(
            "{head}m=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\n"
        ))
        .is_ok()
    );
    let (l, w) = err_line(parse(format!(
        "{head}m=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\nm=audio 3 RTP/AVP 0\r\n"
    )));
    assert_eq!((l, w.as_str()), (7, "more than 2 media sections"));
    let (l, w) = err_line(parse(format!("{head}{}", "a=x\r\n".repeat(4))));
    assert_eq!((l, w.as_str()), (8, "more than 3 attributes"));
    let (l, w) = err_line(parse(format!("{head}{}", "i=x\r\n".repeat(9))));
    assert_eq!((l, w.as_str()), (13, "more than 12 lines"));
    let (l, w) = err_line(parse(format!("{head}i={}\r\n", "x".repeat(59))));
    assert_eq!(
        (l, w.as_str()),
        (5, "61 bytes is over the line limit of 60")
    );
    let (l, w) = err_line(parse(format!("{head}{}", "i=0123456789\r\n".repeat(30))));
    assert_eq!(l, 0);
    assert!(w.contains("over the limit of 400"), "{w}");
    // The defaults take every vector.
    let d = SdpLimits::default();
    assert_eq!((d.max_len, d.max_media), (65536, 32));
}

// ---- property tests ----

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.+_-]{1,12}"
}

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,30}"
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        ("[a-z][a-z0-9-]{0,10}", proptest::option::of("[ -~]{0,30}"))
            .prop_filter("not a typed name", |(n, _)| untyped_name(n))
            .prop_map(|(n, v)| Attribute::new(n, v)),
        (
            0u8..128,
            "[A-Za-z0-9-]{1,10}",
            1u32..200_000,
            proptest::option::of(1u32..9)
        )
            .prop_map(
                |(pt, e, r, c)| Attribute::from(TypedAttribute::Rtpmap(Rtpmap {
                    payload_type: pt,
                    encoding: e,
                    clock_rate: r,
                    channels: c
                }))
            ),
        (token(), token())
            .prop_map(|(h, v)| Attribute::from(TypedAttribute::Fingerprint { hash: h, value: v })),
        Just(Attribute::new("rtcp-mux", None)),
        Just(Attribute::new("sendonly", None)),
        token().prop_map(|m| Attribute::new("mid", Some(m))),
    ]
}

/// Whether a generated free-form attribute name is one this model does not type (typed
/// ones are generated well-formed above).
fn untyped_name(name: &str) -> bool {
    Attribute::new(name, None).typed().is_none()
        && !matches!(
            name,
            "rtpmap"
                | "fmtp"
                | "rtcp"
                | "candidate"
                | "fingerprint"
                | "setup"
                | "group"
                | "ssrc"
                | "crypto"
                | "ptime"
                | "maxptime"
                | "extmap"
                | "ice-ufrag"
                | "ice-pwd"
                | "ice-options"
                | "mid"
        )
}

fn media_line() -> impl Strategy<Value = Line> {
    prop_oneof![
        text().prop_map(Line::Info),
        (token(), token(), token()).prop_map(|(n, a, addr)| Line::Connection(Connection {
            net_type: n,
            addr_type: a,
            address: addr
        })),
        (token(), any::<u64>()).prop_map(|(k, v)| Line::Bandwidth(Bandwidth { kind: k, value: v })),
        attribute().prop_map(Line::Attribute),
        attribute().prop_map(Line::Attribute),
        ("[dfghjlnqwxyA-Z]", text()).prop_map(|(k, v)| Line::Other {
            kind: k.chars().next().unwrap(),
            value: v
        }),
    ]
}

fn media() -> impl Strategy<Value = Media> {
    (
        token(),
        any::<u16>(),
        proptest::option::of(1u32..8),
        "(RTP/AVP|RTP/SAVPF|UDP/TLS/RTP/SAVPF|udp)",
        proptest::collection::vec("[0-9]{1,3}", 0..6),
        proptest::collection::vec(media_line(), 0..8),
    )
        .prop_map(|(m, port, count, proto, formats, lines)| Media {
            desc: MediaDesc {
                media: m,
                port,
                port_count: count,
                proto,
                formats,
            },
            lines,
        })
}

fn sdp() -> impl Strategy<Value = Sdp> {
    (
        (token(), "[0-9]{1,19}", any::<u64>(), token()),
        text(),
        proptest::collection::vec(
            prop_oneof![
                text().prop_map(Line::Uri),
                text().prop_map(Line::Email),
                text().prop_map(Line::Phone),
                (any::<u64>(), any::<u64>())
                    .prop_map(|(a, b)| Line::Timing(Timing { start: a, stop: b })),
                text().prop_map(Line::Repeat),
                text().prop_map(Line::Zone),
                media_line(),
            ],
            0..8,
        ),
        proptest::collection::vec(media(), 0..4),
    )
        .prop_map(|((user, id, ver, addr), name, rest, media)| {
            let mut session = vec![
                Line::Version(0),
                Line::Origin(Origin {
                    username: user,
                    session_id: id,
                    session_version: ver,
                    net_type: "IN".into(),
                    addr_type: "IP4".into(),
                    address: addr,
                }),
                Line::SessionName(name),
            ];
            session.extend(rest);
            Sdp { session, media }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A model written out and read back is the same model, and the same bytes again.
    #[test]
    fn model_round_trips(model in sdp()) {
        let text = model.to_string();
        let parsed = Sdp::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&parsed, &model);
        prop_assert_eq!(parsed.to_string(), text.clone());
        let lf = text.replace("\r\n", "\n");
        prop_assert_eq!(Sdp::parse(lf.as_bytes()).unwrap(), model);
    }

    /// Any input: parse never panics, and what parses re-parses to the same model.
    #[test]
    fn arbitrary_input_is_safe(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(sdp) = Sdp::parse(&bytes) {
            prop_assert_eq!(Sdp::parse(&sdp.to_bytes()).unwrap(), sdp);
        }
    }

    /// A real vector with one line mangled: never a panic; a parse re-parses the same.
    #[test]
    fn mangled_vectors_are_safe(which in 0usize..9, line in 0usize..40, junk in "[ -~\t]{0,20}") {
        let (_, text) = &all_vectors()[which];
        let mut lines: Vec<&str> = text.split("\r\n").collect();
        let i = line % lines.len();
        let replaced = format!("{}{junk}", &lines[i][..lines[i].len().min(2)]);
        lines[i] = &replaced;
        let mangled = lines.join("\r\n");
        if let Ok(sdp) = Sdp::parse(mangled.as_bytes()) {
            prop_assert_eq!(Sdp::parse(&sdp.to_bytes()).unwrap(), sdp);
        }
    }
}
