"""Build what a spec describes: data, simulation, problems, starting points and assessments.

:class:`Builder` turns an :class:`~fitbridge._spec.ExperimentSpec` into fitbridge objects.
Parameter values travel between steps as a dict ``{name: float or (n,) array}`` holding
every parameter named in ``model.parameters`` (plus ``sigma``/``speed`` when declared).
Problems are cached by (free parameters, fixed values, noise policy), so stages that free the
same parameters reuse one compiled problem.

Assessment: the simulated FC at a point is computed with the problem's fixed noise key
(``jax.random.key(execution.seed)``, the key of ``noise="fixed"``), and compared with the
group FC of the train subjects (the fitted target), the group FC of the held-out subjects
and every subject's FC (upper triangles, Pearson r).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from ._errors import fail
from ._figures import fc_r
from ._params import Free
from ._spec import ExperimentSpec, FreeSpec, resolve_path

__all__ = ["Data", "load_data", "Builder", "Assessment", "fc_skip"]


@dataclasses.dataclass(frozen=True, eq=False)
class Data:
    """Connectome and empirical FC of a spec.

    ``subject_fc`` ``(s, n, n)`` is None when the target is a single FC file; ``target`` is
    the group FC of the ``train`` subjects (or the file's FC).
    """

    weights: np.ndarray
    lengths: np.ndarray | None
    subject_fc: np.ndarray | None
    subjects: tuple[str, ...]
    train: tuple[int, ...]
    heldout: tuple[int, ...]
    target: np.ndarray
    heldout_fc: np.ndarray | None
    tr: float | None

    @property
    def n(self) -> int:
        return self.weights.shape[0]


def _network_arrays(spec: ExperimentSpec):
    from . import datasets

    net = spec.network
    if net.dataset is None:
        weights = datasets.load_matrix(resolve_path(spec, net.weights))
        lengths = None if net.lengths is None else datasets.load_matrix(resolve_path(spec, net.lengths))
        return weights, lengths, None
    ds = datasets.load(net.dataset)
    idx = list(net.subjects) if net.subjects is not None else list(range(len(ds.subjects)))
    if max(idx) >= len(ds.subjects):
        fail("network.subjects", f"subject indices in [0, {len(ds.subjects)})", list(idx),
             f"{net.dataset!r} has {len(ds.subjects)} subjects")
    lengths = None if ds.subject_lengths is None else ds.subject_lengths[idx].mean(axis=0)
    return ds.subject_weights[idx].mean(axis=0), lengths, ds


def _target_dataset(spec: ExperimentSpec, weights, ds):
    """A Dataset with per-subject BOLD for the target, or ``(None, fc)`` for an FC file."""
    from . import datasets

    target = spec.observation.target
    if target is None:
        if ds.bold is None:
            fail("observation.target", f"BOLD in dataset {ds.name!r}", "none", "give target files")
        return ds, None
    if target.fc is not None:
        return None, datasets.load_matrix(resolve_path(spec, target.fc))
    series = [datasets.load_timeseries(resolve_path(spec, p), regions_first=target.regions_first)
              for p in target.bold]
    if len({s.shape for s in series}) != 1:
        fail("observation.target.bold", "BOLD files of one shape (frames, regions)",
             sorted({s.shape for s in series}), "trim the series to a common length")
    tr = target.tr or spec.observation.bold.tr
    if tr is None:
        fail("observation.target.tr", "the TR of the BOLD files (ms)", "nothing", "write `tr: 720`")
    return datasets.from_arrays(weights, bold=np.stack(series), tr=tr, name="target"), None


def load_data(spec: ExperimentSpec) -> Data:
    """Read the connectome and the empirical FC; split the subjects (``validation.train``)."""
    weights, lengths, ds = _network_arrays(spec)
    n = weights.shape[0]
    source, fc_file = _target_dataset(spec, weights, ds)
    if source is None:
        if fc_file.shape != (n, n):
            fail("observation.target.fc", f"an ({n}, {n}) FC matrix like the weights", f"shape {fc_file.shape}",
                 "use the FC of the same parcellation")
        return Data(weights, lengths, None, (), (), (), fc_file, None, spec.observation.bold.tr)
    if source.n_regions != n:
        fail("observation.target.bold", f"{n} regions like the weights", f"{source.n_regions} regions",
             "use BOLD of the same parcellation")
    s = len(source.subjects)
    train = tuple(spec.validation.train) if spec.validation is not None else tuple(range(s))
    if max(train) >= s:
        fail("validation.train", f"subject indices in [0, {s})", list(train), f"the data has {s} subjects")
    heldout = tuple(i for i in range(s) if i not in train)
    if spec.validation is not None and not heldout:
        fail("validation.train", "a strict subset of the subjects (the others are held out)",
             f"all {s} subjects", "leave at least one subject out")
    subject_fc = source.subject_fc
    return Data(weights=weights, lengths=lengths, subject_fc=subject_fc, subjects=source.subjects,
                train=train, heldout=heldout, target=source.group_fc(list(train)),
                heldout_fc=source.group_fc(list(heldout)) if heldout else None, tr=source.tr)


def fc_skip(sim, fc_skip_: int | None) -> int:
    """BOLD frames dropped before FC: the spec's, else the rule of ``FCProblem`` (none when the
    transient covers the 20 s HRF, else as many frames as the HRF needs to fill)."""
    if fc_skip_ is not None:
        return fc_skip_
    n_frames = sim.plan["n_frames"]
    return 0 if sim.transient >= 20_000.0 else min(math.ceil(20_000.0 / sim.bold.tr), n_frames - 3)


@dataclasses.dataclass(frozen=True)
class Assessment:
    """FC agreement of one simulated FC: train (fitted target), held-out group, per subject."""

    loss: float
    fc_r_train: float
    fc_r_heldout: float
    fc_r_train_subjects: float
    fc_r_heldout_subjects: float
    per_subject: tuple[float, ...]

    def row(self) -> dict:
        return {k: getattr(self, k) for k in ("loss", "fc_r_train", "fc_r_heldout", "fc_r_train_subjects",
                                              "fc_r_heldout_subjects")}


def _mean(values) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


class Builder:
    """Objects of a spec: simulations and problems at given parameter values."""

    def __init__(self, spec: ExperimentSpec, data: Data | None = None):
        from ._models import MODELS

        self.spec = spec
        self.data = data if data is not None else load_data(spec)
        self.model_cls = MODELS[spec.model.name]
        if spec.tuning.eib is not None:  # EIB tunes per-edge weights: the Exc-Inh model with them
            self.model_cls = MODELS["eib"]
        self.fields = self.model_cls.field_names
        self.tr = spec.observation.bold.tr or self.data.tr
        if self.tr is None:
            fail("observation.bold.tr", "the BOLD TR in ms (the data gives none)", "nothing", "write `tr: 720`")
        self._problems: dict[str, object] = {}
        self._base = None
        self._check()

    def _check(self) -> None:
        """Build the simulation at the spec's values and check the target and ``fc_skip``: bad
        input fails here, before a results folder exists or anything compiles."""
        from ._fcproblem import _check_target

        sim = self.simulation(self.initial_values())
        n_frames = sim.plan["n_frames"]
        skip = fc_skip(sim, self.spec.observation.fc_skip)
        if not 0 <= skip <= n_frames - 3:
            fail("observation.fc_skip", f"at most {n_frames - 3} frames (at least 3 must remain of {n_frames})",
                 skip, "lower fc_skip or lengthen integration.duration")
        where = "observation.target" + (".fc" if self.data.subject_fc is None else "")
        _check_target(self.data.target, self.data.n, where)

    # ------------------------------------------------------------------ values
    def initial_values(self) -> dict:
        """Spec values of every declared parameter (defaults of the model/BOLD where omitted)."""
        spec, n = self.spec, self.data.n
        values = {}
        for name, p in spec.model.parameters.items():
            if name == "sigma":
                value = spec.integration.sigma
            elif name == "speed":
                value = spec.network.speed
            elif p.value is not None:
                value = p.value
            elif name.startswith("bold."):
                value = getattr(self._bold({}), name[5:])
            else:
                value = getattr(self.model_cls(), name)
            value = np.asarray(value, dtype=np.float64)
            if value.ndim and value.shape != (n,):
                fail(f"model.parameters.{name}.value", f"a number or {n} values (one per region)",
                     f"{value.size} values", "give one value per region of the network")
            if p.domain is not None:
                value = np.clip(value, *p.domain)
            values[name] = float(value) if value.ndim == 0 else value
        return values

    def _bold(self, values):
        from ._bold import HRF, BalloonWindkessel, GammaHRF

        b = self.spec.observation.bold
        cls = {"hrf": HRF, "gamma": GammaHRF, "balloon": BalloonWindkessel}[b.kind]
        kwargs = {"tr": self.tr, "period": b.period, **({"input": b.input} if b.input else {})}
        kwargs.update({k[5:]: v for k, v in values.items() if k.startswith("bold.")})
        return cls(**kwargs)

    def simulation(self, values: Mapping):
        """The :class:`~fitbridge.Simulation` with ``values`` set (others at the spec's)."""
        from ._network import Network
        from ._simulate import AdditiveNoise, Simulation

        spec, data = self.spec, self.data
        model = self.model_cls(**{k: v for k, v in values.items() if k in self.fields})
        speed = values.get("speed", spec.network.speed)
        net = Network(model, data.weights, lengths=data.lengths if speed is not None else None, speed=speed,
                      normalize=None if spec.network.normalize == "none" else "max")
        sigma = values.get("sigma", spec.integration.sigma)
        integ = spec.integration
        return Simulation(net, dt=integ.dt, duration=integ.duration, transient=integ.transient,
                          noise=None if sigma is None else AdditiveNoise(sigma), bold=self._bold(values),
                          method=integ.method, seed=spec.execution.seed, delay_mode=integ.delay_mode)

    # ------------------------------------------------------------------ free sets
    def _free(self, name, values, regional, domain, transform, edges=False) -> Free:
        v = np.asarray(values[name], dtype=np.float64)
        lo, hi = domain
        if edges:
            n = self.data.n
            init = np.clip(np.broadcast_to(v, (n, n))[np.nonzero(self.data.weights)], lo, hi)
            return Free(tuple(init.tolist()), bounds=domain, edges=True, transform=transform)
        if regional:
            init = np.clip(np.broadcast_to(v, (self.data.n,)), lo, hi)
            return Free(tuple(init.tolist()), bounds=domain, regional=True, transform=transform)
        return Free(float(np.clip(v.mean(), lo, hi)), bounds=domain, transform=transform)

    def stage_free(self, free: Mapping[str, FreeSpec] | None, values: Mapping) -> dict[str, Free]:
        """Free parameters of a stage (its ``free`` overrides on the declared ones; None: every
        parameter declared free), initialised from ``values``."""
        names = free if free is not None else dict.fromkeys(self.spec.free_parameters())
        out = {}
        for name, over in names.items():
            p = self.spec.model.parameters[name]
            regional = p.regional if over is None or over.regional is None else over.regional
            domain = p.domain if over is None or over.domain is None else over.domain
            transform = p.transform if over is None or over.transform is None else over.transform
            edges = bool(over is not None and over.edges)
            out[name] = self._free(name, values, regional and not edges, domain, transform, edges)
        return out

    def axes_free(self, names, values: Mapping) -> dict[str, Free]:
        """Explored parameters, all global (a regional parameter is swept as one value)."""
        params = self.spec.model.parameters
        return {k: self._free(k, values, False, params[k].domain, "identity") for k in names}

    def problem(self, free: Mapping[str, Free], values: Mapping, noise: str):
        """The cached :class:`~fitbridge.FCProblem` freeing ``free`` with the other values fixed."""
        import json

        from ._fcproblem import FCProblem

        fixed = {k: np.asarray(v).tolist() for k, v in values.items() if k not in free}
        shape = [(k, f.bounds, f.regional, f.edges, f.transform) for k, f in free.items()]
        key = json.dumps([shape, fixed, noise], sort_keys=True, default=str)
        if key not in self._problems:
            spec = self.spec
            self._problems[key] = FCProblem(
                self.simulation(values), self.data.target, free=dict(free), loss=spec.loss.name,
                skip=spec.observation.fc_skip, fisher=spec.loss.fisher, noise=noise, seed=spec.execution.seed)
        return self._problems[key]

    # ------------------------------------------------------------------ assessment
    def simulate(self, values: Mapping) -> tuple[np.ndarray, np.ndarray]:
        """BOLD ``(frames, n)`` and FC ``(n, n)`` at ``values`` with the fixed noise key.

        One simulation object serves every call, with ``values`` passed as traced arguments,
        so a run compiles this once (twice if a parameter changes from global to regional).
        """
        from ._simulate import simulate

        if self._base is None:
            sim = self.simulation(self.initial_values())
            speed = self.spec.model.parameters.get("speed")
            if speed is not None and sim.network.has_delays:
                sim = sim.replace(min_speed=speed.domain[0] if speed.domain else None)
            self._base = sim
        bold = simulate(self._base, **{k: np.asarray(v, dtype=np.float64) for k, v in values.items()}).data
        skip = fc_skip(self._base, self.spec.observation.fc_skip)
        with np.errstate(invalid="ignore", divide="ignore"):
            return bold, np.corrcoef(bold[skip:].T)

    def loss_of(self, sim_fc) -> float:
        """The spec's loss of a simulated FC against the train target (float64; NaN if not finite)."""
        import jax

        from ._observe import get_loss

        fn = get_loss(self.spec.loss.name)
        with_fisher = {"fisher": True} if self.spec.loss.fisher else {}
        with jax.enable_x64(True):
            value = float(fn(np.asarray(sim_fc, dtype=np.float64), self.data.target, **with_fisher))
        return value if math.isfinite(value) else float("nan")

    def assess(self, sim_fc) -> Assessment:
        """Train, held-out and per-subject FC r of a simulated FC (module docstring)."""
        data = self.data
        per = tuple(fc_r(sim_fc, s) for s in data.subject_fc) if data.subject_fc is not None else ()
        heldout = fc_r(sim_fc, data.heldout_fc) if data.heldout_fc is not None else float("nan")
        return Assessment(loss=self.loss_of(sim_fc), fc_r_train=fc_r(sim_fc, data.target), fc_r_heldout=heldout,
                          fc_r_train_subjects=_mean(per[i] for i in data.train),
                          fc_r_heldout_subjects=_mean(per[i] for i in data.heldout) if data.heldout else float("nan"),
                          per_subject=per)

    def validation_table(self, assessment: Assessment):
        """One row per subject: index, id, split, fc_r (empty without per-subject data)."""
        import pandas as pd

        data = self.data
        rows = [{"subject": i, "id": data.subjects[i], "split": "train" if i in data.train else "heldout",
                 "fc_r": r} for i, r in enumerate(assessment.per_subject)]
        return pd.DataFrame(rows, columns=["subject", "id", "split", "fc_r"])
