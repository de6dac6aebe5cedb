"""Fit the polynomial coefficients used by accel/cpu_math.py (float32 exp, erf/erfc, tanh).

    python tools/fit_cpu_math.py

Each approximation is a weighted minimax fit (Lawson's iteratively reweighted least squares in a
Chebyshev basis, then converted to monomials) in float64 against Python's math.exp/erf/erfc/tanh.
The weight makes the minimized quantity the relative error of the final function value. The
coefficients are then rounded to float32 and the fit error is re-measured with those rounded values
on a dense grid (float64 arithmetic: this is the approximation error alone, not the float32 rounding
of the evaluation, which the tests in tests/kernels/test_cpu_math.py measure). The output is pasted
verbatim into accel/cpu_math.py.

Choices (from a small scan of split points, the t = 1/(1 + p*a) scale and the degrees; a lower degree
left the fit error above ~1e-8, i.e. no longer small against float32 rounding; the split 0.875 keeps
erfc <= 0.22 where erf = 1 - erfc, which halved erf's absolute error against a split at 0.75):
  exp:  exp(r) = 1 + r + r^2 * P(r),           |r| <= ln2/2, P of degree 4
  erf:  erf(x) = x + x * P(x^2),               |x| <= ERF_SPLIT, P of degree 5
  erfc: erfc(a) = t * Q(t) * exp(-a^2),        ERF_SPLIT <= a <= 10.5, t = 1/(1 + ERFC_P*a), Q of degree 8
  tanh: tanh(x) = x + x^3 * P(x^2),            |x| <= TANH_SPLIT, P of degree 5
erf is written x + x*P so that P(0) = 2/sqrt(pi) - 1 carries the float32 rounding of 2/sqrt(pi) at an
eighth of the weight (x * P alone was off by 5e-8 relative near 0 from that rounding).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import chebyshev, polynomial

ERF_SPLIT = 0.875
ERFC_P = 0.5  # a power of 2: p*a is exact in float32 (0.4 gave ~10% more erfc error)
ERFC_MAX = 10.5  # fit range only: erfc(9.35) < FLT_MIN already, where the code's exp(-a^2) flushes to 0
TANH_SPLIT = 0.625
EXP_R = 0.3466  # ln(2)/2 = 0.34657..., plus the rounding slack of the reduction

_erf = np.frompyfunc(math.erf, 1, 1)
_erfc = np.frompyfunc(math.erfc, 1, 1)
_tanh = np.frompyfunc(math.tanh, 1, 1)


def cheb_nodes(lo, hi, n=2000):
    k = np.arange(n)
    return (lo + hi) / 2 + (hi - lo) / 2 * np.cos((2 * k + 1) * np.pi / (2 * n))


def lawson(x, wf, ww, deg, iters=300):
    """Monomial coefficients c (in x, low order first) minimizing max |wf - ww * sum_k c_k x^k|.

    wf is the weighted target and ww the weight, so a relative-error fit of f passes wf = f * w, ww = w
    with w = 1/f. The fit runs in a Chebyshev basis on [min x, max x] (well conditioned) and is
    converted to monomials at the end.
    """
    lo, hi = x.min(), x.max()
    s = (2 * x - (lo + hi)) / (hi - lo)
    basis = chebyshev.chebvander(s, deg) * ww[:, None]
    lam = np.full(len(x), 1.0 / len(x))
    best = None
    for _ in range(iters):
        sq = np.sqrt(lam)
        c, *_ = np.linalg.lstsq(basis * sq[:, None], sq * wf, rcond=None)
        err = np.abs(wf - basis @ c)
        m = err.max()
        if best is None or m < best[0]:
            best = (m, c)
        lam = lam * (err + 1e-3 * m)  # Lawson update (floored so no weight dies out)
        lam /= lam.sum()
    # Chebyshev in s -> monomials in s -> monomials in x (s = alpha*x + beta)
    cs = chebyshev.cheb2poly(best[1])
    alpha, beta = 2 / (hi - lo), -(lo + hi) / (hi - lo)
    out = np.zeros(deg + 1)
    power = np.array([1.0])
    for k in range(deg + 1):
        out[: len(power)] += cs[k] * power
        power = polynomial.polymul(power, [beta, alpha])
    return out


def fit_f32(x, f, w, deg):
    """float32 coefficients of P (degree deg) minimizing max |w * (f - P(x))|.

    Rounding a minimax fit's coefficients to float32 can cost more than the fit error (the leading
    coefficient of erf, 2/sqrt(pi), alone moves it by 5e-8), so the coefficients are fixed one at a
    time from the constant term up: round c_j, then refit c_{j+1..deg} against what is left.
    """
    fixed = []
    for j in range(deg + 1):
        rest = f - polynomial.polyval(x, fixed) if fixed else f
        c = lawson(x, w * rest, w * x**j, deg - j)
        fixed.append(float(np.float32(c[0])))
    return np.array(fixed)


def horner(c, x):
    acc = np.zeros_like(x) + c[-1]
    for ck in c[-2::-1]:
        acc = acc * x + ck
    return acc


def fit_exp():
    r = cheb_nodes(-EXP_R, EXP_R)
    g = (np.expm1(r) - r) / (r * r)
    c = fit_f32(r, g, r * r / np.exp(r), 4)
    rr = np.linspace(-EXP_R, EXP_R, 200_001)
    rr = rr[rr != 0]
    err = np.abs((1 + rr + rr * rr * horner(c, rr)) / np.exp(rr) - 1).max()
    return c, err


def fit_erf():
    x = cheb_nodes(1e-4, ERF_SPLIT)
    u = x * x
    g = _erf(x).astype(float) / x - 1
    c = fit_f32(u, g, 1 / (1 + g), 5)
    xx = np.linspace(1e-6, ERF_SPLIT, 200_001)
    ref = _erf(xx).astype(float)
    err = np.abs((xx + xx * horner(c, xx * xx)) / ref - 1).max()
    return c, err


def fit_erfc():
    a = cheb_nodes(ERF_SPLIT, ERFC_MAX)
    t = 1 / (1 + ERFC_P * a)
    q = _erfc(a).astype(float) * np.exp(a * a) / t
    c = fit_f32(t, q, 1 / q, 8)
    aa = np.linspace(ERF_SPLIT, ERFC_MAX, 200_001)
    tt = 1 / (1 + ERFC_P * aa)
    ref = _erfc(aa).astype(float) * np.exp(aa * aa)
    err = np.abs(tt * horner(c, tt) / ref - 1).max()
    return c, err


def fit_tanh():
    x = cheb_nodes(1e-4, TANH_SPLIT)
    u = x * x
    th = _tanh(x).astype(float)
    g = (th / x - 1) / u
    c = fit_f32(u, g, u * x / th, 5)
    xx = np.linspace(1e-6, TANH_SPLIT, 200_001)
    ref = _tanh(xx).astype(float)
    err = np.abs((xx + xx**3 * horner(c, xx * xx)) / ref - 1).max()
    return c, err


def table(name, comment, c, err):
    lines = ["# %s (max relative fit error %.2e with these float32 coefficients)" % (comment, err)]
    lines += ["%s%d = np.float32(%.9e)" % (name, k, ck) for k, ck in enumerate(c)]
    return "\n".join(lines)


def main():
    print("# --- generated by tools/fit_cpu_math.py ---")
    print("ERF_SPLIT = np.float32(%r)" % ERF_SPLIT)
    print("ERFC_MAX = np.float32(%r)" % ERFC_MAX)
    print("ERFC_P = np.float32(%r)" % ERFC_P)
    print("TANH_SPLIT = np.float32(%r)" % TANH_SPLIT)
    print(table("_EXP_P", "exp(r) = 1 + r + r^2 * P(r), |r| <= %g" % EXP_R, *fit_exp()))
    print(table("_ERF_P", "erf(x) = x + x * P(x^2), |x| <= %g" % ERF_SPLIT, *fit_erf()))
    print(
        table(
            "_ERFC_Q",
            "erfc(a) = t * Q(t) * exp(-a^2), t = 1/(1 + %g*a), %g <= a <= %g" % (ERFC_P, ERF_SPLIT, ERFC_MAX),
            *fit_erfc(),
        )
    )
    print(table("_TANH_P", "tanh(x) = x + x^3 * P(x^2), |x| <= %g" % TANH_SPLIT, *fit_tanh()))
    print("# --- end of generated coefficients ---")


if __name__ == "__main__":
    main()
