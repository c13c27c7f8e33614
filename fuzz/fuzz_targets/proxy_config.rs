//! The proxy's configuration and address parsers on arbitrary input: a TOML
//! document is parsed, validated and, when valid, routed through; an address
//! string is parsed in every default transport. Nothing may panic; a parsed
//! address has a valid host and a port from 1 to 65535; a valid
//! configuration survives a TOML round trip and every address in it parses.
//! Inputs that broke these are kept in
//! `crates/siplink-proxy/tests/fuzz/proxy_config/` and replayed by
//! `crates/siplink-proxy/tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use siplink_message::Transport;
use siplink_proxy::config::{Config, check_host, parse_address};
use siplink_proxy::routing::Router;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        if let Ok(a) = parse_address(&text, t) {
            assert!(a.port != 0, "port 0 from {text:?}");
            assert!(check_host(&a.host).is_ok(), "bad host {:?} from {text:?}", a.host);
        }
    }
    if let Ok(config) = Config::from_toml(&text) {
        if config.validate().is_ok() {
            let again = Config::from_toml(&config.to_toml()).expect("a valid config re-parses");
            assert_eq!(again, config);
            for c in &config.connections {
                let targets = c.targets().expect("a valid config's addresses parse");
                assert!(targets.iter().all(|t| t.port != 0 && !t.host.is_empty()));
                if let Some(p) = &c.outbound_proxy {
                    let t = parse_address(p, Transport::Udp).expect("a valid outbound proxy parses");
                    assert!(t.port != 0);
                }
            }
            if let Ok(router) = Router::new(&config) {
                for number in ["4001", "02081230958", "", "+44 20 8123 0958"] {
                    let _ = router.route(config.users.first().map(|u| u.name.as_str()), number, |i| i % 2 == 0);
                }
            }
        }
    }
});
