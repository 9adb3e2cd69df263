"""Run a spec: ``run_spec`` (exploration -> stages -> validation), ``explore_spec``,
``compare_spec`` and ``simulate_spec``; each writes a results folder (:mod:`fitbridge._outputs`).

Stages run in order. Each starts (``start``) from the values after the previous stage
(``previous``; for the first stage the best explored point, else the spec's values), the best
explored point (``explore``), the best point so far by assessed loss (``best``) or the spec's
values (``init``); parameters a stage does not free keep their current values. After each
stage the simulated FC at its answer is assessed with the fixed noise key (train, held-out and
per-subject FC r). The fitted result is the stage with the lowest assessed loss (with no
stages: the best explored point).

Resuming (``run_spec`` and ``explore_spec``, ``--resume`` on the command line): while a run
works, ``<out>/logs/`` holds every evaluation as it finishes: ``exploration/`` the explored
chunks (a :class:`~fitbridge.Cache` folder), ``tuning-fic.npz``/``tuning-eib.npz`` the tuning
so far (a :class:`~fitbridge.TuningResult` file, rewritten after every chunk),
``optimize-<i>.jsonl`` each stage's :func:`~fitbridge.minimize` log, ``state.json`` the spec
hash and whether the run finished. ``resume=True`` after an interruption reads the explored
chunks back, continues the tuning from its checkpoints (a finished FIC or EIB is read back, an
interrupted one continues after its last chunk) and replays each stage's logged evaluations
(``minimize(resume=...)``), computing only what is missing, so the results equal those of an
uninterrupted run. Without it, a folder holding an interrupted run is an error (nothing
computed is thrown away); a finished run's logs are replaced. The logs stay after the run
(delete ``logs/`` to save space).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._cache import Cache
from ._errors import fail
from ._experiment import Assessment, Builder
from ._figures import plot_explored, plot_fc, plot_fc_scatter, plot_regional, plot_stages, plot_tuning
from ._outputs import ResultsFolder
from ._spec import ExperimentSpec, load_spec, method_name, quick_overrides

__all__ = ["RunResult", "prepare", "run_spec", "explore_spec", "compare_spec", "simulate_spec"]


@dataclasses.dataclass(frozen=True, eq=False)
class RunResult:
    """What a command produced: the folder, the spec, the summary table, the fitted values
    (``params``: ``{"fitted": {...}, "values": {...}}``), the manifest and the other tables
    (``history``, ``exploration``, ``validation``, ``comparison``)."""

    out: Path
    spec: ExperimentSpec
    summary: pd.DataFrame
    params: dict
    manifest: dict
    tables: dict


@dataclasses.dataclass(frozen=True, eq=False)
class _Point:
    """A step's outcome: its values, simulated FC and assessment."""

    label: str
    values: dict
    fc: np.ndarray | None
    assessment: Assessment | None
    row: dict


def prepare(source, overrides: Mapping | None = None, quick: bool = False) -> ExperimentSpec:
    """Load and validate a spec with overrides, then the smoke overrides if ``quick``."""
    spec = load_spec(source, overrides=overrides)
    return load_spec(spec, overrides=quick_overrides(spec)) if quick else spec


def _printer(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _scalars(values: Mapping) -> dict:
    return {k: float(v) for k, v in values.items() if np.ndim(v) == 0}


def _describe(values: Mapping, names) -> str:
    return ", ".join(f"{k} = {float(values[k]):.4g}" if np.ndim(values[k]) == 0
                     else f"{k} = [{np.min(values[k]):.3g} .. {np.max(values[k]):.3g}]" for k in names)


def _fitted_row(a: Assessment | None) -> dict:
    keys = ("loss", "fc_r_train", "fc_r_heldout", "fc_r_train_subjects", "fc_r_heldout_subjects")
    return a.row() if a is not None else dict.fromkeys(keys, float("nan"))


# ------------------------------------------------------------------------------ steps
def _space(builder: Builder, names):
    from . import _spaces

    exp, params = builder.spec.exploration, builder.spec.model.parameters
    axes = exp.axes or {}
    seed = exp.seed if exp.seed is not None else builder.spec.execution.seed

    def bounds(k):
        ax = axes.get(k)
        lo = ax.lo if ax is not None and ax.lo is not None else params[k].domain[0]
        hi = ax.hi if ax is not None and ax.hi is not None else params[k].domain[1]
        return lo, hi

    if exp.mode == "grid":
        grid = {}
        for k in names:
            ax = axes.get(k)
            n = ax.n if ax is not None and ax.n is not None else exp.n
            grid[k] = ax.values if ax is not None and ax.values is not None else np.linspace(*bounds(k), n)
        return _spaces.grid(grid)
    return getattr(_spaces, exp.mode)(exp.n, {k: bounds(k) for k in names}, seed=seed)


def _explore(builder: Builder, values: dict, say, progress: bool,
             logs: Path | None = None) -> tuple[_Point, pd.DataFrame]:
    from ._explore import explore

    spec = builder.spec
    exp, ex = spec.exploration, spec.execution
    names = list(exp.axes) if exp.axes is not None else [
        k for k in spec.free_parameters() if not spec.model.parameters[k].regional]
    problem = builder.problem(builder.axes_free(names, values), values, spec.loss.noise)
    backend = ({"backend": "dask", "scheduler": ex.dask_address} if ex.dask_address
               else {"backend": "joblib", "n_jobs": ex.workers} if ex.workers > 1 else {})
    t0 = time.perf_counter()
    cache = Cache(logs / "exploration", stale="recompute") if logs is not None else None
    frame = explore(problem, _space(builder, names), precision=ex.precision, observables=("fc",),
                    progress=None if progress else False, cache=cache, **backend)
    if frame.attrs["fitbridge"]["reused"]:
        say(f"exploration: {frame.attrs['fitbridge']['reused']} of {len(frame)} points read back from {logs}")
    loss = frame["loss"].to_numpy(dtype=float)
    finite = np.isfinite(loss)
    row = {"stage": "explore", "name": "", "method": f"explore:{exp.mode}", "start": "init",
           "free": ", ".join(names), "budget": len(frame), "nfev": len(frame), "wall_time": time.perf_counter() - t0,
           "success": bool(finite.any()), "message": f"{int((~finite).sum())} of {len(frame)} points non-finite",
           "fun": float(loss[finite].min()) if finite.any() else float("nan")}
    if not finite.any():
        say(f"exploration: all {len(frame)} points non-finite (saturated); stages start from the spec's values")
        return _Point("explore", dict(values), None, None, {**row, **_fitted_row(None)}), frame
    best = int(np.argmin(np.where(finite, loss, np.inf)))
    found = {**values, **{k: float(frame[k].iloc[best]) for k in names}}
    sim_fc = np.asarray(frame["fc"].iloc[best], dtype=np.float64)
    assessment = builder.assess(sim_fc)
    say(f"exploration ({exp.mode}, {len(frame)} points): best FC r = {assessment.fc_r_train:.3f} at "
        f"{_describe(found, names)} ({row['wall_time']:.0f} s)")
    return _Point("explore", found, sim_fc, assessment, {**row, **assessment.row()}), frame


def _stage(builder: Builder, i: int, values: dict, say, progress: bool, logs: Path | None = None):
    from ._minimize import minimize

    spec = builder.spec
    stage = spec.optimize[i]
    free = builder.stage_free(stage.free, values)
    problem = builder.problem(free, values, stage.noise or spec.loss.noise)
    x0 = problem.space.flatten({k: np.asarray(f.init) for k, f in free.items()})
    seed = stage.seed if stage.seed is not None else spec.execution.seed
    log = None if logs is None else logs / f"optimize-{i}.jsonl"
    where = {"resume": log} if log is not None and log.exists() else {"log": log}
    res = minimize(problem, stage.method, x0, budget=stage.budget, seed=seed, options=stage.options,
                   progress=progress, **where)
    replayed = int((res.history["source"] == "log").sum())
    if replayed:
        say(f"optimize[{i}]: {replayed} of {res.nfev} evaluations replayed from {log}")
    after = {**values, **{k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else float(v)
                          for k, v in res.params.items()}}
    for k, f in free.items():  # per-edge vectors back to (n, n) matrices
        if f.edges:
            matrix = np.zeros((builder.data.n, builder.data.n))
            matrix[np.nonzero(builder.data.weights)] = after[k]
            after[k] = matrix
    sim_fc = builder.simulate(after)[1]
    assessment = builder.assess(sim_fc)
    label = f"optimize[{i}]"
    free_text = ", ".join(f"{k}[{builder.data.n}]" if f.regional else
                          f"{k}[{len(f.init)} edges]" if f.edges else k for k, f in free.items())
    row = {"stage": label, "name": stage.name or "", "method": res.method, "start": stage.start,
           "free": free_text, "budget": stage.budget, "nfev": res.nfev, "wall_time": res.wall_time,
           "success": res.success, "message": res.message, "fun": res.fun, **assessment.row()}
    say(f"{label} {res.method}{f' ({stage.name})' if stage.name else ''}: FC r = {assessment.fc_r_train:.3f} "
        f"(held-out {assessment.fc_r_heldout:.3f}) at {_describe(after, free)}, {res.nfev} evaluations, "
        f"{res.wall_time:.0f} s")
    history = res.history.copy()
    history.insert(0, "method", res.method)
    history.insert(0, "stage", label)
    return _Point(label, after, sim_fc, assessment, row), history, res.manifest["problem_hash"]


_TUNING_CHUNK = 50  # iterations per compiled tuning call, and per checkpoint


def _tuned(step: str, call, sim, args: tuple, total: int, say, progress: bool, logs: Path | None, **kw):
    """``call`` (fic or eib) to ``total`` iterations, checkpointed after every chunk in
    ``logs/tuning-<step>.npz``; with a checkpoint there (``--resume``: ``_open_logs`` removes the
    logs otherwise) only the iterations it lacks are computed."""
    from ._tuning_result import _read

    path = None if logs is None else logs / f"tuning-{step}.npz"
    kept = path is not None and path.is_file()
    done = _read(f"--resume ({path})", path, arrays=False)[0]["iterations"] if kept else 0
    if done > total:
        fail("--resume", f"a {step} checkpoint of at most {total} iterations", f"{done} in {path}",
             "delete it to recompute the tuning")
    if done:
        say(f"tuning {step}: {done} of {total} TRs read back from {path}")
    out = call(sim, *args, iterations=total - done, progress=progress, chunk=_TUNING_CHUNK,
               resume=path if kept else None, checkpoint=path, **kw)
    if out.interrupted:  # Ctrl-C: stop the run (the checkpoint keeps the finished chunks)
        err = KeyboardInterrupt()
        if path is not None:
            err.add_note(f"fitbridge: {out.iterations} of {total} TRs of {step} tuning are in {path}")
        raise err
    return out


def _tune(builder: Builder, values: dict, say, progress: bool, logs: Path | None = None) -> tuple[_Point, pd.DataFrame]:
    """FIC (``tuning.fic``), then EIB with FIC alongside (``tuning.eib``), from ``values``; the
    tuned ``J_i`` (and ``wLRE``/``wFFI``) replace the values the stages start from. With
    ``logs``, each is checkpointed there after every chunk (``tuning-fic.npz``,
    ``tuning-eib.npz``) and continued from its checkpoint when one exists (``--resume``)."""
    from ._tuning import eib, fic

    t = builder.spec.tuning
    values = dict(values)
    tables, t0 = [], time.perf_counter()
    fic_kw = {}
    if t.fic is not None:
        fic_kw = dict(form=t.fic.form, **({"target" if t.fic.form == "gating" else "rate": t.fic.target}
                                         if t.fic.target is not None else {}))
        out = _tuned("fic", fic, builder.simulation(values), (), t.fic.iterations, say, progress, logs,
                     eta=t.fic.eta, target_fc=builder.data.target, **fic_kw)
        values["J_i"] = out.model.J_i
        tables.append(out.history.assign(step="fic"))
        say(f"tuning fic: {out.iterations} TRs, <S_e> = {out.history['S_e'].iloc[-1]:.3f}, "
            f"J_i in [{np.min(out.model.J_i):.3g}, {np.max(out.model.J_i):.3g}]")
    if t.eib is not None:
        fic_kw = {("fic_target" if k == "target" else k): v for k, v in fic_kw.items()}
        out = _tuned("eib", eib, builder.simulation(values), (builder.data.target,), t.eib.iterations, say,
                     progress, logs, eta=t.eib.eta, warmup=t.eib.warmup, window=t.eib.window,
                     fic_eta=t.eib.fic_eta, **fic_kw)
        values.update(J_i=out.model.J_i, wLRE=out.model.wLRE, wFFI=out.model.wFFI)
        history = out.history.assign(step="eib")
        if tables:
            history["iteration"] += int(tables[-1]["iteration"].iloc[-1])
        tables.append(history)
        say(f"tuning eib: {out.iterations} TRs, window FC r = {out.fc_r:.3f}")
    table = pd.concat(tables, ignore_index=True)
    point, _ = _simulated_point(builder, values, "tuning")
    point.row.update(method="+".join(t.requested), wall_time=time.perf_counter() - t0, nfev=len(table),
                     budget=len(table))
    say(f"tuning: FC r = {point.row['fc_r_train']:.3f} (train), {point.row['fc_r_heldout']:.3f} (held-out)")
    return point, table


def _best(points: list[_Point]) -> _Point:
    """The point with the lowest assessed loss (non-finite last; ties: the later)."""
    scored = [(p.row["loss"] if np.isfinite(p.row["loss"]) else np.inf, -j) for j, p in enumerate(points)]
    return points[min(range(len(points)), key=lambda j: scored[j])]


def _fitted(points: list[_Point]) -> _Point:
    """The stage with the lowest assessed loss (ties: the later); without stages, the exploration."""
    return _best([p for p in points if p.label != "explore"] or points)


# ------------------------------------------------------------------------------ outputs
def _write_fit(folder: ResultsFolder, builder: Builder, point: _Point, fitted_names, extra: dict) -> dict:
    """params.json, fc_sim.npy, validation.csv, summary.json and the FC/regional figures."""
    data, spec = builder.data, builder.spec
    params = {"stage": point.label, "method": point.row.get("method"),
              "fitted": {k: point.values[k] for k in fitted_names}, "values": point.values}
    folder.json("params.json", params)
    a = point.assessment
    summary = {"spec": spec.name, "spec_hash": folder.hash, "quick": folder.quick, "fitted_stage": point.label,
               "method": point.row.get("method"), **_fitted_row(a), "train_subjects": list(data.train),
               "heldout_subjects": list(data.heldout), "params": point.values, **extra}
    folder.json("summary.json", summary)
    if point.fc is None:
        return params
    folder.array("fc_sim.npy", point.fc)
    if a is not None and a.per_subject:
        folder.table("validation", builder.validation_table(a))
    folder.figure("fc_matrices", plot_fc, data.target, point.fc,
                  labels=("empirical FC (train group)", f"simulated FC ({point.label})"))
    folder.figure("fc_scatter", plot_fc_scatter, data.target, point.fc)
    if data.heldout_fc is not None:
        folder.figure("fc_scatter_heldout", plot_fc_scatter, data.heldout_fc, point.fc, label="simulated (vs held-out)")
    for name in fitted_names:
        if np.ndim(point.values[name]) == 1:
            folder.figure(f"regional_{name}", plot_regional, point.values[name],
                          builder.simulation(point.values).network.weights, label=name)
    return params


def _finish(folder, spec, summary, params, tables, **extra) -> RunResult:
    folder.table("summary", summary)
    manifest = folder.finish(**extra)
    return RunResult(folder.path, spec, summary, params, manifest, tables)


# ------------------------------------------------------------------------------ commands
def run_spec(source, *, overrides: Mapping | None = None, quick: bool = False, out=None, quiet: bool = True,
             argv: Sequence[str] | None = None, resume: bool = False) -> RunResult:
    """Run a spec end to end (exploration, stages, validation) and write its results folder.

    Parameters
    ----------
    source : path, dict or ExperimentSpec
    overrides : dict, optional
        ``{"integration.duration": 30000, "optimize[0].budget": 4}`` (see ``load_spec``).
    quick : bool
        Smoke setting (:func:`~fitbridge._spec.quick_overrides`): short simulation, tiny budgets.
        Checks the pipeline; it is not a fit.
    out : path, optional
        Results folder (default ``results/<name>-<hash8>``).
    quiet : bool
        No progress lines on stderr.
    resume : bool
        Continue an interrupted run in ``out`` from its logs (module docstring).
    """
    spec = prepare(source, overrides, quick)
    say, progress = _printer(quiet), not quiet
    builder = Builder(spec)  # loads and checks the data before anything is written
    folder = ResultsFolder(out, spec, command="run", argv=argv, quick=quick)
    logs = _open_logs(folder, resume, say)
    values = builder.initial_values()
    points, histories, problem_hashes, tables = [], [], [], {}
    explored = None
    if spec.exploration is not None:
        explored, frame = _explore(builder, values, say, progress, logs)
        points.append(explored)
        tables["exploration"] = frame
        _save_exploration(folder, frame)
    previous = explored.values if explored is not None else values
    if spec.tuning.requested:
        tuned, tables["tuning"] = _tune(builder, previous, say, progress, logs)
        folder.files.extend(f"logs/tuning-{step}.npz" for step in spec.tuning.requested)
        points.append(tuned)
        folder.table("tuning", tables["tuning"])
        folder.figure("tuning", plot_tuning, tables["tuning"])
        previous = tuned.values
    for i, stage in enumerate(spec.optimize):
        best = _best(points).values if points else values
        start = {"previous": previous, "explore": explored.values if explored else values, "best": best,
                 "init": values}[stage.start]
        point, history, phash = _stage(builder, i, start, say, progress, logs)
        folder.files.append(f"logs/optimize-{i}.jsonl")
        points.append(point)
        histories.append(history)
        problem_hashes.append(phash)
        previous = point.values
    if not points:
        points.append(_simulated_point(builder, values, "init")[0])
    fitted = _fitted(points)
    summary = pd.DataFrame([{**p.row, **_scalars(p.values), "fitted": p is fitted} for p in points])
    if histories:
        tables["history"] = pd.concat(histories, ignore_index=True)
        folder.table("history", tables["history"])
        folder.figure("convergence", plot_stages, tables["history"])
    if "exploration" in tables:
        _landscape(folder, spec, tables["exploration"], tables.get("history"))
    params = _write_fit(folder, builder, fitted, _free_names(spec), {"wall_time_s": time.perf_counter() - folder._t0})
    if fitted.assessment is not None and fitted.assessment.per_subject:
        tables["validation"] = builder.validation_table(fitted.assessment)
    say(f"fitted ({fitted.label}): FC r train = {fitted.row['fc_r_train']:.3f}, held-out = "
        f"{fitted.row['fc_r_heldout']:.3f}; results in {folder.path}/")
    _close_logs(folder)
    return _finish(folder, spec, summary, params, tables, problem_hashes=problem_hashes)


def _free_names(spec: ExperimentSpec) -> list[str]:
    names = list(spec.exploration.axes or []) if spec.exploration is not None else []
    for stage in spec.optimize:
        names += list(stage.free) if stage.free is not None else spec.free_parameters()
    if spec.exploration is not None and spec.exploration.axes is None:
        names += [k for k in spec.free_parameters() if not spec.model.parameters[k].regional]
    return list(dict.fromkeys(names))


def _save_exploration(folder: ResultsFolder, frame: pd.DataFrame) -> None:
    from ._explore import save

    path = save(frame, folder.path / "exploration.csv")
    for suffix in ("", ".json", ".npz"):
        file = path.with_name(path.name + suffix)
        if file.exists():
            folder.files.append(str(file.relative_to(folder.path)))


def _simulated_point(builder: Builder, values: dict, label: str) -> tuple[_Point, np.ndarray]:
    bold, sim_fc = builder.simulate(values)
    a = builder.assess(sim_fc)
    row = {"stage": label, "name": "", "method": "simulate", "start": label, "free": "", "budget": 1,
           "nfev": 1, "wall_time": float("nan"), "success": True, "message": "", "fun": a.loss, **a.row()}
    return _Point(label, dict(values), sim_fc, a, row), bold


def explore_spec(source, *, overrides=None, quick=False, out=None, quiet=True, argv=None,
                 resume: bool = False) -> RunResult:
    """Run only the spec's exploration; write the explored frame, the best point and figures.
    ``resume=True`` reads back the chunks an interrupted run kept in ``out/logs/``."""
    spec = prepare(source, overrides, quick)
    if spec.exploration is None:
        fail("exploration", "an exploration section for `fitbridge explore`", "none",
             "add e.g. `exploration: {mode: sobol, n: 32}`")
    builder = Builder(spec)
    folder = ResultsFolder(out, spec, command="explore", argv=argv, quick=quick)
    say = _printer(quiet)
    logs = _open_logs(folder, resume, say)
    point, frame = _explore(builder, builder.initial_values(), say, not quiet, logs)
    _save_exploration(folder, frame)
    params = _write_fit(folder, builder, point, _free_names(spec), {})
    _landscape(folder, spec, frame)
    summary = pd.DataFrame([{**point.row, **_scalars(point.values)}])
    _close_logs(folder)
    return _finish(folder, spec, summary, params, {"exploration": frame})


# ------------------------------------------------------------------------------ logs and resume
def _read_state(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def _open_logs(folder: ResultsFolder, resume: bool, say) -> Path:
    """``<out>/logs/``, checked against an earlier run there (module docstring)."""
    logs = folder.path / "logs"
    state = _read_state(logs / "state.json")
    if state is not None and resume and state.get("spec_hash") != folder.hash:
        fail("--resume", f"the logs of a run of this spec (hash {folder.hash[:8]})",
             f"logs of spec hash {str(state.get('spec_hash'))[:8]} in {logs}",
             "resume with the spec, --set and --quick options of the interrupted run, or choose another --out")
    if state is not None and not resume and not state.get("finished"):
        fail(f"--out {folder.path}", "a results folder without an interrupted run",
             f"the logs of an interrupted `fitbridge {state.get('command')}` in {logs}",
             "add --resume to continue it, or delete the folder (or choose another --out) to start over")
    if not resume and logs.exists():
        shutil.rmtree(logs)  # a finished run's logs: this run replaces its outputs
    if resume and state is not None:
        say(f"resuming the {'finished' if state.get('finished') else 'interrupted'} run in {folder.path}")
    folder.json("logs/state.json", {"command": folder.command, "spec_hash": folder.hash, "finished": False})
    return logs


def _close_logs(folder: ResultsFolder) -> None:
    folder.json("logs/state.json", {"command": folder.command, "spec_hash": folder.hash, "finished": True})


def _landscape(folder: ResultsFolder, spec: ExperimentSpec, frame: pd.DataFrame, history=None) -> None:
    """``figures/landscape.png`` for a 2-axis exploration: a heatmap (grid, ``plots.landscape``)
    or a scatter (samplers), with the first stage that moves both axes drawn on top."""
    columns = frame.attrs.get("fitbridge", {}).get("parameter_columns", [])
    if len(columns) != 2:
        return
    x, y = columns
    route = None
    if history is not None:
        for _, runs in history.groupby("stage", sort=False):
            if {x, y} <= set(runs.columns) and runs[[x, y]].notna().all().all():
                route = runs[[x, y]].to_numpy(dtype=float)
                break
    if spec.exploration.mode == "grid":
        from .plots import landscape

        folder.figure("landscape", lambda: landscape(frame, x, y, "fc_r", path=route).figure)
    else:
        folder.figure("landscape", plot_explored, frame, x, y, "fc_r", route=route)


def compare_spec(source, methods: Sequence[str], *, budget: int | None = None, restarts: int = 1,
                 seeds: Sequence[int] | None = None, start: str = "auto", overrides=None, quick=False,
                 out=None, quiet=True, argv=None) -> RunResult:
    """Compare optimizers (:func:`fitbridge.compare`) on the problem of the spec's first stage
    (its free parameters; all free parameters without stages), from the best explored point
    (``start="explore"``, the default when the spec explores) or the spec's values (``"init"``)."""
    from ._compare import compare, plot_convergence

    spec = prepare(source, overrides, quick)
    methods = [method_name(m, f"--methods[{i}]") for i, m in enumerate(methods)]
    if start not in ("auto", "explore", "init"):
        fail("--start", "auto, explore or init", repr(start), "use --start init")
    if start == "explore" and spec.exploration is None:
        fail("--start", "an exploration section for --start explore", "none", "use --start init")
    say, progress = _printer(quiet), not quiet
    builder = Builder(spec)
    folder = ResultsFolder(out, spec, command="compare", argv=argv, quick=quick)
    values = builder.initial_values()
    tables = {}
    if spec.exploration is not None and start in ("auto", "explore"):
        point, tables["exploration"] = _explore(builder, values, say, progress)
        values = point.values
    first = spec.optimize[0] if spec.optimize else None
    free = builder.stage_free(first.free if first else None, values)
    problem = builder.problem(free, values, (first.noise if first else None) or spec.loss.noise)
    x0 = problem.space.flatten({k: np.asarray(f.init) for k, f in free.items()})
    if budget is None:  # --quick has already cut the stages' budgets
        budget = first.budget if first else (4 if quick else 100)
    options = {s.method: s.options for s in spec.optimize}
    table = compare(problem, methods, budget=budget, restarts=restarts,
                    seeds=tuple(seeds) if seeds else (spec.execution.seed,), options=options, x0=x0,
                    progress=progress)
    fcs = [builder.simulate({**values, **_named(problem, x)})[1] for x in table["x"]]
    rows = [builder.assess(f) for f in fcs]
    summary = table.drop(columns=["x"]).assign(**{k: [a.row()[k] for a in rows] for k in rows[0].row()})
    xs = pd.DataFrame(np.stack(table["x"]), columns=problem.names)
    summary = pd.concat([summary.reset_index(drop=True), xs], axis=1)
    tables["history"] = table.attrs["histories"].frame
    folder.table("history", tables["history"])
    folder.figure("convergence", plot_convergence, table)
    best = int(np.argmin(np.where(np.isfinite(summary["loss"]), summary["loss"], np.inf)))
    best_values = {**values, **_named(problem, table["x"].iloc[best])}
    point = _Point(f"compare[{best}]", best_values, fcs[best], rows[best], {"method": table["method"].iloc[best]})
    params = _write_fit(folder, builder, point, list(free), {"budget": budget, "restarts": restarts})
    for _, r in summary.iterrows():
        say(f"{r['method']} restart {r['restart']} seed {r['seed']}: FC r = {r['fc_r_train']:.3f} "
            f"(held-out {r['fc_r_heldout']:.3f}), {r['nfev']} evaluations, {r['wall_time']:.0f} s")
    tables["comparison"] = summary
    return _finish(folder, spec, summary, params, tables, methods=methods)


def simulate_spec(source, *, params=None, overrides=None, quick=False, out=None, quiet=True,
                  argv=None) -> RunResult:
    """Simulate at the spec's values (or a run's ``params.json`` via ``params``); write BOLD,
    FC, the FC agreement and figures."""
    spec = prepare(source, overrides, quick)
    builder = Builder(spec)
    values = builder.initial_values()
    if params is not None:
        values.update(_read_values(params, values))
    folder = ResultsFolder(out, spec, command="simulate", argv=argv, quick=quick)
    t0 = time.perf_counter()
    point, bold = _simulated_point(builder, values, "simulate")
    folder.array("bold.npy", bold)
    out_params = _write_fit(folder, builder, point, [], {"wall_time_s": time.perf_counter() - t0})
    _printer(quiet)(f"simulated FC r = {point.row['fc_r_train']:.3f} (held-out {point.row['fc_r_heldout']:.3f})")
    summary = pd.DataFrame([{**point.row, **_scalars(values)}])
    return _finish(folder, spec, summary, out_params, {})


def _named(problem, x) -> dict:
    return {k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else float(v)
            for k, v in problem.space.params_dict(x).items()}


def _read_values(params, known: dict) -> dict:
    if not isinstance(params, Mapping):
        path = Path(params)
        if not path.is_file():
            fail("--params", "a params.json file written by `fitbridge run`", str(path), "check the path")
        try:
            params = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            fail("--params", "a JSON file", f"{path} ({err.msg} at line {err.lineno})", "pass a run's params.json")
    values = params.get("values", params) if isinstance(params, Mapping) else None
    if not isinstance(values, Mapping):
        fail("--params", "a mapping {name: value}", type(values).__name__, "pass a run's params.json")
    for name in values:
        if name not in known:
            fail(f"--params {name}", f"a parameter declared in model.parameters ({list(known)})", repr(name),
                 "declare it in the spec or drop it from the file")
    return {k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else float(v) for k, v in values.items()}
