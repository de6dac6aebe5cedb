"""float32 exp / erf / erfc / tanh / sigmoid for numba loops that LLVM can vectorize.

numba lowers math.exp/tanh/erf to scalar libm calls, which LLVM cannot vectorize without a vector
math library (SVML), so a loop calling them runs one element at a time. The functions here are plain
float32 arithmetic (range reduction, polynomials, a division, selects, integer ops on the float bits),
which inline into the caller's loop and vectorize with it (AVX2 / AVX-512 on x86).

numba is optional: importing this module does not import numba. build() imports it (ImportError when
it is missing), compiles nothing yet, and returns a namespace of jitted scalar functions, cached after
the first call:

    from accel import cpu_math
    m = cpu_math.build()
    exp = m.exp_f32                          # capture as a global (or closure variable)

    @numba.njit(error_model="numpy")         # fastmath must stay off, see below
    def _silu_f32(gx, g, s):
        for i in range(gx.size):
            x = s[i]
            sg = np.float32(1) / (np.float32(1) + exp(-x))
            gx[i] = g[i] * sg * (np.float32(1) + x * (np.float32(1) - sg))

The functions are jitted with inline="always": numba inlines their IR into the caller, so the caller's
loop is one function LLVM can vectorize. Rules for callers:

- Keep the whole loop body float32. numba types Python float literals (0.5), Python float globals and
  int literals mixed with floats (1 + x) as float64, which silently promotes the expression, halves the
  vector width and adds conversions. Use np.float32(...) constants (module globals are frozen with
  their type) or np.float32(...) casts. tests/kernels/test_cpu_math.py has a check (no `double` or
  `fpext` in the compiled loop) to copy.
- fastmath=False (numba's default). The code relies on IEEE semantics: comparisons with NaN, the
  rounding shifter in exp, an exact two-product split of a*a in erfc; fastmath's nnan/reassoc flags
  would fold those away.
- Bind the functions to names (exp = m.exp_f32) before the jitted function uses them: numba cannot
  type the SimpleNamespace itself, so m.exp_f32(x) inside a jitted function does not compile.
- error_model="numpy", so a division does not get a zero check that blocks vectorization.
- A float64 argument is rounded to float32 first (results are always float32); for float64 data use
  math.exp & co.
- cache=True and parallel=True (prange) callers work. numba's on-disk cache of a caller keys on the
  caller's source file only: after editing this module, clear the caller's __pycache__/*.nbi/*.nbc
  (or touch its source) to recompile.

Functions (x float32; "ulp" = distance in float32 steps from the float64 result rounded to float32).
The bounds are what tests/kernels/test_cpu_math.py asserts; measured maxima (exhaustive over every
float32 in the range for exp/tanh/sigmoid, 4e7 random points for erf/erfc) in brackets:

- exp_f32(x): <= 2 ulp [1] for x in [-87.3365, 88.7228] (results >= FLT_MIN); inf above, NaN -> NaN.
  Results below FLT_MIN (x < ln(FLT_MIN) = -87.3365) flush to 0 (no subnormals).
- erf_f32(x): absolute error <= 2e-7 [9.4e-8, 2 ulp] everywhere; erf(+-inf) = +-1, erf(-0) = -0,
  NaN -> NaN. Accurate relative to erf near 0 too (erf(1e-30) = 1.1283791e-30).
- erfc_f32(x): relative error <= 2e-6 [4.0e-7, 6 ulp] for x <= 9.1 (erfc(9.19) = FLT_MIN); results
  below FLT_MIN are within FLT_MIN, exactly 0 from x ~ 9.345 on (where exp(-x^2) flushes);
  erfc(-inf) = 2, NaN -> NaN.
- erf_gauss_f32(x) -> (erf(x), exp(-x*x)): both for the price of erf_f32 (erf needs exp(-x*x) anyway);
  bit-identical to (erf_f32(x), exp_f32(-(x*x))), so exp(-x*x) is that of the float32-rounded x*x.
  GELU's derivative Phi(x) + x phi(x) needs erf(x/sqrt2) and exp(-x^2/2): one call, one exp.
- tanh_f32(x): <= 4 ulp [1] for |x| >= 0.5 (absolute error <= 1e-7 and 1 ulp below); exactly +-1 for
  |x| >= ~9.01; tanh(-0) = -0; NaN -> NaN.
- sigmoid_f32(x): 1/(1+exp(-x)), computed as e/(1+e) for x < 0 with e = exp(-|x|) (no overflow):
  <= 4 ulp [2] for x in [-87.3, 88.7]; 0 below ln(FLT_MIN) (flush), 1 above ~16.6; NaN -> NaN.
- i32_as_f32(i), f32_as_i32(x): bit casts (LLVM `bitcast`); integers are truncated/extended to 32 bits.

Method. exp: x = k*ln2 + r with k = rint(x*log2(e)) (the 1.5*2^23 shifter, which also leaves k in the
low mantissa bits) and r from a two-part (Cody-Waite) ln2, |r| <= ln2/2; exp(r) = 1 + r + r^2 P(r)
with a degree-4 minimax P; 2^k is applied by adding k << 23 to the bits of exp(r), with selects for
overflow, underflow and NaN (branch-free). erf/erfc: x + x*P(x^2) for |x| < 0.875, else
erfc(a) = t*Q(t)*exp(-a^2), t = 1/(1 + a/2), Q of degree 8 by Estrin's scheme, reflected for x < 0;
for erfc, a^2 is split exactly into hi + lo (Dekker) so exp(-a^2) keeps full relative accuracy up to
a = 9.
tanh: x + x^3 P(x^2) for |x| < 0.625, else 1 - 2/(exp(2|x|) + 1). Polynomials use llvm.fmuladd (one
FMA instruction where the CPU has FMA, else mul + add: results may differ in the last bit between
such CPUs). Coefficients are fitted by tools/fit_cpu_math.py. Size of the vectorized loop body of
out[i] = f(x[i]) (per 8 lanes with AVX2-width vectors, load/store/loop overhead included): exp 26
instructions, sigmoid 33 (one division), tanh 48 (one division), erf / erf_gauss 68 and erfc 78 (one
division, one exp; erfc adds the exact split of x*x).
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np

_f = np.float32

# --- generated by tools/fit_cpu_math.py ---
ERF_SPLIT = np.float32(0.875)
ERFC_MAX = np.float32(10.5)
ERFC_P = np.float32(0.5)
TANH_SPLIT = np.float32(0.625)
# exp(r) = 1 + r + r^2 * P(r), |r| <= 0.3466 (max relative fit error 3.12e-09 with these float32 coefficients)
_EXP_P0 = np.float32(4.999999404e-01)
_EXP_P1 = np.float32(1.666652113e-01)
_EXP_P2 = np.float32(4.166825488e-02)
_EXP_P3 = np.float32(8.368661627e-03)
_EXP_P4 = np.float32(1.382145332e-03)
# erf(x) = x + x * P(x^2), |x| <= 0.875 (max relative fit error 1.41e-08 with these float32 coefficients)
_ERF_P0 = np.float32(1.283791512e-01)
_ERF_P1 = np.float32(-3.761250675e-01)
_ERF_P2 = np.float32(1.128196269e-01)
_ERF_P3 = np.float32(-2.677227929e-02)
_ERF_P4 = np.float32(5.002021324e-03)
_ERF_P5 = np.float32(-6.038811989e-04)
# erfc(a) = t * Q(t) * exp(-a^2), t = 1/(1 + 0.5*a), 0.875 <= a <= 10.5 (max relative fit error 3.85e-09 with these
# float32 coefficients)
_ERFC_Q0 = np.float32(2.820836008e-01)
_ERFC_Q1 = np.float32(2.824028432e-01)
_ERFC_Q2 = np.float32(2.432063818e-01)
_ERFC_Q3 = np.float32(2.001972944e-01)
_ERFC_Q4 = np.float32(-1.266503427e-02)
_ERFC_Q5 = np.float32(2.393223494e-01)
_ERFC_Q6 = np.float32(-4.285823703e-01)
_ERFC_Q7 = np.float32(2.383183539e-01)
_ERFC_Q8 = np.float32(-4.414673895e-02)
# tanh(x) = x + x^3 * P(x^2), |x| <= 0.625 (max relative fit error 1.78e-10 with these float32 coefficients)
_TANH_P0 = np.float32(-3.333333135e-01)
_TANH_P1 = np.float32(1.333322078e-01)
_TANH_P2 = np.float32(-5.394817889e-02)
_TANH_P3 = np.float32(2.170689404e-02)
_TANH_P4 = np.float32(-8.190013468e-03)
_TANH_P5 = np.float32(2.152684145e-03)
# --- end of generated coefficients ---

# exp range reduction. LN2_HI = 355/512 has 9 significant bits, so k*LN2_HI is exact for |k| < 2^15
# and x - k*LN2_HI is exact (Sterbenz); LN2_LO = ln2 - LN2_HI rounded to float32.
_LOG2E = _f(1.4426950408889634)
_LN2_HI = _f(0.693359375)
_LN2_LO = _f(0.6931471805599453 - 0.693359375)
_NEG_LN2_HI = -_LN2_HI
_NEG_LN2_LO = -_LN2_LO
# exp(x) > FLT_MAX above _EXP_OVF (ln(FLT_MAX) = 88.7228391), < FLT_MIN below _EXP_UNF (ln(FLT_MIN) =
# -87.3365448): the largest / smallest float32 inputs whose results the exponent-field add gets right.
_EXP_OVF = _f(88.72283)
_EXP_UNF = _f(-87.33654)
_INF = _f(np.inf)
_SHIFTER = _f(12582912.0)  # 1.5 * 2^23
_SPLIT12 = _f(4097.0)  # 2^12 + 1: Veltkamp split of a float32 into two 12-bit halves
_NEG0 = _f(-0.0)  # x + -0.0 == x exactly, so LLVM drops it
_ZERO = _f(0.0)
_ONE = _f(1.0)
_TWO = _f(2.0)

_lock = threading.Lock()
_built = None


def build():
    """Compile-ready namespace of the float32 math functions; imports numba (ImportError without it)."""
    global _built
    if _built is not None:
        return _built
    with _lock:
        if _built is None:
            _built = _build()
    return _built


def _build():
    import numba  # noqa: PLC0415 (optional dependency, imported on first use)
    from llvmlite import ir  # noqa: PLC0415
    from numba.core import types  # noqa: PLC0415
    from numba.extending import intrinsic  # noqa: PLC0415

    i32, f32 = ir.IntType(32), ir.FloatType()

    @intrinsic
    def i32_as_f32(typingctx, bits):
        """The float32 whose bit pattern is the low 32 bits of an integer (LLVM bitcast)."""
        if not isinstance(bits, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            v = args[0]
            if bits.bitwidth > 32:
                v = builder.trunc(v, i32)
            elif bits.bitwidth < 32:
                v = builder.sext(v, i32) if bits.signed else builder.zext(v, i32)
            return builder.bitcast(v, f32)

        return types.float32(bits), codegen

    @intrinsic
    def f32_as_i32(typingctx, x):
        """The int32 bit pattern of a float32 (LLVM bitcast); a float64 is rounded to float32 first."""
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            v = args[0]
            if x.bitwidth != 32:
                v = builder.fptrunc(v, f32)
            return builder.bitcast(v, i32)

        return types.int32(x), codegen

    @intrinsic
    def _fma(typingctx, a, b, c):
        """a*b + c as llvm.fmuladd: one fused instruction where the CPU has FMA, else mul + add."""
        if not (a == b == c == types.float32):
            return None

        def codegen(context, builder, sig, args):
            fn = builder.module.declare_intrinsic("llvm.fmuladd", [f32], ir.FunctionType(f32, [f32, f32, f32]))
            return builder.call(fn, args)

        return types.float32(a, b, c), codegen

    @intrinsic
    def _add_exponent(typingctx, p, v):
        """bits(p) + (bits(v) << 23) as a float32: p * 2^k when v's low mantissa bits hold k."""
        if not (p == v == types.float32):
            return None

        def codegen(context, builder, sig, args):
            k = builder.shl(builder.bitcast(args[1], i32), ir.Constant(i32, 23))
            return builder.bitcast(builder.add(builder.bitcast(args[0], i32), k), f32)

        return types.float32(p, v), codegen

    jit = numba.njit(inline="always", error_model="numpy", fastmath=False)

    @jit
    def _exp_hl(hi, lo):
        # exp(hi + lo) for |lo| <= ulp(hi)/2; plain exp passes lo = -0.0 (LLVM drops the add).
        # k = rint(hi*log2(e)) by the 1.5*2^23 shifter: v = hi*log2(e) + 1.5*2^23 rounds to an integer
        # whose low mantissa bits are k (for |k| < 2^22), and kf = v - 1.5*2^23 is k as a float.
        v = _fma(hi, _LOG2E, _SHIFTER)
        kf = v - _SHIFTER
        r = _fma(kf, _NEG_LN2_LO, _fma(kf, _NEG_LN2_HI, hi) + lo)  # |r| <= ln2/2
        p = _fma(_EXP_P4, r, _EXP_P3)
        p = _fma(p, r, _EXP_P2)
        p = _fma(p, r, _EXP_P1)
        p = _fma(p, r, _EXP_P0)
        p = _fma(p, r, _ONE)
        p = _fma(p, r, _ONE)  # exp(r) = 1 + r + r^2 P(r)
        # p * 2^k: add k << 23 (= the bits of v shifted left by 23) to the bits of p; right while the
        # result is a normal float. Out of that range (and for |hi| so large that v no longer holds k)
        # the lane is replaced below, so its value does not matter.
        y = _add_exponent(p, v)
        y = y if hi <= _EXP_OVF else hi * _INF  # overflow -> inf, NaN -> NaN
        return _ZERO if hi < _EXP_UNF else y  # results below FLT_MIN flush to 0

    @jit
    def exp_f32(x):
        return _exp_hl(np.float32(x), _NEG0)

    @jit
    def _erf_core(x, exact):
        # (erf(x), erfc(x), exp(-x*x)). exact=True splits x*x into hi + lo for erfc's relative accuracy
        # at large |x|; erf does not need it (erfc is < 2e-5 where the rounding of x*x would matter),
        # and with exact=False (a constant after inlining) LLVM drops the split and exp(-x*x) is
        # exp_f32(-(x*x)) bit for bit.
        xf = np.float32(x)
        a = abs(xf)
        # |x| < ERF_SPLIT: erf(x) = x + x * P(x^2)
        u = xf * xf
        p = _fma(_ERF_P5, u, _ERF_P4)
        p = _fma(p, u, _ERF_P3)
        p = _fma(p, u, _ERF_P2)
        p = _fma(p, u, _ERF_P1)
        p = _fma(p, u, _ERF_P0)
        erf_small = _fma(xf, p, xf)
        # |x| >= ERF_SPLIT: erfc(a) = t * Q(t) * exp(-a^2), t = 1/(1 + a/2)
        t = _ONE / _fma(ERFC_P, a, _ONE)
        t2 = t * t
        t4 = t2 * t2
        # Estrin: Q0..Q3 and Q4..Q8 in parallel (a shorter dependency chain than Horner)
        q03 = _fma(_fma(_ERFC_Q3, t, _ERFC_Q2), t2, _fma(_ERFC_Q1, t, _ERFC_Q0))
        q48 = _fma(_ERFC_Q8, t4, _fma(_fma(_ERFC_Q7, t, _ERFC_Q6), t2, _fma(_ERFC_Q5, t, _ERFC_Q4)))
        q = _fma(q48, t4, q03)
        # a*a = hi + lo exactly (Dekker's split, plain mul/add): rounding a*a alone would cost up to
        # 81 * 2^-25 = 2.4e-6 relative error in exp(-a*a), so in erfc, at a = 9.
        c = a * _SPLIT12
        ah = c - (c - a)
        al = a - ah
        hi = a * a
        lo = ((ah * ah - hi) + (ah + ah) * al) + al * al
        lo = lo if exact else _ZERO
        gauss = _exp_hl(-hi, -lo)  # exp(-x*x); a = inf or NaN: 0 or NaN, from the checks in _exp_hl
        ec = (t * q) * gauss  # erfc(|x|)
        big = a >= ERF_SPLIT  # False for NaN: the small branch passes NaN through
        erf = (_ONE - ec if xf >= _ZERO else ec - _ONE) if big else erf_small
        erfc = (ec if xf >= _ZERO else _TWO - ec) if big else _ONE - erf_small
        return erf, erfc, gauss

    @jit
    def erf_gauss_f32(x):
        erf, _, gauss = _erf_core(x, False)
        return erf, gauss

    @jit
    def erf_f32(x):
        return _erf_core(x, False)[0]

    @jit
    def erfc_f32(x):
        return _erf_core(x, True)[1]

    @jit
    def tanh_f32(x):
        xf = np.float32(x)
        a = abs(xf)
        u = xf * xf
        p = _fma(_TANH_P5, u, _TANH_P4)
        p = _fma(p, u, _TANH_P3)
        p = _fma(p, u, _TANH_P2)
        p = _fma(p, u, _TANH_P1)
        p = _fma(p, u, _TANH_P0)
        small = _fma(xf, u * p, xf)
        small = small if a > _ZERO else xf  # keep tanh(-0) = -0 (-0 + -0*(-0*p) is +0)
        big = _ONE - _TWO / (_exp_hl(a + a, _NEG0) + _ONE)  # exp -> inf gives 1
        big = big if xf >= _ZERO else -big
        return big if a >= TANH_SPLIT else small  # NaN takes the small branch: NaN

    @jit
    def sigmoid_f32(x):
        xf = np.float32(x)
        e = _exp_hl(-abs(xf), _NEG0)  # in (0, 1]: no overflow
        num = _ONE if xf >= _ZERO else e
        return num / (_ONE + e)

    public = (exp_f32, erf_f32, erfc_f32, erf_gauss_f32, tanh_f32, sigmoid_f32, i32_as_f32, f32_as_i32)
    return SimpleNamespace(**{f.__name__: f for f in public}, numba=numba)
