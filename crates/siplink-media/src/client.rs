//! The sans-IO rtpengine client: cookies, retransmission, timeouts, several instances
//! with Call-ID affinity and failover, and `ping` health.
//!
//! Inputs are [`Client::handle_command`], [`Client::handle_datagram`] and
//! [`Client::handle_timeout`]; what to do comes out of [`Client::poll_output`] one
//! [`Output`] at a time; [`Client::poll_timeout`] is the next deadline. Nothing here
//! touches a socket or a clock.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Error;
use crate::ng::{Command, Outcome, Reply, Request, decode_datagram, encode_datagram};

/// One rtpengine instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Its ng listen address (`--listen-ng`).
    pub addr: SocketAddr,
    /// Relative share of new calls (0: only when no other instance is up).
    pub weight: u32,
}

impl InstanceConfig {
    /// An instance of weight 1.
    pub fn new(addr: SocketAddr) -> InstanceConfig {
        InstanceConfig { addr, weight: 1 }
    }
}

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The instances (at least one).
    pub instances: Vec<InstanceConfig>,
    /// Time between sends of one request (default 500 ms).
    pub retransmit_interval: Duration,
    /// Resends after the first send before the request times out (default 3: a request
    /// fails after 4 × the interval).
    pub retries: u32,
    /// Time between health pings of each instance (default 5 s).
    pub ping_interval: Duration,
    /// Requests in flight at once (default 4096).
    pub max_pending: usize,
    /// Calls remembered for affinity (default 100 000).
    pub max_calls: usize,
    /// Cookie prefix (printable ASCII without spaces is kept, 32 characters at most); a
    /// random one when `None` or empty, so a restarted client never reuses a cookie
    /// rtpengine still has a cached reply for.
    pub cookie_prefix: Option<String>,
}

impl ClientConfig {
    /// Defaults for these instances.
    pub fn new(instances: impl IntoIterator<Item = SocketAddr>) -> ClientConfig {
        ClientConfig {
            instances: instances.into_iter().map(InstanceConfig::new).collect(),
            retransmit_interval: Duration::from_millis(500),
            retries: 3,
            ping_interval: Duration::from_secs(5),
            max_pending: 4096,
            max_calls: 100_000,
            cookie_prefix: None,
        }
    }
}

/// Identifies a request given to [`Client::handle_command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What the client asks its driver to do, or tells it.
#[derive(Debug)]
pub enum Output {
    /// Send `payload` as one UDP datagram to `to`.
    Transmit {
        /// The instance.
        to: SocketAddr,
        /// The datagram.
        payload: Vec<u8>,
    },
    /// A request got its reply (`result` `ok`, `pong` or another non-error result).
    Completed {
        /// The request.
        id: RequestId,
        /// The reply.
        reply: Reply,
    },
    /// A request failed: refused by rtpengine, timed out, or an invalid reply.
    Failed {
        /// The request.
        id: RequestId,
        /// Why.
        error: Error,
    },
    /// An instance changed health.
    Health {
        /// The instance.
        instance: SocketAddr,
        /// Up (answering) or down (a request to it timed out).
        up: bool,
    },
}

/// Counters of what the client saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent (first sends).
    pub sent: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Replies matched to a request.
    pub replies: u64,
    /// Replies whose cookie matched nothing (dropped).
    pub unknown_cookies: u64,
    /// Second replies to a request already answered (dropped).
    pub duplicates: u64,
    /// Datagrams that were not ng replies, or came from the wrong address (dropped).
    pub malformed: u64,
    /// Requests that timed out.
    pub timeouts: u64,
}

#[derive(Debug)]
struct Instance {
    addr: SocketAddr,
    weight: u32,
    up: bool,
    next_ping: Instant,
    ping_in_flight: bool,
}

#[derive(Debug)]
struct Pending {
    /// `None` for the client's own health pings.
    id: Option<RequestId>,
    instance: usize,
    command: Command,
    call_id: Option<String>,
    /// A delete of the whole call (not one branch): forget the affinity when done.
    ends_call: bool,
    payload: Vec<u8>,
    first_sent: Instant,
    sends: u32,
    deadline: Instant,
}

/// Recently answered cookies remembered to tell duplicates from unknown replies.
const RECENT: usize = 1024;

/// The sans-IO rtpengine ng client.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    prefix: String,
    instances: Vec<Instance>,
    next_seq: u64,
    pending: HashMap<u64, Pending>,
    timers: BTreeSet<(Instant, u64)>,
    calls: HashMap<String, usize>,
    recent: VecDeque<u64>,
    out: VecDeque<Output>,
    stats: ClientStats,
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // MurmurHash3's finaliser: FNV alone leaves the high bits poorly mixed when inputs
    // differ only at the end (instance ports).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Client {
    /// A client for `config`'s instances. Every instance counts as up until a request to
    /// it times out; the first health pings go out at `now`.
    pub fn new(config: ClientConfig, now: Instant) -> Client {
        // Printable, no spaces (the cookie ends at the first space), bounded.
        let prefix: String = config
            .cookie_prefix
            .as_deref()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_graphic)
            .take(32)
            .collect();
        let prefix = if prefix.is_empty() {
            format!("{:08x}", rand::random::<u32>())
        } else {
            prefix
        };
        let instances = config
            .instances
            .iter()
            .map(|i| Instance {
                addr: i.addr,
                weight: i.weight,
                up: true,
                next_ping: now,
                ping_in_flight: false,
            })
            .collect();
        Client {
            config,
            prefix: format!("{prefix}_"),
            instances,
            next_seq: 1,
            pending: HashMap::new(),
            timers: BTreeSet::new(),
            calls: HashMap::new(),
            recent: VecDeque::new(),
            out: VecDeque::new(),
            stats: ClientStats::default(),
        }
    }

    /// Sends `request`: a call's commands go to the instance that took its offer; a new
    /// call goes to an up instance chosen by a weighted hash of its Call-ID; `ping` and
    /// `list` go to the first up instance (see [`handle_command_to`](Self::handle_command_to)
    /// to pick one). Fails at once with [`Error::InstanceDown`] when the call's instance is
    /// down, [`Error::NoInstance`] when none is up, [`Error::Limit`] past a bound.
    pub fn handle_command(&mut self, request: Request, now: Instant) -> Result<RequestId, Error> {
        let idx = self.route(&request)?;
        self.start(idx, request, now)
    }

    /// Sends `request` to the instance at `instance` whatever its health (for `ping` and
    /// `list` of one instance). The call's affinity is not changed.
    pub fn handle_command_to(
        &mut self,
        instance: SocketAddr,
        request: Request,
        now: Instant,
    ) -> Result<RequestId, Error> {
        let idx = self
            .instances
            .iter()
            .position(|i| i.addr == instance)
            .ok_or(Error::NoInstance)?;
        self.start(idx, request, now)
    }

    fn route(&mut self, request: &Request) -> Result<usize, Error> {
        let Some(call_id) = request.call_id() else {
            return self
                .instances
                .iter()
                .position(|i| i.up)
                .ok_or(Error::NoInstance);
        };
        if let Some(&idx) = self.calls.get(call_id) {
            let inst = &self.instances[idx];
            if inst.up {
                return Ok(idx);
            }
            let err = Error::InstanceDown {
                call_id: call_id.to_owned(),
                instance: inst.addr,
            };
            if matches!(request, Request::Delete(d) if d.via_branch.is_none()) {
                self.calls.remove(call_id);
            }
            return Err(err);
        }
        let idx = self.pick(call_id).ok_or(Error::NoInstance)?;
        if matches!(request, Request::Offer(_)) {
            if self.calls.len() >= self.config.max_calls {
                return Err(Error::Limit("calls tracked for affinity"));
            }
            self.calls.insert(call_id.to_owned(), idx);
        }
        Ok(idx)
    }

    /// Weighted rendezvous hashing over the up instances (weight 0 only as a last resort).
    fn pick(&self, call_id: &str) -> Option<usize> {
        let score = |i: usize| {
            let inst = &self.instances[i];
            let h = fnv1a(&[call_id.as_bytes(), inst.addr.to_string().as_bytes()]);
            // A uniform number in (0, 1], then -w / ln(u): the weighted winner.
            let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            f64::from(inst.weight.max(1)) / -u.ln().min(-f64::MIN_POSITIVE)
        };
        let best = |want_weight: bool| {
            (0..self.instances.len())
                .filter(|&i| self.instances[i].up && (self.instances[i].weight > 0) == want_weight)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
        };
        best(true).or_else(|| best(false))
    }

    fn start(&mut self, idx: usize, request: Request, now: Instant) -> Result<RequestId, Error> {
        if self.pending.len() >= self.config.max_pending {
            return Err(Error::Limit("requests in flight"));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = RequestId(seq);
        let ends_call = matches!(&request, Request::Delete(d) if d.via_branch.is_none());
        self.send_new(idx, seq, Some(id), &request, ends_call, now);
        Ok(id)
    }

    fn send_new(
        &mut self,
        idx: usize,
        seq: u64,
        id: Option<RequestId>,
        request: &Request,
        ends_call: bool,
        now: Instant,
    ) {
        let cookie = format!("{}{seq}", self.prefix);
        let payload = encode_datagram(&cookie, &request.to_value());
        let deadline = now + self.config.retransmit_interval;
        self.out.push_back(Output::Transmit {
            to: self.instances[idx].addr,
            payload: payload.clone(),
        });
        self.stats.sent += 1;
        self.pending.insert(
            seq,
            Pending {
                id,
                instance: idx,
                command: request.command(),
                call_id: request.call_id().map(str::to_owned),
                ends_call,
                payload,
                first_sent: now,
                sends: 1,
                deadline,
            },
        );
        self.timers.insert((deadline, seq));
    }

    /// A datagram from `from`: a reply is matched to its request by cookie. Replies with
    /// an unknown cookie, duplicates, datagrams from an address the request was not sent
    /// to, and anything that is not an ng reply are dropped and counted.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let _ = now;
        let Ok((cookie, body)) = decode_datagram(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(seq) = cookie
            .strip_prefix(self.prefix.as_str())
            .and_then(|s| s.parse::<u64>().ok())
        else {
            self.stats.unknown_cookies += 1;
            return;
        };
        match self.pending.get(&seq) {
            None => {
                if self.recent.contains(&seq) {
                    self.stats.duplicates += 1;
                } else {
                    self.stats.unknown_cookies += 1;
                }
                return;
            }
            Some(p) if self.instances[p.instance].addr != from => {
                self.stats.malformed += 1;
                return;
            }
            Some(_) => {}
        }
        let Some(p) = self.pending.remove(&seq) else {
            return;
        };
        self.timers.remove(&(p.deadline, seq));
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(seq);
        self.stats.replies += 1;
        self.mark(p.instance, true);
        if p.ends_call
            && let Some(c) = &p.call_id
        {
            self.calls.remove(c);
        }
        let reply = Reply::from_value(body);
        let Some(id) = p.id else {
            self.instances[p.instance].ping_in_flight = false;
            return;
        };
        let output = match reply {
            Ok(reply) => match &reply.outcome {
                Outcome::Error(reason) => Output::Failed {
                    id,
                    error: Error::Rejected {
                        command: p.command.as_str(),
                        reason: reason.clone(),
                    },
                },
                _ => Output::Completed { id, reply },
            },
            Err(error) => Output::Failed { id, error },
        };
        self.out.push_back(output);
    }

    fn mark(&mut self, idx: usize, up: bool) {
        let inst = &mut self.instances[idx];
        if inst.up != up {
            inst.up = up;
            self.out.push_back(Output::Health {
                instance: inst.addr,
                up,
            });
        }
    }

    /// The next action, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest deadline: a retransmission, a timeout or a health ping.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers.first().map(|(t, _)| *t);
        let p = self
            .instances
            .iter()
            .filter(|i| !i.ping_in_flight)
            .map(|i| i.next_ping)
            .min();
        match (t, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires everything due at `now`: retransmissions, timeouts (the instance is marked
    /// down) and health pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, seq)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.pop_first();
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            if p.sends <= self.config.retries {
                p.sends += 1;
                p.deadline = deadline + self.config.retransmit_interval;
                self.timers.insert((p.deadline, seq));
                let to = self.instances[p.instance].addr;
                self.out.push_back(Output::Transmit {
                    to,
                    payload: p.payload.clone(),
                });
                self.stats.retransmits += 1;
                continue;
            }
            let Some(p) = self.pending.remove(&seq) else {
                continue;
            };
            self.stats.timeouts += 1;
            self.mark(p.instance, false);
            let inst = &mut self.instances[p.instance];
            match p.id {
                None => inst.ping_in_flight = false,
                Some(id) => {
                    let error = Error::Timeout {
                        instance: inst.addr,
                        command: p.command.as_str(),
                        waited: now.saturating_duration_since(p.first_sent),
                    };
                    self.out.push_back(Output::Failed { id, error });
                }
            }
        }
        for idx in 0..self.instances.len() {
            let inst = &self.instances[idx];
            if inst.ping_in_flight || inst.next_ping > now {
                continue;
            }
            let full = self.pending.len() >= self.config.max_pending;
            let inst = &mut self.instances[idx];
            inst.next_ping = now + self.config.ping_interval;
            if full {
                continue; // this round's ping is skipped, never retried in a busy loop
            }
            inst.ping_in_flight = true;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.send_new(idx, seq, None, &Request::Ping, false, now);
        }
    }

    /// Each instance and whether it is up.
    pub fn instances(&self) -> impl Iterator<Item = (SocketAddr, bool)> + '_ {
        self.instances.iter().map(|i| (i.addr, i.up))
    }

    /// The instance holding `call_id`'s media, if the call is known.
    pub fn instance_of(&self, call_id: &str) -> Option<SocketAddr> {
        self.calls.get(call_id).map(|&i| self.instances[i].addr)
    }

    /// Forgets a call's affinity (after the proxy gave up on it).
    pub fn forget_call(&mut self, call_id: &str) {
        self.calls.remove(call_id);
    }

    /// Calls remembered for affinity.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Requests in flight (health pings included).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The cookie prefix in use (`<prefix>_<n>` cookies).
    pub fn cookie_prefix(&self) -> &str {
        self.prefix.trim_end_matches('_')
    }
}
