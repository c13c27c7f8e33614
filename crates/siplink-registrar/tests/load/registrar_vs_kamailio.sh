#!/usr/bin/env bash
# REGISTER-with-digest load, run by hand: SIPp registers USERS distinct users
# (REGISTER, 401, REGISTER with credentials, 200; Expires 3600) against
#   1. our registrar example (release build, UDP, MD5, flood limit off), then
#   2. Kamailio 5.x with the equivalent configuration (kamailio.cfg.in),
# and prints for each: successful registrations, failed ones, the rate
# (registrations per second = digest-authenticated REGISTERs per second), and
# the memory growth per binding; then the rate ratio.
#
#   crates/siplink-registrar/tests/load/registrar_vs_kamailio.sh
#   USERS=20000 LIMIT=200 crates/siplink-registrar/tests/load/registrar_vs_kamailio.sh
#
# USERS (default 100000): users, one call (and one binding) each.
# RATE (default 50000): SIPp's call rate cap, far above what is reached;
# LIMIT (default 200): calls in flight at once, which sets the actual pace.
# Memory: ours is the growth of the process's VmRSS over the run; Kamailio's
# the growth of its shared memory (kamcmd core.shmmem real_used: usrloc keeps
# bindings there; `used` without the allocator's overhead is printed too) and,
# for reference, of the summed Pss of its processes.
# Loopback only; every process started is stopped on exit.
set -euo pipefail

USERS=${USERS:-100000}
RATE=${RATE:-50000}
LIMIT=${LIMIT:-200}
# Seconds to wait after the run before reading memory: our endpoint keeps each
# completed non-INVITE server transaction for timer J (32 s over UDP), which
# Kamailio's stateless replies do not; both are measured after the wait.
SETTLE=${SETTLE:-40}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/siplink-regload.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

for tool in sipp kamailio kamcmd python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

free_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
pss_kib_sum() {
    local total=0 p v
    for p in $(pgrep -P "$1") "$1"; do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        total=$((total + v))
    done
    echo "$total"
}
# "used real_used" of Kamailio's shared memory (real_used counts the
# allocator's own overhead, as a process's RSS does).
shm_used() {
    kamcmd -s "unix:$work/kam/kamailio_ctl" core.shmmem |
        awk '$1 == "used:" {u = $2} $1 == "real_used:" {r = $2} END {print u, r}'
}

echo "building the registrar example (release)..."
(cd "$root" && cargo build --release --example registrar --quiet)

python3 - "$USERS" "$work" <<'EOF'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/users.csv", "w") as plain, open(f"{work}/sipp.csv", "w") as sipp:
    sipp.write("SEQUENTIAL\n")
    for i in range(1, n + 1):
        plain.write(f"user{i},user{i}-pw\n")
        sipp.write(f"user{i};[authentication username=user{i} password=user{i}-pw];\n")
EOF

# Runs SIPp against 127.0.0.1:$1; prints "ok failed seconds".
run_sipp() {
    local port=$1 name=$2
    mkdir -p "$work/$name"
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$work/$name" && sipp "127.0.0.1:$port" -sf "$here/register_once.xml" -inf "$work/sipp.csv" \
        -key domain example.test -i 127.0.0.1 -p "$(free_port)" -t u1 \
        -m "$USERS" -r "$RATE" -l "$LIMIT" -timeout 900s -nostdin \
        -trace_stat -stf stat.csv -fd 1 >/dev/null 2>&1) || true
    t1=$(date +%s.%N)
    python3 - "$work/$name/stat.csv" "$t0" "$t1" <<'EOF'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
h, last = rows[0], rows[-1]
ok = int(last[h.index("SuccessfulCall(C)")])
failed = int(last[h.index("FailedCall(C)")])
print(ok, failed, f"{float(sys.argv[3]) - float(sys.argv[2]):.2f}")
EOF
}

# --- ours --- (a UDP port found free may be taken for TCP: retry elsewhere)
for _try in 1 2 3; do
    port=$(free_port)
    "$root/target/release/examples/registrar" --domain example.test --domain 127.0.0.1 \
        --users "$work/users.csv" --listen "127.0.0.1:$port" --algorithms MD5 --flood-limit 0 \
        --max-transactions 1000000 --quiet >"$work/siplink.log" 2>&1 &
    ours=$!
    pids+=("$ours")
    sleep 2
    kill -0 "$ours" 2>/dev/null && break
done
kill -0 "$ours" 2>/dev/null || { cat "$work/siplink.log" >&2; exit 1; }
before=$(rss_kib "$ours")
read -r s_ok s_failed s_secs < <(run_sipp "$port" siplink)
peak=$(rss_kib "$ours")
sleep "$SETTLE"
after=$(rss_kib "$ours")
s_rate=$(python3 -c "print(f'{$s_ok / $s_secs:.0f}')")
s_mem=$(python3 -c "print(f'{($after - $before) * 1024 / max($s_ok, 1):.0f}')")
echo "siplink : $s_ok registered, $s_failed failed, ${s_secs} s, $s_rate REGISTER-with-digest/s, VmRSS +$((after - before)) KiB = $s_mem bytes/binding after ${SETTLE} s (right after the run: +$((peak - before)) KiB)"
kill "$ours"

# --- Kamailio ---
kport=$(free_port)
mkdir -p "$work/kam"
sed -e "s|@PORT@|$kport|g" -e "s|@RUNDIR@|$work/kam|g" "$here/kamailio.cfg.in" >"$work/kam/kamailio.cfg"
kamailio -f "$work/kam/kamailio.cfg" -DD -E -P "$work/kam/kamailio.pid" -Y "$work/kam" \
    -m 1024 -M 32 >"$work/kam/kamailio.log" 2>&1 &
kam=$!
pids+=("$kam")
sleep 3
read -r kused_before kreal_before < <(shm_used)
kpss_before=$(pss_kib_sum "$kam")
read -r k_ok k_failed k_secs < <(run_sipp "$kport" kamailio)
sleep "$SETTLE"
read -r kused_after kreal_after < <(shm_used)
kpss_after=$(pss_kib_sum "$kam")
k_rate=$(python3 -c "print(f'{$k_ok / $k_secs:.0f}')")
k_mem=$(python3 -c "print(f'{($kreal_after - $kreal_before) / max($k_ok, 1):.0f}')")
k_used=$(python3 -c "print(f'{($kused_after - $kused_before) / max($k_ok, 1):.0f}')")
k_pss=$(python3 -c "print(f'{($kpss_after - $kpss_before) * 1024 / max($k_ok, 1):.0f}')")
echo "kamailio: $k_ok registered, $k_failed failed, ${k_secs} s, $k_rate REGISTER-with-digest/s, shm real_used +$((kreal_after - kreal_before)) bytes = $k_mem bytes/binding (shm used: $k_used, Pss: $k_pss bytes/binding)"

python3 -c "print(f'rate ratio siplink/kamailio: {$s_rate / max($k_rate, 1):.2f}')"
echo "(our RSS growth includes the completed transactions kept for timer J, and glibc keeps freed"
echo " memory: the store's own bytes per binding come from tests/memory.rs)"
