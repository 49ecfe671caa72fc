#!/usr/bin/env python3
"""Benchmarks of mirror-registry-controller against doing the same by hand.

Run on demand through hack/bench/run.sh (not part of the test suite). Needs
the host hack/setup-host.sh prepares (podman API socket, a systemd manager),
a release build, and hack/env.sh sourced. Python standard library only.

Figures (each the median of --runs runs, at least 5):
  1. convergence: spec dropped -> Ready, against hack/bench/baseline.sh doing
     the same steps by hand; alternating runs; the ratio of the medians
  2. no-op reconcile: time, podman API calls, D-Bus calls, file writes,
     restarts, read from the controller's "reconciled" debug lines
  3. idle controller for 60 s with 1 and with 20 registries: CPU and RSS
  4. drift repair: container removed -> serving again, against a plain
     Restart=always unit with the original tool's RestartSec=30
  5. scale: 1, 5 and 20 registries: time to converge all, resync cost
  6. image archive load throughput against `podman load` of the same archive
  7. day two: how long `mrctl gc` keeps a 1 GiB store read-only; backup
     and restore throughput against tar of the same directories

Prints a markdown table and writes docs/benchmarks.md. Everything it makes
is named bench-<pid>-..., and removed at the end (or at the next run, when a
run was killed).
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "target" / "release" / "mirror-registry-controller"
MRCTL = REPO / "target" / "release" / "mrctl"
BASELINE = REPO / "hack" / "bench" / "baseline.sh"
UNIT_DIR = Path.home() / ".config" / "systemd" / "user"
CERTS_D = Path("/etc/containers/certs.d")
PREFIX = f"bench-{os.getpid()}"
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL = 0.02


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- host helpers


def sh(args, check=True, timeout=300, **kw):
    r = subprocess.run(
        [str(a) for a in args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        **kw,
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(port, cafile, host="localhost"):
    """HTTP status of GET /v2/ over TLS verified against cafile, or None."""
    if not os.path.exists(cafile):
        return None
    try:
        ctx = ssl.create_default_context(cafile=cafile)
        with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
            # As curl does: without it, Nagle holds the request behind the
            # handshake's last flight until a delayed ACK (40 ms).
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
                line = s.recv(64).split(b"\r\n", 1)[0].split()
                return int(line[1]) if len(line) > 1 else None
    except (OSError, ssl.SSLError, ValueError):
        return None


def init_credentials(root):
    """(username, password) from a registry's `secrets/init-credentials`."""
    creds = {}
    for line in (root / "secrets" / "init-credentials").read_text().splitlines():
        k, _, v = line.partition(":")
        creds[k.strip()] = v.strip().strip("'\"")
    return creds["username"], creds["password"]


PHASE = re.compile(rb"^status:\n(?:[ \t].*\n)*?  phase: (\w+)", re.M)


def phase_of(spec_path):
    try:
        m = PHASE.search(Path(spec_path).read_bytes())
    except OSError:
        return None
    return m.group(1).decode() if m else None


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime are fields 14 and 15 of stat; index 11, 12 after "(comm)".
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def unit_show(unit, props):
    out = sh(["systemctl", "--user", "show", "-p", ",".join(props), unit], check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def container_started(name):
    r = sh(["podman", "inspect", "--format", "{{.State.StartedAt}}", name], check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------- cleanup

TRACKED = {"names": set(), "ports": set()}


def cleanup(names, ports=()):
    """Removes every unit, container, pod, network, volume and trust entry of names."""
    # Copies: the sets passed may be TRACKED's own, which this empties.
    names = sorted(set(names))
    ports = sorted(set(ports))
    if not names and not ports:
        return
    units = [f"{n}-{u}.service" for n in names for u in ("pod", "registry", "app", "redis")]
    if units:
        sh(["systemctl", "--user", "stop", *units], check=False, timeout=180)
        sh(["systemctl", "--user", "disable", "--quiet", *units], check=False)
        for u in units:
            (UNIT_DIR / u).unlink(missing_ok=True)
        sh(["systemctl", "--user", "daemon-reload"], check=False)
        sh(["systemctl", "--user", "reset-failed", *units], check=False)
        sh(["podman", "rm", "-f", "--ignore", *[f"{n}-{c}" for n in names for c in ("registry", "app", "redis")]],
           check=False)
        sh(["podman", "pod", "rm", "-f", "--ignore", *[f"{n}-pod" for n in names]], check=False)
        have = set(sh(["podman", "volume", "ls", "-q"], check=False).stdout.split())
        vols = [v for n in names for v in (f"{n}-storage", f"{n}-sqlite-storage") if v in have]
        if vols:
            sh(["podman", "volume", "rm", "-f", *vols], check=False)
        nets = set(sh(["podman", "network", "ls", "-q", "--format", "{{.Name}}"], check=False).stdout.split())
        nets = [f"{n}-network" for n in names if f"{n}-network" in nets]
        if nets:
            sh(["podman", "network", "rm", *nets], check=False)
    for p in ports:
        shutil.rmtree(CERTS_D / f"localhost:{p}", ignore_errors=True)
    for n in names:
        TRACKED["names"].discard(n)
    for p in ports:
        TRACKED["ports"].discard(p)


def stale_cleanup():
    """Removes what an earlier, killed run of this harness left behind."""
    pat = re.compile(r"^(bench-(\d+)-[a-z0-9]+)-(?:pod|registry|storage)(?:\.service)?$")
    found = set()
    listing = [p.name for p in UNIT_DIR.glob("bench-*")]
    listing += sh(["podman", "ps", "-a", "--format", "{{.Names}}"], check=False).stdout.split()
    listing += sh(["podman", "pod", "ps", "--format", "{{.Name}}"], check=False).stdout.split()
    listing += sh(["podman", "volume", "ls", "-q"], check=False).stdout.split()
    for item in listing:
        m = pat.match(item)
        if m and not Path(f"/proc/{m.group(2)}").exists():
            found.add(m.group(1))
    if found:
        log(f"removing leftovers of an earlier run: {', '.join(sorted(found))}")
        cleanup(found)
    for d in [*Path("/sys/fs/cgroup").glob("bench-*-client"), *Path("/sys/fs/cgroup/cpu").glob("bench-*-client")]:
        if not Path(f"/proc/{d.name.split('-')[1]}").exists():
            try:
                d.rmdir()  # ClientCgroup's; empty once its clients exited
            except OSError:
                pass


# ---------------------------------------------------------------- the lab


class Lab:
    """Private directories of one harness run."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
        self.n = 0
        self.used_ports = set()

    def name(self, tag):
        self.n += 1
        n = f"{PREFIX}-{tag}{self.n}"
        TRACKED["names"].add(n)
        return n

    def port(self):
        # The kernel may hand out a port again once its probe socket is
        # closed; a run never uses one twice.
        p = free_port()
        while p in self.used_ports:
            p = free_port()
        self.used_ports.add(p)
        TRACKED["ports"].add(p)
        return p

    def fresh(self, what):
        d = self.dir / f"{what}{self.n}-{time.monotonic_ns()}"
        (d / "watch").mkdir(parents=True)
        return d

    def root(self, name):
        return self.dir / "roots" / name

    def spec(self, name, port, extra=""):
        return (
            "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\n"
            f"metadata:\n  name: {name}\nspec:\n  engine: distribution\n"
            f"  hostname: localhost\n  port: {port}\n  root: {self.root(name)}\n{extra}"
        )


def drop(watch, name, text):
    """Places a spec atomically, as mrctl apply or an editor would."""
    tmp = watch / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, watch / f"{name}.yaml")


class Controller:
    """The daemon, as a child process logging JSON to a file."""

    def __init__(self, base, *extra, resync="5m"):
        self.watch = base / "watch"
        self.state = base / "state"
        self.logfile = base / f"controller-{time.monotonic_ns()}.log"
        self.extra = list(extra)
        self.resync = resync
        self.proc = None

    def args(self):
        return [
            BIN, "--watch-dir", self.watch, "--state-dir", self.state, "--scope", "user",
            "--log-format", "json", "--resync-interval", self.resync, *self.extra,
        ]

    def start(self):
        env = dict(os.environ, RUST_LOG="info,mirror_registry=debug")
        self.fh = open(self.logfile, "w")
        self.proc = subprocess.Popen([str(a) for a in self.args()], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.fh)
        deadline = time.monotonic() + 30
        while not any(m == "watching for MirrorRegistry specs" for m, _ in self.messages()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited: {self.logfile.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("controller did not start watching in 30 s")
            time.sleep(0.01)
        return self

    def lines(self):
        return parse_log(self.logfile.read_text(errors="replace"))

    def messages(self):
        return [(line["fields"].get("message"), line) for line in self.lines()]

    def reconciled(self):
        return [line["fields"] for line in self.lines() if line["fields"].get("message") == "reconciled"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.fh.close()
        self.proc = None

    def once(self, timeout="120s"):
        env = dict(os.environ, RUST_LOG="info,mirror_registry=debug")
        t0 = time.monotonic()
        r = subprocess.run([str(a) for a in self.args()] + ["--once", "--once-timeout", timeout],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return time.monotonic() - t0, r.returncode, parse_log(r.stderr)


def parse_log(text):
    out = []
    for raw in text.splitlines():
        try:
            j = json.loads(raw)
        except ValueError:
            continue
        j.setdefault("fields", {})
        out.append(j)
    return out


def ts(line):
    return datetime.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)


def render(lab, name, port, base):
    spec = base / f"{name}.spec.yaml"
    spec.write_text(lab.spec(name, port))
    out = base / f"{name}.rendered"
    out.write_text(sh([MRCTL, "--scope", "user", "render", "-f", spec]).stdout)
    return out


def run_baseline(lab, name, port, rendered, restart_sec=None):
    env = dict(os.environ, NAME=name, PORT=str(port), ROOT=str(lab.root(name)),
               RENDERED=str(rendered), HOST="localhost")
    if restart_sec is not None:
        env["RESTART_SEC"] = str(restart_sec)
    sh(["bash", BASELINE], env=env)


# ---------------------------------------------------------------- figures


class Results:
    def __init__(self):
        self.rows = []  # dicts: section, figure, samples, unit, target, ok (None: no target), fmt

        self.notes = {}

    def add(self, section, figure, samples, unit, target="", ok=None, fmt="{:.2f}"):
        self.rows.append(dict(section=section, figure=figure, samples=list(samples), unit=unit,
                              target=target, ok=ok, fmt=fmt))
        if samples:
            log(f"  {figure}: median {fmt.format(median(samples))} {unit} "
                f"(min {fmt.format(min(samples))}, max {fmt.format(max(samples))}, n={len(samples)})"
                + (f"  target {target}: {'pass' if ok else 'MISS'}" if target else ""))


CONV_DETAIL = []


def converge_controller_once(lab, res_times, res_401, extra=""):
    """One controller run: fresh daemon on an empty dir, drop one spec
    (with `extra` spec lines)."""
    base = lab.fresh("conv")
    name, port = lab.name("c"), lab.port()
    ctl = Controller(base).start()
    ca = str(lab.root(name) / "tls" / "ca.crt")
    spec = base / "watch" / f"{name}.yaml"
    try:
        t0, wall0 = time.monotonic(), time.time()
        drop(base / "watch", name, lab.spec(name, port, extra))
        t401 = tready = None
        while t401 is None or tready is None:
            now = time.monotonic()
            if now - t0 > 120:
                raise RuntimeError(f"{name} not Ready in 120 s: {ctl.logfile}")
            if t401 is None and probe(port, ca) == 401:
                t401 = time.monotonic() - t0
            if tready is None and phase_of(spec) == "Ready":
                tready = time.monotonic() - t0
            time.sleep(POLL)
        res_401.append(t401)
        res_times.append(max(t401, tready))
        time.sleep(0.3)
        rec = [line for line in ctl.lines() if line["fields"].get("message") == "reconciled"]
        if rec:
            first = rec[0]
            d = int(first["fields"]["duration_us"]) / 1e6
            CONV_DETAIL.append(dict(
                drop_to_reconcile_start=ts(first) - d - wall0,
                first_reconcile=d,
                reconciles_to_ready=len(rec),
                first_calls=(first["fields"]["podman_calls"], first["fields"]["dbus_calls"],
                             first["fields"]["writes"]),
            ))
        return ctl, name, port
    except BaseException:
        ctl.stop()
        cleanup([name], [port])
        raise


def converge_baseline_once(lab, restart_sec=None):
    base = lab.fresh("base")
    name, port = lab.name("b"), lab.port()
    rendered = render(lab, name, port, base)
    ca = str(lab.root(name) / "tls" / "ca.crt")
    t0 = time.monotonic()
    run_baseline(lab, name, port, rendered, restart_sec)
    wait_until(lambda: probe(port, ca) == 401, 120, f"{name} to serve")
    return time.monotonic() - t0, name, port


def fig_convergence(lab, R, runs, scale1):
    log("1. convergence: controller vs baseline.sh, alternating")
    ctl_t, ctl_401, base_t = [], [], []
    for i in range(runs):
        ctl, name, port = converge_controller_once(lab, ctl_t, ctl_401)
        ctl.stop()
        cleanup([name], [port])
        t, bname, bport = converge_baseline_once(lab)
        base_t.append(t)
        cleanup([bname], [bport])
        log(f"  run {i + 1}: controller {ctl_t[-1]:.2f} s (401 at {ctl_401[-1]:.2f} s), baseline {t:.2f} s")
    ratio = median(ctl_t) / median(base_t)
    R.add("Convergence", "controller: spec dropped → Ready (and /v2/ 401)", ctl_t, "s")
    R.add("Convergence", "controller: spec dropped → /v2/ first 401", ctl_401, "s")
    R.add("Convergence", "baseline.sh: same steps by hand → /v2/ first 401", base_t, "s")
    ratios = [c / b for c, b in zip(ctl_t, base_t)]
    R.rows.append(dict(section="Convergence", figure="ratio controller / baseline (of medians; min/max per pair)",
                       samples=ratios, unit="×", target="≤ 0.80", ok=ratio <= 0.80, fmt="{:.2f}",
                       value=ratio))
    log(f"  ratio {ratio:.2f} (target ≤ 0.80: {'pass' if ratio <= 0.80 else 'MISS'})")
    if CONV_DETAIL:
        R.notes["convergence"] = dict(
            drop_to_reconcile_start_s=median([d["drop_to_reconcile_start"] for d in CONV_DETAIL]),
            first_reconcile_s=median([d["first_reconcile"] for d in CONV_DETAIL]),
            reconciles_to_ready=[d["reconciles_to_ready"] for d in CONV_DETAIL],
            first_reconcile_podman_dbus_writes=CONV_DETAIL[0]["first_calls"],
        )
    scale1.extend(ctl_t)


def converge_set(lab, n, tag):
    """Fresh daemon, n specs dropped at once; returns (seconds, ctl, names, ports, base)."""
    base = lab.fresh(f"scale{n}-")
    names = [lab.name(tag) for _ in range(n)]
    ports = [lab.port() for _ in range(n)]
    ctl = Controller(base).start()
    try:
        t0 = time.monotonic()
        for name, port in zip(names, ports):
            drop(base / "watch", name, lab.spec(name, port))
        pending = set(names)
        while pending:
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"not Ready in 300 s: {sorted(pending)}; {ctl.logfile}")
            for nm in list(pending):
                if phase_of(base / "watch" / f"{nm}.yaml") == "Ready":
                    pending.discard(nm)
            time.sleep(0.05)
        return time.monotonic() - t0, ctl, names, ports, base
    except BaseException:
        ctl.stop()
        cleanup(names, ports)
        raise


def fig_noop(lab, R, base, name, runs):
    log("2. no-op reconcile: daemon with --resync-interval 1s on a converged registry")
    spec = base / "watch" / f"{name}.yaml"
    mtime = spec.stat().st_mtime_ns
    started = container_started(f"{name}-registry")
    props = ["NRestarts", "ActiveEnterTimestampMonotonic"]
    units_before = {u: unit_show(u, props) for u in (f"{name}-pod.service", f"{name}-registry.service")}
    ctl = Controller(base, resync="1s").start()
    try:
        # The first reconcile connects the clients; the resync ones after it
        # are the steady state.
        wait_until(lambda: len(ctl.reconciled()) >= runs + 2, 60 + runs * 2, "no-op reconciles")
    finally:
        ctl.stop()
    rec = ctl.reconciled()[1:]
    units_after = {u: unit_show(u, props) for u in units_before}
    restarts = sum(int(units_after[u].get("NRestarts", 0)) - int(units_before[u].get("NRestarts", 0))
                   for u in units_before)
    restarts += sum(units_after[u].get("ActiveEnterTimestampMonotonic") != units_before[u].get("ActiveEnterTimestampMonotonic")
                    for u in units_before)
    restarts += container_started(f"{name}-registry") != started
    status_written = spec.stat().st_mtime_ns != mtime
    dur = [int(r["duration_us"]) / 1000 for r in rec]
    R.add("No-op reconcile", "duration", dur, "ms", "≤ 10 ms", median(dur) <= 10)
    R.add("No-op reconcile", "podman API calls", [int(r["podman_calls"]) for r in rec], "", fmt="{:.0f}")
    R.add("No-op reconcile", "D-Bus calls", [int(r["dbus_calls"]) for r in rec], "", fmt="{:.0f}")
    writes = [int(r["writes"]) for r in rec]
    R.add("No-op reconcile", "file writes", writes, "", "0", max(writes) == 0, fmt="{:.0f}")
    R.add("No-op reconcile", "restarts (units, container) and status writes",
          [restarts + int(status_written)], "", "0", restarts == 0 and not status_written, fmt="{:.0f}")
    R.notes["noop_next"] = sorted({r["next"] for r in rec})


def fig_idle(lab, R, base, names, seconds, label):
    log(f"3. idle: {len(names)} registr{'y' if len(names) == 1 else 'ies'}, {seconds} s")
    ctl = Controller(base).start()
    try:
        wait_until(lambda: len({r["registry"] for r in ctl.reconciled()}) >= len(names), 120,
                   "the startup reconciles")
        time.sleep(2)
        pid = ctl.proc.pid
        n_lines = len(ctl.lines())
        # One 60 s window, read as 5 consecutive sub-windows so the share
        # has a median like every other figure.
        parts = 5
        cpu, wall, rss = [proc_cpu_s(pid)], [time.monotonic()], []
        for _ in range(parts):
            time.sleep(seconds / parts)
            cpu.append(proc_cpu_s(pid))
            wall.append(time.monotonic())
            rss.append(proc_status_kb(pid, "VmRSS") / 1024)
        hwm = proc_status_kb(pid, "VmHWM") / 1024
        threads = proc_status_kb(pid, "Threads")
    finally:
        ctl.stop()
    during = ctl.lines()[n_lines:]
    kinds = {}
    for line in during:
        m = line["fields"].get("message", "?")
        kinds[m] = kinds.get(m, 0) + 1
    total = cpu[-1] - cpu[0]
    shares = [(cpu[i + 1] - cpu[i]) / (wall[i + 1] - wall[i]) * 100 for i in range(parts)]
    R.add("Idle", f"{label}: CPU seconds over the whole {seconds} s", [total], "s", fmt="{:.2f}")
    R.add("Idle", f"{label}: CPU share of one core ({parts} windows of {seconds // parts} s; "
          f"{total / (wall[-1] - wall[0]) * 100:.3f} % over all)", shares, "%", "< 0.2 %", median(shares) < 0.2,
          fmt="{:.3f}")
    R.add("Idle", f"{label}: RSS (VmRSS at the end of each window; peak VmHWM {hwm:.1f} MB)", rss, "MB",
          "< 20 MB", max(rss) < 20, fmt="{:.1f}")
    R.notes[f"idle_{label}"] = dict(log_lines=kinds, threads=threads, cpu_ticks=round(total * CLK_TCK))


def fig_drift(lab, R, base, name, port, runs):
    log("4. drift repair with the controller: podman rm -f the container")
    ca = str(lab.root(name) / "tls" / "ca.crt")
    spec = base / "watch" / f"{name}.yaml"
    ctl = Controller(base).start()
    rows = {}
    try:
        wait_until(lambda: ctl.reconciled(), 60, "the startup reconcile")
        # Spaced: each removal comes after systemd's default start-limit
        # interval (10 s) since the last repair, the common case. Back to
        # back: 1 s after the previous repair is Ready again, as in a crash
        # loop.
        for mode, gap in (("spaced", 11), ("back to back", 1)):
            times = []
            for i in range(runs):
                time.sleep(gap if i or mode == "spaced" else 1)
                t_rm = time.monotonic()
                sh(["podman", "rm", "-f", f"{name}-registry"])
                t0 = time.monotonic()
                R.notes.setdefault("drift_rm", []).append(t0 - t_rm)
                # Removal is done when rm returns; serving again means a new
                # container answers.
                wait_until(lambda: probe(port, ca) == 401, 120, f"{name} to serve again")
                times.append(time.monotonic() - t0)
                wait_until(lambda: phase_of(spec) == "Ready", 60, "Ready again")
                log(f"  {mode} run {i + 1}: serving again after {times[-1]:.2f} s")
            rows[mode] = times
        lines = ctl.lines()
    finally:
        ctl.stop()
    t = rows["spaced"]
    R.add("Drift repair", "controller: container removed → serving again", t, "s", "< 1 s", median(t) < 1)
    t = rows["back to back"]
    R.add("Drift repair", "controller, back to back (removed 1 s after the last repair)", t, "s", "< 1 s",
          median(t) < 1)
    rec = [r["fields"] for r in lines if r["fields"].get("message") == "reconciled"][1:]
    errors = {}
    for r in lines:
        if r["fields"].get("message") == "reconcile failed; backing off":
            e = r["fields"].get("error", "?")
            errors[e] = errors.get(e, 0) + 1
    R.add("Drift repair", "controller: failed reconciles during all removals above", [sum(errors.values())], "",
          fmt="{:.0f}")
    R.notes["drift"] = dict(
        reconciles=len(rec),
        failed=sum(errors.values()),
        errors=errors,
        slowest_reconcile_ms=max((int(r["duration_us"]) for r in rec), default=0) / 1000,
        unit_events=sum(r["fields"].get("message") == "unit changed" for r in lines),
        container_events=sum(r["fields"].get("message") == "container changed" for r in lines),
    )


def fig_drift_baseline(lab, R, runs):
    log(f"4. drift baseline: {runs} registries, plain units with RestartSec=30, no controller")
    made = []
    try:
        for _ in range(runs):
            _, name, port = converge_baseline_once(lab, restart_sec=30)
            made.append((name, port))
        times = [None] * runs

        def one(i, name, port):
            ca = str(lab.root(name) / "tls" / "ca.crt")
            sh(["podman", "rm", "-f", f"{name}-registry"])
            t0 = time.monotonic()
            wait_until(lambda: probe(port, ca) == 401, 120, f"{name} to serve again")
            times[i] = time.monotonic() - t0

        # The same removal, on all at once: the 30 s wait dominates, and
        # they need not be run one after another.
        threads = [threading.Thread(target=one, args=(i, n, p)) for i, (n, p) in enumerate(made)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        for t in threads:
            t.join()
        if any(t is None for t in times):
            raise RuntimeError("a drift baseline run failed")
    finally:
        cleanup([n for n, _ in made], [p for _, p in made])
    R.add("Drift repair", "baseline: Restart=always, RestartSec=30 → serving again", times, "s")


def fig_scale(lab, R, runs, n, keep_last, scale_samples=None):
    log(f"5. scale: {n} registries dropped at once")
    samples = list(scale_samples or [])
    kept = None
    i = 0
    while len(samples) < runs or (keep_last and kept is None):
        i += 1
        t, ctl, names, ports, base = converge_set(lab, n, f"s{n}x")
        ctl.stop()
        samples.append(t)
        log(f"  run {i}: all {n} Ready in {t:.2f} s")
        if keep_last and len(samples) >= runs:
            kept = (names, ports, base)
        else:
            cleanup(names, ports)
    R.add("Scale", f"{n} registr{'y' if n == 1 else 'ies'}: dropped at once → all Ready", samples, "s")
    return kept


def fig_resync(lab, R, runs, n, base, names):
    """Resync cost over n converged registries: a cold --once, and the
    daemon's own periodic passes (clients connected)."""
    ctl = Controller(base)
    walls = []
    for _ in range(runs):
        wall, rc, lines = ctl.once()
        rec = [line for line in lines if line["fields"].get("message") == "reconciled"]
        if rc != 0 or len(rec) < len(names):
            raise RuntimeError(f"--once over converged registries: exit {rc}, {len(rec)} reconciles")
        walls.append(wall)
    interval = 2.0
    ctl = Controller(base, resync=f"{interval:.0f}s").start()
    try:
        def passes():
            rec = sorted(((ts(line) - int(line["fields"]["duration_us"]) / 1e6, ts(line), line["fields"])
                          for line in ctl.lines() if line["fields"].get("message") == "reconciled"),
                         key=lambda x: x[0])
            out = []
            for start, end, f in rec:
                if out and start - out[-1][0][0] < interval / 2:
                    out[-1].append((start, end, f))
                else:
                    out.append([(start, end, f)])
            # The first pass connects the clients; a pass is complete once
            # every registry is in it.
            return [p for p in out[1:] if len(p) >= len(names)]
        wait_until(lambda: len(passes()) >= runs, 60 + runs * interval * 2, "resync passes")
    finally:
        ctl.stop()
    ps = passes()[:max(runs, len(passes()))]
    span = [(max(e for _, e, _ in p) - min(s for s, _, _ in p)) * 1000 for p in ps]
    total = [sum(int(f["duration_us"]) for _, _, f in p) / 1000 for p in ps]
    R.add("Scale", f"{n}: resync pass of the running daemon, first start → last end", span, "ms", fmt="{:.1f}")
    R.add("Scale", f"{n}: resync pass, sum of reconcile durations", total, "ms", fmt="{:.1f}")
    R.add("Scale", f"{n}: resync from cold, wall time of `--once` (process start, connect)", walls, "s")


def fig_archive(lab, R, runs, blob_mb):
    log(f"6. image archive load: controller vs podman load ({blob_mb} MiB unique layer)")
    image = f"localhost/{PREFIX}-archive:1"
    ctx = lab.dir / "archive-ctx"
    ctx.mkdir()
    with open(ctx / "blob", "wb") as f:
        for _ in range(blob_mb):
            f.write(os.urandom(1 << 20))
    (ctx / "Containerfile").write_text("FROM docker.io/library/registry:2\nCOPY blob /bench-blob\n")
    sh(["podman", "build", "--pull=never", "-q", "-t", image, ctx])
    tar = lab.dir / "archive.tar"
    sh(["podman", "save", "--format", "docker-archive", "-o", tar, image])
    (ctx / "blob").unlink()
    size_mb = tar.stat().st_size / 1e6
    ctl_s, load_s = [], []
    try:
        for i in range(runs):
            sh(["podman", "rmi", "-f", image])
            base = lab.fresh("arch")
            name, port = lab.name("a"), lab.port()
            drop(base / "watch", name, lab.spec(
                name, port, f"  images:\n    registry: {image}\n    archive: {tar}\n"))
            ctl = Controller(base)
            try:
                _, rc, lines = ctl.once("120s")
                msgs = [(line["fields"].get("message"), line) for line in lines]
                start = next(i for i, (m, _) in enumerate(msgs) if m == "loading image archive")
                # The next line is the volume creation right after the load
                # (one volume inspect and create apart).
                end = next(line for m, line in msgs[start + 1:] if m == "created volume")
                ctl_s.append(ts(end) - ts(msgs[start][1]))
                if rc != 0:
                    raise RuntimeError(f"archive run not Ready (exit {rc})")
            finally:
                cleanup([name], [port])
            sh(["podman", "rmi", "-f", image])
            t0 = time.monotonic()
            sh(["podman", "load", "-q", "-i", tar])
            load_s.append(time.monotonic() - t0)
            log(f"  run {i + 1}: controller {ctl_s[-1]:.2f} s, podman load {load_s[-1]:.2f} s")
    finally:
        sh(["podman", "rmi", "-f", image], check=False)
    R.add("Image archive", f"controller: load of a {size_mb:.0f} MB archive", [size_mb / s for s in ctl_s], "MB/s",
          fmt="{:.0f}")
    R.add("Image archive", "podman load -i of the same archive", [size_mb / s for s in load_s], "MB/s",
          fmt="{:.0f}")
    R.notes["archive"] = dict(size_mb=size_mb, controller_s=median(ctl_s), podman_s=median(load_s))


# ------------------------------------------------------------------ report


def fig_auth(lab, R, runs, requests=200):
    """Authenticated against unauthenticated GET /v2/, interleaved on two
    keep-alive TLS connections to the same registry, so only the request
    itself is timed (the htpasswd check), not TLS handshakes."""
    import base64
    import http.client
    ctl, name, port = converge_controller_once(lab, [], [])
    try:
        token = base64.b64encode(":".join(init_credentials(lab.root(name))).encode()).decode()
        ctx = ssl.create_default_context(cafile=str(lab.root(name) / "tls" / "ca.crt"))
        auth_ms, anon_ms, diffs = [], [], []
        for _ in range(runs):
            conns = {k: http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10) for k in ("a", "n")}
            series = {"a": [], "n": []}
            for i in range(requests):
                for k in ("a", "n") if i % 2 == 0 else ("n", "a"):
                    headers = {"Authorization": f"Basic {token}"} if k == "a" else {}
                    t0 = time.perf_counter()
                    conns[k].request("GET", "/v2/", headers=headers)
                    r = conns[k].getresponse()
                    r.read()
                    series[k].append((time.perf_counter() - t0) * 1000)
                    want = 200 if k == "a" else 401
                    if r.status != want:
                        raise RuntimeError(f"GET /v2/ ({'with' if k == 'a' else 'without'} credentials) answered {r.status}")
            for c in conns.values():
                c.close()
            a, n = median(series["a"]), median(series["n"])
            auth_ms.append(a)
            anon_ms.append(n)
            diffs.append(a - n)
        R.add("Data plane", f"authenticated GET /v2/ (median of {requests} per run)", auth_ms, "ms")
        R.add("Data plane", f"unauthenticated GET /v2/, same run (median of {requests})", anon_ms, "ms")
        R.add("Data plane", "authenticated minus unauthenticated", diffs, "ms",
              target="<= 2 ms", ok=median(diffs) <= 2.0)
    finally:
        ctl.stop()
        cleanup([name], [port])


def _blob(layout, data):
    import hashlib
    d = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / d
    if not path.exists():
        path.write_bytes(data)
    return {"digest": f"sha256:{d}", "size": len(data)}


def _layer(nbytes, seed):
    """An uncompressed tar layer holding one file of random bytes."""
    import io
    import tarfile
    buf = io.BytesIO()
    data = os.urandom(nbytes)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(f"data/{seed}")
        info.size = len(data)
        info.mtime = 0
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_layout(layout, images):
    """Writes an OCI image layout: images maps a tag to a list of layer
    tar bytes (or callables making them, so a large image is never held in
    memory whole). Returns the total bytes of the layers per tag."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index, sizes = [], {}
    for tag, layers in images.items():
        descs = []
        for make in layers:
            data = make() if callable(make) else make
            descs.append(dict(mediaType="application/vnd.oci.image.layer.v1.tar", **_blob(layout, data)))
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
        }).encode()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **_blob(layout, config)),
            "layers": descs,
        }).encode()
        index.append(dict(mediaType="application/vnd.oci.image.manifest.v1+json", **_blob(layout, manifest),
                          annotations={"org.opencontainers.image.ref.name": tag}))
        sizes[tag] = sum(d["size"] for d in descs)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": index}))
    return sizes


class BareRegistry:
    """The same registry binary, started by hand on the host network with
    the same TLS pair and an htpasswd of cost 5: what a user would run
    without us."""

    def __init__(self, base, tls_dir, user, password, data=None):
        self.dir = base / "bare"
        self.port = free_port()
        self.dir.mkdir(parents=True)
        self.data = data or self.dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        ht = sh(["htpasswd", "-nbB", "-C", "5", user, password]).stdout.strip()
        (self.dir / "htpasswd").write_text(ht + "\n")
        (self.dir / "config.yml").write_text(f"""version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: {self.data}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{self.port}
  tls: {{certificate: {tls_dir / 'tls.crt'}, key: {tls_dir / 'tls.key'}}}
auth:
  htpasswd: {{realm: bare, path: {self.dir / 'htpasswd'}}}
""")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "w"))
        wait_until(lambda: probe(self.port, str(tls_dir / "ca.crt")) == 401, 30, "the bare registry")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ClientCgroup:
    """A CPU cgroup of its own for the client (skopeo), as a client run in
    another login session or on another host has. Left in the harness's
    cgroup, it shared one scheduling group with the bare binary (started by
    the harness too) and with nothing of ours: group scheduling then hands
    the bare binary ~7% more speed on two CPUs (measured: the same binary
    moved into a cgroup of its own loses it), which is a fact about where
    the client runs, not about either registry. Without a writable CPU
    controller the client runs where the harness does, and says so."""

    def __init__(self):
        self.dir = None
        if Path("/sys/fs/cgroup/cgroup.controllers").exists():
            root = Path("/sys/fs/cgroup")  # unified hierarchy
            if "cpu" not in (root / "cgroup.subtree_control").read_text().split():
                log("  the cpu controller is not enabled below the root cgroup: the client shares the harness's cgroup")
                return
        elif Path("/sys/fs/cgroup/cpu").is_dir():
            root = Path("/sys/fs/cgroup/cpu")
        else:
            log("  no cpu cgroup controller: the client shares the harness's cgroup")
            return
        d = root / f"{PREFIX}-client"
        try:
            d.mkdir()
            self.dir = d
        except OSError as e:
            log(f"  cannot make {d} ({e}): the client shares the harness's cgroup")

    def wrap(self, cmd):
        """cmd, run from a shell that first moves itself into the cgroup."""
        if self.dir is None:
            return cmd
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', self.dir / "cgroup.procs", *cmd]

    def remove(self):
        if self.dir is not None:
            try:
                self.dir.rmdir()
            except OSError as e:
                log(f"  could not remove {self.dir}: {e}")


def fig_throughput(lab, R, runs, big_mb=1024, big_layers=50, small=300, small_parallel=8):
    """Push and pull against our registry and, in the same run, the bare
    binary: (a) one image of big_mb in big_layers layers, pushed and pulled
    back by skopeo (which copies up to 6 layers at once; skopeo 1.9 cannot
    be told 8); (b) `small` images of ~3 MB (a shared 2 MB base and a
    unique 1 MB layer, like an operator catalog) pushed small_parallel at a
    time. Fresh random layers every run, so no push is deduplicated.

    Both registries' stores, the source layout and the pulled copy live on
    one tmpfs, emptied after each run: on a disk, its throttling and the
    kernel's proactive reclaim (which evicts just-written, clean pages, so
    a pull reads them back from the disk) moved whole runs by 3x for both
    targets alike, and decided the ratio. This compares the paths the bytes
    take through each registry, not the disk they end on. The client runs
    in a CPU cgroup of its own (ClientCgroup says why)."""
    from concurrent.futures import ThreadPoolExecutor
    base = lab.fresh("tp")
    mem = base / "mem"
    mem.mkdir()
    # A run holds one layout (~1.3 GiB) and what both registries stored.
    sh(["mount", "-t", "tmpfs", "-o", "size=8g,mode=0700", "tmpfs", mem])
    stores = {"ours": mem / "ours", "bare": mem / "bare"}
    ctl = bare = None
    client = ClientCgroup()
    try:
        ctl, name, port = converge_controller_once(lab, [], [], f"  storage:\n    path: {stores['ours']}\n")
        user, pw = init_credentials(lab.root(name))
        tls_dir = lab.root(name) / "tls"
        certs = base / "certs"
        certs.mkdir()
        shutil.copy(tls_dir / "ca.crt", certs / "ca.crt")
        bare = BareRegistry(base, tls_dir, user, pw, stores["bare"])
        targets = {"ours": port, "bare": bare.port}
        ratios = {"big push": [], "big pull": [], "small push": []}
        secs = {k: {t: [] for t in targets} for k in ratios}
        cred = ["--dest-creds", f"{user}:{pw}", "--dest-cert-dir", str(certs)]
        for run in range(runs):
            layout = mem / f"layout{run}"
            shared = _layer(2 << 20, f"base{run}")
            imgs = {"big": [(lambda i=i: _layer((big_mb << 20) // big_layers, f"big{run}-{i}")) for i in range(big_layers)]}
            for i in range(small):
                imgs[f"s{i}"] = [shared, _layer(1 << 20, f"s{run}-{i}")]
            sizes = oci_layout(layout, imgs)
            # Alternate which goes first, so a machine that gets busier or
            # quieter during a run favours neither.
            order = list(targets.items()) if run % 2 == 0 else list(targets.items())[::-1]
            for t, p in order:
                dest = f"docker://localhost:{p}/bench/big:{run}"
                t0 = time.monotonic()
                sh(client.wrap(["skopeo", "--command-timeout", "600s", "copy", "--quiet", *cred, f"oci:{layout}:big", dest]),
                   timeout=900)
                secs["big push"][t].append(time.monotonic() - t0)
                out = mem / f"pulled-{t}-{run}"
                t0 = time.monotonic()
                sh(client.wrap(["skopeo", "--command-timeout", "600s", "copy", "--quiet", "--src-creds", f"{user}:{pw}",
                                "--src-cert-dir", str(certs), dest, f"dir:{out}"]), timeout=900)
                secs["big pull"][t].append(time.monotonic() - t0)
                shutil.rmtree(out, ignore_errors=True)

                def push(i, p=p):
                    sh(client.wrap(["skopeo", "--command-timeout", "300s", "copy", "--quiet", *cred, f"oci:{layout}:s{i}",
                                    f"docker://localhost:{p}/bench/small{i}:{run}"]), timeout=600)
                t0 = time.monotonic()
                with ThreadPoolExecutor(small_parallel) as ex:
                    list(ex.map(push, range(small)))
                secs["small push"][t].append(time.monotonic() - t0)
            for k in ratios:
                ratios[k].append(secs[k]["bare"][-1] / secs[k]["ours"][-1])
            shutil.rmtree(layout, ignore_errors=True)
            # Empty both stores under the running registries: the next run's
            # layers are new digests, so nothing cached points at them.
            for st in stores.values():
                shutil.rmtree(st / "docker", ignore_errors=True)
            log(f"  throughput run {run + 1}: " + ", ".join(
                f"{k} ours {secs[k]['ours'][-1]:.1f} s / bare {secs[k]['bare'][-1]:.1f} s" for k in ratios))
        mb = sizes["big"] / 2**20
        for k, what in (("big push", f"push {mb:.0f} MiB image, {big_layers} layers"),
                        ("big pull", f"pull it back ({mb:.0f} MiB)"),
                        ("small push", f"push {small} small images, {small_parallel} at a time")):
            R.add("Data plane", f"{what}: ours", secs[k]["ours"], "s")
            R.add("Data plane", f"{what}: bare registry binary, same run", secs[k]["bare"], "s")
            R.add("Data plane", f"{what}: ours against bare (speed ratio)", ratios[k], "x",
                  target=">= 0.95", ok=median(ratios[k]) >= 0.95)
    finally:
        if bare:
            bare.stop()
        if ctl:
            ctl.stop()
            cleanup([name], [port])
        sh(["umount", mem], check=False)
        shutil.rmtree(base, ignore_errors=True)
        client.remove()



# ---------------------------------------------------------------- day two


def fig_day2(lab, R, runs, store_mb=1024, layers=32, garbage_mb=64):
    """Day two on a store of store_mb: (a) `mrctl gc` of garbage_mb made
    collectable each run (a fresh image pushed, its manifest deleted): how
    long pushes are refused (the report's read-only window), the command's
    wall time, and how long /v2/ did not answer at all (the registry's two
    restarts), probed every 20 ms; (b) `mrctl backup` against `tar -cf` of
    the same root and storage directories; (c) `mrctl restore` (on an empty
    watch and state directory, as on another host: it reads the file twice,
    checking it before writing) against `tar -xf` of tar's own file."""
    base = lab.fresh("d2")
    name, port = lab.name("g"), lab.port()
    root = Path("/var/lib/mirror-registry") / name
    ctl = Controller(base).start()
    spec_path = base / "watch" / f"{name}.yaml"
    made = [root]
    restored = []
    try:
        # The default root (per name), so a restore under another name has its own.
        drop(base / "watch", name, lab.spec(name, port).replace(f"  root: {lab.root(name)}\n", ""))
        wait_until(lambda: phase_of(spec_path) == "Ready", 120, f"{name} Ready")
        user, pw = init_credentials(root)
        ca = str(root / "tls" / "ca.crt")
        certs = base / "certs"
        certs.mkdir()
        shutil.copy(ca, certs / "ca.crt")
        cred = ["--dest-creds", f"{user}:{pw}", "--dest-cert-dir", str(certs)]
        layout = base / "layout"
        oci_layout(layout, {"store": [(lambda i=i: _layer((store_mb << 20) // layers, f"store{i}")) for i in range(layers)]})
        sh(["skopeo", "--command-timeout", "900s", "copy", "--quiet", *cred, f"oci:{layout}:store",
            f"docker://localhost:{port}/bench/store:1"], timeout=1200)
        shutil.rmtree(layout, ignore_errors=True)
        g = ["--watch-dir", str(base / "watch"), "--state-dir", str(base / "state"), "--scope", "user"]
        storage = Path(sh(["podman", "volume", "inspect", "--format", "{{.Mountpoint}}", f"{name}-storage"]).stdout.strip())
        ro, wall, down = [], [], []
        for run in range(runs):
            lay = base / f"garbage{run}"
            oci_layout(lay, {"g": [(lambda i=i: _layer((garbage_mb << 20) // 4, f"g{run}-{i}")) for i in range(4)]})
            dest = f"docker://localhost:{port}/bench/garbage:{run}"
            sh(["skopeo", "--command-timeout", "300s", "copy", "--quiet", *cred, f"oci:{lay}:g", dest], timeout=600)
            shutil.rmtree(lay, ignore_errors=True)
            sh(["skopeo", "--command-timeout", "60s", "delete", "--creds", f"{user}:{pw}", "--cert-dir", str(certs), dest])
            stop = threading.Event()
            misses = []

            def watch():
                while not stop.is_set():
                    if probe(port, ca) != 401:
                        misses.append(time.monotonic())
                    time.sleep(POLL)
            th = threading.Thread(target=watch)
            th.start()
            t0 = time.monotonic()
            sh([str(MRCTL), *g, "gc", name], timeout=900)
            wall.append(time.monotonic() - t0)
            stop.set()
            th.join()
            down.append(len(misses) * POLL)
            report = json.loads((base / "state" / name / "gc.json").read_text())
            ro.append(report["readOnlyMillis"] / 1000)
            log(f"  gc run {run + 1}: {report}")
        used_mb = sum(f.stat().st_size for f in storage.rglob("*") if f.is_file()) / 2**20
        R.add("Day two", f"gc of a {used_mb:.0f} MiB store ({garbage_mb} MiB collectable): pushes refused (read-only)", ro, "s")
        R.add("Day two", "gc: /v2/ not answering (two restarts), probed every 20 ms", down, "s")
        R.add("Day two", "gc: mrctl gc wall time", wall, "s")

        bk, tar_c, rs, tar_x = [], [], [], []
        nbytes = used_mb * 2**20 + sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        for run in range(runs):
            out, tout = base / f"bk{run}.tar", base / f"tar{run}.tar"
            order = ["mrctl", "tar"] if run % 2 == 0 else ["tar", "mrctl"]
            for what in order:
                t0 = time.monotonic()
                if what == "mrctl":
                    sh([str(MRCTL), *g, "backup", name, "-o", str(out)], timeout=900)
                    bk.append(nbytes / 2**20 / (time.monotonic() - t0))
                else:
                    sh(["tar", "-cf", str(tout), "-C", str(root), ".", "-C", str(storage), "."], timeout=900)
                    tar_c.append(nbytes / 2**20 / (time.monotonic() - t0))
            other = base / f"host{run}"
            (other / "watch").mkdir(parents=True)
            new, new_port = lab.name("r"), lab.port()
            restored.append(new)
            made.append(Path("/var/lib/mirror-registry") / new)
            into = base / f"untar{run}"
            into.mkdir()
            for what in (["mrctl", "tar"] if run % 2 == 0 else ["tar", "mrctl"]):
                t0 = time.monotonic()
                if what == "mrctl":
                    sh([str(MRCTL), "--watch-dir", str(other / "watch"), "--state-dir", str(other / "state"),
                        "--scope", "user", "restore", "-f", str(out), "--name", new, "--port", str(new_port)], timeout=900)
                    rs.append(nbytes / 2**20 / (time.monotonic() - t0))
                else:
                    sh(["tar", "-xf", str(tout), "-C", str(into)], timeout=900)
                    tar_x.append(nbytes / 2**20 / (time.monotonic() - t0))
            for p in (out, tout):
                p.unlink(missing_ok=True)
            shutil.rmtree(into, ignore_errors=True)
            cleanup([new])
            shutil.rmtree(Path("/var/lib/mirror-registry") / new, ignore_errors=True)
            log(f"  backup/restore run {run + 1}: backup {bk[-1]:.0f} MB/s, tar -c {tar_c[-1]:.0f} MB/s, "
                f"restore {rs[-1]:.0f} MB/s, tar -x {tar_x[-1]:.0f} MB/s")
        R.add("Day two", f"mrctl backup of {nbytes / 2**20:.0f} MiB (registry serving)", bk, "MiB/s", fmt="{:.0f}")
        R.add("Day two", "tar -cf of the same root and storage", tar_c, "MiB/s", fmt="{:.0f}")
        R.add("Day two", "mrctl restore of that file (checked, then written)", rs, "MiB/s", fmt="{:.0f}")
        R.add("Day two", "tar -xf of tar's file", tar_x, "MiB/s", fmt="{:.0f}")
    finally:
        ctl.stop()
        cleanup([name, *restored], [port])
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def quay_spec(lab, name, port, hostname, image):
    """A quay engine spec with Debian's Redis and the local pause image."""
    redis = sh(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}",
                "localhost/mirror-registry/redis"]).stdout.split()
    if not redis:
        sys.exit("no localhost/mirror-registry/redis image: run hack/setup-host.sh")
    return lab.spec(name, port).replace("engine: distribution", "engine: quay").replace(
        "hostname: localhost", f"hostname: {hostname}") + (
        f"  images:\n    quay: {image}\n"
        f"    redis: {redis[0]}\n    pause: localhost/mirror-registry/pause:latest\n")


def fig_quay(lab, R, runs):
    """The quay engine, with the Quay stand-in, Debian's Redis and a local
    pause image: spec dropped to Ready (which includes the initial user
    created through the stand-in's API)."""
    times = []
    for _ in range(runs):
        base = lab.fresh("quay")
        name, port = lab.name("q"), lab.port()
        ctl = Controller(base).start()
        spec = base / "watch" / f"{name}.yaml"
        try:
            # Not localhost: Quay named localhost:PORT is never healthy (docs/quay.md).
            text = quay_spec(lab, name, port, "quay.bench.test", "localhost/mirror-registry/quay-standin:latest")
            t0 = time.monotonic()
            drop(base / "watch", name, text)
            wait_until(lambda: phase_of(spec) == "Ready", 120, f"{name} Ready")
            times.append(time.monotonic() - t0)
        finally:
            ctl.stop()
            cleanup([name], [port])
    R.add("Quay engine (stand-in)", "spec dropped -> Ready, initial user created", times, "s")


def login_push(host, port, ca, user, password, tag):
    """`podman login` with the generated credentials (on stdin, never the
    command line) and the generated CA, then `podman push` of the test
    image: the first thing a user does with a new registry. Seconds."""
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-login-") as d:
        certs = Path(d) / "certs"
        certs.mkdir()
        shutil.copy(ca, certs / "ca.crt")
        auth = ["--authfile", str(Path(d) / "auth.json")]
        t0 = time.monotonic()
        sh(["podman", "login", *auth, "--cert-dir", certs, "--username", user, "--password-stdin",
            f"{host}:{port}"], input=password, timeout=300)
        sh(["podman", "push", "--quiet", *auth, "--cert-dir", certs, "localhost/mirror-registry/testimage:latest",
            f"docker://{host}:{port}/{user}/testimage:{tag}"], timeout=600)
        return time.monotonic() - t0


def fig_quay_real(lab, R, image, runs):
    """The quay engine with a real Quay image (--quay-image: none can be
    pulled here, so one built from Quay's source, docs/quay.md): spec
    dropped -> Ready (Quay's /health/instance, the initial user created
    through its API), then `podman login` + `podman push` of one image; the
    same login and push against the distribution engine in the same run.
    Quay checks and redirects to its own name, so the spec names this
    host, which must resolve here."""
    host = socket.gethostname()
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        sys.exit(f"--quay-image: this host's name {host!r} does not resolve; add it to /etc/hosts")
    ready, quay_push, dist_push = [], [], []
    for run in range(runs):
        base = lab.fresh("quayreal")
        name, port = lab.name("r"), lab.port()
        ctl = Controller(base).start()
        spec = base / "watch" / f"{name}.yaml"
        try:
            text = quay_spec(lab, name, port, host, image)
            t0 = time.monotonic()
            drop(base / "watch", name, text)
            # Real Quay migrates its database and starts some forty
            # processes first: minutes on a small host.
            wait_until(lambda: phase_of(spec) == "Ready", 1800, f"{name} Ready")
            ready.append(time.monotonic() - t0)
            user, pw = init_credentials(lab.root(name))
            quay_push.append(login_push(host, port, lab.root(name) / "tls" / "ca.crt", user, pw, f"r{run}"))
        finally:
            ctl.stop()
            cleanup([name], [port])
        dctl, dname, dport = converge_controller_once(lab, [], [])
        try:
            user, pw = init_credentials(lab.root(dname))
            dist_push.append(login_push("localhost", dport, lab.root(dname) / "tls" / "ca.crt", user, pw, f"r{run}"))
        finally:
            dctl.stop()
            cleanup([dname], [dport])
        log(f"  real quay run {run + 1}: Ready {ready[-1]:.1f} s, login + push {quay_push[-1]:.1f} s "
            f"(distribution engine {dist_push[-1]:.1f} s)")
    sec = "Quay engine (real Quay)"
    R.add(sec, f"spec dropped -> Ready, initial user created ({image})", ready, "s", fmt="{:.1f}")
    R.add(sec, "podman login + push of one image (2 MiB)", quay_push, "s")
    R.add(sec, "the same login + push, distribution engine, same run", dist_push, "s")


def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    podman = sh(["podman", "version", "--format", "{{.Client.Version}}"], check=False).stdout.strip()
    systemd = sh(["systemctl", "--version"], check=False).stdout.split("\n")[0]
    commit = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
    return dict(
        cpus=os.cpu_count(), cpu=cpu, mem=f"{mem:.1f} GiB", kernel=platform.release(),
        os=Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?",
        podman=podman, systemd=systemd, commit=commit + (" (with uncommitted changes)" if dirty else ""),
        load=open("/proc/loadavg").read().split()[:3],
        others=len(sh(["podman", "ps", "-q"], check=False).stdout.split()),
    )


SECTIONS = ["Convergence", "No-op reconcile", "Idle", "Drift repair", "Scale", "Image archive", "Data plane",
            "Quay engine (stand-in)", "Quay engine (real Quay)", "Day two"]


def table(R):
    out = ["| Figure | Median | Min | Max | Runs | Target | Result |", "|---|---|---|---|---|---|---|"]
    section = None
    for r in sorted(R.rows, key=lambda r: SECTIONS.index(r["section"])):
        if r["section"] != section:
            section = r["section"]
            out.append(f"| **{section}** | | | | | | |")
        s, f, u = r["samples"], r["fmt"], r["unit"]
        unit = f" {u}" if u and u != "×" else u
        med = r.get("value", median(s))
        res = "" if r["ok"] is None else ("pass" if r["ok"] else "**miss**")
        out.append(f"| {r['figure']} | {f.format(med)}{unit} | {f.format(min(s))}{unit} | "
                   f"{f.format(max(s))}{unit} | {len(s)} | {r['target']} | {res} |")
    return "\n".join(out)


def generic(text):
    """A message without this run's names and this host's paths."""
    text = re.sub(r"bench-\d+-[a-z0-9]+", "<name>", text)
    return re.sub(r"/run/user/\d+/", "$XDG_RUNTIME_DIR/", text)


def observations(notes):
    out = []
    c = notes.get("convergence")
    if c:
        out.append(
            f"- Convergence: the first reconcile starts {c['drop_to_reconcile_start_s'] * 1000:.0f} ms after the "
            f"spec is renamed in (median) and takes {c['first_reconcile_s'] * 1000:.0f} ms (it waits for the registry "
            f"to answer before writing Ready); reconciles until Ready: {c['reconciles_to_ready']}; the first one made "
            f"(podman calls, D-Bus calls, file writes) = {tuple(c['first_reconcile_podman_dbus_writes'])}.")
    if "noop_next" in notes:
        out.append(f"- No-op reconciles returned `next` = {', '.join(notes['noop_next'])}.")
    d = notes.get("drift")
    if d:
        errs = "; ".join(f"{n}× `{e}`" for e, n in d["errors"].items()) or "none"
        out.append(
            f"- Drift repair (all removals): {d['reconciles']} reconciles after the startup one, {d['failed']} of "
            f"them failed ({errs}); {d['unit_events']} unit-change and {d['container_events']} container-change "
            f"events; slowest reconcile {d['slowest_reconcile_ms']:.0f} ms.")
    for k, v in notes.items():
        if k.startswith("idle_"):
            lines = ", ".join(f"{n}× \"{msg}\"" for msg, n in sorted(v["log_lines"].items())) or "none"
            out.append(f"- Idle, {k[5:]}: log lines during the window: {lines}; {v['threads']} threads.")
    a = notes.get("archive")
    if a:
        out.append(f"- Archive: {a['size_mb']:.0f} MB; controller {a['controller_s']:.2f} s, "
                   f"podman load {a['podman_s']:.2f} s (medians).")
    return generic("\n".join(out)) or "-"


GUEST_HEADING = "## In a booted guest (TCG-emulated)"


def kept_guest_section(path):
    """The guest tests' section (hack/test-vm.sh's figures, recorded by
    hand), carried over from the page being replaced: this run does not
    measure it."""
    try:
        old = Path(path).read_text()
    except OSError:
        return ""
    start = old.find("\n" + GUEST_HEADING + "\n")
    if start < 0:
        return ""
    end = old.find("\n## ", start + 1)
    return old[start:] if end < 0 else old[start:end + 1]


def write_doc(path, R, m, started, elapsed, args):
    misses = [f"{r['section']}: {r['figure']}" for r in R.rows if r["ok"] is False]
    notes = R.notes
    doc = f"""# Benchmarks

Written by `hack/bench/run.sh` (which builds the release binaries and runs
`hack/bench/bench.py`); run it again to refresh this page. It is not part
of the test suite. Each figure is the median of {args.runs} runs unless the
Runs column says otherwise; min and max are shown beside it.

## Machine

| | |
|---|---|
| Date | {started.strftime('%Y-%m-%d %H:%M UTC')} (run took {elapsed / 60:.1f} min) |
| CPUs | {m['cpus']} × {m['cpu']} |
| Memory | {m['mem']} |
| Kernel | {m['kernel']} (Debian {m['os']}) |
| podman | {m['podman']} (API socket, runc) |
| systemd | {m['systemd']}, user manager (`--scope user`) |
| Commit | {m['commit']} |
| Load average at start | {' '.join(m['load'])} |

Other containers on the host when the run started: {m['others']}. The
controller's drift listeners receive every container event and unit
change on the host, not only its own, so other activity on a shared
machine shows in the idle and no-op figures.

## Results

{table(R)}

Targets missed: {', '.join(misses) if misses else 'none'}.

## How each figure is taken

1. **Convergence.** A controller daemon is started on an empty watch
   directory (`--scope user`, default 5 min resync); the clock starts when
   a spec (distribution engine, generated TLS and credentials, a podman
   volume, the local `docker.io/library/registry:2`) is renamed into it and
   stops when the file's `status.phase` is `Ready` *and* `GET /v2/` answers
   401 over TLS verified with the generated CA. The baseline,
   `hack/bench/baseline.sh`, does the same steps by hand: root 0700,
   openssl CA and server certificate (P-256, SANs), a generated password and
   `htpasswd -B -C 4` (the controller's cost), unit files and `config.yml` copied from
   `mrctl render`, `podman volume create`, the CA into
   `/etc/containers/certs.d`, `systemctl --user daemon-reload`, `enable`,
   `start`; its clock stops at the first 401. Runs alternate, each with new
   names, port and root. The ratio is of the two medians.
2. **No-op reconcile.** On a converged registry the daemon runs with
   `--resync-interval 1s`; the first reconcile (which connects to podman
   and D-Bus) is dropped and the next ones are read from the `reconciled`
   debug lines (`duration_us`, `podman_calls`, `dbus_calls`, `writes`).
   Restarts: `NRestarts` and `ActiveEnterTimestampMonotonic` of both units
   and the container's `StartedAt` before and after; status writes: the
   spec file's mtime.
3. **Idle.** A fresh daemon (default 5 min resync) over converged
   registries; after its startup reconciles and 2 s, utime+stime from
   `/proc/PID/stat` over {args.idle_seconds} s, read as 5 consecutive windows (the
   share's median is over those), and `VmRSS` at the end of each window.
4. **Drift repair.** `podman rm -f <name>-registry` while the daemon runs;
   from the removal's return until `/v2/` answers 401 again (the removal
   itself took {median(notes.get('drift_rm', [])):.2f} s). *Spaced*: each removal 11 s after the last
   repair, past systemd's default start-limit interval (10 s); *back to
   back*: 1 s after the last repair is Ready again, as in a crash loop.
   Baseline: registries brought up by `baseline.sh` with `RestartSec=30`
   in the container unit and no controller; the removals are made 0.3 s
   apart and timed independently, since the 30 s wait dominates.
5. **Scale.** N specs renamed into an empty watch directory of a fresh
   daemon at once; until every file's status is `Ready`. The 1-registry row
   also counts the convergence runs above. Resync cost: the running
   daemon's own passes (`--resync-interval 2s`, clients connected; the
   first pass dropped): wall time from the first reconcile's start to the
   last one's end, and the sum of their durations (reconciles of different
   registries run concurrently, so the sum exceeds the wall time). And a
   cold `--once` over the same registries (a new process: start-up and
   connecting to podman and D-Bus included). Per-reconcile call counts are
   read from the 1-registry no-op figure only: the counters are the
   process's, so concurrent reconciles see each other's calls.
6. **Image archive.** An image made unique by a {args.blob_mb} MiB random layer on top
   of the registry image, saved with `podman save --format docker-archive`
   ({notes.get('archive', {}).get('size_mb', 0):.0f} MB) and removed before each run.
   Controller: a `--once` run with `spec.images.archive`; from its
   `loading image archive` log line to the next (`created volume`, one
   volume inspect and create later). Baseline: `podman load -i` of the same
   file, wall time. Base layers are present in both cases.

7. **Day two.** One registry (distribution engine, podman volume) holding
   a 1 GiB image of 32 random layers. *gc*: each run pushes a 64 MiB image
   of 4 random layers and deletes its manifest (`skopeo delete`), then
   `mrctl gc`; the read-only window is the report's `readOnlyMillis` (from
   before the read-only restart to the registry answering read-write
   again), the not-answering time is 20 ms probes of `/v2/` that got no
   401. *Backup and restore*: bytes of the root and the volume's files over
   wall time; `mrctl backup` against `tar -cf` of the same two
   directories, alternating which goes first; `mrctl restore` into an empty
   watch and state directory under a new name (a new root and volume, as
   on another host; it reads the file twice) against `tar -xf` of tar's
   own file into an empty directory. The page cache is warm for both.
8. **Data plane.** Authenticated and unauthenticated `GET /v2/` to our
   registry, interleaved on two kept-alive TLS connections. Push and pull
   with skopeo, against ours and, in the same run, the same registry binary
   started by hand on the host's loopback with the same TLS pair and an
   htpasswd of cost 5 (the bare binary): one 1 GiB image of 50 random
   layers, pushed and pulled back; 300 images of a shared 2 MiB layer and a
   unique 1 MiB one, 8 pushed at a time. Fresh layers every run; which
   target goes first alternates. Both stores (ours through
   `spec.storage.path`), the source layout and the pulled copy are on one
   tmpfs, emptied after each run: on the disk, its throttling and the
   kernel's reclaim moved whole runs by 3× for both targets alike. skopeo
   runs in a CPU cgroup of its own, as a client in another login session
   or on another host does: in the harness's own cgroup it shared one
   scheduling group with the bare binary alone, which gave that target
   ~7% on two CPUs. The ratio is bare time over ours, per run.
9. **Quay engine.** With the stand-in: spec dropped to Ready, which
   includes the initial user created through its API. With a real Quay
   image (`--quay-image`, by hand: none can be pulled here; docs/quay.md):
   the same, then `podman login` (credentials on stdin, the generated CA)
   and `podman push` of a 2 MiB image, and the same login and push against
   the distribution engine in the same run.

## Reconcile lines seen

{observations(notes)}

## What moved

_Placeholder: after a change that affects these figures, note here what
moved, by how much, and why._
"""
    Path(path).write_text(doc + kept_guest_section(path))


# -------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (at least 5 for the record)")
    ap.add_argument("--idle-seconds", type=int, default=60)
    ap.add_argument("--throughput-runs", type=int, default=3, help="runs of the push/pull figures (each moves ~2.6 GiB)")
    ap.add_argument("--blob-mb", type=int, default=64, help="size of the archive image's unique layer")
    ap.add_argument("--scale", default="1,5,20", help="registry counts for the scale figure")
    ap.add_argument("--only", default="", help="comma list of: convergence,noop,idle,drift,scale,archive,auth,throughput,quay,day2")
    ap.add_argument("--quay-image", default="", help="a real Quay image in podman's storage: adds the real-Quay figures")
    ap.add_argument("--quay-runs", type=int, default=1, help="runs of the real-Quay figures (minutes each)")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="'-' to write no file")
    args = ap.parse_args()
    want = set(filter(None, args.only.split(","))) or {"convergence", "noop", "idle", "drift", "scale", "archive", "auth", "throughput", "quay", "day2"}
    for b in (BIN, MRCTL):
        if not b.exists():
            sys.exit(f"{b} is missing: cargo build --release --bins (hack/bench/run.sh does)")
    if not shutil.which("htpasswd"):
        sys.exit("htpasswd is missing (apt-get install apache2-utils; hack/bench/run.sh does)")
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        sys.exit("source hack/env.sh first (hack/bench/run.sh does)")

    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    m = machine()
    stale_cleanup()
    lab = Lab()

    def on_exit():
        cleanup(TRACKED["names"], TRACKED["ports"])
        shutil.rmtree(lab.dir, ignore_errors=True)

    atexit.register(on_exit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    R = Results()
    scales = [int(x) for x in args.scale.split(",") if x]

    if "archive" in want:
        fig_archive(lab, R, args.runs, args.blob_mb)
    if "auth" in want:
        fig_auth(lab, R, args.runs)
    if "quay" in want:
        fig_quay(lab, R, args.runs)
        if args.quay_image:
            fig_quay_real(lab, R, args.quay_image, args.quay_runs)
    if "throughput" in want:
        fig_throughput(lab, R, args.throughput_runs)
    if "day2" in want:
        fig_day2(lab, R, args.throughput_runs)
    scale1 = []
    if "convergence" in want:
        fig_convergence(lab, R, args.runs, scale1)
    drift_baseline_done = False
    for n in scales:
        if not ({"scale", "noop", "idle", "drift"} & want):
            break
        needs_set = "scale" in want or (n == 1 and {"noop", "idle", "drift"} & want) or (n == max(scales) and "idle" in want)
        if not needs_set:
            continue
        if "scale" in want:
            kept = fig_scale(lab, R, args.runs, n, True, scale1 if n == 1 else None)
        else:
            t, ctl, names, ports, base = converge_set(lab, n, f"s{n}x")
            ctl.stop()
            kept = (names, ports, base)
        names, ports, base = kept
        try:
            if "scale" in want:
                fig_resync(lab, R, args.runs, n, base, names)
            if n == 1:
                if "noop" in want:
                    fig_noop(lab, R, base, names[0], max(args.runs, 8))
                if "drift" in want:
                    fig_drift(lab, R, base, names[0], ports[0], args.runs)
                if "idle" in want:
                    fig_idle(lab, R, base, names, args.idle_seconds, "1 registry")
            elif n == max(scales) and "idle" in want:
                fig_idle(lab, R, base, names, args.idle_seconds, f"{n} registries")
        finally:
            cleanup(names, ports)
        if n == 1 and "drift" in want and not drift_baseline_done:
            fig_drift_baseline(lab, R, args.runs)
            drift_baseline_done = True

    elapsed = time.monotonic() - t_start
    log("notes: " + json.dumps(R.notes, default=str))
    print(table(R))
    misses = [r for r in R.rows if r["ok"] is False]
    print(f"\ntargets missed: {len(misses)}" + "".join(f"\n  - {r['section']}: {r['figure']}" for r in misses))
    if args.out != "-":
        write_doc(args.out, R, m, started, elapsed, args)
        log(f"wrote {args.out} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
