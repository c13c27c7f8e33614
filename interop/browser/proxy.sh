#!/usr/bin/env bash
# The browser-phone test against siplink's example proxy (issue #10): builds
# `examples/proxy.rs`, starts it on free loopback ports with a WebSocket
# listener, a user and a trunk connection whose dial pattern sends the
# browser's call to the SIPp UAS, then runs run.sh. Loopback only, bounded
# in time; the proxy and everything run.sh started are stopped on exit.
#
#   interop/browser/proxy.sh [--debug]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

(cd "$ROOT" && cargo build --quiet --example proxy)
PROXY_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/proxy

mapfile -t PORTS < <(node "$HERE/free-ports.mjs" 3)
SIP_PORT=${PORTS[0]} WS_PORT=${PORTS[1]} UAS_PORT=${PORTS[2]}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/siplink-browser-proxy.XXXXXX")
PROXY_PID=""
cleanup() {
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cat > "$WORK/proxy.toml" <<TOML
[proxy]
domains = ["siplink.test"]

[[listen]]
transport = "udp"
address = "127.0.0.1:$SIP_PORT"

[[listen]]
transport = "ws"
address = "127.0.0.1:$WS_PORT"

[[users]]
name = "alice"
password = "secret"

[[connections]]
name = "webrtc-pbx"
kind = "trunk"
addresses = ["127.0.0.1:$UAS_PORT"]
dial_patterns = ["1000"]
probe = { enabled = false }
TOML

RUST_LOG=${RUST_LOG:-info} "$PROXY_BIN" --config "$WORK/proxy.toml" > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on WS" "$WORK/proxy.log" 2>/dev/null && break
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$WORK/proxy.log"; echo "proxy.sh: the proxy did not start" >&2; exit 1; }
    sleep 0.1
done

status=0
"$HERE/run.sh" --ws-url "ws://127.0.0.1:$WS_PORT" --uas-port "$UAS_PORT" \
    --domain siplink.test --user alice --password secret --target 1000 "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- proxy log"
    cat "$WORK/proxy.log"
fi
exit "$status"
