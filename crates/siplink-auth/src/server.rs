//! The server side: challenging and verifying (registrar, proxy).
//!
//! # Nonces
//!
//! A nonce is 40 bytes in hex: the issue time (Unix milliseconds), 8 random
//! bytes, an 8-byte *source mark* (HMAC-SHA-256 under the server's secret over
//! the time, the random bytes and the client's IP address) and the first 16
//! bytes of HMAC-SHA-256 over all that and the realm. Checking one needs no
//! per-nonce state: a forged or altered nonce, or one from another realm or
//! secret, fails the tag; one presented from another address fails the source
//! mark (refused when [`ServerConfig::bind_to_source`] is on); an old one fails
//! the lifetime. Either way the request gets [`Outcome::Stale`] *before the
//! digest is looked at*, whether it is right or wrong, so the client retries
//! with a fresh nonce without asking its user for a password, and an answer
//! never tells right from wrong for a nonce that was not issued to that
//! address. (RFC 7616 says a server SHOULD set `stale` only for a valid
//! digest; that would make a nonce taken at one address an oracle for
//! guesses sent from another, where they count against nobody.)
//!
//! The source mark is checked whatever `bind_to_source` says, for the
//! failed-attempt policy: [`DigestServer::issued_to`] tells whether a request's
//! nonce was issued to the address it came from, and only such failures count
//! (a spoofed UDP request cannot spend someone else's budget).
//!
//! # Unknown users
//!
//! An unknown user's response is verified against a random dummy secret
//! drawn when the server is created, so it costs the same digest computation
//! and comparison as a known user's, and the answer (403) is the same as for a
//! wrong password.
//!
//! # Replay
//!
//! The highest `nc` accepted per nonce is kept in a fixed-size table
//! ([`ServerConfig::replay_capacity`] entries, oldest first out). An `nc` that
//! does not increase is refused ([`StaleReason::Replay`]). A nonce whose entry
//! was evicted can no longer be used: every nonce issued no later than the
//! newest evicted one is treated as stale, so eviction never reopens a replay
//! window. Legacy (RFC 2069, no `qop`) credentials carry no `nc`: their nonce is
//! single-use.
//!
//! # Stores
//!
//! [`DigestServer::verify`] looks the secret up through the synchronous,
//! object-safe [`CredentialStore`]. A caller whose store is asynchronous (a
//! database) uses the two steps instead: [`DigestServer::check`] validates
//! everything that needs no secret and returns a [`Pending`] naming the user,
//! realm and algorithm; after its own lookup the caller calls
//! [`Pending::finish`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytestring::ByteString;
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::algorithm::{Algorithm, Qop};
use crate::digest::{self, DigestInput, HexDigest};
use crate::{Challenge, Credentials, RequestInfo, unix_ms};

type HmacSha256 = Hmac<Sha256>;

const NONCE_RAW: usize = 40;
const MARK_LEN: usize = 8;
const NONCE_HEX: usize = 2 * NONCE_RAW;
const TAG_LEN: usize = 16;

/// A secret as a credential store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredSecret {
    /// The plain password.
    Password(String),
    /// `H(username:realm:password)` in hex, computed with the hash function of the
    /// algorithm asked for (see [`digest::ha1`]).
    Ha1(String),
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredSecret::Password(_) => "Password(..)",
            StoredSecret::Ha1(_) => "Ha1(..)",
        })
    }
}

/// Where the server finds users' secrets. Object safe; synchronous (see the
/// [module documentation](self) for asynchronous stores).
///
/// Closures `Fn(&str, &str, Algorithm) -> Option<StoredSecret>` implement it.
pub trait CredentialStore {
    /// The secret of `username` in `realm`, for `algorithm` (an HA1 must be
    /// computed with `algorithm.hash()`), or `None` for an unknown user.
    fn lookup(&self, username: &str, realm: &str, algorithm: Algorithm) -> Option<StoredSecret>;

    /// The user name whose `H(username:realm)` is `userhash` (RFC 7616 §3.4.4).
    /// The default knows none, so `userhash=true` credentials are refused as
    /// an unknown user.
    fn resolve_userhash(
        &self,
        userhash: &str,
        realm: &str,
        algorithm: Algorithm,
    ) -> Option<String> {
        let _ = (userhash, realm, algorithm);
        None
    }
}

impl<F> CredentialStore for F
where
    F: Fn(&str, &str, Algorithm) -> Option<StoredSecret>,
{
    fn lookup(&self, username: &str, realm: &str, algorithm: Algorithm) -> Option<StoredSecret> {
        self(username, realm, algorithm)
    }
}

/// Server policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Our realm (compared exactly).
    pub realm: String,
    /// Algorithms to offer, one challenge each, most preferred first
    /// (RFC 8760 §2.3). Default: SHA-256, then MD5.
    pub algorithms: Vec<Algorithm>,
    /// `qop` values to offer. Default `[auth]`; `auth-int` may be added. Empty
    /// = legacy RFC 2069 challenges (no `nc`, single-use nonces).
    pub qop: Vec<Qop>,
    /// How long a nonce is accepted (default 5 minutes).
    pub nonce_lifetime: Duration,
    /// Bind nonces to the client's IP address (default `true`): a nonce used
    /// from another address gets `stale=true`.
    pub bind_to_source: bool,
    /// Nonces whose highest `nc` is remembered (default 65 536; the table grows
    /// with use, to about 4 MiB when full). Size it
    /// to at least (nonces first used per second) × `nonce_lifetime`: below
    /// that, clients get extra `stale=true` rounds (never a replay window).
    pub replay_capacity: usize,
    /// Offer `userhash=true` (the store must implement
    /// [`CredentialStore::resolve_userhash`]). Default `false`.
    pub userhash: bool,
}

impl ServerConfig {
    /// Defaults for `realm`.
    pub fn new(realm: impl Into<String>) -> Self {
        ServerConfig {
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            qop: vec![Qop::Auth],
            nonce_lifetime: Duration::from_secs(300),
            bind_to_source: true,
            replay_capacity: 65_536,
            userhash: false,
        }
    }
}

/// Who was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user name (resolved when `userhash` was used).
    pub username: String,
    /// The realm.
    pub realm: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// The qop used (`None` for RFC 2069 legacy).
    pub qop: Option<Qop>,
    /// The nonce count accepted (0 for legacy).
    pub nc: u32,
}

/// Why a nonce cannot be used (the digest is not checked with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// The nonce's lifetime is over.
    Expired,
    /// The nonce was not issued by this server for this realm and address: forged,
    /// altered, from another secret (restart), or used from another address.
    NonceInvalid,
    /// The nonce count did not increase (a replay, or requests overtaking each other).
    Replay,
}

/// Why the request is refused (send 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The store does not know the user.
    UnknownUser,
    /// The credentials are for a realm that is not ours.
    WrongRealm,
    /// The response does not match: wrong password (or altered request).
    WrongCredentials,
    /// The store returned an HA1 that is not hex of the algorithm's length.
    BadStoredSecret,
}

/// What is malformed (send 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A required parameter is absent.
    Missing(&'static str),
    /// A parameter's value is malformed (`nc` not 8 hex digits, `response` not
    /// hex of the algorithm's length...).
    Malformed(&'static str),
    /// The digest `uri` differs from the Request-URI.
    UriMismatch,
    /// An algorithm we do not implement or did not offer.
    UnsupportedAlgorithm(String),
    /// A qop we do not implement or did not offer.
    UnsupportedQop(String),
    /// We offered a qop but the credentials use none (RFC 2069 form).
    QopRequired,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Missing(p) => write!(f, "missing `{p}` parameter"),
            Fault::Malformed(p) => write!(f, "malformed `{p}` parameter"),
            Fault::UriMismatch => f.write_str("digest uri does not match the Request-URI"),
            Fault::UnsupportedAlgorithm(a) => write!(f, "unsupported algorithm {a:?}"),
            Fault::UnsupportedQop(q) => write!(f, "unsupported qop {q:?}"),
            Fault::QopRequired => f.write_str("qop required"),
        }
    }
}

/// What to send after a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated: process the request.
    Accept(Authenticated),
    /// Send 401/407 with these challenges (no usable credentials were presented).
    Challenge(Vec<Challenge>),
    /// Send 401/407 with these `stale=true` challenges: the digest was right but
    /// the nonce cannot be used.
    Stale {
        /// The challenges to send.
        challenges: Vec<Challenge>,
        /// Why.
        reason: StaleReason,
    },
    /// Send 403.
    Forbidden(Refusal),
    /// Send 400 (the fault can go in the reason phrase).
    BadRequest(Fault),
}

/// The part of a verification that needs the secret; see [`DigestServer::check`].
#[derive(Debug)]
pub struct Pending<'a> {
    server: &'a DigestServer,
    username: &'a str,
    userhash: bool,
    algorithm: Algorithm,
    qop: Option<Qop>,
    nonce: &'a str,
    cnonce: &'a str,
    nc_text: &'a str,
    nc: u32,
    response: HexDigest,
    req: RequestInfo<'a>,
    uri: &'a str,
    source: Option<IpAddr>,
    now: SystemTime,
    opened: OpenedNonce,
}

impl Pending<'_> {
    /// The user name as sent (a hash when [`is_userhash`](Self::is_userhash)).
    pub fn username(&self) -> &str {
        self.username
    }

    /// Whether the user name is `H(username:realm)`; resolve it, then call
    /// [`finish_userhash`](Self::finish_userhash).
    pub fn is_userhash(&self) -> bool {
        self.userhash
    }

    /// The realm (always ours).
    pub fn realm(&self) -> &str {
        &self.server.config.realm
    }

    /// The algorithm the secret is needed for.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Completes the verification with the store's answer for
    /// ([`username`](Self::username), [`realm`](Self::realm),
    /// [`algorithm`](Self::algorithm)); `None` = unknown user.
    pub fn finish(self, secret: Option<StoredSecret>) -> Outcome {
        let user = self.username;
        if self.userhash {
            return self.complete(user, None);
        }
        self.complete(user, secret)
    }

    /// Completes a `userhash=true` verification: `username` is the resolved
    /// user name (`None` = no user has that hash).
    pub fn finish_userhash(self, username: Option<&str>, secret: Option<StoredSecret>) -> Outcome {
        match username {
            Some(u)
                if digest::userhash(self.algorithm.hash(), u, self.realm()).as_str()
                    == self.username =>
            {
                self.complete(u, secret)
            }
            _ => {
                let user = self.username;
                self.complete(user, None)
            }
        }
    }

    fn complete(self, username: &str, secret: Option<StoredSecret>) -> Outcome {
        let server = self.server;
        let hash = self.algorithm.hash();
        let realm = server.config.realm.as_str();
        let input = DigestInput {
            algorithm: self.algorithm,
            nonce: self.nonce,
            cnonce: self.cnonce,
            nc: self.nc_text,
            qop: self.qop,
            method: self.req.method,
            uri: self.uri,
            body: self.req.body,
        };
        let known = secret.is_some();
        let ha1 = match secret {
            // Same work as for a known user, so that timing does not tell.
            None => digest::hash_joined(hash, &[&server.dummy, username.as_bytes()]),
            Some(StoredSecret::Password(p)) => digest::ha1(hash, username, realm, &p),
            Some(StoredSecret::Ha1(h)) => match HexDigest::parse(hash, &h) {
                Some(h) => h,
                None => return Outcome::Forbidden(Refusal::BadStoredSecret),
            },
        };
        let expected = digest::response(&input, &ha1);
        let matches = bool::from(expected.as_bytes().ct_eq(self.response.as_bytes()));
        if !known {
            return Outcome::Forbidden(Refusal::UnknownUser);
        }
        if !matches {
            return Outcome::Forbidden(Refusal::WrongCredentials);
        }
        // Legacy credentials have no nc: each nonce is single-use (nc 1).
        let nc = if self.qop.is_some() { self.nc } else { 1 };
        let fresh = server
            .replay
            .lock()
            .map(|mut r| r.record(self.opened.tag, self.opened.issued, nc))
            .unwrap_or(false);
        if !fresh {
            return Outcome::Stale {
                challenges: server.challenge(self.source, self.now, true),
                reason: StaleReason::Replay,
            };
        }
        Outcome::Accept(Authenticated {
            username: username.to_owned(),
            realm: realm.to_owned(),
            algorithm: self.algorithm,
            qop: self.qop,
            nc: if self.qop.is_some() { self.nc } else { 0 },
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct OpenedNonce {
    issued: u64,
    tag: [u8; TAG_LEN],
    /// The source mark matches the address it was presented from.
    bound: bool,
}

/// Highest `nc` per nonce, bounded; see the [module documentation](self).
struct ReplayCache {
    capacity: usize,
    map: HashMap<[u8; TAG_LEN], (u32, u64)>,
    order: VecDeque<[u8; TAG_LEN]>,
    /// Nonces issued at or before this time (ms) may have been evicted.
    floor: u64,
}

impl ReplayCache {
    fn new(capacity: usize) -> Self {
        // The table grows with use up to `capacity`: reserving it all up front
        // (4.3 MB at the default 65,536) costs nothing at start, but every
        // page of it becomes resident as nonces land at random slots, so a
        // burst of a few thousand registrations would keep megabytes that a
        // table sized by what it holds does not.
        ReplayCache {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
            floor: 0,
        }
    }

    /// Records `nc` for the nonce; false when it does not increase.
    fn record(&mut self, tag: [u8; TAG_LEN], issued: u64, nc: u32) -> bool {
        if let Some(e) = self.map.get_mut(&tag) {
            if nc <= e.0 {
                return false;
            }
            e.0 = nc;
            return true;
        }
        if issued <= self.floor {
            return false;
        }
        if self.map.len() >= self.capacity {
            if let Some(old) = self.order.pop_front()
                && let Some((_, old_issued)) = self.map.remove(&old)
            {
                self.floor = self.floor.max(old_issued);
            }
            if issued <= self.floor {
                return false;
            }
        }
        self.map.insert(tag, (nc, issued));
        self.order.push_back(tag);
        true
    }
}

/// A digest server for one realm. Shareable between threads (`&self` methods;
/// the replay table sits behind a mutex).
pub struct DigestServer {
    config: ServerConfig,
    mac: HmacSha256,
    rng: Mutex<Box<dyn RngCore + Send>>,
    replay: Mutex<ReplayCache>,
    /// The secret unknown users are verified against.
    dummy: [u8; 32],
}

impl fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DigestServer {
    /// A server with a random 32-byte secret from the operating system. Nonces
    /// issued before a restart then get `stale=true`; use
    /// [`with_secret`](Self::with_secret) to share one across restarts or nodes.
    pub fn new(config: ServerConfig) -> Self {
        let mut rng = StdRng::from_os_rng();
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self::build(config, &secret, Box::new(rng))
    }

    /// A server with the given secret (at least 16 bytes recommended; any length
    /// works with HMAC).
    pub fn with_secret(config: ServerConfig, secret: &[u8]) -> Self {
        Self::build(config, secret, Box::new(StdRng::from_os_rng()))
    }

    /// Replaces the random source for the nonces' random part (tests).
    pub fn with_rng(mut self, rng: impl RngCore + Send + 'static) -> Self {
        self.rng = Mutex::new(Box::new(rng));
        self
    }

    fn build(config: ServerConfig, secret: &[u8], rng: Box<dyn RngCore + Send>) -> Self {
        // HMAC accepts keys of any length.
        let mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        let replay = Mutex::new(ReplayCache::new(config.replay_capacity));
        let mut dummy = [0u8; 32];
        rand::rng().fill_bytes(&mut dummy);
        DigestServer {
            config,
            mac,
            rng: Mutex::new(rng),
            replay,
            dummy,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn mark(&self, issued: u64, random: &[u8], source: Option<IpAddr>) -> [u8; MARK_LEN] {
        let mut m = self.mac.clone();
        m.update(b"siplink digest nonce source v1\0");
        m.update(&issued.to_be_bytes());
        m.update(random);
        match source {
            None => m.update(&[0]),
            Some(IpAddr::V4(a)) => {
                m.update(&[4]);
                m.update(&a.octets());
            }
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => {
                    m.update(&[4]);
                    m.update(&v4.octets());
                }
                None => {
                    m.update(&[6]);
                    m.update(&a.octets());
                }
            },
        }
        let full: [u8; 32] = m.finalize().into_bytes().into();
        let mut out = [0u8; MARK_LEN];
        out.copy_from_slice(&full[..MARK_LEN]);
        out
    }

    fn tag(&self, issued: u64, random: &[u8], mark: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(b"siplink digest nonce v2\0");
        m.update(&(self.config.realm.len() as u64).to_be_bytes());
        m.update(self.config.realm.as_bytes());
        m.update(&issued.to_be_bytes());
        m.update(random);
        m.update(mark);
        m.finalize().into_bytes().into()
    }

    /// A fresh nonce for a client at `source`.
    pub fn nonce(&self, source: Option<IpAddr>, now: SystemTime) -> String {
        let issued = unix_ms(now);
        let mut random = [0u8; 8];
        if let Ok(mut r) = self.rng.lock() {
            r.fill_bytes(&mut random);
        }
        let mark = self.mark(issued, &random, source);
        let tag = self.tag(issued, &random, &mark);
        let mut raw = [0u8; NONCE_RAW];
        raw[..8].copy_from_slice(&issued.to_be_bytes());
        raw[8..16].copy_from_slice(&random);
        raw[16..16 + MARK_LEN].copy_from_slice(&mark);
        raw[16 + MARK_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        digest::to_hex(&raw)
    }

    /// Opens a nonce presented from `source`: authentic (our secret, our
    /// realm), whether or not it was issued to `source`.
    fn open_any(&self, nonce: &str, source: Option<IpAddr>) -> Option<OpenedNonce> {
        if nonce.len() != NONCE_HEX {
            return None;
        }
        let mut raw = [0u8; NONCE_RAW];
        if !digest::from_hex(nonce.as_bytes(), &mut raw) {
            return None;
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        let issued = u64::from_be_bytes(issued);
        let mark = &raw[16..16 + MARK_LEN];
        let expected = self.tag(issued, &raw[8..16], mark);
        if !bool::from(expected[..TAG_LEN].ct_eq(&raw[16 + MARK_LEN..])) {
            return None;
        }
        let bound = bool::from(self.mark(issued, &raw[8..16], source).ct_eq(mark));
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&raw[16 + MARK_LEN..]);
        Some(OpenedNonce { issued, tag, bound })
    }

    fn open_nonce(&self, nonce: &str, source: Option<IpAddr>) -> Option<OpenedNonce> {
        self.open_any(nonce, source)
            .filter(|n| n.bound || !self.config.bind_to_source)
    }

    /// Whether `nonce` is one of ours, issued to `source`, and not expired at
    /// `now`. The failed-attempt policy counts a failure only then
    /// ([`FailurePolicy::record_failure`](crate::FailurePolicy::record_failure)'s
    /// `nonce_bound`), whatever [`ServerConfig::bind_to_source`] says.
    pub fn issued_to(&self, nonce: &str, source: IpAddr, now: SystemTime) -> bool {
        let Some(n) = self.open_any(nonce, Some(source)) else {
            return false;
        };
        let now_ms = unix_ms(now);
        let lifetime = u64::try_from(self.config.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        n.bound
            && now_ms.saturating_sub(n.issued) <= lifetime
            && n.issued <= now_ms.saturating_add(60_000)
    }

    /// Whether a failure of these credentials from `source` is to be counted
    /// by the failed-attempt policy (its `nonce_bound` input): when
    /// [`ServerConfig::bind_to_source`] is on (the default), only if the nonce
    /// was issued to `source` ([`credentials_issued_to`](Self::credentials_issued_to)),
    /// so forged sources spend nothing; when it is off, always (a nonce taken
    /// at one address may then be answered from another, and such failures
    /// must not go uncounted).
    pub fn failure_counts(
        &self,
        credentials: Option<&Credentials>,
        source: IpAddr,
        now: SystemTime,
    ) -> bool {
        !self.config.bind_to_source || self.credentials_issued_to(credentials, source, now)
    }

    /// [`issued_to`](Self::issued_to) for credentials (false when they carry
    /// no nonce).
    pub fn credentials_issued_to(
        &self,
        credentials: Option<&Credentials>,
        source: IpAddr,
        now: SystemTime,
    ) -> bool {
        credentials
            .and_then(|c| c.nonce())
            .is_some_and(|n| self.issued_to(n, source, now))
    }

    /// The challenges to send (one per configured algorithm, sharing one nonce),
    /// with `stale=true` when `stale`.
    pub fn challenge(
        &self,
        source: Option<IpAddr>,
        now: SystemTime,
        stale: bool,
    ) -> Vec<Challenge> {
        let nonce = ByteString::from(self.nonce(source, now));
        let qop = self
            .config
            .qop
            .iter()
            .map(|q| q.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let qop = ByteString::from(qop);
        let realm = ByteString::from(self.config.realm.as_str());
        // Static names: no copy of them per challenge.
        let name = ByteString::from_static;
        self.config
            .algorithms
            .iter()
            .map(|a| {
                let mut c = Challenge::digest()
                    .with(name("realm"), realm.clone())
                    .with(name("nonce"), nonce.clone())
                    .with(name("algorithm"), ByteString::from_static(a.as_str()));
                if !qop.is_empty() {
                    c.push(name("qop"), qop.clone());
                }
                if stale {
                    c.push(name("stale"), ByteString::from_static("true"));
                }
                if self.config.userhash {
                    c.push(name("userhash"), ByteString::from_static("true"));
                }
                c
            })
            .collect()
    }

    /// Among a request's `Authorization` (or `Proxy-Authorization`) values, the
    /// Digest credentials for our realm, if any.
    pub fn select<'c>(
        &self,
        credentials: impl IntoIterator<Item = &'c Credentials>,
    ) -> Option<&'c Credentials> {
        credentials
            .into_iter()
            .find(|c| c.is_digest() && c.realm() == Some(self.config.realm.as_str()))
    }

    /// Verifies all of a request's `Authorization` (or `Proxy-Authorization`)
    /// values: picks ours with [`select`](Self::select) and verifies it, or
    /// returns [`Outcome::Challenge`] when there is none.
    pub fn authenticate<'c>(
        &self,
        credentials: impl IntoIterator<Item = &'c Credentials>,
        req: &RequestInfo<'_>,
        source: Option<IpAddr>,
        now: SystemTime,
        store: &dyn CredentialStore,
    ) -> Outcome {
        match self.select(credentials) {
            Some(c) => self.verify(c, req, source, now, store),
            None => Outcome::Challenge(self.challenge(source, now, false)),
        }
    }

    /// Verifies one set of credentials for the request `req` received from
    /// `source` at `now`, looking the secret up in `store`.
    pub fn verify(
        &self,
        credentials: &Credentials,
        req: &RequestInfo<'_>,
        source: Option<IpAddr>,
        now: SystemTime,
        store: &dyn CredentialStore,
    ) -> Outcome {
        let pending = match self.check(credentials, req, source, now) {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        if pending.userhash {
            let user =
                store.resolve_userhash(pending.username, &self.config.realm, pending.algorithm);
            let secret = user
                .as_deref()
                .and_then(|u| store.lookup(u, &self.config.realm, pending.algorithm));
            pending.finish_userhash(user.as_deref(), secret)
        } else {
            let secret = store.lookup(pending.username, &self.config.realm, pending.algorithm);
            pending.finish(secret)
        }
    }

    /// First step of a verification: everything that needs no secret. `Err` is
    /// the final outcome; `Ok` says which secret to look up.
    pub fn check<'a>(
        &'a self,
        c: &'a Credentials,
        req: &RequestInfo<'a>,
        source: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<Pending<'a>, Outcome> {
        let bad = |f| Err(Outcome::BadRequest(f));
        if !c.is_digest() {
            return Err(Outcome::Challenge(self.challenge(source, now, false)));
        }
        let Some(realm) = c.realm() else {
            return bad(Fault::Missing("realm"));
        };
        if realm != self.config.realm {
            return Err(Outcome::Forbidden(Refusal::WrongRealm));
        }
        let Some(username) = c.username() else {
            return bad(Fault::Missing("username"));
        };
        let Some(nonce) = c.nonce() else {
            return bad(Fault::Missing("nonce"));
        };
        let Some(uri) = c.uri() else {
            return bad(Fault::Missing("uri"));
        };
        let Some(response) = c.response() else {
            return bad(Fault::Missing("response"));
        };
        let algorithm = match Algorithm::from_param(c.algorithm()) {
            Some(a) if self.config.algorithms.contains(&a) => a,
            _ => {
                return bad(Fault::UnsupportedAlgorithm(
                    c.algorithm().unwrap_or("MD5").to_owned(),
                ));
            }
        };
        let qop = match c.qop() {
            None if self.config.qop.is_empty() => None,
            None => return bad(Fault::QopRequired),
            Some(q) => match q.parse::<Qop>() {
                Ok(q) if self.config.qop.contains(&q) => Some(q),
                _ => return bad(Fault::UnsupportedQop(q.to_owned())),
            },
        };
        let (cnonce, nc_text, nc) = if qop.is_some() {
            let Some(cnonce) = c.cnonce() else {
                return bad(Fault::Missing("cnonce"));
            };
            let Some(nc_text) = c.nc() else {
                return bad(Fault::Missing("nc"));
            };
            let mut raw = [0u8; 4];
            if nc_text.len() != 8 || !digest::from_hex(nc_text.as_bytes(), &mut raw) {
                return bad(Fault::Malformed("nc"));
            }
            let nc = u32::from_be_bytes(raw);
            if nc == 0 {
                return bad(Fault::Malformed("nc"));
            }
            (cnonce, nc_text, nc)
        } else if algorithm.is_sess() {
            let Some(cnonce) = c.cnonce() else {
                return bad(Fault::Missing("cnonce"));
            };
            (cnonce, "", 0)
        } else {
            ("", "", 0)
        };
        if cnonce.is_empty() && (qop.is_some() || algorithm.is_sess()) {
            return bad(Fault::Malformed("cnonce"));
        }
        if uri != req.uri && !uri.eq_ignore_ascii_case(req.uri) {
            return bad(Fault::UriMismatch);
        }
        let Some(response) = HexDigest::parse(algorithm.hash(), response) else {
            return bad(Fault::Malformed("response"));
        };
        // The nonce before anything about the password is learnt (and before
        // the store is asked): a nonce that is not ours, not issued to this
        // source (when bound) or expired gets `stale=true` whether the digest
        // is right or wrong. Otherwise a guesser could take nonces at one
        // address and try passwords from another, where its failures would
        // not count (they answer no nonce issued there), and read right from
        // wrong in the answer.
        let stale = |reason| {
            Err(Outcome::Stale {
                challenges: self.challenge(source, now, true),
                reason,
            })
        };
        let Some(opened) = self.open_nonce(nonce, source) else {
            return stale(StaleReason::NonceInvalid);
        };
        let now_ms = unix_ms(now);
        let lifetime = u64::try_from(self.config.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        if now_ms.saturating_sub(opened.issued) > lifetime {
            return stale(StaleReason::Expired);
        }
        // Issued in the future (beyond clock jitter): only after a clock step back.
        if opened.issued > now_ms.saturating_add(60_000) {
            return stale(StaleReason::NonceInvalid);
        }
        Ok(Pending {
            server: self,
            username,
            userhash: c.userhash(),
            algorithm,
            qop,
            nonce,
            cnonce,
            nc_text,
            nc,
            response,
            req: *req,
            uri,
            source,
            now,
            opened,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_grows_with_what_it_holds() {
        let mut r = ReplayCache::new(65_536);
        for i in 0..100u8 {
            assert!(r.record([i; 16], 10, 1));
        }
        assert_eq!(r.map.len(), 100);
        assert!(r.map.capacity() < 1024, "{}", r.map.capacity());
        assert!(r.order.capacity() < 1024, "{}", r.order.capacity());
    }

    #[test]
    fn replay_cache_evicts_and_raises_floor() {
        let mut r = ReplayCache::new(2);
        assert!(r.record([1; 16], 10, 1));
        assert!(!r.record([1; 16], 10, 1));
        assert!(r.record([1; 16], 10, 2));
        assert!(r.record([2; 16], 20, 1));
        // Full: inserting a third evicts [1] (issued 10) and raises the floor.
        assert!(r.record([3; 16], 30, 1));
        assert_eq!(r.map.len(), 2);
        assert_eq!(r.floor, 10);
        // The evicted nonce cannot come back, whatever its nc.
        assert!(!r.record([1; 16], 10, 99));
        // Nor can an unrecorded nonce issued before the floor.
        assert!(!r.record([4; 16], 5, 1));
        assert!(r.record([2; 16], 20, 2));
    }
}
