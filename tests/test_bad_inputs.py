"""A catalogue of bad inputs across the public API, the loaders, YAML specs and the CLI.

Every case must fail with a :class:`fitbridge.ConfigError` (the CLI: exit status 2 and one
``fitbridge: error: ...`` line on stderr) whose message has the three parts "where: expected
X, got Y. Fix: Z" and names the case's own problem (a regex per case). It must fail while
objects are built: ``jax.jit`` and the XLA compiler raise during every case, so nothing may
compile first. And it must leave the folder it ran in as it found it: no results folder, no
log, no half-written or ``*.tmp`` file.

The last tests audit the security rules: spec paths are read as numeric data only (a ``.py``
or pickle file is refused, never imported or unpickled) and the package source uses no
unpickling, unsafe YAML, ``eval``/``exec`` or subprocesses.
"""

from __future__ import annotations

import ast
import contextlib
import io
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import yaml

import fitbridge as fb
# imported before the cases patch jax.jit, so module-level jit decorators are not mistaken for compiles
from fitbridge import _compare, _evaluate, _explore, _fcproblem, _minimize, _multistart, _runner  # noqa: F401
from fitbridge import backends, cli, datasets, spaces
from fitbridge._experiment import Builder
from fitbridge._spec import load_spec, resolve_path
from tests.spec_data import tiny_spec, write_data

N = 4
W = np.ones((N, N)) - np.eye(N)
L = 10.0 * W
FC = np.corrcoef(np.random.default_rng(0).standard_normal((60, N)).T)
RWW = fb.models.ReducedWongWang()
STRUCTURE = re.compile(r"^\S.*?: expected .+, got .+\. Fix: .+\.$", re.DOTALL)


# ------------------------------------------------------------------------------ building blocks
def net(**kw):
    return fb.Network(kw.pop("model", RWW), kw.pop("weights", W), **kw)


def sim(**kw):
    base = dict(dt=4.0, duration=14_400.0, noise=fb.AdditiveNoise(0.01), bold=fb.bold.HRF(tr=720.0))
    return fb.Simulation(kw.pop("network", None) or net(), **{**base, **kw})


def problem(**kw):
    free = kw.pop("free", {"G": fb.Free(0.4, bounds=(0.1, 0.9)), "w": fb.Free(0.5, bounds=(0.3, 0.7))})
    return fb.FCProblem(kw.pop("sim", None) or sim(), kw.pop("target", FC), free=free, **kw)


def with_entry(matrix, i, j, value, symmetric=True):
    out = np.array(matrix, dtype=np.float64)
    out[i, j] = value
    if symmetric:
        out[j, i] = value
    return out


def spec_file(ctx, spec=None, text=None, name="spec.yaml"):
    """A spec file beside the data (relative paths start there)."""
    path = ctx.data / name
    if text is None:
        text = yaml.safe_dump(spec if spec is not None else tiny_spec(), sort_keys=False)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def spec_with(**changes):
    """tiny_spec() with dotted keys set (``"integration.dt": 0``)."""
    spec = tiny_spec()
    for key, value in changes.items():
        node, *parts = spec, *key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return spec


def fc_target_spec(ctx, fc):
    np.save(ctx.data / "fc.npy", fc)
    return spec_with(**{"observation.target": {"fc": "fc.npy"}, "validation": None})


def save_bytes(ctx, name, blob):
    path = ctx.data / name
    path.write_bytes(blob)
    return path


def save_array(ctx, name, arr, **kw):
    path = ctx.data / name
    np.save(path, arr, **kw)
    return path


def run_cli(ctx, *args):
    return ["run", str(spec_file(ctx, *args)), "--out", str(ctx.tmp / "out"), "--quiet"]


# ------------------------------------------------------------------------------ the catalogue
API = [  # (id, call(ctx), case-specific regex)
    # Network: shapes, dtypes, NaN/inf in SC, lengths, speed
    ("sc-not-square", lambda c: net(weights=np.ones((3, 4))), r"Network.weights: .*square.*shape \(3, 4\)"),
    ("sc-nan", lambda c: net(weights=with_entry(W, 0, 1, np.nan)), r"Network.weights: expected finite.*non-finite"),
    ("sc-inf", lambda c: net(weights=with_entry(W, 2, 3, np.inf, False)), r"finite values.*first at \[2, 3\]"),
    ("sc-complex", lambda c: net(weights=W + 1j), r"Network.weights: expected a real-valued.*complex"),
    ("sc-strings", lambda c: net(weights=np.full((N, N), "x")), r"Network.weights: expected a numeric"),
    ("sc-empty", lambda c: net(weights=np.zeros((0, 0))), r"Network.weights: .*shape \(0, 0\)"),
    ("sc-negative", lambda c: net(weights=-W), r"non-negative weights.*min -1"),
    ("lengths-negative", lambda c: net(lengths=-L, speed=3.0), r"Network.lengths: expected tract lengths >= 0"),
    ("lengths-shape", lambda c: net(lengths=np.ones((3, 3)), speed=3.0), r"shape \(4, 4\) like the weights"),
    ("speed-zero", lambda c: net(lengths=L, speed=0.0), r"Network.speed: expected a conduction speed > 0"),
    ("speed-string", lambda c: net(lengths=L, speed="fast"), r"Network.speed: .*got fast"),
    ("model-param-string", lambda c: net(model=RWW.replace(G="strong")), r"ReducedWongWang.G: expected finite"),
    # Simulation: time grid, noise, BOLD, seed
    ("dt-zero", lambda c: sim(dt=0.0), r"Simulation.dt: expected a finite number > 0, got 0.0"),
    ("dt-negative", lambda c: sim(dt=-1.0), r"Simulation.dt: .*got -1.0"),
    ("duration-too-short", lambda c: sim(duration=1_440.0), r"Simulation.duration: expected >= transient \+ 3 TR"),
    ("tr-zero", lambda c: sim(bold=fb.bold.HRF(tr=0.0)), r"HRF.tr: expected a finite number > 0, got 0.0"),
    ("sigma-negative", lambda c: sim(noise=fb.AdditiveNoise(-0.01)), r"AdditiveNoise.sigma: expected .*>= 0"),
    ("sigma-nan", lambda c: sim(noise=fb.AdditiveNoise(np.nan)), r"AdditiveNoise.sigma: .*got nan"),
    ("seed-string", lambda c: sim(seed="zero"), r"Simulation.seed: expected an int, got 'zero'"),
    ("method-unknown", lambda c: sim(method="rk4"), r"Simulation.method: .*got 'rk4'"),
    ("simulate-unknown-name", lambda c: fb.simulate(sim(), Gg=0.3), r"simulate: expected parameter names.*'Gg'"),
    ("simulate-value-shape", lambda c: fb.simulate(sim(), G=np.ones(3)), r"simulate\(G=...\): .*shape \(3,\)"),
    # FCProblem: target FC, loss, free set
    ("fc-asymmetric", lambda c: problem(target=with_entry(FC, 0, 1, 0.9, False)),
     r"FCProblem.target: expected a symmetric FC matrix, got max \|FC - FC.T\|"),
    ("fc-nan", lambda c: problem(target=with_entry(FC, 0, 1, np.nan)), r"FCProblem.target: expected finite off-diag"),
    ("fc-inf", lambda c: problem(target=with_entry(FC, 1, 2, -np.inf)), r"finite off-diagonal FC values, got 2 NaN"),
    ("fc-shape", lambda c: problem(target=FC[:3, :3]), r"FCProblem.target: expected an \(4, 4\) FC.*\(3, 3\)"),
    ("fc-strings", lambda c: problem(target=np.full((N, N), "r")), r"FCProblem.target: expected a real-valued"),
    ("loss-unknown", lambda c: problem(loss="mse"), r"expected one of \['1-corr', 'rmse'\].*got 'mse'"),
    ("free-empty", lambda c: problem(free={}), r"ParameterSpace.free: expected a non-empty dict"),
    ("free-unknown-name", lambda c: problem(free={"Gg": fb.Free(0.3, bounds=(0, 1))}), r"got 'Gg'.*did you mean 'G'"),
    ("free-not-Free", lambda c: problem(free={"G": 0.3}), r"ParameterSpace\['G'\]: expected a Free"),
    ("skip-too-large", lambda c: problem(skip=50), r"FCProblem.skip: expected an int in \[0, 17\]"),
    ("noise-policy", lambda c: problem(noise="average=0"), r"Problem.noise: .*'average=0'"),
    # Free / ParameterSpace
    ("bounds-lo-ge-hi", lambda c: fb.ParameterSpace({"G": fb.Free(0.5, bounds=(1.0, 1.0))}),
     r"ParameterSpace\['G'\]: expected bounds with lo < hi, got bounds=\(1.0, 1.0\)"),
    ("init-outside-bounds", lambda c: fb.ParameterSpace({"G": fb.Free(2.0, bounds=(0, 1))}), r"init inside.*init=2.0"),
    ("init-nan", lambda c: fb.ParameterSpace({"G": fb.Free(np.nan, bounds=(0, 1))}), r"init inside.*init=nan"),
    ("init-string", lambda c: fb.Free("half", bounds=(0, 1)), r"Free.init: expected a number.*'half'"),
    ("transform-unknown", lambda c: fb.Free(0.5, bounds=(0, 1), transform="logg"), r"Free.transform: .*'logg'"),
    ("logit-infinite", lambda c: fb.ParameterSpace({"G": fb.Free(0.5, transform="logit")}), r"finite bounds for"),
    ("regional-string", lambda c: fb.Free(0.5, bounds=(0, 1), regional="yes"), r"Free.regional: .*'yes'"),
    ("regional-shape", lambda c: fb.ParameterSpace({"w": fb.Free([0.1] * 3, bounds=(0, 1), regional=True)},
                                                   n_regions=N), r"shape \(4,\) init.*shape \(3,\)"),
    ("reserved-name", lambda c: fb.ParameterSpace({"loss": fb.Free(0.5, bounds=(0, 1))}), r"other than .*'loss'"),
    # minimize
    ("x0-outside-bounds", lambda c: fb.minimize(problem(), x0=[2.0, 0.5]), r"start inside the bounds, got G=2.0"),
    ("x0-shape", lambda c: fb.minimize(problem(), x0=[0.4]), r"minimize\(x0=...\): .*shape \(1,\)"),
    ("method-unknown-name", lambda c: fb.minimize(problem(), "scipy:LBFGS"), r"got 'scipy:LBFGS'.*L-BFGS-B"),
    ("method-wrong-type", lambda c: fb.minimize(problem(), 3), r"minimize\(method=...\): .*got int"),
    ("budget-zero-with-log", lambda c: fb.minimize(problem(), budget=0, log=c.tmp / "run.jsonl"),
     r"minimize\(budget=...\): expected a positive int.*got 0"),
    ("budget-nan", lambda c: fb.minimize(problem(), budget=float("nan")), r"minimize\(budget=...\): .*got nan"),
    ("budget-string", lambda c: fb.minimize(problem(), budget="ten"), r"minimize\(budget=...\): .*'ten'"),
    ("seed-negative", lambda c: fb.minimize(problem(), seed=-1), r"minimize\(seed=...\): .*got -1"),
    ("penalty-inf", lambda c: fb.minimize(problem(), penalty=np.inf), r"minimize\(penalty=...\): .*got inf"),
    ("options-not-dict", lambda c: fb.minimize(problem(), options=[1]), r"minimize\(options=...\): .*got list"),
    ("resume-missing", lambda c: fb.minimize(problem(), resume=c.tmp / "gone.jsonl"), r"minimize\(resume=...\)"),
    # evaluate / explore / spaces
    ("X-shape", lambda c: fb.evaluate(problem(), np.zeros((3, 5))), r"evaluate\(X=...\): .*\(n_points, 2\)"),
    ("X-strings", lambda c: fb.evaluate(problem(), [["a", "b"]]), r"evaluate\(X=...\): expected a numeric"),
    ("precision-unknown", lambda c: fb.evaluate(problem(), [[0.4, 0.5]], precision="float16"), r"'float16'"),
    ("observable-unknown", lambda c: fb.evaluate(problem(), [[0.4, 0.5]], observables=("fcd",)), r"\['fcd'\]"),
    ("explore-unknown-name", lambda c: fb.explore(problem(), {"Q": [0.1, 0.2]}), r"spaces: .*got 'Q'"),
    ("explore-outside-bounds", lambda c: fb.explore(problem(), {"G": [0.2, 5.0]}, save_to=c.tmp / "grid.csv"),
     r"spaces: expected points inside the problem's bounds, got G = .*5.0"),
    ("explore-nan-axis", lambda c: fb.explore(problem(), {"G": [0.2, np.nan]}), r"spaces.grid\['G'\]: .*non-finite"),
    ("sobol-lo-ge-hi", lambda c: fb.explore(problem(), spaces.sobol(4, G=(0.8, 0.2))), r"lo < hi.*\(0.8, 0.2\)"),
    ("zip-unequal", lambda c: spaces.zip(G=[0.2, 0.3], w=[0.4]), r"spaces.zip: expected axes of equal length"),
    ("sampler-n-zero", lambda c: spaces.lhs(0, G=(0.1, 0.9)), r"spaces.lhs\(n=...\): .*got 0"),
    # multistart / compare: checked before the exploration or the first run
    ("multistart-k", lambda c: fb.multistart(problem(), n_explore=2, k=4), r"multistart\(k=...\): .*n_explore=2"),
    ("multistart-budget", lambda c: fb.multistart(problem(), n_explore=8, budget=8), r"more than n_explore=8"),
    ("multistart-method", lambda c: fb.multistart(problem(), "cmaa", n_explore=4, k=1), r"got 'cmaa'.*'cma'"),
    ("multistart-x0", lambda c: fb.multistart(problem(), x0=[0.4, 3.0], n_explore=4, k=1), r"w=3.0 outside"),
    ("multistart-spread", lambda c: fb.multistart(problem(), spread=-1, n_explore=4, k=1), r"spread=...\): .*-1"),
    ("compare-no-methods", lambda c: fb.compare(problem(), [], budget=3), r"compare\(methods=...\): .*got \[\]"),
    ("compare-budget", lambda c: fb.compare(problem(), ["cma"], budget=0), r"compare\(budget=...\): .*got 0"),
    ("compare-seed", lambda c: fb.compare(problem(), ["cma"], budget=3, seeds=(0, -1)), r"ints >= 0.*\(0, -1\)"),
    ("compare-method", lambda c: fb.compare(problem(), ["scipy:L-BFGS-B", "cmaa"], budget=3), r"got 'cmaa'"),
    ("compare-options", lambda c: fb.compare(problem(), ["cma"], budget=3, options=["x"]), r"options=...\).*list"),
    # loaders
    ("dataset-unknown", lambda c: datasets.load("hpc"), r"datasets.load: .*got 'hpc'.*did you mean 'hcp'"),
    ("file-missing", lambda c: datasets.load_matrix(c.data / "nope.npy"), r"expected an existing file, got .*nope"),
    ("file-is-folder", lambda c: datasets.load_matrix(c.data), r"load_matrix: expected an existing file"),
    ("extension-pkl", lambda c: datasets.load_matrix(save_bytes(c, "w.pkl", pickle.dumps(W))),
     r"expected a .npy, .npz, .mat, .csv, .tsv or .txt file, got .*w.pkl"),
    ("extension-py", lambda c: datasets.load_matrix(save_bytes(c, "w.py", b"W = 1\n")), r"got .*w.py. Fix: convert"),
    ("npy-object-pickle", lambda c: datasets.load_matrix(save_array(c, "o.npy", np.array([{"a": 1}]),
                                                                    allow_pickle=True)),
     r"numeric .npy file \(fitbridge never unpickles data\), got .*o.npy \(pickled or object data\)"),
    ("npy-is-raw-pickle", lambda c: datasets.load_matrix(save_bytes(c, "p.npy", pickle.dumps(W))),
     r"never unpickles data.*p.npy \(pickled"),
    ("npy-truncated", lambda c: datasets.load_matrix(save_bytes(c, "t.npy", _npy_bytes(np.eye(30))[:200])),
     r"readable numeric .npy file.*t.npy"),
    ("npz-corrupt", lambda c: datasets.load_matrix(save_bytes(c, "z.npz", b"PK\x03\x04 not a zip")), r"\.npz file"),
    ("mat-corrupt", lambda c: datasets.load_matrix(save_bytes(c, "m.mat", b"MATLAB" * 30)), r"\.mat file"),
    ("csv-text", lambda c: datasets.load_matrix(save_bytes(c, "w.csv", b"a,b\nc,d\n")), r"numeric .csv file"),
    ("csv-empty", lambda c: datasets.load_matrix(save_bytes(c, "e.csv", b"")), r"a non-empty matrix"),
    ("npy-complex", lambda c: datasets.load_matrix(save_array(c, "c.npy", W + 1j)), r"real-valued.*complex128"),
    ("npy-nan", lambda c: datasets.load_matrix(save_array(c, "n.npy", with_entry(W, 0, 1, np.nan))),
     r"load_matrix: expected finite values, got 2 NaN/inf"),
    ("npy-not-square", lambda c: datasets.load_matrix(save_array(c, "r.npy", np.ones((3, 4)))), r"shape \(3, 4\)"),
    ("npz-ambiguous", lambda c: datasets.load_matrix(_savez(c, a=W, b=W)), r"key= naming .*2 arrays \['a', 'b'\]"),
    ("timeseries-1d", lambda c: datasets.load_timeseries(save_array(c, "v.npy", np.ones(5))), r"2-D array.*\(5,\)"),
    ("arrays-nan-sc", lambda c: datasets.from_arrays(with_entry(W, 1, 2, np.nan)), r"from_arrays.weights: .*finite"),
    ("arrays-bold-no-tr", lambda c: datasets.from_arrays(W, bold=_bold()), r"from_arrays.tr: .*got None"),
    ("arrays-bold-regions", lambda c: datasets.from_arrays(W, bold=_bold()[:, :3], tr=720.0), r"\(frames >= 3, 4\)"),
    ("arrays-bold-flat", lambda c: datasets.from_arrays(W, bold=_bold(flat=2), tr=720.0),
     r"constant series in region 2"),
    ("arrays-lengths-negative", lambda c: datasets.from_arrays(W, lengths=-L), r"from_arrays.lengths: .*>= 0"),
    # YAML specs
    ("yaml-malformed", lambda c: load_spec(spec_file(c, text="model: {name: rww\n  network: [")),
     r"spec.yaml: expected valid YAML, got .* at line 2"),
    ("yaml-tab", lambda c: load_spec(spec_file(c, text="model:\n\tname: rww\n")), r"valid YAML.*'\\t'"),
    ("yaml-not-utf8", lambda c: load_spec(spec_file(c, text=b"\xff\xfe garbage")), r"expected a UTF-8 text file"),
    ("yaml-empty", lambda c: load_spec(spec_file(c, text="")), r"expected a spec \(a YAML mapping\), got an empty"),
    ("yaml-list", lambda c: load_spec(spec_file(c, text="- 1\n- 2\n")), r"spec: expected a mapping of sections"),
    ("spec-missing", lambda c: load_spec(c.data / "nope.yaml"), r"load_spec: expected an existing spec file"),
    ("spec-unknown-field", lambda c: load_spec(spec_file(c, spec_with(optimise=[]))),
     r"optimise: expected a field of the spec.*did you mean 'optimize'"),
    ("spec-unknown-nested", lambda c: load_spec(spec_file(c, spec_with(**{"integration.dtt": 1.0}))),
     r"integration.dtt: .*unknown field 'dtt'. Fix: did you mean 'dt'"),
    ("spec-dt-string", lambda c: load_spec(spec_file(c, spec_with(**{"integration.dt": "fast"}))),
     r"integration.dt: expected a number > 0, got 'fast' \(str\)"),
    ("spec-dt-zero", lambda c: load_spec(spec_file(c, spec_with(**{"integration.dt": 0}))), r"integration.dt: .*got 0"),
    ("spec-domain-lo-ge-hi", lambda c: load_spec(spec_file(c, spec_with(**{"model.parameters.G.domain": [0.9, 0.1]}))),
     r"model.parameters.G.domain: expected \[lo, hi\] with lo < hi"),
    ("spec-value-outside", lambda c: load_spec(spec_file(c, spec_with(**{"model.parameters.G.value": 5.0}))),
     r"model.parameters.G.value: expected values inside the domain"),
    ("spec-unknown-parameter", lambda c: load_spec(spec_file(c, spec_with(**{"model.parameters.Gx": 0.1}))),
     r"model.parameters.Gx: .*unknown parameter 'Gx'.*did you mean 'G'"),
    ("spec-unknown-model", lambda c: load_spec(spec_file(c, spec_with(**{"model.name": "rwww"}))), r"got 'rwww'"),
    ("spec-unknown-method", lambda c: load_spec(spec_file(c, spec_with(optimize=[{"method": "nevergrd:NGOpt"}]))),
     r"optimize\[0\].method: expected a registered optimizer"),
    ("spec-budget-zero", lambda c: load_spec(spec_file(c, spec_with(optimize=[{"method": "cma", "budget": 0}]))),
     r"optimize\[0\].budget: expected an integer >= 1, got 0"),
    ("spec-unknown-dataset", lambda c: load_spec(spec_file(c, spec_with(network={"dataset": "hpc"}))),
     r"network.dataset: .*got 'hpc'"),
    ("spec-missing-file", lambda c: load_spec(spec_file(c, spec_with(**{"network.weights": "gone.npy"}))),
     r"network.weights: expected an existing file"),
    ("spec-free-undeclared",
     lambda c: load_spec(spec_file(c, spec_with(optimize=[{"method": "cma", "free": ["J_N"]}]))),
     r"optimize\[0\].free.J_N: .*'J_N' \(not declared\)"),
    ("spec-free-empty", lambda c: load_spec(spec_file(c, spec_with(optimize=[{"method": "cma", "free": []}]))),
     r"optimize\[0\].free: expected a list of at least 1"),
    ("spec-override-path", lambda c: load_spec(spec_file(c), overrides={"integration..dt": 1}), r"a field path"),
]

CLI = [  # (id, argv(ctx), regex of the stderr line)
    ("cli-yaml-malformed", lambda c: run_cli(c, None, "model: [\n"), r"expected valid YAML"),
    ("cli-unknown-field", lambda c: run_cli(c, spec_with(optimise=[])), r"did you mean 'optimize'"),
    ("cli-weights-py", lambda c: run_cli(c, spec_with(**{"network.weights": "evil.py"})), r"got .*evil.py"),
    ("cli-weights-pickle", lambda c: run_cli(c, spec_with(**{"network.weights": "evil.npy"})), r"pickled"),
    ("cli-duration-short", lambda c: run_cli(c, spec_with(**{"integration.duration": 1000})),
     r"Simulation.duration: expected >= transient \+ 3 TR"),
    ("cli-lengths-negative", lambda c: run_cli(c, spec_with(**{"network.lengths": "neg.npy", "network.speed": 3.0})),
     r"Network.lengths: expected tract lengths >= 0"),
    ("cli-fc-asymmetric", lambda c: run_cli(c, fc_target_spec(c, with_entry(_fc6(), 0, 1, 0.9, False))),
     r"observation.target.fc: expected a symmetric FC matrix"),
    ("cli-fc-skip", lambda c: run_cli(c, spec_with(**{"observation.fc_skip": 500})), r"observation.fc_skip: .*500"),
    ("cli-bad-set", lambda c: ["run", str(spec_file(c)), "--set", "no-equals", "--out", str(c.tmp / "out")],
     r"--set: expected KEY=VALUE"),
    ("cli-set-dt", lambda c: ["run", str(spec_file(c)), "--set", "integration.dt=-1", "--out", str(c.tmp / "out")],
     r"integration.dt: expected a number > 0, got -1"),
    ("cli-compare-method", lambda c: ["compare", str(spec_file(c)), "--methods", "cmaa", "--out", str(c.tmp / "o")],
     r"--methods\[0\]: .*got 'cmaa'.*did you mean 'cma'"),
    ("cli-compare-budget", lambda c: ["compare", str(spec_file(c)), "--methods", "cma", "--budget", "0"],
     r"argument --budget: expected an integer >= 1, got '0'"),
    ("cli-simulate-params", lambda c: ["simulate", str(spec_file(c)), "--params", str(c.tmp / "gone.json")],
     r"--params: expected a params.json file"),
    ("cli-unknown-command", lambda c: ["fit", "x.yaml"], r"argument COMMAND: invalid choice: 'fit'"),
]


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _savez(ctx, **arrays):
    path = ctx.data / "two.npz"
    np.savez(path, **arrays)
    return path


def _bold(flat=None):
    bold = np.random.default_rng(1).standard_normal((20, N))
    if flat is not None:
        bold[:, flat] = 0.3
    return bold


def _fc6():
    return np.corrcoef(np.random.default_rng(2).standard_normal((40, 6)).T)


# ------------------------------------------------------------------------------ harness
@pytest.fixture
def ctx(tmp_path, monkeypatch):
    """A data folder (the spec_data files, an evil .py, a pickle named .npy, negative lengths),
    the cwd moved to ``tmp_path`` (default results folders land there) and a snapshot of it."""
    data = tmp_path / "data"
    arrays = write_data(data)
    (data / "evil.py").write_text(f"open({str(tmp_path / 'EXECUTED')!r}, 'w').close()\n")
    (data / "evil.npy").write_bytes(pickle.dumps(arrays["weights"]))
    np.save(data / "neg.npy", -arrays["lengths"])
    monkeypatch.chdir(tmp_path)
    return SimpleNamespace(tmp=tmp_path, data=data)


@pytest.fixture
def no_compile(monkeypatch):
    """Any jit or XLA compilation while the case runs fails the test."""
    from jax._src import compiler

    def forbidden(*args, **kwargs):
        raise AssertionError("compiled before validating the input")

    monkeypatch.setattr(jax, "jit", forbidden)
    monkeypatch.setattr(compiler, "compile_or_get_cached", forbidden)


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if "EXECUTED" not in p.name and p.parent.name != "data"}


def _assert_nothing_written(ctx, before):
    after = _listing(ctx.tmp)
    assert after == before, f"files left behind: {sorted(set(after) - set(before))}"
    assert not list(ctx.tmp.rglob("*.tmp")), "a temporary file was left"
    assert not (ctx.tmp / "EXECUTED").exists(), "a spec file was executed"


@pytest.mark.parametrize("call,match", [pytest.param(c, m, id=i) for i, c, m in API])
def test_bad_input_raises_config_error_before_compiling(call, match, ctx, no_compile):
    before = _listing(ctx.tmp)
    with pytest.raises(fb.ConfigError) as info:
        call(ctx)
    message = str(info.value)
    assert STRUCTURE.match(message), f"not 'where: expected X, got Y. Fix: Z.': {message}"
    assert re.search(match, message, re.DOTALL), message
    _assert_nothing_written(ctx, before)


@pytest.mark.parametrize("argv,match", [pytest.param(a, m, id=i) for i, a, m in CLI])
def test_bad_input_cli_exits_2_with_one_line(argv, match, ctx, no_compile):
    args = argv(ctx)
    before = _listing(ctx.tmp)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        status = cli.main(args)
    text = err.getvalue()
    assert status == 2, text
    assert out.getvalue() == ""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fitbridge: error: "), text
    assert "Traceback" not in text
    if lines[0].startswith("fitbridge: error: argument "):  # argparse errors: what was wrong, and a pointer to --help
        assert re.search(r"\(see `fitbridge( \w+)? --help`\)$", lines[0]), lines[0]
    else:
        assert STRUCTURE.match(lines[0].removeprefix("fitbridge: error: ")), lines[0]
    assert re.search(match, lines[0]), lines[0]
    _assert_nothing_written(ctx, before)


def test_catalogue_is_large_and_distinct():
    ids = [i for i, *_ in API + CLI]
    assert len(ids) == len(set(ids)) and len(ids) >= 40


# ------------------------------------------------------------------------------ security
def test_spec_paths_are_read_as_data_never_imported_or_unpickled(ctx, monkeypatch):
    """A spec pointing at a .py file or at a pickle disguised as .npy is refused by the
    numeric loader: nothing is imported, executed or unpickled."""
    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickled a file named in a spec")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    for weights, match in (("evil.py", r"\.npy, \.npz, \.mat, \.csv, \.tsv or \.txt file"),
                           ("evil.npy", r"pickled"), ("../data/evil.npy", r"pickled")):
        spec = load_spec(spec_file(ctx, spec_with(**{"network.weights": weights})))
        assert resolve_path(spec, weights).parent.resolve() == ctx.data.resolve()
        with pytest.raises(fb.ConfigError, match=match):
            Builder(spec)
    assert not (ctx.tmp / "EXECUTED").exists()


FORBIDDEN_IMPORTS = {"pickle", "dill", "marshal", "shelve", "subprocess", "runpy", "cloudpickle"}
ALLOWED_IMPORTS = {("cloudpickle", "_parallel.py")}  # in-memory problems sent to our own workers
FORBIDDEN_CALLS = {"eval", "exec", "__import__", "compile"}
FORBIDDEN_ATTRS = {("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("os", "system"),
                   ("os", "popen"), ("pd", "read_pickle"), ("joblib", "load"), ("np", "fromfile")}


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ()  # a call on a computed object, e.g. jax.jit(f).lower(x).compile()
    parts.append(node.id)
    return tuple(reversed(parts))


def test_package_source_has_no_unsafe_calls():
    """No unpickling, unsafe YAML, eval/exec or subprocess anywhere in fitbridge; every
    ``np.load`` passes ``allow_pickle=False`` explicitly."""
    root = Path(fb.__file__).parent
    problems = []
    for file in sorted(root.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        where = str(file.relative_to(root))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    top = name.split(".")[0]
                    if top in FORBIDDEN_IMPORTS and (top, file.name) not in ALLOWED_IMPORTS:
                        problems.append(f"{where}:{node.lineno} imports {name}")
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if len(name) == 1 and name[0] in FORBIDDEN_CALLS:
                problems.append(f"{where}:{node.lineno} calls {name[0]}()")
            if name[-2:] in FORBIDDEN_ATTRS:
                problems.append(f"{where}:{node.lineno} calls {'.'.join(name)}()")
            if name[-1:] == ("load",) and name[:-1] in (("np",), ("numpy",)):
                flags = {k.arg: k.value for k in node.keywords}
                if not (isinstance(flags.get("allow_pickle"), ast.Constant) and flags["allow_pickle"].value is False):
                    problems.append(f"{where}:{node.lineno} np.load without allow_pickle=False")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{where}:{node.lineno} allow_pickle other than False")
    assert not problems, "\n".join(problems)


def test_yaml_is_read_with_safe_load_only(ctx):
    """A YAML tag that would build a Python object under yaml.load is rejected as bad YAML."""
    text = "model: !!python/object/apply:os.system ['touch EXECUTED']\nnetwork: {dataset: hcp}\n"
    with pytest.raises(fb.ConfigError, match=r"expected valid YAML, got could not determine a constructor"):
        load_spec(spec_file(ctx, text=text))
    assert not (ctx.tmp / "EXECUTED").exists()


def test_backends_are_looked_up_by_name_only():
    """Method names select registered backends; they are never imported as modules."""
    with pytest.raises(fb.ConfigError, match=r"registered backend name"):
        backends.get("os:system")


def test_the_compile_guard_catches_compilation(no_compile):
    """The guard the catalogue relies on: a valid problem's first evaluation fails under it."""
    good = problem()
    with pytest.raises(AssertionError, match="compiled before validating"):
        good.fun(good.x0)
    with pytest.raises(AssertionError, match="compiled before validating"):
        jax.numpy.arange(13.0).reshape(13, 1) * np.ones((13, 7, 1))
