"""Scaling benchmark: forward loss and reverse gradient cost (and peak RSS) at 80, 379 and 998 nodes,
fitbridge and, where it runs in reasonable time, tvboptim 0.4, one measurement per process::

    /work/venv/bin/python benchmarks/bench_scaling.py                  # ~10-20 min on 2 cores
    /work/venv/bin/python benchmarks/bench_scaling.py --sizes 80,379 --no-peer
    /work/venv/bin/python benchmarks/bench_scaling.py --out scaling.json

Workload: the core benchmark's RWW -> HRF BOLD -> FC -> RMSE pipeline (G=0.5, w=0.5, I_o=0.32,
S0=0.3, no delays, stochastic Heun dt 4 ms, sigma 0.00283, TR 1 s, FC after 20 frames) but
**30 s simulated** (7,500 steps; 10 FC frames) so that the largest size stays affordable: the
times are per 30 s, not comparable with ``bench_core.py``'s 90 s. Connectomes: 80 nodes = the
packaged HCP AAL2 group connectome (``fb.datasets.load("hcp")``); 379 and 998 nodes = seeded
random sparse symmetric connectomes (lognormal weights, 20% density, ``default_rng(n)``);
every connectome is divided by its maximum; the target FC is a seeded random correlation matrix
(the loss value is meaningless, the cost is not). Gradients w.r.t. (G, w).

Columns: steady median wall and process CPU time of ``--reps`` calls after the first, ns per
node-step of the forward (CPU time / (steps x nodes)), peak RSS of the process (imports and
compilation included), and tvboptim / fitbridge ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402  (standard library only)
    add_worker_args, emit, find_peer, loadavg, machine_line, make_log, make_workdir,
    report_header, rule, run_json, timed, write_worker_json,
)

PEER_SCRIPT = HERE / "peer_scaling.py"
T1 = 30_000.0
DT = 4.0
SIZES = (80, 379, 998)
DENSITY = 0.2


def make_data(n, path):
    import numpy as np

    if n == 80:
        import fitbridge as fb

        w = np.asarray(fb.datasets.load("hcp").weights, np.float64)
        source = "HCP AAL2 group connectome (fitbridge.datasets)"
    else:
        rng = np.random.default_rng(n)
        w = rng.lognormal(0.0, 1.0, (n, n)) * (rng.random((n, n)) < DENSITY)
        w = np.triu(w, 1)
        w = w + w.T
        source = f"seeded random: lognormal, {DENSITY:.0%} density, default_rng({n})"
    rng = np.random.default_rng(1000 + n)
    ts = rng.standard_normal((3 * n, n)) + 0.5 * rng.standard_normal((3 * n, 1))
    np.savez(path, weights=w / w.max(), fc=np.corrcoef(ts, rowvar=False), source=np.asarray(source))
    return source


def worker(a):
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from bench_core import fitbridge_functions

    d = np.load(a.data)
    x0, fns = fitbridge_functions(d["weights"], d["fc"], t1=a.t1)
    out, t = timed(fns[a.mode], x0, reps=a.reps)
    value = out if a.mode == "forward" else out[0]
    res = {"mode": a.mode, "n_nodes": int(d["weights"].shape[0]), "first_s": t["first_call_s"],
           "steady_all_s": t["steady_all_s"], "steady_cpu_all_s": t["steady_cpu_all_s"],
           "steady_s": t["steady_s"], "steady_cpu_s": t["steady_cpu_s"], "loss": float(value)}
    write_worker_json(a.json, res)


log = make_log("[scaling]")


def run_fb(mode, data, t1, reps, workdir, timeout):
    out = Path(workdir) / f"fb_{mode}_{Path(data).stem}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--mode", mode, "--data", str(data),
           "--t1", str(t1), "--reps", str(reps), "--json", str(out)]
    log(f"fitbridge {mode} {Path(data).stem} ...")

    def fail(rc, wall, tail):
        log(f"failed (rc={rc}):\n{tail}")
        return {"error": f"rc={rc}"}

    return run_json(cmd, out, workdir, timeout, fail, wall=None)


def run_peer_one(py, mode, data, t1, reps, workdir, timeout):
    out = Path(workdir) / f"peer_{mode}_{Path(data).stem}.json"
    cmd = [str(py), str(PEER_SCRIPT), "--data", str(data), "--mode", mode, "--t1", str(t1), "--reps", str(reps),
           "--out", str(out)]
    log(f"tvboptim {mode} {Path(data).stem} ...")

    def fail(rc, wall, tail):  # the peer may run out of time at the larger sizes: say after how long
        log(f"tvboptim failed or timed out (rc={rc}, {wall:.0f} s):\n{tail[-500:]}")
        return {"error": f"rc={rc} after {wall:.0f} s"}

    return run_json(cmd, out, workdir, timeout, fail, rss="peak_rss_mb_process", wall=None)


def render(rep):
    cfg = rep["config"]
    steps = int(round(cfg["t1_ms"] / DT))
    lines = [f"workload: RWW -> HRF BOLD (TR 1 s) -> FC (skip 20) -> RMSE, Heun dt {DT:g} ms, "
             f"{cfg['t1_ms'] / 1000:g} s simulated ({steps} steps; NOT the 90 s of bench_core), float64, "
             f"gradients w.r.t. (G, w); reps={cfg['reps']}",
             machine_line(rep, memory=False),
             f"command: {rep['command']}", ""]
    head = ("| nodes | measure | fitbridge s (CPU s) | ns/node-step (CPU) | fb peak RSS MB | tvboptim s (CPU s) "
            "| tvboptim peak RSS MB | time ratio tvb/fb (wall, CPU) | RSS ratio fb/tvb |")
    lines += [head, rule(head, "---")]
    for n, rows in rep["results"].items():
        for mode in ("forward", "reverse"):
            f = rows.get(f"fb_{mode}") or {}
            p = rows.get(f"peer_{mode}") or {}
            fs = (f"{f['steady_s']:.3f} ({f['steady_cpu_s']:.3f})" if "steady_s" in f else f.get("error", "-"))
            ns = f"{f['steady_cpu_s'] / (steps * int(n)) * 1e9:.1f}" if "steady_s" in f and mode == "forward" else ""
            ps = (f"{p['steady_s']:.3f} ({p['steady_cpu_s']:.3f})" if "steady_s" in p else p.get("error", "-"))
            ratio = (f"{p['steady_s'] / f['steady_s']:.2f}, {p['steady_cpu_s'] / f['steady_cpu_s']:.2f}"
                     if "steady_s" in f and "steady_s" in p else "")
            rss_f = f.get("peak_rss_mb")
            rss_p = p.get("peak_rss_mb")
            rr = f"{rss_f / rss_p:.2f}" if rss_f and rss_p else ""
            lines.append(f"| {n} | {mode} | {fs} | {ns} | {rss_f or 0:.0f} | {ps} | {rss_p or 0:.0f} | {ratio} | {rr} |")
    lines.append("")
    for n, src in rep["sources"].items():
        lines.append(f"  {n} nodes: {src}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--peer-max-nodes", type=int, default=998, help="skip the peer above this size")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep-dir", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="forward", help=argparse.SUPPRESS)
    add_worker_args(ap, T1)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)
    workdir = make_workdir(a.keep_dir, "fitbridge_scaling_")
    rep = {**report_header(),
           "config": {"t1_ms": a.t1, "reps": a.reps}, "results": {}, "sources": {}}
    py, versions = find_peer(a.no_peer, a.peer_python)
    for n in [int(s) for s in a.sizes.split(",") if s]:
        data = workdir / f"connectome_{n}.npz"
        rep["sources"][n] = make_data(n, data)
        rows = rep["results"].setdefault(n, {})
        for mode in ("forward", "reverse"):
            if versions is not None and n <= a.peer_max_nodes:
                rows[f"peer_{mode}"] = run_peer_one(py, mode, data, a.t1, a.reps, workdir, a.timeout)
            rows[f"fb_{mode}"] = run_fb(mode, data, a.t1, a.reps, workdir, a.timeout)
    rep["load_after"] = loadavg()
    return emit(rep, render(rep), a.out)


if __name__ == "__main__":
    main()
