//! siplink-message
