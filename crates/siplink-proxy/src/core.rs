//! The stateful proxy's rules (RFC 3261 §16), sans-IO.
//!
//! These functions take a [`Message`] and decide or edit; the async
//! [`Proxy`](crate::Proxy) calls them and does the sending. Every edit keeps
//! the bytes of the headers it does not touch (one message type from wire to
//! wire).

use std::hash::{Hash, Hasher};

use bytes::Bytes;
use siplink_message::headers::HeaderName;
use siplink_message::uri::Uri;
use siplink_message::{Message, MessageBuilder, Method};

/// Who "we" are: the host names and addresses that mean this proxy, and its
/// ports.
#[derive(Debug, Clone, Default)]
pub struct Local {
    hosts: Vec<String>,
    ports: Vec<u16>,
}

impl Local {
    /// `hosts` (domains, advertised name, listener IPs) and `ports`.
    pub fn new(
        hosts: impl IntoIterator<Item = String>,
        ports: impl IntoIterator<Item = u16>,
    ) -> Local {
        let mut hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        let mut ports: Vec<u16> = ports.into_iter().collect();
        ports.sort_unstable();
        ports.dedup();
        Local { hosts, ports }
    }

    /// Whether `host` (a domain or address, brackets allowed) names us.
    pub fn is_local_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Whether `uri` addresses this proxy: a `sip:`/`sips:` URI whose host is
    /// ours and whose port, if any, is one we listen on.
    pub fn is_local_uri(&self, uri: &Uri) -> bool {
        match uri {
            Uri::Sip(sip) => {
                self.is_local_host(&sip.host().to_string())
                    && sip.port().is_none_or(|p| self.ports.contains(&p))
            }
            _ => false,
        }
    }
}

/// What a proxy does with the request before forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Forward it.
    Forward,
    /// Answer it with this status and reason instead.
    Reject(u16, &'static str),
}

/// RFC 3261 §16.6 step 3: Max-Forwards decremented (70 when absent);
/// a request that arrives with 0 is rejected with 483 (step §16.3 3).
pub fn decrement_max_forwards(request: &mut Message) -> Check {
    match request.max_forwards() {
        Ok(Some(0)) => Check::Reject(483, "Too Many Hops"),
        Ok(Some(n)) => {
            request.set_header(HeaderName::MaxForwards, (n - 1).to_string());
            Check::Forward
        }
        Ok(None) => {
            request.append_header(HeaderName::MaxForwards, Bytes::from_static(b"70"));
            Check::Forward
        }
        Err(_) => Check::Reject(400, "Bad Max-Forwards"),
    }
}

/// What [`consume_own_routes`] removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consumed {
    /// Our own Route entries that were removed, top first (and the
    /// Request-URI a strict router put there, first).
    pub routes: Vec<Uri>,
    /// The Request-URI was ours and was replaced by the last Route (the
    /// previous hop is a strict router, §16.4).
    pub strict_fixed: bool,
}

/// RFC 3261 §16.4: if the Request-URI is one we put into a Record-Route (the
/// previous hop is a strict router), it is replaced by the last Route value;
/// then every Route entry at the top that names us is removed (two when we
/// record-routed twice, RFC 5658).
pub fn consume_own_routes(request: &mut Message, local: &Local) -> Consumed {
    let mut consumed = Consumed::default();
    let routes = match request.route() {
        Ok(r) => r.to_vec(),
        Err(_) => return consumed,
    };
    let ruri_is_rr = request
        .request_uri()
        .ok()
        .and_then(Uri::as_sip)
        .is_some_and(|u| u.lr() && local.is_local_uri(&Uri::Sip(u.clone())));
    let mut routes = routes;
    if ruri_is_rr && let Some(last) = routes.pop() {
        if let Ok(ours) = request.request_uri() {
            consumed.routes.push(ours.clone());
        }
        request.set_request_uri(Bytes::copy_from_slice(last.uri.as_bytes()));
        consumed.strict_fixed = true;
    }
    let mut keep = 0;
    while keep < routes.len() && local.is_local_uri(&routes[keep].uri) {
        consumed.routes.push(routes[keep].uri.clone());
        keep += 1;
    }
    if keep > 0 || consumed.strict_fixed {
        request.remove_header(HeaderName::Route);
        for r in &routes[keep..] {
            request.append_header(HeaderName::Route, r.to_string());
        }
    }
    consumed
}

/// RFC 3261 §22.3: the `Proxy-Authorization` values for our own `realm`
/// (a phone's digest answer to our 407) are consumed by us and removed
/// before the request is forwarded; values for other realms (a proxy
/// further on) are left, in their order. Returns how many were removed.
///
/// A value whose realm cannot be read is left as it is.
pub fn remove_own_credentials(request: &mut Message, realm: &str) -> usize {
    let ours = |value: &[u8]| {
        siplink_message::headers::Credentials::parse(Bytes::copy_from_slice(value))
            .is_ok_and(|c| c.realm() == Some(realm))
    };
    let values: Vec<Bytes> = request
        .header_values(HeaderName::ProxyAuthorization)
        .map(Bytes::copy_from_slice)
        .collect();
    let removed = values.iter().filter(|v| ours(v)).count();
    if removed > 0 {
        request.remove_header(HeaderName::ProxyAuthorization);
        for v in values.into_iter().filter(|v| !ours(v)) {
            request.append_header(HeaderName::ProxyAuthorization, v);
        }
    }
    removed
}

/// The loop-detection part of our branch (RFC 3261 §16.6 step 8, RFC 5393
/// §4.2): a hash over what decides where the request goes (Request-URI,
/// Route, Proxy-Require, Call-ID, From/To tags, CSeq number). A request that
/// comes back to us unchanged carries our own Via with this value: a loop
/// (482). One that comes back changed (a spiral) does not.
pub fn loop_cookie(request: &Message) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.request_uri_bytes().map(|b| b.as_ref()).hash(&mut h);
    for v in request.header_values(HeaderName::Route) {
        v.hash(&mut h);
    }
    for v in request.header_values(HeaderName::ProxyRequire) {
        v.hash(&mut h);
    }
    request.call_id().ok().hash(&mut h);
    request.from().ok().and_then(|f| f.tag()).hash(&mut h);
    request.to_tag().ok().flatten().hash(&mut h);
    request.cseq().ok().map(|c| c.seq).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The branch for our `fork`-th copy of a request with `cookie`.
pub fn branch(cookie: &str, fork: usize) -> String {
    format!("z9hG4bKsl{cookie}.{fork}.{:08x}", rand::random::<u32>())
}

/// The branch for a request forwarded without a transaction (the ACK of a
/// 2xx, RFC 3261 §16.11): derived from the received top Via branch, so that a
/// retransmission goes out with the same branch and is seen as one.
pub fn stateless_branch(request: &Message, cookie: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
    format!("z9hG4bKsl{cookie}.0.{:08x}", h.finish() as u32)
}

/// Whether the request already went through us unchanged (a loop, §16.3
/// step 4): one of its Vias carries our `cookie`.
pub fn is_loop(request: &Message, cookie: &str) -> bool {
    let prefix = format!("z9hG4bKsl{cookie}.");
    request.via().is_ok_and(|vias| {
        vias.iter()
            .any(|v| v.branch().is_some_and(|b| b.starts_with(&prefix)))
    })
}

/// Puts our Via on top (§16.6 step 8): the transport and sent-by are
/// placeholders that the endpoint replaces with the listener actually used.
pub fn push_via(request: &mut Message, branch: &str) {
    request.prepend_header(
        HeaderName::Via,
        format!("SIP/2.0/UDP 0.0.0.0:0;branch={branch};rport"),
    );
}

/// Removes our Via from a response (§16.7 step 3).
pub fn pop_via(response: &mut Message) {
    response.remove_first_value(HeaderName::Via);
}

/// A Record-Route value for one face of the proxy:
/// `<sip:[USER@]HOST:PORT;transport=T;lr;sld=MAC>`. `user` carries a flow
/// token when requests for that face must go back over a connection; `mac`
/// (the `sld` parameter) binds the entry to its dialog, so that a request
/// that merely names the proxy in a Route is not forwarded (see
/// [`routed_by_us`]).
pub fn record_route_value(
    host: &str,
    port: u16,
    transport: &str,
    user: Option<&str>,
    mac: Option<&str>,
) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    let transport = transport.to_ascii_lowercase();
    let transport = if transport == "udp" {
        String::new()
    } else {
        format!(";transport={transport}")
    };
    let mac = mac.map(|m| format!(";sld={m}")).unwrap_or_default();
    format!("<sip:{user}{host}:{port}{transport};lr{mac}>")
}

/// Whether one of the Route entries we consumed carries `mac`: the request
/// follows a Record-Route we put into this dialog.
pub fn routed_by_us(consumed: &Consumed, mac: &str) -> bool {
    consumed.routes.iter().any(|u| {
        u.as_sip()
            .and_then(|s| s.param("sld"))
            .flatten()
            .is_some_and(|v| v == mac)
    })
}

/// Whether a method creates a dialog that we should record-route.
pub fn needs_record_route(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
    ) || method.as_str().eq_ignore_ascii_case("UPDATE")
}

/// Picks the response to send upstream when every branch has a final
/// response and none was 2xx (RFC 3261 §16.7 step 6): a 6xx if any; else the
/// lowest class, within it the first received; 503 becomes 500 (a proxy does
/// not pass 503 upstream); 401/407 challenges of every branch are gathered
/// into the chosen one (§16.7 step 7).
#[derive(Debug, Default)]
pub struct BestResponse {
    best: Option<Message>,
    challenges: Vec<(HeaderName, Bytes)>,
}

impl BestResponse {
    /// A new, empty choice.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers one branch's final response (not 2xx).
    pub fn offer(&mut self, response: Message) {
        let Some(status) = response.status() else {
            return;
        };
        if status == 401 || status == 407 {
            for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
                for v in response.header_values(name) {
                    self.challenges.push((name, Bytes::copy_from_slice(v)));
                }
            }
        }
        let better = match self.best.as_ref().and_then(Message::status) {
            None => true,
            Some(old) => rank(status) < rank(old),
        };
        if better {
            self.best = Some(response);
        }
    }

    /// Whether any response was offered.
    pub fn is_empty(&self) -> bool {
        self.best.is_none()
    }

    /// The response to send upstream (our Via already removed by the caller),
    /// or `None` when nothing was offered.
    pub fn take(self, request: &Message) -> Option<Message> {
        let best = self.best?;
        let status = best.status()?;
        if status == 503 {
            return request
                .response(500)
                .reason("Service Unavailable Downstream")
                .build()
                .ok();
        }
        if status == 401 || status == 407 {
            let mut m = best;
            m.remove_header(HeaderName::WwwAuthenticate);
            m.remove_header(HeaderName::ProxyAuthenticate);
            for (name, v) in self.challenges {
                m.append_header(name, v);
            }
            return Some(m);
        }
        Some(best)
    }
}

fn rank(status: u16) -> (u8, u8) {
    match status / 100 {
        6 => (0, 0),
        3 => (1, 0),
        // Within 4xx, a challenge is the most useful answer (the caller can
        // retry with credentials); 408 the least.
        4 if status == 401 || status == 407 => (2, 0),
        4 if status == 408 => (2, 2),
        4 => (2, 1),
        5 => (3, 0),
        _ => (4, 0),
    }
}

/// A locally made response to `request`.
pub fn local_response(request: &Message, status: u16, reason: &str) -> Option<Message> {
    let b: MessageBuilder = request.response(status);
    b.reason(reason).build().ok()
}
