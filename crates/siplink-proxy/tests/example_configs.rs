//! Every `examples/proxy*.toml` loads and validates, and carries at least one
//! connection, so the example configurations stay in step with the config
//! format.

use std::path::PathBuf;

use siplink_proxy::Config;

fn example_configs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("proxy") && name.ends_with(".toml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_loads_and_validates() {
    let files = example_configs();
    // proxy.toml, proxy-asterisk.toml, proxy-freeswitch.toml, proxy-3cx.toml
    for expected in [
        "proxy.toml",
        "proxy-asterisk.toml",
        "proxy-freeswitch.toml",
        "proxy-3cx.toml",
    ] {
        assert!(
            files.iter().any(|p| p.ends_with(expected)),
            "examples/{expected} is missing (found {files:?})"
        );
    }
    for path in &files {
        let config = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !config.connections.is_empty(),
            "{}: no [[connections]]",
            path.display()
        );
        assert!(
            config.connections.iter().any(|c| c.enabled),
            "{}: every connection is disabled",
            path.display()
        );
    }
}

#[test]
fn the_commented_example_is_the_demo_configuration() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let example = Config::load(dir.join("proxy.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(example, Config::demo());
}
