"""Linear algebra: matmul (batched, broadcast batch), tensordot, einsum, and tf.linalg's decompositions (svd, qr,
cholesky, eigh), solves, inverse, determinants, diagonals and bands, each with its gradient rule."""

from __future__ import annotations

import collections

import numpy as np

from accel import backend, recorder
from accel.errors import InvalidArgumentError, NotFoundError
from accel.ops.core import add_array_functions, apply, convert, convert_pair, defop
from accel.ops.elementwise import log
from accel.ops.reduce import reduce_sum
from accel.ops.shape import n_ary, reshape, transpose
from accel.tensor import Tensor


def _mT(F, a):
    return F.swapaxes(a, -1, -2)


# batch dimensions that were broadcast are summed back by the tape
_matmul = defop("matmul", lambda xp, a, b: xp.matmul(a, b),
                lambda F, g, out, a, b: F.matmul(g, _mT(F, b)),
                lambda F, g, out, a, b: F.matmul(_mT(F, a), g))


def _swap_last(t):
    nd = t._data.ndim
    return transpose(t, tuple(range(nd - 2)) + (nd - 1, nd - 2))


def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
           a_is_sparse=False, b_is_sparse=False, output_type=None, name=None):
    """Matrix product of the last two axes; leading (batch) axes broadcast."""
    a, b = convert_pair(a, b, "matmul")
    if a._data.ndim < 2 or b._data.ndim < 2:
        raise InvalidArgumentError(None, None, "matmul: both inputs need rank >= 2, got shapes %s and %s (use "
                                   "accel.tensordot or reshape a vector to [n, 1])"
                                   % (tuple(a._data.shape), tuple(b._data.shape)))
    if transpose_a or adjoint_a:
        a = _swap_last(a)
    if transpose_b or adjoint_b:
        b = _swap_last(b)
    if a._data.shape[-1] != b._data.shape[-2]:
        raise InvalidArgumentError(None, None, "matmul: inner dimensions differ: a has shape %s, b has shape %s "
                                   "(a's last axis %d must equal b's second-to-last %d)"
                                   % (tuple(a._data.shape), tuple(b._data.shape), a._data.shape[-1],
                                      b._data.shape[-2]))
    return apply(_matmul, (a, b))


def tensordot(a, b, axes, name=None):
    a, b = convert_pair(a, b, "tensordot")
    na, nb = a._data.ndim, b._data.ndim
    if isinstance(axes, (int, np.integer)):
        ax_a = list(range(na - int(axes), na))
        ax_b = list(range(int(axes)))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    for axes_t, nd, nm in ((ax_a, na, "a"), (ax_b, nb, "b")):
        for x in axes_t:
            if not -nd <= x < nd:
                raise InvalidArgumentError(None, None, "tensordot: axis %d is out of range for %s of rank %d"
                                           % (x, nm, nd))
    if len(ax_a) != len(ax_b):
        raise InvalidArgumentError(None, None, "tensordot: axes pair %s and %s differ in length" % (ax_a, ax_b))
    ax_a = [x % na for x in ax_a]
    ax_b = [x % nb for x in ax_b]
    for i, j in zip(ax_a, ax_b):
        if a._data.shape[i] != b._data.shape[j]:
            raise InvalidArgumentError(None, None, "tensordot: axis %d of a (size %d) and axis %d of b (size %d) "
                                       "differ" % (i, a._data.shape[i], j, b._data.shape[j]))
    free_a = [i for i in range(na) if i not in ax_a]
    free_b = [i for i in range(nb) if i not in ax_b]
    sa, sb = a._data.shape, b._data.shape
    k = int(np.prod([sa[i] for i in ax_a])) if ax_a else 1
    am = reshape(transpose(a, free_a + ax_a), (-1 if free_a else 1, k))
    bm = reshape(transpose(b, ax_b + free_b), (k, -1 if free_b else 1))
    return reshape(matmul(am, bm), tuple(sa[i] for i in free_a) + tuple(sb[i] for i in free_b))


def _parse_einsum(equation, n):
    eq = equation.replace(" ", "")
    if "..." in eq:
        raise NotImplementedError("einsum: '...' is not supported yet; write the axes out")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = lhs.split(",")
    if len(ins) != n:
        raise ValueError("einsum: equation %r has %d operands, got %d tensors" % (equation, len(ins), n))
    return ins, out


def _einsum_rule(k):
    def rule(F, g, out, *xs, ins, out_sub, sizes):
        others = [x for j, x in enumerate(xs) if j != k]
        other_subs = [s for j, s in enumerate(ins) if j != k]
        mine = ins[k]
        if len(set(mine)) != len(mine):
            raise NotImplementedError("einsum gradient: repeated index within one operand (%r)" % mine)
        avail = set(out_sub) | set("".join(other_subs))
        reduced = "".join(c for c in mine if c in avail)
        eq = ",".join([out_sub] + other_subs) + "->" + reduced
        gk = F.einsum(eq, g, *others)
        if reduced != mine:  # indices summed only inside this operand: broadcast back
            shape_r = tuple(sizes[c] if c in reduced else 1 for c in mine)
            order = [reduced.index(c) for c in mine if c in reduced]
            gk = F.transpose(gk, order) if order != sorted(order) else gk
            gk = F.broadcast_to(F.reshape(gk, shape_r), tuple(sizes[c] for c in mine))
        return gk

    return rule


def _einsum_fwd(xp, *xs, ins, out_sub, sizes):
    return xp.einsum(",".join(ins) + "->" + out_sub, *xs)


_einsum = defop("einsum", _einsum_fwd, _einsum_rule(0))  # n inputs: n_ary gives it n rules


def einsum(equation, *inputs, **kwargs):
    ts = [convert(x) for x in inputs]
    ins, out_sub = _parse_einsum(equation, len(ts))
    sizes = {}
    for sub, t in zip(ins, ts):
        if len(sub) != t._data.ndim:
            raise InvalidArgumentError(None, None, "einsum: operand %r has rank %d but the equation gives it %d "
                                       "indices" % (sub, t._data.ndim, len(sub)))
        for c, s in zip(sub, t._data.shape):
            if sizes.setdefault(c, s) != s:
                raise InvalidArgumentError(None, None, "einsum: index %r has sizes %d and %d" % (c, sizes[c], s))
    op = n_ary(_einsum, _einsum_rule, len(ts))
    return apply(op, tuple(ts), {"ins": tuple(ins), "out_sub": out_sub, "sizes": sizes})


# --- tf.linalg: decompositions, solves, inverses, determinants --------------------------------
# Rules follow TF 2.21's linalg_grad.py (Giles 2008; Murray 2016 for cholesky; Walter & Lehmann / Roberts
# et al. 2020 for qr; Townsend 2016 for svd), with real dtypes only: accel has no complex dtypes.

_LinAlgError = np.linalg.LinAlgError  # CuPy raises NumPy's class too
Qr = collections.namedtuple("Qr", ["q", "r"])
LogMatrixDeterminant = collections.namedtuple("LogMatrixDeterminant", ["sign", "log_abs_determinant"])
_F32_F64 = (np.dtype(np.float32), np.dtype(np.float64))
_WITH_F16 = (np.dtype(np.float16),) + _F32_F64


def _check_matrix(t, fname, square=True, dtypes=_F32_F64, what="input"):
    """TF's checks: rank >= 2, square where the op needs it, and a dtype the op has a kernel for."""
    dt = t._data.dtype
    if dt not in dtypes:
        names = ", ".join(d.name for d in dtypes)
        if dt.kind == "f":  # TF has no CPU kernel for these: NotFoundError ("Could not find device for node")
            raise NotFoundError(None, None, "%s: no kernel for dtype %s (TF 2.21 has none either); %s must be one "
                                "of %s: cast it first" % (fname, dt, what, names))
        raise InvalidArgumentError(None, None, "%s: %s has dtype %s, which is not in the list of allowed values: %s"
                                   % (fname, what, dt, names))
    shape = tuple(t._data.shape)
    if len(shape) < 2:
        raise InvalidArgumentError(None, None, "%s: %s must have rank >= 2 (a matrix or a batch of them), got shape %s"
                                   % (fname, what, shape))
    if square and shape[-1] != shape[-2]:
        raise InvalidArgumentError(None, None, "%s: %s must be a square matrix (or a batch of them), got shape %s"
                                   % (fname, what, shape))
    return t


def _compute_dtype(xp, a):
    """NumPy and CuPy have no float16 LAPACK: such inputs are computed in float32 and cast back."""
    return a.astype(xp.float32) if a.dtype == np.float16 else a


def _any(xp, mask):
    return bool(xp.any(mask))


def _not_invertible(xp, a):
    """True where some matrix of the batch has a zero (or NaN) pivot in its LU factorization, as TF checks."""
    sign, _ = xp.linalg.slogdet(a)
    return _any(xp, ~(xp.abs(sign) > 0))


def _per_matrix(xp, f, a, fill_shapes):
    """Runs f on each matrix of the batch; one that fails gives NaNs (as TF's per-matrix kernels do)."""
    flat = a.reshape((-1,) + a.shape[-2:])
    outs = [xp.empty((flat.shape[0],) + s, a.dtype) for s in fill_shapes]
    for i in range(flat.shape[0]):
        try:
            res = f(flat[i])
        except _LinAlgError:
            res = [xp.full(s, xp.nan, a.dtype) for s in fill_shapes]
        for o, r in zip(outs, res):
            o[i] = r
    return [o.reshape(a.shape[:-2] + s) for o, s in zip(outs, fill_shapes)]


def inv_array(xp, a, adjoint=False):
    ac = _compute_dtype(xp, a)
    try:
        out = xp.linalg.inv(ac)
    except _LinAlgError:
        out = None
    if out is None or (not bool(xp.isfinite(out).all()) and _not_invertible(xp, ac)):
        raise InvalidArgumentError(None, None, "inv: Input is not invertible (a matrix of the batch is singular "
                                   "or holds NaN)")
    if adjoint:
        out = _mT(xp, out)
    return out.astype(a.dtype, copy=False)


def solve_array(xp, a, b, adjoint=False):
    if adjoint:
        a = _mT(xp, a)
    try:
        out = xp.linalg.solve(a, b)
    except _LinAlgError:
        out = None
    if out is None or (not bool(xp.isfinite(out).all()) and _not_invertible(xp, a)):
        raise InvalidArgumentError(None, None, "solve: Input matrix is not invertible (a matrix of the batch is "
                                   "singular or holds NaN)")
    return out


_SUBSTITUTION_MAX_N = 32  # on the CPU up to this size, row-by-row substitution over the whole batch beats a loop


def triangular_solve_array(xp, a, b, lower=True, adjoint=False):
    """Solves a x = b (or a^T x = b) reading only a's lower (or upper) triangle; batch dimensions broadcast.
    A zero on the diagonal gives inf/NaN, as in TF (no error)."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = xp.broadcast_to(a, batch + a.shape[-2:])
    b = xp.broadcast_to(b, batch + b.shape[-2:])
    if adjoint:
        a = _mT(xp, a)
        lower = not lower
    n = a.shape[-1]
    if b.size == 0:
        return xp.zeros(b.shape, b.dtype)
    if xp is not np:
        try:  # cuBLAS trsm, batched (CuPy >= 13); it divides by a zero pivot like TF
            return backend.cupyx().scipy.linalg.solve_triangular(a, b, lower=lower)
        except ValueError:
            return _substitute(xp, a, b, lower)
    if n > _SUBSTITUTION_MAX_N:
        try:
            from scipy.linalg import solve_triangular  # noqa: PLC0415
        except ImportError:
            return _substitute(xp, a, b, lower)
        fa = a.reshape((-1, n, n))
        fb = b.reshape((-1,) + b.shape[-2:])
        out = np.empty(fb.shape, b.dtype)
        for i in range(fa.shape[0]):
            try:
                out[i] = solve_triangular(fa[i], fb[i], lower=lower, check_finite=False)
            except _LinAlgError:  # SciPy refuses an exactly singular matrix; TF divides by zero
                out[i] = _substitute(xp, fa[i], fb[i], lower)
        return out.reshape(b.shape)
    return _substitute(xp, a, b, lower)


def _substitute(xp, a, b, lower):
    n = a.shape[-1]
    x = xp.empty(b.shape, b.dtype)
    rows = range(n) if lower else range(n - 1, -1, -1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero pivot gives inf/NaN, as in TF
        for i in rows:
            r = b[..., i, :]
            if lower and i:
                r = r - xp.matmul(a[..., i:i + 1, :i], x[..., :i, :])[..., 0, :]
            elif not lower and i < n - 1:
                r = r - xp.matmul(a[..., i:i + 1, i + 1:], x[..., i + 1:, :])[..., 0, :]
            x[..., i, :] = r / a[..., i, i][..., None]
    return x


def band_part_array(xp, x, num_lower, num_upper):
    m, n = x.shape[-2:]
    d = xp.arange(m)[:, None] - xp.arange(n)[None, :]  # row - column
    keep = xp.ones((m, n), bool)
    if num_lower >= 0:
        keep &= d <= num_lower
    if num_upper >= 0:
        keep &= -d <= num_upper
    return xp.where(keep, x, xp.zeros((), x.dtype))


def diag_part_array(xp, x, k=0):
    return xp.diagonal(x, offset=k, axis1=-2, axis2=-1).copy()


def diag_array(xp, d, k=0, num_rows=-1, num_cols=-1, padding_value=0):
    """The matrices with d on diagonal k; num_rows/num_cols default to the smallest that fit (TF's rules)."""
    num_rows, num_cols = _diag_size(d.shape[-1], k, num_rows, num_cols)
    out = xp.full(d.shape[:-1] + (num_rows, num_cols), padding_value, d.dtype)
    i = xp.arange(d.shape[-1])
    out[..., i + max(-k, 0), i + max(k, 0)] = d
    return out


def _diag_size(length, k, num_rows, num_cols):
    min_rows = length - min(k, 0)
    min_cols = length + max(k, 0)
    if num_rows == -1 and num_cols == -1:
        num_rows = num_cols = max(min_rows, min_cols)
    elif num_rows == -1:
        num_rows = min_rows
    elif num_cols == -1:
        num_cols = min_cols
    if num_rows < min_rows:
        raise InvalidArgumentError(None, None, "diag: The number of rows is too small: num_rows=%d, but a diagonal "
                                   "of length %d at k=%d needs at least %d" % (num_rows, length, k, min_rows))
    if num_cols < min_cols:
        raise InvalidArgumentError(None, None, "diag: The number of columns is too small: num_cols=%d, but a "
                                   "diagonal of length %d at k=%d needs at least %d" % (num_cols, length, k, min_cols))
    if num_rows != min_rows and num_cols != min_cols:
        raise InvalidArgumentError(None, None, "diag: The number of rows or columns is not consistent with k=%d and "
                                   "a diagonal of length %d: num_rows=%d, num_cols=%d (one of them must be the "
                                   "smallest that fits, %d rows or %d columns)"
                                   % (k, length, num_rows, num_cols, min_rows, min_cols))
    return num_rows, num_cols


# --- helpers for the rules (F: ArrayNS or TensorNS) ---

# the array code the rules reach through F on raw arrays (F.solve, F.band_part, ...)
add_array_functions(solve=solve_array, triangular_solve=triangular_solve_array, inv=inv_array,
                    band_part=band_part_array, matrix_diag=diag_array, matrix_diag_part=diag_part_array)


def _safe_reciprocal(x, epsilon=1e-20):
    """TF's Lorentz-broadened 1/x: 0 at x == 0, so degenerate eigen/singular values give 0, not inf."""
    return x * (1.0 / (x * x + epsilon))


def _zero_diag(F, x):
    return x - F.matrix_diag(F.matrix_diag_part(x))


def _col(F, x):
    """[..., k] -> [..., k, 1] (x[..., :, None])."""
    return F.expand_dims(x, -1)


def _row(F, x):
    """[..., k] -> [..., 1, k] (x[..., None, :])."""
    return F.expand_dims(x, -2)


def _cols(F, x, start, stop):
    return F.getitem(x, (Ellipsis, slice(None), slice(start, stop)))


# --- ops ---

def _inv_fwd(xp, a, adjoint):
    return inv_array(xp, a, adjoint)


def _inv_rule(F, g, out, a, adjoint):
    if adjoint:  # out = a^{-T}
        return -F.matmul(out, F.matmul(_mT(F, g), out))
    return -F.matmul(_mT(F, out), F.matmul(g, _mT(F, out)))


_inv = defop("matrix_inverse", _inv_fwd, _inv_rule, save="out")


def inv(input, adjoint=False, name=None):  # noqa: A002
    """tf.linalg.inv: the inverse of each square matrix (its adjoint with adjoint=True); a singular matrix
    raises InvalidArgumentError("Input is not invertible."), as TF does."""
    x = _check_matrix(convert(input), "inv", dtypes=_WITH_F16)
    return apply(_inv, (x,), {"adjoint": bool(adjoint)})


def _solve_fwd(xp, a, b, adjoint):
    return solve_array(xp, a, b, adjoint)


def _solve_grad_b(F, g, a, adjoint):
    return F.solve(a, g, not adjoint)


def _solve_rule_a(F, g, out, a, b, adjoint):
    gb = _solve_grad_b(F, g, a, adjoint)
    return -F.matmul(out, _mT(F, gb)) if adjoint else -F.matmul(gb, _mT(F, out))


_solve = defop("matrix_solve", _solve_fwd,
               _solve_rule_a, lambda F, g, out, a, b, adjoint: _solve_grad_b(F, g, a, adjoint), save="inputs+out")


def solve(matrix, rhs, adjoint=False, name=None):
    """tf.linalg.solve: x with matrix @ x = rhs (matrix^T @ x = rhs with adjoint=True). matrix [..., M, M], rhs
    [..., M, K] with the same batch dimensions (TF's MatrixSolve does not broadcast)."""
    a, b = convert_pair(matrix, rhs, "solve")
    _check_matrix(a, "solve", what="matrix")
    _check_matrix(b, "solve", square=False, what="rhs")
    sa, sb = tuple(a._data.shape), tuple(b._data.shape)
    if len(sa) != len(sb):
        raise InvalidArgumentError(None, None, "solve: All input tensors must have the same rank: matrix has shape "
                                   "%s, rhs has shape %s" % (sa, sb))
    if sa[:-2] != sb[:-2]:
        raise InvalidArgumentError(None, None, "solve: All input tensors must have the same outer dimensions: "
                                   "matrix has shape %s, rhs has shape %s" % (sa, sb))
    if sa[-1] != sb[-2]:
        raise InvalidArgumentError(None, None, "solve: Input matrix and rhs are incompatible: matrix has shape %s, "
                                   "rhs has shape %s (rhs needs %d rows)" % (sa, sb, sa[-1]))
    return apply(_solve, (a, b), {"adjoint": bool(adjoint)})


def _trisolve_fwd(xp, a, b, lower, adjoint):
    return triangular_solve_array(xp, a, b, lower, adjoint)


def _trisolve_rule_a(F, g, out, a, b, lower, adjoint):
    gb = F.triangular_solve(a, g, lower, not adjoint)
    ga = -F.matmul(out, _mT(F, gb)) if adjoint else -F.matmul(gb, _mT(F, out))
    return F.band_part(ga, -1, 0) if lower else F.band_part(ga, 0, -1)


def _trisolve_rule_b(F, g, out, a, b, lower, adjoint):
    return F.triangular_solve(a, g, lower, not adjoint)


_trisolve = defop("matrix_triangular_solve", _trisolve_fwd, _trisolve_rule_a, _trisolve_rule_b, save="inputs+out")


def triangular_solve(matrix, rhs, lower=True, adjoint=False, name=None):
    """tf.linalg.triangular_solve: solves with the lower (or upper) triangle of matrix only; batch dimensions
    broadcast. A zero on the diagonal gives inf/NaN, not an error (as in TF)."""
    a, b = convert_pair(matrix, rhs, "triangular_solve")
    _check_matrix(a, "triangular_solve", what="matrix")
    _check_matrix(b, "triangular_solve", square=False, what="rhs")
    sa, sb = tuple(a._data.shape), tuple(b._data.shape)
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise InvalidArgumentError(None, None, "triangular_solve: matrix and rhs must have compatible batch "
                                   "dimensions: %s vs. %s" % (sa, sb)) from None
    if sa[-1] != sb[-2]:
        raise InvalidArgumentError(None, None, "triangular_solve: matrix of shape %s and rhs of shape %s do not "
                                   "match: rhs needs %d rows" % (sa, sb, sa[-1]))
    return apply(_trisolve, (a, b), {"lower": bool(lower), "adjoint": bool(adjoint)})


def _det_rule(F, g, out, a):
    return _col(F, _col(F, g * out)) * F.inv(a, True)


_det = defop("matrix_determinant", lambda xp, a: xp.linalg.det(a), _det_rule, save="inputs+out")


def det(input, name=None):  # noqa: A002
    """tf.linalg.det: the determinant of each square matrix ([..., M, M] -> [...]); 1 for a 0x0 matrix."""
    x = _check_matrix(convert(input), "det")
    return apply(_det, (x,))


def _slogdet_fwd(xp, a):
    sign, logabs = xp.linalg.slogdet(a)
    return sign, logabs


def _slogdet_rule(F, g, out, a):
    # TF: the sign's gradient is ignored (it is piecewise constant)
    return _col(F, _col(F, g[1])) * F.inv(a, True)


_slogdet = defop("log_matrix_determinant", _slogdet_fwd, _slogdet_rule, multi_out=True)


def slogdet(input, name=None):  # noqa: A002
    """tf.linalg.slogdet: (sign, log_abs_determinant) of each square matrix; a singular one gives (0, -inf)."""
    x = _check_matrix(convert(input), "slogdet")
    return LogMatrixDeterminant(*apply(_slogdet, (x,)))


def _cholesky_fwd(xp, a):
    try:
        return xp.linalg.cholesky(a)
    except _LinAlgError:  # some matrix of the batch is not positive definite: TF gives it NaNs, the others stay
        n = a.shape[-1]
        nan_l = band_part_array(xp, xp.full((n, n), xp.nan, a.dtype), -1, 0)
        flat = a.reshape((-1, n, n))
        out = xp.empty(flat.shape, a.dtype)
        for i in range(flat.shape[0]):
            try:
                out[i] = xp.linalg.cholesky(flat[i])
            except _LinAlgError:
                out[i] = nan_l
        return out.reshape(a.shape)


def _cholesky_rule(F, g, out, a):
    # TF: grad_a = sym(L^{-T} Phi(L^T g) L^{-1}) with Phi = lower triangle, diagonal halved; two triangular solves
    # take the place of TF's explicit L^{-1}
    middle = F.matmul(_mT(F, out), g)
    middle = F.band_part(middle, -1, 0) - 0.5 * F.matrix_diag(F.matrix_diag_part(middle))
    y = F.triangular_solve(out, middle, True, True)  # L^{-T} middle
    ga = _mT(F, F.triangular_solve(out, _mT(F, y), True, True))  # y L^{-1}
    return 0.5 * (ga + _mT(F, ga))


_cholesky = defop("cholesky", _cholesky_fwd, _cholesky_rule, save="out")


def cholesky(input, name=None):  # noqa: A002
    """tf.linalg.cholesky: lower-triangular L with L L^T = input, reading only input's lower triangle. A matrix
    that is not positive definite gives NaNs in its lower triangle (TF 2.21 does not raise either)."""
    x = _check_matrix(convert(input), "cholesky")
    return apply(_cholesky, (x,))


def logdet(matrix, name=None):
    """tf.linalg.logdet: log(det(matrix)) of Hermitian positive-definite matrices, through the Cholesky factor
    (NaN where not positive definite, as in TF)."""
    chol = cholesky(matrix)
    return 2.0 * reduce_sum(log(diag_part(chol)), axis=-1)


def _eigh_fwd(xp, a):
    try:
        e, v = xp.linalg.eigh(a)
    except _LinAlgError:
        v = None
    if v is None or _any(xp, xp.isnan(v)):
        raise InvalidArgumentError(None, None, "eigh: Self-adjoint eigen decomposition was not successful. The "
                                   "input might not be valid (NaN in the lower triangle of a matrix)")
    return e, v


def _eigh_rule(F, g, out, a):
    ge, gv = g
    e, v = out
    f = _zero_diag(F, _safe_reciprocal(_row(F, e) - _col(F, e)))
    inner = F.matrix_diag(ge) + f * F.matmul(_mT(F, v), gv)
    ga = F.matmul(v, F.matmul(inner, _mT(F, v)))
    # the forward reads only the lower triangle: symmetrize and keep that triangle, diagonal once
    ga = F.band_part(ga + _mT(F, ga), -1, 0)
    return ga - 0.5 * F.matrix_diag(F.matrix_diag_part(ga))


_eigh = defop("self_adjoint_eig", _eigh_fwd, _eigh_rule, save="out", multi_out=True)


def eigh(tensor, name=None):
    """tf.linalg.eigh: (e, v), eigenvalues ascending and eigenvectors as columns, of each symmetric matrix;
    only the lower triangle is read. Eigenvector signs follow LAPACK (NumPy/CuPy), which may differ from TF's."""
    x = _check_matrix(convert(tensor), "eigh", what="tensor")
    return apply(_eigh, (x,))


def _svd_fwd(xp, a, full_matrices):
    m, n = a.shape[-2:]
    k = min(m, n)
    try:
        u, s, vh = xp.linalg.svd(a, full_matrices=full_matrices)
    except _LinAlgError:  # did not converge (NaN/inf): TF gives that matrix NaNs, the others stay
        ku, kv = (m, n) if full_matrices else (k, k)
        s, u, v = _per_matrix(xp, lambda x: _svd_one(xp, x, full_matrices), a, [(k,), (m, ku), (n, kv)])
        return s, u, v
    return s, u, _mT(xp, vh)


def _svd_one(xp, x, full_matrices):
    u, s, vh = xp.linalg.svd(x, full_matrices=full_matrices)
    return s, u, vh.T


def _svd_rule(F, g, out, a, full_matrices):
    gs, gu, gv = g
    s, u, v = out
    m, n = F.shape(a)[-2:]
    use_adjoint = m > n
    if use_adjoint:  # differentiate a^T = v s u^T and transpose at the end
        m, n = n, m
        u, v = v, u
        gu, gv = gv, gu
    if full_matrices and abs(m - n) > 1:
        raise NotImplementedError("svd gradient is not implemented for abs(m - n) > 1 when full_matrices is True "
                                  "(as in TF 2.21): got a matrix of shape %s; use full_matrices=False"
                                  % (tuple(F.shape(a)),))
    s2 = F.square(s)
    f = _zero_diag(F, _safe_reciprocal(_row(F, s2) - _col(F, s2)))
    v1 = _cols(F, v, None, m)
    gv1 = _cols(F, gv, None, m)
    f_u = f * F.matmul(_mT(F, u), gu)
    f_v = f * F.matmul(_mT(F, v1), gv1)
    # diag(s) products as broadcasts: X diag(s) = X * s[None, :], diag(s) X = s[:, None] * X
    term1_nouv = F.matrix_diag(gs) + (f_u + _mT(F, f_u)) * _row(F, s) + _col(F, s) * (f_v + _mT(F, f_v))
    ga = F.matmul(u, F.matmul(term1_nouv, _mT(F, v1)))
    if m != n:
        gv1t = _mT(F, gv1)
        term2_nous = gv1t - F.matmul(F.matmul(gv1t, v1), _mT(F, v1))
        if full_matrices:
            v2 = _cols(F, v, m, n)
            term2_nous = term2_nous - F.matmul(F.matmul(_mT(F, v1), _cols(F, gv, m, n)), _mT(F, v2))
        u_s_inv = u * _row(F, _safe_reciprocal(s))
        ga = ga + F.matmul(u_s_inv, term2_nous)
    return _mT(F, ga) if use_adjoint else ga


_svd = defop("svd", _svd_fwd, _svd_rule, save="inputs+out", multi_out=True)


def svd(tensor, full_matrices=False, compute_uv=True, name=None):
    """tf.linalg.svd: (s, u, v) with tensor = u diag(s) v^T (TF returns v, not v^T); only s with
    compute_uv=False. s is descending; singular-vector signs follow LAPACK and may differ from TF's."""
    x = _check_matrix(convert(tensor), "svd", square=False, what="tensor")
    if not compute_uv:
        # the same op with u and v left unused: their zero cotangents reduce the rule to TF's u diag(gs) v^T
        return apply(_svd, (x,), {"full_matrices": False})[0]
    return apply(_svd, (x,), {"full_matrices": bool(full_matrices)})


def _qr_fwd(xp, a, full_matrices):
    ac = _compute_dtype(xp, a)
    mode = "complete" if full_matrices else "reduced"
    if ac.ndim > 2 and xp is not np:  # CuPy's qr may take one matrix at a time
        try:
            q, r = xp.linalg.qr(ac, mode=mode)
        except (ValueError, _LinAlgError):
            m, n = ac.shape[-2:]
            p = m if full_matrices else min(m, n)
            q, r = _per_matrix(xp, lambda x: xp.linalg.qr(x, mode=mode), ac, [(m, p), (p, n)])
    else:
        q, r = xp.linalg.qr(ac, mode=mode)
    return q.astype(a.dtype, copy=False), r.astype(a.dtype, copy=False)


def _qr_tri(F, x, r):
    """x r^{-T} for upper-triangular r (TF's _TriangularSolve)."""
    return _mT(F, F.triangular_solve(r, _mT(F, x), False, False))


def _qr_square_deep(F, q, r, dq, dr):
    qdq = F.matmul(_mT(F, q), dq)
    qdq_ = qdq - _mT(F, qdq)
    rdr = F.matmul(r, _mT(F, dr))
    rdr_ = rdr - _mT(F, rdr)
    tril = F.band_part(qdq_ + rdr_, -1, 0)
    grad_a = F.matmul(q, dr + _qr_tri(F, tril, r))
    grad_b = _qr_tri(F, dq - F.matmul(q, qdq), r)
    return grad_a + grad_b


def _qr_rule(F, g, out, a, full_matrices):
    dq, dr = g
    q, r = out
    m, n = F.shape(a)[-2:]
    if full_matrices and m > n:
        raise NotImplementedError("qr gradient is not implemented when nrows > ncols and full_matrices is True (as "
                                  "in TF 2.21): got a matrix of shape %s; use full_matrices=False" % ((m, n),))
    if m >= n:
        return _qr_square_deep(F, q, r, dq, dr)
    # wide: a = [x, y], r = [u, v]; reduce to the square case
    y = _cols(F, a, m, None)
    u = _cols(F, r, None, m)
    dv = _cols(F, dr, m, None)
    du = _cols(F, dr, None, m)
    dx = _qr_square_deep(F, q, u, dq + F.matmul(y, _mT(F, dv)), du)
    return F.concatenate([dx, F.matmul(q, dv)], axis=-1)


_qr = defop("qr", _qr_fwd, _qr_rule, save="inputs+out", multi_out=True)


def qr(input, full_matrices=False, name=None):  # noqa: A002
    """tf.linalg.qr: (q, r) with input = q r, q [..., M, P] orthonormal columns and r [..., P, N] upper
    triangular, P = min(M, N) (P = M with full_matrices=True). Signs follow LAPACK (Householder)."""
    x = _check_matrix(convert(input), "qr", square=False, dtypes=_WITH_F16)
    return Qr(*apply(_qr, (x,), {"full_matrices": bool(full_matrices)}))


# --- diagonals and bands (any dtype, like TF) ---

def _int_arg(value, what, fname):
    if isinstance(value, Tensor):
        value = recorder.host_value(value)
    if isinstance(value, (np.ndarray, np.generic)) and value.ndim == 0 and value.dtype.kind in "iu":
        return int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise TypeError("%s: %s must be an int, got %r" % (fname, what, value))


_band_part = defop("matrix_band_part", lambda xp, x, num_lower, num_upper: band_part_array(xp, x, num_lower, num_upper),
                   lambda F, g, out, x, num_lower, num_upper: F.band_part(g, num_lower, num_upper), save="none")


def band_part(input, num_lower, num_upper, name=None):  # noqa: A002
    """tf.linalg.band_part: keeps the num_lower subdiagonals and num_upper superdiagonals (negative: all of
    them) and zeroes the rest; band_part(x, -1, 0) is the lower triangle."""
    x = convert(input)
    lo = _int_arg(num_lower, "num_lower", "band_part")
    up = _int_arg(num_upper, "num_upper", "band_part")
    shape = tuple(x._data.shape)
    if len(shape) < 2:
        raise InvalidArgumentError(None, None, "band_part: input must be at least 2-dim, got shape %s" % (shape,))
    if lo > shape[-2]:
        raise InvalidArgumentError(None, None, "band_part: num_lower must be negative or less or equal to number of "
                                   "rows (%d) got: %d" % (shape[-2], lo))
    if up > shape[-1]:
        raise InvalidArgumentError(None, None, "band_part: num_upper must be negative or less or equal to number of "
                                   "columns (%d) got: %d" % (shape[-1], up))
    return apply(_band_part, (x,), {"num_lower": lo, "num_upper": up})


_diag_part = defop("matrix_diag_part", lambda xp, x, k, shape: diag_part_array(xp, x, k),
                   lambda F, g, out, x, k, shape: F.matrix_diag(g, k, shape[0], shape[1]), save="none")


def diag_part(input, name="diag_part", k=0, padding_value=0, align="RIGHT_LEFT"):  # noqa: A002
    """tf.linalg.diag_part: diagonal k of each matrix ([..., M, N] -> [..., len]); one diagonal only (a (lo, hi)
    band of diagonals is not supported)."""
    x = convert(input)
    shape = tuple(x._data.shape)
    if len(shape) < 2:
        raise InvalidArgumentError(None, None, "diag_part: input must be at least 2-dim, got shape %s" % (shape,))
    k = _single_k(k, "diag_part")
    m, n = shape[-2:]
    if k != 0 and not -m < k < n:
        raise InvalidArgumentError(None, None, "diag_part: k=%d is out of bound for a %dx%d matrix: it must be "
                                   "between %d and %d (exclusive)" % (k, m, n, -m, n))
    return apply(_diag_part, (x,), {"k": k, "shape": (m, n)})


def _single_k(k, fname):
    if isinstance(k, (tuple, list)) or (isinstance(k, (Tensor, np.ndarray)) and np.ndim(k) == 1):
        ks = [_int_arg(v, "k", fname) for v in (recorder.host_value(k) if isinstance(k, Tensor) else k)]
        if len(ks) == 2 and ks[0] == ks[1]:
            return ks[0]
        raise NotImplementedError("%s: only one diagonal (an int k) is supported, got k=%r" % (fname, ks))
    return _int_arg(k, "k", fname)


def _diag_fwd(xp, d, k, num_rows, num_cols, padding_value):
    return diag_array(xp, d, k, num_rows, num_cols, padding_value)


_diag = defop("matrix_diag", _diag_fwd,
              lambda F, g, out, d, k, num_rows, num_cols, padding_value: F.matrix_diag_part(g, k), save="none")


def diag(diagonal, name="diag", k=0, num_rows=-1, num_cols=-1, padding_value=0, align="RIGHT_LEFT"):
    """tf.linalg.diag: matrices with `diagonal` ([..., L]) on diagonal k and padding_value elsewhere; the size
    is the smallest square that fits unless num_rows/num_cols say otherwise (TF's consistency rules)."""
    d = convert(diagonal)
    if d._data.ndim < 1:
        raise InvalidArgumentError(None, None, "diag: diagonal must be at least 1-dim, got a scalar")
    k = _single_k(k, "diag")
    rows = _int_arg(num_rows, "num_rows", "diag")
    cols = _int_arg(num_cols, "num_cols", "diag")
    rows, cols = _diag_size(d._data.shape[-1], k, rows, cols)
    pad = recorder.host_value(padding_value).item() if isinstance(padding_value, Tensor) else padding_value
    return apply(_diag, (d,), {"k": k, "num_rows": rows, "num_cols": cols, "padding_value": pad})


def trace(x, name=None):
    """tf.linalg.trace: the sum of each matrix's main diagonal ([..., M, N] -> [...])."""
    t = convert(x)
    if t._data.ndim < 2:
        raise InvalidArgumentError(None, None, "trace: input must be at least 2-dim, got shape %s"
                                   % (tuple(t._data.shape),))
    return reduce_sum(diag_part(t), axis=-1)


def matrix_transpose(a, name="matrix_transpose", conjugate=False):
    """tf.linalg.matrix_transpose (and tf.linalg.adjoint): swaps the last two axes only."""
    x = convert(a)
    if x._data.ndim < 2:
        raise ValueError("matrix_transpose: argument `a` should be a (batch) matrix with rank >= 2, got shape %s"
                         % (tuple(x._data.shape),))
    return _swap_last(x)


def adjoint(matrix, name=None):
    """tf.linalg.adjoint: the conjugate transpose of the last two axes (the transpose: accel's dtypes are real)."""
    return matrix_transpose(matrix)


def eigvalsh(tensor, name=None):
    """tf.linalg.eigvalsh: the eigenvalues of eigh (its gradient is TF's v diag(g) v^T)."""
    return eigh(tensor)[0]
