//! One call sent to a trunk: target failover, digest answers, response relay.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use siplink_auth::{AuthError, ChallengeKind, ClientCredentials, DigestClient, RequestInfo};
use siplink_message::uri::{Host, SipUri};
use siplink_message::{HeaderName, Message, Method, Uri};
use siplink_transaction::{build_cancel, new_branch};

use crate::config::{PaiPolicy, RuriHost, TargetAddr, TrunkConfig};
use crate::error::{Error, Result};

/// Most digest answers sent to one target within one call (a bound on top of
/// the digest client's own loop detection, which allows `stale=true` retries).
const MAX_AUTH_ROUNDS: u32 = 4;

/// What the driver feeds an [`OutboundCall`].
// Handed over once, never stored in bulk: no boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// A response received by the client INVITE transaction of one of our
    /// requests (matched by the transaction layer; our Via is still on top).
    Response(Message),
    /// The client transaction with this branch timed out (timer B).
    Timeout {
        /// The branch of the request's top Via.
        branch: String,
    },
    /// The transport failed to send the request with this branch (connection
    /// refused or reset, ICMP unreachable, TLS handshake failure...).
    TransportError {
        /// The branch of the request's top Via.
        branch: String,
    },
}

/// Why one attempt (one target) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptFailure {
    /// The client transaction timed out (timer B).
    Timeout,
    /// Nothing at all (not even `100 Trying`) arrived within
    /// [`FailoverPolicy::no_response_timeout`](crate::FailoverPolicy::no_response_timeout).
    NoResponse,
    /// The transport failed.
    TransportError,
    /// The target answered with this failover status (503, 408...).
    Status(u16),
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptFailure::Timeout => f.write_str("transaction timeout"),
            AttemptFailure::NoResponse => f.write_str("no response in time"),
            AttemptFailure::TransportError => f.write_str("transport error"),
            AttemptFailure::Status(s) => write!(f, "answered {s}"),
        }
    }
}

/// Why the trunk itself ended a call (as opposed to relaying the PBX's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// Every target is down and the trunk does not try down targets.
    NoTargetAvailable,
    /// Every target was tried and failed; the last failure is given.
    AllTargetsFailed {
        /// The last target's failure.
        last: AttemptFailure,
    },
    /// The trunk challenged and the trunk has no credentials.
    AuthRequired {
        /// The realm of the first challenge, if any.
        realm: Option<String>,
    },
    /// The trunk challenged again after our answer (wrong user or password),
    /// or the challenge could not be answered.
    AuthFailed(AuthError),
    /// The caller cancelled before any answer.
    Cancelled,
    /// Max-Forwards of the caller's INVITE was 0.
    TooManyHops,
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallFailure::NoTargetAvailable => f.write_str("no trunk target is up"),
            CallFailure::AllTargetsFailed { last } => {
                write!(f, "every trunk target failed (last: {last})")
            }
            CallFailure::AuthRequired { realm: Some(r) } => {
                write!(
                    f,
                    "the trunk asks for credentials for realm {r:?}; none configured"
                )
            }
            CallFailure::AuthRequired { realm: None } => {
                f.write_str("the trunk asks for credentials; none configured")
            }
            CallFailure::AuthFailed(e) => write!(f, "trunk authentication failed: {e}"),
            CallFailure::Cancelled => f.write_str("cancelled by the caller"),
            CallFailure::TooManyHops => f.write_str("Max-Forwards reached 0"),
        }
    }
}

/// What an [`OutboundCall`] asks the driver to do, in order.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Send this request in a new client transaction to `next_hop` (the
    /// target, or the outbound proxy). INVITE or CANCEL.
    Send {
        /// The request, with our Via (fresh branch) on top.
        request: Message,
        /// Where to send it.
        next_hop: TargetAddr,
        /// Index of the trunk target the request is for.
        target: usize,
    },
    /// Relay this provisional response (101-199) to the caller; already
    /// mapped back (our Via removed, caller's CSeq and From restored).
    Relay(Message),
    /// The final response for the caller, mapped back; given exactly once.
    Final(Message),
    /// A further 2xx (another target answered too, or a retransmission
    /// outside the transaction): forward it upstream like any 2xx (RFC 3261
    /// §16.7, RFC 6026); the caller ACKs it and hangs up the extra dialog.
    Additional2xx(Message),
    /// A target failed; the call moves on to the next one (or ends).
    /// Useful for passive health accounting and logs.
    TargetFailed {
        /// Index of the target.
        target: usize,
        /// What happened.
        reason: AttemptFailure,
    },
    /// The trunk ended the call itself; the [`Output::Final`] that follows
    /// is a locally built response.
    Failed(CallFailure),
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Created, [`OutboundCall::start`] not called yet.
    Idle,
    /// An INVITE is out; no provisional (101-199) yet.
    Trying,
    /// A provisional response was relayed.
    Proceeding,
    /// A 2xx was given as the final response.
    Answered,
    /// A non-2xx final response was given.
    Ended,
}

#[derive(Debug)]
struct Attempt {
    target: usize,
    next_hop: TargetAddr,
    request: Message,
    branch: String,
    /// Any response (100 included): the target is alive.
    responded: bool,
    /// A 101-199: no more failover for this call.
    provisional: bool,
    no_response_deadline: Option<Instant>,
    cancel_sent: bool,
}

/// The mapping between the caller's view of a dialog and the trunk's, for
/// requests and responses after the INVITE (ACK, BYE, re-INVITE, UPDATE...).
///
/// The trunk may have raised the CSeq (each digest answer is a new request,
/// RFC 3261 §22.1) and replaced the From URI; the caller knows neither. The
/// From tag is never changed, so dialog matching by tags holds on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogMap {
    /// Added to the CSeq of the caller's requests to the trunk.
    pub cseq_offset: u32,
    /// The caller's From value as received.
    pub caller_from: Bytes,
    /// The From value sent to the trunk, when the caller-ID policy replaced it.
    pub trunk_from: Option<Bytes>,
    /// Authorization / Proxy-Authorization lines of the answered INVITE (RFC
    /// 3261 §22.1: an ACK for a 2xx carries the INVITE's credentials).
    pub credentials: Vec<(HeaderName, Bytes)>,
    /// The trunk's name and credentials, for challenges inside the dialog.
    auth: Option<(String, ClientCredentials)>,
}

fn set_cseq(msg: &mut Message, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    let cseq = msg.cseq()?.clone();
    let n = (i64::from(cseq.seq) + delta).clamp(0, i64::from(u32::MAX)) as u32;
    msg.set_header(HeaderName::CSeq, format!("{n} {}", cseq.method));
    Ok(())
}

impl DialogMap {
    /// A map with nothing to translate, only the trunk's credentials: for
    /// answering a challenge to a request outside any call (an OPTIONS).
    #[cfg(feature = "tokio")]
    pub(crate) fn for_auth(name: String, credentials: ClientCredentials) -> DialogMap {
        DialogMap {
            cseq_offset: 0,
            caller_from: Bytes::new(),
            trunk_from: None,
            credentials: Vec::new(),
            auth: Some((name, credentials)),
        }
    }

    /// A request from the caller inside the dialog, made ready for the trunk:
    /// CSeq raised by the offset, From replaced; an ACK also gets the
    /// INVITE's credentials.
    /// The caller's own `Authorization`/`Proxy-Authorization` lines are
    /// removed: they are for us, never for the PBX.
    pub fn to_trunk(&self, mut request: Message) -> Result<Message> {
        request.remove_header(HeaderName::Authorization);
        request.remove_header(HeaderName::ProxyAuthorization);
        set_cseq(&mut request, i64::from(self.cseq_offset))?;
        if let Some(f) = &self.trunk_from {
            request.set_header(HeaderName::From, f.clone());
        }
        if request.method() == Some(&Method::Ack) {
            for (name, value) in &self.credentials {
                request.append_header(*name, value.clone());
            }
        }
        Ok(request)
    }

    /// Answers a `401`/`407` from the trunk to `sent`, a request of the
    /// dialog as it went to the trunk (after [`to_trunk`](Self::to_trunk)
    /// and with our Via on top). Returns the request to send instead, in a
    /// new client transaction: a new branch, CSeq + 1 (RFC 3261 §22.1), and
    /// the digest credentials. Every later request of the caller moves up by
    /// one too ([`cseq_offset`](Self::cseq_offset) grows), so the trunk sees
    /// CSeq increase.
    ///
    /// Once per challenge: a request that already carried our credentials is
    /// not answered again (`Err(Error::Auth(CredentialsRejected))`), and
    /// neither is an ACK or a CANCEL (they cannot be challenged, §22.1).
    /// Relay the challenge's final response to the caller as `403` then.
    pub fn answer_challenge(&mut self, sent: &Message, challenge: &Message) -> Result<Message> {
        let (www, proxy) = (
            challenge.www_authenticate()?,
            challenge.proxy_authenticate()?,
        );
        let realm = www
            .iter()
            .chain(proxy)
            .find_map(|c| c.realm())
            .unwrap_or("")
            .to_owned();
        let Some((name, creds)) = &self.auth else {
            return Err(Error::NoCredentials);
        };
        let answered_before = sent.count(HeaderName::Authorization) > 0
            || sent.count(HeaderName::ProxyAuthorization) > 0;
        if answered_before || matches!(sent.method(), Some(Method::Ack | Method::Cancel)) {
            return Err(AuthError::CredentialsRejected { realm }.into());
        }
        let method = sent.method().ok_or(Error::Config("not a request"))?;
        let uri =
            String::from_utf8_lossy(sent.request_uri_bytes().map_or(&[][..], |b| b)).into_owned();
        let info = RequestInfo::new(method.as_str(), &uri).with_body(sent.body());
        let mut client = DigestClient::new(name.clone(), creds.clone());
        let headers = client.answer(name, www, proxy, &info)?;
        let mut req = sent.clone();
        set_cseq(&mut req, 1)?;
        let mut via = req.top_via()?.clone();
        via.params.set("branch", Some(&new_branch()));
        req.replace_first_value(HeaderName::Via, via.to_string());
        for h in headers {
            req.append_header(auth_header_name(h.kind), h.credentials.to_string());
        }
        self.cseq_offset = self.cseq_offset.wrapping_add(1);
        Ok(req.reparse()?)
    }

    /// A response from the trunk to such a request, made ready for the
    /// caller (CSeq lowered back, caller's From restored). Our own Via is the
    /// driver's business, as for any forwarded request.
    pub fn response_to_caller(&self, mut response: Message) -> Result<Message> {
        set_cseq(&mut response, -i64::from(self.cseq_offset))?;
        if self.trunk_from.is_some() {
            response.set_header(HeaderName::From, self.caller_from.clone());
        }
        Ok(response)
    }

    /// A request from the PBX inside the dialog (a BYE, a re-INVITE), made
    /// ready for the caller: its To (our From) becomes the caller's From again.
    /// Its CSeq is the PBX's own and is not changed.
    pub fn from_trunk(&self, mut request: Message) -> Message {
        if self.trunk_from.is_some() {
            request.set_header(HeaderName::To, self.caller_from.clone());
        }
        request
    }

    /// The caller's response to such a request, made ready for the PBX.
    pub fn response_to_trunk(&self, mut response: Message) -> Message {
        if let Some(f) = &self.trunk_from {
            response.set_header(HeaderName::To, f.clone());
        }
        response
    }
}

/// One call sent to a trunk (sans-IO).
///
/// Created per caller INVITE with the order of targets to try (see
/// [`target_order`](crate::target_order) or
/// [`HealthMonitor::call_order`](crate::HealthMonitor::call_order)), then
/// [`start`](Self::start)ed; then, in the core vocabulary of the workspace,
/// fed [`Input`]s with [`handle_input`](Self::handle_input) and the caller's
/// CANCEL with [`handle_cancel`](Self::handle_cancel); the no-response timer
/// is [`poll_timeout`](Self::poll_timeout) / [`handle_timeout`](Self::handle_timeout).
/// Time only moves through the `now` arguments. What to do comes out of
/// [`poll_output`](Self::poll_output), one [`Output`] at a time, in order. A
/// step that fails returns its error at once and queues nothing.
///
/// * Each INVITE goes out with our Via (`sent_by`, a fresh branch, `rport`),
///   Max-Forwards decremented, the Request-URI host and the From/PAI set by
///   policy, the caller's own `Authorization`/`Proxy-Authorization` removed
///   (they are for us, never for the PBX), and a Route to the outbound proxy
///   if one is configured.
/// * `401`/`407` from the target is answered once per challenge with the
///   trunk's credentials: same Call-ID, CSeq + 1, new branch, same target. A
///   challenge after our answer ends the call with `403`
///   ([`CallFailure::AuthFailed`]); no credentials: `403` with
///   [`CallFailure::AuthRequired`].
/// * A timeout, a transport error, no response within
///   [`FailoverPolicy::no_response_timeout`](crate::FailoverPolicy::no_response_timeout),
///   or a status of [`FailoverPolicy::statuses`](crate::FailoverPolicy::statuses)
///   received before any provisional (101-199) response sends the INVITE to
///   the next target (new branch, same Call-ID and CSeq, RFC 3261 §16.6).
///   Other final responses (486, 404, 6xx...) are relayed.
/// * When every target failed: `408` after timeouts, `500` after 503s or
///   transport errors (RFC 3261 §16.7 step 6: a proxy does not pass 503
///   upstream), otherwise the last target's own response.
#[derive(Debug)]
pub struct OutboundCall {
    config: Arc<TrunkConfig>,
    sent_by: String,
    order: Vec<usize>,
    pos: usize,
    state: CallState,
    original: Option<Message>,
    /// The caller's INVITE with the per-call edits (no Via of ours, no RURI yet).
    base: Option<Message>,
    caller_cseq: u32,
    cseq: u32,
    caller_from: Bytes,
    trunk_from: Option<Bytes>,
    current: Option<Attempt>,
    /// Attempts given up without a final response: a late 1xx is cancelled,
    /// a late 2xx still answers the call.
    abandoned: Vec<Attempt>,
    auth: Option<(usize, DigestClient, u32)>,
    cancelled: bool,
    dialog: Option<DialogMap>,
    /// Outputs not yet taken by `poll_output`.
    queue: VecDeque<Output>,
}

impl OutboundCall {
    /// A call over `config` that tries the targets in `order` (indexes into
    /// `config.targets`; unknown indexes are dropped). `sent_by` is our Via
    /// sent-by (`host[:port]`) for the transport in use.
    pub fn new(config: Arc<TrunkConfig>, sent_by: impl Into<String>, order: Vec<usize>) -> Self {
        let n = config.targets.len();
        OutboundCall {
            config,
            sent_by: sent_by.into(),
            order: order.into_iter().filter(|&i| i < n).collect(),
            pos: 0,
            state: CallState::Idle,
            original: None,
            base: None,
            caller_cseq: 0,
            cseq: 0,
            caller_from: Bytes::new(),
            trunk_from: None,
            current: None,
            abandoned: Vec::new(),
            auth: None,
            cancelled: false,
            dialog: None,
            queue: VecDeque::new(),
        }
    }

    /// The state.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// Whether the final response has been given.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, CallState::Answered | CallState::Ended)
    }

    /// The target the current INVITE is for.
    pub fn current_target(&self) -> Option<usize> {
        self.current.as_ref().map(|a| a.target)
    }

    /// The mapping for the rest of the dialog, once a 2xx answered the call.
    pub fn dialog(&self) -> Option<&DialogMap> {
        self.dialog.as_ref()
    }

    /// The next output, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next (the
    /// no-response timer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        self.current.as_ref().and_then(|a| a.no_response_deadline)
    }

    /// Starts the call with the caller's INVITE as received (the proxy has
    /// already removed a Route naming itself, RFC 3261 §16.4).
    ///
    /// An error (a malformed INVITE, a From the caller-ID policy cannot
    /// rewrite, a configuration that fails [`TrunkConfig::validate`]) leaves
    /// the call unusable: answer the caller yourself (400 or 500).
    pub fn start(&mut self, invite: Message, now: Instant) -> Result<()> {
        let out = self.start_outputs(invite, now)?;
        self.queue.extend(out);
        Ok(())
    }

    fn start_outputs(&mut self, invite: Message, now: Instant) -> Result<Vec<Output>> {
        if invite.method() != Some(&Method::Invite) {
            return Err(Error::NotAnInvite);
        }
        if self.state != CallState::Idle {
            return Err(Error::Config("start called twice"));
        }
        self.caller_cseq = invite.cseq()?.seq;
        self.cseq = self.caller_cseq;
        self.caller_from = invite
            .header(HeaderName::From)
            .map(|v| siplink_message::unfold(Bytes::copy_from_slice(v)))
            .ok_or(siplink_message::Error::MissingHeader("From"))?;
        invite.call_id()?;
        let mut base = invite.clone();
        self.original = Some(invite);
        self.state = CallState::Trying;
        let mut out = Vec::new();

        let max_forwards = base.max_forwards()?;
        if max_forwards == Some(0) {
            self.fail_locally(CallFailure::TooManyHops, 483, "Too Many Hops", &mut out)?;
            return Ok(out);
        }
        base.set_header(
            HeaderName::MaxForwards,
            max_forwards.map_or(70, |m| m - 1).to_string(),
        );
        base.remove_header(HeaderName::Authorization);
        base.remove_header(HeaderName::ProxyAuthorization);
        self.apply_caller_id(&mut base)?;
        if let Some(proxy) = &self.config.outbound_proxy {
            let mut b = SipUri::builder(host_of(&proxy.host)?).port(proxy.port).lr();
            if let Some(t) = proxy.transport.uri_param() {
                b = b.transport(t);
            }
            base.prepend_header(HeaderName::Route, format!("<{}>", b.build()?));
        }
        self.base = Some(base);

        if self.order.is_empty() {
            self.fail_locally(
                CallFailure::NoTargetAvailable,
                503,
                "Service Unavailable (no trunk target up)",
                &mut out,
            )?;
            return Ok(out);
        }
        self.send_attempt(self.order[0], &[], now, &mut out)?;
        Ok(out)
    }

    /// Feeds one input; an error (a response that cannot be mapped, a request
    /// that cannot be built) is returned here and queues nothing.
    pub fn handle_input(&mut self, input: Input, now: Instant) -> Result<()> {
        let out = self.input_outputs(input, now)?;
        self.queue.extend(out);
        Ok(())
    }

    fn input_outputs(&mut self, input: Input, now: Instant) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        match input {
            Input::Response(resp) => self.on_response(resp, now, &mut out)?,
            Input::Timeout { branch } => {
                if self.is_current(&branch) {
                    self.attempt_failed(AttemptFailure::Timeout, None, now, &mut out)?;
                } else {
                    self.abandoned.retain(|a| a.branch != branch);
                }
            }
            Input::TransportError { branch } => {
                if self.is_current(&branch) {
                    self.attempt_failed(AttemptFailure::TransportError, None, now, &mut out)?;
                } else {
                    self.abandoned.retain(|a| a.branch != branch);
                }
            }
        }
        Ok(out)
    }

    /// Fires the no-response timer when due.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        let mut out = Vec::new();
        if let Some(a) = &self.current
            && let Some(d) = a.no_response_deadline
            && d <= now
            && !a.responded
        {
            self.attempt_failed(AttemptFailure::NoResponse, None, now, &mut out)?;
        }
        self.queue.extend(out);
        Ok(())
    }

    /// The caller cancelled (the driver answered its CANCEL with 200). No
    /// further target is tried. The CANCEL goes out now if the current target
    /// has sent a provisional response, otherwise as soon as one arrives
    /// (RFC 3261 §9.1); a target that never answers ends the call with 487.
    pub fn handle_cancel(&mut self, _now: Instant) -> Result<()> {
        if self.is_finished() || self.cancelled {
            return Ok(());
        }
        self.cancelled = true;
        if let Some(a) = self.current.as_mut()
            && a.responded
        {
            let c = cancel_for(a)?;
            self.queue.push_back(c);
        }
        Ok(())
    }

    fn is_current(&self, branch: &str) -> bool {
        self.current.as_ref().is_some_and(|a| a.branch == branch)
    }

    fn apply_caller_id(&mut self, base: &mut Message) -> Result<()> {
        let policy = &self.config.caller_id;
        let from = base.from()?.clone();
        if policy.rewrites_from() {
            let uri = if policy.from_user.is_some() || policy.from_host.is_some() {
                let Some(sip) = from.uri.as_sip() else {
                    return Err(Error::FromNotSip {
                        scheme: from.uri.scheme().to_owned(),
                    });
                };
                let mut b = sip.to_builder();
                if let Some(u) = &policy.from_user {
                    b = b.user(u);
                }
                if let Some(h) = &policy.from_host {
                    b = b.host(host_of(h)?).port(None);
                }
                Uri::Sip(b.build()?)
            } else {
                from.uri.clone()
            };
            let display = match &policy.from_display {
                Some(d) if d.is_empty() => None,
                Some(d) => Some(d.as_str()),
                None => from.display_name.as_deref(),
            };
            let value = name_addr(display, &uri, &from.params.to_string());
            self.trunk_from = Some(Bytes::from(value.clone()));
            base.set_header(HeaderName::From, value);
        }
        match &policy.pai {
            PaiPolicy::Keep => {}
            PaiPolicy::Remove => {
                base.remove_header(HeaderName::PAssertedIdentity);
            }
            PaiPolicy::CallerFrom => {
                let mut params = from.params.clone();
                params.remove("tag");
                let value = name_addr(from.display_name.as_deref(), &from.uri, &params.to_string());
                base.set_header(HeaderName::PAssertedIdentity, value);
            }
            PaiPolicy::Set(v) => {
                check_name_addr(v)?;
                base.set_header(HeaderName::PAssertedIdentity, v.clone());
            }
        }
        Ok(())
    }

    /// Builds and sends the INVITE for `target` (a new transaction).
    fn send_attempt(
        &mut self,
        target: usize,
        credentials: &[(HeaderName, Bytes)],
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let cfg = &self.config;
        let t = &cfg.targets[target];
        let base = self.base.as_ref().expect("started");
        let mut req = base.clone();
        let ruri = request_uri(base.request_uri()?, &cfg.request_uri_host, &t.addr)?;
        req.set_request_uri(ruri);
        if self.cseq != self.caller_cseq {
            req.set_header(HeaderName::CSeq, format!("{} INVITE", self.cseq));
        }
        let next_hop = cfg.outbound_proxy.clone().unwrap_or_else(|| t.addr.clone());
        let branch = new_branch();
        req.prepend_header(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                next_hop.transport.via_token(),
                self.sent_by
            ),
        );
        for (name, value) in credentials {
            req.append_header(*name, value.clone());
        }
        let request = req.reparse()?;
        let deadline = cfg.failover.no_response_timeout.map(|d| now + d);
        out.push(Output::Send {
            request: request.clone(),
            next_hop: next_hop.clone(),
            target,
        });
        self.current = Some(Attempt {
            target,
            next_hop,
            request,
            branch,
            responded: false,
            provisional: false,
            no_response_deadline: deadline,
            cancel_sent: false,
        });
        Ok(())
    }

    fn on_response(&mut self, resp: Message, now: Instant, out: &mut Vec<Output>) -> Result<()> {
        let Some(status) = resp.status() else {
            return Ok(());
        };
        if resp.cseq()?.method != Method::Invite {
            return Ok(());
        }
        let branch = resp.top_via()?.branch().unwrap_or("").to_owned();
        if !self.is_current(&branch) {
            return self.on_abandoned_response(&branch, resp, status, out);
        }
        if self.is_finished() && !(200..300).contains(&status) {
            // The call was answered by another target; this one was cancelled.
            if status >= 200 {
                self.current = None;
            }
            return Ok(());
        }
        let a = self.current.as_mut().expect("current");
        a.responded = true;
        a.no_response_deadline = None;
        match status {
            100 => {
                if self.cancelled && !a.cancel_sent {
                    out.push(cancel_for(a)?);
                }
            }
            101..=199 => {
                a.provisional = true;
                if self.cancelled && !a.cancel_sent {
                    out.push(cancel_for(a)?);
                }
                if !self.is_finished() {
                    self.state = CallState::Proceeding;
                    out.push(Output::Relay(self.map_back(resp)?));
                }
            }
            200..=299 => self.answered(resp, out)?,
            401 | 407 if self.cancelled => {
                self.fail_locally(CallFailure::Cancelled, 487, "Request Terminated", out)?
            }
            401 | 407 => self.on_challenge(resp, now, out)?,
            _ => {
                let failover = self.config.failover.statuses.contains(&status)
                    && !a.provisional
                    && !self.cancelled;
                if failover {
                    self.attempt_failed(AttemptFailure::Status(status), Some(resp), now, out)?;
                } else {
                    self.current = None;
                    self.finish(resp, out)?;
                }
            }
        }
        Ok(())
    }

    fn on_abandoned_response(
        &mut self,
        branch: &str,
        resp: Message,
        status: u16,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let Some(k) = self.abandoned.iter().position(|a| a.branch == branch) else {
            // An earlier transaction of this call (e.g. a challenged one) or a
            // stray: a 2xx still belongs upstream.
            if (200..300).contains(&status) && self.is_finished() {
                out.push(Output::Additional2xx(self.map_back(resp)?));
            }
            return Ok(());
        };
        let a = &mut self.abandoned[k];
        a.responded = true;
        a.no_response_deadline = None;
        match status {
            100..=199 => {
                let a = &mut self.abandoned[k];
                if !a.cancel_sent {
                    out.push(cancel_for(a)?);
                }
            }
            200..=299 => {
                let winner = self.abandoned.remove(k);
                if !self.is_finished() {
                    // The winner becomes the current attempt (its credentials
                    // go in the dialog map); `answered` retires the loser.
                    if let Some(loser) = self.current.replace(winner) {
                        self.abandoned.push(loser);
                    }
                }
                self.answered(resp, out)?;
            }
            _ => {
                self.abandoned.remove(k);
            }
        }
        Ok(())
    }

    fn answered(&mut self, resp: Message, out: &mut Vec<Output>) -> Result<()> {
        if self.is_finished() {
            out.push(Output::Additional2xx(self.map_back(resp)?));
            return Ok(());
        }
        // Every other attempt still open lost: cancelled now if it has sent a
        // response, or when its first 1xx comes (`on_abandoned_response`).
        let branch = resp.top_via()?.branch().unwrap_or("").to_owned();
        for a in &mut self.abandoned {
            if a.branch != branch && a.responded && !a.cancel_sent {
                out.push(cancel_for(a)?);
            }
        }
        let credentials = self
            .current
            .as_ref()
            .filter(|a| a.branch == branch)
            .map(|a| {
                a.request
                    .headers()
                    .filter(|h| {
                        matches!(
                            h.name(),
                            HeaderName::Authorization | HeaderName::ProxyAuthorization
                        )
                    })
                    .map(|h| (h.name(), Bytes::copy_from_slice(h.value())))
                    .collect()
            })
            .unwrap_or_default();
        self.dialog = Some(DialogMap {
            cseq_offset: self.cseq.wrapping_sub(self.caller_cseq),
            caller_from: self.caller_from.clone(),
            trunk_from: self.trunk_from.clone(),
            credentials,
            auth: self
                .config
                .credentials
                .clone()
                .map(|c| (self.config.name.clone(), c)),
        });
        let mapped = self.map_back(resp)?;
        self.state = CallState::Answered;
        out.push(Output::Final(mapped));
        Ok(())
    }

    fn on_challenge(&mut self, resp: Message, now: Instant, out: &mut Vec<Output>) -> Result<()> {
        let a = self.current.take().expect("current");
        let Some(creds) = self.config.credentials.clone() else {
            let realm = resp
                .www_authenticate()
                .ok()
                .and_then(|c| c.first())
                .or_else(|| resp.proxy_authenticate().ok().and_then(|c| c.first()))
                .and_then(|c| c.realm())
                .map(str::to_owned);
            return self.fail_locally(
                CallFailure::AuthRequired { realm },
                403,
                "Forbidden (trunk requires authentication)",
                out,
            );
        };
        if self.auth.as_ref().is_none_or(|(t, _, _)| *t != a.target) {
            self.auth = Some((
                a.target,
                DigestClient::new(self.config.name.clone(), creds),
                0,
            ));
        }
        let (www, proxy) = (resp.www_authenticate()?, resp.proxy_authenticate()?);
        let uri = String::from_utf8_lossy(a.request.request_uri_bytes().map_or(&[][..], |b| b))
            .into_owned();
        let info = RequestInfo::new("INVITE", &uri).with_body(a.request.body());
        let (_, client, rounds) = self.auth.as_mut().expect("set above");
        *rounds += 1;
        let answer = if *rounds > MAX_AUTH_ROUNDS {
            Err(AuthError::CredentialsRejected {
                realm: www
                    .iter()
                    .chain(proxy)
                    .find_map(|c| c.realm())
                    .unwrap_or("")
                    .to_owned(),
            })
        } else {
            client.answer(&self.config.name, www, proxy, &info)
        };
        match answer {
            Ok(headers) => {
                let creds: Vec<(HeaderName, Bytes)> = headers
                    .iter()
                    .map(|h| {
                        (
                            auth_header_name(h.kind),
                            Bytes::from(h.credentials.to_string()),
                        )
                    })
                    .collect();
                // A new request (RFC 3261 §22.1): next CSeq, same Call-ID.
                self.cseq = self.cseq.wrapping_add(1);
                self.send_attempt(a.target, &creds, now, out)
            }
            Err(e) => self.fail_locally(
                CallFailure::AuthFailed(e),
                403,
                "Forbidden (trunk authentication failed)",
                out,
            ),
        }
    }

    /// The current attempt failed: next target, or the end of the call.
    fn attempt_failed(
        &mut self,
        reason: AttemptFailure,
        response: Option<Message>,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let Some(a) = self.current.take() else {
            return Ok(());
        };
        let target = a.target;
        // Only a target that may still answer needs watching.
        if reason == AttemptFailure::NoResponse {
            self.abandoned.push(Attempt {
                no_response_deadline: None,
                ..a
            });
        }
        if self.is_finished() {
            return Ok(());
        }
        out.push(Output::TargetFailed { target, reason });
        let policy = &self.config.failover;
        let allowed = match reason {
            AttemptFailure::Timeout => policy.on_timeout,
            AttemptFailure::TransportError => policy.on_transport_error,
            AttemptFailure::NoResponse | AttemptFailure::Status(_) => true,
        };
        if self.cancelled {
            return self.fail_locally(CallFailure::Cancelled, 487, "Request Terminated", out);
        }
        if allowed && self.pos + 1 < self.order.len() {
            self.pos += 1;
            return self.send_attempt(self.order[self.pos], &[], now, out);
        }
        match (reason, response) {
            (AttemptFailure::Status(s), Some(resp)) if s != 503 => self.finish(resp, out),
            (AttemptFailure::Timeout | AttemptFailure::NoResponse, _) => self.fail_locally(
                CallFailure::AllTargetsFailed { last: reason },
                408,
                "Request Timeout (no trunk target answered)",
                out,
            ),
            _ => self.fail_locally(
                CallFailure::AllTargetsFailed { last: reason },
                500,
                "Server Internal Error (no trunk target available)",
                out,
            ),
        }
    }

    /// Relays the target's final non-2xx response.
    fn finish(&mut self, resp: Message, out: &mut Vec<Output>) -> Result<()> {
        if self.is_finished() {
            return Ok(());
        }
        let mapped = self.map_back(resp)?;
        self.state = CallState::Ended;
        out.push(Output::Final(mapped));
        Ok(())
    }

    fn fail_locally(
        &mut self,
        failure: CallFailure,
        status: u16,
        reason: &str,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        if self.is_finished() {
            return Ok(());
        }
        self.current = None;
        let original = self.original.as_ref().expect("started");
        let resp = original.response(status).reason(reason).build()?;
        self.state = CallState::Ended;
        out.push(Output::Failed(failure));
        out.push(Output::Final(resp));
        Ok(())
    }

    /// A response from the trunk, made ready for the caller: our Via off,
    /// the caller's CSeq and From back.
    fn map_back(&self, mut resp: Message) -> Result<Message> {
        resp.remove_first_value(HeaderName::Via);
        let method = resp.cseq()?.method.clone();
        resp.set_header(HeaderName::CSeq, format!("{} {method}", self.caller_cseq));
        if self.trunk_from.is_some() {
            resp.set_header(HeaderName::From, self.caller_from.clone());
        }
        Ok(resp.reparse()?)
    }
}

/// The CANCEL for an attempt (RFC 3261 §9.1), with the INVITE's credentials.
fn cancel_for(a: &mut Attempt) -> Result<Output> {
    let mut cancel = build_cancel(&a.request).map_err(|e| match e {
        siplink_transaction::Error::Message(m) => Error::Message(m),
        _ => Error::NotAnInvite,
    })?;
    for h in a.request.headers() {
        if matches!(
            h.name(),
            HeaderName::Authorization | HeaderName::ProxyAuthorization
        ) {
            cancel.append_header(h.name(), Bytes::copy_from_slice(h.value()));
        }
    }
    a.cancel_sent = true;
    Ok(Output::Send {
        request: cancel.reparse()?,
        next_hop: a.next_hop.clone(),
        target: a.target,
    })
}

fn auth_header_name(kind: ChallengeKind) -> HeaderName {
    match kind {
        ChallengeKind::Www => HeaderName::Authorization,
        ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
    }
}

fn host_of(h: &str) -> Result<Host> {
    Ok(Host::parse(h)?)
}

/// `"display" <uri>params` with the display name quoted and escaped.
fn name_addr(display: Option<&str>, uri: &Uri, params: &str) -> String {
    let mut s = String::new();
    if let Some(d) = display {
        s.push('"');
        for c in d.chars().filter(|c| !c.is_control()) {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push_str("\" ");
    }
    s.push('<');
    s.push_str(uri.as_str());
    s.push('>');
    s.push_str(params);
    s
}

/// The Request-URI for `target` under `policy`.
fn request_uri(uri: &Uri, policy: &RuriHost, target: &TargetAddr) -> Result<String> {
    let (host, port, transport) = match policy {
        RuriHost::Keep => return Ok(uri.as_str().to_owned()),
        RuriHost::Target => (
            host_of(&target.host)?,
            Some(target.port),
            target.transport.uri_param(),
        ),
        RuriHost::Domain(d) => (host_of(d)?, None, None),
    };
    let b = match uri {
        Uri::Sip(s) => s.to_builder().host(host).port(port),
        Uri::Tel(t) => SipUri::builder(host)
            .user(t.number())
            .port(port)
            .user_param("phone"),
        Uri::Absolute(_) => return Ok(uri.as_str().to_owned()),
    };
    let b = match (policy, transport) {
        (RuriHost::Target, Some(t)) => b.transport(t),
        (RuriHost::Target, None) => b.remove_param("transport"),
        _ => b,
    };
    Ok(b.build()?.to_string())
}

/// Checks that a configured P-Asserted-Identity value is one name-addr.
fn check_name_addr(v: &str) -> Result<()> {
    if v.contains(['\r', '\n']) {
        return Err(Error::Config(
            "P-Asserted-Identity value holds a line break",
        ));
    }
    let probe = format!("OPTIONS sip:x SIP/2.0\r\nTo: {v}\r\nContent-Length: 0\r\n\r\n");
    Message::parse(probe.into_bytes())?.to()?;
    Ok(())
}
