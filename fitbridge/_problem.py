"""The JAX <-> NumPy boundary: a loss of a parameter dict seen as a function of a float64 vector.

:class:`Problem` is the only place that jit-compiles an objective. Every compiled function is
traced and called inside ``with jax.enable_x64(True):`` (scoped: the global JAX config is never
touched), takes float64 NumPy and returns float64 NumPy. Values and gradients, of one point or
of a population (``batch``: CMA-ES generations, Nevergrad ``num_workers`` rounds, vectorized
differential evolution, lockstep restarts), all go through :func:`fitbridge.evaluate`: fixed
power-of-two chunks padded with the last row and sharded over the JAX devices, each shape
compiled once per problem, so a new number of points never compiles anything new once the
(at most ``log2(chunk_size) + 1``) chunk shapes have been seen.

Noise policies (``noise=``) for stochastic losses, which receive a PRNG key:

``"fixed"``
    One key, ``jax.random.key(seed)``, for every evaluation: common random numbers, a
    deterministic loss (use it with gradient methods and for comparisons).
``"resample"``
    ``fold_in(key(seed), index)``: a fresh realisation per evaluation, indexed by the
    evaluation counter (an optimizer run passes its own counter, so runs are reproducible).
``K`` or ``"average=K"``
    The mean over the K keys ``fold_in(key(seed), k)``, ``k < K``, vmapped in one call: a
    deterministic loss with K times less noise variance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import fail
from ._params import RESERVED_NAMES, Free, ParameterSpace

__all__ = ["Problem", "Evaluation"]


class Evaluation(NamedTuple):
    """Losses of ``n`` points: ``fun (n,)``, ``jac (n, d)`` or None, ``aux {name: (n,)}``."""

    fun: np.ndarray
    jac: np.ndarray | None
    aux: dict[str, np.ndarray]


def _parse_noise(noise, stochastic: bool) -> int:
    """Return 0 for fixed, -1 for resample, K >= 1 for average=K."""
    k = noise
    if isinstance(noise, str):
        m = re.fullmatch(r"average=(\d+)", noise.replace(" ", ""))
        k = {"fixed": 0, "resample": -1}.get(noise, int(m.group(1)) if m else None)
    if (
        isinstance(k, bool)
        or not isinstance(k, (int, np.integer))
        or k < -1
        or (k == 0 and noise != "fixed")
    ):
        fail(
            "Problem.noise",
            "'fixed', 'resample', 'average=K' or an int K >= 1",
            repr(noise),
            "use noise='fixed' for a deterministic loss",
        )
    if k != 0 and not stochastic:
        fail(
            "Problem.noise",
            "noise='fixed' for a deterministic loss (stochastic=False)",
            repr(noise),
            "pass stochastic=True if the loss draws random numbers from its key",
        )
    return int(k)


def _loss_identity(loss: Callable) -> str:
    code = getattr(loss, "__code__", None)
    digest = hashlib.sha256(code.co_code).hexdigest()[:16] if code is not None else ""
    name = getattr(loss, "__qualname__", type(loss).__qualname__)
    return f"{getattr(loss, '__module__', '?')}.{name}:{digest}"


class Problem:
    """A scalar JAX loss of named parameters, exposed as float64 functions of a flat vector.

    Parameters
    ----------
    loss : callable
        ``loss(params: dict[str, jax.Array], key) -> scalar`` (or ``(scalar, aux)`` with
        ``has_aux=True``, ``aux`` a dict of scalars such as ``{"fc_r": r}``). Pure JAX.
    space : ParameterSpace or dict[str, Free]
        The free parameters.
    stochastic : bool
        Whether the loss uses its key. A deterministic loss still receives one (ignored).
    noise : {"fixed", "resample", "average=K"} or int
        Noise policy (module docstring).
    seed : int
        Seed of the noise key.
    mode : {"auto", "reverse", "forward"}
        Differentiation mode of ``jac``/``fun_and_jac``; ``"auto"`` is forward (one ``jvp``
        pass per parameter, vmapped, no stored residuals) when ``dim <= 4``, else reverse.
    chunk_size : int, optional
        Largest batch compiled at once, rounded up to a multiple of the device count; batches
        are split and padded. Default: :func:`fitbridge.evaluate`'s memory budget (16 points
        per device on a CPU, up to 1024 on an accelerator).
    has_aux : bool
        The loss returns ``(value, aux)``.
    spec : dict, optional
        JSON-able description of what the loss computes (e.g. the simulation settings), hashed
        into :meth:`spec_hash`; defaults to the loss function's identity.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = Problem(lambda q, key: (q["a"] - 1.0) ** 2, {"a": Free(0.0, bounds=(-2, 2))})
    >>> p.fun_and_jac(p.x0)
    (1.0, array([-2.]))
    >>> p.batch([[0.0], [1.0], [3.0]])
    array([1., 0., 4.])
    """

    def __init__(
        self,
        loss: Callable,
        space: ParameterSpace | Mapping[str, Free],
        *,
        stochastic: bool = False,
        noise: str | int = "fixed",
        seed: int = 0,
        mode: str = "auto",
        chunk_size: int | None = None,
        has_aux: bool = False,
        spec: Mapping | None = None,
    ):
        if not callable(loss):
            fail(
                "Problem.loss",
                "a callable loss(params, key)",
                type(loss).__name__,
                "pass a function",
            )
        self.space = space if isinstance(space, ParameterSpace) else ParameterSpace(space)
        self.loss, self.stochastic, self.has_aux = loss, bool(stochastic), bool(has_aux)
        self.noise, self._k = noise, _parse_noise(noise, self.stochastic)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            fail("Problem.seed", "an int", repr(seed), "pass seed=0")
        self.seed = int(seed)
        if mode not in ("auto", "reverse", "forward"):
            fail("Problem.mode", "'auto', 'reverse' or 'forward'", repr(mode), "use mode='auto'")
        self.mode = ("forward" if self.space.dim <= 4 else "reverse") if mode == "auto" else mode
        if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1
                                       or not isinstance(chunk_size, (int, np.integer))):
            fail("Problem.chunk_size", "a positive int or None", repr(chunk_size),
                 "pass chunk_size=16, or None for the evaluator's memory budget")
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.spec = None if spec is None else dict(spec)
        self.nfev = 0  # points evaluated through this problem (all runs together)
        self._compiled: dict[str, Callable] = {}

    # ----------------------------------------------------------- flat view
    x0 = property(lambda self: self.space.x0.copy(), doc="Initial vector (float64, (d,)).")
    bounds = property(lambda self: self.space.bounds, doc="scipy.optimize.Bounds of the box.")
    names = property(lambda self: list(self.space.names), doc="Name of every vector entry.")
    dim = property(lambda self: self.space.dim, doc="Number of free scalar entries.")

    def spec_hash(self) -> str:
        """SHA-256 of the space, noise policy, seed and ``spec`` (or the loss identity)."""
        blob = {
            "space": self.space.describe(),
            "noise": str(self.noise),
            "seed": self.seed,
            "stochastic": self.stochastic,
            "has_aux": self.has_aux,
            "spec": self.spec if self.spec is not None else _loss_identity(self.loss),
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=repr).encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Problem({self.space!r}, noise={self.noise!r}, mode={self.mode!r})"

    def __getstate__(self) -> dict:
        """Pickled without its compiled functions (a worker compiles its own) and with its
        evaluation counter at 0: the pickle depends only on what the problem computes, so the
        workers of ``backend="joblib"``/``"dask"``, which keep one rebuilt problem (and its
        compiled kernels) per pickle hash, reuse it from one call to the next."""
        return {**self.__dict__, "_compiled": {}, "nfev": 0}

    # ------------------------------------------------------ traced kernels
    def _core(self, x, idx):
        """Traced ``(value, aux)`` at one point with evaluation index ``idx``."""
        params = self.space.unflatten(x)
        base = jax.random.key(self.seed)
        if self._k > 0:
            keys = jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.arange(self._k))
            values, aux = jax.vmap(lambda k: self._call(params, k))(keys)
            return jnp.mean(values), {k: jnp.mean(v) for k, v in aux.items()}
        key = jax.random.fold_in(base, idx) if self._k < 0 else base
        return self._call(params, key)

    def _call(self, params, key):
        out = self.loss(params, key)
        value, aux = out if self.has_aux else (out, {})
        value = jnp.asarray(value)
        if value.shape != ():
            fail(
                "Problem.loss",
                "a scalar loss",
                f"shape {value.shape}",
                "reduce the loss to one number (e.g. jnp.mean), "
                "or return (value, aux) with has_aux=True",
            )
        if not isinstance(aux, Mapping) or any(jnp.shape(v) != () for v in aux.values()):
            fail(
                "Problem.loss aux",
                "a dict of scalars",
                repr(jax.tree.map(jnp.shape, aux)),
                "return aux such as {'fc_r': r} with scalar values",
            )
        clash = set(map(str, aux)) & {*RESERVED_NAMES, *self.space.names}
        if clash:
            fail(
                "Problem.loss aux",
                "aux names distinct from history columns and parameter names",
                sorted(clash),
                "rename those aux values",
            )
        return value.astype(jnp.float64), {
            str(k): jnp.asarray(v, jnp.float64) for k, v in aux.items()
        }

    def _value_and_grad(self, x, idx):
        if self.mode == "reverse":
            (value, aux), grad = jax.value_and_grad(self._core, has_aux=True)(x, idx)
            return value, grad, aux

        def tangent(v):
            return jax.jvp(lambda y: self._core(y, idx), (x,), (v,), has_aux=True)

        values, grads, aux = jax.vmap(tangent)(jnp.eye(x.shape[0], dtype=x.dtype))
        return values[0], grads, jax.tree.map(lambda a: a[0], aux)

    def _kernel(self, name: str) -> Callable:
        """The compiled ``"hessp"`` or ``"hess"``, built on first use and cached (values and
        gradients are compiled by :mod:`fitbridge._evaluate`)."""
        if name not in self._compiled:
            grad_v = jax.grad(lambda x, i: self._core(x, i)[0])
            table = {
                "hessp": lambda x, p, i: jax.jvp(lambda y: grad_v(y, i), (x,), (p,))[1],
                "hess": lambda x, i: jax.jacfwd(grad_v)(x, i),
            }
            self._compiled[name] = jax.jit(table[name])
        return self._compiled[name]

    # -------------------------------------------------------- NumPy side
    def _vector(self, x, where: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            fail(
                where,
                f"a float vector of shape ({self.dim},) ordered as problem.names",
                f"shape {x.shape}",
                "pass problem.x0-like vectors; for many points use batch",
            )
        return x

    def _indices(self, n: int, index: int | None) -> np.ndarray:
        start = self.nfev if index is None else int(index)
        self.nfev += n
        return np.arange(start, start + n, dtype=np.int64)

    def evaluate(self, X, *, grad: bool = False, index: int | None = None) -> Evaluation:
        """Evaluate ``n`` points ``X (n, d)``: losses, gradients if ``grad``, and aux, as NumPy.

        ``index`` is the evaluation index of the first row (rows get consecutive indices;
        only the ``"resample"`` policy uses it). Default: this problem's running counter.
        Non-finite losses are returned as they are. Runs :func:`fitbridge.evaluate` in this
        process (chunked, padded, sharded over every JAX device, ``chunk_size`` of this
        problem); call that directly for observables, float32, workers or a cache.
        """
        from ._evaluate import evaluate  # _evaluate imports this module

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            fail(
                "Problem.batch",
                f"an array of shape (n_points, {self.dim})",
                f"shape {X.shape}",
                "stack one parameter vector per row",
            )
        out = evaluate(self, X, grad=grad, index=index, chunk_size=self._chunk_size(),
                       progress=False)
        return Evaluation(out.fun, out.jac, out.aux)

    def _chunk_size(self) -> int | None:
        """``chunk_size`` rounded up to a multiple of the device count (None: automatic)."""
        if self.chunk_size is None:
            return None
        k = len(jax.devices())
        return -(-self.chunk_size // k) * k

    def fun(self, x, *, index: int | None = None) -> float:
        """Loss at ``x`` (float)."""
        return float(self.evaluate(self._vector(x, "Problem.fun")[None], index=index).fun[0])

    def fun_aux(self, x, *, index: int | None = None) -> tuple[float, dict[str, float]]:
        """Loss and aux values at ``x``."""
        ev = self.evaluate(self._vector(x, "Problem.fun_aux")[None], index=index)
        return float(ev.fun[0]), {k: float(v[0]) for k, v in ev.aux.items()}

    def fun_and_jac(self, x, *, index: int | None = None) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``x`` from one compiled call."""
        ev = self.evaluate(self._vector(x, "Problem.fun_and_jac")[None], grad=True, index=index)
        return float(ev.fun[0]), ev.jac[0]

    def jac(self, x, *, index: int | None = None) -> np.ndarray:
        """Gradient at ``x`` ((d,) float64)."""
        return self.fun_and_jac(x, index=index)[1]

    def batch(self, X, *, index: int | None = None) -> np.ndarray:
        """Losses of the rows of ``X (n, d)`` -> ``(n,)``; jit(vmap) over padded chunks."""
        return self.evaluate(X, index=index).fun

    def batch_aux(self, X, *, index: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Losses ``(n,)`` and aux ``{name: (n,)}`` of the rows of ``X``."""
        ev = self.evaluate(X, index=index)
        return ev.fun, ev.aux

    def batch_fun_and_jac(self, X, *, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Losses ``(n,)`` and gradients ``(n, d)`` of the rows of ``X``."""
        ev = self.evaluate(X, grad=True, index=index)
        return ev.fun, ev.jac

    def hessp(self, x, p, *, index: int | None = None) -> np.ndarray:
        """Hessian-vector product (forward over reverse); not counted as an evaluation."""
        x, p = self._vector(x, "Problem.hessp"), self._vector(p, "Problem.hessp p")
        i = np.int64(max(self.nfev - 1, 0) if index is None else index)
        with jax.enable_x64(True):
            return np.asarray(self._kernel("hessp")(x, p, i), dtype=np.float64)

    def hess(self, x, *, index: int | None = None) -> np.ndarray:
        """Full Hessian ``(d, d)`` (forward over reverse; meant for small ``d``)."""
        x = self._vector(x, "Problem.hess")
        i = np.int64(max(self.nfev - 1, 0) if index is None else index)
        with jax.enable_x64(True):
            return np.asarray(self._kernel("hess")(x, i), dtype=np.float64)
