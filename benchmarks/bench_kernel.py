"""Batched-kernel benchmark: cost per node-step against the same-run roofline, and a CMA-ES batch.

Prints three tables (about 2-3 minutes on a 2-core machine)::

    /work/venv/bin/python benchmarks/bench_kernel.py             # full run
    /work/venv/bin/python benchmarks/bench_kernel.py --quick     # smoke run (fewer B, shorter)
    /work/venv/bin/python benchmarks/bench_kernel.py --out kernel.json

1. **Roofline pieces**, measured in this process: the RWW vector field
   (``fb.models.ReducedWongWang().dfun``) jit-compiled over one ``(1, 2**21)`` array, in ns per
   element (float64 and float32), and the coupling product alone, ``(B, n) @ W.T`` in a
   ``lax.scan`` of the kernel's number of steps, in ns per node-step at every B. The roofline
   of one stochastic Heun step is ``2 * dfun + matmul(B)`` ns per node-step (two vector-field
   evaluations, the coupling held across the stages).
2. **The batched kernel**: ``jit(vmap(loss))`` over B parameter sets (``G`` varies), as
   ``Problem.evaluate`` compiles it (with its XLA options: ``xla_cpu_prefer_vector_width=512``
   from B = 4 on CPU; the roofline pieces are compiled with the options of their size too):
   ``Simulation.forward`` (stochastic Heun, additive noise
   drawn from one key as under the problem's default ``noise="fixed"``, HRF BOLD at TR 1 s)
   then FC and RMSE, for B in {1, 4, 16, 64}, float64 and float32; and the integration alone
   (same simulation, trace decimated to 1 s, no BOLD, no FC). Cost per node-step =
   CPU time / (steps * nodes * B); ratio = achieved / roofline at the same B.
3. **CMA-ES generation**: an :class:`~fitbridge.FCProblem` (84 nodes, 90 s, HRF BOLD, noise),
   one ``problem.batch`` of 16 points against 16 serial ``problem.fun`` calls (all compiled
   first). Target >= 5x.

Timing: every case is called once to compile, then ``--reps`` times round-robin (all cases
interleaved, so load drift from other processes hits them alike); the tables show the minimum
CPU time (``time.process_time``, all threads of this process) and the minimum wall time.
By default the process pins itself to one core before importing JAX, so XLA sizes its
intra-op pool to one thread and the numbers are per-core costs: with two threads XLA splits
every large elementwise kernel in two tasks and hands the loop between threads at each step,
which on a shared 2-core machine inflated CPU time up to 2x and wall time more (``--all-cores``
measures that configuration). The
workload is the core benchmark's (84 nodes, RWW G=0.5, w=0.5, I_o=0.32, S0=0.3, dt=4 ms,
sigma=0.00283) on a seeded random connectome (W / max), so no peer data is needed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DT, G0, I_O, N_NODES, S0, SEED, SIGMA, W0, cpu_name, rule, status, write_json  # noqa: E402

ROOFLINE_N = 1 << 21
TARGET_ROOFLINE_FACTOR = 2.0
TARGET_BATCH_SPEEDUP = 5.0


def _data():
    rng = np.random.default_rng(SEED)
    w = rng.uniform(0.0, 1.0, (N_NODES, N_NODES)) * (rng.uniform(size=(N_NODES, N_NODES)) < 0.3)
    np.fill_diagonal(w, 0.0)
    w = (w + w.T) / 2.0
    fc = np.corrcoef(rng.normal(size=(N_NODES, 300)))
    return w / w.max(), fc


def _run(cases, reps):
    """Call each case once (compile), then ``reps`` times round-robin; min CPU and wall seconds."""
    import jax

    for fn, args in cases.values():
        jax.block_until_ready(fn(*args))
    cpu = {k: [] for k in cases}
    wall = {k: [] for k in cases}
    for _ in range(reps):
        for name, (fn, args) in cases.items():
            c, w = time.process_time(), time.perf_counter()
            jax.block_until_ready(fn(*args))
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    return {k: min(v) for k, v in cpu.items()}, {k: min(v) for k, v in wall.items()}


def _kernel_cases(weights, target, dtype_name, batches, duration):
    """``{(what, B): (jitted fn, args)}`` for the loss and the integration alone."""
    import jax
    import jax.numpy as jnp

    import fitbridge as fb
    from fitbridge._evaluate import _compiler_options

    dtype = jnp.dtype(dtype_name)
    net = fb.Network(fb.models.ReducedWongWang(G=G0, w=W0, I_o=I_O), weights, normalize="max")
    sims = {
        "loss": fb.Simulation(net, dt=DT, duration=duration, noise=fb.AdditiveNoise(SIGMA),
                              bold=fb.bold.HRF(tr=1000.0), initial_state=[S0], seed=SEED),
        "integration": fb.Simulation(net, dt=DT, duration=duration, noise=fb.AdditiveNoise(SIGMA),
                                     record_period=1000.0, initial_state=[S0], seed=SEED),
    }
    target = jnp.asarray(target, dtype)
    key = jax.random.key(SEED)
    cases = {}
    for what, sim in sims.items():
        params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), sim.params)

        def one(G, key, sim=sim, params=params, what=what):
            out, _ = sim.forward(sim.with_values(params, {"G": G}), key)
            if what == "integration":
                return jnp.sum(out)
            return fb.losses.rmse(fb.losses.fc(out, skip=5), target)

        for B in batches:
            # the batched evaluator's XLA options for a B-point chunk on one device
            options = _compiler_options(jax.devices()[:1], B)
            fn = jax.jit(jax.vmap(one, (0, None)), compiler_options=options)
            G = jnp.asarray(G0 + 0.002 * np.arange(B), dtype)
            cases[(what, B)] = (fn, (G, key))
    return cases


def _roofline_cases(weights, dtype_name, batches, steps):
    import jax
    import jax.numpy as jnp

    import fitbridge as fb
    from fitbridge._evaluate import _compiler_options

    dtype = jnp.dtype(dtype_name)
    rng = np.random.default_rng(0)
    model = fb.models.ReducedWongWang(G=G0, w=W0, I_o=I_O)
    model = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), model)
    S = jnp.asarray(rng.uniform(0.0, 1.0, (1, ROOFLINE_N)), dtype)
    c = jnp.asarray(rng.uniform(0.0, 5.0, ROOFLINE_N), dtype)
    # each piece compiled with the XLA options the batched evaluator uses at that size
    one = jax.devices()[:1]
    cases = {("dfun", 0): (jax.jit(model.dfun, compiler_options=_compiler_options(one, ROOFLINE_N)), (S, c))}
    w = np.asarray(weights, np.float64)
    wt = jnp.asarray((w / np.max(w.sum(axis=1))).T, dtype)  # row sums <= 1: bounded iterates

    def matmul_scan(x):
        return jax.lax.scan(lambda x, _: (x @ wt + 0.01, None), x, None, length=steps)[0]

    for B in batches:
        fn = jax.jit(matmul_scan, compiler_options=_compiler_options(one, B))
        cases[("matmul", B)] = (fn, (jnp.full((B, N_NODES), 0.3, dtype),))
    return cases


def kernel_vs_roofline(weights, target, batches, duration, reps, wall=True):
    """Tables 1 and 2, float64 then float32: ``(roofline, kernel)``.

    ``roofline[dtype]["dfun_ns_per_element"]``; ``kernel["dtype/B=b"]``: ``matmul_ns``,
    ``roofline_ns`` (2 dfun + matmul), then per ``integration`` / ``loss`` its ``_ns``, its
    ``_wall_ns`` (only with ``wall``) and its ``_ratio`` to the roofline; ns per node-step
    (element) from the minimum CPU (wall) time of ``reps`` calls (see ``_run``).
    """
    import jax

    steps = int(round(duration / DT))
    roofline, kernel = {}, {}
    for dtype_name in ("float64", "float32"):
        with jax.enable_x64(dtype_name == "float64"):
            cases = {**_roofline_cases(weights, dtype_name, batches, steps),
                     **_kernel_cases(weights, target, dtype_name, batches, duration)}
            cpu, wall_s = _run(cases, reps)
        dfun = cpu[("dfun", 0)] / ROOFLINE_N * 1e9
        roofline[dtype_name] = {"dfun_ns_per_element": dfun}
        for B in batches:
            per = steps * N_NODES * B
            mm = cpu[("matmul", B)] / per * 1e9
            row = {"matmul_ns": mm, "roofline_ns": 2.0 * dfun + mm}
            for what in ("integration", "loss"):
                row[f"{what}_ns"] = cpu[(what, B)] / per * 1e9
                if wall:
                    row[f"{what}_wall_ns"] = wall_s[(what, B)] / per * 1e9
                row[f"{what}_ratio"] = row[f"{what}_ns"] / row["roofline_ns"]
            kernel[f"{dtype_name}/B={B}"] = row
    return roofline, kernel


def _cma(weights, target, reps, duration):
    """16 serial ``problem.fun`` calls against one ``problem.batch`` of 16 (seconds, min of reps)."""
    import fitbridge as fb

    net = fb.Network(fb.models.ReducedWongWang(G=G0, w=W0, I_o=I_O), weights, normalize="max")
    sim = fb.Simulation(net, dt=DT, duration=duration, noise=fb.AdditiveNoise(SIGMA),
                        bold=fb.bold.HRF(tr=1000.0), initial_state=[S0], seed=SEED)
    problem = fb.FCProblem(sim, target, loss="rmse", skip=20,
                           free={"G": fb.Free(G0, bounds=(0.0, 1.0)), "w": fb.Free(W0, bounds=(0.0, 1.0))})
    X = problem.x0[None] + np.random.default_rng(1).normal(0.0, 0.02, (16, problem.dim))
    serial = lambda: [problem.fun(x) for x in X]  # noqa: E731
    batch = lambda: problem.batch(X)  # noqa: E731
    serial(), batch()
    res = {"serial": [], "batch": [], "serial_cpu": [], "batch_cpu": []}
    for _ in range(reps):
        for name, fn in (("serial", serial), ("batch", batch)):
            c, w = time.process_time(), time.perf_counter()
            fn()
            res[name].append(time.perf_counter() - w)
            res[f"{name}_cpu"].append(time.process_time() - c)
    out = {k: min(v) for k, v in res.items()}
    out["agree"] = bool(np.allclose(serial(), batch(), rtol=1e-10))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B in {1, 16}, 10 s simulated, 2 reps")
    parser.add_argument("--reps", type=int, default=None, help="timed calls per case (default 3)")
    parser.add_argument("--out", help="write all numbers as JSON")
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    args = parser.parse_args(argv)
    pinned = None
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        pinned = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {pinned})  # before JAX starts its thread pools
    import jax

    batches = (1, 16) if args.quick else (1, 4, 16, 64)
    reps = args.reps or (2 if args.quick else 3)
    duration = 10_000.0 if args.quick else 20_000.0
    steps = int(round(duration / DT))
    weights, target = _data()
    t_start = time.perf_counter()

    cores = f"pinned to core {pinned}" if pinned is not None else "all cores"
    cpu_model = cpu_name(platform.processor() or platform.machine())
    results = {"machine": f"{cpu_model}, {os.cpu_count()} cores ({cores})",
               "jax": jax.__version__, "steps": steps, "nodes": N_NODES, "kernel": {}, "roofline": {}}
    results["roofline"], results["kernel"] = kernel_vs_roofline(weights, target, batches, duration, reps)

    cma_duration = 30_000.0 if args.quick else 90_000.0
    with jax.enable_x64(True):
        results["cma"] = _cma(weights, target, reps, cma_duration)
    results["total_s"] = time.perf_counter() - t_start

    print(f"# bench_kernel: {results['machine']}, jax {results['jax']}, {N_NODES} nodes, "
          f"{steps} steps of {DT:g} ms, min of {reps} calls (CPU time, all threads)")
    print("\n## Roofline pieces (same run)")
    for dtype_name, r in results["roofline"].items():
        print(f"{dtype_name}: RWW dfun over {ROOFLINE_N} elements: {r['dfun_ns_per_element']:.2f} ns/element "
              f"-> 2 x dfun = {2 * r['dfun_ns_per_element']:.2f} ns per node-step")
    print("\n## Batched kernel, ns per node-step (CPU)")
    head = ("| dtype | B | matmul | roofline (2 dfun + matmul) | integration | ratio | "
            "loss (sim+BOLD+FC) | ratio | loss wall |")
    print(head)
    print(rule(head, "---"))
    for key, r in results["kernel"].items():
        dtype_name, B = key.split("/B=")
        print(f"| {dtype_name} | {B} | {r['matmul_ns']:.1f} | {r['roofline_ns']:.1f} | "
              f"{r['integration_ns']:.1f} | {r['integration_ratio']:.2f} | {r['loss_ns']:.1f} | "
              f"{r['loss_ratio']:.2f} | {r['loss_wall_ns']:.1f} |")
    worst = max(r["loss_ratio"] for k, r in results["kernel"].items() if not k.endswith("B=1"))
    print(f"\nbatched loss (B > 1) within {worst:.2f}x of its roofline "
          f"(target <= {TARGET_ROOFLINE_FACTOR:g}x): {status(worst, worst <= TARGET_ROOFLINE_FACTOR)}")
    c = results["cma"]
    speed, speed_cpu = c["serial"] / c["batch"], c["serial_cpu"] / c["batch_cpu"]
    print(f"\n## CMA-ES generation: FCProblem ({cma_duration / 1000:g} s simulated, float64), 16 points")
    print(f"16 serial problem.fun: {c['serial']:.3f} s wall ({c['serial_cpu']:.3f} s CPU); "
          f"one problem.batch(16): {c['batch']:.3f} s wall ({c['batch_cpu']:.3f} s CPU)")
    print(f"speed-up {speed:.1f}x wall, {speed_cpu:.1f}x CPU (target >= {TARGET_BATCH_SPEEDUP:g}x): "
          f"{status(speed, speed >= TARGET_BATCH_SPEEDUP)}; batch == serial: {c['agree']}")
    print(f"\n(total {results['total_s']:.0f} s)")
    if args.out:
        write_json(args.out, results, default=float)


if __name__ == "__main__":
    main()
