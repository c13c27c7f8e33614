use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out.
const FIRST: u32 = 20_000;
/// Ports handed out wrap within `FIRST..FIRST + SPAN`: below Linux's ephemeral range
/// (32768 and up by default), so that a port handed out is not taken meanwhile by a
/// socket the OS numbers itself (a client connection, a `:0` listener).
const SPAN: u32 = 12_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn next_candidate() -> u32 {
    // Each test process starts at its own offset, and within a process ports are handed
    // out in sequence, so parallel tests (and test binaries run one after another) never
    // get the same port twice, which an OS-chosen port released at once allows.
    let _ = NEXT.compare_exchange(
        0,
        1 + (std::process::id() % 120) * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of asking, never handed
/// out twice in one test process.
pub fn free_port() -> u16 {
    for _ in 0..SPAN {
        let port = (FIRST + next_candidate() % SPAN) as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// `len` consecutive ports, each free for UDP and TCP at the time of asking (for
/// rtpengine's `--port-min`/`--port-max`, so two instances never share a range).
/// Returns the first; the range is `first..first + len`.
pub fn free_port_range(len: u16) -> u16 {
    assert!(len > 0, "an empty port range");
    for _ in 0..SPAN {
        // Reserve the whole block from the sequence, then check every port of it.
        let mut first = 0;
        for i in 0..u32::from(len) {
            let c = next_candidate();
            if i == 0 {
                first = c;
            }
        }
        let start = FIRST + first % SPAN;
        if start + u32::from(len) > FIRST + SPAN {
            continue;
        }
        if (0..len).all(|i| free(start as u16 + i)) {
            return start as u16;
        }
    }
    panic!("no free range of {len} ports on 127.0.0.1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        assert!(UdpSocket::bind(("127.0.0.1", a)).is_ok());
        let r = free_port_range(10);
        for p in r..r + 10 {
            assert_ne!(p, a);
            assert_ne!(p, b);
            assert!(TcpListener::bind(("127.0.0.1", p)).is_ok());
        }
    }
}
