//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use siplink_auth::ClientCredentials;
use siplink_message::uri::SipUri;
use siplink_message::{HeaderName, Message};
use siplink_register::{
    Input, Output, Registration, RegistrationConfig, State, TargetAddr, Transport,
};

pub fn uri(s: &str) -> SipUri {
    SipUri::parse(s.to_owned()).unwrap()
}

pub fn config() -> RegistrationConfig {
    RegistrationConfig::new(
        uri("sip:example.com"),
        uri("sip:1001@example.com"),
        "1001",
        "192.168.1.10",
        5060,
        Transport::Udp,
    )
    .with_credentials(ClientCredentials::password("1001", "s3cret"))
}

pub fn registration(cfg: RegistrationConfig, seed: u64) -> Registration {
    Registration::with_rng(cfg, StdRng::seed_from_u64(seed)).unwrap()
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Takes every queued output.
pub fn drain(reg: &mut Registration) -> Vec<Output> {
    std::iter::from_fn(|| reg.poll_output()).collect()
}

/// Runs the timers due at `now` and takes every output.
pub fn poll_all(reg: &mut Registration, now: Instant) -> Vec<Output> {
    reg.handle_timeout(now);
    drain(reg)
}

/// Feeds `input` at `now` and takes every output.
pub fn input(reg: &mut Registration, input: Input, now: Instant) -> Vec<Output> {
    reg.handle_input(input, now);
    drain(reg)
}

/// The one REGISTER in `outputs`.
pub fn sent(outputs: &[Output]) -> (Message, TargetAddr) {
    let sends: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                request, target, ..
            } => Some((request.clone(), target.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "expected one Send in {outputs:?}");
    sends.into_iter().next().unwrap()
}

pub fn no_send(outputs: &[Output]) {
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::Send { .. })),
        "unexpected Send in {outputs:?}"
    );
}

pub fn last_state(outputs: &[Output]) -> Option<State> {
    outputs.iter().rev().find_map(|o| match o {
        Output::StateChanged(s) => Some(s.clone()),
        _ => None,
    })
}

/// Starts `reg` at `t0` and returns the first REGISTER.
pub fn first_register(reg: &mut Registration, t0: Instant) -> Message {
    reg.start(t0);
    let out = poll_all(reg, t0);
    assert_eq!(last_state(&out), Some(State::Registering));
    sent(&out).0
}

pub fn response(req: &Message, status: u16) -> Message {
    req.response(status).build().unwrap()
}

pub fn ok(req: &Message, expires: u32) -> Message {
    let contact = req
        .contact()
        .unwrap()
        .as_slice()
        .first()
        .unwrap()
        .uri
        .clone();
    req.response(200)
        .header(
            HeaderName::Contact,
            format_args!("<{contact}>;expires={expires}"),
        )
        .build()
        .unwrap()
}

pub fn challenge(req: &Message, nonce: &str) -> Message {
    req.response(401)
        .header(
            HeaderName::WwwAuthenticate,
            format_args!(
                "Digest realm=\"example.com\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5"
            ),
        )
        .build()
        .unwrap()
}

/// Replaces the top Via of a response (what the registrar saw).
pub fn with_via(mut m: Message, via: &str) -> Message {
    m.set_header(HeaderName::Via, via.to_owned());
    m.reparse().unwrap()
}

pub fn feed(reg: &mut Registration, msg: Message, now: Instant) -> Vec<Output> {
    input(reg, Input::Response(msg), now)
}
