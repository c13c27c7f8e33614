//! Routing decisions (sans-IO): which connections may carry a call, in order.
//!
//! A [`Router`] is built from a validated [`Config`]: every enabled
//! connection's dial patterns compiled into one [`DialPlan`], plus each user's
//! allow list. [`Router::route`] takes the dialled number and the calling
//! user and returns every matching connection in configuration order (the
//! first carries the call, the rest are its failover), leaving out those the
//! user may not use and those that are down.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use siplink_dialplan::{DialPlan, normalize_number};
use siplink_message::uri::Uri;

use crate::config::{Config, ConfigError, ConfigIssue, ConnectionKind};

/// One connection that can carry a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Index of the connection in [`Config::connections`].
    pub connection: usize,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ConnectionKind,
    /// The number to send on (after the pattern's rewrite, if any).
    pub number: String,
    /// Which of the connection's patterns matched (0-based).
    pub pattern_index: usize,
}

/// The outcome of [`Router::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try these in order (at least one).
    Route(Vec<Candidate>),
    /// Connections match, but every one of them is down: these are tried
    /// anyway, in order (a probe may lag behind a recovery).
    AllDown(Vec<Candidate>),
    /// Connections match, but the user may use none of them.
    NotAllowed,
    /// No pattern of any enabled connection matches.
    NoMatch,
}

/// The compiled routing table.
#[derive(Debug)]
pub struct Router {
    plan: DialPlan<usize>,
    kinds: Vec<(String, ConnectionKind)>,
    allowed: HashMap<String, Option<HashSet<usize>>>,
}

impl Router {
    /// Compiles the dial patterns of `config`'s enabled connections.
    pub fn new(config: &Config) -> Result<Router, ConfigError> {
        let mut builder = DialPlan::builder();
        for (i, c) in config.connections.iter().enumerate() {
            if !c.enabled {
                continue;
            }
            let patterns: Vec<siplink_dialplan::Pattern> = c
                .dial_patterns
                .iter()
                .map(|p| match p {
                    crate::config::DialPatternConfig::Plain(p) => {
                        siplink_dialplan::Pattern::new(p.clone())
                    }
                    crate::config::DialPatternConfig::Rewrite { pattern, rewrite } => {
                        siplink_dialplan::Pattern::new(pattern.clone())
                            .with_rewrite(rewrite.clone())
                    }
                })
                .collect();
            builder = builder.connection(i, patterns);
        }
        let plan = builder.build().map_err(|e| ConfigError {
            file: None,
            issues: vec![ConfigIssue {
                location: "connections".into(),
                message: e.to_string(),
            }],
        })?;
        let kinds = config
            .connections
            .iter()
            .map(|c| (c.name.clone(), c.kind))
            .collect();
        let index: HashMap<&str, usize> = config
            .connections
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let allowed = config
            .users
            .iter()
            .map(|u| {
                let set = u.connections.as_ref().map(|names| {
                    names
                        .iter()
                        .filter_map(|n| index.get(n.as_str()).copied())
                        .collect()
                });
                (u.name.clone(), set)
            })
            .collect();
        Ok(Router {
            plan,
            kinds,
            allowed,
        })
    }

    /// The connections for `number` dialled by `user` (`None`: a caller that
    /// is not a user, e.g. a PBX, which may use every connection), in order.
    /// `is_up(i)` says whether connection `i` is up.
    pub fn route(
        &self,
        user: Option<&str>,
        number: &str,
        is_up: impl Fn(usize) -> bool,
    ) -> Decision {
        let number = normalize_number(number);
        let allowed = match user {
            Some(u) => match self.allowed.get(u) {
                Some(set) => set.as_ref(),
                None => return Decision::NotAllowed,
            },
            None => None,
        };
        let mut matched = false;
        let mut up = Vec::new();
        let mut down = Vec::new();
        for r in self.plan.matches(&number) {
            matched = true;
            let i = *r.connection();
            if allowed.is_some_and(|set| !set.contains(&i)) {
                continue;
            }
            let (name, kind) = &self.kinds[i];
            let c = Candidate {
                connection: i,
                name: name.clone(),
                kind: *kind,
                number: r.rewritten().into_owned(),
                pattern_index: r.pattern_index(),
            };
            if is_up(i) { up.push(c) } else { down.push(c) }
        }
        match (matched, up.is_empty(), down.is_empty()) {
            (false, _, _) => Decision::NoMatch,
            (true, false, _) => Decision::Route(up),
            (true, true, false) => Decision::AllDown(down),
            (true, true, true) => Decision::NotAllowed,
        }
    }

    /// Number of compiled patterns.
    pub fn pattern_count(&self) -> usize {
        self.plan.pattern_count()
    }
}

/// The dialled number of a Request-URI: the user part of a `sip:`/`sips:` URI
/// (unescaped, without visual separators) or the number of a `tel:` URI.
pub fn dialled_number(uri: &Uri) -> Option<Cow<'_, str>> {
    match uri {
        Uri::Sip(sip) => {
            let user = sip.user_unescaped()?;
            let text = match user {
                Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).ok()?),
                Cow::Owned(v) => Cow::Owned(String::from_utf8(v).ok()?),
            };
            // A user part may carry telephone-subscriber parameters (`;phone-context=`).
            let text = match text {
                Cow::Borrowed(t) => Cow::Borrowed(t.split(';').next().unwrap_or(t)),
                Cow::Owned(t) => Cow::Owned(t.split(';').next().unwrap_or(&t).to_owned()),
            };
            Some(match normalize_number(&text) {
                Cow::Borrowed(_) => text,
                Cow::Owned(n) => Cow::Owned(n),
            })
        }
        Uri::Tel(tel) => Some(Cow::Owned(normalize_number(tel.number()).into_owned())),
        _ => None,
    }
}
