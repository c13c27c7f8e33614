//! rtpengine's ng control protocol: typed requests and replies, and the datagram format
//! `<cookie> <bencoded dictionary>`.
//!
//! A request is a dictionary with a `command` (`ping`, `offer`, `answer`, `delete`,
//! `query`, `list`, …) and the command's keys; the reply is a dictionary with a `result`
//! (`pong`, `ok`, `error`) and, on error, an `error-reason`; a `warning` may come with any
//! result. The reply carries the request's cookie, which is how replies are matched to
//! requests (and rtpengine answers a retransmitted cookie from its cache, so resending is
//! safe).

use std::net::IpAddr;

use crate::Error;
use crate::bencode::{Value, dict};

/// Longest cookie accepted in a reply.
pub const MAX_COOKIE_LEN: usize = 64;

/// An ng command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `ping` (health).
    Ping,
    /// `offer`
    Offer,
    /// `answer`
    Answer,
    /// `delete`
    Delete,
    /// `query`
    Query,
    /// `list`
    List,
}

impl Command {
    /// The command as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Offer => "offer",
            Command::Answer => "answer",
            Command::Delete => "delete",
            Command::Query => "query",
            Command::List => "list",
        }
    }
}

/// `ICE`: what to do with ICE on the side the SDP goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ice {
    /// `remove`: strip ICE (towards a plain-RTP peer).
    Remove,
    /// `force`: add ICE with rtpengine's own candidates (towards a browser).
    Force,
    /// `force-relay`
    ForceRelay,
    /// `default`
    Default,
}

impl Ice {
    fn as_str(self) -> &'static str {
        match self {
            Ice::Remove => "remove",
            Ice::Force => "force",
            Ice::ForceRelay => "force-relay",
            Ice::Default => "default",
        }
    }
}

/// `DTLS`: rtpengine's DTLS behaviour on the side the SDP goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtls {
    /// `off`: no DTLS.
    Off,
    /// `passive`
    Passive,
    /// `active`
    Active,
}

impl Dtls {
    fn as_str(self) -> &'static str {
        match self {
            Dtls::Off => "off",
            Dtls::Passive => "passive",
            Dtls::Active => "active",
        }
    }
}

/// `rtcp-mux` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtcpMux {
    /// `offer`
    Offer,
    /// `require`: rtcp-mux on (browsers need it).
    Require,
    /// `demux`: separate RTP and RTCP ports (towards plain RTP).
    Demux,
    /// `accept`
    Accept,
    /// `reject`
    Reject,
}

impl RtcpMux {
    fn as_str(self) -> &'static str {
        match self {
            RtcpMux::Offer => "offer",
            RtcpMux::Require => "require",
            RtcpMux::Demux => "demux",
            RtcpMux::Accept => "accept",
            RtcpMux::Reject => "reject",
        }
    }
}

/// `replace` options: SDP fields rtpengine rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replace {
    /// `origin`: the `o=` address.
    Origin,
    /// `session-connection`: the session-level `c=`.
    SessionConnection,
    /// `sdp-version`
    SdpVersion,
    /// `username`
    Username,
    /// `session-name`
    SessionName,
    /// `zero-address`
    ZeroAddress,
}

impl Replace {
    fn as_str(self) -> &'static str {
        match self {
            Replace::Origin => "origin",
            Replace::SessionConnection => "session-connection",
            Replace::SdpVersion => "sdp-version",
            Replace::Username => "username",
            Replace::SessionName => "session-name",
            Replace::ZeroAddress => "zero-address",
        }
    }
}

/// `codec` options (each a list of codec names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodecOptions {
    /// `strip`: remove these codecs (`all` for every one).
    pub strip: Vec<String>,
    /// `offer`: keep or add these.
    pub offer: Vec<String>,
    /// `transcode`: add these, transcoding (rtpengine built with transcoding).
    pub transcode: Vec<String>,
    /// `mask`
    pub mask: Vec<String>,
    /// `except`
    pub except: Vec<String>,
}

impl CodecOptions {
    fn is_empty(&self) -> bool {
        self.strip.is_empty()
            && self.offer.is_empty()
            && self.transcode.is_empty()
            && self.mask.is_empty()
            && self.except.is_empty()
    }

    fn to_value(&self) -> Value {
        let mut entries = Vec::new();
        for (k, v) in [
            ("strip", &self.strip),
            ("offer", &self.offer),
            ("transcode", &self.transcode),
            ("mask", &self.mask),
            ("except", &self.except),
        ] {
            if !v.is_empty() {
                entries.push((k, Value::str_list(v)));
            }
        }
        dict(entries)
    }
}

/// An `offer` or `answer`: the SDP and what rtpengine should do to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpRequest {
    /// The SIP Call-ID.
    pub call_id: String,
    /// The From tag.
    pub from_tag: String,
    /// The To tag (required in an `answer`).
    pub to_tag: Option<String>,
    /// The top Via branch (tells forked branches apart).
    pub via_branch: Option<String>,
    /// The SDP to rewrite.
    pub sdp: String,
    /// `transport-protocol` (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, …).
    pub transport_protocol: Option<String>,
    /// `ICE`
    pub ice: Option<Ice>,
    /// `DTLS`
    pub dtls: Option<Dtls>,
    /// `SDES` (e.g. `off`).
    pub sdes: Vec<String>,
    /// `rtcp-mux`
    pub rtcp_mux: Vec<RtcpMux>,
    /// `replace`
    pub replace: Vec<Replace>,
    /// `flags` (`trust-address`, `generate-mid`, `symmetric`, …).
    pub flags: Vec<String>,
    /// `direction`: the two interface names (from, to).
    pub direction: Option<(String, String)>,
    /// `media-address`: the address to put in the SDP.
    pub media_address: Option<IpAddr>,
    /// `codec`
    pub codec: CodecOptions,
    /// Any other key, sent as given.
    pub extra: Vec<(String, Value)>,
}

impl SdpRequest {
    /// An `offer` for `call_id` from `from_tag`.
    pub fn offer(
        call_id: impl Into<String>,
        from_tag: impl Into<String>,
        sdp: impl Into<String>,
    ) -> SdpRequest {
        SdpRequest {
            call_id: call_id.into(),
            from_tag: from_tag.into(),
            to_tag: None,
            via_branch: None,
            sdp: sdp.into(),
            transport_protocol: None,
            ice: None,
            dtls: None,
            sdes: Vec::new(),
            rtcp_mux: Vec::new(),
            replace: Vec::new(),
            flags: Vec::new(),
            direction: None,
            media_address: None,
            codec: CodecOptions::default(),
            extra: Vec::new(),
        }
    }

    /// An `answer` for `call_id`, between `from_tag` (the offerer) and `to_tag`.
    pub fn answer(
        call_id: impl Into<String>,
        from_tag: impl Into<String>,
        to_tag: impl Into<String>,
        sdp: impl Into<String>,
    ) -> SdpRequest {
        let mut r = SdpRequest::offer(call_id, from_tag, sdp);
        r.to_tag = Some(to_tag.into());
        r
    }

    /// Sets `via-branch`.
    pub fn via_branch(mut self, branch: impl Into<String>) -> Self {
        self.via_branch = Some(branch.into());
        self
    }

    /// Sets `transport-protocol`.
    pub fn transport_protocol(mut self, proto: impl Into<String>) -> Self {
        self.transport_protocol = Some(proto.into());
        self
    }

    /// Sets `ICE`.
    pub fn ice(mut self, ice: Ice) -> Self {
        self.ice = Some(ice);
        self
    }

    /// Sets `DTLS`.
    pub fn dtls(mut self, dtls: Dtls) -> Self {
        self.dtls = Some(dtls);
        self
    }

    /// Adds `SDES: off` (no SDES crypto offered).
    pub fn sdes_off(mut self) -> Self {
        self.sdes.push("off".into());
        self
    }

    /// Adds an `rtcp-mux` option.
    pub fn rtcp_mux(mut self, m: RtcpMux) -> Self {
        self.rtcp_mux.push(m);
        self
    }

    /// Adds a `replace` option.
    pub fn replace(mut self, r: Replace) -> Self {
        self.replace.push(r);
        self
    }

    /// Adds a `flags` entry.
    pub fn flag(mut self, flag: impl Into<String>) -> Self {
        self.flags.push(flag.into());
        self
    }

    /// Sets `direction` (interface names, for rtpengine with several interfaces).
    pub fn direction(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.direction = Some((from.into(), to.into()));
        self
    }

    /// Sets `media-address`.
    pub fn media_address(mut self, ip: IpAddr) -> Self {
        self.media_address = Some(ip);
        self
    }

    /// Sets the `codec` options.
    pub fn codec(mut self, codec: CodecOptions) -> Self {
        self.codec = codec;
        self
    }

    /// Adds any other key.
    pub fn extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.push((key.into(), value));
        self
    }

    /// The flags that bridge a WebRTC phone's SDP to a plain-RTP PBX: `RTP/AVP`, ICE
    /// removed, DTLS and SDES off, RTCP demuxed, origin and session connection replaced.
    pub fn to_plain_rtp(self) -> Self {
        self.transport_protocol("RTP/AVP")
            .ice(Ice::Remove)
            .dtls(Dtls::Off)
            .sdes_off()
            .rtcp_mux(RtcpMux::Demux)
            .replace(Replace::Origin)
            .replace(Replace::SessionConnection)
    }

    /// The flags that bridge a plain-RTP SDP to a browser: `UDP/TLS/RTP/SAVPF`, ICE
    /// forced, rtcp-mux required, `a=mid` generated.
    pub fn to_webrtc(self) -> Self {
        self.transport_protocol("UDP/TLS/RTP/SAVPF")
            .ice(Ice::Force)
            .rtcp_mux(RtcpMux::Require)
            .flag("generate-mid")
    }

    fn to_value(&self, command: Command) -> Value {
        let mut e: Vec<(String, Value)> = vec![
            ("command".into(), Value::str(command.as_str())),
            ("call-id".into(), Value::str(&self.call_id)),
            ("from-tag".into(), Value::str(&self.from_tag)),
            ("sdp".into(), Value::str(&self.sdp)),
        ];
        if let Some(t) = &self.to_tag {
            e.push(("to-tag".into(), Value::str(t)));
        }
        if let Some(b) = &self.via_branch {
            e.push(("via-branch".into(), Value::str(b)));
        }
        if let Some(p) = &self.transport_protocol {
            e.push(("transport-protocol".into(), Value::str(p)));
        }
        if let Some(i) = self.ice {
            e.push(("ICE".into(), Value::str(i.as_str())));
        }
        if let Some(d) = self.dtls {
            e.push(("DTLS".into(), Value::str(d.as_str())));
        }
        if !self.sdes.is_empty() {
            e.push(("SDES".into(), Value::str_list(&self.sdes)));
        }
        if !self.rtcp_mux.is_empty() {
            e.push((
                "rtcp-mux".into(),
                Value::str_list(self.rtcp_mux.iter().map(|m| m.as_str())),
            ));
        }
        if !self.replace.is_empty() {
            e.push((
                "replace".into(),
                Value::str_list(self.replace.iter().map(|r| r.as_str())),
            ));
        }
        if !self.flags.is_empty() {
            e.push(("flags".into(), Value::str_list(&self.flags)));
        }
        if let Some((a, b)) = &self.direction {
            e.push(("direction".into(), Value::str_list([a, b])));
        }
        if let Some(ip) = self.media_address {
            e.push(("media-address".into(), Value::str(ip.to_string())));
        }
        if !self.codec.is_empty() {
            e.push(("codec".into(), self.codec.to_value()));
        }
        e.extend(self.extra.iter().cloned());
        dict(e)
    }
}

/// A `delete`: ends a call (or one branch of it) on rtpengine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// The Call-ID.
    pub call_id: String,
    /// From tag (all the call's legs when `None`).
    pub from_tag: Option<String>,
    /// To tag.
    pub to_tag: Option<String>,
    /// Via branch (one fork).
    pub via_branch: Option<String>,
    /// `flags` (e.g. `fatal`).
    pub flags: Vec<String>,
    /// `delete-delay` in seconds (rtpengine's default, 30 s, when `None`; 0 deletes at
    /// once).
    pub delete_delay: Option<u32>,
}

impl DeleteRequest {
    /// Deletes the whole call.
    pub fn call(call_id: impl Into<String>) -> DeleteRequest {
        DeleteRequest {
            call_id: call_id.into(),
            from_tag: None,
            to_tag: None,
            via_branch: None,
            flags: Vec::new(),
            delete_delay: None,
        }
    }

    /// Narrows the delete to one leg (From tag).
    pub fn from_tag(mut self, tag: impl Into<String>) -> Self {
        self.from_tag = Some(tag.into());
        self
    }

    /// Narrows the delete to one fork (Via branch).
    pub fn via_branch(mut self, branch: impl Into<String>) -> Self {
        self.via_branch = Some(branch.into());
        self
    }

    /// Sets `delete-delay` (0: delete at once).
    pub fn delete_delay(mut self, seconds: u32) -> Self {
        self.delete_delay = Some(seconds);
        self
    }
}

/// A `query`: a call's state and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    /// The Call-ID.
    pub call_id: String,
    /// From tag, to narrow the answer.
    pub from_tag: Option<String>,
    /// To tag.
    pub to_tag: Option<String>,
}

impl QueryRequest {
    /// Queries a call.
    pub fn call(call_id: impl Into<String>) -> QueryRequest {
        QueryRequest {
            call_id: call_id.into(),
            from_tag: None,
            to_tag: None,
        }
    }
}

/// A typed ng request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ping`
    Ping,
    /// `offer`
    Offer(SdpRequest),
    /// `answer`
    Answer(SdpRequest),
    /// `delete`
    Delete(DeleteRequest),
    /// `query`
    Query(QueryRequest),
    /// `list` (at most `limit` Call-IDs).
    List {
        /// `limit`
        limit: Option<u32>,
    },
}

impl Request {
    /// The command.
    pub fn command(&self) -> Command {
        match self {
            Request::Ping => Command::Ping,
            Request::Offer(_) => Command::Offer,
            Request::Answer(_) => Command::Answer,
            Request::Delete(_) => Command::Delete,
            Request::Query(_) => Command::Query,
            Request::List { .. } => Command::List,
        }
    }

    /// The Call-ID the request is about, if any.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            Request::Offer(r) | Request::Answer(r) => Some(&r.call_id),
            Request::Delete(d) => Some(&d.call_id),
            Request::Query(q) => Some(&q.call_id),
            Request::Ping | Request::List { .. } => None,
        }
    }

    /// The request as an ng dictionary.
    pub fn to_value(&self) -> Value {
        let tags = |e: &mut Vec<(String, Value)>, f: &Option<String>, t: &Option<String>| {
            if let Some(f) = f {
                e.push(("from-tag".into(), Value::str(f)));
            }
            if let Some(t) = t {
                e.push(("to-tag".into(), Value::str(t)));
            }
        };
        match self {
            Request::Ping => dict([("command", Value::str("ping"))]),
            Request::Offer(r) => r.to_value(Command::Offer),
            Request::Answer(r) => r.to_value(Command::Answer),
            Request::Delete(d) => {
                let mut e: Vec<(String, Value)> = vec![
                    ("command".into(), Value::str("delete")),
                    ("call-id".into(), Value::str(&d.call_id)),
                ];
                tags(&mut e, &d.from_tag, &d.to_tag);
                if let Some(b) = &d.via_branch {
                    e.push(("via-branch".into(), Value::str(b)));
                }
                if !d.flags.is_empty() {
                    e.push(("flags".into(), Value::str_list(&d.flags)));
                }
                if let Some(s) = d.delete_delay {
                    e.push(("delete-delay".into(), Value::Int(i64::from(s))));
                }
                dict(e)
            }
            Request::Query(q) => {
                let mut e: Vec<(String, Value)> = vec![
                    ("command".into(), Value::str("query")),
                    ("call-id".into(), Value::str(&q.call_id)),
                ];
                tags(&mut e, &q.from_tag, &q.to_tag);
                dict(e)
            }
            Request::List { limit } => {
                let mut e = vec![("command", Value::str("list"))];
                if let Some(l) = limit {
                    e.push(("limit", Value::Int(i64::from(*l))));
                }
                dict(e)
            }
        }
    }
}

/// The `result` of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `ok`
    Ok,
    /// `pong` (to a `ping`).
    Pong,
    /// `error`, with the `error-reason`.
    Error(String),
    /// Another result string.
    Other(String),
}

/// An ng reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `result`
    pub outcome: Outcome,
    /// `warning`, if any.
    pub warning: Option<String>,
    /// The whole reply dictionary.
    pub body: Value,
}

impl Reply {
    /// Reads a reply dictionary.
    pub fn from_value(body: Value) -> Result<Reply, Error> {
        if body.as_dict().is_none() {
            return Err(Error::Protocol("the reply is not a dictionary".into()));
        }
        let result = body
            .get("result")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol("the reply has no `result`".into()))?;
        let outcome = match result {
            "ok" => Outcome::Ok,
            "pong" => Outcome::Pong,
            "error" => Outcome::Error(
                body.get("error-reason")
                    .and_then(Value::as_str)
                    .unwrap_or("(no reason given)")
                    .to_owned(),
            ),
            other => Outcome::Other(other.to_owned()),
        };
        let warning = body
            .get("warning")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Reply {
            outcome,
            warning,
            body,
        })
    }

    /// The rewritten SDP of an `offer`/`answer` reply.
    pub fn sdp(&self) -> Option<&str> {
        self.body.get("sdp").and_then(Value::as_str)
    }

    /// `Err(Rejected)` for an `error` result.
    pub fn check(self, command: Command) -> Result<Reply, Error> {
        match &self.outcome {
            Outcome::Error(reason) => Err(Error::Rejected {
                command: command.as_str(),
                reason: reason.clone(),
            }),
            _ => Ok(self),
        }
    }

    /// The Call-IDs of a `list` reply.
    pub fn calls(&self) -> Vec<String> {
        self.body
            .get("calls")
            .and_then(Value::as_list)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The call statistics of a `query` or `delete` reply.
    pub fn stats(&self) -> CallStats {
        let count = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_int);
        let counters = |v: Option<&Value>| Counters {
            packets: count(v, "packets").unwrap_or(0),
            bytes: count(v, "bytes").unwrap_or(0),
            errors: count(v, "errors").unwrap_or(0),
        };
        let totals = self.body.get("totals");
        let tags = self
            .body
            .get("tags")
            .and_then(Value::as_dict)
            .map(|d| {
                d.keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        CallStats {
            created: self.body.get("created").and_then(Value::as_int),
            last_signal: self.body.get("last signal").and_then(Value::as_int),
            tags,
            rtp: counters(totals.and_then(|t| t.get("RTP"))),
            rtcp: counters(totals.and_then(|t| t.get("RTCP"))),
        }
    }
}

/// Packet, byte and error counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets.
    pub packets: i64,
    /// Bytes.
    pub bytes: i64,
    /// Errors.
    pub errors: i64,
}

/// A call's state from a `query` or `delete` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// `created` (Unix time).
    pub created: Option<i64>,
    /// `last signal` (Unix time).
    pub last_signal: Option<i64>,
    /// The call's tags (one per leg).
    pub tags: Vec<String>,
    /// RTP totals.
    pub rtp: Counters,
    /// RTCP totals.
    pub rtcp: Counters,
}

/// `<cookie> <bencode>` for a request.
pub fn encode_datagram(cookie: &str, body: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 64);
    out.extend_from_slice(cookie.as_bytes());
    out.push(b' ');
    body.encode_into(&mut out);
    out
}

/// Splits a datagram into its cookie and decoded body.
pub fn decode_datagram(bytes: &[u8]) -> Result<(&str, Value), Error> {
    let space = bytes
        .iter()
        .take(MAX_COOKIE_LEN + 1)
        .position(|&b| b == b' ')
        .ok_or_else(|| Error::Protocol("no cookie (or a cookie over 64 bytes)".into()))?;
    let cookie = std::str::from_utf8(&bytes[..space])
        .ok()
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Error::Protocol("the cookie is not printable text".into()))?;
    let body = Value::decode(&bytes[space + 1..])?;
    Ok((cookie, body))
}
