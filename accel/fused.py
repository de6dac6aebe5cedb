"""Fused CUDA kernels (kernels/*.cu) behind validating wrappers, for CuPy arrays.

Each family is compiled once per device, on first use, with exactly the options
and name expressions of accel.kernel_registry. Wrappers check dtype, shape and
contiguity before launching and raise ValueError naming the argument.
`launches` counts launches per kernel name, so tests can assert a kernel ran.

    if fused.qualifies(g, x):
        gx = fused.activation_bwd("gelu", g, x)
"""

from __future__ import annotations

import collections

import numpy as np

from accel import backend
from accel import kernel_registry as reg
from accel.cpu_kernels import adam_alpha, check_adam_lists  # noqa: F401  (adam_alpha is re-exported)
from accel.kernel_registry import entry_point
from accel.ops.generated_loops import KERNELS as GENERATED

launches: collections.Counter = collections.Counter()  # kernel name -> launches
_modules: dict = {}  # (family, device id) -> cupy.RawModule
_sm_count: dict = {}  # device id -> multiprocessors

BLOCK = 256  # threads per block for elementwise and row kernels
_CTYPE_OF = {np.dtype(k): v for k, v in reg.CTYPE.items()}
_FLOATS = tuple(np.dtype(d) for d in reg.FLOATS)
_WITH_HALF = tuple(np.dtype(d) for d in reg.WITH_HALF)


def _cp():
    cp = backend.cupy()
    if cp is None:
        raise RuntimeError("accel.fused needs CuPy (pip install cupy-cuda13x)")
    return cp


def module(family):
    """The compiled RawModule of `family` on the current device (cached)."""
    cp = _cp()
    key = (family, cp.cuda.Device().id)
    mod = _modules.get(key)
    if mod is None:
        mod = cp.RawModule(
            code=reg.source(family),
            options=reg.options(family),
            name_expressions=reg.name_expressions(family),
        )
        _modules[key] = mod
    return mod


def _launch(kernel, types, grid, block, args, shared_mem=0):
    k = reg.kernel(kernel)
    ne = k.name_expr(*types)
    fn = module(reg.family_of(kernel)).get_function(ne)
    fn(grid, block, args, shared_mem=shared_mem)
    launches[kernel] += 1


def _elementwise(kernel, like, *args):
    """Launches a grid-stride kernel over like's elements, kernel<like.dtype>(*args, n); nothing when n == 0."""
    if like.size:
        _launch(kernel, (like.dtype,), _grid(like.size), (BLOCK,), args + (np.int64(like.size),))


def _multiprocessors():
    """The current device's multiprocessor count (cached)."""
    cp = _cp()
    dev = cp.cuda.Device().id
    if dev not in _sm_count:
        _sm_count[dev] = cp.cuda.Device(dev).attributes["MultiProcessorCount"]
    return _sm_count[dev]


def _grid(n, block=BLOCK):
    """Blocks for a grid-stride loop over n items: enough to fill the GPU, no more."""
    return (max(1, min((n + block - 1) // block, _multiprocessors() * 32)),)


# ---- validation ----


def _check(fn, name, a, dtypes=None, shape=None, like=None, contiguous=True):
    """Raises ValueError unless `a` is a (C-contiguous) cupy array with an allowed dtype/shape."""
    cp = _cp()
    if not isinstance(a, cp.ndarray):
        raise ValueError("%s: %s must be a cupy.ndarray, got %s" % (fn, name, type(a).__name__))
    if like is not None:
        dtypes, shape = (like.dtype,), like.shape
    if dtypes is not None and a.dtype not in dtypes:
        raise ValueError(
            "%s: %s has dtype %s, expected %s" % (fn, name, a.dtype, " or ".join(str(d) for d in dtypes))
        )
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError("%s: %s has shape %s, expected %s" % (fn, name, tuple(a.shape), tuple(shape)))
    if contiguous and not a.flags.c_contiguous:
        raise ValueError("%s: %s must be C-contiguous (got strides %s)" % (fn, name, a.strides))
    return a


def qualifies(*arrays, dtypes=_WITH_HALF) -> bool:
    """True when the fused path may run: the switch is not "never", and all arrays
    are C-contiguous cupy arrays of one shape and one dtype from `dtypes`."""
    if backend.fused_mode() == "never" or not arrays:
        return False
    cp = backend.cupy()
    if cp is None:
        return False
    a0 = arrays[0]
    return all(
        isinstance(a, cp.ndarray)
        and a.shape == a0.shape
        and a.dtype == a0.dtype
        and a.dtype in dtypes
        and a.flags.c_contiguous
        for a in arrays
    )


def _scalar_type(dtype):
    return np.float64 if dtype == np.float64 else np.float32  # the kernels' ACC(T)


def _out(fn, out, like):
    if out is None:
        return _cp().empty_like(like)
    return _check(fn, "out", out, like=like)


_NULL = np.uint64(0)


def _ptr(a):
    return _NULL if a is None else a


# ---- elementwise backward kernels generated from the ops' rules (kernels/elementwise.cu) ----


@entry_point
def activation_bwd(name, g, saved, alpha=None, out=None):
    """gx = the rule of op `name` per element (saved: the x or out that GENERATED[name] names; alpha:
    the kernel's scalar, for kernels that take one)."""
    fn = "activation_bwd"
    spec = GENERATED.get(name)
    if spec is None:
        raise ValueError("%s: unknown kernel %r (generated: %s)" % (fn, name, ", ".join(GENERATED)))
    _check(fn, "g", g, _WITH_HALF)
    _check(fn, "saved", saved, like=g)
    if bool(spec["scalars"]) != (alpha is not None):
        raise ValueError("%s: kernel %r takes %s, got alpha=%r" % (
            fn, name, "the scalar " + spec["scalars"][0] if spec["scalars"] else "no scalar", alpha))
    gx = _out(fn, out, g)
    scalars = () if alpha is None else (_scalar_type(g.dtype)(alpha),)
    _elementwise(name + "_bwd", g, gx, g, saved, *scalars)
    return gx


# ---- losses ----


def _row_block(cols):
    return (max(32, min(BLOCK, (cols + 31) // 32 * 32)),)


@entry_point
def softmax_xent_bwd(logits, labels, g, sparse, out=None):
    """dlogits = g[:, None] * (softmax(logits) - labels).

    labels: [N, C] like logits (sparse=False) or [N] int32/int64 (sparse=True); g: [N], any stride
    (0 for a broadcast scalar)."""
    fn = "softmax_xent_bwd"
    _check(fn, "logits", logits, _FLOATS)
    if logits.ndim != 2:
        raise ValueError("%s: logits must be 2-D [N, C], got shape %s" % (fn, tuple(logits.shape)))
    rows, cols = logits.shape
    if sparse:
        _check(fn, "labels", labels, (np.dtype(np.int32), np.dtype(np.int64)), (rows,))
    else:
        _check(fn, "labels", labels, like=logits)
    _check(fn, "g", g, (logits.dtype,), (rows,), contiguous=False)
    d = _out(fn, out, logits)
    if rows and cols:
        grid = (min(rows, 65535),)
        args = (d, logits, labels, g, np.int64(g.strides[0] // g.itemsize), np.int64(rows), np.int32(cols))
        if sparse:
            _launch("softmax_xent_sparse_bwd", (logits.dtype, labels.dtype), grid, _row_block(cols), args)
        else:
            _launch("softmax_xent_dense_bwd", (logits.dtype,), grid, _row_block(cols), args)
    return d


@entry_point
def softmax_xent_sparse_fwd(logits, labels, out=None):
    """loss[r] = -log_softmax(logits)[r, labels[r]] (NaN for a label outside [0, C))."""
    fn = "softmax_xent_sparse_fwd"
    _check(fn, "logits", logits, _FLOATS)
    if logits.ndim != 2:
        raise ValueError("%s: logits must be 2-D [N, C], got shape %s" % (fn, tuple(logits.shape)))
    rows, cols = logits.shape
    _check(fn, "labels", labels, (np.dtype(np.int32), np.dtype(np.int64)), (rows,))
    if out is None:
        out = _cp().empty(rows, logits.dtype)
    _check(fn, "out", out, (logits.dtype,), (rows,))
    if rows and cols:
        args = (out, logits, labels, np.int64(rows), np.int32(cols))
        _launch(fn, (logits.dtype, labels.dtype), (min(rows, 65535),), _row_block(cols), args)
    return out


_MEAN_BLOCK = (512,)  # the mean's one block: 16 warps, a row per warp at a time (kernel_registry's budget)


def _check_sparse_mean(fn, logits, labels):
    _check(fn, "logits", logits, _FLOATS)
    if logits.ndim != 2 or 0 in logits.shape:
        raise ValueError("%s: logits must be 2-D [N, C] with N, C >= 1, got shape %s" % (fn, tuple(logits.shape)))
    _check(fn, "labels", labels, (np.dtype(np.int32), np.dtype(np.int64)), (logits.shape[0],))
    return logits.shape


@entry_point
def softmax_xent_sparse_mean_fwd(logits, labels, out=None):
    """mean over r of -log_softmax(logits)[r, labels[r]] in one launch (one block; the per-row losses stay
    in registers); a 1-element array. NaN when a label is outside [0, C)."""
    fn = "softmax_xent_sparse_mean_fwd"
    rows, cols = _check_sparse_mean(fn, logits, labels)
    if out is None:
        out = _cp().empty(1, logits.dtype)
    _check(fn, "out", out, (logits.dtype,), (1,))
    _launch(fn, (logits.dtype, labels.dtype), (1,), _MEAN_BLOCK, (out, logits, labels, np.int64(rows), np.int32(cols)))
    return out


@entry_point
def softmax_xent_sparse_mean_bwd(logits, labels, g, out=None):
    """dlogits = (softmax(logits) - onehot(labels)) * (g / N) for the mean's cotangent g (1 element), one
    launch (the division by N is in the kernel)."""
    fn = "softmax_xent_sparse_mean_bwd"
    rows, cols = _check_sparse_mean(fn, logits, labels)
    _check(fn, "g", g, (logits.dtype,), contiguous=False)
    if g.size != 1:
        raise ValueError("%s: g must have 1 element, got shape %s" % (fn, tuple(g.shape)))
    d = _out(fn, out, logits)
    _launch(fn, (logits.dtype, labels.dtype), (min(rows, 65535),), _row_block(cols),
            (d, logits, labels, g, np.int64(rows), np.int32(cols)))
    return d


@entry_point
def sigmoid_xent_bwd(x, z, g, out=None):
    """gx = g * (sigmoid(x) - z), elementwise."""
    fn = "sigmoid_xent_bwd"
    _check(fn, "x", x, _FLOATS)
    _check(fn, "z", z, like=x)
    _check(fn, "g", g, like=x)
    gx = _out(fn, out, x)
    _elementwise(fn, x, gx, x, z, g)
    return gx


# ---- reductions ----

_COLS_BLOCK = (32, 8)


def _col_grid(cols):
    return (min((cols + 31) // 32, 65535),)


@entry_point
def bias_add_bwd(g, out=None):
    """db = g summed over every axis but the last (deterministic)."""
    fn = "bias_add_bwd"
    _check(fn, "g", g, _FLOATS)
    if g.ndim < 1:
        raise ValueError("%s: g must have at least 1 dimension" % fn)
    cols = g.shape[-1]
    rows = g.size // cols if cols else 0
    db = _cp().empty((cols,), g.dtype) if out is None else _check(fn, "out", out, (g.dtype,), (cols,))
    if cols:
        if rows == 0:
            db.fill(0)
        else:
            _launch(
                "bias_add_bwd",
                (g.dtype,),
                _col_grid(cols),
                _COLS_BLOCK,
                (db, g, np.int64(rows), np.int32(cols)),
            )
    return db


@entry_point
def dropout_bwd(g, mask, scale, out=None):
    """gx = where(mask, g*scale, 0); mask is a bool array of g's shape."""
    fn = "dropout_bwd"
    _check(fn, "g", g, _WITH_HALF)
    _check(fn, "mask", mask, (np.dtype(np.bool_),), g.shape)
    gx = _out(fn, out, g)
    _elementwise(fn, g, gx, g, mask.view(np.uint8), _scalar_type(g.dtype)(scale))
    return gx


@entry_point
def layer_norm_bwd(g, x, mean, rstd, gamma=None):
    """Layer norm over the last axis: returns (dx, dgamma, dbeta).

    mean, rstd: per row (x.shape[:-1] or flattened), dtype of x; gamma: [C] or None."""
    fn = "layer_norm_bwd"
    _check(fn, "x", x, _FLOATS)
    _check(fn, "g", g, like=x)
    cols = x.shape[-1]
    rows = x.size // cols if cols else 0
    _check(fn, "mean", mean, (x.dtype,))
    _check(fn, "rstd", rstd, (x.dtype,))
    for nm, a in (("mean", mean), ("rstd", rstd)):
        if a.size != rows:
            raise ValueError("%s: %s has %d elements, expected %d (one per row)" % (fn, nm, a.size, rows))
    if gamma is not None:
        _check(fn, "gamma", gamma, (x.dtype,), (cols,))
    cp = _cp()
    dx = cp.empty_like(x)
    dgamma, dbeta = cp.empty((cols,), x.dtype), cp.empty((cols,), x.dtype)
    if rows and cols:
        r, c = np.int64(rows), np.int32(cols)
        _launch(
            "layer_norm_bwd",
            (x.dtype,),
            (min(rows, 65535),),
            _row_block(cols),
            (dx, g, x, mean, rstd, _ptr(gamma), r, c),
        )
        _launch(
            "layer_norm_bwd_params",
            (x.dtype,),
            _col_grid(cols),
            _COLS_BLOCK,
            (dgamma, dbeta, g, x, mean, rstd, r, c),
        )
    elif cols:
        dgamma.fill(0)
        dbeta.fill(0)
    return dx, dgamma, dbeta


# ---- optimizers (in place) ----


def _opt_check(fn, p, g, **state):
    _check(fn, "p", p, _WITH_HALF)
    _check(fn, "g", g, like=p)
    for k, a in state.items():
        if a is not None:
            _check(fn, k, a, like=p)


@entry_point
def adam_update(p, g, m, v, vhat, alpha, b1, b2, eps, lr, wd=0.0):
    """Adam/AdamW/AMSGrad step in place; alpha = adam_alpha(lr, b1, b2, t, p.dtype); vhat=None: no amsgrad."""
    _opt_check("adam_update", p, g, m=m, v=v, vhat=vhat)
    S = _scalar_type(p.dtype)
    _elementwise("adam_update", p, p, m, v, _ptr(vhat), g, S(alpha), S(1 - b1), S(1 - b2), S(eps), S(lr), S(wd))


@entry_point
def adam_multi_update(ps, gs, ms, vs, vhats, alpha, b1, b2, eps, lr, wd=0.0):
    """adam_update over many tensors of one dtype in one launch (vhats: list or None)."""
    fn = "adam_multi_update"
    check_adam_lists(fn, ps, gs, ms, vs, vhats, lambda k, p, g, m, v, vh: _opt_check(fn, p, g, m=m, v=v, vhat=vh))
    n = len(ps)
    if n == 0:
        return
    S = _scalar_type(ps[0].dtype)
    scalars = (S(alpha), S(1 - b1), S(1 - b2), S(eps), S(lr), S(wd))
    for lo in range(0, n, 65535):  # gridDim.y limit
        sl = slice(lo, lo + 65535)
        lists = (ps[sl], ms[sl], vs[sl], None if vhats is None else vhats[sl], gs[sl])
        tables, longest = _pointer_tables(lists)
        if longest:
            _launch(fn, (ps[0].dtype,), (_grid(longest)[0], len(lists[0])), (BLOCK,), tables + scalars)


# Pointer tables for the multi-tensor kernels. The rows of the parameters and their slots are
# cached by the arrays' identities (the gradients are new arrays every step, so their row is
# filled per call); one host-to-device copy per call carries the whole table.
_TABLES = {}
_TABLES_MAX = 4


def _pointer_tables(lists):
    """(ps, ms, vs, vhats or None, gs) -> ((device pointer arrays..., device sizes), largest size)."""
    state = lists[:-1]
    key = tuple(id(a) for lst in state if lst is not None for a in lst)
    hit = _TABLES.get(key)
    if hit is None:
        host, sizes = _host_table(lists, slice(None))  # the gradients' row is filled below, per call
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.pop(next(iter(_TABLES)))
        # the entry keeps the arrays alive, so their ids cannot be reused while it is cached
        hit = _TABLES[key] = (host, int(sizes.max()), state)
    host, longest, _ = hit
    host[-2] = [g.data.ptr for g in lists[-1]]
    cp = _cp()
    dev = cp.asarray(host)
    rows = tuple(_NULL if lst is None else dev[r] for r, lst in enumerate(lists))
    return rows + (dev[-1].view(cp.int64),), longest


# ---- device-step optimizer updates (capturable in a CUDA graph) ----
# Every per-step scalar is read on the device (Adam's t from the optimizer's int64 iteration counter), and a
# warmed call copies nothing from the host: the pointer tables of the parameters, slots AND gradients, the
# sizes and the alpha scalar live in device memory, built on the first call and reused while arrays with the
# same pointers, shapes, strides and dtypes are passed (as in a CUDA graph segment, whose gradient buffers are
# stable). A call with other arrays rebuilds them with a host-to-device copy; while the stream captures, that
# copy is from pinned memory the graph keeps (_table_to_device). The tables live in a holder dict the caller
# owns (`tables=`, one entry per launcher, replaced by a rebuild: a graph captured with the old entry must
# not be launched again); without one, a module-wide holder.
_DEV_TABLES: dict = {}


def capturing() -> bool:
    """True while the current CuPy stream is capturing a CUDA graph (False without CuPy)."""
    cp = backend.cupy()
    return cp is not None and bool(cp.cuda.get_current_stream().is_capturing())


def _dev_tables(fn, lists, check, tables, scalar_dtype=None):
    """The device tables of `lists` (lists of arrays, or None; lists[0] the parameters), cached in the holder
    dict `tables`: ([(row args..., sizes), grid, table] per chunk of 65535 tensors, scalar buffer or None)."""
    holder = _DEV_TABLES if tables is None else tables
    try:
        key = (np.dtype(scalar_dtype).str if scalar_dtype is not None else None,) + tuple(
            None if lst is None else tuple((a.data.ptr, a.shape, a.strides, a.dtype.str) for a in lst)
            for lst in lists
        )
    except AttributeError:  # not cupy arrays: check() says which
        check()
        raise
    hit = holder.get(fn)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    check()
    cp = _cp()
    ps = lists[0]
    chunks = []
    for lo in range(0, len(ps), 65535):  # gridDim.y limit
        sl = slice(lo, lo + 65535)
        k = len(ps[sl])
        host, sizes = _host_table(lists, sl)
        dev, pinned = _table_to_device(cp, host)
        rows = tuple(_NULL if lst is None else dev[r] for r, lst in enumerate(lists))
        longest = int(sizes.max())
        if longest:
            chunks.append((rows + (dev[-1].view(cp.int64),), (_grid(longest)[0], k), (dev, pinned)))
    scalar = None if scalar_dtype is None else cp.zeros(1, scalar_dtype)
    holder[fn] = (key, chunks, scalar)
    return chunks, scalar


def _host_table(lists, sl):
    """(table, sizes) for the tensors sl of `lists` (lists of cupy arrays, or None; lists[0] the
    parameters): a row of device pointers per list (zeros for None), then the parameters' sizes."""
    k = len(lists[0][sl])
    host = np.zeros((len(lists) + 1, k), np.uint64)
    for row, lst in enumerate(lists):
        if lst is not None:
            host[row] = [a.data.ptr for a in lst[sl]]
    sizes = np.array([a.size for a in lists[0][sl]], np.int64)
    host[-1] = sizes.view(np.uint64)
    return host, sizes


def _table_to_device(cp, host):
    """(host, a NumPy table, as a device array; what must stay alive with it). While a graph captures (a
    segment's gradient buffers get their addresses only then) the copy is from pinned memory, which a capture
    records as a copy node: every replay of the graph reads that pinned buffer, so it is kept with the table."""
    if not capturing():
        return cp.asarray(host), None
    mem = cp.cuda.alloc_pinned_memory(host.nbytes)
    pinned = np.frombuffer(mem, host.dtype, host.size).reshape(host.shape)
    pinned[...] = host
    dev = cp.empty(host.shape, host.dtype)
    dev.set(pinned, stream=cp.cuda.get_current_stream())
    return dev, (mem, pinned)


def _check_counter(fn, iterations):
    _check(fn, "iterations", iterations, (np.dtype(np.int64),))
    if iterations.size != 1:
        raise ValueError("%s: iterations must have 1 element, got shape %s" % (fn, tuple(iterations.shape)))


@entry_point
def adam_multi_update_dev(ps, gs, ms, vs, vhats, iterations, lr, b1, b2, eps, wd=0.0, tables=None):
    """adam_multi_update with alpha formed on the device for t = iterations + 1 (the optimizer's int64 counter,
    a 1-element cupy array, read and not written: step_increment advances it after the step's updates).
    b1, b2: the optimizer's betas (alpha uses float32(b), as the host's adam_alpha is called).
    tables: the caller's holder dict of the device tables (_DEV_TABLES). Capturable once a first call has
    compiled the kernels."""
    fn = "adam_multi_update_dev"
    lists = (ps, ms, vs, vhats, gs)

    def check():
        check_adam_lists(fn, ps, gs, ms, vs, vhats, lambda k, p, g, m, v, vh: _opt_check(fn, p, g, m=m, v=v, vhat=vh))
        _check_counter(fn, iterations)

    if not ps:
        return
    S = _scalar_type(ps[0].dtype)
    chunks, alpha = _dev_tables(fn, lists, check, tables, S)
    alpha_scalars, update_scalars = adam_dev_scalars(ps[0].dtype, lr, b1, b2, eps, wd)
    _launch("adam_dev_scalars", (np.dtype(S),), (1,), (32,), (iterations, alpha) + alpha_scalars)
    for args, grid, _ in chunks:
        _launch(fn, (ps[0].dtype,), grid, (BLOCK,), args + (alpha,) + update_scalars)


def adam_dev_scalars(dtype, lr, b1, b2, eps, wd):
    """The by-value scalars of (adam_dev_scalars, adam_multi_update_dev) for parameters of `dtype`, as the
    host path forms them: alpha from float32(b1), float32(b2) (Optimizer's f32), om_b = 1 - b in double."""
    S = _scalar_type(dtype)
    return (S(lr), S(np.float32(b1)), S(np.float32(b2))), (S(1 - b1), S(1 - b2), S(eps), S(lr), S(wd))


def sgd_multi_scalars(dtype, lr, momentum, nesterov, wd):
    """The by-value scalars of sgd_multi_update for parameters of `dtype`."""
    S = _scalar_type(dtype)
    return (S(lr), S(momentum), np.int32(bool(nesterov)), S(wd))


@entry_point
def sgd_multi_update(ps, gs, ms, lr, momentum=0.0, nesterov=False, wd=0.0, tables=None):
    """sgd_update over many tensors of one dtype in one launch (ms: the momentum buffers, or None for plain
    SGD). No per-step scalar; tables: as adam_multi_update_dev; capturable once warmed with these arrays."""
    fn = "sgd_multi_update"
    lists = (ps, ms, gs)

    def check():
        n = len(ps)
        for nm, lst in (("gs", gs),) + ((("ms", ms),) if ms is not None else ()):
            if len(lst) != n:
                raise ValueError("%s: %s has %d tensors, expected %d like ps" % (fn, nm, len(lst), n))
        for k in range(n):
            _opt_check("%s (tensor %d)" % (fn, k), ps[k], gs[k], m=None if ms is None else ms[k])
            if ps[k].dtype != ps[0].dtype:
                raise ValueError("%s: ps[%d] has dtype %s, expected %s like ps[0]" % (fn, k, ps[k].dtype, ps[0].dtype))

    if not ps:
        return
    chunks, _ = _dev_tables(fn, lists, check, tables)
    scalars = sgd_multi_scalars(ps[0].dtype, lr, momentum, nesterov, wd)
    for args, grid, _ in chunks:
        _launch(fn, (ps[0].dtype,), grid, (BLOCK,), args + scalars)


@entry_point
def step_increment(iterations):
    """iterations += 1 on the device (the int64 counter of the device-step updates); capturable."""
    _check_counter("step_increment", iterations)
    _launch("step_increment", (iterations.dtype,), (1,), (32,), (iterations,))


@entry_point
def sgd_update(p, g, lr, m=None, momentum=0.0, nesterov=False, wd=0.0):
    """SGD in place; with momentum buffer m: m = m*momentum - g*lr; p += m (or nesterov)."""
    _opt_check("sgd_update", p, g, m=m)
    S = _scalar_type(p.dtype)
    if m is None:
        _elementwise("sgd_update", p, p, g, S(lr), S(wd))
    else:
        _elementwise("sgd_momentum_update", p, p, m, g, S(lr), S(momentum), np.int32(bool(nesterov)), S(wd))


@entry_point
def rmsprop_update(p, g, v, lr, rho, eps, m=None, momentum=0.0, mg=None, wd=0.0):
    """RMSprop in place (eps inside the sqrt, as Keras); m: momentum buffer, mg: centered mean."""
    _opt_check("rmsprop_update", p, g, v=v, m=m, mg=mg)
    S = _scalar_type(p.dtype)
    _elementwise("rmsprop_update", p, p, v, _ptr(m), _ptr(mg), g, S(lr), S(rho), S(1 - rho), S(momentum), S(eps),
                 S(wd))


@entry_point
def adagrad_update(p, g, acc, lr, eps, wd=0.0):
    """Adagrad in place: acc += g^2; p -= lr*g/sqrt(acc + eps)."""
    _opt_check("adagrad_update", p, g, acc=acc)
    S = _scalar_type(p.dtype)
    _elementwise("adagrad_update", p, p, acc, g, S(lr), S(eps), S(wd))


@entry_point
def lion_update(p, g, m, lr, b1, b2, wd=0.0):
    """Lion in place: p -= lr*sign(m*b1 + g*(1-b1)); m = m*b2 + g*(1-b2)."""
    _opt_check("lion_update", p, g, m=m)
    S = _scalar_type(p.dtype)
    _elementwise("lion_update", p, p, m, g, S(lr), S(b1), S(1) - S(b1), S(b2), S(1) - S(b2), S(wd))


# ---- accumulation ----


@entry_point
def accumulate_(a, b):
    """a += b in place; returns a."""
    _check("accumulate_", "a", a, _WITH_HALF)
    _check("accumulate_", "b", b, like=a)
    _elementwise("accumulate", a, a, b)
    return a


@entry_point
def scatter_add_rows(out, idx, src, deterministic=False):
    """out[idx[i], :] += src[i, :] in place (rows outside out are skipped); returns out.

    deterministic=False: atomics (fast; float sums vary run to run with repeated
    indices). True: sorts idx and sums each run of equal indices in order."""
    fn = "scatter_add_rows"
    _check(fn, "out", out, _WITH_HALF)
    if out.ndim != 2:
        raise ValueError("%s: out must be 2-D [rows, C], got shape %s" % (fn, tuple(out.shape)))
    _check(fn, "idx", idx, (np.dtype(np.int32), np.dtype(np.int64)))
    if idx.ndim != 1:
        raise ValueError("%s: idx must be 1-D, got shape %s" % (fn, tuple(idx.shape)))
    _check(fn, "src", src, (out.dtype,), (idx.size, out.shape[1]))
    nidx, cols = idx.size, out.shape[1]
    if not nidx or not cols:
        return out
    types = (out.dtype, idx.dtype)
    if not deterministic:
        _launch(
            fn,
            types,
            _grid(nidx * cols),
            (BLOCK,),
            (out, idx, src, np.int64(nidx), np.int32(cols), np.int64(out.shape[0])),
        )
        return out
    cp = _cp()
    perm = cp.argsort(idx).astype(idx.dtype)  # CuPy sorts with a stable (thrust) sort
    sidx = idx[perm]
    starts = cp.flatnonzero(cp.concatenate([cp.ones(1, bool), sidx[1:] != sidx[:-1]]))
    seg = cp.concatenate([starts, cp.asarray([nidx])]).astype(cp.int64)
    seg_row = sidx[starts].astype(idx.dtype)
    nseg = int(starts.size)
    _launch(
        "scatter_add_rows_sorted",
        types,
        _grid(nseg * cols),
        (BLOCK,),
        (out, src, perm, seg, seg_row, np.int64(nseg), np.int32(cols), np.int64(out.shape[0])),
    )
    return out


# ---- GEMM (kernels/gemm.cu) ----

_GEMM_TILE = 64  # gemm.cu's GEMM_BM and GEMM_BN
_GEMM_BK = 16  # gemm.cu's GEMM_BK
_GEMM_BLOCK = (256,)
_GEMM_SPLIT_MIN_K = 128  # the least k a split sums (8 steps of the tile loop)
_GEMM_MAX_SPLITS = 16
_INT_MAX = 2**31 - 1


def _cdiv(a, b):
    return -(-a // b)


def _gemm_splits(m, n, k, sms):
    """(splits, k_split) for gemm_tiled: split k when C has fewer 64 x 64 tiles than the GPU multiprocessors (a
    32-row batch times a 512-wide layer is 8 tiles), so more blocks run, each summing a shorter stretch of k;
    every split sums at least _GEMM_SPLIT_MIN_K, k_split a multiple of the k step."""
    tiles = _cdiv(m, _GEMM_TILE) * _cdiv(n, _GEMM_TILE)
    splits = min(_cdiv(sms, tiles), k // _GEMM_SPLIT_MIN_K, _GEMM_MAX_SPLITS)
    if splits <= 1:
        return 1, k
    k_split = _cdiv(_cdiv(k, splits), _GEMM_BK) * _GEMM_BK
    return _cdiv(k, k_split), k_split


def _gemm_layout(x):
    """(trans, ld) with which gemm_tiled reads the 2-D array x, or None: rows with unit column stride (trans 0,
    ld = the row stride) or the transpose of that (unit row stride: trans 1, ld = the column stride), strides
    in elements and non-negative. A dimension of size 1 has no stride to honour."""
    rows, cols = x.shape
    if x.size == 0:
        return 0, max(cols, 1)
    item = x.dtype.itemsize
    if any(s % item or s < 0 for s in x.strides):
        return None
    s0, s1 = (s // item for s in x.strides)
    if cols == 1 or s1 == 1:
        return 0, (s0 if rows > 1 else cols)
    if rows == 1 or s0 == 1:
        return 1, (s1 if cols > 1 else rows)
    return None


def _gemm_problem(a, b):
    """Why gemm(a, b) cannot take these operands (a message naming the argument), or None."""
    for name, x in (("a", a), ("b", b)):
        if backend.xp_of(x) is np and type(x) is not np.ndarray:
            return "%s must be a numpy or cupy ndarray, got %s" % (name, type(x).__name__)
        if x.ndim != 2:
            return "%s must be 2-D, got shape %s" % (name, tuple(x.shape))
        if x.dtype not in _FLOATS:
            return "%s has dtype %s, expected float32 or float64" % (name, x.dtype)
        if max(x.shape) > _INT_MAX:
            return "%s has shape %s, expected dimensions below 2**31" % (name, tuple(x.shape))
        if _gemm_layout(x) is None:
            return ("%s has strides %s (itemsize %d), expected a row-major view with unit column stride or the "
                    "transpose of one, non-negative strides" % (name, tuple(x.strides), x.dtype.itemsize))
    if backend.xp_of(a) is not backend.xp_of(b):
        return "a and b must both be numpy or both cupy arrays, got %s and %s" % (
            type(a).__module__ + "." + type(a).__name__, type(b).__module__ + "." + type(b).__name__)
    if b.dtype != a.dtype:
        return "b has dtype %s, expected %s (a's dtype)" % (b.dtype, a.dtype)
    if a.shape[1] != b.shape[0]:
        return "a has shape %s and b %s, expected b.shape[0] == a.shape[1]" % (tuple(a.shape), tuple(b.shape))
    return None


def gemm_serves(a, b) -> bool:
    """Whether gemm(a, b) takes these operands, for NumPy arrays too (so a host plan can ask): two 2-D arrays of
    one array module and dtype (float32 or float64), a.shape[1] == b.shape[0], each C-contiguous, F-contiguous
    (a transposed C-contiguous matrix) or a view with unit column (or row) stride, dimensions below 2**31. Does
    not look at the fused switch: the kernel is what keeps a matmul capturable."""
    return _gemm_problem(a, b) is None


def gemm_prepare(dtype):
    """Compiles and loads the GEMM kernels for `dtype` on the current device now, so that a first gemm inside a
    CUDA graph capture only launches (NVRTC and module loading are host work to keep out of a capture)."""
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise ValueError("gemm_prepare: dtype is %s, expected float32 or float64" % dt)
    for name in ("gemm_tiled", "gemm_sum_splits"):
        module("gemm").get_function(reg.kernel(name).name_expr(dt))
    _multiprocessors()


@entry_point
def gemm(a, b, out=None):
    """out = a @ b with accel's own GEMM kernel (kernels/gemm.cu; cuBLAS cannot be captured into a CUDA graph),
    on the current stream. a, b: cupy arrays gemm_serves takes (transposed or row-strided views run without a
    copy); out: None (a new C-contiguous [m, n] array) or a C-contiguous [m, n] array of their dtype that
    overlaps neither. k == 0 gives zeros; m == 0 or n == 0 launches nothing. Sums in the dtype (float32 or
    float64), in a fixed order: deterministic on one device (C with few tiles splits k by the multiprocessor
    count: a second launch adds the partials, from a [splits, m, n] workspace)."""
    fn = "gemm"
    cp = _cp()
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, cp.ndarray):
            raise ValueError("%s: %s must be a cupy.ndarray, got %s" % (fn, name, type(x).__name__))
    problem = _gemm_problem(a, b)
    if problem is not None:
        raise ValueError("%s: %s" % (fn, problem))
    (m, k), n = a.shape, b.shape[1]
    if out is not None:
        _check(fn, "out", out, (a.dtype,), (m, n))
        for name, x in (("a", a), ("b", b)):
            if out.size and x.size and backend.may_share_memory(out, x):
                raise ValueError("%s: out overlaps %s in memory (the kernel reads %s while it writes out)"
                                 % (fn, name, name))
    dev = cp.cuda.Device().id
    for name, x in (("a", a), ("b", b), ("out", out)):
        if x is not None and x.device.id != dev:
            raise ValueError("%s: %s is on device %d, expected the current device %d" % (fn, name, x.device.id, dev))
    if out is None:
        out = cp.empty((m, n), a.dtype)
    if m == 0 or n == 0:
        return out
    if k == 0:
        out.fill(0)
        return out
    (ta, lda), (tb, ldb) = _gemm_layout(a), _gemm_layout(b)
    splits, k_split = _gemm_splits(m, n, k, _multiprocessors())
    grid = (min(_cdiv(n, _GEMM_TILE), _INT_MAX), min(_cdiv(m, _GEMM_TILE), 65535), splits)  # tiles grid-strided
    dest = out if splits == 1 else cp.empty((splits, m, n), a.dtype)  # the partial sums of a split k
    _launch("gemm_tiled", (a.dtype,), grid, _GEMM_BLOCK,
            (dest, a, b, np.int32(m), np.int32(n), np.int32(k), np.int64(lda), np.int64(ldb), np.int64(n),
             np.int32(ta), np.int32(tb), np.int64(k_split), np.int64(m * n)))
    if splits > 1:
        _launch("gemm_sum_splits", (a.dtype,), _grid(m * n), (BLOCK,), (out, dest, np.int32(splits), np.int64(m * n)))
    return out
