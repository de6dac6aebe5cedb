"""Records TensorFlow 2.21's tf.linalg results into tests/data/tf_linalg.npz.

    .venv-bench/bin/python tools/record_tf_linalg.py     # a venv with tensorflow-cpu==2.21.*

Each case is a function of a `tf`-like namespace (TensorFlow or accel) and input tensors that returns output
tensors, so tests/test_linalg_ops.py runs the same code with accel. Stored per case: the inputs, the outputs,
a random projection r_i per output and the gradient of sum_i sum(out_i * r_i) with respect to each input.
Decompositions are sign-normalised inside the case (columns of u, v, q scaled by a sign taken from the
outputs themselves), so the recorded values do not depend on which signs LAPACK or Eigen picked.
"""

from __future__ import annotations

import os

import numpy as np


def _col_signs(tf, x):
    """Sign of the first row of each column of x: x * that sign has a positive first row."""
    return tf.sign(x[..., :1, :])


def svd_case(full_matrices=False):
    def f(tf, a):
        s, u, v = tf.linalg.svd(a, full_matrices=full_matrices)
        c = _col_signs(tf, u)
        k = s.shape[-1]
        # u's and v's first k columns pair up (u_i s_i v_i^T): both take u's sign; extra columns their own
        cv = tf.concat([c[..., :k], _col_signs(tf, v)[..., k:]], axis=-1)
        return s, u * c, v * cv

    return f


def svd_s_only(tf, a):
    s, _, _ = tf.linalg.svd(a)
    return (s,)


def svd_no_uv(tf, a):
    return (tf.linalg.svd(a, compute_uv=False),)


def eigh_case(tf, a):
    e, v = tf.linalg.eigh(a)
    return e, v * _col_signs(tf, v)


def eigvalsh_case(tf, a):
    return (tf.linalg.eigvalsh(a),)


def qr_case(full_matrices=False):
    def f(tf, a):
        q, r = tf.linalg.qr(a, full_matrices=full_matrices)
        d = tf.sign(tf.linalg.diag_part(r))  # r's diagonal made positive
        if q.shape[-1] > d.shape[-1]:  # complete q of a tall matrix: the extra columns take their own sign
            d = tf.concat([d, _col_signs(tf, q)[..., 0, d.shape[-1]:]], axis=-1)
        return q * tf.expand_dims(d, -2), r * tf.expand_dims(d, -1)

    return f


def _one(fn):
    return lambda tf, *xs: (fn(tf)(*xs),)


CASES = {
    # name: (function of (tf, *inputs) -> outputs, input shapes, input kinds for make_input)
    "svd_square": (svd_case(), [(4, 4)], ["gen"]),
    "svd_tall_batch": (svd_case(), [(2, 5, 3)], ["gen"]),
    "svd_wide": (svd_case(), [(3, 5)], ["gen"]),
    "svd_full_tall": (svd_case(True), [(4, 3)], ["gen"]),
    "svd_full_wide": (svd_case(True), [(2, 3, 4)], ["gen"]),
    "svd_1x1": (svd_case(), [(1, 1)], ["gen"]),
    "svd_s_only": (svd_s_only, [(3, 4)], ["gen"]),
    "svd_no_uv": (svd_no_uv, [(2, 4, 3)], ["gen"]),
    "eigh": (eigh_case, [(4, 4)], ["gen"]),  # not symmetric: TF reads the lower triangle
    "eigh_batch": (eigh_case, [(2, 3, 3)], ["sym"]),
    "eigh_1x1": (eigh_case, [(1, 1)], ["gen"]),
    "eigvalsh": (eigvalsh_case, [(3, 3)], ["sym"]),
    "qr_square": (qr_case(), [(4, 4)], ["gen"]),
    "qr_tall": (qr_case(), [(5, 3)], ["gen"]),
    "qr_wide": (qr_case(), [(3, 5)], ["gen"]),
    "qr_batch": (qr_case(), [(2, 4, 3)], ["gen"]),
    "qr_full_wide": (qr_case(True), [(3, 4)], ["gen"]),
    "qr_full_tall_forward": (qr_case(True), [(4, 2)], ["gen"]),  # TF has no gradient here: forward only
    "qr_1x1": (qr_case(), [(1, 1)], ["gen"]),
    "cholesky": (_one(lambda tf: tf.linalg.cholesky), [(4, 4)], ["spd"]),
    "cholesky_batch": (_one(lambda tf: tf.linalg.cholesky), [(2, 3, 3)], ["spd"]),
    "cholesky_upper_ignored": (_one(lambda tf: tf.linalg.cholesky), [(3, 3)], ["spd_junk_upper"]),
    "cholesky_1x1": (_one(lambda tf: tf.linalg.cholesky), [(1, 1)], ["spd"]),
    "logdet": (_one(lambda tf: tf.linalg.logdet), [(2, 3, 3)], ["spd"]),
    "inv": (_one(lambda tf: tf.linalg.inv), [(3, 3)], ["wellcond"]),
    "inv_adjoint_batch": (_one(lambda tf: lambda a: tf.linalg.inv(a, adjoint=True)), [(2, 3, 3)], ["wellcond"]),
    "inv_1x1": (_one(lambda tf: tf.linalg.inv), [(1, 1)], ["wellcond"]),
    "det": (_one(lambda tf: tf.linalg.det), [(3, 3)], ["gen"]),
    "det_batch": (_one(lambda tf: tf.linalg.det), [(2, 2, 4, 4)], ["gen"]),
    "det_1x1": (_one(lambda tf: tf.linalg.det), [(1, 1)], ["gen"]),
    "slogdet": (lambda tf, a: tf.linalg.slogdet(a), [(3, 3, 3)], ["gen"]),
    "solve": (_one(lambda tf: tf.linalg.solve), [(3, 3), (3, 2)], ["wellcond", "gen"]),
    "solve_adjoint_batch": (_one(lambda tf: lambda a, b: tf.linalg.solve(a, b, adjoint=True)),
                            [(2, 3, 3), (2, 3, 1)], ["wellcond", "gen"]),
    "solve_1x1": (_one(lambda tf: tf.linalg.solve), [(1, 1), (1, 3)], ["wellcond", "gen"]),
    "triangular_solve_lower": (_one(lambda tf: tf.linalg.triangular_solve), [(4, 4), (4, 2)], ["tri", "gen"]),
    "triangular_solve_upper_adjoint": (
        _one(lambda tf: lambda a, b: tf.linalg.triangular_solve(a, b, lower=False, adjoint=True)),
        [(2, 3, 3), (2, 3, 2)], ["tri", "gen"]),
    "triangular_solve_lower_adjoint_bcast": (
        _one(lambda tf: lambda a, b: tf.linalg.triangular_solve(a, b, adjoint=True)),
        [(3, 3), (2, 3, 2)], ["tri", "gen"]),
    "triangular_solve_upper_bcast": (
        _one(lambda tf: lambda a, b: tf.linalg.triangular_solve(a, b, lower=False)),
        [(2, 1, 3, 3), (3, 3, 1)], ["tri", "gen"]),
    "diag_part": (_one(lambda tf: tf.linalg.diag_part), [(2, 3, 4)], ["gen"]),
    "diag_part_k1": (_one(lambda tf: lambda x: tf.linalg.diag_part(x, k=1)), [(3, 4)], ["gen"]),
    "diag_part_k_neg2": (_one(lambda tf: lambda x: tf.linalg.diag_part(x, k=-2)), [(4, 3)], ["gen"]),
    "diag": (_one(lambda tf: tf.linalg.diag), [(2, 3)], ["gen"]),
    "diag_k_rows_pad": (_one(lambda tf: lambda d: tf.linalg.diag(d, k=-1, num_cols=4, padding_value=0.5)), [(2,)],
                        ["gen"]),
    "trace": (_one(lambda tf: tf.linalg.trace), [(2, 3, 4)], ["gen"]),
    "band_part_1_0": (_one(lambda tf: lambda x: tf.linalg.band_part(x, 1, 0)), [(2, 4, 4)], ["gen"]),
    "band_part_lower": (_one(lambda tf: lambda x: tf.linalg.band_part(x, -1, 0)), [(3, 5)], ["gen"]),
    "band_part_0_2": (_one(lambda tf: lambda x: tf.linalg.band_part(x, 0, 2)), [(5, 3)], ["gen"]),
    "matrix_transpose": (_one(lambda tf: tf.linalg.matrix_transpose), [(2, 3, 4)], ["gen"]),
}
# the float32 runs: dtype kept, values close to TF's float32 kernels
F32 = ["svd_tall_batch", "eigh", "qr_batch", "cholesky_batch", "logdet", "inv", "det_batch", "slogdet", "solve",
       "triangular_solve_lower", "diag", "trace", "band_part_1_0"]


def make_input(rng, shape, kind):
    x = rng.standard_normal(shape)
    n = shape[-1]
    eye = np.eye(n) if len(shape) >= 2 and shape[-1] == shape[-2] else None
    if kind == "gen":
        return x
    if kind == "sym":
        return (x + np.swapaxes(x, -1, -2)) / 2
    if kind in ("spd", "spd_junk_upper"):
        a = x @ np.swapaxes(x, -1, -2) / n + eye
        if kind == "spd_junk_upper":
            a = a + np.triu(rng.standard_normal(shape), 1) * 5  # TF reads only the lower triangle
        return a
    if kind == "wellcond":
        return x + 2 * n ** 0.5 * eye
    if kind == "tri":  # a full matrix: the solver reads one triangle, whose diagonal is kept away from 0
        return x + eye * (2.5 + np.abs(x))
    raise ValueError(kind)


def inputs_for(name, dtype):
    _, shapes, kinds = CASES[name]
    rng = np.random.default_rng(_seed(name))
    return [make_input(rng, s, k).astype(dtype) for s, k in zip(shapes, kinds)]


def _seed(name):
    return sum((i + 1) * ord(c) for i, c in enumerate(name))


def projections(name, shapes):
    rng = np.random.default_rng(_seed(name) + 1)
    return [rng.standard_normal(tuple(s)) for s in shapes]


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf  # noqa: PLC0415

    data = {"tensorflow_version": np.array(tf.__version__)}
    for name, (fn, _, _) in CASES.items():
        for dtype, suffix in ((np.float64, ""), (np.float32, "_f32")):
            if suffix and name not in F32:
                continue
            key = name + suffix
            xs = [tf.constant(a) for a in inputs_for(name, dtype)]
            with tf.GradientTape() as tape:
                tape.watch(xs)
                outs = list(fn(tf, *xs))
                rs = projections(name, [o.shape for o in outs])
                loss = tf.add_n([tf.reduce_sum(o * tf.constant(r.astype(o.dtype.as_numpy_dtype)))
                                 for o, r in zip(outs, rs)])
            for k, x in enumerate(xs):
                data["%s/in%d" % (key, k)] = x.numpy()
            for i, o in enumerate(outs):
                data["%s/out%d" % (key, i)] = o.numpy()
            if name.endswith("_forward"):
                continue
            for k, g in enumerate(tape.gradient(loss, xs)):
                data["%s/grad%d" % (key, k)] = np.zeros(xs[k].shape, dtype) if g is None else g.numpy()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tf_linalg.npz")
    np.savez_compressed(path, **data)
    print("wrote %s (%d arrays, TF %s)" % (os.path.normpath(path), len(data), tf.__version__))


if __name__ == "__main__":
    main()
