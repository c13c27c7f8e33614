//! Test support shared by every siplink crate (unpublished, like h2's `h2-support`).
//!
//! - [`require`]: the one "is this tool installed?" check. A missing tool skips the test
//!   (with a notice) when `SIPLINK_INTEROP` is unset and fails it when it is set, so CI
//!   can never pass by skipping.
//! - [`free_port`] / [`free_port_range`]: the one port allocator (loopback, UDP and TCP).
//! - [`ProcessGroup`]: the one process guard. The child runs in a process group of its
//!   own; dropping the guard sends `kill -TERM -- -PGID`, waits, then `kill -KILL -- -PGID`,
//!   so forked workers (Kamailio's) die with their parent.
//! - [`work_dir`]: a fresh per-test directory.
//!
//! Launchers for the real peers (SIPp, Kamailio, baresip, rtpengine, redis-server,
//! headless Chromium, sipvicious) live in modules of their own and are built on these.
#![deny(missing_docs)]

mod port;
mod process;
pub mod rtpengine;
mod tool;

pub use port::{free_port, free_port_range};
pub use process::{ProcessGroup, work_dir};
pub use tool::{interop_required, require};
