"""FIC + EIB on the embedded HCP data, then a gradient refinement of the same parameters.

Feedback inhibition control (Deco et al. 2014) tunes J_i per region towards <S_e> = 0.25;
excitation-inhibition balance (Schirner et al. 2023) learns per-edge long-range excitation
(wLRE) and feed-forward inhibition (wFFI) from the FC of the last 150 simulated BOLD frames,
with FIC alongside. The tuned network is then assessed on a fresh simulation against the
group FC of the 4 training subjects and of the 3 held-out subjects, refined with L-BFGS-B
(JAX reverse-mode gradients over J_i, wLRE, wFFI), and assessed again.

    python examples/fic_eib.py                 # ~3-5 minutes on 2 cores
    python examples/fic_eib.py --quick         # smoke run (a few iterations; not a fit)

The same workflow as a spec: ``fitbridge run examples/specs/fic_eib.yaml``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import fitbridge as fb

TRAIN, HELDOUT = [0, 1, 2, 3], [4, 5, 6]


def fc_r(a, b) -> float:
    iu = np.triu_indices(a.shape[0], 1)
    return float(np.corrcoef(a[iu], b[iu])[0, 1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few iterations, not a fit")
    parser.add_argument("--out", default="fitbridge-results/fic_eib", help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = fb.datasets.load("hcp")
    train, heldout = data.group_fc(TRAIN), data.group_fc(HELDOUT)
    net = fb.Network(fb.models.WongWangExcInh(G=1.0), data.weights)
    duration = 20_000.0 if args.quick else 170_000.0
    sim = fb.Simulation(net, dt=1.0, duration=duration, transient=5_000.0 if args.quick else 20_000.0,
                        noise=fb.AdditiveNoise(0.01), bold=fb.bold.HRF(tr=720.0))
    n_fic, n_eib, budget = (5, 8, 2) if args.quick else (150, 800, 8)

    balanced = fb.fic(sim, iterations=n_fic, eta=0.5)
    print(f"FIC: {balanced.iterations} TRs, <S_e> = {balanced.history['S_e'].iloc[-1]:.3f}")
    tuned = fb.eib(balanced.simulation, train, iterations=n_eib, eta=0.05, fic_eta=0.5, warmup=50,
                   window=4 if args.quick else 150)
    print(f"EIB: {tuned.iterations} TRs, window FC r = {tuned.fc_r:.3f}")

    fresh = np.corrcoef(fb.simulate(tuned.simulation).data.T)
    rows = [{"step": "fic+eib", "fc_r_train": fc_r(fresh, train), "fc_r_heldout": fc_r(fresh, heldout)}]

    problem = tuned.problem(train)
    res = fb.minimize(problem, "scipy:L-BFGS-B", budget=budget)
    refined = np.corrcoef(problem.simulate(res.x).T)
    rows.append({"step": "refined", "fc_r_train": fc_r(refined, train), "fc_r_heldout": fc_r(refined, heldout),
                 "nfev": res.nfev, "wall_time_s": res.wall_time})
    for row in rows:
        print(f"{row['step']:>8}: FC r train = {row['fc_r_train']:.3f}, held-out = {row['fc_r_heldout']:.3f}")
    tuned.history.to_csv(out / "tuning.csv", index=False)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    try:
        from fitbridge._figures import plot_tuning

        plot_tuning(tuned.history, out / "tuning.png")
    except ImportError:  # matplotlib is the `plots` extra
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
