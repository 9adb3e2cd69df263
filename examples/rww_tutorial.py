"""The RWW FC fit of the reference tutorial, with the Python API: a grid exploration of
(G, w), a global L-BFGS-B fit from the best grid point, then w per region (80 values) warm-
started from the global fit with G fixed, refined with L-BFGS-B (reverse-mode gradients).
The spec form is ``examples/specs/rww_regional.yaml``.

    python examples/rww_tutorial.py            # a few minutes on 2 cores
    python examples/rww_tutorial.py --quick    # smoke run (short simulation, tiny budgets)
"""

from __future__ import annotations

import argparse

import numpy as np

import fitbridge as fb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: not a fit")
    args = parser.parse_args(argv)

    data = fb.datasets.load("hcp")
    train, heldout = data.group_fc([0, 1, 2, 3]), data.group_fc([4, 5, 6])
    net = fb.Network(fb.models.ReducedWongWang(), data.weights)
    sim = fb.Simulation(net, dt=4.0, duration=4_000.0 if args.quick else 320_000.0,
                        transient=0.0 if args.quick else 20_000.0,
                        noise=fb.AdditiveNoise(0.00283), bold=fb.bold.HRF(tr=720.0))
    skip = 0 if args.quick else None
    glob = fb.FCProblem(sim, train, skip=skip,
                        free={"G": fb.Free(0.3, bounds=(0.1, 0.5)), "w": fb.Free(0.3, bounds=(0.0, 0.8))})
    n = 2 if args.quick else 8
    grid = fb.explore(glob, fb.spaces.grid({"G": np.linspace(0.15, 0.45, n), "w": np.linspace(0.0, 0.7, n)}),
                      precision="float32")
    best = grid.loc[grid["loss"].idxmin()]
    print(f"grid {n}x{n}: best FC r = {best['fc_r']:.3f} at G = {best['G']:.3f}, w = {best['w']:.3f}")
    res = fb.minimize(glob, "scipy:L-BFGS-B", [best["G"], best["w"]], budget=2 if args.quick else 30)
    print(f"global: FC r = {1 - res.fun:.3f} at G = {res.params['G']:.4f}, w = {res.params['w']:.4f}")

    fitted = sim.replace(network=net.replace(model=net.model.replace(G=res.params["G"])))
    regional = fb.FCProblem(fitted, train, skip=skip,
                            free={"w": fb.Free(res.params["w"], bounds=(0.0, 0.8), regional=True)})
    reg = fb.minimize(regional, "scipy:L-BFGS-B", budget=2 if args.quick else 40)
    fc = regional.fc(reg.x)
    iu = np.triu_indices(fc.shape[0], 1)
    print(f"regional: FC r = {1 - reg.fun:.3f} (train), "
          f"{np.corrcoef(fc[iu], heldout[iu])[0, 1]:.3f} (held-out), w in "
          f"[{reg.x.min():.3f}, {reg.x.max():.3f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
