//! Each request's fate, decided by pure code.
//!
//! [`dispatch`] looks at a request as received, where it came from and the
//! configuration's [`View`], and returns a [`Decision`]: what happens to the
//! request ([`Fate`]) and the loop-detection cookie its branches carry. It
//! edits nothing and asks nobody; the [`Engine`](super::Engine) acts on the
//! value.

use std::borrow::Cow;
use std::net::SocketAddr;

use siplink_message::headers::HeaderName;
use siplink_message::uri::Uri;
use siplink_message::{Message, Method, Transport};
use siplink_transport::{FlowId, Origin};

use crate::core::{self, Local};
use crate::routing::dialled_number;

/// What the engine needs to know of the configuration and of the driver's
/// state to decide a request's fate. The driver implements it over its typed
/// plan (or uses [`StaticView`]); every method answers at once, from memory.
pub trait View {
    /// Our host names, addresses and ports (Route and Request-URI matching).
    fn local(&self) -> &Local;
    /// Whether `host` is a domain our registrar serves.
    fn is_registrar_domain(&self, host: &str) -> bool;
    /// Whether `name` is one of our users.
    fn is_user(&self, name: &str) -> bool;
    /// The connection a request comes from when its source is a PBX (a
    /// trunk's address, an inbound-registration PBX's flow or address, the
    /// registrar of an outbound registration calling our registered
    /// Contact), or `None` for a phone.
    fn connection_of(&self, origin: &Origin, request_user: Option<&str>) -> Option<PbxSource>;
    /// Whether phones must authenticate (digest) what they send through us.
    fn authenticate_calls(&self) -> bool;
    /// The digest realm phones authenticate in: `Proxy-Authorization` values
    /// for it are ours and are removed before a request is forwarded (RFC
    /// 3261 §22.3); other realms' values go on.
    fn realm(&self) -> &str;
    /// The host and port we advertise in a Record-Route for `protocol`
    /// (`local`: the address a request arrived at, when known).
    fn face(&self, protocol: Transport, local: Option<SocketAddr>) -> (String, u16);
    /// The flow token written in a Record-Route user part for `flow`.
    fn flow_token(&self, flow: FlowId) -> String;
    /// The flow a token names, when it is one of ours and not forged.
    fn flow_from_token(&self, token: &str) -> Option<FlowId>;
    /// The `sld` parameter of our Record-Route entries for a Call-ID (a keyed
    /// hash, so that a Route merely naming us is not forwarded).
    fn dialog_mac(&self, call_id: &str) -> String;
    /// The digest credentials with which the proxy answers a 401/407 from
    /// connection `connection`'s PBX to a call of `user` (a trunk's, the
    /// outbound registration's account). `None` (the default): the PBX's
    /// challenge is not answered here; it goes up to the caller with the
    /// other branches' (RFC 3261 §16.7 step 7).
    fn credentials(
        &self,
        connection: &str,
        user: Option<&str>,
    ) -> Option<siplink_auth::ClientCredentials> {
        let _ = (connection, user);
        None
    }
    /// The From URI a call of `user` through connection `connection`
    /// presents to its PBX (an outbound registration's registered
    /// identity), or `None` to keep the caller's. The engine maps it back
    /// for the caller for the whole dialog.
    fn caller_identity(&self, connection: &str, user: Option<&str>) -> Option<String> {
        let _ = (connection, user);
        None
    }
    /// The media settings of a connection (`[[connections]] media`,
    /// `transcode`): whether the engine asks the media relay at the SDP
    /// exchanges of its calls. Off unless the view says otherwise.
    fn connection_media(&self, connection: &str) -> crate::media::ConnectionMedia {
        let _ = connection;
        crate::media::ConnectionMedia::default()
    }
}

/// A request's source when it is one of the connections' PBXs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxSource {
    /// The connection's name.
    pub connection: String,
    /// The user that gets requests whose target is not one of our users.
    pub deliver_to: Option<String>,
}

/// Who sent an initial request that goes somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A phone (one of our users, or someone claiming to be).
    Phone {
        /// Whether it must authenticate first.
        authenticate: bool,
    },
    /// The PBX of this connection.
    Pbx(String),
}

/// What happens to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// A REGISTER for one of our domains: the registrar's.
    Registrar,
    /// An OPTIONS addressed to the proxy itself: 200 with Allow and Supported.
    Options,
    /// Answered here with this status and reason (no forwarding).
    Answer(u16, &'static str),
    /// A CANCEL: matched against the calls in progress (200 and CANCEL
    /// fan-out, or 481).
    Cancel,
    /// An ACK that belongs to no dialog (the ACK of a non-2xx final response
    /// never reaches the engine: its server transaction absorbs it): dropped.
    Drop,
    /// A request inside a dialog (To tag): routed by the dialog record or by
    /// our Record-Route entries.
    InDialog,
    /// To one of our users' registered contacts.
    ToUser {
        /// The user.
        user: String,
        /// Who sent it.
        caller: Caller,
    },
    /// To a number, through the connections whose patterns match.
    ToNumber {
        /// The dialled number (normalised).
        number: String,
        /// Who sent it (always a phone).
        caller: Caller,
    },
}

/// [`dispatch`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What happens to the request.
    pub fate: Fate,
    /// The loop-detection cookie (RFC 3261 §16.6 step 8) its branches carry.
    pub cookie: String,
}

impl Decision {
    fn new(fate: Fate, cookie: String) -> Decision {
        Decision { fate, cookie }
    }
}

/// The Request-URI the request is really for: when the previous hop is a
/// strict router (the Request-URI is one of our Record-Route entries), the
/// last Route value (RFC 3261 §16.4).
pub fn effective_request_uri<'a>(request: &'a Message, local: &Local) -> Option<Cow<'a, Uri>> {
    let ruri = request.request_uri().ok()?;
    let strict = ruri
        .as_sip()
        .is_some_and(|u| u.lr() && local.is_local_uri(ruri));
    if strict && let Some(last) = request.route().ok().and_then(|r| r.last()) {
        return Some(Cow::Borrowed(&last.uri));
    }
    Some(Cow::Borrowed(ruri))
}

/// Decides what happens to `request` (as received) from `origin`.
///
/// The order: method-specific fates (REGISTER, CANCEL, stray ACK), then
/// Max-Forwards (483), in-dialog requests, loops (482), OPTIONS to the proxy,
/// requests from a connection's PBX (to the user they target, or the
/// connection's `deliver_to`), and a phone's request (to one of our users, or
/// to a number).
pub fn dispatch(request: &Message, origin: &Origin, view: &dyn View) -> Decision {
    let cookie = core::loop_cookie(request);
    let answer = |s, r| Decision::new(Fate::Answer(s, r), core::loop_cookie(request));
    let Some(method) = request.method() else {
        return answer(400, "Not A Request");
    };
    let local = view.local();
    let Some(ruri) = effective_request_uri(request, local) else {
        return answer(400, "Bad Request-URI");
    };
    let ruri_user = ruri.as_sip().and_then(|u| u.user()).map(str::to_owned);
    let to_us = local.is_local_uri(&ruri);
    match method {
        Method::Register => {
            let host = ruri.as_sip().map(|u| u.host().to_string());
            return if host.is_some_and(|h| view.is_registrar_domain(&h)) {
                Decision::new(Fate::Registrar, cookie)
            } else {
                answer(403, "Not A Domain Of This Registrar")
            };
        }
        Method::Cancel => return Decision::new(Fate::Cancel, cookie),
        _ => {}
    }
    let in_dialog = request.to_tag().ok().flatten().is_some();
    if *method == Method::Ack && !in_dialog {
        return Decision::new(Fate::Drop, cookie);
    }
    let no_route = request
        .route()
        .is_ok_and(|r| r.iter().all(|n| local.is_local_uri(&n.uri)));
    let pbx = view.connection_of(origin, ruri_user.as_deref());
    // An OPTIONS to the proxy itself: without a user part, or a PBX's
    // qualify ping to the Contact we registered with it. A phone's OPTIONS
    // to a number goes to the number like any other request.
    let options_to_us = *method == Method::Options
        && to_us
        && no_route
        && match ruri_user.as_deref() {
            None => true,
            Some(u) => pbx.is_some() && !view.is_user(u),
        };
    match request.max_forwards() {
        Ok(Some(0)) if options_to_us => return Decision::new(Fate::Options, cookie),
        Ok(Some(0)) => return answer(483, "Too Many Hops"),
        Ok(_) => {}
        Err(_) => return answer(400, "Bad Max-Forwards"),
    }
    if in_dialog {
        return Decision::new(Fate::InDialog, cookie);
    }
    if core::is_loop(request, &cookie) {
        return answer(482, "Loop Detected");
    }
    if options_to_us {
        return Decision::new(Fate::Options, cookie);
    }
    if let Some(pbx) = pbx {
        let to_user = request
            .to()
            .ok()
            .and_then(|t| t.uri.as_sip().and_then(|s| s.user()).map(str::to_owned));
        let target = ruri_user
            .filter(|u| view.is_user(u))
            .or_else(|| to_user.filter(|u| view.is_user(u)))
            .or(pbx.deliver_to);
        return match target {
            Some(user) => Decision::new(
                Fate::ToUser {
                    user,
                    caller: Caller::Pbx(pbx.connection),
                },
                cookie,
            ),
            None => answer(404, "Not Found"),
        };
    }
    let caller = Caller::Phone {
        authenticate: view.authenticate_calls(),
    };
    let ours = to_us
        || ruri
            .as_sip()
            .is_some_and(|s| local.is_local_host(&s.host().to_string()));
    if ours && let Some(user) = ruri_user.filter(|u| view.is_user(u)) {
        return Decision::new(Fate::ToUser { user, caller }, cookie);
    }
    match dialled_number(&ruri) {
        Some(number) if !number.is_empty() => Decision::new(
            Fate::ToNumber {
                number: number.into_owned(),
                caller,
            },
            cookie,
        ),
        Some(_) => answer(404, "Not Found"),
        None => answer(416, "Unsupported URI Scheme"),
    }
}

/// A [`View`] filled in once: fixed lists, a secret for flow tokens and
/// dialog MACs. Good for tests and for embedders whose PBX sources are static
/// addresses.
#[derive(Debug, Clone, Default)]
pub struct StaticView {
    /// Our hosts and ports.
    pub local: Local,
    /// The registrar's domains.
    pub domains: Vec<String>,
    /// Our users.
    pub users: Vec<String>,
    /// PBX source addresses (IP only, any port) and their connection.
    pub pbx_addresses: Vec<(std::net::IpAddr, PbxSource)>,
    /// Whether phones authenticate.
    pub authenticate: bool,
    /// The digest realm phones authenticate in.
    pub realm: String,
    /// The host and port advertised per protocol (the first entry when the
    /// protocol is missing; `127.0.0.1:5060` when empty).
    pub faces: Vec<(Transport, String, u16)>,
    /// The key of flow tokens and dialog MACs.
    pub secret: u64,
    /// Credentials answering each connection's PBX challenges, by
    /// connection name.
    pub credentials: Vec<(String, siplink_auth::ClientCredentials)>,
    /// The From URI calls through each connection present, by connection
    /// name (an outbound registration's identity).
    pub identities: Vec<(String, String)>,
    /// Connections whose media is not off, with their settings.
    pub media: Vec<(String, crate::media::ConnectionMedia)>,
}

impl StaticView {
    fn keyed(&self, data: impl std::hash::Hash) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.secret.hash(&mut h);
        data.hash(&mut h);
        h.finish() as u32
    }
}

impl View for StaticView {
    fn local(&self) -> &Local {
        &self.local
    }
    fn is_registrar_domain(&self, host: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }
    fn is_user(&self, name: &str) -> bool {
        self.users.iter().any(|u| u == name)
    }
    fn connection_of(&self, origin: &Origin, _user: Option<&str>) -> Option<PbxSource> {
        self.pbx_addresses
            .iter()
            .find(|(ip, _)| *ip == origin.peer.ip())
            .map(|(_, s)| s.clone())
    }
    fn authenticate_calls(&self) -> bool {
        self.authenticate
    }
    fn realm(&self) -> &str {
        &self.realm
    }
    fn face(&self, protocol: Transport, _local: Option<SocketAddr>) -> (String, u16) {
        self.faces
            .iter()
            .find(|f| f.0 == protocol)
            .or(self.faces.first())
            .map(|f| (f.1.clone(), f.2))
            .unwrap_or_else(|| ("127.0.0.1".to_owned(), 5060))
    }
    fn flow_token(&self, flow: FlowId) -> String {
        format!(
            "fl{:x}x{:08x}",
            flow.get(),
            self.keyed(("flow", flow.get()))
        )
    }
    fn flow_from_token(&self, token: &str) -> Option<FlowId> {
        let (id, mac) = token.strip_prefix("fl")?.split_once('x')?;
        let id = u64::from_str_radix(id, 16).ok()?;
        let mac = u32::from_str_radix(mac, 16).ok()?;
        (self.keyed(("flow", id)) == mac).then(|| FlowId::from_raw(id))
    }
    fn dialog_mac(&self, call_id: &str) -> String {
        format!("{:08x}", self.keyed(("sld", call_id)))
    }
    fn credentials(
        &self,
        connection: &str,
        _user: Option<&str>,
    ) -> Option<siplink_auth::ClientCredentials> {
        self.credentials
            .iter()
            .find(|(c, _)| c == connection)
            .map(|(_, c)| c.clone())
    }
    fn caller_identity(&self, connection: &str, _user: Option<&str>) -> Option<String> {
        self.identities
            .iter()
            .find(|(c, _)| c == connection)
            .map(|(_, uri)| uri.clone())
    }
    fn connection_media(&self, connection: &str) -> crate::media::ConnectionMedia {
        self.media
            .iter()
            .find(|(name, _)| name == connection)
            .map(|(_, m)| *m)
            .unwrap_or_default()
    }
}

/// The Session-Expires header (RFC 4028 §4): interval and refresher.
pub(crate) fn session_expires(message: &Message) -> Option<(u32, Option<Refresher>)> {
    let v = message.header(HeaderName::SessionExpires)?;
    let v = std::str::from_utf8(v).ok()?;
    let mut parts = v.split(';');
    let secs = parts.next()?.trim().parse().ok()?;
    let mut refresher = None;
    for p in parts {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        if name.trim().eq_ignore_ascii_case("refresher") {
            refresher = match value.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            };
        }
    }
    Some((secs, refresher))
}

/// Who refreshes a session (RFC 4028 `refresher` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The caller (the UAC of the initial INVITE).
    Uac,
    /// The callee.
    Uas,
}
