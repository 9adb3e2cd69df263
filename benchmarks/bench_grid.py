"""Grid benchmark: evaluations per second of fitbridge's batched evaluation against tvboptim's
``ParallelExecution``, side by side in ONE run, on the same 8 x 8 (G, w) grid of the core
benchmark's workload; plus, in the same run, the batched kernel's cost per node-step against
its roofline and a CMA-ES generation of 16 points as one batch against 16 serial calls::

    /work/venv/bin/python benchmarks/bench_grid.py                  # full run (~15 min on 2 cores)
    /work/venv/bin/python benchmarks/bench_grid.py --quick --no-peer
    /work/venv/bin/python benchmarks/bench_grid.py --rounds 2 --out grid.json

Workload (both columns, as ``bench_core.py``): tvboptim's 84-node ``dk_average`` connectome / max,
Reduced Wong-Wang (I_o=0.32, S0=0.3), no delays, stochastic Heun dt = 4 ms, 90 s, additive noise
sigma = 0.00283 (one fixed key for every point, as both packages do by default), HRF BOLD
TR 1 s, FC after 20 frames, RMSE against the empirical ``dk_average`` FC. Grid: G and w each
``linspace(0.001, 0.7, 8)`` (tvboptim's ``GridAxis(0.001, 0.7, 8)``), G the slow axis.

Columns, each its own process (so its device count and peak RSS are its own):

- **tvboptim** (``peer_grid.py`` in the peer interpreter): ``ParallelExecution`` with its
  tutorial setting ``n_pmap=8, n_vmap=1`` (8 forced host devices) and its best setting on two
  cores ``n_pmap=2, n_vmap=4`` (2 forced host devices), float64 and float32 (``x64`` off);
- **fitbridge** ``fb.explore(problem, {"G": ..., "w": ...}, ...)`` of an ``FCProblem``:
  one device with the default chunk (16 points) and with one chunk of 64; two forced host
  devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2`` in that child's environment
  only, chunks of 32 sharded 16 + 16); two joblib (loky) worker processes; float64 and
  ``precision="float32"``.

Each process calls once (trace + compile + run: "first") and then ``--reps`` times ("steady");
evals/s = 64 / median steady wall time. CPU seconds are the process's own (``getrusage``), plus
its joblib workers' (``psutil``) where there are any; evals per CPU-second is the
load-independent efficiency figure. The order is interleaved per precision (peer, fitbridge
configurations, peer) so that load drifts hit both columns alike.

The kernel process (pinned to one core, like ``bench_kernel.py``) times, round-robin, the RWW
vector field over one large array, the coupling product ``(B, n) @ W.T`` in a scan, and the
batched loss ``jit(vmap(loss))`` at B in {1, 16, 64}: ns per node-step = CPU time / (steps x
nodes x B); the roofline of a Heun step is ``2 * dfun + matmul(B)``. The CMA-ES generation is
``problem.batch(X)`` of 16 points against 16 ``problem.fun(x)`` calls (both compiled first).

Targets (issue 4): fitbridge's best >= 8x tvboptim's best evals/s in float64 and >= 20x in
float32; the batched kernel (B >= 16) within 2x of its roofline; a CMA-ES generation as one
batch >= 5x faster than 16 serial calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402  (standard library only; the workload is bench_core.py's)
    DT, G0, I_O, N_NODES, S0, SEED, SIGMA, SKIP, T1_FULL, T1_QUICK, TR, W0, add_worker_args,
    clean_env, cpu_s, emit, failure, find_peer, loadavg, machine_line, make_log, make_workdir,
    report_header, rule, run_json, target_lines, worker_cmd, workload_data, write_worker_json,
)

PEER_GRID_SCRIPT = HERE / "peer_grid.py"
GRID = 8
GRID_LO, GRID_HI = 0.001, 0.7

TARGET_F64 = 8.0
TARGET_F32 = 20.0
TARGET_ROOFLINE = 2.0
TARGET_CMA = 5.0

#: fitbridge configurations: name -> (backend, devices, chunk_size, n_jobs)
FB_CONFIGS = {
    "1 device, chunk 16 (default)": ("jax", 1, None, None),
    "1 device, chunk 64": ("jax", 1, 64, None),
    "2 host devices, chunk 32": ("jax", 2, 32, None),
    "2 host devices, chunk 64": ("jax", 2, 64, None),
    "joblib 2 processes, chunk 32": ("joblib", 1, 32, 2),
}
PEER_CONFIGS = ((8, 1), (2, 4))


# ============================================================================ workers
def _problem(data, t1):
    import numpy as np

    import fitbridge as fb

    net = fb.Network(fb.models.ReducedWongWang(G=G0, w=W0, I_o=I_O), np.asarray(data["weights"]),
                     normalize="max")
    sim = fb.Simulation(net, dt=DT, duration=t1, noise=fb.AdditiveNoise(SIGMA), bold=fb.bold.HRF(tr=TR),
                        initial_state=[S0], seed=SEED)
    return fb.FCProblem(sim, np.asarray(data["fc"]), loss="rmse", skip=SKIP,
                        free={"G": fb.Free(G0, bounds=(0.0, 1.0)), "w": fb.Free(W0, bounds=(0.0, 1.0))})


def explore_options(a):
    """``fb.explore`` keyword arguments of a worker's configuration (precision, backend, chunk, jobs)."""
    opts = {"precision": a.precision, "progress": False, "backend": a.backend}
    if a.chunk:
        opts["chunk_size"] = a.chunk
    if a.n_jobs:
        opts["n_jobs"] = a.n_jobs
    return opts


def _worker_grid(a):
    import numpy as np

    import fitbridge as fb

    data = dict(np.load(a.data))
    problem = _problem(data, a.t1)
    axis = np.linspace(GRID_LO, GRID_HI, GRID)
    space = {"G": axis, "w": axis}
    opts = explore_options(a)
    children = a.backend != "jax"
    c, t = cpu_s(children), time.perf_counter()
    frame = fb.explore(problem, space, **opts)
    first, first_cpu = time.perf_counter() - t, cpu_s(children) - c
    walls, cpus = [], []
    for _ in range(a.reps):
        c, t = cpu_s(children), time.perf_counter()
        frame = fb.explore(problem, space, **opts)
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_s(children) - c)
    n = len(frame)
    meta = frame.attrs["fitbridge"]
    import jax

    return {"n_evals": n, "first_s": first, "first_cpu_s": first_cpu, "steady_all_s": walls,
            "steady_cpu_all_s": cpus, "steady_s": statistics.median(walls),
            "steady_cpu_s": statistics.median(cpus), "evals_per_s": n / statistics.median(walls),
            "evals_per_cpu_s": n / statistics.median(cpus), "chunk_size": meta["chunk_size"],
            "n_devices": meta["n_devices"], "n_host_devices": len(jax.devices()),
            "loss_min": float(np.nanmin(frame["loss"])), "n_nan": int(frame["loss"].isna().sum()),
            "points": {"G": frame["G"].tolist(), "w": frame["w"].tolist(), "loss": frame["loss"].tolist()}}


def _worker_kernel(a):
    """Batched kernel vs roofline and the CMA-ES generation, in one process pinned to one core."""
    import numpy as np

    import bench_kernel as bk

    data = dict(np.load(a.data))
    weights, target = np.asarray(data["weights"]), np.asarray(data["fc"])
    import jax

    batches = (1, 16) if a.quick else (1, 16, 64)
    duration = 10_000.0 if a.quick else 20_000.0
    steps = int(round(duration / DT))
    out = {"steps": steps, "batches": list(batches), "kernel": {}, "roofline": {}}
    out["roofline"], out["kernel"] = bk.kernel_vs_roofline(weights, target, batches, duration, a.reps,
                                                           wall=False)
    with jax.enable_x64(True):
        out["cma"] = bk._cma(weights, target, a.reps, a.t1)
    return out


def worker_main(a):
    if a.worker == "kernel" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before JAX starts its pools
    res = _worker_grid(a) if a.worker == "grid" else _worker_kernel(a)
    write_worker_json(a.json, res)


# ============================================================================ driver
log = make_log("[grid]")


def run_fb(name, cfg, precision, data, t1, reps, workdir, timeout):
    backend, n_dev, chunk, n_jobs = cfg
    tag = f"fb_{precision}_{name.split(',')[0].replace(' ', '_')}_{chunk}"
    out = Path(workdir) / f"{tag}.json"
    cmd = worker_cmd(__file__, "grid", out, t1, reps, data=data) + ["--precision", precision,
                                                                     "--backend", backend]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    if n_jobs:
        cmd += ["--n-jobs", str(n_jobs)]
    env = clean_env()
    if n_dev > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_dev}"
    log(f"fitbridge {precision} {name} ...")
    return run_json(cmd, out, workdir, timeout, failure(log, f"fitbridge {name}"), env=env)


def run_peer_grid(peer_py, n_pmap, n_vmap, precision, t1, reps, workdir, timeout):
    out = Path(workdir) / f"peer_{precision}_{n_pmap}x{n_vmap}.json"
    cmd = [str(peer_py), str(PEER_GRID_SCRIPT), "--t1", str(t1), "--grid", str(GRID), "--n_pmap",
           str(n_pmap), "--n_vmap", str(n_vmap), "--reps", str(reps), "--out", str(out)]
    if precision == "float32":
        cmd.append("--x32")
    log(f"tvboptim {precision} n_pmap={n_pmap} n_vmap={n_vmap} ...")
    return run_json(cmd, out, workdir, timeout, failure(log, "tvboptim grid"),
                    env=clean_env(PEER_N_DEV=str(n_pmap)), rss="peak_rss_mb_process")


def run_kernel(data, t1, reps, quick, workdir, timeout):
    out = Path(workdir) / "kernel.json"
    cmd = worker_cmd(__file__, "kernel", out, t1, reps, data=data) + (["--quick"] if quick else [])
    log("batched kernel vs roofline and CMA-ES generation ...")
    return run_json(cmd, out, workdir, timeout, failure(log, "kernel worker"), rss=None, wall=None)


def _merge(runs):
    """Pool the steady samples of one configuration over rounds."""
    runs = [r for r in runs if r and "steady_all_s" in r]
    if not runs:
        return None
    out = dict(runs[0])
    walls = [t for r in runs for t in r["steady_all_s"]]
    cpus = [t for r in runs for t in r["steady_cpu_all_s"]]
    n = out["n_evals"]
    out.update(steady_all_s=walls, steady_cpu_all_s=cpus, steady_s=statistics.median(walls),
               steady_cpu_s=statistics.median(cpus), evals_per_s=n / statistics.median(walls),
               evals_per_cpu_s=n / statistics.median(cpus), rounds=len(runs))
    rss = [r.get("peak_rss_mb", r.get("peak_rss_mb_process")) for r in runs]
    rss = [v for v in rss if v is not None]
    if rss:
        out["peak_rss_mb"] = max(rss)
    return out


def render(report):
    lines = []
    cfg = report["config"]
    if cfg["quick"]:
        lines.append(f"*** QUICK RUN: {cfg['t1_ms'] / 1000:g} s simulated; NOT comparable to the targets ***")
    lines.append(f"workload: {N_NODES} nodes ({report['data_source']}), RWW, Heun dt {DT:g} ms, "
                 f"{cfg['t1_ms'] / 1000:g} s, HRF BOLD TR 1 s, FC (skip {SKIP}), RMSE; grid {GRID} x {GRID} "
                 f"(G, w) in [{GRID_LO}, {GRID_HI}]; reps={cfg['reps']}, rounds={cfg['rounds']}")
    lines.append(machine_line(report))
    v = report["versions"]
    lines.append(f"versions: fitbridge {v.get('fitbridge')}, jax {v.get('jax')}; peer: "
                 f"{report.get('peer_versions') or '-'}")
    lines.append(f"command: {report['command']}")
    lines.append("")
    head = (f"| {'precision':9s} | {'configuration':38s} | {'evals/s':>8s} | {'evals/CPU-s':>11s} | "
            f"{'first (s)':>9s} | {'peak RSS MB':>11s} | {'vs peer best':>12s} |")
    lines += [head, rule(head)]
    best = {}
    for precision in ("float64", "float32"):
        peer_rows = report["peer"].get(precision, {})
        fb_rows = report["fitbridge"].get(precision, {})
        peer_best = max([r["evals_per_s"] for r in peer_rows.values() if r and "evals_per_s" in r], default=None)
        fb_best = max([r["evals_per_s"] for r in fb_rows.values() if r and "evals_per_s" in r], default=None)
        best[precision] = (fb_best, peer_best)
        for label, rows in (("tvboptim", peer_rows), ("fitbridge", fb_rows)):
            for name, r in rows.items():
                if not r or "evals_per_s" not in r:
                    lines.append(f"| {precision:9s} | {label + ' ' + name:38s} | {'failed':>8s} | | | | |")
                    continue
                ratio = f"{r['evals_per_s'] / peer_best:.2f}x" if peer_best and label == "fitbridge" else ""
                first = r.get("first_s", r.get("first_run_s"))
                lines.append(f"| {precision:9s} | {label + ' ' + name:38s} | {r['evals_per_s']:8.2f} | "
                             f"{r['evals_per_cpu_s']:11.2f} | {first:9.1f} | {r.get('peak_rss_mb') or 0:11.0f} | "
                             f"{ratio:>12s} |")
    lines.append("")
    kern = report.get("kernel") or {}
    if kern and "error" not in kern:
        lines.append(f"batched kernel, ns per node-step (CPU time, one core, {kern['steps']} steps; "
                     f"roofline = 2 x dfun + matmul(B)):")
        lines.append("| dtype   | B  | dfun/elem | matmul | roofline | integration | ratio | loss (sim+BOLD+FC) | ratio |")
        lines.append("|---------|----|-----------|--------|----------|-------------|-------|--------------------|-------|")
        for key, r in kern["kernel"].items():
            dt, B = key.split("/B=")
            d = kern["roofline"][dt]["dfun_ns_per_element"]
            lines.append(f"| {dt} | {B:>2s} | {d:9.2f} | {r['matmul_ns']:6.1f} | {r['roofline_ns']:8.1f} | "
                         f"{r['integration_ns']:11.1f} | {r['integration_ratio']:5.2f} | {r['loss_ns']:18.1f} | "
                         f"{r['loss_ratio']:5.2f} |")
        c = kern["cma"]
        lines.append("")
        lines.append(f"CMA-ES generation (FCProblem, {cfg['t1_ms'] / 1000:g} s, float64, 16 points): 16 serial "
                     f"problem.fun {c['serial']:.3f} s wall ({c['serial_cpu']:.3f} s CPU); one problem.batch(16) "
                     f"{c['batch']:.3f} s wall ({c['batch_cpu']:.3f} s CPU); batch == serial: {c['agree']}")
        lines.append("")
    lines.append("targets (issue 4):")
    lines += target_lines(report["targets"])
    lines.append("")
    lines.append("notes: evals/s = 64 / median steady wall time of a whole explore() / ParallelExecution.run(); "
                 "evals/CPU-s uses the process CPU time (joblib: plus its workers'). Each row is its own "
                 "process; 'first' includes tracing and compilation. The losses differ by definition (see "
                 "bench_core.py); the cost does not.")
    return "\n".join(lines)


def targets(report):
    out = []
    for precision, goal in (("float64", TARGET_F64), ("float32", TARGET_F32)):
        fb_rows = report["fitbridge"].get(precision, {})
        peer_rows = report["peer"].get(precision, {})
        fb_best = max([r["evals_per_s"] for r in fb_rows.values() if r and "evals_per_s" in r], default=None)
        peer_best = max([r["evals_per_s"] for r in peer_rows.values() if r and "evals_per_s" in r], default=None)
        val = fb_best / peer_best if fb_best and peer_best else None
        out.append((f"grid {precision}: fitbridge best >= {goal:g}x tvboptim best (evals/s)", val,
                    val is not None and val >= goal, f"{val:.2f}x" if val else "-"))
        fb_cpu = max([r["evals_per_cpu_s"] for r in fb_rows.values() if r and "evals_per_cpu_s" in r], default=None)
        peer_cpu = max([r["evals_per_cpu_s"] for r in peer_rows.values() if r and "evals_per_cpu_s" in r],
                       default=None)
        val = fb_cpu / peer_cpu if fb_cpu and peer_cpu else None
        out.append((f"grid {precision}: same, per CPU-second (load-independent)", val,
                    val is not None and val >= goal, f"{val:.2f}x" if val else "-"))
    kern = report.get("kernel") or {}
    if kern and "error" not in kern:
        worst = max(r["loss_ratio"] for k, r in kern["kernel"].items() if not k.endswith("B=1"))
        out.append(("batched loss kernel (B >= 16, f64 and f32) within 2x of its roofline", worst,
                    worst <= TARGET_ROOFLINE, f"{worst:.2f}x the roofline (worst case)"))
        c = kern["cma"]
        sp = c["serial_cpu"] / c["batch_cpu"]
        out.append(("CMA-ES generation of 16 as one batch >= 5x faster than 16 serial calls (CPU time)", sp,
                    sp >= TARGET_CMA, f"{sp:.2f}x ({c['serial'] / c['batch']:.2f}x wall)"))
    else:
        out.append(("batched kernel within 2x of its roofline", None, False, "-"))
        out.append(("CMA-ES generation >= 5x", None, False, "-"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="steady calls per process (default 3, quick 1)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the interleaved sequence, pool samples")
    ap.add_argument("--quick", action="store_true", help="30 s simulated (NOT comparable)")
    ap.add_argument("--out", default=None, help="write everything as JSON")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--no-kernel", action="store_true", help="skip the kernel / CMA process")
    ap.add_argument("--precisions", default="float64,float32")
    ap.add_argument("--configs", default=None,
                    help="comma-separated subset of fitbridge configurations by index (0-based), e.g. 0,2")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep-dir", default=None)
    # worker mode (internal)
    ap.add_argument("--worker", choices=["grid", "kernel"], help=argparse.SUPPRESS)
    add_worker_args(ap, T1_FULL)
    ap.add_argument("--precision", default="float64", help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="jax", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n-jobs", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker_main(a)

    t1 = T1_QUICK if a.quick else T1_FULL
    reps = a.reps if a.reps is not None else (1 if a.quick else 3)
    workdir = make_workdir(a.keep_dir, "fitbridge_grid_")
    precisions = [p for p in a.precisions.split(",") if p]
    configs = dict(FB_CONFIGS)
    if a.configs:
        keys = list(FB_CONFIGS)
        configs = {keys[int(i)]: FB_CONFIGS[keys[int(i)]] for i in a.configs.split(",")}
    report = {**report_header(),
              "config": {"t1_ms": t1, "reps": reps, "rounds": a.rounds, "quick": a.quick, "grid": GRID},
              "fitbridge": {}, "peer": {}}
    peer_py, peer_versions = find_peer(a.no_peer, a.peer_python)
    report["peer_versions"] = peer_versions
    data = workdir / "workload.npz"
    report["data_source"] = workload_data(data, peer_py, peer_versions)
    runs_fb, runs_peer = {}, {}
    for r in range(a.rounds):
        rdir = workdir / f"round{r}"
        rdir.mkdir(exist_ok=True)
        for precision in precisions:
            peer_order = list(PEER_CONFIGS)
            if peer_versions is not None:
                p, v = peer_order[0]
                runs_peer.setdefault((precision, f"n_pmap={p}, n_vmap={v}"), []).append(
                    run_peer_grid(peer_py, p, v, precision, t1, reps, rdir, a.timeout))
            for name, cfg in configs.items():
                runs_fb.setdefault((precision, name), []).append(
                    run_fb(name, cfg, precision, data, t1, reps, rdir, a.timeout))
            if peer_versions is not None:
                for p, v in peer_order[1:]:
                    runs_peer.setdefault((precision, f"n_pmap={p}, n_vmap={v}"), []).append(
                        run_peer_grid(peer_py, p, v, precision, t1, reps, rdir, a.timeout))
    for (precision, name), runs in runs_fb.items():
        report["fitbridge"].setdefault(precision, {})[name] = _merge(runs) or runs[0]
    for (precision, name), runs in runs_peer.items():
        report["peer"].setdefault(precision, {})[name] = _merge(runs) or runs[0]
    if not a.no_kernel:
        report["kernel"] = run_kernel(data, t1, reps, a.quick, workdir, a.timeout)
    report["load_after"] = loadavg()
    report["targets"] = targets(report)
    return emit(report, render(report), a.out, log=log)


if __name__ == "__main__":
    main()
