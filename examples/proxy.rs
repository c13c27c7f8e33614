//! The siplink example proxy: a thin binary over `siplink::proxy`.
//!
//! ```text
//! cargo run --release --example proxy                      # built-in demo configuration
//! cargo run --example proxy -- --config examples/proxy-asterisk.toml
//! cargo run --example proxy -- --config FILE check         # validate and exit
//! cargo run --example proxy -- --config FILE test-connection NAME
//! cargo run --example proxy -- print-demo-config           # the built-in configuration
//! ```
//!
//! Logs go to stderr (`RUST_LOG=debug` for more). SIGHUP reloads the file;
//! Ctrl-C unregisters and stops.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use siplink::proxy::{Config, Proxy};

#[derive(Parser)]
#[command(about = "siplink example SIP proxy: phones <-> connections to PBXs")]
struct Args {
    /// Configuration file (TOML). Without it, the built-in demo configuration.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration and exit.
    Check,
    /// Check that a connection's PBX is reachable and its credentials work.
    TestConnection {
        /// The connection's name.
        name: String,
    },
    /// Print the built-in demo configuration.
    PrintDemoConfig,
}

fn load(path: &Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::demo()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match args.command.unwrap_or(Command::Run) {
        Command::PrintDemoConfig => {
            print!("{}", siplink::proxy::DEMO_CONFIG);
            ExitCode::SUCCESS
        }
        Command::Check => {
            println!(
                "configuration OK: {} listener(s), {} user(s), {} connection(s)",
                config.listeners.len(),
                config.users.len(),
                config.connections.len()
            );
            ExitCode::SUCCESS
        }
        Command::TestConnection { name } => {
            match siplink::proxy::test::test_connection(&config, &name).await {
                Ok(report) => {
                    println!("{report}");
                    if report.is_ok() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run => run(config, args.config).await,
    }
}

async fn run(config: Config, path: Option<PathBuf>) -> ExitCode {
    let status_addr = config.proxy.status_listen;
    let demo = path.is_none();
    for w in config.warnings() {
        eprintln!("warning: {w}");
    }
    let proxy = match Proxy::start(config.clone()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "siplink proxy running{}",
        if demo {
            " on the built-in demo configuration"
        } else {
            ""
        }
    );
    for (protocol, addr) in proxy.listeners() {
        println!("  listening on {protocol} {addr}");
    }
    if let Some(addr) = status_addr {
        match proxy.serve_status(addr).await {
            Ok(a) => println!("  status: curl http://{a}/status   test: curl http://{a}/test/NAME"),
            Err(e) => eprintln!("  status endpoint: {e}"),
        }
    }
    let domain = config.proxy.domains.first().cloned().unwrap_or_default();
    let udp = proxy
        .listeners()
        .into_iter()
        .find(|(p, _)| p.via_token() == "UDP")
        .map(|(_, a)| a);
    let ws = proxy
        .listeners()
        .into_iter()
        .find(|(p, _)| p.is_websocket())
        .map(|(_, a)| a);
    if let Some(u) = config.users.first() {
        let pw = u.password.as_deref().unwrap_or("<password>");
        if let Some(a) = udp {
            println!("Point a phone at it:");
            println!(
                "  SIPp:    sipp -sn uac -s 4001 -au {} -ap {pw} {a}",
                u.name
            );
            println!(
                "  baresip: accounts line  <sip:{}@{domain};transport=udp>;auth_pass={pw};outbound=\"sip:{a}\"",
                u.name
            );
        }
        if let Some(a) = ws {
            println!(
                "  browser (JsSIP/SIP.js): ws://{a}  user sip:{}@{domain}  password {pw}",
                u.name
            );
        }
    }
    for c in &config.connections {
        println!(
            "  connection {:?} ({}) patterns {:?}",
            c.name,
            c.kind,
            c.dial_patterns
                .iter()
                .map(|p| p.pattern())
                .collect::<Vec<_>>()
        );
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                match load(&path) {
                    Ok(c) => match proxy.reload(c).await {
                        Ok(()) => println!("configuration reloaded"),
                        Err(e) => eprintln!("reload refused: {e}"),
                    },
                    Err(e) => eprintln!("reload refused: {e}"),
                }
            }
        }
    }
    println!("shutting down: unregistering...");
    proxy.shutdown().await;
    ExitCode::SUCCESS
}
