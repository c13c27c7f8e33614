//! Headless Chromium with a fresh profile and the flags that keep WebRTC on loopback.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{ProcessGroup, log_file, tail};

/// Quiet, self-contained headless operation.
const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// WebRTC between the page and a peer on loopback: loopback candidates allowed, host
/// candidates as plain addresses (no mDNS), fake camera and microphone, no prompt.
const WEBRTC: &[&str] = &[
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
];

/// A Chromium being set up: see [`Chromium::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until run"]
pub struct ChromiumBuilder {
    dir: PathBuf,
    binary: OsString,
    spki: Vec<String>,
    args: Vec<OsString>,
}

/// A running headless Chromium with a DevTools endpoint, stopped with its process
/// group (renderers included) when dropped.
///
/// ```no_run
/// use siplink_testkit::{Chromium, work_dir};
/// // A page that needs no driving: its DOM after load.
/// let dom = Chromium::builder(&work_dir("page"))
///     .dump_dom("data:text/html,<p id=x>hi</p>", std::time::Duration::from_secs(30));
/// assert!(dom.contains("<p id=\"x\">hi</p>"));
/// // A page left running, driven over the DevTools protocol.
/// let browser = Chromium::builder(&work_dir("phone")).start("http://127.0.0.1:8080/");
/// println!("{}", browser.devtools_url());
/// ```
#[derive(Debug)]
pub struct Chromium {
    group: ProcessGroup,
    dir: PathBuf,
    port: u16,
}

impl Chromium {
    /// A Chromium whose profile (a fresh `--user-data-dir`) and log go under `dir`.
    /// The binary is `$SIPLINK_CHROMIUM`, else `chromium`.
    pub fn builder(dir: &Path) -> ChromiumBuilder {
        ChromiumBuilder {
            dir: dir.to_owned(),
            binary: std::env::var_os("SIPLINK_CHROMIUM").unwrap_or_else(|| "chromium".into()),
            spki: Vec::new(),
            args: Vec::new(),
        }
    }

    /// The DevTools port (on 127.0.0.1).
    pub fn devtools_port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: `/json/version` gives the browser's WebSocket
    /// debugger URL, `/json/list` the pages'.
    pub fn devtools_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET path` on the DevTools endpoint: the response body.
    pub fn devtools_get(&self, path: &str) -> std::io::Result<String> {
        http_get(self.port, path)
    }

    /// Its standard output and error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default()
    }

    /// Whether it is running.
    pub fn running(&mut self) -> bool {
        self.group.running()
    }

    /// Stops it (TERM to the group, then KILL).
    pub fn stop(&mut self) {
        self.group.stop();
    }
}

impl ChromiumBuilder {
    /// Another binary than `$SIPLINK_CHROMIUM` / `chromium`.
    pub fn binary(mut self, path: impl Into<OsString>) -> Self {
        self.binary = path.into();
        self
    }

    /// Trust a test certificate by its public key: `hash` is the base64 SHA-256 of its
    /// SubjectPublicKeyInfo (`openssl x509 -pubkey -noout | openssl pkey -pubin
    /// -outform der | openssl dgst -sha256 -binary | base64`).
    pub fn ignore_certificate_errors_spki(mut self, hash: &str) -> Self {
        self.spki.push(hash.to_owned());
        self
    }

    /// Another command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Every flag this builder passes (besides the mode's): the headless and loopback
    /// WebRTC flags, a fresh profile directory, the trusted keys, the extra arguments.
    pub fn flags(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = HEADLESS.iter().chain(WEBRTC).map(Into::into).collect();
        let profile = self.dir.join("profile");
        let _ = std::fs::remove_dir_all(&profile);
        let mut flag = OsString::from("--user-data-dir=");
        flag.push(&profile);
        v.push(flag);
        if !self.spki.is_empty() {
            v.push(
                format!(
                    "--ignore-certificate-errors-spki-list={}",
                    self.spki.join(",")
                )
                .into(),
            );
        }
        v.extend(self.args.iter().cloned());
        v
    }

    /// Loads `url`, runs its scripts until the load event and returns the DOM as HTML
    /// (`--dump-dom`). Panics with Chromium's output if it fails or takes longer than
    /// `limit`.
    pub fn dump_dom(self, url: &str, limit: Duration) -> String {
        let out_path = self.dir.join("dom.html");
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.flags())
            .arg("--dump-dom")
            .arg(url)
            .stdout(std::fs::File::create(&out_path).expect("create dom.html"))
            .stderr(log_file(&self.dir.join("chromium.log")));
        let mut group = ProcessGroup::spawn("chromium", cmd).expect("chromium starts");
        let status = group.wait_timeout(limit);
        group.stop();
        let dom = std::fs::read_to_string(&out_path).unwrap_or_default();
        match status {
            Some(s) if s.success() => dom,
            other => panic!(
                "chromium --dump-dom {url}: {other:?} (limit {limit:?})\n{}",
                tail(&self.dir.join("chromium.log"), 4000)
            ),
        }
    }

    /// Starts Chromium on `url` with a DevTools endpoint on 127.0.0.1 (a port of its
    /// choosing) and waits (at most 30 s) until the endpoint answers.
    pub fn start(self, url: &str) -> Chromium {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.flags())
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(url)
            .stdin(Stdio::null());
        let log = log_file(&self.dir.join("chromium.log"));
        cmd.stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        let mut group = ProcessGroup::spawn("chromium", cmd).expect("chromium starts");
        // Chromium writes the port it bound to DevToolsActivePort in the profile.
        let active = self.dir.join("profile").join("DevToolsActivePort");
        let t0 = Instant::now();
        loop {
            let port = std::fs::read_to_string(&active)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()));
            if let Some(port) = port
                && http_get(port, "/json/version").is_ok()
            {
                return Chromium {
                    group,
                    dir: self.dir,
                    port,
                };
            }
            if !group.running() || t0.elapsed() > Duration::from_secs(30) {
                group.stop();
                panic!(
                    "chromium's DevTools endpoint did not come up\n{}",
                    tail(&self.dir.join("chromium.log"), 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A bare HTTP/1.1 GET on 127.0.0.1:`port`: the body of a 200 response (read up to
/// its Content-Length: the DevTools server may keep the connection open).
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(std::io::Error::other(format!("GET {path}: {head}")));
                }
                let body = &data[end + 4..end + 4 + len];
                return Ok(String::from_utf8_lossy(body).into_owned());
            }
        }
        let n = s.read(&mut buf)?;
        if n == 0 || data.len() > 1 << 20 {
            return Err(std::io::Error::other(format!("GET {path}: short response")));
        }
        data.extend_from_slice(&buf[..n]);
    }
}
