//! Authentication and authorisation of REGISTER requests.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use siplink_auth::{CredentialStore, DigestServer, FailureLimiter, LimiterConfig};

use crate::binding::Aor;

/// Digest authentication (through `siplink-auth`) plus the rule saying which
/// AORs each user may register.
///
/// A user listed with [`with_owner`](Self::with_owner) may register exactly the
/// AORs listed for it; any other user may register the AORs whose user part is
/// its user name, in any of our domains (`alice` owns `sip:alice@example.com`).
pub struct Authenticator {
    pub(crate) server: DigestServer,
    pub(crate) credentials: Box<dyn CredentialStore + Send + Sync>,
    pub(crate) limiter: Arc<FailureLimiter>,
    owners: HashMap<String, Vec<Aor>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("server", &self.server)
            .field("limiter", &self.limiter)
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Verifies with `server` against `credentials`, with the default
    /// [`FailureLimiter`] (per source and per (source, user); see
    /// [`siplink_auth::limiter`]).
    pub fn new(
        server: DigestServer,
        credentials: impl CredentialStore + Send + Sync + 'static,
    ) -> Self {
        Authenticator {
            server,
            credentials: Box::new(credentials),
            limiter: Arc::new(FailureLimiter::new(LimiterConfig::default())),
            owners: HashMap::new(),
        }
    }

    /// Replaces the failed-attempt limiter.
    pub fn with_limiter(mut self, limiter: FailureLimiter) -> Self {
        self.limiter = Arc::new(limiter);
        self
    }

    /// Uses a limiter shared with other authenticating parts (a proxy's call
    /// authentication), so that a guesser counts once whatever the method.
    pub fn with_shared_limiter(mut self, limiter: Arc<FailureLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// The failed-attempt limiter.
    pub fn limiter(&self) -> &Arc<FailureLimiter> {
        &self.limiter
    }

    /// Lets `user` register `aor` (and, once listed, only the AORs listed).
    pub fn with_owner(mut self, user: impl Into<String>, aor: Aor) -> Self {
        self.owners.entry(user.into()).or_default().push(aor);
        self
    }

    /// Whether `user` may register `aor`.
    pub fn may_register(&self, user: &str, aor: &Aor) -> bool {
        match self.owners.get(user) {
            Some(list) => list.contains(aor),
            None => aor.user() == Some(user),
        }
    }
}
