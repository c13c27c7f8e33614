//! siplink-auth
