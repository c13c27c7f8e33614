//! Digest algorithms (RFC 7616 §6.1, RFC 8760 §2) and quality of protection.

use std::fmt;
use std::str::FromStr;

/// The hash function behind an [`Algorithm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFunction {
    /// MD5 (RFC 1321): 32 hex digits. Obsolete, kept for interoperability.
    Md5,
    /// SHA-256 (FIPS 180-4): 64 hex digits.
    Sha256,
    /// SHA-512/256 (FIPS 180-4, the real truncated variant with its own initial
    /// values): 64 hex digits.
    Sha512_256,
}

impl HashFunction {
    /// Length of the lowercase hex digest.
    pub const fn hex_len(self) -> usize {
        match self {
            HashFunction::Md5 => 32,
            HashFunction::Sha256 | HashFunction::Sha512_256 => 64,
        }
    }
}

/// A digest `algorithm` value.
///
/// Parsing is case-insensitive; an absent `algorithm` parameter means
/// [`Algorithm::Md5`] (RFC 2617 §3.2.1).
///
/// ```
/// use siplink_auth::Algorithm;
/// assert_eq!("sha-256-SESS".parse::<Algorithm>(), Ok(Algorithm::Sha256Sess));
/// assert_eq!(Algorithm::Sha512_256.to_string(), "SHA-512-256");
/// assert_eq!(Algorithm::from_param(None), Some(Algorithm::Md5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`
    Md5,
    /// `MD5-sess`
    Md5Sess,
    /// `SHA-256`
    Sha256,
    /// `SHA-256-sess`
    Sha256Sess,
    /// `SHA-512-256`
    Sha512_256,
    /// `SHA-512-256-sess`
    Sha512_256Sess,
}

/// Error for an `algorithm` or `qop` token this crate does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownToken;

impl fmt::Display for UnknownToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown token")
    }
}

impl std::error::Error for UnknownToken {}

impl Algorithm {
    /// Every algorithm, strongest first (the default client preference).
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Sha512_256,
        Algorithm::Sha256,
        Algorithm::Sha512_256Sess,
        Algorithm::Sha256Sess,
        Algorithm::Md5,
        Algorithm::Md5Sess,
    ];

    /// The token as written in headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// The algorithm named by an `algorithm` parameter; `None` (absent) is MD5.
    /// Returns `None` for an unknown token.
    pub fn from_param(value: Option<&str>) -> Option<Self> {
        match value {
            None => Some(Algorithm::Md5),
            Some(v) => v.trim().parse().ok(),
        }
    }

    /// The hash function.
    pub const fn hash(self) -> HashFunction {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => HashFunction::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => HashFunction::Sha256,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => HashFunction::Sha512_256,
        }
    }

    /// Whether this is a `-sess` variant (HA1 also covers nonce and cnonce).
    pub const fn is_sess(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }
}

impl FromStr for Algorithm {
    type Err = UnknownToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or(UnknownToken)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 2617 §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: authentication of method and URI.
    Auth,
    /// `auth-int`: also covers the message body.
    AuthInt,
}

impl Qop {
    /// The token as written in headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

impl FromStr for Qop {
    type Err = UnknownToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auth") {
            Ok(Qop::Auth)
        } else if s.eq_ignore_ascii_case("auth-int") {
            Ok(Qop::AuthInt)
        } else {
            Err(UnknownToken)
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
