//! The digest computation itself (RFC 2617 §3.2.2, RFC 7616 §3.4), usable on its
//! own: [`ha1`], [`userhash`], [`response`].
//!
//! ```
//! use siplink_auth::Algorithm;
//! use siplink_auth::digest::{DigestInput, ha1, response};
//! use siplink_auth::Qop;
//!
//! // RFC 7616 §3.9.1, SHA-256.
//! let alg = Algorithm::Sha256;
//! let ha1 = ha1(alg.hash(), "Mufasa", "http-auth@example.org", "Circle of Life");
//! let input = DigestInput {
//!     algorithm: alg,
//!     nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
//!     cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
//!     nc: "00000001",
//!     qop: Some(Qop::Auth),
//!     method: "GET",
//!     uri: "/dir/index.html",
//!     body: b"",
//! };
//! assert_eq!(
//!     response(&input, &ha1).as_str(),
//!     "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
//! );
//! ```

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use crate::algorithm::{Algorithm, HashFunction, Qop};

/// A lowercase hex digest held inline (no allocation): 32 or 64 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexDigest {
    buf: [u8; 64],
    len: u8,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl HexDigest {
    fn from_bytes(raw: &[u8]) -> Self {
        debug_assert!(raw.len() <= 32);
        let mut buf = [0u8; 64];
        for (k, b) in raw.iter().enumerate() {
            buf[2 * k] = HEX[usize::from(b >> 4)];
            buf[2 * k + 1] = HEX[usize::from(b & 0xf)];
        }
        HexDigest {
            buf,
            len: (raw.len() * 2) as u8,
        }
    }

    /// Parses a hex digest of the length `hash` produces; upper-case digits are
    /// accepted and stored lower-case. `None` if the length or a digit is wrong.
    pub fn parse(hash: HashFunction, hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != hash.hex_len() {
            return None;
        }
        let mut buf = [0u8; 64];
        for (k, &c) in hex.iter().enumerate() {
            if !c.is_ascii_hexdigit() {
                return None;
            }
            buf[k] = c.to_ascii_lowercase();
        }
        Some(HexDigest {
            buf,
            len: hex.len() as u8,
        })
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The hex text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl fmt::Display for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexDigest({})", self.as_str())
    }
}

/// Lowercase hex of arbitrary bytes.
pub(crate) fn to_hex(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len() * 2);
    for b in raw {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Decodes lowercase or uppercase hex into `out`; false on any fault.
pub(crate) fn from_hex(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != out.len() * 2 {
        return false;
    }
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    for (k, o) in out.iter_mut().enumerate() {
        match (nib(hex[2 * k]), nib(hex[2 * k + 1])) {
            (Some(h), Some(l)) => *o = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

fn run<D: Digest>(parts: &[&[u8]]) -> HexDigest {
    let mut d = D::new();
    for (k, p) in parts.iter().enumerate() {
        if k > 0 {
            d.update(b":");
        }
        d.update(p);
    }
    HexDigest::from_bytes(&d.finalize())
}

/// `H(part1 ":" part2 ":" ...)` as lowercase hex.
pub fn hash_joined(hash: HashFunction, parts: &[&[u8]]) -> HexDigest {
    match hash {
        HashFunction::Md5 => run::<Md5>(parts),
        HashFunction::Sha256 => run::<Sha256>(parts),
        HashFunction::Sha512_256 => run::<Sha512_256>(parts),
    }
}

/// `H(unq(username) ":" unq(realm) ":" passwd)`: the HA1 a credential store keeps
/// (for `-sess` algorithms this is the inner hash; [`response`] applies the
/// nonce and cnonce).
pub fn ha1(hash: HashFunction, username: &str, realm: &str, password: &str) -> HexDigest {
    hash_joined(
        hash,
        &[username.as_bytes(), realm.as_bytes(), password.as_bytes()],
    )
}

/// `H(unq(username) ":" unq(realm))`: the hashed username sent when the
/// challenge has `userhash=true` (RFC 7616 §3.4.4).
pub fn userhash(hash: HashFunction, username: &str, realm: &str) -> HexDigest {
    hash_joined(hash, &[username.as_bytes(), realm.as_bytes()])
}

/// Everything but the secret that goes into a `response`.
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Server nonce.
    pub nonce: &'a str,
    /// Client nonce (used with a qop and by `-sess`; otherwise ignored).
    pub cnonce: &'a str,
    /// Nonce count as sent: 8 hex digits (used with a qop).
    pub nc: &'a str,
    /// Quality of protection; `None` is the RFC 2069 legacy computation.
    pub qop: Option<Qop>,
    /// Request method.
    pub method: &'a str,
    /// The digest-uri (the Request-URI).
    pub uri: &'a str,
    /// Message body (hashed only for `auth-int`).
    pub body: &'a [u8],
}

/// The request digest: `KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" HA2)`, or
/// `KD(HA1, nonce ":" HA2)` without a qop. `ha1` is the plain HA1 from [`ha1`];
/// for `-sess` algorithms it is combined with nonce and cnonce here.
pub fn response(input: &DigestInput<'_>, ha1: &HexDigest) -> HexDigest {
    let hash = input.algorithm.hash();
    let sess;
    let ha1 = if input.algorithm.is_sess() {
        sess = hash_joined(
            hash,
            &[
                ha1.as_bytes(),
                input.nonce.as_bytes(),
                input.cnonce.as_bytes(),
            ],
        );
        &sess
    } else {
        ha1
    };
    let body_hash;
    let ha2 = match input.qop {
        Some(Qop::AuthInt) => {
            body_hash = hash_joined(hash, &[input.body]);
            hash_joined(
                hash,
                &[
                    input.method.as_bytes(),
                    input.uri.as_bytes(),
                    body_hash.as_bytes(),
                ],
            )
        }
        _ => hash_joined(hash, &[input.method.as_bytes(), input.uri.as_bytes()]),
    };
    match input.qop {
        Some(q) => hash_joined(
            hash,
            &[
                ha1.as_bytes(),
                input.nonce.as_bytes(),
                input.nc.as_bytes(),
                input.cnonce.as_bytes(),
                q.as_str().as_bytes(),
                ha2.as_bytes(),
            ],
        ),
        None => hash_joined(
            hash,
            &[ha1.as_bytes(), input.nonce.as_bytes(), ha2.as_bytes()],
        ),
    }
}
