//! The sans-IO REGISTER processor (RFC 3261 §10.3, RFC 3327, RFC 5626 §6).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use siplink_auth::{Counted, FailureLine, Outcome, RequestInfo};
use siplink_message::headers::{Contacts, NameAddr};
use siplink_message::{HeaderName, Message, MessageBuilder, Method, Role, ValidationOptions};

use crate::auth::Authenticator;
use crate::binding::{
    Aor, Binding, BindingEvent, BindingId, Change, FlowId, RemoveReason, Transport, Usage,
    order_bindings, secs,
};
use crate::config::{RegistrarConfig, TooManyContacts};
use crate::store::LocationStore;
use crate::table::BindingTable;
use crate::{Error, config::FloodConfig};

/// How many times [`Registrar::handle_register_with`] recomputes a decision
/// after [`Error::Conflict`].
pub const MAX_ATTEMPTS: usize = 4;

/// Where and when a REGISTER arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    /// The source address (after NAT: what the packet came from).
    pub source: SocketAddr,
    /// The transport it arrived on.
    pub transport: Transport,
    /// The flow (connection) it arrived on, if the transport names one.
    pub flow: Option<FlowId>,
    /// Monotonic time (expiry, ordering, flood windows).
    pub now: Instant,
    /// Wall-clock time at the same moment (digest nonces, the failed-attempt
    /// limiter, [`Binding::registered_at`], [`Binding::expires_at_wall`]): what
    /// a binding needs to outlive the process. A driver reads both from one
    /// clock (`siplink_transport::Clock`), so paused-time tests move both.
    pub now_system: SystemTime,
}

/// The registrar's answer to one REGISTER: the response to send and the
/// binding changes it made.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The response to send (a built message: 200, 400, 401, 403, 404, 420,
    /// 423, 439, 500 or 503).
    pub response: Message,
    /// The changes, as one batch (empty unless the response is a 200).
    pub changes: Vec<Change>,
    /// What the store reported after applying them (empty from
    /// [`Registrar::decide`], which applies nothing).
    pub events: Vec<BindingEvent>,
}

impl Decision {
    /// The response's status code.
    pub fn status(&self) -> u16 {
        self.response.status().unwrap_or(500)
    }
}

/// The outcome of the first phase, [`Registrar::check`].
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// The REGISTER is answered without looking at any binding.
    Respond(Decision),
    /// Fetch the bindings of [`Prepared::aor`] and the store's usage, then
    /// call [`Registrar::decide`].
    Proceed(Prepared),
}

/// A REGISTER that passed steps 1 to 6; see [`Registrar::decide`].
#[derive(Debug, Clone)]
pub struct Prepared {
    aor: Aor,
    ops: Ops,
    call_id: String,
    cseq: u32,
    path: Vec<String>,
    echo_path: bool,
    outbound: bool,
    user_agent: Option<String>,
}

impl Prepared {
    /// The address-of-record whose bindings are needed.
    pub fn aor(&self) -> &Aor {
        &self.aor
    }
}

#[derive(Debug, Clone)]
enum Ops {
    Query,
    Star,
    List(Vec<ContactReq>),
}

#[derive(Debug, Clone)]
struct ContactReq {
    contact: NameAddr,
    expires: u32,
    q: Option<u16>,
    instance: Option<String>,
    reg_id: Option<u32>,
    outbound: bool,
}

impl ContactReq {
    fn matches(&self, b: &Binding) -> bool {
        if self.outbound {
            b.outbound && b.instance == self.instance && b.reg_id == self.reg_id
        } else {
            !b.outbound && b.contact.uri.equivalent(&self.contact.uri)
        }
    }
}

#[derive(Debug, Default)]
struct FloodTable {
    map: HashMap<IpAddr, (Instant, u32)>,
}

/// The REGISTER processor. Sans-IO: it reads no clock and owns no socket or
/// binding; time comes in the [`RequestContext`], bindings from the caller.
///
/// Three ways to drive it:
/// * [`handle_register`](Self::handle_register): with a [`BindingTable`]
///   (synchronous, in memory);
/// * [`handle_register_with`](Self::handle_register_with): with any
///   [`LocationStore`] (asynchronous, e.g. shared between nodes);
/// * [`check`](Self::check) then [`decide`](Self::decide): the two phases by
///   hand, with the caller fetching and committing bindings.
///
/// `&self` everywhere: one registrar can serve many tasks (`Send + Sync`).
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    auth: Option<Authenticator>,
    flood: Mutex<FloodTable>,
    next_id: AtomicU64,
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // 32 random high bits (OS-seeded), a counter below: ids from several
    // registrars sharing a store are unlikely to meet.
    let h = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    h & 0xffff_ffff_0000_0000
}

impl Registrar {
    /// A registrar with `config`; `auth` is required when
    /// [`RegistrarConfig::auth`] is on (the default) and ignored when it is off.
    pub fn new(config: RegistrarConfig, auth: Option<Authenticator>) -> Result<Registrar, Error> {
        config.check()?;
        let auth = if config.auth {
            Some(auth.ok_or(Error::AuthenticatorMissing)?)
        } else {
            None
        };
        Ok(Registrar {
            config,
            auth,
            flood: Mutex::new(FloodTable::default()),
            next_id: AtomicU64::new(seed()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Whether the Request-URI names one of our domains (a proxy forwards a
    /// REGISTER for another domain instead of handing it to the registrar,
    /// which answers it 404).
    pub fn is_ours(&self, req: &Message) -> bool {
        req.request_uri()
            .ok()
            .and_then(|u| u.as_sip())
            .is_some_and(|s| self.config.is_our_host(s.host()))
    }

    /// Processes a REGISTER against an in-memory [`BindingTable`]: both phases
    /// and the commit. The decision (the response and the binding events it
    /// caused) is returned at once: it answers this request. The table is not
    /// expired here: call [`BindingTable::handle_timeout`] at
    /// [`BindingTable::poll_timeout`].
    pub fn handle_register(
        &self,
        req: &Message,
        ctx: &RequestContext,
        table: &mut BindingTable,
    ) -> Result<Decision, Error> {
        match self.check(req, ctx)? {
            Step::Respond(d) => Ok(d),
            Step::Proceed(p) => {
                let current = table.bindings(&p.aor);
                let mut d = self.decide(req, p, current, table.usage(), ctx)?;
                d.events = table.apply(d.changes.clone());
                Ok(d)
            }
        }
    }

    /// Processes a REGISTER against any [`LocationStore`]. The changes are
    /// applied only if the AOR did not change meanwhile; after a conflict the
    /// decision is recomputed (up to [`MAX_ATTEMPTS`] times). A store failure,
    /// or conflicts every time, answers 500 and changes nothing.
    pub async fn handle_register_with(
        &self,
        req: &Message,
        ctx: &RequestContext,
        store: &dyn LocationStore,
    ) -> Result<Decision, Error> {
        let p = match self.check(req, ctx)? {
            Step::Respond(d) => return Ok(d),
            Step::Proceed(p) => p,
        };
        for _ in 0..MAX_ATTEMPTS {
            let fetched = match store.bindings(&p.aor).await {
                Ok(s) => store.usage().await.map(|u| (s, u)),
                Err(e) => Err(e),
            };
            let Ok((snapshot, usage)) = fetched else {
                return self.reply(req, 500, |b| b);
            };
            let mut d = self.decide(req, p.clone(), snapshot.bindings, usage, ctx)?;
            if d.changes.is_empty() {
                return Ok(d);
            }
            match store
                .apply(&p.aor, snapshot.version, d.changes.clone())
                .await
            {
                Ok(events) => {
                    d.events = events;
                    return Ok(d);
                }
                Err(Error::Conflict) => continue,
                Err(_) => return self.reply(req, 500, |b| b),
            }
        }
        self.reply(req, 500, |b| b)
    }

    /// The connection `flow` closed at `now`: the bindings registered over it
    /// stop being used for routing at once (see [`BindingTable::flow_closed`];
    /// [`RegistrarConfig::contact_fallback`] decides whether plain bindings
    /// over TCP, TLS, WS and WSS are removed or kept with their Contact).
    /// Returns the events (removals with [`RemoveReason::FlowClosed`]).
    pub fn handle_flow_closed(
        &self,
        flow: FlowId,
        now: Instant,
        table: &mut BindingTable,
    ) -> Vec<BindingEvent> {
        table.flow_closed(flow, now, self.config.contact_fallback)
    }

    /// [`handle_flow_closed`](Self::handle_flow_closed) against any
    /// [`LocationStore`].
    pub async fn handle_flow_closed_with(
        &self,
        flow: FlowId,
        now: Instant,
        store: &dyn LocationStore,
    ) -> Result<Vec<BindingEvent>, Error> {
        store
            .flow_closed(flow, now, self.config.contact_fallback)
            .await
    }

    fn reply(
        &self,
        req: &Message,
        status: u16,
        f: impl FnOnce(MessageBuilder) -> MessageBuilder,
    ) -> Result<Decision, Error> {
        Ok(Decision {
            response: f(req.response(status)).build()?,
            changes: Vec::new(),
            events: Vec::new(),
        })
    }

    fn respond(
        &self,
        req: &Message,
        status: u16,
        f: impl FnOnce(MessageBuilder) -> MessageBuilder,
    ) -> Result<Step, Error> {
        self.reply(req, status, f).map(Step::Respond)
    }

    /// Whether `source` may send another REGISTER now (fixed windows).
    fn flood_allows(&self, cfg: &FloodConfig, source: IpAddr, now: Instant) -> Result<(), u64> {
        let Ok(mut t) = self.flood.lock() else {
            return Ok(());
        };
        if !t.map.contains_key(&source) && t.map.len() >= cfg.capacity {
            t.map
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < cfg.window);
            if t.map.len() >= cfg.capacity {
                return Ok(());
            }
        }
        let e = t.map.entry(source).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= cfg.window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        if e.1 > cfg.max_requests {
            let left = cfg
                .window
                .saturating_sub(now.saturating_duration_since(e.0));
            return Err(left.as_secs().max(1));
        }
        Ok(())
    }

    /// Phase one: flood limit, syntax, RFC 3261 §10.3 steps 1 to 6
    /// (domain, `Require`, authentication, authorisation, AOR, Contact and
    /// expiry checks) and the RFC 3327 / RFC 5626 checks. Needs no binding.
    pub fn check(&self, req: &Message, ctx: &RequestContext) -> Result<Step, Error> {
        if req.method() != Some(&Method::Register) {
            return Err(Error::NotRegister);
        }
        if let Some(cfg) = &self.config.flood
            && let Err(retry) = self.flood_allows(cfg, ctx.source.ip(), ctx.now)
        {
            return self.respond(req, 503, |b| b.header(HeaderName::RetryAfter, retry));
        }
        let syntax = ValidationOptions {
            role: Role::Syntax,
            supported: Vec::new(),
        };
        if let Err(r) = req.validate_with(&syntax) {
            return self.respond(req, r.status, |b| b);
        }
        // Step 1: the Request-URI's domain.
        let Ok(ruri) = req.request_uri() else {
            return self.respond(req, 400, |b| b);
        };
        let Some(rsip) = ruri.as_sip() else {
            return self.respond(req, 416, |b| b);
        };
        if !self.config.is_our_host(rsip.host()) {
            return self.respond(req, 404, |b| b);
        }
        // Step 2: Require.
        let mut unsupported: Vec<String> = req
            .require()
            .unwrap_or_default()
            .iter()
            .filter(|t| !self.config.supports(t))
            .map(|t| t.to_string())
            .collect();
        let path_values = req.path().unwrap_or_default();
        if !path_values.is_empty()
            && !self.config.supports("path")
            && !unsupported.iter().any(|t| t.eq_ignore_ascii_case("path"))
        {
            unsupported.push("path".into());
        }
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            return self.respond(req, 420, |b| b.header(HeaderName::Unsupported, list));
        }
        // Step 3: authentication.
        let mut user = None;
        if let Some(a) = &self.auth {
            let source = ctx.source.ip();
            let ip = Some(source);
            let creds = req.authorization().unwrap_or_default();
            let selected = a.server.select(creds);
            let claimed = selected.and_then(|c| c.username());
            if let Err(blocked) = a.limiter.check(source, claimed, ctx.now_system) {
                tracing::debug!(%source, ?blocked, "REGISTER refused by the failed-attempt limiter");
                return self.respond(req, 403, |b| b);
            }
            let uri = req
                .request_uri_bytes()
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default();
            let info = RequestInfo::new("REGISTER", uri);
            let outcome = match selected {
                Some(c) => a
                    .server
                    .verify(c, &info, ip, ctx.now_system, &*a.credentials),
                None => Outcome::Challenge(a.server.challenge(ip, ctx.now_system, false)),
            };
            // Only a refusal can count as a failure (`FailurePolicy::record`):
            // the nonce is opened a second time only then, not for every
            // accepted REGISTER.
            let bound = matches!(outcome, Outcome::Forbidden(_))
                && a.server.failure_counts(selected, source, ctx.now_system);
            let counted = a
                .limiter
                .record(&outcome, source, claimed, bound, ctx.now_system);
            if counted != Counted::Ignored {
                // The one line fail2ban matches (docs/security.md).
                tracing::warn!(
                    "{}",
                    FailureLine {
                        source,
                        user: claimed,
                        method: "REGISTER"
                    }
                );
            }
            match outcome {
                Outcome::Accept(who) => user = Some(who.username),
                Outcome::Challenge(ch) | Outcome::Stale { challenges: ch, .. } => {
                    return self.respond(req, 401, |mut b| {
                        for c in ch {
                            b = b.header(HeaderName::WwwAuthenticate, c);
                        }
                        b
                    });
                }
                Outcome::Forbidden(_) => return self.respond(req, 403, |b| b),
                Outcome::BadRequest(_) => return self.respond(req, 400, |b| b),
            }
        }
        // Steps 4 and 5: the AOR, and whether the user may register it.
        let aor = req.to().ok().and_then(|t| Aor::from_uri(&t.uri));
        let Some(aor) = aor.filter(|a| self.config.is_our_domain(a.host())) else {
            return self.respond(req, 404, |b| b);
        };
        if let (Some(a), Some(u)) = (&self.auth, &user)
            && !a.may_register(u, &aor)
        {
            return self.respond(req, 403, |b| b);
        }
        // Step 6: Contact.
        let supports = |t: &str| {
            req.supported()
                .unwrap_or_default()
                .iter()
                .chain(req.require().unwrap_or_default())
                .any(|s| s.eq_ignore_ascii_case(t))
        };
        let header_expires = req.expires().ok().flatten();
        let ops = match req.contact() {
            Err(_) => return self.respond(req, 400, |b| b),
            Ok(Contacts::Star) => {
                if header_expires != Some(0) {
                    return self.respond(req, 400, |b| b);
                }
                Ops::Star
            }
            Ok(Contacts::List(l)) if l.is_empty() => Ops::Query,
            Ok(Contacts::List(l)) => {
                let ob_ok = self.config.supports("outbound") && supports("outbound");
                let mut list = Vec::with_capacity(l.len());
                for c in l {
                    let e = c
                        .expires()
                        .or(header_expires)
                        .unwrap_or(self.config.default_expires);
                    if e != 0 && e < self.config.min_expires {
                        let min = self.config.min_expires;
                        return self.respond(req, 423, |b| b.header(HeaderName::MinExpires, min));
                    }
                    let instance = c.instance().map(str::to_owned);
                    let reg_id = c.reg_id();
                    list.push(ContactReq {
                        contact: c.clone(),
                        expires: e.min(self.config.max_expires),
                        q: c.q().map(|q| (q * 1000.0).round() as u16),
                        outbound: ob_ok && instance.is_some() && reg_id.is_some(),
                        instance,
                        reg_id,
                    });
                }
                Ops::List(list)
            }
        };
        let outbound = matches!(&ops, Ops::List(l) if l.iter().any(|c| c.outbound));
        if outbound {
            // RFC 5626 §6: one flow per REGISTER, and the first hop must do outbound.
            let with_reg_id = match &ops {
                Ops::List(l) => l.iter().filter(|c| c.outbound).count(),
                _ => 0,
            };
            if with_reg_id > 1 {
                return self.respond(req, 400, |b| b);
            }
            let first_hop_ob = path_values
                .last()
                .is_none_or(|p| p.uri.as_sip().is_some_and(|s| s.has_param("ob")));
            if !first_hop_ob {
                return self.respond(req, 439, |b| b);
            }
        }
        let Ok(call_id) = req.call_id() else {
            return self.respond(req, 400, |b| b);
        };
        let Ok(cseq) = req.cseq() else {
            return self.respond(req, 400, |b| b);
        };
        Ok(Step::Proceed(Prepared {
            aor,
            ops,
            call_id: call_id.to_owned(),
            cseq: cseq.seq,
            path: path_values.iter().map(ToString::to_string).collect(),
            echo_path: supports("path"),
            outbound,
            user_agent: req
                .user_agent()
                .map(|u| String::from_utf8_lossy(u).into_owned()),
        }))
    }

    /// Phase two: RFC 3261 §10.3 steps 7 and 8 against `current`, the AOR's
    /// bindings as the store holds them, and `usage`, the store's size.
    ///
    /// Returns the response and the changes to commit as one batch (expired
    /// bindings found in `current` are removed in the same batch). Nothing is
    /// applied here. An out-of-order CSeq (not higher than a binding's from the
    /// same Call-ID) answers 500 and changes nothing.
    pub fn decide(
        &self,
        req: &Message,
        p: Prepared,
        current: Vec<Binding>,
        usage: Usage,
        ctx: &RequestContext,
    ) -> Result<Decision, Error> {
        let now = ctx.now;
        let had_any = !current.is_empty();
        let mut reasons: HashMap<BindingId, RemoveReason> = HashMap::new();
        let mut original: Vec<Binding> = Vec::with_capacity(current.len());
        let mut removed: Vec<Binding> = Vec::new();
        for b in current {
            if b.is_expired(now) {
                reasons.insert(b.id, RemoveReason::Expired);
                removed.push(b);
            } else {
                original.push(b);
            }
        }
        let original_ids: HashSet<BindingId> = original.iter().map(|b| b.id).collect();
        let mut live = original.clone();
        let mut touched: HashSet<BindingId> = HashSet::new();
        let stale = |b: &Binding| b.call_id == p.call_id && p.cseq <= b.cseq;
        match &p.ops {
            Ops::Query => {}
            Ops::Star => {
                if live.iter().any(stale) {
                    return self.reply(req, 500, |b| b);
                }
                for b in live.drain(..) {
                    reasons.insert(b.id, RemoveReason::Unregistered);
                    removed.push(b);
                }
            }
            Ops::List(list) => {
                for c in list {
                    let at = live.iter().position(|b| c.matches(b));
                    if let Some(k) = at
                        && !touched.contains(&live[k].id)
                        && stale(&live[k])
                    {
                        return self.reply(req, 500, |b| b);
                    }
                    match (at, c.expires) {
                        (None, 0) => {}
                        (Some(k), 0) => {
                            let b = live.remove(k);
                            reasons.insert(b.id, RemoveReason::Unregistered);
                            removed.push(b);
                        }
                        (Some(k), e) => {
                            let old = &live[k];
                            let b = self.binding(&p, c, e, ctx, old.id, old.registered_at);
                            touched.insert(b.id);
                            live[k] = b;
                        }
                        (None, e) => {
                            let id = BindingId(self.next_id.fetch_add(1, Ordering::Relaxed));
                            let b = self.binding(&p, c, e, ctx, id, ctx.now_system);
                            touched.insert(id);
                            live.push(b);
                        }
                    }
                }
            }
        }
        // Limits.
        let inserted = live
            .iter()
            .filter(|b| !original_ids.contains(&b.id))
            .count();
        let max = self.config.max_contacts_per_aor;
        if live.len() > max && inserted > 0 {
            if self.config.on_too_many == TooManyContacts::ReplaceOldest {
                let mut old: Vec<(Instant, BindingId)> = live
                    .iter()
                    .filter(|b| !touched.contains(&b.id))
                    .map(|b| (b.refreshed_at, b.id))
                    .collect();
                old.sort();
                let excess = live.len() - max;
                for (_, id) in old.into_iter().take(excess) {
                    if let Some(k) = live.iter().position(|b| b.id == id) {
                        let b = live.remove(k);
                        reasons.insert(b.id, RemoveReason::Replaced);
                        removed.push(b);
                    }
                }
            }
            if live.len() > max {
                return self.reply(req, 403, |b| b);
            }
        }
        if inserted > 0 {
            let new_aor = !had_any && !live.is_empty();
            let removed_live = removed
                .iter()
                .filter(|b| original_ids.contains(&b.id))
                .count();
            let grows = inserted > removed_live;
            if (new_aor && usage.aors >= self.config.max_aors)
                || (grows && usage.bindings + inserted - removed_live > self.config.max_bindings)
            {
                return self.reply(req, 503, |b| b.header(HeaderName::RetryAfter, 60));
            }
        }
        // The batch.
        let mut changes: Vec<Change> = removed
            .iter()
            .map(|b| Change::Remove {
                aor: b.aor.clone(),
                id: b.id,
                reason: reasons
                    .get(&b.id)
                    .copied()
                    .unwrap_or(RemoveReason::Unregistered),
            })
            .collect();
        for b in &live {
            if !touched.contains(&b.id) {
                continue;
            }
            changes.push(if original_ids.contains(&b.id) {
                Change::Update(b.clone())
            } else {
                Change::Insert(b.clone())
            });
        }
        // Step 8: 200 with every current binding.
        order_bindings(&mut live);
        let supported = self.config.supported.join(", ");
        let response = {
            let mut b = req.response(200);
            for x in &live {
                let mut c = x.contact.clone();
                c.params.set("expires", Some(&x.remaining(now).to_string()));
                b = b.header(HeaderName::Contact, c);
            }
            if p.echo_path {
                for v in &p.path {
                    b = b.header(HeaderName::Path, v);
                }
            }
            if p.outbound {
                b = b.header(HeaderName::Require, "outbound");
            }
            if !supported.is_empty() {
                b = b.header(HeaderName::Supported, supported);
            }
            b.build()?
        };
        Ok(Decision {
            response,
            changes,
            events: Vec::new(),
        })
    }

    fn binding(
        &self,
        p: &Prepared,
        c: &ContactReq,
        expires: u32,
        ctx: &RequestContext,
        id: BindingId,
        registered_at: SystemTime,
    ) -> Binding {
        Binding {
            id,
            aor: p.aor.clone(),
            contact: detach(&c.contact),
            expires_at: ctx.now + secs(expires),
            expires_at_wall: ctx.now_system + secs(expires),
            q: c.q,
            call_id: p.call_id.clone(),
            cseq: p.cseq,
            path: p.path.clone(),
            instance: c.instance.clone(),
            reg_id: c.reg_id,
            outbound: c.outbound,
            flow: ctx.flow,
            source: ctx.source,
            transport: ctx.transport,
            user_agent: p.user_agent.clone(),
            registered_at,
            refreshed_at: ctx.now,
        }
    }
}

/// A copy of `c` that owns its bytes. A parsed Contact shares the REGISTER's
/// buffer; a binding that kept it would keep the whole request alive for its
/// lifetime (hundreds of bytes per binding).
fn detach(c: &NameAddr) -> NameAddr {
    let own = |b: &bytestring::ByteString| bytestring::ByteString::from(&**b);
    let uri = siplink_message::Uri::parse(bytes::Bytes::copy_from_slice(c.uri.as_str().as_bytes()))
        .unwrap_or_else(|_| c.uri.clone());
    NameAddr {
        display_name: c.display_name.as_ref().map(own),
        uri,
        params: siplink_message::Params(
            c.params
                .0
                .iter()
                .map(|p| siplink_message::Param {
                    name: own(&p.name),
                    value: p.value.as_ref().map(own),
                    quoted: p.quoted,
                })
                .collect(),
        ),
    }
}
