//! SIP, SIPS, tel and absolute URIs (placeholder, being written).

/// A URI (placeholder).
#[derive(Debug, Clone)]
pub struct Uri;
