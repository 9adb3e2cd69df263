"""FIC and EIB tuning against independent references: the plain Simulation (continuity of the
carried state), the update rules recomputed in NumPy from the recorded activity, and resume."""

import warnings

import numpy as np
import pytest

import fitbridge as fb
from fitbridge import _tuning

N = 5
TR = 720.0


def weights(n=N, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.random((n, n))
    W[W < 0.35] = 0.0
    np.fill_diagonal(W, 0.0)
    return W


def sim_of(model=None, noise=None, speed=None, transient=0.0, W=None, bold=True):
    W = weights() if W is None else W
    lengths = 20.0 + 60.0 * weights(seed=1) if speed else None
    net = fb.Network(model or fb.models.WongWangExcInh(G=0.8), W, lengths=lengths, speed=speed)
    return fb.Simulation(net, dt=1.0, duration=10_000.0, transient=transient, noise=noise,
                         bold=fb.bold.HRF(tr=TR) if bold else None)


@pytest.mark.parametrize("speed", [None, 4.0])
def test_untuned_iterations_continue_the_plain_simulation(speed):
    """With the learning switched off, each iteration's mean S_e is the plain Simulation's S_e
    averaged over the same TR: the carried state (gates, delay buffer) loses nothing."""
    sim = sim_of(speed=speed, transient=1000.0)
    out = fb.fic(sim, iterations=6, eta=0.0, chunk=4, progress=False)
    ref = fb.simulate(sim.replace(bold=None, record_period=TR, duration=1000.0 + 6 * TR))
    np.testing.assert_allclose(out.S_e, ref.data[:, 0, :], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(out.J_i, np.ones((6, N)))


def test_fic_rule_matches_numpy_recomputation():
    """J_i(k) = max(J_i(k-1) + eta <S_i> (<S_e> - target), 0), with <.> recomputed by running the
    plain Simulation one TR at a time from the previous final state with the previous J_i."""
    eta, target = 3.0, 0.25
    sim = sim_of()
    out = fb.fic(sim, iterations=4, eta=eta, target=target, chunk=3, progress=False)
    J = np.ones(N)
    state = None
    for k in range(4):
        model = sim.network.model.replace(J_i=J)
        one = sim.replace(network=sim.network.replace(model=model), bold=None, record_period=TR,
                          duration=TR, initial_state=state)
        res = fb.simulate(one)
        S_e, S_i = res.data[0, 0], res.data[0, 1]
        J = np.maximum(J + eta * S_i * (S_e - target), 0.0)
        state = res.final_state
        np.testing.assert_allclose(out.S_e[k], S_e, rtol=1e-11)
        np.testing.assert_allclose(out.J_i[k], J, rtol=1e-11)


def test_fic_rate_form_moves_rates_towards_target():
    sim = sim_of(noise=fb.AdditiveNoise(0.005))
    out = fb.fic(sim, iterations=200, eta=0.5, form="rate", rate=3.0, progress=False)
    r = out.history["r_e"].to_numpy()
    assert abs(np.mean(r[-20:]) - 3.0) < 0.5 * abs(r[0] - 3.0)


def test_fic_gating_form_reaches_target_with_noise():
    sim = sim_of(noise=fb.AdditiveNoise(0.005))
    out = fb.fic(sim, iterations=300, eta=1.0, progress=False)
    late = out.S_e[-30:].mean(axis=0)  # per region
    assert np.all(np.abs(late - 0.25) < 0.08), late
    assert abs(out.history["S_e"].iloc[0] - 0.25) > 0.3


def test_resume_equals_one_uninterrupted_run():
    sim = sim_of(noise=fb.AdditiveNoise(0.005))
    target = np.corrcoef(np.random.default_rng(3).standard_normal((N, 40)))
    kw = dict(eta=0.01, warmup=2, window=4, progress=False)
    whole = fb.eib(sim, target, iterations=10, chunk=3, **kw)
    first = fb.eib(sim, target, iterations=6, chunk=4, **kw)
    rest = fb.eib(sim, target, iterations=4, chunk=3, resume=first, **kw)
    assert rest.iterations == whole.iterations == 10
    np.testing.assert_array_equal(rest.history.to_numpy(), whole.history.to_numpy())
    np.testing.assert_array_equal(rest.J_i, whole.J_i)
    np.testing.assert_array_equal(rest.model.wLRE, whole.model.wLRE)
    np.testing.assert_array_equal(rest.model.wFFI, whole.model.wFFI)


def test_eib_rule_matches_numpy_recomputation():
    """One EIB step recomputed from the window of BOLD frames: D = FC_emp - FC_sim, row RMSE e,
    wLRE += lr D e, wFFI -= lr D e, clipped at 0, on the connectome's edges only."""
    sim = sim_of(noise=fb.AdditiveNoise(0.005))
    target = np.corrcoef(np.random.default_rng(3).standard_normal((N, 40)))
    kw = dict(eta=0.5, warmup=1, window=6, fic_eta=0.2, progress=False)
    before = fb.eib(sim, target, iterations=6, **kw)  # window just full: ramp 0, no update yet
    np.testing.assert_array_equal(before.model.wLRE, (weights() > 0) * 1.0)
    after = fb.eib(sim, target, iterations=1, resume=before, **kw)
    fc_sim = np.corrcoef(after.bold.T)
    np.testing.assert_allclose(fc_sim, after.fc, atol=1e-12)
    D = (target - fc_sim) * (1 - np.eye(N))
    e = np.sqrt(np.sum(D ** 2, axis=1) / (N - 1))
    mask = weights() > 0
    lre = np.maximum(before.model.wLRE + 0.5 * D * e[:, None], 0) * mask
    ffi = np.maximum(before.model.wFFI - 0.5 * D * e[:, None], 0) * mask
    np.testing.assert_allclose(after.model.wLRE, lre, atol=1e-13)
    np.testing.assert_allclose(after.model.wFFI, ffi, atol=1e-13)
    iu = np.triu_indices(N, 1)
    assert after.history["fc_r"].iloc[-1] == pytest.approx(np.corrcoef(fc_sim[iu], target[iu])[0, 1], abs=1e-12)


def test_eib_pulls_fc_towards_a_model_generated_target():
    """A target FC produced by the EIB model with other edge weights: EIB lowers the RMSE."""
    rng = np.random.default_rng(7)
    W = weights(6, seed=2)
    hidden = fb.models.WongWangEIB(G=0.8, wLRE=rng.uniform(0.2, 2.5, (6, 6)), wFFI=rng.uniform(0, 1.0, (6, 6)))
    gen = sim_of(model=hidden, W=W, noise=fb.AdditiveNoise(0.01)).replace(duration=400_000.0, transient=20_000.0)
    fic_first = fb.fic(gen, iterations=150, eta=1.0, progress=False)  # a balanced generator
    bold = fb.simulate(fic_first.simulation).data
    target = np.corrcoef(bold.T)
    sim = sim_of(W=W, noise=fb.AdditiveNoise(0.01))
    out = fb.eib(sim, target, iterations=500, eta=0.05, warmup=20, window=60, fic_eta=1.0, progress=False)
    rmse = out.history["rmse"].to_numpy()
    assert np.nanmean(rmse[-50:]) < 0.7 * np.nanmean(rmse[60:80])


def test_interrupt_keeps_finished_chunks(monkeypatch):
    class Bar:
        calls = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k):
            Bar.calls += 1
            if Bar.calls == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(_tuning, "progress_bar", lambda *a, **k: Bar())
    sim = sim_of()
    with pytest.warns(UserWarning, match="interrupted after 4 of 10"):
        part = fb.fic(sim, iterations=10, eta=1.0, chunk=2, progress=False)
    assert part.interrupted and part.iterations == 4 and len(part.history) == 4
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rest = fb.fic(sim, iterations=6, eta=1.0, chunk=2, resume=part, progress=False)
        whole = fb.fic(sim, iterations=10, eta=1.0, chunk=2, progress=False)
    np.testing.assert_array_equal(rest.J_i, whole.J_i)


def test_refinement_problem_starts_at_the_tuned_values_and_has_exact_gradients():
    sim = sim_of(noise=fb.AdditiveNoise(0.005))
    target = np.corrcoef(np.random.default_rng(3).standard_normal((N, 40)))
    out = fb.eib(sim, target, iterations=8, eta=0.05, warmup=1, window=4, progress=False)
    problem = out.problem(target, duration=20_000.0, transient=2_000.0, skip=2)
    rows, cols = np.nonzero(weights())
    x0 = problem.x0
    np.testing.assert_allclose(x0[:N], out.model.J_i)
    np.testing.assert_allclose(x0[N:N + rows.size], out.model.wLRE[rows, cols])
    assert problem.names[N] == f"wLRE[{rows[0]},{cols[0]}]"
    f, g = problem.fun_and_jac(x0)
    inside = np.flatnonzero(x0 > 1e-3)  # central differences away from the bound at 0
    blocks = [inside[inside < N], inside[(inside >= N) & (inside < N + rows.size)], inside[inside >= N + rows.size]]
    for i in [b[0] for b in blocks if b.size] + [blocks[1][-1]]:
        h = 1e-5 * max(1.0, abs(x0[i]))
        e = np.zeros(problem.dim)
        e[i] = h
        fd = (problem.fun(x0 + e) - problem.fun(x0 - e)) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)
    np.testing.assert_allclose(f, fb.evaluate(problem, x0[None]).fun[0], rtol=1e-12)


def test_eib_model_reduces_to_exc_inh():
    W = weights()
    plain = fb.simulate(sim_of(fb.models.WongWangExcInh(G=0.8, lamda=0.3), W=W, bold=False).replace(
        record_period=10.0, duration=3000.0))
    eib = fb.simulate(sim_of(fb.models.WongWangEIB(G=0.8, wLRE=np.ones((N, N)), wFFI=np.full((N, N), 0.3)),
                             W=W, bold=False).replace(record_period=10.0, duration=3000.0))
    np.testing.assert_allclose(eib.data, plain.data, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("call,match", [
    (lambda: fb.fic(sim_of(fb.models.ReducedWongWang())), r"Wong-Wang Exc-Inh network"),
    (lambda: fb.fic(sim_of().replace(bold=fb.bold.BalloonWindkessel(tr=TR))), r"an HRF or GammaHRF"),
    (lambda: fb.fic(sim_of(), iterations=0), r"fic.iterations: expected an integer in \[1, inf\]"),
    (lambda: fb.fic(sim_of(), form="hz"), r"'gating'"),
    (lambda: fb.fic(sim_of(), target=1.5), r"fic.target"),
    (lambda: fb.eib(sim_of(), np.ones((3, 3))), r"\(5, 5\) FC matrix"),
    (lambda: fb.eib(sim_of(), np.eye(N), window=2), r"eib.window"),
    (lambda: fb.eib(sim_of(), np.eye(N), resume="x"), r"a TuningResult"),
    (lambda: fb.models.WongWangEIB(wLRE=np.ones(3)) and fb.Network(fb.models.WongWangEIB(wLRE=np.ones(N)), weights()),
     r"per-edge \(5, 5\)"),
    (lambda: fb.FCProblem(sim_of(), np.eye(N), free={"G": fb.Free(0.5, (0, 1), edges=True)}), r"edges=True only"),
])
def test_bad_tuning_inputs(call, match):
    with pytest.raises(fb.ConfigError, match=match):
        call()


def test_tuning_figure_draws_the_history(tmp_path):
    pytest.importorskip("matplotlib")
    out = fb.fic(sim_of(), iterations=6, eta=1.0, chunk=3, progress=False)
    fig = fb.plots.tuning(out.history, tmp_path / "tuning.png")
    assert (tmp_path / "tuning.png").stat().st_size > 0
    s_e, j_i = fig.axes[0].lines[0], fig.axes[1].lines[0]
    np.testing.assert_array_equal(s_e.get_ydata(), out.history["S_e"].to_numpy())
    np.testing.assert_array_equal(j_i.get_ydata(), out.history["J_i"].to_numpy())
    with pytest.raises(fb.ConfigError, match="missing columns"):
        fb.plots.tuning(out.history.drop(columns="J_i"))
