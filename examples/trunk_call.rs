//! `trunk_call`: place one call through a SIP trunk (a PBX at a static
//! address), print every response, ACK the answer and hang up.
//!
//! ```text
//! cargo run --example trunk_call -- --trunk 127.0.0.1:5080 --to 4001
//! cargo run --example trunk_call -- --trunk pbx.example.com:5061 --transport tls \
//!     --user trunk1 --password secret --from 1001 --to 4001 --hold 5
//! cargo run --example trunk_call -- --trunk 127.0.0.1:5080 --check   # test connection only
//! ```
//!
//! The INVITE carries a minimal SDP offer (PCMU; no media is sent). A
//! `401`/`407` is answered with `--user`/`--password`. With `--check` the
//! example runs the trunk's connection test (resolve, connect, TLS, OPTIONS,
//! auth) and prints its report instead of calling.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use siplink::auth::ClientCredentials;
use siplink::message::{HeaderName, MessageBuilder, Method};
use siplink::transaction::{Endpoint, EndpointConfig, new_branch};
use siplink::transport::{Roots, TlsClientConfig, Transport, TransportConfig};
use siplink::trunk::{
    CallEvent, Target, TestOptions, Transport as Proto, Trunk, TrunkConfig, in_dialog_request,
    test_connection,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
    Tls,
}

/// Place one call through a SIP trunk.
#[derive(Debug, Parser)]
struct Args {
    /// The PBX: host:port (IPv6 as [addr]:port).
    #[arg(long)]
    trunk: String,
    /// The number or user to call.
    #[arg(long, default_value = "4001")]
    to: String,
    /// The caller's user (From).
    #[arg(long, default_value = "siplink")]
    from: String,
    /// Transport to the PBX.
    #[arg(long, value_enum, default_value = "udp")]
    transport: TransportArg,
    /// User name for the PBX's digest challenges.
    #[arg(long)]
    user: Option<String>,
    /// Password for the PBX's digest challenges.
    #[arg(long)]
    password: Option<String>,
    /// Seconds to stay in the call before the BYE.
    #[arg(long, default_value_t = 3)]
    hold: u64,
    /// PEM file of CA certificates to trust for TLS (default: the system's).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Only run the connection test and print its report.
    #[arg(long)]
    check: bool,
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some((a.ip().to_string(), a.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (host, port) = split_host_port(&args.trunk).ok_or("--trunk must be host:port")?;
    let protocol = match args.transport {
        TransportArg::Udp => Proto::Udp,
        TransportArg::Tcp => Proto::Tcp,
        TransportArg::Tls => Proto::Tls,
    };
    let mut config = TrunkConfig::new("trunk", vec![Target::new(host, port, protocol)]);
    config.health.enabled = false;
    if let (Some(u), Some(p)) = (&args.user, &args.password) {
        config.credentials = Some(ClientCredentials::password(u, p));
    }
    let mut transport_config = TransportConfig::default();
    if protocol == Proto::Tls {
        let pem = args.ca.as_ref().map(std::fs::read).transpose()?;
        let roots = pem.as_deref().map_or(Roots::System, Roots::Pem);
        transport_config.tls_client = Some(TlsClientConfig::new(roots, None)?);
    }

    if args.check {
        let options = TestOptions {
            transport: transport_config,
            ..TestOptions::default()
        };
        let report = test_connection(&config, 0, options).await?;
        println!("{report}");
        return Ok(if report.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let (transport, incoming) = Transport::new(transport_config);
    let any = if config.targets[0].addr.host.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    transport.listen(Proto::Udp, any.parse()?).await?;
    let (endpoint, _requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let trunk = Trunk::new(config, endpoint.clone())?;

    let sdp = "v=0\r\no=siplink 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = MessageBuilder::request(Method::Invite, format!("sip:{}@{}", args.to, args.trunk))
        .header(HeaderName::MaxForwards, 70)
        .header(
            HeaderName::To,
            format_args!("<sip:{}@{}>", args.to, args.trunk),
        )
        .header(
            HeaderName::From,
            format_args!(
                "<sip:{}@siplink.invalid>;tag={}",
                args.from,
                &new_branch()[7..17]
            ),
        )
        .header(
            HeaderName::CallId,
            format_args!("{}@siplink", &new_branch()[7..31]),
        )
        .header(HeaderName::CSeq, "1 INVITE")
        .header(
            HeaderName::Contact,
            format_args!("<sip:{}@siplink.invalid>", args.from),
        )
        .body("application/sdp", sdp.as_bytes().to_vec())
        .build()?;

    let mut call = trunk.call(invite.clone()).await?;
    let status = loop {
        let Some(event) = call.next().await else {
            return Err("the call ended without a final response".into());
        };
        match event {
            CallEvent::Provisional(m) => println!("<- {}", status_line(&m)),
            CallEvent::TargetFailed { target, reason } => {
                println!("   target {target} failed: {reason}")
            }
            CallEvent::Failed(f) => println!("   the trunk ended the call: {f}"),
            CallEvent::Additional2xx { response, .. } => {
                println!("<- {} (further answer, ignored)", status_line(&response))
            }
            CallEvent::Final { response, dialog } => {
                println!("<- {}", status_line(&response));
                let status = response.status().unwrap_or(0);
                if let Some(dialog) = dialog {
                    let ack = in_dialog_request(Method::Ack, &invite, &response, 1)?;
                    dialog.send_ack(ack.clone()).await?;
                    // The PBX retransmits its 2xx if our ACK was lost: ACK it again.
                    let again = dialog.clone();
                    tokio::spawn(async move {
                        while let Some(event) = call.next().await {
                            if let CallEvent::Additional2xx { .. } = event {
                                let _ = again.send_ack(ack.clone()).await;
                            }
                        }
                    });
                    println!("-> ACK; holding {} s", args.hold);
                    tokio::time::sleep(Duration::from_secs(args.hold)).await;
                    let bye = in_dialog_request(Method::Bye, &invite, &response, 2)?;
                    println!("-> BYE");
                    let mut tx = dialog.send_request(bye).await?;
                    match tx.final_response().await {
                        Ok(m) => println!("<- {} (BYE)", status_line(&m)),
                        Err(e) => println!("   BYE failed: {e}"),
                    }
                }
                break status;
            }
        }
    };
    endpoint.shutdown().await;
    transport.shutdown().await;
    Ok(if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status_line(m: &siplink::message::Message) -> String {
    format!(
        "{} {}",
        m.status().unwrap_or(0),
        String::from_utf8_lossy(m.reason().unwrap_or_default())
    )
}
