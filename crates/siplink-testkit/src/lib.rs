//! Test support shared by every siplink crate (unpublished, like h2's `h2-support`).
//! Every crate has it as a dev-dependency; it depends on no siplink crate.
//!
//! The pieces:
//! - [`require`]: the one "is this tool installed?" check. A missing tool skips the test
//!   (with a notice) when `SIPLINK_INTEROP` is unset and fails it when it is set, so CI
//!   can never pass by skipping.
//! - [`free_port`] / [`free_port_range`]: the one port allocator (loopback, UDP and TCP).
//! - [`ProcessGroup`]: the one process guard. The child runs in a process group of its
//!   own; dropping the guard sends `kill -TERM -- -PGID`, waits, then `kill -KILL -- -PGID`,
//!   so forked workers (Kamailio's) die with their parent.
//! - [`work_dir`]: a fresh per-test directory; [`render`]: `@NAME@` templates;
//!   [`tcp_listening`] / [`udp_bound`]: readiness checks that do not touch the port.
//!
//! Launchers for the real peers, each built on those:
//! - [`Sipp`]: one SIPp run of a scenario file or built-in scenario, bounded in time, its
//!   error and message logs in failure messages, `Sipp::expect_success` (exit 0).
//! - [`Kamailio`]: a configuration template rendered into a work directory, started in
//!   its own process group, ready once its ports listen (and its control socket answers
//!   [`Kamailio::kamcmd`]), restartable.
//! - [`Baresip`]: a user agent from a configuration directory written for it.
//! - [`Redis`]: redis-server on a free port, no persistence, ready once it answers PING.
//! - [`Chromium`]: headless, a fresh profile, the loopback WebRTC flags; `--dump-dom` or a
//!   DevTools endpoint.
//! - [`Scan`]: `svwar` / `svcrack` against 127.0.0.1, bounded in time.
//!
//! The `tokio` feature adds `async` waits (`Sipp::wait`, `Sipp::expect_success`,
//! `ProcessGroup::wait_timeout_async`, `Scan::run_async`) for tests whose code under test
//! runs on the test's own runtime, where a blocking wait would starve it.
//!
//! An interop test. In an `async` test the waits are `uac.expect_success(limit).await`
//! (feature `tokio`, which every crate's dev-dependency turns on); here the blocking ones:
//!
//! ```no_run
//! use std::time::Duration;
//! use siplink_testkit::{Sipp, require, work_dir};
//!
//! if !require("sipp", "-v", "sip-tester") {
//!     return;
//! }
//! let dir = work_dir("sipp-pair");
//! let mut uas = Sipp::builder(&dir, "uas").builtin("uas").spawn_listening();
//! let mut uac = Sipp::builder(&dir, "uac")
//!     .builtin("uac")
//!     .remote(format!("127.0.0.1:{}", uas.port()))
//!     .spawn();
//! uac.expect_success_blocking(Duration::from_secs(30));
//! uas.expect_success_blocking(Duration::from_secs(10));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod baresip;
mod chromium;
mod kamailio;
mod net;
mod port;
mod process;
mod redis;
mod rtpengine;
mod sipp;
mod sipvicious;
mod template;
mod tool;

pub use baresip::{Baresip, BaresipBuilder};
pub use chromium::{Chromium, ChromiumBuilder};
pub use kamailio::{Kamailio, KamailioBuilder, kamailio_modules};
pub use net::{tcp_listening, udp_bound, wait_until};
pub use port::{free_port, free_port_range};
pub use process::{ProcessGroup, log_file, tail, work_dir};
pub use redis::Redis;
pub use rtpengine::Rtpengine;
pub use sipp::{Sipp, SippBuilder};
pub use sipvicious::{Scan, ScanOutput};
pub use template::{placeholders, render};
pub use tool::{interop_required, require};
