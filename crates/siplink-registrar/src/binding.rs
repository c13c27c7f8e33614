//! Bindings, their keys, and the changes and events that move them.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use siplink_message::Uri;
use siplink_message::headers::NameAddr;

use crate::Error;

pub use siplink_message::Transport;

/// The connection (flow, RFC 5626) a REGISTER arrived on: the workspace-wide
/// [`FlowId`](siplink_message::net::FlowId), re-exported. The registrar only
/// compares and stores it; [`Reach::Flow`] hands it back to be used as a
/// send destination (`Endpoint::send_request(request, flow)`).
/// [`FlowId::from_raw`] builds one from its number (tests, persistent stores).
pub use siplink_message::net::FlowId;

/// The identifier of one binding, unique within a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingId(pub u64);

impl fmt::Display for BindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{:016x}", self.0)
    }
}

/// An address-of-record in canonical form (RFC 3261 §10.3 step 5): the scheme
/// (`sip` or `sips`), the user part with escapes decoded, the host in lower
/// case without a trailing dot, and the port if one was given; URI parameters
/// and headers are dropped.
///
/// Two AORs are the same binding set exactly when their canonical texts are
/// equal, which follows the §19.1.4 rules for these components (user
/// case-sensitive, host case-insensitive, escapes equal to their characters).
///
/// ```
/// use siplink_registrar::Aor;
/// let a = Aor::parse("sip:%61lice@Example.COM;transport=tcp")?;
/// assert_eq!(a.as_str(), "sip:alice@example.com");
/// assert_eq!(a.user(), Some("alice"));
/// assert_eq!(a.host(), "example.com");
/// # Ok::<(), siplink_registrar::Error>(())
/// ```
/// Equality, hashing and order are those of the canonical text (the offsets
/// follow from it), so a map keyed by `Aor` can be searched with a `&str`.
#[derive(Debug, Clone)]
pub struct Aor {
    /// Shared: the table keeps the AOR as a map key and in its id index;
    /// clones share one allocation.
    text: Arc<str>,
    /// Offsets into `text` (32 bits: an AOR is a key in two maps per binding).
    user_end: Option<u32>,
    host_start: u32,
    host_end: u32,
}

impl Aor {
    /// The canonical AOR of a SIP or SIPS URI (`None` for other schemes).
    pub fn from_uri(uri: &Uri) -> Option<Aor> {
        let sip = uri.as_sip()?;
        let mut text = String::with_capacity(uri.as_str().len());
        text.push_str(sip.scheme());
        text.push(':');
        let user_end = match sip.user_unescaped() {
            Some(u) => {
                // Keep the canonical text printable: bytes that cannot stand
                // in a URI user part stay escaped.
                for &c in u.iter() {
                    if c.is_ascii_graphic() && !matches!(c, b'%' | b'@' | b':' | b';' | b'?') {
                        text.push(c as char);
                    } else {
                        text.push_str(&format!("%{c:02X}"));
                    }
                }
                let end = text.len();
                text.push('@');
                Some(end)
            }
            None => None,
        };
        let host_start = text.len();
        let host = sip.host().to_string().to_ascii_lowercase();
        text.push_str(host.strip_suffix('.').unwrap_or(&host));
        let host_end = text.len();
        if let Some(p) = sip.port() {
            text.push_str(&format!(":{p}"));
        }
        let offset = |n: usize| u32::try_from(n).ok();
        Some(Aor {
            user_end: match user_end {
                Some(e) => Some(offset(e)?),
                None => None,
            },
            host_start: offset(host_start)?,
            host_end: offset(host_end)?,
            text: Arc::from(text),
        })
    }

    /// Parses a URI and returns its canonical AOR.
    pub fn parse(s: &str) -> Result<Aor, Error> {
        let uri = Uri::parse(s.to_owned()).map_err(|_| Error::InvalidAor(s.to_owned()))?;
        Aor::from_uri(&uri).ok_or_else(|| Error::InvalidAor(s.to_owned()))
    }

    /// The canonical text (`sip:alice@example.com`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The user part, escapes decoded (`None` for a host-only AOR).
    pub fn user(&self) -> Option<&str> {
        let scheme_end = self.text.find(':').map_or(0, |k| k + 1);
        self.user_end.map(|e| &self.text[scheme_end..e as usize])
    }

    /// The host, in lower case (IPv6 references keep their brackets).
    pub fn host(&self) -> &str {
        &self.text[self.host_start as usize..self.host_end as usize]
    }
}

impl PartialEq for Aor {
    fn eq(&self, other: &Aor) -> bool {
        self.text == other.text
    }
}

impl Eq for Aor {}

impl std::hash::Hash for Aor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes: what `Borrow<str>` requires.
        self.as_str().hash(state);
    }
}

impl PartialOrd for Aor {
    fn partial_cmp(&self, other: &Aor) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Aor {
    fn cmp(&self, other: &Aor) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl std::borrow::Borrow<str> for Aor {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl Aor {
    /// The shared canonical text (what the table's id index keeps).
    pub(crate) fn shared_text(&self) -> &Arc<str> {
        &self.text
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One binding of an address-of-record to a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// Its identifier.
    pub id: BindingId,
    /// The address-of-record.
    pub aor: Aor,
    /// The Contact value as received (URI and header parameters).
    pub contact: NameAddr,
    /// When it expires (monotonic: what the table's expiry runs on).
    pub expires_at: Instant,
    /// When it expires on the wall clock: the same moment as `expires_at`,
    /// for a store that keeps bindings beyond this process (monotonic instants
    /// mean nothing in another process or after a restart).
    pub expires_at_wall: SystemTime,
    /// The `q` value in thousandths (`None` when the contact had none).
    pub q: Option<u16>,
    /// The Call-ID of the REGISTER that last set it.
    pub call_id: String,
    /// The CSeq number of that REGISTER.
    pub cseq: u32,
    /// The Path values of that REGISTER (RFC 3327), top first, as received.
    pub path: Vec<String>,
    /// The `+sip.instance` value (without quotes and `<>`), if any.
    pub instance: Option<String>,
    /// The `reg-id` value, if any.
    pub reg_id: Option<u32>,
    /// Whether the binding is an RFC 5626 outbound one, keyed by
    /// (`instance`, `reg_id`) and removed when its flow closes.
    pub outbound: bool,
    /// The flow the REGISTER arrived on, while that flow is open (`None`
    /// once it closed, for a binding kept with its Contact).
    pub flow: Option<FlowId>,
    /// The REGISTER's source address.
    pub source: SocketAddr,
    /// The REGISTER's transport.
    pub transport: Transport,
    /// The User-Agent of the REGISTER, if any.
    pub user_agent: Option<String>,
    /// When the binding was first created (wall clock).
    pub registered_at: SystemTime,
    /// When the binding was last created or refreshed (for ordering).
    pub refreshed_at: Instant,
}

impl Binding {
    /// The contact URI.
    pub fn uri(&self) -> &Uri {
        &self.contact.uri
    }

    /// Whole seconds left at `now` (0 once expired).
    pub fn remaining(&self, now: Instant) -> u32 {
        let d = self.expires_at.saturating_duration_since(now);
        u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
    }

    /// Whether the binding has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at <= now
    }

    /// The `q` value used for ordering: the contact's, or 1.0 when it had none.
    pub fn effective_q(&self) -> u16 {
        self.q.unwrap_or(1000)
    }

    /// How to reach the contact: its flow while that is open, else its Contact
    /// URI through its Path.
    pub fn reach(&self) -> Reach {
        match self.flow {
            Some(f) => Reach::Flow(f),
            None => Reach::Contact {
                uri: self.contact.uri.clone(),
                path: self.path.clone(),
            },
        }
    }
}

/// How to send a request to a registered contact.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // built once per lookup, never stored in bulk
pub enum Reach {
    /// Over the flow (connection) the registration arrived on.
    Flow(FlowId),
    /// To the Contact URI, with the Path values as a pre-loaded route set.
    Contact {
        /// The Contact URI (the Request-URI to use).
        uri: Uri,
        /// The Path values (Route headers to add, top first).
        path: Vec<String>,
    },
}

/// A lookup result: one contact of an AOR and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The binding.
    pub binding: Binding,
    /// How to reach it.
    pub reach: Reach,
}

/// Why a binding disappeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoveReason {
    /// A REGISTER removed it (`expires=0` or `Contact: *`).
    Unregistered,
    /// Its time ran out.
    Expired,
    /// The per-AOR contact limit made room for a newer binding.
    Replaced,
    /// The connection it was registered over closed: an RFC 5626 outbound
    /// binding always, a plain binding over TCP, TLS, WS or WSS unless
    /// [`RegistrarConfig::contact_fallback`](crate::RegistrarConfig::contact_fallback)
    /// is set (Kamailio's `handle_lost_tcp`).
    FlowClosed,
}

/// A change to apply to a store. A REGISTER's changes form one batch that a
/// store applies all or nothing (RFC 3261 §10.3 step 7).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new binding.
    Insert(Binding),
    /// A binding with the same id, refreshed or rebound.
    Update(Binding),
    /// Remove a binding.
    Remove {
        /// Its AOR.
        aor: Aor,
        /// Its id.
        id: BindingId,
        /// Why.
        reason: RemoveReason,
    },
}

/// What happened to a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// It was created.
    Added,
    /// It was refreshed (or its contact data changed).
    Refreshed,
    /// It was removed.
    Removed(RemoveReason),
    /// The connection it was registered over closed and it was kept
    /// ([`RegistrarConfig::contact_fallback`](crate::RegistrarConfig::contact_fallback)):
    /// from now on it is reached through its Contact URI, no longer over a flow.
    FlowLost,
}

/// A binding change, as reported to routing and replication.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingEvent {
    /// What happened.
    pub kind: EventKind,
    /// The binding (its last state, for a removal).
    pub binding: Binding,
}

/// The size of a store, for the global limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// AORs with at least one binding.
    pub aors: usize,
    /// Bindings in total.
    pub bindings: usize,
}

/// Orders targets for routing: `q` descending, then most recently refreshed
/// first, then newest id first.
pub(crate) fn order_bindings(v: &mut [Binding]) {
    v.sort_by(|a, b| {
        b.effective_q()
            .cmp(&a.effective_q())
            .then(b.refreshed_at.cmp(&a.refreshed_at))
            .then(b.id.cmp(&a.id))
    });
}

/// Clamps a duration in seconds into an `Instant` offset.
pub(crate) fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}
