"""Lockstep scipy minimizers: ``K`` runs in ``K`` threads, one batched evaluation per round.

Each thread runs an ordinary scipy backend (``scipy:L-BFGS-B`` ...) on a proxy objective whose
``fun``/``fun_and_jac`` post a request to a barrier and wait. The calling thread gathers the
requests of every run still alive, serves them with ONE ``obj.batch_fun_and_jac`` call (or
``obj.batch`` for value-only requests) and hands the answers back; a run that finishes leaves
the barrier, so later rounds are smaller. Requests are served in start order, and each run
only sees its own values, so the result equals ``K`` independent serial runs whatever the
thread timing. Only the calling thread touches the objective (and JAX).

When the budget cannot serve a whole round, the first requests (in start order) that fit are
served and every run is stopped; an exception from the objective (e.g. the user callback's
stop) stops every run and propagates once all threads have ended.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from ._errors import fail

__all__ = ["LockstepRun", "lockstep_scipy"]


@dataclasses.dataclass(frozen=True)
class LockstepRun:
    """One start of a lockstep run.

    ``evals`` are the Objective's evaluation indices (rows of its history) of this start.
    """

    x0: np.ndarray
    x: np.ndarray
    fun: float
    nit: int
    success: bool
    message: str
    evals: tuple[int, ...]


class _Abort(Exception):  # noqa: N818
    """Raised inside a worker's objective call when the lockstep run is stopped."""


class _Barrier:
    """Gathers one request per live run, serves them in one batch, hands the answers back."""

    def __init__(self, obj, k: int):
        self.obj, self.cv = obj, threading.Condition()
        self.pending: dict[int, tuple[np.ndarray, bool]] = {}
        self.answers: dict[int, tuple[float, np.ndarray | None]] = {}
        self.live, self.stopped = k, False
        self.evals: list[list[int]] = [[] for _ in range(k)]
        self.best = [(np.inf, None)] * k

    # ---------------------------------------------------------------- worker side
    def ask(self, k: int, x: np.ndarray, grad: bool):
        with self.cv:
            if self.stopped:
                raise _Abort()
            self.pending[k] = (x, grad)
            self.cv.notify_all()
            self.cv.wait_for(lambda: k in self.answers or self.stopped)
            if k in self.answers:
                return self.answers.pop(k)
            self.pending.pop(k, None)
            raise _Abort()

    def leave(self) -> None:
        with self.cv:
            self.live -= 1
            self.cv.notify_all()

    def stop(self) -> None:
        with self.cv:
            self.stopped = True
            self.cv.notify_all()

    # ----------------------------------------------------------- coordinator side
    def serve(self) -> None:
        """Serve rounds until every run has left."""
        while True:
            with self.cv:
                self.cv.wait_for(lambda: self.live == 0 or (
                    not self.stopped and len(self.pending) >= self.live))
                if self.live == 0:
                    return
                batch = sorted(self.pending.items())
                self.pending.clear()
            answers = self._evaluate(batch)
            with self.cv:
                self.answers.update(answers)
                self.cv.notify_all()
            if len(answers) < len(batch):
                self.stop()

    def _evaluate(self, batch):
        left = self.obj.remaining
        batch = batch if left is None else batch[:left]
        answers = {}
        for want in (True, False):
            group = [(k, x) for k, (x, grad) in batch if grad == want]
            if group:
                answers.update(self._call(group, want))
        return answers

    def _call(self, group, grad: bool) -> dict:
        X, base = np.stack([x for _, x in group]), self.obj.nfev
        try:
            F, G = self.obj.batch_fun_and_jac(X) if grad else (self.obj.batch(X), None)
        finally:
            for j, (k, _) in enumerate(group[: self.obj.nfev - base]):
                self.evals[k].append(base + j)
        out = {}
        for j, (k, x) in enumerate(group):
            out[k] = (float(F[j]), None if G is None else G[j].copy())
            if F[j] < self.best[k][0]:
                self.best[k] = (float(F[j]), x)
        return out


class _Proxy:
    """What a scipy backend sees in a worker thread: the Objective, evaluations via the barrier."""

    def __init__(self, obj, barrier: _Barrier, k: int):
        self._obj, self._barrier, self._k = obj, barrier, k

    def __getattr__(self, name):  # views: bounds, lower, upper, space, to_unbounded ...
        return getattr(self._obj, name)

    def _x(self, x) -> np.ndarray:
        return np.array(x, dtype=np.float64).reshape(-1)

    def fun(self, x) -> float:
        return self._barrier.ask(self._k, self._x(x), False)[0]

    def fun_and_jac(self, x):
        return self._barrier.ask(self._k, self._x(x), True)

    def jac(self, x) -> np.ndarray:
        return self.fun_and_jac(x)[1]

    def hessp(self, x, p):
        fail("lockstep", "a method without Hessians", "a Hessian request", "use lockstep=False")

    hess = hessp


def _worker(info, proxy, x0, seed, options, barrier, k, out: dict) -> None:
    try:
        out[k] = info.run(proxy, x0.copy(), budget=None, seed=seed, options=dict(options),
                          method=info.name)
    except _Abort:
        out[k] = None
    except BaseException as err:  # noqa: BLE001 (re-raised by the coordinator)
        out[k] = err
        barrier.stop()
    finally:
        barrier.leave()


def lockstep_scipy(obj, starts: np.ndarray, info, *, options: dict | None = None,
                   seed: int = 0) -> list[LockstepRun]:
    """Run backend ``info`` (a scipy method) from each row of ``starts`` in lockstep.

    Returns one :class:`LockstepRun` per start; a stopped run reports the best point it saw.
    Exceptions raised by the objective or a run propagate after every thread has ended.
    """
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    barrier, out = _Barrier(obj, len(starts)), {}
    threads = [threading.Thread(target=_worker, daemon=True, name=f"fitbridge-lockstep-{k}",
                                args=(info, _Proxy(obj, barrier, k), starts[k], seed,
                                      options or {}, barrier, k, out))
               for k in range(len(starts))]
    for thread in threads:
        thread.start()
    try:
        barrier.serve()
    finally:
        barrier.stop()
        for thread in threads:
            thread.join()
    for k in range(len(starts)):
        if isinstance(out.get(k), BaseException):
            raise out[k]
    return [_summary(k, starts[k], out.get(k), barrier) for k in range(len(starts))]


def _summary(k: int, x0: np.ndarray, outcome, barrier: _Barrier) -> LockstepRun:
    evals = tuple(barrier.evals[k])
    if outcome is None:
        fun, x = barrier.best[k]
        return LockstepRun(x0, x0 if x is None else x, fun, 0, False,
                           "stopped before converging (budget or stop request)", evals)
    return LockstepRun(x0, np.asarray(outcome.x, dtype=np.float64), float(outcome.fun),
                       int(outcome.nit), bool(outcome.success), str(outcome.message), evals)
