//! baresip, a SIP user agent, run non-interactively from a configuration directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::net::{udp_bound, wait_until};
use crate::process::{ProcessGroup, log_file};

/// Where Debian puts baresip's modules.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/baresip/modules",
    "/usr/lib/x86_64-linux-gnu/baresip/modules",
    "/usr/local/lib/baresip/modules",
];

/// A baresip being set up: see [`Baresip::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until started"]
pub struct BaresipBuilder {
    dir: PathBuf,
    port: Option<u16>,
    modules: Vec<String>,
    config: Vec<(String, String)>,
    accounts: Vec<String>,
    quit_after: Option<u32>,
}

/// A running baresip, stopped with its process group when dropped. Its configuration
/// (`config`, `accounts`, `contacts`) and log (`baresip.log`) are in its directory.
///
/// ```no_run
/// let dir = siplink_testkit::work_dir("baresip");
/// let ua = siplink_testkit::Baresip::builder(&dir)
///     .account("<sip:alice@example.test>;auth_pass=pw;outbound=\"sip:127.0.0.1:5060\";regint=600")
///     .quit_after(40)
///     .start();
/// println!("baresip on UDP port {}", ua.port());
/// ```
#[derive(Debug)]
pub struct Baresip {
    group: ProcessGroup,
    dir: PathBuf,
    port: u16,
}

impl Baresip {
    /// A baresip whose configuration directory is `dir`. The `config` written there
    /// listens on 127.0.0.1 and a free port over UDP (baresip adds TCP on that port and
    /// the next, both reserved), loads `account.so` and has no
    /// audio devices; add accounts with [`account`](BaresipBuilder::account).
    pub fn builder(dir: &Path) -> BaresipBuilder {
        BaresipBuilder {
            dir: dir.to_owned(),
            port: None,
            modules: vec!["account.so".to_owned()],
            config: Vec::new(),
            accounts: Vec::new(),
            quit_after: None,
        }
    }

    /// Its SIP port (UDP, on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its configuration directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Whether it is running.
    pub fn running(&mut self) -> bool {
        self.group.running()
    }

    /// Stops it (TERM, then KILL).
    pub fn stop(&mut self) {
        self.group.stop();
    }
}

impl BaresipBuilder {
    /// The SIP port instead of a free one (baresip also listens on TCP `port + 1`).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// One line of the `accounts` file (`<sip:user@domain>;auth_pass=…;…`).
    pub fn account(mut self, line: &str) -> Self {
        self.accounts.push(line.to_owned());
        self
    }

    /// Another module to load (`module NAME`).
    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.to_owned());
        self
    }

    /// Another `config` line (`KEY VALUE`), after the defaults.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Quit after `secs` seconds (`-t`), a bound should the test forget it.
    pub fn quit_after(mut self, secs: u32) -> Self {
        self.quit_after = Some(secs);
        self
    }

    /// Writes the configuration directory, starts baresip and waits (at most 10 s)
    /// until its SIP port is bound.
    pub fn start(self) -> Baresip {
        // baresip also listens on TCP PORT + 1 (for TLS): reserve both.
        let port = self.port.unwrap_or_else(|| crate::free_port_range(2));
        let modules = MODULE_DIRS
            .iter()
            .find(|d| Path::new(d).join("account.so").exists())
            .unwrap_or(&MODULE_DIRS[0]);
        let mut config = format!(
            "sip_listen\t\t127.0.0.1:{port}\n\
             sip_transports\t\tudp\n\
             module_path\t\t{modules}\n\
             audio_player\t\tnone\n\
             audio_source\t\tnone\n\
             audio_alert\t\tnone\n"
        );
        for m in &self.modules {
            config.push_str(&format!("module\t\t\t{m}\n"));
        }
        for (k, v) in &self.config {
            config.push_str(&format!("{k}\t\t{v}\n"));
        }
        let accounts: String = self.accounts.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(self.dir.join("config"), config).expect("write baresip's config");
        std::fs::write(self.dir.join("accounts"), accounts).expect("write baresip's accounts");
        std::fs::write(self.dir.join("contacts"), "").expect("write baresip's contacts");
        let log = log_file(&self.dir.join("baresip.log"));
        let mut cmd = Command::new("baresip");
        cmd.current_dir(&self.dir).arg("-f").arg(&self.dir);
        if let Some(t) = self.quit_after {
            cmd.args(["-t", &t.to_string()]);
        }
        cmd.stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        let mut group = ProcessGroup::spawn("baresip", cmd).expect("baresip starts");
        wait_until(
            std::time::Duration::from_secs(10),
            "baresip listening",
            || udp_bound(port) || !group.running(),
        );
        let mut b = Baresip {
            group,
            dir: self.dir,
            port,
        };
        assert!(b.running(), "baresip exited:\n{}", b.log());
        b
    }
}
