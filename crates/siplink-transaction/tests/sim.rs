//! A lossy, reordering network simulated with virtual time between a client-side
//! and a server-side transaction table.

mod support;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::{
    Output, Received, TableConfig, Timers, TransactionId, TransactionTable, TuEvent, new_branch,
};
use support::drain;

/// splitmix64: a tiny seeded generator, so runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Client,
    Server,
}

enum SimEvent {
    /// Start client transaction for call `k`.
    Start(usize),
    /// A datagram arrives.
    Arrive(Side, Bytes),
    /// The server TU answers call `k` on transaction `id`.
    Answer(usize, TransactionId),
    /// The server TU retransmits its 2xx for call `k` (RFC 3261 §13.3.1.4).
    Retransmit2xx(usize, Duration),
}

#[derive(Debug, Default, Clone)]
struct Call {
    invite: bool,
    /// Status the server TU answers with.
    expected: u16,
    started: Option<Instant>,
    client_tx: Option<TransactionId>,
    finals: u32,
    final_status: Option<u16>,
    timeouts: u32,
    timeout_at: Option<Instant>,
    client_terminated: u32,
    server_requests: u32,
    server_tx: Option<TransactionId>,
    server_terminated: u32,
    response_2xx: Option<Message>,
    acked: bool,
}

struct Sim {
    rng: Rng,
    loss: u64,
    now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, SimEvent>,
    seq: u64,
    client: TransactionTable,
    server: TransactionTable,
    calls: Vec<Call>,
    client_ids: HashMap<TransactionId, usize>,
    server_ids: HashMap<TransactionId, usize>,
    timers: Timers,
    sent: u64,
    stray_at_client: u64,
    provisionals: u64,
}

fn call_index(m: &Message) -> usize {
    m.call_id().unwrap()[5..].parse().unwrap()
}

impl Sim {
    fn new(seed: u64, loss: u64, invites: usize, non_invites: usize) -> Sim {
        let config = TableConfig {
            max_transactions: 1_000_000,
            ..TableConfig::default()
        };
        let mut sim = Sim {
            rng: Rng(seed),
            loss,
            now: Instant::now(),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            client: TransactionTable::new(config),
            server: TransactionTable::new(config),
            calls: Vec::new(),
            client_ids: HashMap::new(),
            server_ids: HashMap::new(),
            timers: config.timers,
            sent: 0,
            stray_at_client: 0,
            provisionals: 0,
        };
        let t0 = sim.now;
        for k in 0..invites + non_invites {
            let invite = k < invites;
            let expected = match (invite, k % 3) {
                (true, 0) => 200,
                (true, 1) => 486,
                (true, _) => 603,
                (false, 0) => 404,
                (false, _) => 200,
            };
            sim.calls.push(Call {
                invite,
                expected,
                ..Call::default()
            });
            // Interleave the kinds: one start per millisecond.
            let slot = if invite { 2 * k } else { 2 * (k - invites) + 1 };
            sim.schedule(t0 + Duration::from_millis(slot as u64), SimEvent::Start(k));
        }
        sim
    }

    fn schedule(&mut self, at: Instant, ev: SimEvent) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn send(&mut self, to: Side, bytes: Bytes) {
        self.sent += 1;
        if self.rng.chance(self.loss) {
            return;
        }
        // 10-200 ms: messages overtake each other.
        let delay = Duration::from_millis(self.rng.range(10, 200));
        self.schedule(self.now + delay, SimEvent::Arrive(to, bytes));
    }

    fn run(&mut self) {
        loop {
            let next = [
                self.queue.peek().map(|Reverse((at, _))| *at),
                self.client.poll_timeout(),
                self.server.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(now) = next else { break };
            assert!(now >= self.now, "time goes forward");
            self.now = now;
            self.client.handle_timeout(now);
            let outs = drain(&mut self.client);
            self.client_outputs(outs);
            self.server.handle_timeout(now);
            let outs = drain(&mut self.server);
            self.server_outputs(outs);
            while let Some(&Reverse((at, seq))) = self.queue.peek() {
                if at > now {
                    break;
                }
                self.queue.pop();
                let ev = self.events.remove(&seq).unwrap();
                self.event(ev);
            }
        }
    }

    fn event(&mut self, ev: SimEvent) {
        match ev {
            SimEvent::Start(k) => {
                let req = build_request(k, self.calls[k].invite);
                let id = self.client.start_client(&req, false, self.now).unwrap();
                self.calls[k].started = Some(self.now);
                self.calls[k].client_tx = Some(id);
                self.client_ids.insert(id, k);
                let outs = drain(&mut self.client);
                self.client_outputs(outs);
            }
            SimEvent::Arrive(Side::Client, bytes) => {
                let msg = Message::parse(bytes).unwrap();
                match self.client.handle_message(msg, false, self.now) {
                    Received::Matched { .. } => {
                        let outputs = drain(&mut self.client);
                        self.client_outputs(outputs)
                    }
                    Received::Stray(m) => {
                        // After the client transaction ended (a timeout, or timer
                        // M/D/K), late copies are stray, never delivered twice.
                        let k = call_index(&m);
                        let c = &self.calls[k];
                        assert_eq!(c.client_terminated, 1, "stray for a live transaction");
                        self.stray_at_client += 1;
                    }
                    other => panic!("client side: {other:?}"),
                }
            }
            SimEvent::Arrive(Side::Server, bytes) => {
                let msg = Message::parse(bytes).unwrap();
                match self.server.handle_message(msg, false, self.now) {
                    Received::New { id, .. } => {
                        let outputs = drain(&mut self.server);
                        let k = self.server_outputs_new(id, &outputs);
                        self.server_outputs(outputs);
                        // Half the time at once; otherwise within a second, so
                        // INVITEs often get the transaction's 100 Trying first and
                        // retransmitted requests meet a TU that has not answered.
                        let delay = if self.rng.chance(50) {
                            0
                        } else {
                            self.rng.range(0, 1000)
                        };
                        self.schedule(
                            self.now + Duration::from_millis(delay),
                            SimEvent::Answer(k, id),
                        );
                    }
                    Received::Matched { .. } => {
                        let outputs = drain(&mut self.server);
                        self.server_outputs(outputs)
                    }
                    Received::Stray(ack) => {
                        // The ACK for a 2xx: ends the TU's 2xx retransmissions.
                        assert_eq!(ack.method(), Some(&Method::Ack));
                        let k = call_index(&ack);
                        assert_eq!(self.calls[k].expected, 200);
                        self.calls[k].acked = true;
                    }
                    other => panic!("server side: {other:?}"),
                }
            }
            SimEvent::Answer(k, id) => self.answer(k, id),
            SimEvent::Retransmit2xx(k, interval) => {
                let call = &self.calls[k];
                if call.acked {
                    return;
                }
                let (Some(id), Some(ok)) = (call.server_tx, call.response_2xx.clone()) else {
                    return;
                };
                // Ends with the transaction (timer L) at the latest.
                if self.server.handle_response(id, &ok, self.now).is_ok() {
                    let outs = drain(&mut self.server);
                    self.server_outputs(outs);
                    let next = (interval * 2).min(self.timers.t2);
                    self.schedule(self.now + interval, SimEvent::Retransmit2xx(k, next));
                }
            }
        }
    }

    fn server_outputs_new(&mut self, id: TransactionId, outputs: &[Output]) -> usize {
        let req = outputs
            .iter()
            .find_map(|o| match o {
                Output::Deliver {
                    event: TuEvent::Request(m),
                    ..
                } => Some(m),
                _ => None,
            })
            .expect("new transaction delivers its request");
        let k = call_index(req);
        self.server_ids.insert(id, k);
        self.calls[k].server_tx = Some(id);
        k
    }

    /// The server TU answers at once with the call's final response.
    fn answer(&mut self, k: usize, id: TransactionId) {
        let req = self.server.server_request(id).unwrap().clone();
        let status = self.calls[k].expected;
        let resp = req
            .response_with_tag(status, Some(&format!("srv{k}")))
            .build()
            .unwrap();
        self.server.handle_response(id, &resp, self.now).unwrap();
        let outs = drain(&mut self.server);
        self.server_outputs(outs);
        if self.calls[k].invite && status == 200 {
            self.calls[k].response_2xx = Some(resp);
            let t1 = self.timers.t1;
            self.schedule(self.now + t1, SimEvent::Retransmit2xx(k, t1 * 2));
        }
    }

    fn client_outputs(&mut self, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Send { bytes, .. } => self.send(Side::Server, bytes),
                Output::Deliver { id, event } => {
                    let k = self.client_ids[&id];
                    match event {
                        TuEvent::Final(m) => {
                            let call = &mut self.calls[k];
                            call.finals += 1;
                            assert_eq!(call.finals, 1, "final delivered twice, call {k}");
                            assert_eq!(call.timeouts, 0);
                            call.final_status = m.status();
                            if m.status() == Some(200) && call.invite {
                                self.send_2xx_ack(&m);
                            }
                        }
                        TuEvent::Additional2xx(m) => self.send_2xx_ack(&m),
                        TuEvent::Provisional(m) => {
                            assert_eq!(m.status(), Some(100));
                            assert!(self.calls[k].invite);
                            self.provisionals += 1;
                        }
                        TuEvent::Timeout => {
                            let call = &mut self.calls[k];
                            call.timeouts += 1;
                            assert_eq!(call.timeouts, 1);
                            assert_eq!(call.finals, 0);
                            call.timeout_at = Some(self.now);
                        }
                        other => panic!("client TU got {other:?}"),
                    }
                }
                Output::Terminated { id } => {
                    let k = self.client_ids.remove(&id).expect("terminated once");
                    self.calls[k].client_terminated += 1;
                }
            }
        }
    }

    /// The UAC core ACKs a 2xx end to end: a new transaction-less request.
    fn send_2xx_ack(&mut self, ok: &Message) {
        let ack = MessageBuilder::request(Method::Ack, "sip:bob@biloxi.example.com")
            .header(
                HeaderName::Via,
                format_args!(
                    "SIP/2.0/UDP client.example.com:5060;branch={}",
                    new_branch()
                ),
            )
            .header(HeaderName::MaxForwards, 70)
            .header_bytes(HeaderName::To, ok.header(HeaderName::To).unwrap().to_vec())
            .header_bytes(
                HeaderName::From,
                ok.header(HeaderName::From).unwrap().to_vec(),
            )
            .header(HeaderName::CallId, ok.call_id().unwrap())
            .header(
                HeaderName::CSeq,
                format_args!("{} ACK", ok.cseq().unwrap().seq),
            )
            .to_bytes()
            .unwrap();
        self.send(Side::Server, ack);
    }

    fn server_outputs(&mut self, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Send { bytes, .. } => self.send(Side::Client, bytes),
                Output::Deliver { id, event } => {
                    let k = self.server_ids[&id];
                    match event {
                        TuEvent::Request(_) => {
                            self.calls[k].server_requests += 1;
                            assert_eq!(self.calls[k].server_requests, 1, "request twice, call {k}");
                        }
                        // Timer H: the ACK for the non-2xx never came.
                        TuEvent::Timeout => assert_ne!(self.calls[k].expected, 200),
                        other => panic!("server TU got {other:?}"),
                    }
                }
                Output::Terminated { id } => {
                    let k = self.server_ids.remove(&id).expect("terminated once");
                    self.calls[k].server_terminated += 1;
                }
            }
        }
    }
}

fn build_request(k: usize, invite: bool) -> Message {
    let method = if invite {
        Method::Invite
    } else {
        Method::Options
    };
    MessageBuilder::request(method.clone(), "sip:bob@biloxi.example.com")
        .header(
            HeaderName::Via,
            format_args!(
                "SIP/2.0/UDP client.example.com:5060;branch={}",
                new_branch()
            ),
        )
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "<sip:bob@biloxi.example.com>")
        .header(
            HeaderName::From,
            format_args!("<sip:alice@atlanta.example.com>;tag=c{k}"),
        )
        .header(HeaderName::CallId, format_args!("call-{k}"))
        .header(HeaderName::CSeq, format_args!("1 {method}"))
        .build()
        .unwrap()
}

const N: usize = 10_000;

#[test]
fn lossy_reordering_network_every_transaction_resolves() {
    let mut sim = Sim::new(0x5eed_0001, 30, N, N);
    sim.run();
    assert!(sim.client.is_empty(), "client leak: {}", sim.client.len());
    assert!(sim.server.is_empty(), "server leak: {}", sim.server.len());
    assert_eq!(sim.client.timer_count() + sim.server.timer_count(), 0);
    assert!(sim.client_ids.is_empty() && sim.server_ids.is_empty());
    let (mut ok, mut timeouts) = (0, 0);
    for (k, c) in sim.calls.iter().enumerate() {
        assert_eq!(c.client_terminated, 1, "call {k}");
        assert_eq!(c.finals + c.timeouts, 1, "call {k}: one outcome");
        assert!(c.server_requests <= 1, "call {k}");
        assert_eq!(c.server_terminated, c.server_requests, "call {k}");
        if c.finals == 1 {
            // The right outcome: the final the server TU chose.
            assert_eq!(c.final_status, Some(c.expected), "call {k}");
            assert_eq!(c.server_requests, 1);
            ok += 1;
        } else {
            assert_eq!(
                c.timeout_at,
                Some(c.started.unwrap() + sim.timers.timeout())
            );
            timeouts += 1;
        }
    }
    // 30% loss each way: a round trip succeeds 49% of the time, and a non-INVITE
    // gets 11 tries (an INVITE 7 plus the server's retransmissions), so timeouts are
    // rare.
    assert!(timeouts * 200 < 2 * N, "{timeouts} timeouts");
    assert_eq!(ok + timeouts, 2 * N);
    // The 100 Trying path was exercised.
    assert!(sim.provisionals > 1000, "{} provisionals", sim.provisionals);
    eprintln!(
        "{ok} finals, {timeouts} timeouts, {} datagrams, {} stray, {} 100 Trying",
        sim.sent, sim.stray_at_client, sim.provisionals
    );
}

#[test]
fn total_loss_every_client_times_out_at_64_t1() {
    let mut sim = Sim::new(0x5eed_0002, 100, N, N);
    sim.run();
    assert!(sim.client.is_empty() && sim.server.is_empty());
    assert_eq!(sim.client.timer_count(), 0);
    for c in &sim.calls {
        assert_eq!(c.finals, 0);
        assert_eq!(c.timeouts, 1);
        assert_eq!(
            c.timeout_at,
            Some(c.started.unwrap() + sim.timers.timeout())
        );
        assert_eq!(c.client_terminated, 1);
        assert_eq!(c.server_requests, 0);
    }
    // INVITE: 7 transmissions, non-INVITE: 11, all lost.
    assert_eq!(sim.sent, (N * 7 + N * 11) as u64);
}
