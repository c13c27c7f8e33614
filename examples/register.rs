//! Register to a PBX as a phone would, print every state change, and
//! unregister on Ctrl-C.
//!
//! ```text
//! cargo run --example register -- --registrar sip:pbx.example.com --user 1001 --password secret
//!     [--domain example.com] [--auth-user 1001] [--transport udp|tcp|tls]
//!     [--expires 3600] [--listen 0.0.0.0:0] [--contact-host 203.0.113.7]
//! ```
//!
//! Output, one line per change:
//!
//! ```text
//! listening on udp 0.0.0.0:40123, contact sip:1001@192.0.2.10:40123
//! Registering
//! Registered for 3600 s (contact sip:1001@192.0.2.10:40123, registrar 198.51.100.5:5060)
//! ^C unregistering...
//! Unregistered
//! ```
//!
//! Exits with 1 when the registration fails for good (credentials rejected,
//! not found...), 2 on bad arguments.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use siplink::auth::ClientCredentials;
use siplink::message::uri::SipUri;
use siplink::register::{
    RegistrationConfig, RegistrationService, ServiceConfig, State, Status, Transport,
};
use siplink::transaction::{Endpoint, EndpointConfig};
use siplink::transport::{Protocol, TransportConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
    Tls,
}

/// Keep a SIP user registered with a registrar until Ctrl-C.
#[derive(Debug, Parser)]
struct Args {
    /// The registrar (Request-URI of the REGISTERs), e.g. `sip:pbx.example.com`.
    #[arg(long)]
    registrar: String,
    /// The user (AOR user part and Contact user).
    #[arg(long)]
    user: String,
    /// The password for digest authentication (none: register without).
    #[arg(long)]
    password: Option<String>,
    /// The user name for authentication, if not `--user`.
    #[arg(long)]
    auth_user: Option<String>,
    /// The AOR domain (default: the registrar's host).
    #[arg(long)]
    domain: Option<String>,
    /// Transport (default: the registrar URI's, else UDP).
    #[arg(long, value_enum)]
    transport: Option<TransportArg>,
    /// Requested expiry in seconds.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Local address to listen on (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// The host to put in the Contact (default: the local address that routes
    /// to the registrar).
    #[arg(long)]
    contact_host: Option<String>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("register: {msg}");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let registrar = match SipUri::parse(args.registrar.clone()) {
        Ok(u) => u,
        Err(e) => return fail(format!("--registrar: {e}")),
    };
    let protocol = match args.transport {
        Some(TransportArg::Udp) => Transport::Udp,
        Some(TransportArg::Tcp) => Transport::Tcp,
        Some(TransportArg::Tls) => Transport::Tls,
        None => match registrar.transport().as_deref() {
            Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            Some(t) if t.eq_ignore_ascii_case("tls") => Transport::Tls,
            _ if registrar.is_secure() => Transport::Tls,
            _ => Transport::Udp,
        },
    };
    let domain = args
        .domain
        .clone()
        .unwrap_or_else(|| registrar.host().to_string());
    let aor = match SipUri::parse(format!("sip:{}@{domain}", args.user)) {
        Ok(u) => u,
        Err(e) => return fail(format!("AOR: {e}")),
    };

    let (transport, incoming) = siplink::transport::Transport::new(TransportConfig::default());
    // TLS connections are outgoing only; the listener is for UDP/TCP requests
    // from the registrar (and for UDP responses).
    let listen_protocol = if protocol == Transport::Udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let local = match transport.listen(listen_protocol, args.listen).await {
        Ok(a) => a,
        Err(e) => return fail(format!("listen on {}: {e}", args.listen)),
    };
    let contact_host = match args.contact_host.clone() {
        Some(h) => h,
        None => route_source(&transport, &registrar, local.ip()).await,
    };
    let mut cfg = RegistrationConfig::new(
        registrar,
        aor,
        args.user.clone(),
        contact_host.clone(),
        local.port(),
        protocol,
    );
    cfg.expires = args.expires;
    cfg.user_agent = Some("siplink-register-example".into());
    if let Some(pw) = &args.password {
        let user = args.auth_user.clone().unwrap_or_else(|| args.user.clone());
        cfg = cfg.with_credentials(ClientCredentials::password(user, pw.clone()));
    }

    let (endpoint, _requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let (service, _events) = RegistrationService::start(endpoint.clone(), ServiceConfig::default());
    println!(
        "listening on {listen_protocol} {local}, contact sip:{}@{contact_host}:{}",
        args.user,
        local.port()
    );
    let (_id, mut status) = match service.add(cfg).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };

    let mut code = ExitCode::SUCCESS;
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                let s = status.borrow_and_update().clone();
                print_status(&s);
                if let State::Failed { .. } = s.state {
                    code = ExitCode::from(1);
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                println!("unregistering...");
                break;
            }
        }
    }
    service.shutdown().await;
    println!("Unregistered");
    endpoint.shutdown().await;
    transport.shutdown().await;
    code
}

fn print_status(s: &Status) {
    let now = tokio::time::Instant::now().into_std();
    match &s.state {
        State::Registered { expires_at } => {
            let secs = expires_at.saturating_duration_since(now).as_secs();
            match &s.binding {
                Some(b) => println!(
                    "Registered for {secs} s (contact {}, registrar {})",
                    b.contact, b.target.addr
                ),
                None => println!("Registered for {secs} s"),
            }
        }
        State::Retrying { reason, at } => println!(
            "Retrying in {:.1} s ({reason})",
            at.saturating_duration_since(now).as_secs_f64()
        ),
        State::Failed { reason } => println!("Failed: {reason}"),
        other => println!("{other:?}"),
    }
}

/// The local address that routes to the registrar (the usual Contact host
/// behind no NAT), or `fallback` when the registrar cannot be resolved.
async fn route_source(
    transport: &siplink::transport::Transport,
    registrar: &SipUri,
    fallback: IpAddr,
) -> String {
    let host = registrar.host().to_string();
    let peer = match registrar.host().ip() {
        Some(ip) => Some(ip),
        None => transport
            .resolve(&host, 5060, Protocol::Udp)
            .await
            .ok()
            .and_then(|t| t.first().map(|t| t.addr.ip())),
    };
    let ip = peer
        .and_then(|p| {
            let bind: SocketAddr = if p.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = UdpSocket::bind(bind).ok()?;
            s.connect((p, 5060)).ok()?;
            s.local_addr().ok().map(|a| a.ip())
        })
        .unwrap_or(fallback);
    ip.to_string()
}
