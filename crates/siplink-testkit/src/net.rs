//! Readiness checks that do not disturb the process being waited for: they read
//! `/proc/net/*` instead of binding or connecting to its port.

use std::time::{Duration, Instant};

/// Whether some socket is bound to local `port` in `/proc/net/{table}` (and `{table}6`),
/// in `state` if given (`0A` is TCP LISTEN).
fn in_table(table: &str, port: u16, state: Option<&str>) -> bool {
    let want = format!("{port:04X}");
    [table.to_owned(), format!("{table}6")].iter().any(|t| {
        let text = std::fs::read_to_string(format!("/proc/net/{t}")).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or("");
            let st = fields.nth(1).unwrap_or("");
            local.rsplit(':').next() == Some(want.as_str()) && state.is_none_or(|s| s == st)
        })
    })
}

/// Whether a TCP socket listens on local `port` (any address, IPv4 or IPv6).
pub fn tcp_listening(port: u16) -> bool {
    in_table("tcp", port, Some("0A"))
}

/// Whether a UDP socket is bound to local `port` (any address, IPv4 or IPv6).
pub fn udp_bound(port: u16) -> bool {
    in_table("udp", port, None)
}

/// Polls `ready` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < limit, "not {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::any::Any;

    /// A closed socket's port can be taken at once by another process (another test
    /// binary, a server left by an earlier step), so the "gone" half retries on fresh
    /// ports: it asserts that the check can say no, not that one port stays free.
    fn seen_then_gone(bind: impl Fn() -> (u16, Box<dyn Any>), seen: impl Fn(u16) -> bool) {
        let mut gone = false;
        for _ in 0..20 {
            let (port, socket) = bind();
            assert!(seen(port), "port {port} bound but not seen");
            drop(socket);
            if !seen(port) {
                gone = true;
                break;
            }
        }
        assert!(gone, "a closed port was still seen on 20 fresh ports");
    }

    #[test]
    fn sees_our_own_sockets() {
        seen_then_gone(
            || {
                let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                (tcp.local_addr().unwrap().port(), Box::new(tcp))
            },
            tcp_listening,
        );
        seen_then_gone(
            || {
                let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                (udp.local_addr().unwrap().port(), Box::new(udp))
            },
            udp_bound,
        );
    }
}
