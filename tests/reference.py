"""Independent NumPy references of the equations (float64, plain loops), written from the
papers and DESIGN.md, not from the package code."""

import numpy as np


def h_rww(x, a, b, d):
    y = a * x - b
    return y / (1.0 - np.exp(-d * y))


def dfun_rww(S, c, p):
    x = p["w"] * p["J_N"] * S + p["I_o"] + p["G"] * p["J_N"] * c
    return -S / p["tau_s"] + (1.0 - S) * p["gamma"] * h_rww(x, p["a"], p["b"], p["d"])


def dfun_excinh(S, c, p):
    Se, Si = S
    xe = p["w_p"] * p["J_N"] * Se - p["J_i"] * Si + p["W_e"] * p["I_o"] + p["G"] * p["J_N"] * c + p["I_ext"]
    xi = p["J_N"] * Se - Si + p["W_i"] * p["I_o"] + p["lamda"] * p["G"] * p["J_N"] * c
    he = h_rww(xe, p["a_e"], p["b_e"], p["d_e"])
    hi = h_rww(xi, p["a_i"], p["b_i"], p["d_i"])
    return np.stack([-Se / p["tau_e"] + (1 - Se) * he * p["gamma_e"], -Si / p["tau_i"] + hi * p["gamma_i"]])


RWW = dict(a=0.270, b=0.108, d=154.0, gamma=0.641, tau_s=100.0, w=0.6, J_N=0.2609, I_o=0.33, G=0.5)
EXCINH = dict(a_e=310.0, b_e=125.0, d_e=0.160, gamma_e=0.641 / 1000, tau_e=100.0, w_p=1.4, J_N=0.15, W_e=1.0,
              a_i=615.0, b_i=177.0, d_i=0.087, gamma_i=1 / 1000, tau_i=10.0, W_i=0.7, J_i=1.0, I_o=0.382,
              I_ext=0.0, G=2.0, lamda=0.0)


def heun(dfun, x0, W, dt, n_steps, increments, delays=None, lo=0.0, hi=1.0, cvar=0, method="heun"):
    """Plain-loop stochastic Heun with per-edge delays (in steps, may be fractional: linear
    interpolation between neighbours), constant initial history, coupling held fixed across
    predictor and corrector, clamp after each stage. Returns (n_steps, n_svar, n)."""
    x = np.array(x0, dtype=float)
    n = W.shape[0]
    hist = [x[cvar].copy()]  # hist[-1 - k] = coupled variable k steps ago
    out = []
    for t in range(n_steps):
        if delays is None:
            c = W @ x[cvar]
        else:
            c = np.zeros(n)
            for i in range(n):
                for j in range(n):
                    k = delays[i, j]
                    k0 = int(np.floor(k))
                    f = k - k0
                    a = hist[max(len(hist) - 1 - k0, 0)][j]
                    b = hist[max(len(hist) - 2 - k0, 0)][j]
                    c[i] += W[i, j] * ((1 - f) * a + f * b)
        inc = increments[t]
        d0 = dfun(x, c)
        if method == "euler":
            x = np.clip(x + dt * d0 + inc, lo, hi)
        else:
            pred = np.clip(x + dt * d0 + inc, lo, hi)
            d1 = dfun(pred, c)
            x = np.clip(x + dt / 2 * (d0 + d1) + inc, lo, hi)
        hist.append(x[cvar].copy())
        out.append(x.copy())
    return np.array(out)


def volterra(t, tau_s=0.8, tau_f=0.4):
    w = np.sqrt(1 / tau_f - 1 / (4 * tau_s**2))
    return 1 / 3 * np.exp(-0.5 * t / tau_s) * np.sin(w * t) / w


def hrf_bold(stock, newest, period=4.0, length=20_000.0, k1=5.6, V0=0.02):
    """Direct sum: bold(T) = k1 V0 (sum_j G(j*period) x(T - j*period) - 1), zeros before start."""
    taps = int(round(length / period))
    g = volterra(np.arange(taps) * period / 1000.0)
    out = []
    for e in newest:
        acc = np.zeros(stock.shape[1])
        for j in range(taps):
            if e - j >= 0:
                acc += g[j] * stock[e - j]
        out.append(k1 * V0 * (acc - 1.0))
    return np.array(out)


def balloon(r, dt, tau_s=0.65, tau_f=0.41, tau_o=0.98, alpha=0.32, E0=0.4, V0=0.04, TE=0.04):
    """Euler integration of the Balloon-Windkessel ODE; returns BOLD after each step."""
    k1, k2, k3 = 4.3 * 40.3 * E0 * TE, 25 * E0 * TE, 1.0
    n = r.shape[1]
    s, f, v, q = np.zeros(n), np.ones(n), np.ones(n), np.ones(n)
    out = []
    for t in range(r.shape[0]):
        ds = r[t] - s / tau_s - (f - 1) / tau_f
        dv = (f - v ** (1 / alpha)) / tau_o
        dq = (f * (1 - (1 - E0) ** (1 / f)) / E0 - v ** (1 / alpha - 1) * q) / tau_o
        s, f, v, q = s + dt * ds, f + dt * s, v + dt * dv, q + dt * dq
        out.append(V0 * (k1 * (1 - q) + k2 * (1 - q / v) + k3 * (1 - v)))
    return np.array(out)


def fc(bold, skip=0):
    return np.corrcoef(bold[skip:].T)
