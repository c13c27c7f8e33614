//! The proxy's configuration and address parsers on arbitrary input: a TOML
//! document is parsed, validated and, when valid, routed through; an address
//! string is parsed in every default transport. Nothing may panic, and a
//! valid configuration must survive a TOML round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use siplink_message::Transport;
use siplink_proxy::config::{Config, parse_address};
use siplink_proxy::routing::Router;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        if let Ok(a) = parse_address(&text, t) {
            assert!(a.port != 0);
        }
    }
    if let Ok(config) = Config::from_toml(&text) {
        if config.validate().is_ok() {
            let again = Config::from_toml(&config.to_toml()).expect("a valid config re-parses");
            assert_eq!(again, config);
            if let Ok(router) = Router::new(&config) {
                for number in ["4001", "02081230958", "", "+44 20 8123 0958"] {
                    let _ = router.route(config.users.first().map(|u| u.name.as_str()), number, |i| i % 2 == 0);
                }
            }
        }
    }
});
