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

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// A shipped SIPp scenario (examples/sipp/), by absolute path.
fn scenario(name: &str) -> String {
    format!("{}/examples/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// SIPp commands for one call through the first trunk with a literal
/// address: a SIPp PBX answering on the trunk's address, and a phone
/// calling a number that the trunk's first dial pattern matches.
fn sipp_call(
    config: &Config,
    user: &str,
    password: &str,
    domain: &str,
    proxy: std::net::SocketAddr,
) -> Option<Vec<String>> {
    let (conn, target, number) = config.connections.iter().find_map(|c| {
        if !c.enabled || c.kind != siplink::proxy::ConnectionKind::Trunk {
            return None;
        }
        let target = c
            .targets()
            .ok()?
            .into_iter()
            .find(|t| t.host.parse::<std::net::IpAddr>().is_ok())?;
        let number = c
            .dial_patterns
            .iter()
            .find_map(|p| sample_number(p.pattern()))?;
        Some((c, target, number))
    })?;
    let transport = target.transport.to_string().to_ascii_lowercase();
    let t = match transport.as_str() {
        "udp" => "u1",
        "tcp" => "t1",
        _ => return None,
    };
    Some(vec![
        format!(
            "  SIPp, a call through {:?} (number {number}): first a PBX on its address,",
            conn.name
        ),
        format!(
            // No `-m 1`: the proxy's OPTIONS probes also count as SIPp calls
            // (answered by -aa), so one call's limit could be spent on a probe.
            "           sipp -sf {} -aa -t {t} -i {} -p {}",
            scenario("pbx_answer.xml"),
            target.host,
            target.port
        ),
        "           then the phone (answers the 407, follows Record-Route):".to_owned(),
        format!(
            "           sipp -sf {} -s {number} -key user {user} -key domain {domain} -au {user} -ap {password} -auth_uri {number}@{domain} -i {} -m 1 {proxy}",
            scenario("call_auth.xml"),
            proxy.ip()
        ),
    ])
}

/// A number that a simple dial pattern matches (digits, `\+`, `[...]`
/// classes, `{n}`/`{n,m}`, `?`, `*`, `+`, plain groups, top-level `|`);
/// `None` for anything else.
fn sample_number(pattern: &str) -> Option<String> {
    let pattern = pattern.split('|').next()?;
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut last: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            c if c.is_ascii_digit() || c == '#' => {
                out.push(c);
                last = Some(c);
            }
            '\\' => {
                let c = *chars.get(i + 1)?;
                let c = if c == 'd' { '1' } else { c };
                out.push(c);
                last = Some(c);
                i += 1;
            }
            '.' => {
                out.push('1');
                last = Some('1');
            }
            '[' => {
                let end = i + chars[i..].iter().position(|&c| c == ']')?;
                let class: String = chars[i + 1..end].iter().collect();
                let c = class
                    .chars()
                    .find(|c| c.is_ascii_digit() && *c != '0')
                    .or_else(|| class.chars().find(char::is_ascii_digit))?;
                out.push(c);
                last = Some(c);
                i = end;
            }
            '{' => {
                let end = i + chars[i..].iter().position(|&c| c == '}')?;
                let body: String = chars[i + 1..end].iter().collect();
                let n: usize = body.split(',').next()?.trim().parse().ok()?;
                let c = last?;
                out.pop();
                for _ in 0..n.min(32) {
                    out.push(c);
                }
                i = end;
            }
            '?' | '*' => {
                last?;
                out.pop();
            }
            '+' => {
                last?;
            }
            '(' | ')' => {
                // Plain groups; a quantifier on a group is not handled.
                if chars[i] == ')' && matches!(chars.get(i + 1), Some('{' | '?' | '*' | '+')) {
                    return None;
                }
                last = None;
            }
            _ => return None,
        }
        i += 1;
    }
    (!out.is_empty()).then_some(out)
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
            match siplink::proxy::connection_test::test_connection(&config, &name).await {
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
            Ok(a) => {
                // How to pass the token without printing a configured one.
                let token = if let Some(f) = &config.proxy.status_token_file {
                    format!("$(cat {})", f.display())
                } else if let Some(v) = &config.proxy.status_token_env {
                    format!("${v}")
                } else {
                    proxy.status_token().unwrap_or_default()
                };
                println!("  status:  curl http://{a}/healthz   (no token needed)");
                println!("           curl -H \"Authorization: Bearer {token}\" http://{a}/status");
                println!(
                    "           curl -H \"Authorization: Bearer {token}\" http://{a}/test/NAME"
                );
            }
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
            match sipp_call(&config, &u.name, pw, &domain, a) {
                Some(lines) => {
                    for l in lines {
                        println!("{l}");
                    }
                }
                None => println!(
                    "  SIPp:    sipp -sf {} -s NUMBER -key user {u} -key domain {domain} -au {u} -ap {pw} -auth_uri NUMBER@{domain} -m 1 {a}",
                    scenario("call_auth.xml"),
                    u = u.name
                ),
            }
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
