//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::{Output, TransactionTable, TuEvent};

/// A request with the given method, branch (used as is), Call-ID and CSeq.
pub fn request(method: Method, branch: &str, call_id: &str, cseq: u32) -> Message {
    request_from(
        method,
        branch,
        "pc33.atlanta.example.com:5060",
        call_id,
        cseq,
    )
}

/// Like [`request`] with a chosen sent-by.
pub fn request_from(
    method: Method,
    branch: &str,
    sent_by: &str,
    call_id: &str,
    cseq: u32,
) -> Message {
    let mut b = MessageBuilder::request(method.clone(), "sip:bob@biloxi.example.com")
        .header(
            HeaderName::Via,
            format_args!("SIP/2.0/UDP {sent_by};branch={branch}"),
        )
        .header(HeaderName::MaxForwards, 70);
    if method == Method::Invite {
        b = b
            .header(HeaderName::Route, "<sip:p1.example.com;lr>")
            .header(HeaderName::Route, "<sip:p2.example.com;lr>");
    }
    b.header(HeaderName::To, "Bob <sip:bob@biloxi.example.com>")
        .header(
            HeaderName::From,
            "Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        )
        .header(HeaderName::CallId, call_id)
        .header(HeaderName::CSeq, format_args!("{cseq} {method}"))
        .header(HeaderName::Contact, "<sip:alice@pc33.atlanta.example.com>")
        .build()
        .expect("valid request")
}

/// A response to `req` with a fixed To tag.
pub fn response(req: &Message, status: u16) -> Message {
    req.response_with_tag(status, Some("a6c85cf"))
        .build()
        .expect("valid response")
}

/// Parses bytes the transaction layer sent.
pub fn parse(bytes: &bytes::Bytes) -> Message {
    Message::parse(bytes.clone()).expect("sent bytes parse")
}

/// Seconds (as f64) from `t0`.
pub fn secs(t0: Instant, t: Instant) -> f64 {
    (t - t0).as_secs_f64()
}

/// One observed output with the time it happened.
#[derive(Debug)]
pub struct Seen {
    /// Seconds since t0.
    pub at: f64,
    /// The output.
    pub out: Output,
}

/// Takes every output `table` has queued.
pub fn drain(table: &mut TransactionTable) -> Vec<Output> {
    std::iter::from_fn(|| table.poll_output()).collect()
}

/// Runs one input `f` on `table`; returns its result and the outputs it queued.
/// Outputs of earlier inputs that the test did not take are dropped first.
pub fn step<R>(
    table: &mut TransactionTable,
    f: impl FnOnce(&mut TransactionTable) -> R,
) -> (R, Vec<Output>) {
    drain(table);
    let r = f(table);
    (r, drain(table))
}

/// Runs every timer of `table` to completion (or until `until`), recording
/// outputs (outputs queued before are dropped first).
pub fn run_timers(table: &mut TransactionTable, t0: Instant, until: Duration) -> Vec<Seen> {
    let mut seen = Vec::new();
    drain(table);
    while let Some(at) = table.poll_timeout() {
        if at > t0 + until {
            break;
        }
        table.handle_timeout(at);
        for out in drain(table) {
            seen.push(Seen {
                at: secs(t0, at),
                out,
            });
        }
    }
    seen
}

/// Times at which something was sent.
pub fn send_times(seen: &[Seen]) -> Vec<f64> {
    seen.iter()
        .filter(|s| matches!(s.out, Output::Send { .. }))
        .map(|s| s.at)
        .collect()
}

/// Whether `outs` contain a Deliver of an event matching `f`.
pub fn delivered(outs: &[Output], f: impl Fn(&TuEvent) -> bool) -> bool {
    outs.iter()
        .any(|o| matches!(o, Output::Deliver { event, .. } if f(event)))
}

/// Number of sends in `outs`.
pub fn sends(outs: &[Output]) -> Vec<Message> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } => Some(parse(bytes)),
            _ => None,
        })
        .collect()
}

/// Whether `outs` contain Terminated.
pub fn terminated(outs: &[Output]) -> bool {
    outs.iter().any(|o| matches!(o, Output::Terminated { .. }))
}
