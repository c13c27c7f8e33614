//! Replays the inputs kept in `tests/fuzz/proxy_config/` through the
//! `proxy_config` fuzz target's invariants (see `fuzz/fuzz_targets/
//! proxy_config.rs`): no panic; a parsed address has a valid host and a port
//! from 1 to 65535; a valid configuration survives a TOML round trip and
//! every address in it parses to a usable target.

use siplink_message::Transport;
use siplink_proxy::config::{Config, check_host, parse_address};

fn invariants(text: &str) {
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        if let Ok(a) = parse_address(text, t) {
            assert!(a.port != 0, "port 0 from {text:?}");
            assert!(
                check_host(&a.host).is_ok(),
                "host {:?} from {text:?}",
                a.host
            );
        }
    }
    if let Ok(config) = Config::from_toml(text)
        && config.validate().is_ok()
    {
        let again = Config::from_toml(&config.to_toml()).expect("a valid config re-parses");
        assert_eq!(again, config);
        for c in &config.connections {
            let targets = c.targets().expect("a valid config's addresses parse");
            assert!(targets.iter().all(|t| t.port != 0 && !t.host.is_empty()));
        }
    }
}

#[test]
fn kept_fuzz_inputs_hold_the_invariants_and_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/proxy_config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        invariants(&text);
        // Each of these was accepted before its fix; each is refused now.
        if path.extension().is_some_and(|e| e == "toml") {
            let c = Config::from_toml(&text).expect("parses");
            assert!(c.validate().is_err(), "{} validates", path.display());
        } else {
            assert!(
                parse_address(&text, Transport::Udp).is_err(),
                "{} parses",
                path.display()
            );
        }
        n += 1;
    }
    assert!(n >= 4, "only {n} inputs in {}", dir.display());
}
