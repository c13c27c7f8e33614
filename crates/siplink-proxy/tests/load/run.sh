#!/usr/bin/env bash
# Load run, by hand: SIPp call rate through siplink's example proxy and through
# Kamailio (stateful, same job) to one SIPp UAS, on loopback.
#
#   crates/siplink-proxy/tests/load/run.sh                 # rates 100 200 400 800 1600
#   RATES="200 400" HOLD_MS=3000 STEP_SECS=10 crates/siplink-proxy/tests/load/run.sh
#
# Each call: INVITE -> 407 -> ACK -> INVITE with Proxy-Authorization (MD5) ->
# 100/180/200 (Record-Route) -> ACK -> held HOLD_MS -> BYE -> 200, i.e. three
# transactions plus two ACKs through the proxy. For every rate, the same SIPp
# UAC load (STEP_SECS * rate calls) runs first through siplink, then through
# Kamailio; a proxy whose step fails is not tried at higher rates. A step
# passes when every call succeeded, no call failed and SIPp retransmitted at
# most RETRANS_PCT % of the calls' requests, and SIPp reached the target rate
# (>= 90 %; otherwise SIPp or the machine, not the proxy, was the limit: the
# step is marked "rate not reached").
#
# Measured per step and proxy: CPU (utime+stime from /proc/PID/stat, all of
# Kamailio's processes), RSS (VmRSS) and PSS (smaps_rollup; Kamailio's
# processes share their shm, so only PSS sums right), peak active calls
# (SIPp's CurrentCall) and memory per active call = (peak PSS - idle PSS) /
# peak active calls. Results: a table on stdout and results.tsv in the work
# directory (printed at the end; it also holds every log and SIPp CSV).
#
# After the last step, the proxies' memory is read again IDLE_AFTER (40)
# seconds later: what a proxy keeps once its calls and transactions are over.
# "udp_drops" is the system-wide UDP receive-buffer overflow count
# (/proc/net/snmp RcvbufErrors) during the step: datagrams the kernel dropped
# because a socket's reader (proxy, SIPp) fell behind.
#
# Settings (environment): RATES, HOLD_MS (3000), STEP_SECS (10), GAP_SECS
# (2, pause between steps), CHILDREN
# (Kamailio UDP workers, 2 = the machine's cores; siplink's tokio runtime
# uses one worker per core), RETRANS_PCT (1), PROXIES ("siplink kamailio").
# The whole run is bounded (each SIPp step by `timeout`, everything by
# MAX_SECS=570) and every process started here is stopped on exit.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
RATES=${RATES:-"100 200 400 800 1600"}
HOLD_MS=${HOLD_MS:-3000}
STEP_SECS=${STEP_SECS:-10}
CHILDREN=${CHILDREN:-2}
RETRANS_PCT=${RETRANS_PCT:-1}
PROXIES=${PROXIES:-"siplink kamailio"}
MAX_SECS=${MAX_SECS:-570}
IDLE_AFTER=${IDLE_AFTER:-40}
GAP_SECS=${GAP_SECS:-2}

for tool in sipp kamailio ss; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/siplink-load.XXXXXX")
PIDS=()
SAMPLER=

cleanup() {
    local p
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" | tee -a "$WORK/summary.txt"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
udp_drops() { awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp; }

# A loopback port free for UDP and TCP now (random, checked with ss).
used_ports=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        case "$used_ports" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Hlnu "sport = :$p")" ] && [ -z "$(ss -Hlnt "sport = :$p")" ]; then
            used_ports="$used_ports$p "
            echo "$p"
            return
        fi
    done
}

# Waits until something listens on UDP 127.0.0.1:$1 (at most 20 s).
wait_udp() {
    local i
    for i in $(seq 200); do
        [ -n "$(ss -Hlnu "sport = :$1")" ] && return 0
        sleep 0.1
    done
    return 1
}

# The pids to measure for a proxy: the process and all its children.
pids_of() {
    local main=$1
    echo "$main"
    ps -o pid= --ppid "$main" 2>/dev/null || true
}

# "cpu_ticks rss_kb pss_kb" summed over the pids of $1.
measure() {
    local pid ticks=0 rss=0 pss=0 stat v
    for pid in $(pids_of "$1"); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        # fields after "(comm) ": state=1 ... utime=12 stime=13
        set -- $stat
        ticks=$((ticks + ${12} + ${13}))
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) && rss=$((rss + ${v:-0}))
        v=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null) && pss=$((pss + ${v:-0}))
    done
    echo "$ticks $rss $pss"
}

# Samples `measure $1` every 0.5 s into $2 as "epoch ticks rss pss".
sampler() {
    while :; do
        echo "$(date +%s.%N) $(measure "$1")" >>"$2"
        sleep 0.5
    done
}

# Value of column $2 in the last row of SIPp stat CSV $1.
csv_last() {
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { v = $c } END { print v + 0 }' "$1"
}
# Max of column $2 over the rows of $1.
csv_max() {
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { if ($c + 0 > m) m = $c + 0 } END { print m + 0 }' "$1"
}
# Rate SIPp actually created calls at: calls created by the last sample
# taken while it was still creating, over the time since the start.
csv_rate() {
    awk -F';' -v calls="$2" '
        function epoch(f,   a) { split(f, a, "\t"); return a[3] + 0 }
        NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "OutgoingCall(C)") o = i; if ($i == "CurrentTime") t = i; if ($i == "StartTime") s = i }; next }
        { start = epoch($s); n = $o + 0; now = epoch($t) - start
          if (n < calls) { last_n = n; last_t = now }
          else if (!done) { done = 1; if (last_n == 0) { last_n = n; last_t = now } } }
        END { if (last_t > 0) printf "%.0f", last_n / last_t; else print 0 }' "$1"
}

# ---------------------------------------------------------------------------

log "siplink load run $(date -u +%FT%TZ) on $(nproc) cores; load average at start: $(loadavg)"
log "kamailio: $(kamailio -v | head -1); sipp: $(sipp -v 2>&1 | grep -o 'v[0-9][^ ]*' | head -1)"
log "rates: $RATES cps; $STEP_SECS s of calls per step; hold ${HOLD_MS} ms; kamailio children=$CHILDREN"
log "work directory: $WORK"

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/proxy
if [[ " $PROXIES " == *" siplink "* ]]; then
    (cd "$ROOT" && cargo build --release --example proxy -q)
    [ -x "$BIN" ] || { echo "run.sh: $BIN was not built" >&2; exit 2; }
fi

UAS_PORT=$(free_port)
SIPLINK_PORT=$(free_port)
KAM_PORT=$(free_port)
UAS="127.0.0.1:$UAS_PORT"

# The PBX: one SIPp UAS answering every call, for both proxies.
sipp -sf "$HERE/uas_answer.xml" -i 127.0.0.1 -p "$UAS_PORT" \
    -nostdin -trace_err -error_file "$WORK/uas_errors.log" >"$WORK/uas.out" 2>&1 &
PIDS+=($!)
wait_udp "$UAS_PORT" || { echo "the SIPp UAS did not start" >&2; exit 1; }

declare -A MAIN
if [[ " $PROXIES " == *" siplink "* ]]; then
    sed -e "s|@PORT@|$SIPLINK_PORT|g" -e "s|@UAS@|$UAS|g" "$HERE/siplink-proxy.toml" >"$WORK/siplink.toml"
    RUST_LOG=${RUST_LOG:-warn} "$BIN" --config "$WORK/siplink.toml" >"$WORK/siplink.log" 2>&1 &
    MAIN[siplink]=$!
    PIDS+=($!)
    wait_udp "$SIPLINK_PORT" || { cat "$WORK/siplink.log" >&2; exit 1; }
fi
if [[ " $PROXIES " == *" kamailio "* ]]; then
    MODULES=
    for d in /usr/lib/x86_64-linux-gnu/kamailio/modules /usr/lib/aarch64-linux-gnu/kamailio/modules \
        /usr/lib64/kamailio/modules /usr/lib/kamailio/modules /usr/local/lib64/kamailio/modules; do
        [ -f "$d/tm.so" ] && { MODULES=$d/; break; }
    done
    [ -n "$MODULES" ] || { echo "run.sh: kamailio modules not found" >&2; exit 2; }
    sed -e "s|@PORT@|$KAM_PORT|g" -e "s|@UAS@|$UAS|g" -e "s|@CHILDREN@|$CHILDREN|g" \
        -e "s|@MODULES@|$MODULES|g" "$HERE/kamailio-proxy.cfg" >"$WORK/kamailio.cfg"
    mkdir -p "$WORK/kamailio-run"
    kamailio -f "$WORK/kamailio.cfg" -DD -E -m 512 -M 16 -P "$WORK/kamailio.pid" \
        -Y "$WORK/kamailio-run" -w "$WORK" >"$WORK/kamailio.log" 2>&1 &
    MAIN[kamailio]=$!
    PIDS+=($!)
    wait_udp "$KAM_PORT" || { cat "$WORK/kamailio.log" >&2; exit 1; }
fi
declare -A PORT=([siplink]=$SIPLINK_PORT [kamailio]=$KAM_PORT)
declare -A IDLE BEST DONE
sleep 2
CLK=$(getconf CLK_TCK)
for p in $PROXIES; do
    read -r _ rss pss <<<"$(measure "${MAIN[$p]}")"
    IDLE[$p]=$pss
    BEST[$p]=0
    log "$p idle: RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB ($(pids_of "${MAIN[$p]}" | wc -l) process(es))"
done

printf 'rate\tproxy\tresult\tachieved_cps\tsuccessful\tfailed\tretrans\tudp_drops\tpeak_active\tcpu_pct\tcpu_us_per_call\tpeak_rss_mib\tpeak_pss_mib\tkib_per_active_call\tloadavg\n' >"$WORK/results.tsv"
log ""
log "$(printf '%5s %-8s %-16s %8s %6s %6s %7s %6s %7s %5s %9s %8s %8s %9s  %s' rate proxy result achieved ok failed retrans drops active cpu% cpu_us/cl rss_MiB pss_MiB KiB/call load)"

for rate in $RATES; do
    for p in $PROXIES; do
        [ -n "${DONE[$p]:-}" ] && continue
        if [ "$SECONDS" -gt "$MAX_SECS" ]; then
            log "time budget ($MAX_SECS s) spent: stopping"
            break 2
        fi
        calls=$((rate * STEP_SECS))
        name="$p-$rate"
        uac_port=$(free_port)
        samples="$WORK/$name.samples"
        : >"$samples"
        sampler "${MAIN[$p]}" "$samples" &
        SAMPLER=$!
        la=$(loadavg)
        drops0=$(udp_drops)
        rc=0
        (cd "$WORK" && timeout -k 5 $((STEP_SECS * 3 + HOLD_MS / 1000 + 40)) \
            sipp -sf "$HERE/uac_call.xml" -i 127.0.0.1 -p "$uac_port" \
            -s 4001 -key user 1001 -au 1001 -ap pw1001 -auth_uri 4001@siplink.test \
            -r "$rate" -m "$calls" -l $((rate * (HOLD_MS / 1000 + 5))) -d "$HOLD_MS" \
            -recv_timeout 20000 -nostdin \
            -trace_stat -stf "$name.csv" -fd 1 -trace_err -error_file "$name-errors.log" \
            "127.0.0.1:${PORT[$p]}" >"$name.out" 2>&1) || rc=$?
        drops=$(($(udp_drops) - drops0))
        kill "$SAMPLER" 2>/dev/null || true
        wait "$SAMPLER" 2>/dev/null || true
        SAMPLER=
        csv="$WORK/$name.csv"
        if [ ! -s "$csv" ]; then
            log "$rate $p: SIPp wrote no statistics (exit $rc), see $WORK/$name.out"
            DONE[$p]=1
            continue
        fi
        ok=$(csv_last "$csv" "SuccessfulCall(C)")
        failed=$(csv_last "$csv" "FailedCall(C)")
        retrans=$(csv_last "$csv" "Retransmissions(C)")
        active=$(csv_max "$csv" "CurrentCall")
        achieved=$(csv_rate "$csv" "$calls")
        # CPU over the step: first and last sample.
        read -r cpu_pct cpu_us peak_rss peak_pss <<<"$(awk -v clk="$CLK" -v calls="$calls" '
            NR == 1 { t0 = $1; c0 = $2 } { t1 = $1; c1 = $2; if ($3 > r) r = $3; if ($4 > s) s = $4 }
            END { dt = t1 - t0; if (dt <= 0) dt = 1
                  printf "%.0f %.0f %d %d", 100 * (c1 - c0) / clk / dt, 1e6 * (c1 - c0) / clk / calls, r, s }' "$samples")"
        per_call=0
        [ "$active" -gt 0 ] && per_call=$(((peak_pss - IDLE[$p]) / active))
        result=pass
        if [ "$failed" -gt 0 ] || [ "$ok" -lt "$calls" ]; then
            result=FAIL
        elif [ $((retrans * 100)) -gt $((calls * RETRANS_PCT)) ]; then
            result=FAIL-retrans
        elif [ $((achieved * 10)) -lt $((rate * 9)) ]; then
            result="rate-not-reached"
        fi
        if [ "$result" = pass ]; then
            BEST[$p]=$rate
        else
            DONE[$p]=1
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$p" "$result" "$achieved" \
            "$ok" "$failed" "$retrans" "$drops" "$active" "$cpu_pct" "$cpu_us" $((peak_rss / 1024)) $((peak_pss / 1024)) \
            "$per_call" "$la" >>"$WORK/results.tsv"
        log "$(printf '%5s %-8s %-16s %8s %6s %6s %7s %6s %7s %5s %9s %8s %8s %9s  %s' "$rate" "$p" "$result" "$achieved" \
            "$ok" "$failed" "$retrans" "$drops" "$active" "$cpu_pct" "$cpu_us" $((peak_rss / 1024)) $((peak_pss / 1024)) \
            "$per_call" "$la")"
        # Let the proxy's finished transactions expire a little between steps.
        sleep "$GAP_SECS"
    done
    all_done=1
    for p in $PROXIES; do [ -z "${DONE[$p]:-}" ] && all_done=
    done
    [ -n "$all_done" ] && break
done

if [ "$IDLE_AFTER" -gt 0 ]; then
    sleep "$IDLE_AFTER"
    for p in $PROXIES; do
        read -r _ rss pss <<<"$(measure "${MAIN[$p]}")"
        log "$p ${IDLE_AFTER} s after the last step: RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB (idle before the run: PSS $((IDLE[$p] / 1024)) MiB)"
    done
fi
log ""
for p in $PROXIES; do
    log "$p: highest rate passed: ${BEST[$p]} cps"
done
if [[ " $PROXIES " == *" siplink "* && " $PROXIES " == *" kamailio "* ]] && [ "${BEST[kamailio]}" -gt 0 ]; then
    log "siplink / kamailio: $(awk -v a="${BEST[siplink]}" -v b="${BEST[kamailio]}" 'BEGIN { printf "%.2f", a / b }')"
fi
log "load average at end: $(loadavg); total $SECONDS s"
for p in $PROXIES; do
    if ! kill -0 "${MAIN[$p]}" 2>/dev/null; then log "WARNING: $p exited during the run (see $WORK/$p.log)"; fi
done
[ -s "$WORK/uas_errors.log" ] && log "UAS errors: $(wc -l <"$WORK/uas_errors.log") line(s) in $WORK/uas_errors.log"
log "results: $WORK/results.tsv"
