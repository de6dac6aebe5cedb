"""The GPU path without a GPU: every array function and keyword the engine uses exists in CuPy.

`import cupy` works with no device. Two checks: a static scan of every `xp.<name>(...)` in
accel/, and a run of the op table with a recording proxy in place of NumPy, whose log of
names and keywords is resolved against the real cupy module.
"""

import ast
import inspect
import pathlib

import numpy as np
import pytest

import accel as tf
from accel.ops import core

cupy = pytest.importorskip("cupy", reason="cupy is needed to check the GPU namespace (pip install cupy-cuda13x)")

ROOT = pathlib.Path(tf.__file__).parent
XP_NAMES = {"xp", "cp"}
# CuPy ufuncs take only these keywords (plus positional out)
UFUNC_KW = {"out", "dtype", "casting"}


def _resolve(path):
    obj = cupy
    for part in path.split("."):
        if not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


def _kw_ok(fn, kws):
    if isinstance(fn, cupy.ufunc):
        return set(kws) <= UFUNC_KW
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # Cython builtin without a signature: names were checked, keywords cannot be
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return True
    return set(kws) <= set(params)


def _static_uses():
    uses = {}
    for path in ROOT.rglob("*.py"):
        if path.name in ("backend.py", "cpu_kernels.py"):
            continue  # backend dispatches by device itself; the CPU twins never see CuPy arrays
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                chain = []
                f = node.func
                while isinstance(f, ast.Attribute):
                    chain.append(f.attr)
                    f = f.value
                base = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
                if base in XP_NAMES or (isinstance(f, ast.Attribute) and f.attr == "xp"):
                    name = ".".join(reversed(chain))
                    kws = {k.arg for k in node.keywords if k.arg}
                    uses.setdefault(name, set()).update(kws)
                    uses[name].add("@" + str(path.relative_to(ROOT)))
    return uses


def test_static_scan_finds_engine_calls():
    uses = _static_uses()
    assert {"exp", "matmul", "where", "add.at"} <= set(uses), sorted(uses)


def test_every_xp_call_in_the_source_exists_in_cupy():
    problems = []
    for name, kws in sorted(_static_uses().items()):
        where = sorted(k for k in kws if k.startswith("@"))
        kws = {k for k in kws if not k.startswith("@")}
        fn = _resolve(name)
        if fn is None:
            problems.append("cupy.%s is missing (used in %s)" % (name, ", ".join(where)))
        elif not _kw_ok(fn, kws):
            problems.append("cupy.%s does not take keywords %s (used in %s)" % (name, sorted(kws), ", ".join(where)))
    assert not problems, "\n".join(problems)


class Recording:
    """Wraps a module; logs every attribute path reached and the keyword names of calls."""

    def __init__(self, target, path, log):
        object.__setattr__(self, "_t", target)
        object.__setattr__(self, "_p", path)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        val = getattr(self._t, name)
        path = self._p + "." + name if self._p else name
        if isinstance(val, (type, np.dtype)) or not callable(val) and not hasattr(val, "__dict__"):
            self._log.setdefault(path, set())
            return val
        return Recording(val, path, self._log)

    def __call__(self, *args, **kwargs):
        self._log.setdefault(self._p, set()).update(kwargs)
        return self._t(*args, **kwargs)


def test_op_table_run_uses_only_cupy_names(monkeypatch):
    from tests.test_ops import CASES
    from tests.gradcheck import analytic_vjp

    log = {}
    monkeypatch.setattr(core, "_NUMPY", Recording(np, "", log))
    monkeypatch.setattr(core, "_ARRAY_NS", {})
    rng = np.random.default_rng(0)
    for case in CASES:
        arrays = case.arrays(rng)
        out = case.fn(*[tf.constant(a) for a in arrays])
        analytic_vjp(case.fn, arrays, np.ones(out.shape))
    assert "exp" in log and "matmul" in log, sorted(log)
    problems = []
    for name, kws in sorted(log.items()):
        fn = _resolve(name)
        if fn is None:
            problems.append("cupy.%s is missing" % name)
        elif kws and not _kw_ok(fn, kws):
            problems.append("cupy.%s does not take keywords %s" % (name, sorted(kws)))
    assert not problems, "\n".join(problems)


def test_negative_control_detects_a_numpy_only_function(monkeypatch):
    log = {"errstate": set(), "sum": {"where"}}
    missing = [n for n in log if _resolve(n) is None]
    bad_kw = [n for n, k in log.items() if _resolve(n) and not _kw_ok(_resolve(n), k)]
    bad = missing + bad_kw
    assert bad == ["errstate", "sum"]


def test_scatter_adds_use_add_at_not_fancy_inplace():
    files = list((ROOT / "ops").glob("*.py")) + [ROOT / "tape.py"]
    src = "\n".join(p.read_text() for p in files)
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
            seg = ast.unparse(node)
            # `a[idx] += g` silently drops repeats (and is undefined on CuPy); rows indexed by unique
            # labels (sparse softmax-xent, one per row) are the only allowed case
            assert "labels" in seg or "arange" in seg, "fancy in-place update found: " + seg
