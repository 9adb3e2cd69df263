"""CMA-ES through pycma's ask/tell interface, one batched evaluation per generation.

Method name ``"cma"``. Every generation is evaluated by ONE ``obj.batch(X)`` call (with
noise handling, a second batch re-evaluates a few points for the noise measurement).

Options (``minimize(..., options={...})``)
------------------------------------------
sigma0 : float, default 0.3
    Initial step size *relative to the box*: coordinate ``i`` starts with standard deviation
    ``sigma0 * scale[i]``, where ``scale[i] = upper[i] - lower[i]`` for a finite box and
    ``max(1, |x0[i]|)`` where a bound is infinite (passed to pycma as ``CMA_stds``).
popsize : int, optional
    Population size (pycma's default ``4 + floor(3 ln d)``).
noise_handling : bool or dict, default False
    Use ``cma.NoiseHandler`` (Hansen et al. 2009): a few points are re-evaluated each
    generation to measure the noise, which raises the step size and, with
    ``{"maxevals": [1, 1, 30]}``, the number of evaluations averaged (median) per point.
    A dict is passed to ``cma.NoiseHandler`` as keyword arguments.
    With noise handling, or a problem whose noise policy is ``"resample"``, the answer is the
    distribution mean (``es.result.xfavorite``, not evaluated: ``fun`` is NaN), which under
    noise estimates the optimum better than the luckiest sample.
any other key
    Passed to pycma (``cma.CMAOptions``), e.g. ``tolfun``, ``tolx``, ``CMA_elitist``.

Bounds use pycma's ``bounds`` option (``BoundTransform``: every evaluated point is inside the
box). The run is always seeded and silent: samples are drawn from a private
``numpy.random.Generator(seed)`` (pycma's ``randn`` option), so the global NumPy random state
is neither used nor reseeded, ``seed=0`` is a valid seed (pycma's own ``seed=0`` would mean
"random"), and no files are written (``verbose=-9``, ``verb_log=0``, ``verb_disp=0``).
"""

from __future__ import annotations

import difflib

import numpy as np

from .._errors import fail
from .._objective import BudgetExhausted
from ._registry import BackendOutcome, register

__all__ = ["run", "DEFAULT_SIGMA0", "box_scale"]

DEFAULT_SIGMA0 = 0.3
_OWN = ("sigma0", "popsize", "noise_handling")
_FORCED = ("seed", "randn", "verbose", "verb_log", "verb_disp", "bounds", "CMA_stds")
_SUCCESS_KEYS = ("tolfun", "tolfunhist", "tolx", "tolstagnation", "tolflatfitness", "ftarget",
                 "tolfunrel", "tolupsigma")


def box_scale(lower: np.ndarray, upper: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Per-coordinate scale: the box width, or ``max(1, |x0|)`` where a bound is infinite."""
    width = np.asarray(upper, float) - np.asarray(lower, float)
    fallback = np.maximum(1.0, np.abs(np.asarray(x0, float)))
    return np.where(np.isfinite(width), width, fallback)


def _pycma_options(obj, x0, rng, options: dict) -> dict:
    """Translate fitbridge options into a pycma options dict (validated)."""
    import cma

    known = set(cma.CMAOptions())
    user = {k: v for k, v in options.items() if k not in _OWN}
    for key in user:
        if key in _FORCED:
            fail("cma options", "options that fitbridge does not set itself", repr(key),
                 "pass seed= to minimize; bounds come from the problem; use sigma0 for step sizes")
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known | set(_OWN)), n=3, cutoff=0.6)
            fail("cma options", "a fitbridge cma option or a cma.CMAOptions key", repr(key),
                 f"did you mean {' or '.join(map(repr, close))}?" if close
                 else f"choose among {list(_OWN)} or cma.CMAOptions() keys")
    opts = dict(user)
    opts.update(seed=np.nan, randn=lambda *shape: rng.standard_normal(shape),
                verbose=-9, verb_log=0, verb_disp=0,
                bounds=[obj.lower.tolist(), obj.upper.tolist()])
    if obj.dim > 1:
        opts["CMA_stds"] = box_scale(obj.lower, obj.upper, x0).tolist()
    else:  # pycma 4.5 in 1-D cannot rescale its sigma_vec (DiagonalDecoding.set_i raises), which
        # CMA_stds and the default maxstd_boundrange=1/3 clamp would both need: run() folds the
        # scale into sigma0 and the std is capped through sigma0 only
        opts["maxstd_boundrange"] = np.inf
    popsize = options.get("popsize")
    if popsize is not None:
        if isinstance(popsize, bool) or int(popsize) != popsize or popsize < 2:
            fail("cma options['popsize']", "an int >= 2", repr(popsize), "pass e.g. popsize=16")
        opts["popsize"] = int(popsize)
    return opts


def _sigma0(options: dict) -> float:
    sigma0 = options.get("sigma0", DEFAULT_SIGMA0)
    if isinstance(sigma0, bool) or not np.isscalar(sigma0) or not 0 < float(sigma0) < np.inf:
        fail("cma options['sigma0']", "a positive float (a fraction of the box width)",
             repr(sigma0), "pass e.g. sigma0=0.3")
    return float(sigma0)


def _noise_handler(n: int, spec):
    import cma

    if spec is False or spec is None:
        return None
    kwargs = {} if spec is True else dict(spec) if isinstance(spec, dict) else None
    if kwargs is None:
        fail("cma options['noise_handling']", "True, False or a dict of cma.NoiseHandler arguments",
             repr(spec), "pass noise_handling=True")
    return cma.NoiseHandler(n, **kwargs)


def _evaluate(obj, X: np.ndarray, repeats: int) -> np.ndarray:
    """One batch call: every row ``repeats`` times, aggregated by the median."""
    if repeats == 1:
        return obj.batch(X)
    F = obj.batch(np.repeat(X, repeats, axis=0))
    return np.median(F.reshape(len(X), repeats), axis=1)


def _reeval_indices(nh, fit: np.ndarray, rng) -> np.ndarray:
    """``NoiseHandler.indices`` with the run's generator instead of the global one."""
    lam = nh.lam_reeval if nh.lam_reeval else 2 + len(fit) / 20
    lam = int(lam) + int((lam % 1) > rng.random())
    first = lam - lam // 2
    rest = np.argsort(fit[first:])[: lam - first] + first
    return np.concatenate([np.arange(first), rest]).astype(int)


def _treat_noise(es, nh, obj, X: np.ndarray, F: np.ndarray, repeats: int, rng) -> float:
    """Batched ``NoiseHandler.__call__``: returns the factor for sigma."""
    if not nh.maxevals or nh.lam_reeval == 0:
        return 1.0
    idx = _reeval_indices(nh, F, rng)
    if idx.size == 0:
        return 1.0
    Xre = np.array([es.ask(1, X[i], nh.epsilon)[0] for i in idx]) if nh.epsilon else X[idx]
    fitre = F.copy()
    fitre[idx] = _evaluate(obj, Xre, repeats)
    nh.fit, nh.fitre, nh.idx = list(F), list(fitre), idx
    nh.evaluations_just_done = repeats * idx.size
    nh.update_measure()
    return float(nh.treat())


@register("cma", needs_jac=False, supports_bounds=True, is_global=True, batched=True,
          library="cma")
def run(obj, x0: np.ndarray, *, budget: int | None, seed: int, options: dict,
        method: str) -> BackendOutcome:
    """CMA-ES (pycma ask/tell), one ``obj.batch`` per generation; see the module docstring."""
    import cma

    options = dict(options or {})
    rng = np.random.default_rng(seed)
    sigma0 = _sigma0(options)
    if obj.dim == 1:
        sigma0 *= float(box_scale(obj.lower, obj.upper, x0)[0])
    es = cma.CMAEvolutionStrategy(np.asarray(x0, float), sigma0,
                                  _pycma_options(obj, x0, rng, options))
    nh = _noise_handler(es.N, options.get("noise_handling", False))
    try:
        _generations(es, nh, obj, rng)
    except BudgetExhausted:
        status, message = 1, f"stopped: the budget of {obj.budget} evaluations is used up"
    else:
        stop = dict(es.stop())
        status, message = int(not any(k in stop for k in _SUCCESS_KEYS)), f"pycma stopped: {stop}"
    result = es.result
    if result.xbest is None:  # stopped inside the first generation
        x, fun = obj.best_x, float(obj.best_fun)
    elif nh is not None or obj.problem.noise == "resample":  # the mean beats a lucky sample
        x, fun = np.asarray(result.xfavorite, dtype=np.float64), np.nan
    else:
        x, fun = np.asarray(result.xbest, dtype=np.float64), float(result.fbest)
    return BackendOutcome(x=x, fun=fun, success=status == 0, status=status, message=message,
                          nit=int(result.iterations))


def _generations(es, nh, obj, rng) -> None:
    """Ask, evaluate as one batch, tell; until pycma stops (or the budget raises)."""
    while not es.stop():
        X = np.asarray(es.ask(), dtype=np.float64)
        repeats = 1 if nh is None else max(1, int(nh.evaluations))
        F = _evaluate(obj, X, repeats)
        es.tell(list(X), F.tolist())
        if nh is not None:
            es.sigma *= _treat_noise(es, nh, obj, X, F, repeats, rng)
