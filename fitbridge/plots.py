"""Figures of explorations and fits (matplotlib, imported only when a function is called).

Functions draw on a given ``ax`` or on a new ``matplotlib.figure.Figure`` (no pyplot state,
so they work headless and in threads) and return the axes; save with ``ax.figure.savefig``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._errors import fail
from ._result import OptimizeResult

__all__ = ["landscape", "fc_matrices", "fc_scatter", "regional", "tuning"]

_HIGHER_IS_BETTER = ("fc_r", "mean_fc")


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints inside, half a step outside)."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _grid(frame: pd.DataFrame, x: str, y: str, value: str) -> pd.DataFrame:
    missing = [c for c in (x, y, value) if c not in frame.columns]
    if missing:
        fail("plots.landscape", f"columns {x!r}, {y!r} and {value!r} in the frame",
             f"missing {missing}", "pass x=, y= and value= among " + repr(list(frame.columns)))
    swept = frame.attrs.get("fitbridge", {}).get("parameter_columns", [])
    others = [c for c in swept if c not in (x, y) and frame[c].nunique() > 1]
    if others:
        fail("plots.landscape", "a 2-D grid (other swept columns constant)", f"{others} vary",
             f"select a slice first, e.g. frame[frame[{others[0]!r}] == value]")
    table = frame.pivot_table(index=y, columns=x, values=value, aggfunc="mean", dropna=False)
    return table.sort_index().sort_index(axis=1)


def _path_xy(path, x: str, y: str) -> np.ndarray:
    if isinstance(path, OptimizeResult):
        path = path.history
    if isinstance(path, pd.DataFrame):
        if x not in path.columns or y not in path.columns:
            fail("plots.landscape(path=...)", f"a history with columns {x!r} and {y!r}",
                 list(path.columns)[:12],
                 "pass the OptimizeResult of a run over the same parameters")
        return path[[x, y]].to_numpy(float)
    xy = np.asarray(path, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        fail("plots.landscape(path=...)",
             "an OptimizeResult, a history DataFrame or a (k, 2) array",
             f"shape {xy.shape}", "pass res (the result of fb.minimize)")
    return xy


def landscape(frame: pd.DataFrame, x: str = "G", y: str = "w", value: str = "fc_r", *,
              path=None, best: str | None = None, ax=None, cmap: str = "viridis",
              title: str | None = None):
    """Heatmap of ``value`` over a 2-D grid frame (from :func:`fitbridge.explore`), the best
    cell marked, and optionally an optimizer path on top.

    Parameters
    ----------
    frame : DataFrame
        One row per point with columns ``x``, ``y`` and ``value``; NaN cells (saturated
        simulations) are drawn grey.
    x, y, value : str
        Column names (``value``: ``"fc_r"``, ``"loss"`` or any observable column).
    path : OptimizeResult, DataFrame or array (k, 2), optional
        Points visited by an optimizer (its ``history``), drawn in order from o to x.
    best : {"max", "min"}, optional
        Which extreme is best; default "max" for ``fc_r``/``mean_fc``, else "min".
    ax : matplotlib Axes, optional
    cmap, title : str

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> G, w = np.meshgrid([0.1, 0.2, 0.3], [0.4, 0.5], indexing="ij")
    >>> frame = pd.DataFrame({"G": G.ravel(), "w": w.ravel(), "fc_r": np.arange(6.0)})
    >>> ax = landscape(frame)
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('G', 'w')
    """
    table = _grid(frame, x, y, value)
    best = best or ("max" if value in _HIGHER_IS_BETTER else "min")
    if best not in ("max", "min"):
        fail("plots.landscape(best=...)", "'max' or 'min'", repr(best), "omit it for the default")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(5.6, 4.4), layout="constrained").subplots()
    import matplotlib

    colours = matplotlib.colormaps[cmap].with_extremes(bad="0.8")
    xs, ys = table.columns.to_numpy(float), table.index.to_numpy(float)
    grid = np.ma.masked_invalid(table.to_numpy(float))
    mesh = ax.pcolormesh(_edges(xs), _edges(ys), grid, cmap=colours, shading="flat")
    ax.figure.colorbar(mesh, ax=ax, label=value)
    if grid.count():
        flat = np.ma.argmax(grid) if best == "max" else np.ma.argmin(grid)
        i, j = np.unravel_index(flat, grid.shape)
        ax.plot(xs[j], ys[i], marker="*", ms=16, color="red", mec="white", ls="none",
                label=f"best {value} = {grid[i, j]:.3g} at {x} = {xs[j]:.3g}, {y} = {ys[i]:.3g}")
    if path is not None:
        xy = _path_xy(path, x, y)
        ax.plot(xy[:, 0], xy[:, 1], "-", color="white", lw=1.2, alpha=0.9)
        ax.plot(xy[:1, 0], xy[:1, 1], "o", color="white", mec="black", label="path start")
        ax.plot(xy[-1:, 0], xy[-1:, 1], "X", color="white", mec="black", ms=9, label="path end")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title if title is not None else f"{value} over ({x}, {y})")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.7)
    return ax


def fc_matrices(empirical, simulated, path=None, **kwargs):
    """Empirical and simulated FC side by side with their r (see ``fitbridge._figures.plot_fc``)."""
    from ._figures import plot_fc

    return plot_fc(empirical, simulated, path, **kwargs)


def fc_scatter(empirical, simulated, path=None, **kwargs):
    """Simulated vs empirical FC entries (upper triangle) with r."""
    from ._figures import plot_fc_scatter

    return plot_fc_scatter(empirical, simulated, path, **kwargs)


def regional(values, weights, path=None, **kwargs):
    """A fitted regional parameter against node strength."""
    from ._figures import plot_regional

    return plot_regional(values, weights, path, **kwargs)


def tuning(history, path=None):
    """FIC/EIB convergence panels of a :class:`~fitbridge.TuningResult` history."""
    from ._figures import plot_tuning

    return plot_tuning(history, path)
