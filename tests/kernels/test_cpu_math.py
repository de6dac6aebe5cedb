"""accel.cpu_math: accuracy of the float32 exp/erf/erfc/tanh/sigmoid against float64 references,
vectorization of loops calling them (LLVM IR), and import without numba.

ulp = distance in float32 steps between the result and the float64 reference rounded to float32.
The asserted bounds are the ones the module promises; its docstring lists the measured maxima (exp,
tanh 1 ulp, sigmoid 2 ulp exhaustively; erf 9.4e-8 absolute, erfc 4.0e-7 relative on 4e7 points).
"""

from __future__ import annotations

import math
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from accel import cpu_math  # noqa: E402
from llvm_ir import vector_float32_problems  # noqa: E402

m = cpu_math.build()
exp = m.exp_f32
erf = m.erf_f32
erfc = m.erfc_f32
tanh = m.tanh_f32
sigmoid = m.sigmoid_f32

F32 = np.float32
NAN = float("nan")
INF = float("inf")
TINY = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, 1e-30, -1e-30, 1e-8, -1e-8]
HUGE = [1e30, -1e30, 3.4028235e38, -3.4028235e38, np.inf, -np.inf]


# ------------------------------------------------------------------ helpers


def _ordinal(v):
    i = np.asarray(v, np.float32).view(np.int32).astype(np.int64)
    return np.where(i < 0, -(i & 0x7FFFFFFF), i)  # monotone in the float value; +0 and -0 both 0


def ulp_dist(y, ref64):
    """float32 steps between y and ref64 rounded to float32 (0 where both are NaN)."""
    with np.errstate(over="ignore"):
        r = np.asarray(ref64, np.float64).astype(np.float32)
    d = np.abs(_ordinal(y) - _ordinal(r))
    both_nan = np.isnan(y) & np.isnan(r)
    one_nan = np.isnan(y) ^ np.isnan(r)
    return np.where(both_nan, 0, np.where(one_nan, 2**40, d))


_MAPS = {}


def apply(fn, x):
    """fn over a float32 array, in a jitted loop (the way kernels use it)."""
    loop = _MAPS.get(fn)
    if loop is None:

        @numba.njit(error_model="numpy")
        def loop(out, x):
            for i in range(x.size):
                out[i] = fn(x[i])

        _MAPS[fn] = loop
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    loop(out, x)
    return out


def grid(lo, hi, n=1_000_000, extra=()):
    g = np.linspace(lo, hi, n, dtype=np.float32)
    return np.concatenate([g, np.asarray(extra, np.float32)])


def _py(f, x):
    return np.frompyfunc(f, 1, 1)(x.astype(np.float64)).astype(np.float64)


def _sigmoid64(x):
    x = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


REFS = {
    exp: lambda x: np.exp(x.astype(np.float64)),
    erf: lambda x: _py(math.erf, x),
    erfc: lambda x: _py(math.erfc, x),
    tanh: lambda x: np.tanh(x.astype(np.float64)),
    sigmoid: _sigmoid64,
}


# ------------------------------------------------------------------ accuracy

EXP_EDGES = [88.72, 88.72283, -87.3, -87.33654, 0.5, -0.5, 1.0, 0.34657, -0.34657, 20.0, 0.875, -0.875, 0.625]
# (function, lo, hi, bound kind, bound): the grid covers [lo, hi] plus the edge/tiny values in range
ACCURACY = [
    (exp, -87.33654, 88.72283, "ulp", 2),  # every result >= FLT_MIN and finite
    (exp, -2.0, 2.0, "ulp", 2),
    (erf, -10.0, 10.0, "abs", 2e-7),
    (erf, -4.0, 4.0, "abs", 2e-7),  # denser where erf is not +-1
    (erfc, -10.0, 9.1, "rel", 2e-6),  # results down to ~1e-37 (FLT_MIN 1.2e-38 at x = 9.19)
    (erfc, -1.5, 3.0, "rel", 2e-6),
    (tanh, 0.5, 10.0, "ulp", 4),
    (tanh, -10.0, -0.5, "ulp", 4),
    (tanh, -1.0, 1.0, "abs", 1e-7),
    (sigmoid, -80.0, 80.0, "ulp", 4),
    (sigmoid, -87.0, 88.0, "ulp", 4),
]


@pytest.mark.parametrize(
    "fn, lo, hi, kind, bound", ACCURACY, ids=["%s[%g,%g]-%s" % (a[0].__name__, a[1], a[2], a[3]) for a in ACCURACY]
)
def test_accuracy(fn, lo, hi, kind, bound):
    edges = [v for v in TINY + EXP_EDGES + [lo, hi] if lo <= v <= hi]
    x = grid(lo, hi, extra=edges)
    y = apply(fn, x)
    ref = REFS[fn](x)
    assert y.dtype == np.float32
    if kind == "ulp":
        err = ulp_dist(y, ref)
    elif kind == "abs":
        err = np.abs(y - ref)
    else:
        err = np.abs(y.astype(np.float64) - ref) / np.abs(ref)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, "%s(%r) = %r, reference %r: %s error %g > %g" % (
        fn.__name__,
        float(x[worst]),
        float(y[worst]),
        float(ref[worst]),
        kind,
        err[worst],
        bound,
    )


FLT_MIN = float(np.finfo(np.float32).tiny)


def test_underflow_flushes_to_zero():
    x = grid(-1e4, -87.33655, n=100_000, extra=[-87.33655, -100.0, -103.0, -104.0, -3.4e38])
    assert np.all(apply(exp, x) == 0)
    assert np.all(apply(sigmoid, x) == 0)
    # erfc: subnormal results (x > 9.19) are within FLT_MIN, and 0 once exp(-x^2) flushes
    x = grid(9.1, 12.0, n=100_000)
    y = apply(erfc, x).astype(np.float64)
    ref = REFS[erfc](x)
    assert np.all(np.abs(y - ref) <= 2e-6 * ref + FLT_MIN)
    assert np.all(y[x >= 9.346] == 0)


def apply_erf_gauss(x):
    loop = _MAPS.get("erf_gauss")
    if loop is None:
        erf_gauss = m.erf_gauss_f32

        @numba.njit(error_model="numpy")
        def loop(e, gauss, x):
            for i in range(x.size):
                e[i], gauss[i] = erf_gauss(x[i])

        _MAPS["erf_gauss"] = loop
    x = np.ascontiguousarray(x, dtype=np.float32)
    e, gauss = np.empty_like(x), np.empty_like(x)
    loop(e, gauss, x)
    return e, gauss


def test_erf_gauss_is_erf_and_exp_of_minus_x_squared():
    x = grid(-11.0, 11.0, extra=TINY + HUGE + [NAN])
    e, gauss = apply_erf_gauss(x)
    np.testing.assert_array_equal(e, apply(erf, x))  # bit-identical (NaN == NaN here)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(gauss, apply(exp, -(x * x)))


def test_tanh_sigmoid_exp_saturate():
    x = grid(9.02, 1e4, n=10_000, extra=HUGE[::2])
    assert np.all(apply(tanh, x) == 1) and np.all(apply(tanh, -x) == -1)
    assert np.all(apply(sigmoid, grid(16.7, 1e4, n=1000, extra=HUGE[::2])) == 1)
    assert np.all(apply(exp, grid(88.72284, 1e4, n=1000, extra=HUGE[::2])) == np.inf)


# (function, x, expected): exact special values; -0.0 checks the sign too
# fmt: off
SPECIAL = [
    (exp, 0.0, 1.0), (exp, -0.0, 1.0), (exp, 1e-45, 1.0), (exp, -1e-30, 1.0), (exp, INF, INF), (exp, -INF, 0.0),
    (exp, NAN, NAN), (exp, 3.4e38, INF), (exp, -3.4e38, 0.0), (exp, 88.8, INF), (exp, -104.0, 0.0),
    (erf, 0.0, 0.0), (erf, -0.0, -0.0), (erf, INF, 1.0), (erf, -INF, -1.0), (erf, NAN, NAN), (erf, 5.0, 1.0),
    (erf, -3.4e38, -1.0), (erf, 1e-45, 1e-45),
    (erfc, 0.0, 1.0), (erfc, -0.0, 1.0), (erfc, INF, 0.0), (erfc, -INF, 2.0), (erfc, NAN, NAN), (erfc, 11.0, 0.0),
    (erfc, -6.0, 2.0), (erfc, 3.4e38, 0.0),
    (tanh, 0.0, 0.0), (tanh, -0.0, -0.0), (tanh, 1e-45, 1e-45), (tanh, -1e-30, -1e-30), (tanh, INF, 1.0),
    (tanh, -INF, -1.0), (tanh, NAN, NAN), (tanh, 3.4e38, 1.0),
    (sigmoid, 0.0, 0.5), (sigmoid, -0.0, 0.5), (sigmoid, INF, 1.0), (sigmoid, -INF, 0.0), (sigmoid, NAN, NAN),
    (sigmoid, 3.4e38, 1.0), (sigmoid, -3.4e38, 0.0),
]
# fmt: on


@pytest.mark.parametrize("fn, x, want", SPECIAL, ids=["%s(%r)" % (s[0].__name__, s[1]) for s in SPECIAL])
def test_special_values(fn, x, want):
    y = apply(fn, [x])[0]
    if math.isnan(want):
        assert math.isnan(y)
    else:
        assert y == F32(want) and math.copysign(1, y) == math.copysign(1, want), (y, want)


def test_bit_casts_and_float64_argument():
    i32_as_f32, f32_as_i32 = m.i32_as_f32, m.f32_as_i32

    @numba.njit
    def casts(i, x):
        return i32_as_f32(np.int32(i)), i32_as_f32(i), f32_as_i32(x), f32_as_i32(np.float64(x))

    assert casts(0x3F800000, F32(1.0)) == (1.0, 1.0, 0x3F800000, 0x3F800000)
    assert casts(-8388608, F32(-2.5)) == (
        -np.inf,
        -np.inf,
        int(np.float32(-2.5).view(np.int32)),
        int(np.float32(-2.5).view(np.int32)),
    )

    @numba.njit
    def from_float64(x):
        return exp(x), sigmoid(x)

    y = from_float64(1.5)  # a float64 argument is rounded to float32; the results are float32
    (sig,) = from_float64.nopython_signatures
    assert sig.return_type == numba.types.UniTuple(numba.float32, 2)
    assert y == (apply(exp, [1.5])[0], apply(sigmoid, [1.5])[0])


# ------------------------------------------------------------------ vectorization (module-global capture)

_S2 = F32(1 / math.sqrt(2))
_INV_SQRT_2PI = F32(1 / math.sqrt(2 * math.pi))
_C_GELU = F32(math.sqrt(2 / math.pi))
_K3 = F32(3 * 0.044715)
_K = F32(0.044715)
_H = F32(0.5)
_1 = F32(1)


@numba.njit(error_model="numpy")
def _silu_f32(gx, g, s):
    for i in range(gx.size):
        x = s[i]
        sg = np.float32(1) / (np.float32(1) + exp(-x))
        gx[i] = g[i] * sg * (np.float32(1) + x * (np.float32(1) - sg))


@numba.njit(error_model="numpy")
def _gelu_f32(gx, g, s):
    for i in range(gx.size):
        x = s[i]
        gx[i] = g[i] * (_H * (_1 + erf(x * _S2)) + x * _INV_SQRT_2PI * exp(-_H * x * x))


@numba.njit(error_model="numpy")
def _gelu_tanh_f32(gx, g, s):
    for i in range(gx.size):
        x = s[i]
        x2 = x * x
        t = tanh(_C_GELU * (x + _K * x2 * x))
        gx[i] = g[i] * (_H * (_1 + t) + _H * x * (_1 - t * t) * _C_GELU * (_1 + _K3 * x2))


@numba.njit(error_model="numpy")
def _softplus_f32(gx, g, s):
    for i in range(gx.size):
        gx[i] = g[i] * sigmoid(s[i])


@numba.njit(error_model="numpy")
def _erfc_loop(gx, g, s):
    for i in range(gx.size):
        gx[i] = g[i] * erfc(s[i])


@numba.njit(error_model="numpy")
def _promoted(gx, g, s):  # negative control: 0.5 and 1 are float64 here
    for i in range(gx.size):
        x = s[i]
        gx[i] = g[i] * 0.5 * x * (1 + erf(x * 0.7071067811865476))


def _bwd_refs(x):
    x = x.astype(np.float64)
    phi = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + _py(math.erf, x / math.sqrt(2)))
    c, k = math.sqrt(2 / math.pi), 0.044715
    t = np.tanh(c * (x + k * x**3))
    sg = _sigmoid64(x)
    return {
        _silu_f32: sg * (1 + x * (1 - sg)),
        _gelu_f32: cdf + x * phi,
        _gelu_tanh_f32: 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x),
        _softplus_f32: sg,
        _erfc_loop: _py(math.erfc, x),
    }


def test_global_capture_loops_compute_and_vectorize():
    x = grid(-12.0, 12.0, n=100_000, extra=[0.0, -0.0])
    g = np.ones_like(x)
    for loop, ref in _bwd_refs(x).items():
        gx = np.empty_like(x)
        loop(gx, g, x)
        err = np.max(np.abs(gx - ref)) / np.max(np.abs(ref))
        assert err < 1e-6, (loop.py_func.__name__, err)
        assert vector_float32_problems(loop) == [], loop.py_func.__name__


@pytest.mark.parametrize("fn", [exp, erf, erfc, tanh, sigmoid], ids=lambda f: f.__name__)
def test_map_loops_vectorize(fn):
    apply(fn, [1.0])
    assert vector_float32_problems(_MAPS[fn]) == []


def test_promotion_is_detected():
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    gx = np.empty_like(x)
    _promoted(gx, np.ones_like(x), x)
    problems = vector_float32_problems(_promoted)
    assert any("double" in p for p in problems) and any("fpext" in p for p in problems), problems


# ------------------------------------------------------------------ optional numba


def test_imports_without_numba():
    code = (
        "import sys\n"
        "sys.modules['numba'] = None\n"  # import numba -> ImportError
        "import accel.cpu_math as cm\n"
        "assert cm.ERF_SPLIT > 0\n"
        "try:\n"
        "    cm.build()\n"
        "except ImportError:\n"
        "    print('ImportError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ImportError"


def test_coefficients_are_what_the_fit_script_prints():
    """accel/cpu_math.py's coefficients are tools/fit_cpu_math.py's output (comments may be rewrapped)."""
    root = Path(__file__).resolve().parents[2]
    printed = subprocess.run([sys.executable, str(root / "tools" / "fit_cpu_math.py")], capture_output=True,
                             text=True, check=True).stdout
    start, end = "# --- generated by tools/fit_cpu_math.py ---", "# --- end of generated coefficients ---"
    block = lambda text: [ln for ln in text[text.index(start):text.index(end)].splitlines()  # noqa: E731
                          if ln.strip() and not ln.startswith("#")]
    source = (root / "accel" / "cpu_math.py").read_text()
    assert block(printed) == block(source)
