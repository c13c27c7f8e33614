//! The per-call state machine: branches tried in parallel within a group
//! (a user's contacts, a connection's addresses), groups tried in order
//! (failover), RFC 3261 §16.7 best response with 401/407 challenge
//! aggregation, CANCEL fan-out and timer C.
//!
//! 3xx responses are returned to the caller like any other final response:
//! the proxy does not recurse on Contact values of a redirect.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use siplink_message::headers::HeaderName;
use siplink_message::{Message, MessageBuilder, Method};
use siplink_transport::{FlowId, Origin};

use super::dialog::DialogKey;
use super::timers::{self, Timer, TimerKey};
use super::{
    BranchId, CallRef, Caller, EndReason, Engine, Event, NextHop, Output, Pending, RouteGroup,
    ServerTx, Target, View,
};
use crate::core::{self, BestResponse};

/// A call being set up (or an in-dialog request being relayed).
#[derive(Debug)]
pub(crate) struct Fork {
    pub(crate) tx: ServerTx,
    /// The request as it goes out before per-branch edits (Max-Forwards
    /// decremented, our Route entries consumed).
    pub(crate) request: Message,
    pub(crate) origin: Origin,
    cookie: String,
    pub(crate) invite: bool,
    /// `None` for a request inside a dialog.
    pub(crate) caller: Option<Caller>,
    /// A request inside this dialog, and whether the caller sent it.
    pub(crate) in_dialog: Option<(DialogKey, bool)>,
    groups: VecDeque<RouteGroup>,
    pub(crate) connection: Option<String>,
    branches: Vec<BranchId>,
    sent: usize,
    best: BestResponse,
    group_failover: bool,
    pub(crate) final_sent: bool,
    cancelled: bool,
    /// A 6xx came: provisional responses are not forwarded any more.
    declined: bool,
    pub(crate) caller_gone: bool,
    cancel_key: Option<(String, String)>,
    /// The highest CSeq each callee sent in its early dialog (by tag).
    pub(crate) early_cseq: Vec<(String, u32)>,
    /// The authenticated user (whose credentials answer a PBX's challenge).
    user: Option<String>,
    /// What the request's CSeq was raised by on the way out (a relayed
    /// request of a dialog whose INVITE the proxy resent with credentials):
    /// responses get it taken off again.
    pub(crate) cseq_delta: u32,
    /// The header its branches' responses get back (see [`Mapping`]).
    restore: Option<(HeaderName, Bytes)>,
}

/// How a request relayed in a dialog differs from what its sender sent,
/// and what its responses get back: the CSeq offset of a resent INVITE,
/// and the From (or To) the other side knows when the proxy presented
/// another identity (an outbound registration's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Mapping {
    /// Taken off the responses' CSeq.
    pub(crate) cseq_delta: u32,
    /// Put back on the responses.
    pub(crate) restore: Option<(HeaderName, Bytes)>,
}

/// A branch's CANCEL state (RFC 3261 §9.1: no CANCEL before a provisional
/// response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    No,
    Wanted,
    Sent,
}

/// One branch of a fork.
#[derive(Debug)]
pub(crate) struct Branch {
    pub(crate) fork: u64,
    request: Message,
    pub(crate) hop: NextHop,
    provisional: bool,
    pub(crate) done: bool,
    cancel: Cancel,
    /// The Reason header (RFC 3326) its CANCEL carries.
    cancel_reason: Option<&'static str>,
    timed_out: bool,
    timer_c: Option<TimerKey>,
    /// The CSeq this branch's request carries above the caller's (each
    /// resend with credentials adds one): taken off its responses.
    cseq_delta: u32,
    /// How often the PBX's challenge was answered on this branch's line.
    auth_rounds: u8,
    /// A header its responses get back (the caller's From when the branch
    /// presents another identity).
    restore: Option<(HeaderName, Bytes)>,
    /// Its timer C is the short no-response deadline
    /// ([`EngineConfig::no_response_timeout`](super::EngineConfig)) until
    /// the first response.
    awaiting_first: bool,
}

impl Branch {
    /// Whether a CANCEL was asked for (or sent) on this branch.
    pub(crate) fn cancel_wanted(&self) -> bool {
        self.cancel != Cancel::No
    }
}

/// What a branch id stands for.
#[derive(Debug)]
pub(crate) enum BranchSlot {
    /// A branch of a fork.
    Fork(Box<Branch>),
    /// A request of our own (CANCEL, BYE): its responses are dropped.
    Own,
}

/// The Reason of the CANCELs sent when another branch answered (RFC 3326):
/// phones then do not list the call as missed.
const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// Challenges of a PBX answered per branch at most (a second one means the
/// credentials are wrong).
const MAX_AUTH_ROUNDS: u8 = 1;

/// Whether a final status lets the call go on to the next connection.
fn fails_over(status: u16) -> bool {
    matches!(status, 408 | 503)
}

impl<V: View> Engine<V> {
    pub(super) fn start_fork(&mut self, p: Pending, groups: Vec<RouteGroup>, now: Instant) {
        let id = self.id();
        if let Some(k) = &p.cancel_key {
            self.calls.insert(k.clone(), CallRef::Fork(id));
            self.early.insert(k.0.clone(), id);
        }
        let fork = Fork {
            tx: p.tx,
            invite: p.request.method() == Some(&Method::Invite),
            request: p.request,
            origin: p.origin,
            cookie: p.cookie,
            caller: Some(p.caller),
            in_dialog: None,
            groups: groups.into(),
            connection: None,
            branches: Vec::new(),
            sent: 0,
            best: BestResponse::new(),
            group_failover: true,
            final_sent: false,
            cancelled: false,
            declined: false,
            caller_gone: false,
            cancel_key: p.cancel_key,
            early_cseq: Vec::new(),
            user: p.user,
            cseq_delta: 0,
            restore: None,
        };
        self.forks.insert(id, fork);
        self.next_group(id, now);
    }

    /// A request inside a dialog relayed through one branch (`mapping`: how
    /// it was edited, undone on its responses).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_relay(
        &mut self,
        tx: ServerTx,
        request: Message,
        origin: Origin,
        dialog: Option<(DialogKey, bool)>,
        target: Target,
        mapping: Mapping,
        now: Instant,
    ) {
        let id = self.id();
        let invite = request.method() == Some(&Method::Invite);
        // A re-INVITE can be cancelled too.
        let cancel_key = invite.then(|| super::cancel_key(&request)).flatten();
        if let Some(k) = &cancel_key {
            self.calls.insert(k.clone(), CallRef::Fork(id));
        }
        let fork = Fork {
            tx,
            invite,
            cookie: core::loop_cookie(&request),
            request,
            origin,
            caller: None,
            in_dialog: dialog,
            groups: VecDeque::from([RouteGroup {
                connection: None,
                targets: vec![target],
            }]),
            connection: None,
            branches: Vec::new(),
            sent: 0,
            best: BestResponse::new(),
            group_failover: false,
            final_sent: false,
            cancelled: false,
            declined: false,
            caller_gone: false,
            cancel_key,
            early_cseq: Vec::new(),
            user: None,
            cseq_delta: mapping.cseq_delta,
            restore: mapping.restore,
        };
        self.forks.insert(id, fork);
        self.next_group(id, now);
    }

    /// Starts the next group's branches, or answers when none is left.
    fn next_group(&mut self, id: u64, now: Instant) {
        let Some(fork) = self.forks.get_mut(&id) else {
            return;
        };
        let Some(group) = fork.groups.pop_front() else {
            return self.finish(id, now);
        };
        fork.connection = group.connection;
        fork.group_failover = fork.caller.is_some();
        fork.branches.clear();
        self.media_group(id);
        let max = self.config.max_branches;
        for target in group.targets.into_iter().take(max) {
            self.send_branch(id, target, now);
        }
        self.media_flush(now);
    }

    fn send_branch(&mut self, id: u64, target: Target, now: Instant) {
        let bid = BranchId(self.id());
        let Some(fork) = self.forks.get_mut(&id) else {
            return;
        };
        let mut request = fork.request.clone();
        if let Some(uri) = &target.request_uri {
            request.set_request_uri(Bytes::copy_from_slice(uri.as_bytes()));
        }
        for r in target.route.iter().rev() {
            request.prepend_header(HeaderName::Route, r.clone());
        }
        if fork.in_dialog.is_none()
            && let Some(method) = request.method()
            && core::needs_record_route(method)
        {
            record_route(&self.view, &mut request, &fork.origin, &target.hop);
        }
        // A call through an outbound registration presents its registered
        // identity; the caller's From comes back on the responses.
        if fork.caller.is_some() && fork.in_dialog.is_none() {
            let identity = fork
                .connection
                .as_deref()
                .and_then(|c| self.view.caller_identity(c, fork.user.as_deref()));
            fork.restore = None;
            if let Some(uri) = identity
                && let Some(original) = request.header(HeaderName::From).map(Bytes::copy_from_slice)
                && let Some(value) = with_uri(&original, &uri)
            {
                request.set_header(HeaderName::From, value);
                fork.restore = Some((HeaderName::From, original));
            }
        }
        core::push_via(&mut request, &core::branch(&fork.cookie, fork.sent));
        fork.sent += 1;
        let delta = fork.cseq_delta;
        self.push_branch(id, bid, request, target.hop, delta, 0, now);
    }

    /// Records branch `bid` of fork `id` (timer C for an INVITE) and sends
    /// its request.
    #[allow(clippy::too_many_arguments)]
    fn push_branch(
        &mut self,
        id: u64,
        bid: BranchId,
        request: Message,
        hop: NextHop,
        cseq_delta: u32,
        auth_rounds: u8,
        now: Instant,
    ) {
        let timer_c = self.config.timer_c;
        let Some(fork) = self.forks.get_mut(&id) else {
            return;
        };
        fork.branches.push(bid);
        let invite = fork.invite;
        let fork_restore = fork.restore.clone();
        // A connection's branch gives up early when nothing at all answers.
        let short = self
            .config
            .no_response_timeout
            .filter(|_| fork.connection.is_some() && fork.caller.is_some());
        let first = short.map_or(timer_c, |d| d.min(timer_c));
        let timer = invite.then(|| self.timers.add(timers::deadline(now, first), Timer::C(bid)));
        self.branches.insert(
            bid,
            BranchSlot::Fork(Box::new(Branch {
                fork: id,
                request: request.clone(),
                hop: hop.clone(),
                provisional: false,
                done: false,
                cancel: Cancel::No,
                cancel_reason: None,
                timed_out: false,
                timer_c: timer,
                cseq_delta,
                auth_rounds,
                restore: fork_restore,
                awaiting_first: invite && short.is_some(),
            })),
        );
        // With media on, the INVITE waits for the relay's SDP.
        let Some(request) = self.media_branch_offer(id, bid, &hop, request) else {
            return;
        };
        self.out.push_back(Output::Send {
            branch: bid,
            request,
            hop,
        });
    }

    /// A PBX challenged an initial request on a connection's branch (RFC
    /// 3261 §22.2): the request goes again with the connection's digest
    /// credentials, CSeq one up (the caller's CSeq is put back on what
    /// comes back), as a new branch in place of the challenged one. `false`
    /// when the challenge is not answered here (not a connection's call, no
    /// credentials, answered once already): the response then goes on.
    fn answer_challenge(&mut self, branch: BranchId, response: &Message, now: Instant) -> bool {
        let Some(BranchSlot::Fork(b)) = self.branches.get(&branch) else {
            return false;
        };
        let (fork_id, rounds, delta) = (b.fork, b.auth_rounds, b.cseq_delta);
        let Some(fork) = self.forks.get(&fork_id) else {
            return false;
        };
        if fork.caller.is_none() || fork.cancelled || fork.final_sent || fork.caller_gone {
            return false;
        }
        let Some(connection) = fork.connection.clone() else {
            return false;
        };
        if rounds >= MAX_AUTH_ROUNDS {
            return false;
        }
        let Some(creds) = self.view.credentials(&connection, fork.user.as_deref()) else {
            return false;
        };
        let (Ok(www), Ok(proxy)) = (response.www_authenticate(), response.proxy_authenticate())
        else {
            return false;
        };
        let mut request = b.request.clone();
        let hop = b.hop.clone();
        let uri = String::from_utf8_lossy(request.request_uri_bytes().map_or(&[][..], |b| b))
            .into_owned();
        let method = request.method().map(|m| m.as_str().to_owned());
        let method = method.unwrap_or_default();
        let info = siplink_auth::RequestInfo::new(&method, &uri).with_body(request.body());
        let mut client = siplink_auth::DigestClient::new(connection.clone(), creds);
        let Ok(headers) = client.answer(&connection, www, proxy, &info) else {
            return false;
        };
        let Ok(cseq) = request.cseq().map(|c| c.seq) else {
            return false;
        };
        for h in headers {
            let name = match h.kind {
                siplink_auth::ChallengeKind::Www => HeaderName::Authorization,
                siplink_auth::ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
            };
            request.append_header(name, h.credentials.to_string());
        }
        request.set_header(
            HeaderName::CSeq,
            format!("{} {method}", cseq.wrapping_add(1)),
        );
        if method != "INVITE" {
            // No dialog record keeps the offset of a SUBSCRIBE's (REFER's)
            // dialog: our Record-Route entry carries it.
            super::indialog::mark_cseq_offset(&self.view, &mut request, delta + 1);
        }
        // A new transaction: our Via with a new branch.
        core::pop_via(&mut request);
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return false;
        };
        core::push_via(&mut request, &core::branch(&fork.cookie, fork.sent));
        fork.sent += 1;
        fork.branches.retain(|b| *b != branch);
        self.branches.remove(&branch);
        let bid = BranchId(self.id());
        self.push_branch(fork_id, bid, request, hop, delta + 1, rounds + 1, now);
        true
    }

    /// A response on one of our client transactions.
    pub fn handle_response(&mut self, branch: BranchId, response: Message, now: Instant) {
        // With media on, a response with SDP waits for the relay's SDP.
        if let Some(response) = self.media_hold_response(branch, response, now) {
            self.branch_response(branch, response, now);
        }
    }

    /// A response on a branch, its SDP done.
    pub(super) fn branch_response(
        &mut self,
        branch: BranchId,
        mut response: Message,
        now: Instant,
    ) {
        let Some(status) = response.status() else {
            return;
        };
        let (fork_id, wanted_cancel, timed_out, already_done, delta, first) =
            match self.branches.get_mut(&branch) {
                None => return self.handle_stray_response(response, now),
                Some(BranchSlot::Own) => {
                    if status >= 200 {
                        self.branches.remove(&branch);
                    }
                    return;
                }
                Some(BranchSlot::Fork(b)) => {
                    // Any provisional response, 100 included, allows a CANCEL
                    // (RFC 3261 §9.1); only 101-199 restart timer C (§16.7).
                    if status < 200 {
                        b.provisional = true;
                    }
                    let first = std::mem::take(&mut b.awaiting_first);
                    let wanted = b.cancel == Cancel::Wanted && status < 200;
                    let done = b.done;
                    if status >= 200 {
                        b.done = true;
                    }
                    (b.fork, wanted, b.timed_out, done, b.cseq_delta, first)
                }
            };
        if delta > 0 {
            restore_cseq(&mut response, delta);
        }
        if let Some(BranchSlot::Fork(b)) = self.branches.get(&branch)
            && let Some((name, value)) = &b.restore
        {
            response.set_header(*name, value.clone());
        }
        if wanted_cancel {
            self.send_cancel(branch);
        }
        let Some(fork) = self.forks.get(&fork_id) else {
            return;
        };
        let invite = fork.invite;
        if status < 200 {
            // The first response ends the no-response deadline (even a
            // 100); then 101-199 restart timer C (§16.7).
            if invite && (status > 100 || first) {
                self.restart_timer_c(branch, now);
            }
            if status == 100 {
                return;
            }
            if let Some(fork) = self.forks.get(&fork_id)
                && !fork.final_sent
                && !fork.caller_gone
                && !fork.declined
            {
                core::pop_via(&mut response);
                let tx = fork.tx;
                self.out.push_back(Output::Respond { tx, response });
            }
            return;
        }
        self.stop_timer_c(branch);
        if (200..300).contains(&status) {
            core::pop_via(&mut response);
            self.answered(fork_id, branch, response, now);
            self.cancel_others(fork_id, branch, Some(COMPLETED_ELSEWHERE));
            self.check_done(fork_id, now);
            return;
        }
        if already_done {
            // A late answer after timer C gave the branch up.
            return;
        }
        let answerable = matches!(status, 401 | 407)
            && self
                .forks
                .get(&fork_id)
                .is_some_and(|f| f.connection.is_some() && f.caller.is_some());
        if answerable && self.answer_challenge(branch, &response, now) {
            return;
        }
        if answerable && delta > 0 {
            // Our credentials were refused: the challenge is not for the
            // phone (it has none for the PBX), so refused as the classic
            // path refuses it. (Without credentials of ours the challenge
            // goes up with the others, RFC 3261 §16.7 step 7.)
            let refused = self.forks.get(&fork_id).and_then(|f| {
                core::local_response(&f.request, 403, "Forbidden (trunk authentication failed)")
            });
            if let Some(r) = refused {
                response = r;
            }
        }
        core::pop_via(&mut response);
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        let offered = if timed_out && status == 487 {
            core::local_response(&fork.request, 408, "Request Timeout").unwrap_or(response)
        } else {
            response
        };
        if !fails_over(offered.status().unwrap_or(500)) {
            fork.group_failover = false;
        }
        fork.best.offer(offered);
        if status >= 600 && invite {
            // §16.7 step 5: a 6xx ends the search; the other branches are
            // cancelled and nothing else is tried.
            fork.groups.clear();
            fork.group_failover = false;
            fork.declined = true;
            self.cancel_others(fork_id, branch, None);
        }
        self.check_done(fork_id, now);
    }

    /// A branch's transaction timed out (`timeout`) or its transport failed:
    /// as if it answered 408 or 503 (both fail over to the next connection).
    pub fn handle_branch_failure(&mut self, branch: BranchId, timeout: bool, now: Instant) {
        if timeout {
            self.fail_branch(branch, 408, "Request Timeout", now);
        } else {
            self.fail_branch(branch, 503, "Next Hop Unreachable", now);
        }
    }

    /// A branch ends without a response from its callee, as if it answered
    /// `status`.
    pub(super) fn fail_branch(
        &mut self,
        branch: BranchId,
        status: u16,
        reason: &str,
        now: Instant,
    ) {
        let fork_id = match self.branches.get_mut(&branch) {
            None => return,
            Some(BranchSlot::Own) => {
                self.branches.remove(&branch);
                return;
            }
            Some(BranchSlot::Fork(b)) => {
                if b.done {
                    return;
                }
                b.done = true;
                b.fork
            }
        };
        self.stop_timer_c(branch);
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        if !fails_over(status) {
            fork.group_failover = false;
        }
        if let Some(r) = core::local_response(&fork.request, status, reason) {
            fork.best.offer(r);
        }
        self.check_done(fork_id, now);
    }

    /// Timer C fired on `branch` (RFC 3261 §16.8): CANCEL it when it had a
    /// provisional response (its 487 then counts as 408), else give it up
    /// as if it answered 408.
    pub(super) fn timer_c(&mut self, branch: BranchId, key: TimerKey, now: Instant) {
        let provisional = match self.branches.get_mut(&branch) {
            Some(BranchSlot::Fork(b)) if !b.done && b.timer_c == Some(key) => {
                b.timer_c = None;
                b.timed_out = true;
                b.provisional
            }
            _ => return,
        };
        if provisional {
            self.cancel_branch(branch);
        } else {
            self.handle_branch_failure(branch, true, now);
        }
    }

    fn restart_timer_c(&mut self, branch: BranchId, now: Instant) {
        let at = timers::deadline(now, self.config.timer_c);
        if let Some(BranchSlot::Fork(b)) = self.branches.get_mut(&branch)
            && !b.done
            && !b.timed_out
        {
            self.timers.cancel(b.timer_c.take());
            b.timer_c = Some(self.timers.add(at, Timer::C(branch)));
        }
    }

    fn stop_timer_c(&mut self, branch: BranchId) {
        if let Some(BranchSlot::Fork(b)) = self.branches.get_mut(&branch) {
            self.timers.cancel(b.timer_c.take());
        }
    }

    /// The caller cancelled: every live branch is cancelled, nothing more is
    /// tried; the 487s make the final response.
    pub(super) fn cancel_fork(&mut self, id: u64, _now: Instant) {
        let Some(fork) = self.forks.get_mut(&id) else {
            return;
        };
        if fork.final_sent {
            return;
        }
        fork.cancelled = true;
        fork.groups.clear();
        fork.group_failover = false;
        let branches = fork.branches.clone();
        for b in branches {
            self.cancel_branch(b);
        }
    }

    fn cancel_others(&mut self, id: u64, except: BranchId, reason: Option<&'static str>) {
        let Some(fork) = self.forks.get(&id) else {
            return;
        };
        if !fork.invite {
            return;
        }
        let branches = fork.branches.clone();
        for b in branches.into_iter().filter(|b| *b != except) {
            if let Some(BranchSlot::Fork(br)) = self.branches.get_mut(&b) {
                br.cancel_reason = reason;
            }
            self.cancel_branch(b);
        }
    }

    /// CANCELs one INVITE branch, or marks it for a CANCEL at its first
    /// provisional response.
    fn cancel_branch(&mut self, branch: BranchId) {
        let send = match self.branches.get_mut(&branch) {
            Some(BranchSlot::Fork(b)) if !b.done && b.cancel == Cancel::No => {
                if b.provisional {
                    true
                } else {
                    b.cancel = Cancel::Wanted;
                    false
                }
            }
            _ => false,
        };
        if send {
            self.send_cancel(branch);
        }
    }

    fn send_cancel(&mut self, branch: BranchId) {
        let Some(BranchSlot::Fork(b)) = self.branches.get_mut(&branch) else {
            return;
        };
        if b.cancel == Cancel::Sent {
            return;
        }
        b.cancel = Cancel::Sent;
        let Some(cancel) = build_cancel(&b.request, b.cancel_reason) else {
            return;
        };
        let hop = b.hop.clone();
        let id = BranchId(self.id());
        self.branches.insert(id, BranchSlot::Own);
        self.out.push_back(Output::Send {
            branch: id,
            request: cancel,
            hop,
        });
    }

    /// When every branch of the group has its final response: the next
    /// group (failover), or the best response to the caller.
    fn check_done(&mut self, id: u64, now: Instant) {
        let Some(fork) = self.forks.get(&id) else {
            return;
        };
        let live = fork
            .branches
            .iter()
            .any(|b| matches!(self.branches.get(b), Some(BranchSlot::Fork(b)) if !b.done));
        if live {
            return;
        }
        let failed =
            !fork.final_sent && !fork.cancelled && !fork.caller_gone && fork.group_failover;
        let failover = failed && !fork.groups.is_empty();
        if failed
            && fork.caller.is_some()
            && let Some(connection) = fork.connection.clone()
        {
            self.out.push_back(Output::Event(Event::ConnectionFailed {
                call_id: fork.request.call_id().unwrap_or_default().to_owned(),
                connection,
                at: now,
            }));
        }
        if failover {
            self.drop_branches(id);
            self.next_group(id, now);
        } else {
            self.finish(id, now);
        }
    }

    fn drop_branches(&mut self, id: u64) {
        if let Some(fork) = self.forks.get(&id) {
            let branches = fork.branches.clone();
            for b in branches {
                self.branches.remove(&b);
                self.media_branch_dropped(b);
            }
        }
    }

    /// The fork is over: the best response if no final went up yet.
    fn finish(&mut self, id: u64, now: Instant) {
        self.drop_branches(id);
        let Some(fork) = self.forks.remove(&id) else {
            return;
        };
        let unavailable = self.media_fork_done(id, fork.cancelled || fork.caller_gone);
        if let Some(k) = &fork.cancel_key {
            self.calls.remove(k);
            if self.early.get(&k.0) == Some(&id) {
                self.early.remove(&k.0);
            }
        }
        if fork.final_sent {
            return;
        }
        let response = fork
            .best
            .take(&fork.request)
            .or_else(|| core::local_response(&fork.request, 500, "No Response From Any Branch"));
        let Some(response) = response else { return };
        let response = Self::media_final(&fork.request, response, unavailable);
        let status = response.status().unwrap_or(500);
        if fork.caller.is_some() && fork.invite {
            self.out.push_back(Output::Event(Event::CallEnded {
                call_id: fork.request.call_id().unwrap_or_default().to_owned(),
                reason: if fork.cancelled || fork.caller_gone {
                    EndReason::Cancelled
                } else {
                    EndReason::Failed(status)
                },
                at: now,
            }));
        }
        if !fork.caller_gone {
            self.out.push_back(Output::Respond {
                tx: fork.tx,
                response,
            });
        }
    }

    /// The caller's flow closed: its calls being set up are cancelled;
    /// branches sent over the flow fail.
    pub(super) fn flow_closed_forks(&mut self, flow: FlowId, now: Instant) {
        let mut ids: Vec<u64> = self
            .forks
            .iter()
            .filter(|(_, f)| f.origin.flow == Some(flow))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(f) = self.forks.get_mut(&id) {
                f.caller_gone = true;
            }
            self.cancel_fork(id, now);
        }
        let mut over: Vec<BranchId> = self
            .branches
            .iter()
            .filter(|(_, s)| {
                matches!(s, BranchSlot::Fork(b) if !b.done
                    && matches!(b.hop, NextHop::Flow { flow: f, .. } if f == flow))
            })
            .map(|(id, _)| *id)
            .collect();
        over.sort_unstable();
        for b in over {
            self.handle_branch_failure(b, false, now);
        }
    }

    /// A 2xx on a branch: forwarded (every one, §16.7 step 5), the dialog
    /// recorded, and the final marked sent.
    fn answered(&mut self, fork_id: u64, branch: BranchId, response: Message, now: Instant) {
        let Some(fork) = self.forks.get_mut(&fork_id) else {
            return;
        };
        fork.final_sent = true;
        let tx = fork.tx;
        let caller_gone = fork.caller_gone;
        let in_dialog = fork.in_dialog.clone();
        let (hop, delta, caller_as) = match self.branches.get(&branch) {
            Some(BranchSlot::Fork(b)) => {
                // The identity presented, when the caller's From was swapped.
                let caller_as = match &b.restore {
                    Some((HeaderName::From, _)) => b
                        .request
                        .header(HeaderName::From)
                        .map(Bytes::copy_from_slice),
                    _ => None,
                };
                (b.hop.clone(), b.cseq_delta, caller_as)
            }
            _ => return,
        };
        let Some(fork) = self.forks.get(&fork_id) else {
            return;
        };
        let invite = fork.invite;
        if let Some((key, from_caller)) = in_dialog {
            let request = fork.request.clone();
            let response = self.refreshed(&key, from_caller, &request, response, now);
            self.out.push_back(Output::Respond { tx, response });
            return;
        }
        if !invite {
            if !caller_gone {
                self.out.push_back(Output::Respond { tx, response });
            }
            return;
        }
        let response = self.record_dialog(fork_id, hop, response, delta, caller_as, now);
        self.media_fill_dialog(fork_id, branch, &response);
        if !caller_gone {
            self.out.push_back(Output::Respond { tx, response });
        }
    }
}

/// A From/To value with its URI replaced by `uri` (display name and
/// parameters, the tag among them, kept).
fn with_uri(value: &[u8], uri: &str) -> Option<String> {
    let v = std::str::from_utf8(value).ok()?.trim();
    if let (Some(open), Some(close)) = (v.find('<'), v.find('>'))
        && open < close
    {
        return Some(format!("{}<{uri}>{}", &v[..open], &v[close + 1..]));
    }
    // addr-spec form: the URI runs to the first ';' (parameters follow).
    let params = v.find(';').map_or("", |i| &v[i..]);
    Some(format!("<{uri}>{params}"))
}

/// Puts the caller's CSeq back on a response to a request sent `delta` above
/// it.
pub(crate) fn restore_cseq(response: &mut Message, delta: u32) {
    if let Ok(c) = response.cseq() {
        let value = format!("{} {}", c.seq.wrapping_sub(delta), c.method);
        response.set_header(HeaderName::CSeq, value);
    }
}

/// The CANCEL for a branch's INVITE (RFC 3261 §9.1): same Request-URI, top
/// Via, Route, Call-ID, From, To and CSeq number.
fn build_cancel(invite: &Message, reason: Option<&str>) -> Option<Message> {
    let ruri = invite.request_uri_bytes()?;
    let ruri = std::str::from_utf8(ruri).ok()?;
    let via = invite.header_values(HeaderName::Via).next()?;
    let cseq = invite.cseq().ok()?.seq;
    let mut b = MessageBuilder::request(Method::Cancel, ruri)
        .header_bytes(HeaderName::Via, Bytes::copy_from_slice(via))
        .header(HeaderName::MaxForwards, 70);
    for r in invite.header_values(HeaderName::Route) {
        b = b.header_bytes(HeaderName::Route, Bytes::copy_from_slice(r));
    }
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        b = b.header_bytes(name, Bytes::copy_from_slice(invite.header(name)?));
    }
    b = b.header(HeaderName::CSeq, format!("{cseq} CANCEL"));
    if let Some(reason) = reason {
        b = b.extension_header("Reason", reason);
    }
    b.build().ok()
}

/// Our Record-Route (RFC 3261 §16.6 step 4): one entry when both faces are
/// the same, two (RFC 5658) when the call changes transport or either side
/// is a flow (its token in the entry's user part).
fn record_route(view: &dyn View, request: &mut Message, origin: &Origin, out: &NextHop) {
    let mac = view.dialog_mac(request.call_id().unwrap_or_default());
    let (in_host, in_port) = view.face(origin.protocol, Some(origin.local));
    let in_token = origin.flow.map(|f| view.flow_token(f));
    let out_protocol = out.protocol();
    let (out_host, out_port) = view.face(out_protocol, None);
    let out_token = match out {
        NextHop::Flow { flow, .. } => Some(view.flow_token(*flow)),
        NextHop::Addr(_) => None,
    };
    let in_rr = core::record_route_value(
        &in_host,
        in_port,
        origin.protocol.via_token(),
        in_token.as_deref(),
        Some(&mac),
    );
    let single = origin.protocol == out_protocol
        && in_token.is_none()
        && out_token.is_none()
        && in_host == out_host
        && in_port == out_port;
    request.prepend_header(HeaderName::RecordRoute, in_rr);
    if !single {
        request.prepend_header(
            HeaderName::RecordRoute,
            core::record_route_value(
                &out_host,
                out_port,
                out_protocol.via_token(),
                out_token.as_deref(),
                Some(&mac),
            ),
        );
    }
}
