//! Plain data: protocols, flow ids, origins, targets, events. They live in
//! [`siplink_message::net`] (so that sans-IO cores can use them without tokio)
//! and are re-exported here unchanged.

pub use siplink_message::net::{
    Destination, FlowEvent, FlowEventKind, FlowId, Incoming, Origin, Protocol, Target,
};
