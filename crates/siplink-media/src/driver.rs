//! The thin tokio driver: one task owns the UDP socket and the [`Client`] core; callers
//! send it commands over a channel and wait on a oneshot. No task per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::Error;
use crate::client::{Client, ClientConfig, ClientStats, Output, RequestId};
use crate::ng::{CallStats, Command, DeleteRequest, QueryRequest, Reply, Request, SdpRequest};
use crate::relay::{InstanceHealth, MediaRelay, SdpReply};

type Answer = oneshot::Sender<Result<Reply, Error>>;

struct Cmd {
    request: Request,
    to: Option<SocketAddr>,
    answer: Answer,
}

#[derive(Debug, Default)]
struct Shared {
    health: Vec<InstanceHealth>,
    stats: ClientStats,
}

/// rtpengine over one UDP socket: implements [`MediaRelay`]. Cheap to clone; the
/// driver task ends when every clone is dropped.
#[derive(Debug, Clone)]
pub struct RtpEngine {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<InstanceHealth>,
    local: SocketAddr,
}

fn now() -> std::time::Instant {
    // tokio's clock, so paused-clock tests drive the core too.
    tokio::time::Instant::now().into_std()
}

impl RtpEngine {
    /// Binds `bind` and starts the driver task (on the current tokio runtime).
    pub async fn start(config: ClientConfig, bind: SocketAddr) -> Result<RtpEngine, Error> {
        let socket = UdpSocket::bind(bind).await.map_err(Error::Io)?;
        let local = socket.local_addr().map_err(Error::Io)?;
        let core = Client::new(config, now());
        let shared = Arc::new(Mutex::new(Shared {
            health: core
                .instances()
                .map(|(addr, up)| InstanceHealth { addr, up })
                .collect(),
            stats: ClientStats::default(),
        }));
        let (tx, rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(64);
        tokio::spawn(run(core, socket, rx, shared.clone(), events.clone()));
        Ok(RtpEngine {
            tx,
            shared,
            events,
            local,
        })
    }

    /// The local address of the control socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends a request (routed by Call-ID affinity) and waits for its reply. An `error`
    /// result is [`Error::Rejected`].
    pub async fn request(&self, request: Request) -> Result<Reply, Error> {
        self.send(request, None).await
    }

    /// Sends a request to one instance, whatever its health.
    pub async fn request_to(&self, instance: SocketAddr, request: Request) -> Result<Reply, Error> {
        self.send(request, Some(instance)).await
    }

    async fn send(&self, request: Request, to: Option<SocketAddr>) -> Result<Reply, Error> {
        let (answer, rx) = oneshot::channel();
        self.tx
            .send(Cmd {
                request,
                to,
                answer,
            })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// `ping` one instance.
    pub async fn ping(&self, instance: SocketAddr) -> Result<(), Error> {
        self.request_to(instance, Request::Ping).await.map(|_| ())
    }

    /// The Call-IDs one instance holds (`list`).
    pub async fn list(
        &self,
        instance: SocketAddr,
        limit: Option<u32>,
    ) -> Result<Vec<String>, Error> {
        let reply = self.request_to(instance, Request::List { limit }).await?;
        Ok(reply.calls())
    }

    /// Health changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<InstanceHealth> {
        self.events.subscribe()
    }

    /// The core's counters (as of its last step).
    pub fn stats(&self) -> ClientStats {
        self.shared.lock().map(|s| s.stats).unwrap_or_default()
    }
}

fn sdp_reply(reply: Reply, command: Command) -> Result<SdpReply, Error> {
    let sdp = reply
        .sdp()
        .ok_or_else(|| Error::Protocol(format!("the {} reply has no SDP", command.as_str())))?
        .to_owned();
    Ok(SdpReply {
        sdp,
        warning: reply.warning,
    })
}

impl MediaRelay for RtpEngine {
    async fn offer(&self, request: SdpRequest) -> Result<SdpReply, Error> {
        sdp_reply(self.request(Request::Offer(request)).await?, Command::Offer)
    }

    async fn answer(&self, request: SdpRequest) -> Result<SdpReply, Error> {
        sdp_reply(
            self.request(Request::Answer(request)).await?,
            Command::Answer,
        )
    }

    async fn delete(&self, request: DeleteRequest) -> Result<CallStats, Error> {
        Ok(self.request(Request::Delete(request)).await?.stats())
    }

    async fn query(&self, request: QueryRequest) -> Result<CallStats, Error> {
        Ok(self.request(Request::Query(request)).await?.stats())
    }

    fn health(&self) -> Vec<InstanceHealth> {
        self.shared
            .lock()
            .map(|s| s.health.clone())
            .unwrap_or_default()
    }
}

async fn run(
    mut core: Client,
    socket: UdpSocket,
    mut rx: mpsc::Receiver<Cmd>,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<InstanceHealth>,
) {
    let mut waiting: HashMap<RequestId, Answer> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        // Counters first, so a caller woken below already sees its reply counted.
        if let Ok(mut s) = shared.lock() {
            s.stats = core.stats();
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Transmit { to, payload } => {
                    if let Err(e) = socket.send_to(&payload, to).await {
                        // The retransmission timer covers a lost send.
                        tracing::debug!(%to, error = %e, "rtpengine send failed");
                    }
                }
                Output::Completed { id, reply } => {
                    if let Some(a) = waiting.remove(&id) {
                        let _ = a.send(Ok(reply));
                    }
                }
                Output::Failed { id, error } => {
                    if let Some(a) = waiting.remove(&id) {
                        let _ = a.send(Err(error));
                    }
                }
                Output::Health { instance, up } => {
                    tracing::info!(%instance, up, "rtpengine health");
                    if let Ok(mut s) = shared.lock()
                        && let Some(h) = s.health.iter_mut().find(|h| h.addr == instance)
                    {
                        h.up = up;
                    }
                    let _ = events.send(InstanceHealth { addr: instance, up });
                }
            }
        }
        let deadline = core.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => {
                let Some(Cmd { request, to, answer }) = cmd else { break };
                let started = match to {
                    Some(addr) => core.handle_command_to(addr, request, now()),
                    None => core.handle_command(request, now()),
                };
                match started {
                    Ok(id) => {
                        waiting.insert(id, answer);
                    }
                    Err(e) => {
                        let _ = answer.send(Err(e));
                    }
                }
            }
            got = socket.recv_from(&mut buf) => match got {
                Ok((n, from)) => core.handle_datagram(from, &buf[..n], now()),
                Err(e) => tracing::debug!(error = %e, "rtpengine socket receive"),
            },
            () = sleep => core.handle_timeout(now()),
        }
    }
}
