//! The client side: answering `401`/`407` challenges (registration client, trunk sender).
//!
//! # Protocol with the caller
//!
//! 1. Before sending a **new** request (not a retry), call
//!    [`DigestClient::authorize`]: it returns pre-emptive credentials for the realms
//!    already known (possibly none) and starts a new exchange.
//! 2. On a `401`/`407` for that request, call [`DigestClient::answer`] with the
//!    server the request was sent to and the response's `WWW-Authenticate` and
//!    `Proxy-Authenticate` values; add every returned [`Authorization`] to the
//!    retried request (new CSeq, same Call-ID).
//! 3. An error from `answer` ends the exchange: report it, do not retry.
//!
//! # Where credentials go
//!
//! A client is bound to one server (the registrar or the carrier proxy it was
//! configured for). `answer` refuses challenges from anywhere else
//! ([`AuthError::ForeignServer`]), and only answers realms that configured
//! credentials cover. With `realm: None`, any realm that the configured server
//! challenges with is answered; set the realm to also refuse challenges that a
//! far end relays through that server (a known way to obtain a gateway's digest
//! for an offline password search).

use std::fmt;

use bytestring::ByteString;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::algorithm::{Algorithm, Qop};
use crate::digest::{self, DigestInput, HexDigest};
use crate::error::AuthError;
use crate::{Challenge, Credentials, RequestInfo};

/// Most realms (protection spaces) whose nonce a client keeps.
const MAX_SESSIONS: usize = 16;

/// The secret a client authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plain password.
    Password(String),
    /// A precomputed `H(username:realm:password)` for one realm, usable with the
    /// algorithms whose hash function is `algorithm`'s (MD5 covers MD5 and
    /// MD5-sess, and so on).
    Ha1 {
        /// The realm the HA1 was computed for.
        realm: String,
        /// The HA1 in hex.
        ha1: String,
        /// Any algorithm of the hash function used.
        algorithm: Algorithm,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(..)"),
            Secret::Ha1 {
                realm, algorithm, ..
            } => write!(f, "Ha1 {{ realm: {realm:?}, algorithm: {algorithm}, .. }}"),
        }
    }
}

/// A user name, a secret, and the realm they are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The user name (authorization user; may differ from the From user).
    pub username: String,
    /// Password or HA1.
    pub secret: Secret,
    /// The realm these credentials are for; `None` = any realm the configured
    /// server challenges with (not allowed with [`Secret::Ha1`], which has its own).
    pub realm: Option<String>,
}

impl ClientCredentials {
    /// Password credentials for any realm of the configured server.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        ClientCredentials {
            username: username.into(),
            secret: Secret::Password(password.into()),
            realm: None,
        }
    }

    /// Precomputed-HA1 credentials for `realm`.
    pub fn ha1(
        username: impl Into<String>,
        realm: impl Into<String>,
        ha1: impl Into<String>,
        algorithm: Algorithm,
    ) -> Self {
        let realm = realm.into();
        ClientCredentials {
            username: username.into(),
            secret: Secret::Ha1 {
                realm: realm.clone(),
                ha1: ha1.into(),
                algorithm,
            },
            realm: Some(realm),
        }
    }

    /// The same credentials restricted to `realm`.
    pub fn for_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Whether these credentials may answer `realm`, and how specifically
    /// (2 = named realm, 1 = wildcard).
    fn covers(&self, realm: &str) -> u8 {
        let own = match &self.secret {
            Secret::Ha1 { realm: r, .. } => Some(r.as_str()),
            Secret::Password(_) => self.realm.as_deref(),
        };
        match (own, self.realm.as_deref()) {
            (Some(a), Some(b)) if a != b => 0,
            (Some(r), _) if r == realm => 2,
            (None, None) => 1,
            _ => 0,
        }
    }

    fn ha1_for(&self, algorithm: Algorithm, realm: &str) -> Option<HexDigest> {
        match &self.secret {
            Secret::Password(p) => Some(digest::ha1(algorithm.hash(), &self.username, realm, p)),
            Secret::Ha1 {
                ha1, algorithm: a, ..
            } => {
                if a.hash() != algorithm.hash() {
                    return None;
                }
                HexDigest::parse(a.hash(), ha1)
            }
        }
    }
}

/// Client policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Algorithms the client may use, most preferred first. When one response
    /// offers several for a realm, the first of this list that is offered wins
    /// (RFC 8760 §2.4 allows this local policy; ties go to the topmost header).
    /// Default: [`Algorithm::ALL`] (SHA-512-256 first, MD5 last).
    pub algorithms: Vec<Algorithm>,
    /// Choose `auth-int` when the server offers both `auth` and `auth-int`
    /// (default `false`: bodies are often rewritten by intermediaries).
    pub prefer_auth_int: bool,
    /// Answer challenges without `qop` (RFC 2069 legacy, no `nc`/`cnonce`).
    /// Default `true`: many SIP servers still send them.
    pub allow_legacy: bool,
    /// How many `stale=true` challenges in a row are answered within one
    /// exchange before giving up with [`AuthError::TooManyStale`] (default 3).
    pub max_stale: u32,
    /// Whether [`DigestClient::authorize`] returns pre-emptive credentials
    /// (default `true`).
    pub preemptive: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            algorithms: Algorithm::ALL.to_vec(),
            prefer_auth_int: false,
            allow_legacy: true,
            max_stale: 3,
            preemptive: true,
        }
    }
}

/// Which kind of challenge a realm's credentials answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// `WWW-Authenticate` (401), answered with `Authorization`.
    Www,
    /// `Proxy-Authenticate` (407), answered with `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    /// The name of the header that carries the answer.
    pub const fn header_name(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// One header to add to the request: `Authorization` or `Proxy-Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Which header.
    pub kind: ChallengeKind,
    /// Its value.
    pub credentials: Credentials,
}

impl Authorization {
    /// `"Authorization"` or `"Proxy-Authorization"`.
    pub const fn header_name(&self) -> &'static str {
        self.kind.header_name()
    }
}

/// What the client remembers about one protection space (kind + realm).
struct Session {
    kind: ChallengeKind,
    realm: String,
    cred: usize,
    algorithm: Algorithm,
    qop: Option<Qop>,
    nonce: String,
    opaque: Option<String>,
    userhash: bool,
    cnonce: String,
    nc: u32,
    ha1: HexDigest,
    /// Answered in the current exchange (since the last `authorize`).
    pending: bool,
    stale_in_row: u32,
    /// Last use, for eviction.
    used: u64,
}

type CnonceFn = Box<dyn FnMut() -> String + Send>;

/// A digest client bound to one server.
///
/// See the [module documentation](self) for the calling protocol and the
/// [crate documentation](crate) for a round trip.
pub struct DigestClient {
    server: String,
    credentials: Vec<ClientCredentials>,
    config: ClientConfig,
    sessions: Vec<Session>,
    rng: Box<dyn RngCore + Send>,
    cnonce_fn: Option<CnonceFn>,
    clock: u64,
}

impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestClient")
            .field("server", &self.server)
            .field("credentials", &self.credentials)
            .field("config", &self.config)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

struct Candidate<'c> {
    challenge: &'c Challenge,
    kind: ChallengeKind,
    algorithm: Algorithm,
    qop: Option<Qop>,
    rank: usize,
}

impl DigestClient {
    /// A client that only answers challenges from `server` (compared
    /// case-insensitively; use the same form the caller passes to
    /// [`answer`](Self::answer), such as the host name or `host:port`).
    pub fn new(server: impl Into<String>, credentials: ClientCredentials) -> Self {
        DigestClient {
            server: server.into(),
            credentials: vec![credentials],
            config: ClientConfig::default(),
            sessions: Vec::new(),
            rng: Box::new(StdRng::from_os_rng()),
            cnonce_fn: None,
            clock: 0,
        }
    }

    /// Adds credentials for another realm of the same server (for example the
    /// proxy's realm next to the registrar's).
    pub fn add_credentials(&mut self, credentials: ClientCredentials) -> &mut Self {
        self.credentials.push(credentials);
        self
    }

    /// Replaces the policy.
    pub fn with_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the random source used for `cnonce` (the default is a
    /// [`StdRng`] seeded from the operating system).
    pub fn with_rng(mut self, rng: impl RngCore + Send + 'static) -> Self {
        self.rng = Box::new(rng);
        self
    }

    /// Replaces the `cnonce` generator entirely (tests and test vectors).
    pub fn with_cnonce_generator(mut self, f: impl FnMut() -> String + Send + 'static) -> Self {
        self.cnonce_fn = Some(Box::new(f));
        self
    }

    /// The server this client is bound to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Forgets every cached nonce.
    pub fn reset(&mut self) {
        self.sessions.clear();
    }

    fn new_cnonce(&mut self) -> String {
        if let Some(f) = self.cnonce_fn.as_mut() {
            return f();
        }
        let mut raw = [0u8; 16];
        self.rng.fill_bytes(&mut raw);
        digest::to_hex(&raw)
    }

    /// Starts a new request to `target`: returns pre-emptive credentials for
    /// every realm of that server with a cached nonce (`nc` incremented), or none
    /// when `target` is not the configured server or pre-emptive sending is off.
    pub fn authorize(&mut self, target: &str, req: &RequestInfo<'_>) -> Vec<Authorization> {
        for s in &mut self.sessions {
            s.pending = false;
            s.stale_in_row = 0;
        }
        if !self.config.preemptive || !target.eq_ignore_ascii_case(&self.server) {
            return Vec::new();
        }
        self.clock += 1;
        let clock = self.clock;
        let mut out = Vec::with_capacity(self.sessions.len());
        for k in 0..self.sessions.len() {
            self.sessions[k].used = clock;
            if let Some(a) = self.build(k, req) {
                out.push(a);
            }
        }
        out
    }

    /// Answers the challenges of a `401`/`407` to a request sent to
    /// `challenged_by`: `www` are the response's `WWW-Authenticate` values,
    /// `proxy` its `Proxy-Authenticate` values (a forking proxy may merge both
    /// into one response). Returns every header the retried request needs,
    /// including the realms answered earlier in the same exchange.
    ///
    /// Per realm, the strongest offered algorithm allowed by
    /// [`ClientConfig::algorithms`] is used. Errors end the exchange.
    pub fn answer(
        &mut self,
        challenged_by: &str,
        www: &[Challenge],
        proxy: &[Challenge],
        req: &RequestInfo<'_>,
    ) -> Result<Vec<Authorization>, AuthError> {
        if !challenged_by.eq_ignore_ascii_case(&self.server) {
            return Err(AuthError::ForeignServer {
                from: challenged_by.to_owned(),
                configured: self.server.clone(),
            });
        }
        // Group by (kind, realm), keeping the order of first appearance.
        let mut realms: Vec<(ChallengeKind, &str)> = Vec::new();
        let all = www
            .iter()
            .map(|c| (ChallengeKind::Www, c))
            .chain(proxy.iter().map(|c| (ChallengeKind::Proxy, c)));
        for (kind, c) in all.clone() {
            if !c.is_digest() {
                continue;
            }
            let realm = c.realm().unwrap_or("");
            if !realms.iter().any(|&(k, r)| k == kind && r == realm) {
                realms.push((kind, realm));
            }
        }
        if realms.is_empty() {
            return Err(AuthError::NoUsableChallenge {
                realm: None,
                reason: "no Digest challenge",
            });
        }
        // Choose a challenge and credentials for every realm before changing any state.
        let mut chosen = Vec::with_capacity(realms.len());
        for &(kind, realm) in &realms {
            let cred = self.credentials_for(realm)?;
            if self.credentials[cred]
                .username
                .chars()
                .any(char::is_control)
            {
                return Err(AuthError::Config("user name contains control characters"));
            }
            let mut best: Option<Candidate<'_>> = None;
            for (k, c) in all.clone() {
                if k != kind || !c.is_digest() || c.realm().unwrap_or("") != realm {
                    continue;
                }
                let Some(cand) = self.candidate(k, c, cred) else {
                    continue;
                };
                if best.as_ref().is_none_or(|b| cand.rank < b.rank) {
                    best = Some(cand);
                }
            }
            let Some(best) = best else {
                return Err(AuthError::NoUsableChallenge {
                    realm: Some(realm.to_owned()),
                    reason: "no challenge with a nonce, an allowed algorithm and a supported qop",
                });
            };
            chosen.push((cred, best));
        }
        // Loop and stale checks against what we already answered.
        for (_, cand) in &chosen {
            let realm = cand.challenge.realm().unwrap_or("");
            let nonce = cand.challenge.nonce().unwrap_or("");
            if let Some(s) = self.session(cand.kind, realm) {
                if s.nonce == nonce && s.nc > 0 {
                    return Err(AuthError::CredentialsRejected {
                        realm: realm.to_owned(),
                    });
                }
                if cand.challenge.stale() {
                    if s.stale_in_row >= self.config.max_stale {
                        return Err(AuthError::TooManyStale {
                            realm: realm.to_owned(),
                        });
                    }
                } else if s.pending {
                    return Err(AuthError::CredentialsRejected {
                        realm: realm.to_owned(),
                    });
                }
            }
        }
        // Commit the new nonces.
        self.clock += 1;
        let clock = self.clock;
        for (cred, cand) in chosen {
            let c = cand.challenge;
            let realm = c.realm().unwrap_or("");
            let ha1 = self.credentials[cred]
                .ha1_for(cand.algorithm, realm)
                .ok_or(AuthError::Config(
                    "HA1 is not hex of the algorithm's length",
                ))?;
            let cnonce = self.new_cnonce();
            let stale_in_row = match self.session(cand.kind, realm) {
                Some(s) if c.stale() => s.stale_in_row + 1,
                _ => 0,
            };
            let session = Session {
                kind: cand.kind,
                realm: realm.to_owned(),
                cred,
                algorithm: cand.algorithm,
                qop: cand.qop,
                nonce: c.nonce().unwrap_or("").to_owned(),
                opaque: c.opaque().map(str::to_owned),
                userhash: c.userhash(),
                cnonce,
                nc: 0,
                ha1,
                pending: true,
                stale_in_row,
                used: clock,
            };
            match self
                .sessions
                .iter()
                .position(|s| s.kind == cand.kind && s.realm == realm)
            {
                Some(k) => self.sessions[k] = session,
                None => {
                    if self.sessions.len() >= MAX_SESSIONS {
                        // Evict the least recently used one that is not part of this exchange.
                        if let Some((k, _)) = self
                            .sessions
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| !s.pending)
                            .min_by_key(|(_, s)| s.used)
                        {
                            self.sessions.swap_remove(k);
                        }
                    }
                    self.sessions.push(session);
                }
            }
        }
        let mut out = Vec::new();
        for k in 0..self.sessions.len() {
            if self.sessions[k].pending {
                self.sessions[k].used = clock;
                if let Some(a) = self.build(k, req) {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    fn session(&self, kind: ChallengeKind, realm: &str) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.kind == kind && s.realm == realm)
    }

    fn credentials_for(&self, realm: &str) -> Result<usize, AuthError> {
        let mut best: Option<(u8, usize)> = None;
        for (k, c) in self.credentials.iter().enumerate() {
            let score = c.covers(realm);
            if score > 0 && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, k));
            }
        }
        best.map(|(_, k)| k).ok_or_else(|| AuthError::UnknownRealm {
            realm: realm.to_owned(),
        })
    }

    fn candidate<'c>(
        &self,
        kind: ChallengeKind,
        c: &'c Challenge,
        cred: usize,
    ) -> Option<Candidate<'c>> {
        c.nonce()?;
        let algorithm = Algorithm::from_param(c.algorithm())?;
        let rank = self
            .config
            .algorithms
            .iter()
            .position(|&a| a == algorithm)?;
        if let Secret::Ha1 { algorithm: a, .. } = &self.credentials[cred].secret
            && a.hash() != algorithm.hash()
        {
            return None;
        }
        let mut auth = false;
        let mut auth_int = false;
        let mut any = false;
        for q in c.qop_options() {
            any = true;
            match q.parse::<Qop>() {
                Ok(Qop::Auth) => auth = true,
                Ok(Qop::AuthInt) => auth_int = true,
                Err(_) => {}
            }
        }
        let qop = match (auth, auth_int) {
            (true, true) if self.config.prefer_auth_int => Some(Qop::AuthInt),
            (true, _) => Some(Qop::Auth),
            (false, true) => Some(Qop::AuthInt),
            (false, false) if !any && self.config.allow_legacy => None,
            (false, false) => return None,
        };
        Some(Candidate {
            challenge: c,
            kind,
            algorithm,
            qop,
            rank,
        })
    }

    /// Builds the header for session `k`, incrementing its nonce count.
    fn build(&mut self, k: usize, req: &RequestInfo<'_>) -> Option<Authorization> {
        let s = &mut self.sessions[k];
        s.nc = s.nc.checked_add(1)?;
        let cred = &self.credentials[s.cred];
        let nc = format!("{:08x}", s.nc);
        let input = DigestInput {
            algorithm: s.algorithm,
            nonce: &s.nonce,
            cnonce: &s.cnonce,
            nc: &nc,
            qop: s.qop,
            method: req.method,
            uri: req.uri,
            body: req.body,
        };
        let response = digest::response(&input, &s.ha1);
        let username = if s.userhash {
            digest::userhash(s.algorithm.hash(), &cred.username, &s.realm)
                .as_str()
                .to_owned()
        } else {
            cred.username.clone()
        };
        let mut c = Credentials::digest()
            .with("username", username)
            .with("realm", s.realm.as_str())
            .with("nonce", s.nonce.as_str())
            .with("uri", req.uri)
            .with("response", response.as_str())
            .with("algorithm", ByteString::from_static(s.algorithm.as_str()));
        if s.qop.is_some() || s.algorithm.is_sess() {
            c.push("cnonce", s.cnonce.as_str());
        }
        if let Some(o) = &s.opaque {
            c.push("opaque", o.as_str());
        }
        if let Some(q) = s.qop {
            c.push("qop", ByteString::from_static(q.as_str()));
            c.push("nc", nc);
        }
        if s.userhash {
            c.push("userhash", ByteString::from_static("true"));
        }
        Some(Authorization {
            kind: s.kind,
            credentials: c,
        })
    }
}
