"""Optax gradient methods, ``"optax:<name>"`` for every optax constructor of a learning rate.

Names: ``adam``, ``adamw``, ``sgd``, ``rmsprop``, ``lbfgs``, ``lion``, ``adagrad`` ... (every
top-level ``optax`` function whose first argument is ``learning_rate``).

The run happens in the space's unbounded coordinate ``z = obj.to_unbounded(x)``. Each step
takes the loss and gradient from ONE ``obj.fun_and_jac(x)`` call at ``x = from_unbounded(z)``,
maps the gradient by the chain rule (``dL/dz = dL/dx * obj.from_unbounded_jac(z)``) and
applies the optax update, a pure jitted function of ``(z, state, grad)``. Entries whose
transform does not remove their bounds (``identity`` with a finite bound) are projected back
onto the box after each step (projected gradient descent); declare bounded parameters with
``transform="logit"`` for a truly unconstrained run.

Steps and evaluations: a first-order method (adam, sgd ...) costs exactly one evaluation per
step. ``lbfgs`` runs its zoom line search inside the jitted step, with a value function that
calls back into ``obj.fun_and_jac`` (through ``jax.pure_callback``): a step costs one
evaluation per line-search trial (usually 1, at most 20), and the value and gradient at the
accepted point are reused by the next step (``optax.value_and_grad_from_state``).

Options (``minimize(..., options={...})``)
------------------------------------------
learning_rate : float, default 0.01 (``None`` for lbfgs: its line search sets the step)
steps : int, default ``budget`` (or 1000 without a budget): the most optimizer steps.
gtol : float, default 1e-8
    Stop (success) when ``max |dL/dz| <= gtol`` at a non-penalised point.
any other key
    Passed to the optax constructor (e.g. ``b1``, ``weight_decay``, ``momentum``,
    ``memory_size``). A constructor that takes a ``key`` (``noisy_sgd``) gets
    ``jax.random.key(seed)`` from the run's seed.

Lockstep restarts: :func:`run_lockstep` advances ``K`` starting points together, each step one
``obj.batch_fun_and_jac(X)`` call and one ``jit(vmap(update))`` (first-order methods only).
"""

from __future__ import annotations

import functools
import inspect
import threading

import numpy as np

from .._errors import fail
from .._lockstep import LockstepRun
from .._objective import BudgetExhausted
from ._registry import BackendOutcome, register_family

__all__ = ["run", "run_lockstep", "DEFAULT_LEARNING_RATE"]

DEFAULT_LEARNING_RATE = 0.01
DEFAULT_STEPS = 1000
DEFAULT_GTOL = 1e-8
EXAMPLES = ("adam", "adamw", "sgd", "rmsprop", "lbfgs")
_OWN = ("learning_rate", "steps", "gtol")
_COMPILED: dict = {}  # (kind, method, options, dim, seed) -> jitted step (and its callback box)


@functools.cache
def _names() -> tuple[str, ...]:
    """Top-level optax constructors whose first argument is ``learning_rate``."""
    import optax

    names = []
    for name in dir(optax):
        fn = getattr(optax, name)
        if name.startswith(("_", "scale_by")) or not inspect.isfunction(fn):
            continue
        params = list(inspect.signature(fn).parameters)
        if params and params[0] == "learning_rate":
            names.append(name)
    return tuple(names)


def _linesearch(name: str) -> bool:
    import optax

    return "linesearch" in inspect.signature(getattr(optax, name)).parameters


def _settings(name: str, options: dict, budget: int | None, seed: int):
    """(transformation, steps, gtol) from the options, validated."""
    import optax

    ctor = getattr(optax, name)
    accepted = set(inspect.signature(ctor).parameters)
    extra = {k: v for k, v in options.items() if k not in _OWN}
    seeded = {"key", "seed"} & accepted
    for key in extra:
        if key not in accepted or key in seeded:
            fail(f"optax:{name} options", f"one of {sorted(set(_OWN) | accepted - seeded)}",
                 repr(key), f"see help(optax.{name}); the seed comes from minimize(seed=...)")
    lr = options.get("learning_rate", None if _linesearch(name) else DEFAULT_LEARNING_RATE)
    if "key" in accepted:
        import jax

        extra["key"] = jax.random.key(int(seed))
    elif "seed" in accepted:
        extra["seed"] = int(seed)
    steps = options.get("steps", budget if budget is not None else DEFAULT_STEPS)
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        fail(f"optax:{name} options['steps']", "a positive int", repr(steps), "pass steps=500")
    gtol = float(options.get("gtol", DEFAULT_GTOL))
    return ctor(lr, **extra), int(steps), gtol


class _Space:
    """z <-> x maps of an Objective, with the projection of boxed entries."""

    def __init__(self, obj):
        self.obj = obj
        self.boxed = ~obj.space.unbounded_mask

    def x(self, z: np.ndarray) -> np.ndarray:
        return self.obj.from_unbounded(z)

    def grad_z(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g * self.obj.from_unbounded_jac(z)

    def project(self, z: np.ndarray) -> np.ndarray:
        if not self.boxed.any():
            return z
        z = np.array(z, dtype=np.float64)
        z[self.boxed] = self.obj.to_unbounded(self.obj.from_unbounded(z))[self.boxed]
        return z


def _tx_key(kind: str, name: str, options: dict, dim: int, seed: int) -> tuple:
    """Cache key of a compiled step: everything that shapes the transformation."""
    tx_options = sorted((k, repr(v)) for k, v in options.items() if k not in ("steps", "gtol"))
    return kind, name, tuple(tx_options), dim, seed


def _compiled(key: tuple, build):
    """``build()`` once per key: compiling a step costs more than most runs."""
    if key not in _COMPILED:
        _COMPILED[key] = build()
    return _COMPILED[key]


def _first_order_update(tx):
    """The pure step ``(z, state, dL/dz) -> (z, state)`` of a first-order transformation."""
    import optax

    def step(z, state, g):
        updates, state = tx.update(g, state, z)
        return optax.apply_updates(z, updates), state

    return step


def _run_first_order(obj, tx, z0, steps, gtol, key):
    import jax

    space, z, gmax, nit = _Space(obj), np.asarray(z0, np.float64), np.inf, 0
    step = _compiled(key, lambda: jax.jit(_first_order_update(tx)))
    with jax.enable_x64(True):
        state = tx.init(jax.numpy.asarray(z))
        for nit in range(1, steps + 1):
            f, g = obj.fun_and_jac(space.x(z))
            gz = space.grad_z(z, g)
            gmax = float(np.max(np.abs(gz)))
            if gmax <= gtol and f < obj.penalty:
                return nit, gmax
            z_new, state = step(z, state, gz)
            z = space.project(np.asarray(z_new, dtype=np.float64))
    return nit, gmax


def _host_value_and_grad(obj, space, box: dict):
    """NumPy (value, dL/dz) at z; an exception from the objective is kept in ``box``."""

    def host(z):
        z = np.asarray(z, dtype=np.float64)
        if "error" in box:
            return np.float64(np.inf), np.zeros_like(z)
        try:
            f, g = obj.fun_and_jac(space.x(z))
        except Exception as err:  # re-raised by the caller after the jitted step
            box["error"] = err
            return np.float64(np.inf), np.zeros_like(z)
        return np.float64(f), space.grad_z(z, g)

    return host


def _linesearch_step(tx, host):
    """A jitted step whose value function calls the objective back (value and gradient)."""
    import jax
    import jax.numpy as jnp
    import optax

    def both(z):
        shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct(z.shape, jnp.float64))
        return jax.pure_callback(host, shapes, z)

    @jax.custom_vjp
    def value_fn(z):
        return both(z)[0]

    value_fn.defvjp(both, lambda g, ct: (ct * g,))
    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def step(z, state):
        value, grad = value_and_grad(z, state=state)
        updates, state = tx.update(grad, state, z, value=value, grad=grad, value_fn=value_fn)
        return optax.apply_updates(z, updates), state, value, jnp.max(jnp.abs(grad))

    return jax.jit(step)


def _cached_linesearch_step(tx, key):
    """The compiled line-search step for ``key`` (its callback reads ``holder["host"]``).

    Compiling the zoom line search takes seconds, so the step is compiled once per
    (method, options, dimension) and reused; its lock serialises runs that share it.
    """
    def build():
        holder: dict = {}
        return _linesearch_step(tx, lambda z: holder["host"](z)), holder, threading.Lock()

    return _compiled(key, build)


def _run_linesearch(obj, tx, z0, steps, gtol, key):
    step, holder, lock = _cached_linesearch_step(tx, key)
    with lock:
        space, box = _Space(obj), {}
        holder["host"] = _host_value_and_grad(obj, space, box)
        try:
            return _linesearch_loop(step, tx, space, box, z0, steps, gtol)
        finally:
            holder.clear()


def _linesearch_loop(step, tx, space, box, z0, steps, gtol):
    import jax

    z, gmax, nit, obj = np.asarray(z0, np.float64), np.inf, 0, space.obj
    with jax.enable_x64(True):
        state = tx.init(jax.numpy.asarray(z))
        for nit in range(1, steps + 1):
            z_new, state, value, gmax = step(z, state)
            if "error" in box:
                raise box["error"]
            gmax = float(gmax)
            if gmax <= gtol and float(value) < obj.penalty:
                return nit, gmax
            z = space.project(np.asarray(z_new, dtype=np.float64))
    return nit, gmax


def run(obj, x0: np.ndarray, *, budget: int | None, seed: int, options: dict,
        method: str) -> BackendOutcome:
    """Run ``optax:<name>`` in the unbounded coordinate (module docstring)."""
    name = method.split(":", 1)[1]
    options = dict(options or {})
    tx, steps, gtol = _settings(name, options, budget, seed)
    z0 = obj.to_unbounded(np.asarray(x0, dtype=np.float64))
    if _linesearch(name):
        key = _tx_key("linesearch", name, options, obj.dim, seed)
        nit, gmax = _run_linesearch(obj, tx, z0, steps, gtol, key)
    else:
        key = _tx_key("first-order", name, options, obj.dim, seed)
        nit, gmax = _run_first_order(obj, tx, z0, steps, gtol, key)
    done = gmax <= gtol
    return BackendOutcome(
        x=obj.best_x.copy(), fun=float(obj.best_fun), success=bool(done), status=0 if done else 1,
        message=(f"optax {name}: max|dL/dz| = {gmax:.3g} <= gtol" if done
                 else f"optax {name}: {steps} steps done (max|dL/dz| = {gmax:.3g})"), nit=nit)


def run_lockstep(obj, X0: np.ndarray, *, method: str, options: dict | None = None,
                 seed: int = 0) -> list[LockstepRun]:
    """Advance ``K`` starts of a first-order ``optax:<name>`` method together.

    Each step is ONE ``obj.batch_fun_and_jac`` call over the starts still running, and one
    ``jit(vmap(update))``; a start stops when ``max |dL/dz| <= gtol``. The budget counts
    every point (K evaluations per step while all run). When it runs out the runs end there
    (``message`` says so; check ``obj.remaining == 0``); other exceptions propagate.

    Parameters
    ----------
    obj : Objective
    X0 : (K, d) array of starting points (natural coordinates).
    method : ``"optax:<name>"`` (not ``lbfgs``: its line search is sequential).
    options, seed : as for :func:`run`.
    """
    name = method.split(":", 1)[1]
    if _linesearch(name):
        fail("lockstep restarts", "a first-order optax method (adam, sgd ...)", repr(method),
             "use method='scipy:L-BFGS-B' with lockstep=True for a quasi-Newton method")
    options = dict(options or {})
    tx, steps, gtol = _settings(name, options, obj.budget, seed)
    X0 = np.atleast_2d(np.asarray(X0, dtype=np.float64))
    track = _Tracks(X0)
    key = _tx_key("lockstep", name, options, obj.dim, seed)
    try:
        _lockstep_loop(obj, tx, X0, steps, gtol, track, key)
        why = f"optax {name}: " + "{}"
    except BudgetExhausted:
        track.add(obj, track.last_idx, track.last_base, None, None)
        why = f"optax {name}: stopped by the budget ({{}})"
    return track.runs(why, gtol)


class _Tracks:
    """Per-start bookkeeping of a lockstep run."""

    def __init__(self, X0):
        K = X0.shape[0]
        self.X0, self.best_f, self.best_x = X0, np.full(K, np.inf), X0.copy()
        self.nit, self.active, self.gmax = np.zeros(K, int), np.ones(K, bool), np.full(K, np.inf)
        self.evals: list[list[int]] = [[] for _ in range(K)]
        self.last_idx, self.last_base = np.zeros(0, int), 0

    def add(self, obj, idx, base, X, F) -> None:
        """Record the evaluations ``base ..`` of starts ``idx`` (those that were evaluated)."""
        n = obj.nfev - base
        idx = idx[:n]
        for j, k in enumerate(idx):
            self.evals[k].append(base + j)
        if F is None and n:  # the call raised after evaluating n points: read them back
            rows = obj.history.iloc[base:base + n]
            X, F = rows[obj.names].to_numpy(dtype=np.float64), rows["fun"].to_numpy(np.float64)
        if F is not None:
            better = F < self.best_f[idx]
            self.best_f[idx[better]], self.best_x[idx[better]] = F[better], X[better]

    def runs(self, why: str, gtol: float) -> list[LockstepRun]:
        out = []
        for k in range(len(self.X0)):
            done = not self.active[k]
            detail = (f"max|dL/dz| = {self.gmax[k]:.3g} <= gtol" if done
                      else f"{self.nit[k]} steps, max|dL/dz| = {self.gmax[k]:.3g}")
            out.append(LockstepRun(self.X0[k], self.best_x[k], float(self.best_f[k]),
                                   int(self.nit[k]), done, why.format(detail),
                                   tuple(self.evals[k])))
        return out


def _lockstep_loop(obj, tx, X0, steps, gtol, track: _Tracks, key: tuple) -> None:
    import jax

    space = _Space(obj)
    Z = np.stack([obj.to_unbounded(x) for x in X0])
    step = _compiled(key, lambda: jax.jit(jax.vmap(_first_order_update(tx))))
    with jax.enable_x64(True):
        state = jax.vmap(tx.init)(jax.numpy.asarray(Z))
        for _ in range(steps):
            idx = np.flatnonzero(track.active)
            if idx.size == 0:
                return
            X = np.stack([space.x(z) for z in Z[idx]])
            track.last_idx, track.last_base = idx, obj.nfev
            F, G = obj.batch_fun_and_jac(X)
            track.add(obj, idx, track.last_base, X, F)
            track.last_idx = np.zeros(0, int)
            Gz = np.zeros_like(Z)
            Gz[idx] = np.stack([space.grad_z(z, g) for z, g in zip(Z[idx], G)])
            track.nit[idx] += 1
            track.gmax[idx] = np.max(np.abs(Gz[idx]), axis=1)
            done = (track.gmax[idx] <= gtol) & (F < obj.penalty)
            track.active[idx[done]] = False
            Z_new, state_new = step(Z, state, Gz)
            keep = jax.numpy.asarray(track.active)
            state = jax.tree.map(lambda new, old: _where_rows(keep, new, old), state_new, state)
            Z_new = np.stack([space.project(z) for z in np.asarray(Z_new)])
            Z = np.where(track.active[:, None], Z_new, Z)


def _where_rows(mask, new, old):
    """Rows of ``new`` where ``mask``, else rows of ``old`` (any trailing shape)."""
    import jax.numpy as jnp

    if jnp.ndim(new) == 0:
        return new
    return jnp.where(mask.reshape((-1,) + (1,) * (jnp.ndim(new) - 1)), new, old)


register_family("optax", run, choices=_names, examples=EXAMPLES, needs_jac=True,
                supports_bounds=True, is_global=False, batched=False, library="optax")
