//! `[security]`: defaults, the limiter it builds, and validation.

use std::time::Duration;

use siplink_proxy::config::Config;

const HEAD: &str = r#"
[proxy]
domains = ["a.test"]
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
"#;

#[test]
fn defaults_and_the_limiter_they_make() {
    let c = Config::from_toml(HEAD).unwrap();
    c.validate().unwrap();
    let l = c.security.limiter();
    assert_eq!(l.max_failures, 5);
    assert_eq!(l.source_max_failures, 10);
    assert_eq!(l.effective_user_cap(), 200);
    assert_eq!(l.window, Duration::from_secs(60));
    assert_eq!(l.cooldown, Duration::from_secs(60));
    assert_eq!(l.max_cooldown, Duration::from_secs(3600));
    assert_eq!(l.capacity, 16_384);
    assert!(l.exempt.is_empty());
}

#[test]
fn settings_are_carried_and_the_user_cap_kept_at_20x() {
    let c = Config::from_toml(&format!(
        "{HEAD}\n[security]\nmax_failures = 3\nsource_max_failures = 30\nuser_max_failures = 50\n\
         window = 120\ncooldown = 10\nmax_cooldown = 600\nmax_tracked = 100\n\
         exempt = [\"192.0.2.0/24\", \"2001:db8::1\"]\n"
    ))
    .unwrap();
    c.validate().unwrap();
    let l = c.security.limiter();
    assert_eq!((l.max_failures, l.source_max_failures), (3, 30));
    assert_eq!(l.effective_user_cap(), 600);
    assert_eq!(l.window, Duration::from_secs(120));
    assert_eq!(l.capacity, 100);
    assert_eq!(l.exempt.len(), 2);
    assert!(l.exempt[0].contains("192.0.2.77".parse().unwrap()));
    assert!(l.exempt[1].contains("2001:db8::1".parse().unwrap()));
    assert!(!l.exempt[1].contains("2001:db8::2".parse().unwrap()));
}

#[test]
fn impossible_values_are_refused_with_their_field() {
    let c = Config::from_toml(&format!(
        "{HEAD}\n[security]\nmax_failures = 0\nsource_max_failures = 0\nwindow = 0\n\
         max_tracked = 0\nexempt = [\"192.0.2.0/33\", \"pbx.example.com\"]\n"
    ))
    .unwrap();
    let err = c.validate().unwrap_err().to_string();
    for field in [
        "security.max_failures",
        "security.source_max_failures",
        "security.window",
        "security.max_tracked",
        "security.exempt[0]",
        "security.exempt[1]",
    ] {
        assert!(err.contains(field), "{field} not in {err}");
    }
    // Unknown fields are refused at parse time.
    assert!(Config::from_toml(&format!("{HEAD}\n[security]\nmax_failure = 3\n")).is_err());
}

#[test]
fn passwords_never_show_in_debug_output_but_survive_toml() {
    let c = Config::demo();
    let debug = format!("{c:?} {:#?}", c.users[0]);
    for secret in ["secret1001", "office-secret", "branch-secret"] {
        assert!(c.to_toml().contains(secret), "{secret} lost from TOML");
        assert!(!debug.contains(secret), "{secret} in Debug output");
    }
    assert!(debug.contains("<redacted>"));
    assert_eq!(c.users[0].password.as_deref(), Some("secret1001"));
    let again = Config::from_toml(&c.to_toml()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn rate_limit_is_on_and_generous_by_default_and_scanners_off() {
    let c = Config::from_toml(HEAD).unwrap();
    let r = c.security.rate().expect("on by default");
    assert_eq!((r.requests_per_second, r.burst), (50, 200));
    assert_eq!(r.cooldown, Duration::from_secs(60));
    assert_eq!(r.max_cooldown, Duration::from_secs(3600));
    assert_eq!(r.capacity, 16_384);
    assert!(!c.security.drop_scanners);
    assert!(c.security.scanners().is_none());
}

#[test]
fn rate_limit_settings_are_carried() {
    let c = Config::from_toml(&format!(
        "{HEAD}\n[security]\nrate_limit = {{ requests_per_second = 5, burst = 8, cooldown = 10, \
         max_cooldown = 40 }}\ndrop_scanners = true\nscanner_user_agents = [\"EvilScan\"]\n\
         exempt = [\"192.0.2.0/24\"]\n"
    ))
    .unwrap();
    c.validate().unwrap();
    let r = c.security.rate().unwrap();
    assert_eq!((r.requests_per_second, r.burst), (5, 8));
    assert_eq!(r.cooldown, Duration::from_secs(10));
    assert_eq!(r.max_cooldown, Duration::from_secs(40));
    assert!(r.exempt[0].contains("192.0.2.9".parse().unwrap()));
    let f = c.security.scanners().unwrap();
    assert!(f.matches(b"evilscan 1.0"));
    assert!(!f.matches(b"friendly-scanner"));
    // The TOML round trip keeps them.
    assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    // Off is off.
    let off = Config::from_toml(&format!(
        "{HEAD}\n[security]\nrate_limit = {{ enabled = false }}\ndrop_scanners = true\n"
    ))
    .unwrap();
    assert!(off.security.rate().is_none());
    assert!(
        off.security
            .scanners()
            .unwrap()
            .matches(b"friendly-scanner")
    );
}

#[test]
fn impossible_rate_limits_are_refused_with_their_field() {
    let c = Config::from_toml(&format!(
        "{HEAD}\n[security]\nrate_limit = {{ requests_per_second = 0, burst = 2000000, cooldown = 0 }}\n\
         scanner_user_agents = [\"\", \"ok\"]\n"
    ))
    .unwrap();
    let err = c.validate().unwrap_err().to_string();
    for field in [
        "security.rate_limit.requests_per_second",
        "security.rate_limit.burst",
        "security.rate_limit.cooldown",
        "security.scanner_user_agents[0]",
    ] {
        assert!(err.contains(field), "{field} not in {err}");
    }
    assert!(!err.contains("scanner_user_agents[1]"));
    let c = Config::from_toml(&format!(
        "{HEAD}\n[security]\nrate_limit = {{ cooldown = 100, max_cooldown = 50 }}\n"
    ))
    .unwrap();
    assert!(c.validate().is_err());
    assert!(
        Config::from_toml(&format!("{HEAD}\n[security]\nrate_limit = {{ rps = 3 }}\n")).is_err()
    );
}
