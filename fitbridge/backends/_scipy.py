"""SciPy backends: every ``scipy.optimize.minimize`` method, and scipy's global optimizers.

* Gradient methods get ``jac=True`` with the Objective's ``fun_and_jac`` (one compiled call per
  point); Newton-type methods also get ``hessp``/``hess`` (forward over reverse).
* Methods that honour bounds receive the box. COBYLA treats bounds as constraints and may
  step outside them; it sees ``f(clip(x))``, so the loss is never evaluated outside the box.
* Methods that ignore bounds (BFGS, CG, Newton-CG, dogleg, trust-ncg/krylov/exact) run in the
  space's unbounded coordinate ``z`` (``ParameterSpace.to_unbounded``), with gradients and
  Hessians chain-ruled; ``minimize`` refuses them when a transform does not remove a bound
  (use L-BFGS-B, or ``transform="logit"``/``"log"``). dogleg and trust-exact need a positive
  definite Hessian (scipy's rule), which a transform can spoil far from the optimum.
* ``budget`` becomes scipy's own evaluation/iteration limit as a hint (user options win;
  shgo gets none, since its ``maxfev`` makes it iterate until the limit); the Objective
  enforces it exactly. SciPy's callbacks are not used (fitbridge calls the user
  callback per evaluation), which sidesteps TNC's bare-array callback.
* Global: ``differential_evolution`` (vectorized through ``batch``, ``rng=seed``, polished by
  L-BFGS-B with exact gradients), ``dual_annealing`` and ``basinhopping`` (L-BFGS-B with exact
  gradients as local steps), ``shgo``, ``direct``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._registry import BackendOutcome, register

__all__: list[str] = []


@dataclasses.dataclass(frozen=True)
class _Local:
    needs_jac: bool
    supports_bounds: bool
    budget_key: str  # scipy option that limits evaluations (or iterations)
    hessian: str | None = None  # "hessp" or "hess"
    clip: bool = False  # may step outside the box: evaluate at the nearest point inside


_LOCAL = {
    "Nelder-Mead": _Local(False, True, "maxfev"),
    "Powell": _Local(False, True, "maxfev"),
    "COBYLA": _Local(False, True, "maxiter", clip=True),  # its maxiter counts evaluations
    "COBYQA": _Local(False, True, "maxfev"),
    "L-BFGS-B": _Local(True, True, "maxfun"),
    "TNC": _Local(True, True, "maxfun"),
    "SLSQP": _Local(True, True, "maxiter"),
    "trust-constr": _Local(True, True, "maxiter"),
    "BFGS": _Local(True, False, "maxiter"),
    "CG": _Local(True, False, "maxiter"),
    "Newton-CG": _Local(True, False, "maxiter", "hessp"),
    "trust-ncg": _Local(True, False, "maxiter", "hessp"),
    "trust-krylov": _Local(True, False, "maxiter", "hessp"),
    "trust-exact": _Local(True, False, "maxiter", "hess"),
    "dogleg": _Local(True, False, "maxiter", "hess"),
}


def _outcome(res, x=None) -> BackendOutcome:
    return BackendOutcome(
        x=np.asarray(res.x if x is None else x, dtype=np.float64),
        fun=float(res.fun),
        success=bool(res.success),
        status=int(res.get("status", 0)),
        message=str(res.message),
        nit=int(res.get("nit", 0)),
    )


class _ZSpace:
    """The Objective seen in the unbounded coordinate ``z``: f(x(z)), chain-ruled derivatives."""

    def __init__(self, obj):
        self.obj, self.space = obj, obj.space
        self._last = (None, None)  # (z, gradient in x) of the latest evaluation

    def fun_and_jac(self, z):
        z = np.asarray(z, dtype=np.float64)
        f, g = self.obj.fun_and_jac(self.space.from_unbounded(z))
        self._last = (z.copy(), g)
        return f, g * self.space.from_unbounded_jac(z)

    def _grad_x(self, z):
        if self._last[0] is None or not np.array_equal(self._last[0], z):
            self.fun_and_jac(z)
        return self._last[1]

    def hessp(self, z, p):
        z, p = np.asarray(z, dtype=np.float64), np.asarray(p, dtype=np.float64)
        j, x = self.space.from_unbounded_jac(z), self.space.from_unbounded(z)
        curv = self._grad_x(z) * self.space.from_unbounded_jac2(z)
        return j * self.obj.hessp(x, j * p) + curv * p

    def hess(self, z):
        z = np.asarray(z, dtype=np.float64)
        j = self.space.from_unbounded_jac(z)
        h = j[:, None] * self.obj.hess(self.space.from_unbounded(z)) * j[None, :]
        return h + np.diag(self._grad_x(z) * self.space.from_unbounded_jac2(z))


def _run_local(obj, x0, *, budget, seed, options, method):
    from scipy.optimize import minimize

    name = method.split(":", 1)[1]
    spec = _LOCAL[name]
    opts = dict(options)
    if budget is not None:
        opts.setdefault(spec.budget_key, int(budget))
    if spec.supports_bounds:
        fun = obj.fun_and_jac if spec.needs_jac else obj.fun
        if spec.clip:
            fun = lambda x: obj.fun(np.clip(x, obj.lower, obj.upper))  # noqa: E731
        bounds = obj.bounds if obj.has_finite_bounds else None
        res = minimize(
            fun, x0, jac=True if spec.needs_jac else None, method=name, bounds=bounds, options=opts
        )
        return _outcome(res, np.clip(res.x, obj.lower, obj.upper))
    zs = _ZSpace(obj)
    extra = {spec.hessian: getattr(zs, spec.hessian)} if spec.hessian else {}
    res = minimize(
        zs.fun_and_jac, obj.to_unbounded(x0), jac=True, method=name, options=opts, **extra
    )
    return _outcome(res, obj.from_unbounded(res.x))


for _name, _spec in _LOCAL.items():
    register(
        f"scipy:{_name}",
        needs_jac=_spec.needs_jac,
        supports_bounds=_spec.supports_bounds,
        uses_hessian=_spec.hessian is not None,
        library="scipy",
    )(_run_local)


# ---------------------------------------------------------------- global methods
def _polish(obj, x, options: dict):
    """L-BFGS-B with exact gradients from ``x`` (the local phase of the global methods)."""
    from scipy.optimize import minimize

    return minimize(
        obj.fun_and_jac,
        np.clip(x, obj.lower, obj.upper),
        jac=True,
        method="L-BFGS-B",
        bounds=obj.bounds,
        options=options,
    )


def _lbfgsb_method(obj):
    """A ``minimize(method=callable)`` that ignores scipy's fun and uses exact gradients."""

    def method(fun, x0, args=(), **kwargs):
        return _polish(obj, x0, {})

    return method


@register(
    "scipy:differential_evolution", needs_bounds=True, is_global=True, batched=True, library="scipy"
)
def _run_de(obj, x0, *, budget, seed, options, method):
    """Vectorized DE: each generation is one ``batch`` call; polished by L-BFGS-B + jac."""
    from scipy.optimize import differential_evolution

    opts = dict(options)
    polish = opts.pop("polish", True)
    opts.setdefault("popsize", 15)
    if budget is not None:  # generations that leave ~10% of the budget to the polish
        reserve = min(budget // 10, 50 * obj.dim) if polish else 0
        opts.setdefault("maxiter", max(1, (budget - reserve) // (opts["popsize"] * obj.dim) - 1))
    opts.setdefault("x0", x0)

    def batch(X):  # scipy sends (dims, candidates)
        X = np.asarray(X)
        return obj.batch(X.T) if X.ndim == 2 else obj.fun(X)

    res = differential_evolution(
        batch, obj.bounds, rng=seed, vectorized=True, updating="deferred", polish=False, **opts
    )
    if polish:
        local = _polish(obj, res.x, {})
        if local.fun <= res.fun:
            return dataclasses.replace(
                _outcome(res, local.x), fun=float(local.fun), nit=int(res.nit)
            )
    return _outcome(res)


@register("scipy:dual_annealing", needs_bounds=True, is_global=True, library="scipy")
def _run_dual_annealing(obj, x0, *, budget, seed, options, method):
    """Generalized simulated annealing; local searches are L-BFGS-B with exact gradients."""
    from scipy.optimize import dual_annealing

    opts = dict(options)
    if budget is not None:
        opts.setdefault("maxfun", int(budget))
    opts.setdefault("minimizer_kwargs", {"method": _lbfgsb_method(obj)})
    res = dual_annealing(
        obj.fun, list(zip(obj.lower, obj.upper, strict=True)), x0=x0, rng=seed, **opts
    )
    return _outcome(res)


@register("scipy:shgo", needs_bounds=True, is_global=True, library="scipy")
def _run_shgo(obj, x0, *, budget, seed, options, method):
    """Simplicial homology global optimization (deterministic); L-BFGS-B + jac local steps."""
    from scipy.optimize import shgo

    opts = dict(options)
    # no budget hint: shgo's maxfev makes it iterate until the budget is spent
    shgo_options = {"jac": True, **opts.pop("options", {})}
    opts.setdefault("minimizer_kwargs", {"method": "L-BFGS-B"})
    res = shgo(
        obj.fun_and_jac, list(zip(obj.lower, obj.upper, strict=True)), options=shgo_options, **opts
    )
    return _outcome(res)


class _BoxStep:
    """basinhopping step: uniform displacement of ``stepsize`` x box width, clipped to the box."""

    def __init__(self, lower, upper, stepsize: float, seed: int):
        width = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
        self.lower, self.upper, self.width = lower, upper, width
        self.stepsize, self.rng = stepsize, np.random.default_rng(seed)

    def __call__(self, x):
        step = self.rng.uniform(-self.stepsize, self.stepsize, size=x.shape) * self.width
        return np.clip(x + step, self.lower, self.upper)


@register("scipy:basinhopping", is_global=True, library="scipy")
def _run_basinhopping(obj, x0, *, budget, seed, options, method):
    """Basin hopping with L-BFGS-B + exact-gradient local runs and box-clipped random steps."""
    from scipy.optimize import basinhopping

    opts = dict(options)
    opts.setdefault("take_step", _BoxStep(obj.lower, obj.upper, opts.pop("stepsize", 0.25), seed))
    if budget is not None:
        opts.setdefault("niter", int(budget))
    kwargs = {
        "method": "L-BFGS-B",
        "jac": True,
        "bounds": obj.bounds if obj.has_finite_bounds else None,
    }
    res = basinhopping(obj.fun_and_jac, x0, minimizer_kwargs=kwargs, rng=seed, **opts)
    return _outcome(res)


@register("scipy:direct", needs_bounds=True, is_global=True, library="scipy")
def _run_direct(obj, x0, *, budget, seed, options, method):
    """DIRECT (deterministic box subdivision)."""
    from scipy.optimize import direct

    opts = dict(options)
    if budget is not None:
        opts.setdefault("maxfun", int(budget))
    res = direct(obj.fun, obj.bounds, **opts)
    return _outcome(res)
