"""The GPU side of accel.function: fused groups compiled with NVRTC through CuPy and launched, and a plan's
runs of kernel-only steps captured into CUDA graphs and replayed.

Design (/work/shared/reference/CAPTURE.md has the facts): CuPy 14 refuses cuBLAS and cuSOLVER calls while a
stream captures, and a device-to-host read ends a capture. So a plan is cut into segments at the steps that
call those libraries (GEMMs, convolutions, linear algebra: found by reading the step's code, see
`breaks_capture`), at host steps (optimizer updates with host scalars, prints, random draws), at guards and
at Variables passed as arguments (their arrays change between calls). Each segment of two or more steps is
captured once into a graph and replayed; the steps between segments run as they do without graphs. A
segment's memory comes from a pool of its own (`cupy.cuda.MemoryPool`) that nothing else allocates from, so
the addresses baked into the graph stay valid; its inputs are copied into static buffers before each launch,
its outputs that leave the plan are copied out, and a Variable whose array was replaced since the capture
makes it capture again. A segment whose capture fails runs without a graph from then on (one warning).

Two layouts, chosen by settings.set_cuda_graphs (ACCEL_CUDA_GRAPHS): True keeps cuBLAS and cuts the plan at
its GEMMs, so a step is a few graphs with the GEMMs and the optimizer's host step between them; "whole_step"
puts the GEMMs that accel's own kernel serves (kernels/gemm.cu: 2-D float operands, transposed views too)
and optimizer updates that read their step count on the device (`device_run`) inside the graphs, so an MLP
training step is one graph launch. The trade: the own GEMM (plain tiling, no tensor cores) is expected to be
slower than cuBLAS on large matrices (not measured: bench/bench_gemm.py needs a GPU) and sums in another
order, but a step of small matrices is bound by launches, not by GEMM speed. cuBLAS through
another binding that allows capture (nvmath-python) would add a dependency whose calls could not be
checked without a GPU.

Nothing in this module has run on a GPU: no GPU was available where it was written. What is checked without
one: the fused groups' CUDA compiles with NVRTC for sm_75..sm_120 with GROUP_OPTIONS and runs through the
kernels' CPU shim like the numba loop (tests/kernels/test_fused_groups_nvrtc.py), the segmentation is tested
on CPU plans, and every CuPy name used here exists in CuPy (tests/test_cupy_namespace.py). The gpu-marked
tests (tests/test_function_gpu.py) run capture and replay against eager where a GPU is lent. Graphs are off
unless ACCEL_CUDA_GRAPHS=1 or settings.set_cuda_graphs(True), until those tests have passed on a GPU.
"""

from __future__ import annotations

import dis
import functools
import threading
import types
import warnings

import numpy as np

from accel import backend, settings
from accel import kernel_registry as reg

BLOCK = 256
GROUP_OPTIONS = reg.BASE_OPTIONS + ("--fmad=false",)  # no contraction: a group computes as NumPy's separate ops
_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

_modules = {}  # (source, device id) -> cupy.RawModule
_lock = threading.Lock()


def group_source(g):
    """A fused group's CUDA source with common.cuh inlined (what NVRTC compiles), and its kernel name."""
    src, name = g.cuda_source()
    common = (reg.kernels_dir() / "common.cuh").read_text()
    return src.replace('#include "common.cuh"', common), name


def launch_group(g, outs, arrays):
    """Runs fused group g on CuPy arrays: outs (one per loop output, contiguous, written) from arrays."""
    cp = backend.cupy()
    src, name = group_source(g)
    ne = "%s<%s>" % (name, _CTYPE[np.dtype(g.dtype)])
    key = (src, cp.cuda.Device().id)
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            mod = _modules[key] = cp.RawModule(code=src, options=GROUP_OPTIONS, name_expressions=[ne])
    n = int(np.prod(g.shape, dtype=np.int64))
    if n == 0:
        return
    grid = (max(1, min((n + BLOCK - 1) // BLOCK, 65535)),)
    args = tuple(outs) + tuple(cp.ascontiguousarray(a) for a in arrays) + (np.int64(g.cols), np.int64(n))
    mod.get_function(ne)(grid, (BLOCK,), args)


# --- what a CUDA graph cannot hold --------------------------------------------------------------

# names whose call in a step's code means a library call CuPy refuses while capturing (cuBLAS, cuSOLVER,
# cuRAND's host API) or a device-to-host read (data-dependent shapes, .get(), .item())
_BREAKERS = frozenset({
    "matmul", "dot", "vdot", "inner", "tensordot", "einsum", "linalg", "kron", "nonzero", "argwhere",
    "flatnonzero", "unique", "compress", "item", "get", "tolist", "asnumpy", "sort", "argsort", "lexsort",
    "partition", "argpartition", "random", "synchronize",
})


_verdicts = {}  # code object -> frozenset of the breaking names it reaches


def breaks_capture(fn, allowed=frozenset()):
    """True when fn's code calls, as an attribute (`xp.matmul`, `a.get()`), a name that cannot be captured
    (other than those in `allowed`), directly or through the accel functions it reaches by global name or
    closure: a conservative reading, since naming the attribute is enough."""
    return bool(breakers(fn) - allowed)


def breakers(fn, _seen=None):
    """The names in _BREAKERS that fn's code reaches (see breaks_capture)."""
    seen = set() if _seen is None else _seen
    if isinstance(fn, functools.partial):
        return breakers(fn.func, seen)
    code = getattr(fn, "__code__", None)
    if code is None:
        call = type(fn).__dict__.get("__call__")  # a callable object: its method's code
        return breakers(call, seen) if isinstance(call, types.FunctionType) else frozenset()
    if code in seen:
        return frozenset()
    seen.add(code)
    cached = _verdicts.get(code)
    if cached is not None:
        return cached
    attrs, globals_ = set(), set()
    stack = [code]
    while stack:
        c = stack.pop()
        for ins in dis.get_instructions(c):
            if ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                attrs.add(ins.argval)
            elif ins.opname == "LOAD_GLOBAL":
                globals_.add(ins.argval)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    reached = [getattr(fn, "__globals__", {}).get(nm) for nm in globals_]
    reached += [cell.cell_contents for cell in (getattr(fn, "__closure__", None) or ()) if _filled(cell)]
    found = set(attrs & _BREAKERS)
    for obj in reached:
        if isinstance(obj, (types.FunctionType, functools.partial)) and \
                getattr(obj, "__module__", "").startswith("accel"):
            found |= breakers(obj, seen)
    verdict = _verdicts[code] = frozenset(found)
    return verdict


def _filled(cell):
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def capturable(node, own_gemm=False):
    """Whether a plan node can sit inside a CUDA graph. own_gemm: the node's matmuls run on accel's own GEMM
    kernel (the plan checked their operands: see accel.function._own_gemm_steps), so matmul does not break it.
    A host step (an optimizer update) can where it offers a device_run that reads nothing on the host."""
    kind = node[0]
    allowed = _OWN_GEMM if own_gemm else frozenset()
    if kind == "kernel":
        return not any(r[0] == "arg_var" for r in node[1].inputs)
    if kind == "assign":
        return node[1][0] == "var" and node[3][0] != "arg_var"
    if kind == "op":
        _, op, refs, _, _ = node
        return op.name != "to_device" and not any(r[0] == "arg_var" for r in refs) and \
            not breaks_capture(op.forward, allowed)
    if kind == "acall":
        _, fn, refs, _, _, _, op = node
        return not _any_arg_var(refs) and not breaks_capture(fn, allowed)
    if kind == "call":  # in `whole_step` only where its update can run from device state (device_run)
        return own_gemm and not any(r[0] == "arg_var" for r in node[3])
    return False


_OWN_GEMM = frozenset({"matmul"})


def _any_arg_var(refs):
    return any(r[0] == "arg_var" or (r[0] == "seq" and _any_arg_var(r[2])) for r in refs)


def segments(nodes, used_slots, produced, after_uses, min_steps=2, whole_step=frozenset()):
    """[(start, stop, inputs, outputs)]: maximal runs nodes[start:stop] of capturable nodes with at least
    min_steps steps; inputs are the slots they read that are made before them, outputs the slots they make
    that a later node reads or the plan returns (`after_uses(stop)` gives those). whole_step: the indices of
    the nodes that may go in with accel's own GEMM or a device-step update (capturable's own_gemm)."""
    out = []
    i = 0

    def ok(k):
        return capturable(nodes[k], k in whole_step)

    while i < len(nodes):
        if not ok(i):
            i += 1
            continue
        j = i
        while j < len(nodes) and ok(j):
            j += 1
        if j - i >= min_steps:
            made, inputs = set(), []
            for n in nodes[i:j]:
                for sl in used_slots(n):
                    if sl not in made and sl not in inputs:
                        inputs.append(sl)
                made.update(produced(n))
            later = after_uses(j)
            out.append((i, j, inputs, sorted(s for s in made if s in later)))
        i = j
    return out


def graphs_enabled():
    return settings.cuda_graphs()


class GraphSegment:
    """One captured run of plan steps: warms up eagerly, captures on its second call, then replays."""

    def __init__(self, run, variables, copy_out, label, capture=True, keys=()):
        self.capture = capture  # False for a host plan: the segment runs as it is (the wiring is the same)
        self.keys = list(keys)  # callables naming what else a capture bakes in (an optimizer's device_key)
        self.run = run  # run(inputs, ()) -> outputs: the segment's steps as an emitted plan
        self.variables = variables
        self.copy_out = copy_out  # per output: whether it leaves the plan (returned, kept by a host step)
        self.label = label
        self.calls = 0
        self.graph = None
        self.failed = None
        self.launches = 0

    def __call__(self, *arrays):
        if self.failed is not None or self.calls == 0 or not self.capture:
            self.calls += 1
            return self.run(arrays, ())
        cp = backend.cupy()
        if self.graph is None or self._moved():
            try:
                self._capture(cp, arrays)
            except Exception as e:  # noqa: BLE001  (any capture failure leaves the segment eager)
                self.failed = "%s: %s" % (type(e).__name__, e)
                self.graph = None
                warnings.warn("accel.function: CUDA graph capture of %s failed (%s); it runs without a graph"
                              % (self.label, self.failed), RuntimeWarning, stacklevel=3)
                return self.run(arrays, ())
        for buf, a in zip(self.inputs, arrays):
            cp.copyto(buf, a)
        self.graph.launch(stream=cp.cuda.get_current_stream())
        self.launches += 1
        return tuple(o.copy() if c else o for o, c in zip(self.outputs, self.copy_out))

    def _moved(self):
        return any(v._data.data.ptr != p for v, p in self.pointers) or [k() for k in self.keys] != self.key_values

    def _capture(self, cp, arrays):
        self.graph = None
        self.pool = cp.cuda.MemoryPool()  # the graph's own memory: its addresses stay with it
        stream = cp.cuda.Stream(non_blocking=True)
        with cp.cuda.using_allocator(self.pool.malloc):
            self.inputs = [cp.empty(a.shape, a.dtype) for a in arrays]
            for buf, a in zip(self.inputs, arrays):
                cp.copyto(buf, a)
            stream.wait_event(cp.cuda.get_current_stream().record())
            with stream:
                stream.begin_capture()
                try:
                    outs = self.run(self.inputs, ())
                finally:
                    graph = stream.end_capture()
        cp.cuda.get_current_stream().wait_event(stream.record())
        self.outputs = list(outs)
        self.pointers = [(v, v._data.data.ptr) for v in self.variables]
        self.key_values = [k() for k in self.keys]
        self.graph = graph
