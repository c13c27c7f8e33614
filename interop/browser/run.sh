#!/usr/bin/env bash
# Browser-phone end-to-end test against a running SIP proxy.
#
# Starts a SIPp UAS (uas_webrtc.xml) on 127.0.0.1:UAS_PORT, then runs run.mjs:
# JsSIP in headless Chromium registers to the proxy over WebSocket and calls
# TARGET; the proxy must route TARGET to the UAS, which answers with a WebRTC
# SDP and hangs up with BYE after PAUSE_MS. Passes (exit 0) only if the page
# saw registered -> confirmed -> ended by the remote BYE AND SIPp completed
# its call. Loopback only, bounded in time (under 60 s, about 10 s when it
# passes), every child is killed on exit.
#
#   run.sh --ws-url ws://127.0.0.1:8080 --uas-port 5090 \
#          [--domain D] [--user U] [--password P] [--target N] [--pause-ms MS] [--debug]
#
# Each option can also come from the environment: SIPLINK_WS_URL, SIPLINK_UAS_PORT,
# SIPLINK_SIP_DOMAIN, SIPLINK_USER, SIPLINK_PASSWORD, SIPLINK_CALL_TARGET,
# SIPLINK_PAUSE_MS, SIPLINK_DEBUG=1. See README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

WS_URL=${SIPLINK_WS_URL:-}
UAS_PORT=${SIPLINK_UAS_PORT:-}
DOMAIN=${SIPLINK_SIP_DOMAIN:-}
SIP_USER=${SIPLINK_USER:-alice}
PASSWORD=${SIPLINK_PASSWORD:-secret}
TARGET=${SIPLINK_CALL_TARGET:-1000}
PAUSE_MS=${SIPLINK_PAUSE_MS:-2000}
DEBUG=${SIPLINK_DEBUG:-0}
# Another UAS scenario (only to check that the harness fails when it should).
SCENARIO=${SIPLINK_UAS_SCENARIO:-$HERE/uas_webrtc.xml}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --debug|-h|--help) ;;
        *) [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; usage; } ;;
    esac
    case "$1" in
        --ws-url) WS_URL=$2; shift 2 ;;
        --uas-port) UAS_PORT=$2; shift 2 ;;
        --domain) DOMAIN=$2; shift 2 ;;
        --user) SIP_USER=$2; shift 2 ;;
        --password) PASSWORD=$2; shift 2 ;;
        --target) TARGET=$2; shift 2 ;;
        --pause-ms) PAUSE_MS=$2; shift 2 ;;
        --debug) DEBUG=1; shift ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
done

[ -n "$WS_URL" ] || { echo "run.sh: --ws-url (SIPLINK_WS_URL) is required" >&2; usage; }
[[ "$UAS_PORT" =~ ^[0-9]+$ ]] || { echo "run.sh: --uas-port (SIPLINK_UAS_PORT) is required" >&2; usage; }
[[ "$PAUSE_MS" =~ ^[0-9]+$ ]] && [ "$PAUSE_MS" -le 5000 ] || { echo "run.sh: --pause-ms must be 0..5000" >&2; exit 2; }
case "$WS_URL" in
    ws://127.*|ws://localhost:*|ws://localhost/*|ws://localhost|ws://\[::1\]*) ;;
    *) echo "run.sh: want a ws:// URL on loopback (wss:// is not covered), got $WS_URL" >&2; exit 2 ;;
esac

for tool in node sipp; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool is not installed" >&2; exit 2; }
done
[ -x "${SIPLINK_CHROMIUM:-/usr/bin/chromium}" ] || { echo "run.sh: ${SIPLINK_CHROMIUM:-/usr/bin/chromium} is not installed" >&2; exit 2; }

if [ ! -d "$HERE/node_modules/jssip" ] || [ ! -d "$HERE/node_modules/playwright-core" ]; then
    echo "run.sh: installing the npm packages (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/siplink-browser.XXXXXX")
SIPP_PID=""
PHONE_PID=""

# Kills what we started: SIPp, and run.mjs's whole process group (node and
# the Chromium it launched).
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$PHONE_PID" ] && kill -0 "$PHONE_PID" 2>/dev/null; then
        kill -TERM -- "-$PHONE_PID" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$PHONE_PID" 2>/dev/null || true
    fi
    if [ -n "$SIPP_PID" ] && kill -0 "$SIPP_PID" 2>/dev/null; then
        kill -TERM "$SIPP_PID" 2>/dev/null || true
        sleep 0.3
        kill -KILL "$SIPP_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Is something bound to 127.0.0.1:$1 (or the wildcard) over UDP?
udp_bound() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: (0100007F|00000000):$hex " /proc/net/udp 2>/dev/null
}

if udp_bound "$UAS_PORT"; then
    echo "run.sh: UDP port $UAS_PORT is already in use" >&2
    exit 2
fi
MEDIA_PORT=$(node "$HERE/free-ports.mjs" 1)

echo "run.sh: SIPp UAS on udp 127.0.0.1:$UAS_PORT (media port $MEDIA_PORT, BYE after $PAUSE_MS ms)"
(
    cd "$WORK"
    exec sipp -sf "$SCENARIO" -i 127.0.0.1 -p "$UAS_PORT" -mp "$MEDIA_PORT" -set rtp_port "$MEDIA_PORT" -t u1 \
        -m 1 -d "$PAUSE_MS" -timeout 50s -timeout_error -nostdin \
        -trace_err -error_file "$WORK/sipp-errors.log" \
        -trace_msg -message_file "$WORK/sipp-messages.log" \
        >"$WORK/sipp.out" 2>&1
) &
SIPP_PID=$!

for _ in $(seq 1 50); do
    udp_bound "$UAS_PORT" && break
    kill -0 "$SIPP_PID" 2>/dev/null || break
    sleep 0.1
done
if ! udp_bound "$UAS_PORT"; then
    echo "run.sh: FAIL: SIPp did not start" >&2
    cat "$WORK/sipp.out" >&2 || true
    exit 1
fi

PHONE_ARGS=(--ws-url "$WS_URL" --user "$SIP_USER" --password "$PASSWORD" --target "$TARGET"
    --register-timeout 10 --answer-timeout 10 --bye-timeout $((PAUSE_MS / 1000 + 6)))
[ -n "$DOMAIN" ] && PHONE_ARGS+=(--domain "$DOMAIN")
[ "$DEBUG" = 1 ] && PHONE_ARGS+=(--debug)

# Own process group, so cleanup can take Chromium down with it.
# TMPDIR: Chromium's profile and Playwright's temp files go under $WORK too.
TMPDIR="$WORK" setsid timeout -k 3 45 node "$HERE/run.mjs" "${PHONE_ARGS[@]}" &
PHONE_PID=$!
PHONE_RC=0
wait "$PHONE_PID" || PHONE_RC=$?
PHONE_PID=""

# SIPp ends by itself once the BYE is answered; give it a moment.
SIPP_RC=""
for _ in $(seq 1 30); do
    if ! kill -0 "$SIPP_PID" 2>/dev/null; then
        SIPP_RC=0
        wait "$SIPP_PID" || SIPP_RC=$?
        SIPP_PID=""
        break
    fi
    sleep 0.1
done

show_sipp() {
    echo "--- SIPp UAS output ---"
    tail -n 40 "$WORK/sipp.out" 2>/dev/null || true
    if [ -s "$WORK/sipp-errors.log" ]; then
        echo "--- SIPp errors ---"
        tail -n 40 "$WORK/sipp-errors.log"
    fi
    echo "--- SIPp messages (last 120 lines) ---"
    tail -n 120 "$WORK/sipp-messages.log" 2>/dev/null || true
    echo "--- end of SIPp ---"
}

if [ "$PHONE_RC" -ne 0 ]; then
    [ "$PHONE_RC" -eq 124 ] && echo "run.sh: FAIL: the browser phone timed out" >&2
    echo "run.sh: FAIL: browser phone exit code $PHONE_RC" >&2
    show_sipp >&2
    exit 1
fi
if [ "$SIPP_RC" != 0 ]; then
    echo "run.sh: FAIL: the browser side passed but SIPp did not complete its call (exit ${SIPP_RC:-still running})" >&2
    show_sipp >&2
    exit 1
fi
[ "$DEBUG" = 1 ] && show_sipp
echo "run.sh: PASS (browser: registered -> confirmed -> ended by BYE; SIPp UAS: call completed)"
