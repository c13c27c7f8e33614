//! redis-server on a free loopback port, without persistence.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{ProcessGroup, log_file, tail};

/// A running redis-server (no RDB snapshots, no AOF, bound to 127.0.0.1), stopped with
/// its process group when dropped. Its log is `redis.log` in its directory.
///
/// ```no_run
/// let redis = siplink_testkit::Redis::start(&siplink_testkit::work_dir("redis"));
/// assert_eq!(redis.command(&["SET", "k", "v"]), "+OK\r\n");
/// println!("{}", redis.url());
/// ```
#[derive(Debug)]
pub struct Redis {
    group: Option<ProcessGroup>,
    dir: PathBuf,
    port: u16,
}

impl Redis {
    /// Starts redis-server on a free port with `dir` as its working directory and
    /// waits (at most 10 s) until it answers PING.
    pub fn start(dir: &Path) -> Redis {
        let mut r = Redis {
            group: None,
            dir: dir.to_owned(),
            port: crate::free_port(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = log_file(&self.dir.join("redis.log"));
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(&self.dir)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        self.group = Some(ProcessGroup::spawn("redis-server", cmd).expect("redis-server starts"));
        let t0 = Instant::now();
        while !self.ping() {
            let exited = self.group.as_mut().and_then(ProcessGroup::try_wait);
            if exited.is_some() || t0.elapsed() > Duration::from_secs(10) {
                panic!(
                    "redis-server not answering PING ({exited:?}); log:\n{}",
                    tail(&self.dir.join("redis.log"), 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether it answers PING with PONG.
    pub fn ping(&self) -> bool {
        self.try_command(&["PING"])
            .is_ok_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one command and returns the raw reply (RESP), as far as it arrives within
    /// a moment: meant for short replies (`+OK`, integers, small bulk strings).
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut buf = [0u8; 64 * 1024];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Stops it (TERM, then KILL); its data is gone (nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut g) = self.group.take() {
            g.stop();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
