//! Authentication header views (placeholder, being written).
