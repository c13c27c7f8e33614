//! Sans-IO Via handling: stamping inbound requests (RFC 3261 §18.2.1, RFC 3581
//! §4), routing responses (RFC 3261 §18.2.2, RFC 3581 §4, RFC 7118 §5) and
//! writing the sent-by of outbound requests (RFC 3261 §18.1.1).
//!
//! These are pure functions on [`Via`] values and [`Message`]s; the tokio layer
//! calls them, and they are tested here without sockets.

use std::net::{IpAddr, SocketAddr};

use siplink_message::headers::Via;
use siplink_message::uri::Host;
use siplink_message::{HeaderName, Message};

use crate::types::{FlowId, Protocol};

/// Stamps `received` and `rport` into `via` for a request that came from
/// `source`:
///
/// * RFC 3261 §18.2.1: `received=<source IP>` when the sent-by host is a name
///   or an address other than the source address;
/// * RFC 3581 §4: when `rport` is present (normally without a value),
///   `rport=<source port>`, and `received` is then added even if it equals the
///   sent-by address.
///
/// Returns whether `via` changed.
pub fn stamp_via(via: &mut Via, source: SocketAddr) -> bool {
    let ip = source.ip().to_canonical();
    let wants_rport = via.params.contains("rport");
    let sent_by_matches = via.host.ip().is_some_and(|h| h.to_canonical() == ip);
    let mut changed = false;
    if !sent_by_matches || wants_rport {
        let value = ip.to_string();
        if via.received() != Some(value.as_str()) {
            via.params.set("received", Some(&value));
            changed = true;
        }
    }
    if wants_rport {
        let port = source.port().to_string();
        if via.params.get("rport") != Some(Some(port.as_str())) {
            via.params.set("rport", Some(&port));
            changed = true;
        }
    }
    changed
}

/// Applies [`stamp_via`] to the top Via of `request`. Returns whether the
/// message changed; an error if the top Via is missing or malformed.
pub fn stamp_request(request: &mut Message, source: SocketAddr) -> siplink_message::Result<bool> {
    let mut via = request.top_via()?.clone();
    if !stamp_via(&mut via, source) {
        return Ok(false);
    }
    request.replace_first_value(HeaderName::Via, via.to_string());
    Ok(true)
}

/// Where a response goes, as decided by [`route_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseRoute {
    /// Back over the connection the request came on.
    Flow(FlowId),
    /// To this address with this protocol.
    Addr {
        /// Protocol (from the Via).
        protocol: Protocol,
        /// Address.
        addr: SocketAddr,
    },
    /// To a host name that must be resolved first (RFC 3263 §5).
    Host {
        /// Protocol (from the Via).
        protocol: Protocol,
        /// The name.
        host: String,
        /// The port (the Via's, or the protocol's default).
        port: u16,
    },
}

/// Decides where a response goes from its top Via (RFC 3261 §18.2.2, RFC 3581
/// §4, RFC 7118 §5):
///
/// 1. over `flow` (the connection the request came on) when it is still open
///    (`flow_alive`), whatever the Via's transport token says;
/// 2. over WS/WSS, only that flow: a WebSocket client cannot be connected back
///    to, so a closed flow is an error;
/// 3. over TCP/TLS without the flow, a new connection to the `received` address
///    (else the sent-by host) at the sent-by port (else the default port);
/// 4. over UDP: to `maddr` if present (sent-by port or 5060); else to
///    `received` at the `rport` value if there is one (RFC 3581), else at the
///    sent-by port; else to the sent-by host and port.
pub fn route_response(
    via: &Via,
    flow: Option<FlowId>,
    flow_alive: bool,
) -> Result<ResponseRoute, String> {
    let protocol = Protocol::from_token(&via.transport)
        .ok_or_else(|| format!("unsupported Via transport {:?}", &*via.transport))?;
    if let Some(f) = flow
        && flow_alive
    {
        return Ok(ResponseRoute::Flow(f));
    }
    if protocol.is_websocket() {
        return Err(format!(
            "the {protocol} flow of the request is closed, and a WebSocket client cannot be connected back to"
        ));
    }
    let port = via.port.unwrap_or(protocol.default_port());
    let received = via
        .received()
        .and_then(|r| Host::parse(r).ok())
        .and_then(|h| h.ip());
    if protocol == Protocol::Udp {
        if let Some(maddr) = via.maddr() {
            return Ok(host_route(protocol, maddr, port));
        }
        if let Some(ip) = received {
            let port = match via.rport() {
                Some(Some(rport)) => rport,
                _ => port,
            };
            return Ok(ResponseRoute::Addr {
                protocol,
                addr: SocketAddr::new(ip, port),
            });
        }
    } else if let Some(ip) = received {
        return Ok(ResponseRoute::Addr {
            protocol,
            addr: SocketAddr::new(ip, port),
        });
    }
    Ok(match &via.host {
        Host::Domain(d) => ResponseRoute::Host {
            protocol,
            host: d.to_string(),
            port,
        },
        h => ResponseRoute::Addr {
            protocol,
            addr: SocketAddr::new(h.ip().unwrap_or(IpAddr::from([0, 0, 0, 0])), port),
        },
    })
}

fn host_route(protocol: Protocol, host: &str, port: u16) -> ResponseRoute {
    match Host::parse(host).ok().and_then(|h| h.ip()) {
        Some(ip) => ResponseRoute::Addr {
            protocol,
            addr: SocketAddr::new(ip, port),
        },
        None => ResponseRoute::Host {
            protocol,
            host: host.to_string(),
            port,
        },
    }
}

/// Sets the transport token and sent-by of `via` to `protocol` and
/// `host:port` (the address the request leaves from), keeping its parameters.
/// Returns whether it changed.
pub fn set_sent_by(via: &mut Via, protocol: Protocol, host: Host, port: u16) -> bool {
    let changed = !via.is_transport(protocol.via_token())
        || !via.host.equivalent(&host)
        || via.port != Some(port);
    if changed {
        via.transport = protocol.via_token().into();
        via.host = host;
        via.port = Some(port);
    }
    changed
}

/// Applies [`set_sent_by`] to the top Via of `request`.
pub fn stamp_sent_by(
    request: &mut Message,
    protocol: Protocol,
    local: SocketAddr,
) -> siplink_message::Result<bool> {
    let mut via = request.top_via()?.clone();
    if !set_sent_by(&mut via, protocol, Host::from(local.ip()), local.port()) {
        return Ok(false);
    }
    request.replace_first_value(HeaderName::Via, via.to_string());
    Ok(true)
}

/// The checks an inbound message must pass before the transport hands it on,
/// so that a response can be built to it (RFC 3261 §8.1.1 mandatory headers):
/// a parseable top Via, From, To, Call-ID and CSeq (with the request's method).
/// Returns the fault, and whether the top Via was usable (so that a request can
/// be answered with 400).
pub fn check_inbound(msg: &Message) -> Result<(), (siplink_message::Error, bool)> {
    if let Err(e) = msg.top_via() {
        return Err((e, false));
    }
    let rest = || -> siplink_message::Result<()> {
        msg.from()?;
        msg.to()?;
        msg.call_id()?;
        let cseq = msg.cseq()?;
        if let Some(m) = msg.method()
            && cseq.method != *m
        {
            return Err(siplink_message::Error::Syntax {
                offset: 0,
                context: "CSeq header",
                expected: "the method of the request line",
            });
        }
        Ok(())
    };
    rest().map_err(|e| (e, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use siplink_message::Message;

    fn via(s: &str) -> Via {
        let raw = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: {s}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(raw.into_bytes())
            .unwrap()
            .top_via()
            .unwrap()
            .clone()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn received_added_for_domain_or_other_address() {
        let mut v = via("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1");
        assert!(stamp_via(&mut v, sa("192.0.2.4:5060")));
        assert_eq!(v.received(), Some("192.0.2.4"));
        assert_eq!(v.rport(), None);

        let mut v = via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1");
        assert!(stamp_via(&mut v, sa("192.0.2.4:5060")));
        assert_eq!(v.received(), Some("192.0.2.4"));
    }

    #[test]
    fn nothing_added_when_sent_by_is_the_source() {
        let mut v = via("SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK1");
        assert!(!stamp_via(&mut v, sa("192.0.2.4:9999")));
        assert_eq!(v.received(), None);
    }

    #[test]
    fn rport_filled_and_received_forced() {
        // RFC 3581 §4: received is added even when it equals sent-by.
        let mut v = via("SIP/2.0/UDP 192.0.2.4:5060;rport;branch=z9hG4bK1");
        assert!(stamp_via(&mut v, sa("192.0.2.4:61000")));
        assert_eq!(v.received(), Some("192.0.2.4"));
        assert_eq!(v.rport(), Some(Some(61000)));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 192.0.2.4:5060;rport=61000;branch=z9hG4bK1;received=192.0.2.4"
        );
    }

    #[test]
    fn ipv6_received_is_written_bare_and_reparses() {
        let mut v = via("SIP/2.0/TCP [2001:db8::9];rport;branch=z9hG4bK1");
        assert!(stamp_via(&mut v, sa("[2001:db8::1]:40000")));
        assert_eq!(v.received(), Some("2001:db8::1"));
        let again = via(&v.to_string());
        assert_eq!(again.received(), Some("2001:db8::1"));
        assert_eq!(again.rport(), Some(Some(40000)));
        // IPv4-mapped sources are compared as IPv4.
        let mut v = via("SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1");
        assert!(!stamp_via(&mut v, sa("[::ffff:192.0.2.4]:5060")));
    }

    #[test]
    fn stamp_request_edits_only_the_top_value() {
        let raw = "INVITE sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP a.example;rport;branch=z9hG4bK1, SIP/2.0/UDP d.example;branch=z9hG4bK0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let mut m = Message::parse(raw.as_bytes().to_vec()).unwrap();
        assert!(stamp_request(&mut m, sa("10.0.0.1:1234")).unwrap());
        let m = m.reparse().unwrap();
        let vias = m.via().unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].rport(), Some(Some(1234)));
        assert_eq!(vias[0].received(), Some("10.0.0.1"));
        assert_eq!(vias[1].received(), None);
    }

    #[test]
    fn route_udp() {
        let v = via("SIP/2.0/UDP 192.0.2.4:5062;received=198.51.100.1;rport=4000;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, None, false),
            Ok(ResponseRoute::Addr {
                protocol: Protocol::Udp,
                addr: sa("198.51.100.1:4000")
            })
        );
        let v = via("SIP/2.0/UDP 192.0.2.4:5062;received=198.51.100.1;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, None, false).unwrap(),
            ResponseRoute::Addr {
                protocol: Protocol::Udp,
                addr: sa("198.51.100.1:5062")
            }
        );
        let v = via("SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, None, false).unwrap(),
            ResponseRoute::Addr {
                protocol: Protocol::Udp,
                addr: sa("192.0.2.4:5060")
            }
        );
        let v = via("SIP/2.0/UDP pc.example.com:5070;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, None, false).unwrap(),
            ResponseRoute::Host {
                protocol: Protocol::Udp,
                host: "pc.example.com".into(),
                port: 5070
            }
        );
        let v =
            via("SIP/2.0/UDP 192.0.2.4;maddr=239.255.255.1;received=198.51.100.1;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, None, false).unwrap(),
            ResponseRoute::Addr {
                protocol: Protocol::Udp,
                addr: sa("239.255.255.1:5060")
            }
        );
    }

    #[test]
    fn route_stream() {
        let f = FlowId::from_raw(7);
        let v = via("SIP/2.0/TCP 192.0.2.4:5062;received=198.51.100.1;rport=4000;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, Some(f), true),
            Ok(ResponseRoute::Flow(f))
        );
        // Flow gone: received + sent-by port, rport ignored on reliable transports.
        assert_eq!(
            route_response(&v, Some(f), false).unwrap(),
            ResponseRoute::Addr {
                protocol: Protocol::Tcp,
                addr: sa("198.51.100.1:5062")
            }
        );
        let v = via("SIP/2.0/TLS [2001:db8::1];branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, None, false).unwrap(),
            ResponseRoute::Addr {
                protocol: Protocol::Tls,
                addr: sa("[2001:db8::1]:5061")
            }
        );
        let v = via("SIP/2.0/WSS abc.invalid;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, Some(f), true),
            Ok(ResponseRoute::Flow(f))
        );
        assert!(
            route_response(&v, Some(f), false)
                .unwrap_err()
                .contains("WebSocket")
        );
        // A live flow wins even when the Via's transport token disagrees.
        let v = via("SIP/2.0/UDP 192.0.2.4;rport=9;received=198.51.100.1;branch=z9hG4bK1");
        assert_eq!(
            route_response(&v, Some(f), true),
            Ok(ResponseRoute::Flow(f))
        );
        let v = via("SIP/2.0/SCTP a.example;branch=z9hG4bK1");
        assert!(route_response(&v, None, false).is_err());
    }

    #[test]
    fn sent_by_rewritten_for_the_transport_used() {
        let raw = "OPTIONS sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP placeholder.invalid;branch=z9hG4bKx;rport\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let mut m = Message::parse(raw.as_bytes().to_vec()).unwrap();
        assert!(stamp_sent_by(&mut m, Protocol::Tcp, sa("[::1]:5070")).unwrap());
        let m = m.reparse().unwrap();
        assert_eq!(
            m.top_via().unwrap().to_string(),
            "SIP/2.0/TCP [::1]:5070;branch=z9hG4bKx;rport"
        );
        let mut m = m;
        assert!(!stamp_sent_by(&mut m, Protocol::Tcp, sa("[::1]:5070")).unwrap());
    }

    #[test]
    fn inbound_checks() {
        let ok = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert!(check_inbound(&Message::parse(ok.as_bytes().to_vec()).unwrap()).is_ok());
        let no_cseq = ok.replace("CSeq: 1 OPTIONS\r\n", "");
        let (_, via_ok) =
            check_inbound(&Message::parse(no_cseq.into_bytes()).unwrap()).unwrap_err();
        assert!(via_ok);
        let wrong_method = ok.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        assert!(check_inbound(&Message::parse(wrong_method.into_bytes()).unwrap()).is_err());
        let no_via = ok.replace("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", "");
        let (_, via_ok) = check_inbound(&Message::parse(no_via.into_bytes()).unwrap()).unwrap_err();
        assert!(!via_ok);
    }
}
