"""The peer's (tvboptim 0.4) forward loss or reverse gradient on a given connectome, timed.

Runs in the PEER environment only (one measurement per process, so its peak RSS is its own)::

    /work/peer/bin/python benchmarks/peer_scaling.py --data w.npz --mode forward --t1 30000 --out f.json

The workload is ``peer_tvboptim_rww.py``'s (RWW w=0.5, I_o=0.32, S0=0.3, G=0.5, noise sigma
0.00283 from ``key(42)``, Heun dt 4 ms, an eager transient run whose result seeds the history,
HRF BOLD TR 1 s, FC after ``--skip`` frames, RMSE) on the ``weights`` (divided by their maximum)
and target ``fc`` of ``--data`` instead of ``dk_average``. ``--mode reverse`` times
``jit(value_and_grad)`` w.r.t. (G, w), as section ``b`` of that script.
"""

import argparse
import os

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True, help=".npz with weights (n, n) and fc (n, n)")
parser.add_argument("--mode", choices=["forward", "reverse"], default="forward")
parser.add_argument("--t1", type=float, default=30_000.0)
parser.add_argument("--dt", type=float, default=4.0)
parser.add_argument("--skip", type=int, default=20)
parser.add_argument("--reps", type=int, default=3)
parser.add_argument("--out", default="peer_scaling.json")
args = parser.parse_args()
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1"

import copy  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import tvboptim  # noqa: E402
from tvboptim.experimental.network_dynamics import Network, prepare  # noqa: E402
from tvboptim.experimental.network_dynamics.coupling import LinearCoupling  # noqa: E402
from tvboptim.experimental.network_dynamics.dynamics.tvb import ReducedWongWang  # noqa: E402
from tvboptim.experimental.network_dynamics.graph import DenseGraph  # noqa: E402
from tvboptim.experimental.network_dynamics.noise import AdditiveNoise  # noqa: E402
from tvboptim.experimental.network_dynamics.solvers import Heun  # noqa: E402
from tvboptim.observations.observation import compute_fc, rmse  # noqa: E402
from tvboptim.observations.tvb_monitors.bold import HRFBold  # noqa: E402
from tvboptim.types import Parameter  # noqa: E402
from tvboptim.types.stateutils import combine_state, partition_state  # noqa: E402


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


data = np.load(args.data)
weights = np.asarray(data["weights"], np.float64)
weights = weights / np.max(weights)
fc_target = np.asarray(data["fc"], np.float64)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    dynamics = ReducedWongWang(w=0.5, I_o=0.32, INITIAL_STATE=(0.3,))
    coupling = LinearCoupling(incoming_states="S", G=0.5)
    noise = AdditiveNoise(sigma=0.00283, apply_to="S", key=jax.random.key(42))
    network = Network(dynamics, {"instant": coupling}, DenseGraph(weights), noise=noise)
    model, state = prepare(network, Heun(), t1=args.t1, dt=args.dt)
    result_init = jax.block_until_ready(model(state))
    network.update_history(result_init)
    model, state = prepare(network, Heun(), t1=args.t1, dt=args.dt)
    bold = HRFBold(period=1000.0, downsample_period=args.dt, voi=0, history=result_init)

    def loss(s):
        return rmse(compute_fc(bold(model(s)), skip_t=args.skip), fc_target)

    if args.mode == "forward":
        fn, arg = jax.jit(loss), state
    else:
        gstate = copy.deepcopy(state)
        gstate.coupling.instant.G = Parameter(gstate.coupling.instant.G)
        gstate.dynamics.w = Parameter(gstate.dynamics.w)
        diff, static = partition_state(gstate)
        fn, arg = jax.jit(jax.value_and_grad(lambda d: loss(combine_state(d, static)))), diff
    c, t = cpu_s(), time.perf_counter()
    out = jax.block_until_ready(fn(arg))
    first = time.perf_counter() - t
    walls, cpus = [], []
    for _ in range(args.reps):
        c, t = cpu_s(), time.perf_counter()
        out = jax.block_until_ready(fn(arg))
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_s() - c)
value = out if args.mode == "forward" else out[0]
R = {"mode": args.mode, "n_nodes": int(weights.shape[0]), "t1_ms": args.t1, "first_s": first,
     "steady_all_s": walls, "steady_cpu_all_s": cpus, "steady_s": statistics.median(walls),
     "steady_cpu_s": statistics.median(cpus), "loss": float(value),
     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
     "versions": {"tvboptim": getattr(tvboptim, "__version__", None), "jax": jax.__version__}}
with open(args.out, "w") as fh:
    json.dump(R, fh, indent=1)
print(f"peer {args.mode} n={R['n_nodes']}: {R['steady_s']:.3f} s (CPU {R['steady_cpu_s']:.3f} s), "
      f"peak RSS {R['peak_rss_mb']:.0f} MB")
