//! SIP text fit for logs and traces: credentials removed.
//!
//! [`sip_message`] prints a message as received or sent, with the value of
//! every `Authorization` and `Proxy-Authorization` header (folded lines
//! included) replaced by its scheme and `<redacted>`, and cut at
//! [`MAX_TRACE`] bytes. Nothing else in a SIP message carries a secret (a
//! digest `response` is as good as a password to an offline guesser).
//!
//! ```
//! let raw = b"REGISTER sip:example.com SIP/2.0\r\n\
//!             Authorization: Digest username=\"alice\", response=\"6629fae4\"\r\n\
//!             Content-Length: 0\r\n\r\n";
//! let text = siplink_proxy::redact::sip_message(raw);
//! assert!(text.contains("Authorization: Digest <redacted>"));
//! assert!(!text.contains("6629fae4"));
//! ```

use std::fmt::Write;

/// Longest trace printed, in bytes (the rest is summarised).
pub const MAX_TRACE: usize = 8192;

/// Headers whose values are never printed.
const SECRET_HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// `raw` (a SIP message) as text with credentials removed; see the
/// [module documentation](self).
pub fn sip_message(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(MAX_TRACE)];
    let text = String::from_utf8_lossy(cut);
    // Header section and body (the body is printed as is).
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (&text[..], None),
    };
    let mut out = String::with_capacity(text.len());
    let mut hiding = false;
    for (n, line) in head.split("\r\n").enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let folded = n > 0 && (line.starts_with(' ') || line.starts_with('\t'));
        if folded {
            if !hiding {
                out.push_str(line);
            }
            continue;
        }
        hiding = false;
        if n > 0
            && let Some((name, value)) = line.split_once(':')
            && SECRET_HEADERS
                .iter()
                .any(|h| name.trim().eq_ignore_ascii_case(h))
        {
            hiding = true;
            let scheme = value.split_whitespace().next().unwrap_or("");
            let scheme: String = scheme
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(16)
                .collect();
            let _ = write!(out, "{name}: {scheme} <redacted>");
            continue;
        }
        out.push_str(line);
    }
    if let Some(b) = body {
        out.push_str(b);
    }
    if raw.len() > MAX_TRACE {
        let _ = write!(out, "\n[... {} more bytes]", raw.len() - MAX_TRACE);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_and_the_rest_kept() {
        let raw = "INVITE sip:4001@siplink.test SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
                   proxy-authorization: Digest username=\"1001\",\r\n \
                   realm=\"siplink.test\", nonce=\"abc\", response=\"deadbeef\"\r\n\
                   AUTHORIZATION:Digest response=\"cafebabe\"\r\n\
                   Subject: Authorization: Digest response=\"not a header\"\r\n\
                   Content-Length: 4\r\n\r\nbody";
        let t = sip_message(raw.as_bytes());
        assert!(!t.contains("deadbeef") && !t.contains("cafebabe"), "{t}");
        assert!(!t.contains("nonce=\"abc\""), "{t}");
        assert!(t.contains("proxy-authorization: Digest <redacted>"), "{t}");
        assert!(t.contains("AUTHORIZATION: Digest <redacted>"), "{t}");
        assert!(t.contains("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"));
        assert!(t.contains("Subject: Authorization: Digest response=\"not a header\""));
        assert!(t.ends_with("\r\n\r\nbody"));
    }

    #[test]
    fn traces_are_bounded() {
        let mut raw =
            b"MESSAGE sip:a@b SIP/2.0\r\nAuthorization: Digest response=\"x\"\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 100_000));
        let t = sip_message(&raw);
        assert!(t.len() < MAX_TRACE + 100);
        assert!(t.contains("more bytes]"));
        assert!(!t.contains("response"));
    }
}
