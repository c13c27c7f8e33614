//! siplink-dialplan
