"""The one registry of accel's CUDA kernels: per family file (kernels/<family>.cu),
its NVRTC options, the template instantiations (name expressions) the engine may
launch, and per-kernel ptxas budgets. Pure data: no cupy import.

The CuPy backend (accel.fused), the NVRTC compile test and the CPU shim all read
this table, so an instantiation cannot skip any of them.
"""

from __future__ import annotations

import itertools
import pathlib
import re
from dataclasses import dataclass, field

from accel.ops import generated_loops

# C++ spelling of each NumPy dtype name a kernel template may take.
CTYPE = {"float16": "__half", "float32": "float", "float64": "double", "int32": "int", "int64": "long long"}
DTYPE_OF_CTYPE = {c: d for d, c in CTYPE.items()}

FLOATS = ("float32", "float64")
WITH_HALF = ("float16", "float32", "float64")
INDEX = ("int32", "int64")

BASE_OPTIONS = ("-std=c++17",)
STATIC_SMEM_LIMIT = 48 * 1024


@dataclass(frozen=True)
class Kernel:
    name: str
    args: tuple  # one tuple of dtype names per template parameter
    max_regs: int = 64
    max_smem: int = 0  # static shared memory, bytes

    def instantiations(self):
        """[(dtype names...), ...]: the cartesian product of `args`."""
        return list(itertools.product(*self.args))

    def name_expr(self, *dtypes) -> str:
        return "%s<%s>" % (self.name, ", ".join(CTYPE[str(d)] for d in dtypes))


@dataclass(frozen=True)
class Family:
    kernels: tuple
    options: tuple = BASE_OPTIONS
    by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_name", {k.name: k for k in self.kernels})


def _k(names, args, **budget):
    return tuple(Kernel(n, args, **budget) for n in names.split())


# kernels/elementwise.cu is generated from the ops' gradient rules (tools/gen_kernels.py); its kernels
# are the ones accel/ops/generated_loops.py lists
ELEMENTWISE = tuple(generated_loops.KERNELS)

# Budgets: measured maximum over sm_75..sm_120 (NVRTC 13.5) plus headroom;
# a kernel that outgrows its budget should be looked at, not silently bumped.
FAMILIES = {
    "elementwise": Family(_k(" ".join(a + "_bwd" for a in ELEMENTWISE), (WITH_HALF,), max_regs=48)),
    "losses": Family(
        _k("softmax_xent_dense_bwd", (FLOATS,), max_regs=48, max_smem=256)
        + _k("softmax_xent_sparse_bwd", (FLOATS, INDEX), max_regs=48, max_smem=256)
        + _k("softmax_xent_sparse_fwd", (FLOATS, INDEX), max_regs=48, max_smem=256)
        # the mean's one block of 512 threads leaves up to 128 registers a thread (63 measured for double)
        + _k("softmax_xent_sparse_mean_fwd", (FLOATS, INDEX), max_regs=72, max_smem=256)
        + _k("softmax_xent_sparse_mean_bwd", (FLOATS, INDEX), max_regs=48, max_smem=256)
        + _k("sigmoid_xent_bwd", (FLOATS,), max_regs=48)
    ),
    "reductions": Family(
        _k("bias_add_bwd", (FLOATS,), max_regs=48, max_smem=8192)
        + _k("dropout_bwd", (WITH_HALF,), max_regs=40)
        + _k("layer_norm_bwd", (FLOATS,), max_regs=56, max_smem=256)
        + _k("layer_norm_bwd_params", (FLOATS,), max_regs=56, max_smem=8192)
    ),
    # --fmad=false: Keras rounds every multiply and add separately.
    "optimizers": Family(
        _k(
            "sgd_update sgd_momentum_update adam_update rmsprop_update adagrad_update lion_update"
            " adam_multi_update",
            (WITH_HALF,),
            max_regs=64,
        )
        # the device-step kernels (capturable in a CUDA graph): no per-step host scalar;
        # measured maxima 46 (double), 30, 24, 8 registers
        + _k("adam_multi_update_dev", (WITH_HALF,), max_regs=56)
        + _k("sgd_multi_update", (WITH_HALF,), max_regs=40)
        + _k("adam_dev_scalars", (FLOATS,), max_regs=32)
        + _k("step_increment", (("int64",),), max_regs=16),
        options=BASE_OPTIONS + ("--fmad=false",),
    ),
    "accumulate": Family(
        _k("accumulate", (WITH_HALF,), max_regs=40)
        + _k("scatter_add_rows scatter_add_rows_sorted", (WITH_HALF, INDEX), max_regs=72)
    ),
    # __launch_bounds__(256, 3) caps a thread at 85 registers (70-80 measured, no spills; with
    # (256, 4) double spills on sm_90); smem: two 16 x 68 tiles of the accumulator type. gemm_sum_splits: 31-60
    "gemm": Family(_k("gemm_tiled", (FLOATS,), max_regs=88, max_smem=17408)
                   + _k("gemm_sum_splits", (FLOATS,), max_regs=64)),
}


# The kernel entry points of accel.cpu_kernels and accel.fused (module -> function names), each marked
# where it is defined; accel.profiler counts a call of one as one device operation.
ENTRY_POINTS: dict = {}


def entry_point(fn):
    ENTRY_POINTS.setdefault(fn.__module__, []).append(fn.__name__)
    return fn


def family_of(kernel_name: str) -> str:
    for fam, f in FAMILIES.items():
        if kernel_name in f.by_name:
            return fam
    raise KeyError("no kernel named %r in the registry" % (kernel_name,))


def kernel(kernel_name: str) -> Kernel:
    return FAMILIES[family_of(kernel_name)].by_name[kernel_name]


def name_expressions(family: str) -> list:
    return [k.name_expr(*ts) for k in FAMILIES[family].kernels for ts in k.instantiations()]


def all_name_expressions() -> dict:
    """{name expression: (family, Kernel)} over every family."""
    return {
        ne: (fam, k)
        for fam, f in FAMILIES.items()
        for k in f.kernels
        for ne in (k.name_expr(*ts) for ts in k.instantiations())
    }


def options(family: str) -> tuple:
    return FAMILIES[family].options


def kernels_dir() -> pathlib.Path:
    """kernels/ in a source checkout, else the installed copy accel/_kernels."""
    here = pathlib.Path(__file__).resolve().parent
    for cand in (here.parent / "kernels", here / "_kernels"):
        if (cand / "common.cuh").is_file():
            return cand
    raise FileNotFoundError(
        "accel kernels not found: looked for %s and %s" % (here.parent / "kernels", here / "_kernels")
    )


_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$', re.M)


def source(family: str) -> str:
    """kernels/<family>.cu with its local #include "..." files inlined, so that
    NVRTC (and CuPy's source-keyed cache) sees one self-contained text."""
    if family not in FAMILIES:
        raise KeyError("unknown kernel family %r (known: %s)" % (family, ", ".join(FAMILIES)))
    d = kernels_dir()
    seen = set()

    def expand(path):
        def repl(m):
            inc = d / m.group(1)
            if inc in seen:
                return ""
            seen.add(inc)
            return expand(inc)

        return _INCLUDE.sub(repl, path.read_text())

    return expand(d / (family + ".cu"))


def source_files() -> list:
    """Every file that source() may read (for build caches keyed on mtime)."""
    d = kernels_dir()
    return sorted(d.glob("*.cu")) + sorted(d.glob("*.cuh"))
