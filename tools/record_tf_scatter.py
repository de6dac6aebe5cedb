"""Records TF 2.21's scatter/segment/slicing ops into tests/data/tf_scatter.npz: for each case its inputs,
outputs and the gradients of sum(out * r) for each float input (r random, stored), and for each bad input
the exception class and message TF raises eagerly. The case table is stored as JSON beside the arrays, so
tests/test_scatter_ops.py replays exactly these calls on accel.

    .venv-bench/bin/python tools/record_tf_scatter.py     # tensorflow-cpu==2.21.*
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

RNG = np.random.default_rng(2121)
PATH = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tf_scatter.npz")


def rand(*shape, dtype="float32"):
    return {"array": RNG.standard_normal(shape).round(3).astype(dtype)}


def arr(value, dtype):
    return {"array": np.asarray(value, dtype=dtype)}


def i32(value):
    return arr(value, "int32")


def f32(value):
    return arr(value, "float32")


def C(name, fn, *args, **kwargs):
    return {"name": name, "fn": fn, "args": list(args), "kwargs": kwargs}


T4 = f32([1.0, 2.0, 3.0, 4.0])
X234 = f32(np.arange(24).reshape(2, 3, 4))
# ties for min/max: update 1 equals the tensor value it meets, updates 2 and 3 tie with each other
TIE_T = f32([[1.0, 5.0], [3.0, 0.0], [2.0, 2.0]])

CASES = [
    # scatter_nd: repeated indices add up
    C("scatter_nd_dup", "scatter_nd", i32([[1], [1], [3]]), rand(3), [5]),
    C("scatter_nd_k2_dup", "scatter_nd", i32([[0, 1], [2, 3], [0, 1], [1, 0]]), rand(4), [3, 4]),
    C("scatter_nd_rows", "scatter_nd", i32([[3], [0], [3]]), rand(3, 2), [4, 2]),
    C("scatter_nd_k2_of_3d", "scatter_nd", i32([[1, 2], [0, 0]]), rand(2, 4), [2, 3, 4]),
    C("scatter_nd_idx_rank3", "scatter_nd", i32([[[1], [2]], [[0], [0]]]), rand(2, 2), [3]),
    C("scatter_nd_int64_idx", "scatter_nd", arr([[2], [0]], "int64"), rand(2), arr([4], "int64")),
    C("scatter_nd_empty_idx", "scatter_nd", arr(np.zeros((0, 1)), "int32"), rand(0), [3]),
    C("scatter_nd_size1", "scatter_nd", i32([[0]]), rand(1), [1]),
    C("scatter_nd_empty_rows", "scatter_nd", arr(np.zeros((0, 1)), "int32"), rand(0, 0), [3, 0]),
    C("scatter_nd_f64", "scatter_nd", i32([[1], [1]]), rand(2, dtype="float64"), [3]),
    C("scatter_nd_int", "scatter_nd", i32([[1], [1], [0]]), i32([1, 2, 5]), [3]),
]
for op in ("update", "add", "sub", "min", "max"):
    fn = "tensor_scatter_nd_" + op
    CASES += [
        C(fn + "_rows", fn, rand(4, 3), i32([[2], [0]]), rand(2, 3)),
        C(fn + "_dup", fn, T4, i32([[1], [3], [1], [1]]), f32([5.0, -6.0, 7.0, 0.5])),
        C(fn + "_k2", fn, rand(3, 4), i32([[0, 1], [2, 3], [2, 0]]), rand(3)),
        C(fn + "_k2_of_3d", fn, rand(2, 3, 2), i32([[1, 2], [0, 0], [1, 2]]), rand(3, 2)),
        C(fn + "_ties", fn, TIE_T, i32([[0], [1], [1], [2]]), f32([[1.0, 4.0], [3.0, 7.0], [3.0, -1.0],
                                                                      [2.0, 2.0]])),
        C(fn + "_empty_idx", fn, rand(3), arr(np.zeros((0, 1)), "int32"), rand(0)),
        C(fn + "_size1", fn, rand(1), i32([[0]]), rand(1)),
        C(fn + "_f64", fn, rand(3, dtype="float64"), arr([[2], [2]], "int64"), rand(2, dtype="float64")),
        C(fn + "_int", fn, i32([3, 1, 4]), i32([[0], [0]]), i32([2, 9])),
    ]
CASES += [
    C("meshgrid_xy2", "meshgrid", rand(3), rand(2)),
    C("meshgrid_xy3", "meshgrid", rand(3), rand(2), rand(4)),
    C("meshgrid_ij2", "meshgrid", rand(3), rand(2), indexing="ij"),
    C("meshgrid_ij3", "meshgrid", rand(2), rand(1), rand(3), indexing="ij"),
    C("meshgrid_one", "meshgrid", rand(3)),
    C("meshgrid_scalar", "meshgrid", rand(), rand(2)),
    C("meshgrid_2d_arg", "meshgrid", rand(2, 2), rand(3)),
    C("meshgrid_empty_arg", "meshgrid", rand(0), rand(3)),
    C("meshgrid_int", "meshgrid", i32([1, 2, 3]), i32([4, 5])),
    C("meshgrid_no_args", "meshgrid"),
    C("slice_basic", "slice", X234, [0, 1, 1], [2, -1, 2]),
    C("slice_all_minus1", "slice", X234, [1, 0, 3], [-1, -1, -1]),
    C("slice_size0", "slice", X234, [0, 3, 1], [2, 0, 2]),
    C("slice_1d", "slice", rand(5), [2], [2]),
    C("slice_tensor_args", "slice", rand(3, 3), arr([1, 0], "int64"), arr([2, 2], "int64")),
    C("slice_0d", "slice", rand(), i32(np.zeros(0)), i32(np.zeros(0))),
    C("slice_int", "slice", i32([1, 2, 3]), [1], [1]),
    C("strided_neg_stride", "strided_slice", X234, [0, 2, 0], [2, 0, 4], [1, -1, 2]),
    C("strided_masks_shrink", "strided_slice", X234, [1, 0, 0], [2, 3, 4], [1, 1, 1],
      begin_mask=2, end_mask=4, shrink_axis_mask=1),
    C("strided_new_axis", "strided_slice", X234, [0, 0, 0], [1, 2, 3], [1, 1, 1], new_axis_mask=2),
    C("strided_ellipsis", "strided_slice", X234, [0, 1], [1, 3], [1, 1], ellipsis_mask=1),
    C("strided_clamp", "strided_slice", X234, [-10], [10], [1]),
    C("strided_shrink_neg", "strided_slice", X234, [0, -1], [0, 0], [1, 1], shrink_axis_mask=2),
    C("strided_default_strides", "strided_slice", X234, [0, 1], [1, 3]),
    C("strided_rev_all", "strided_slice", rand(5), [-1], [-6], [-2]),
    C("strided_empty", "strided_slice", rand(5), [3], [1], [1]),
    C("strided_shrink_ignores_begin_mask", "strided_slice", X234, [-1], [0], [2], begin_mask=1, end_mask=1,
      shrink_axis_mask=1),
]
for ex in (False, True):
    for rv in (False, True):
        CASES.append(C("cumprod_ex%d_rev%d" % (ex, rv), "math.cumprod", rand(2, 4), axis=1, exclusive=ex, reverse=rv))
        CASES.append(C("cumprod_zeros_ex%d_rev%d" % (ex, rv), "math.cumprod",
                       f32([[1.5, 0.0, -2.0, 0.5], [0.0, 0.0, 3.0, 1.0]]), axis=-1, exclusive=ex, reverse=rv))
CASES += [
    C("cumprod_axis0_3d", "math.cumprod", rand(3, 2, 2)),
    C("cumprod_size1", "math.cumprod", rand(1)),
    C("cumprod_empty", "math.cumprod", rand(0, 2), axis=0, exclusive=True),
    C("cumprod_f64", "math.cumprod", rand(4, dtype="float64"), reverse=True),
    C("cumprod_int", "math.cumprod", i32([1, 2, 3, -1]), exclusive=True),
    C("segment_sum_gaps", "math.segment_sum", rand(4, 2), i32([0, 0, 2, 2])),
    C("segment_sum_1d", "math.segment_sum", rand(3), i32([1, 1, 3])),
    C("segment_sum_3d", "math.segment_sum", rand(3, 2, 2), arr([0, 1, 1], "int64")),
    C("segment_sum_empty", "math.segment_sum", rand(0, 2), i32(np.zeros(0))),
    C("segment_sum_size1", "math.segment_sum", rand(1), i32([0])),
    C("segment_sum_int", "math.segment_sum", i32([1, 2, 3]), i32([0, 1, 1])),
    C("unsorted_basic", "math.unsorted_segment_sum", rand(5, 2), i32([2, 0, 2, 1, 0]), 3),
    C("unsorted_negative", "math.unsorted_segment_sum", rand(4, 2), i32([2, -1, 2, -3]), 4),
    C("unsorted_2d_ids", "math.unsorted_segment_sum", rand(4, 2), i32([[1, 0], [1, 1], [0, 0], [2, 2]]), 3),
    # TF's gradient fails here (it gathers row 0 of an empty gradient); accel's is zeros: forward only
    C("unsorted_num0", "math.unsorted_segment_sum", rand(3, 2), i32([-1, -1, -1]), 0, record_grads=False),
    C("unsorted_scalar", "math.unsorted_segment_sum", rand(), i32(1), 3),
    C("unsorted_empty", "math.unsorted_segment_sum", rand(0, 2), i32(np.zeros(0)), 2),
    C("unsorted_num_tensor", "math.unsorted_segment_sum", rand(3), i32([0, 0, 1]), arr(2, "int64")),
    C("unsorted_int", "math.unsorted_segment_sum", i32([1, 2, 3]), i32([0, 1, 1]), 2),
    C("add_n_three", "math.add_n", [rand(2, 3), rand(2, 3), rand(2, 3)]),
    C("add_n_one", "math.add_n", [rand(3)]),
    C("add_n_scalars", "math.add_n", [rand(), rand()]),
    C("add_n_int", "math.add_n", [i32([1, 2]), i32([3, 4])]),
    C("add_n_top_level", "add_n", [rand(2), rand(2)]),
]

# bad inputs: TF's exception (class, message) is recorded; "names" lists what accel's message must contain
BAD = [
    C("scatter_nd_oob", "scatter_nd", i32([[1], [5], [3]]), rand(3), [5], names=["indices[1] = [5]", "[5]"]),
    C("scatter_nd_negative", "scatter_nd", i32([[1], [-1]]), rand(2), [5], names=["indices[1] = [-1]"]),
    C("scatter_nd_oob_2d", "scatter_nd", i32([[1, 0], [0, 7]]), rand(2), [3, 4], names=["indices[1] = [0, 7]"]),
    C("scatter_nd_oob_rank3", "scatter_nd", i32([[[1], [2]], [[0], [9]]]), rand(2, 2), [3],
      names=["indices[1,1] = [9]"]),
    C("scatter_nd_last_dim", "scatter_nd", i32([[1, 0, 0]]), rand(1), [3, 4], names=["last dimension", "3"]),
    C("scatter_nd_k0", "scatter_nd", arr(np.zeros((2, 0)), "int32"), rand(2, 3), [3], names=["last dimension"]),
    C("scatter_nd_outer_mismatch", "scatter_nd", i32([[1], [2]]), rand(3), [5], names=["updates", "[3]"]),
    C("scatter_nd_inner_mismatch", "scatter_nd", i32([[1], [2]]), rand(2, 2), [5, 3], names=["updates", "[2, 2]"]),
    C("scatter_nd_scalar_idx", "scatter_nd", i32(1), rand(), [3], names=["indices"]),
    C("scatter_nd_scalar_updates", "scatter_nd", i32(np.zeros((0,))), rand(), [], names=["updates"]),
    C("scatter_nd_empty_output", "scatter_nd", i32([[0]]), rand(1), [0], names=["empty"]),
    C("scatter_nd_negative_shape", "scatter_nd", i32([[0]]), rand(1), [-3], names=["-3"]),
    C("scatter_nd_shape_scalar", "scatter_nd", i32([[1]]), rand(1), 3, names=["shape"]),
    C("scatter_nd_float_idx", "scatter_nd", f32([[1.0]]), rand(1), [3], names=["indices", "int32"]),
]
for op in ("update", "add", "sub", "min", "max"):
    fn = "tensor_scatter_nd_" + op
    BAD += [
        C(fn + "_oob", fn, T4, i32([[1], [4]]), f32([5.0, 6.0]), names=["indices[1] = [4]", "[4]"]),
        C(fn + "_negative", fn, T4, i32([[-2], [1]]), f32([5.0, 6.0]), names=["indices[0] = [-2]"]),
        C(fn + "_last_dim", fn, T4, i32([[1, 1]]), f32([5.0]), names=["last dimension", "2"]),
        C(fn + "_shape_mismatch", fn, T4, i32([[1], [2]]), f32([5.0]), names=["updates", "[1]"]),
        C(fn + "_scalar_tensor", fn, f32(3.0), arr(np.zeros((1, 0)), "int32"), f32([5.0]), names=["last dimension"]),
        C(fn + "_dtype", fn, T4, i32([[1]]), arr([5.0], "float64"), names=["float64"]),
    ]
BAD += [
    C("meshgrid_indexing", "meshgrid", rand(1), rand(1), indexing="ji", names=["indexing", "ji"]),
    C("meshgrid_kwarg", "meshgrid", rand(1), rand(1), foo=1, names=["foo"]),
    C("meshgrid_dtypes", "meshgrid", rand(2, dtype="float64"), rand(2), names=["float64", "float32"]),
    C("slice_size_too_big", "slice", X234, [0, 1, 1], [2, 3, 2], names=["size[1]", "3"]),
    C("slice_negative_begin", "slice", X234, [0, -1, 1], [2, 1, 2], names=["begin[1]", "-1"]),
    C("slice_begin_past_end", "slice", X234, [0, 4, 1], [2, 0, 2], names=["begin[1]", "4"]),
    C("slice_size_minus2", "slice", X234, [0, 1, 1], [2, -2, 2], names=["size[1]", "-2"]),
    C("slice_rank", "slice", X234, [0, 1], [2, 1], names=["rank 3"]),
    C("slice_float_begin", "slice", X234, [0.0, 1, 1], [2, 1, 2], names=["begin"]),
    C("strided_shrink_oob", "strided_slice", X234, [5], [6], [1], shrink_axis_mask=1, names=["5", "dimension 0"]),
    C("strided_stride0", "strided_slice", X234, [0], [1], [0], names=["strides[0]"]),
    C("strided_lengths", "strided_slice", X234, [0, 0], [1], [1, 1], names=["length"]),
    C("strided_too_many", "strided_slice", X234, [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], names=["3"]),
    C("strided_two_ellipses", "strided_slice", X234, [0, 0], [1, 1], [1, 1], ellipsis_mask=3, names=["ellips"]),
    C("strided_shrink_negative_stride", "strided_slice", X234, [1], [0], [-1], shrink_axis_mask=1,
      names=["stride"]),
    C("cumprod_scalar", "math.cumprod", rand(), names=["scalar"]),
    C("cumprod_axis", "math.cumprod", rand(2, 3), axis=2, names=["axis 2"]),
    C("segment_sum_unsorted", "math.segment_sum", rand(4), i32([0, 2, 1, 2]), names=["segment_ids[2] = 1"]),
    C("segment_sum_negative", "math.segment_sum", rand(3), i32([-1, 0, 1]), names=["segment_ids[0] = -1"]),
    C("segment_sum_length", "math.segment_sum", rand(4, 2), i32([0, 0, 1]), names=["3", "[4, 2]"]),
    C("segment_sum_2d_ids", "math.segment_sum", rand(2, 2), i32([[0, 0], [1, 1]]), names=["vector"]),
    C("segment_sum_scalar_data", "math.segment_sum", rand(), i32([0]), names=["rank"]),
    C("unsorted_oob", "math.unsorted_segment_sum", rand(4, 2), i32([2, 0, 3, 1]), 3,
      names=["segment_ids[2] = 3", "[0, 3)"]),
    C("unsorted_oob_2d", "math.unsorted_segment_sum", rand(2, 2), i32([[0, 1], [5, 0]]), 3,
      names=["segment_ids[1,0] = 5"]),
    C("unsorted_shape", "math.unsorted_segment_sum", rand(4, 2), i32([1, 0, 1]), 3, names=["[4, 2]", "[3]"]),
    C("unsorted_num_negative", "math.unsorted_segment_sum", rand(2), i32([0, 0]), -1, names=["-1"]),
    C("unsorted_num_vector", "math.unsorted_segment_sum", rand(2), i32([0, 0]), [2], names=["num_segments"]),
    C("add_n_shapes", "math.add_n", [rand(2), rand(1)], names=["input 1", "(1,)"]),
    C("add_n_broadcast", "math.add_n", [rand(2), rand()], names=["input 1"]),
    C("add_n_dtypes", "math.add_n", [rand(2), rand(2, dtype="float64")], names=["float64"]),
    C("add_n_empty", "math.add_n", [], names=["add_n"]),
]

X345 = f32(np.arange(60).reshape(3, 4, 5))


def random_strided_slices(n):
    """Random begin/end/strides and masks on a 3x4x5 tensor: cases TF accepts, and the ones it refuses."""
    good, bad = [], []
    for i in range(n):
        k = int(RNG.integers(1, 5))
        kw = {m: (int(RNG.integers(0, 1 << k)) if RNG.random() < 0.4 else 0) for m in
              ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")}
        args = (X345, RNG.integers(-6, 6, k).tolist(), RNG.integers(-6, 6, k).tolist(),
                [int(v) for v in RNG.choice([-2, -1, 1, 2, 3], k)])
        try:
            tf.strided_slice(*[tf.constant(a["array"]) if isinstance(a, dict) else a for a in args], **kw)
            good.append(C("strided_random_%d" % i, "strided_slice", *args, **kw))
        except tf.errors.InvalidArgumentError:
            bad.append(C("strided_random_%d" % i, "strided_slice", *args, names=[], **kw))
    return good, bad


def resolve(module, dotted):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


SEEN = {}  # (dtype, shape, bytes) -> the key an equal input array is stored under


def materialize(spec, store, key, make):
    """Replaces {"array": ndarray} leaves with make(array) and records the array under key (once per value)."""
    if isinstance(spec, dict) and "array" in spec:
        a = spec["array"]
        key = SEEN.setdefault((a.dtype.str, a.shape, a.tobytes()), key)
        store[key] = a
        return make(a), {"array": key}
    if isinstance(spec, list):
        pairs = [materialize(s, store, "%s.%d" % (key, i), make) for i, s in enumerate(spec)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return spec, spec


def tensor_leaves(args):
    out = []
    for a in args:
        if isinstance(a, list):
            out += tensor_leaves(a)
        elif isinstance(a, tf.Tensor):
            out.append(a)
    return out


def main():
    good, bad = random_strided_slices(120)
    CASES.extend(good)
    BAD.extend(bad)
    out = {}
    table = {"cases": [], "bad": []}
    for case in CASES:
        name = case["name"]
        kwargs = dict(case["kwargs"])
        record_grads = kwargs.pop("record_grads", True)
        args, arg_spec = materialize(case["args"], out, name + "/in", tf.constant)
        watched = [t for t in tensor_leaves(args) if t.dtype.is_floating]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(watched)
            res = resolve(tf, case["fn"])(*args, **kwargs)
        outs = res if isinstance(res, list) else [res]
        entry = {"name": name, "fn": case["fn"], "args": arg_spec, "kwargs": kwargs,
                 "n_out": len(outs), "list_out": isinstance(res, list), "grads": []}
        for j, o in enumerate(outs):
            out["%s/out%d" % (name, j)] = o.numpy()
        if record_grads and watched and all(o.dtype.is_floating for o in outs):
            rs = [RNG.standard_normal(o.shape).round(3).astype(o.dtype.as_numpy_dtype) for o in outs]
            for j, r in enumerate(rs):
                out["%s/r%d" % (name, j)] = r
            grads = tape.gradient(outs, watched, output_gradients=[tf.constant(r) for r in rs])
            for j, g in enumerate(grads):
                entry["grads"].append(g is not None)
                if g is not None:
                    out["%s/grad%d" % (name, j)] = tf.convert_to_tensor(g).numpy()
        table["cases"].append(entry)
    for case in BAD:
        name = case["name"]
        kwargs = dict(case["kwargs"])
        names = kwargs.pop("names")
        args, arg_spec = materialize(case["args"], out, name + "/in", tf.constant)
        try:
            resolve(tf, case["fn"])(*args, **kwargs)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            error = type(e).__name__
            message = str(e).strip().splitlines()[0]
        else:
            raise SystemExit("TF accepted bad case %s" % name)
        table["bad"].append({"name": name, "fn": case["fn"], "args": arg_spec, "kwargs": kwargs, "names": names,
                             "tf_error": error, "tf_message": message})
    out["table"] = np.array(json.dumps(table))
    np.savez_compressed(PATH, **out)
    print("wrote %s: %d cases, %d bad inputs, TF %s" % (os.path.normpath(PATH), len(CASES), len(BAD),
                                                         tf.__version__))


if __name__ == "__main__":
    main()
