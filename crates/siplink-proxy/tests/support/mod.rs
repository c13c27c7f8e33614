//! Helpers for the proxy's interop tests: scenario paths, SIPp runs on the
//! testkit's launcher, an in-process proxy and its configuration head.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use siplink_proxy::{Config, Proxy};
// Not every test file uses every one.
#[allow(unused_imports)]
pub use siplink_testkit::{Sipp, free_port, require, work_dir};

/// The scenario files.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
        .display()
        .to_string()
}

/// Starts SIPp named `name` (its logs are `name_*.log` in `dir`) on
/// 127.0.0.1:`port` with `args`, one call, bounded in time.
pub fn sipp(dir: &Path, name: &str, port: u16, args: &[&str]) -> Sipp {
    Sipp::builder(dir, name)
        .port(port)
        .args(["-recv_timeout", "20000"])
        .args(args)
        .spawn()
}

/// Starts the proxy in this process on `toml`.
pub async fn proxy(toml: &str) -> Proxy {
    let config = Config::from_toml(toml).expect("test config parses");
    Proxy::start(config).await.expect("proxy starts")
}

/// The common head of test configurations: listeners on 127.0.0.1:`port`
/// (UDP and TCP), users 1001 and 1002.
pub fn head(port: u16) -> String {
    format!(
        r#"
[proxy]
domains = ["siplink.test"]

[[listen]]
transport = "udp"
address = "127.0.0.1:{port}"

[[listen]]
transport = "tcp"
address = "127.0.0.1:{port}"

[[users]]
name = "1001"
password = "pw1001"

[[users]]
name = "1002"
password = "pw1002"
"#
    )
}

/// [`head`] with `[proxy] core = "CORE"` (`"classic"` or `"engine"`).
pub fn head_on(port: u16, core: &str) -> String {
    head(port).replace("[proxy]\n", &format!("[proxy]\ncore = \"{core}\"\n"))
}

/// Waits until `check` holds (polling), at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
