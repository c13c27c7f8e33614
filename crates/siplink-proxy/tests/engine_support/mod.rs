//! A virtual-time harness for the proxy engine: no sockets, no tokio; the
//! test plays the phones, the PBXs and the driver.
//!
//! Message shapes follow what real software sends: baresip (phone, UDP),
//! a JsSIP browser phone (WSS, `.invalid` Contact), Asterisk PJSIP (PBX
//! answering with `Server: Asterisk PBX`, `Session-Expires`), SIPp's uac/uas
//! scenarios (CSeq 1, `[call_id]`-style Call-IDs).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message, TargetAddr, Transport};
use siplink_proxy::core::Local;
use siplink_proxy::engine::{
    BranchId, Engine, EngineConfig, Event, LookupResult, LookupToken, NextHop, Output, PbxSource,
    Query, RouteGroup, ServerTx, StaticView, Target,
};
use siplink_transport::{FlowId, Origin};

/// The PBX's address (Asterisk PJSIP on a trunk).
pub const PBX: &str = "198.51.100.10";
/// The browser phone's WebSocket flow.
pub const WS_FLOW: u64 = 7;

pub fn msg(text: &str) -> Message {
    Message::parse(text.replace('\n', "\r\n")).expect("test message parses")
}

pub fn view() -> StaticView {
    StaticView {
        local: Local::new(
            ["proxy.example.com".to_owned(), "192.0.2.1".to_owned()],
            [5060, 5061, 8443],
        ),
        domains: vec!["proxy.example.com".to_owned()],
        users: vec!["1001".to_owned(), "1002".to_owned()],
        pbx_addresses: vec![(
            PBX.parse().unwrap(),
            PbxSource {
                connection: "office-pbx".to_owned(),
                deliver_to: Some("1001".to_owned()),
            },
        )],
        authenticate: false,
        realm: "proxy.example.com".to_owned(),
        faces: vec![
            (Transport::Udp, "192.0.2.1".to_owned(), 5060),
            (Transport::Tcp, "192.0.2.1".to_owned(), 5060),
            (Transport::Wss, "proxy.example.com".to_owned(), 8443),
        ],
        secret: 0x5eed,
        credentials: Vec::new(),
        identities: Vec::new(),
        media: Vec::new(),
    }
}

pub fn udp_from(peer: &str) -> Origin {
    Origin {
        protocol: Transport::Udp,
        peer: peer.parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
        flow: None,
    }
}

pub fn wss_phone() -> Origin {
    Origin {
        protocol: Transport::Wss,
        peer: "203.0.113.5:52144".parse().unwrap(),
        local: "192.0.2.1:8443".parse().unwrap(),
        flow: Some(FlowId::from_raw(WS_FLOW)),
    }
}

pub fn addr(host: &str, port: u16) -> NextHop {
    NextHop::Addr(TargetAddr::new(host, port, Transport::Udp))
}

pub fn target(host: &str, port: u16) -> Target {
    Target {
        request_uri: None,
        route: Vec::new(),
        hop: addr(host, port),
    }
}

pub fn group(name: &str, targets: Vec<Target>) -> RouteGroup {
    RouteGroup {
        connection: Some(name.to_owned()),
        targets,
    }
}

const SDP: &str = "v=0\r\no=- 3892341 3892341 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// An INVITE as baresip sends it over UDP, to `ruri`, with extra headers.
pub fn baresip_invite(ruri: &str, call_id: &str, extra: &str) -> Message {
    let text = format!(
        "INVITE {ruri} SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{call_id}b;rport\n\
         Contact: <sip:1001-0x55d0c3a8@192.0.2.10:5060>\n\
         Max-Forwards: 70\n\
         To: <{ruri}>\n\
         From: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Call-ID: {call_id}\n\
         CSeq: 23456 INVITE\n\
         User-Agent: baresip v3.10.1 (x86_64/Linux)\n\
         Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER,UPDATE\n\
         Supported: replaces,norefersub,100rel\n\
         {extra}Content-Type: application/sdp\n\
         Content-Length: {}\n\n{SDP}",
        SDP.len()
    );
    Message::parse(text.replace('\n', "\r\n").replace("\r\r\n", "\r\n")).expect("INVITE parses")
}

/// An INVITE as the JsSIP browser phone sends it over WSS.
pub fn jssip_invite(ruri: &str, call_id: &str) -> Message {
    msg(&format!(
        "INVITE {ruri} SIP/2.0\n\
         Via: SIP/2.0/WSS k3nsd8s1p2vd.invalid;branch=z9hG4bK{call_id}w\n\
         Max-Forwards: 69\n\
         To: <{ruri}>\n\
         From: \"1002\" <sip:1002@proxy.example.com>;tag=q2mcbqs8ae\n\
         Call-ID: {call_id}\n\
         CSeq: 6135 INVITE\n\
         Contact: <sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob>\n\
         Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\n\
         Supported: timer,ice,replaces,outbound\n\
         User-Agent: JsSIP 3.10.1\n\
         Content-Length: 0\n\n"
    ))
}

/// A response as Asterisk PJSIP writes it to `request` (a request we sent):
/// its Via, From, To (with `tag`), Call-ID, CSeq and, for 18x/2xx, its
/// Record-Route and Contact.
pub fn pbx_reply(request: &Message, status: u16, tag: &str, extra: &str) -> Message {
    let mut b = request.response_with_tag(status, Some(tag));
    if status > 100 && status < 300 {
        for rr in request.header_values(HeaderName::RecordRoute) {
            b = b.header_bytes(HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
        }
        b = b.header(HeaderName::Contact, format!("<sip:{PBX}:5060>"));
    }
    b = b.header(HeaderName::Server, "Asterisk PBX 20.5.0");
    let text = String::from_utf8(b.build().unwrap().to_bytes().to_vec()).unwrap();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let head = head
        .lines()
        .filter(|l| !l.starts_with("Content-Length"))
        .collect::<Vec<_>>()
        .join("\r\n");
    msg(&format!("{head}\n{extra}Content-Length: 0\n\n").replace("\r\n", "\n"))
}

/// The engine, its clock and what came out.
pub struct Harness {
    pub engine: Engine<StaticView>,
    pub now: Instant,
    next_tx: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(EngineConfig::default())
    }

    pub fn with(config: EngineConfig) -> Harness {
        Harness {
            engine: Engine::new(view(), config),
            now: Instant::now(),
            next_tx: 100,
        }
    }

    /// A new request in a new server transaction.
    pub fn request(&mut self, request: Message, origin: Origin) -> ServerTx {
        self.next_tx += 1;
        let tx = ServerTx(self.next_tx);
        self.engine.handle_request(tx, request, origin, self.now);
        tx
    }

    pub fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.engine.poll_output()).collect()
    }

    /// Moves the clock by `d`, firing the engine's timers on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.engine.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.engine.handle_timeout(self.now);
        }
        self.now = end;
    }

    pub fn respond(&mut self, branch: BranchId, response: Message) {
        self.engine.handle_response(branch, response, self.now);
    }

    pub fn lookup(&mut self, token: LookupToken, result: LookupResult) {
        self.engine.handle_lookup(token, result, self.now);
    }

    /// Places a call: the request, the route lookup answered with `groups`;
    /// returns the server transaction and the branch sends.
    pub fn call(
        &mut self,
        invite: Message,
        origin: Origin,
        groups: Vec<RouteGroup>,
    ) -> (ServerTx, Vec<Sent>) {
        let tx = self.request(invite, origin);
        let out = self.outputs();
        let token = lookups(&out).into_iter().next().expect("a lookup").0;
        self.lookup(token, LookupResult::Routes(groups));
        (tx, sends(&self.outputs()))
    }
}

/// A request the engine sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub branch: BranchId,
    pub request: Message,
    pub hop: NextHop,
}

pub fn sends(out: &[Output]) -> Vec<Sent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                branch,
                request,
                hop,
            } => Some(Sent {
                branch: *branch,
                request: request.clone(),
                hop: hop.clone(),
            }),
            _ => None,
        })
        .collect()
}

pub fn responses(out: &[Output]) -> Vec<(ServerTx, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Respond { tx, response } => Some((*tx, response.clone())),
            _ => None,
        })
        .collect()
}

pub fn statuses(out: &[Output]) -> Vec<u16> {
    responses(out)
        .iter()
        .filter_map(|(_, r)| r.status())
        .collect()
}

pub fn forwards(out: &[Output]) -> Vec<(Message, NextHop)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Forward { message, hop } => Some((message.clone(), hop.clone())),
            _ => None,
        })
        .collect()
}

pub fn lookups(out: &[Output]) -> Vec<(LookupToken, Query)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Lookup { token, query } => Some((*token, query.clone())),
            _ => None,
        })
        .collect()
}

pub fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub fn methods(sent: &[Sent]) -> Vec<String> {
    sent.iter()
        .map(|s| s.request.method().unwrap().to_string())
        .collect()
}

pub fn ruri(m: &Message) -> String {
    String::from_utf8(m.request_uri_bytes().unwrap().to_vec()).unwrap()
}

pub fn header(m: &Message, name: HeaderName) -> Vec<String> {
    m.header_values(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

pub fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
