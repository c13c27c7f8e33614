//! The compact form in which [`BindingTable`](crate::BindingTable) keeps a
//! binding.
//!
//! A [`Binding`] is a convenient value (≈ 550 bytes inline, plus a dozen
//! allocations for its strings, its Contact's URI and parameters) but a poor
//! thing to keep 100,000 of. A [`Stored`] record holds the same information in
//! 80 bytes of fixed fields (times as 64-bit nanosecond counts, flags, `q`,
//! CSeq, reg-id, flow) and **one** boxed byte buffer with every variable part
//! (source address, the Contact's display name, URI and parameters, Call-ID,
//! `+sip.instance`, User-Agent, Path values), each prefixed by its length. The
//! AOR is not in the record: the table keeps it once, as the key of the AOR's
//! set, and hands it to [`Stored::binding`], which rebuilds the public value
//! when one is read (lookups, events, the registrar's view of an AOR).
//!
//! The round trip is exact: `Stored::new(&b, epoch).binding(&b.aor, epoch) == b`
//! (instants and wall-clock times to the nanosecond, the Contact's URI parsed
//! again from its own text).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytestring::ByteString;
use siplink_message::headers::NameAddr;
use siplink_message::{Param, Params, Uri};

use crate::binding::{Aor, Binding, BindingId, FlowId, Transport};

const FLAG_Q: u8 = 1;
const FLAG_REG_ID: u8 = 2;
const FLAG_OUTBOUND: u8 = 4;
const FLAG_FLOW: u8 = 8;

/// One binding as the table keeps it (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    id: BindingId,
    /// Nanoseconds from the table's epoch (negative: before it).
    expires_at: i64,
    refreshed_at: i64,
    /// Nanoseconds from the Unix epoch (negative: before it).
    expires_at_wall: i64,
    registered_at: i64,
    flow: u64,
    cseq: u32,
    reg_id: u32,
    q: u16,
    flags: u8,
    transport: u8,
    /// The variable parts, length-prefixed, in the order `new` writes them.
    data: Box<[u8]>,
}

impl Stored {
    /// The compact form of `b` (its AOR left out), instants counted from `epoch`.
    pub(crate) fn new(b: &Binding, epoch: Instant) -> Stored {
        let mut w = Writer(Vec::with_capacity(data_len_hint(b)));
        match b.source {
            SocketAddr::V4(a) => {
                w.0.push(4);
                w.0.extend_from_slice(&a.ip().octets());
                w.0.extend_from_slice(&a.port().to_le_bytes());
            }
            SocketAddr::V6(a) => {
                w.0.push(6);
                w.0.extend_from_slice(&a.ip().octets());
                w.0.extend_from_slice(&a.port().to_le_bytes());
                w.0.extend_from_slice(&a.flowinfo().to_le_bytes());
                w.0.extend_from_slice(&a.scope_id().to_le_bytes());
            }
        }
        let c = &b.contact;
        w.opt(c.display_name.as_ref().map(|d| d.as_bytes().as_ref()));
        w.bytes(c.uri.as_bytes());
        w.len(c.params.0.len());
        for p in &c.params.0 {
            w.bytes(p.name.as_bytes().as_ref());
            w.opt(p.value.as_ref().map(|v| v.as_bytes().as_ref()));
            w.0.push(u8::from(p.quoted));
        }
        w.bytes(b.call_id.as_bytes());
        w.opt(b.instance.as_deref().map(str::as_bytes));
        w.opt(b.user_agent.as_deref().map(str::as_bytes));
        w.len(b.path.len());
        for p in &b.path {
            w.bytes(p.as_bytes());
        }
        let mut flags = 0;
        if b.q.is_some() {
            flags |= FLAG_Q;
        }
        if b.reg_id.is_some() {
            flags |= FLAG_REG_ID;
        }
        if b.outbound {
            flags |= FLAG_OUTBOUND;
        }
        if b.flow.is_some() {
            flags |= FLAG_FLOW;
        }
        Stored {
            id: b.id,
            expires_at: since(epoch, b.expires_at),
            refreshed_at: since(epoch, b.refreshed_at),
            expires_at_wall: since_unix(b.expires_at_wall),
            registered_at: since_unix(b.registered_at),
            flow: b.flow.map_or(0, FlowId::get),
            cseq: b.cseq,
            reg_id: b.reg_id.unwrap_or(0),
            q: b.q.unwrap_or(0),
            flags,
            transport: transport_code(b.transport),
            data: w.0.into_boxed_slice(),
        }
    }

    /// The public value, for `aor` (the AOR the table keeps it under).
    pub(crate) fn binding(&self, aor: &Aor, epoch: Instant) -> Binding {
        let mut r = Reader(&self.data);
        let source = match r.byte() {
            6 => {
                let ip: [u8; 16] = r.array();
                let port = u16::from_le_bytes(r.array());
                let flowinfo = u32::from_le_bytes(r.array());
                let scope = u32::from_le_bytes(r.array());
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope))
            }
            _ => {
                let ip: [u8; 4] = r.array();
                let port = u16::from_le_bytes(r.array());
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
            }
        };
        let display_name = r.opt().map(byte_string);
        let uri = parse_uri(r.bytes());
        let n = r.len();
        let mut params = Vec::with_capacity(n);
        for _ in 0..n {
            let name = byte_string(r.bytes());
            let value = r.opt().map(byte_string);
            let quoted = r.byte() != 0;
            params.push(Param {
                name,
                value,
                quoted,
            });
        }
        let call_id = string(r.bytes());
        let instance = r.opt().map(string);
        let user_agent = r.opt().map(string);
        let n = r.len();
        let mut path = Vec::with_capacity(n);
        for _ in 0..n {
            path.push(string(r.bytes()));
        }
        Binding {
            id: self.id,
            aor: aor.clone(),
            contact: NameAddr {
                display_name,
                uri,
                params: Params(params),
            },
            expires_at: at(epoch, self.expires_at),
            expires_at_wall: at_unix(self.expires_at_wall),
            q: (self.flags & FLAG_Q != 0).then_some(self.q),
            call_id,
            cseq: self.cseq,
            path,
            instance,
            reg_id: (self.flags & FLAG_REG_ID != 0).then_some(self.reg_id),
            outbound: self.outbound(),
            flow: self.flow(),
            source,
            transport: transport_from(self.transport),
            user_agent,
            registered_at: at_unix(self.registered_at),
            refreshed_at: at(epoch, self.refreshed_at),
        }
    }

    pub(crate) fn id(&self) -> BindingId {
        self.id
    }

    /// The expiry, in nanoseconds from the table's epoch.
    pub(crate) fn expires_at(&self) -> i64 {
        self.expires_at
    }

    pub(crate) fn outbound(&self) -> bool {
        self.flags & FLAG_OUTBOUND != 0
    }

    pub(crate) fn flow(&self) -> Option<FlowId> {
        (self.flags & FLAG_FLOW != 0).then(|| FlowId::from_raw(self.flow))
    }

    /// The binding no longer has a flow (its connection closed).
    pub(crate) fn clear_flow(&mut self) {
        self.flags &= !FLAG_FLOW;
        self.flow = 0;
    }

    pub(crate) fn transport(&self) -> Transport {
        transport_from(self.transport)
    }

    /// Heap bytes this record owns besides itself (its buffer).
    #[cfg(test)]
    pub(crate) fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Nanoseconds from `epoch` to `t` (negative before it), saturated beyond
/// ±292 years.
pub(crate) fn since(epoch: Instant, t: Instant) -> i64 {
    match t.checked_duration_since(epoch) {
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        None => i64::try_from(epoch.duration_since(t).as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// The inverse of [`since`].
pub(crate) fn at(epoch: Instant, n: i64) -> Instant {
    let d = Duration::from_nanos(n.unsigned_abs());
    if n >= 0 {
        epoch.checked_add(d).unwrap_or(epoch)
    } else {
        epoch.checked_sub(d).unwrap_or(epoch)
    }
}

fn since_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

fn at_unix(n: i64) -> SystemTime {
    let d = Duration::from_nanos(n.unsigned_abs());
    if n >= 0 {
        UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

fn transport_code(t: Transport) -> u8 {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
        Transport::Ws => 3,
        Transport::Wss => 4,
    }
}

fn transport_from(c: u8) -> Transport {
    match c {
        1 => Transport::Tcp,
        2 => Transport::Tls,
        3 => Transport::Ws,
        4 => Transport::Wss,
        _ => Transport::Udp,
    }
}

/// The buffer's size, to allocate it once (a length prefix is one byte below
/// 128, which covers nearly every field).
fn data_len_hint(b: &Binding) -> usize {
    let c = &b.contact;
    let opt = |s: Option<usize>| s.map_or(1, |n| n + 2);
    1 + if b.source.is_ipv4() { 6 } else { 26 }
        + opt(c.display_name.as_ref().map(|d| d.len()))
        + c.uri.as_str().len()
        + 2
        + c.params
            .0
            .iter()
            .map(|p| p.name.len() + 1 + opt(p.value.as_ref().map(|v| v.len())) + 1)
            .sum::<usize>()
        + b.call_id.len()
        + 1
        + opt(b.instance.as_ref().map(String::len))
        + opt(b.user_agent.as_ref().map(String::len))
        + 1
        + b.path.iter().map(|p| p.len() + 1).sum::<usize>()
}

struct Writer(Vec<u8>);

impl Writer {
    /// A length (LEB128: seven bits per byte, low bits first).
    fn len(&mut self, mut n: usize) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    /// An optional field: length + 1, or 0 for `None`.
    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.len(0),
            Some(b) => {
                self.len(b.len() + 1);
                self.0.extend_from_slice(b);
            }
        }
    }
}

/// Reads what a [`Writer`] wrote. The buffer is the table's own, so a short
/// read cannot happen; it would give empty fields, never a panic.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        let b = self.take(N);
        a[..b.len()].copy_from_slice(b);
        a
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }

    fn len(&mut self) -> usize {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let b = self.byte();
            n |= usize::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            shift += 7;
            if b & 0x80 == 0 || shift >= usize::BITS {
                return n;
            }
        }
    }

    fn bytes(&mut self) -> &'a [u8] {
        let n = self.len();
        self.take(n)
    }

    fn opt(&mut self) -> Option<&'a [u8]> {
        match self.len() {
            0 => None,
            n => Some(self.take(n - 1)),
        }
    }
}

/// The fields were written from `str`s: valid UTF-8.
fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn byte_string(b: &[u8]) -> ByteString {
    ByteString::from(String::from_utf8_lossy(b).as_ref())
}

/// The Contact URI, parsed again from its own text (which parsed before: the
/// parser is deterministic).
fn parse_uri(b: &[u8]) -> Uri {
    Uri::parse(bytes::Bytes::copy_from_slice(b)).unwrap_or_else(|_| {
        debug_assert!(false, "a stored Contact URI did not parse again");
        Uri::parse(bytes::Bytes::from_static(b"sip:invalid.invalid")).expect("a valid URI")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(source: &str, rich: bool) -> Binding {
        let aor = Aor::parse("sip:alice@example.com").unwrap();
        let uri = Uri::parse(bytes::Bytes::from_static(
            b"sip:alice@192.0.2.4:5060;transport=tcp",
        ))
        .unwrap();
        let mut contact = NameAddr::new(uri);
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut b = Binding {
            id: BindingId(42),
            aor,
            contact: contact.clone(),
            expires_at: now + Duration::from_nanos(3_600_000_000_123),
            expires_at_wall: wall + Duration::from_secs(3600),
            q: None,
            call_id: "843817637684230@998sdasdh09".into(),
            cseq: 1826,
            path: Vec::new(),
            instance: None,
            reg_id: None,
            outbound: false,
            flow: None,
            source: source.parse().unwrap(),
            transport: Transport::Udp,
            user_agent: None,
            registered_at: wall,
            refreshed_at: now,
        };
        if rich {
            contact.display_name = Some("Al \"the\" ice ü".into());
            contact.params.0.push(Param {
                name: "+sip.instance".into(),
                value: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into()),
                quoted: true,
            });
            contact.params.0.push(Param {
                name: "reg-id".into(),
                value: Some("1".into()),
                quoted: false,
            });
            contact.params.0.push(Param {
                name: "ob".into(),
                value: None,
                quoted: false,
            });
            b.contact = contact;
            b.q = Some(500);
            b.path = vec!["<sip:edge.example.com;lr;ob>".into(), "x".repeat(300)];
            b.instance = Some("urn:uuid:00000000-0000-1000-8000-000A95A0E128".into());
            b.reg_id = Some(1);
            b.outbound = true;
            b.flow = Some(FlowId::from_raw(7));
            b.transport = Transport::Wss;
            b.user_agent = Some("Phone/1.2.3".into());
            b.registered_at = UNIX_EPOCH - Duration::from_nanos(5);
            b.refreshed_at = now - Duration::from_nanos(1_000_000_007);
        }
        b
    }

    #[test]
    fn round_trip_is_exact() {
        for (source, rich) in [
            ("192.0.2.4:5060", false),
            ("192.0.2.4:5060", true),
            ("[2001:db8::1]:5061", true),
        ] {
            let b = binding(source, rich);
            for epoch in [
                b.refreshed_at,
                b.expires_at,
                b.expires_at + Duration::from_secs(9),
            ] {
                let s = Stored::new(&b, epoch);
                assert_eq!(s.binding(&b.aor, epoch), b);
                assert_eq!(s.flow(), b.flow);
                assert_eq!(s.outbound(), b.outbound);
                assert_eq!(s.transport(), b.transport);
                assert_eq!(at(epoch, s.expires_at()), b.expires_at);
            }
        }
    }

    #[test]
    fn the_record_is_small() {
        assert_eq!(std::mem::size_of::<Stored>(), 80);
        assert_eq!(std::mem::size_of::<Aor>(), 32);
        let b = binding("192.0.2.4:5060", false);
        let s = Stored::new(&b, b.refreshed_at);
        // source 7, display name 1, URI 1 + 38, params 1, Call-ID 1 + 27,
        // instance, User-Agent, Path 1 each.
        assert_eq!(s.data_len(), 7 + 1 + 39 + 1 + 28 + 3);
    }

    #[test]
    fn clearing_the_flow() {
        let b = binding("192.0.2.4:5060", true);
        let mut s = Stored::new(&b, b.refreshed_at);
        s.clear_flow();
        let mut want = b.clone();
        want.flow = None;
        assert_eq!(s.binding(&b.aor, b.refreshed_at), want);
    }
}
