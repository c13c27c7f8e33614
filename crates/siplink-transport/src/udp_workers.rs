//! UDP sockets read by run-to-completion workers instead of the transport's
//! own reader task: a worker receives a datagram, has it checked and stamped
//! here ([`UdpWorkerSocket::ingest`]), runs its cores on it and sends the
//! answer from the same socket, all in one pass (see docs/architecture.md,
//! "The runtime").

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use siplink_message::Message;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::transport::{Inner, Processed, UdpSock};
use crate::via::{self, ResponseRoute};
use crate::{Error, Incoming, Origin, Protocol, Result, Transport};

/// How several workers share one UDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpSharing {
    /// One socket per worker, all bound to the address with `SO_REUSEPORT`:
    /// the kernel spreads datagrams over them by a hash of the 4-tuple, so one
    /// peer always lands on the same socket (one worker), and many peers are
    /// spread over all of them. Linux and the BSDs.
    ReusePort,
    /// One socket read by every worker task (several readers on one
    /// socket, shared state behind short locks). One busy peer keeps every
    /// worker busy. Readiness is an epoll event, so a datagram may wake
    /// every waiting worker while one of them gets it.
    #[default]
    Shared,
    /// Kamailio's model: one socket in blocking mode, read by one OS thread
    /// per worker blocked in `recvfrom`; the kernel wakes one waiting reader
    /// per datagram. Read it with [`UdpWorkerSocket::recv_blocking`]; the
    /// async reads fail on it. The transport's own sends from it are plain
    /// `sendto` calls, which wait only when the send buffer is full (at
    /// most [`BLOCKING_SEND_TIMEOUT`]).
    Threads,
}

/// How long a send on a [`UdpSharing::Threads`] socket may wait for room in
/// a full send buffer before the datagram is dropped (UDP may lose it; the
/// transaction layer retransmits).
pub const BLOCKING_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(20);

/// How long [`UdpWorkerSocket::recv_blocking`] waits before it returns
/// `WouldBlock`/`TimedOut`, so that reader threads can see a stop flag.
pub const BLOCKING_RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// What [`UdpWorkerSocket::ingest`] made of a datagram.
// Returned and matched at once, never stored: boxing the message would add
// an allocation per datagram.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Ingested {
    /// A message to hand to the cores (a request's top Via stamped with
    /// `received`/`rport`).
    Message(Incoming),
    /// A malformed request answered with this 400-class response, already
    /// sent back statelessly.
    Answered,
    /// Dropped: a keepalive, or unusable (logged).
    Dropped,
}

/// One worker's UDP socket (see [`Transport::bind_udp_workers`]).
///
/// The socket is also one of the transport's UDP sockets: requests and
/// responses sent through [`Transport::send`] to UDP peers leave from it too.
#[derive(Debug, Clone)]
pub struct UdpWorkerSocket {
    socket: UdpSock,
    local: SocketAddr,
    inner: Arc<Inner>,
}

impl UdpWorkerSocket {
    /// The socket's local address (the shared listening address).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The transport this socket belongs to.
    pub fn transport(&self) -> Transport {
        Transport {
            inner: self.inner.clone(),
        }
    }

    /// Whether this is a [`UdpSharing::Threads`] socket (read with
    /// [`recv_blocking`](Self::recv_blocking) from an OS thread).
    pub fn is_blocking(&self) -> bool {
        matches!(self.socket, UdpSock::Blocking(_))
    }

    /// Waits for the next datagram into `buf` (not on a
    /// [`UdpSharing::Threads`] socket: `ErrorKind::Unsupported`).
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.socket {
            UdpSock::Async(s) => s.recv_from(buf).await,
            UdpSock::Blocking(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// The next datagram if one is queued, without waiting
    /// (`ErrorKind::WouldBlock` when none is; not on a
    /// [`UdpSharing::Threads`] socket: `ErrorKind::Unsupported`).
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.socket {
            UdpSock::Async(s) => s.try_recv_from(buf),
            UdpSock::Blocking(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// Blocks the calling thread until the next datagram, or until
    /// [`BLOCKING_RECV_TIMEOUT`] passes (`WouldBlock` or `TimedOut`). Only
    /// on a [`UdpSharing::Threads`] socket (else `ErrorKind::Unsupported`),
    /// and never from an async task.
    pub fn recv_blocking(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.socket {
            UdpSock::Blocking(s) => s.recv_from(buf),
            UdpSock::Async(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// Parses and checks one datagram from `peer`, as the transport's own
    /// reader does: keepalives are dropped, a request with a bad Via or
    /// framing is answered 400-class at once (stateless), a request's top
    /// Via is stamped (RFC 3261 §18.2.1, RFC 3581).
    pub fn ingest(&self, data: &[u8], peer: SocketAddr) -> Ingested {
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            return Ingested::Dropped;
        }
        let origin = Origin {
            protocol: Protocol::Udp,
            peer,
            local: self.local,
            flow: None,
        };
        match self.inner.process(Bytes::copy_from_slice(data), origin) {
            Ok(Processed::Deliver(incoming)) => Ingested::Message(incoming),
            Ok(Processed::Reply(resp)) => {
                self.send_response(&resp);
                Ingested::Answered
            }
            Ok(Processed::Drop) => Ingested::Dropped,
            Err(reason) => {
                warn!(%peer, local = %self.local, %reason, "UDP datagram dropped");
                Ingested::Dropped
            }
        }
    }

    /// Sends `bytes` to `peer` now if the socket can take them, else waits
    /// for it (a full send buffer).
    pub async fn send_to(&self, bytes: &[u8], peer: SocketAddr) -> Result<()> {
        if bytes.len() > self.inner.config.max_message_size {
            return Err(Error::TooLarge {
                size: bytes.len(),
                limit: self.inner.config.max_message_size,
            });
        }
        match self.socket.try_send_to(bytes, peer) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self
                .socket
                .send_to(bytes, peer)
                .await
                .map(drop)
                .map_err(|e| Error::io(format!("send UDP to {peer}"), e)),
            Err(e) => Err(Error::io(format!("send UDP to {peer}"), e)),
        }
    }

    /// Sends `bytes` to `peer` if the socket takes them at once; a full send
    /// buffer drops them (UDP may lose a datagram; the transaction layer
    /// retransmits). Returns whether they went.
    pub fn try_send_to(&self, bytes: &[u8], peer: SocketAddr) -> bool {
        if bytes.len() > self.inner.config.max_message_size {
            return false;
        }
        match self.socket.try_send_to(bytes, peer) {
            Ok(_) => true,
            Err(e) => {
                debug!(%peer, error = %e, "UDP send dropped");
                false
            }
        }
    }

    /// Sends a response to where its top Via says (RFC 3261 §18.2.2, RFC
    /// 3581: `received`/`rport`, else the sent-by port), at once. A Via that
    /// names a host (no `received`) is left to [`Transport::send_response`].
    /// Returns whether it went.
    pub fn send_response(&self, response: &Message) -> bool {
        match response_addr(response) {
            Some(addr) => self.try_send_to(&response.to_bytes(), addr),
            None => false,
        }
    }
}

/// Where a UDP response goes when its Via gives an address (a request stamped
/// on arrival always has `received`).
pub fn response_addr(response: &Message) -> Option<SocketAddr> {
    let v = response.top_via().ok()?;
    match via::route_response(v, None, false).ok()? {
        ResponseRoute::Addr { addr, .. } => Some(addr),
        _ => None,
    }
}

impl Transport {
    /// Binds `workers` UDP sockets for run-to-completion workers on `addr`
    /// (port 0 picks a free port, the same for all), shared as `sharing`
    /// says, and returns them; the transport reads none of them itself
    /// (their datagrams never reach the receiver of [`Transport::new`]) but
    /// sends from them. The address is listed in
    /// [`listeners`](Self::listeners).
    pub fn bind_udp_workers(
        &self,
        addr: SocketAddr,
        workers: usize,
        sharing: UdpSharing,
    ) -> Result<Vec<UdpWorkerSocket>> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let workers = workers.max(1);
        let sockets = match sharing {
            UdpSharing::Shared => {
                let s = UdpSock::Async(Arc::new(bind(addr, false)?));
                vec![s; workers]
            }
            UdpSharing::ReusePort => {
                let first = bind(addr, true)?;
                let port = first
                    .local_addr()
                    .map_err(|e| Error::io("UDP local address", e))?
                    .port();
                let mut v = vec![UdpSock::Async(Arc::new(first))];
                for _ in 1..workers {
                    v.push(UdpSock::Async(Arc::new(bind(
                        SocketAddr::new(addr.ip(), port),
                        true,
                    )?)));
                }
                v
            }
            UdpSharing::Threads => {
                let s = UdpSock::Blocking(Arc::new(bind_blocking(addr)?));
                vec![s; workers]
            }
        };
        let local = sockets[0]
            .local_addr()
            .map_err(|e| Error::io("UDP local address", e))?;
        self.inner.add_udp(sockets[0].clone(), local);
        debug!(%local, workers, ?sharing, "UDP workers bound");
        Ok(sockets
            .into_iter()
            .map(|socket| UdpWorkerSocket {
                socket,
                local,
                inner: self.inner.clone(),
            })
            .collect())
    }
}

fn bind(addr: SocketAddr, reuse_port: bool) -> Result<UdpSocket> {
    let s = socket(addr, reuse_port)?;
    let err = |e| Error::io(format!("bind UDP {addr}"), e);
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    UdpSocket::from_std(s.into()).map_err(err)
}

/// A blocking socket for reader threads, with receive and send timeouts.
fn bind_blocking(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let s = socket(addr, false)?;
    let err = |e| Error::io(format!("bind UDP {addr}"), e);
    s.set_read_timeout(Some(BLOCKING_RECV_TIMEOUT))
        .map_err(err)?;
    s.set_write_timeout(Some(BLOCKING_SEND_TIMEOUT))
        .map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    Ok(s.into())
}

fn socket(addr: SocketAddr, reuse_port: bool) -> Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let err = |e| Error::io(format!("bind UDP {addr}"), e);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None).map_err(err)?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err)?;
    }
    if reuse_port {
        s.set_reuse_port(true).map_err(err)?;
    }
    Ok(s)
}
