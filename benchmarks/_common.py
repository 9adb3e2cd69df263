"""Helpers shared by the benchmark scripts (``bench_core.py``, ``bench_grid.py``,
``bench_scaling.py``, ``bench_kernel.py``, ``run_peer.py``).

Standard library only at import time (numpy, jax and psutil are imported inside the functions
that use them), so ``run_peer.py`` still runs in any interpreter, the peer's included. The
scripts put their own directory on ``sys.path`` and ``import _common``.

- the core workload's constants (``bench_core.py``'s; ``bench_grid.py`` and ``bench_kernel.py``
  run the same workload) and its seeded random stand-in for the peer's data;
- the worker side of a measurement process: CPU time, peak RSS, a timed call, the JSON it writes;
- the driver side: spawning one measurement as its own process (its peak RSS from
  ``wait4``'s ``ru_maxrss``) and reading back its JSON, the peer interpreter and its data;
- the report: machine and version information, load averages, the machine line, table rules,
  PASS/MISS target lines, printing the table and writing ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ============================================================================ the core workload
# tvboptim's RWW tutorial, as bench_core.py describes it
N_NODES = 84
DT = 4.0  # ms
T1_FULL = 90_000.0  # ms simulated
T1_QUICK = 30_000.0  # smoke runs only: 30 frames, 10 after the skip
TR = 1000.0  # ms
SKIP = 20  # BOLD frames dropped before FC
SIGMA = 0.00283
G0, W0, I_O, S0 = 0.5, 0.5, 0.32, 0.3
SEED = 42


def random_workload(path):
    """Seeded random 84-node connectome and target FC (used only without the peer)."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    w = rng.lognormal(0.0, 1.5, (N_NODES, N_NODES)) * (rng.random((N_NODES, N_NODES)) < 0.4)
    w = np.triu(w, 1)
    w = w + w.T
    ts = rng.standard_normal((200, N_NODES)) + rng.standard_normal((200, 1))
    np.savez(path, weights=w / w.max(), fc=np.corrcoef(ts, rowvar=False),
             source=np.asarray("seeded random (numpy default_rng(42)), NOT dk_average"))
    return Path(path)


# ============================================================================ worker side
def cpu_s(include_children=False):
    """CPU seconds of this process (all threads), plus its live children's with psutil."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    total = ru.ru_utime + ru.ru_stime
    if include_children:
        try:
            import psutil

            for child in psutil.Process().children(recursive=True):
                try:
                    t = child.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        except ImportError:
            pass
    return total


def peak_rss_mb():
    """Peak RSS of this process so far (MB; ``ru_maxrss`` is in kilobytes on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed_call(fn, args):
    """One blocking call: ``(output, wall seconds, process CPU seconds)``.

    CPU time (all threads of the process) is far less sensitive than wall time to other
    processes competing for the cores of a shared machine."""
    import jax

    c, t = cpu_s(), time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t, cpu_s() - c


def timed(fn, *args, reps):
    """One first call, then ``reps`` steady calls: ``(output, timing dict)``."""
    out, first, _ = timed_call(fn, args)
    times, cpus = [], []
    for _ in range(reps):
        out, wall, cpu = timed_call(fn, args)
        times.append(wall)
        cpus.append(cpu)
    med = statistics.median(times)
    return out, {"first_call_s": first, "steady_s": med, "steady_min_s": min(times),
                 "steady_all_s": times, "compile_s": first - med,
                 "steady_cpu_s": statistics.median(cpus), "steady_cpu_all_s": cpus}


def write_worker_json(path, res):
    """A worker's last act: add its own peak RSS (``peak_rss_mb_inside``) and write ``res``."""
    res["peak_rss_mb_inside"] = peak_rss_mb()
    Path(path).write_text(json.dumps(res, indent=1))


def add_worker_args(ap, t1):
    """The hidden arguments of a script's worker mode (after its own ``--worker``)."""
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--t1", type=float, default=t1, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)


# ============================================================================ driver side
def make_log(tag):
    """``log(*a)``: print to stderr behind ``tag`` (``"[bench]"``, ...), flushed."""
    def log(*a):
        print(tag, *a, file=sys.stderr, flush=True)
    return log


def make_workdir(keep_dir, prefix):
    """``keep_dir`` (created), else a fresh temporary directory."""
    workdir = Path(keep_dir or tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def clean_env(**extra):
    """This process's environment without ``XLA_FLAGS`` (each child sets its own), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(extra)
    return env


def run_child(cmd, env, cwd, timeout):
    """Run one subprocess; return (rc, wall_s, child_maxrss_mb or None, output tail)."""
    out_path = Path(cwd) / f"child_output_{time.time_ns()}.txt"
    t0 = time.perf_counter()
    with open(out_path, "w") as fout:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fout, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        maxrss_mb = None
        try:
            if hasattr(os, "wait4"):
                _, status, ru = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                maxrss_mb = ru.ru_maxrss / 1024.0  # kilobytes on Linux
            else:  # pragma: no cover - non-POSIX
                proc.wait()
        finally:
            timer.cancel()
    wall = time.perf_counter() - t0
    text = out_path.read_text(errors="replace")
    tail = "\n".join(ln for ln in text.splitlines() if not ln.startswith("WARNING: "))[-3000:]
    return proc.returncode, wall, maxrss_mb, tail


def worker_cmd(script, worker, out, t1, reps, data=None, python=None):
    """The command line of ``script``'s worker mode: ``--worker WORKER [--data D] --t1 --reps --json``."""
    cmd = [str(python or sys.executable), str(Path(script).resolve()), "--worker", worker]
    if data is not None:
        cmd += ["--data", str(data)]
    return cmd + ["--t1", str(t1), "--reps", str(reps), "--json", str(out)]


def failure(log, what):
    """The usual ``fail`` of :func:`run_json`: log ``"{what} failed (rc=...)"`` and the
    output tail, return ``{"error": "rc=...", "output_tail": tail}``."""
    def fail(rc, wall, tail):
        log(f"{what} failed (rc={rc}):\n{tail}")
        return {"error": f"rc={rc}", "output_tail": tail}
    return fail


def run_json(cmd, out, workdir, timeout, fail, env=None, rss="peak_rss_mb", wall="process_wall_s"):
    """Run one measurement as its own process (``cmd`` writes its results as JSON to ``out``).

    Returns the JSON dict with the child's peak RSS (``ru_maxrss`` from ``wait4``) under
    ``rss`` and its wall time under ``wall`` (either None: not added). ``rss="peak_rss_mb"``
    falls back to the child's own ``peak_rss_mb_inside`` where ``wait4`` is missing. If the
    process fails or writes nothing, returns ``fail(rc, wall_s, output_tail)``.
    ``env`` defaults to :func:`clean_env`.
    """
    out = Path(out)
    rc, wall_s, maxrss, tail = run_child(cmd, clean_env() if env is None else env, workdir, timeout)
    if rc != 0 or not out.exists():
        return fail(rc, wall_s, tail)
    res = json.loads(out.read_text())
    if rss == "peak_rss_mb":
        res[rss] = maxrss if maxrss is not None else res["peak_rss_mb_inside"]
    elif rss:
        res[rss] = maxrss
    if wall:
        res[wall] = wall_s
    return res


def find_peer(no_peer, peer_python=None):
    """``(peer interpreter, versions)`` as ``run_peer.check_peer``; ``(None, None)`` with ``--no-peer``."""
    if no_peer:
        return None, None
    import run_peer

    return run_peer.check_peer(peer_python)


def workload_data(path, peer_py, peer_versions, log=None):
    """Write the workload's connectome and target FC to ``path`` (.npz): the peer's
    ``dk_average`` where the peer runs, else :func:`random_workload` (said through ``log``,
    if given). Returns the data source for the report."""
    if peer_versions is not None:
        import run_peer

        if run_peer.export_peer_data(path, peer_py):
            return "tvboptim dk_average"
    if log is not None:
        log("using a SEEDED RANDOM 84-node connectome, not dk_average "
            + ("(no peer interpreter)" if peer_versions is None else "(exporting dk_average failed)"))
    random_workload(path)
    return "SEEDED RANDOM connectome, not dk_average"


# ============================================================================ report
def cpu_name(fallback="unknown"):
    """The CPU's model name from /proc/cpuinfo, else ``fallback``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return fallback


def machine_info():
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "memory_gib": mem_gib,
            "platform": platform.platform(), "python": platform.python_version()}


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def fitbridge_versions():
    code = ("import json, jax, jaxlib, numpy, fitbridge; print(json.dumps({'fitbridge': "
            "fitbridge.__version__, 'jax': jax.__version__, 'jaxlib': jaxlib.__version__, "
            "'numpy': numpy.__version__}))")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return json.loads(cp.stdout.strip().splitlines()[-1]) if cp.returncode == 0 else {}


def report_header():
    """The first keys of every report: command, date, machine, load before, versions."""
    return {"command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info(), "load_before": loadavg(), "versions": fitbridge_versions()}


def machine_line(report, memory=True):
    """``machine: CPU, N cores[, M GiB]; load average before ..., after ...; date``."""
    m = report["machine"]
    mem = ""
    if memory:
        mem = ", " + (f"{m['memory_gib']:.0f} GiB" if m.get("memory_gib") else "? GiB")
    return (f"machine: {m['cpu']}, {m['cores']} cores{mem}; load average before "
            f"{report['load_before']}, after {report['load_after']}; {report['date']}")


def rule(head, cell=None):
    """The separator line under a Markdown table header: each cell as wide as the header's,
    or ``cell`` (e.g. ``"---"``) in every column."""
    return "|" + "|".join(cell or "-" * len(c) for c in head.split("|")[1:-1]) + "|"


def status(val, ok):
    """``"n/a "`` without a value, else ``"PASS"`` or ``"MISS"``."""
    return "n/a " if val is None else ("PASS" if ok else "MISS")


def target_lines(targets):
    """``  PASS  label: shown`` per ``(label, value, ok, shown)``."""
    return [f"  {status(val, ok)}  {label}: {shown}" for label, val, ok, shown in targets]


def write_json(path, obj, default=str):
    Path(path).write_text(json.dumps(obj, indent=1, default=default))


def emit(report, text, out=None, log=None):
    """Keep the table in the report, print it, write the report to ``out`` (if given)."""
    report["table"] = text
    print(text)
    if out:
        write_json(out, report)
        if log is not None:
            log(f"wrote {out}")
    return report
