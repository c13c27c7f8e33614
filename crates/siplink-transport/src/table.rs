//! The connection table: ids, reuse by peer, limits and idle policy, as a
//! plain struct driven by the caller's clock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::types::{FlowId, Protocol};

/// Limits enforced by a [`ConnTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Most entries in the table.
    pub max_total: usize,
    /// Most entries with the same peer IP address.
    pub max_per_peer: usize,
    /// Entries silent for this long are reported by [`ConnTable::idle`].
    pub idle_timeout: Duration,
}

/// Why an entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The table is full.
    Total,
    /// The peer address has too many entries.
    PerPeer,
}

impl LimitExceeded {
    /// In words.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitExceeded::Total => "too many connections",
            LimitExceeded::PerPeer => "too many connections from one peer address",
        }
    }
}

/// One connection.
#[derive(Debug)]
pub struct Entry<H> {
    /// Protocol.
    pub protocol: Protocol,
    /// Peer address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// Whether the handshake is done (only ready entries are found by
    /// [`ConnTable::get`] and [`ConnTable::find`]).
    pub ready: bool,
    /// Last traffic either way.
    pub last_active: Instant,
    /// The caller's handle (e.g. the sender of the connection's queue).
    pub handle: H,
}

/// Open connections, keyed by [`FlowId`] and by `(protocol, peer)` for reuse.
#[derive(Debug)]
pub struct ConnTable<H> {
    limits: TableLimits,
    next: u64,
    entries: HashMap<FlowId, Entry<H>>,
    by_peer: HashMap<(Protocol, SocketAddr), FlowId>,
    per_ip: HashMap<IpAddr, usize>,
}

impl<H> ConnTable<H> {
    /// An empty table.
    pub fn new(limits: TableLimits) -> Self {
        ConnTable {
            limits,
            next: 1,
            entries: HashMap::new(),
            by_peer: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    /// Adds a connection (not ready yet) if the limits allow it.
    pub fn insert(
        &mut self,
        protocol: Protocol,
        peer: SocketAddr,
        local: SocketAddr,
        handle: H,
        now: Instant,
    ) -> Result<FlowId, LimitExceeded> {
        if self.entries.len() >= self.limits.max_total {
            return Err(LimitExceeded::Total);
        }
        let n = self.per_ip.entry(peer.ip()).or_default();
        if *n >= self.limits.max_per_peer {
            return Err(LimitExceeded::PerPeer);
        }
        *n += 1;
        let id = FlowId::from_raw(self.next);
        self.next += 1;
        self.entries.insert(
            id,
            Entry {
                protocol,
                peer,
                local,
                ready: false,
                last_active: now,
                handle,
            },
        );
        Ok(id)
    }

    /// Marks a connection ready (handshake done) and makes it the one reused
    /// for its `(protocol, peer)`.
    pub fn set_ready(&mut self, id: FlowId, now: Instant) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) => {
                e.ready = true;
                e.last_active = now;
                self.by_peer.insert((e.protocol, e.peer), id);
                true
            }
            None => false,
        }
    }

    /// Sets our address of a connection (known once it is connected).
    pub fn set_local(&mut self, id: FlowId, local: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.local = local;
        }
    }

    /// Removes a connection.
    pub fn remove(&mut self, id: FlowId) -> Option<Entry<H>> {
        let e = self.entries.remove(&id)?;
        if self.by_peer.get(&(e.protocol, e.peer)) == Some(&id) {
            self.by_peer.remove(&(e.protocol, e.peer));
        }
        if let Some(n) = self.per_ip.get_mut(&e.peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&e.peer.ip());
            }
        }
        Some(e)
    }

    /// Records traffic on a connection.
    pub fn touch(&mut self, id: FlowId, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.last_active = now;
        }
    }

    /// A ready connection by id.
    pub fn get(&self, id: FlowId) -> Option<&Entry<H>> {
        self.entries.get(&id).filter(|e| e.ready)
    }

    /// The ready connection to reuse for `(protocol, peer)`.
    pub fn find(&self, protocol: Protocol, peer: SocketAddr) -> Option<(FlowId, &Entry<H>)> {
        let id = *self.by_peer.get(&(protocol, peer))?;
        self.get(id).map(|e| (id, e))
    }

    /// Connections silent for at least the idle timeout at `now` (handshakes
    /// included).
    pub fn idle(&self, now: Instant) -> Vec<FlowId> {
        self.entries
            .iter()
            .filter(|(_, e)| {
                now.saturating_duration_since(e.last_active) >= self.limits.idle_timeout
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Number of connections (ready or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of connections with this peer IP address.
    pub fn count_for(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Every connection id.
    pub fn ids(&self) -> Vec<FlowId> {
        self.entries.keys().copied().collect()
    }

    /// The handle of any connection, ready or not.
    pub fn handle(&self, id: FlowId) -> Option<&H> {
        self.entries.get(&id).map(|e| &e.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TableLimits {
        TableLimits {
            max_total: 3,
            max_per_peer: 2,
            idle_timeout: Duration::from_secs(10),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_per_peer_and_total() {
        let now = Instant::now();
        let mut t = ConnTable::new(limits());
        let l = sa("127.0.0.1:5060");
        let a = t
            .insert(Protocol::Tcp, sa("10.0.0.1:1"), l, (), now)
            .unwrap();
        t.insert(Protocol::Tcp, sa("10.0.0.1:2"), l, (), now)
            .unwrap();
        assert_eq!(
            t.insert(Protocol::Tcp, sa("10.0.0.1:3"), l, (), now),
            Err(LimitExceeded::PerPeer)
        );
        t.insert(Protocol::Tls, sa("10.0.0.2:1"), l, (), now)
            .unwrap();
        assert_eq!(
            t.insert(Protocol::Tcp, sa("10.0.0.3:1"), l, (), now),
            Err(LimitExceeded::Total)
        );
        assert_eq!(t.count_for("10.0.0.1".parse().unwrap()), 2);
        t.remove(a).unwrap();
        assert_eq!(t.count_for("10.0.0.1".parse().unwrap()), 1);
        assert!(
            t.insert(Protocol::Tcp, sa("10.0.0.3:1"), l, (), now)
                .is_ok()
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn reuse_only_when_ready() {
        let now = Instant::now();
        let mut t = ConnTable::new(limits());
        let l = sa("127.0.0.1:5060");
        let p = sa("10.0.0.1:5060");
        let a = t.insert(Protocol::Tcp, p, l, "a", now).unwrap();
        assert!(t.find(Protocol::Tcp, p).is_none());
        assert!(t.get(a).is_none());
        assert!(t.set_ready(a, now));
        assert_eq!(
            t.find(Protocol::Tcp, p).map(|(id, e)| (id, e.handle)),
            Some((a, "a"))
        );
        assert!(t.find(Protocol::Tls, p).is_none());
        // A newer connection to the same peer takes over reuse; removing the
        // older one keeps the newer one findable.
        let b = t.insert(Protocol::Tcp, p, l, "b", now).unwrap();
        t.set_ready(b, now);
        t.remove(a);
        assert_eq!(t.find(Protocol::Tcp, p).map(|(id, _)| id), Some(b));
        t.remove(b);
        assert!(t.find(Protocol::Tcp, p).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn idle_policy_follows_the_clock() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(limits());
        let l = sa("127.0.0.1:5060");
        let a = t
            .insert(Protocol::Tcp, sa("10.0.0.1:1"), l, (), t0)
            .unwrap();
        let b = t
            .insert(Protocol::Tcp, sa("10.0.0.2:1"), l, (), t0)
            .unwrap();
        assert!(t.idle(t0 + Duration::from_secs(9)).is_empty());
        t.touch(b, t0 + Duration::from_secs(5));
        assert_eq!(t.idle(t0 + Duration::from_secs(10)), vec![a]);
        let mut both = t.idle(t0 + Duration::from_secs(15));
        both.sort();
        assert_eq!(both, vec![a, b]);
    }
}
