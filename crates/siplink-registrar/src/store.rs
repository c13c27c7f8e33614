//! The location store interface and its in-memory implementation.

use std::future::{Future, ready};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use crate::Error;
use crate::binding::{Aor, Binding, BindingEvent, Change, FlowId, Target, Usage};
use crate::table::BindingTable;

/// The future every [`LocationStore`] method returns (boxed so that the trait
/// stays object safe, `Send` so that it can run on any executor).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Where bindings live. Asynchronous and object safe (`&dyn LocationStore`).
///
/// The registrar never keeps bindings itself: for each REGISTER it reads the
/// AOR's bindings and their version ([`bindings`](Self::bindings)) and the
/// store's size ([`usage`](Self::usage)), computes the changes, and hands them
/// back as one batch ([`apply`](Self::apply)) that the store applies all or
/// nothing, and only if the AOR is still at the version read (optimistic
/// concurrency: REGISTERs for one AOR handled at once by several tasks or
/// nodes cannot interleave; the loser gets [`Error::Conflict`] and the
/// registrar recomputes). A store shared by several proxy nodes implements
/// the same calls against its backend.
pub trait LocationStore: Send + Sync {
    /// The bindings of `aor` (expired ones included) and the version of that set.
    fn bindings<'a>(&'a self, aor: &'a Aor) -> StoreFuture<'a, AorSnapshot>;

    /// The store's size, for the global limits.
    fn usage(&self) -> StoreFuture<'_, Usage>;

    /// Inserts, refreshes and removes bindings of `aor`, atomically, if `aor`
    /// is still at `version`; [`Error::Conflict`] otherwise. Returns the events.
    fn apply<'a>(
        &'a self,
        aor: &'a Aor,
        version: u64,
        changes: Vec<Change>,
    ) -> StoreFuture<'a, Vec<BindingEvent>>;

    /// The live contacts of `aor` at `now`, ordered for routing (`q`
    /// descending, then most recently refreshed first).
    fn lookup<'a>(&'a self, aor: &'a Aor, now: Instant) -> StoreFuture<'a, Vec<Target>>;

    /// Removes the bindings whose time is up at `now`; returns the events (an
    /// asynchronous store hands its outputs back with the future).
    fn handle_timeout(&self, now: Instant) -> StoreFuture<'_, Vec<BindingEvent>>;

    /// The connection `flow` closed at `now`: as
    /// [`BindingTable::flow_closed`] (outbound bindings and plain bindings
    /// over connection-oriented transports removed, or the latter kept with
    /// their Contact when `contact_fallback` is set); returns the events.
    fn flow_closed(
        &self,
        flow: FlowId,
        now: Instant,
        contact_fallback: bool,
    ) -> StoreFuture<'_, Vec<BindingEvent>>;

    /// When the earliest binding expires, so that a driver can sleep until
    /// then before calling [`handle_timeout`](Self::handle_timeout). `None`
    /// when the store is empty, or when it cannot tell (the default): a driver
    /// then calls `handle_timeout` at its own pace.
    fn poll_timeout(&self) -> StoreFuture<'_, Option<Instant>> {
        Box::pin(ready(Ok(None)))
    }

    /// The store as an [`InMemoryStore`], if it is one: a driver then
    /// processes a REGISTER synchronously, in the task that received it
    /// ([`InMemoryStore::handle_register`]), instead of through futures.
    /// `None` by default.
    fn as_in_memory(&self) -> Option<&InMemoryStore> {
        None
    }
}

/// An AOR's bindings as read from a store, with the version to pass back to
/// [`LocationStore::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct AorSnapshot {
    /// The bindings, expired ones included.
    pub bindings: Vec<Binding>,
    /// The version of the set (any value the store chooses; it must change
    /// whenever the set does).
    pub version: u64,
}

/// The default store: a [`BindingTable`] behind a mutex, with an event stream.
///
/// Every method completes immediately (the futures are ready). Each change
/// (registration, refresh, removal, expiry, closed flow) is also sent to every
/// receiver from [`subscribe`](Self::subscribe); receivers that were dropped
/// are forgotten.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    table: Mutex<BindingTable>,
    subscribers: Mutex<Vec<Sender<BindingEvent>>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of every binding change from now on.
    pub fn subscribe(&self) -> Receiver<BindingEvent> {
        let (tx, rx) = channel();
        if let Ok(mut s) = self.subscribers.lock() {
            s.push(tx);
        }
        rx
    }

    /// When the next binding expires (to arm a timer for
    /// [`handle_timeout`](LocationStore::handle_timeout)).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.with(|t| t.poll_timeout()).ok().flatten()
    }

    /// Processes a REGISTER against this store at once, under its lock
    /// ([`Registrar::handle_register`](crate::Registrar::handle_register)),
    /// and sends its events to the subscribers.
    pub fn handle_register(
        &self,
        registrar: &crate::Registrar,
        req: &siplink_message::Message,
        ctx: &crate::RequestContext,
    ) -> Result<crate::Decision, Error> {
        let d = self.with(|t| registrar.handle_register(req, ctx, t))??;
        self.publish(&d.events);
        Ok(d)
    }

    fn with<T>(&self, f: impl FnOnce(&mut BindingTable) -> T) -> Result<T, Error> {
        let mut t = self
            .table
            .lock()
            .map_err(|_| Error::Store("in-memory table lock poisoned".into()))?;
        Ok(f(&mut t))
    }

    fn publish(&self, events: &[BindingEvent]) {
        if events.is_empty() {
            return;
        }
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
        }
    }

    fn mutate(
        &self,
        f: impl FnOnce(&mut BindingTable) -> Vec<BindingEvent>,
    ) -> StoreFuture<'_, Vec<BindingEvent>> {
        let r = self.with(f);
        if let Ok(ev) = &r {
            self.publish(ev);
        }
        Box::pin(ready(r))
    }
}

impl LocationStore for InMemoryStore {
    fn bindings<'a>(&'a self, aor: &'a Aor) -> StoreFuture<'a, AorSnapshot> {
        Box::pin(ready(self.with(|t| AorSnapshot {
            bindings: t.bindings(aor),
            version: t.version(aor),
        })))
    }

    fn usage(&self) -> StoreFuture<'_, Usage> {
        Box::pin(ready(self.with(|t| t.usage())))
    }

    fn apply<'a>(
        &'a self,
        aor: &'a Aor,
        version: u64,
        changes: Vec<Change>,
    ) -> StoreFuture<'a, Vec<BindingEvent>> {
        let r = self
            .with(|t| t.apply_if(aor, version, changes))
            .and_then(|r| r);
        if let Ok(ev) = &r {
            self.publish(ev);
        }
        Box::pin(ready(r))
    }

    fn lookup<'a>(&'a self, aor: &'a Aor, now: Instant) -> StoreFuture<'a, Vec<Target>> {
        Box::pin(ready(self.with(|t| t.lookup(aor, now))))
    }

    fn handle_timeout(&self, now: Instant) -> StoreFuture<'_, Vec<BindingEvent>> {
        self.mutate(|t| {
            t.handle_timeout(now);
            std::iter::from_fn(|| t.poll_output()).collect()
        })
    }

    fn flow_closed(
        &self,
        flow: FlowId,
        now: Instant,
        contact_fallback: bool,
    ) -> StoreFuture<'_, Vec<BindingEvent>> {
        self.mutate(|t| t.flow_closed(flow, now, contact_fallback))
    }

    fn poll_timeout(&self) -> StoreFuture<'_, Option<Instant>> {
        Box::pin(ready(self.with(|t| t.poll_timeout())))
    }

    fn as_in_memory(&self) -> Option<&InMemoryStore> {
        Some(self)
    }
}
