//! An embeddable SIP proxy that connects phones (desk phones, softphones,
//! browser phones over WebSocket) to customers' PBXs through ordered
//! **connections**, each of one kind:
//!
//! * **outbound registration**: the proxy registers to the PBX as a phone
//!   would and places calls as that identity;
//! * **trunk**: INVITEs go straight to the PBX's static address (digest
//!   challenges answered, OPTIONS probes, failover between addresses);
//! * **inbound registration**: the PBX registers to the proxy and receives
//!   its calls over its own connection.
//!
//! Each connection has ordered dial patterns; the first connection with a
//! matching pattern carries a call, the next matching ones are its failover.
//! Users register to the proxy and must authenticate their calls (digest),
//! so the proxy is never an open relay.
//!
//! ```no_run
//! use siplink_proxy::{Config, Proxy};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load("proxy.toml")?;
//! let proxy = Proxy::start(config).await?;
//! for status in proxy.status().await {
//!     println!("{status}");
//! }
//! let report = proxy.test_connection("office-pbx").await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! The building blocks, usable on their own: [`config`] (TOML + validation),
//! [`routing`] (dial patterns → connections), [`core`] (the RFC 3261 §16
//! rules, sans-IO), [`engine`] (the sans-IO proxy core that is to replace
//! the task-per-call proxy; not wired in yet), [`plan`] (the configuration
//! validated once into a typed plan; not read by the running proxy yet), [`media`] (the
//! `[media]` section and connections' media modes) and [`media_policy`] (what to ask
//! rtpengine at each SDP of a call; neither acted on yet), [`status`] and
//! [`connection_test`] (Test Connection), [`redact`] (SIP text without credentials, for
//! logs and traces).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod connection_test;
pub mod core;
pub mod engine;
mod error;
mod gate;
pub mod media;
pub mod media_io;
pub mod media_policy;
pub mod plan;
mod proxy;
pub mod redact;
pub mod routing;
pub mod status;

pub use config::{
    Config, ConfigError, ConnectionConfig, ConnectionKind, CoreKind, DEMO_CONFIG, RateLimitConfig,
    SecurityConfig,
};
pub use connection_test::{Report, Step, StepResult};
pub use error::Error;
pub use plan::{Plan, PlanDiff, PlanErrors, PlanView};
pub use proxy::Proxy;
pub use status::{ConnectionState, ConnectionStatus, StatusEvent};
