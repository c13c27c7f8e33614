//! The crate's error type.

/// Everything that can go wrong while parsing, framing or validating a SIP message.
///
/// Syntax errors carry the byte offset (from the start of the message, or of the
/// slice handed to a standalone parser such as [`Uri::parse`](crate::Uri::parse))
/// and a short description of what the grammar expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not follow the SIP grammar.
    #[error("malformed {context} at byte {offset}: expected {expected}")]
    Syntax {
        /// Byte offset of the fault.
        offset: usize,
        /// The element being parsed (`"Via header"`, `"request line"`, `"URI"`...).
        context: &'static str,
        /// What the grammar expected at `offset`.
        expected: &'static str,
    },
    /// A well-formed SIP-Version other than `SIP/2.0` (maps to 505).
    #[error("unsupported SIP version at byte {offset}: only SIP/2.0 is supported")]
    VersionNotSupported {
        /// Byte offset of the version token.
        offset: usize,
    },
    /// A numeric field is syntactically fine but out of its allowed range.
    #[error("{context} at byte {offset} is out of range ({limit})")]
    OutOfRange {
        /// Byte offset of the value.
        offset: usize,
        /// The field (`"CSeq number"`, `"status code"`...).
        context: &'static str,
        /// The allowed range, in words.
        limit: &'static str,
    },
    /// The message (or what has been buffered of it) exceeds the configured size limit.
    #[error("message too large: {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size seen so far.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The header section has more header lines than the configured limit.
    #[error("too many header fields: more than {limit}")]
    TooManyHeaders {
        /// Configured limit.
        limit: usize,
    },
    /// Content-Length is missing where framing needs it (stream transports).
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// The Content-Length header is present but not a single valid value.
    #[error("invalid Content-Length at byte {offset}: {reason}")]
    InvalidContentLength {
        /// Byte offset of the value.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body is shorter than Content-Length says.
    #[error(
        "body truncated: Content-Length is {declared} but only {available} bytes follow the headers"
    )]
    TruncatedBody {
        /// Declared Content-Length.
        declared: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The input ended before the end of the header section.
    #[error("incomplete message: the header section is not terminated by an empty line")]
    Incomplete,
    /// A header the caller asked for is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
}

impl Error {
    /// The status code a request with this fault is answered with: 505 for an
    /// unsupported version, 513 for an oversize message, 400 for the rest.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::VersionNotSupported { .. } => 505,
            Error::TooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// Shorthand for a [`Error::Syntax`] error.
    pub(crate) fn syntax(offset: usize, context: &'static str, expected: &'static str) -> Self {
        Error::Syntax {
            offset,
            context,
            expected,
        }
    }

    /// The same error with its offset moved by `base` (used when a slice of a
    /// message is parsed on its own and the error must point into the message).
    pub fn offset_by(self, base: usize) -> Self {
        match self {
            Error::Syntax {
                offset,
                context,
                expected,
            } => Error::Syntax {
                offset: offset + base,
                context,
                expected,
            },
            Error::VersionNotSupported { offset } => Error::VersionNotSupported {
                offset: offset + base,
            },
            Error::OutOfRange {
                offset,
                context,
                limit,
            } => Error::OutOfRange {
                offset: offset + base,
                context,
                limit,
            },
            Error::InvalidContentLength { offset, reason } => Error::InvalidContentLength {
                offset: offset + base,
                reason,
            },
            other => other,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
