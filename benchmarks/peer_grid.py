"""The peer's (tvboptim 0.4) grid exploration, timed: ``ParallelExecution`` on an n x n (G, w) grid.

Runs in the PEER environment only (never in fitbridge's)::

    PEER_N_DEV=8 /work/peer/bin/python benchmarks/peer_grid.py --n_pmap 8 --n_vmap 1 --out c.json
    PEER_N_DEV=2 /work/peer/bin/python benchmarks/peer_grid.py --n_pmap 2 --n_vmap 4 --x32 --out c.json

The workload is set up exactly as ``peer_tvboptim_rww.py`` (tvboptim's RWW BOLD FC tutorial on
the 0.4.0 API: dk_average / max, RWW w=0.5, I_o=0.32, S0=0.3, G=0.5, noise sigma 0.00283 from
``key(42)``, Heun dt 4 ms, 90 s, an eager transient run whose result seeds the history, HRF BOLD
TR 1 s, FC after 20 frames, RMSE), and the grid exactly as its section ``c``:
``w = GridAxis(0.001, 0.7, n)``, ``G = GridAxis(0.001, 0.7, n)``, ``Space(mode="product")``,
``ParallelExecution(loss, grid, n_pmap=..., n_vmap=...)``. The script differs from section
``c`` of ``peer_tvboptim_rww.py`` only in its timing: one first run (trace + compile + run),
then ``--reps`` steady runs, each with wall time and process CPU time (``getrusage``, all
threads), and the losses of all points (``--out``).

``PEER_N_DEV`` (default: ``--n_pmap``) is the forced host device count
(``--xla_force_host_platform_device_count``), set before JAX is imported, as tvboptim's
documentation recommends for ``pmap`` on a CPU.
"""

import argparse
import os

parser = argparse.ArgumentParser()
parser.add_argument("--x32", action="store_true", help="float32 (jax_enable_x64 off)")
parser.add_argument("--t1", type=float, default=90_000.0, help="simulated ms")
parser.add_argument("--dt", type=float, default=4.0)
parser.add_argument("--grid", type=int, default=8, help="points per axis")
parser.add_argument("--n_pmap", type=int, default=8)
parser.add_argument("--n_vmap", type=int, default=1)
parser.add_argument("--reps", type=int, default=3, help="steady runs after the first")
parser.add_argument("--out", default="peer_grid.json")
args = parser.parse_args()

N_DEV = int(os.environ.get("PEER_N_DEV", str(args.n_pmap)))
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={N_DEV}")

import copy  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", not args.x32)

import tvboptim  # noqa: E402
from tvboptim.data import load_functional_connectivity, load_structural_connectivity  # noqa: E402
from tvboptim.execution import ParallelExecution  # noqa: E402
from tvboptim.experimental.network_dynamics import Network, prepare  # noqa: E402
from tvboptim.experimental.network_dynamics.coupling import LinearCoupling  # noqa: E402
from tvboptim.experimental.network_dynamics.dynamics.tvb import ReducedWongWang  # noqa: E402
from tvboptim.experimental.network_dynamics.graph import DenseGraph  # noqa: E402
from tvboptim.experimental.network_dynamics.noise import AdditiveNoise  # noqa: E402
from tvboptim.experimental.network_dynamics.solvers import Heun  # noqa: E402
from tvboptim.observations.observation import compute_fc, rmse  # noqa: E402
from tvboptim.observations.tvb_monitors.bold import HRFBold  # noqa: E402
from tvboptim.types import GridAxis, Space  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


R = {"config": vars(args), "n_devices": len(jax.devices()), "cpu_count": os.cpu_count(),
     "versions": {"tvboptim": getattr(tvboptim, "__version__", None), "jax": jax.__version__}}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    weights, lengths, labels = load_structural_connectivity(name="dk_average")
    weights = weights / np.max(weights)
    fc_target = load_functional_connectivity(name="dk_average")
    dynamics = ReducedWongWang(w=0.5, I_o=0.32, INITIAL_STATE=(0.3,))
    coupling = LinearCoupling(incoming_states="S", G=0.5)
    graph = DenseGraph(weights, region_labels=labels)
    noise = AdditiveNoise(sigma=0.00283, apply_to="S", key=jax.random.key(42))
    network = Network(dynamics, {"instant": coupling}, graph, noise=noise)
    model, state = prepare(network, Heun(), t1=args.t1, dt=args.dt)
    result_init = jax.block_until_ready(model(state))  # eager transient run, as in the tutorial
    network.update_history(result_init)
    model, state = prepare(network, Heun(), t1=args.t1, dt=args.dt)
    bold_monitor = HRFBold(period=1000.0, downsample_period=4.0, voi=0, history=result_init)

    def loss(state):
        return rmse(compute_fc(bold_monitor(model(state)), skip_t=20), fc_target)

    n = args.grid
    grid_state = copy.deepcopy(state)
    grid_state.dynamics.w = GridAxis(0.001, 0.7, n)
    grid_state.coupling.instant.G = GridAxis(0.001, 0.7, n)
    grid = Space(grid_state, mode="product")
    t = time.perf_counter()
    ex = ParallelExecution(loss, grid, n_pmap=args.n_pmap, n_vmap=args.n_vmap)
    R["build_s"] = time.perf_counter() - t
    c, t = cpu_s(), time.perf_counter()
    res = ex.run()
    R["first_run_s"], R["first_run_cpu_s"] = time.perf_counter() - t, cpu_s() - c
    walls, cpus = [], []
    for _ in range(args.reps):
        c, t = cpu_s(), time.perf_counter()
        res = ex.run()
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_s() - c)
    vals = np.array([float(v) for v in res])
    df = res.to_dataframe()
    gcol = [k for k in df.columns if k.endswith("G")][0]
    wcol = [k for k in df.columns if k.endswith(".w") or k == "w"][0]
R.update({
    "n_evals": n * n,
    "steady_all_s": walls, "steady_cpu_all_s": cpus,
    "steady_s": statistics.median(walls), "steady_cpu_s": statistics.median(cpus),
    "evals_per_s": n * n / statistics.median(walls),
    "evals_per_cpu_s": n * n / statistics.median(cpus),
    "loss_min": float(np.nanmin(vals)), "n_nan": int(np.isnan(vals).sum()),
    "points": {"G": df[gcol].to_numpy(float).tolist(), "w": df[wcol].to_numpy(float).tolist(),
               "loss": vals.tolist()},
    "dtype": "float32" if args.x32 else "float64",
    "peak_rss_mb": peak_rss_mb(),
})
with open(args.out, "w") as fh:
    json.dump(R, fh, indent=1)
print(f"peer grid {n}x{n} n_pmap={args.n_pmap} n_vmap={args.n_vmap} {R['dtype']}: "
      f"{R['evals_per_s']:.2f} evals/s (steady median {R['steady_s']:.2f} s, first {R['first_run_s']:.1f} s)")
