"""Explore a (G, w) grid of the Reduced Wong-Wang model on the embedded HCP data with Dask.

By default a ``LocalCluster`` of worker processes on this machine (loopback only); pass a
scheduler address to use a real cluster instead::

    python examples/dask_scaleout.py                               # local, 2 workers, 8 x 8 grid
    python examples/dask_scaleout.py --address tcp://10.0.0.5:8786 --grid 16
    python examples/dask_scaleout.py --quick                       # 2 x 2 smoke run (threads)

A real cluster is started with ``dask scheduler`` on one node and
``dask worker tcp://<scheduler>:8786 --nworkers 1 --nthreads 1`` on the others (one worker
per GPU or per few cores); every node needs fitbridge installed with the same versions.
Workers rebuild the problem from ``build_problem`` (the recipe shipped to them) and evaluate
whole chunks; a worker that dies has its chunks resubmitted. Results are written to
``--out``: the grid table (Parquet or CSV), ``landscape.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

import fitbridge as fb
from fitbridge import explore, save_table as save


def build_problem(duration: float, seed: int) -> fb.FCProblem:
    """The recipe: the same problem in the client and in every worker."""
    data = fb.datasets.load("hcp")
    net = fb.Network(fb.models.ReducedWongWang(), data.weights, normalize="max")
    sim = fb.Simulation(net, dt=4.0, duration=duration, transient=0.0,
                        noise=fb.AdditiveNoise(0.00283), bold=fb.bold.HRF(tr=data.tr), seed=seed)
    free = {"G": fb.Free(0.2, bounds=(0.0, 1.0)), "w": fb.Free(0.4, bounds=(0.0, 1.0))}
    return fb.FCProblem(sim, data.fc, free=free, loss="1-corr")


def connect(args):
    """A client of the given scheduler, or of a new loopback LocalCluster."""
    from distributed import Client, LocalCluster

    if args.address:
        return Client(args.address), None
    if args.quick:  # threads in this process: the smoke run skips starting worker processes
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                               dashboard_address=None)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
    return Client(cluster), cluster


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="scheduler address, e.g. tcp://10.0.0.5:8786 "
                        "(default: a LocalCluster on this machine)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default 2)")
    parser.add_argument("--grid", type=int, default=8, help="points per axis (default 8)")
    parser.add_argument("--duration", type=float, default=150_000.0, help="simulated ms")
    parser.add_argument("--chunk", type=int, default=None, help="points per task (default: auto)")
    parser.add_argument("--precision", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="fitbridge-dask")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 x 2 grid, 40 s simulated, one in-process worker")
    args = parser.parse_args(argv)
    if args.quick:
        args.grid, args.duration, args.workers = 2, 40_000.0, 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    problem = build_problem(args.duration, args.seed)
    grid = {"G": np.linspace(0.05, 0.6, args.grid), "w": np.linspace(0.05, 0.9, args.grid)}
    client, cluster = connect(args)
    try:
        print(f"dask: {len(client.scheduler_info()['workers'])} worker(s) at "
              f"{client.scheduler.address}")
        start = time.perf_counter()
        frame = explore(problem, grid, backend="dask", scheduler=client, chunk_size=args.chunk,
                        recipe=functools.partial(build_problem, args.duration, args.seed),
                        precision=args.precision)
        wall = time.perf_counter() - start
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    table = save(frame, out / "grid")
    best = frame.loc[frame["fc_r"].idxmax()] if frame["fc_r"].notna().any() else frame.iloc[0]
    print(f"{len(frame)} points in {wall:.1f} s: {len(frame) / wall:.2f} evaluations/s "
          f"(compilation included); best FC r = {best['fc_r']:.3f} at G = {best['G']:.3f}, "
          f"w = {best['w']:.3f}; table in {table}")
    figures = []
    try:
        from fitbridge import plots

        ax = plots.landscape(frame, x="G", y="w", value="fc_r")
        ax.figure.savefig(out / "landscape.png", dpi=110)
        figures.append("landscape.png")
    except ImportError:
        print("matplotlib is not installed: no landscape figure")
    summary = {"points": len(frame), "wall_time_s": wall, "evals_per_s": len(frame) / wall,
               "best": {k: float(best[k]) for k in ("G", "w", "fc_r", "loss")},
               "table": table.name, "figures": figures, "address": args.address or "LocalCluster"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
