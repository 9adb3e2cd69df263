"""fitbridge: fit whole-brain network models to fMRI functional connectivity.

Importing the package has no side effects: it sets no JAX flags, prints nothing and
creates no random keys. Public names are loaded lazily on first access, so
``import fitbridge`` is fast and optional libraries are only imported when used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0.dev0"

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "ConfigError": "_errors",
    "FitbridgeError": "_errors",
    "Network": "_network",
    "Simulation": "_simulate",
    "AdditiveNoise": "_simulate",
    "simulate": "_simulate",
    "Free": "_params",
    "ParameterSpace": "_params",
    "Problem": "_problem",
    "FCProblem": "_fcproblem",
    "minimize": "_minimize",
    "OptimizeResult": "_result",
    "multistart": "_multistart",
    "compare": "_compare",
    "plot_convergence": "_compare",
    "MultistartResult": "_multistart",
    "load_spec": "_spec",
    "spec_hash": "_spec",
    "ExperimentSpec": "_spec",
    "run_spec": "_runner",
    "RunResult": "_runner",
    "evaluate": "_evaluate",
    "Batch": "_evaluate",
    "fic": "_tuning",
    "eib": "_tuning",
    "TuningResult": "_tuning",
    "explore": "_explore",
    "save_table": "_explore",
    "load_table": "_explore",
    "Space": "_spaces",
    "Cache": "_cache",
    "StaleCacheEntry": "_cache",
    "WorkerLost": "_parallel",
}
# public aliases of names that would be ambiguous at the top level (fb.load vs fb.datasets.load)
_RENAMED = {"save_table": "save", "load_table": "load"}
_SUBMODULES = {"models", "bold", "datasets", "losses", "backends", "plots", "spaces"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"fitbridge.{_EXPORTS[name]}")
        return getattr(module, _RENAMED.get(name, name))
    if name in _SUBMODULES:
        return importlib.import_module(f"fitbridge.{name}")
    raise AttributeError(f"module 'fitbridge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
