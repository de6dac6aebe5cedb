"""Build kernels/*.cu for the CPU (kernels/cpu_shim, g++) and launch them via ctypes.

    lib = load(sanitize=None, defines=())     # builds build/cpu_shim/<variant>/libkernels_cpu.so if stale
    lib.launch("relu_bwd<float>", grid, block, gx, g, x, n)   # arrays and Python scalars

The entry table is generated from accel/kernel_registry.py, so every registry
instantiation is runnable here. Variants: sanitize="address"|"thread", and
-D defines for the planted mutations (ACCEL_BUG_MISSING_SYNC, ACCEL_BUG_OOB).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from accel import kernel_registry as reg  # noqa: E402

SHIM = ROOT / "kernels" / "cpu_shim"
BUILD = ROOT / "build" / "cpu_shim"

_FLAGS = {
    None: ["-O2"],
    "address": ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"],
    "thread": ["-O1", "-g", "-fsanitize=thread"],
}


def runtime_library(sanitize):
    """Path of the sanitizer runtime to LD_PRELOAD into an uninstrumented Python."""
    name = {"address": "libasan.so", "thread": "libtsan.so"}[sanitize]
    return subprocess.check_output(["g++", "-print-file-name=" + name], text=True).strip()


def _variant(sanitize, defines):
    tag = sanitize or "plain"
    if defines:
        tag += "-" + hashlib.sha1(" ".join(sorted(defines)).encode()).hexdigest()[:8]
    return tag


def build(sanitize=None, defines=()):
    """Path of an up-to-date libkernels_cpu.so for this variant (rebuilt when any
    kernel, shim or registry file is newer)."""
    if sanitize not in _FLAGS:
        raise ValueError("sanitize must be None, 'address' or 'thread', got %r" % (sanitize,))
    out_dir = BUILD / _variant(sanitize, defines)
    lib = out_dir / "libkernels_cpu.so"
    inc = out_dir / "accel_entries.inc"
    entries = "".join("ENTRY(%s)\n" % ne for ne in reg.all_name_expressions())
    deps = reg.source_files() + [
        SHIM / "cuda_cpu_shim.h",
        SHIM / "kernels_cpu.cpp",
        SHIM / "include" / "cuda_fp16.h",
        pathlib.Path(reg.__file__),
    ]
    if (
        lib.exists()
        and inc.exists()
        and inc.read_text() == entries
        and lib.stat().st_mtime >= max(p.stat().st_mtime for p in deps)
    ):
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    inc.write_text(entries)
    tmp = lib.with_name("libkernels_cpu.so.%d.tmp" % os.getpid())
    cmd = [
        "g++",
        "-std=c++20",
        "-fPIC",
        "-shared",
        "-pthread",
        *_FLAGS[sanitize],
        *("-D" + d for d in defines),
        "-I",
        str(out_dir),
        "-I",
        str(SHIM / "include"),
        "-I",
        str(SHIM),
        "-I",
        str(ROOT / "kernels"),
        str(SHIM / "kernels_cpu.cpp"),
        "-o",
        str(tmp),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("CPU shim build failed:\n%s\n%s" % (" ".join(cmd), proc.stderr[-8000:]))
    os.replace(tmp, lib)
    return lib


_PTR = {
    "F": np.float32,
    "D": np.float64,
    "H": np.float16,
    "I": np.int32,
    "Q": np.int64,
    "B": np.uint8,
    "P": np.uint64,
}
_SCALAR = {"f": ctypes.c_float, "d": ctypes.c_double, "i": ctypes.c_int, "q": ctypes.c_longlong}


class ShimLib:
    def __init__(self, path):
        self.path = str(path)
        self.lib = ctypes.CDLL(self.path)
        L = self.lib
        L.accel_shim_name.restype = ctypes.c_char_p
        L.accel_shim_signature.restype = ctypes.c_char_p
        L.accel_shim_launch.argtypes = [
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
        ]
        self.index = {}
        self.signature = {}
        for i in range(L.accel_shim_count()):
            name = L.accel_shim_name(i).decode()
            self.index[name] = i
            self.signature[name] = L.accel_shim_signature(i).decode()

    def launch(self, name, grid, block, *args, threaded=False):
        """Launch instantiation `name` with grid (int, (x, y) or (x, y, z)) and block (int or (x, y)) on the CPU.

        Arrays must be C-contiguous with the dtype the parameter expects; None
        is a null pointer; Python numbers are converted to the scalar type."""
        sig = self.signature[name]
        if len(args) != len(sig):
            raise TypeError("%s takes %d arguments (%s), got %d" % (name, len(sig), sig, len(args)))
        keep, ptrs = [], []
        for k, (code, a) in enumerate(zip(sig, args, strict=False)):
            if code in _PTR:
                if a is None:
                    val = ctypes.c_void_p(0)
                else:
                    if not (isinstance(a, np.ndarray) and a.dtype == _PTR[code] and a.flags.c_contiguous):
                        raise TypeError(
                            "%s argument %d: expected a C-contiguous %s array, got %r"
                            % (name, k, np.dtype(_PTR[code]), getattr(a, "dtype", type(a)))
                        )
                    val = ctypes.c_void_p(a.ctypes.data)
            elif code in _SCALAR:
                val = _SCALAR[code](a)
            else:
                raise TypeError("%s: unsupported parameter type code %r" % (name, code))
            keep.append(val)
            ptrs.append(ctypes.cast(ctypes.pointer(val), ctypes.c_void_p))
        argv = (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs)
        gx, gy, gz = (grid + (1,) * (3 - len(grid))) if isinstance(grid, tuple) else (grid, 1, 1)
        bx, by = block if isinstance(block, tuple) else (block, 1)
        self.lib.accel_shim_launch(self.index[name], gx, gy, gz, bx, by, int(threaded), argv)


_loaded = {}


def load(sanitize=None, defines=()):
    key = (sanitize, tuple(sorted(defines)))
    if key not in _loaded:
        _loaded[key] = ShimLib(build(sanitize, defines))
    return _loaded[key]
