use std::process::{Command, Stdio};

/// Whether `SIPLINK_INTEROP` is set: interop tests must then run, never skip.
pub fn interop_required() -> bool {
    std::env::var_os("SIPLINK_INTEROP").is_some()
}

/// Whether `tool` can be run (`tool version_arg` starts). When it cannot, the test
/// should return early: with `SIPLINK_INTEROP` unset this prints a `SKIPPED` notice and
/// returns `false`; with it set, it panics naming the Debian package that provides it.
///
/// ```
/// if !siplink_testkit::require("true", "--version", "coreutils") {
///     return;
/// }
/// ```
pub fn require(tool: &str, version_arg: &str, package: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            !interop_required(),
            "SIPLINK_INTEROP is set but `{tool}` is not installed (apt-get install -y {package})"
        );
        println!("SKIPPED: `{tool}` is not installed (apt-get install -y {package})");
    }
    found
}
