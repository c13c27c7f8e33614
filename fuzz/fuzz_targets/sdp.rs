//! SDP parser: arbitrary bytes never panic; a description that parses serialises and
//! re-parses to the same model (and the same bytes again); the helpers never panic on
//! it. The same input is also tried as an ng datagram (cookie, space, bencode): the
//! bencode decoder never panics, and a decoded value re-encodes to something that
//! decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siplink_media::Sdp;
use siplink_media::bencode::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = Sdp::parse(data) {
        let text = sdp.to_bytes();
        let again = Sdp::parse(&text).expect("a serialised description re-parses");
        assert_eq!(again, sdp);
        assert_eq!(again.to_bytes(), text);
        let _ = (sdp.is_webrtc(), sdp.common_codecs(&again));
        for m in &sdp.media {
            let _ = (m.codecs(), m.protocol(), m.direction(), m.typed_attributes().count());
        }
    }
    if let Ok((_, v)) = siplink_media::ng::decode_datagram(data) {
        assert_eq!(Value::decode(&v.encode()).expect("re-encoded bencode decodes"), v);
    }
});
