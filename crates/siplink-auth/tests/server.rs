//! Server behaviour: nonces, staleness, replay, refusals, malformed input.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use siplink_auth::{
    Algorithm, ClientCredentials, Credentials, DigestClient, DigestServer, FailureLimiter, Fault,
    LimiterConfig, Outcome, Qop, Refusal, RequestInfo, Scope, ServerConfig, StaleReason,
    StoredSecret,
    digest::{self, DigestInput},
};

const HOST: &str = "registrar.example";
const REALM: &str = "example.com";

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn server() -> DigestServer {
    DigestServer::with_secret(
        ServerConfig::new(REALM),
        b"0123456789abcdef0123456789abcdef",
    )
}

fn store(u: &str, _r: &str, _a: Algorithm) -> Option<StoredSecret> {
    match u {
        "alice" => Some(StoredSecret::Password("wonderland".into())),
        "bob" => Some(StoredSecret::Password("builder".into())),
        _ => None,
    }
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

fn register() -> RequestInfo<'static> {
    RequestInfo::new("REGISTER", "sip:example.com")
}

/// A client answer to a fresh challenge from `server` for `source` at `now`.
fn answer(
    server: &DigestServer,
    source: Option<IpAddr>,
    now: SystemTime,
    req: &RequestInfo<'_>,
) -> (DigestClient, Credentials) {
    let mut c = DigestClient::new(HOST, ClientCredentials::password("alice", "wonderland"));
    let ch = server.challenge(source, now, false);
    let out = c.answer(HOST, &ch, &[], req).unwrap();
    (c, out[0].credentials.clone())
}

/// Credentials with `name` replaced by `value` (other parameters unchanged).
fn with_param(c: &Credentials, name: &str, value: &str) -> Credentials {
    let mut c = c.clone();
    for p in &mut c.params.0 {
        if p.name.eq_ignore_ascii_case(name) {
            p.value = Some(value.into());
        }
    }
    c
}

/// Recomputes the response of `c` as a client knowing the password would.
fn resign(c: &Credentials, req: &RequestInfo<'_>, password: &str) -> Credentials {
    let alg = Algorithm::from_param(c.algorithm()).unwrap();
    let ha1 = digest::ha1(
        alg.hash(),
        c.username().unwrap(),
        c.realm().unwrap(),
        password,
    );
    let input = DigestInput {
        algorithm: alg,
        nonce: c.nonce().unwrap(),
        cnonce: c.cnonce().unwrap_or(""),
        nc: c.nc().unwrap_or(""),
        qop: c.qop().map(|q| q.parse::<Qop>().unwrap()),
        method: req.method,
        uri: c.uri().unwrap(),
        body: req.body,
    };
    with_param(c, "response", digest::response(&input, &ha1).as_str())
}

#[test]
fn challenge_shape() {
    let s = server();
    let ch = s.challenge(ip(1), t0(), false);
    assert_eq!(ch.len(), 2);
    assert_eq!(ch[0].algorithm(), Some("SHA-256"));
    assert_eq!(ch[1].algorithm(), Some("MD5"));
    assert_eq!(ch[0].nonce(), ch[1].nonce());
    assert_eq!(ch[0].nonce().unwrap().len(), 80);
    assert!(!ch[0].stale());
    assert_eq!(
        ch[0].to_string(),
        format!(
            "Digest realm=\"example.com\", nonce=\"{}\", algorithm=SHA-256, qop=\"auth\"",
            ch[0].nonce().unwrap()
        )
    );
    // Nonces are unique even within one millisecond.
    assert_ne!(s.nonce(ip(1), t0()), s.nonce(ip(1), t0()));
}

#[test]
fn accepts_and_reports_who() {
    let s = server();
    let (_, c) = answer(&s, ip(1), t0(), &register());
    match s.verify(
        &c,
        &register(),
        ip(1),
        t0() + Duration::from_secs(10),
        &store,
    ) {
        Outcome::Accept(a) => {
            assert_eq!(a.username, "alice");
            assert_eq!(a.realm, REALM);
            assert_eq!(a.algorithm, Algorithm::Sha256);
            assert_eq!(a.qop, Some(Qop::Auth));
            assert_eq!(a.nc, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn forged_or_altered_nonce() {
    let s = server();
    let (_, c) = answer(&s, ip(1), t0(), &register());
    let nonce = c.nonce().unwrap().to_owned();
    // Flip one hex digit anywhere (timestamp, random part, tag); re-sign so the
    // digest itself is right: the nonce is still detected.
    for pos in [0, 10, 20, 40, 63, 79] {
        let mut forged = nonce.clone().into_bytes();
        forged[pos] = if forged[pos] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        let c2 = resign(&with_param(&c, "nonce", &forged), &register(), "wonderland");
        match s.verify(&c2, &register(), ip(1), t0(), &store) {
            Outcome::Stale { reason, .. } => {
                assert_eq!(reason, StaleReason::NonceInvalid, "pos {pos}")
            }
            other => panic!("{other:?}"),
        }
        // Without re-signing the digest no longer matches, but the nonce is
        // refused first: the same answer, so nothing is learnt.
        let c3 = with_param(&c, "nonce", &forged);
        assert!(matches!(
            s.verify(&c3, &register(), ip(1), t0(), &store),
            Outcome::Stale {
                reason: StaleReason::NonceInvalid,
                ..
            }
        ));
    }
    // Garbage and a nonce from a server with another secret.
    for bad in ["", "xyz", &"g".repeat(80), &"0".repeat(80), &"0".repeat(64)] {
        let c2 = resign(&with_param(&c, "nonce", bad), &register(), "wonderland");
        assert!(matches!(
            s.verify(&c2, &register(), ip(1), t0(), &store),
            Outcome::Stale {
                reason: StaleReason::NonceInvalid,
                ..
            }
        ));
    }
    let other = DigestServer::with_secret(ServerConfig::new(REALM), b"another secret");
    let (_, c) = answer(&other, ip(1), t0(), &register());
    assert!(matches!(
        s.verify(&c, &register(), ip(1), t0(), &store),
        Outcome::Stale {
            reason: StaleReason::NonceInvalid,
            ..
        }
    ));
}

#[test]
fn nonce_bound_to_source_address() {
    let s = server();
    let (_, c) = answer(&s, ip(1), t0(), &register());
    assert!(matches!(
        s.verify(&c, &register(), ip(2), t0(), &store),
        Outcome::Stale {
            reason: StaleReason::NonceInvalid,
            ..
        }
    ));
    assert!(matches!(
        s.verify(&c, &register(), None, t0(), &store),
        Outcome::Stale { .. }
    ));
    assert!(matches!(
        s.verify(&c, &register(), ip(1), t0(), &store),
        Outcome::Accept(_)
    ));
    // Unbound servers accept from anywhere.
    let mut cfg = ServerConfig::new(REALM);
    cfg.bind_to_source = false;
    let s = DigestServer::with_secret(cfg, b"k");
    let (_, c) = answer(&s, ip(1), t0(), &register());
    assert!(matches!(
        s.verify(&c, &register(), ip(9), t0(), &store),
        Outcome::Accept(_)
    ));
}

#[test]
fn expired_nonce_is_stale_whatever_the_digest() {
    let s = server();
    let (_, c) = answer(&s, ip(1), t0(), &register());
    let later = t0() + Duration::from_secs(301);
    match s.verify(&c, &register(), ip(1), later, &store) {
        Outcome::Stale { reason, challenges } => {
            assert_eq!(reason, StaleReason::Expired);
            assert!(challenges.iter().all(|c| c.stale()));
            assert_ne!(challenges[0].nonce(), c.nonce());
        }
        other => panic!("{other:?}"),
    }
    // A wrong digest gets the same answer (the password is not tried with
    // an unusable nonce).
    let wrong = |_: &str, _: &str, _: Algorithm| Some(StoredSecret::Password("guess".into()));
    assert!(matches!(
        s.verify(&c, &register(), ip(1), later, &wrong),
        Outcome::Stale {
            reason: StaleReason::Expired,
            ..
        }
    ));
    // Exactly at the lifetime it still works; a configurable lifetime.
    assert!(matches!(
        s.verify(
            &c,
            &register(),
            ip(1),
            t0() + Duration::from_secs(300),
            &store
        ),
        Outcome::Accept(_)
    ));
    let mut cfg = ServerConfig::new(REALM);
    cfg.nonce_lifetime = Duration::from_secs(5);
    let s = DigestServer::with_secret(cfg, b"k");
    let (_, c) = answer(&s, ip(1), t0(), &register());
    assert!(matches!(
        s.verify(
            &c,
            &register(),
            ip(1),
            t0() + Duration::from_secs(6),
            &store
        ),
        Outcome::Stale {
            reason: StaleReason::Expired,
            ..
        }
    ));
}

#[test]
fn replayed_nc_is_refused() {
    let s = server();
    let (mut client, c1) = answer(&s, ip(1), t0(), &register());
    assert!(matches!(
        s.verify(&c1, &register(), ip(1), t0(), &store),
        Outcome::Accept(_)
    ));
    // The same request again.
    assert!(matches!(
        s.verify(&c1, &register(), ip(1), t0(), &store),
        Outcome::Stale {
            reason: StaleReason::Replay,
            ..
        }
    ));
    // The client's next request (nc 2) is fine, then nc 2 again is not, nor a lower one.
    let c2 = client.authorize(HOST, &register()).remove(0).credentials;
    let c3 = client.authorize(HOST, &register()).remove(0).credentials;
    assert_eq!(c3.nc(), Some("00000003"));
    assert!(matches!(
        s.verify(&c3, &register(), ip(1), t0(), &store),
        Outcome::Accept(Authenticated { nc: 3, .. })
    ));
    assert!(matches!(
        s.verify(&c2, &register(), ip(1), t0(), &store),
        Outcome::Stale {
            reason: StaleReason::Replay,
            ..
        }
    ));
    // Forcing nc back to 1 (re-signed) is still a replay.
    let forged = resign(
        &with_param(&c3, "nc", "00000001"),
        &register(),
        "wonderland",
    );
    assert!(matches!(
        s.verify(&forged, &register(), ip(1), t0(), &store),
        Outcome::Stale {
            reason: StaleReason::Replay,
            ..
        }
    ));
    use siplink_auth::Authenticated;
}

#[test]
fn replay_memory_is_bounded() {
    let mut cfg = ServerConfig::new(REALM);
    cfg.replay_capacity = 4;
    let s = DigestServer::with_secret(cfg, b"k");
    let mut clients = Vec::new();
    for k in 0..10u64 {
        let now = t0() + Duration::from_millis(k);
        let (cl, c) = answer(&s, ip(1), now, &register());
        assert!(matches!(
            s.verify(&c, &register(), ip(1), now, &store),
            Outcome::Accept(_)
        ));
        clients.push((cl, c));
    }
    // The oldest nonces were evicted: their captured requests cannot be replayed,
    // and even their owners must take a new nonce.
    let (cl, c) = &mut clients[0];
    assert!(matches!(
        s.verify(c, &register(), ip(1), t0(), &store),
        Outcome::Stale {
            reason: StaleReason::Replay,
            ..
        }
    ));
    let next = cl.authorize(HOST, &register()).remove(0).credentials;
    assert!(matches!(
        s.verify(&next, &register(), ip(1), t0(), &store),
        Outcome::Stale { .. }
    ));
    // The newest are still tracked and usable.
    let (cl, _) = &mut clients[9];
    let next = cl.authorize(HOST, &register()).remove(0).credentials;
    assert!(matches!(
        s.verify(&next, &register(), ip(1), t0(), &store),
        Outcome::Accept(_)
    ));
}

#[test]
fn uri_mismatch_unknown_user_wrong_realm_unsupported_algorithm() {
    let s = server();
    let (_, c) = answer(&s, ip(1), t0(), &register());
    // The digest covers another Request-URI than the request's.
    let other = RequestInfo::new("REGISTER", "sip:other.example.com");
    assert_eq!(
        s.verify(&c, &other, ip(1), t0(), &store),
        Outcome::BadRequest(Fault::UriMismatch)
    );
    // Case differences in the URI are tolerated (the digest still covers the exact text).
    let upper = RequestInfo::new("REGISTER", "SIP:EXAMPLE.COM");
    assert!(matches!(
        s.verify(&c, &upper, ip(1), t0(), &store),
        Outcome::Accept(_)
    ));
    // Unknown user.
    let (_, c) = answer(&s, ip(1), t0(), &register());
    let ghost = resign(&with_param(&c, "username", "ghost"), &register(), "x");
    assert_eq!(
        s.verify(&ghost, &register(), ip(1), t0(), &store),
        Outcome::Forbidden(Refusal::UnknownUser)
    );
    // Wrong realm.
    let wrong_realm = resign(
        &with_param(&c, "realm", "elsewhere.com"),
        &register(),
        "wonderland",
    );
    assert_eq!(
        s.verify(&wrong_realm, &register(), ip(1), t0(), &store),
        Outcome::Forbidden(Refusal::WrongRealm)
    );
    // Unsupported or not offered algorithm.
    for alg in ["SHA-1", "SHA-512-256", "md5-sess"] {
        let c2 = with_param(&c, "algorithm", alg);
        assert_eq!(
            s.verify(&c2, &register(), ip(1), t0(), &store),
            Outcome::BadRequest(Fault::UnsupportedAlgorithm(alg.into()))
        );
    }
    // Wrong method: the digest does not match.
    let invite = RequestInfo::new("INVITE", "sip:example.com");
    assert_eq!(
        s.verify(&c, &invite, ip(1), t0(), &store),
        Outcome::Forbidden(Refusal::WrongCredentials)
    );
    // A malformed stored HA1.
    let bad_store = |_: &str, _: &str, _: Algorithm| Some(StoredSecret::Ha1("abc".into()));
    assert_eq!(
        s.verify(&c, &register(), ip(1), t0(), &bad_store),
        Outcome::Forbidden(Refusal::BadStoredSecret)
    );
}

#[test]
fn malformed_pieces_are_bad_requests() {
    let s = server();
    let (_, c) = answer(&s, ip(1), t0(), &register());
    let drop = |name: &str| {
        let mut c = c.clone();
        c.params.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
        c
    };
    let cases = [
        (drop("realm"), Fault::Missing("realm")),
        (drop("username"), Fault::Missing("username")),
        (drop("nonce"), Fault::Missing("nonce")),
        (drop("uri"), Fault::Missing("uri")),
        (drop("response"), Fault::Missing("response")),
        (drop("cnonce"), Fault::Missing("cnonce")),
        (drop("nc"), Fault::Missing("nc")),
        (drop("qop"), Fault::QopRequired),
        (with_param(&c, "nc", "1"), Fault::Malformed("nc")),
        (with_param(&c, "nc", "0000000g"), Fault::Malformed("nc")),
        (with_param(&c, "nc", "00000000"), Fault::Malformed("nc")),
        (with_param(&c, "cnonce", ""), Fault::Malformed("cnonce")),
        (
            with_param(&c, "response", "abc"),
            Fault::Malformed("response"),
        ),
        (
            with_param(&c, "response", &"z".repeat(64)),
            Fault::Malformed("response"),
        ),
        (
            with_param(&c, "qop", "auth-conf"),
            Fault::UnsupportedQop("auth-conf".into()),
        ),
        (
            with_param(&c, "qop", "auth-int"),
            Fault::UnsupportedQop("auth-int".into()),
        ),
    ];
    for (creds, fault) in cases {
        assert_eq!(
            s.verify(&creds, &register(), ip(1), t0(), &store),
            Outcome::BadRequest(fault.clone()),
            "{fault}"
        );
    }
    // Upper-case hex in the response is accepted.
    let upper = with_param(&c, "response", &c.response().unwrap().to_uppercase());
    assert!(matches!(
        s.verify(&upper, &register(), ip(1), t0(), &store),
        Outcome::Accept(_)
    ));
    // Header-level faults surface from the parser with a position.
    for bad in [
        r#"Digest username="alice", realm="example.com"x, nonce="n""#,
        r#"Digest username="alice, realm="example.com""#,
        r#"Digest username="alice", username="mallory""#,
        r#"Digest username=alice smith"#,
    ] {
        let e = Credentials::parse(bad).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("malformed authorization credentials at byte"),
            "{e}"
        );
    }
    let huge = format!(r#"Digest username="{}""#, "a".repeat(5000));
    assert!(
        Credentials::parse(huge)
            .unwrap_err()
            .to_string()
            .contains("out of range")
    );
    // Not Digest: a fresh challenge.
    let bearer = Credentials::parse("Bearer abc").unwrap();
    assert!(matches!(
        s.verify(&bearer, &register(), ip(1), t0(), &store),
        Outcome::Challenge(_)
    ));
}

#[test]
fn authenticate_selects_our_realm() {
    let s = server();
    let (_, ours) = answer(&s, ip(1), t0(), &register());
    let foreign = with_param(&ours, "realm", "upstream.net");
    let list = [foreign.clone(), ours.clone()];
    assert!(matches!(
        s.authenticate(&list, &register(), ip(1), t0(), &store),
        Outcome::Accept(_)
    ));
    assert!(matches!(
        s.authenticate([&foreign], &register(), ip(1), t0(), &store),
        Outcome::Challenge(_)
    ));
    assert!(
        matches!(s.authenticate(&[], &register(), ip(1), t0(), &store), Outcome::Challenge(c) if c.len() == 2)
    );
}

#[test]
fn two_step_for_async_stores() {
    let s = server();
    let (_, c) = answer(&s, ip(1), t0(), &register());
    let req = register();
    let pending = s.check(&c, &req, ip(1), t0()).unwrap();
    assert_eq!(pending.username(), "alice");
    assert_eq!(pending.realm(), REALM);
    assert_eq!(pending.algorithm(), Algorithm::Sha256);
    assert!(!pending.is_userhash());
    // ... the caller awaits its database here ...
    let secret = Some(StoredSecret::Ha1(
        digest::ha1(Algorithm::Sha256.hash(), "alice", REALM, "wonderland").to_string(),
    ));
    assert!(matches!(pending.finish(secret), Outcome::Accept(_)));
    let pending = s.check(&c, &req, ip(1), t0()).unwrap();
    assert_eq!(
        pending.finish(None),
        Outcome::Forbidden(Refusal::UnknownUser)
    );
}

#[test]
fn legacy_mode_single_use_nonces() {
    let mut cfg = ServerConfig::new(REALM);
    cfg.qop.clear();
    cfg.algorithms = vec![Algorithm::Md5];
    let s = DigestServer::with_secret(cfg, b"k");
    let ch = s.challenge(ip(1), t0(), false);
    assert_eq!(ch[0].qop_options().count(), 0);
    let mut cl = DigestClient::new(HOST, ClientCredentials::password("alice", "wonderland"));
    let c = cl
        .answer(HOST, &ch, &[], &register())
        .unwrap()
        .remove(0)
        .credentials;
    assert_eq!(c.qop(), None);
    assert!(matches!(
        s.verify(&c, &register(), ip(1), t0(), &store),
        Outcome::Accept(Authenticated {
            nc: 0,
            qop: None,
            ..
        })
    ));
    let again = cl.authorize(HOST, &register()).remove(0).credentials;
    assert!(matches!(
        s.verify(&again, &register(), ip(1), t0(), &store),
        Outcome::Stale {
            reason: StaleReason::Replay,
            ..
        }
    ));
    // A qop answer to a legacy server is refused.
    let srv_qop = server();
    let (_, with_qop) = answer(&srv_qop, ip(1), t0(), &register());
    assert!(matches!(
        s.verify(&with_qop, &register(), ip(1), t0(), &store),
        Outcome::BadRequest(_)
    ));
    use siplink_auth::Authenticated;
}

#[test]
fn limiter_with_server_outcomes() {
    let s = server();
    let limiter = FailureLimiter::new(LimiterConfig {
        max_failures: 3,
        ..LimiterConfig::default()
    });
    let wrong = |_: &str, _: &str, _: Algorithm| Some(StoredSecret::Password("guess".into()));
    let attacker = ip(66).unwrap();
    for _ in 0..3 {
        assert!(limiter.check(attacker, Some("alice"), t0()).is_ok());
        let (_, c) = answer(&s, Some(attacker), t0(), &register());
        let out = s.verify(&c, &register(), Some(attacker), t0(), &wrong);
        assert_eq!(out, Outcome::Forbidden(Refusal::WrongCredentials));
        let bound = s.credentials_issued_to(Some(&c), attacker, t0());
        assert!(bound);
        limiter.record(&out, attacker, c.username(), bound, t0());
    }
    let blocked = limiter.check(attacker, Some("alice"), t0()).unwrap_err();
    assert_eq!(blocked.scope, Scope::SourceUser);
    assert_eq!(blocked.until, t0() + Duration::from_secs(60));
    // Alice from anywhere else is not blocked, and her right password works.
    let home = ip(1).unwrap();
    assert!(limiter.check(home, Some("alice"), t0()).is_ok());
    let (_, c) = answer(&s, Some(home), t0(), &register());
    let out = s.verify(&c, &register(), Some(home), t0(), &store);
    assert!(matches!(out, Outcome::Accept(_)));
    assert!(
        limiter
            .check(attacker, Some("alice"), t0() + Duration::from_secs(61))
            .is_ok()
    );
}

#[test]
fn failures_answering_someone_elses_nonce_are_not_counted() {
    let s = server();
    let limiter = FailureLimiter::new(LimiterConfig::default());
    let wrong = |_: &str, _: &str, _: Algorithm| Some(StoredSecret::Password("guess".into()));
    let pbx = ip(10).unwrap();
    let attacker = ip(66).unwrap();
    // The attacker gets a nonce for itself and spoofs the PBX's address: the
    // nonce is refused before the password is tried (no oracle either)...
    for _ in 0..50 {
        let (_, c) = answer(&s, Some(attacker), t0(), &register());
        let out = s.verify(&c, &register(), Some(pbx), t0(), &wrong);
        assert!(matches!(
            out,
            Outcome::Stale {
                reason: StaleReason::NonceInvalid,
                ..
            }
        ));
        let bound = s.credentials_issued_to(Some(&c), pbx, t0());
        assert!(!bound);
        assert_eq!(
            limiter.record(&out, pbx, c.username(), bound, t0()),
            siplink_auth::Counted::Ignored
        );
    }
    assert!(limiter.check(pbx, Some("alice"), t0()).is_ok());
    assert!(limiter.is_empty());
    // With binding off the nonce is accepted from anywhere: a wrong answer
    // is refused, and counted (else a guesser with two addresses would go
    // unlimited), though not issued to that source.
    let mut cfg = ServerConfig::new(REALM);
    cfg.bind_to_source = false;
    let s = DigestServer::with_secret(cfg, b"k");
    let (_, c) = answer(&s, Some(attacker), t0(), &register());
    let out = s.verify(&c, &register(), Some(pbx), t0(), &wrong);
    assert_eq!(out, Outcome::Forbidden(Refusal::WrongCredentials));
    assert!(!s.credentials_issued_to(Some(&c), pbx, t0()));
    let counts = s.failure_counts(Some(&c), pbx, t0());
    assert!(counts);
    assert_eq!(
        limiter.record(&out, pbx, c.username(), counts, t0()),
        siplink_auth::Counted::Counted
    );
    // With binding on, failure_counts is issued_to.
    let s = server();
    let (_, c) = answer(&s, Some(attacker), t0(), &register());
    assert!(!s.failure_counts(Some(&c), pbx, t0()));
    assert!(s.failure_counts(Some(&c), attacker, t0()));
}

#[test]
fn issued_to_checks_source_lifetime_and_authenticity() {
    // Also with bind_to_source off: the source mark is in every nonce.
    for bind in [true, false] {
        let mut cfg = ServerConfig::new(REALM);
        cfg.bind_to_source = bind;
        let s = DigestServer::with_secret(cfg, b"k");
        let a = ip(1).unwrap();
        let b = ip(2).unwrap();
        let n = s.nonce(Some(a), t0());
        assert!(s.issued_to(&n, a, t0()));
        assert!(!s.issued_to(&n, b, t0()));
        assert!(!s.issued_to(&n, a, t0() + Duration::from_secs(301)));
        let mut forged = n.clone().into_bytes();
        forged[20] = if forged[20] == b'0' { b'1' } else { b'0' };
        assert!(!s.issued_to(std::str::from_utf8(&forged).unwrap(), a, t0()));
        let other = DigestServer::with_secret(ServerConfig::new(REALM), b"other");
        assert!(!s.issued_to(&other.nonce(Some(a), t0()), a, t0()));
        assert!(!s.credentials_issued_to(None, a, t0()));
    }
}

#[test]
fn unknown_and_known_users_get_the_same_refusal() {
    let s = server();
    for user in ["alice", "nobody"] {
        let mut cl = DigestClient::new(HOST, ClientCredentials::password(user, "wrong"));
        let ch = s.challenge(ip(1), t0(), false);
        let c = cl
            .answer(HOST, &ch, &[], &register())
            .unwrap()
            .remove(0)
            .credentials;
        let out = s.verify(&c, &register(), ip(1), t0(), &store);
        // Both 403; only the refusal reason (never sent) differs.
        assert!(matches!(out, Outcome::Forbidden(_)), "{user}: {out:?}");
    }
    // A right-looking digest for an unknown user (empty password, the old
    // dummy) is still refused.
    let mut cl = DigestClient::new(HOST, ClientCredentials::password("nobody", ""));
    let ch = s.challenge(ip(1), t0(), false);
    let c = cl
        .answer(HOST, &ch, &[], &register())
        .unwrap()
        .remove(0)
        .credentials;
    assert_eq!(
        s.verify(&c, &register(), ip(1), t0(), &store),
        Outcome::Forbidden(Refusal::UnknownUser)
    );
}

#[test]
fn thread_safety() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<DigestServer>();
    send_sync::<FailureLimiter>();
    send::<DigestClient>();
    // The store trait is object safe.
    let _: &dyn siplink_auth::CredentialStore = &store;
}
