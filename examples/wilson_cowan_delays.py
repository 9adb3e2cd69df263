"""Wilson-Cowan network with conduction delays: fit the global coupling G and the noise
strength sigma with derivative-free Nelder-Mead, then polish with L-BFGS-B (JAX gradients
through the delay buffer and the noise scale). The Python-API form of
``examples/specs/wilson_cowan_delays.yaml``.

    python examples/wilson_cowan_delays.py            # a few minutes on 2 cores
    python examples/wilson_cowan_delays.py --quick    # smoke run (short simulation, tiny budgets)
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
    train = data.group_fc([0, 1, 2, 3])
    net = fb.Network(fb.models.WilsonCowan(G=0.85), data.weights, lengths=data.lengths, speed=10.0)
    sim = fb.Simulation(net, dt=0.5, duration=4_000.0 if args.quick else 60_000.0,
                        noise=fb.AdditiveNoise(0.02), bold=fb.bold.HRF(tr=720.0))
    problem = fb.FCProblem(sim, train, skip=0 if args.quick else None,
                           free={"G": fb.Free(0.85, bounds=(0.1, 3.0)), "sigma": fb.Free(0.02, bounds=(0.005, 0.1))})
    budgets = (3, 2) if args.quick else (40, 15)
    coarse = fb.minimize(problem, "scipy:Nelder-Mead", budget=budgets[0])
    fine = fb.minimize(problem, "scipy:L-BFGS-B", coarse.x, budget=budgets[1])
    for res in (coarse, fine):
        print(f"{res.method:>20}: 1 - r = {res.fun:.4f} at G = {res.params['G']:.4f}, "
              f"sigma = {res.params['sigma']:.4f} ({res.nfev} evaluations, {res.wall_time:.1f} s)")
    heldout = data.group_fc([4, 5, 6])
    fc = problem.fc(fine.x)
    iu = np.triu_indices(fc.shape[0], 1)
    print(f"held-out FC r = {np.corrcoef(fc[iu], heldout[iu])[0, 1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
