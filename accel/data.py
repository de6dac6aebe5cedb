"""`accel.data`: tf.data's Dataset for in-memory arrays (TF 2.21's names, cardinalities and element specs).

    ds = accel.data.Dataset.from_tensor_slices((x, y)).shuffle(1000, seed=0).batch(32).prefetch(accel.data.AUTOTUNE)
    for xb, yb in ds: ...

The pipeline runs on the host (as TF runs input pipelines on the CPU): map and filter functions see CPU tensors,
and the batches come out on the current accel device. A final `prefetch` fills its buffer from a background
thread, which also copies the batches to the GPU when that is the current device. Files (TFRecord, text lines,
`list_files`, `cache(filename)`) are not supported: accel.data is for arrays already in memory.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import queue
import threading

import numpy as np

from accel import backend, dtypes
from accel.errors import InvalidArgumentError
from accel.tensor import Tensor, to_array

AUTOTUNE = -1
INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2

_PREFETCH_AUTOTUNE_DEPTH = 2  # the buffer AUTOTUNE picks (TF tunes it at run time; 2 hides one step's latency)
_FILES = ("accel.data is for in-memory arrays (NumPy arrays, lists, accel tensors); read files with Python or "
          "NumPy first and build the dataset with Dataset.from_tensor_slices")


def _tensor_spec(shape, dtype):
    from accel.tensor import TensorSpec  # noqa: PLC0415

    return TensorSpec(shape, dtype)


# --- element structures: a leaf array, a tuple (or namedtuple) or a dict of structures; lists are tensors, as in TF


def _is_namedtuple(s):
    return isinstance(s, tuple) and hasattr(s, "_fields")


def _map_structure(fn, s):
    if isinstance(s, dict):
        return {k: _map_structure(fn, v) for k, v in s.items()}
    if isinstance(s, tuple):
        items = [_map_structure(fn, v) for v in s]
        return type(s)(*items) if _is_namedtuple(s) else tuple(items)
    return fn(s)


def _flatten_with_paths(s, path=""):
    if isinstance(s, dict):
        return [leaf for k in sorted(s) for leaf in _flatten_with_paths(s[k], "%s[%r]" % (path, k))]
    if isinstance(s, tuple):
        return [leaf for i, v in enumerate(s) for leaf in _flatten_with_paths(v, "%s[%d]" % (path, i))]
    return [(path, s)]


def _flatten(s):
    return [leaf for _, leaf in _flatten_with_paths(s)]


def _pack_like(template, leaves):
    it = iter(leaves)

    def build(s):
        if isinstance(s, dict):
            return _rebuild_dict(s, build)
        if isinstance(s, tuple):
            items = [build(v) for v in s]
            return type(s)(*items) if _is_namedtuple(s) else tuple(items)
        return next(it)

    return build(template)


def _rebuild_dict(s, build):
    built = {k: build(s[k]) for k in sorted(s)}  # the leaves come in sorted-key order
    return {k: built[k] for k in s}


def _same_structure(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and sorted(a) == sorted(b)
                and all(_same_structure(a[k], b[k]) for k in a))
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
                and all(_same_structure(x, y) for x, y in zip(a, b)))
    return True


def _host_leaf(value, what):
    """A host array for one component given by the user (TF's dtype inference: Python floats are float32)."""
    if value is None:
        raise ValueError("%s: Invalid `element`. `element` should not be empty (got None)" % what)
    if isinstance(value, Tensor):
        from accel.ops.creation import convert_to_tensor  # noqa: PLC0415

        return backend.to_numpy(convert_to_tensor(value)._data)
    if backend.is_cupy_array(value):
        return backend.to_numpy(value)
    try:
        return to_array(value, device=backend.CPU)
    except TypeError as e:
        raise TypeError("%s: %s (accel has no string tensors; map text to integer ids first)" % (what, e)) from None


def _structure_from_user(value, what):
    if isinstance(value, list):  # a list is one tensor, as in TF
        return _host_leaf(value, what)
    if isinstance(value, (dict, tuple)) and not len(value):
        raise ValueError("%s: Invalid `element`. `element` should not be empty (got %r)" % (what, value))
    if isinstance(value, dict):
        return {k: _structure_from_user(v, what) for k, v in value.items()}
    if isinstance(value, tuple):
        items = [_structure_from_user(v, what) for v in value]
        return type(value)(*items) if _is_namedtuple(value) else tuple(items)
    return _host_leaf(value, what)


def _fn_output(value, what):
    """The structure a map function returned, its leaves as arrays (a list becomes a tuple, as TF does)."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, dict):
        return {k: _fn_output(v, what) for k, v in value.items()}
    if isinstance(value, tuple):
        items = [_fn_output(v, what) for v in value]
        return type(value)(*items) if _is_namedtuple(value) else tuple(items)
    if isinstance(value, Tensor):
        from accel.ops.creation import convert_to_tensor  # noqa: PLC0415

        return convert_to_tensor(value)._data
    if value is None:
        raise TypeError("%s: the function returned None; it must return tensors (or a tuple or dict of them)" % what)
    return _host_leaf(value, what)


def _to_tensors(element):
    return _map_structure(Tensor, element)


def _call(fn, element):
    """fn on the element as TF calls it: a tuple element is unpacked into positional arguments."""
    args = _to_tensors(element)
    return fn(*args) if type(args) is tuple else fn(args)


def _leaf_spec(a):
    return _tensor_spec(a.shape, dtypes.from_numpy(a.dtype))


def _spec_of(element):
    return _map_structure(_leaf_spec, element)


def _count(value, what):
    if isinstance(value, Tensor):
        value = value.numpy()
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TypeError("%s must be an integer, got %r" % (what, value)) from None


def _card_tensor(n):
    return Tensor(np.asarray(n, dtype=np.int64))


@contextlib.contextmanager
def _host_pipeline():
    """Where pipeline steps run, as in TF: on the CPU, and never recorded by the caller's GradientTapes."""
    from accel import tape as tape_module  # noqa: PLC0415

    state = tape_module._state
    saved, state.tapes = state.tapes, []
    try:
        with backend.device("cpu"):
            yield
    finally:
        state.tapes = saved


# --- prefetching -------------------------------------------------------------------------------

_ITEM, _END, _ERR = 0, 1, 2


def _put(q, stop, item):
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _produce(make_gen, q, stop, target):
    gen = None
    try:
        with _host_pipeline():
            gen = make_gen()
            for element in gen:
                if target is not None:
                    element = _map_structure(lambda a: backend.to_device(a, target), element)
                if not _put(q, stop, (_ITEM, element)):
                    return
        _put(q, stop, (_END, None))
    except BaseException as e:  # noqa: B036 -- handed to the consumer, which re-raises it
        _put(q, stop, (_ERR, e))
    finally:
        if gen is not None:
            gen.close()


class _Prefetcher:
    """Runs a pipeline in a daemon thread into a queue of at most `depth` elements. The thread holds no reference
    to this object, so dropping it (or `close()`) stops the thread."""

    def __init__(self, make_gen, depth, target=None):
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=_produce, args=(make_gen, self._queue, self._stop, target),
                                        name="accel-data-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value
        self._done = True
        self._thread.join()
        if kind == _ERR:
            raise value
        raise StopIteration

    def close(self, timeout=None):
        """Stops the producer; with a timeout, waits for its thread to end (up to that many seconds)."""
        self._done = True
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        if timeout is not None:
            self._thread.join(timeout)

    def __del__(self):
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()


class Iterator:
    """What `iter(dataset)` returns: yields accel Tensors on the device that was current at `iter()`."""

    def __init__(self, dataset, target):
        self._dataset = dataset
        self._target = None if target is None or target.kind == "cpu" else target
        if isinstance(dataset, _PrefetchDataset) and dataset._depth > 0:
            self._prefetcher = _Prefetcher(dataset._input._iter, dataset._depth, self._target)
            self._gen = self._prefetcher
        else:
            self._prefetcher = None
            self._gen = dataset._iter()

    @property
    def element_spec(self):
        return self._dataset.element_spec

    def __iter__(self):
        return self

    def __next__(self):
        if self._prefetcher is not None:
            element = next(self._prefetcher)
        else:
            with _host_pipeline():
                element = next(self._gen)
            if self._target is not None:
                element = _map_structure(lambda a: backend.to_device(a, self._target), element)
        return _to_tensors(element)

    def get_next(self):
        return self.__next__()

    def close(self, timeout=None):
        if self._prefetcher is not None:
            self._prefetcher.close(timeout)
        else:
            self._gen.close()

    def __del__(self):
        p = getattr(self, "_prefetcher", None)
        if p is not None:
            p.close()


# --- Dataset -----------------------------------------------------------------------------------


class _Unsupported:
    def __init__(self, name):
        self.name = name

    def __get__(self, obj, owner=None):
        raise NotImplementedError("Dataset.%s is not supported: %s" % (self.name, _FILES))


class Dataset:
    """A sequence of elements (tensors, or tuples and dicts of them), as tf.data.Dataset.

    Build one with `from_tensor_slices`, `from_tensors` or `range`; transformations return new datasets;
    iterating yields accel Tensors.

    >>> [int(x) for x in accel.data.Dataset.range(5).filter(lambda x: x % 2 == 0)]
    [0, 2, 4]
    """

    list_files = _Unsupported("list_files")
    load = _Unsupported("load")
    save = _Unsupported("save")

    def _iter(self, peek=False):
        """A generator of host element structures; `peek` (for element_spec) skips shuffling and threads."""
        raise NotImplementedError

    def _card(self):
        raise NotImplementedError

    def _slice_data(self):
        """The arrays when every element is a row of them picked by index (so `batch` can gather rows in one
        copy), else None. No side effects."""
        return None

    def _slice_indices(self, peek=False):
        """The row indices of one pass, in order (only where _slice_data() is not None)."""
        raise NotImplementedError

    @property
    def _cardinality(self):
        """cardinality() as a Python int (what the Keras loop reads)."""
        return self._card()

    # --- sources ---
    @staticmethod
    def from_tensor_slices(tensors, name=None):
        """One element per row of the first dimension of each component (all must have the same size)."""
        return _TensorSliceDataset(tensors)

    @staticmethod
    def from_tensors(tensors, name=None):
        """A dataset of exactly one element, `tensors`."""
        return _TensorDataset(tensors)

    @staticmethod
    def from_generator(generator, output_types=None, output_shapes=None, args=None, output_signature=None,
                       name=None):
        """The elements a Python generator yields; `generator` (a callable) is called again for each pass.

        With `output_signature` (a TensorSpec, or a tuple or dict of them) each element is checked against it.
        """
        if not callable(generator):
            raise TypeError("from_generator: generator must be a callable that returns an iterator, got %r"
                            % (generator,))
        if output_signature is None and output_types is not None:
            shapes = output_shapes if output_shapes is not None else _map_structure(lambda _: None, output_types)
            output_signature = _zip_spec(output_types, shapes)
        return _GeneratorDataset(generator, tuple(args or ()), output_signature)

    @staticmethod
    def range(*args, output_type=dtypes.int64, name=None):
        """`Dataset.range(5)`, `range(2, 5)`, `range(1, 5, 2)` as Python's range; int64 elements by default."""
        return _RangeDataset(*args, output_type=output_type)

    @staticmethod
    def zip(*args, datasets=None, name=None):
        """Elements of several datasets side by side: `zip(a, b)` or `zip((a, b))` or `zip({"x": a, "y": b})`;
        ends with the shortest."""
        if datasets is not None:
            if args:
                raise TypeError("Dataset.zip: give the datasets either positionally or as `datasets`, not both")
            structure = datasets
        elif len(args) == 1:
            structure = args[0]
        elif args:
            structure = tuple(args)
        else:
            raise TypeError("Dataset.zip: expected at least one dataset")
        return _ZipDataset(structure)

    # --- transformations ---
    def batch(self, batch_size, drop_remainder=False, num_parallel_calls=None, deterministic=None, name=None):
        """Stacks `batch_size` consecutive elements; the last batch may be smaller unless `drop_remainder`."""
        return _BatchDataset(self, _count(batch_size, "batch: batch_size"), bool(drop_remainder))

    def unbatch(self, name=None):
        """Splits each element along its first dimension (the inverse of `batch`)."""
        return _UnbatchDataset(self)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True, name=None):
        """Samples uniformly from a buffer of the next `buffer_size` elements (a small buffer shuffles locally).

        A `seed` makes the orders reproducible (without one, `accel.random.set_seed` does); with
        `reshuffle_each_iteration` each pass over the dataset has a new order. The orders are not TF's own.
        """
        return _ShuffleDataset(self, _count(buffer_size, "shuffle: buffer_size"), seed, bool(reshuffle_each_iteration))

    def map(self, map_func, num_parallel_calls=None, deterministic=None, synchronous=None,
            use_unbounded_threadpool=False, name=None):
        """`map_func` on each element (a tuple element is passed as positional arguments). The calls run in
        order on the thread that iterates (a prefetch thread when a `prefetch` follows)."""
        if not callable(map_func):
            raise TypeError("map: map_func must be callable, got %r" % (map_func,))
        return _MapDataset(self, map_func)

    def filter(self, predicate, name=None):
        """The elements for which `predicate` returns True (a scalar bool tensor)."""
        if not callable(predicate):
            raise TypeError("filter: predicate must be callable, got %r" % (predicate,))
        return _FilterDataset(self, predicate)

    def repeat(self, count=None, name=None):
        """The dataset `count` times over (forever when None or -1)."""
        return _RepeatDataset(self, -1 if count is None else _count(count, "repeat: count"))

    def take(self, count, name=None):
        """The first `count` elements (all of them when -1)."""
        return _TakeDataset(self, _count(count, "take: count"))

    def skip(self, count, name=None):
        """Everything after the first `count` elements (nothing when -1)."""
        return _SkipDataset(self, _count(count, "skip: count"))

    def prefetch(self, buffer_size, name=None):
        """Prepares up to `buffer_size` elements ahead in a background thread (AUTOTUNE picks 2; 0 turns it off).
        When it is the last step of the pipeline, that thread also copies the elements to the current GPU."""
        return _PrefetchDataset(self, _count(buffer_size, "prefetch: buffer_size"))

    def cache(self, filename="", name=None):
        """Keeps the elements of the first complete pass in memory and replays them afterwards."""
        if filename:
            raise NotImplementedError("Dataset.cache(filename=%r) is not supported: %s; use cache() to cache in "
                                      "memory" % (filename, _FILES))
        return _CacheDataset(self)

    def concatenate(self, dataset, name=None):
        """This dataset's elements followed by `dataset`'s (same structure and dtypes)."""
        return _ConcatenateDataset(self, dataset)

    def enumerate(self, start=0, name=None):
        """Elements `(i, element)` with an int64 counter from `start`."""
        return _ZipDataset((_CounterDataset(_count(start, "enumerate: start")), self))

    def apply(self, transformation_func):
        return transformation_func(self)

    # --- inspection ---
    @property
    def element_spec(self):
        """The structure of an element, with a TensorSpec (shape, dtype) per component."""
        spec = getattr(self, "_spec", None)
        if spec is None:
            spec = self._spec = self._element_spec()
        return spec

    def _element_spec(self):
        raise NotImplementedError

    def cardinality(self):
        """The number of elements as an int64 tensor: INFINITE_CARDINALITY (-1) or UNKNOWN_CARDINALITY (-2)
        where it cannot be known without iterating (after `filter`, for example)."""
        return _card_tensor(self._card())

    def __len__(self):
        n = self._card()
        if n == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return n

    def __bool__(self):
        return True  # never __len__ (TF: an infinite dataset is still truthy)

    def __iter__(self):
        return Iterator(self, backend.current_device())

    def as_numpy_iterator(self):
        """The elements as NumPy values (0-d components as NumPy scalars), always on the host."""
        for element in Iterator(self, None):
            yield _map_structure(lambda t: t.numpy().copy() if t.ndim else t.numpy(), element)

    def __repr__(self):
        return "<%s element_spec=%r>" % (type(self).__name__, self.element_spec)


def _unsupported_module_attr(name):
    raise NotImplementedError("accel.data.%s (tf.data.%s) is not supported: %s" % (name, name, _FILES))


def __getattr__(name):
    if name in ("TFRecordDataset", "TextLineDataset", "FixedLengthRecordDataset"):
        _unsupported_module_attr(name)
    raise AttributeError("module 'accel.data' has no attribute %r" % name)


class _SourceDataset(Dataset):
    def _element_spec(self):
        return _spec_of(self._element_template())


class _TensorSliceDataset(_SourceDataset):
    def __init__(self, tensors):
        what = "Dataset.from_tensor_slices"
        self._data = _structure_from_user(tensors, what)
        leaves = _flatten_with_paths(self._data)
        for path, a in leaves:
            if a.ndim == 0:
                raise ValueError("%s: component%s is a scalar; each component needs a first dimension to slice "
                                 "along (TF: Unbatching a tensor is only supported for rank >= 1)"
                                 % (what, " " + path if path else ""))
        sizes = {a.shape[0] for _, a in leaves}
        if len(sizes) > 1:
            first = leaves[0]
            other = next((p, a) for p, a in leaves if a.shape[0] != first[1].shape[0])
            raise ValueError(
                "%s: all components must have the same size in their first dimension (Dimensions %d and %d are not "
                "compatible): the components %s have shapes %s" % (
                    what, first[1].shape[0], other[1].shape[0], ", ".join(p for p, _ in leaves),
                    ", ".join(str(tuple(a.shape)) for _, a in leaves)))
        self._n = sizes.pop()

    def _element_template(self):
        return _map_structure(lambda a: a[0, ...] if a.shape[0] else np.zeros(a.shape[1:], a.dtype), self._data)

    def _card(self):
        return self._n

    def _iter(self, peek=False):
        data = self._data
        for i in range(self._n):
            yield _map_structure(lambda a, i=i: a[i, ...], data)

    def _slice_data(self):
        return self._data

    def _slice_indices(self, peek=False):
        return iter(range(self._n))


class _TensorDataset(_SourceDataset):
    def __init__(self, tensors):
        self._data = _structure_from_user(tensors, "Dataset.from_tensors")

    def _element_template(self):
        return self._data

    def _card(self):
        return 1

    def _iter(self, peek=False):
        yield self._data


def _zip_spec(types, shapes):
    if isinstance(types, dict):
        return {k: _zip_spec(types[k], shapes[k]) for k in types}
    if isinstance(types, tuple):
        return tuple(_zip_spec(t, sh) for t, sh in zip(types, shapes))
    return _tensor_spec(shapes, types)


class _GeneratorDataset(Dataset):
    def __init__(self, generator, args, signature):
        self._generator, self._args, self._signature = generator, args, signature
        if signature is not None:
            self._spec = signature

    def _element_spec(self):
        with _host_pipeline():
            gen = self._iter(peek=True)
            try:
                first = next(gen, _END_MARK)
            finally:
                gen.close()
        if first is _END_MARK:
            raise ValueError("from_generator: the element_spec of an empty generator without output_signature is "
                             "not known")
        return _spec_of(first)

    def _card(self):
        return UNKNOWN_CARDINALITY

    def _conform(self, value):
        """The yielded value as arrays of the signature's dtypes (Python numbers take them, as in TF)."""
        sig = self._signature
        if isinstance(value, list) and not isinstance(sig, tuple):
            pass  # a list is one tensor
        elif isinstance(value, list):
            value = tuple(value)
        if not _same_structure(sig, value):
            raise TypeError("from_generator: the generator yielded an element that does not match the structure of "
                            "output_signature %r: got %r" % (sig, value))

        def leaf(spec, v):
            if isinstance(v, Tensor) or backend.is_cupy_array(v):
                v = _host_leaf(v, "from_generator")
            try:  # TF converts with NumPy to the signature's dtype (1.5 -> int64 gives 1)
                a = np.asarray(v, dtype=spec.dtype.dtype)
            except (TypeError, ValueError) as e:
                raise TypeError("from_generator: the generator yielded an element that could not be converted to "
                                "%s: %r (%s)" % (spec.dtype.name, v, e)) from None
            if not spec.shape.is_compatible_with(a.shape):
                raise TypeError("from_generator: the generator yielded an element that does not match "
                                "output_signature: %r where %r was expected" % (_leaf_spec(a), spec))
            return a

        leaves = [leaf(spec, v) for spec, v in zip(_flatten(sig), _flatten(value))]
        return _pack_like(sig, leaves)

    def _iter(self, peek=False):
        for value in self._generator(*self._args):
            yield _fn_output(value, "from_generator") if self._signature is None else self._conform(value)


class _RangeDataset(Dataset):
    def __init__(self, *args, output_type=dtypes.int64):
        if not 1 <= len(args) <= 3:
            raise TypeError("Dataset.range: expected 1 to 3 arguments (start, stop, step), got %d" % len(args))
        self._dtype = dtypes.as_dtype(output_type).dtype
        vals = [a.numpy().item() if isinstance(a, Tensor) else a for a in args]
        if self._dtype.kind in "iu":
            for v in vals:
                if not isinstance(v, (int, np.integer)):
                    raise TypeError("Dataset.range: cannot convert %r to %s (pass output_type=accel.float32 for "
                                    "float ranges)" % (v, self._dtype.name))
        start, stop, step = (0, vals[0], 1) if len(vals) == 1 else (vals + [1])[:3]
        if step == 0:
            raise InvalidArgumentError(None, None, "Dataset.range: step must be a non-zero integer.")
        self._start, self._stop, self._step = start, stop, step
        self._n = max(0, math.ceil((stop - start) / step))

    def _element_spec(self):
        return _tensor_spec((), self._dtype)

    def _card(self):
        return self._n

    def _iter(self, peek=False):
        dt, start, step = self._dtype, self._start, self._step
        for i in range(self._n):
            yield np.asarray(start + i * step, dtype=dt)


class _CounterDataset(Dataset):
    def __init__(self, start):
        self._start = start

    def _element_spec(self):
        return _tensor_spec((), dtypes.int64)

    def _card(self):
        return INFINITE_CARDINALITY

    def _iter(self, peek=False):
        for i in itertools.count(self._start):
            yield np.asarray(i, dtype=np.int64)


class _UnaryDataset(Dataset):
    def __init__(self, input_dataset):
        if not isinstance(input_dataset, Dataset):
            raise TypeError("expected an accel.data.Dataset, got %r" % (input_dataset,))
        self._input = input_dataset

    def _element_spec(self):
        return self._input.element_spec

    def _card(self):
        return self._input._card()


class _BatchDataset(_UnaryDataset):
    def __init__(self, input_dataset, batch_size, drop_remainder):
        super().__init__(input_dataset)
        if batch_size <= 0:
            raise InvalidArgumentError(None, None, "batch: batch_size must be > 0 (TF: Batch size must be greater than "
                                       "zero), got %d" % batch_size)
        self._size, self._drop = batch_size, drop_remainder

    def _element_spec(self):
        lead = self._size if self._drop else None
        return _map_structure(lambda s: _tensor_spec((lead,) + tuple(s.shape), s.dtype), self._input.element_spec)

    def _card(self):
        n = self._input._card()
        if n < 0:
            return n
        return n // self._size if self._drop else -(-n // self._size)

    def _gather(self, data, indices):
        while True:
            rows = np.fromiter(itertools.islice(indices, self._size), dtype=np.int64)
            if not len(rows) or (self._drop and len(rows) < self._size):
                return
            if rows[-1] - rows[0] == len(rows) - 1 and (len(rows) < 3 or np.all(np.diff(rows) == 1)):
                sel = slice(int(rows[0]), int(rows[-1]) + 1)  # in order: one contiguous copy
                yield _map_structure(lambda a, sel=sel: a[sel].copy(), data)
            else:
                yield _map_structure(lambda a, rows=rows: a[rows], data)

    def _stack(self, elements):
        flat = [_flatten(e) for e in elements]
        out = []
        for c, parts in enumerate(zip(*flat)):
            shape = parts[0].shape
            for j, p in enumerate(parts):
                if p.shape != shape:
                    raise InvalidArgumentError(None, None, "batch: cannot batch tensors with different shapes in "
                                               "component %d: the first element had shape %s and element %d had "
                                               "shape %s" % (c, list(shape), j, list(p.shape)))
            out.append(backend.xp_of(parts[0]).stack(parts))
        return _pack_like(elements[0], out)

    def _iter(self, peek=False):
        data = self._input._slice_data()
        if data is not None:
            yield from self._gather(data, self._input._slice_indices(peek))
            return
        buf = []
        for element in self._input._iter(peek):
            buf.append(element)
            if len(buf) == self._size:
                yield self._stack(buf)
                buf = []
        if buf and not self._drop:
            yield self._stack(buf)


class _UnbatchDataset(_UnaryDataset):
    def __init__(self, input_dataset):
        super().__init__(input_dataset)
        specs = _flatten(input_dataset.element_spec)
        if any(len(s.shape) == 0 for s in specs):
            raise ValueError("unbatch: Cannot unbatch an input with scalar components (element_spec %r)"
                             % (input_dataset.element_spec,))
        if len({s.shape[0] for s in specs} - {None}) > 1:
            raise ValueError("unbatch: the components must have a matching leading dimension, got element_spec %r"
                             % (input_dataset.element_spec,))

    def _element_spec(self):
        return _map_structure(lambda s: _tensor_spec(tuple(s.shape)[1:], s.dtype), self._input.element_spec)

    def _card(self):
        n = self._input._card()
        if n < 0:
            return n
        leads = {s.shape[0] for s in _flatten(self._input.element_spec)}
        return n * leads.pop() if len(leads) == 1 and None not in leads else UNKNOWN_CARDINALITY

    def _iter(self, peek=False):
        for element in self._input._iter(peek):
            leaves = _flatten(element)
            sizes = {a.shape[0] for a in leaves}
            if len(sizes) != 1:
                raise InvalidArgumentError(None, None, "unbatch: the components of an element have different sizes "
                                           "in their first dimension: %s" % [tuple(a.shape) for a in leaves])
            for i in range(sizes.pop()):
                yield _map_structure(lambda a, i=i: a[i, ...], element)


class _ShuffleDataset(_UnaryDataset):
    def __init__(self, input_dataset, buffer_size, seed, reshuffle):
        super().__init__(input_dataset)
        if buffer_size <= 0 and buffer_size != UNKNOWN_CARDINALITY:
            raise InvalidArgumentError(None, None, "shuffle: buffer_size must be greater than zero or "
                                       "UNKNOWN_CARDINALITY, got %d" % buffer_size)
        self._buffer_size = buffer_size
        if seed is None:  # drawn from accel's global stream: accel.random.set_seed makes it repeat
            from accel import random  # noqa: PLC0415

            seed = int(random.uniform((), 0, 2**31 - 1, dtype="int64"))
        self._seed = _count(seed, "shuffle: seed")
        self._reshuffle = reshuffle
        self._epochs = itertools.count()

    def _shuffled(self, source):
        epoch = next(self._epochs) if self._reshuffle else 0
        rng = np.random.default_rng(np.random.SeedSequence([self._seed, epoch]))
        size = self._buffer_size
        if size == UNKNOWN_CARDINALITY:  # TF: the whole dataset
            n = self._input._card()
            size = n if n > 0 else 1 << 62
        buf = list(itertools.islice(source, size))
        draws, k = rng.random(1024), 0
        while buf:
            if k == len(draws):
                draws, k = rng.random(1024), 0
            j = int(draws[k] * len(buf))
            k += 1
            element = buf[j]
            nxt = next(source, _END_MARK)
            if nxt is _END_MARK:
                buf[j] = buf[-1]
                buf.pop()
            else:
                buf[j] = nxt
            yield element

    def _iter(self, peek=False):
        if peek:
            return self._input._iter(peek)
        return self._shuffled(self._input._iter())

    def _slice_data(self):
        return self._input._slice_data()

    def _slice_indices(self, peek=False):
        if peek:
            return self._input._slice_indices(peek)
        return self._shuffled(self._input._slice_indices())


_END_MARK = object()


class _MapDataset(_UnaryDataset):
    def __init__(self, input_dataset, fn):
        super().__init__(input_dataset)
        self._fn = fn

    def _apply(self, element):
        return _fn_output(_call(self._fn, element), "map")

    def _element_spec(self):
        # no tracing in eager accel: the spec comes from fn on the first element, with a batch dimension the input
        # leaves unknown (None) left unknown in the outputs too
        with _host_pipeline():
            gen = self._input._iter(peek=True)
            try:
                first = next(gen, _END_MARK)
                if first is _END_MARK:
                    raise ValueError("map: element_spec of a map over an empty dataset is not known in accel "
                                     "(it runs the function on the first element)")
                out = self._apply(first)
            finally:
                gen.close()
        spec = _spec_of(out)
        in_specs = _flatten(self._input.element_spec)
        leads = {a.shape[0] for a in _flatten(first) if a.ndim}
        if in_specs and all(len(s.shape) and s.shape[0] is None for s in in_specs) and len(leads) == 1:
            b = leads.pop()
            spec = _map_structure(lambda s: _tensor_spec((None,) + tuple(s.shape)[1:], s.dtype)
                                  if len(s.shape) and s.shape[0] == b else s, spec)
        return spec

    def _iter(self, peek=False):
        for element in self._input._iter(peek):
            yield self._apply(element)


class _FilterDataset(_UnaryDataset):
    def __init__(self, input_dataset, predicate):
        super().__init__(input_dataset)
        self._predicate = predicate

    def _card(self):
        return UNKNOWN_CARDINALITY

    def _iter(self, peek=False):
        for element in self._input._iter(peek):
            keep = _call(self._predicate, element)
            if isinstance(keep, Tensor) and keep.dtype == dtypes.bool_ and keep.ndim == 0:
                keep = bool(keep)
            elif not isinstance(keep, (bool, np.bool_)):
                got = _tensor_spec(keep.shape, keep.dtype) if isinstance(keep, Tensor) else keep
                raise InvalidArgumentError(None, None, "filter: the predicate must return a scalar bool tensor "
                                           "(TF: Invalid `predicate`), but it returned %r" % (got,))
            if keep:
                yield element


class _CountedDataset(_UnaryDataset):
    """repeat / take / skip: `_stream(stream, peek)` transforms the input's stream by `count`, the same
    way over elements (_iter) and, where the input is rows of arrays, over row indices (_slice_indices)."""

    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        self._count = count

    def _iter(self, peek=False):
        return self._stream(self._input._iter, peek)

    def _slice_data(self):
        return self._input._slice_data()

    def _slice_indices(self, peek=False):
        return self._stream(self._input._slice_indices, peek)


class _RepeatDataset(_CountedDataset):
    def _card(self):
        n = self._input._card()
        if self._count < 0:
            return 0 if n == 0 else INFINITE_CARDINALITY
        if self._count == 0:
            return 0
        return n if n < 0 else n * self._count

    def _stream(self, stream, peek):
        passes = itertools.count() if self._count < 0 else range(self._count)
        for _ in passes:
            empty = True
            for element in stream(peek):
                empty = False
                yield element
            if empty:
                return


class _TakeDataset(_CountedDataset):
    def _card(self):
        n = self._input._card()
        if n == UNKNOWN_CARDINALITY:
            return n
        if n == INFINITE_CARDINALITY:
            return self._count
        return n if self._count < 0 else min(n, self._count)

    def _stream(self, stream, peek):
        if self._count < 0:
            yield from stream(peek)
        elif self._count > 0:
            gen = stream(peek)
            try:
                yield from itertools.islice(gen, self._count)
            finally:
                gen.close()


class _SkipDataset(_CountedDataset):
    def _card(self):
        n = self._input._card()
        if n < 0:
            return n
        return 0 if self._count < 0 else max(0, n - self._count)

    def _stream(self, stream, peek):
        if self._count < 0:
            return
        yield from itertools.islice(stream(peek), self._count, None)


class _PrefetchDataset(_UnaryDataset):
    def __init__(self, input_dataset, buffer_size):
        super().__init__(input_dataset)
        if buffer_size < -1:
            raise InvalidArgumentError(None, None, "prefetch: buffer_size must be >= 0 or set buffer_size to be -1 "
                                       "for auto-tuning, got %d" % buffer_size)
        self._depth = _PREFETCH_AUTOTUNE_DEPTH if buffer_size == AUTOTUNE else buffer_size

    def _iter(self, peek=False):
        if peek or self._depth == 0:
            yield from self._input._iter(peek)
            return
        prefetcher = _Prefetcher(self._input._iter, self._depth)
        try:
            yield from prefetcher
        finally:
            prefetcher.close()


class _CacheDataset(_UnaryDataset):
    def __init__(self, input_dataset):
        super().__init__(input_dataset)
        self._elements = None

    def _iter(self, peek=False):
        if self._elements is not None:
            yield from self._elements
            return
        filled = []
        for element in self._input._iter(peek):
            filled.append(element)
            yield element
        if not peek:
            self._elements = filled  # only a complete pass is kept, as TF discards a partial cache


def _spec_str(spec):
    return "\n".join("  " + line for line in repr(spec).splitlines())


def _most_specific_compatible(a, b):
    if a.dtype != b.dtype:
        return None
    if a.shape.unknown_rank or b.shape.unknown_rank or len(a.shape) != len(b.shape):
        return _tensor_spec(None, a.dtype)
    return _tensor_spec([x if x == y else None for x, y in zip(a.shape, b.shape)], a.dtype)


class _ConcatenateDataset(Dataset):
    def __init__(self, first, second):
        if not isinstance(second, Dataset):
            raise TypeError("concatenate: expected an accel.data.Dataset, got %r" % (second,))
        self._first, self._second = first, second
        sa, sb = first.element_spec, second.element_spec
        specs = None
        if _same_structure(sa, sb):
            specs = [_most_specific_compatible(x, y) for x, y in zip(_flatten(sa), _flatten(sb))]
        if specs is None or None in specs:
            raise TypeError("concatenate: Incompatible dataset elements:\n%s vs.\n%s" % (_spec_str(sa), _spec_str(sb)))
        self._spec = _pack_like(sa, specs)

    def _card(self):
        n1, n2 = self._first._card(), self._second._card()
        if INFINITE_CARDINALITY in (n1, n2):
            return INFINITE_CARDINALITY
        if UNKNOWN_CARDINALITY in (n1, n2):
            return UNKNOWN_CARDINALITY
        return n1 + n2

    def _iter(self, peek=False):
        yield from self._first._iter(peek)
        yield from self._second._iter(peek)


class _ZipDataset(Dataset):
    def __init__(self, structure):
        if isinstance(structure, list):
            structure = tuple(structure)
        leaves = _flatten(structure)
        if not leaves:
            raise ValueError("Dataset.zip: expected at least one dataset")
        for d in leaves:
            if not isinstance(d, Dataset):
                raise TypeError("Dataset.zip: expected datasets (or a tuple or dict of them), got %r" % (d,))
        self._structure = structure

    def _element_spec(self):
        return _map_structure(lambda d: d.element_spec, self._structure)

    def _card(self):
        result = INFINITE_CARDINALITY
        for d in _flatten(self._structure):
            n = d._card()
            if n == UNKNOWN_CARDINALITY:
                return n
            if n != INFINITE_CARDINALITY and (result == INFINITE_CARDINALITY or n < result):
                result = n
        return result

    def _iter(self, peek=False):
        gens = [d._iter(peek) for d in _flatten(self._structure)]
        try:
            while True:
                parts = []
                for g in gens:
                    element = next(g, _END_MARK)
                    if element is _END_MARK:
                        return
                    parts.append(element)
                yield _pack_like(self._structure, parts)
        finally:
            for g in gens:
                g.close()


class _Experimental:
    """accel.data.experimental: the constants and `cardinality(dataset)` of tf.data.experimental."""

    AUTOTUNE = AUTOTUNE
    INFINITE_CARDINALITY = INFINITE_CARDINALITY
    UNKNOWN_CARDINALITY = UNKNOWN_CARDINALITY

    @staticmethod
    def cardinality(dataset):
        return dataset.cardinality()

    def __getattr__(self, name):
        if name in ("TFRecordWriter", "make_csv_dataset", "CsvDataset", "SqlDataset", "make_batched_features_dataset",
                    "save", "load"):
            raise NotImplementedError("accel.data.experimental.%s is not supported: %s" % (name, _FILES))
        raise AttributeError("module 'accel.data.experimental' has no attribute %r" % name)


experimental = _Experimental()

__all__ = ["AUTOTUNE", "INFINITE_CARDINALITY", "UNKNOWN_CARDINALITY", "Dataset", "Iterator", "experimental"]
