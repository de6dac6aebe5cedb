"""NVRTC through ctypes, from the nvidia-cuda-nvrtc wheel: no GPU, driver or cupy.

compile(src, options, name_expressions) -> Result(cubin, log, lowered).
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import site
import sys
from dataclasses import dataclass


def _site_dirs():
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
    return [d for d in dirs if d and os.path.isdir(d)]


def find_libnvrtc():
    for sp in _site_dirs():
        for pat in ("nvidia/cu1*/lib/libnvrtc.so.*", "nvidia/cuda_nvrtc/lib/libnvrtc.so.*"):
            hits = [h for h in sorted(glob.glob(os.path.join(sp, pat))) if "builtins" not in h]
            if hits:
                return hits[0]
    return None


def find_cuda_include():
    """The directory holding cuda_fp16.h, from the nvidia-cuda-runtime wheel."""
    for sp in _site_dirs():
        for sub in ("nvidia/cu13/include", "nvidia/cuda_runtime/include"):
            if os.path.isfile(os.path.join(sp, sub, "cuda_fp16.h")):
                return os.path.join(sp, sub)
    return None


class CompileError(RuntimeError):
    pass


@dataclass
class Result:
    cubin: bytes
    log: str
    lowered: dict  # name expression -> mangled symbol


class NVRTC:
    def __init__(self, path=None):
        path = path or find_libnvrtc()
        if path is None:
            raise OSError("libnvrtc not found: pip install 'nvidia-cuda-nvrtc==13.5.*'")
        self.path = path
        self.lib = ctypes.CDLL(path)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def version(self):
        a, b = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(a), ctypes.byref(b)))
        return a.value, b.value

    def _log(self, prog):
        n = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value)
        self.lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def _check(self, rc, prog=None):
        if rc != 0:
            msg = self.lib.nvrtcGetErrorString(rc).decode()
            raise CompileError(msg + ("\n" + self._log(prog) if prog is not None else ""))

    def compile(self, src, options=(), name_expressions=(), filename="kernel.cu"):
        lib, prog = self.lib, ctypes.c_void_p()
        self._check(
            lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), filename.encode(), 0, None, None)
        )
        try:
            for ne in name_expressions:
                self._check(lib.nvrtcAddNameExpression(prog, ne.encode()), prog)
            opts = [o.encode() for o in options]
            self._check(lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)), prog)
            n = ctypes.c_size_t()
            self._check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)), prog)
            cubin = ctypes.create_string_buffer(n.value)
            self._check(lib.nvrtcGetCUBIN(prog, cubin), prog)
            lowered = {}
            for ne in name_expressions:
                p = ctypes.c_char_p()
                self._check(lib.nvrtcGetLoweredName(prog, ne.encode(), ctypes.byref(p)), prog)
                lowered[ne] = p.value.decode()
            return Result(cubin.raw, self._log(prog), lowered)
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


_ENTRY = re.compile(r"Compiling entry function '(\S+)'")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log):
    """ptxas -v report -> {mangled: {regs, smem, stack, spill_stores, spill_loads}}."""
    out, cur = {}, None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = out.setdefault(
                m.group(1), {"regs": 0, "smem": 0, "stack": 0, "spill_stores": 0, "spill_loads": 0}
            )
            continue
        if cur is None:
            continue
        m = _STACK.search(line)
        if m:
            cur.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = _USED.search(line)
        if m:
            cur["regs"] = int(m.group(1))
            s = _SMEM.search(line)
            cur["smem"] = int(s.group(1)) if s else 0
    return out
