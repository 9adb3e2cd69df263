"""Nevergrad optimizers, ``"nevergrad:<name>"`` for any name in ``ng.optimizers.registry``.

The loop is ask/tell batched by ``num_workers``: ask ``num_workers`` candidates, evaluate them
in ONE ``obj.batch`` call, tell every loss. Optimizers that nevergrad marks as sequential (its
scipy-backed ones: NelderMead, Powell, Cobyla, SQP ...) run with one worker.

Options (``minimize(..., options={...})``)
------------------------------------------
num_workers : int, default 8 (1 for sequential optimizers)
    Candidates asked, and evaluated as one batch, per round. It also steers what ``NGOpt``
    chooses (nevergrad picks its sub-optimizer from the dimension, budget and workers).

Parametrization: ``ng.p.Array(init=x0, lower=lower, upper=upper)`` when the box is finite;
otherwise (nevergrad's bounds need both sides finite) an unbounded Array with mutation scale
``0.3 * max(1, |x0|)`` whose candidates are clipped to the box before they are evaluated (the
optimizer is told the loss of the clipped point). Seeded through
``parametrization.random_state = np.random.RandomState(seed)``.
The budget defaults to ``100 * (dim + 1)`` evaluations, since nevergrad optimizers run until
their budget. A sequential optimizer that converges before the budget ends the run (instead
of letting nevergrad hand out random points).

Two traps of nevergrad 1.0.12 are handled here (see DESIGN.md, "Ecosystem facts"):

* numpy >= 2.4: ``MetaModel`` (picked by ``NGOpt``, e.g. with 8 workers and a budget of 100)
  calls ``float()`` on a shape-(1,) prediction, which numpy 2.4 refuses with ``TypeError:
  only 0-dimensional arrays can be converted to Python scalars``. While a run is active the
  ``nevergrad.optimization.metamodel`` module sees a ``float`` that also accepts size-1
  arrays (what numpy < 2.4 did), so ``MetaModel`` behaves as it does with numpy 2.3. The
  shim is reference-counted and removed when the last run ends.
* scipy-backed optimizers run scipy in a non-daemon thread that blocks forever if the
  optimizer is not garbage-collected, so the process never exits. After every run, each
  messaging thread found in the optimizer tree is told to stop and joined.
"""

from __future__ import annotations

import builtins
import contextlib
import difflib
import functools
import gc
import threading
import warnings

import numpy as np

from .._errors import fail
from ._registry import BackendOutcome, register_family

__all__ = ["run", "DEFAULT_WORKERS", "EXAMPLES"]

DEFAULT_WORKERS = 8
EXAMPLES = ("NGOpt", "TBPSA", "NoisyDE", "CMA", "PSO", "OnePlusOne", "DE", "NelderMead", "Powell")
_OPTIONS = ("num_workers",)
_SHIM = {"lock": threading.Lock(), "users": 0}


@functools.cache
def _names() -> tuple[str, ...]:
    """Every optimizer name nevergrad knows (imports nevergrad lazily)."""
    import nevergrad as ng

    return tuple(sorted(ng.optimizers.registry))


def _scalar_float(value=0.0, /):
    """``float`` that also accepts size-1 arrays, as numpy < 2.4 did."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())
    return builtins.float(value)


@contextlib.contextmanager
def _metamodel_float_fix():
    """Let nevergrad's MetaModel convert its shape-(1,) predictions (module docstring)."""
    from nevergrad.optimization import metamodel

    with _SHIM["lock"]:
        if _SHIM["users"] == 0 and "float" not in vars(metamodel):
            metamodel.float = _scalar_float
        _SHIM["users"] += 1
    try:
        yield
    finally:
        with _SHIM["lock"]:
            _SHIM["users"] -= 1
            if _SHIM["users"] == 0 and vars(metamodel).get("float") is _scalar_float:
                del metamodel.float


def _stop_threads(optimizer) -> None:
    """Stop and join every scipy messaging thread in ``optimizer``'s tree of sub-optimizers."""
    from nevergrad.optimization import base, recaster

    stack, seen, threads = [optimizer], set(), []
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, recaster.MessagingThread):
            item.stop()
            threads.append(item._thread)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, base.Optimizer):
            stack.extend(vars(item).values())
    for thread in threads:
        thread.join(timeout=5.0)
    gc.collect()


def _parametrization(obj, x0: np.ndarray, seed: int):
    import nevergrad as ng

    lo, hi = obj.lower, obj.upper
    x0 = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
        param = ng.p.Array(init=x0, lower=lo, upper=hi)
    else:  # nevergrad's bounds need both sides finite: candidates are clipped instead
        param = ng.p.Array(init=x0).set_mutation(sigma=0.3 * np.maximum(1.0, np.abs(x0)))
    param.random_state = np.random.RandomState(seed)
    return param


def _workers(name: str, options: dict) -> int:
    import nevergrad as ng

    for key in options:
        if key not in _OPTIONS:
            close = difflib.get_close_matches(key, _OPTIONS, n=1, cutoff=0.5)
            fail(f"nevergrad:{name} options", f"keys among {list(_OPTIONS)}", repr(key),
                 f"did you mean {close[0]!r}?" if close else "remove it")
    sequential = bool(getattr(ng.optimizers.registry[name], "no_parallelization", False))
    workers = options.get("num_workers", 1 if sequential else DEFAULT_WORKERS)
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        fail(f"nevergrad:{name} options['num_workers']", "a positive int", repr(workers),
             "pass e.g. num_workers=8")
    if sequential and workers > 1:
        fail(f"nevergrad:{name} options['num_workers']", f"1 ({name} runs sequentially)",
             repr(workers), "drop num_workers, or choose a parallel optimizer such as NGOpt or CMA")
    return int(workers)


def _loop(opt, obj, budget: int, workers: int) -> tuple[int, str]:
    """Ask/tell rounds of ``workers`` candidates; returns (rounds, reason it ended)."""
    import nevergrad as ng

    rounds, done = 0, 0
    while done < budget:
        n = min(workers, budget - done)
        try:
            cands = [opt.ask() for _ in range(n)]
        except ng.errors.FinishedUnderlyingOptimizerWarning:
            return rounds, "the underlying optimizer converged before the budget"
        X = np.stack([np.asarray(c.value, dtype=np.float64) for c in cands])
        F = obj.batch(np.clip(X, obj.lower, obj.upper))
        for cand, loss in zip(cands, F):
            opt.tell(cand, float(loss))
        done, rounds = done + n, rounds + 1
    return rounds, "budget used up"


def run(obj, x0: np.ndarray, *, budget: int | None, seed: int, options: dict,
        method: str) -> BackendOutcome:
    """Run ``nevergrad:<name>`` with batched ask/tell (module docstring)."""
    import nevergrad as ng

    name = method.split(":", 1)[1]
    options = dict(options or {})
    workers = _workers(name, options)
    budget = 100 * (obj.dim + 1) if budget is None else int(budget)
    opt = ng.optimizers.registry[name](parametrization=_parametrization(obj, x0, seed),
                                       budget=budget, num_workers=workers)
    try:
        with _metamodel_float_fix(), warnings.catch_warnings():
            # scipy's COBYLA complains about the settings nevergrad gives it (not user-fixable)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"scipy\._lib\.pyprima")
            # losses above 1e20 (e.g. PSO's arctan-spread particles on an open box) are
            # clipped by nevergrad itself; its advice to rescale the loss does not apply here
            warnings.simplefilter("ignore", ng.errors.LossTooLargeWarning)
            warnings.simplefilter("error", ng.errors.FinishedUnderlyingOptimizerWarning)
            rounds, why = _loop(opt, obj, budget - obj.nfev, workers)
            rec = opt.provide_recommendation()
    finally:
        _stop_threads(opt)
    x = np.clip(np.asarray(rec.value, dtype=np.float64), obj.lower, obj.upper)
    fun = rec.loss if rec.loss is not None else np.nan
    return BackendOutcome(x=x, fun=float(fun), success=True, status=0,
                          message=f"nevergrad {name}: {why}", nit=rounds)


register_family("nevergrad", run, choices=_names, examples=EXAMPLES, needs_jac=False,
                supports_bounds=True, is_global=True, batched=True, library="nevergrad")
