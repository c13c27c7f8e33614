//! The fail2ban filter shipped in `docs/fail2ban/siplink.conf` matches the
//! line the code prints, finds the right address, and cannot be pointed at
//! another address through the user name.

use std::net::IpAddr;

use regex::Regex;
use siplink_auth::FailureLine;

/// The filter's `failregex`, with fail2ban's `<HOST>` replaced by an
/// equivalent of its expansion for addresses (fail2ban 0.10+, which also
/// strips an IPv4-mapped `::ffff:` prefix).
fn filter() -> Regex {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/fail2ban/siplink.conf"
    );
    let text = std::fs::read_to_string(path).expect("docs/fail2ban/siplink.conf");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("failregex = "))
        .expect("a failregex line");
    let host = r"(?:::f{4,6}:)?(?P<host>[0-9A-Fa-f.:]*[0-9A-Fa-f])";
    Regex::new(&line.replace("<HOST>", host)).expect("the failregex compiles")
}

/// The line as `tracing_subscriber::fmt` writes it (with and without colours).
fn logged(line: &FailureLine<'_>, ansi: bool) -> String {
    if ansi {
        format!(
            "\u{1b}[2m2026-12-07T18:30:00.123456Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m \u{1b}[2msiplink_proxy::proxy\u{1b}[0m\u{1b}[2m:\u{1b}[0m {line}"
        )
    } else {
        format!("2026-12-07T18:30:00.123456Z  WARN siplink_registrar::registrar: {line}")
    }
}

fn host_of(re: &Regex, text: &str) -> Option<String> {
    re.captures(text).map(|c| c["host"].to_owned())
}

#[test]
fn the_filter_matches_the_printed_line() {
    let re = filter();
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("192.0.2.1", Some("1001"), "INVITE"),
        ("2001:db8::7", Some("alice"), "REGISTER"),
        ("::ffff:198.51.100.4", Some("bob"), "MESSAGE"),
        ("203.0.113.9", None, "SUBSCRIBE"),
        ("203.0.113.9", Some(""), "OPTIONS"),
    ];
    for (ip, user, method) in cases {
        let source: IpAddr = ip.parse().unwrap();
        let line = FailureLine {
            source,
            user,
            method,
        };
        let expected = match source {
            IpAddr::V6(a) => a.to_ipv4_mapped().map(|v| v.to_string()),
            IpAddr::V4(_) => None,
        }
        .unwrap_or_else(|| source.to_string());
        for ansi in [false, true] {
            let text = logged(&line, ansi);
            assert_eq!(
                host_of(&re, &text).as_deref(),
                Some(expected.as_str()),
                "{text}"
            );
        }
    }
}

#[test]
fn a_user_name_cannot_point_the_filter_elsewhere() {
    let re = filter();
    for user in [
        "x method=INVITE auth failure from 6.6.6.6 user=y",
        "a\nauth failure from 6.6.6.6 user=b method=INVITE",
        "\"quoted\" from 6.6.6.6",
        &"z".repeat(10_000),
    ] {
        let line = FailureLine {
            source: "192.0.2.1".parse().unwrap(),
            user: Some(user),
            method: "REGISTER",
        };
        let text = logged(&line, false);
        assert!(!text.contains('\n') && text.len() < 300, "{text}");
        assert_eq!(host_of(&re, &text).as_deref(), Some("192.0.2.1"), "{text}");
    }
}

#[test]
fn other_lines_do_not_match() {
    let re = filter();
    for text in [
        "2026-12-07T18:30:00Z  INFO siplink_proxy::proxy: configuration reloaded",
        "2026-12-07T18:30:00Z DEBUG siplink_proxy::proxy: call authentication blocked from 192.0.2.1",
        "2026-12-07T18:30:00Z  INFO siplink_proxy::status: binding added source=192.0.2.1:5060",
    ] {
        assert!(!re.is_match(text), "{text}");
    }
}
