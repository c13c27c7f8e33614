//! "Test connection": the report model and its interpretation of what each
//! step observed. The probing itself (resolving, connecting, sending the
//! OPTIONS) belongs to the async driver; this module turns its observations
//! into a typed report that says which step failed, why, and what to check.

use std::fmt;
use std::net::IpAddr;

use siplink_message::Message;
#[cfg(feature = "tokio")]
pub use siplink_transport::TlsFailure;

/// Without the `tokio` feature there is no network and so no TLS step: a TLS
/// failure cannot happen, and the type is uninhabited.
#[cfg(not(feature = "tokio"))]
pub type TlsFailure = std::convert::Infallible;

/// What the TLS step's failure says to do (the transport's `TlsFailure::fix`).
#[cfg(not(feature = "tokio"))]
trait TlsFix {
    fn fix(&self) -> String;
}

#[cfg(not(feature = "tokio"))]
impl TlsFix for std::convert::Infallible {
    fn fix(&self) -> String {
        match *self {}
    }
}

use crate::config::{TargetAddr, Transport};

/// One step of a connection test, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Resolving the target's host name.
    Resolve,
    /// Opening the TCP connection (TCP and TLS only).
    Connect,
    /// The TLS handshake and certificate check (TLS only).
    Tls,
    /// Sending OPTIONS and reading the answer.
    Options,
    /// Answering the PBX's digest challenge, if it sent one.
    Auth,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Resolve => "resolve",
            Step::Connect => "connect",
            Step::Tls => "TLS",
            Step::Options => "OPTIONS",
            Step::Auth => "auth",
        })
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host name does not resolve.
    NameNotResolved,
    /// No route to the address (network or host unreachable).
    Unreachable {
        /// What the system said.
        detail: String,
    },
    /// The connection was refused (TCP RST, ICMP port unreachable).
    Refused,
    /// No answer in time.
    Timeout,
    /// The TLS handshake failed: the problem in words, the library's error,
    /// and the certificate the PBX presented (its fingerprint).
    Tls(Box<TlsFailure>),
    /// The PBX challenged and the trunk has no credentials.
    AuthRequired {
        /// The challenge's realm.
        realm: Option<String>,
    },
    /// The PBX challenged again after our answer.
    CredentialsRejected {
        /// The challenge's realm.
        realm: Option<String>,
    },
    /// The PBX answered with a status that means it will not take our calls.
    Status {
        /// Status code.
        code: u16,
        /// Reason phrase as received.
        reason: String,
    },
}

impl Failure {
    /// What the user should most likely check.
    pub fn hint(&self, step: Step) -> String {
        match self {
            Failure::NameNotResolved => {
                "the host name does not resolve: check its spelling in the trunk settings and the DNS records".into()
            }
            Failure::Unreachable { .. } => {
                "no route to the PBX: check the address, and the network and firewall between the proxy and the PBX".into()
            }
            Failure::Refused => {
                "nothing accepts SIP on that port: check the port and transport, and that the PBX's SIP service is running".into()
            }
            Failure::Timeout if step == Step::Connect => {
                "the connection attempt timed out: the PBX is offline, the address is wrong, or a firewall drops the traffic".into()
            }
            Failure::Timeout => {
                "the PBX did not answer OPTIONS: it is offline, the address or port is wrong, or a firewall drops SIP from the proxy's IP".into()
            }
            Failure::Tls(t) => t.fix(),
            Failure::AuthRequired { .. } => {
                "the PBX asks for credentials: enter the trunk's user name and password, or let the PBX accept the proxy's IP address without authentication".into()
            }
            Failure::CredentialsRejected { .. } => {
                "the PBX rejects the credentials: check the user name and password (and the realm)".into()
            }
            Failure::Status { code: 403, .. } => {
                "the PBX refuses the proxy: allow the proxy's IP address in the PBX's trunk or ACL settings".into()
            }
            Failure::Status { code: 404 | 484, .. } => {
                "the PBX does not know the address probed: check the trunk's domain and the PBX's trunk settings".into()
            }
            Failure::Status { code: 503, .. } => {
                "the PBX is overloaded or in maintenance: try again later".into()
            }
            Failure::Status { code, .. } if *code >= 500 => {
                "the PBX has an internal problem: check its logs".into()
            }
            Failure::Status { .. } => "unexpected answer: check the PBX's trunk settings and logs".into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let realm = |r: &Option<String>| {
            r.as_ref()
                .map(|r| format!(" (realm {r:?})"))
                .unwrap_or_default()
        };
        match self {
            Failure::NameNotResolved => f.write_str("name not found"),
            Failure::Unreachable { detail } => write!(f, "unreachable: {detail}"),
            Failure::Refused => f.write_str("connection refused"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Tls(t) => write!(f, "TLS error: {t}"),
            Failure::AuthRequired { realm: r } => write!(f, "authentication required{}", realm(r)),
            Failure::CredentialsRejected { realm: r } => {
                write!(f, "credentials rejected{}", realm(r))
            }
            Failure::Status { code, reason } => write!(f, "answered {code} {reason}"),
        }
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Passed; the text says what was seen (addresses, status...).
    Ok(String),
    /// Failed.
    Failed(Failure),
    /// Not run: an earlier step failed, or it does not apply (no TCP
    /// connection over UDP, no TLS over TCP, no challenge); the text says which.
    Skipped(&'static str),
}

/// A network-level failure observed by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFailure {
    /// The name does not resolve (NXDOMAIN, no records).
    NotFound,
    /// Network or host unreachable.
    Unreachable(String),
    /// Refused.
    Refused,
    /// Timed out.
    Timeout,
}

impl From<NetFailure> for Failure {
    fn from(n: NetFailure) -> Failure {
        match n {
            NetFailure::NotFound => Failure::NameNotResolved,
            NetFailure::Unreachable(detail) => Failure::Unreachable { detail },
            NetFailure::Refused => Failure::Refused,
            NetFailure::Timeout => Failure::Timeout,
        }
    }
}

/// How the OPTIONS exchange went.
// One value per test run: no boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum OptionsObservation {
    /// No final response, or the transport failed while sending.
    Failed(NetFailure),
    /// The final response; when it was a `401`/`407` and the trunk has
    /// credentials, also the final response to the answered OPTIONS.
    Answered {
        /// The first final response.
        first: Message,
        /// The final response after our digest answer.
        after_auth: Option<Message>,
    },
}

/// What the driver observed at each step; `None` for a step it did not run.
#[derive(Debug, Clone)]
pub struct Observations {
    /// Resolution (an IP literal resolves to itself).
    pub resolve: Result<Vec<IpAddr>, NetFailure>,
    /// The TCP connection (TCP and TLS).
    pub connect: Option<Result<(), NetFailure>>,
    /// The TLS handshake: what it showed (version, cipher suite, the
    /// certificate's fingerprint), or why it failed.
    pub tls: Option<Result<String, TlsFailure>>,
    /// The OPTIONS exchange.
    pub options: Option<OptionsObservation>,
}

/// The report of a connection test for one trunk target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    /// The target tested.
    pub target: TargetAddr,
    /// Every step in order, with its result.
    pub steps: Vec<(Step, StepResult)>,
}

fn realm_of(m: &Message) -> Option<String> {
    m.www_authenticate()
        .ok()
        .and_then(|c| c.first())
        .or_else(|| m.proxy_authenticate().ok().and_then(|c| c.first()))
        .and_then(|c| c.realm())
        .map(str::to_owned)
}

fn is_challenge(m: &Message) -> bool {
    matches!(m.status(), Some(401 | 407))
}

fn status_failure(m: &Message) -> Failure {
    Failure::Status {
        code: m.status().unwrap_or(0),
        reason: String::from_utf8_lossy(m.reason().unwrap_or_default()).into_owned(),
    }
}

/// Whether an OPTIONS answer shows a PBX that takes our calls: 2xx, or 405
/// (OPTIONS not allowed, but the PBX answered us).
fn options_ok(m: &Message) -> bool {
    matches!(m.status(), Some(200..=299 | 405))
}

impl TestReport {
    /// Builds the report from what the driver observed. A step after a failed
    /// one is [`StepResult::Skipped`].
    pub fn from_observations(target: TargetAddr, obs: Observations) -> TestReport {
        let mut steps = Vec::with_capacity(5);
        let push = |steps: &mut Vec<(Step, StepResult)>, step, r: StepResult| steps.push((step, r));
        let any_failed = |steps: &Vec<(Step, StepResult)>| {
            steps
                .iter()
                .any(|(_, r)| matches!(r, StepResult::Failed(_)))
        };
        const EARLIER: &str = "an earlier step failed";
        match obs.resolve {
            Ok(addrs) if !addrs.is_empty() => {
                let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                push(&mut steps, Step::Resolve, StepResult::Ok(list.join(", ")));
            }
            Ok(_) => push(
                &mut steps,
                Step::Resolve,
                StepResult::Failed(Failure::NameNotResolved),
            ),
            Err(e) => push(&mut steps, Step::Resolve, StepResult::Failed(e.into())),
        }
        let connect = if target.transport == Transport::Udp {
            StepResult::Skipped("UDP has no connection")
        } else if any_failed(&steps) {
            StepResult::Skipped(EARLIER)
        } else {
            match obs.connect {
                Some(Ok(())) => StepResult::Ok("connected".into()),
                Some(Err(e)) => StepResult::Failed(e.into()),
                None => StepResult::Skipped("not run"),
            }
        };
        push(&mut steps, Step::Connect, connect);
        let tls = if target.transport != Transport::Tls {
            StepResult::Skipped("not a TLS target")
        } else if any_failed(&steps) {
            StepResult::Skipped(EARLIER)
        } else {
            match obs.tls {
                Some(Ok(detail)) => {
                    StepResult::Ok(format!("handshake and certificate accepted: {detail}"))
                }
                Some(Err(failure)) => StepResult::Failed(Failure::Tls(Box::new(failure))),
                None => StepResult::Skipped("not run"),
            }
        };
        push(&mut steps, Step::Tls, tls);
        let (options, auth) = if any_failed(&steps) {
            (StepResult::Skipped(EARLIER), StepResult::Skipped(EARLIER))
        } else {
            match obs.options {
                None => (
                    StepResult::Skipped("not run"),
                    StepResult::Skipped("not run"),
                ),
                Some(OptionsObservation::Failed(e)) => {
                    (StepResult::Failed(e.into()), StepResult::Skipped(EARLIER))
                }
                Some(OptionsObservation::Answered { first, after_auth }) => {
                    interpret_options(&first, after_auth.as_ref())
                }
            }
        };
        push(&mut steps, Step::Options, options);
        push(&mut steps, Step::Auth, auth);
        TestReport { target, steps }
    }

    /// The first failed step.
    pub fn first_failure(&self) -> Option<(Step, &Failure)> {
        self.steps.iter().find_map(|(s, r)| match r {
            StepResult::Failed(f) => Some((*s, f)),
            _ => None,
        })
    }

    /// Whether no step failed.
    pub fn is_ok(&self) -> bool {
        self.first_failure().is_none()
    }
}

/// The OPTIONS and Auth step results for an OPTIONS answer (`first`) and, if
/// it was a challenge the driver answered, the answer to that (`after_auth`).
///
/// * `2xx` (or `405`: OPTIONS not allowed, but the PBX answered): passed, no auth step.
/// * `401`/`407`: OPTIONS passed (the PBX is there); then no answer →
///   [`Failure::AuthRequired`], challenged again →
///   [`Failure::CredentialsRejected`], `2xx`/`405` → auth passed, other →
///   [`Failure::Status`] at the auth step.
/// * Anything else: [`Failure::Status`] at the OPTIONS step.
pub fn interpret_options(
    first: &Message,
    after_auth: Option<&Message>,
) -> (StepResult, StepResult) {
    let answered = |m: &Message| {
        format!(
            "answered {} {}",
            m.status().unwrap_or(0),
            String::from_utf8_lossy(m.reason().unwrap_or_default())
        )
    };
    if is_challenge(first) {
        let realm = realm_of(first);
        let auth = match after_auth {
            None => StepResult::Failed(Failure::AuthRequired { realm }),
            Some(m) if is_challenge(m) => StepResult::Failed(Failure::CredentialsRejected {
                realm: realm_of(m).or(realm),
            }),
            Some(m) if options_ok(m) => StepResult::Ok(answered(m)),
            Some(m) => StepResult::Failed(status_failure(m)),
        };
        return (StepResult::Ok(answered(first)), auth);
    }
    if options_ok(first) {
        (
            StepResult::Ok(answered(first)),
            StepResult::Skipped("no challenge"),
        )
    } else {
        (
            StepResult::Failed(status_failure(first)),
            StepResult::Skipped("an earlier step failed"),
        )
    }
}

impl fmt::Display for TestReport {
    /// One line per step, then the likely fix for the first failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "connection test for {}", self.target)?;
        for (step, r) in &self.steps {
            match r {
                StepResult::Ok(d) => writeln!(f, "  [ok]   {step}: {d}")?,
                StepResult::Failed(e) => writeln!(f, "  [FAIL] {step}: {e}")?,
                StepResult::Skipped(why) => writeln!(f, "  [skip] {step}: {why}")?,
            }
        }
        match self.first_failure() {
            Some((step, e)) => write!(f, "likely fix: {}", e.hint(step)),
            None => f.write_str("the target is reachable and answers"),
        }
    }
}

// The cases include TLS failures, which exist only with the transport.
#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use siplink_message::{HeaderName, MessageBuilder, Method};

    fn options() -> Message {
        MessageBuilder::request(Method::Options, "sip:192.0.2.10:5060")
            .header(HeaderName::Via, "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKt")
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::To, "<sip:192.0.2.10:5060>")
            .header(HeaderName::From, "<sip:ping@proxy.example>;tag=1")
            .header(HeaderName::CallId, "t1")
            .header(HeaderName::CSeq, "1 OPTIONS")
            .build()
            .unwrap()
    }

    fn resp(status: u16) -> Message {
        options().response(status).build().unwrap()
    }

    fn challenge(status: u16, realm: &str) -> Message {
        let h = if status == 401 {
            HeaderName::WwwAuthenticate
        } else {
            HeaderName::ProxyAuthenticate
        };
        options()
            .response(status)
            .header(h, format!("Digest realm=\"{realm}\", nonce=\"n\""))
            .build()
            .unwrap()
    }

    fn target(t: Transport) -> TargetAddr {
        TargetAddr::new("pbx.example", 5061, t)
    }

    fn ip() -> Result<Vec<IpAddr>, NetFailure> {
        Ok(vec!["192.0.2.10".parse().unwrap()])
    }

    fn expired() -> TlsFailure {
        TlsFailure {
            problem: siplink_transport::TlsProblem::Expired,
            detail: "certificate expired".into(),
            name: "pbx.example".into(),
            certificate: None,
        }
    }

    fn answered(first: Message, after_auth: Option<Message>) -> Option<OptionsObservation> {
        Some(OptionsObservation::Answered { first, after_auth })
    }

    #[test]
    fn all_good_over_tls() {
        let r = TestReport::from_observations(
            target(Transport::Tls),
            Observations {
                resolve: ip(),
                connect: Some(Ok(())),
                tls: Some(Ok("TLSv1_3".into())),
                options: answered(resp(200), None),
            },
        );
        assert!(r.is_ok());
        let kinds: Vec<Step> = r.steps.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            kinds,
            [
                Step::Resolve,
                Step::Connect,
                Step::Tls,
                Step::Options,
                Step::Auth
            ]
        );
        assert!(matches!(r.steps[4].1, StepResult::Skipped("no challenge")));
        let text = r.to_string();
        assert!(text.contains("[ok]   OPTIONS: answered 200 OK"), "{text}");
        assert!(text.ends_with("the target is reachable and answers"));
    }

    #[test]
    fn each_step_can_be_the_one_that_failed() {
        let cases: Vec<(Transport, Observations, Step, Failure, &str)> = vec![
            (
                Transport::Udp,
                Observations {
                    resolve: Err(NetFailure::NotFound),
                    connect: None,
                    tls: None,
                    options: None,
                },
                Step::Resolve,
                Failure::NameNotResolved,
                "DNS",
            ),
            (
                Transport::Tcp,
                Observations {
                    resolve: ip(),
                    connect: Some(Err(NetFailure::Refused)),
                    tls: None,
                    options: None,
                },
                Step::Connect,
                Failure::Refused,
                "port",
            ),
            (
                Transport::Tcp,
                Observations {
                    resolve: ip(),
                    connect: Some(Err(NetFailure::Unreachable("no route to host".into()))),
                    tls: None,
                    options: None,
                },
                Step::Connect,
                Failure::Unreachable {
                    detail: "no route to host".into(),
                },
                "firewall",
            ),
            (
                Transport::Tls,
                Observations {
                    resolve: ip(),
                    connect: Some(Ok(())),
                    tls: Some(Err(expired())),
                    options: None,
                },
                Step::Tls,
                Failure::Tls(Box::new(expired())),
                "renew the certificate",
            ),
            (
                Transport::Udp,
                Observations {
                    resolve: ip(),
                    connect: None,
                    tls: None,
                    options: Some(OptionsObservation::Failed(NetFailure::Timeout)),
                },
                Step::Options,
                Failure::Timeout,
                "offline",
            ),
            (
                Transport::Udp,
                Observations {
                    resolve: ip(),
                    connect: None,
                    tls: None,
                    options: answered(resp(403), None),
                },
                Step::Options,
                Failure::Status {
                    code: 403,
                    reason: "Forbidden".into(),
                },
                "IP address",
            ),
            (
                Transport::Udp,
                Observations {
                    resolve: ip(),
                    connect: None,
                    tls: None,
                    options: answered(challenge(401, "pbx"), None),
                },
                Step::Auth,
                Failure::AuthRequired {
                    realm: Some("pbx".into()),
                },
                "user name and password",
            ),
            (
                Transport::Udp,
                Observations {
                    resolve: ip(),
                    connect: None,
                    tls: None,
                    options: answered(challenge(407, "carrier"), Some(challenge(407, "carrier"))),
                },
                Step::Auth,
                Failure::CredentialsRejected {
                    realm: Some("carrier".into()),
                },
                "password",
            ),
        ];
        for (t, obs, step, failure, hint) in cases {
            let r = TestReport::from_observations(target(t), obs);
            let (s, f) = r.first_failure().expect("a failure");
            assert_eq!((s, f), (step, &failure));
            // Every later step is skipped.
            let k = r.steps.iter().position(|(x, _)| *x == step).unwrap();
            assert!(
                r.steps[k + 1..]
                    .iter()
                    .all(|(_, r)| matches!(r, StepResult::Skipped(_)))
            );
            let text = r.to_string();
            assert!(text.contains("[FAIL]"), "{text}");
            assert!(text.contains(hint), "{hint}: {text}");
        }
    }

    #[test]
    fn options_interpretation() {
        let (o, a) = interpret_options(&resp(405), None);
        assert!(matches!(o, StepResult::Ok(_)));
        assert!(matches!(a, StepResult::Skipped(_)));
        let (o, a) = interpret_options(&challenge(401, "r"), Some(&resp(200)));
        assert!(matches!(o, StepResult::Ok(_)));
        assert!(matches!(a, StepResult::Ok(_)));
        let (_, a) = interpret_options(&challenge(401, "r"), Some(&resp(404)));
        assert!(matches!(
            a,
            StepResult::Failed(Failure::Status { code: 404, .. })
        ));
        let (o, _) = interpret_options(&resp(503), None);
        let StepResult::Failed(f) = o else { panic!() };
        assert!(f.hint(Step::Options).contains("overloaded"));
        // Resolution that yields nothing is a name failure, not a pass.
        let r = TestReport::from_observations(
            target(Transport::Udp),
            Observations {
                resolve: Ok(vec![]),
                connect: None,
                tls: None,
                options: None,
            },
        );
        assert_eq!(r.first_failure().unwrap().1, &Failure::NameNotResolved);
    }
}
