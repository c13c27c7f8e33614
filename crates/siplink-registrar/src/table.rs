//! The in-memory binding table: a synchronous, sans-IO index with ordered expiry.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::binding::{
    Aor, Binding, BindingEvent, BindingId, Change, EventKind, FlowId, RemoveReason, Target, Usage,
    order_bindings,
};
use crate::stored::{Stored, at, since};

/// Bindings indexed by AOR, by expiry time and by flow.
///
/// Time follows the workspace's core vocabulary: expiry uses an ordered index
/// of `(expires_at, id)`; [`poll_timeout`](Self::poll_timeout) is the earliest
/// expiry and [`handle_timeout`](Self::handle_timeout) removes the bindings that
/// are due (touching only those), their events coming out of
/// [`poll_output`](Self::poll_output). Changes and flow closures
/// ([`apply`](Self::apply), [`flow_closed`](Self::flow_closed)) return their
/// events at once: they answer the request that caused them. Nothing here
/// reads a clock.
///
/// [`InMemoryStore`](crate::InMemoryStore) wraps one behind the asynchronous
/// [`LocationStore`](crate::LocationStore) interface;
/// [`Registrar::handle_register`](crate::Registrar::handle_register) drives one
/// directly.
///
/// Memory: a binding is kept in a compact record (fixed fields and one byte
/// buffer for its strings, about 80 + 100 bytes for a phone's binding) under
/// its AOR, which is stored once per AOR and shared by the id index; the
/// public [`Binding`] value is built when one is read. Maps shrink when they
/// fall well below their capacity, so memory taken by a burst of bindings is
/// given back once they are gone. `docs/registrar.md` has the measured
/// bytes per binding.
#[derive(Debug, Default)]
pub struct BindingTable {
    aors: HashMap<Aor, AorSet>,
    /// The AOR of each binding: the shared text of its key in `aors`.
    index: HashMap<BindingId, Arc<str>>,
    /// `(expiry in nanoseconds from epoch, id)`, in expiry order.
    expiry: BTreeSet<(i64, BindingId)>,
    flows: HashMap<FlowId, HashSet<BindingId>>,
    /// What the records' instants count from: the `refreshed_at` of the first
    /// binding ever put (`None` before).
    epoch: Option<Instant>,
    seq: u64,
    /// Expiry events not yet taken by `poll_output`.
    out: VecDeque<BindingEvent>,
}

/// One AOR's bindings and the version of that set (it changes with every
/// change to the set; sequence numbers are never reused).
#[derive(Debug)]
struct AorSet {
    version: u64,
    /// Exactly as long as needed: most AORs hold one binding.
    list: Box<[Stored]>,
}

/// Maps keep at least this capacity (no shrinking for small tables).
const MIN_CAPACITY: usize = 64;

/// Shrinks `map` to twice its length once it holds less than a quarter of its
/// capacity: the memory of a burst goes back once the burst is gone, and a map
/// that hovers around one size is not rehashed again and again (after a shrink
/// it must lose half its entries, or double, before the next rehash).
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    let cap = map.capacity();
    if cap > MIN_CAPACITY && map.len() < cap / 4 {
        map.shrink_to((map.len() * 2).max(MIN_CAPACITY));
    }
}

impl BindingTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Numbers of AORs and bindings held (expired ones included until
    /// [`handle_timeout`](Self::handle_timeout) removes them).
    pub fn usage(&self) -> Usage {
        Usage {
            aors: self.aors.len(),
            bindings: self.index.len(),
        }
    }

    /// The bindings of `aor`, expired ones included (the registrar removes
    /// those itself), in no particular order.
    pub fn bindings(&self, aor: &Aor) -> Vec<Binding> {
        match (self.aors.get_key_value(aor), self.epoch) {
            (Some((key, set)), Some(epoch)) => {
                set.list.iter().map(|s| s.binding(key, epoch)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The version of `aor`'s binding set: it changes whenever one of its
    /// bindings does (0 while it has none). See [`apply_if`](Self::apply_if).
    pub fn version(&self, aor: &Aor) -> u64 {
        self.aors.get(aor).map_or(0, |e| e.version)
    }

    /// [`apply`](Self::apply) if `aor` is still at `version` (read with the
    /// bindings the changes were computed from); otherwise nothing is changed
    /// and [`Error::Conflict`](crate::Error::Conflict) is returned.
    pub fn apply_if(
        &mut self,
        aor: &Aor,
        version: u64,
        changes: Vec<Change>,
    ) -> Result<Vec<BindingEvent>, crate::Error> {
        if self.version(aor) != version {
            return Err(crate::Error::Conflict);
        }
        Ok(self.apply(changes))
    }

    /// The binding with this id (built from the stored record).
    pub fn get(&self, id: BindingId) -> Option<Binding> {
        let aor = self.index.get(&id)?;
        let (key, set) = self.aors.get_key_value(&**aor)?;
        let s = set.list.iter().find(|s| s.id() == id)?;
        Some(s.binding(key, self.epoch?))
    }

    /// The live contacts of `aor` at `now` for routing: `q` descending, then
    /// most recently refreshed first; each with how to reach it.
    pub fn lookup(&self, aor: &Aor, now: Instant) -> Vec<Target> {
        let (Some((key, set)), Some(epoch)) = (self.aors.get_key_value(aor), self.epoch) else {
            return Vec::new();
        };
        let now = since(epoch, now);
        let mut v: Vec<Binding> = set
            .list
            .iter()
            .filter(|s| s.expires_at() > now)
            .map(|s| s.binding(key, epoch))
            .collect();
        order_bindings(&mut v);
        v.into_iter()
            .map(|b| Target {
                reach: b.reach(),
                binding: b,
            })
            .collect()
    }

    /// Applies a batch of changes; returns what happened. Removing an unknown
    /// binding does nothing; updating an unknown one inserts it.
    pub fn apply(&mut self, changes: Vec<Change>) -> Vec<BindingEvent> {
        let mut events = Vec::with_capacity(changes.len());
        for c in changes {
            match c {
                Change::Insert(b) | Change::Update(b) => {
                    let kind = match self.take(b.id) {
                        Some(_) => EventKind::Refreshed,
                        None => EventKind::Added,
                    };
                    self.put(&b);
                    events.push(BindingEvent { kind, binding: b });
                }
                Change::Remove { id, reason, .. } => {
                    if let Some(b) = self.take_binding(id) {
                        events.push(BindingEvent {
                            kind: EventKind::Removed(reason),
                            binding: b,
                        });
                    }
                }
            }
        }
        self.shrink();
        events
    }

    /// Removes every binding whose time is up at `now`; their
    /// [`RemoveReason::Expired`] events are queued for
    /// [`poll_output`](Self::poll_output).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(epoch) = self.epoch else {
            return;
        };
        let now = since(epoch, now);
        while let Some(&(at, id)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(b) = self.take_binding(id) {
                self.out.push_back(BindingEvent {
                    kind: EventKind::Removed(RemoveReason::Expired),
                    binding: b,
                });
            }
        }
        self.shrink();
    }

    /// The next expiry event, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<BindingEvent> {
        let e = self.out.pop_front();
        if e.is_none() && self.out.capacity() > MIN_CAPACITY {
            // A mass expiry's queue: give it back once drained.
            self.out = VecDeque::new();
        }
        e
    }

    /// When the next binding expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let epoch = self.epoch?;
        self.expiry.first().map(|&(n, _)| at(epoch, n))
    }

    /// The connection `flow` closed at `now`. What happens to each binding
    /// registered over it:
    ///
    /// * an RFC 5626 outbound binding is removed (RFC 5626 §6);
    /// * a plain binding registered over a connection-oriented transport
    ///   (TCP, TLS, WS, WSS) is removed too, as Kamailio's `handle_lost_tcp`
    ///   does: its Contact usually names an address that only that connection
    ///   reached (a PBX behind NAT, a browser) — unless `contact_fallback` is
    ///   set, in which case it is kept, loses its flow and is reached through
    ///   its Contact URI again ([`EventKind::FlowLost`]);
    /// * a plain binding over UDP loses its flow and keeps its Contact.
    ///
    /// Removals are [`RemoveReason::FlowClosed`] ([`RemoveReason::Expired`] for
    /// a binding whose time was already up at `now`). Returns the events, in
    /// binding id order; an unknown flow changes nothing.
    pub fn flow_closed(
        &mut self,
        flow: FlowId,
        now: Instant,
        contact_fallback: bool,
    ) -> Vec<BindingEvent> {
        let mut events = Vec::new();
        let (Some(ids), Some(epoch)) = (self.flows.remove(&flow), self.epoch) else {
            return events;
        };
        let now = since(epoch, now);
        let mut ids: Vec<BindingId> = ids.into_iter().collect();
        ids.sort();
        for id in ids {
            let Some(aor) = self
                .index
                .get(&id)
                .and_then(|t| self.aors.get_key_value(&**t))
                .map(|(key, _)| key.clone())
            else {
                continue;
            };
            let Some((remove, expired)) = self
                .aors
                .get(&aor)
                .and_then(|l| l.list.iter().find(|s| s.id() == id))
                .map(|s| {
                    let remove = s.outbound() || (s.transport().is_reliable() && !contact_fallback);
                    (remove, s.expires_at() <= now)
                })
            else {
                continue;
            };
            if remove || expired {
                if let Some(b) = self.take_binding(id) {
                    let reason = if expired {
                        RemoveReason::Expired
                    } else {
                        RemoveReason::FlowClosed
                    };
                    events.push(BindingEvent {
                        kind: EventKind::Removed(reason),
                        binding: b,
                    });
                }
            } else if let Some(set) = self.aors.get_mut(&aor)
                && let Some(s) = set.list.iter_mut().find(|s| s.id() == id)
            {
                s.clear_flow();
                let lost = s.transport().is_reliable();
                let binding = lost.then(|| s.binding(&aor, epoch));
                self.bump(&aor);
                if let Some(binding) = binding {
                    events.push(BindingEvent {
                        kind: EventKind::FlowLost,
                        binding,
                    });
                }
            }
        }
        self.shrink();
        events
    }

    fn bump(&mut self, aor: &Aor) {
        self.seq += 1;
        if let Some(e) = self.aors.get_mut(aor) {
            e.version = self.seq;
        }
    }

    fn put(&mut self, b: &Binding) {
        let epoch = *self.epoch.get_or_insert(b.refreshed_at);
        let s = Stored::new(b, epoch);
        self.expiry.insert((s.expires_at(), b.id));
        if let Some(f) = b.flow {
            self.flows.entry(f).or_default().insert(b.id);
        }
        // One shared AOR text: the map key, and the index's value.
        let key = match self.aors.get_key_value(&b.aor) {
            Some((key, _)) => key.clone(),
            None => b.aor.clone(),
        };
        self.index.insert(b.id, key.shared_text().clone());
        let set = self.aors.entry(key).or_insert(AorSet {
            version: 0,
            list: Box::default(),
        });
        let mut list = std::mem::take(&mut set.list).into_vec();
        list.reserve_exact(1);
        list.push(s);
        set.list = list.into_boxed_slice();
        self.bump(&b.aor);
    }

    /// Removes a binding's record; returns it with its AOR.
    fn take(&mut self, id: BindingId) -> Option<(Aor, Stored)> {
        let text = self.index.remove(&id)?;
        let aor = self.aors.get_key_value(&*text)?.0.clone();
        let set = self.aors.get_mut(&aor)?;
        let k = set.list.iter().position(|s| s.id() == id)?;
        let mut list = std::mem::take(&mut set.list).into_vec();
        let s = list.swap_remove(k);
        set.list = list.into_boxed_slice();
        if set.list.is_empty() {
            self.aors.remove(&aor);
        }
        self.expiry.remove(&(s.expires_at(), id));
        if let Some(f) = s.flow()
            && let Some(set) = self.flows.get_mut(&f)
        {
            set.remove(&id);
            if set.is_empty() {
                self.flows.remove(&f);
            }
        }
        self.bump(&aor);
        Some((aor, s))
    }

    /// Removes a binding; returns its last state.
    fn take_binding(&mut self, id: BindingId) -> Option<Binding> {
        let epoch = self.epoch?;
        self.take(id).map(|(aor, s)| s.binding(&aor, epoch))
    }

    /// Gives back the memory of maps that fell well below their capacity.
    fn shrink(&mut self) {
        shrink(&mut self.aors);
        shrink(&mut self.index);
        shrink(&mut self.flows);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use siplink_message::Uri;
    use siplink_message::headers::NameAddr;

    use super::*;
    use crate::binding::Transport;

    fn binding(i: u64, now: Instant) -> Binding {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let uri = format!("sip:user{i}@192.0.2.4:5060");
        Binding {
            id: BindingId(i),
            aor: Aor::parse(&format!("sip:user{i}@example.com")).unwrap(),
            contact: NameAddr::new(Uri::parse(uri).unwrap()),
            expires_at: now + Duration::from_secs(60 + i % 7),
            expires_at_wall: wall + Duration::from_secs(60),
            q: None,
            call_id: format!("{i:032x}"),
            cseq: 1,
            path: Vec::new(),
            instance: None,
            reg_id: None,
            outbound: false,
            flow: Some(FlowId::from_raw(i % 3)),
            source: "192.0.2.4:5060".parse().unwrap(),
            transport: Transport::Tcp,
            user_agent: None,
            registered_at: wall,
            refreshed_at: now,
        }
    }

    #[test]
    fn the_maps_give_a_burst_back() {
        let now = Instant::now();
        let mut t = BindingTable::new();
        let changes = (0..10_000)
            .map(|i| Change::Insert(binding(i, now)))
            .collect();
        assert_eq!(t.apply(changes).len(), 10_000);
        let full = (t.aors.capacity(), t.index.capacity());
        assert!(full.0 >= 10_000 && full.1 >= 10_000);
        assert_eq!(t.get(BindingId(7)), Some(binding(7, now)));
        t.handle_timeout(now + Duration::from_secs(3600));
        assert_eq!(std::iter::from_fn(|| t.poll_output()).count(), 10_000);
        assert_eq!(t.usage(), Usage::default());
        assert!(
            t.aors.capacity() < 2 * MIN_CAPACITY,
            "{}",
            t.aors.capacity()
        );
        assert!(t.index.capacity() < 2 * MIN_CAPACITY);
        assert!(t.flows.is_empty() && t.flows.capacity() < 2 * MIN_CAPACITY);
        assert_eq!(t.out.capacity(), 0);
        assert_eq!(t.poll_timeout(), None);
    }
}
