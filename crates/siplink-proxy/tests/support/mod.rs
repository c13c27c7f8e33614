//! Helpers for the proxy's interop tests: free ports, SIPp and Kamailio as
//! child processes that are killed when dropped, an in-process proxy.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siplink_proxy::{Config, Proxy};

/// Whether `tool` runs; a missing tool fails the test when `SIPLINK_INTEROP`
/// is set, else the test is skipped with a notice.
pub fn have(tool: &str, version_arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("SIPLINK_INTEROP").is_none(),
            "SIPLINK_INTEROP is set but {tool} is not installed"
        );
        println!("SKIPPED: {tool} not installed");
    }
    found
}

/// A port free for both UDP and TCP on 127.0.0.1 (at the time of asking).
/// Ports are handed out in sequence from a per-process starting point, so
/// the tests of one run never get the same port twice (an OS-chosen port,
/// released at once, can be chosen again by a parallel test).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let candidate = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (20_000 + candidate % 40_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// A fresh directory for one test's files.
pub fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("siplink-proxy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The scenario files.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
        .display()
        .to_string()
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Proc {
    /// Stops the process and any children it forked (Kamailio's workers):
    /// SIGTERM to its process group, then SIGKILL after 2 s.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let group = format!("-{}", self.child.id());
        let quiet = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        quiet("-TERM");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        quiet("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit (at most `limit`, then kills and fails).
    pub async fn wait(&mut self, limit: Duration) -> i32 {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {limit:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits and asserts SIPp's "all calls successful" exit code (0).
    pub async fn expect_success(&mut self, limit: Duration) {
        let code = self.wait(limit).await;
        assert_eq!(code, 0, "{} exited {code}\n{}", self.name, self.logs());
    }

    /// SIPp's error and message logs (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.name)
                    && (name.ends_with("errors.log")
                        || name.ends_with("messages.log")
                        || name.ends_with(".out"))
                {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: String = text
                        .chars()
                        .rev()
                        .take(6000)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    out.push_str(&format!("--- {name}\n{tail}\n"));
                }
            }
        }
        out
    }
}

/// Starts SIPp named `name` (its logs are `name_*.log` in `dir`) on
/// 127.0.0.1:`port` with `args`, one call, bounded in time.
pub fn sipp(dir: &Path, name: &str, port: u16, args: &[&str]) -> Proc {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let child = Command::new("sipp")
        .current_dir(dir)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-recv_timeout",
            "20000",
        ])
        .args(["-trace_err", "-error_file", &format!("{name}_errors.log")])
        .args([
            "-trace_msg",
            "-message_file",
            &format!("{name}_messages.log"),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("sipp starts");
    Proc {
        child,
        name: name.to_owned(),
        dir: dir.to_path_buf(),
    }
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
