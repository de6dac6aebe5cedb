"""The GPU path without a GPU: every cupy.cuda.nccl call accel.backend makes exists in CuPy's NCCL module.

CuPy's NCCL binding (cupy_backends.cuda.libs.nccl) only imports when libnccl.so.2 loads. Instead of the
207 MB nvidia-nccl wheel, the test builds a stub libnccl.so.2 exporting the symbols the binding links
(none is ever called), preloads it in a subprocess and reads the real module's names there: module
functions and constants used as `nccl_mod.<name>`, and NcclCommunicator methods used as `comm.<name>`.
Argument counts are compared only where the binding exposes a signature (CuPy 14.2's Cython methods do
not; their argument lists were checked by hand against nccl.pyx: allReduce(sendbuf, recvbuf, count,
datatype, op, stream), bcast(buff, count, datatype, root, stream), initAll(devices)).
"""

import ast
import inspect
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

import accel

BACKEND = pathlib.Path(accel.__file__).parent / "backend.py"


def nccl_calls():
    """{("module" | "comm", name): positional argument count (None for an attribute)} in backend's nccl code."""
    uses = {}
    for fn in ast.parse(BACKEND.read_text()).body:
        if not (isinstance(fn, ast.FunctionDef) and "nccl" in fn.name):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                base = {"nccl_mod": "module", "comm": "comm"}.get(node.value.id)
                if base:
                    uses.setdefault((base, node.attr), None)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                f = node.func
                if isinstance(f.value, ast.Name) and f.value.id in ("nccl_mod", "comm"):
                    uses[("module" if f.value.id == "nccl_mod" else "comm", f.attr)] = len(node.args)
                if (isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Name)
                        and f.value.func.id == "nccl"):  # nccl().NcclCommunicator(...), nccl().get_unique_id()
                    uses[("module", f.attr)] = len(node.args)
                if (isinstance(f.value, ast.Attribute) and f.value.attr == "NcclCommunicator"):
                    uses[("class", f.attr)] = len(node.args)
    return uses


def test_the_scan_sees_the_calls():
    uses = nccl_calls()
    assert uses[("comm", "allReduce")] == 6 and uses[("module", "groupStart")] == 0
    assert ("module", "NCCL_FLOAT32") in uses and ("class", "initAll") in uses


_PROBE = r"""
import ctypes, json, sys, inspect
ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
from cupy_backends.cuda.libs import nccl
out = {}
for kind, name in json.loads(sys.argv[2]):
    owner = nccl if kind == "module" else nccl.NcclCommunicator
    obj = getattr(owner, name, None)
    if obj is None:
        out[kind + ":" + name] = "missing"
        continue
    try:
        params = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"]
        out[kind + ":" + name] = [len(params), any(p.kind is p.VAR_POSITIONAL for p in params)]
    except (TypeError, ValueError):
        out[kind + ":" + name] = "no signature"
print(json.dumps(out))
"""


def test_every_nccl_call_exists_in_cupy_with_that_many_arguments(tmp_path):
    pytest.importorskip("cupy", reason="cupy is needed to check the NCCL namespace (pip install cupy-cuda13x)")
    if shutil.which("gcc") is None:
        pytest.skip("gcc builds the stub libnccl")
    import cupy_backends  # noqa: F401  (locates the binding)

    so = next(pathlib.Path(cupy_backends.__file__).parent.glob("cuda/libs/nccl*.so"), None)
    assert so is not None
    nm = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True, check=True)
    symbols = sorted({line.split()[-1] for line in nm.stdout.splitlines() if "nccl" in line.split()[-1]})
    assert "ncclAllReduce" in symbols
    src = tmp_path / "stub.c"
    src.write_text("".join("int %s(void) { return 1; }\n" % s for s in symbols))
    lib = tmp_path / "libnccl.so.2"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libnccl.so.2", "-o", str(lib), str(src)], check=True)
    uses = nccl_calls()
    names = [["module" if k == "module" else "class", n] for k, n in uses] + [["class", n] for k, n in uses
                                                                              if k == "comm"]
    p = subprocess.run([sys.executable, "-c", _PROBE, str(lib), json.dumps(names)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    found = json.loads(p.stdout)
    problems = []
    for (kind, name), nargs in uses.items():
        key = ("module:" if kind == "module" else "class:") + name
        got = found.get(key)
        if got == "missing":
            problems.append("%s.%s does not exist" % ("nccl" if kind == "module" else "NcclCommunicator", name))
        elif nargs is not None and isinstance(got, list):
            n, varargs = got
            extra = 1 if kind == "class" and name == "initAll" else 0
            if not varargs and nargs > n + extra:
                problems.append("%s(%d args) takes %d" % (name, nargs, n))
    assert problems == [], problems
    assert inspect.isfunction(nccl_calls)
