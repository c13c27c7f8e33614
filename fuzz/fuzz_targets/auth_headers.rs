//! Fuzzes the WWW-Authenticate / Authorization parsers, their serialisation,
//! and the digest client and server on whatever parses.
//!
//! Checks: no panic; whatever parses serialises to text that parses back to the
//! same scheme, names and values.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use siplink_auth::{
    Algorithm, ClientCredentials, DigestClient, DigestServer, Qop, RequestInfo, ServerConfig,
    StoredSecret,
};
use siplink_message::Params;
use siplink_message::headers::auth::{Challenge, Credentials, MAX_HEADER_LEN};

fn pairs(p: &Params) -> Vec<(String, Option<String>)> {
    p.iter()
        .map(|p| {
            (
                p.name.to_ascii_lowercase(),
                p.value.as_deref().map(str::to_owned),
            )
        })
        .collect()
}

fn server() -> &'static DigestServer {
    static S: OnceLock<DigestServer> = OnceLock::new();
    S.get_or_init(|| {
        let mut cfg = ServerConfig::new("example.com");
        cfg.algorithms = Algorithm::ALL.to_vec();
        cfg.qop = vec![Qop::Auth, Qop::AuthInt];
        DigestServer::with_secret(cfg, b"fuzz")
    })
}

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let req = RequestInfo::new("INVITE", "sip:bob@example.com").with_body(data);

    if let Ok(c) = Challenge::parse(data.to_vec()) {
        let text = c.to_string();
        if text.len() <= MAX_HEADER_LEN {
            let back = Challenge::parse(text.clone())
                .unwrap_or_else(|e| panic!("re-parse of {text:?} failed: {e}"));
            assert!(back.scheme.eq_ignore_ascii_case(&c.scheme));
            assert_eq!(back.token68, c.token68);
            assert_eq!(pairs(&back.params), pairs(&c.params), "{text:?}");
        }
        let _ = (
            c.realm(),
            c.stale(),
            c.userhash(),
            c.qop_options().count(),
            c.domain().count(),
        );
        let mut client = DigestClient::new("srv", ClientCredentials::password("alice", "pw"));
        if let Ok(out) = client.answer("srv", std::slice::from_ref(&c), &[], &req) {
            for a in out {
                let text = a.credentials.to_string();
                if text.len() <= MAX_HEADER_LEN {
                    Credentials::parse(text).expect("client output parses");
                }
            }
        }
    }

    if let Ok(c) = Credentials::parse(data.to_vec()) {
        let text = c.to_string();
        if text.len() <= MAX_HEADER_LEN {
            let back = Credentials::parse(text.clone())
                .unwrap_or_else(|e| panic!("re-parse of {text:?} failed: {e}"));
            assert!(back.scheme.eq_ignore_ascii_case(&c.scheme));
            assert_eq!(back.token68, c.token68);
            assert_eq!(pairs(&back.params), pairs(&c.params), "{text:?}");
        }
        let store = |u: &str, _: &str, _: Algorithm| {
            (u == "alice").then(|| StoredSecret::Password("pw".into()))
        };
        let _ = server().verify(&c, &req, None, now, &store);
        let _ = server()
            .check(&c, &req, None, now)
            .map(|p| p.finish_userhash(Some("alice"), None));
    }
});
