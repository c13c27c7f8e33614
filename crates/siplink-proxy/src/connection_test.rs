//! Test Connection: is the PBX reachable, and do the credentials work?
//!
//! For each kind:
//!
//! * **trunk**: for each address, name resolution, TCP connect and TLS
//!   handshake (with the certificate check), OPTIONS, and, when the PBX
//!   challenges, our digest answer (the trunk's own network test,
//!   `siplink_trunk::test_connection`);
//! * **outbound registration**: the same reachability steps, then a real
//!   REGISTER with the configured credentials and an unregister right after;
//! * **inbound registration**: whether the PBX is registered to us now, since
//!   when, from where.
//!
//! Every failed step says why and what the user can fix (PBX offline,
//! address or port wrong, firewall, credentials, TLS).
//!
//! [`test_connection`] runs it without a running proxy (a private one with
//! only that connection); [`Proxy::test_connection`](crate::Proxy::test_connection)
//! runs it on a running proxy. Both are implemented with the running proxy
//! (its endpoint and registration service), in its private module; this
//! module is their public face.

pub use crate::proxy::check::{Report, Step, StepResult, test_connection};
