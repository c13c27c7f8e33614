//! Media settings: the `[media]` section (rtpengine instances, timeouts), a
//! connection's media mode, and their typed plan ([`MediaPlan`]).
//!
//! ```toml
//! [media]
//! retransmit_ms = 500     # resend an ng request after this long (default 500)
//! timeout_ms = 2000       # give up on it after this long (default 2000)
//! ping_interval = 5       # seconds between health pings of each instance (default 5)
//!
//! [[media.rtpengine]]
//! ng = "10.0.0.5:2223"    # rtpengine's --listen-ng (IP:port)
//! weight = 1              # share of new calls (default 1; 0: only when no other is up)
//! internal = { interface = "internal", address = "10.0.0.5" }    # towards PBXs
//! external = { interface = "external", address = "203.0.113.5" }  # towards phones
//!
//! [[connections]]
//! name = "office-pbx"
//! media = "bridge"        # "off" (default) | "relay" | "bridge"
//! transcode = false       # Opus <-> G.711 in rtpengine (default false; bridge only)
//! ```
//!
//! **Not acted on by the running proxy yet**: [`Config::validate`](crate::Config::validate)
//! checks it and [`Plan`](crate::Plan) types it; the proxy still relays SDP unchanged.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use siplink_media::{ClientConfig, InstanceConfig};

/// Most rtpengine instances in `[media]`.
pub const MAX_INSTANCES: usize = 64;
/// Longest rtpengine interface name.
pub const MAX_INTERFACE_NAME: usize = 64;
/// Highest instance weight.
pub const MAX_WEIGHT: u32 = 1000;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// A connection's media handling (TOML: `media = "off" | "relay" | "bridge"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaMode {
    /// SDP passes untouched; media flows end to end (the default).
    #[default]
    Off,
    /// rtpengine anchors the RTP (addresses rewritten, no protocol change): for
    /// phones behind NAT, or to keep the PBX from seeing phones' addresses.
    Relay,
    /// rtpengine anchors and bridges: a WebRTC phone (ICE, DTLS-SRTP, rtcp-mux,
    /// `UDP/TLS/RTP/SAVPF`) talks plain `RTP/AVP` to the PBX. A non-WebRTC phone on
    /// the same connection is anchored as in `Relay`.
    Bridge,
}

impl MediaMode {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaMode::Off => "off",
            MediaMode::Relay => "relay",
            MediaMode::Bridge => "bridge",
        }
    }

    /// Whether this is `Off`.
    pub fn is_off(&self) -> bool {
        *self == MediaMode::Off
    }
}

impl fmt::Display for MediaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[media]`: the rtpengine instances and the ng client's timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// The rtpengine instances (TOML: `[[media.rtpengine]]`).
    #[serde(default)]
    pub rtpengine: Vec<RtpEngineConfig>,
    /// Milliseconds between sends of one ng request (default 500).
    #[serde(default = "default_retransmit_ms")]
    pub retransmit_ms: u64,
    /// Milliseconds after which an unanswered ng request fails (default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Seconds between health pings of each instance (default 5).
    #[serde(default = "default_ping_interval")]
    pub ping_interval: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtpengine: Vec::new(),
            retransmit_ms: default_retransmit_ms(),
            timeout_ms: default_timeout_ms(),
            ping_interval: default_ping_interval(),
        }
    }
}

impl MediaConfig {
    /// Whether the section is all defaults (then it is not written back).
    pub fn is_default(&self) -> bool {
        *self == MediaConfig::default()
    }
}

fn default_retransmit_ms() -> u64 {
    500
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_ping_interval() -> u64 {
    5
}
fn default_weight() -> u32 {
    1
}

/// `[[media.rtpengine]]`: one rtpengine instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpEngineConfig {
    /// Its ng control address, `IP:port` (rtpengine's `--listen-ng`).
    pub ng: String,
    /// Share of new calls (default 1; 0: used only when no other instance is up).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The side towards PBXs.
    #[serde(default, skip_serializing_if = "MediaSide::is_empty")]
    pub internal: MediaSide,
    /// The side towards phones.
    #[serde(default, skip_serializing_if = "MediaSide::is_empty")]
    pub external: MediaSide,
}

impl RtpEngineConfig {
    /// An instance at `ng` with weight 1 and no interface names.
    pub fn new(ng: impl Into<String>) -> Self {
        RtpEngineConfig {
            ng: ng.into(),
            weight: 1,
            internal: MediaSide::default(),
            external: MediaSide::default(),
        }
    }
}

/// One side of an rtpengine instance (towards PBXs or towards phones), for
/// rtpengine started with several interfaces (`--interface=internal/10.0.0.5
/// --interface=external/10.0.0.6!203.0.113.5`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSide {
    /// The rtpengine interface name for this side (sent as `direction`). Both
    /// sides name one, or neither (rtpengine's single interface is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The address rtpengine advertises on this side (the `!ADVERTISED` part
    /// of its `--interface`). The proxy does not send it: it expects it in the
    /// SDP rtpengine returns for this side, and reports a mismatch (the usual
    /// cause of one-way audio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

impl MediaSide {
    /// Whether neither field is set.
    pub fn is_empty(&self) -> bool {
        self.interface.is_none() && self.address.is_none()
    }
}

/// Parses an ng address: an IP address and a port that is not 0.
pub fn parse_ng(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        format!("{text:?} is not IP:port (e.g. \"127.0.0.1:2223\" or \"[::1]:2223\"; host names are not resolved)")
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "port 0 in {text:?}: give the port rtpengine's --listen-ng uses"
        ));
    }
    if addr.ip().is_unspecified() {
        return Err(format!(
            "{text:?} is an unspecified address: give the address rtpengine listens on"
        ));
    }
    Ok(addr)
}

fn check_interface(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_INTERFACE_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'!')
    {
        return Err(format!(
            "{name:?} is not an rtpengine interface name (1 to {MAX_INTERFACE_NAME} printable characters, no space, '/' or '!')"
        ));
    }
    Ok(())
}

/// Checks `[media]` and the connections' media fields (each connection's
/// name, `media` and `transcode`, in order), pushing each problem with its
/// location (used by [`Config::validate`](crate::Config::validate)).
pub(crate) fn check<'a>(
    m: &MediaConfig,
    connections: impl Iterator<Item = (&'a str, MediaMode, bool)>,
    push: &mut dyn FnMut(&str, String),
) {
    if m.rtpengine.len() > MAX_INSTANCES {
        push(
            "media.rtpengine",
            format!("{} instances: at most {MAX_INSTANCES}", m.rtpengine.len()),
        );
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, r) in m.rtpengine.iter().enumerate() {
        let at = format!("media.rtpengine[{i}]");
        match parse_ng(&r.ng) {
            Ok(addr) => {
                if let Some(first) = seen.get(&addr) {
                    push(
                        &format!("{at}: ng"),
                        format!("{addr} is already media.rtpengine[{first}]"),
                    );
                } else {
                    seen.insert(addr, i);
                }
            }
            Err(e) => push(&format!("{at}: ng"), e),
        }
        if r.weight > MAX_WEIGHT {
            push(
                &format!("{at}: weight"),
                format!("{} is above {MAX_WEIGHT}", r.weight),
            );
        }
        for (side, s) in [("internal", &r.internal), ("external", &r.external)] {
            if let Some(name) = &s.interface
                && let Err(e) = check_interface(name)
            {
                push(&format!("{at}: {side}.interface"), e);
            }
            if let Some(a) = s.address
                && (a.is_unspecified() || a.is_multicast())
            {
                push(
                    &format!("{at}: {side}.address"),
                    format!(
                        "{a} cannot be advertised for media: give the address peers send RTP to"
                    ),
                );
            }
        }
        match (&r.internal.interface, &r.external.interface) {
            (Some(_), None) => push(
                &format!("{at}: external.interface"),
                "internal.interface is set: name the interface towards phones too (rtpengine's direction takes both)".into(),
            ),
            (None, Some(_)) => push(
                &format!("{at}: internal.interface"),
                "external.interface is set: name the interface towards PBXs too (rtpengine's direction takes both)".into(),
            ),
            _ => {}
        }
    }
    if !(10..=10_000).contains(&m.retransmit_ms) {
        push(
            "media.retransmit_ms",
            format!("{} is not between 10 and 10000", m.retransmit_ms),
        );
    }
    if m.timeout_ms < m.retransmit_ms || m.timeout_ms > 60_000 {
        push(
            "media.timeout_ms",
            format!(
                "{} must be at least media.retransmit_ms ({}) and at most 60000",
                m.timeout_ms, m.retransmit_ms
            ),
        );
    }
    if !(1..=3600).contains(&m.ping_interval) {
        push(
            "media.ping_interval",
            format!("{} s is not between 1 and 3600", m.ping_interval),
        );
    }
    for (i, (name, media, transcode)) in connections.enumerate() {
        check_connection(i, name, media, transcode, m, push);
    }
}

fn check_connection(
    i: usize,
    name: &str,
    media: MediaMode,
    transcode: bool,
    m: &MediaConfig,
    push: &mut dyn FnMut(&str, String),
) {
    let at = format!("connections[{i}] {name:?}");
    if !media.is_off() && m.rtpengine.is_empty() {
        push(
            &format!("{at}: media"),
            format!(
                "media = \"{media}\" needs an rtpengine, but media.rtpengine lists none: add a [[media.rtpengine]] with its ng address, or set media = \"off\"",
            ),
        );
    }
    if transcode && media != MediaMode::Bridge {
        push(
            &format!("{at}: transcode"),
            format!("transcode needs media = \"bridge\" (this connection has media = \"{media}\")",),
        );
    }
}

// ---------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------

/// `[media]`, typed: every default applied, every address parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlan {
    /// The rtpengine instances, in configuration order (none: media is off
    /// on every connection).
    pub instances: Vec<RtpEngineInstance>,
    /// Time between sends of one ng request.
    pub retransmit: Duration,
    /// Time after which an unanswered ng request fails.
    pub timeout: Duration,
    /// Time between health pings of each instance.
    pub ping_interval: Duration,
}

/// One rtpengine instance of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpEngineInstance {
    /// Its ng control address.
    pub ng: SocketAddr,
    /// Its share of new calls.
    pub weight: u32,
    /// The side towards PBXs.
    pub internal: MediaSide,
    /// The side towards phones.
    pub external: MediaSide,
}

/// A connection's media settings in its plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ConnectionMedia {
    /// The mode.
    pub mode: MediaMode,
    /// Opus ↔ G.711 transcoding in rtpengine (only with [`MediaMode::Bridge`]).
    pub transcode: bool,
}

impl MediaPlan {
    /// The plan of a `[media]` section already checked by [`check`] (an
    /// instance whose address does not parse is left out).
    pub(crate) fn from_config(m: &MediaConfig) -> MediaPlan {
        MediaPlan {
            instances: m
                .rtpengine
                .iter()
                .filter_map(|r| {
                    Some(RtpEngineInstance {
                        ng: parse_ng(&r.ng).ok()?,
                        weight: r.weight,
                        internal: r.internal.clone(),
                        external: r.external.clone(),
                    })
                })
                .collect(),
            retransmit: Duration::from_millis(m.retransmit_ms),
            timeout: Duration::from_millis(m.timeout_ms),
            ping_interval: Duration::from_secs(m.ping_interval),
        }
    }

    /// The instance whose ng address is `ng`.
    pub fn instance(&self, ng: SocketAddr) -> Option<&RtpEngineInstance> {
        self.instances.iter().find(|i| i.ng == ng)
    }

    /// The ng client's settings (`None` without instances): the instances
    /// with their weights, the retransmit interval, and as many resends as
    /// fit in the timeout (a request fails after `timeout` rounded up to a
    /// whole number of intervals).
    ///
    /// ```
    /// use siplink_proxy::{Config, Plan};
    ///
    /// let mut config = Config::demo();
    /// config.media.rtpengine.push(siplink_proxy::media::RtpEngineConfig::new("127.0.0.1:2223"));
    /// let plan = Plan::from_config(&config).unwrap();
    /// let client = plan.media.client_config().unwrap();
    /// assert_eq!(client.instances[0].addr, "127.0.0.1:2223".parse().unwrap());
    /// assert_eq!(client.retries, 3); // 2000 ms / 500 ms = 4 sends
    /// ```
    pub fn client_config(&self) -> Option<ClientConfig> {
        if self.instances.is_empty() {
            return None;
        }
        let mut c = ClientConfig::new(self.instances.iter().map(|i| i.ng));
        c.instances = self
            .instances
            .iter()
            .map(|i| InstanceConfig {
                addr: i.ng,
                weight: i.weight,
            })
            .collect();
        let interval = self.retransmit.as_millis().max(1);
        let sends = self.timeout.as_millis().div_ceil(interval).max(1);
        c.retransmit_interval = self.retransmit;
        c.retries = u32::try_from(sends - 1).unwrap_or(u32::MAX);
        c.ping_interval = self.ping_interval;
        Some(c)
    }
}
