"""A tiny experiment on files (6 regions, 3 subjects) shared by the spec, CLI and experiment tests."""

from pathlib import Path

import numpy as np

N, SUBJECTS, FRAMES = 6, 3, 120


def write_data(folder: Path) -> dict:
    """Write weights, lengths and per-subject BOLD (.npy) into ``folder``; return the arrays."""
    rng = np.random.default_rng(7)
    w = rng.random((N, N))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0.0)
    lengths = 20.0 + 80.0 * rng.random((N, N))
    lengths = (lengths + lengths.T) / 2
    np.fill_diagonal(lengths, 0.0)
    shared = rng.standard_normal((FRAMES, 2)) @ rng.standard_normal((2, N))
    bold = np.stack([shared + 0.8 * rng.standard_normal((FRAMES, N)) for _ in range(SUBJECTS)])
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "weights.npy", w)
    np.save(folder / "lengths.npy", lengths)
    for s in range(SUBJECTS):
        np.save(folder / f"sub{s}.npy", bold[s])
    return {"weights": w, "lengths": lengths, "bold": bold}


def tiny_spec(**changes) -> dict:
    """A spec dict over the files of :func:`write_data` (paths relative to their folder)."""
    spec = {
        "name": "tiny",
        "model": {"name": "rww", "parameters": {
            "G": {"value": 0.4, "domain": [0.1, 0.9], "free": True},
            "w": {"value": 0.5, "domain": [0.3, 0.7], "free": True}}},
        "network": {"weights": "weights.npy", "lengths": "lengths.npy"},
        "integration": {"dt": 4.0, "duration": 14400, "sigma": 0.01},
        "observation": {"bold": {"kind": "hrf", "tr": 720}, "fc_skip": 2,
                        "target": {"bold": [f"sub{s}.npy" for s in range(SUBJECTS)], "tr": 720}},
        "exploration": {"mode": "sobol", "n": 4},
        "optimize": [{"method": "scipy:L-BFGS-B", "budget": 5, "start": "explore"},
                     {"method": "scipy:Nelder-Mead", "budget": 6, "start": "previous", "free": ["G"]}],
        "validation": {"train": [0, 1]},
        "execution": {"seed": 3},
    }
    spec.update(changes)
    return spec


def write_spec(folder: Path, spec: dict, name: str = "tiny.yaml") -> Path:
    import yaml

    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
