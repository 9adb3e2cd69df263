"""Generate reference trajectories from classic TVB (tvb-library) for fitbridge's tests.

Run (from the repository root)::

    python3 -m venv /work/tvbenv && /work/tvbenv/bin/pip install tvb-library==2.10.0
    /work/tvbenv/bin/python scripts/make_tvb_fixtures.py

tvb-library is needed ONLY to regenerate the fixtures; fitbridge and its tests never import
it (the tests read the committed ``tests/fixtures/tvb_*.npz`` files). The fixtures were made
with tvb-library 2.10.0 (numpy 2.4, numba 0.68, Python 3.11).

Each case runs TVB's ``Simulator`` (region level, ``Linear`` coupling, ``HeunDeterministic``
or ``HeunStochastic`` with ``Additive`` noise, ``Raw`` monitor) on 6 nodes, then replays the
run with an independent plain-NumPy Heun loop (below) and prints the max relative error.
For the stochastic cases the standard normals are pre-drawn from ``numpy.random.default_rng``
and fed to TVB by replacing the noise object's ``random_stream`` with a ``RandomState``
subclass whose ``normal()`` returns the pre-drawn rows one step at a time, so TVB's own
``sqrt(dt) * z * sqrt(2 * nsig)`` scaling path is exercised and the exact increments are
stored. See ``tests/fixtures/README.md`` for the conventions found.
"""

import os
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")

import tvb  # noqa: E402
from tvb.simulator import coupling, integrators, models, monitors, noise, simulator  # noqa: E402
from tvb.datatypes import connectivity  # noqa: E402
import logging  # noqa: E402

logging.disable(logging.WARNING)  # TVB warns "random_state supplied for non-stochastic ..."

try:
    from importlib.metadata import version as _version

    TVB_VERSION = _version("tvb-library")
except Exception:  # pragma: no cover
    TVB_VERSION = getattr(tvb, "__version__", "unknown")

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
N = 6

RWW_PARAMS = dict(a=0.270, b=0.108, d=154.0, gamma=0.641, tau_s=100.0, w=0.65,
                  J_N=0.2609, I_o=0.33, sigma_noise=1e-9)
RWW_COUPLING_A = 0.5
EXCINH_PARAMS = dict(a_e=310.0, b_e=125.0, d_e=0.160, gamma_e=0.641 / 1000, tau_e=100.0,
                     w_p=1.4, J_N=0.15, W_e=1.0, a_i=615.0, b_i=177.0, d_i=0.087,
                     gamma_i=1.0 / 1000, tau_i=10.0, W_i=0.7, I_o=0.382, I_ext=0.02,
                     G=1.5, lamda=0.3, J_i=1.0)
RWW_DT = 0.5      # ms
EXCINH_DT = 0.125  # ms (binary-exact, so lengths/speed/dt is an exact integer)
SPEED = 4.0       # mm/ms


# ----------------------------------------------------------------------------- inputs
def make_weights(seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.05, 1.0, size=(N, N)) * (rng.uniform(size=(N, N)) < 0.8)
    np.fill_diagonal(w, 0.0)
    w /= w.max()
    assert not np.allclose(w, w.T)
    return w


def make_delay_steps(seed, max_steps=40):
    """Integer delays (in steps) per edge, spanning many different values up to max_steps."""
    rng = np.random.default_rng(seed)
    d = rng.integers(1, max_steps + 1, size=(N, N))
    d[0, 1] = max_steps  # make sure the maximum is reached
    d[1, 0] = 1          # and an asymmetric pair
    np.fill_diagonal(d, 0)
    return d


def initial_values(model, extremes=False):
    """Constant initial history, different per node. With extremes=True (noise cases) the
    first/last nodes start on the bounds 0 and 1 so that noise makes the clamp act."""
    if model == "rww":
        x = np.array([np.linspace(0.1, 0.4, N)])
    else:
        x = np.array([np.linspace(0.1, 0.4, N), np.linspace(0.05, 0.3, N)[::-1]])
    if extremes:
        x[:, 0] = 0.0
        x[0, -1] = 1.0
    return x


# ----------------------------------------------------------------------------- TVB
class ReplayStream(np.random.RandomState):
    """RandomState whose normal() replays pre-drawn standard normals, one step per call."""

    def __init__(self, z):
        super().__init__(0)
        self._z = z
        self.calls = 0

    def normal(self, loc=0.0, scale=1.0, size=None):
        assert loc == 0.0 and scale == 1.0
        out = self._z[self.calls]
        assert tuple(size) == out.shape, (size, out.shape)
        self.calls += 1
        return out.copy()


class tvb_history_dtype:
    """Context manager: set the dtype of TVB's history arrays (stock TVB: float32 'f').

    TVB 2.10's DenseHistory/SparseHistory declare their buffer, weights and delayed-state
    arrays with the NDArray descriptor dtype 'f', i.e. float32. With 'd' the same TVB code
    runs with a float64 history (the only change made to TVB for the float64 fixtures).
    """

    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        from tvb.simulator import descriptors, history
        self.saved = []
        for cls in (history.DenseHistory, history.SparseHistory):
            for name, attr in list(vars(cls).items()):
                if isinstance(attr, descriptors.NDArray) and attr.dtype == "f":
                    self.saved.append(attr)
                    attr.dtype = self.dtype
        return self

    def __exit__(self, *exc):
        for attr in self.saved:
            attr.dtype = "f"


def run_tvb(model, weights_tvb, lengths, speed, dt, n_steps, init, coupling_a, coupling_b,
            params, z=None, nsig=None, history_dtype="d"):
    """Run TVB and return (times, trajectory[n_steps, n_svar, n], sim).

    history_dtype="d" patches TVB's history to float64; "f" is stock TVB (float32).
    """
    with tvb_history_dtype(history_dtype):
        t, x, sim = _run_tvb(model, weights_tvb, lengths, speed, dt, n_steps, init,
                             coupling_a, coupling_b, params, z, nsig)
    assert sim.history.buffer.dtype == np.dtype(history_dtype)
    assert sim.history.nnz_weights.dtype == np.dtype(history_dtype)
    return t, x, sim


def _run_tvb(model, weights_tvb, lengths, speed, dt, n_steps, init, coupling_a, coupling_b,
             params, z, nsig):
    n = weights_tvb.shape[0]
    conn = connectivity.Connectivity(
        weights=weights_tvb.copy(), tract_lengths=lengths.copy(),
        speed=np.array([speed]), centres=np.zeros((n, 3)),
        region_labels=np.array(["r%d" % i for i in range(n)]))
    mdl_cls = models.ReducedWongWang if model == "rww" else models.ReducedWongWangExcInh
    mdl = mdl_cls(**{k: np.array([v]) for k, v in params.items()})
    stream = None
    if z is None:
        integ = integrators.HeunDeterministic(dt=dt)
    else:
        stream = ReplayStream(z[..., None])  # TVB draws shape (n_svar, n, n_modes=1)
        integ = integrators.HeunStochastic(
            dt=dt, noise=noise.Additive(nsig=np.asarray(nsig, float), random_stream=stream))
    horizon = int(np.rint(lengths / speed / dt).max()) + 1
    ic = np.broadcast_to(init[None, :, :, None], (horizon,) + init.shape + (1,)).copy()
    sim = simulator.Simulator(
        connectivity=conn, model=mdl,
        coupling=coupling.Linear(a=np.array([coupling_a]), b=np.array([coupling_b])),
        integrator=integ, monitors=(monitors.Raw(),), initial_conditions=ic,
        simulation_length=n_steps * dt)
    sim.configure()
    assert sim.connectivity.horizon == horizon
    (t, x), = sim.run(n_steps=n_steps)
    assert x.shape == (n_steps,) + init.shape + (1,), x.shape
    if stream is not None:
        assert stream.calls == n_steps
    return t, x[..., 0], sim


# ----------------------------------------------------------------------------- NumPy replay
def dfun_rww(X, c, p):
    S = X[0]
    x = p["w"] * p["J_N"] * S + p["I_o"] + p["J_N"] * c
    y = p["a"] * x - p["b"]
    H = y / (1 - np.exp(-p["d"] * y))
    return np.array([-(S / p["tau_s"]) + (1.0 - S) * H * p["gamma"]])


def dfun_excinh(X, c, p):
    Se, Si = X
    cc = p["G"] * p["J_N"] * c
    xe = p["w_p"] * p["J_N"] * Se - p["J_i"] * Si + p["W_e"] * p["I_o"] + cc + p["I_ext"]
    ye = p["a_e"] * xe - p["b_e"]
    He = ye / (1 - np.exp(-p["d_e"] * ye))
    xi = p["J_N"] * Se - Si + p["W_i"] * p["I_o"] + p["lamda"] * cc
    yi = p["a_i"] * xi - p["b_i"]
    Hi = yi / (1 - np.exp(-p["d_i"] * yi))
    return np.array([-(Se / p["tau_e"]) + (1.0 - Se) * He * p["gamma_e"],
                     -(Si / p["tau_i"]) + Hi * p["gamma_i"]])


def numpy_replay(model, W, lengths, speed, dt, n_steps, init, ca, cb, params, noise_inc,
                 f32_history=False):
    """Plain Heun loop in fitbridge's conventions (W[target, source]).

    c_i(t_k) = ca * sum_j W[i, j] * S_j(t_k - tau_ij) + cb, with tau_ij = lengths/speed read
    at k - rint(tau/dt) steps (constant initial history before t_0), evaluated once per step
    and held across both Heun stages; the same additive increment in both stages; S clamped
    to [0, 1] after each stage. Returns the states after steps 1..n_steps.
    f32_history=True emulates stock TVB: S history and W rounded to float32, products and the
    sum over sources in float32, then c = ca * float64(sum) + cb.
    """
    f = dfun_rww if model == "rww" else dfun_excinh
    if np.all(lengths == 0):
        D = np.zeros(W.shape, int)
    else:
        D = np.rint(lengths / speed / dt).astype(int)
    hdt = np.float32 if f32_history else np.float64
    W = W.astype(hdt)
    hist = np.empty((n_steps + 1, W.shape[0]), hdt)  # S (coupling variable) at steps 0..n_steps
    X = init.copy()
    hist[0] = X[0]
    out = np.empty((n_steps,) + X.shape)
    numpy_replay.n_clamped = 0  # how many times the clamp changed a value (either stage)
    cols = np.arange(W.shape[0])[None, :]
    nz = W != 0
    rows = np.argwhere(nz)[:, 0]
    lri = np.flatnonzero(np.diff(np.r_[-1, rows]))
    nzr = np.unique(rows)
    for k in range(n_steps):
        delayed = hist[np.maximum(k - D, 0), cols]  # delayed[i, j] = S_j(t_k - tau_ij)
        if f32_history:  # TVB's SparseCoupling: float32 products, add.reduceat per target row
            gx = np.zeros(W.shape[0], hdt)
            gx[nzr] = np.add.reduceat((W[nz] * delayed[nz])[:, None], lri, axis=0)[:, 0]
        else:
            gx = (W * delayed).sum(axis=1)
        c = ca * gx.astype(np.float64) + cb
        dX = f(X, c, params)
        pred = X + dt * dX + noise_inc[k]
        numpy_replay.n_clamped += np.count_nonzero((pred < 0) | (pred > 1))
        pred = np.clip(pred, 0.0, 1.0)
        X = X + (dX + f(pred, c, params)) * dt / 2.0 + noise_inc[k]
        numpy_replay.n_clamped += np.count_nonzero((X < 0) | (X > 1))
        X = np.clip(X, 0.0, 1.0)
        out[k] = X
        hist[k + 1] = X[0]
    return out


# ----------------------------------------------------------------------------- checks
def check_orientation():
    """One nonzero weight: TVB weights[0, 1] = 1 must make node 0 (not node 1) feel node 1."""
    W = np.zeros((3, 3))
    W[0, 1] = 1.0
    init = np.array([[0.1, 0.5, 0.3]])
    p = dict(RWW_PARAMS)
    _, xc, _ = run_tvb("rww", W, np.zeros((3, 3)), 1.0, RWW_DT, 20, init, 1.0, 0.0, p)
    _, x0, _ = run_tvb("rww", np.zeros((3, 3)), np.zeros((3, 3)), 1.0, RWW_DT, 20, init,
                       1.0, 0.0, p)
    changed = np.abs(xc - x0).max(axis=(0, 1)) > 0
    assert list(changed) == [True, False, False], changed
    print("orientation: TVB weights[0, 1] drives node 0 from node 1 -> TVB is W[target, source]")


def check_delay_orientation():
    """One nonzero weight with a delay: tract_lengths[i, j] is the delay on edge j -> i."""
    W = np.zeros((3, 3))
    W[0, 1] = 1.0
    L = np.zeros((3, 3))
    L[0, 1] = 10 * RWW_DT * SPEED  # 10 steps
    L[1, 0] = 3 * RWW_DT * SPEED   # would be 3 steps if (wrongly) transposed
    init = np.array([[0.1, 0.5, 0.3]])
    p = dict(RWW_PARAMS)
    _, xt, _ = run_tvb("rww", W, L, SPEED, RWW_DT, 30, init, 1.0, 0.0, p)
    ref = numpy_replay("rww", W, L, SPEED, RWW_DT, 30, init, 1.0, 0.0, p, np.zeros((30, 1, 3)))
    err = np.abs(xt - ref).max()
    refT = numpy_replay("rww", W, L.T, SPEED, RWW_DT, 30, init, 1.0, 0.0, p, np.zeros((30, 1, 3)))
    assert err == 0 and np.abs(xt - refT).max() > 1e-8, (err, np.abs(xt - refT).max())
    print("orientation: tract_lengths[i, j] is the delay of edge j -> i (same orientation as W)")


# ----------------------------------------------------------------------------- cases
def make_case(name, model, delays, stochastic, seed, n_steps=1000):
    rww = model == "rww"
    dt = RWW_DT if rww else EXCINH_DT
    params = dict(RWW_PARAMS if rww else EXCINH_PARAMS)
    ca, cb = (RWW_COUPLING_A, 0.0) if rww else (1.0, 0.0)
    W = make_weights(seed)           # fitbridge orientation W[target, source] (== TVB's)
    if delays:
        D = make_delay_steps(seed + 1)
        lengths = D * (dt * SPEED)   # exact in binary floating point
        speed = SPEED
        assert np.array_equal(lengths / speed / dt, D)
    else:
        lengths = np.zeros((N, N))
        speed = np.nan
    init = initial_values(model, extremes=stochastic)
    nsv = init.shape[0]
    if stochastic:
        nsig = np.array([5e-5]) if rww else np.array([5e-5, 2e-5])  # sigma = sqrt(2 nsig)
        z = np.random.default_rng(1000 + seed).standard_normal((n_steps, nsv, N))
        # exactly what TVB adds: (sqrt(dt) * z) * sqrt(2 * nsig), same in both Heun stages
        noise_inc = (np.sqrt(dt) * z) * np.sqrt(2.0 * nsig)[:, None]
    else:
        nsig, z = np.zeros(nsv), None
        noise_inc = np.zeros((n_steps, nsv, N))

    kw = dict(z=z, nsig=nsig if stochastic else None)
    tvb_speed = speed if delays else 1.0
    t, traj, sim = run_tvb(model, W, lengths, tvb_speed, dt, n_steps, init, ca, cb, params,
                           history_dtype="d", **kw)
    _, traj32, _ = run_tvb(model, W, lengths, tvb_speed, dt, n_steps, init, ca, cb, params,
                           history_dtype="f", **kw)
    args = (model, W, lengths, speed, dt, n_steps, init, ca, cb, params, noise_inc)
    ref = numpy_replay(*args)
    n_clamped = numpy_replay.n_clamped
    ref32 = numpy_replay(*args, f32_history=True)

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    errs = dict(np64_vs_tvb64=rel(ref, traj), np32_vs_tvbstock=rel(ref32, traj32),
                tvbstock_vs_tvb64=rel(traj32, traj))
    horizon = sim.connectivity.horizon
    assert np.allclose(t, (horizon + np.arange(n_steps)) * dt)

    out = dict(
        model=np.array(model), weights=W, lengths=lengths, speed=np.float64(speed),
        dt=np.float64(dt), n_steps=np.int64(n_steps),
        coupling_a=np.float64(ca), coupling_b=np.float64(cb),
        param_names=np.array(list(params)),
        param_values=np.array([float(v) for v in params.values()]),
        initial_state=init, noise=noise_inc, nsig=np.asarray(nsig, float),
        trajectory=traj, tvb_version=np.array(TVB_VERSION), tvb_time=t)
    if z is not None:
        out["z"] = z
    path = os.path.join(OUT_DIR, name + ".npz")
    np.savez_compressed(path, **out)
    lo, hi = traj.min(axis=(0, 2)), traj.max(axis=(0, 2))
    print("%-20s %s  range %s..%s  clamped %d  %d kB"
          % (name, "  ".join("%s=%.1e" % kv for kv in errs.items()), np.round(lo, 3),
             np.round(hi, 3), n_clamped, os.path.getsize(path) // 1024))
    return errs


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    print("tvb-library", TVB_VERSION)
    check_orientation()
    check_delay_orientation()
    errs = [
        make_case("tvb_rww_nodelay", "rww", False, False, seed=1),
        make_case("tvb_rww_delay", "rww", True, False, seed=2),
        make_case("tvb_excinh_nodelay", "excinh", False, False, seed=3),
        make_case("tvb_excinh_delay", "excinh", True, False, seed=4),
        make_case("tvb_rww_noise_delay", "rww", True, True, seed=5),
        make_case("tvb_excinh_noise", "excinh", False, True, seed=6, n_steps=600),
    ]
    if max(max(e["np64_vs_tvb64"], e["np32_vs_tvbstock"]) for e in errs) > 1e-12:
        sys.exit("NumPy replay disagrees with TVB")


if __name__ == "__main__":
    main()
