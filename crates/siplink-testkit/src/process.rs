use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The last `max` characters of a file (empty if it cannot be read), for failure
/// messages.
pub fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let skip = text.chars().count().saturating_sub(max);
    text.chars().skip(skip).collect()
}

/// An output file for a child (standard output or error), appended to.
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A fresh, empty directory for one test's files (configs, logs, sockets), under the
/// system temp directory and named after the test, the process and a counter (two
/// calls never share a directory). It is left in place for post-mortems.
pub fn work_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("siplink-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's work directory");
    dir
}

/// A child process in a process group of its own, stopped with the whole group when
/// dropped: `kill -TERM -- -PGID`, up to 2 s for it to exit, then `kill -KILL -- -PGID`.
/// (Without the `--`, procps `kill` reads `-PGID` as options and signals pid -1: every
/// process the user may signal.)
#[derive(Debug)]
pub struct ProcessGroup {
    child: Child,
    name: String,
    stopped: bool,
}

impl ProcessGroup {
    /// Starts `command` in a new process group. `name` labels failure messages. Standard
    /// input is closed; set standard output and error on `command` before calling (they
    /// are inherited otherwise).
    pub fn spawn(name: &str, mut command: Command) -> std::io::Result<ProcessGroup> {
        command.process_group(0).stdin(Stdio::null());
        let child = command.spawn()?;
        Ok(ProcessGroup {
            child,
            name: name.to_owned(),
            stopped: false,
        })
    }

    /// The process id (and so the group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status if the leader has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether the leader is still running.
    pub fn running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits for the leader to exit, at most `limit`; `None` if it is still running then
    /// (it is left running: drop or [`stop`](Self::stop) it).
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if t0.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`wait_timeout`](Self::wait_timeout), but sleeps on tokio's timer between
    /// checks, so the runtime (and the code under test on it) keeps running.
    #[cfg(feature = "tokio")]
    pub async fn wait_timeout_async(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if t0.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (a name such as `TERM`, `KILL`, `STOP`, `CONT`) to the whole group.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops the group: TERM, up to 2 s, then KILL; reaps the leader. Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.signal("TERM");
        let _ = self.wait_timeout(Duration::from_secs(2));
        // Workers may outlive their leader: KILL the group whatever the leader did.
        self.signal("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the group at once with KILL (a crash, for failover tests). Idempotent.
    pub fn kill(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.signal("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_the_whole_group() {
        let dir = work_dir("testkit-group");
        let pidfile = dir.join("grandchild.pid");
        let mut cmd = Command::new("sh");
        // The shell forks a grandchild that ignores nothing special and sleeps.
        cmd.arg("-c")
            .arg(format!("sleep 30 & echo $! > {}; wait", pidfile.display()));
        let mut group = ProcessGroup::spawn("sh", cmd).unwrap();
        let t0 = Instant::now();
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(5), "no grandchild");
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandchild = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
        assert!(group.running());
        group.stop();
        // The grandchild was in the group: gone (or a zombie reaped by init shortly).
        let t0 = Instant::now();
        loop {
            let alive = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "grandchild {grandchild} survived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
