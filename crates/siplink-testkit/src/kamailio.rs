//! Kamailio in the foreground, from a configuration template, in a process group of its
//! own (its forked workers die with it), with its control socket for `kamcmd`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::{tcp_listening, udp_bound, wait_until};
use crate::process::{ProcessGroup, log_file, tail};
use crate::template::render;

/// How long Kamailio gets to become ready.
const READY: Duration = Duration::from_secs(10);

/// Where Debian and others put Kamailio's modules.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
    "/usr/local/lib/kamailio/modules",
];

/// Kamailio's module directory on this machine (the first with `tm.so`).
pub fn kamailio_modules() -> Option<PathBuf> {
    MODULE_DIRS
        .iter()
        .map(Path::new)
        .find(|d| d.join("tm.so").exists())
        .map(Path::to_owned)
}

/// A Kamailio being set up: see [`Kamailio::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until started"]
pub struct KamailioBuilder {
    dir: PathBuf,
    config: Option<String>,
    files: Vec<(String, String)>,
    values: Vec<(String, String)>,
    shm_mb: u32,
    pkg_mb: u32,
    ready: Ready,
}

/// What "ready" means for one instance.
#[derive(Debug, Clone, Default)]
struct Ready {
    tcp: Vec<u16>,
    udp: Vec<u16>,
    ctl: bool,
}

/// A running Kamailio, stopped with its whole process group when dropped.
///
/// Everything lives in the directory given to [`Kamailio::builder`]: the rendered
/// `kamailio.cfg` (and any extra files), `kamailio.log` (standard output and error;
/// appended to across restarts), `kamailio.pid`, the runtime directory `run/` and the
/// control socket `kamailio.ctl`.
///
/// ```no_run
/// use siplink_testkit::{Kamailio, free_port, work_dir};
/// let port = free_port();
/// let kam = Kamailio::builder(&work_dir("kam"))
///     .config_file("tests/interop/kamailio-registrar.cfg")
///     .set("LISTEN_UDP", format!("udp:127.0.0.1:{port}"))
///     .wait_udp(port)
///     .wait_ctl()
///     .start();
/// println!("{}", kam.kamcmd(&["ul.dump"]).unwrap());
/// ```
#[derive(Debug)]
pub struct Kamailio {
    group: Option<ProcessGroup>,
    dir: PathBuf,
    shm_mb: u32,
    pkg_mb: u32,
    ready: Ready,
}

impl Kamailio {
    /// A Kamailio whose files go to `dir`. The template gets these values besides the
    /// ones [`set`](KamailioBuilder::set): `@DIR@` (`dir`), `@CTL@`
    /// (`unix:DIR/kamailio.ctl`, for `modparam("ctl", "binrpc", …)`) and `@MODULES@`
    /// (the module directory, for `mpath`). Memory: `-m 64 -M 8`.
    pub fn builder(dir: &Path) -> KamailioBuilder {
        let mut values = vec![
            ("DIR".to_owned(), dir.display().to_string()),
            (
                "CTL".to_owned(),
                format!("unix:{}", dir.join("kamailio.ctl").display()),
            ),
        ];
        if let Some(m) = kamailio_modules() {
            values.push(("MODULES".to_owned(), m.display().to_string()));
        }
        KamailioBuilder {
            dir: dir.to_owned(),
            config: None,
            files: Vec::new(),
            values,
            shm_mb: 64,
            pkg_mb: 8,
            ready: Ready::default(),
        }
    }

    /// The directory of its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its log's path.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kamailio.log")
    }

    /// Its log (standard output and error) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The control socket's path (for a config using `@CTL@` or
    /// `unix:@DIR@/kamailio.ctl`).
    pub fn ctl_path(&self) -> PathBuf {
        self.dir.join("kamailio.ctl")
    }

    /// Runs `kamcmd -s unix:CTL ARGS…`: its standard output if the command succeeded,
    /// else (no socket, an RPC error) what it printed.
    pub fn kamcmd(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl_path().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("kamcmd: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // kamcmd exits 0 on an RPC error and prints `error: CODE - reason`.
        if out.status.success() && !stdout.starts_with("error:") {
            Ok(stdout)
        } else {
            Err(format!(
                "kamcmd {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Whether it is running.
    pub fn running(&mut self) -> bool {
        self.group.as_mut().is_some_and(ProcessGroup::running)
    }

    /// Stops it: TERM to the group, then KILL.
    pub fn stop(&mut self) {
        if let Some(mut g) = self.group.take() {
            g.stop();
        }
        let _ = std::fs::remove_file(self.ctl_path());
    }

    /// Stops it at once with KILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut g) = self.group.take() {
            g.kill();
        }
        let _ = std::fs::remove_file(self.ctl_path());
    }

    /// Starts it again with the same configuration and ports (stopping it first if it
    /// runs), once the old instance's ports are free, and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        let ready = self.ready.clone();
        wait_until(READY, "the old Kamailio's ports released", || {
            ready.tcp.iter().all(|p| !tcp_listening(*p)) && ready.udp.iter().all(|p| !udp_bound(*p))
        });
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = log_file(&self.log_path());
        let mut cmd = Command::new("kamailio");
        cmd.current_dir(&self.dir)
            .arg("-f")
            .arg(self.dir.join("kamailio.cfg"))
            .args(["-DD", "-E"])
            .args([
                "-m",
                &self.shm_mb.to_string(),
                "-M",
                &self.pkg_mb.to_string(),
            ])
            .arg("-P")
            .arg(self.dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(self.dir.join("run"))
            .arg("-w")
            .arg(&self.dir)
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        let group = ProcessGroup::spawn("kamailio", cmd).expect("kamailio starts");
        self.group = Some(group);
        let t0 = Instant::now();
        loop {
            if self.is_ready() {
                return;
            }
            if let Some(status) = self.group.as_mut().and_then(ProcessGroup::try_wait) {
                panic!(
                    "kamailio exited ({status}); log:\n{}",
                    tail(&self.log_path(), 8000)
                );
            }
            if t0.elapsed() > READY {
                self.stop();
                panic!(
                    "kamailio not ready within {READY:?}; log:\n{}",
                    tail(&self.log_path(), 8000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.tcp.iter().all(|p| tcp_listening(*p))
            && self.ready.udp.iter().all(|p| udp_bound(*p))
            && (!self.ready.ctl || self.kamcmd(&["core.version"]).is_ok())
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

impl KamailioBuilder {
    /// The configuration template, from a file.
    pub fn config_file(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        self.config(&text)
    }

    /// The configuration template, as text.
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.to_owned());
        self
    }

    /// Another template (a `tls.cfg`, say) rendered with the same values into
    /// `DIR/name`.
    pub fn extra_file(mut self, name: &str, template: impl AsRef<Path>) -> Self {
        let path = template.as_ref();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        self.files.push((name.to_owned(), text));
        self
    }

    /// The value of `@NAME@` in the templates.
    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        self.values.retain(|(n, _)| n != name);
        self.values.push((name.to_owned(), value.to_string()));
        self
    }

    /// Shared and private memory in MB (`-m`, `-M`).
    pub fn memory(mut self, shm_mb: u32, pkg_mb: u32) -> Self {
        self.shm_mb = shm_mb;
        self.pkg_mb = pkg_mb;
        self
    }

    /// Ready only once something listens on TCP `port` (for TLS too).
    pub fn wait_tcp(mut self, port: u16) -> Self {
        self.ready.tcp.push(port);
        self
    }

    /// Ready only once UDP `port` is bound.
    pub fn wait_udp(mut self, port: u16) -> Self {
        self.ready.udp.push(port);
        self
    }

    /// Ready only once `kamcmd core.version` answers over the control socket.
    pub fn wait_ctl(mut self) -> Self {
        self.ready.ctl = true;
        self
    }

    /// Renders the files, starts Kamailio and waits (at most 10 s) until it is ready;
    /// panics with its log if it exits or is not ready in time.
    pub fn start(self) -> Kamailio {
        let config = self
            .config
            .as_deref()
            .expect("a Kamailio configuration (config_file or config)");
        std::fs::create_dir_all(self.dir.join("run")).expect("create Kamailio's run directory");
        let values: Vec<(&str, &str)> = self
            .values
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        std::fs::write(self.dir.join("kamailio.cfg"), render(config, &values))
            .expect("write kamailio.cfg");
        for (name, text) in &self.files {
            std::fs::write(self.dir.join(name), render(text, &values))
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        let mut k = Kamailio {
            group: None,
            dir: self.dir,
            shm_mb: self.shm_mb,
            pkg_mb: self.pkg_mb,
            ready: self.ready,
        };
        k.spawn();
        k
    }
}
