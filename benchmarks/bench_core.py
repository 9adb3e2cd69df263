"""Core benchmark: fitbridge vs tvboptim 0.4 on the same RWW -> HRF BOLD -> FC -> RMSE workload.

Workload (both columns): tvboptim's 84-node ``dk_average`` connectome divided by its maximum,
Reduced Wong-Wang (G=0.5, w=0.5, I_o=0.32, S0=0.3), no delays, stochastic Heun dt = 4 ms,
90 s simulated, additive noise sigma = 0.00283, HRF BOLD with TR = 1 s, FC after dropping 20
frames, RMSE against tvboptim's empirical ``dk_average`` FC, float64. The loss is
differentiated w.r.t. (G, w).

Every measurement runs in its own subprocess, so each peak RSS (``ru_maxrss``) belongs to
one measurement; the peer's sections run through ``run_peer.py`` in its own interpreter,
interleaved with fitbridge's in the same invocation, and ONE table with both columns and
the ratios is printed at the end. Because wall times between processes on a shared machine
swing by 2x, a same-process A/B follows: the peer interpreter runs both packages' functions
round-robin (fitbridge's source on ``sys.path``; it needs only jax and numpy) and reports
wall and process CPU time. A micro-roofline process gives fitbridge's cost per node-step
against the RWW vector field over one large array plus the coupling matvec::

    /work/venv/bin/python benchmarks/bench_core.py                      # full run (~5 min)
    /work/venv/bin/python benchmarks/bench_core.py --quick --no-peer    # smoke run
    /work/venv/bin/python benchmarks/bench_core.py --reps 7 --out results.json

The connectome and empirical FC come from the peer package (``_peer_data.py``, run with the
peer interpreter, into a temporary directory; tvboptim's data is EUPL and never committed).
Without a peer interpreter the benchmark falls back to a seeded random 84-node connectome
and random target FC, and says so.

The loss values of the two columns differ by construction: tvboptim's RMSE runs over the whole
84 x 84 FC with the diagonal set to zero, fitbridge's over the upper triangle (k=1). The cost
is the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run_peer  # noqa: E402  (standard library only)
from _common import (  # noqa: E402  (standard library only)
    DT, G0, I_O, N_NODES, S0, SEED, SIGMA, SKIP, T1_FULL, T1_QUICK, TR, W0, add_worker_args, emit,
    failure, find_peer, loadavg, machine_line, make_log, make_workdir, report_header, rule,
    run_child, run_json, target_lines, timed, timed_call, worker_cmd, workload_data,
    write_worker_json,
)

# the reference workload (tvboptim's RWW tutorial): N_NODES, DT, T1_FULL, ... in _common.py
ROOFLINE_N = 2_000_000

# targets of issue 2, item 8
TARGET_FORWARD_SPEEDUP = 5.0
TARGET_REVERSE_SPEEDUP = 4.0
TARGET_REVERSE_MEMORY = 1.0 / 3.0
TARGET_ROOFLINE_FACTOR = 2.0


# ============================================================================ fitbridge side
def fitbridge_functions(weights, target_fc, t1=T1_FULL, dt=DT):
    """The fitbridge side of the benchmark: ``(x0, {measure: jitted function of x})``.

    ``x = [G, w]`` (float64, shape (2,)); ``forward(x) -> loss``, ``reverse(x) -> (loss,
    grad)`` by reverse mode, ``fwdmode(x) -> (loss, grad)`` by forward mode (``jacfwd``, one
    pass with two tangents). Must be called with x64 enabled. This is the one function to
    switch to ``fb.FCProblem(...).fun`` / ``.fun_and_jac`` once the problem object lands.
    """
    import jax
    import jax.numpy as jnp

    import fitbridge as fb

    net = fb.Network(fb.models.ReducedWongWang(G=G0, w=W0, I_o=I_O), weights, normalize="max")
    sim = fb.Simulation(net, dt=dt, duration=t1, transient=0.0, noise=fb.AdditiveNoise(SIGMA),
                        bold=fb.bold.HRF(tr=TR), initial_state=[S0], seed=SEED)
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
    target = jnp.asarray(target_fc, jnp.float64)
    key = jax.random.key(SEED)

    def loss(x):
        bold, _ = sim.forward(sim.with_values(params, {"G": x[0], "w": x[1]}), key)
        return fb.losses.rmse(fb.losses.fc(bold, skip=SKIP), target)

    def loss_twice(x):
        value = loss(x)
        return value, value

    def fwdmode(x):
        grad, value = jax.jacfwd(loss_twice, has_aux=True)(x)
        return value, grad

    x0 = jnp.asarray([G0, W0], jnp.float64)
    fns = {
        "forward": jax.jit(loss),
        "reverse": jax.jit(jax.value_and_grad(loss)),
        "fwdmode": jax.jit(fwdmode),
    }
    return x0, fns


# ============================================================================ worker process
def _round_robin(cases, reps):
    """Time ``{name: (fn, args)}`` alternately, ``reps`` rounds after one first call each.

    Returns ``{name_first_call_s, name_all_s, name_cpu_all_s, name_s (median), name_min_s,
    name_cpu_s (median)}``."""
    res, times, cpus = {}, {k: [] for k in cases}, {k: [] for k in cases}
    for name, (fn, args) in cases.items():
        res[f"{name}_first_call_s"] = timed_call(fn, args)[1]
    for _ in range(reps):
        for name, (fn, args) in cases.items():
            _, wall, cpu = timed_call(fn, args)
            times[name].append(wall)
            cpus[name].append(cpu)
    for name in cases:
        res[f"{name}_all_s"] = times[name]
        res[f"{name}_cpu_all_s"] = cpus[name]
        res[f"{name}_s"] = statistics.median(times[name])
        res[f"{name}_min_s"] = min(times[name])
        res[f"{name}_cpu_s"] = statistics.median(cpus[name])
    return res


def _worker_measure(which, data, t1, reps):
    import jax
    import numpy as np

    x0, fns = fitbridge_functions(data["weights"], data["fc"], t1=t1)
    out, timing = timed(fns[which], x0, reps=reps)
    res = dict(timing)
    if which == "forward":
        res["loss"] = float(out)
        steps = int(round(t1 / DT))
        res["n_steps"] = steps
        res["ns_per_node_step"] = timing["steady_s"] / (steps * N_NODES) * 1e9
    else:
        value, grad = out
        res["loss"] = float(value)
        grad = np.asarray(grad)
        res["grad"] = {"G": float(grad[0]), "w": float(grad[1])}
    res["dtype"] = str(jax.numpy.asarray(out if which == "forward" else out[0]).dtype)
    return res


def _worker_roofline(data, t1, reps):
    """Micro-roofline and a breakdown of the forward, timed round-robin in one process.

    - ``dfun``: the RWW vector field jit-compiled over one (1, 2_000_000) array (ns/element);
    - ``matvec``: the 84 x 84 coupling matrix-vector product alone in a ``lax.scan`` of the
      same number of steps (ns/node-step, loop overhead included);
    - ``kernel_noise`` / ``kernel_no_noise``: the integration alone (trace decimated to 1 s,
      no BOLD, no FC) with and without noise;
    - ``sim_bold``: the integration with the 4 ms BOLD stock and HRF frames (no FC);
    - ``loss``: the full forward loss (as the ``forward`` process).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    import fitbridge as fb

    steps = int(round(t1 / DT))
    model = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64),
                                   fb.models.ReducedWongWang(G=G0, w=W0, I_o=I_O))
    rng = np.random.default_rng(0)
    S = jnp.asarray(rng.uniform(0.0, 1.0, (1, ROOFLINE_N)))
    c = jnp.asarray(rng.uniform(0.0, 5.0, ROOFLINE_N))
    cases = {"dfun": (jax.jit(model.dfun), (S, c))}

    w = np.asarray(data["weights"], np.float64)
    w = w / np.max(w)
    w = jnp.asarray(w / np.max(w.sum(axis=1)))  # spectral radius <= 1: bounded iterates

    @jax.jit
    def matvec_scan(x):
        return jax.lax.scan(lambda x, _: (w @ x + 0.01, None), x, None, length=steps)[0]

    cases["matvec"] = (matvec_scan, (jnp.full(N_NODES, 0.3),))

    net = fb.Network(fb.models.ReducedWongWang(G=G0, w=W0, I_o=I_O), data["weights"], normalize="max")
    key = jax.random.key(SEED)
    for label, noise, bold in (("kernel_noise", fb.AdditiveNoise(SIGMA), None),
                               ("kernel_no_noise", None, None),
                               ("sim_bold", fb.AdditiveNoise(SIGMA), fb.bold.HRF(tr=TR))):
        sim = fb.Simulation(net, dt=DT, duration=t1, transient=0.0, noise=noise, bold=bold,
                            record_period=None if bold else TR, initial_state=[S0], seed=SEED)
        params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), sim.params)
        cases[label] = (jax.jit(lambda p, k, sim=sim: sim.forward(p, k)[0]), (params, key))
    x0, fns = fitbridge_functions(data["weights"], data["fc"], t1=t1)
    cases["loss"] = (fns["forward"], (x0,))

    res = _round_robin(cases, max(reps, 5))
    # wall medians and minima for the report; CPU-time medians (robust to other processes on
    # a shared machine) for the kernel-vs-roofline check, on both sides of the ratio
    for name in cases:
        per = ROOFLINE_N if name == "dfun" else steps * N_NODES
        unit = "element" if name == "dfun" else "node_step"
        for stat in ("", "_min", "_cpu"):
            res[f"{name}{stat}_ns_per_{unit}"] = res[f"{name}{stat}_s"] / per * 1e9
    for stat in ("", "_min", "_cpu"):
        res[f"roofline{stat}_ns_per_node_step"] = (2 * res[f"dfun{stat}_ns_per_element"]
                                                   + res[f"matvec{stat}_ns_per_node_step"])
    return res


def _peer_workload(t1, dt):
    """The peer's workload, set up exactly as ``peer_tvboptim_rww.py`` does (tvboptim 0.4 API).

    Returns ``(weights, fc_target, {measure: (jitted fn, args)})``; runs in the PEER interpreter.
    """
    import copy

    import jax
    import numpy as np
    from tvboptim.data import load_functional_connectivity, load_structural_connectivity
    from tvboptim.experimental.network_dynamics import Network, prepare
    from tvboptim.experimental.network_dynamics.coupling import LinearCoupling
    from tvboptim.experimental.network_dynamics.dynamics.tvb import ReducedWongWang
    from tvboptim.experimental.network_dynamics.graph import DenseGraph
    from tvboptim.experimental.network_dynamics.noise import AdditiveNoise
    from tvboptim.experimental.network_dynamics.solvers import Heun
    from tvboptim.observations.observation import compute_fc, rmse
    from tvboptim.observations.tvb_monitors.bold import HRFBold
    from tvboptim.optim.optax import value_and_grad_fwd
    from tvboptim.types import Parameter
    from tvboptim.types.stateutils import combine_state, partition_state

    weights, _, labels = load_structural_connectivity(name="dk_average")
    weights = weights / np.max(weights)
    fc_target = load_functional_connectivity(name="dk_average")
    dynamics = ReducedWongWang(w=W0, I_o=I_O, INITIAL_STATE=(S0,))
    coupling = LinearCoupling(incoming_states="S", G=G0)
    noise = AdditiveNoise(sigma=SIGMA, apply_to="S", key=jax.random.key(SEED))
    network = Network(dynamics, {"instant": coupling}, DenseGraph(weights, region_labels=labels), noise=noise)
    model, state = prepare(network, Heun(), t1=t1, dt=dt)
    result_init = jax.block_until_ready(model(state))  # the tutorial's transient run
    network.update_history(result_init)
    model, state = prepare(network, Heun(), t1=t1, dt=dt)
    bold = HRFBold(period=TR, downsample_period=dt, voi=0, history=result_init)

    def loss(s):
        return rmse(compute_fc(bold(model(s)), skip_t=SKIP), fc_target)

    gstate = copy.deepcopy(state)
    gstate.coupling.instant.G = Parameter(gstate.coupling.instant.G)
    gstate.dynamics.w = Parameter(gstate.dynamics.w)
    diff, static = partition_state(gstate)

    def loss_diff(d):
        return loss(combine_state(d, static))

    cases = {
        "forward": (jax.jit(loss), (state,)),
        "reverse": (jax.jit(jax.value_and_grad(loss_diff)), (diff,)),
        "reverse_vg_of_jit": (jax.value_and_grad(jax.jit(loss_diff)), (diff,)),
        "fwdmode": (jax.jit(value_and_grad_fwd(loss_diff)), (diff,)),
    }
    return np.asarray(weights, np.float64), np.asarray(fc_target, np.float64), cases


def _worker_ab(t1, reps):
    """Same-process A/B, run in the PEER interpreter with fitbridge's source on sys.path: the
    peer's and fitbridge's functions timed round-robin, so both see the same load. Times only
    (peak RSS is measured in the separate processes)."""
    import jax

    sys.path.insert(0, str(HERE.parent))
    weights, target, peer_cases = _peer_workload(t1, DT)
    x0, fns = fitbridge_functions(weights, target, t1=t1)
    cases = {f"peer_{k}": v for k, v in peer_cases.items()}
    cases.update({f"fb_{k}": (fn, (x0,)) for k, fn in fns.items()})
    res = _round_robin(cases, reps)
    res["versions"] = {"jax": jax.__version__}
    try:
        import tvboptim

        res["versions"]["tvboptim"] = getattr(tvboptim, "__version__", None)
    except ImportError:
        pass
    return res


def worker_main(a):
    if a.worker == "ab":  # the peer's interpreter: its device count as in run_peer.py
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_force_host_platform_device_count=1")
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        jax.config.update("jax_enable_compilation_cache", False)
    except Exception:  # noqa: BLE001 - option name differs across versions; off by default
        pass
    import numpy as np

    if a.worker == "ab":
        res = _worker_ab(a.t1, a.reps)
    elif a.worker == "baseline":
        import jax.numpy as jnp

        import fitbridge as fb  # noqa: F401

        # the RSS floor of a worker: imports, the CPU client and one trivial compiled call
        jax.block_until_ready(jax.jit(lambda v: 2.0 * v)(jnp.ones(N_NODES)))
        res = {}
    elif a.worker == "roofline":
        res = _worker_roofline(dict(np.load(a.data)), a.t1, a.reps)
    else:
        res = _worker_measure(a.worker, dict(np.load(a.data)), a.t1, a.reps)
    write_worker_json(a.json, res)


# ============================================================================ driver
log = make_log("[bench]")


def run_worker(which, data, t1, reps, workdir, timeout):
    out = Path(workdir) / f"fb_{which}.json"
    log(f"fitbridge {which} ...")
    return run_json(worker_cmd(__file__, which, out, t1, reps, data=data), out, workdir, timeout,
                    failure(log, f"fitbridge {which}"))


def run_ab(peer_python, t1, reps, workdir, timeout):
    """The same-process A/B worker, in the peer interpreter (see ``_worker_ab``)."""
    out = Path(workdir) / "ab.json"
    log("same-process A/B in the peer interpreter ...")
    return run_json(worker_cmd(__file__, "ab", out, t1, reps, python=peer_python), out, workdir,
                    timeout, failure(log, "A/B"), rss=None)


def peer_baseline_rss(peer_python, workdir, timeout):
    """Peak RSS of the peer interpreter after the peer script's imports and one trivial jit."""
    code = ("import os; os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'\n"
            "import jax, jax.numpy as jnp, numpy, optax, tvboptim\n"
            "jax.config.update('jax_enable_x64', True)\n"
            "from tvboptim.experimental.network_dynamics import Network, prepare\n"
            "from tvboptim.observations.tvb_monitors.bold import HRFBold\n"
            "from tvboptim.optim.optax import OptaxOptimizer\n"
            "jax.block_until_ready(jax.jit(lambda v: 2.0 * v)(jnp.ones(84)))\n")
    rc, _, maxrss, _ = run_child([str(peer_python), "-c", code], dict(os.environ), workdir, timeout)
    return maxrss if rc == 0 else None


# ---------------------------------------------------------------------------- merging rounds
_TIMING_KEYS = ("forward", "reverse", "fwdmode", "grad_reverse", "grad_reverse_vg_of_jit",
                "grad_forward_mode")


def _merge_timing(runs):
    """One measurement over rounds: steady samples pooled (median), compile = median of the
    per-round estimates, peak RSS = max; other fields from the first round."""
    runs = [r for r in runs if r and "steady_all_s" in r]
    if not runs:
        return None
    out = dict(runs[0])
    pooled = [t for r in runs for t in r["steady_all_s"]]
    out["steady_all_s"] = pooled
    out["steady_s"] = statistics.median(pooled)
    out["steady_min_s"] = min(pooled)
    cpus = [t for r in runs for t in r.get("steady_cpu_all_s", [])]
    if cpus:
        out["steady_cpu_all_s"] = cpus
        out["steady_cpu_s"] = statistics.median(cpus)
    out["compile_s"] = statistics.median([r["compile_s"] for r in runs])
    out["first_call_s"] = statistics.median([r["first_call_s"] for r in runs])
    rss = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None]
    out["peak_rss_mb"] = max(rss) if rss else None
    if "ns_per_node_step" in out:
        out["ns_per_node_step"] = out["steady_s"] / (out["n_steps"] * N_NODES) * 1e9
    out["rounds"] = len(runs)
    return out


def merge_rounds(rounds):
    """Merge the per-round dicts of one column (fitbridge or peer)."""
    rounds = [r for r in rounds if r]
    if not rounds:
        return None
    out = dict(rounds[0])
    for key in _TIMING_KEYS:
        if any(key in r for r in rounds):
            out[key] = _merge_timing([r.get(key) for r in rounds])
    if "baseline" in out:
        rss = [_get(r, "baseline", "peak_rss_mb") for r in rounds]
        out["baseline"] = {"peak_rss_mb": max([v for v in rss if v is not None], default=None)}
    if "baseline_rss_mb" in out:
        out["baseline_rss_mb"] = max([r["baseline_rss_mb"] for r in rounds
                                      if r.get("baseline_rss_mb") is not None], default=None)
    if "summary" in out:
        keys = {k for r in rounds for k in _get(r, "summary", "peak_rss_mb") or {}}
        out["summary"] = dict(out["summary"])
        out["summary"]["peak_rss_mb"] = {
            k: max([v for r in rounds if (v := _get(r, "summary", "peak_rss_mb", k)) is not None],
                   default=None) for k in keys}
    roofs = [r["roofline"] for r in rounds if r.get("roofline") and "error" not in r["roofline"]]
    if roofs:
        out["roofline"] = {k: (statistics.median([r[k] for r in roofs])
                               if isinstance(roofs[0][k], float) else roofs[0][k]) for k in roofs[0]}
    abs_ = [r["ab"] for r in rounds if r.get("ab") and "error" not in r["ab"]]
    if abs_:
        ab = dict(abs_[0])
        for key in [k for k in abs_[0] if k.endswith("_all_s")]:
            pooled = [t for r in abs_ for t in r[key]]
            name = key[:-len("_all_s")]
            ab[key] = pooled
            ab[f"{name}_s"] = statistics.median(pooled)
            ab[f"{name}_min_s"] = min(pooled)
        out["ab"] = ab
    out["per_round"] = rounds if len(rounds) > 1 else None
    return out


# ---------------------------------------------------------------------------- report
def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return None
        d = d[k]
    return d


def _ratio(num, den):
    if num is None or den is None or den == 0:
        return None
    return num / den


def peer_best_reverse(peer):
    """The faster of the peer's two reverse forms: jit(value_and_grad(loss)) and
    value_and_grad(jit(loss)) (the form its OptaxOptimizer uses)."""
    cands = [d for d in (_get(peer, "grad_reverse"), _get(peer, "grad_reverse_vg_of_jit"))
             if d and d.get("steady_s") is not None]
    return min(cands, key=lambda d: d["steady_s"]) if cands else None


def build_rows(fb, peer):
    """(label, fitbridge, tvboptim, ratio, ratio kind, unit) rows of the table."""
    pf, pr, pm = (_get(peer, "forward"), _get(peer, "grad_reverse"), _get(peer, "grad_forward_mode"))
    pr2 = _get(peer, "grad_reverse_vg_of_jit")
    psum = _get(peer, "summary") or {}
    rows = []

    def time_row(label, fbv, pv):
        rows.append((label, fbv, pv, _ratio(pv, fbv), "peer/fb", "s"))

    def mem_row(label, fbv, pv):
        rows.append((label, fbv, pv, _ratio(fbv, pv), "fb/peer", "MB"))

    time_row("compile, forward loss", _get(fb, "forward", "compile_s"), _get(pf, "compile_s"))
    time_row("forward loss (steady median)", _get(fb, "forward", "steady_s"), _get(pf, "steady_s"))
    time_row("compile, reverse value_and_grad", _get(fb, "reverse", "compile_s"), _get(pr, "compile_s"))
    time_row("reverse value_and_grad (steady)", _get(fb, "reverse", "steady_s"), _get(pr, "steady_s"))
    time_row("  peer as Optax: vg(jit(loss))", _get(fb, "reverse", "steady_s"), _get(pr2, "steady_s"))
    time_row("compile, fwd-mode value_and_grad", _get(fb, "fwdmode", "compile_s"), _get(pm, "compile_s"))
    time_row("fwd-mode value_and_grad (steady)", _get(fb, "fwdmode", "steady_s"), _get(pm, "steady_s"))
    mem_row("peak RSS, imports + trivial jit", _get(fb, "baseline", "peak_rss_mb"), _get(peer, "baseline_rss_mb"))
    mem_row("peak RSS, forward process", _get(fb, "forward", "peak_rss_mb"),
            _get(psum, "peak_rss_mb", "a_forward"))
    mem_row("peak RSS, reverse process", _get(fb, "reverse", "peak_rss_mb"),
            _get(psum, "peak_rss_mb", "b_grad_reverse"))
    mem_row("peak RSS, fwd-mode process [c]", _get(fb, "fwdmode", "peak_rss_mb"),
            _get(psum, "peak_rss_mb", "b_all"))
    rows.append(("loss at (G, w) = (0.5, 0.5) [d]", _get(fb, "forward", "loss"), _get(pf, "loss"), None, "", ""))
    rows.append(("dloss/dG (reverse)", _get(fb, "reverse", "grad", "G"), _get(pr, "grad", "G"), None, "", ""))
    rows.append(("dloss/dw (reverse)", _get(fb, "reverse", "grad", "w"), _get(pr, "grad", "w"), None, "", ""))
    return rows


def _fmt(v, unit):
    if v is None:
        return "-"
    if unit == "MB":
        return f"{v:.0f}"
    if unit == "s":
        return f"{v:.3f}"
    return f"{v:.4g}"


def targets(fb, peer, roof):
    """(label, value, ok, shown) per target of issue 2, item 8 (plus the roofline check).

    The speed targets are judged twice: on the separate processes of the table and on the
    same-process A/B (less exposed to the load of a shared machine); the reverse target uses
    the faster of tvboptim's two reverse forms.
    """
    ab = _get(fb, "ab")
    ab = ab if ab and "error" not in ab else {}
    best_rev = peer_best_reverse(peer)
    ab_peer_rev = min([v for v in (ab.get("peer_reverse_cpu_s"), ab.get("peer_reverse_vg_of_jit_cpu_s"))
                       if v is not None], default=None)
    kern = _get(roof, "kernel_noise_cpu_ns_per_node_step")
    checks = (
        ("forward >= 5x faster than tvboptim (separate processes)",
         _ratio(_get(peer, "forward", "steady_s"), _get(fb, "forward", "steady_s")),
         lambda v: v >= TARGET_FORWARD_SPEEDUP, "{:.2f}x"),
        ("forward >= 5x faster than tvboptim (same-process A/B, CPU time)",
         _ratio(ab.get("peer_forward_cpu_s"), ab.get("fb_forward_cpu_s")),
         lambda v: v >= TARGET_FORWARD_SPEEDUP, "{:.2f}x"),
        ("reverse gradient >= 4x faster (separate processes)",
         _ratio(_get(best_rev, "steady_s"), _get(fb, "reverse", "steady_s")),
         lambda v: v >= TARGET_REVERSE_SPEEDUP, "{:.2f}x"),
        ("reverse gradient >= 4x faster (same-process A/B, CPU time)",
         _ratio(ab_peer_rev, ab.get("fb_reverse_cpu_s")),
         lambda v: v >= TARGET_REVERSE_SPEEDUP, "{:.2f}x"),
        ("reverse gradient peak RSS <= 1/3 of tvboptim's",
         _ratio(_get(fb, "reverse", "peak_rss_mb"), _get(peer, "summary", "peak_rss_mb", "b_grad_reverse")),
         lambda v: v <= TARGET_REVERSE_MEMORY, "{:.2f} of it"),
        ("integration kernel (noise on) within 2x of 2 dfun + matvec (CPU time)",
         _ratio(kern, _get(roof, "roofline_cpu_ns_per_node_step")),
         lambda v: v <= TARGET_ROOFLINE_FACTOR, "{:.2f}x the bound"),
    )
    return [(label, val, val is not None and ok(val), fmt.format(val) if val is not None else "-")
            for label, val, ok, fmt in checks]


def render(report):
    fb, peer = report["fitbridge"], report["peer"]
    roof = fb.get("roofline")
    lines = []
    cfg = report["config"]
    if cfg["quick"]:
        lines.append("*** QUICK RUN: %.0f s simulated instead of 90 s; NOT comparable to the targets ***"
                     % (cfg["t1_ms"] / 1000))
    lines.append(f"workload: {cfg['n_nodes']} nodes ({report['data_source']}), RWW, no delays, Heun "
                 f"dt={cfg['dt_ms']:g} ms, {cfg['t1_ms'] / 1000:g} s, HRF BOLD TR {TR / 1000:g} s, "
                 f"skip {SKIP}, FC, RMSE, float64, sigma {SIGMA}; reps={cfg['reps']}, rounds={cfg['rounds']}")
    lines.append(machine_line(report))
    m = report["machine"]
    v = report["versions"]
    pv = _get(peer, "versions") or {}
    lines.append(f"versions: fitbridge {v.get('fitbridge')}, jax {v.get('jax')}, numpy {v.get('numpy')}, "
                 f"python {m['python']}; peer: tvboptim {pv.get('tvboptim', '-')}, jax {pv.get('jax', '-')}")
    lines.append(f"command: {report['command']}")
    if peer is None:
        lines.append("tvboptim column skipped: " + report.get("peer_skipped", "peer not installed"))
    lines.append("")
    w = 38
    head = f"| {'measure':{w}s} | {'fitbridge':>10s} | {'tvboptim':>10s} | {'ratio':>14s} |"
    lines += [head, rule(head)]
    for label, fbv, pv_, ratio, kind, unit in build_rows(fb, peer):
        lab = f"{label} ({unit})" if unit else label
        r = f"{ratio:.2f} {kind}" if ratio is not None else ""
        lines.append(f"| {lab:{w}s} | {_fmt(fbv, unit):>10s} | {_fmt(pv_, unit):>10s} | {r:>14s} |")
    lines.append("")
    ab = fb.get("ab")
    if ab and "error" not in ab:
        lines.append("same-process A/B: both packages in the peer interpreter (jax "
                     f"{_get(ab, 'versions', 'jax')}), calls alternated round-robin; wall medians and "
                     "process CPU-time medians (CPU time is robust to other processes on the machine):")
        head = (f"| {'measure (s)':{w}s} | {'fb wall':>8s} | {'peer wall':>9s} | {'ratio':>5s} "
                f"| {'fb CPU':>8s} | {'peer CPU':>8s} | {'ratio':>5s} |")
        lines += [head, rule(head)]
        for label, fbk, pk in (("forward loss", "fb_forward", "peer_forward"),
                               ("reverse vs peer jit(value_and_grad)", "fb_reverse", "peer_reverse"),
                               ("reverse vs peer vg(jit(loss))", "fb_reverse", "peer_reverse_vg_of_jit"),
                               ("fwd-mode value_and_grad", "fb_fwdmode", "peer_fwdmode")):
            cells = []
            for suffix, pw in (("_s", 9), ("_cpu_s", 8)):
                fbv, pv_ = ab.get(fbk + suffix), ab.get(pk + suffix)
                r = _ratio(pv_, fbv)
                cells.append(f"{_fmt(fbv, 's'):>8s} | {_fmt(pv_, 's'):>{pw}s} | "
                             f"{(f'{r:.2f}' if r is not None else '-'):>5s}")
            lines.append(f"| {label:{w}s} | {cells[0]} | {cells[1]} |")
        lines.append("")
    if roof and "error" not in roof:
        lines.append("fitbridge cost per node-step (ns; time / (steps * 84)), one process, round-robin:")
        lines.append(f"  {'':42s} {'wall med':>8s} {'wall min':>8s} {'CPU med':>8s}   wall median")
        for key, label in (("loss", "forward loss (sim + BOLD + FC + RMSE)"),
                           ("sim_bold", "simulation + HRF BOLD (4 ms stock)"),
                           ("kernel_noise", "integration kernel, noise on"),
                           ("kernel_no_noise", "integration kernel, noise off"),
                           ("matvec", "coupling matvec alone in a scan")):
            lines.append(f"  {label:42s} {roof[key + '_ns_per_node_step']:8.1f} "
                         f"{roof[key + '_min_ns_per_node_step']:8.1f} {roof[key + '_cpu_ns_per_node_step']:8.1f}"
                         f"   {roof[key + '_s']:.3f} s")
        lines.append(f"  {'RWW dfun over one (1, 2,000,000) array':42s} {roof['dfun_ns_per_element']:8.2f} "
                     f"{roof['dfun_min_ns_per_element']:8.2f} {roof['dfun_cpu_ns_per_element']:8.2f}"
                     f"   ns per element")
        lines.append(f"  {'micro-roofline: 2 * dfun + matvec':42s} {roof['roofline_ns_per_node_step']:8.1f} "
                     f"{roof['roofline_min_ns_per_node_step']:8.1f} {roof['roofline_cpu_ns_per_node_step']:8.1f}")
        fwd_ns = _get(fb, "forward", "ns_per_node_step")
        lines.append(f"  (forward loss in its own process, table above: {_fmt(fwd_ns, '')} ns/node-step)")
        lines.append("")
    lines.append("targets (issue 2, item 8):")
    lines += target_lines(report["targets"])
    lines.append("")
    lines.append("notes: time ratio = tvboptim / fitbridge (> 1: fitbridge faster); memory ratio = "
                 "fitbridge / tvboptim (< 1: fitbridge smaller). Compile = first call - steady median; each "
                 "fitbridge measure is the first jit of a fresh process, tvboptim's fwd-mode compile is the "
                 "third in its process. The reverse-speed target uses tvboptim's faster reverse form.")
    lines.append("[c] tvboptim's fwd-mode RSS is cumulative over its section b (reverse, vg(jit), then "
                 "fwd-mode); fitbridge's is a process of its own.")
    lines.append("[d] the losses differ by definition: tvboptim's RMSE runs over the full FC with a zero "
                 "diagonal, fitbridge's over the upper triangle; the noise realisations differ too.")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="steady calls per measurement (default 5, quick 2)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the interleaved sequence; steady samples are pooled (use 2-3 on a busy machine)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {T1_QUICK / 1000:g} s simulated (NOT comparable to the targets)")
    ap.add_argument("--out", default=None, help="write the full results as JSON here")
    ap.add_argument("--no-peer", action="store_true", help="skip the tvboptim column")
    ap.add_argument("--peer-python", default=None, help="peer interpreter (default: see run_peer.py)")
    ap.add_argument("--no-roofline", action="store_true", help="skip the micro-roofline process")
    ap.add_argument("--no-ab", action="store_true",
                    help="skip the same-process A/B (fitbridge's source run in the peer interpreter)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    ap.add_argument("--keep-dir", default=None, help="keep the data and raw per-process JSONs here")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["baseline", "forward", "reverse", "fwdmode", "roofline", "ab"],
                    help=argparse.SUPPRESS)
    add_worker_args(ap, T1_FULL)
    a = ap.parse_args(argv)
    if a.worker:
        return worker_main(a)

    t1 = T1_QUICK if a.quick else T1_FULL
    reps = a.reps if a.reps is not None else (2 if a.quick else 5)
    rounds = max(1, a.rounds)
    workdir = make_workdir(a.keep_dir, "fitbridge_bench_")
    report = {
        **report_header(),
        "config": {"n_nodes": N_NODES, "dt_ms": DT, "t1_ms": t1, "tr_ms": TR, "skip": SKIP,
                   "sigma": SIGMA, "G": G0, "w": W0, "I_o": I_O, "S0": S0, "reps": reps,
                   "rounds": rounds, "quick": a.quick, "dtype": "float64"},
        "fitbridge": {},
        "peer": None,
    }
    log(f"machine {report['machine']['cpu']}, load {report['load_before']}; workdir {workdir}")

    peer_py, peer_versions = find_peer(a.no_peer, a.peer_python)
    if a.no_peer:
        report["peer_skipped"] = "--no-peer"
    elif peer_versions is None:
        report["peer_skipped"] = f"no usable tvboptim interpreter at {peer_py} (see benchmarks/README.md)"
    data = workdir / "workload.npz"
    report["data_source"] = workload_data(data, peer_py, peer_versions, log=log)
    use_peer = peer_versions is not None

    def peer_section(peer, section, rdir):
        res = run_peer.run_peer(sections=section, peer_python=peer_py, t1=t1, dt=DT, reps=reps,
                                timeout=a.timeout, keep_dir=str(rdir / f"peer_{section}"))
        if res is None:
            return
        peer.setdefault("versions", res["versions"])
        peer.setdefault("summary", {"peak_rss_mb": {}})
        for k in ("forward", "grad_reverse", "grad_reverse_vg_of_jit", "grad_forward_mode"):
            if res.get(k):
                peer[k] = res[k]
        peer["summary"]["peak_rss_mb"].update(res["summary"].get("peak_rss_mb", {}))
        peer["summary"].update({k: v for k, v in res["summary"].items() if k != "peak_rss_mb"})
        peer.setdefault("sections", {}).update(res["sections"])

    fb_rounds, peer_rounds = [], []
    for r in range(rounds):
        rdir = workdir / f"round{r}" if rounds > 1 else workdir
        rdir.mkdir(parents=True, exist_ok=True)
        if rounds > 1:
            log(f"round {r + 1}/{rounds}")
        fb, peer = {}, {}
        # interleaved, so that drifts of the machine's load hit both columns alike
        fb["baseline"] = run_worker("baseline", data, t1, reps, rdir, a.timeout)
        if use_peer:
            peer["baseline_rss_mb"] = peer_baseline_rss(peer_py, rdir, a.timeout)
            peer_section(peer, "a", rdir)
        fb["forward"] = run_worker("forward", data, t1, reps, rdir, a.timeout)
        if use_peer:
            peer_section(peer, "b", rdir)
        fb["reverse"] = run_worker("reverse", data, t1, reps, rdir, a.timeout)
        fb["fwdmode"] = run_worker("fwdmode", data, t1, reps, rdir, a.timeout)
        if not a.no_roofline:
            fb["roofline"] = run_worker("roofline", data, t1, reps, rdir, a.timeout)
        if use_peer and not a.no_ab:
            fb["ab"] = run_ab(peer_py, t1, reps, rdir, a.timeout)
        fb_rounds.append(fb)
        peer_rounds.append(peer if ("forward" in peer or "grad_reverse" in peer) else None)

    report["fitbridge"] = merge_rounds(fb_rounds) or {}
    report["peer"] = merge_rounds(peer_rounds) if use_peer else None
    if use_peer and report["peer"] is None:
        report["peer_skipped"] = "the peer sections failed (see the log above)"
    report["load_after"] = loadavg()
    report["targets"] = targets(report["fitbridge"], report["peer"], report["fitbridge"].get("roofline"))
    return emit(report, render(report), a.out, log=log)


if __name__ == "__main__":
    main()
