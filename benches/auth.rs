//! Digest authentication benchmarks: `cargo bench --bench auth`.
//!
//! * server verify of a SHA-256 and an MD5 response (full path: parameter
//!   checks, HA1 from a password, response, constant-time compare, nonce HMAC,
//!   lifetime, replay table update), each with fresh credentials (nc + 1) made
//!   outside the timed part;
//! * the same with a stored HA1 (what a registrar with a hashed-password table does);
//! * client answer to a 401 (choice of algorithm, cnonce, response, header value);
//! * server challenge (nonce generation) and header parsing.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use siplink::auth::{
    Algorithm, ClientCredentials, Credentials, DigestClient, DigestServer, Outcome, RequestInfo,
    ServerConfig, StoredSecret, digest,
};

const HOST: &str = "registrar.example.com";
const REALM: &str = "example.com";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn source() -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 23)))
}

fn password_store(_: &str, _: &str, _: Algorithm) -> Option<StoredSecret> {
    Some(StoredSecret::Password(
        "correct horse battery staple".into(),
    ))
}

fn verify(c: &mut Criterion, alg: Algorithm, name: &str, by_ha1: bool) {
    let mut cfg = ServerConfig::new(REALM);
    cfg.algorithms = vec![alg];
    let server = DigestServer::new(cfg);
    let req = RequestInfo::new("REGISTER", "sip:example.com");
    let mut client = DigestClient::new(
        HOST,
        ClientCredentials::password("alice", "correct horse battery staple"),
    );
    let ch = server.challenge(source(), now(), false);
    let first = client
        .answer(HOST, &ch, &[], &req)
        .unwrap()
        .remove(0)
        .credentials;
    let ha1 = digest::ha1(alg.hash(), "alice", REALM, "correct horse battery staple").to_string();
    let ha1_store = move |_: &str, _: &str, _: Algorithm| Some(StoredSecret::Ha1(ha1.clone()));
    let store: &dyn siplink::auth::CredentialStore =
        if by_ha1 { &ha1_store } else { &password_store };
    assert!(matches!(
        server.verify(&first, &req, source(), now(), store),
        Outcome::Accept(_)
    ));
    c.bench_function(name, |b| {
        b.iter_batched(
            || client.authorize(HOST, &req).remove(0).credentials,
            |creds| {
                let out = server.verify(black_box(&creds), &req, source(), now(), store);
                debug_assert!(matches!(out, Outcome::Accept(_)));
                out
            },
            BatchSize::SmallInput,
        )
    });
}

fn benches(c: &mut Criterion) {
    verify(
        c,
        Algorithm::Sha256,
        "server verify SHA-256 (password)",
        false,
    );
    verify(c, Algorithm::Md5, "server verify MD5 (password)", false);
    verify(c, Algorithm::Sha256, "server verify SHA-256 (HA1)", true);
    verify(c, Algorithm::Md5, "server verify MD5 (HA1)", true);

    let server = DigestServer::new(ServerConfig::new(REALM));
    let req = RequestInfo::new("INVITE", "sip:bob@example.com");
    let challenges = server.challenge(source(), now(), false);
    c.bench_function("client answer SHA-256 (401, two challenges)", |b| {
        b.iter_batched(
            || {
                DigestClient::new(
                    HOST,
                    ClientCredentials::password("alice", "correct horse battery staple"),
                )
            },
            |mut client| {
                client
                    .answer(HOST, black_box(&challenges), &[], &req)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("server challenge (nonce + 2 challenges)", |b| {
        b.iter(|| server.challenge(black_box(source()), now(), false))
    });
    let mut client = DigestClient::new(HOST, ClientCredentials::password("alice", "pw"));
    let creds = client
        .answer(HOST, &challenges, &[], &req)
        .unwrap()
        .remove(0)
        .credentials
        .to_string();
    c.bench_function("parse Authorization value", |b| {
        b.iter(|| Credentials::parse(black_box(creds.clone())).unwrap())
    });
}

criterion_group!(auth, benches);
criterion_main!(auth);
