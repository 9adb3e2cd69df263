# Copied unchanged (below this header) from the project's shared/bench/peer_tvboptim_rww.py,
# the peer-side workload script written for fitbridge's benchmark. It targets tvboptim 0.4.0
# and must run in the PEER environment (e.g. .peer/bin/python), never in fitbridge's own.
# benchmarks/run_peer.py drives it section by section in separate processes.

"""Baseline benchmark of the peer package `tvboptim` on its RWW -> BOLD -> FC workflow.

Reproduces the tvboptim "Reduced Wong-Wang BOLD FC Optimization" tutorial
(docs/workflows/RWW.qmd) adapted to the installed API (tvboptim 0.4.0) and
times each stage, separating first-call (trace + compile + run) from
steady-state runs.

Usage (run from any directory; results go to --out, a relative path is fine):
    python tvboptim_rww.py --sections a,b        --out res_x64_ab.json
    python tvboptim_rww.py --sections c          --out res_x64_c.json
    python tvboptim_rww.py --sections d          --out res_x64_d.json
    python tvboptim_rww.py --sections a,b --x32  --out res_x32_ab.json

Sections:
    a  forward sim (90 s @ dt=4 ms, 84 nodes) + HRF BOLD + FC + RMSE loss
    b  value_and_grad of the loss w.r.t. (G, w): reverse mode and forward mode
    c  grid exploration with ParallelExecution (pmap) and SequentialExecution
    d  Adam on global (G, w), then on heterogeneous w (84 params)
Peak RSS of the process is reported at the end of every section.
"""

import os

N_DEV = int(os.environ.get("PEER_N_DEV", "8"))
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEV}"
)

import argparse
import copy
import json
import platform
import resource
import statistics
import sys
import time
import warnings

parser = argparse.ArgumentParser()
parser.add_argument("--sections", default="a,b,c,d")
parser.add_argument("--x32", action="store_true", help="float32 (jax_enable_x64 off)")
parser.add_argument("--t1", type=float, default=90_000.0, help="simulated ms")
parser.add_argument("--dt", type=float, default=4.0)
parser.add_argument("--grids", default="4,8", help="grid sizes per axis for section c")
parser.add_argument("--n_pmap", type=int, default=8)
parser.add_argument("--n_vmap", type=int, default=1)
parser.add_argument("--seq", default="4", help="grid sizes for SequentialExecution")
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--reps", type=int, default=5)
parser.add_argument("--out", default="results.json")
args = parser.parse_args()

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", not args.x32)

import tvboptim
from tvboptim.data import load_functional_connectivity, load_structural_connectivity
from tvboptim.execution import ParallelExecution, SequentialExecution
from tvboptim.experimental.network_dynamics import Network, prepare
from tvboptim.experimental.network_dynamics.coupling import LinearCoupling
from tvboptim.experimental.network_dynamics.dynamics.tvb import ReducedWongWang
from tvboptim.experimental.network_dynamics.graph import DenseGraph
from tvboptim.experimental.network_dynamics.noise import AdditiveNoise
from tvboptim.experimental.network_dynamics.solvers import Heun
from tvboptim.observations.observation import compute_fc, fc_corr, rmse
from tvboptim.observations.tvb_monitors.bold import HRFBold
from tvboptim.optim.optax import OptaxOptimizer, value_and_grad_fwd
from tvboptim.types import GridAxis, Parameter, Space
from tvboptim.types.stateutils import combine_state, partition_state

R = {
    "config": vars(args),
    "versions": {
        "python": platform.python_version(),
        "tvboptim": getattr(tvboptim, "__version__", None),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "optax": optax.__version__,
        "numpy": np.__version__,
    },
    "devices": [str(d) for d in jax.devices()],
    "cpu_count": os.cpu_count(),
    "warnings": [],
}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def log(*a):
    print(*a, flush=True)


def tic():
    return time.perf_counter()


def block(x):
    return jax.block_until_ready(x)


IU = None


def fc_r(fc, target):
    """Pearson correlation of the upper triangles (k=1)."""
    fc = np.asarray(fc)
    target = np.asarray(target)
    return float(np.corrcoef(fc[IU], target[IU])[0, 1])


def timed_calls(fn, *a, reps=5):
    t = tic()
    out = block(fn(*a))
    first = tic() - t
    ts = []
    for _ in range(reps):
        t = tic()
        out = block(fn(*a))
        ts.append(tic() - t)
    return out, first, statistics.median(ts), ts


# ---------------------------------------------------------------- setup ----
with warnings.catch_warnings(record=True) as wlist:
    warnings.simplefilter("always")
    t_setup = tic()
    weights, lengths, labels = load_structural_connectivity(name="dk_average")
    weights = weights / np.max(weights)
    n_nodes = weights.shape[0]
    fc_target = load_functional_connectivity(name="dk_average")
    IU = np.triu_indices(n_nodes, k=1)

    dynamics = ReducedWongWang(w=0.5, I_o=0.32, INITIAL_STATE=(0.3,))
    coupling = LinearCoupling(incoming_states="S", G=0.5)
    graph = DenseGraph(weights, region_labels=labels)
    noise = AdditiveNoise(sigma=0.00283, apply_to="S", key=jax.random.key(42))
    network = Network(dynamics, {"instant": coupling}, graph, noise=noise)

    t1, dt = args.t1, args.dt
    model, state = prepare(network, Heun(), t1=t1, dt=dt)
    t = tic()
    result_init = block(model(state))  # eager transient run, as in the tutorial
    R["setup_transient_eager_s"] = tic() - t
    network.update_history(result_init)
    model, state = prepare(network, Heun(), t1=t1, dt=dt)
    bold_monitor = HRFBold(
        period=1000.0, downsample_period=4.0, voi=0, history=result_init
    )
    R["setup_total_s"] = tic() - t_setup
    R["n_steps"] = int(round(t1 / dt))
    R["n_nodes"] = int(n_nodes)
    R["dtype"] = str(jnp.asarray(state.dynamics.w).dtype)

    def observation(state):
        return compute_fc(bold_monitor(model(state)), skip_t=20)

    def loss(state):
        return rmse(observation(state), fc_target)

    obs_jit = jax.jit(observation)
    loss_jit = jax.jit(loss)

    sections = args.sections.split(",")
    log(f"setup done in {R['setup_total_s']:.2f}s dtype={R['dtype']} "
        f"n_steps={R['n_steps']} devices={len(jax.devices())}")

    # ----------------------------------------------------------- (a) ------
    if "a" in sections:
        R["load_before_a"] = loadavg()
        _cpu0 = cpu_s()
        _wall0 = tic()
        _, first, med, ts = timed_calls(loss_jit, state, reps=args.reps)
        fc0 = obs_jit(state)
        R["a_forward"] = {
            "first_call_s": first,
            "steady_median_s": med,
            "steady_all_s": ts,
            "compile_est_s": first - med,
            "loss_rmse_init": float(loss_jit(state)),
            "fc_r_upper_init": fc_r(fc0, fc_target),
            "fc_corr_tvboptim_init": float(fc_corr(fc0, fc_target)),
            "simulated_s_per_wall_s": (t1 / 1000.0) / med,
        }
        # un-jitted tutorial-style call (model() is not jitted by prepare)
        t = tic()
        block(loss(state))
        R["a_forward"]["eager_unjitted_call_s"] = tic() - t
        R["a_forward"]["peak_rss_mb"] = peak_rss_mb()
        log("a:", json.dumps(R["a_forward"], indent=None)[:400])
        R["section_a_cpu_s"], R["section_a_wall_s"] = cpu_s() - _cpu0, tic() - _wall0

    # ----------------------------------------------------------- (b) ------
    if "b" in sections:
        R["load_before_b"] = loadavg()
        _cpu0 = cpu_s()
        _wall0 = tic()
        gstate = copy.deepcopy(state)
        gstate.coupling.instant.G = Parameter(gstate.coupling.instant.G)
        gstate.dynamics.w = Parameter(gstate.dynamics.w)
        diff, static = partition_state(gstate)

        def loss_diff(d):
            return loss(combine_state(d, static))

        vg_rev = jax.jit(jax.value_and_grad(loss_diff))
        (val, g), first, med, ts = timed_calls(vg_rev, diff, reps=args.reps)
        R["b_grad_rev"] = {
            "first_call_s": first,
            "steady_median_s": med,
            "steady_all_s": ts,
            "loss": float(val),
            "dG": float(jnp.asarray(g.coupling.instant.G)),
            "dw": float(jnp.asarray(g.dynamics.w)),
            "peak_rss_mb": peak_rss_mb(),
        }
        log("b rev:", R["b_grad_rev"])
        # the form OptaxOptimizer actually uses: value_and_grad of a jitted loss
        vg_rev2 = jax.value_and_grad(jax.jit(loss_diff))
        (val2, g2), first, med, ts = timed_calls(vg_rev2, diff, reps=args.reps)
        R["b_grad_rev_vg_of_jit"] = {
            "first_call_s": first,
            "steady_median_s": med,
            "steady_all_s": ts,
            "loss": float(val2),
            "peak_rss_mb": peak_rss_mb(),
        }
        log("b rev vg(jit):", R["b_grad_rev_vg_of_jit"])
        # forward mode as offered by tvboptim (OptaxOptimizer mode="fwd")
        vg_fwd = jax.jit(value_and_grad_fwd(loss_diff))
        ((val_f, _), g_f), first, med, ts = timed_calls(vg_fwd, diff, reps=args.reps)
        R["b_grad_fwd"] = {
            "first_call_s": first,
            "steady_median_s": med,
            "steady_all_s": ts,
            "loss": float(val_f),
            "dG": float(jnp.asarray(g_f.coupling.instant.G)),
            "dw": float(jnp.asarray(g_f.dynamics.w)),
            "peak_rss_mb": peak_rss_mb(),
        }
        log("b fwd:", R["b_grad_fwd"])
        R["section_b_cpu_s"], R["section_b_wall_s"] = cpu_s() - _cpu0, tic() - _wall0

    # ----------------------------------------------------------- (c) ------
    if "c" in sections:
        R["load_before_c"] = loadavg()
        _cpu0 = cpu_s()
        _wall0 = tic()
        R["c_grid"] = {}
        for n in [int(x) for x in args.grids.split(",") if x]:
            grid_state = copy.deepcopy(state)
            grid_state.dynamics.w = GridAxis(0.001, 0.7, n)
            grid_state.coupling.instant.G = GridAxis(0.001, 0.7, n)
            grid = Space(grid_state, mode="product")
            t = tic()
            ex = ParallelExecution(loss, grid, n_pmap=args.n_pmap, n_vmap=args.n_vmap)
            t_build = tic() - t
            t = tic()
            res = ex.run()
            first = tic() - t
            t = tic()
            res = ex.run()
            second = tic() - t
            vals = np.array([float(v) for v in res])
            best = {}
            try:
                df = res.to_dataframe()
                i = int(np.nanargmin(vals))
                row = df.iloc[i]
                best = {k: float(row[k]) for k in df.columns if "G" in k or "w" in k}
                bstate = copy.deepcopy(state)
                bstate.coupling.instant.G = jnp.asarray(row[[k for k in df.columns if k.endswith("G")][0]])
                bstate.dynamics.w = jnp.asarray(row[[k for k in df.columns if k.endswith(".w") or k == "w"][0]])
                best["fc_r_upper"] = fc_r(obs_jit(bstate), fc_target)
                best["loss"] = float(vals[i])
            except Exception as e:  # noqa: BLE001
                best = {"error": repr(e)[:200]}
            R["c_grid"][f"parallel_{n}x{n}_npmap{args.n_pmap}_nvmap{args.n_vmap}"] = {
                "n_evals": n * n,
                "build_s": t_build,
                "first_run_s": first,
                "second_run_s": second,
                "evals_per_s_first": n * n / first,
                "evals_per_s_steady": n * n / second,
                "loss_min": float(np.nanmin(vals)),
                "loss_max": float(np.nanmax(vals)),
                "n_nan": int(np.isnan(vals).sum()),
                "best": best,
                "peak_rss_mb": peak_rss_mb(),
            }
            log("c:", n, R["c_grid"][f"parallel_{n}x{n}_npmap{args.n_pmap}_nvmap{args.n_vmap}"])
        for n in [int(x) for x in args.seq.split(",") if x]:
            grid_state = copy.deepcopy(state)
            grid_state.dynamics.w = GridAxis(0.001, 0.7, n)
            grid_state.coupling.instant.G = GridAxis(0.001, 0.7, n)
            grid = Space(grid_state, mode="product")
            for label, fn in (("jitted_loss", loss_jit), ("raw_loss_as_tutorial", loss)):
                t = tic()
                res = SequentialExecution(fn, grid).run()
                el = tic() - t
                R["c_grid"][f"sequential_{n}x{n}_{label}"] = {
                    "n_evals": n * n,
                    "run_s": el,
                    "evals_per_s": n * n / el,
                    "peak_rss_mb": peak_rss_mb(),
                }
                log("c seq:", label, R["c_grid"][f"sequential_{n}x{n}_{label}"])

        R["section_c_cpu_s"], R["section_c_wall_s"] = cpu_s() - _cpu0, tic() - _wall0

    # ----------------------------------------------------------- (d) ------
    if "d" in sections:
        R["load_before_d"] = loadavg()
        _cpu0 = cpu_s()
        _wall0 = tic()

        def make_timing_cb(store):
            def cb(step, diff_state, static_state, fitting_data, aux, loss_value, grads):
                # block on everything the step produced so per-step wall times are honest
                jax.block_until_ready((diff_state, grads, loss_value))
                store.append((tic(), float(loss_value)))
                return False, diff_state, static_state

            return cb

        ostate = copy.deepcopy(state)
        ostate.coupling.instant.G = Parameter(ostate.coupling.instant.G)
        ostate.dynamics.w = Parameter(ostate.dynamics.w)
        fc_init = obs_jit(state)
        rec = []
        opt = OptaxOptimizer(loss, optax.adam(0.01, b2=0.9999), callback=make_timing_cb(rec))
        t0 = tic()
        fitted, _ = opt.run(ostate, max_steps=args.steps)
        total = tic() - t0
        stamps = [t0] + [r[0] for r in rec]
        per_step = np.diff(stamps)
        fc_fit = obs_jit(fitted)
        R["d_adam_global"] = {
            "note": "step 1 and step 2 both compile: Parameter(0.5) is weak-typed, "
            "optax.apply_updates returns a strong-typed array -> jit cache miss",
            "steps": args.steps,
            "total_s": total,
            "first_step_s": float(per_step[0]),
            "steady_median_step_s": float(np.median(per_step[1:])),
            "per_step_s": per_step.tolist(),
            "loss_trace": [r[1] for r in rec],
            "G_fit": float(jnp.asarray(fitted.coupling.instant.G)),
            "w_fit": float(jnp.asarray(fitted.dynamics.w)),
            "fc_r_upper_init": fc_r(fc_init, fc_target),
            "fc_r_upper_fitted": fc_r(fc_fit, fc_target),
            "loss_fitted": float(loss_jit(fitted)),
            "peak_rss_mb": peak_rss_mb(),
        }
        log("d global:", R["d_adam_global"])

        het = copy.deepcopy(fitted)
        het.dynamics.w.shape = (n_nodes,)
        het.coupling.instant.G = jnp.asarray(het.coupling.instant.G)  # fixed
        rec = []
        opt = OptaxOptimizer(loss, optax.adam(0.004, b2=0.999), callback=make_timing_cb(rec))
        t0 = tic()
        fitted_het, _ = opt.run(het, max_steps=args.steps)
        total = tic() - t0
        stamps = [t0] + [r[0] for r in rec]
        per_step = np.diff(stamps)
        fc_het = obs_jit(fitted_het)
        R["d_adam_het_w"] = {
            "n_params": int(np.size(jnp.asarray(fitted_het.dynamics.w))),
            "steps": args.steps,
            "total_s": total,
            "first_step_s": float(per_step[0]),
            "steady_median_step_s": float(np.median(per_step[1:])),
            "per_step_s": per_step.tolist(),
            "loss_trace": [r[1] for r in rec],
            "fc_r_upper_fitted": fc_r(fc_het, fc_target),
            "peak_rss_mb": peak_rss_mb(),
        }
        log("d het:", R["d_adam_het_w"])
        R["section_d_cpu_s"], R["section_d_wall_s"] = cpu_s() - _cpu0, tic() - _wall0

    R["load_end"] = loadavg()
    R["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in wlist})

R["peak_rss_mb_final"] = peak_rss_mb()
with open(args.out, "w") as f:
    json.dump(R, f, indent=1)
log("wrote", args.out, "peak_rss_mb", R["peak_rss_mb_final"])
