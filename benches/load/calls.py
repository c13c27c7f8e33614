#!/usr/bin/env python3
"""Side-by-side call load: siplink's proxy against Kamailio, run by hand (never in CI).

Issue 16's measuring script. Each round starts Kamailio (tm + rr + the dialog module,
benches/load/kamailio-calls.cfg.in) and siplink's `proxy` example (no authentication,
one trunk to the PBX taking every number) fresh, one after the other (A B A B ...),
with the same SIPp scenario: UAC -> proxy -> UAS (crates/siplink-proxy/tests/load/
uas_answer.xml, which echoes Record-Route), ACK and BYE loose-routed. Per server and
round:

  cpu     CPU per call at --rate (utime+stime of the proxy's process tree over the
          run / successful calls; calls held --hold-ms);
  ramp    the highest rate with 0 failed calls over --ramp (a step where both
          proxies show UDP receive drops does not count toward a peak);
  memory  (with --memory) calls held --memory-hold-ms at --memory-rate:
          (peak PSS - idle PSS) / peak concurrent calls (SIPp's CurrentCall).

Then medians over the rounds that counted (load average below --max-load at each
start) and the ratios. SIPp (UAC and UAS) is pinned to CPU --sipp-cpu.

  cargo build --release --example proxy
  python3 benches/load/calls.py                       # UDP
  python3 benches/load/calls.py --transport tcp --no-ramp
  python3 benches/load/calls.py --siplink-core engine  # the sans-IO engine

--siplink-core chooses siplink's request path ([proxy] core in the generated TOML):
"classic" (the default, a task per call) or "engine" (the sans-IO core on the
run-to-completion runtime, docs/proxy-core.md; over TCP the generated TOML adds a UDP
listener on the same port, whose runtime the engine runs on).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from loadkit import (EXAMPLES, ROOT, counted_rounds, cpu_seconds, free_port, median,  # noqa: E402
                     pss_kib, set_peaks, sipp, spawn, stop, stop_all, udp_drops, wait_quiet)

KAM_CFG = os.path.join(os.path.dirname(__file__), "kamailio-calls.cfg.in")
UAC = os.path.join(os.path.dirname(__file__), "uac_call.xml")
UAS = os.path.join(ROOT, "crates/siplink-proxy/tests/load/uas_answer.xml")


def wait_port(port, proto, proc, limit=30):
    """Waits until something listens on 127.0.0.1:port (from /proc/net, no traffic)."""
    table = "/proc/net/udp" if proto == "udp" else "/proc/net/tcp"
    want = f"0100007F:{port:04X}"
    t0 = time.time()
    while time.time() - t0 < limit:
        if proc.poll() is not None:
            return False
        with open(table) as f:
            if any(line.split()[1] == want for line in list(f)[1:]):
                return True
        time.sleep(0.1)
    return False


def start_uas(work, proto, cpu):
    port = free_port()
    d = os.path.join(work, f"uas-{port}")
    os.makedirs(d)
    cmd = ["taskset", "-c", str(cpu), "sipp", "-sf", UAS, "-i", "127.0.0.1", "-p", str(port),
           "-t", "u1" if proto == "udp" else "t1", "-nostdin", "-max_socket", "4096"]
    proc = spawn(cmd, os.path.join(d, "uas.log"), cwd=d)
    if not wait_port(port, proto, proc):
        raise SystemExit(f"the SIPp UAS did not start: {d}/uas.log")
    return proc, port


def start_kamailio(work, proto, uas, children, cfg_path=KAM_CFG):
    port = free_port()
    d = os.path.join(work, f"kam-{port}")
    os.makedirs(d)
    with open(cfg_path) as f:
        cfg = f.read()
    for k, v in {"@PORT@": port, "@PROTO@": proto, "@CHILDREN@": children, "@RUNDIR@": d,
                 "@UAS@": f"127.0.0.1:{uas};transport={proto}"}.items():
        cfg = cfg.replace(k, str(v))
    with open(os.path.join(d, "kamailio.cfg"), "w") as f:
        f.write(cfg)
    proc = spawn(["kamailio", "-f", os.path.join(d, "kamailio.cfg"), "-DD", "-E", "-P",
                  os.path.join(d, "kamailio.pid"), "-Y", d, "-m", "2048", "-M", "64"],
                 os.path.join(d, "kamailio.log"))
    if not wait_port(port, proto, proc):
        raise SystemExit(f"kamailio did not start: {d}/kamailio.log")
    time.sleep(1)
    return proc, port


def start_siplink(work, proto, uas, env, core="classic"):
    port = free_port()
    d = os.path.join(work, f"siplink-{port}")
    os.makedirs(d)
    toml = os.path.join(d, "proxy.toml")
    # The engine runs on the UDP listener's runtime, which takes the TCP
    # connections' messages too: over TCP it needs a UDP listener beside.
    udp = (f'[[listen]]\ntransport = "udp"\naddress = "127.0.0.1:{port}"\n\n'
           if core == "engine" and proto != "udp" else "")
    with open(toml, "w") as f:
        f.write(f'[proxy]\ndomains = ["siplink.test"]\nauthenticate_calls = false\n'
                f'core = "{core}"\n\n'
                f'[[listen]]\ntransport = "{proto}"\naddress = "127.0.0.1:{port}"\n\n'
                f'{udp}'
                f'[[connections]]\nname = "pbx"\nkind = "trunk"\n'
                f'addresses = ["sip:127.0.0.1:{uas};transport={proto}"]\n'
                f'dial_patterns = ["[0-9]+"]\nprobe = {{ enabled = false }}\n\n'
                f'[limits]\nmax_calls = 1000000\n\n'
                f'[security]\nrate_limit = {{ enabled = false }}\n')
    proc = spawn([os.path.join(EXAMPLES, "proxy"), "--config", toml],
                 os.path.join(d, "siplink.log"), env=env)
    if not wait_port(port, proto, proc, limit=60):
        raise SystemExit(f"siplink did not start: {d}/siplink.log")
    time.sleep(0.5)
    return proc, port


def run_calls(port, args, work, tag, rate, calls, hold_ms, sampler=None):
    transport = "u1" if args.transport == "udp" else "t1"
    sargs = ["-s", "4001", "-m", str(calls), "-r", str(rate), "-l", str(max(rate * 30, 1000)),
             "-d", str(hold_ms)]
    return sipp(f"127.0.0.1:{port}", UAC, sargs, work, tag, 60 + hold_ms // 1000 + calls // max(rate, 1),
                cpu=args.sipp_cpu, transport=transport)


def measure(name, args, work, env):
    uas, uas_port = start_uas(work, args.transport, args.sipp_cpu)
    if name == "kamailio":
        proc, port = start_kamailio(work, args.transport, uas_port, args.children, args.kamailio_cfg)
    else:
        proc, port = start_siplink(work, args.transport, uas_port, env, args.siplink_core)
    fig = {}
    c0, d0 = cpu_seconds(proc.pid), udp_drops(port)
    r = run_calls(port, args, work, f"{name}-cpu", args.rate, args.rate * args.cpu_seconds,
                  args.hold_ms)
    c1, d1 = cpu_seconds(proc.pid), udp_drops(port)
    fig["cpu"] = dict(r, cpu_us_per_call=round((c1 - c0) * 1e6 / max(r["ok"], 1), 1),
                      drops=d1 - d0)
    if not args.no_ramp:
        steps = []
        lo, hi, step = args.ramp
        rate = lo
        while rate <= hi:
            d0 = udp_drops(port)
            r = run_calls(port, args, work, f"{name}-r{rate}", rate, rate * args.ramp_seconds,
                          args.hold_ms)
            steps.append({"rate": rate, "ok": r["ok"], "failed": r["failed"],
                          "retrans": r["retrans"], "drops": udp_drops(port) - d0,
                          "achieved": round(r["ok"] / max(r["secs"], 0.001))})
            if r["failed"] and not args.full_ramp:
                break
            rate += step
        fig["ramp"] = steps
    stop(proc)
    if args.memory:
        if name == "kamailio":
            proc, port = start_kamailio(work, args.transport, uas_port, args.children, args.kamailio_cfg)
        else:
            proc, port = start_siplink(work, args.transport, uas_port, env, args.siplink_core)
        idle = pss_kib(proc.pid)
        top = {"pss": idle}
        import threading
        done = threading.Event()

        def sample():
            while not done.is_set():
                top["pss"] = max(top["pss"], pss_kib(proc.pid))
                time.sleep(0.25)

        t = threading.Thread(target=sample)
        t.start()
        calls = args.memory_rate * args.memory_seconds
        r = run_calls(port, args, work, f"{name}-mem", args.memory_rate, calls,
                      args.memory_hold_ms)
        done.set()
        t.join()
        fig["memory"] = dict(r, idle_pss_kib=idle, peak_pss_kib=top["pss"],
                             kib_per_call=round((top["pss"] - idle) / max(r["peak_calls"], 1), 2))
        stop(proc)
    stop(uas)
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=1000, help="calls/s of the CPU run")
    ap.add_argument("--cpu-seconds", type=int, default=10)
    ap.add_argument("--hold-ms", type=int, default=0, help="call duration in the CPU and ramp runs")
    ap.add_argument("--ramp", type=lambda s: tuple(int(x) for x in s.split(":")),
                    default=(1000, 10000, 1000), help="LOW:HIGH:STEP calls/s")
    ap.add_argument("--ramp-seconds", type=int, default=5)
    ap.add_argument("--full-ramp", action="store_true")
    ap.add_argument("--no-ramp", action="store_true")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--memory-rate", type=int, default=200)
    ap.add_argument("--memory-seconds", type=int, default=10)
    ap.add_argument("--memory-hold-ms", type=int, default=10000)
    ap.add_argument("--children", type=int, default=2, help="Kamailio workers")
    ap.add_argument("--kamailio-cfg", default=KAM_CFG,
                    help="another Kamailio config template with the same @...@ fields")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--sipp-cpu", type=int, default=1)
    ap.add_argument("--siplink-env", action="append", default=[])
    ap.add_argument("--siplink-core", choices=["classic", "engine"], default="classic",
                    help="siplink's request path: [proxy] core in its TOML")
    ap.add_argument("--json")
    args = ap.parse_args()
    for tool in ("sipp", "kamailio", "taskset"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            raise SystemExit(f"missing: {tool}")
    if not os.path.exists(os.path.join(EXAMPLES, "proxy")):
        raise SystemExit("build it first: cargo build --release --example proxy")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    for kv in args.siplink_env:
        k, v = kv.split("=", 1)
        env[k] = v
    work = tempfile.mkdtemp(prefix="siplink-callload-")
    rounds = []
    try:
        for r in range(args.rounds):
            rnd = {}
            for name in ("kamailio", "siplink"):
                load = wait_quiet(60, args.max_load)
                fig = measure(name, args, work, env)
                fig["load_at_start"], fig["counted"] = load, load < args.max_load
                rnd[name] = fig
                print(f"round {r + 1} {name}: {json.dumps(fig)}", flush=True)
            if not args.no_ramp:
                set_peaks(rnd)
            rounds.append(rnd)
    finally:
        stop_all()
    counted = counted_rounds(rounds, f"calls over {args.transport}", args.max_load)
    summary = {}
    for name in ("kamailio", "siplink"):
        s = {"cpu_us_per_call": median([r[name]["cpu"]["cpu_us_per_call"] for r in counted]),
             "cpu_failed": sum(r[name]["cpu"]["failed"] for r in counted)}
        if not args.no_ramp:
            s["peak_rate"] = median([r[name]["peak"] for r in counted])
        if args.memory:
            s["kib_per_call"] = median([r[name]["memory"]["kib_per_call"] for r in counted])
        summary[name] = s
        print(f"   {name:9} {json.dumps(s)}")
    k, s = summary["kamailio"], summary["siplink"]
    print(f"   CPU per call siplink/kamailio at {args.rate}/s: "
          f"{s['cpu_us_per_call'] / max(k['cpu_us_per_call'], 0.001):.2f} (target <= 0.7)")
    if not args.no_ramp and k.get("peak_rate"):
        print(f"   highest rate with 0 failed siplink/kamailio: {(s['peak_rate'] or 0) / k['peak_rate']:.2f} (target >= 0.95)")
    if args.memory:
        print(f"   memory per active call siplink/kamailio: {s['kib_per_call'] / max(k['kib_per_call'], 0.001):.2f} (target <= 1.0)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rounds": rounds, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
