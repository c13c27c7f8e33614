//! A standalone SIP registrar over UDP and TCP.
//!
//! ```text
//! cargo run --example registrar -- --domain example.test --users examples/users.csv \
//!     [--listen 127.0.0.1:5060] [--algorithms SHA-256,MD5] [--flood-limit 100] [--quiet] \
//!     [--workers 2] [--sharing shared|reuseport|threads] [--udp-through-endpoint] \
//!     [--heap-stats FILE]
//! ```
//!
//! UDP and TCP are served by the run-to-completion runtime
//! (`siplink::transaction::runtime`): each datagram is parsed, matched,
//! decided and answered in the worker that read it, each TCP message in its
//! connection's task. `--udp-through-endpoint` serves both the older way,
//! through the `Endpoint` task and channels (for before/after measurements).
//!
//! `users.csv` holds one `user,password` per line (blank lines and lines
//! starting with `#` are skipped). Every user registers the AORs whose user
//! part is its name (`sip:alice@example.test`), with digest authentication in
//! the realm `--realm` (default: the domain). Each binding change is printed
//! on one line:
//!
//! ```text
//! + sip:alice@example.test <sip:alice@192.0.2.7:5062> udp 192.0.2.7:5062 expires 3600 s
//! - sip:alice@example.test <sip:alice@192.0.2.7:5062> (unregistered)
//! ```
//!
//! Other requests: OPTIONS to the domain 200, other methods 405, other
//! domains 404. Stop it with Ctrl-C (or any signal).
//!
//! Built with `--features heap-stats`, the system allocator is wrapped by a
//! counting one (`stats_alloc`) and `--heap-stats FILE` rewrites FILE every
//! second with one line `heap_allocated=N`: the bytes allocated and not yet
//! freed (what the program asked for, without the allocator's own overhead).
//! `benches/load/registrations.py --heap-stats` reads it.

#[cfg(any(
    all(feature = "mimalloc", feature = "heap-stats"),
    all(feature = "mimalloc", feature = "jemalloc"),
    all(feature = "jemalloc", feature = "heap-stats"),
))]
compile_error!(
    "the features `mimalloc`, `jemalloc` and `heap-stats` each set the global allocator"
);

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "heap-stats")]
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use siplink::auth::{Algorithm, DigestServer, ServerConfig, StoredSecret};
use siplink::registrar::{
    Authenticator, EventKind, FloodConfig, InMemoryStore, LocationStore, Registrar,
    RegistrarConfig, RegistrarService, ServiceConfig,
};
use siplink::transaction::runtime::{Runtime, RuntimeConfig};
use siplink::transaction::{Endpoint, EndpointConfig, TableConfig};
use siplink::transport::{Protocol, Transport, TransportConfig, UdpSharing};
use tokio::sync::broadcast::error::RecvError;

/// Run a SIP registrar (RFC 3261 §10.3) with digest authentication over UDP
/// and TCP.
#[derive(Debug, Parser)]
struct Args {
    /// The domain served (repeat for several).
    #[arg(long, required = true)]
    domain: Vec<String>,
    /// `user,password` per line.
    #[arg(long, value_name = "users.csv")]
    users: PathBuf,
    /// Address for the UDP and TCP listeners.
    #[arg(long, default_value = "0.0.0.0:5060")]
    listen: SocketAddr,
    /// Digest realm (default: the first domain).
    #[arg(long)]
    realm: Option<String>,
    /// Digest algorithms offered, most preferred first.
    #[arg(long, value_delimiter = ',', default_value = "SHA-256,MD5")]
    algorithms: Vec<Algorithm>,
    /// REGISTERs allowed per source IP per 10 s (0: no limit).
    #[arg(long, default_value_t = 100)]
    flood_limit: u32,
    /// Most live transactions (a completed REGISTER transaction stays 32 s
    /// over UDP, so this caps the sustained rate: 100,000 ≈ 1,500 REGISTER/s).
    #[arg(long, default_value_t = 100_000)]
    max_transactions: usize,
    /// Do not print binding changes (load runs).
    #[arg(long)]
    quiet: bool,
    /// UDP worker tasks (default: the number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// How the UDP workers share the address: `shared` (one socket read by
    /// every worker task), `reuseport` (a socket each, SO_REUSEPORT) or
    /// `threads` (one socket, an OS thread per worker blocked in recvfrom).
    #[arg(long, default_value = "shared", value_parser = parse_sharing)]
    sharing: UdpSharing,
    /// Serve UDP and TCP through the `Endpoint` task and channels instead
    /// of the run-to-completion runtime.
    #[arg(long)]
    udp_through_endpoint: bool,
    /// Rewrite FILE every second with `heap_allocated=N`, the heap bytes in
    /// use (needs a build with `--features heap-stats`).
    #[arg(long, value_name = "FILE")]
    heap_stats: Option<PathBuf>,
}

/// Heap bytes allocated and not freed so far (`stats_alloc` counts a
/// reallocation's growth as allocated and its shrinking as freed).
#[cfg(feature = "heap-stats")]
fn heap_allocated() -> Option<usize> {
    let s = ALLOCATOR.stats();
    Some(s.bytes_allocated.saturating_sub(s.bytes_deallocated))
}

#[cfg(not(feature = "heap-stats"))]
fn heap_allocated() -> Option<usize> {
    None
}

/// Writes `heap_allocated=N` to `path` every second (through a temporary file
/// and a rename, so a reader never sees half a line).
fn spawn_heap_stats(path: PathBuf) {
    tokio::spawn(async move {
        let tmp = path.with_extension("tmp");
        loop {
            if let Some(n) = heap_allocated() {
                let _ = std::fs::write(&tmp, format!("heap_allocated={n}\n"))
                    .and_then(|()| std::fs::rename(&tmp, &path));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn parse_sharing(s: &str) -> Result<UdpSharing, String> {
    match s {
        "shared" => Ok(UdpSharing::Shared),
        "reuseport" => Ok(UdpSharing::ReusePort),
        "threads" => Ok(UdpSharing::Threads),
        _ => Err(format!("{s}: expected shared, reuseport or threads")),
    }
}

/// Most users read from the file, and the largest line (a bound on the input).
const MAX_USERS: usize = 1_000_000;
const MAX_LINE: usize = 1024;

fn load_users(path: &PathBuf) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_LINE || users.len() >= MAX_USERS {
            return Err(format!(
                "{}:{}: line too long or too many users",
                path.display(),
                n + 1
            ));
        }
        let Some((user, password)) = line.split_once(',') else {
            return Err(format!(
                "{}:{}: expected user,password",
                path.display(),
                n + 1
            ));
        };
        users.insert(user.trim().to_owned(), password.trim().to_owned());
    }
    Ok(users)
}

fn registrar(args: &Args, users: HashMap<String, String>) -> Result<Registrar, String> {
    let realm = args.realm.clone().unwrap_or_else(|| args.domain[0].clone());
    let mut server_config = ServerConfig::new(realm);
    server_config.algorithms = args.algorithms.clone();
    let server = DigestServer::new(server_config);
    let credentials = move |user: &str, _realm: &str, _alg: Algorithm| {
        users.get(user).map(|p| StoredSecret::Password(p.clone()))
    };
    let mut config = RegistrarConfig::new(args.domain.iter().map(String::as_str));
    config.flood = (args.flood_limit > 0).then(|| FloodConfig {
        max_requests: args.flood_limit,
        window: Duration::from_secs(10),
        ..FloodConfig::default()
    });
    Registrar::new(config, Some(Authenticator::new(server, credentials))).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.heap_stats {
        if heap_allocated().is_none() {
            eprintln!("registrar: --heap-stats needs a build with `--features heap-stats`");
            return ExitCode::from(2);
        }
        spawn_heap_stats(path.clone());
    }
    let registrar = match load_users(&args.users).and_then(|u| registrar(&args, u)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("registrar: {e}");
            return ExitCode::from(2);
        }
    };
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let protocols: &[Protocol] = if args.udp_through_endpoint {
        &[Protocol::Udp, Protocol::Tcp]
    } else {
        &[Protocol::Tcp]
    };
    for &protocol in protocols {
        match transport.listen(protocol, args.listen).await {
            Ok(addr) => println!("listening on {protocol} {addr}"),
            Err(e) => {
                eprintln!(
                    "registrar: cannot listen on {protocol} {}: {e}",
                    args.listen
                );
                return ExitCode::from(1);
            }
        }
    }
    let endpoint_config = EndpointConfig {
        table: TableConfig {
            max_transactions: args.max_transactions,
            ..TableConfig::default()
        },
        ..EndpointConfig::default()
    };
    let (endpoint, requests) = Endpoint::start(transport.clone(), incoming, endpoint_config);
    let store: Arc<dyn LocationStore> = Arc::new(InMemoryStore::new());
    let service = RegistrarService::start(
        registrar,
        store,
        transport.clone(),
        ServiceConfig::default(),
    );
    let mut runtime = None;
    if !args.udp_through_endpoint {
        let mut config = RuntimeConfig {
            sharing: args.sharing,
            ..RuntimeConfig::default()
        };
        if let Some(w) = args.workers {
            config.workers = w;
        }
        config.table.max_transactions = args.max_transactions.div_ceil(config.buckets).max(1);
        match Runtime::start(&transport, args.listen, config, Arc::new(service.clone())) {
            Ok(rt) => {
                println!("listening on udp {}", rt.local_addr());
                rt.take_streams(&transport);
                runtime = Some(rt);
            }
            Err(e) => {
                eprintln!("registrar: cannot listen on udp {}: {e}", args.listen);
                return ExitCode::from(1);
            }
        }
    }
    if !args.quiet {
        let mut events = service.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        let b = &e.binding;
                        match e.kind {
                            EventKind::Added | EventKind::Refreshed => println!(
                                "{} {} {} {} {} expires {} s",
                                if e.kind == EventKind::Added { "+" } else { "~" },
                                b.aor,
                                b.contact,
                                b.transport,
                                b.source,
                                b.remaining(tokio::time::Instant::now().into_std()),
                            ),
                            EventKind::Removed(reason) => {
                                println!("- {} {} ({reason:?})", b.aor, b.contact)
                            }
                            EventKind::FlowLost => {
                                println!("! {} {} (connection closed, kept)", b.aor, b.contact)
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => println!("({n} binding changes not shown)"),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    service.run(requests).await;
    drop(runtime);
    endpoint.shutdown().await;
    ExitCode::SUCCESS
}
