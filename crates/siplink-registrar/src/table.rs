//! The in-memory binding table: a synchronous, sans-IO index with ordered expiry.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use crate::binding::{
    Aor, Binding, BindingEvent, BindingId, Change, EventKind, FlowId, RemoveReason, Target, Usage,
    order_bindings,
};

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
#[derive(Debug, Default)]
pub struct BindingTable {
    aors: HashMap<Aor, AorSet>,
    index: HashMap<BindingId, Aor>,
    expiry: BTreeSet<(Instant, BindingId)>,
    flows: HashMap<FlowId, HashSet<BindingId>>,
    seq: u64,
    /// Expiry events not yet taken by `poll_output`.
    out: VecDeque<BindingEvent>,
}

/// One AOR's bindings and the version of that set (it changes with every
/// change to the set; sequence numbers are never reused).
#[derive(Debug)]
struct AorSet {
    version: u64,
    list: Vec<Binding>,
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
        self.aors
            .get(aor)
            .map(|e| e.list.clone())
            .unwrap_or_default()
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

    /// The binding with this id.
    pub fn get(&self, id: BindingId) -> Option<&Binding> {
        let aor = self.index.get(&id)?;
        self.aors.get(aor)?.list.iter().find(|b| b.id == id)
    }

    /// The live contacts of `aor` at `now` for routing: `q` descending, then
    /// most recently refreshed first; each with how to reach it.
    pub fn lookup(&self, aor: &Aor, now: Instant) -> Vec<Target> {
        let mut v: Vec<Binding> = self
            .aors
            .get(aor)
            .map(|l| {
                l.list
                    .iter()
                    .filter(|b| !b.is_expired(now))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
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
                    self.put(b.clone());
                    events.push(BindingEvent { kind, binding: b });
                }
                Change::Remove { id, reason, .. } => {
                    if let Some(b) = self.take(id) {
                        events.push(BindingEvent {
                            kind: EventKind::Removed(reason),
                            binding: b,
                        });
                    }
                }
            }
        }
        events
    }

    /// Removes every binding whose time is up at `now`; their
    /// [`RemoveReason::Expired`] events are queued for
    /// [`poll_output`](Self::poll_output).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(b) = self.take(id) {
                self.out.push_back(BindingEvent {
                    kind: EventKind::Removed(RemoveReason::Expired),
                    binding: b,
                });
            }
        }
    }

    /// The next expiry event, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<BindingEvent> {
        self.out.pop_front()
    }

    /// When the next binding expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _)| *at)
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
        let Some(ids) = self.flows.remove(&flow) else {
            return events;
        };
        let mut ids: Vec<BindingId> = ids.into_iter().collect();
        ids.sort();
        for id in ids {
            let Some(aor) = self.index.get(&id).cloned() else {
                continue;
            };
            let Some((remove, expired)) = self
                .aors
                .get(&aor)
                .and_then(|l| l.list.iter().find(|b| b.id == id))
                .map(|b| {
                    let remove = b.outbound || (b.transport.is_reliable() && !contact_fallback);
                    (remove, b.is_expired(now))
                })
            else {
                continue;
            };
            if remove || expired {
                if let Some(b) = self.take(id) {
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
            } else if let Some(b) = self
                .aors
                .get_mut(&aor)
                .and_then(|l| l.list.iter_mut().find(|b| b.id == id))
            {
                b.flow = None;
                let lost = b.transport.is_reliable();
                let binding = b.clone();
                self.bump(&aor);
                if lost {
                    events.push(BindingEvent {
                        kind: EventKind::FlowLost,
                        binding,
                    });
                }
            }
        }
        events
    }

    fn bump(&mut self, aor: &Aor) {
        self.seq += 1;
        if let Some(e) = self.aors.get_mut(aor) {
            e.version = self.seq;
        }
    }

    fn put(&mut self, b: Binding) {
        self.index.insert(b.id, b.aor.clone());
        self.expiry.insert((b.expires_at, b.id));
        if let Some(f) = b.flow {
            self.flows.entry(f).or_default().insert(b.id);
        }
        let aor = b.aor.clone();
        // Most AORs hold one binding: no spare capacity on the first.
        self.aors
            .entry(aor.clone())
            .or_insert_with(|| AorSet {
                version: 0,
                list: Vec::with_capacity(1),
            })
            .list
            .push(b);
        self.bump(&aor);
    }

    fn take(&mut self, id: BindingId) -> Option<Binding> {
        let aor = self.index.remove(&id)?;
        let list = &mut self.aors.get_mut(&aor)?.list;
        let k = list.iter().position(|b| b.id == id)?;
        let b = list.swap_remove(k);
        if list.is_empty() {
            self.aors.remove(&aor);
        }
        self.expiry.remove(&(b.expires_at, b.id));
        if let Some(f) = b.flow
            && let Some(set) = self.flows.get_mut(&f)
        {
            set.remove(&b.id);
            if set.is_empty() {
                self.flows.remove(&f);
            }
        }
        self.bump(&aor);
        Some(b)
    }
}
