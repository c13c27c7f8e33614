//! The media policy: for every mode × phone kind × call direction × stage, the
//! exact rtpengine request (flags, tags, via-branch), on real SDPs from
//! `siplink-media`'s test vectors (Chrome, Asterisk, SIPp, pjsua); per-branch
//! WebRTC detection for forks; interface directions; transcoding; 488s; and
//! the deletes that leave no rtpengine call behind.

#[path = "../../siplink-media/tests/support/mod.rs"]
mod support;

use std::net::IpAddr;

use siplink_media::{Dtls, Ice, Replace, Request, RtcpMux, SdpRequest};
use siplink_message::Transport;
use siplink_proxy::media::{ConnectionMedia, MediaMode, MediaSide, RtpEngineInstance};
use siplink_proxy::media_policy::{
    Ask, CallDirection, Decision, MediaEnd, Party, PhoneLeg, Reject, SdpEvent, SdpIds, Stage,
    decide, delete,
};

const CALLER_TAG: &str = "caller-tag";
const CALLEE_TAG: &str = "callee-tag";
const BRANCH: &str = "z9hG4bK-fork-1";

fn media(mode: MediaMode) -> ConnectionMedia {
    ConnectionMedia {
        mode,
        transcode: false,
    }
}

fn ids() -> SdpIds<'static> {
    SdpIds {
        call_id: "call-1@test",
        caller_tag: CALLER_TAG,
        callee_tag: Some(CALLEE_TAG),
        via_branch: Some(BRANCH),
    }
}

fn event<'a>(
    mode: MediaMode,
    direction: CallDirection,
    stage: Stage,
    phone: PhoneLeg,
    sdp: &'a str,
) -> SdpEvent<'a> {
    SdpEvent {
        media: media(mode),
        direction,
        stage,
        phone,
        ids: ids(),
        sdp,
        offer: None,
        instance: None,
    }
}

#[track_caller]
fn ask(d: Decision) -> Ask {
    match d {
        Decision::Ask(a) => *a,
        other => panic!("expected a request to rtpengine, got {other:?}"),
    }
}

#[track_caller]
fn reject(d: Decision) -> Reject {
    match d {
        Decision::Reject(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn sdp_request(a: &Ask) -> (&'static str, &SdpRequest) {
    match &a.request {
        Request::Offer(r) => ("offer", r),
        Request::Answer(r) => ("answer", r),
        other => panic!("not an SDP request: {other:?}"),
    }
}

/// The flag set of one request, as the brief (and the Kamailio + rtpengine
/// control run) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flags {
    transport: Option<&'static str>,
    ice: Option<Ice>,
    dtls: Option<Dtls>,
    sdes: Vec<&'static str>,
    rtcp_mux: Vec<RtcpMux>,
    replace: Vec<Replace>,
    flags: Vec<&'static str>,
}

fn flags_of(r: &SdpRequest) -> Flags {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    Flags {
        transport: r.transport_protocol.as_deref().map(leak),
        ice: r.ice,
        dtls: r.dtls,
        sdes: r.sdes.iter().map(|s| leak(s)).collect(),
        rtcp_mux: r.rtcp_mux.clone(),
        replace: r.replace.clone(),
        flags: r.flags.iter().map(|s| leak(s)).collect(),
    }
}

/// Anchor only: relay mode, or bridge with a non-WebRTC phone.
fn anchor() -> Flags {
    Flags {
        transport: None,
        ice: None,
        dtls: None,
        sdes: vec![],
        rtcp_mux: vec![],
        replace: vec![Replace::Origin, Replace::SessionConnection],
        flags: vec![],
    }
}

/// The browser's offer sent to the PBX.
fn phone_offer_to_pbx() -> Flags {
    Flags {
        transport: Some("RTP/AVP"),
        ice: Some(Ice::Remove),
        dtls: Some(Dtls::Off),
        sdes: vec!["off"],
        rtcp_mux: vec![RtcpMux::Demux],
        replace: vec![Replace::Origin, Replace::SessionConnection],
        flags: vec![],
    }
}

/// The PBX's answer sent back to the browser.
fn pbx_answer_to_phone() -> Flags {
    Flags {
        transport: None,
        ice: Some(Ice::Force),
        dtls: None,
        sdes: vec![],
        rtcp_mux: vec![RtcpMux::Require],
        replace: vec![],
        flags: vec![],
    }
}

/// The PBX's offer sent to the browser.
fn pbx_offer_to_phone() -> Flags {
    Flags {
        transport: Some("UDP/TLS/RTP/SAVPF"),
        ice: Some(Ice::Force),
        dtls: None,
        sdes: vec![],
        rtcp_mux: vec![RtcpMux::Require],
        replace: vec![],
        flags: vec!["generate-mid"],
    }
}

/// The browser's answer sent to the PBX.
fn phone_answer_to_pbx() -> Flags {
    Flags {
        transport: Some("RTP/AVP"),
        ice: Some(Ice::Remove),
        dtls: None,
        sdes: vec![],
        rtcp_mux: vec![RtcpMux::Demux],
        replace: vec![],
        flags: vec![],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phone {
    /// A desk phone over UDP with a plain RTP/AVP SDP (SIPp, pjsua).
    Desk,
    /// A browser over WSS with Chrome's SDP.
    Browser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

/// One stage: who sends the SDP (by role in the initial INVITE, or the
/// in-dialog party), whether it is an offer, and whose tag is the from-tag.
struct StageRow {
    stage: Stage,
    /// The sender, for a phone→PBX call.
    sender_phone_to_pbx: Party,
    /// The sender, for a PBX→phone call.
    sender_pbx_to_phone: Party,
    offer: bool,
    /// The offerer's dialog role (its tag is rtpengine's from-tag), per direction.
    offerer_phone_to_pbx: Role,
    offerer_pbx_to_phone: Role,
}

fn stage_rows() -> Vec<StageRow> {
    use Party::{Pbx, Phone};
    use Role::{Callee, Caller};
    let row = |stage, s1, s2, offer, o1, o2| StageRow {
        stage,
        sender_phone_to_pbx: s1,
        sender_pbx_to_phone: s2,
        offer,
        offerer_phone_to_pbx: o1,
        offerer_pbx_to_phone: o2,
    };
    vec![
        row(Stage::InviteOffer, Phone, Pbx, true, Caller, Caller),
        row(Stage::EarlyAnswer, Pbx, Phone, false, Caller, Caller),
        row(Stage::Answer, Pbx, Phone, false, Caller, Caller),
        row(Stage::LateOffer, Pbx, Phone, true, Callee, Callee),
        row(Stage::AckAnswer, Phone, Pbx, false, Callee, Callee),
        row(
            Stage::ReOffer { from: Phone },
            Phone,
            Phone,
            true,
            Caller,
            Callee,
        ),
        row(
            Stage::ReAnswer { from: Pbx },
            Pbx,
            Pbx,
            false,
            Caller,
            Callee,
        ),
        row(Stage::ReOffer { from: Pbx }, Pbx, Pbx, true, Callee, Caller),
        row(
            Stage::ReAnswer { from: Phone },
            Phone,
            Phone,
            false,
            Callee,
            Caller,
        ),
    ]
}

/// The SDP each party sends, by kind: real captures.
fn sdp_from(sender: Party, phone: Phone, offer: bool) -> String {
    match (sender, phone, offer) {
        (Party::Pbx, _, _) => support::asterisk_pjsip_offer(),
        (Party::Phone, Phone::Browser, _) => support::chrome_offer(50_000),
        (Party::Phone, Phone::Desk, true) => support::sipp_pcmu_offer(6000),
        (Party::Phone, Phone::Desk, false) => support::pjsua_answer(),
    }
}

/// The brief's table: what rtpengine is asked for, by mode, phone kind, the
/// SDP's receiver and whether it is an offer.
fn expected(mode: MediaMode, phone: Phone, receiver: Party, offer: bool) -> Option<Flags> {
    match (mode, phone, receiver, offer) {
        (MediaMode::Off, ..) => None,
        (MediaMode::Relay, ..) | (MediaMode::Bridge, Phone::Desk, ..) => Some(anchor()),
        (MediaMode::Bridge, Phone::Browser, Party::Pbx, true) => Some(phone_offer_to_pbx()),
        (MediaMode::Bridge, Phone::Browser, Party::Phone, false) => Some(pbx_answer_to_phone()),
        (MediaMode::Bridge, Phone::Browser, Party::Phone, true) => Some(pbx_offer_to_phone()),
        (MediaMode::Bridge, Phone::Browser, Party::Pbx, false) => Some(phone_answer_to_pbx()),
    }
}

#[test]
fn every_mode_phone_direction_and_stage_gets_the_exact_request() {
    let mut checked = 0;
    for mode in [MediaMode::Off, MediaMode::Relay, MediaMode::Bridge] {
        for phone in [Phone::Desk, Phone::Browser] {
            for direction in [CallDirection::PhoneToPbx, CallDirection::PbxToPhone] {
                for row in stage_rows() {
                    let (sender, offerer) = match direction {
                        CallDirection::PhoneToPbx => {
                            (row.sender_phone_to_pbx, row.offerer_phone_to_pbx)
                        }
                        CallDirection::PbxToPhone => {
                            (row.sender_pbx_to_phone, row.offerer_pbx_to_phone)
                        }
                    };
                    assert_eq!(row.stage.sender(direction), sender, "{:?}", row.stage);
                    assert_eq!(row.stage.is_offer(), row.offer);
                    let sdp = sdp_from(sender, phone, row.offer);
                    let leg = match phone {
                        Phone::Desk => PhoneLeg::on(Transport::Udp),
                        Phone::Browser => PhoneLeg::on(Transport::Wss),
                    };
                    let d = decide(&event(mode, direction, row.stage, leg, &sdp));
                    let case = format!("{mode} {phone:?} {direction:?} {:?}", row.stage);
                    let Some(want) = expected(mode, phone, sender.other(), row.offer) else {
                        assert_eq!(d, Decision::Pass, "{case}");
                        checked += 1;
                        continue;
                    };
                    let a = ask(d);
                    let (command, r) = sdp_request(&a);
                    assert_eq!(
                        command,
                        if row.offer { "offer" } else { "answer" },
                        "{case}"
                    );
                    assert_eq!(flags_of(r), want, "{case}");
                    assert_eq!(r.sdp, sdp, "{case}: the SDP is sent as received");
                    assert_eq!(r.call_id, "call-1@test", "{case}");
                    assert_eq!(r.via_branch.as_deref(), Some(BRANCH), "{case}");
                    let (from, to) = match offerer {
                        Role::Caller => (CALLER_TAG, CALLEE_TAG),
                        Role::Callee => (CALLEE_TAG, CALLER_TAG),
                    };
                    assert_eq!(r.from_tag, from, "{case}: from-tag is the offerer's");
                    assert_eq!(r.to_tag.as_deref(), Some(to), "{case}");
                    assert_eq!(r.direction, None, "{case}: no instance interfaces given");
                    assert!(r.codec.transcode.is_empty(), "{case}: transcode is off");
                    assert_eq!(a.phone_webrtc, phone == Phone::Browser, "{case}");
                    assert_eq!(a.expect_address, None, "{case}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 2 * 2 * 9);
}

#[test]
fn the_initial_offer_has_no_to_tag_until_the_callee_answers() {
    let sdp = support::chrome_offer(50_000);
    let mut ev = event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Wss),
        &sdp,
    );
    ev.ids.callee_tag = None;
    let a = ask(decide(&ev));
    let (_, r) = sdp_request(&a);
    assert_eq!(
        (r.from_tag.as_str(), r.to_tag.as_deref()),
        (CALLER_TAG, None)
    );
    // The answer needs the callee's tag.
    let pbx = support::asterisk_pjsip_offer();
    let mut ev = event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::Answer,
        PhoneLeg::on(Transport::Wss),
        &pbx,
    );
    ev.ids.callee_tag = None;
    let r = reject(decide(&ev));
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("no To tag"), "{}", r.reason);
    assert!(!r.respond, "an answer in a response cannot be answered");
}

#[test]
fn the_wire_dictionary_uses_rtpengines_key_names() {
    let sdp = support::chrome_offer(50_000);
    let a = ask(decide(&event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Wss),
        &sdp,
    )));
    let v = a.request.to_value();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let l = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(|x| x.as_list())
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(s("command").as_deref(), Some("offer"));
    assert_eq!(s("transport-protocol").as_deref(), Some("RTP/AVP"));
    assert_eq!(s("ICE").as_deref(), Some("remove"));
    assert_eq!(s("DTLS").as_deref(), Some("off"));
    assert_eq!(l("SDES"), ["off"]);
    assert_eq!(l("rtcp-mux"), ["demux"]);
    assert_eq!(l("replace"), ["origin", "session-connection"]);
    assert_eq!(s("via-branch").as_deref(), Some(BRANCH));
    assert_eq!(s("from-tag").as_deref(), Some(CALLER_TAG));
    assert_eq!(s("call-id").as_deref(), Some("call-1@test"));
}

#[test]
fn a_fork_to_a_browser_and_a_desk_phone_gets_the_right_offer_on_each_branch() {
    let pbx = support::asterisk_pjsip_offer();
    let branch = |transport, via: &'static str| {
        let mut ev = event(
            MediaMode::Bridge,
            CallDirection::PbxToPhone,
            Stage::InviteOffer,
            PhoneLeg::on(transport),
            &pbx,
        );
        ev.ids.callee_tag = None;
        ev.ids.via_branch = Some(via);
        ask(decide(&ev))
    };
    let browser = branch(Transport::Wss, "z9hG4bK-to-browser");
    let desk = branch(Transport::Udp, "z9hG4bK-to-desk");
    let (_, b) = sdp_request(&browser);
    let (_, d) = sdp_request(&desk);
    assert_eq!(flags_of(b), pbx_offer_to_phone());
    assert_eq!(flags_of(d), anchor());
    assert_eq!(b.via_branch.as_deref(), Some("z9hG4bK-to-browser"));
    assert_eq!(d.via_branch.as_deref(), Some("z9hG4bK-to-desk"));
    assert!(browser.phone_webrtc && !desk.phone_webrtc);
    // A WS (not WSS) flow is a browser too.
    assert!(branch(Transport::Ws, "z9hG4bK-ws").phone_webrtc);
    // Each branch's answer goes back with its own to-tag and branch.
    let chrome = support::chrome_offer(50_001);
    let mut ev = event(
        MediaMode::Bridge,
        CallDirection::PbxToPhone,
        Stage::Answer,
        PhoneLeg::on(Transport::Wss),
        &chrome,
    );
    ev.ids.callee_tag = Some("browser-tag");
    ev.ids.via_branch = Some("z9hG4bK-to-browser");
    let a = ask(decide(&ev));
    let (_, r) = sdp_request(&a);
    assert_eq!(flags_of(r), phone_answer_to_pbx());
    assert_eq!(
        (
            r.from_tag.as_str(),
            r.to_tag.as_deref(),
            r.via_branch.as_deref()
        ),
        (CALLER_TAG, Some("browser-tag"), Some("z9hG4bK-to-browser"))
    );
}

#[test]
fn a_webrtc_offer_makes_the_phone_webrtc_whatever_its_flow() {
    // A browser behind a SIP-over-TCP gateway: the flow is TCP, the SDP says WebRTC.
    let chrome = support::chrome_offer(50_000);
    let a = ask(decide(&event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Tcp),
        &chrome,
    )));
    assert!(a.phone_webrtc);
    assert_eq!(flags_of(sdp_request(&a).1), phone_offer_to_pbx());
    // The dialog keeps it: the PBX's re-INVITE towards that phone is made WebRTC.
    let pbx = support::asterisk_pjsip_offer();
    let kept = PhoneLeg {
        websocket: false,
        webrtc: a.phone_webrtc,
    };
    let re = ask(decide(&event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::ReOffer { from: Party::Pbx },
        kept,
        &pbx,
    )));
    assert_eq!(flags_of(sdp_request(&re).1), pbx_offer_to_phone());
    // Without that memory, a TCP phone receiving a PBX offer is anchored only.
    let plain = ask(decide(&event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::ReOffer { from: Party::Pbx },
        PhoneLeg::on(Transport::Tcp),
        &pbx,
    )));
    assert_eq!(flags_of(sdp_request(&plain).1), anchor());
    assert!(!plain.phone_webrtc);
    // A plain SDP from a TCP phone is not WebRTC.
    let sipp = support::sipp_pcmu_offer(6000);
    let a = ask(decide(&event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Tcp),
        &sipp,
    )));
    assert!(!a.phone_webrtc);
    assert_eq!(flags_of(sdp_request(&a).1), anchor());
}

#[test]
fn relay_mode_never_changes_the_protocol_even_for_a_browser() {
    let chrome = support::chrome_offer(50_000);
    let a = ask(decide(&event(
        MediaMode::Relay,
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Wss),
        &chrome,
    )));
    assert_eq!(flags_of(sdp_request(&a).1), anchor());
    assert!(a.phone_webrtc, "still reported, for the dialog");
}

#[test]
fn hold_and_resume_reinvites_are_sent_as_offers_with_the_sdp_unchanged() {
    let hold = support::asterisk_pjsip_offer().replace("a=sendrecv", "a=sendonly");
    let a = ask(decide(&event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::ReOffer { from: Party::Pbx },
        PhoneLeg::on(Transport::Wss),
        &hold,
    )));
    let (command, r) = sdp_request(&a);
    assert_eq!(command, "offer");
    assert!(r.sdp.contains("a=sendonly"));
    assert_eq!(flags_of(r), pbx_offer_to_phone());
    // The PBX re-offers in a phone→PBX call: from-tag is the PBX's (the callee's).
    assert_eq!(
        (r.from_tag.as_str(), r.to_tag.as_deref()),
        (CALLEE_TAG, Some(CALLER_TAG))
    );
}

fn instance() -> RtpEngineInstance {
    RtpEngineInstance {
        ng: "127.0.0.1:2223".parse().unwrap(),
        weight: 1,
        internal: MediaSide {
            interface: Some("priv".into()),
            address: Some("10.0.0.5".parse().unwrap()),
        },
        external: MediaSide {
            interface: Some("pub".into()),
            address: Some("203.0.113.5".parse().unwrap()),
        },
    }
}

#[test]
fn interfaces_follow_the_sdp_from_its_sender_to_its_receiver() {
    let inst = instance();
    let chrome = support::chrome_offer(50_000);
    let pbx = support::asterisk_pjsip_offer();
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    for (stage, sdp, want_dir, want_addr) in [
        // Phone → PBX: from the external side to the internal one; the SDP the
        // PBX gets advertises the internal address.
        (Stage::InviteOffer, &chrome, ("pub", "priv"), ip("10.0.0.5")),
        (Stage::Answer, &pbx, ("priv", "pub"), ip("203.0.113.5")),
        (Stage::LateOffer, &pbx, ("priv", "pub"), ip("203.0.113.5")),
        (Stage::AckAnswer, &chrome, ("pub", "priv"), ip("10.0.0.5")),
    ] {
        let mut ev = event(
            MediaMode::Bridge,
            CallDirection::PhoneToPbx,
            stage,
            PhoneLeg::on(Transport::Wss),
            sdp,
        );
        ev.instance = Some(&inst);
        let a = ask(decide(&ev));
        let (_, r) = sdp_request(&a);
        assert_eq!(
            r.direction,
            Some((want_dir.0.to_owned(), want_dir.1.to_owned())),
            "{stage:?}"
        );
        assert_eq!(a.expect_address, want_addr, "{stage:?}");
    }
    // An instance without interface names: no direction, no expectation.
    let bare = RtpEngineInstance {
        internal: MediaSide::default(),
        external: MediaSide::default(),
        ..instance()
    };
    let mut ev = event(
        MediaMode::Relay,
        CallDirection::PbxToPhone,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Udp),
        &pbx,
    );
    ev.instance = Some(&bare);
    let a = ask(decide(&ev));
    assert_eq!(sdp_request(&a).1.direction, None);
    assert_eq!(a.expect_address, None);
}

#[test]
fn transcode_adds_g711_towards_the_pbx_and_opus_towards_the_browser() {
    let chrome = support::chrome_offer(50_000);
    let pbx = support::asterisk_pjsip_offer();
    let with = |direction, stage, transport, sdp: &str| {
        let mut ev = event(
            MediaMode::Bridge,
            direction,
            stage,
            PhoneLeg::on(transport),
            sdp,
        );
        ev.media.transcode = true;
        ask(decide(&ev))
    };
    let a = with(
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        Transport::Wss,
        &chrome,
    );
    assert_eq!(sdp_request(&a).1.codec.transcode, ["PCMU", "PCMA"]);
    let a = with(
        CallDirection::PbxToPhone,
        Stage::InviteOffer,
        Transport::Wss,
        &pbx,
    );
    assert_eq!(sdp_request(&a).1.codec.transcode, ["opus"]);
    // Not in answers, and not for a desk phone (nothing to bridge).
    let a = with(
        CallDirection::PhoneToPbx,
        Stage::Answer,
        Transport::Wss,
        &pbx,
    );
    assert!(sdp_request(&a).1.codec.transcode.is_empty());
    let sipp = support::sipp_pcmu_offer(6000);
    let a = with(
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        Transport::Udp,
        &sipp,
    );
    assert!(sdp_request(&a).1.codec.transcode.is_empty());
}

/// A PBX offer with only G.729 (a codec no browser decodes).
fn g729_offer() -> String {
    support::crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.9",
        "s=-",
        "c=IN IP4 10.0.0.9",
        "t=0 0",
        "m=audio 10000 RTP/AVP 18 101",
        "a=rtpmap:18 G729/8000",
        "a=rtpmap:101 telephone-event/8000",
    ])
}

#[test]
fn a_pbx_offer_a_browser_cannot_decode_is_refused_with_488_unless_transcoding() {
    let g729 = g729_offer();
    let mut ev = event(
        MediaMode::Bridge,
        CallDirection::PbxToPhone,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Wss),
        &g729,
    );
    let r = reject(decide(&ev));
    assert_eq!(r.status, 488);
    assert!(r.reason.contains("G729"), "{}", r.reason);
    assert!(r.reason.contains("transcode = true"), "{}", r.reason);
    assert!(r.respond, "the INVITE can be answered 488");
    // To a desk phone the same offer is fine (it may speak G.729).
    ev.phone = PhoneLeg::on(Transport::Udp);
    assert_eq!(flags_of(sdp_request(&ask(decide(&ev))).1), anchor());
    // With transcoding, rtpengine adds Opus.
    ev.phone = PhoneLeg::on(Transport::Wss);
    ev.media.transcode = true;
    assert_eq!(sdp_request(&ask(decide(&ev))).1.codec.transcode, ["opus"]);
    // As a late offer in a 200, the refusal ends the call instead.
    let mut late = event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::LateOffer,
        PhoneLeg::on(Transport::Wss),
        &g729,
    );
    late.media.transcode = false;
    let r = reject(decide(&late));
    assert_eq!(r.status, 488);
    assert!(!r.respond);
}

#[test]
fn an_answer_without_a_common_codec_is_refused_with_488() {
    let offer = support::asterisk_pjsip_offer(); // PCMA PCMU G726-32 G722 GSM
    let g729 = g729_offer();
    let mut ev = event(
        MediaMode::Relay,
        CallDirection::PbxToPhone,
        Stage::Answer,
        PhoneLeg::on(Transport::Udp),
        &g729,
    );
    ev.offer = Some(&offer);
    let r = reject(decide(&ev));
    assert_eq!(r.status, 488);
    assert!(r.reason.contains("no common codec"), "{}", r.reason);
    assert!(
        r.reason.contains("PCMA") && r.reason.contains("G729"),
        "{}",
        r.reason
    );
    assert!(!r.respond, "in a 200: end the call instead");
    // pjsua's PCMU answer shares PCMU with it.
    let pjsua = support::pjsua_answer();
    ev.sdp = &pjsua;
    let a = ask(decide(&ev));
    assert_eq!(sdp_request(&a).0, "answer");
    // A rejected stream (port 0) shares nothing.
    let rejected = pjsua.replace("m=audio 4000", "m=audio 0");
    ev.sdp = &rejected;
    assert_eq!(reject(decide(&ev)).status, 488);
}

#[test]
fn an_offer_without_a_codec_or_that_does_not_parse_is_refused() {
    let dtmf_only = support::crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.9",
        "s=-",
        "c=IN IP4 10.0.0.9",
        "t=0 0",
        "m=audio 10000 RTP/AVP 101",
        "a=rtpmap:101 telephone-event/8000",
    ]);
    let r = reject(decide(&event(
        MediaMode::Relay,
        CallDirection::PhoneToPbx,
        Stage::InviteOffer,
        PhoneLeg::on(Transport::Udp),
        &dtmf_only,
    )));
    assert_eq!((r.status, r.respond), (488, true));
    assert!(r.reason.contains("no media codec"));
    let r = reject(decide(&event(
        MediaMode::Bridge,
        CallDirection::PhoneToPbx,
        Stage::ReOffer { from: Party::Phone },
        PhoneLeg::on(Transport::Wss),
        "this is not SDP",
    )));
    assert_eq!((r.status, r.respond), (400, true));
    assert!(r.reason.contains("does not parse"), "{}", r.reason);
    // With media off, nothing is looked at.
    assert_eq!(
        decide(&event(
            MediaMode::Off,
            CallDirection::PhoneToPbx,
            Stage::InviteOffer,
            PhoneLeg::on(Transport::Udp),
            "this is not SDP",
        )),
        Decision::Pass
    );
}

#[test]
fn every_end_deletes_at_once_and_a_branch_end_only_its_branch() {
    assert_eq!(
        delete(media(MediaMode::Off), &ids(), MediaEnd::Bye),
        None,
        "media off: no rtpengine call to delete"
    );
    for mode in [MediaMode::Relay, MediaMode::Bridge] {
        for end in [
            MediaEnd::Bye,
            MediaEnd::Cancel,
            MediaEnd::Failure,
            MediaEnd::Timeout,
            MediaEnd::DialogEnd,
        ] {
            let d = delete(media(mode), &ids(), end).expect("a delete");
            assert_eq!(d.call_id, "call-1@test");
            assert_eq!(d.from_tag.as_deref(), Some(CALLER_TAG), "{end:?}");
            assert_eq!(d.delete_delay, Some(0), "{end:?}");
            assert_eq!(
                (d.to_tag, d.via_branch),
                (None, None),
                "{end:?}: the whole call"
            );
        }
        let d = delete(media(mode), &ids(), MediaEnd::BranchEnded).unwrap();
        assert_eq!(d.via_branch.as_deref(), Some(BRANCH));
        assert_eq!(d.to_tag.as_deref(), Some(CALLEE_TAG));
        assert_eq!(d.delete_delay, Some(0));
        let v = Request::Delete(d).to_value();
        assert_eq!(v.get("delete-delay").and_then(|x| x.as_int()), Some(0));
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn stage() -> impl Strategy<Value = Stage> {
        let party = prop_oneof![Just(Party::Phone), Just(Party::Pbx)];
        prop_oneof![
            Just(Stage::InviteOffer),
            Just(Stage::EarlyAnswer),
            Just(Stage::Answer),
            Just(Stage::LateOffer),
            Just(Stage::AckAnswer),
            party.clone().prop_map(|from| Stage::ReOffer { from }),
            party.prop_map(|from| Stage::ReAnswer { from }),
        ]
    }

    proptest! {
        /// Any body (mangled real SDPs and arbitrary text), any stage, any
        /// mode: a decision, never a panic; a request always carries the
        /// body unchanged and a non-empty from-tag.
        #[test]
        fn decide_never_panics(
            base in 0usize..4,
            cut in 0usize..2000,
            noise in "[ -~\r\n]{0,64}",
            stage in stage(),
            mode in prop_oneof![Just(MediaMode::Off), Just(MediaMode::Relay), Just(MediaMode::Bridge)],
            transcode: bool,
            ws: bool,
            webrtc: bool,
            pbx_calls: bool,
            callee_tag: bool,
            with_offer: bool,
        ) {
            let bodies = [
                support::chrome_offer(50_000),
                support::asterisk_pjsip_offer(),
                support::pjsua_answer(),
                support::freeswitch_offer(),
            ];
            let body = &bodies[base];
            let mut sdp: String = body.chars().take(cut).collect();
            sdp.push_str(&noise);
            let inst = instance();
            let ev = SdpEvent {
                media: ConnectionMedia { mode, transcode },
                direction: if pbx_calls { CallDirection::PbxToPhone } else { CallDirection::PhoneToPbx },
                stage,
                phone: PhoneLeg { websocket: ws, webrtc },
                ids: SdpIds {
                    call_id: "c",
                    caller_tag: "a",
                    callee_tag: callee_tag.then_some("b"),
                    via_branch: None,
                },
                sdp: &sdp,
                offer: with_offer.then_some(body.as_str()),
                instance: Some(&inst),
            };
            match decide(&ev) {
                Decision::Pass => prop_assert_eq!(mode, MediaMode::Off),
                Decision::Ask(a) => {
                    let (_, r) = sdp_request(&a);
                    prop_assert_eq!(&r.sdp, &sdp);
                    prop_assert!(!r.from_tag.is_empty());
                }
                Decision::Reject(r) => {
                    prop_assert!(r.status == 400 || r.status == 488);
                    prop_assert_eq!(r.respond, stage.answerable());
                }
            }
        }
    }
}
