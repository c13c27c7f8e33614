//! SIPVicious scanners (`svwar`: extension enumeration, `svcrack`: password guessing),
//! aimed at 127.0.0.1 only and bounded in time: for tests that a registrar or proxy
//! stands up to them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{ProcessGroup, log_file};

/// What a scanner run left behind.
#[derive(Debug, Clone)]
pub struct ScanOutput {
    /// Its exit code (`None`: stopped by a signal, or by the time limit).
    pub code: Option<i32>,
    /// Whether the time limit stopped it.
    pub timed_out: bool,
    /// Its standard output and error (the result table is in there).
    pub output: String,
}

/// A scan being set up: `svwar` or `svcrack` against 127.0.0.1:`port` over UDP.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until run"]
pub struct Scan {
    tool: &'static str,
    port: u16,
    args: Vec<String>,
    max_time: u32,
}

impl Scan {
    /// `svwar` enumerating the extensions in `range` (`100-199,1000`) with REGISTER.
    pub fn svwar(port: u16, range: &str) -> Scan {
        Scan {
            tool: "svwar",
            port,
            args: vec!["-e".into(), range.into()],
            max_time: 10,
        }
    }

    /// `svcrack` guessing `user`'s password among the numbers in `range`
    /// (`1000-1100`).
    pub fn svcrack(port: u16, user: &str, range: &str) -> Scan {
        Scan {
            tool: "svcrack",
            port,
            args: vec!["-u".into(), user.into(), "-r".into(), range.into()],
            max_time: 10,
        }
    }

    /// `svcrack` guessing `user`'s password from a dictionary file (one a line).
    pub fn svcrack_dictionary(port: u16, user: &str, dictionary: &Path) -> Scan {
        Scan {
            tool: "svcrack",
            port,
            args: vec![
                "-u".into(),
                user.into(),
                "-d".into(),
                dictionary.display().to_string(),
            ],
            max_time: 10,
        }
    }

    /// The request method (svwar: `REGISTER`, `OPTIONS` or `INVITE`).
    pub fn method(self, method: &str) -> Self {
        self.arg("-m").arg(method)
    }

    /// Give up after `secs` seconds without an answer (`--maximumtime`; 10 by default).
    pub fn max_time(mut self, secs: u32) -> Self {
        self.max_time = secs;
        self
    }

    /// Another argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// The command: bound to 127.0.0.1, aimed at 127.0.0.1:PORT.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.tool);
        cmd.args(["-b", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--maximumtime", &self.max_time.to_string()])
            .args(&self.args)
            .arg("127.0.0.1");
        cmd
    }

    /// Runs the scan with `dir` as its working directory (svwar and svcrack keep
    /// session files under `~/.sipvicious`; `HOME` is pointed at `dir` so that runs stay
    /// apart), stopping it after `limit`.
    pub fn run(&self, dir: &Path, limit: Duration) -> ScanOutput {
        let (mut group, out) = self.spawn(dir);
        let status = group.wait_timeout(limit);
        group.stop();
        Self::output(status, &out)
    }

    /// [`run`](Self::run) that waits on tokio's timer (the peer under test may run on
    /// the same runtime).
    #[cfg(feature = "tokio")]
    pub async fn run_async(&self, dir: &Path, limit: Duration) -> ScanOutput {
        let (mut group, out) = self.spawn(dir);
        let status = group.wait_timeout_async(limit).await;
        group.stop();
        Self::output(status, &out)
    }

    fn spawn(&self, dir: &Path) -> (ProcessGroup, PathBuf) {
        let out = dir.join(format!("{}-{}.out", self.tool, self.port));
        let log = log_file(&out);
        let mut cmd = self.command();
        cmd.current_dir(dir)
            .env("HOME", dir)
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        let group = ProcessGroup::spawn(self.tool, cmd)
            .unwrap_or_else(|e| panic!("{} does not start: {e}", self.tool));
        (group, out)
    }

    fn output(status: Option<std::process::ExitStatus>, out: &Path) -> ScanOutput {
        ScanOutput {
            code: status.and_then(|s| s.code()),
            timed_out: status.is_none(),
            output: std::fs::read_to_string(out).unwrap_or_default(),
        }
    }
}
