//! The ng protocol: the wire form of typed requests, typed replies (from rtpengine's own
//! reply shapes), the datagram format, and bencode against arbitrary input.

use proptest::prelude::*;
use siplink_media::bencode::{BencodeLimits, Value, dict};
use siplink_media::ng::{decode_datagram, encode_datagram};
use siplink_media::{
    CodecOptions, DeleteRequest, Dtls, Error, Ice, Outcome, QueryRequest, Replace, Reply, Request,
    RtcpMux, SdpRequest,
};

fn wire(r: &Request) -> String {
    String::from_utf8(r.to_value().encode()).unwrap()
}

#[test]
fn requests_encode_with_sorted_keys_and_rtpengines_names() {
    assert_eq!(wire(&Request::Ping), "d7:command4:pinge");
    assert_eq!(
        wire(&Request::List { limit: Some(10) }),
        "d7:command4:list5:limiti10ee"
    );
    // The phone→PBX offer flags, one by one.
    let offer = SdpRequest::offer("c1", "f1", "v=0")
        .via_branch("z9hG4bK1")
        .transport_protocol("RTP/AVP")
        .ice(Ice::Remove)
        .dtls(Dtls::Off)
        .sdes_off()
        .rtcp_mux(RtcpMux::Demux)
        .replace(Replace::Origin)
        .replace(Replace::SessionConnection)
        .flag("trust-address")
        .direction("internal", "external")
        .codec(CodecOptions {
            strip: vec!["all".into()],
            offer: vec!["PCMU".into()],
            ..Default::default()
        });
    assert_eq!(
        wire(&Request::Offer(offer.clone())),
        "d4:DTLS3:off3:ICE6:remove4:SDESl3:offe7:call-id2:c1\
         5:codecd5:offerl4:PCMUe5:stripl3:allee7:command5:offer\
         9:directionl8:internal8:externale5:flagsl13:trust-addresse\
         8:from-tag2:f17:replacel6:origin18:session-connectione\
         8:rtcp-muxl5:demuxe3:sdp3:v=018:transport-protocol7:RTP/AVP\
         10:via-branch8:z9hG4bK1e"
    );
    // The shorthand gives the same flags.
    let short = SdpRequest::offer("c1", "f1", "v=0").to_plain_rtp();
    let v = Request::Offer(short).to_value();
    for key in [
        "transport-protocol",
        "ICE",
        "DTLS",
        "SDES",
        "rtcp-mux",
        "replace",
    ] {
        assert_eq!(
            v.get(key),
            Request::Offer(offer.clone()).to_value().get(key),
            "{key}"
        );
    }
    let to_browser = Request::Answer(SdpRequest::answer("c1", "f1", "t1", "v=0").to_webrtc());
    let v = to_browser.to_value();
    assert_eq!(v.get("command").unwrap().as_str(), Some("answer"));
    assert_eq!(v.get("to-tag").unwrap().as_str(), Some("t1"));
    assert_eq!(
        v.get("transport-protocol").unwrap().as_str(),
        Some("UDP/TLS/RTP/SAVPF")
    );
    assert_eq!(v.get("ICE").unwrap().as_str(), Some("force"));
    assert_eq!(v.get("rtcp-mux").unwrap(), &Value::str_list(["require"]));
    assert_eq!(v.get("flags").unwrap(), &Value::str_list(["generate-mid"]));
    assert_eq!(
        wire(&Request::Delete(
            DeleteRequest::call("c1").from_tag("f1").delete_delay(0)
        )),
        "d7:call-id2:c17:command6:delete12:delete-delayi0e8:from-tag2:f1e"
    );
    assert_eq!(
        wire(&Request::Query(QueryRequest::call("c1"))),
        "d7:call-id2:c17:command5:querye"
    );
    assert_eq!(
        Request::Query(QueryRequest::call("c1")).call_id(),
        Some("c1")
    );
    assert_eq!(Request::Ping.call_id(), None);
}

#[test]
fn datagrams_carry_the_cookie_before_a_space() {
    let d = encode_datagram("5d1_7", &Request::Ping.to_value());
    assert_eq!(d, b"5d1_7 d7:command4:pinge");
    let (cookie, body) = decode_datagram(b"5d1_7 d6:result4:ponge").unwrap();
    assert_eq!(cookie, "5d1_7");
    assert_eq!(Reply::from_value(body).unwrap().outcome, Outcome::Pong);
    for bad in [
        &b"nospace"[..],
        b" d6:result4:ponge",
        b"c\x01 d6:result4:ponge",
        b"c1 d6:result",
    ] {
        assert!(
            decode_datagram(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = [vec![b'x'; 65], b" de".to_vec()].concat();
    assert!(matches!(decode_datagram(&long), Err(Error::Protocol(_))));
}

#[test]
fn replies_read_as_rtpengine_writes_them() {
    // Shapes as rtpengine 10.5 answers (recorded from the daemon used by the interop test,
    // trimmed): an error, a list, and a delete with totals.
    let err = Reply::from_value(
        Value::decode(b"d12:error-reason15:Unknown call-id6:result5:errore").unwrap(),
    )
    .unwrap();
    assert_eq!(err.outcome, Outcome::Error("Unknown call-id".into()));
    assert!(matches!(
        err.check(siplink_media::Command::Query),
        Err(Error::Rejected {
            command: "query",
            ..
        })
    ));
    let list =
        Reply::from_value(Value::decode(b"d5:callsl3:abc3:defe6:result2:oke").unwrap()).unwrap();
    assert_eq!(list.calls(), ["abc", "def"]);
    let del = Reply::from_value(
        Value::decode(
            b"d7:createdi1796667458e11:last signali1796667459e4:tagsd2:ftd3:tag2:ftee\
              6:totalsd3:RTPd7:packetsi12e5:bytesi1920e6:errorsi0ee\
              4:RTCPd7:packetsi1e5:bytesi80e6:errorsi0eee6:result2:ok7:warning4:hmm!e",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(del.outcome, Outcome::Ok);
    assert_eq!(del.warning.as_deref(), Some("hmm!"));
    let s = del.stats();
    assert_eq!(s.created, Some(1796667458));
    assert_eq!(s.last_signal, Some(1796667459));
    assert_eq!(s.tags, ["ft"]);
    assert_eq!((s.rtp.packets, s.rtp.bytes, s.rtcp.packets), (12, 1920, 1));
    let ok_sdp = Reply::from_value(dict([
        ("result", Value::str("ok")),
        ("sdp", Value::str("v=0\r\n")),
    ]))
    .unwrap();
    assert_eq!(ok_sdp.sdp(), Some("v=0\r\n"));
    assert!(Reply::from_value(Value::Int(1)).is_err());
    assert!(Reply::from_value(dict([("sdp", Value::str("x"))])).is_err());
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        any::<i64>().prop_map(Value::Int),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..8),
                inner,
                0..6
            )
            .prop_map(Value::Dict),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Encode then decode is the identity, and encoding is canonical.
    #[test]
    fn bencode_round_trips(v in value()) {
        let bytes = v.encode();
        let back = Value::decode(&bytes).unwrap();
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(back, v);
    }

    /// Arbitrary bytes: no panic; whatever decodes re-encodes to input-equal bytes
    /// (a decoded value's encoding is the input when its keys were sorted).
    #[test]
    fn bencode_arbitrary_input_is_safe(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(v) = Value::decode(&bytes) {
            prop_assert_eq!(Value::decode(&v.encode()).unwrap(), v);
        }
        let _ = decode_datagram(&bytes);
    }

    /// Truncating a valid encoding anywhere is an error, never a panic.
    #[test]
    fn bencode_truncations_fail(v in value(), cut in any::<prop::sample::Index>()) {
        let bytes = v.encode();
        let at = cut.index(bytes.len());
        prop_assert!(Value::decode(&bytes[..at]).is_err());
    }
}

#[test]
fn bencode_depth_limit_is_configurable() {
    let nested = [b"l".repeat(5), b"e".repeat(5)].concat();
    let tight = BencodeLimits {
        max_depth: 4,
        ..Default::default()
    };
    assert!(Value::decode_with(&nested, &tight).is_err());
    assert!(Value::decode(&nested).is_ok());
    // Deep input well past any stack: refused quickly at the default depth.
    let deep = [b"l".repeat(100_000), b"e".repeat(100_000)].concat();
    assert!(Value::decode(&deep).is_err());
}
