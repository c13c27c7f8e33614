//! Sans-IO stream framer (placeholder, being written).
