//! SIPp (Debian package `sip-tester`): one run of a scenario, bounded in time, with its
//! logs kept for failure messages.

use std::ffi::OsString;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::net::{tcp_listening, udp_bound};
use crate::process::{ProcessGroup, log_file, tail};

/// How much of each log goes into a failure message.
const TAIL: usize = 6000;

/// A SIPp run being set up: see [`Sipp::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until spawned"]
pub struct SippBuilder {
    dir: PathBuf,
    name: String,
    scenario: Vec<OsString>,
    remote: Option<String>,
    port: Option<u16>,
    tcp: bool,
    calls: usize,
    timeout: Duration,
    message_trace: bool,
    args: Vec<OsString>,
}

/// A running (or finished) SIPp in a process group of its own, stopped when dropped.
///
/// Its files live in the directory given to [`Sipp::builder`], named after the run:
/// `NAME_errors.log` (`-trace_err`), `NAME_messages.log` (`-trace_msg`, unless turned
/// off), `NAME_screen.log` (`-trace_screen`, written at exit) and `NAME.out` (standard
/// output and error).
///
/// ```no_run
/// let dir = siplink_testkit::work_dir("example");
/// // A UAS on a free port, then a UAC making 3 calls to it.
/// let uas = siplink_testkit::Sipp::builder(&dir, "uas").builtin("uas").calls(3).spawn_listening();
/// let mut uac = siplink_testkit::Sipp::builder(&dir, "uac")
///     .builtin("uac")
///     .remote(format!("127.0.0.1:{}", uas.port()))
///     .calls(3)
///     .spawn();
/// // In an async test: `uac.expect_success(limit).await` (feature `tokio`).
/// uac.expect_success_blocking(std::time::Duration::from_secs(30));
/// ```
#[derive(Debug)]
pub struct Sipp {
    group: ProcessGroup,
    dir: PathBuf,
    name: String,
    port: u16,
}

impl Sipp {
    /// A SIPp run named `name` (its log files are `dir/NAME_*`), by default: one call
    /// (`-m 1`), over UDP, on 127.0.0.1 and a [`free_port`](crate::free_port), SIPp's
    /// global timeout 30 s counted as a failure (`-timeout 30s -timeout_error`),
    /// `-nostdin`, error, message and screen traces.
    pub fn builder(dir: &Path, name: &str) -> SippBuilder {
        SippBuilder {
            dir: dir.to_owned(),
            name: name.to_owned(),
            scenario: Vec::new(),
            remote: None,
            port: None,
            tcp: false,
            calls: 1,
            timeout: Duration::from_secs(30),
            message_trace: true,
            args: Vec::new(),
        }
    }

    /// The local port SIPp was given (`-p`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory SIPp runs in (its working directory, where its files go).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dir/NAME{suffix}`: one of SIPp's files.
    pub fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.name))
    }

    /// The message trace's path (`NAME_messages.log`).
    pub fn messages_path(&self) -> PathBuf {
        self.file("_messages.log")
    }

    /// The message trace so far (empty when turned off or not written yet).
    pub fn messages(&self) -> String {
        std::fs::read_to_string(self.messages_path()).unwrap_or_default()
    }

    /// The error log so far.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.file("_errors.log")).unwrap_or_default()
    }

    /// The ends of SIPp's error log, standard output, screen and message trace, for
    /// failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for suffix in ["_errors.log", ".out", "_screen.log", "_messages.log"] {
            let path = self.file(suffix);
            if path.exists() {
                out.push_str(&format!(
                    "--- {}{suffix}\n{}\n",
                    self.name,
                    tail(&path, TAIL)
                ));
            }
        }
        out
    }

    /// Whether SIPp is still running.
    pub fn running(&mut self) -> bool {
        self.group.running()
    }

    /// Waits for SIPp to exit and returns its exit code (`None`: killed by a signal).
    /// Blocks the thread: in a test whose code under test runs on the same tokio
    /// runtime use `wait` (feature `tokio`). Panics with the logs if SIPp has not exited
    /// within `limit` (it is stopped first).
    pub fn wait_blocking(&mut self, limit: Duration) -> Option<i32> {
        match self.group.wait_timeout(limit) {
            Some(status) => status.code(),
            None => self.overran(limit),
        }
    }

    /// [`wait_blocking`](Self::wait_blocking) that sleeps on tokio's timer.
    #[cfg(feature = "tokio")]
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        match self.group.wait_timeout_async(limit).await {
            Some(status) => status.code(),
            None => self.overran(limit),
        }
    }

    /// Waits (blocking) and asserts exit code 0, SIPp's "every call successful".
    pub fn expect_success_blocking(&mut self, limit: Duration) {
        let code = self.wait_blocking(limit);
        self.check(code);
    }

    /// Waits (on tokio's timer) and asserts exit code 0, SIPp's "every call successful".
    #[cfg(feature = "tokio")]
    pub async fn expect_success(&mut self, limit: Duration) {
        let code = self.wait(limit).await;
        self.check(code);
    }

    /// Stops SIPp now (its process group: TERM, then KILL).
    pub fn stop(&mut self) {
        self.group.stop();
    }

    fn check(&self, code: Option<i32>) {
        assert_eq!(
            code,
            Some(0),
            "sipp {} exited {code:?}\n{}",
            self.name,
            self.logs()
        );
    }

    fn overran(&mut self, limit: Duration) -> ! {
        self.group.stop();
        panic!(
            "sipp {} did not exit within {limit:?}: stopped\n{}",
            self.name,
            self.logs()
        );
    }
}

impl SippBuilder {
    /// Runs the scenario file `path` (`-sf`; or pass `-sf`/`-sn` in [`args`](Self::args)).
    pub fn scenario(mut self, path: impl AsRef<Path>) -> Self {
        self.scenario = vec!["-sf".into(), path.as_ref().as_os_str().to_owned()];
        self
    }

    /// Runs SIPp's built-in scenario `name` (`-sn`: `uac`, `uas`, …).
    pub fn builtin(mut self, name: &str) -> Self {
        self.scenario = vec!["-sn".into(), name.into()];
        self
    }

    /// The remote host and port to send to (a UAC's target).
    pub fn remote(mut self, addr: impl Display) -> Self {
        self.remote = Some(addr.to_string());
        self
    }

    /// The local port (`-p`) instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// TCP (`-t t1`: one connection) instead of UDP (`-t u1`).
    pub fn tcp(mut self, tcp: bool) -> Self {
        self.tcp = tcp;
        self
    }

    /// The number of calls before SIPp exits (`-m`).
    pub fn calls(mut self, calls: usize) -> Self {
        self.calls = calls;
        self
    }

    /// SIPp's own global timeout (`-timeout`, counted as a failure).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A `-key NAME VALUE` for the scenario's `[NAME]`.
    pub fn key(self, name: &str, value: impl Display) -> Self {
        self.args(["-key", name, &value.to_string()])
    }

    /// Whether to write the message trace (on by default; off for load runs).
    pub fn message_trace(mut self, on: bool) -> Self {
        self.message_trace = on;
        self
    }

    /// Extra command-line arguments, after the built-in ones.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The command line this builder would run (port chosen now if not given).
    pub fn command(&mut self) -> Command {
        let port = *self.port.get_or_insert_with(crate::free_port);
        let name = &self.name;
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&self.dir)
            .args(&self.scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", if self.tcp { "t1" } else { "u1" }])
            .args(["-m", &self.calls.to_string()])
            .args([
                "-timeout",
                &format!("{}s", self.timeout.as_secs().max(1)),
                "-timeout_error",
                "-nostdin",
            ])
            .args(["-trace_err", "-error_file", &format!("{name}_errors.log")])
            .args([
                "-trace_screen",
                "-screen_file",
                &format!("{name}_screen.log"),
            ]);
        if self.message_trace {
            cmd.args([
                "-trace_msg",
                "-message_file",
                &format!("{name}_messages.log"),
            ]);
        }
        cmd.args(&self.args);
        if let Some(remote) = &self.remote {
            cmd.arg(remote);
        }
        let out = log_file(&self.dir.join(format!("{name}.out")));
        cmd.stdout(out.try_clone().expect("clone a file handle"))
            .stderr(out);
        cmd
    }

    /// Starts SIPp and returns at once (a UAC, or a UAS whose readiness does not
    /// matter).
    pub fn spawn(mut self) -> Sipp {
        let cmd = self.command();
        let group = ProcessGroup::spawn(&format!("sipp {}", self.name), cmd)
            .unwrap_or_else(|e| panic!("sipp {} does not start: {e}", self.name));
        Sipp {
            group,
            port: self.port.expect("set by command()"),
            dir: self.dir,
            name: self.name,
        }
    }

    /// Starts SIPp and waits (at most 10 s) until it has bound its port (UDP) or
    /// listens on it (TCP): for a UAS the code under test sends to at once.
    pub fn spawn_listening(self) -> Sipp {
        let tcp = self.tcp;
        let mut sipp = self.spawn();
        let port = sipp.port;
        let name = sipp.name.clone();
        let t0 = std::time::Instant::now();
        loop {
            if if tcp {
                tcp_listening(port)
            } else {
                udp_bound(port)
            } {
                return sipp;
            }
            if !sipp.running() || t0.elapsed() > Duration::from_secs(10) {
                sipp.group.stop();
                panic!("sipp {name} did not bind port {port}\n{}", sipp.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
