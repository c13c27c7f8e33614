#!/usr/bin/env python3
"""Side-by-side REGISTER load: siplink against Kamailio, run by hand (never in CI).

Issue 15's measuring script. Each round starts Kamailio (auth + usrloc in memory, the
same users, crates/siplink-registrar/tests/load/kamailio.cfg.in) and siplink (the
`registrar` example, or the `proxy` example that operators run) fresh, one after the
other (A B A B ...), and drives both with the same SIPp scenario over UDP:
REGISTER -> 401 -> REGISTER with MD5 digest -> 200. Per server and round it reports

  cpu     CPU per registration at --rate (utime+stime of the server's whole process
          tree over the SIPp run / successful registrations);
  ramp    the highest rate with 0 failed registrations over --ramp steps (a step
          where both servers show UDP receive drops does not count toward a peak);
  memory  (with --memory) bytes per binding at --users bindings: PSS growth of
          the process tree, and for Kamailio also its shm `used` growth; RSS
          growth 40 s after a --burst burst, compared with idle. With --heap-stats
          (the registrar example built with `--features heap-stats`) also siplink's
          heap bytes in use per binding (what it allocated and did not free, the
          figure to hold against Kamailio's shm `used`) and its heap growth after
          the burst.
  flood   (with --flood) 20,000 REGISTERs in 10 s with random users from one
          source while a second source sends OPTIONS probes: answered flood
          REGISTERs, RSS growth, probe latency p50/p99/max, unanswered probes.

Then the medians over the rounds and the siplink/Kamailio ratios. A run counts only
when the load average is below --max-load at its start (the script waits up to 60 s
for it); SIPp is pinned to CPU --sipp-cpu with taskset; UDP receive drops of the
server's socket(s) are read from /proc/net/udp.

  cargo build --release --examples
  python3 benches/load/registrations.py --target registrar
  python3 benches/load/registrations.py --target proxy --rounds 3 --memory --flood
  cargo build --release --features heap-stats --example registrar
  python3 benches/load/registrations.py --target registrar --memory --heap-stats

Loopback only; every process started here is stopped on exit (by process group).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from loadkit import (EXAMPLES, ROOT, counted_rounds, cpu_seconds, free_port, median,  # noqa: E402
                     options, pss_kib, rss_kib, set_peaks, sipp as run_sipp, spawn, stop,
                     stop_all, udp_drops, wait_listening, wait_quiet)

KAM_CFG = os.path.join(ROOT, "crates/siplink-registrar/tests/load/kamailio.cfg.in")
SCENARIO = os.path.join(ROOT, "crates/siplink-registrar/tests/load/register_once.xml")
FLOOD_SCENARIO = os.path.join(os.path.dirname(__file__), "register_flood.xml")
DOMAIN = "example.test"


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------

class Server:
    def __init__(self, name, proc, port, work, kam_ctl=None, heap_file=None):
        self.name, self.proc, self.port, self.work, self.kam_ctl = name, proc, port, work, kam_ctl
        self.heap_file = heap_file

    def alive(self):
        return self.proc.poll() is None

    def heap_allocated(self):
        """siplink's heap bytes in use (`--heap-stats`), after its next write."""
        if not self.heap_file:
            return None
        t0 = os.path.getmtime(self.heap_file) if os.path.exists(self.heap_file) else 0
        for _ in range(50):  # the example rewrites it every second
            time.sleep(0.1)
            if os.path.exists(self.heap_file) and os.path.getmtime(self.heap_file) != t0:
                break
        with open(self.heap_file) as f:
            for line in f:
                if line.startswith("heap_allocated="):
                    return int(line.split("=", 1)[1])
        return None

    def shm_used(self):
        """Kamailio's shared memory (used, real_used) in bytes."""
        out = subprocess.run(["kamcmd", "-s", f"unix:{self.kam_ctl}", "core.shmmem"],
                             capture_output=True, text=True, timeout=10).stdout
        vals = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].endswith(":"):
                vals[parts[0][:-1]] = int(parts[1])
        return vals.get("used", 0), vals.get("real_used", 0)


def start_kamailio(work):
    port = free_port()
    kdir = os.path.join(work, f"kam-{port}")
    os.makedirs(kdir)
    with open(KAM_CFG) as f:
        cfg = f.read().replace("@PORT@", str(port)).replace("@RUNDIR@", kdir)
    with open(os.path.join(kdir, "kamailio.cfg"), "w") as f:
        f.write(cfg)
    proc = spawn(["kamailio", "-f", os.path.join(kdir, "kamailio.cfg"), "-DD", "-E",
                  "-P", os.path.join(kdir, "kamailio.pid"), "-Y", kdir, "-m", "2048", "-M", "32"],
                 os.path.join(kdir, "kamailio.log"))
    if not wait_listening(port, proc, DOMAIN):
        raise SystemExit(f"kamailio did not start: see {kdir}/kamailio.log")
    return Server("kamailio", proc, port, kdir, os.path.join(kdir, "kamailio_ctl"))


def start_siplink(work, target, users_csv, proxy_toml_users, env, limiters=False, extra=(),
                  heap_stats=False):
    port = free_port()
    sdir = os.path.join(work, f"siplink-{port}")
    os.makedirs(sdir)
    heap_file = None
    if target == "registrar":
        cmd = [os.path.join(EXAMPLES, "registrar"), "--domain", DOMAIN,
               "--domain", "127.0.0.1", "--users", users_csv, "--listen", f"127.0.0.1:{port}",
               "--algorithms", "MD5", "--flood-limit", "0", "--max-transactions", "1000000",
               "--quiet", *extra]
        if heap_stats:
            heap_file = os.path.join(sdir, "heap")
            cmd += ["--heap-stats", heap_file]
    else:
        toml = os.path.join(sdir, "proxy.toml")
        # --siplink-arg=--sharing --siplink-arg=X (and --workers N) become the
        # UDP listener's `sharing` / `workers` for the proxy.
        listen_extra = ""
        for flag, key, quote in (("--sharing", "sharing", True), ("--workers", "workers", False)):
            if flag in extra and extra.index(flag) + 1 < len(extra):
                value = extra[extra.index(flag) + 1]
                listen_extra += f'{key} = "{value}"\n' if quote else f"{key} = {value}\n"
        with open(toml, "w") as f:
            f.write(f'[proxy]\ndomains = ["{DOMAIN}", "127.0.0.1"]\ndigest_algorithms = ["MD5"]\n\n'
                    f'[[listen]]\ntransport = "udp"\naddress = "127.0.0.1:{port}"\n{listen_extra}\n'
                    + ('' if limiters else
                       '[limits]\nmax_expires = 3600\nregister_flood = 0\n\n'
                       '[security]\nrate_limit = { enabled = false }\n\n'))
            f.write(proxy_toml_users)
        cmd = [os.path.join(EXAMPLES, "proxy"), "--config", toml]
    proc = spawn(cmd, os.path.join(sdir, "siplink.log"), env=env)
    if not wait_listening(port, proc, DOMAIN, limit=60):
        raise SystemExit(f"siplink did not start: see {sdir}/siplink.log")
    return Server("siplink", proc, port, sdir, heap_file=heap_file)


# ---------------------------------------------------------------------------
# SIPp
# ---------------------------------------------------------------------------

def sipp(server, scenario, inf, calls, rate, limit, cpu, work, tag, timeout_s):
    """SIPp against the server: (successful, failed, seconds)."""
    args = ["-key", "domain", DOMAIN, "-m", str(calls), "-r", str(rate), "-l", str(limit)]
    if inf:
        args += ["-inf", inf]
    r = run_sipp(f"127.0.0.1:{server.port}", scenario, args, work, tag, timeout_s, cpu=cpu)
    return r["ok"], r["failed"], r["secs"]


def sipp_inf(work, users, offset=0):
    """SIPp's injection file: user, [authentication ...] keyword."""
    path = os.path.join(work, f"sipp-{offset}.csv")
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(offset + 1, offset + users + 1):
            f.write(f"user{i};[authentication username=user{i} password=user{i}-pw];\n")
    return path


# ---------------------------------------------------------------------------
# probes (flood test)
# ---------------------------------------------------------------------------

def probe_latencies(port, count, interval, timeout=2.0):
    """Sends `count` OPTIONS (one every `interval` s) from a socket of its own; returns
    the latency of each answered one (s) and the number unanswered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))  # another source than SIPp's 127.0.0.1 (per-source limits)
    lp = s.getsockname()[1]
    sent, lat = {}, {}
    s.setblocking(False)
    nxt = time.time()
    i = 0
    end = None
    while True:
        now = time.time()
        if i < count and now >= nxt:
            b = f"p{os.getpid()}x{i}"
            sent[b] = now
            s.sendto(options(lp, DOMAIN, b), ("127.0.0.1", port))
            i += 1
            nxt += interval
            if i == count:
                end = now + timeout
        try:
            data, _ = s.recvfrom(65535)
            t = time.time()
            for line in data.split(b"\r\n"):
                if line.lower().startswith(b"call-id:"):
                    b = line.split(b":", 1)[1].strip().split(b"@")[0].decode()
                    if b in sent and b not in lat:
                        lat[b] = t - sent[b]
        except BlockingIOError:
            time.sleep(0.0005)
        if end is not None and time.time() > end:
            break
    return sorted(lat.values()), count - len(lat)


# ---------------------------------------------------------------------------
# the measurements
# ---------------------------------------------------------------------------

def measure_cpu(srv, args, work, inf, tag):
    calls = args.rate * args.cpu_seconds
    c0, d0 = cpu_seconds(srv.proc.pid), udp_drops(srv.port)
    ok, failed, secs = sipp(srv, SCENARIO, inf, calls, args.rate, 5000, args.sipp_cpu, work,
                            tag, 120)
    c1, d1 = cpu_seconds(srv.proc.pid), udp_drops(srv.port)
    return {"ok": ok, "failed": failed, "secs": round(secs, 2),
            "cpu_us_per_reg": round((c1 - c0) * 1e6 / max(ok, 1), 1), "drops": d1 - d0}


def measure_ramp(srv, args, work, inf, tag):
    steps = []
    lo, hi, step = args.ramp
    rate = lo
    while rate <= hi:
        d0 = udp_drops(srv.port)
        ok, failed, secs = sipp(srv, SCENARIO, inf, rate * args.ramp_seconds, rate, 20000,
                                args.sipp_cpu, work, f"{tag}-r{rate}", 60)
        drops = udp_drops(srv.port) - d0
        steps.append({"rate": rate, "ok": ok, "failed": failed, "drops": drops,
                      "achieved": round(ok / max(secs, 0.001))})
        if failed and not args.full_ramp:
            break
        rate += step
    return steps


def measure_memory(srv, args, work, tag):
    """Bytes per binding at args.users bindings, and RSS after a burst."""
    res = {}
    idle_rss, idle_pss = rss_kib(srv.proc.pid), pss_kib(srv.proc.pid)
    shm0 = srv.shm_used() if srv.kam_ctl else None
    heap0 = srv.heap_allocated()
    inf = sipp_inf(work, args.burst)
    ok, failed, _ = sipp(srv, SCENARIO, inf, args.burst, args.rate, 5000, args.sipp_cpu, work,
                         f"{tag}-burst", 300)
    time.sleep(args.settle)
    res["burst"] = {"ok": ok, "failed": failed, "idle_rss_kib": idle_rss,
                    "rss_after_settle_kib": rss_kib(srv.proc.pid),
                    "rss_growth_mib": round((rss_kib(srv.proc.pid) - idle_rss) / 1024, 1)}
    if heap0 is not None:
        heap_burst = srv.heap_allocated()
        res["burst"]["heap_growth_mib"] = round((heap_burst - heap0) / (1 << 20), 1)
    inf = sipp_inf(work, args.users)
    ok, failed, _ = sipp(srv, SCENARIO, inf, args.users, args.rate, 5000, args.sipp_cpu, work,
                         f"{tag}-users", 900)
    time.sleep(args.settle)
    pss = pss_kib(srv.proc.pid)
    res["bindings"] = {"ok": ok, "failed": failed,
                       "pss_bytes_per_binding": round((pss - idle_pss) * 1024 / max(ok, 1))}
    if heap0 is not None:
        # As for PSS and shm: idle to --users bindings (the burst's users are among them).
        res["bindings"]["heap_bytes_per_binding"] = round((srv.heap_allocated() - heap0) / max(ok, 1))
    if shm0:
        used, real = srv.shm_used()
        res["bindings"]["shm_used_per_binding"] = round((used - shm0[0]) / max(ok, 1))
        res["bindings"]["shm_real_used_per_binding"] = round((real - shm0[1]) / max(ok, 1))
    return res


def measure_flood(srv, args, work, tag):
    """20,000 REGISTERs in 10 s, random users, one source; OPTIONS probes from another."""
    rss0 = rss_kib(srv.proc.pid)
    result = {}

    def flood():
        result["flood"] = sipp(srv, FLOOD_SCENARIO, None, args.flood_count,
                               args.flood_count // 10, 20000, args.sipp_cpu, work,
                               f"{tag}-flood", 60)

    t = threading.Thread(target=flood)
    t.start()
    time.sleep(0.5)
    lat, lost = probe_latencies(srv.port, args.probes, 10.0 / args.probes)
    t.join()
    ok, failed, _ = result["flood"]
    peak = rss_kib(srv.proc.pid)
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None
    return {"flood_answered": ok, "flood_unanswered": failed,
            "rss_growth_mib": round((peak - rss0) / 1024, 1), "probes": args.probes,
            "probe_lost": lost, "probe_p50_ms": q(0.5), "probe_p99_ms": q(0.99),
            "probe_max_ms": round(lat[-1] * 1000, 1) if lat else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=["registrar", "proxy"], default="registrar")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=2000, help="rate of the CPU run (registrations/s)")
    ap.add_argument("--cpu-seconds", type=int, default=10)
    ap.add_argument("--ramp", type=lambda s: tuple(int(x) for x in s.split(":")),
                    default=(2000, 14000, 2000), help="LOW:HIGH:STEP registrations/s")
    ap.add_argument("--ramp-seconds", type=int, default=5)
    ap.add_argument("--full-ramp", action="store_true", help="go on after a failed step")
    ap.add_argument("--no-ramp", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also the memory runs (slow)")
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--burst", type=int, default=10_000)
    ap.add_argument("--settle", type=int, default=40)
    ap.add_argument("--flood", action="store_true", help="also the flood run (siplink only)")
    ap.add_argument("--flood-count", type=int, default=20_000)
    ap.add_argument("--flood-limiters", action="store_true",
                    help="run the flood with the proxy's default limiters on (issue 18)")
    ap.add_argument("--probes", type=int, default=500)
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--sipp-cpu", type=int, default=1)
    ap.add_argument("--siplink-env", action="append", default=[],
                    help="NAME=VALUE for siplink's environment (e.g. worker counts)")
    ap.add_argument("--siplink-arg", action="append", default=[],
                    help="one more argument for the registrar example (repeat), e.g. "
                         "--siplink-arg=--sharing --siplink-arg=reuseport; with --target proxy, "
                         "--sharing and --workers go into the UDP listener's section")
    ap.add_argument("--heap-stats", action="store_true",
                    help="siplink's heap bytes per binding too (registrar example built with "
                         "--features heap-stats)")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args()

    for tool in ("sipp", "kamailio", "kamcmd", "taskset"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            raise SystemExit(f"missing: {tool}")
    binary = os.path.join(EXAMPLES, args.target)
    if not os.path.exists(binary):
        raise SystemExit(f"build it first: cargo build --release --example {args.target}")
    if args.heap_stats and args.target != "registrar":
        raise SystemExit("--heap-stats: the registrar example only")

    work = tempfile.mkdtemp(prefix="siplink-regload-")
    users = max(args.users, args.rate * args.cpu_seconds, args.ramp[1] * args.ramp_seconds)
    users_csv = os.path.join(work, "users.csv")
    with open(users_csv, "w") as f:
        for i in range(1, users + 1):
            f.write(f"user{i},user{i}-pw\n")
    toml_users = "".join(f'[[users]]\nname = "user{i}"\npassword = "user{i}-pw"\n\n'
                         for i in range(1, users + 1)) if args.target == "proxy" else ""
    inf = sipp_inf(work, users)
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    for kv in args.siplink_env:
        k, v = kv.split("=", 1)
        env[k] = v

    rounds = []
    try:
        for r in range(args.rounds):
            rnd = {}
            for name in ("kamailio", "siplink"):
                load = wait_quiet(60, args.max_load)
                counted = load < args.max_load
                srv = start_kamailio(work) if name == "kamailio" else \
                    start_siplink(work, args.target, users_csv, toml_users, env, extra=args.siplink_arg,
                                      heap_stats=args.heap_stats)
                fig = {"load_at_start": load, "counted": counted}
                fig["cpu"] = measure_cpu(srv, args, work, inf, f"{name}{r}-cpu")
                if not args.no_ramp:
                    fig["ramp"] = measure_ramp(srv, args, work, inf, f"{name}{r}-ramp")
                stop(srv.proc)
                if args.memory:
                    srv = start_kamailio(work) if name == "kamailio" else \
                        start_siplink(work, args.target, users_csv, toml_users, env, extra=args.siplink_arg,
                                      heap_stats=args.heap_stats)
                    fig["memory"] = measure_memory(srv, args, work, f"{name}{r}-mem")
                    stop(srv.proc)
                if args.flood and name == "siplink":
                    srv = start_siplink(work, args.target, users_csv, toml_users, env,
                                        limiters=args.flood_limiters)
                    fig["flood"] = measure_flood(srv, args, work, f"{name}{r}-flood")
                    stop(srv.proc)
                rnd[name] = fig
                print(f"round {r + 1} {name}: {json.dumps(fig)}", flush=True)
            if not args.no_ramp:
                set_peaks(rnd)
            rounds.append(rnd)
    finally:
        stop_all()

    counted = counted_rounds(rounds, args.target, args.max_load)
    summary = {}
    for name in ("kamailio", "siplink"):
        s = {"cpu_us_per_reg": median([r[name]["cpu"]["cpu_us_per_reg"] for r in counted]),
             "cpu_failed": sum(r[name]["cpu"]["failed"] for r in counted)}
        if not args.no_ramp:
            s["peak_rate"] = median([r[name]["peak"] for r in counted])
        if args.memory:
            s["pss_bytes_per_binding"] = median([r[name]["memory"]["bindings"]["pss_bytes_per_binding"] for r in counted])
            s["burst_rss_growth_mib"] = median([r[name]["memory"]["burst"]["rss_growth_mib"] for r in counted])
            if name == "siplink" and args.heap_stats:
                s["heap_bytes_per_binding"] = median([r[name]["memory"]["bindings"]["heap_bytes_per_binding"] for r in counted])
                s["burst_heap_growth_mib"] = median([r[name]["memory"]["burst"]["heap_growth_mib"] for r in counted])
            if name == "kamailio":
                s["shm_used_per_binding"] = median([r[name]["memory"]["bindings"]["shm_used_per_binding"] for r in counted])
        summary[name] = s
        print(f"   {name:9} {json.dumps(s)}")
    k, s = summary["kamailio"], summary["siplink"]
    print(f"   CPU per registration siplink/kamailio: {s['cpu_us_per_reg'] / k['cpu_us_per_reg']:.2f} (target <= 0.7)")
    if args.memory and "heap_bytes_per_binding" in s:
        print(f"   heap bytes per binding siplink / Kamailio shm used: {s['heap_bytes_per_binding']} / "
              f"{k['shm_used_per_binding']} (target <= 1.0: {s['heap_bytes_per_binding'] / max(k['shm_used_per_binding'], 1):.2f})")
    if not args.no_ramp and k.get("peak_rate"):
        print(f"   highest rate with 0 failed siplink/kamailio: {(s['peak_rate'] or 0) / k['peak_rate']:.2f} (target >= 0.95)")
    if args.flood:
        for r in counted:
            print(f"   flood: {json.dumps(r['siplink']['flood'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rounds": rounds, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
