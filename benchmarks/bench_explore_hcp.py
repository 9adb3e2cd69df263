"""The 16 x 16 (G, w) exploration on the embedded HCP data against the time the grid benchmark
predicts for it, measured in ONE run (issue 4, "done means")::

    python benchmarks/bench_explore_hcp.py                 # ~2-4 min on 2 cores
    python benchmarks/bench_explore_hcp.py --precision float32 --out hcp16
    python benchmarks/bench_explore_hcp.py --config "1 device, chunk 16 (default)"

1. **Rate.** ``bench_grid.py``'s own worker runs its 8 x 8 grid of the core workload (84 nodes,
   90 s, HRF BOLD, FC, RMSE; a seeded random connectome, since the cost does not depend on the
   data) in the chosen configuration (default: fitbridge's fastest, two host devices with chunks
   of 64): compile time (first call minus a steady call) and evaluations per second.
2. **Prediction** for 256 points on the HCP connectome (80 nodes; the cost per point scales
   with the nodes): ``steady = 256 / rate * 80 / 84``, ``first = steady + compile``.
3. **The exploration.** A fresh process with the same configuration builds an ``FCProblem`` on
   ``fb.datasets.load("hcp")`` (group SC / max, group FC of all subjects, the same simulation:
   Heun dt 4 ms, 90 s, sigma 0.00283, HRF BOLD at the HCP TR of 720 ms, 20 frames dropped,
   loss 1 - corr), calls ``fb.explore`` on ``{"G": linspace(0.001, 0.7, 16), "w": ...}`` with
   ``save_to`` (parquet, or CSV without pyarrow), times the first call and one steady call,
   and draws the landscape heatmap (``fb.plots.landscape``) with the best cell marked.

The table gives predicted and measured seconds and their ratio; the check passes when the
measured time is within 25% of the prediction (``--tolerance``). Files go to ``--out``
(default: a temporary directory, printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_grid as bg  # noqa: E402
from _common import (  # noqa: E402
    clean_env, loadavg, machine_line, random_workload, report_header, run_child,
)

N_HCP = 80
GRID = 16
TR_HCP = 720.0
DEFAULT_CONFIG = "2 host devices, chunk 64"


def _hcp_problem(t1):
    import numpy as np

    import fitbridge as fb

    data = fb.datasets.load("hcp")
    net = fb.Network(fb.models.ReducedWongWang(G=bg.G0, w=bg.W0, I_o=bg.I_O), data.weights, normalize="max")
    sim = fb.Simulation(net, dt=bg.DT, duration=t1, noise=fb.AdditiveNoise(bg.SIGMA),
                        bold=fb.bold.HRF(tr=TR_HCP), initial_state=[bg.S0], seed=bg.SEED)
    return fb.FCProblem(sim, np.asarray(data.fc), loss="1-corr", skip=bg.SKIP,
                        free={"G": fb.Free(bg.G0, bounds=(0.0, 1.0)), "w": fb.Free(bg.W0, bounds=(0.0, 1.0))})


def _worker_hcp(a):
    import numpy as np

    import fitbridge as fb

    problem = _hcp_problem(a.t1)
    axis = np.linspace(bg.GRID_LO, bg.GRID_HI, GRID)
    opts = bg.explore_options(a)
    out = Path(a.out_dir)
    table = out / f"hcp16_{a.precision}"  # .parquet with pyarrow, else .csv
    times = []
    for call in range(2):  # first (compile + run), then steady; each call rewrites the table
        t = time.perf_counter()
        frame = fb.explore(problem, {"G": axis, "w": axis}, save_to=table, **opts)
        times.append(time.perf_counter() - t)
    saved = sorted(p.name for p in out.iterdir() if p.name.startswith(f"hcp16_{a.precision}"))
    best = frame.loc[frame["fc_r"].idxmax()]
    figure = out / f"hcp16_{a.precision}_landscape.png"
    try:
        import matplotlib

        matplotlib.use("Agg")
        ax = fb.plots.landscape(frame, "G", "w", "fc_r",
                                title=f"HCP 16 x 16, 90 s, {a.precision}: FC r (best marked)")
        ax.figure.savefig(figure, dpi=120, bbox_inches="tight")
        figure_name = figure.name
    except ImportError:
        figure_name = None  # plots extra not installed
    return {"first_s": times[0], "steady_s": times[1], "n_evals": len(frame), "files": saved,
            "figure": figure_name, "best": {"G": float(best["G"]), "w": float(best["w"]),
                                            "fc_r": float(best["fc_r"])},
            "n_nan": int(frame["loss"].isna().sum())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", choices=["float64", "float32"], default="float64")
    ap.add_argument("--config", default=DEFAULT_CONFIG, choices=list(bg.FB_CONFIGS),
                    help="one of bench_grid.py's fitbridge configurations")
    ap.add_argument("--reps", type=int, default=2, help="steady calls of the 8 x 8 rate measurement")
    ap.add_argument("--tolerance", type=float, default=0.25)
    ap.add_argument("--out", default=None, help="directory for the table, the heatmap and the JSON")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--quick", action="store_true", help="30 s simulated (smoke run)")
    # internal: the exploration worker
    ap.add_argument("--worker", choices=["hcp"], help=argparse.SUPPRESS)
    ap.add_argument("--t1", type=float, default=bg.T1_FULL, help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="jax", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n-jobs", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        Path(a.json).write_text(json.dumps(_worker_hcp(a), indent=1))
        return 0

    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="fb_hcp16_"))
    out.mkdir(parents=True, exist_ok=True)
    t1 = bg.T1_QUICK if a.quick else bg.T1_FULL
    backend, n_dev, chunk, n_jobs = bg.FB_CONFIGS[a.config]
    report = report_header()
    data = random_workload(out / "workload.npz")

    print(f"[hcp16] rate: bench_grid {a.config}, {a.precision} ...", file=sys.stderr, flush=True)
    rate = bg.run_fb(a.config, bg.FB_CONFIGS[a.config], a.precision, data, t1, a.reps, out, a.timeout)
    if "error" in rate:
        print(f"rate measurement failed: {rate['error']}\n{rate.get('output_tail', '')}")
        return 1
    compile_s = max(rate["first_s"] - rate["steady_s"], 0.0)
    steady_pred = GRID * GRID / rate["evals_per_s"] * N_HCP / bg.N_NODES
    first_pred = steady_pred + compile_s

    print(f"[hcp16] 16 x 16 exploration on HCP, {a.config}, {a.precision} ...", file=sys.stderr, flush=True)
    res_json = out / f"hcp16_{a.precision}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "hcp", "--t1", str(t1),
           "--precision", a.precision, "--backend", backend, "--out-dir", str(out), "--json", str(res_json)]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    if n_jobs:
        cmd += ["--n-jobs", str(n_jobs)]
    env = clean_env(**({"XLA_FLAGS": f"--xla_force_host_platform_device_count={n_dev}"} if n_dev > 1 else {}))
    rc, _, _, tail = run_child(cmd, env, out, a.timeout)
    if rc != 0 or not res_json.exists():
        print(f"exploration failed (rc={rc}):\n{tail}")
        return 1
    hcp = json.loads(res_json.read_text())

    report["load_after"] = loadavg()
    lines = [
        f"workload: 16 x 16 (G, w) in [{bg.GRID_LO}, {bg.GRID_HI}] on HCP (80 nodes), RWW, Heun dt {bg.DT:g} ms, "
        f"{t1 / 1000:g} s, HRF BOLD TR {TR_HCP:g} ms, FC (skip {bg.SKIP}), 1 - corr; {a.precision}; "
        f"fitbridge {a.config}" + ("  [QUICK: not the 90 s workload]" if a.quick else ""),
        machine_line(report),
        f"versions: {report['versions']}",
        f"command: python benchmarks/bench_explore_hcp.py {' '.join(argv if argv is not None else sys.argv[1:])}",
        "",
        f"rate (bench_grid 8 x 8, 84 nodes): {rate['evals_per_s']:.2f} evals/s steady "
        f"(median of {a.reps}), compile {compile_s:.2f} s",
        "",
        "| call of fb.explore (256 points) | predicted s | measured s | measured / predicted |",
        "|---|---|---|---|",
        f"| first (compile + run) | {first_pred:.2f} | {hcp['first_s']:.2f} | {hcp['first_s'] / first_pred:.2f} |",
        f"| steady | {steady_pred:.2f} | {hcp['steady_s']:.2f} | {hcp['steady_s'] / steady_pred:.2f} |",
        "",
        f"best cell: G = {hcp['best']['G']:.3f}, w = {hcp['best']['w']:.3f}, FC r = {hcp['best']['fc_r']:.3f}; "
        f"NaN losses {hcp['n_nan']}; written to {out}: {', '.join(hcp['files'])}"
        + (f", {hcp['figure']}" if hcp["figure"] else " (no heatmap: install the plots extra)"),
    ]
    worst = max(hcp["first_s"] / first_pred, hcp["steady_s"] / steady_pred)
    verdict = "PASS" if worst <= 1.0 + a.tolerance else "MISS"
    lines.append(f"{verdict}  16 x 16 exploration within {a.tolerance:.0%} of the predicted time "
                 f"(worst measured / predicted {worst:.2f})")
    text = "\n".join(lines)
    print(text)
    (out / f"hcp16_{a.precision}_report.json").write_text(json.dumps(
        {**report, "rate": {k: v for k, v in rate.items() if k != "points"}, "hcp": hcp,
         "predicted": {"first_s": first_pred, "steady_s": steady_pred}, "table": text}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
