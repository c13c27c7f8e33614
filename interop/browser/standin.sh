#!/usr/bin/env bash
# Runs the browser-phone test (run.sh) against Kamailio standing in for
# siplink-proxy (kamailio-standin.cfg): proves the harness itself works.
# Kamailio runs in the foreground in a tempdir with its own config, pid file
# and runtime dir, on free loopback ports, and is stopped on exit.
#
#   standin.sh [--debug]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULES=${KAMAILIO_MODULES:-/usr/lib/x86_64-linux-gnu/kamailio/modules}

DOMAIN=siplink.test
SIP_USER=alice
PASSWORD=secret
NUMBER=1000

command -v kamailio >/dev/null 2>&1 || { echo "standin.sh: kamailio is not installed (apt-get install kamailio)" >&2; exit 2; }
[ -f "$MODULES/websocket.so" ] || { echo "standin.sh: $MODULES/websocket.so missing (apt-get install kamailio-websocket-modules)" >&2; exit 2; }
command -v node >/dev/null 2>&1 || { echo "standin.sh: node is not installed" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/siplink-kamailio.XXXXXX")
KAM_PID=""
RUN_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    if [ -n "$KAM_PID" ] && kill -0 "$KAM_PID" 2>/dev/null; then
        kill -TERM -- "-$KAM_PID" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$KAM_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$KAM_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    if [ "$rc" -ne 0 ] && [ -f "$WORK/kamailio.log" ]; then
        echo "--- Kamailio log (last 80 lines) ---" >&2
        tail -n 80 "$WORK/kamailio.log" >&2
        echo "--- end of Kamailio log ---" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORTS=$(node "$HERE/free-ports.mjs" 3 | tr "\n" " ")
read -r WS_PORT KAM_UDP_PORT UAS_PORT <<<"$PORTS"

mkdir -p "$WORK/run"
sed -e "s|@WS_PORT@|$WS_PORT|g" -e "s|@UDP_PORT@|$KAM_UDP_PORT|g" -e "s|@UAS_PORT@|$UAS_PORT|g" \
    -e "s|@DOMAIN@|$DOMAIN|g" -e "s|@USER@|$SIP_USER|g" -e "s|@PASSWORD@|$PASSWORD|g" \
    -e "s|@NUMBER@|$NUMBER|g" -e "s|@MODULES@|$MODULES/|g" \
    "$HERE/kamailio-standin.cfg" >"$WORK/kamailio.cfg"

echo "standin.sh: Kamailio WS 127.0.0.1:$WS_PORT, UDP 127.0.0.1:$KAM_UDP_PORT, routes $NUMBER to the UAS on 127.0.0.1:$UAS_PORT"
# Foreground (-DD), logs to stderr (-E), small memory pools; own process group.
setsid kamailio -f "$WORK/kamailio.cfg" -DD -E -m 64 -M 8 \
    -P "$WORK/kamailio.pid" -Y "$WORK/run" >"$WORK/kamailio.log" 2>&1 &
KAM_PID=$!

# Wait for the WebSocket (TCP) listener.
hex=$(printf '%04X' "$WS_PORT")
for _ in $(seq 1 100); do
    grep -qE "^ *[0-9]+: 0100007F:$hex [0-9A-F]+:[0-9A-F]+ 0A " /proc/net/tcp && break
    kill -0 "$KAM_PID" 2>/dev/null || { echo "standin.sh: Kamailio exited at start-up" >&2; exit 1; }
    sleep 0.1
done
grep -qE "^ *[0-9]+: 0100007F:$hex [0-9A-F]+:[0-9A-F]+ 0A " /proc/net/tcp ||
    { echo "standin.sh: Kamailio is not listening on $WS_PORT" >&2; exit 1; }

# In the background so that a signal reaches our trap at once (bash runs traps
# only after a foreground child ends); cleanup stops run.sh, whose own trap
# stops SIPp and the browser.
"$HERE/run.sh" --ws-url "ws://127.0.0.1:$WS_PORT" --uas-port "$UAS_PORT" --domain "$DOMAIN" \
    --user "$SIP_USER" --password "$PASSWORD" --target "$NUMBER" "$@" &
RUN_PID=$!
RUN_RC=0
wait "$RUN_PID" || RUN_RC=$?
RUN_PID=""
exit "$RUN_RC"
