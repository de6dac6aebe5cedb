"""The fused path of a gradient rule: one kernel instead of several array passes.

An op's `fused` hook runs in place of its rules when nothing records the backward pass
(an outer tape needs the differentiable rules) and the inputs qualify: CuPy arrays go to
the CUDA kernels (accel.fused), large NumPy arrays to the CPU twins (accel.cpu_kernels).
The hook returns one cotangent per input, or None to let the generic rules run.
"""

from __future__ import annotations

import numpy as np

from accel import backend, profiler
from accel.recorder import state as _rec
from accel.ops import generated_loops

# Below this many elements the generic NumPy rule wins on the CPU: a numba call costs
# about 1-2 µs, more than a small array pass (bench/bench_kernels.py).
CPU_MIN_SIZE = 1 << 15


_twins = None  # accel.cpu_kernels once numba is known to load, else False


def _cpu_twins(mode, size=0):
    """accel.cpu_kernels when its loops can run now, else False. Mode "always" loads numba here; "auto"
    uses the NumPy rules until a background thread has loaded it (cpu_kernels.warmed), except for arrays
    of CPU_MIN_SIZE elements or more inside an accel.function trace, which waits for the load: its plan
    keeps the path taken for every replay."""
    global _twins
    if _twins is None:
        from accel import cpu_kernels  # noqa: PLC0415

        if mode == "auto" and not cpu_kernels.warmed():
            trace = _rec.trace
            if size < CPU_MIN_SIZE or trace is None or trace.paused or not cpu_kernels.wait_warmed():
                return False
        _twins = cpu_kernels if cpu_kernels.available() else False
    return _twins


def kernels_for(*arrays, any_size=False):
    """The one choice between an op's (or an optimizer's) two paths: the kernel module of the fused path
    for these arrays, or None for the generic one. Host arrays get accel.cpu_kernels when numba is loaded
    and they are C-contiguous float32/float64 of one shape and dtype (fused mode "auto": from
    CPU_MIN_SIZE elements, or any size with any_size=True; "always": any size); CuPy arrays get
    accel.fused when fused.qualifies them."""
    if isinstance(arrays[0], np.ndarray):
        return _twins if _cpu_ok(*arrays, any_size=any_size) else None
    from accel import fused  # noqa: PLC0415

    return fused if fused.qualifies(*arrays) else None


def _cpu_ok(*arrays, any_size=False):
    """Cheapest checks first: this runs on every hooked op of every backward pass."""
    mode = backend.fused_mode()
    a0 = arrays[0]
    if mode == "never" or (mode == "auto" and a0.size < CPU_MIN_SIZE and not any_size) or \
            not _cpu_twins(mode, a0.size):
        return False
    return all(isinstance(a, np.ndarray) and a.shape == a0.shape and a.dtype == a0.dtype and a.flags.c_contiguous
               and a.dtype in (np.float32, np.float64) for a in arrays)


class Generated:
    """`fused=` of an elementwise op whose backward kernel is generated from the op's own rule
    (accel.ops.codegen; tools/gen_kernels.py writes the numba loops and kernels/elementwise.cu).
    variants: {kernel name: the static attributes it fixes} for ops whose rule branches on an
    attribute (gelu's `approximate`); by default one kernel named after the op. scalars: runtime
    attributes passed to the kernel (leaky_relu's alpha)."""

    generated = True

    def __init__(self, variants=None, scalars=()):
        self.variants = variants
        self.scalars = tuple(scalars)

    def bind(self, op):
        if self.variants is None:
            self.variants = {op.name: {}}

    def kernel_for(self, attrs):
        for name, static in self.variants.items():
            if all(attrs.get(k) == v for k, v in static.items()):
                return name
        return None

    def __call__(self, xp, g, out, x, **attrs):
        kernel = self.kernel_for(attrs)
        if kernel is None:
            return None
        (which,) = generated_loops.KERNELS[kernel]["saved"]
        s = x if which == "x" else out
        if s is None:
            return None
        k = kernels_for(g, s)
        if k is None:
            return None
        return (k.activation_bwd(kernel, g, s, attrs[self.scalars[0]] if self.scalars else None),)


def sparse_softmax_xent(xp, g, out, labels, logits):
    """d logits of sparse softmax cross-entropy, fused with the row softmax: one pass per row."""
    if logits.ndim != 2:
        return None
    if isinstance(logits, np.ndarray):
        if not (_cpu_ok(logits, any_size=True) and g.dtype == logits.dtype and labels.flags.c_contiguous):
            return None
        return (None, _twins.softmax_xent_bwd(logits, labels, g, sparse=True))
    from accel import fused  # noqa: PLC0415

    if not fused.qualifies(logits) or not labels.flags.c_contiguous:
        return None
    return (None, fused.softmax_xent_bwd(logits, labels, g, sparse=True))


def sparse_softmax_xent_fwd(labels, logits):
    """The per-example loss of sparse softmax cross-entropy in one pass per row, or None for the
    generic forward (log_softmax, then pick). A forward value: no tape is involved."""
    if logits.ndim != 2:
        return None
    if isinstance(logits, np.ndarray):
        if not (_cpu_ok(logits, any_size=True) and labels.flags.c_contiguous):
            return None
        return _twins.softmax_xent_sparse_fwd(logits, labels)
    from accel import fused  # noqa: PLC0415

    if not fused.qualifies(logits, dtypes=fused._FLOATS) or not labels.flags.c_contiguous:
        return None
    return fused.softmax_xent_sparse_fwd(logits, labels)


def _sparse_mean_qualifies(labels, logits):
    """Whether the one-kernel mean of sparse softmax cross-entropy may run: exactly where
    sparse_softmax_xent_fwd and sparse_softmax_xent would take their kernels (so a plan using it agrees
    with eager, which takes them), with at least one row and one class."""
    if logits.ndim != 2 or 0 in logits.shape or not labels.flags.c_contiguous:
        return False
    if isinstance(logits, np.ndarray):
        return bool(_cpu_ok(logits, any_size=True))
    from accel import fused  # noqa: PLC0415

    return fused.qualifies(logits, dtypes=fused._FLOATS)


def sparse_softmax_xent_mean_fwd(labels, logits):
    """mean over the rows of sparse softmax cross-entropy as one kernel (a 1-element array), or None where
    it does not qualify. On the host its value equals np.mean of sparse_softmax_xent_fwd's rows bitwise."""
    if not _sparse_mean_qualifies(labels, logits):
        return None
    if isinstance(logits, np.ndarray):
        return _twins.softmax_xent_sparse_mean_fwd(logits, labels)
    from accel import fused  # noqa: PLC0415

    return fused.softmax_xent_sparse_mean_fwd(logits, labels)


def sparse_softmax_xent_mean_bwd(g, labels, logits):
    """d logits of mean(sparse softmax cross-entropy) for the mean's cotangent g (1 element) as one
    kernel, the division by the row count inside it; None where it does not qualify."""
    if isinstance(g, np.ndarray) != isinstance(logits, np.ndarray) or g.size != 1 or g.dtype != logits.dtype \
            or not _sparse_mean_qualifies(labels, logits):
        return None
    if isinstance(logits, np.ndarray):
        return _twins.softmax_xent_sparse_mean_bwd(logits, labels, g)
    from accel import fused  # noqa: PLC0415

    return fused.softmax_xent_sparse_mean_bwd(logits, labels, g)


def bias_add(xp, g, out, x, b, axis):
    """d bias of bias_add as one column-reduction kernel (GPU, bias on the last axis)."""
    if isinstance(g, np.ndarray) or axis != g.ndim - 1:
        return None
    from accel import fused  # noqa: PLC0415

    if not fused.qualifies(g):
        return None
    return (g, fused.bias_add_bwd(g.reshape(-1, g.shape[-1])))


def scatter_add_rows(out, indices, values):
    """out[indices[i]] += values[i] for a 2-D `out` on the GPU through the scatter kernel (in a fixed
    order under accel.config.experimental.enable_op_determinism()); False where it does not qualify,
    and the caller runs the generic scatter."""
    if isinstance(out, np.ndarray) or out.ndim != 2 or values.ndim != 2 or indices.ndim != 1:
        return False
    from accel import fused  # noqa: PLC0415

    if not (fused.qualifies(out, dtypes=fused._WITH_HALF) and fused.qualifies(values, dtypes=(out.dtype,))
            and indices.dtype in (np.int32, np.int64) and indices.flags.c_contiguous):
        return False
    fused.scatter_add_rows(out, indices, values, deterministic=backend.op_determinism_enabled())
    return True


def dropout(xp, g, out, x, keep, scale):
    """d x of dropout: g * scale where kept, one pass (mask of g's shape only; noise_shape broadcasts
    take the generic rule)."""
    if keep.shape != g.shape:
        return None
    if isinstance(g, np.ndarray):
        if not (_cpu_ok(g) and keep.flags.c_contiguous):
            return None
        return (_twins.dropout_bwd(g, keep, scale), None)
    from accel import fused  # noqa: PLC0415

    if not fused.qualifies(g) or not keep.flags.c_contiguous:
        return None
    return (fused.dropout_bwd(g, keep, scale), None)


def sigmoid_xent(xp, g, out, labels, logits):
    """d logits of sigmoid cross-entropy, g * (sigmoid(x) - z) in one pass; the labels' gradient (when
    a tape needs it) comes from the generic rule."""
    if g.shape != logits.shape or g.dtype != logits.dtype:
        return None
    # a mean's or sum's cotangent arrives broadcast (stride 0): one copy makes it a plain array
    if isinstance(logits, np.ndarray):
        if not _cpu_ok(logits, labels, any_size=True):
            return None
        if not g.flags.c_contiguous:
            g = profiler.counted(g).copy()  # a device op: counted when profiling
        return (None, _twins.sigmoid_xent_bwd(logits, labels, g))
    from accel import fused  # noqa: PLC0415

    if not fused.qualifies(logits, labels, dtypes=fused._FLOATS):
        return None
    return (None, fused.sigmoid_xent_bwd(logits, labels, xp.ascontiguousarray(g)))


def layer_norm(xp, g, out, x, gamma, beta, eps):
    """(dx, dgamma, dbeta) of layer normalization over the last axis in one row pass (CPU twin) or two
    kernels (GPU: rows, then columns; the row statistics are recomputed from x)."""
    if x.ndim < 1 or x.size == 0 or g.shape != x.shape or gamma.dtype != x.dtype:
        return None
    cols = x.shape[-1]
    if isinstance(x, np.ndarray):
        if not (_cpu_ok(g, x, any_size=True) and gamma.flags.c_contiguous):
            return None
        dx, dgamma, dbeta = _twins.layer_norm_bwd(g.reshape(-1, cols), x.reshape(-1, cols), gamma, eps)
        return (dx.reshape(x.shape), dgamma, dbeta)
    from accel import fused  # noqa: PLC0415

    if not fused.qualifies(g, x, dtypes=fused._FLOATS) or not gamma.flags.c_contiguous:
        return None
    x2, g2 = x.reshape(-1, cols), g.reshape(-1, cols)
    mean = x2.mean(axis=1)
    rstd = xp.reciprocal(xp.sqrt(xp.square(x2 - mean[:, None]).mean(axis=1) + x.dtype.type(eps)))
    dx, dgamma, dbeta = fused.layer_norm_bwd(g2, x2, mean, rstd, gamma)
    return (dx.reshape(x.shape), dgamma, dbeta)


def accumulate(acc, g, fuse_min):
    """acc += g in place for the tape's cotangent sums (acc an array the tape owns); False when g is
    not an array of acc's shape and dtype (the caller then adds out of place). The accumulate
    kernel runs on the GPU and the CPU twin for large host arrays (fuse_min: None = "never")."""
    if type(g) is not type(acc) or g.shape != acc.shape or g.dtype != acc.dtype:
        return False
    if isinstance(acc, np.ndarray):
        if (fuse_min is not None and acc.size >= fuse_min and _cpu_twins(backend.fused_mode())
                and acc.flags.c_contiguous and g.flags.c_contiguous and acc.dtype in (np.float32, np.float64)):
            _twins.accumulate_(acc, g)
        else:
            np.add(acc, g, out=acc)
        return True
    if isinstance(acc, np.generic):  # 0-d sums come back as NumPy scalars: nothing to write into
        return False
    from accel import fused  # noqa: PLC0415

    if fuse_min is not None and fused.qualifies(acc, g):
        fused.accumulate_(acc, g)
    else:
        backend.xp_of(acc).add(acc, g, out=acc)
    return True
