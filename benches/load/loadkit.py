"""Shared pieces of the side-by-side load scripts (registrations.py, calls.py): processes
in groups of their own, CPU/memory/drop readings from /proc, the load-average gate,
SIPp runs and the statistics. Run by hand, never in CI; loopback only."""

import os
import signal
import socket
import statistics
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TICK = os.sysconf("SC_CLK_TCK")
# The release examples (`cargo build --release --examples`), under CARGO_TARGET_DIR if set.
EXAMPLES = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                        "release", "examples")
STARTED = []  # process groups to stop on exit


def spawn(cmd, log, **kw):
    """Starts cmd in a process group of its own (stopped by stop_all)."""
    out = open(log, "wb")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, **kw)
    STARTED.append(p)
    return p


def stop(p):
    """TERM to the group, up to 3 s, then KILL."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def stop_all():
    for p in STARTED:
        stop(p)


def free_port():
    """A port free for UDP and TCP on 127.0.0.1 right now."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise SystemExit("no free port")


def tree(pid):
    """pid and every descendant."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def cpu_seconds(pid):
    """utime + stime of the process tree (threads included), in seconds."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def pss_kib(pid):
    """Summed PSS of the process tree (Kamailio's workers share their shm)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def udp_drops(port):
    """Receive drops of every UDP socket bound to 127.0.0.1:port (SO_REUSEPORT: several)."""
    want = f"0100007F:{port:04X}"
    drops = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[1] == want:
                drops += int(cols[-1])
    return drops


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_quiet(limit, max_load):
    """Waits (up to limit s) for the 1-minute load average to fall below max_load."""
    t0 = time.time()
    while loadavg() >= max_load and time.time() - t0 < limit:
        time.sleep(2)
    return loadavg()


def options(local_port, domain, branch):
    """An OPTIONS request from 127.0.0.1:local_port with Call-ID branch@probe."""
    return (f"OPTIONS sip:{domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{domain}>;tag={branch}\r\n"
            f"To: <sip:{domain}>\r\nCall-ID: {branch}@probe\r\nCSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def wait_listening(port, proc, domain, limit=15):
    """Waits until the server answers an OPTIONS on UDP (any status) or TCP accepts."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.3)
    t0 = time.time()
    n = 0
    while time.time() - t0 < limit:
        if proc.poll() is not None:
            return False
        n += 1
        s.sendto(options(s.getsockname()[1], domain, f"probe-{n}"), ("127.0.0.1", port))
        try:
            s.recvfrom(65535)
            return True
        except socket.timeout:
            pass
    return False


def sipp(remote, scenario, args, workdir, tag, timeout_s, cpu=None, transport="u1"):
    """Runs SIPp (pinned to `cpu` with taskset when given) against remote (host:port);
    returns a dict of its final counters and the wall time."""
    d = os.path.join(workdir, f"sipp-{tag}")
    os.makedirs(d, exist_ok=True)
    cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        "sipp", remote, "-i", "127.0.0.1", "-p", str(free_port()), "-t", transport,
        "-timeout", f"{timeout_s}s", "-nostdin", "-trace_stat", "-stf", "stat.csv",
        "-fd", "1", "-max_socket", "4096"]
    cmd += (["-sf", scenario] if scenario.endswith(".xml") else ["-sn", scenario]) + list(args)
    t0 = time.time()
    subprocess.run(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=timeout_s + 30)
    secs = time.time() - t0
    with open(os.path.join(d, "stat.csv")) as f:
        rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    head = rows[0]
    col = lambda row, name: int(row[head.index(name)])
    peak = max((col(r, "CurrentCall") for r in rows[1:]), default=0)
    last = rows[-1]
    os.rename(os.path.join(d, "stat.csv"), os.path.join(d, f"stat-{int(t0)}.csv"))
    return {"ok": col(last, "SuccessfulCall(C)"), "failed": col(last, "FailedCall(C)"),
            "retrans": col(last, "Retransmissions(C)"), "peak_calls": peak,
            "secs": round(secs, 2)}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def peak(steps, other):
    """Highest rate with 0 failed and at least 90 % of it reached (SIPp slowed down by a
    server that falls behind, with retransmissions hiding the losses, is not a pass); a step
    where both servers dropped does not count."""
    both = {s["rate"] for s in steps if s["drops"]} & {s["rate"] for s in other if s["drops"]}
    best = None
    for s in steps:
        if s["failed"] or s.get("achieved", s["rate"]) < 0.9 * s["rate"]:
            break
        if s["rate"] not in both:
            best = s["rate"]
    return best


def set_peaks(rnd):
    """Each server's highest rate with 0 failed, given the other's ramp (shared drops)."""
    rnd["kamailio"]["peak"] = peak(rnd["kamailio"]["ramp"], rnd["siplink"]["ramp"])
    rnd["siplink"]["peak"] = peak(rnd["siplink"]["ramp"], rnd["kamailio"]["ramp"])


def counted_rounds(rounds, title, max_load):
    """The rounds whose every run started below max_load (all of them, marked not
    valid, when none did), after printing how many counted."""
    counted = [r for r in rounds if r["kamailio"]["counted"] and r["siplink"]["counted"]]
    print(f"\n== {title}: {len(counted)} of {len(rounds)} rounds counted "
          f"(load average < {max_load} at each start); medians over them")
    if not counted:
        print("   (no round counted: medians over all rounds, NOT VALID for targets)")
        return rounds
    return counted
