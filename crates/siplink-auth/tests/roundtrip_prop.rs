//! Property tests: what the client builds, the server accepts (through the
//! header text); changing any one input makes the server refuse, with the right
//! outcome.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use siplink_auth::{
    Algorithm, ClientConfig, ClientCredentials, Credentials, DigestClient, DigestServer, Fault,
    Outcome, Qop, Refusal, RequestInfo, ServerConfig, StaleReason, StoredSecret,
};

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Password,
    Method,
    Uri,
    UriParam,
    Body,
    NcReplay,
    NonceByte(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Password),
        Just(Mutation::Method),
        Just(Mutation::Uri),
        Just(Mutation::UriParam),
        Just(Mutation::Body),
        Just(Mutation::NcReplay),
        (0usize..80).prop_map(Mutation::NonceByte),
    ]
}

fn set(c: &Credentials, name: &str, value: String) -> Credentials {
    let mut c = c.clone();
    for p in &mut c.params.0 {
        if p.name.eq_ignore_ascii_case(name) {
            p.value = Some(value.clone().into());
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn client_answer_verifies_and_any_change_is_refused(
        user in "[^\\p{Cc}]{1,16}",
        realm in "[^\\p{Cc}]{1,16}",
        password in "\\PC{0,20}",
        method in "[A-Z]{3,9}",
        uri in "sips?:[a-z0-9]{1,10}@[a-z0-9.]{1,15}(;[a-z]{1,5}=[a-z0-9]{1,5})?",
        body in proptest::collection::vec(any::<u8>(), 0..128),
        alg in proptest::sample::select(Algorithm::ALL.to_vec()),
        qop in proptest::sample::select(vec![Some(Qop::Auth), Some(Qop::AuthInt), None]),
        secs in 1_600_000_000u64..1_900_000_000,
        m in mutation(),
    ) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let mut cfg = ServerConfig::new(realm.clone());
        cfg.algorithms = vec![alg];
        cfg.qop = qop.into_iter().collect();
        let server = DigestServer::new(cfg);
        let (pw, known) = (password.clone(), user.clone());
        let store = move |u: &str, _: &str, _: Algorithm| (u == known).then(|| StoredSecret::Password(pw.clone()));
        let req = RequestInfo::new(&method, &uri).with_body(&body);

        let mut client = DigestClient::new("srv", ClientCredentials::password(user.clone(), password.clone()))
            .with_config(ClientConfig { prefer_auth_int: true, ..ClientConfig::default() });
        let challenges = server.challenge(None, now, false);
        let out = client.answer("srv", &challenges, &[], &req).unwrap();
        prop_assert_eq!(out.len(), 1);
        // Through the header text.
        let creds = Credentials::parse(out[0].credentials.to_string()).unwrap();
        prop_assert_eq!(&creds, &out[0].credentials);

        match m {
            Mutation::Password => {
                let other = format!("{password}x");
                let wrong = move |_: &str, _: &str, _: Algorithm| Some(StoredSecret::Password(other.clone()));
                prop_assert_eq!(server.verify(&creds, &req, None, now, &wrong), Outcome::Forbidden(Refusal::WrongCredentials));
            }
            Mutation::Method => {
                let other = format!("{method}X");
                let r2 = RequestInfo { method: &other, ..req };
                prop_assert_eq!(server.verify(&creds, &r2, None, now, &store), Outcome::Forbidden(Refusal::WrongCredentials));
            }
            Mutation::Uri => {
                let other = format!("{uri}x");
                let r2 = RequestInfo { uri: &other, ..req };
                prop_assert_eq!(server.verify(&creds, &r2, None, now, &store), Outcome::BadRequest(Fault::UriMismatch));
            }
            Mutation::UriParam => {
                // Digest uri and Request-URI both changed: the digest no longer matches.
                let other = format!("{uri}x");
                let r2 = RequestInfo { uri: &other, ..req };
                let c2 = set(&creds, "uri", other.clone());
                prop_assert_eq!(server.verify(&c2, &r2, None, now, &store), Outcome::Forbidden(Refusal::WrongCredentials));
            }
            Mutation::Body => {
                let mut other = body.clone();
                other.push(b'!');
                let r2 = req.with_body(&other);
                let got = server.verify(&creds, &r2, None, now, &store);
                if qop == Some(Qop::AuthInt) {
                    prop_assert_eq!(got, Outcome::Forbidden(Refusal::WrongCredentials));
                } else {
                    prop_assert!(matches!(got, Outcome::Accept(_)), "{:?}", got);
                }
            }
            Mutation::NcReplay => {
                prop_assert!(matches!(server.verify(&creds, &req, None, now, &store), Outcome::Accept(_)));
                let again = server.verify(&creds, &req, None, now, &store);
                prop_assert!(matches!(again, Outcome::Stale { reason: StaleReason::Replay, .. }), "{:?}", again);
            }
            Mutation::NonceByte(pos) => {
                let nonce = creds.nonce().unwrap();
                let mut b = nonce.as_bytes().to_vec();
                b[pos] = if b[pos] == b'a' { b'b' } else { b'a' };
                let c2 = set(&creds, "nonce", String::from_utf8(b).unwrap());
                // An altered nonce is refused before the digest is looked at.
                let got = server.verify(&c2, &req, None, now, &store);
                prop_assert!(matches!(got, Outcome::Stale { reason: StaleReason::NonceInvalid, .. }), "{:?}", got);
            }
        }
        // And the untouched credentials are accepted (unless consumed above).
        let consumed = match m {
            Mutation::NcReplay => true,
            Mutation::Body => qop != Some(Qop::AuthInt),
            _ => false,
        };
        if !consumed {
            let got = server.verify(&creds, &req, None, now, &store);
            prop_assert!(matches!(got, Outcome::Accept(_)), "{:?}", got);
        }
    }
}
