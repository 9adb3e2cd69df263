"""The objective one optimizer run talks to: counting, history, penalty, budget, log, replay.

Backends never call the :class:`~fitbridge._problem.Problem` directly; they call an
:class:`Objective`, which

* counts evaluated points (``nfev``; ``njev`` for points whose gradient was computed, ``nhev``
  for Hessian(-vector) products, which do not use the budget),
* maps a non-finite loss (a diverging or saturated simulation) to ``penalty`` (default
  :data:`PENALTY` = 1e6, far above any FC loss, which lie in [0, 2]) with a zero gradient, so a
  gradient method sees a consistent (value, gradient) pair of a flat, high plateau; a finite
  loss whose gradient is not finite is penalised the same way,
* records one history row per point (x, fun, raw loss, aux such as ``fc_r``, time, ...),
* enforces ``budget`` exactly: a call that would exceed it evaluates what still fits, records
  it and raises :class:`BudgetExhausted`,
* writes every row to a durable log, calls the user callback (which may stop the run), and
* serves the rows of a resumed log instead of recomputing them (verifying ``x`` to 1e-12).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from ._errors import FitbridgeError, fail
from ._evallog import EvalLog
from ._problem import Problem
from ._progress import progress_bar

__all__ = ["Objective", "BudgetExhausted", "StopRequested", "PENALTY", "check_budget",
           "check_penalty"]

PENALTY = 1e6  #: loss seen by optimizers where the loss (or its gradient) is NaN or inf
REPLAY_ATOL = 1e-12  #: |x - x_logged| tolerance (relative to max(1, |x|)) when resuming


def check_budget(budget, where: str = "minimize(budget=...)") -> int | None:
    """``budget`` as an int >= 1 (None stays None); a ConfigError for anything else."""
    ok = budget is None or (isinstance(budget, (int, float, np.integer, np.floating))
                            and not isinstance(budget, bool) and np.isfinite(budget)
                            and int(budget) == budget and budget >= 1)
    if not ok:
        fail(where, "a positive int number of evaluations or None", repr(budget), "pass e.g. budget=200")
    return None if budget is None else int(budget)


def check_penalty(penalty) -> float:
    """``penalty`` as a finite float; a ConfigError for anything else."""
    if (isinstance(penalty, bool) or not isinstance(penalty, (int, float, np.integer, np.floating))
            or not np.isfinite(penalty)):
        fail("minimize(penalty=...)", "a finite float", repr(penalty), "pass e.g. 1e6")
    return float(penalty)


class BudgetExhausted(Exception):  # noqa: N818 (control flow, caught by minimize)
    """Raised by an Objective when its evaluation budget is used up."""


class StopRequested(Exception):  # noqa: N818
    """Raised by an Objective when the user callback returned True."""


class Objective:
    """One optimizer run's view of a problem (module docstring).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from fitbridge import Free, Problem
    >>> obj = Objective(Problem(lambda q, k: jnp.log(q["a"]), {"a": Free(1.0, bounds=(-1, 2))}),
    ...                 budget=3)
    >>> obj.fun([-0.5]), obj.batch([[1.0], [2.0]]).round(3).tolist(), obj.nfev
    (1000000.0, [0.0, 0.693], 3)
    >>> obj.fun([1.0])
    Traceback (most recent call last):
    ...
    fitbridge._objective.BudgetExhausted: budget of 3 evaluations used up
    """

    def __init__(
        self,
        problem: Problem,
        *,
        budget: int | None = None,
        seed: int = 0,
        penalty: float = PENALTY,
        callback: Callable[[dict], object] | None = None,
        log: EvalLog | None = None,
        replay: list[dict] | None = None,
        log_replayed: bool = False,
        progress: bool = False,
    ):
        check_budget(budget)
        check_penalty(penalty)
        self.problem, self.space = problem, problem.space
        self.budget = None if budget is None else int(budget)
        self.seed, self.penalty, self.callback = int(seed), float(penalty), callback
        self._log, self._replay, self._log_replayed = log, list(replay or []), bool(log_replayed)
        self.nfev = self.njev = self.nhev = self.npenalised = 0
        self.best_x, self.best_fun, self.best_jac = self.x0, np.inf, None
        self._rows: list[dict] = []
        self._t0 = time.perf_counter()
        # minimize's progress=True means "when stderr is a terminal" (progress_bar's None)
        self._bar = progress_bar(self.budget, progress=None if progress else False, unit="eval")

    # --------------------------------------------------- delegated views
    dim = property(lambda self: self.space.dim)
    names = property(lambda self: list(self.space.names))
    x0 = property(lambda self: self.space.x0.copy())
    lower = property(lambda self: self.space.lower.copy())
    upper = property(lambda self: self.space.upper.copy())
    bounds = property(lambda self: self.space.bounds)
    has_finite_bounds = property(lambda self: self.space.has_finite_bounds)
    remaining = property(
        lambda self: None if self.budget is None else self.budget - self.nfev,
        doc="Evaluations left in the budget (None: unlimited).",
    )

    def to_unbounded(self, x):
        return self.space.to_unbounded(x)

    def from_unbounded(self, z):
        return self.space.from_unbounded(z)

    def from_unbounded_jac(self, z):
        return self.space.from_unbounded_jac(z)

    # ------------------------------------------------------ evaluations
    def fun(self, x) -> float:
        """Penalised loss at ``x`` (one evaluation)."""
        return float(self._evaluate(self._point(x), grad=False)[0][0])

    def fun_and_jac(self, x) -> tuple[float, np.ndarray]:
        """Penalised loss and its gradient at ``x`` (one evaluation, one compiled call)."""
        f, g = self._evaluate(self._point(x), grad=True)
        return float(f[0]), g[0]

    def jac(self, x) -> np.ndarray:
        """Gradient at ``x``; counts (and records) an evaluation, like :meth:`fun_and_jac`."""
        return self.fun_and_jac(x)[1]

    def batch(self, X) -> np.ndarray:
        """Penalised losses of the rows of ``X (n, d)``."""
        return self._evaluate(self._points(X), grad=False)[0]

    def batch_fun_and_jac(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Penalised losses ``(n,)`` and gradients ``(n, d)`` of the rows of ``X``."""
        return self._evaluate(self._points(X), grad=True)

    def hessp(self, x, p) -> np.ndarray:
        """Hessian-vector product at ``x`` (counted in ``nhev``, outside the budget)."""
        self.nhev += 1
        return self.problem.hessp(self._point(x)[0], p, index=max(self.nfev - 1, 0))

    def hess(self, x) -> np.ndarray:
        """Hessian at ``x`` (counted in ``nhev``, outside the budget)."""
        self.nhev += 1
        return self.problem.hess(self._point(x)[0], index=max(self.nfev - 1, 0))

    def record(self, X, F, aux: dict | None = None) -> np.ndarray:
        """Record losses that a backend computed itself (e.g. inside a jitted loop).

        Counts, penalises, logs and calls back exactly like :meth:`batch`; returns the
        penalised losses.
        """
        X = self._points(X)
        F = np.asarray(F, dtype=np.float64).reshape(-1)
        aux = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in (aux or {}).items()}
        if F.shape != (X.shape[0],) or any(v.shape != F.shape for v in aux.values()):
            fail(
                "Objective.record",
                f"{X.shape[0]} losses (and aux values) for {X.shape[0]} points",
                f"shape {F.shape}",
                "pass one loss per row of X",
            )
        take = self._take(X.shape[0])
        for i in range(take):
            self._replayed(X[i], self.nfev + i, grad=False)  # verifies x when resuming
        rows = [
            (F[i], None, {k: v[i] for k, v in aux.items()}, "backend", None) for i in range(take)
        ]
        return self._commit(X[:take], rows, grad=False, total=X.shape[0])

    # ---------------------------------------------------------- internals
    def _point(self, x) -> np.ndarray:
        x = np.array(x, dtype=np.float64).reshape(-1)  # a copy: scipy reuses its arrays
        if x.shape != (self.dim,):
            fail(
                "Objective",
                f"a vector of {self.dim} values ({self.names[:3]}...)",
                f"shape {x.shape}",
                "pass vectors ordered as problem.names",
            )
        return x[None]

    def _points(self, X) -> np.ndarray:
        X = np.array(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            fail(
                "Objective.batch",
                f"an array of shape (n, {self.dim})",
                f"shape {X.shape}",
                "stack one vector per row",
            )
        return X

    def _take(self, n: int) -> int:
        if self.budget is not None and self.nfev >= self.budget and n > 0:
            raise BudgetExhausted(f"budget of {self.budget} evaluations used up")
        return n if self.budget is None else min(n, self.budget - self.nfev)

    def _replayed(self, x: np.ndarray, index: int, grad: bool) -> dict | None:
        if index >= len(self._replay):
            return None
        row = self._replay[index]
        scale = np.maximum(1.0, np.abs(x))
        if row["x"].shape != x.shape or np.any(np.abs(row["x"] - x) > REPLAY_ATOL * scale):
            raise ResumeMismatch(
                f"minimize(resume=...): evaluation {index} asked for x={x.tolist()} but the log "
                f"has x={row['x'].tolist()} (tolerance {REPLAY_ATOL}). The resumed run diverged "
                "from the logged one: resume with the same method, options, seed and problem, "
                "or start a new log."
            )
        if grad and row["jac"] is None:
            raise ResumeMismatch(
                f"minimize(resume=...): evaluation {index} needs a gradient "
                "but the log has none; resume with the same method and options."
            )
        return row

    def _evaluate(self, X: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        take = self._take(X.shape[0])
        rows = []
        for i in range(take):
            row = self._replayed(X[i], self.nfev + i, grad)
            if row is None:
                break
            rows.append((row["loss"], row["jac"], row["aux"], "log", row["penalised"]))
        if len(rows) < take:
            ev = self.problem.evaluate(X[len(rows) : take], grad=grad, index=self.nfev + len(rows))
            for j in range(take - len(rows)):
                g = None if ev.jac is None else ev.jac[j]
                rows.append((ev.fun[j], g, {k: v[j] for k, v in ev.aux.items()}, "computed", None))
        F = self._commit(X[:take], rows, grad=grad, total=X.shape[0])
        G = np.stack([r["jac"] for r in self._rows[-take:]]) if grad and take else None
        return F, (G if grad else None)

    def _commit(self, X, rows, *, grad: bool, total: int) -> np.ndarray:
        """Penalise, record, log and call back every row; then stop or raise if asked to."""
        stop, out = False, np.empty(len(rows))
        for i, (loss, g, aux, source, logged_bad) in enumerate(rows):
            row = self._row(X[i], float(loss), g, aux, source, logged_bad)
            self.nfev += 1
            self.njev += grad
            self.npenalised += row["penalised"]
            if row["fun"] < self.best_fun:
                self.best_x, self.best_fun, self.best_jac = X[i].copy(), row["fun"], row["jac"]
            row["best"] = self.best_fun
            self._rows.append(row)
            out[i] = row["fun"]
            stop = self._emit(row) or stop
        if stop:
            raise StopRequested("the callback returned True")
        if len(rows) < total:
            raise BudgetExhausted(f"budget of {self.budget} evaluations used up")
        return out

    def _row(self, x, loss: float, g, aux, source: str, logged_bad: bool | None) -> dict:
        """One history row; a non-finite loss or gradient becomes (penalty, zero gradient)."""
        bad = not np.isfinite(loss) or (g is not None and not np.all(np.isfinite(g)))
        bad = bad if logged_bad is None else logged_bad  # a served row keeps its verdict
        jac = None if g is None else (np.zeros(self.dim) if bad else np.asarray(g, np.float64))
        return {
            "eval": self.nfev,
            "x": x,
            "fun": self.penalty if bad else loss,
            "loss": loss,
            "penalised": bad,
            "jac": jac,
            "aux": dict(aux),
            "time": time.perf_counter() - self._t0,
            "source": source,
        }

    def _emit(self, row: dict) -> bool:
        """Log the row, advance the progress bar, call back; True if the callback asks to stop."""
        if self._log is not None and (row["eval"] >= len(self._replay) or self._log_replayed):
            self._log.write(row)
        self._bar.update(1)
        if self.callback is None:
            return False
        return self.callback({**row, "x": row["x"].copy(), "aux": dict(row["aux"])}) is True

    def jac_at(self, x) -> np.ndarray | None:
        """The gradient recorded at exactly ``x`` (latest first), or None."""
        for row in reversed(self._rows):
            if row["jac"] is not None and np.array_equal(row["x"], x):
                return row["jac"].copy()
        return None

    @property
    def history(self) -> pd.DataFrame:
        """One row per evaluation: eval, fun, best, loss, penalised, source, time, aux, x."""
        cols = ["eval", "fun", "best", "loss", "penalised", "source", "time"]
        frame = pd.DataFrame([{k: r[k] for k in cols} | r["aux"] for r in self._rows])
        if not self._rows:
            frame = pd.DataFrame(columns=cols)
        X = np.stack([r["x"] for r in self._rows]) if self._rows else np.zeros((0, self.dim))
        return pd.concat([frame, pd.DataFrame(X, columns=self.names)], axis=1)

    def close(self) -> None:
        """Close the progress bar (the log belongs to the caller)."""
        self._bar.close()


class ResumeMismatch(FitbridgeError):
    """A resumed run asked for a point that differs from the logged one."""

