//! "Test connection" on the network: resolve, connect, TLS, OPTIONS (and the
//! digest answer), observed step by step and turned into a [`TestReport`].

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use siplink_message::Message;
use siplink_message::uri::Host;
use siplink_transaction::{Endpoint, EndpointConfig};
use siplink_transport::{Clock, Protocol, Transport, TransportConfig};

use crate::call::DialogMap;
use crate::config::TrunkConfig;
use crate::driver::{ProbeResult, resolve, run_options};
use crate::error::{Error, Result};
use crate::health::{HealthMonitor, HealthOutput};
use crate::report::{NetFailure, Observations, OptionsObservation, TestReport};

/// Settings of [`test_connection`].
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The transport used for the test (a fresh one, shut down afterwards):
    /// its TLS client configuration decides which certificates are trusted,
    /// its `connect_timeout` bounds the connect and TLS steps.
    pub transport: TransportConfig,
    /// Longest wait for each OPTIONS final response. Default 5 s.
    pub options_timeout: Duration,
}

impl Default for TestOptions {
    fn default() -> Self {
        let transport = TransportConfig {
            connect_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_millis(200),
            ..TransportConfig::default()
        };
        TestOptions {
            transport,
            options_timeout: Duration::from_secs(5),
        }
    }
}

/// Tests the connection to target `target` of `config` (its next hop: the
/// outbound proxy if one is configured) step by step: name resolution, the
/// TCP connection and TLS handshake with certificate check (TCP/TLS), then an
/// OPTIONS request like the health probes send; a `401`/`407` is answered
/// once with the trunk's credentials. Returns the [`TestReport`] that says
/// which step failed and why.
///
/// Runs on its own short-lived transport (nothing is shared with a running
/// [`Trunk`](crate::Trunk)). Takes at most about `connect_timeout` + 2 ×
/// `options_timeout`. Errors only for an unknown target index or a
/// configuration that fails [`TrunkConfig::validate`].
pub async fn test_connection(
    config: &TrunkConfig,
    target: usize,
    options: TestOptions,
) -> Result<TestReport> {
    config.validate()?;
    let t = config
        .targets
        .get(target)
        .ok_or(Error::Config("no trunk target with this index"))?;
    let hop = config
        .outbound_proxy
        .clone()
        .unwrap_or_else(|| t.addr.clone());
    let mut obs = Observations {
        resolve: Ok(Vec::new()),
        connect: None,
        tls: None,
        options: None,
    };
    let (transport, incoming) = Transport::new(options.transport.clone());
    let report = |obs| TestReport::from_observations(hop.clone(), obs);

    // 1. Resolve.
    let dest = match resolve(&transport, &hop).await {
        Ok(d) => {
            obs.resolve = Ok(resolved_ips(&transport, &hop, d.addr.ip()).await);
            d
        }
        Err(_) => {
            obs.resolve = Err(NetFailure::NotFound);
            transport.shutdown().await;
            return Ok(report(obs));
        }
    };

    // 2. Connect (+ TLS), or a UDP socket of the right family.
    if hop.transport == Protocol::Udp {
        let bind = match dest.addr.ip() {
            ip if ip.is_loopback() => SocketAddr::new(ip, 0),
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        };
        if let Err(e) = transport.listen(Protocol::Udp, bind).await {
            obs.options = Some(OptionsObservation::Failed(NetFailure::Unreachable(
                e.to_string(),
            )));
            transport.shutdown().await;
            return Ok(report(obs));
        }
    } else if hop.transport == Protocol::Tls {
        // A handshake of its own, to see the certificate even when it is
        // refused; OPTIONS then opens the transport's connection.
        match transport.probe_tls(&dest).await {
            Ok(peer) => {
                obs.connect = Some(Ok(()));
                obs.tls = Some(Ok(peer.to_string()));
            }
            Err(siplink_transport::Error::Tls { failure, .. }) => {
                obs.connect = Some(Ok(()));
                obs.tls = Some(Err(*failure));
            }
            Err(e) => obs.connect = Some(Err(net_failure(&e))),
        }
        if !matches!(obs.tls, Some(Ok(_))) {
            transport.shutdown().await;
            return Ok(report(obs));
        }
    } else {
        match transport.send_bytes(dest.clone(), Bytes::new()).await {
            Ok(_) => obs.connect = Some(Ok(())),
            Err(e) => obs.connect = Some(Err(net_failure(&e))),
        }
        if !matches!(obs.connect, Some(Ok(()))) {
            transport.shutdown().await;
            return Ok(report(obs));
        }
    }

    // 3. OPTIONS, and the digest answer.
    let endpoint_config = EndpointConfig {
        shutdown_grace: Duration::from_millis(100),
        ..EndpointConfig::default()
    };
    let (endpoint, _requests) = Endpoint::start(transport.clone(), incoming, endpoint_config);
    obs.options = Some(options_step(config, target, &endpoint, &options).await);
    endpoint.shutdown().await;
    transport.shutdown().await;
    Ok(report(obs))
}

/// Every address of the hop's host (for the report), the one used first.
async fn resolved_ips(transport: &Transport, hop: &crate::TargetAddr, used: IpAddr) -> Vec<IpAddr> {
    let mut ips = vec![used];
    if Host::parse(&hop.host).ok().and_then(|h| h.ip()).is_none()
        && let Ok(all) = transport.resolve(&hop.host, hop.port, hop.transport).await
    {
        ips.extend(all.iter().map(|t| t.addr.ip()).filter(|ip| *ip != used));
    }
    ips
}

async fn options_step(
    config: &TrunkConfig,
    target: usize,
    endpoint: &Endpoint,
    options: &TestOptions,
) -> OptionsObservation {
    let mut cfg = config.clone();
    cfg.health.enabled = true;
    let clock = Clock::new();
    let mut monitor =
        HealthMonitor::new(Arc::new(cfg), "0.0.0.0", StdRng::from_os_rng(), clock.now());
    monitor.handle_timeout(clock.now());
    let Some(probe) = std::iter::from_fn(|| monitor.poll_output()).find_map(|o| match o {
        HealthOutput::Probe(p) if p.target == target => Some(p),
        _ => None,
    }) else {
        return OptionsObservation::Failed(NetFailure::Unreachable(
            "cannot build the OPTIONS request for this target".into(),
        ));
    };
    let first = match send_options(endpoint, probe.request, &probe.next_hop, options).await {
        Ok(m) => m,
        Err(f) => return OptionsObservation::Failed(f),
    };
    let after_auth = match (&config.credentials, first.0.status()) {
        (Some(creds), Some(401 | 407)) => {
            let mut map = DialogMap::for_auth(config.name.clone(), creds.clone());
            match map.answer_challenge(&first.1, &first.0) {
                Ok(req) => send_options(endpoint, req, &probe.next_hop, options)
                    .await
                    .ok()
                    .map(|(m, _)| m),
                Err(_) => None,
            }
        }
        _ => None,
    };
    OptionsObservation::Answered {
        first: first.0,
        after_auth,
    }
}

/// One OPTIONS: its final response and the request as sent.
async fn send_options(
    endpoint: &Endpoint,
    request: Message,
    hop: &crate::TargetAddr,
    options: &TestOptions,
) -> std::result::Result<(Message, Message), NetFailure> {
    let sent = request.clone();
    match tokio::time::timeout(options.options_timeout, run_options(endpoint, request, hop)).await {
        Err(_) => Err(NetFailure::Timeout),
        // The request as built (the endpoint only stamps the sent-by): a
        // digest answer repeats it with CSeq + 1 and a new branch.
        Ok(ProbeResult::Response(m)) => Ok((m, sent)),
        Ok(ProbeResult::Timeout) => Err(NetFailure::Timeout),
        Ok(ProbeResult::TransportError) => Err(NetFailure::Unreachable(
            "the transport failed to send the OPTIONS request".into(),
        )),
    }
}

/// The report's view of a transport error while connecting.
fn net_failure(e: &siplink_transport::Error) -> NetFailure {
    match e {
        siplink_transport::Error::ConnectTimeout(_) => NetFailure::Timeout,
        siplink_transport::Error::Io { source, .. } => match source.kind() {
            ErrorKind::ConnectionRefused => NetFailure::Refused,
            ErrorKind::TimedOut => NetFailure::Timeout,
            _ => NetFailure::Unreachable(e.to_string()),
        },
        siplink_transport::Error::Resolve { .. } => NetFailure::NotFound,
        other => NetFailure::Unreachable(other.to_string()),
    }
}
