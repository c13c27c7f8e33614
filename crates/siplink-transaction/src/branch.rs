//! Branch ids.

use siplink_message::headers::MAGIC_COOKIE;

/// A fresh Via branch: the RFC 3261 magic cookie followed by 128 random bits
/// (hex) from a cryptographically secure generator, so branches are unique and
/// cannot be guessed by a peer.
pub fn new_branch() -> String {
    let r: u128 = rand::random();
    format!("{MAGIC_COOKIE}{r:032x}")
}
