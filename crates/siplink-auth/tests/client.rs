//! Client behaviour: algorithm choice, where credentials go, stale and loops, caching.

use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use siplink_auth::{
    Algorithm, AuthError, Challenge, ChallengeKind, ClientConfig, ClientCredentials, DigestClient,
    DigestServer, Outcome, RequestInfo, ServerConfig, StoredSecret, digest,
};

const SERVER: &str = "sip.carrier.example";

fn ch(s: &str) -> Challenge {
    Challenge::parse(s.to_owned()).unwrap()
}

fn client() -> DigestClient {
    DigestClient::new(SERVER, ClientCredentials::password("alice", "pw"))
        .with_rng(StdRng::seed_from_u64(7))
}

fn req() -> RequestInfo<'static> {
    RequestInfo::new("REGISTER", "sip:carrier.example")
}

#[test]
fn picks_strongest_supported_algorithm_per_realm() {
    let mut c = client();
    let www = [
        ch(r#"Digest realm="r", nonce="n1", algorithm=MD5, qop="auth""#),
        ch(r#"Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth""#),
        ch(r#"Digest realm="r", nonce="n3", algorithm=UNKNOWN-ALG, qop="auth""#),
        ch(r#"Digest realm="r", nonce="n4", algorithm=SHA-512-256, qop="auth-int,auth""#),
    ];
    let out = c.answer(SERVER, &www, &[], &req()).unwrap();
    assert_eq!(out.len(), 1);
    let cr = &out[0].credentials;
    assert_eq!(cr.algorithm(), Some("SHA-512-256"));
    assert_eq!(cr.nonce(), Some("n4"));
    assert_eq!(cr.qop(), Some("auth"));
    assert_eq!(cr.response().unwrap().len(), 64);
    assert_eq!(cr.cnonce().unwrap().len(), 32);

    // A policy without SHA-512-256 falls back to SHA-256; one that allows only
    // MD5 takes the MD5 challenge.
    let mut c = client().with_config(ClientConfig {
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        ..ClientConfig::default()
    });
    assert_eq!(
        c.answer(SERVER, &www, &[], &req()).unwrap()[0]
            .credentials
            .nonce(),
        Some("n2")
    );
    let mut c = client().with_config(ClientConfig {
        algorithms: vec![Algorithm::Md5],
        ..ClientConfig::default()
    });
    assert_eq!(
        c.answer(SERVER, &www, &[], &req()).unwrap()[0]
            .credentials
            .nonce(),
        Some("n1")
    );
    // Nothing acceptable.
    let mut c = client().with_config(ClientConfig {
        algorithms: vec![Algorithm::Sha256Sess],
        ..ClientConfig::default()
    });
    assert!(matches!(
        c.answer(SERVER, &www, &[], &req()),
        Err(AuthError::NoUsableChallenge { realm: Some(_), .. })
    ));
}

#[test]
fn refuses_other_servers_and_realms() {
    let mut c = client();
    let www = [ch(r#"Digest realm="r", nonce="n", qop="auth""#)];
    assert_eq!(
        c.answer("evil.example", &www, &[], &req()),
        Err(AuthError::ForeignServer {
            from: "evil.example".into(),
            configured: SERVER.into()
        })
    );
    // Case-insensitive match of the configured server.
    assert!(c.answer("SIP.Carrier.Example", &www, &[], &req()).is_ok());
    // Pre-emptive credentials are never handed out for another target.
    assert!(c.authorize("evil.example", &req()).is_empty());
    assert_eq!(c.authorize(SERVER, &req()).len(), 1);

    // Realm-restricted credentials refuse other realms.
    let mut c = DigestClient::new(
        SERVER,
        ClientCredentials::password("alice", "pw").for_realm("carrier"),
    );
    assert_eq!(
        c.answer(SERVER, &www, &[], &req()),
        Err(AuthError::UnknownRealm { realm: "r".into() })
    );
    let ok = [ch(r#"Digest realm="carrier", nonce="n", qop="auth""#)];
    assert!(c.answer(SERVER, &ok, &[], &req()).is_ok());

    // Not Digest at all.
    let mut c = client();
    assert!(matches!(
        c.answer(SERVER, &[ch("Bearer realm=\"x\"")], &[], &req()),
        Err(AuthError::NoUsableChallenge { realm: None, .. })
    ));
}

#[test]
fn stale_is_answered_a_few_times_then_fails() {
    let mut c = client();
    c.authorize(SERVER, &req());
    c.answer(
        SERVER,
        &[ch(r#"Digest realm="r", nonce="n0", qop="auth""#)],
        &[],
        &req(),
    )
    .unwrap();
    for k in 1..=3 {
        let s = ch(&format!(
            r#"Digest realm="r", nonce="n{k}", qop="auth", stale=TRUE"#
        ));
        let out = c.answer(SERVER, &[s], &[], &req()).unwrap();
        assert_eq!(out[0].credentials.nc(), Some("00000001"));
    }
    let s = ch(r#"Digest realm="r", nonce="n4", qop="auth", stale=true"#);
    assert_eq!(
        c.answer(SERVER, std::slice::from_ref(&s), &[], &req()),
        Err(AuthError::TooManyStale { realm: "r".into() })
    );
    // A new request starts over.
    c.authorize(SERVER, &req());
    assert!(c.answer(SERVER, &[s], &[], &req()).is_ok());
}

#[test]
fn rechallenge_after_answer_is_a_credentials_failure() {
    // Same nonce challenged again.
    let mut c = client();
    c.authorize(SERVER, &req());
    let first = ch(r#"Digest realm="r", nonce="n1", qop="auth""#);
    c.answer(SERVER, std::slice::from_ref(&first), &[], &req())
        .unwrap();
    assert_eq!(
        c.answer(SERVER, std::slice::from_ref(&first), &[], &req()),
        Err(AuthError::CredentialsRejected { realm: "r".into() })
    );
    // Even flagged stale.
    let mut c = client();
    c.answer(SERVER, std::slice::from_ref(&first), &[], &req())
        .unwrap();
    let same_stale = ch(r#"Digest realm="r", nonce="n1", qop="auth", stale=true"#);
    assert!(matches!(
        c.answer(SERVER, &[same_stale], &[], &req()),
        Err(AuthError::CredentialsRejected { .. })
    ));
    // A fresh non-stale nonce right after our answer: wrong password (RFC 2617 §3.2.1).
    let mut c = client();
    c.answer(SERVER, std::slice::from_ref(&first), &[], &req())
        .unwrap();
    let other = ch(r#"Digest realm="r", nonce="n2", qop="auth""#);
    assert!(matches!(
        c.answer(SERVER, std::slice::from_ref(&other), &[], &req()),
        Err(AuthError::CredentialsRejected { .. })
    ));
    // But after a new request carried the cached nonce pre-emptively, a fresh
    // challenge (the server forgot the nonce) is answered.
    let mut c = client();
    c.answer(SERVER, &[first], &[], &req()).unwrap();
    assert_eq!(c.authorize(SERVER, &req()).len(), 1);
    assert!(c.answer(SERVER, &[other], &[], &req()).is_ok());
}

#[test]
fn preemptive_cache_counts_nc_and_keeps_cnonce() {
    let mut c = client();
    assert!(c.authorize(SERVER, &req()).is_empty());
    let out = c
        .answer(
            SERVER,
            &[ch(
                r#"Digest realm="r", nonce="n1", qop="auth", opaque="op""#,
            )],
            &[],
            &req(),
        )
        .unwrap();
    let cnonce = out[0].credentials.cnonce().unwrap().to_owned();
    assert_eq!(out[0].credentials.opaque(), Some("op"));
    for k in 2..=5u32 {
        let pre = c.authorize(SERVER, &req());
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0].credentials.nc(), Some(format!("{k:08x}").as_str()));
        assert_eq!(pre[0].credentials.cnonce(), Some(cnonce.as_str()));
        assert_eq!(pre[0].credentials.opaque(), Some("op"));
    }
    // Pre-emptive sending can be switched off.
    let mut c = client().with_config(ClientConfig {
        preemptive: false,
        ..ClientConfig::default()
    });
    c.answer(
        SERVER,
        &[ch(r#"Digest realm="r", nonce="n1", qop="auth""#)],
        &[],
        &req(),
    )
    .unwrap();
    assert!(c.authorize(SERVER, &req()).is_empty());
}

#[test]
fn proxy_and_registrar_realms_both_answered() {
    let mut c = DigestClient::new(
        SERVER,
        ClientCredentials::password("alice", "pw").for_realm("registrar"),
    );
    c.add_credentials(ClientCredentials::password("gw", "pw2").for_realm("proxy"));
    let invite = RequestInfo::new("INVITE", "sip:bob@carrier.example");
    c.authorize(SERVER, &invite);
    let out = c
        .answer(
            SERVER,
            &[],
            &[ch(r#"Digest realm="proxy", nonce="p1", qop="auth""#)],
            &invite,
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, ChallengeKind::Proxy);
    assert_eq!(out[0].header_name(), "Proxy-Authorization");
    assert_eq!(out[0].credentials.username(), Some("gw"));
    // The retried request gets a 401 from the registrar realm: both are answered,
    // the proxy's with the next nc.
    let out = c
        .answer(
            SERVER,
            &[ch(r#"Digest realm="registrar", nonce="w1", qop="auth""#)],
            &[],
            &invite,
        )
        .unwrap();
    assert_eq!(out.len(), 2);
    let proxy = out.iter().find(|a| a.kind == ChallengeKind::Proxy).unwrap();
    let www = out.iter().find(|a| a.kind == ChallengeKind::Www).unwrap();
    assert_eq!(proxy.credentials.nc(), Some("00000002"));
    assert_eq!(www.credentials.username(), Some("alice"));
    assert_eq!(www.credentials.nc(), Some("00000001"));
    // A merged response with both at once (forking proxy).
    let mut c2 = DigestClient::new(SERVER, ClientCredentials::password("alice", "pw"));
    let out = c2
        .answer(
            SERVER,
            &[ch(r#"Digest realm="a", nonce="1", qop="auth""#)],
            &[ch(r#"Digest realm="b", nonce="2", qop="auth""#)],
            &invite,
        )
        .unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn legacy_sess_auth_int_userhash_and_ha1() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
    let invite = RequestInfo::new("INVITE", "sip:bob@example.com").with_body(body);
    // Legacy (no qop): no cnonce/nc/qop.
    let mut c = client();
    let out = c
        .answer(
            SERVER,
            &[ch(r#"Digest realm="r", nonce="abc""#)],
            &[],
            &invite,
        )
        .unwrap();
    let cr = &out[0].credentials;
    assert_eq!((cr.qop(), cr.nc(), cr.cnonce()), (None, None, None));
    assert_eq!(cr.algorithm(), Some("MD5"));
    // Legacy refused by policy.
    let mut c = client().with_config(ClientConfig {
        allow_legacy: false,
        ..ClientConfig::default()
    });
    assert!(
        c.answer(
            SERVER,
            &[ch(r#"Digest realm="r", nonce="abc""#)],
            &[],
            &invite
        )
        .is_err()
    );
    // Unknown qop only.
    let mut c = client();
    assert!(
        c.answer(
            SERVER,
            &[ch(r#"Digest realm="r", nonce="abc", qop="auth-conf""#)],
            &[],
            &invite
        )
        .is_err()
    );
    // auth-int when it is the only offer, or preferred.
    let mut c = client();
    let out = c
        .answer(
            SERVER,
            &[ch(r#"Digest realm="r", nonce="abc", qop="auth-int""#)],
            &[],
            &invite,
        )
        .unwrap();
    assert_eq!(out[0].credentials.qop(), Some("auth-int"));

    // Against a real server: every algorithm, qop auth-int, userhash, and an HA1 secret.
    for alg in Algorithm::ALL {
        let mut cfg = ServerConfig::new("example.com");
        cfg.algorithms = vec![alg];
        cfg.qop = vec![siplink_auth::Qop::AuthInt, siplink_auth::Qop::Auth];
        cfg.userhash = true;
        let server = DigestServer::new(cfg);
        struct Store;
        impl siplink_auth::CredentialStore for Store {
            fn lookup(&self, u: &str, r: &str, a: Algorithm) -> Option<StoredSecret> {
                (u == "alice")
                    .then(|| StoredSecret::Ha1(digest::ha1(a.hash(), u, r, "pw").to_string()))
            }
            fn resolve_userhash(&self, h: &str, r: &str, a: Algorithm) -> Option<String> {
                (digest::userhash(a.hash(), "alice", r).as_str() == h).then(|| "alice".to_owned())
            }
        }
        let ha1 = digest::ha1(alg.hash(), "alice", "example.com", "pw");
        let mut c = DigestClient::new(
            SERVER,
            ClientCredentials::ha1("alice", "example.com", ha1.as_str(), alg),
        )
        .with_config(ClientConfig {
            prefer_auth_int: true,
            ..ClientConfig::default()
        });
        let challenges = server.challenge(None, now, false);
        let out = c.answer(SERVER, &challenges, &[], &invite).unwrap();
        let cr = &out[0].credentials;
        assert!(cr.userhash());
        assert_ne!(cr.username(), Some("alice"));
        assert_eq!(cr.qop(), Some("auth-int"));
        match server.verify(cr, &invite, None, now, &Store) {
            Outcome::Accept(a) => {
                assert_eq!(a.username, "alice");
                assert_eq!(a.algorithm, alg);
            }
            other => panic!("{alg}: {other:?}"),
        }
        // The body is covered.
        let altered = invite.with_body(b"v=0\r\n");
        let again = c.authorize(SERVER, &altered);
        assert_eq!(
            server.verify(&again[0].credentials, &invite, None, now, &Store),
            Outcome::Forbidden(siplink_auth::Refusal::WrongCredentials)
        );
    }
    // An HA1 for one hash function cannot answer another.
    let mut c = DigestClient::new(
        SERVER,
        ClientCredentials::ha1("alice", "r", "0".repeat(32), Algorithm::Md5),
    );
    assert!(
        c.answer(
            SERVER,
            &[ch(
                r#"Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth""#
            )],
            &[],
            &req()
        )
        .is_err()
    );
    assert!(
        c.answer(
            SERVER,
            &[ch(
                r#"Digest realm="r", nonce="n", algorithm=MD5-sess, qop="auth""#
            )],
            &[],
            &req()
        )
        .is_ok()
    );
    // A malformed HA1 is a configuration error.
    let mut c = DigestClient::new(
        SERVER,
        ClientCredentials::ha1("alice", "r", "xyz", Algorithm::Md5),
    );
    assert_eq!(
        c.answer(
            SERVER,
            &[ch(r#"Digest realm="r", nonce="n", qop="auth""#)],
            &[],
            &req()
        ),
        Err(AuthError::Config(
            "HA1 is not hex of the algorithm's length"
        ))
    );
}
