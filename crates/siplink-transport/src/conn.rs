//! Connection tasks: handshakes (TLS, WebSocket) and the read/write loops of
//! stream (TCP, TLS) and WebSocket (WS, WSS) connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use siplink_message::framer::{Frame, Framer, PING, PONG};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::transport::{Closer, Inner, Processed, tls_client};
use crate::types::{FlowEventKind, FlowId, Origin, Protocol, Target};

type TlsClient = tokio_rustls::client::TlsStream<TcpStream>;
type TlsServer = tokio_rustls::server::TlsStream<TcpStream>;

/// An established connection of any kind.
pub(crate) enum Io {
    Tcp(TcpStream),
    TlsClient(Box<TlsClient>),
    TlsServer(Box<TlsServer>),
    Ws(Box<WebSocketStream<TcpStream>>),
    WssClient(Box<WebSocketStream<TlsClient>>),
    WssServer(Box<WebSocketStream<TlsServer>>),
}

pub(crate) struct Connected {
    pub(crate) io: Io,
    pub(crate) local: SocketAddr,
}

/// Everything a connection task needs.
pub(crate) struct ConnCtx {
    pub(crate) inner: Arc<Inner>,
    pub(crate) id: FlowId,
    pub(crate) protocol: Protocol,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) closer: Arc<Closer>,
    pub(crate) rx: mpsc::Receiver<Bytes>,
}

impl ConnCtx {
    fn origin(&self) -> Origin {
        Origin {
            protocol: self.protocol,
            peer: self.peer,
            local: self.local,
            flow: Some(self.id),
        }
    }
}

/// The RFC 7118 subprotocol.
pub const SIP_SUBPROTOCOL: &str = "sip";

fn ws_config(inner: &Inner) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(inner.config.max_message_size))
        .max_frame_size(Some(inner.config.max_message_size))
}

fn offers_sip(value: Option<&HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == SIP_SUBPROTOCOL))
}

/// Server side of the RFC 7118 handshake: the client must offer `sip`.
#[allow(clippy::result_large_err)] // the signature tungstenite's callback requires
fn check_subprotocol(
    req: &Request,
    mut resp: Response,
) -> std::result::Result<Response, ErrorResponse> {
    if offers_sip(req.headers().get("Sec-WebSocket-Protocol")) {
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SIP_SUBPROTOCOL),
        );
        Ok(resp)
    } else {
        let mut err = ErrorResponse::new(Some(
            "the 'sip' WebSocket subprotocol (RFC 7118) is required".into(),
        ));
        *err.status_mut() = StatusCode::BAD_REQUEST;
        Err(err)
    }
}

fn server_name(target: &Target) -> Result<ServerName<'static>> {
    match &target.server_name {
        Some(n) => ServerName::try_from(n.clone()).map_err(|e| Error::Tls {
            peer: target.addr,
            failure: Box::new(crate::tls::TlsFailure {
                problem: crate::tls::TlsProblem::Other,
                detail: format!("invalid server name {n:?}: {e}"),
                name: n.clone(),
                certificate: None,
            }),
        }),
        None => Ok(ServerName::IpAddress(target.addr.ip().into())),
    }
}

/// Connects to `target` and runs the TLS / WebSocket handshakes.
pub(crate) async fn connect(inner: &Inner, target: &Target) -> Result<Connected> {
    let addr = target.addr;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::io(format!("connect {} {addr}", target.protocol), e))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|e| Error::io("local address", e))?;
    let tls = |tcp: TcpStream| async move {
        let cfg = tls_client(inner)
            .ok_or_else(|| Error::TlsConfig("no TLS client configuration".into()))?;
        let name = server_name(target)?;
        let shown = target
            .server_name
            .clone()
            .unwrap_or_else(|| addr.ip().to_string());
        tokio_rustls::TlsConnector::from(cfg.inner)
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Tls {
                peer: addr,
                failure: Box::new(crate::tls::TlsFailure::from_io(&e, &shown)),
            })
    };
    let io = match target.protocol {
        Protocol::Udp => {
            return Err(Error::Unavailable {
                protocol: Protocol::Udp,
                addr,
                reason: "UDP is not connection-oriented",
            });
        }
        Protocol::Tcp => Io::Tcp(tcp),
        Protocol::Tls => Io::TlsClient(Box::new(tls(tcp).await?)),
        Protocol::Ws => Io::Ws(Box::new(ws_client(inner, target, tcp).await?)),
        Protocol::Wss => {
            let s = tls(tcp).await?;
            Io::WssClient(Box::new(ws_client(inner, target, s).await?))
        }
    };
    Ok(Connected { io, local })
}

/// How long [`probe_tls`] waits after a TLS 1.3 handshake for the server's
/// verdict on our (absent) client certificate, which comes after the client
/// has finished its side of the handshake.
const POST_HANDSHAKE_WAIT: Duration = Duration::from_millis(500);

/// Connects to `target` (TLS), runs the handshake and, for TLS 1.3, waits
/// briefly for a post-handshake refusal (certificate required); then closes.
pub(crate) async fn probe_tls(inner: &Inner, target: &Target) -> Result<crate::tls::TlsPeer> {
    let addr = target.addr;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::io(format!("connect TLS {addr}"), e))?;
    let cfg =
        tls_client(inner).ok_or_else(|| Error::TlsConfig("no TLS client configuration".into()))?;
    let name = server_name(target)?;
    let shown = target
        .server_name
        .clone()
        .unwrap_or_else(|| addr.ip().to_string());
    let fail = |failure: crate::tls::TlsFailure| Error::Tls {
        peer: addr,
        failure: Box::new(failure),
    };
    let mut s = tokio_rustls::TlsConnector::from(cfg.inner)
        .connect(name, tcp)
        .await
        .map_err(|e| fail(crate::tls::TlsFailure::from_io(&e, &shown)))?;
    let (version, peer) = {
        let (_, c) = s.get_ref();
        let peer = crate::tls::TlsPeer {
            version: c
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: c
                .negotiated_cipher_suite()
                .map(|cs| format!("{:?}", cs.suite()))
                .unwrap_or_default(),
            certificate: c
                .peer_certificates()
                .and_then(|p| p.first())
                .map(crate::tls::Fingerprints::of),
        };
        (c.protocol_version(), peer)
    };
    if version == Some(rustls::ProtocolVersion::TLSv1_3) {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(POST_HANDSHAKE_WAIT, s.read(&mut buf)).await {
            Ok(Err(e)) => return Err(fail(crate::tls::TlsFailure::from_io(&e, &shown))),
            Ok(Ok(0)) => {
                return Err(fail(crate::tls::TlsFailure {
                    problem: crate::tls::TlsProblem::Other,
                    detail: "the server closed the connection right after the handshake".into(),
                    name: shown,
                    certificate: peer.certificate,
                }));
            }
            // Data, or silence: the server kept the connection.
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    let _ = s.shutdown().await;
    Ok(peer)
}

async fn ws_client<S>(inner: &Inner, target: &Target, stream: S) -> Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let scheme = if target.protocol == Protocol::Wss {
        "wss"
    } else {
        "ws"
    };
    let host = match &target.server_name {
        Some(n) => n.clone(),
        None => siplink_message::uri::Host::from(target.addr.ip()).to_string(),
    };
    let url = format!("{scheme}://{host}:{}/", target.addr.port());
    let werr = |reason: String| Error::WebSocket {
        peer: target.addr,
        reason,
    };
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| werr(e.to_string()))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SIP_SUBPROTOCOL),
    );
    let (ws, resp) =
        tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config(inner)))
            .await
            .map_err(|e| werr(e.to_string()))?;
    if !offers_sip(resp.headers().get("Sec-WebSocket-Protocol")) {
        return Err(werr(
            "the server did not accept the 'sip' subprotocol".into(),
        ));
    }
    Ok(ws)
}

async fn server_handshake(
    inner: &Inner,
    protocol: Protocol,
    tcp: TcpStream,
) -> std::result::Result<Io, String> {
    let tls = |tcp: TcpStream| async move {
        let cfg = inner
            .config
            .tls_server
            .clone()
            .ok_or_else(|| "no TLS server configuration".to_string())?;
        tokio_rustls::TlsAcceptor::from(cfg.inner)
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {}", crate::tls::describe_server(&e)))
    };
    let ws = |e: tokio_tungstenite::tungstenite::Error| format!("WebSocket handshake failed: {e}");
    Ok(match protocol {
        Protocol::Udp => return Err("UDP is not connection-oriented".into()),
        Protocol::Tcp => Io::Tcp(tcp),
        Protocol::Tls => Io::TlsServer(Box::new(tls(tcp).await?)),
        Protocol::Ws => Io::Ws(Box::new(
            tokio_tungstenite::accept_hdr_async_with_config(
                tcp,
                check_subprotocol,
                Some(ws_config(inner)),
            )
            .await
            .map_err(ws)?,
        )),
        Protocol::Wss => {
            let s = tls(tcp).await?;
            Io::WssServer(Box::new(
                tokio_tungstenite::accept_hdr_async_with_config(
                    s,
                    check_subprotocol,
                    Some(ws_config(inner)),
                )
                .await
                .map_err(ws)?,
            ))
        }
    })
}

/// An accepted connection: handshake (bounded by the connect timeout), then
/// the connection loop.
pub(crate) async fn accept(ctx: ConnCtx, tcp: TcpStream) {
    let handshake = Box::pin(server_handshake(&ctx.inner, ctx.protocol, tcp));
    let hs = tokio::select! {
        r = tokio::time::timeout(ctx.inner.config.connect_timeout, handshake) => r,
        reason = ctx.closer.closed() => Ok(Err(reason)),
    };
    let io = match hs {
        Ok(Ok(io)) => io,
        Ok(Err(reason)) => {
            warn!(protocol = %ctx.protocol, peer = %ctx.peer, %reason, "inbound connection refused");
            ctx.inner.closed(ctx.id, reason, false);
            return;
        }
        Err(_) => {
            warn!(protocol = %ctx.protocol, peer = %ctx.peer, "handshake timed out");
            ctx.inner.closed(ctx.id, "handshake timeout".into(), false);
            return;
        }
    };
    {
        let mut t = ctx.inner.table.lock().unwrap_or_else(|p| p.into_inner());
        t.set_ready(ctx.id, std::time::Instant::now());
    }
    ctx.inner.event(
        ctx.id,
        ctx.protocol,
        ctx.peer,
        ctx.local,
        FlowEventKind::Opened,
    );
    debug!(flow = %ctx.id, protocol = %ctx.protocol, peer = %ctx.peer, "flow opened");
    Box::pin(run(ctx, io)).await;
}

/// Runs an established connection until it closes, then removes it from the
/// table and reports it closed.
pub(crate) async fn run(mut ctx: ConnCtx, io: Io) {
    // Each loop is boxed on its own, so that a connection's memory is that of
    // its own kind of loop, not of the largest one (or of a handshake).
    let reason = match io {
        Io::Tcp(s) => Box::pin(run_stream(&mut ctx, s)).await,
        Io::TlsClient(s) => Box::pin(run_stream(&mut ctx, *s)).await,
        Io::TlsServer(s) => Box::pin(run_stream(&mut ctx, *s)).await,
        Io::Ws(s) => Box::pin(run_ws(&mut ctx, *s)).await,
        Io::WssClient(s) => Box::pin(run_ws(&mut ctx, *s)).await,
        Io::WssServer(s) => Box::pin(run_ws(&mut ctx, *s)).await,
    };
    debug!(flow = %ctx.id, protocol = %ctx.protocol, peer = %ctx.peer, %reason, "flow closed");
    ctx.inner.closed(ctx.id, reason, true);
}

/// Keepalive state (RFC 5626 §4.4.1): ping after `interval` of silence from
/// the peer, then expect the pong within `timeout`.
struct Keepalive {
    cfg: Option<crate::config::KeepaliveConfig>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
}

impl Keepalive {
    fn new(cfg: Option<crate::config::KeepaliveConfig>) -> Self {
        Keepalive {
            cfg,
            next_ping: cfg.map(|c| Instant::now() + c.interval),
            pong_deadline: None,
        }
    }
    /// Traffic from the peer: postpone the next ping.
    fn heard(&mut self) {
        if let (Some(c), None) = (self.cfg, self.pong_deadline) {
            self.next_ping = Some(Instant::now() + c.interval);
        }
    }
    fn pong(&mut self) {
        self.pong_deadline = None;
        self.heard();
    }
    fn deadline(&self) -> Option<Instant> {
        self.pong_deadline.or(self.next_ping)
    }
    /// The timer fired: `true` if the pong is overdue, else a ping is to be sent
    /// now (and the pong awaited).
    fn fire(&mut self) -> bool {
        if self.pong_deadline.is_some_and(|d| Instant::now() >= d) {
            return true;
        }
        if let Some(c) = self.cfg {
            self.pong_deadline = Some(Instant::now() + c.timeout);
        }
        false
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a connection task writes: a byte stream or a WebSocket.
trait Writer {
    async fn write(&mut self, bytes: Bytes) -> std::result::Result<(), String>;
}

struct StreamWriter<'a, S>(&'a mut S);

impl<S: AsyncWrite + Unpin> Writer for StreamWriter<'_, S> {
    async fn write(&mut self, bytes: Bytes) -> std::result::Result<(), String> {
        self.0
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write error: {e}"))
    }
}

struct WsWriter<'a, S>(&'a mut WebSocketStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Writer for WsWriter<'_, S> {
    async fn write(&mut self, bytes: Bytes) -> std::result::Result<(), String> {
        self.0
            .send(ws_message(bytes))
            .await
            .map_err(|e| format!("write error: {e}"))
    }
}

/// Handles one inbound message: delivers it (while the inbound queue is full,
/// the connection keeps writing its outbound queue, so that an application
/// that answers before it reads on cannot deadlock with it), or writes the
/// 400 answer. `Err` closes the connection.
async fn deliver<W: Writer>(
    ctx: &mut ConnCtx,
    w: &mut W,
    bytes: Bytes,
) -> std::result::Result<(), String> {
    match ctx.inner.process(bytes, ctx.origin()) {
        Ok(Processed::Deliver(incoming)) => {
            let incoming = match ctx.inner.stream_sink() {
                Some(sink) => match sink(incoming) {
                    Some(back) => back,
                    None => return Ok(()),
                },
                None => incoming,
            };
            loop {
                tokio::select! {
                    permit = ctx.inner.inbound.reserve() => {
                        match permit {
                            Ok(p) => p.send(incoming),
                            Err(_) => debug!("inbound receiver dropped"),
                        }
                        return Ok(());
                    }
                    Some(out) = ctx.rx.recv() => w.write(out).await?,
                }
            }
        }
        Ok(Processed::Reply(resp)) => w.write(resp.to_bytes()).await,
        Ok(Processed::Drop) => Ok(()),
        Err(reason) => {
            warn!(flow = %ctx.id, protocol = %ctx.protocol, peer = %ctx.peer, %reason, "closing connection");
            Err(reason)
        }
    }
}

/// How long a closing connection may take to write what is still queued.
const DRAIN_TIME: Duration = Duration::from_secs(1);

async fn run_stream<S>(ctx: &mut ConnCtx, mut s: S) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framer = Framer::new(ctx.inner.config.framer());
    let mut ka = Keepalive::new(ctx.inner.config.keepalive);
    let mut buf = vec![0u8; 4096];
    let mut graceful = false;
    let reason: String = 'conn: loop {
        tokio::select! {
            reason = ctx.closer.closed() => {
                graceful = true;
                break 'conn reason;
            }
            out = ctx.rx.recv() => match out {
                Some(bytes) => {
                    if let Err(e) = s.write_all(&bytes).await {
                        break 'conn format!("write error: {e}");
                    }
                    ctx.inner.touch(ctx.id);
                }
                None => {
                    graceful = true;
                    break 'conn "closed".into();
                }
            },
            r = s.read(&mut buf) => {
                let n = match r {
                    Ok(0) if framer.buffered() > 0 => break 'conn "peer closed mid-message".into(),
                    Ok(0) => break 'conn "peer closed".into(),
                    Ok(n) => n,
                    Err(e) => break 'conn format!("read error: {e}"),
                };
                ctx.inner.touch(ctx.id);
                ka.heard();
                framer.push(&buf[..n]);
                loop {
                    let done = match framer.next_frame() {
                        Ok(None) => break,
                        Ok(Some(Frame::Ping)) => StreamWriter(&mut s).write(Bytes::from_static(PONG)).await,
                        Ok(Some(Frame::Pong)) => {
                            ka.pong();
                            Ok(())
                        }
                        Ok(Some(Frame::Message(m))) => deliver(ctx, &mut StreamWriter(&mut s), m).await,
                        Err(e) => {
                            warn!(flow = %ctx.id, protocol = %ctx.protocol, peer = %ctx.peer, error = %e, "framing error, closing connection");
                            Err(format!("framing error: {e}"))
                        }
                    };
                    if let Err(reason) = done {
                        break 'conn reason;
                    }
                }
            }
            _ = sleep_opt(ka.deadline()) => {
                if ka.fire() {
                    ctx.inner.event(ctx.id, ctx.protocol, ctx.peer, ctx.local, FlowEventKind::KeepaliveTimeout);
                    break 'conn "keepalive timeout".into();
                }
                framer.ping_sent();
                if let Err(e) = s.write_all(PING).await {
                    break 'conn format!("write error: {e}");
                }
            }
        }
    };
    if graceful {
        ctx.rx.close();
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(b) = ctx.rx.recv().await {
                if s.write_all(&b).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
    reason
}

fn ws_message(bytes: Bytes) -> WsMessage {
    match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(bytes.clone()) {
        Ok(text) => WsMessage::Text(text),
        Err(_) => WsMessage::Binary(bytes),
    }
}

async fn run_ws<S>(ctx: &mut ConnCtx, mut ws: WebSocketStream<S>) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ka = Keepalive::new(ctx.inner.config.keepalive);
    let mut graceful = false;
    let reason: String = 'conn: loop {
        tokio::select! {
            reason = ctx.closer.closed() => {
                graceful = true;
                break 'conn reason;
            }
            out = ctx.rx.recv() => match out {
                Some(bytes) => {
                    if let Err(e) = ws.send(ws_message(bytes)).await {
                        break 'conn format!("write error: {e}");
                    }
                    ctx.inner.touch(ctx.id);
                }
                None => {
                    graceful = true;
                    break 'conn "closed".into();
                }
            },
            m = ws.next() => {
                let m = match m {
                    None => break 'conn "peer closed".into(),
                    Some(Err(e)) => {
                        warn!(flow = %ctx.id, protocol = %ctx.protocol, peer = %ctx.peer, error = %e, "WebSocket error, closing connection");
                        break 'conn format!("WebSocket error: {e}");
                    }
                    Some(Ok(m)) => m,
                };
                ctx.inner.touch(ctx.id);
                ka.heard();
                let bytes = match m {
                    WsMessage::Text(t) => Bytes::from(t),
                    WsMessage::Binary(b) => b,
                    WsMessage::Ping(_) => {
                        // tungstenite queued the pong; send it now.
                        if let Err(e) = ws.flush().await {
                            break 'conn format!("write error: {e}");
                        }
                        continue;
                    }
                    WsMessage::Pong(_) => {
                        ka.pong();
                        continue;
                    }
                    WsMessage::Close(_) => break 'conn "peer closed".into(),
                    WsMessage::Frame(_) => continue,
                };
                if let Err(reason) = deliver(ctx, &mut WsWriter(&mut ws), bytes).await {
                    break 'conn reason;
                }
            }
            _ = sleep_opt(ka.deadline()) => {
                if ka.fire() {
                    ctx.inner.event(ctx.id, ctx.protocol, ctx.peer, ctx.local, FlowEventKind::KeepaliveTimeout);
                    break 'conn "keepalive timeout".into();
                }
                if let Err(e) = ws.send(WsMessage::Ping(Bytes::from_static(b"siplink"))).await {
                    break 'conn format!("write error: {e}");
                }
            }
        }
    };
    if graceful {
        ctx.rx.close();
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(b) = ctx.rx.recv().await {
                if ws.send(ws_message(b)).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    reason
}
