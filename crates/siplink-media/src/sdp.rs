//! SDP (RFC 8866, formerly RFC 4566): a sans-IO parse and serialise.
//!
//! A description is kept as its lines in order ([`Line`]): the session-level lines and
//! then one [`Media`] per `m=` section. Lines with a grammar a relay needs (`v o c b t
//! m a`) are typed; text lines (`s i u e p r z k`) and lines of unknown type are kept as
//! their text, so an unmodified description serialises back to the same bytes (with CRLF
//! line ends). Attributes keep their name and value as received; [`Attribute::typed`]
//! reads the ones a relay needs (`rtpmap`, `fmtp`, `candidate`, `fingerprint`, …), and
//! those are checked at parse time, so a malformed `a=rtpmap` is an error with its line
//! number.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use crate::Error;

/// Bounds on a description (every one checked before anything is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpLimits {
    /// Total size in bytes (default 64 KiB).
    pub max_len: usize,
    /// Number of lines (default 2048).
    pub max_lines: usize,
    /// Length of one line in bytes, without its line end (default 4096).
    pub max_line_len: usize,
    /// Number of `m=` sections (default 32).
    pub max_media: usize,
    /// Number of `a=` lines in all (default 1024).
    pub max_attributes: usize,
}

impl Default for SdpLimits {
    fn default() -> Self {
        SdpLimits {
            max_len: 64 * 1024,
            max_lines: 2048,
            max_line_len: 4096,
            max_media: 32,
            max_attributes: 1024,
        }
    }
}

/// A session description: the session-level lines, then the media sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// Session-level lines in order, `v=` first.
    pub session: Vec<Line>,
    /// The media sections in order.
    pub media: Vec<Media>,
}

/// One media section: its `m=` line and the lines after it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The `m=` line.
    pub desc: MediaDesc,
    /// The section's other lines (`i c b k a`, and unknown ones) in order.
    pub lines: Vec<Line>,
}

/// One SDP line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `v=`
    Version(u32),
    /// `o=`
    Origin(Origin),
    /// `s=` (as received; may be empty or `-`).
    SessionName(String),
    /// `i=`
    Info(String),
    /// `u=`
    Uri(String),
    /// `e=`
    Email(String),
    /// `p=`
    Phone(String),
    /// `c=`
    Connection(Connection),
    /// `b=`
    Bandwidth(Bandwidth),
    /// `t=`
    Timing(Timing),
    /// `r=` (text).
    Repeat(String),
    /// `z=` (text).
    Zone(String),
    /// `k=` (text; obsolete in RFC 8866 but kept).
    Key(String),
    /// `a=`
    Attribute(Attribute),
    /// A line of a type this model does not know, kept as received.
    Other {
        /// The type letter.
        kind: char,
        /// Everything after `=`.
        value: String,
    },
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `-` when the host has no user ids.
    pub username: String,
    /// Session id (digits by the grammar; kept as text).
    pub session_id: String,
    /// Session version, bumped on every change of the description.
    pub session_version: u64,
    /// `IN`
    pub net_type: String,
    /// `IP4` or `IP6`
    pub addr_type: String,
    /// Address or host name.
    pub address: String,
}

/// `c=<nettype> <addrtype> <connection-address>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IN`
    pub net_type: String,
    /// `IP4` or `IP6`
    pub addr_type: String,
    /// The address, with `/ttl` or `/count` suffixes if any.
    pub address: String,
}

impl Connection {
    /// A `c=IN IP4|IP6 <ip>` line for an address.
    pub fn new(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, if it is one (without suffixes).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }
}

/// `b=<bwtype>:<bandwidth>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// `CT`, `AS`, `TIAS`, …
    pub kind: String,
    /// The value (kbit/s for `CT`/`AS`, bit/s for `TIAS`).
    pub value: u64,
}

/// `t=<start-time> <stop-time>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// NTP start time (0: unbounded).
    pub start: u64,
    /// NTP stop time (0: unbounded).
    pub stop: u64,
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDesc {
    /// `audio`, `video`, `application`, …
    pub media: String,
    /// Transport port (0: the stream is rejected or disabled).
    pub port: u16,
    /// Number of ports, when given.
    pub port_count: Option<u32>,
    /// Transport protocol as written (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, …).
    pub proto: String,
    /// Formats: RTP payload types for RTP protocols.
    pub formats: Vec<String>,
}

/// `a=<name>[:<value>]`, kept as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name.
    pub name: String,
    /// The value after the first `:`, if there was one.
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute (`a=<name>`) or a value attribute (`a=<name>:<value>`).
    pub fn new(name: impl Into<String>, value: Option<String>) -> Attribute {
        Attribute {
            name: name.into(),
            value,
        }
    }

    /// The typed reading of a known attribute; `None` for an attribute this model does
    /// not type, or for a malformed value (a parsed description has none of those).
    pub fn typed(&self) -> Option<TypedAttribute> {
        TypedAttribute::parse(self).ok().flatten()
    }
}

/// Media direction (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `sendrecv` (the default).
    SendRecv,
    /// `sendonly`
    SendOnly,
    /// `recvonly`
    RecvOnly,
    /// `inactive`
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_name(name: &str) -> Option<Direction> {
        Some(match name {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// DTLS role (`a=setup`, RFC 4145 / 8842).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `active`
    Active,
    /// `passive`
    Passive,
    /// `actpass`
    ActPass,
    /// `holdconn`
    HoldConn,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    /// RTP payload type (0–127).
    pub payload_type: u8,
    /// Encoding name (`opus`, `PCMU`, `telephone-event`, …).
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Encoding parameters (audio: channels).
    pub channels: Option<u32>,
}

/// `a=candidate:` (RFC 8839), the fields a relay reads; the rest kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Foundation.
    pub foundation: String,
    /// Component id (1 RTP, 2 RTCP).
    pub component: u32,
    /// `udp`, `tcp`, …
    pub transport: String,
    /// Priority.
    pub priority: u64,
    /// Address (IP or an mDNS `.local` name).
    pub address: String,
    /// Port.
    pub port: u16,
    /// `host`, `srflx`, `prflx`, `relay`.
    pub kind: String,
    /// What follows the type (`raddr …`, `generation 0`, …), as received.
    pub rest: Option<String>,
}

/// The attributes this model types.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypedAttribute {
    /// `rtpmap`
    Rtpmap(Rtpmap),
    /// `fmtp:<format> <parameters>`
    Fmtp {
        /// The format (a payload type for RTP).
        format: String,
        /// The parameters as written.
        params: String,
    },
    /// `rtcp:<port> [<nettype> <addrtype> <address>]`
    Rtcp {
        /// RTCP port.
        port: u16,
        /// The connection part as written, if any.
        address: Option<String>,
    },
    /// `rtcp-mux`
    RtcpMux,
    /// `ice-ufrag`
    IceUfrag(String),
    /// `ice-pwd`
    IcePwd(String),
    /// `ice-options` (space-separated tags).
    IceOptions(Vec<String>),
    /// `ice-lite`
    IceLite,
    /// `candidate`
    Candidate(Candidate),
    /// `end-of-candidates`
    EndOfCandidates,
    /// `fingerprint:<hash> <value>`
    Fingerprint {
        /// Hash function (`sha-256`, …).
        hash: String,
        /// Colon-separated hex.
        value: String,
    },
    /// `setup`
    Setup(Setup),
    /// `mid`
    Mid(String),
    /// `group:<semantics> <id> ...`
    Group {
        /// `BUNDLE`, `LS`, …
        semantics: String,
        /// The mids.
        ids: Vec<String>,
    },
    /// `ssrc:<id> <attribute>[:<value>]`
    Ssrc {
        /// The SSRC.
        id: u32,
        /// Source attribute name (`cname`, `msid`, …).
        attribute: String,
        /// Its value.
        value: Option<String>,
    },
    /// `sendrecv`, `sendonly`, `recvonly`, `inactive`
    Direction(Direction),
    /// `crypto:<tag> <suite> <key-params> [<session-params>]` (SDES, RFC 4568)
    Crypto {
        /// Tag.
        tag: u32,
        /// Crypto suite (`AES_CM_128_HMAC_SHA1_80`, …).
        suite: String,
        /// Key parameters (`inline:…`).
        key_params: String,
        /// Session parameters as written.
        session_params: Option<String>,
    },
    /// `ptime` in milliseconds.
    Ptime(u32),
    /// `maxptime` in milliseconds.
    MaxPtime(u32),
    /// `extmap:<id>[/<direction>] <uri> [<attributes>]`
    Extmap {
        /// Extension id.
        id: u16,
        /// Direction, if given.
        direction: Option<String>,
        /// Extension URI.
        uri: String,
        /// Extension attributes as written.
        attributes: Option<String>,
    },
}

fn num<T: FromStr>(s: &str, what: &str) -> Result<T, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} `{s}` is not a number"));
    }
    s.parse()
        .map_err(|_| format!("{what} `{s}` is out of range"))
}

fn need<'a>(it: &mut impl Iterator<Item = &'a str>, what: &str) -> Result<&'a str, String> {
    it.next().ok_or_else(|| format!("{what} is missing"))
}

/// The text after the first `taken` space-separated fields, as written.
fn rest_of(s: &str, taken: usize) -> Option<String> {
    let mut idx = 0;
    let bytes = s.as_bytes();
    for _ in 0..taken {
        while idx < bytes.len() && bytes[idx] == b' ' {
            idx += 1;
        }
        while idx < bytes.len() && bytes[idx] != b' ' {
            idx += 1;
        }
    }
    while idx < bytes.len() && bytes[idx] == b' ' {
        idx += 1;
    }
    (idx < bytes.len()).then(|| s[idx..].to_owned())
}

fn fields(s: &str) -> impl Iterator<Item = &str> {
    s.split(' ').filter(|f| !f.is_empty())
}

impl TypedAttribute {
    /// Reads `attr` if this model types it: `Ok(None)` for other attributes, an error
    /// text for a typed attribute with a malformed value.
    pub(crate) fn parse(attr: &Attribute) -> Result<Option<TypedAttribute>, String> {
        let name = attr.name.as_str();
        let value = attr.value.as_deref();
        if let Some(d) = Direction::from_name(name) {
            return Ok(Some(TypedAttribute::Direction(d)));
        }
        let flag = |t: TypedAttribute| Ok(Some(t));
        match name {
            "rtcp-mux" => return flag(TypedAttribute::RtcpMux),
            "ice-lite" => return flag(TypedAttribute::IceLite),
            "end-of-candidates" => return flag(TypedAttribute::EndOfCandidates),
            _ => {}
        }
        let known = matches!(
            name,
            "rtpmap"
                | "fmtp"
                | "rtcp"
                | "ice-ufrag"
                | "ice-pwd"
                | "ice-options"
                | "candidate"
                | "fingerprint"
                | "setup"
                | "mid"
                | "group"
                | "ssrc"
                | "crypto"
                | "ptime"
                | "maxptime"
                | "extmap"
        );
        if !known {
            return Ok(None);
        }
        let Some(v) = value else {
            return Err(format!("a={name} needs a value"));
        };
        let mut it = fields(v);
        let t = match name {
            "rtpmap" => {
                let pt: u8 = num(need(&mut it, "payload type")?, "payload type")?;
                if pt > 127 {
                    return Err(format!("payload type {pt} is over 127"));
                }
                let enc = need(&mut it, "encoding")?;
                let mut parts = enc.split('/');
                let encoding = parts.next().unwrap_or_default();
                if encoding.is_empty() {
                    return Err("encoding name is empty".into());
                }
                let clock_rate = num(need(&mut parts, "clock rate")?, "clock rate")?;
                let channels = parts.next().map(|c| num(c, "channels")).transpose()?;
                if parts.next().is_some() || it.next().is_some() {
                    return Err("rtpmap has extra fields".into());
                }
                TypedAttribute::Rtpmap(Rtpmap {
                    payload_type: pt,
                    encoding: encoding.to_owned(),
                    clock_rate,
                    channels,
                })
            }
            "fmtp" => {
                let format = need(&mut it, "format")?.to_owned();
                TypedAttribute::Fmtp {
                    format,
                    params: rest_of(v, 1).unwrap_or_default(),
                }
            }
            "rtcp" => {
                let port = num(need(&mut it, "port")?, "port")?;
                TypedAttribute::Rtcp {
                    port,
                    address: rest_of(v, 1),
                }
            }
            "ice-ufrag" => TypedAttribute::IceUfrag(v.to_owned()),
            "ice-pwd" => TypedAttribute::IcePwd(v.to_owned()),
            "ice-options" => TypedAttribute::IceOptions(it.map(str::to_owned).collect()),
            "candidate" => {
                let foundation = need(&mut it, "foundation")?.to_owned();
                let component = num(need(&mut it, "component")?, "component")?;
                let transport = need(&mut it, "transport")?.to_owned();
                let priority = num(need(&mut it, "priority")?, "priority")?;
                let address = need(&mut it, "address")?.to_owned();
                let port = num(need(&mut it, "port")?, "port")?;
                if need(&mut it, "`typ`")? != "typ" {
                    return Err("candidate: `typ` expected after the port".into());
                }
                let kind = need(&mut it, "candidate type")?.to_owned();
                TypedAttribute::Candidate(Candidate {
                    foundation,
                    component,
                    transport,
                    priority,
                    address,
                    port,
                    kind,
                    rest: rest_of(v, 8),
                })
            }
            "fingerprint" => {
                let hash = need(&mut it, "hash function")?.to_owned();
                let value = need(&mut it, "fingerprint")?.to_owned();
                if it.next().is_some() {
                    return Err("fingerprint has extra fields".into());
                }
                TypedAttribute::Fingerprint { hash, value }
            }
            "setup" => TypedAttribute::Setup(match v {
                "active" => Setup::Active,
                "passive" => Setup::Passive,
                "actpass" => Setup::ActPass,
                "holdconn" => Setup::HoldConn,
                other => return Err(format!("setup `{other}` is not a DTLS role")),
            }),
            "mid" => TypedAttribute::Mid(v.to_owned()),
            "group" => {
                let semantics = need(&mut it, "group semantics")?.to_owned();
                TypedAttribute::Group {
                    semantics,
                    ids: it.map(str::to_owned).collect(),
                }
            }
            "ssrc" => {
                let id = num(need(&mut it, "ssrc id")?, "ssrc id")?;
                let rest = rest_of(v, 1).ok_or("ssrc attribute is missing")?;
                let (attribute, value) = match rest.split_once(':') {
                    Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
                    None => (rest, None),
                };
                TypedAttribute::Ssrc {
                    id,
                    attribute,
                    value,
                }
            }
            "crypto" => {
                let tag = num(need(&mut it, "crypto tag")?, "crypto tag")?;
                let suite = need(&mut it, "crypto suite")?.to_owned();
                let key_params = need(&mut it, "key parameters")?.to_owned();
                TypedAttribute::Crypto {
                    tag,
                    suite,
                    key_params,
                    session_params: rest_of(v, 3),
                }
            }
            "ptime" => TypedAttribute::Ptime(num(v, "ptime")?),
            "maxptime" => TypedAttribute::MaxPtime(num(v, "maxptime")?),
            "extmap" => {
                let head = need(&mut it, "extmap id")?;
                let (id, direction) = match head.split_once('/') {
                    Some((i, d)) => (i, Some(d.to_owned())),
                    None => (head, None),
                };
                let id = num(id, "extmap id")?;
                let uri = need(&mut it, "extension URI")?.to_owned();
                TypedAttribute::Extmap {
                    id,
                    direction,
                    uri,
                    attributes: rest_of(v, 2),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(t))
    }
}

fn join(name: &str, value: String) -> Attribute {
    Attribute::new(name, Some(value))
}

impl From<TypedAttribute> for Attribute {
    fn from(t: TypedAttribute) -> Attribute {
        let opt = |s: &Option<String>| s.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
        match t {
            TypedAttribute::Rtpmap(r) => join(
                "rtpmap",
                match r.channels {
                    Some(c) => format!("{} {}/{}/{c}", r.payload_type, r.encoding, r.clock_rate),
                    None => format!("{} {}/{}", r.payload_type, r.encoding, r.clock_rate),
                },
            ),
            TypedAttribute::Fmtp { format, params } if params.is_empty() => join("fmtp", format),
            TypedAttribute::Fmtp { format, params } => join("fmtp", format!("{format} {params}")),
            TypedAttribute::Rtcp { port, address } => {
                join("rtcp", format!("{port}{}", opt(&address)))
            }
            TypedAttribute::RtcpMux => Attribute::new("rtcp-mux", None),
            TypedAttribute::IceUfrag(u) => join("ice-ufrag", u),
            TypedAttribute::IcePwd(p) => join("ice-pwd", p),
            TypedAttribute::IceOptions(o) => join("ice-options", o.join(" ")),
            TypedAttribute::IceLite => Attribute::new("ice-lite", None),
            TypedAttribute::Candidate(c) => join(
                "candidate",
                format!(
                    "{} {} {} {} {} {} typ {}{}",
                    c.foundation,
                    c.component,
                    c.transport,
                    c.priority,
                    c.address,
                    c.port,
                    c.kind,
                    opt(&c.rest)
                ),
            ),
            TypedAttribute::EndOfCandidates => Attribute::new("end-of-candidates", None),
            TypedAttribute::Fingerprint { hash, value } => {
                join("fingerprint", format!("{hash} {value}"))
            }
            TypedAttribute::Setup(s) => join("setup", s.as_str().to_owned()),
            TypedAttribute::Mid(m) => join("mid", m),
            TypedAttribute::Group { semantics, ids } => {
                let mut v = semantics;
                for id in ids {
                    v.push(' ');
                    v.push_str(&id);
                }
                join("group", v)
            }
            TypedAttribute::Ssrc {
                id,
                attribute,
                value,
            } => join(
                "ssrc",
                match value {
                    Some(v) => format!("{id} {attribute}:{v}"),
                    None => format!("{id} {attribute}"),
                },
            ),
            TypedAttribute::Direction(d) => Attribute::new(d.as_str(), None),
            TypedAttribute::Crypto {
                tag,
                suite,
                key_params,
                session_params,
            } => join(
                "crypto",
                format!("{tag} {suite} {key_params}{}", opt(&session_params)),
            ),
            TypedAttribute::Ptime(p) => join("ptime", p.to_string()),
            TypedAttribute::MaxPtime(p) => join("maxptime", p.to_string()),
            TypedAttribute::Extmap {
                id,
                direction,
                uri,
                attributes,
            } => join(
                "extmap",
                match direction {
                    Some(d) => format!("{id}/{d} {uri}{}", opt(&attributes)),
                    None => format!("{id} {uri}{}", opt(&attributes)),
                },
            ),
        }
    }
}

/// The transport protocol of a media section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaProtocol {
    /// `RTP/AVP`: plain RTP (what most PBXs speak).
    RtpAvp,
    /// `RTP/AVPF`
    RtpAvpf,
    /// `RTP/SAVP`: SRTP keyed by SDES.
    RtpSavp,
    /// `RTP/SAVPF`: SRTP with feedback (old WebRTC).
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP`: DTLS-SRTP.
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF`: DTLS-SRTP with feedback (WebRTC).
    UdpTlsRtpSavpf,
    /// Anything else, as written.
    Other(String),
}

impl MediaProtocol {
    /// Reads a `m=` protocol field (ASCII case-insensitively).
    pub fn parse(proto: &str) -> MediaProtocol {
        let p = proto.to_ascii_uppercase();
        match p.as_str() {
            "RTP/AVP" => MediaProtocol::RtpAvp,
            "RTP/AVPF" => MediaProtocol::RtpAvpf,
            "RTP/SAVP" => MediaProtocol::RtpSavp,
            "RTP/SAVPF" => MediaProtocol::RtpSavpf,
            "UDP/TLS/RTP/SAVP" => MediaProtocol::UdpTlsRtpSavp,
            "UDP/TLS/RTP/SAVPF" => MediaProtocol::UdpTlsRtpSavpf,
            _ => MediaProtocol::Other(proto.to_owned()),
        }
    }

    /// The protocol as written in an `m=` line.
    pub fn as_str(&self) -> &str {
        match self {
            MediaProtocol::RtpAvp => "RTP/AVP",
            MediaProtocol::RtpAvpf => "RTP/AVPF",
            MediaProtocol::RtpSavp => "RTP/SAVP",
            MediaProtocol::RtpSavpf => "RTP/SAVPF",
            MediaProtocol::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP",
            MediaProtocol::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
            MediaProtocol::Other(s) => s,
        }
    }

    /// Whether media is RTP at all (one of the named variants).
    pub fn is_rtp(&self) -> bool {
        !matches!(self, MediaProtocol::Other(_))
    }

    /// Whether media is SRTP (`SAVP`/`SAVPF`, SDES or DTLS keyed).
    pub fn is_secure(&self) -> bool {
        matches!(
            self,
            MediaProtocol::RtpSavp
                | MediaProtocol::RtpSavpf
                | MediaProtocol::UdpTlsRtpSavp
                | MediaProtocol::UdpTlsRtpSavpf
        )
    }

    /// Whether keys come from DTLS (`UDP/TLS/...`).
    pub fn is_dtls(&self) -> bool {
        matches!(
            self,
            MediaProtocol::UdpTlsRtpSavp | MediaProtocol::UdpTlsRtpSavpf
        )
    }

    /// Whether it is a feedback profile (`AVPF`/`SAVPF`).
    pub fn has_feedback(&self) -> bool {
        matches!(
            self,
            MediaProtocol::RtpAvpf | MediaProtocol::RtpSavpf | MediaProtocol::UdpTlsRtpSavpf
        )
    }
}

impl fmt::Display for MediaProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A codec offered in a media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type.
    pub payload_type: u8,
    /// Encoding name as written (`opus`, `PCMU`, …).
    pub name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels, when given.
    pub channels: Option<u32>,
}

impl Codec {
    /// Whether this is a real media codec, not DTMF, comfort noise, redundancy,
    /// retransmission or FEC.
    pub fn is_media(&self) -> bool {
        let n = self.name.to_ascii_lowercase();
        !matches!(
            n.as_str(),
            "telephone-event" | "cn" | "red" | "rtx" | "ulpfec" | "flexfec" | "flexfec-03"
        )
    }

    fn same_as(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels.unwrap_or(1) == other.channels.unwrap_or(1)
    }
}

/// The static RTP payload types of RFC 3551 (name, clock rate, channels).
fn static_payload(pt: u8) -> Option<(&'static str, u32, Option<u32>)> {
    Some(match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    })
}

fn attrs(lines: &[Line]) -> impl Iterator<Item = &Attribute> {
    lines.iter().filter_map(|l| match l {
        Line::Attribute(a) => Some(a),
        _ => None,
    })
}

fn typed(lines: &[Line]) -> impl Iterator<Item = TypedAttribute> + '_ {
    attrs(lines).filter_map(Attribute::typed)
}

impl Media {
    /// The section's transport protocol.
    pub fn protocol(&self) -> MediaProtocol {
        MediaProtocol::parse(&self.desc.proto)
    }

    /// The section's attributes in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        attrs(&self.lines)
    }

    /// The section's typed attributes in order.
    pub fn typed_attributes(&self) -> impl Iterator<Item = TypedAttribute> + '_ {
        typed(&self.lines)
    }

    /// The first attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes().find(|a| a.name == name)
    }

    /// Whether an attribute named `name` is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// The section's own `c=` line.
    pub fn connection(&self) -> Option<&Connection> {
        self.lines.iter().find_map(|l| match l {
            Line::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// The section's direction attribute, if it has one.
    pub fn direction(&self) -> Option<Direction> {
        self.typed_attributes().find_map(|t| match t {
            TypedAttribute::Direction(d) => Some(d),
            _ => None,
        })
    }

    /// The section's `a=mid`.
    pub fn mid(&self) -> Option<&str> {
        self.attribute("mid").and_then(|a| a.value.as_deref())
    }

    /// The codecs of an RTP section, in the `m=` line's order: `rtpmap`s, and the
    /// static payload types of RFC 3551 where there is none. Formats that are neither
    /// are left out.
    pub fn codecs(&self) -> Vec<Codec> {
        if !self.protocol().is_rtp() {
            return Vec::new();
        }
        let maps: Vec<Rtpmap> = self
            .typed_attributes()
            .filter_map(|t| match t {
                TypedAttribute::Rtpmap(r) => Some(r),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for f in &self.desc.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            if let Some(r) = maps.iter().find(|r| r.payload_type == pt) {
                out.push(Codec {
                    payload_type: pt,
                    name: r.encoding.clone(),
                    clock_rate: r.clock_rate,
                    channels: r.channels,
                });
            } else if let Some((name, rate, ch)) = static_payload(pt) {
                out.push(Codec {
                    payload_type: pt,
                    name: name.to_owned(),
                    clock_rate: rate,
                    channels: ch,
                });
            }
        }
        out
    }

    /// Appends an attribute line.
    pub fn push_attribute(&mut self, attr: impl Into<Attribute>) {
        self.lines.push(Line::Attribute(attr.into()));
    }

    /// Removes every attribute named `name`; returns how many.
    pub fn remove_attributes(&mut self, name: &str) -> usize {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::Attribute(a) if a.name == name));
        before - self.lines.len()
    }
}

impl Sdp {
    /// Parses with the default [`SdpLimits`].
    pub fn parse(input: &[u8]) -> Result<Sdp, Error> {
        Sdp::parse_with(input, &SdpLimits::default())
    }

    /// Parses `input` (LF or CRLF line ends) within `limits`.
    pub fn parse_with(input: &[u8], limits: &SdpLimits) -> Result<Sdp, Error> {
        if input.len() > limits.max_len {
            return Err(Error::sdp(
                0,
                format!(
                    "{} bytes is over the limit of {}",
                    input.len(),
                    limits.max_len
                ),
            ));
        }
        let mut session: Vec<Line> = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        let mut lines = 0usize;
        let mut attributes = 0usize;
        let (mut seen_o, mut seen_s) = (false, false);
        let mut n = 0usize;
        for raw in input.split(|&b| b == b'\n') {
            n += 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() {
                continue; // a trailing line end, or blank lines: nothing to keep
            }
            lines += 1;
            if lines > limits.max_lines {
                return Err(Error::sdp(
                    n,
                    format!("more than {} lines", limits.max_lines),
                ));
            }
            if raw.len() > limits.max_line_len {
                return Err(Error::sdp(
                    n,
                    format!(
                        "{} bytes is over the line limit of {}",
                        raw.len(),
                        limits.max_line_len
                    ),
                ));
            }
            if let Some(b) = raw.iter().find(|&&b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(Error::sdp(n, format!("control character 0x{b:02x}")));
            }
            let text = std::str::from_utf8(raw)
                .map_err(|_| Error::sdp(n, "not UTF-8 text".to_string()))?;
            let mut chars = text.chars();
            let kind = chars.next().unwrap_or(' ');
            if !kind.is_ascii_alphabetic() || chars.next() != Some('=') {
                return Err(Error::sdp(n, "expected `<type>=<value>`"));
            }
            let value = &text[2..];
            if lines == 1 && kind != 'v' {
                return Err(Error::sdp(n, "the first line must be `v=`"));
            }
            let in_media = !media.is_empty();
            let line = match kind {
                'v' => {
                    if lines != 1 {
                        return Err(Error::sdp(n, "`v=` may only be the first line"));
                    }
                    Line::Version(num(value, "version").map_err(|e| Error::sdp(n, e))?)
                }
                'o' | 's' | 'u' | 'e' | 'p' | 't' | 'r' | 'z' if in_media => {
                    return Err(Error::sdp(
                        n,
                        format!("`{kind}=` is a session-level line, found in a media section"),
                    ));
                }
                'o' => {
                    if seen_o {
                        return Err(Error::sdp(n, "a second `o=` line"));
                    }
                    seen_o = true;
                    Line::Origin(parse_origin(value).map_err(|e| Error::sdp(n, e))?)
                }
                's' => {
                    if seen_s {
                        return Err(Error::sdp(n, "a second `s=` line"));
                    }
                    seen_s = true;
                    Line::SessionName(value.to_owned())
                }
                'i' => Line::Info(value.to_owned()),
                'u' => Line::Uri(value.to_owned()),
                'e' => Line::Email(value.to_owned()),
                'p' => Line::Phone(value.to_owned()),
                'c' => Line::Connection(parse_connection(value).map_err(|e| Error::sdp(n, e))?),
                'b' => Line::Bandwidth(parse_bandwidth(value).map_err(|e| Error::sdp(n, e))?),
                't' => Line::Timing(parse_timing(value).map_err(|e| Error::sdp(n, e))?),
                'r' => Line::Repeat(value.to_owned()),
                'z' => Line::Zone(value.to_owned()),
                'k' => Line::Key(value.to_owned()),
                'a' => {
                    attributes += 1;
                    if attributes > limits.max_attributes {
                        return Err(Error::sdp(
                            n,
                            format!("more than {} attributes", limits.max_attributes),
                        ));
                    }
                    let attr = match value.split_once(':') {
                        Some((name, v)) => Attribute::new(name, Some(v.to_owned())),
                        None => Attribute::new(value, None),
                    };
                    if attr.name.is_empty() {
                        return Err(Error::sdp(n, "attribute name is empty"));
                    }
                    TypedAttribute::parse(&attr).map_err(|e| Error::sdp(n, e))?;
                    Line::Attribute(attr)
                }
                'm' => {
                    if !seen_o || !seen_s {
                        return Err(Error::sdp(n, "`m=` before the `o=` and `s=` lines"));
                    }
                    if media.len() >= limits.max_media {
                        return Err(Error::sdp(
                            n,
                            format!("more than {} media sections", limits.max_media),
                        ));
                    }
                    media.push(Media {
                        desc: parse_media_desc(value).map_err(|e| Error::sdp(n, e))?,
                        lines: Vec::new(),
                    });
                    continue;
                }
                other => Line::Other {
                    kind: other,
                    value: value.to_owned(),
                },
            };
            match media.last_mut() {
                Some(m) => m.lines.push(line),
                None => session.push(line),
            }
        }
        if lines == 0 {
            return Err(Error::sdp(0, "empty description"));
        }
        if !seen_o {
            return Err(Error::sdp(0, "no `o=` line"));
        }
        if !seen_s {
            return Err(Error::sdp(0, "no `s=` line"));
        }
        Ok(Sdp { session, media })
    }

    /// The `o=` line.
    pub fn origin(&self) -> Option<&Origin> {
        self.session.iter().find_map(|l| match l {
            Line::Origin(o) => Some(o),
            _ => None,
        })
    }

    /// The `o=` line, to edit.
    pub fn origin_mut(&mut self) -> Option<&mut Origin> {
        self.session.iter_mut().find_map(|l| match l {
            Line::Origin(o) => Some(o),
            _ => None,
        })
    }

    /// The session-level `c=` line.
    pub fn connection(&self) -> Option<&Connection> {
        self.session.iter().find_map(|l| match l {
            Line::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// The connection that applies to media section `index`: its own `c=`, else the
    /// session's.
    pub fn media_connection(&self, index: usize) -> Option<&Connection> {
        self.media
            .get(index)
            .and_then(Media::connection)
            .or_else(|| self.connection())
    }

    /// The session-level attributes in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        attrs(&self.session)
    }

    /// The first session-level attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes().find(|a| a.name == name)
    }

    /// Whether an attribute named `name` is present at session level or in any section.
    pub fn has_attribute_anywhere(&self, name: &str) -> bool {
        self.attribute(name).is_some() || self.media.iter().any(|m| m.has_attribute(name))
    }

    /// Whether this looks like a WebRTC description: an SAVPF or DTLS media protocol,
    /// a DTLS fingerprint, or ICE credentials.
    pub fn is_webrtc(&self) -> bool {
        self.media.iter().any(|m| {
            let p = m.protocol();
            p.is_dtls() || p == MediaProtocol::RtpSavpf
        }) || self.has_attribute_anywhere("fingerprint")
            || self.has_attribute_anywhere("ice-ufrag")
    }

    /// The media codecs (not DTMF, CN, RED, RTX, FEC) of `self`'s active sections that
    /// `other` also offers in an active section of the same media type (same name,
    /// ASCII case-insensitively, clock rate and channels), in `self`'s order.
    pub fn common_codecs(&self, other: &Sdp) -> Vec<Codec> {
        let mut out: Vec<Codec> = Vec::new();
        for m in self.media.iter().filter(|m| m.desc.port != 0) {
            let theirs: Vec<Codec> = other
                .media
                .iter()
                .filter(|o| o.desc.port != 0 && o.desc.media == m.desc.media)
                .flat_map(Media::codecs)
                .collect();
            for c in m.codecs().into_iter().filter(Codec::is_media) {
                if theirs.iter().any(|t| t.same_as(&c)) && !out.iter().any(|o| o.same_as(&c)) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Whether the two descriptions share at least one media codec.
    pub fn has_common_codec(&self, other: &Sdp) -> bool {
        !self.common_codecs(other).is_empty()
    }

    /// The description as bytes (CRLF line ends).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl FromStr for Sdp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Sdp, Error> {
        Sdp::parse(s.as_bytes())
    }
}

fn parse_origin(v: &str) -> Result<Origin, String> {
    let f: Vec<&str> = fields(v).collect();
    if f.len() != 6 {
        return Err(format!("`o=` needs 6 fields, found {}", f.len()));
    }
    Ok(Origin {
        username: f[0].to_owned(),
        session_id: f[1].to_owned(),
        session_version: num(f[2], "session version")?,
        net_type: f[3].to_owned(),
        addr_type: f[4].to_owned(),
        address: f[5].to_owned(),
    })
}

fn parse_connection(v: &str) -> Result<Connection, String> {
    let f: Vec<&str> = fields(v).collect();
    if f.len() != 3 {
        return Err(format!("`c=` needs 3 fields, found {}", f.len()));
    }
    Ok(Connection {
        net_type: f[0].to_owned(),
        addr_type: f[1].to_owned(),
        address: f[2].to_owned(),
    })
}

fn parse_bandwidth(v: &str) -> Result<Bandwidth, String> {
    let (kind, value) = v.split_once(':').ok_or("`b=` needs `<type>:<bandwidth>`")?;
    if kind.is_empty() || kind.contains(' ') {
        return Err(format!("bandwidth type `{kind}` is not a token"));
    }
    Ok(Bandwidth {
        kind: kind.to_owned(),
        value: num(value, "bandwidth")?,
    })
}

fn parse_timing(v: &str) -> Result<Timing, String> {
    let f: Vec<&str> = fields(v).collect();
    if f.len() != 2 {
        return Err(format!("`t=` needs 2 fields, found {}", f.len()));
    }
    Ok(Timing {
        start: num(f[0], "start time")?,
        stop: num(f[1], "stop time")?,
    })
}

fn parse_media_desc(v: &str) -> Result<MediaDesc, String> {
    let f: Vec<&str> = fields(v).collect();
    if f.len() < 3 {
        return Err(format!(
            "`m=` needs media, port and protocol, found {} fields",
            f.len()
        ));
    }
    let (port, port_count) = match f[1].split_once('/') {
        Some((p, c)) => (num(p, "port")?, Some(num(c, "port count")?)),
        None => (num(f[1], "port")?, None),
    };
    Ok(MediaDesc {
        media: f[0].to_owned(),
        port,
        port_count,
        proto: f[2].to_owned(),
        formats: f[3..].iter().map(|s| (*s).to_owned()).collect(),
    })
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Version(v) => write!(f, "v={v}"),
            Line::Origin(o) => write!(
                f,
                "o={} {} {} {} {} {}",
                o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
            ),
            Line::SessionName(s) => write!(f, "s={s}"),
            Line::Info(s) => write!(f, "i={s}"),
            Line::Uri(s) => write!(f, "u={s}"),
            Line::Email(s) => write!(f, "e={s}"),
            Line::Phone(s) => write!(f, "p={s}"),
            Line::Connection(c) => write!(f, "c={} {} {}", c.net_type, c.addr_type, c.address),
            Line::Bandwidth(b) => write!(f, "b={}:{}", b.kind, b.value),
            Line::Timing(t) => write!(f, "t={} {}", t.start, t.stop),
            Line::Repeat(s) => write!(f, "r={s}"),
            Line::Zone(s) => write!(f, "z={s}"),
            Line::Key(s) => write!(f, "k={s}"),
            Line::Attribute(a) => match &a.value {
                Some(v) => write!(f, "a={}:{v}", a.name),
                None => write!(f, "a={}", a.name),
            },
            Line::Other { kind, value } => write!(f, "{kind}={value}"),
        }
    }
}

impl fmt::Display for MediaDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(c) = self.port_count {
            write!(f, "/{c}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt_ in &self.formats {
            f.write_char(' ')?;
            f.write_str(fmt_)?;
        }
        Ok(())
    }
}

impl fmt::Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.session {
            write!(f, "{l}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{}\r\n", m.desc)?;
            for l in &m.lines {
                write!(f, "{l}\r\n")?;
            }
        }
        Ok(())
    }
}
