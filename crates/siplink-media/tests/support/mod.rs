//! SDP test vectors from real software and the RFCs (each with its source), written with
//! CRLF line ends as they travel in SIP.
#![allow(dead_code)]

/// Joins lines with CRLF (and a final CRLF).
pub fn crlf(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

/// RFC 8866 §5, the example session description.
pub fn rfc8866_example() -> String {
    crlf(&[
        "v=0",
        "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1",
        "s=Call to John Smith",
        "i=SDP Offer #1",
        "u=http://www.jdoe.example.com/home.html",
        "e=Jane Doe <jane@jdoe.example.com>",
        "p=+1 617 555-6011",
        "c=IN IP4 198.51.100.1",
        "t=0 0",
        "m=audio 49170 RTP/AVP 0",
        "m=audio 49180 RTP/AVP 0",
        "m=video 51372 RTP/AVP 99",
        "c=IN IP6 2001:db8::2",
        "a=rtpmap:99 h263-1998/90000",
    ])
}

/// RFC 4566 §5, the example session description (multicast, with a session attribute).
pub fn rfc4566_example() -> String {
    crlf(&[
        "v=0",
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
        "s=SDP Seminar",
        "i=A Seminar on the session description protocol",
        "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)",
        "c=IN IP4 224.2.17.12/127",
        "t=2873397496 2873404696",
        "a=recvonly",
        "m=audio 49170 RTP/AVP 0",
        "m=video 51372 RTP/AVP 99",
        "a=rtpmap:99 h263-1998/90000",
    ])
}

/// RFC 3264 §10.1, Alice's offer.
pub fn rfc3264_offer() -> String {
    crlf(&[
        "v=0",
        "o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com",
        "s=",
        "c=IN IP4 host.atlanta.example.com",
        "t=0 0",
        "m=audio 49170 RTP/AVP 0 8 97",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:97 iLBC/8000",
        "m=video 51372 RTP/AVP 31 32",
        "a=rtpmap:31 H261/90000",
        "a=rtpmap:32 MPV/90000",
    ])
}

/// RFC 3264 §10.1, Bob's answer.
pub fn rfc3264_answer() -> String {
    crlf(&[
        "v=0",
        "o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com",
        "s=",
        "c=IN IP4 host.biloxi.example.com",
        "t=0 0",
        "m=audio 49174 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "m=video 49170 RTP/AVP 32",
        "a=rtpmap:32 MPV/90000",
    ])
}

/// A Chrome audio offer (Meta's Messenger Platform calling appendix, "example SDP
/// offer", as Chrome's RTCPeerConnection writes it), with `c=`, the `m=` port and one
/// host candidate per component set to 127.0.0.1:`port` as JsSIP sends it once ICE
/// gathering is complete (JsSIP does not trickle).
pub fn chrome_offer(port: u16) -> String {
    let m = format!("m=audio {port} UDP/TLS/RTP/SAVPF 111 63 9 0 8 110 126");
    let cand = format!(
        "a=candidate:2999745851 1 udp 2122260223 127.0.0.1 {port} typ host generation 0 network-id 1"
    );
    crlf(&[
        "v=0",
        "o=- 8436422327585670287 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS a7299aa1-1469-48ed-b99f-30e5ebc5fd14",
        &m,
        "c=IN IP4 127.0.0.1",
        "a=rtcp:9 IN IP4 0.0.0.0",
        &cand,
        "a=ice-ufrag:GVWP",
        "a=ice-pwd:GoQbqNzclssPK7hZfTHBAZK3",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 F3:A4:D1:09:55:4A:73:84:21:4C:46:56:E1:05:E7:8B:47:45:5B:A0:0E:3F:30:14:D8:5F:36:95:A2:06:AA:48",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=msid:a7299aa1-1469-48ed-b99f-30e5ebc5fd14 9d4611fa-fe03-4cad-81f1-63e4f764f358",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:2607947206 cname:z8aoN2l/L7oiSqrJ",
        "a=ssrc:2607947206 msid:a7299aa1-1469-48ed-b99f-30e5ebc5fd14 9d4611fa-fe03-4cad-81f1-63e4f764f358",
    ])
}

/// An Asterisk PJSIP (FreePBX 15, Asterisk 16.15) INVITE offer, from FreePBX's issue
/// tracker #294; the masked address `10.17.XX.XXX` is written as 10.17.0.10.
pub fn asterisk_pjsip_offer() -> String {
    crlf(&[
        "v=0",
        "o=- 1429284841 1429284841 IN IP4 10.17.0.10",
        "s=Asterisk",
        "c=IN IP4 10.17.0.10",
        "t=0 0",
        "m=audio 12752 RTP/AVP 8 0 111 9 3 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:111 G726-32/8000",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:3 GSM/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=maxptime:150",
        "a=sendrecv",
    ])
}

/// A FreeSWITCH (mod_sofia) INVITE offer, from signalwire/freeswitch issue #1144; the
/// masked address is written as 192.0.2.31.
pub fn freeswitch_offer() -> String {
    crlf(&[
        "v=0",
        "o=FreeSWITCH 1617356951 1617356953 IN IP4 192.0.2.31",
        "s=FreeSWITCH",
        "c=IN IP4 192.0.2.31",
        "t=0 0",
        "m=audio 20340 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
    ])
}

/// SIPp's built-in `uac` scenario SDP (`sipp -sd uac`), with `[local_ip]`/`[media_ip]`
/// 127.0.0.1 and `[media_port]` `port`: the PCMU offer a `-rtp_echo` SIPp sends.
pub fn sipp_pcmu_offer(port: u16) -> String {
    let m = format!("m=audio {port} RTP/AVP 0");
    crlf(&[
        "v=0",
        "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        &m,
        "a=rtpmap:0 PCMU/8000",
    ])
}

/// A pjsua (pjmedia) 200 OK answer, from pjsip/pjproject issue #4101: `b=` before `t=`,
/// an `a=X-nat` session attribute, `c=` and `b=TIAS` inside the media section.
pub fn pjsua_answer() -> String {
    crlf(&[
        "v=0",
        "o=- 3937460446 3937460448 IN IP4 192.168.88.121",
        "s=pjmedia",
        "b=AS:285",
        "t=0 0",
        "a=X-nat:0",
        "m=audio 4000 RTP/AVP 0 101",
        "c=IN IP4 192.168.88.121",
        "b=TIAS:256000",
        "a=rtcp:4001 IN IP4 192.168.88.121",
        "a=sendrecv",
        "a=rtpmap:0 PCMU/8000",
        "a=ssrc:2705443 cname:39b32d12074d4dc8",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
    ])
}
