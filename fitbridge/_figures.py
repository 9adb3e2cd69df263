"""Figures of a fit: FC matrices, FC scatter, convergence per stage, regional parameters,
sampled explorations.

Every function draws on a ``matplotlib.figure.Figure`` it creates (or on the ``ax`` given)
and never touches pyplot's global state; ``path`` saves a PNG. matplotlib is imported
inside the functions (the ``plots`` extra).
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import pandas as pd

from ._errors import fail

__all__ = ["fc_r", "plot_fc", "plot_fc_scatter", "plot_stages", "plot_regional", "plot_explored"]


def fc_r(a, b) -> float:
    """Pearson r between the upper triangles (k=1) of two FC matrices (NaN if either is flat)."""
    a, b = _square(a, "a"), _square(b, "b")
    if a.shape != b.shape:
        fail("fc_r", "two FC matrices of one shape", f"{a.shape} and {b.shape}", "compare the same parcellation")
    iu = np.triu_indices(a.shape[0], 1)
    x, y = a[iu], b[iu]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _square(m, name) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        fail(f"FC matrix {name}", "a square (n, n) matrix with n >= 2", f"shape {m.shape}", "pass an FC matrix")
    return m


def _figure(size):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_fc(empirical, simulated, path: str | PathLike | None = None, *,
            labels: tuple[str, str] = ("empirical FC", "simulated FC"), vmin: float = -0.2,
            vmax: float = 1.0):
    """Empirical and simulated FC side by side, with their upper-triangle r in the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    emp, sim = _square(empirical, "empirical"), _square(simulated, "simulated")
    r = fc_r(emp, sim)
    fig = _figure((9.0, 4.0))
    axes = fig.subplots(1, 2)
    for ax, mat, label in zip(axes, (emp, sim), labels, strict=True):
        shown = mat.copy()
        np.fill_diagonal(shown, np.nan)
        im = ax.imshow(shown, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
        ax.set_title(label)
        ax.set_xlabel("region")
    axes[0].set_ylabel("region")
    fig.colorbar(im, ax=axes[1], shrink=0.85, label="Pearson r")
    fig.suptitle(f"FC fit: r = {r:.3f} (upper triangle)")
    return _save(fig, path)


def plot_fc_scatter(empirical, simulated, path: str | PathLike | None = None, *, ax=None,
                    label: str = "simulated"):
    """Simulated vs empirical FC entries (upper triangle), with r and the identity line."""
    emp, sim = _square(empirical, "empirical"), _square(simulated, "simulated")
    iu = np.triu_indices(emp.shape[0], 1)
    if ax is None:
        ax = _figure((4.6, 4.2)).add_subplot()
    ax.scatter(emp[iu], sim[iu], s=4, alpha=0.35, linewidths=0)
    finite = np.concatenate([emp[iu], sim[iu]])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("empirical FC")
    ax.set_ylabel(f"{label} FC")
    ax.set_title(f"r = {fc_r(emp, sim):.3f}")
    return _save(ax.figure, path)


def plot_stages(history: pd.DataFrame, path: str | PathLike | None = None, *, ax=None):
    """Best-so-far loss per optimization stage (one line each, via :func:`plot_convergence`).

    ``history`` has one row per evaluation with ``stage``, ``method``, ``eval`` and ``fun``
    (as the run's ``history.csv``).
    """
    from ._compare import plot_convergence

    need = {"stage", "method", "eval", "fun"}
    if not isinstance(history, pd.DataFrame) or not need <= set(history.columns):
        fail("plot_stages", f"a history frame with columns {sorted(need)}", type(history).__name__,
             "pass the run's history")
    frame = history[["stage", "method", "eval", "fun"]].copy()
    frame["method"] = [f"{s}: {m}" for s, m in zip(frame["stage"], frame["method"], strict=True)]
    frame["best"] = frame.groupby("stage")["fun"].cummin()
    frame["restart"], frame["seed"] = 0, 0
    return plot_convergence(frame, path, ax=ax)


def plot_regional(values, weights, path: str | PathLike | None = None, *, label: str = "w", ax=None):
    """A fitted regional parameter against node strength (row sums of ``W[target, source]``)."""
    values = np.asarray(values, dtype=np.float64)
    weights = _square(weights, "weights")
    if values.shape != (weights.shape[0],):
        fail("plot_regional", f"one value per region ({weights.shape[0]},)", f"shape {values.shape}",
             "pass the fitted regional array")
    strength = weights.sum(axis=1)
    r = float(np.corrcoef(strength, values)[0, 1]) if values.std() > 0 and strength.std() > 0 else float("nan")
    if ax is None:
        ax = _figure((4.8, 4.0)).add_subplot()
    ax.scatter(strength, values, s=18)
    ax.set_xlabel("node strength (sum of incoming weights)")
    ax.set_ylabel(f"fitted {label}")
    ax.set_title(f"{label} vs node strength: r = {r:.3f}")
    return _save(ax.figure, path)


def plot_explored(frame: pd.DataFrame, x: str, y: str, value: str = "fc_r", path: str | PathLike | None = None,
                  *, route=None, ax=None):
    """Sampled points of an exploration (Sobol, LHS, random) coloured by ``value``; non-finite
    points (saturated simulations) as grey crosses, the best marked, and an optimizer's route
    (a ``(k, 2)`` array of visited points, in order) on top. Grids: use ``fitbridge.plots.landscape``."""
    missing = [c for c in (x, y, value) if c not in frame.columns]
    if missing:
        fail("plot_explored", f"columns {x!r}, {y!r}, {value!r}", f"missing {missing}", "pass an explore() frame")
    if ax is None:
        ax = _figure((5.4, 4.4)).add_subplot()
    v = frame[value].to_numpy(dtype=float)
    ok = np.isfinite(v)
    sc = ax.scatter(frame[x][ok], frame[y][ok], c=v[ok], cmap="viridis", s=36)
    if (~ok).any():
        ax.scatter(frame[x][~ok], frame[y][~ok], marker="x", color="0.6", s=30, label="non-finite")
    if ok.any():
        ax.figure.colorbar(sc, ax=ax, label=value)
        k = int(np.nanargmax(np.where(ok, v, np.nan)) if value == "fc_r" else np.nanargmin(np.where(ok, v, np.nan)))
        ax.plot(frame[x].iloc[k], frame[y].iloc[k], "*", ms=15, color="red", mec="white",
                label=f"best {value} = {v[k]:.3g}")
    if route is not None and len(route):
        route = np.asarray(route, dtype=float)
        ax.plot(route[:, 0], route[:, 1], "-", color="black", lw=1.0, alpha=0.7)
        ax.plot(route[-1:, 0], route[-1:, 1], "X", color="white", mec="black", ms=9, label="optimizer end")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"explored {value}")
    ax.legend(loc="best", fontsize="small", framealpha=0.7)
    return _save(ax.figure, path)


def plot_tuning(history: pd.DataFrame, path: str | PathLike | None = None):
    """FIC/EIB convergence panels: mean ``S_e`` (with the regional range), mean ``J_i``, and the
    sliding-window FC r and RMSE against the target, per iteration (a tuning history)."""
    missing = [c for c in ("iteration", "S_e", "S_e_min", "S_e_max", "J_i", "fc_r", "rmse") if c not in history]
    if missing:
        fail("plot_tuning", "a tuning history (fb.fic(...).history)", f"missing columns {missing}",
             "pass the history of a fic/eib result")
    fig = _figure((11.0, 3.4))
    axes = fig.subplots(1, 3)
    it = history["iteration"].to_numpy()
    axes[0].fill_between(it, history["S_e_min"], history["S_e_max"], alpha=0.3, label="regional range")
    axes[0].plot(it, history["S_e"], label="mean")
    axes[0].set_ylabel("<S_e> per TR")
    axes[0].legend(fontsize=8)
    axes[1].plot(it, history["J_i"])
    axes[1].set_ylabel("mean J_i (nA)")
    axes[2].plot(it, history["fc_r"], label="FC r")
    axes[2].plot(it, history["rmse"], label="FC RMSE")
    axes[2].set_ylabel("sliding-window FC vs target")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("iteration (TR)")
    return _save(fig, path)

