"""CPU twins of the fused kernels (kernels/*.cu): numba loops, one pass over memory.

numba is optional: it is imported on first use. The activation backward loops and the optimizer
updates are generated from the ops' and optimizers' own rules (accel/ops/generated_loops.py); they
need numba and C-contiguous float32/float64 arrays, and raise ValueError otherwise: the caller
(accel.ops.fusion.kernels_for) then runs the generic path, the rule itself on NumPy. Same argument
order and in-place semantics as accel.fused.

    gx = activation_bwd("gelu_tanh", g, x)
    adam_update(p, g, m, v, None, adam_alpha(1e-3, 0.9, 0.999, t, p.dtype), 0.9, 0.999, 1e-7, 1e-3)
"""

from __future__ import annotations

import math
import threading

import numpy as np

from accel import settings
from accel.kernel_registry import entry_point
from accel.ops import generated_loops

prange = range  # replaced by numba.prange when numba loads (globals bind at compile time)
# Serial loops by default: on 2 cores numba's OpenMP pool fought BLAS and the other process for the
# cores (relu backward on 1M float32: 6.4 ms parallel vs 0.75 ms serial, copy 0.72 ms), and a
# bandwidth-bound loop gains little from a second core. ACCEL_NUMBA_PARALLEL=1 turns prange on.
_PARALLEL = settings.ENV.numba_parallel
_nb = None
_jitted = {}


_load_lock = threading.Lock()
_warm = None  # the background thread loading numba for fused mode "auto", once started
_warmed = False


def available() -> bool:
    """True when the numba loops can be used (numba importable and ACCEL_NUMBA != 0); loads numba now."""
    return _numba() is not None


def warmed() -> bool:
    """For fused mode "auto": True once numba is loaded and its CPU target initialised. The first call
    starts that in a background thread and returns False, so a short program (the first `fit` of a
    process) runs the NumPy paths instead of waiting ~0.5-0.8 s for numba; the twins take over when ready
    (their results may differ from the NumPy paths' in the last bits). Under
    accel.config.experimental.enable_op_determinism() it waits for the load instead."""
    if _warmed:
        return True
    from accel import backend  # noqa: PLC0415

    if backend.op_determinism_enabled():
        # the path an op takes must not depend on when a thread finished: load numba now
        return wait_warmed()
    _start_warm_up()
    return False


def _start_warm_up():
    global _warm
    if _warm is None and settings.ENV.numba:
        with _load_lock:
            if _warm is None:
                _warm = threading.Thread(target=_warm_up, name="accel-numba-warm-up", daemon=True)
                _warm.start()


def wait_warmed(timeout=None) -> bool:
    """Blocks until the background load that warmed() starts has finished (benchmarks, tests)."""
    _start_warm_up()
    if _warm is not None:
        _warm.join(timeout)
    return _warmed


def _warm_up():
    global _warmed
    nb = _numba()
    if nb is None:
        return
    # the first jitted call initialises numba's CPU target (most of the cost); a cached tiny loop does it
    _jit(_touch)(np.zeros(1, np.float32))
    _warmed = True


def _touch(a):
    for i in range(a.size):
        a[i] += 0


def _numba():
    global _nb, prange
    if not settings.ENV.numba:
        return None
    if _nb is None:
        with _load_lock:
            return _load_numba()
    return _nb or None


def _load_numba():
    global _nb, prange
    if _nb is None:
        try:
            import numba  # noqa: PLC0415
        except ImportError:
            _nb = False
        else:
            prange = numba.prange
            # helpers the numba kernels call: jitted here so the kernels see dispatchers, not Python
            for helper in (_row_max_sumexp, _softmax_xent_row):
                globals()[helper.__name__] = numba.njit(inline="always", error_model="numpy")(helper)
            _nb = numba  # last: other threads read _nb without the lock
    return _nb or None


def _jit(fn):
    f = _jitted.get(fn)
    if f is None:
        # error_model="numpy": x / 0 gives inf/nan as in NumPy instead of a ZeroDivisionError check per
        # element, which also kept LLVM from vectorizing the loops (Adam on 400k float32: 1.59 -> 0.33 ms)
        f = _jitted[fn] = _numba().njit(parallel=_PARALLEL, fastmath=False, error_model="numpy", cache=True)(fn)
    return f


def _numba_ok(*arrays):
    if _numba() is None:
        return False
    dt = arrays[0].dtype
    return dt in (np.float32, np.float64) and all(
        type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous for a in arrays
    )


def _flat(*arrays):
    return [a.reshape(-1) for a in arrays]


def _check(fn, **arrays):
    """Same shapes and a float dtype for every array argument; clear errors otherwise."""
    items = [(k, a) for k, a in arrays.items() if a is not None]
    k0, a0 = items[0]
    for k, a in items:
        if not isinstance(a, np.ndarray):
            raise ValueError("%s: %s must be a numpy array, got %s" % (fn, k, type(a).__name__))
        if a.dtype not in (np.float16, np.float32, np.float64):
            raise ValueError("%s: %s must be float16/32/64, got %s" % (fn, k, a.dtype))
        if a.shape != a0.shape or a.dtype != a0.dtype:
            raise ValueError(
                "%s: %s has shape %s dtype %s, expected %s %s like %s"
                % (fn, k, a.shape, a.dtype, a0.shape, a0.dtype, k0)
            )


# ====================== elementwise backward loops generated from the rules ======================
# accel/ops/generated_loops.py (tools/gen_kernels.py): one loop per kernel and float dtype


def _erf_gauss_f64(u):
    return math.erf(u), math.exp(-(u * u))


def instantiate(make, dtype):
    """A loop factory of the generated_loops form (make(F, prange, exp, tanh, erf, erf_gauss) -> loop) for
    float `dtype`, not yet jitted: float32 computes with accel.cpu_math's vectorizable functions, float64
    with libm."""
    if dtype == np.float32:
        from accel import cpu_math  # noqa: PLC0415  (numba is optional: imported with the first loop)

        m = cpu_math.build()
        return make(np.float32, prange, m.exp_f32, m.tanh_f32, m.erf_f32, m.erf_gauss_f32)
    erf_gauss = _numba().njit(inline="always", error_model="numpy")(_erf_gauss_f64)
    return make(np.float64, prange, math.exp, math.tanh, math.erf, erf_gauss)


def generated_loop(factory, dtype):
    """The (not yet jitted) loop of generated_loops.<factory> for float `dtype`."""
    return instantiate(getattr(generated_loops, factory), dtype)


def jit_loop(make, dtype):
    """A loop factory instantiated for `dtype` and jitted without an on-disk cache (accel.function's
    fused groups, whose source is not a file)."""
    return _numba().njit(fastmath=False, error_model="numpy")(instantiate(make, dtype))


def _generated(factory, dtype):
    fn = _jitted.get((factory, dtype))
    if fn is None:
        fn = _jitted[(factory, dtype)] = _jit(generated_loop(factory, dtype))
    return fn


def _erf_make(F, prange, exp, tanh, erf, erf_gauss):
    def loop(o, x):
        for i in prange(x.size):
            o[i] = erf(x[i])

    return loop


@entry_point
def erf(x, out=None):
    """erf per element: accel.cpu_math's erf_f32 (within 2 ulp) for float32, libm's for float64; one
    pass, where SciPy's float32 erf computes in float64 (about 8x slower here)."""
    _check("erf", x=x, out=out)
    _need_numba("erf", x)
    out = np.empty_like(x) if out is None else out
    fn = _jitted.get(("erf", x.dtype.type))
    if fn is None:
        fn = _jitted[("erf", x.dtype.type)] = _jit(instantiate(_erf_make, x.dtype.type))
    fn(out.reshape(-1), np.ascontiguousarray(x).reshape(-1))
    return out


def _sigmoid_np(x, out):
    e = np.exp(-np.abs(x))
    return np.divide(np.where(x > 0, 1, e), 1 + e, out=out)


_ONE = np.float32(1)


@entry_point
def activation_bwd(name, g, saved, alpha=None, out=None):
    """gx = the rule of op `name` per element, by the numba loop generated from it; `saved` is the x
    or out that generated_loops.KERNELS[name] names, alpha the kernel's scalar where it takes one."""
    spec = generated_loops.KERNELS.get(name)
    if spec is None:
        known = ", ".join(generated_loops.KERNELS)
        raise ValueError("activation_bwd: unknown kernel %r (generated: %s)" % (name, known))
    _check("activation_bwd", g=g, saved=saved, out=out)
    if bool(spec["scalars"]) != (alpha is not None):
        raise ValueError("activation_bwd: kernel %r takes %s, got alpha=%r" % (
            name, "the scalar " + spec["scalars"][0] if spec["scalars"] else "no scalar", alpha))
    out = np.empty_like(g) if out is None else out
    if not _numba_ok(g, saved, out):
        raise ValueError("activation_bwd: needs numba and C-contiguous float32 or float64 arrays, got %s" % g.dtype)
    args = _flat(out, g, saved) + ([g.dtype.type(alpha)] if alpha is not None else [])
    _generated(name + "_bwd", g.dtype.type)(*args)
    return out


# =============================== optimizers ===============================
# In place, Keras 3 operation order; scalars arrive already cast to the array
# dtype so float32 math stays float32. om_b = 1 - b as Keras forms it.


def adam_alpha(lr, b1, b2, t, dtype):
    """Keras' alpha = lr*sqrt(1 - b2^t)/(1 - b1^t), computed in `dtype` like Keras
    (float16 variables: computed in float32, the kernels' math precision)."""
    dt = np.dtype(np.float32 if np.dtype(dtype) == np.float16 else dtype).type
    t = dt(t)
    return dt(lr) * np.sqrt(dt(1) - np.power(dt(b2), t)) / (dt(1) - np.power(dt(b1), t))


def _scal(p, *vals):
    dt = np.float32 if p.dtype == np.float16 else p.dtype.type
    return [dt(v) for v in vals]


def _update(name, p, *arrays_and_scalars):
    """Runs the numba loop generated from optimizer update `name`'s rule (accel.optimizers.base.UPDATES)."""
    _generated(name + "_update", p.dtype.type)(p, *arrays_and_scalars)


def _need_numba(fn, *arrays):
    if not _numba_ok(*arrays):
        raise ValueError("%s: needs numba and C-contiguous float32 or float64 arrays of one dtype, got %s"
                         % (fn, ", ".join(str(a.dtype) for a in arrays)))


@entry_point
def adam_update(p, g, m, v, vhat, alpha, b1, b2, eps, lr, wd=0.0):
    """In-place Adam/AdamW/AMSGrad step; alpha from adam_alpha(), wd = AdamW's decay."""
    _check("adam_update", p=p, g=g, m=m, v=v, vhat=vhat)
    arrays = (p, g, m, v) + (() if vhat is None else (vhat,))
    _need_numba("adam_update", *arrays)
    _update("adam" if vhat is None else "adam_amsgrad", *_flat(*arrays), *_scal(p, alpha, 1 - b1, 1 - b2, eps, lr, wd))


# Multi-tensor Adam: one call for every parameter of a dtype, like the CUDA kernel's pointer
# tables. numba takes the arrays as (address, size) rows and rebuilds each with carray, so one
# compilation serves any number of tensors. The rows of the parameters and slots are cached by
# the arrays' identities (an address costs ~2 µs to read); the gradients' row is filled per call.
_TABLES = {}
_TABLES_MAX = 4


def _table(lists):
    state = lists[:-1]
    key = tuple(id(a) for lst in state for a in lst)
    hit = _TABLES.get(key)
    if hit is None:
        addr = np.zeros((len(lists), len(lists[0])), np.int64)
        for row, lst in enumerate(state):
            addr[row] = [a.__array_interface__["data"][0] for a in lst]
        sizes = np.array([a.size for a in lists[0]], np.int64)
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.pop(next(iter(_TABLES)))
        hit = _TABLES[key] = (addr, sizes, state)  # state keeps the arrays (and so the ids) alive
    addr, sizes, _ = hit
    addr[-1] = [g.__array_interface__["data"][0] for g in lists[-1]]
    return addr, sizes


def _adam_multi_kernel(dtype):
    f = _jitted.get(("adam_multi", dtype))
    if f is None:
        nb = _numba()
        from numba import types  # noqa: PLC0415
        from numba.extending import intrinsic  # noqa: PLC0415

        @intrinsic
        def ptr_like(typingctx, addr, like):
            sig = types.CPointer(like.dtype)(types.int64, like)
            return sig, lambda ctx, builder, sig, args: builder.inttoptr(args[0], ctx.get_value_type(sig.return_type))

        carray = nb.carray
        adam = _generated("adam_update", dtype)
        amsgrad = _generated("adam_amsgrad_update", dtype)

        def run(addr, sizes, like, ams, alpha, om_b1, om_b2, eps, lr, wd):
            for k in range(sizes.size):
                n = sizes[k]
                p = carray(ptr_like(addr[0, k], like), n)
                m = carray(ptr_like(addr[1, k], like), n)
                v = carray(ptr_like(addr[2, k], like), n)
                vh = carray(ptr_like(addr[3, k], like), n)
                g = carray(ptr_like(addr[4, k], like), n)
                if ams:
                    amsgrad(p, g, m, v, vh, alpha, om_b1, om_b2, eps, lr, wd)
                else:
                    adam(p, g, m, v, alpha, om_b1, om_b2, eps, lr, wd)

        f = _jitted[("adam_multi", dtype)] = nb.njit(error_model="numpy")(run)
    return f


def check_adam_lists(fn, ps, gs, ms, vs, vhats, check_one):
    """adam_multi_update's list checks (here and in accel.fused): one length, check_one(k, p, g, m, v, vhat)
    for each tensor, one dtype."""
    n = len(ps)
    for nm, lst in (("gs", gs), ("ms", ms), ("vs", vs)) + ((("vhats", vhats),) if vhats is not None else ()):
        if len(lst) != n:
            raise ValueError("%s: %s has %d tensors, expected %d like ps" % (fn, nm, len(lst), n))
    for k in range(n):
        check_one(k, ps[k], gs[k], ms[k], vs[k], None if vhats is None else vhats[k])
        if ps[k].dtype != ps[0].dtype:
            raise ValueError("%s: ps[%d] has dtype %s, expected %s like ps[0]" % (fn, k, ps[k].dtype, ps[0].dtype))


@entry_point
def adam_multi_update(ps, gs, ms, vs, vhats, alpha, b1, b2, eps, lr, wd=0.0):
    """adam_update over many tensors of one dtype in one call (vhats: list or None)."""
    fn = "adam_multi_update"
    check_adam_lists(fn, ps, gs, ms, vs, vhats,
                     lambda k, p, g, m, v, vh: _check("%s (tensor %d)" % (fn, k), p=p, g=g, m=m, v=v, vhat=vh))
    if not ps:
        return
    lists = (ps, ms, vs, vs if vhats is None else vhats, gs)
    _need_numba(fn, *(a for lst in lists for a in lst))
    addr, sizes = _table(lists)
    sc = _scal(ps[0], alpha, 1 - b1, 1 - b2, eps, lr, wd)
    _adam_multi_kernel(ps[0].dtype.type)(addr, sizes, ps[0][:0].reshape(-1), vhats is not None, *sc)


# =============================== losses ===============================


def _row_max_sumexp(x, r):
    """(max, sum of exp(x - max)) of row r: the numba kernels below call its jitted form (see _numba)."""
    cols = x.shape[1]
    mx = x[r, 0]
    for c in range(1, cols):
        mx = max(mx, x[r, c])
    total = x.dtype.type(0)
    for c in range(cols):
        total += np.exp(x[r, c] - mx)
    return mx, total


def _softmax_xent_row(d, x, r, g_r, dense_labels):
    """d[r] = g_r * (softmax(x[r]) - dense_labels[r]); dense_labels None: g_r * softmax(x[r]) (numba
    compiles that case without the subtraction)."""
    mx, total = _row_max_sumexp(x, r)
    scale = g_r / total
    for c in range(x.shape[1]):
        v = np.exp(x[r, c] - mx) * scale
        if dense_labels is not None:
            v -= g_r * dense_labels[r, c]
        d[r, c] = v


def _softmax_xent_sparse_nb(d, x, labels, g):
    for r in range(x.shape[0]):
        _softmax_xent_row(d, x, r, g[r], None)
        d[r, labels[r]] -= g[r]


def _softmax_xent_sparse_fwd_nb(loss, x, labels):
    for r in range(x.shape[0]):
        mx, total = _row_max_sumexp(x, r)
        loss[r] = np.log(total) - (x[r, labels[r]] - mx)


@entry_point
def softmax_xent_sparse_fwd(logits, labels, out=None):
    """loss[r] = -log_softmax(logits)[r, labels[r]], one pass per row (labels in [0, C))."""
    fn = "softmax_xent_sparse_fwd"
    _check(fn, logits=logits)
    if logits.ndim != 2:
        raise ValueError("%s: logits must be 2-D [N, C], got shape %s" % (fn, logits.shape))
    rows, cols = logits.shape
    _check_labels(fn, labels, rows, cols)
    loss = np.empty(rows, logits.dtype) if out is None else out
    if not (isinstance(loss, np.ndarray) and loss.dtype == logits.dtype and loss.shape == (rows,)):
        raise ValueError("%s: out must be a %s array of shape %s" % (fn, logits.dtype, (rows,)))
    if rows and cols:
        if _numba_ok(logits, loss) and labels.flags.c_contiguous:
            _jit(_softmax_xent_sparse_fwd_nb)(loss, logits, labels)
        else:
            m = logits.max(axis=1)
            lse = np.log(np.exp(logits - m[:, None]).sum(axis=1))
            np.subtract(lse, logits[np.arange(rows), labels] - m, out=loss)
    return loss


def _check_mean_xent_args(fn, logits, labels):
    """The logits and labels checks both mean cross-entropy kernels make."""
    _check(fn, logits=logits)
    if logits.ndim != 2 or 0 in logits.shape:
        raise ValueError("%s: logits must be 2-D [N, C] with N, C >= 1, got shape %s" % (fn, logits.shape))
    _check_labels(fn, labels, *logits.shape)


@entry_point
def softmax_xent_sparse_mean_fwd(logits, labels, out=None):
    """mean over the rows of -log_softmax(logits)[r, labels[r]]: each row's loss by softmax_xent_sparse_fwd's
    kernel, then np.mean (eager's own reduction, so bitwise equal to it; a kernel summing in NumPy's pairwise
    order took numba 1.3 s to compile on a first call). Returns a 1-element array (out: one to fill). Needs
    numba; labels in [0, C)."""
    fn = "softmax_xent_sparse_mean_fwd"
    _check_mean_xent_args(fn, logits, labels)
    mean = np.empty(1, logits.dtype) if out is None else out
    if not (isinstance(mean, np.ndarray) and mean.dtype == logits.dtype and mean.size == 1):
        raise ValueError("%s: out must be a %s array of 1 element" % (fn, logits.dtype))
    _need_numba(fn, logits)
    if not labels.flags.c_contiguous:
        raise ValueError("%s: labels must be C-contiguous" % fn)
    loss = np.empty(logits.shape[0], logits.dtype)
    _jit(_softmax_xent_sparse_fwd_nb)(loss, logits, labels)
    mean.reshape(1)[0] = np.mean(loss)
    return mean


def _softmax_xent_sparse_mean_bwd_nb(d, x, labels, g):
    g_r = g[0] / x.dtype.type(x.shape[0])  # the mean's rule: g / N in the dtype, then the same row pass
    for r in range(x.shape[0]):
        _softmax_xent_row(d, x, r, g_r, None)
        d[r, labels[r]] -= g_r


@entry_point
def softmax_xent_sparse_mean_bwd(logits, labels, g, out=None):
    """dlogits of mean over the rows of sparse softmax cross-entropy, for the mean's cotangent g (1
    element): (softmax(logits) - onehot(labels)) * (g / N) in one pass per row, equal bitwise to
    softmax_xent_bwd(logits, labels, broadcast of g / N, sparse=True). Needs numba; labels in [0, C)."""
    fn = "softmax_xent_sparse_mean_bwd"
    _check_mean_xent_args(fn, logits, labels)
    if not isinstance(g, np.ndarray) or g.dtype != logits.dtype or g.size != 1:
        raise ValueError("%s: g must be a %s array of 1 element, got %s %s"
                         % (fn, logits.dtype, getattr(g, "dtype", type(g).__name__), getattr(g, "shape", "")))
    d = np.empty_like(logits) if out is None else out
    _check(fn, logits=logits, out=d)
    _need_numba(fn, logits, d)
    if not labels.flags.c_contiguous:
        raise ValueError("%s: labels must be C-contiguous" % fn)
    _jit(_softmax_xent_sparse_mean_bwd_nb)(d, logits, labels, g.reshape(1))
    return d


def _check_labels(fn, labels, rows, cols):
    if not isinstance(labels, np.ndarray) or labels.dtype not in (np.int32, np.int64) or labels.shape != (rows,):
        raise ValueError("%s: labels must be an int32/int64 array of shape %s, got %s %s"
                         % (fn, (rows,), getattr(labels, "dtype", type(labels).__name__),
                            getattr(labels, "shape", "")))
    if rows and (labels.min() < 0 or labels.max() >= cols):
        raise ValueError("%s: labels must lie in [0, %d), got values from %d to %d"
                         % (fn, cols, labels.min(), labels.max()))


def _softmax_xent_dense_nb(d, x, labels, g):
    for r in range(x.shape[0]):
        _softmax_xent_row(d, x, r, g[r], labels)


def softmax_xent_bwd_numpy(logits, labels, g, sparse, out=None):
    d = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(d, out=d)
    d /= d.sum(axis=1, keepdims=True)
    if sparse:
        d[np.arange(d.shape[0]), labels] -= 1
    else:
        d -= labels
    d *= g[:, None]
    return d


@entry_point
def softmax_xent_bwd(logits, labels, g, sparse, out=None):
    """dlogits = g[:, None] * (softmax(logits) - labels), one pass per row.

    labels: [N, C] like logits (sparse=False) or [N] int32/int64 (sparse=True), in [0, C);
    g: [N], any stride."""
    fn = "softmax_xent_bwd"
    _check(fn, logits=logits)
    if logits.ndim != 2:
        raise ValueError("%s: logits must be 2-D [N, C], got shape %s" % (fn, logits.shape))
    rows, cols = logits.shape
    if sparse:
        _check_labels(fn, labels, rows, cols)
    else:
        _check(fn, logits=logits, labels=labels)
    if not isinstance(g, np.ndarray) or g.dtype != logits.dtype or g.shape != (rows,):
        raise ValueError("%s: g must be a %s array of shape %s, got %s %s"
                         % (fn, logits.dtype, (rows,), getattr(g, "dtype", type(g).__name__), getattr(g, "shape", "")))
    d = np.empty_like(logits) if out is None else out
    _check(fn, logits=logits, out=d)
    if not (rows and cols):
        return d
    if _numba_ok(logits, d) and (labels.flags.c_contiguous if sparse else _numba_ok(logits, labels)):
        # g of any stride (a mean's broadcast cotangent has stride 0): numba compiles an 'A' layout loop
        _jit(_softmax_xent_sparse_nb if sparse else _softmax_xent_dense_nb)(d, logits, labels, g)
        return d
    return softmax_xent_bwd_numpy(logits, labels, g, sparse, d)


@entry_point
def sgd_update(p, g, lr, m=None, momentum=0.0, nesterov=False, wd=0.0):
    """In-place SGD; with m (momentum buffer): m = m*momentum - g*lr; p += m (or nesterov)."""
    _check("sgd_update", p=p, g=g, m=m)
    if m is None:
        _need_numba("sgd_update", p, g)
        _update("sgd", *_flat(p, g), *_scal(p, lr, wd))
        return
    _need_numba("sgd_update", p, g, m)
    _update("sgd_nesterov" if nesterov else "sgd_momentum", *_flat(p, g, m), *_scal(p, lr, momentum, wd))


@entry_point
def rmsprop_update(p, g, v, lr, rho, eps, m=None, momentum=0.0, mg=None, wd=0.0):
    """In-place RMSprop (Keras: eps inside the sqrt); m = momentum buffer, mg = centered mean."""
    _check("rmsprop_update", p=p, g=g, v=v, m=m, mg=mg)
    arrays = [a for a in (p, g, v, m, mg) if a is not None]
    _need_numba("rmsprop_update", *arrays)
    name = "rmsprop" + ("_centered" if mg is not None else "") + ("_momentum" if m is not None else "")
    _update(name, *_flat(*arrays), *_scal(p, lr, rho, 1 - rho, momentum, eps, wd))


@entry_point
def adagrad_update(p, g, acc, lr, eps, wd=0.0):
    """In-place Adagrad: acc += g^2; p -= lr*g/sqrt(acc + eps)."""
    _check("adagrad_update", p=p, g=g, acc=acc)
    _need_numba("adagrad_update", p, g, acc)
    _update("adagrad", *_flat(p, g, acc), *_scal(p, lr, eps, wd))


@entry_point
def lion_update(p, g, m, lr, b1, b2, wd=0.0):
    """In-place Lion: p -= lr*sign(m*b1 + g*(1-b1)); m = m*b2 + g*(1-b2)."""
    _check("lion_update", p=p, g=g, m=m)
    _need_numba("lion_update", p, g, m)
    lr, b1, b2, wd = _scal(p, lr, b1, b2, wd)
    one = type(b1)(1)
    _update("lion", *_flat(p, g, m), lr, b1, one - b1, b2, one - b2, wd)  # Keras: 1 - cast(beta)


# =============================== dropout, sigmoid cross-entropy ===============================


def _dropout_nb(gx, g, keep, scale):
    for i in range(gx.size):
        gx[i] = g[i] * scale if keep[i] else g.dtype.type(0)


@entry_point
def dropout_bwd(g, mask, scale, out=None):
    """gx = where(mask, g * scale, 0); mask a bool array of g's shape."""
    fn = "dropout_bwd"
    _check(fn, g=g, out=out)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != g.shape:
        raise ValueError("%s: mask must be a bool array of shape %s, got %s %s"
                         % (fn, g.shape, getattr(mask, "dtype", type(mask).__name__), getattr(mask, "shape", "")))
    gx = np.empty_like(g) if out is None else out
    if _numba_ok(g, gx) and mask.flags.c_contiguous:
        _jit(_dropout_nb)(*_flat(gx, g, mask), g.dtype.type(scale))
        return gx
    np.multiply(g, mask, out=gx)
    gx *= g.dtype.type(scale) if g.dtype != np.float16 else np.float32(scale)
    return gx


def _sigmoid_xent_nb(gx, x, z, g):
    one = x.dtype.type(1)
    for i in range(gx.size):
        xi = x[i]
        e = np.exp(-abs(xi))
        r = one / (one + e)
        gx[i] = g[i] * ((r if xi >= 0 else e * r) - z[i])


def _sigmoid_xent_f32():
    f = _jitted.get("sigmoid_xent_f32")
    if f is None:
        from accel import cpu_math  # noqa: PLC0415

        exp = cpu_math.build().exp_f32

        def run(gx, x, z, g):
            for i in range(gx.size):
                xi = x[i]
                e = exp(-abs(xi))
                r = _ONE / (_ONE + e)
                gx[i] = g[i] * ((r if xi >= 0 else e * r) - z[i])

        f = _jitted["sigmoid_xent_f32"] = _numba().njit(error_model="numpy")(run)
    return f


@entry_point
def sigmoid_xent_bwd(x, z, g, out=None):
    """gx = g * (sigmoid(x) - z), elementwise in one pass."""
    _check("sigmoid_xent_bwd", x=x, z=z, g=g, out=out)
    gx = np.empty_like(x) if out is None else out
    if _numba_ok(x, z, g, gx):
        kernel = _sigmoid_xent_f32() if x.dtype == np.float32 else _jit(_sigmoid_xent_nb)
        kernel(*_flat(gx, x, z, g))
        return gx
    xf = x.astype(np.float32) if x.dtype == np.float16 else x
    gx[...] = g * (_sigmoid_np(xf, None) - z)
    return gx


# =============================== layer normalization ===============================


def _layer_norm_nb(dx, acc_g, acc_b, g, x, gamma, eps):
    # per row: statistics and the two row sums in float64, then dx; gamma/beta sums in float64
    rows, cols = x.shape
    for r in range(rows):
        mean = 0.0
        for c in range(cols):
            mean += x[r, c]
        mean /= cols
        var = 0.0
        for c in range(cols):
            d = x[r, c] - mean
            var += d * d
        rstd = 1.0 / np.sqrt(var / cols + eps)
        s1 = 0.0
        s2 = 0.0
        for c in range(cols):
            xh = (x[r, c] - mean) * rstd
            gc = g[r, c]
            gh = gc * gamma[c]
            s1 += gh
            s2 += gh * xh
            acc_g[c] += gc * xh
            acc_b[c] += gc
        s1 /= cols
        s2 /= cols
        for c in range(cols):
            xh = (x[r, c] - mean) * rstd
            dx[r, c] = rstd * (g[r, c] * gamma[c] - s1 - xh * s2)


@entry_point
def layer_norm_bwd(g, x, gamma, eps):
    """(dx, dgamma, dbeta) of y = (x - mean) * rstd * gamma + beta over the last axis of 2-D x [N, C];
    the row statistics are recomputed from x (eps inside the square root, as Keras)."""
    fn = "layer_norm_bwd"
    _check(fn, x=x, g=g)
    if x.ndim != 2:
        raise ValueError("%s: x must be 2-D [N, C], got shape %s" % (fn, x.shape))
    if not isinstance(gamma, np.ndarray) or gamma.dtype != x.dtype or gamma.shape != (x.shape[1],):
        raise ValueError("%s: gamma must be a %s array of shape %s, got %s %s"
                         % (fn, x.dtype, (x.shape[1],), getattr(gamma, "dtype", type(gamma).__name__),
                            getattr(gamma, "shape", "")))
    cols = x.shape[1]
    acc_g, acc_b = np.zeros(cols), np.zeros(cols)
    if _numba_ok(x, g) and gamma.flags.c_contiguous:
        dx = np.empty_like(x)
        _jit(_layer_norm_nb)(dx, acc_g, acc_b, g, x, gamma, float(eps))
        return dx, acc_g.astype(x.dtype), acc_b.astype(x.dtype)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    xc = x64 - mean
    rstd = 1 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
    xh = xc * rstd
    gh = g64 * gamma
    dx = rstd * (gh - gh.mean(axis=1, keepdims=True) - xh * (gh * xh).mean(axis=1, keepdims=True))
    return dx.astype(x.dtype), (g64 * xh).sum(axis=0).astype(x.dtype), g64.sum(axis=0).astype(x.dtype)


# =============================== accumulate ===============================


def _accumulate_nb(a, b):
    for i in prange(a.size):
        a[i] += b[i]


def accumulate_numpy(a, b):
    np.add(a, b, out=a)
    return a


@entry_point
def accumulate_(a, b):
    """a += b in place (gradient accumulation); returns a."""
    _check("accumulate_", a=a, b=b)
    if _numba_ok(a, b):
        _jit(_accumulate_nb)(*_flat(a, b))
        return a
    return accumulate_numpy(a, b)
